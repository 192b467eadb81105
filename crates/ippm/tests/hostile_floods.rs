//! Floods against the real daemon (issue 12): slowloris and squatting connections from many
//! sources, sessions requested and never started under a small descriptor limit, and junk
//! at the control and test ports. Each runs for bounded time with a bounded number of
//! connections; throughout, a legitimate `ippm twping` and `ippm owping` from another
//! address must succeed, and the daemon's log must stay small.
//!
//! The attackers use 127.0.0.2 and up (every 127/8 address is this host's); the legitimate
//! client is 127.0.0.1. `cargo test hostile` selects these.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ippm_proto::session::ClientEvent;
use ippm_proto::{Protocol, SecurityMode};

mod common;
use common::ctl::{Ctl, ow_request, tw_request};
use common::{Daemon, IPPM, connect_from, proc_status, raise_nofile, scrape, series};

/// Attacker source `i` (0-based): 127.0.0.2, 127.0.0.3, ...
fn attacker(i: usize) -> IpAddr {
    let i = u8::try_from(i + 2).expect("fewer than 250 sources");
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, i))
}

/// What a flood did.
#[derive(Debug, Default)]
struct Tally {
    connects: AtomicU64,
    closed_by_server: AtomicU64,
    refused: AtomicU64,
}

/// A flood running in its own thread until dropped.
struct Flood {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    thread: Option<JoinHandle<()>>,
}

impl Flood {
    fn stop(&mut self) -> &Tally {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        &self.tally
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// Reads the greeting, then sends one octet of a Set-Up-Response every 2 s.
    Slowloris,
    /// Connects and sends nothing.
    Squat,
}

/// `per_source` connections from each of `sources` addresses to each target, re-opened (at
/// most once a second each) whenever the server closes them.
fn flood(targets: &[SocketAddr], sources: usize, per_source: usize, style: Style) -> Flood {
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let slots: Vec<(SocketAddr, IpAddr)> = targets
        .iter()
        .flat_map(|t| {
            (0..sources).flat_map(move |s| (0..per_source).map(move |_| (*t, attacker(s))))
        })
        .collect();
    let (st, ta) = (stop.clone(), tally.clone());
    let thread = std::thread::spawn(move || {
        let mut conns: Vec<Option<(TcpStream, Instant)>> = slots.iter().map(|_| None).collect();
        let mut next_try: Vec<Instant> = slots.iter().map(|_| Instant::now()).collect();
        let mut buf = [0u8; 256];
        while !st.load(Ordering::Relaxed) {
            let now = Instant::now();
            for (i, (to, from)) in slots.iter().enumerate() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                match &mut conns[i] {
                    None if now >= next_try[i] => {
                        next_try[i] = now + Duration::from_secs(1);
                        match connect_from(*from, *to) {
                            Ok(s) => {
                                s.set_nonblocking(true).unwrap();
                                ta.connects.fetch_add(1, Ordering::Relaxed);
                                conns[i] = Some((s, now));
                            }
                            Err(_) => {
                                ta.refused.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    None => {}
                    Some((s, last)) => {
                        let gone = match s.read(&mut buf) {
                            Ok(0) => true,
                            Ok(_) => false,
                            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                        };
                        if gone {
                            ta.closed_by_server.fetch_add(1, Ordering::Relaxed);
                            conns[i] = None;
                            continue;
                        }
                        if style == Style::Slowloris
                            && now.duration_since(*last) >= Duration::from_secs(2)
                        {
                            // Mode = 1 (open), one octet at a time.
                            let _ = s.write(&[0]);
                            *last = now;
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    Flood {
        stop,
        tally,
        thread: Some(thread),
    }
}

/// Runs `ippm ARGS`; whether it succeeded with `want` on stdout, its time and its output.
fn run(args: &[&str], want: &str) -> (bool, Duration, String) {
    let t = Instant::now();
    let out = Command::new(IPPM).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success() && text.contains(want),
        t.elapsed(),
        text,
    )
}

fn twping(addr: &str) -> (bool, Duration, String) {
    run(
        &["twping", addr, "-c", "5", "-i", "0.01", "-L", "2"],
        "5 sent, 0 lost",
    )
}

fn owping(addr: &str) -> (bool, Duration, String) {
    run(
        &["owping", addr, "-c", "5", "-i", "0.01", "-L", "2"],
        "5 sent, 0 lost",
    )
}

/// Log octets written from `from` on, not counting lines about the legitimate client
/// (127.0.0.1), whose own sessions are logged as they should be.
fn attack_log_octets(log: &std::path::Path, from: usize) -> usize {
    let text = std::fs::read_to_string(log).unwrap();
    text.get(from..)
        .unwrap_or("")
        .lines()
        .filter(|l| !l.contains("peer=127.0.0.1:"))
        .map(|l| l.len() + 1)
        .sum()
}

/// 512 slowloris connections to each protocol from 16 sources (32 each, the per-source
/// limit), then 512 squatting ones: a legitimate twping and owping succeed within 30 s of
/// each attack's start and every time after, and the log grows by at most a few hundred
/// octets a second.
#[test]
fn hostile_slowloris_and_squatting_leave_room_for_legitimate_clients() {
    raise_nofile();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let d = Daemon::start_both("127.0.0.1", &[], Some(&log));
    let (tw, ow) = (d.addr.clone(), d.owamp.clone().unwrap());
    let targets: Vec<SocketAddr> = [&tw, &ow].iter().map(|a| a.parse().unwrap()).collect();
    for style in [Style::Slowloris, Style::Squat] {
        let log_start = std::fs::metadata(&log).unwrap().len() as usize;
        let start = Instant::now();
        let mut f = flood(&targets, 16, 32, style);
        // Let the flood fill the tables first.
        std::thread::sleep(Duration::from_secs(3));
        let mut runs = Vec::new();
        while start.elapsed() < Duration::from_secs(25) {
            for (what, r) in [("twping", twping(&tw)), ("owping", owping(&ow))] {
                let (ok, took, text) = r;
                assert!(
                    ok,
                    "{style:?}: legitimate {what} failed {:?} into the attack:\n{text}",
                    start.elapsed()
                );
                runs.push(took);
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        let elapsed = start.elapsed().as_secs_f64();
        let tally = f.stop();
        let connects = tally.connects.load(Ordering::Relaxed);
        let closed = tally.closed_by_server.load(Ordering::Relaxed);
        let octets = attack_log_octets(&log, log_start);
        let rate = octets as f64 / elapsed;
        let slowest = runs.iter().max().unwrap();
        eprintln!(
            "{style:?}: {connects} attacker connections, {closed} closed by the server, {} \
             legitimate runs (slowest {slowest:?}), log {octets} octets in {elapsed:.0} s \
             ({rate:.0}/s)",
            runs.len()
        );
        assert!(
            connects >= 1024,
            "{style:?}: the flood did not run ({connects})"
        );
        assert!(
            *slowest < Duration::from_secs(10),
            "{style:?}: a legitimate run took {slowest:?}"
        );
        assert!(
            rate < 400.0,
            "{style:?}: the log grew {rate:.0} octets/s under the flood:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
    }
    let s = proc_status(d.pid());
    eprintln!(
        "daemon after the floods: {} KiB RSS, {} threads",
        s.rss_kib, s.threads
    );
}

/// A slowloris client that keeps sending an octet at a time is held to the set-up deadline
/// from the greeting: the octets do not extend it (they used to restart a 900 s timer).
#[test]
fn hostile_trickled_set_up_is_cut_at_the_deadline() {
    let d = Daemon::start_both("127.0.0.1", &["--setup-timeout", "3"], None);
    for addr in [&d.addr, d.owamp.as_ref().unwrap()] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let t = Instant::now();
        let mut greeting = [0u8; 64];
        s.read_exact(&mut greeting).unwrap();
        let closed = loop {
            // One octet of a Set-Up-Response (Mode 1, open) every 200 ms; then of commands.
            if s.write_all(&[0]).is_err() {
                break t.elapsed();
            }
            let mut b = [0u8; 64];
            match s.read(&mut b) {
                Ok(0) => break t.elapsed(),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break t.elapsed(),
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{addr}: still open after 10 s"
            );
        };
        assert!(
            closed >= Duration::from_millis(2800) && closed < Duration::from_secs(5),
            "{addr}: closed after {closed:?}, the set-up deadline is 3 s"
        );
    }
}

/// Under a 1,024-descriptor limit (systemd's usual soft limit), connections from several
/// sources that request sessions and never start them: the daemon fits its limits to the
/// descriptors, a legitimate twping and owping still get sessions (the squatters' sessions
/// give way), and the daemon never runs out of descriptors.
#[test]
fn hostile_unstarted_sessions_under_a_descriptor_limit() {
    raise_nofile();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let any = "127.0.0.1:0";
    let (d, listening) = Daemon::start_limited(
        &["--twamp-listen", any, "--owamp-listen", any],
        2,
        Some(&log),
        Some(1024),
    );
    let addr_of = |p: &str| {
        listening
            .iter()
            .find(|(w, _)| w == p)
            .map(|(_, a)| a.clone())
            .unwrap()
    };
    let (tw, ow) = (addr_of("twamp"), addr_of("owamp"));
    let stop = Arc::new(AtomicBool::new(false));
    let granted = Arc::new(AtomicU64::new(0));
    // 8 sources x 4 connections x 2 protocols, each asking for 64 sessions it never starts:
    // 4,096 sockets asked for, four times the descriptors the daemon has.
    let squatters: Vec<_> = (0..8)
        .map(|src| {
            let (tw, ow, stop, granted) = (tw.clone(), ow.clone(), stop.clone(), granted.clone());
            std::thread::spawn(move || {
                let sink = UdpSocket::bind((attacker(src), 0)).unwrap();
                let me = sink.local_addr().unwrap();
                let mut held: Vec<Ctl> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    held.retain_mut(|c| {
                        c.s.set_nonblocking(true).unwrap();
                        let mut b = [0u8; 1];
                        let alive = !matches!(c.s.read(&mut b), Ok(0));
                        c.s.set_nonblocking(false).unwrap();
                        alive
                    });
                    while held.len() < 8 {
                        let (addr, proto) = if held.len() % 2 == 0 {
                            (&tw, Protocol::Twamp)
                        } else {
                            (&ow, Protocol::Owamp)
                        };
                        let Ok(s) = connect_from(attacker(src), addr.parse().unwrap()) else {
                            break;
                        };
                        let Ok(mut c) = Ctl::over(s, proto, SecurityMode::Open) else {
                            break;
                        };
                        for _ in 0..64 {
                            let sent = match proto {
                                Protocol::Twamp => {
                                    c.c.request_tw_session(Instant::now(), &tw_request(me))
                                }
                                Protocol::Owamp => c.c.request_session(
                                    Instant::now(),
                                    &ow_request(me, false, 100, Duration::from_secs(1)),
                                ),
                            };
                            if sent.is_err() {
                                break;
                            }
                            match c.try_event() {
                                Ok(ClientEvent::SessionAccepted { .. }) => {
                                    granted.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok(_) => {}
                                Err(_) => break,
                            }
                        }
                        held.push(c);
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let start = Instant::now();
    let mut max_fds = 0;
    while start.elapsed() < Duration::from_secs(15) {
        for (what, r) in [("twping", twping(&tw)), ("owping", owping(&ow))] {
            let (ok, _, text) = r;
            assert!(
                ok,
                "legitimate {what} failed under the session squatters:\n{text}"
            );
        }
        let fds = std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
            .map(|r| r.count())
            .unwrap_or(0);
        max_fds = max_fds.max(fds);
        std::thread::sleep(Duration::from_secs(1));
    }
    stop.store(true, Ordering::Relaxed);
    for t in squatters {
        t.join().unwrap();
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let accept_failures = text.matches("accept failed").count();
    eprintln!(
        "squatters were granted {} sessions; the daemon held at most {max_fds} descriptors; \
         {accept_failures} accept failures logged",
        granted.load(Ordering::Relaxed)
    );
    assert!(
        granted.load(Ordering::Relaxed) > 400,
        "the squatters did not get going"
    );
    assert!(max_fds <= 1024, "{max_fds} descriptors");
    assert_eq!(
        accept_failures, 0,
        "the daemon ran out of descriptors:\n{text}"
    );
    assert!(
        text.contains("sessions_total="),
        "the fitted limits are logged"
    );
}

/// Ten seconds of junk: bad-HMAC datagrams from the client's address and datagrams from a
/// stranger at a live authenticated reflector, and control connections that send garbage.
/// Every one is counted in `ippm_dropped_total`; the log grows by at most a few hundred
/// octets a second (it used to take a line per datagram: 156 octets each, ~6 MB/s at
/// 40,000 datagrams a second); the session and a new twping carry on.
#[test]
fn hostile_junk_floods_are_counted_not_logged() {
    let dir = tempfile::tempdir().unwrap();
    let keys = common::keyfile(dir.path());
    let log = dir.path().join("serve.log");
    let metrics = format!("127.0.0.1:{}", common::free_ports(1));
    let d = Daemon::start_both(
        "127.0.0.1",
        &[
            "--keys",
            keys.to_str().unwrap(),
            "--metrics-listen",
            &metrics,
        ],
        Some(&log),
    );
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = udp.local_addr().unwrap();
    let mut c = Ctl::new(&d.addr, Protocol::Twamp, SecurityMode::Authenticated);
    let (_, port) = c.tw_session(me);
    c.start();
    let reflector = SocketAddr::new(me.ip(), port);
    let stranger = UdpSocket::bind((attacker(0), 0)).unwrap();
    let before = scrape(&metrics);
    let log_start = std::fs::metadata(&log).unwrap().len() as usize;
    let start = Instant::now();
    let (mut bad, mut strange, mut conns) = (0u64, 0u64, 0u64);
    let mut junk = [0x5au8; 112];
    while start.elapsed() < Duration::from_secs(10) {
        for i in 0..200u32 {
            junk[..4].copy_from_slice(&i.to_be_bytes());
            if udp.send_to(&junk, reflector).is_ok() {
                bad += 1;
            }
        }
        for _ in 0..10 {
            if stranger.send_to(&junk, reflector).is_ok() {
                strange += 1;
            }
        }
        if let Ok(mut s) = connect_from(attacker(1), d.addr.parse().unwrap()) {
            let _ = s.write_all(&[0xff; 200]);
            conns += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let after = scrape(&metrics);
    let delta = |event: &str| {
        let k = format!("ippm_dropped_total{{event=\"{event}\"}}");
        series(&after, &k) - series(&before, &k)
    };
    let octets = attack_log_octets(&log, log_start);
    let rate = octets as f64 / elapsed;
    eprintln!(
        "{bad} bad datagrams ({:.0}/s), {strange} from a stranger, {conns} garbage connections \
         in {elapsed:.1} s; counted: {} bad, {} stranger, {} connection errors; log {octets} \
         octets ({rate:.0}/s)",
        bad as f64 / elapsed,
        delta("test_packet_bad"),
        delta("test_packet_stranger"),
        delta("connection_failed"),
    );
    // Loopback may drop a few datagrams when the socket's buffer is full.
    assert!(delta("test_packet_bad") >= 0.9 * bad as f64, "{after}");
    assert!(
        delta("test_packet_stranger") >= 0.9 * strange as f64,
        "{after}"
    );
    assert!(delta("connection_failed") >= 0.9 * conns as f64, "{after}");
    assert!(
        rate < 400.0,
        "the log grew {rate:.0} octets/s under junk:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    drop(c);
    let (ok, _, text) = twping(&d.addr);
    assert!(ok, "{text}");
}
