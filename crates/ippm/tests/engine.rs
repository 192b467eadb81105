//! The shared test-packet engine of `ippm serve`, against the real daemon and the real clients:
//! zero-interval floods that do not delay other sessions (and a daemon that still stops on
//! SIGTERM), memory that does not depend on the number of packets asked for (daemon and
//! client), junk datagrams from the client's own address that grow neither memory nor the log,
//! and test packets sent with TTL / Hop Limit 255.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ippm_proto::session::ClientEvent;
use ippm_proto::wire::owamp::{FetchSessionRepr, StopSession, StopSessionsRepr};
use ippm_proto::wire::test::{Layout, PacketKind, ReflectorRepr, SenderRepr, TestProtection};
use ippm_proto::{Accept, ErrorEstimate, Protocol, SecurityMode, Timestamp};
use serde_json::Value;

mod common;
use common::ctl::{Ctl, ow_request};
use common::{Daemon, IPPM, cpu_time, free_ports, proc_status};

/// The tests that keep a core busy (a flood, a million datagrams) run one at a time: on a
/// small host, two at once would measure each other.
static BUSY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn busy() -> std::sync::MutexGuard<'static, ()> {
    BUSY.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An open-mode OWAMP / TWAMP sender packet of `len` octets.
fn open_packet(seq: u32, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    SenderRepr {
        seq,
        timestamp: Timestamp::new(3_900_000_000, seq),
        error_estimate: ErrorEstimate::new(false, 0, 1),
    }
    .emit(&mut p, Layout::Open)
    .unwrap();
    p
}

/// The JSON result of an `ippm twping/owping --json` that ran to its end, which must have
/// succeeded.
fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn spawn(args: &[&str]) -> Child {
    Command::new(IPPM)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn ms(ns: &Value) -> f64 {
    ns.as_f64().unwrap() / 1e6
}

/// twping's result (with `-R`): 0 lost of `count`; the largest time from sending a packet to
/// receiving its reply (T4 - T1, the reflector's hold included: the round-trip delay
/// leaves it out), the largest round-trip delay and reflector processing time, in ms.
fn twping_ok(v: &Value, count: u64) -> (f64, f64, f64) {
    assert_eq!(v["loss"]["sent"], count, "{v}");
    assert_eq!(v["loss"]["lost"], 0, "{v}");
    let records = v["records"].as_array().unwrap();
    assert_eq!(records.len() as u64, count);
    let t = |r: &Value, k: &str| r[k].as_u64().unwrap_or_else(|| panic!("no {k}: {r}"));
    let total = records
        .iter()
        .map(|r| t(r, "t4_unix_ns") - t(r, "t1_unix_ns"))
        .max()
        .unwrap_or(0);
    (
        total as f64 / 1e6,
        ms(&v["round_trip"]["max_ns"]),
        ms(&v["reflector_processing"]["max_ns"]),
    )
}

/// owping's losses to and from the server.
fn owping_lost(v: &Value) -> (u64, u64) {
    let lost = |w: &str| {
        v[w]["loss"]["lost"]
            .as_u64()
            .unwrap_or_else(|| panic!("{w}: {v}"))
    };
    (lost("to_server"), lost("from_server"))
}

/// owping's result (with `-R`), both ways: 0 lost of `count`; the largest one-way delays to
/// and from the server, and how far the server's send times stray from its fixed-`gap`
/// schedule (the largest minus the smallest of send time - seq x gap), in ms.
fn owping_ok(v: &Value, count: u64, gap: Duration) -> (f64, f64, f64) {
    let way = |w: &str| {
        assert_eq!(v[w]["loss"]["sent"], count, "{w}: {v}");
        assert_eq!(v[w]["loss"]["lost"], 0, "{w}: {v}");
        ms(&v[w]["delay"]["max_ns"])
    };
    let lateness: Vec<i128> = v["from_server"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let sent = i128::from(r["send_unix_ns"].as_u64().unwrap());
            sent - i128::from(r["seq"].as_u64().unwrap()) * gap.as_nanos() as i128
        })
        .collect();
    assert_eq!(lateness.len() as u64, count);
    let spread = lateness.iter().max().unwrap() - lateness.iter().min().unwrap();
    (way("to_server"), way("from_server"), spread as f64 / 1e6)
}

/// Waits until `cond` holds, for at most `limit`; whether it did.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Two clients flood themselves through the daemon: each asks, over OWAMP-Control, for a
/// session the daemon sends with a zero interval and ten million packets, and never reads.
/// Meanwhile a twping and an owping against the same daemon get
/// every packet back, in a few milliseconds at most; then SIGTERM stops the daemon at once.
/// (On the thread-per-session code the zero-interval senders never yielded: they held the
/// runtime's threads, and the daemon ignored SIGTERM.)
#[test]
fn zero_interval_floods_do_not_delay_other_sessions() {
    let _busy = busy();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    // One engine thread, whatever the host: both floods and every other session share it,
    // and the daemon leaves the other core of a small host to the clients. (With a thread per
    // core, the floods take every core and the delays measured here are the OS scheduler's.)
    let mut d = Daemon::start_both("127.0.0.1", &["--engine-threads", "1"], Some(&log));
    let owamp = d.owamp.clone().unwrap();
    let pid = d.pid();
    let idle = proc_status(pid);
    let cpu0 = cpu_time(pid);
    let t0 = Instant::now();

    // The attackers never read: what reaches their sockets past the buffer is counted by the
    // kernel as drops, which costs this test no CPU beside the daemon's.
    let sinks = [
        UdpSocket::bind("127.0.0.1:0").unwrap(),
        UdpSocket::bind("127.0.0.1:0").unwrap(),
    ];
    let ports = sinks.each_ref().map(|s| s.local_addr().unwrap().port());
    let flooded = || -> u64 {
        ports
            .iter()
            .map(|&p| common::udp_counters(p).map_or(0, |c| c.drops))
            .sum()
    };
    let mut attackers = Vec::new();
    for (i, sink) in sinks.iter().enumerate() {
        let mut c = Ctl::new(&owamp, Protocol::Owamp, SecurityMode::Open);
        let mut req = ow_request(sink.local_addr().unwrap(), true, 10_000_000, Duration::ZERO);
        req.sid = [0x40 + i as u8; 16];
        c.session(&req);
        c.start();
        attackers.push(c);
    }
    assert!(
        wait_for(Duration::from_secs(5), || flooded() >= 1000),
        "the flood did not start: {} packets",
        flooded()
    );
    let flooding = proc_status(pid);

    let before = flooded();
    let started = Instant::now();
    let mut tw = spawn(&[
        "twping", &d.addr, "-c", "50", "-i", "0.01f", "-L", "2", "--json", "-R",
    ]);
    let mut ow = spawn(&[
        "owping", &owamp, "-c", "50", "-i", "0.01f", "-L", "2", "--json", "-R",
    ]);
    // The daemon's threads while they run (their output fits in the pipes meanwhile).
    let mut threads = 0;
    while tw.try_wait().unwrap().is_none() || ow.try_wait().unwrap().is_none() {
        threads = threads.max(proc_status(pid).threads);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (tw, ow) = (
        tw.wait_with_output().unwrap(),
        ow.wait_with_output().unwrap(),
    );
    let legit = started.elapsed();
    let during = flooded() - before;
    let (t4_t1, rtt, held) = twping_ok(&json_of(&tw), 50);
    let (to, from, late) = owping_ok(&json_of(&ow), 50, Duration::from_millis(10));
    println!(
        "beside two zero-interval floods ({legit:.2?}, {during} flood packets overflowing the \
         attackers' sockets meanwhile): twping 50/50, send to reply max {t4_t1:.3} ms (round trip {rtt:.3} ms + \
         reflector {held:.3} ms); owping 50/50 each way, one-way max to the server {to:.3} ms, \
         from it {from:.3} ms, its send times off their schedule by {late:.3} ms at most"
    );
    for (what, v) in [
        ("twping send to reply", t4_t1),
        ("owping to the server", to),
        ("owping from the server", from),
        ("the server's OWAMP send schedule", late),
    ] {
        assert!(v < 50.0, "{what}: {v} ms beside the flood");
    }
    assert!(during > 0, "the flood stopped while the other sessions ran");

    // The flood is real: the attackers' sockets overflowed, the daemon burnt CPU.
    assert!(
        wait_for(Duration::from_secs(10), || flooded() >= 100_000),
        "only {} flood packets arrived",
        flooded()
    );
    let wall = t0.elapsed();
    let cpu = cpu_time(pid) - cpu0;
    println!(
        "flood: {} packets dropped at the attackers' full sockets in {wall:.2?}; daemon CPU \
         {cpu:.2?}; daemon threads idle {}, with the 2 floods {}, with the 3 other sessions too {}",
        flooded(),
        idle.threads,
        flooding.threads,
        threads
    );
    assert!(cpu >= Duration::from_millis(500), "daemon CPU only {cpu:?}");
    // No thread per session (the runtime may add one of its own).
    assert!(
        threads <= idle.threads + 1,
        "threads: {} idle, {threads} with 5 sessions",
        idle.threads
    );

    // SIGTERM while both floods run and their control connections are open.
    let asked = Instant::now();
    let status = d.terminate(Duration::from_secs(5));
    let took = asked.elapsed();
    println!("SIGTERM during the flood: {status:?} after {took:.2?}");
    let status = status.expect("the daemon ignored SIGTERM during the flood");
    assert!(status.success(), "{status:?}");
    drop(attackers);
}

/// The daemon's memory for a TWAMP session (twping) and OWAMP sessions both ways does not
/// depend on how many packets they ask for: ten million cost what ten cost. twping asked for
/// ten million packets stays small (it used to lay out its schedule for every packet up front).
#[test]
fn memory_does_not_depend_on_the_packet_count() {
    let d = Daemon::start_both("127.0.0.1", &[], None);
    let owamp = d.owamp.clone().unwrap();
    let pid = d.pid();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();

    // One round: a twping and an OWAMP connection with a session each way, all asked for
    // `packets` at one a second; (daemon RSS growth, twping's status) once they run.
    let round = |packets: u32| {
        let before = proc_status(pid).rss_kib;
        let mut c = Ctl::new(&owamp, Protocol::Owamp, SecurityMode::Open);
        let me = sink.local_addr().unwrap();
        c.session(&ow_request(me, true, packets, Duration::from_secs(1)));
        // The receive side: at most what the store keeps for a session (2^20).
        c.session(&ow_request(
            me,
            false,
            packets.min(1 << 20),
            Duration::from_secs(1),
        ));
        c.start();
        let n = packets.to_string();
        let mut tw = Command::new(IPPM)
            .args(["twping", &d.addr, "-c", &n, "-i", "1f"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Set up, started, and a first packet or two sent.
        std::thread::sleep(Duration::from_millis(2000));
        assert!(
            matches!(tw.try_wait(), Ok(None)),
            "twping -c {packets} ended early"
        );
        let client = proc_status(tw.id());
        let grew = proc_status(pid).rss_kib as i64 - before as i64;
        let _ = tw.kill();
        let _ = tw.wait();
        drop(c);
        std::thread::sleep(Duration::from_millis(300));
        (grew, client)
    };
    // The first round pays for what is allocated once (engine buffers, runtime, arenas).
    let (warm, _) = round(10);
    let (small, small_client) = round(10);
    let (large, large_client) = round(10_000_000);
    println!(
        "daemon RSS growth with sessions of 10 packets {small} KiB (first time {warm} KiB), of \
         10,000,000 packets {large} KiB; twping -c 10 RSS {} KiB (peak {} KiB), -c 10000000 \
         RSS {} KiB (peak {} KiB)",
        small_client.rss_kib, small_client.hwm_kib, large_client.rss_kib, large_client.hwm_kib
    );
    assert!(
        large <= small.max(0) + 1024,
        "10,000,000 packets cost the daemon {large} KiB, 10 cost {small} KiB"
    );
    assert!(
        large_client.hwm_kib < 40 * 1024,
        "twping -c 10000000: peak RSS {} KiB",
        large_client.hwm_kib
    );
}

/// The record store bounds what it promises: a receive session asking for more packets than
/// a session may keep is refused with Accept 4 (permanent), one that fits exactly is accepted,
/// and once the promised records fill the store the next is refused with Accept 3 (temporary).
/// Peak RSS (KiB) of `ippm twping ARGS` against `d`, read from /proc while it runs.
fn twping_peak_kib(d: &Daemon, args: &[&str]) -> u64 {
    let mut child = Command::new(IPPM)
        .arg("twping")
        .arg(&d.addr)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut peak = 0;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "twping {args:?}: {st}");
            return peak;
        }
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            if let Some(v) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
            {
                peak = peak.max(v);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A fast twping of many packets: its statistics stream, so its memory stays that of a short
/// run; keeping every record (`-R`) is what costs memory, and shows the measure can tell.
#[test]
fn twping_memory_does_not_grow_with_the_packets_it_sends() {
    let _busy = busy();
    let d = Daemon::start("127.0.0.1:0", &[], None);
    // Both past the 65,536 delays kept exactly, where the statistics switch to fixed-size
    // histograms (once, a few MiB): from there on nothing grows.
    let few = twping_peak_kib(&d, &["-c", "100000", "-i", "0.00001f", "-L", "0.5"]);
    let many = twping_peak_kib(&d, &["-c", "300000", "-i", "0.00001f", "-L", "0.5"]);
    let kept = twping_peak_kib(&d, &["-c", "300000", "-i", "0.00001f", "-L", "0.5", "-R"]);
    println!(
        "twping peak RSS: 100,000 packets {few} KiB, 300,000 {many} KiB, 300,000 with -R {kept} KiB"
    );
    assert!(
        many < few + 2 * 1024,
        "300,000 packets took {many} KiB against {few} KiB for 100,000"
    );
    assert!(
        kept > many + 10 * 1024,
        "-R keeps 300,000 records ({kept} KiB), which should show beside {many} KiB"
    );
}

#[test]
fn owamp_store_refuses_what_it_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let d = Daemon::start_both("127.0.0.1", &[], Some(&log));
    let owamp = d.owamp.clone().unwrap();
    let me: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut c = Ctl::new(&owamp, Protocol::Owamp, SecurityMode::Open);
    let per_session = 1u32 << 20;
    let gap = Duration::from_secs(1);
    c.c.request_session(Instant::now(), &ow_request(me, false, per_session + 1, gap))
        .unwrap();
    assert_eq!(
        c.event(),
        ClientEvent::SessionRejected(Accept::PermanentResourceLimitation)
    );
    // 2^23 records in all: eight sessions of 2^20 fit, the ninth does not.
    for _ in 0..8 {
        c.session(&ow_request(me, false, per_session, gap));
    }
    c.c.request_session(Instant::now(), &ow_request(me, false, per_session, gap))
        .unwrap();
    assert_eq!(
        c.event(),
        ClientEvent::SessionRejected(Accept::TemporaryResourceLimitation)
    );
    drop(c);
    let whys = [
        "more packets than the record store keeps",
        "record store full",
    ];
    let said = || std::fs::read_to_string(&log).unwrap();
    assert!(
        wait_for(Duration::from_secs(2), || whys
            .iter()
            .all(|w| said().contains(w))),
        "no {whys:?} in:\n{}",
        said()
    );
}

/// xorshift64: junk that differs from datagram to datagram, reproducibly.
struct Junk(u64);

impl Junk {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Sends `n` datagrams from `sock` (connected to the daemon's test `port`), cycling through
/// `pool`, in batches (sendmmsg) and never more than the daemon's socket buffer can hold
/// unread, so that the daemon sees them rather than the kernel dropping them. Returns the
/// datagrams the kernel dropped all the same.
fn flood(sock: &UdpSocket, port: u16, n: usize, pool: &[Vec<u8>]) -> u64 {
    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrIn, sendmmsg};
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    const BATCH: usize = 64;
    let drops = || {
        common::udp_counters(port)
            .expect("the daemon's test socket")
            .drops
    };
    let before = drops();
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let to: [Option<SockaddrIn>; BATCH] = [None; BATCH];
    let mut sent = 0;
    while sent < n {
        let k = BATCH.min(n - sent);
        let slices: Vec<[IoSlice<'_>; 1]> = (sent..sent + k)
            .map(|i| [IoSlice::new(&pool[i % pool.len()])])
            .collect();
        let done = sendmmsg(
            sock.as_raw_fd(),
            &mut headers,
            &slices,
            &to[..k],
            [],
            MsgFlags::empty(),
        )
        .unwrap()
        .count();
        assert!(done > 0);
        sent += done;
        if sent % 2048 < BATCH {
            while common::udp_counters(port).is_some_and(|c| c.rx_queue > 2 << 20) {
                std::thread::yield_now();
            }
        }
    }

    // Until the daemon has read everything.
    assert!(
        wait_for(Duration::from_secs(10), || common::udp_counters(port)
            .is_some_and(|c| c.rx_queue == 0)),
        "the daemon stopped reading its test socket"
    );
    drops() - before
}

fn log_len(log: &std::path::Path) -> u64 {
    std::fs::metadata(log).unwrap().len()
}

/// What the log says from octet `from` to octet `to`.
fn log_part(log: &std::path::Path, from: u64, to: u64) -> String {
    let all = std::fs::read(log).unwrap();
    String::from_utf8_lossy(&all[from as usize..to as usize]).into_owned()
}

/// Starts a daemon for the junk tests: both protocols, the key file, test ports in a known
/// range of four (the junk's session, and the legit tests' before and after, whose sessions
/// may still hold theirs for their Timeout); with its log and the range.
fn junk_daemon(
    dir: &std::path::Path,
) -> (Daemon, std::path::PathBuf, std::ops::RangeInclusive<u16>) {
    let keys = common::keyfile(dir);
    let log = dir.join("serve.log");
    let p = free_ports(4);
    let d = Daemon::start_both(
        "127.0.0.1",
        &[
            "--keys",
            keys.to_str().unwrap(),
            "--test-ports",
            &format!("{p}-{}", p + 3),
        ],
        Some(&log),
    );
    (d, log, p..=p + 3)
}

/// Junk datagrams sent to a session from the client's own address.
const JUNK: usize = 1_000_000;
/// Distinct junk datagrams, sent over and over.
const POOL: usize = 1 << 16;

/// A million junk datagrams from the client's own address at an OWAMP receive session (open
/// mode: test packets with random sequence numbers, most past the session's Number of
/// Packets; duplicates of one valid packet; short garbage) do not grow the daemon's memory or
/// its log (a rate-limited line, not one per datagram), and the session keeps at most twice
/// its Number of Packets of records. A legitimate owping gets every packet afterwards.
#[test]
fn junk_at_an_owamp_receive_session_is_bounded() {
    let _busy = busy();
    const PACKETS: u32 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let (d, log, range) = junk_daemon(dir.path());
    let owamp = d.owamp.clone().unwrap();
    let pid = d.pid();
    let owping = || {
        let v = json_of(
            &Command::new(IPPM)
                .args([
                    "owping", &owamp, "-c", "50", "-i", "0.01f", "-L", "2", "--json",
                ])
                .output()
                .unwrap(),
        );
        owping_lost(&v)
    };
    // The first legit test touches what is allocated once (engine buffers, log formatting).
    assert_eq!(owping(), (0, 0));

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut c = Ctl::new(&owamp, Protocol::Owamp, SecurityMode::Open);
    let req = ow_request(
        sock.local_addr().unwrap(),
        false,
        PACKETS,
        Duration::from_millis(10),
    );
    let (sid, port) = c.session(&req);
    assert!(range.contains(&port), "{port} is not in {range:?}");
    c.start();
    sock.connect(("127.0.0.1", port)).unwrap();
    let (rss0, log0) = (proc_status(pid).rss_kib, log_len(&log));
    let mut rng = Junk(0x9e37_79b9_7f4a_7c15);
    let pool: Vec<Vec<u8>> = (0..POOL)
        .map(|i| match i % 3 {
            // A test packet with a random sequence number: below 1000 one time in 4 million.
            0 => open_packet(rng.next() as u32, 14),
            // The same valid packet again and again.
            1 => open_packet(7, 14),
            // Shorter than a test packet (and empty).
            _ => (0..rng.next() % 14).map(|b| b as u8).collect(),
        })
        .collect();
    let dropped = flood(&sock, port, JUNK, &pool);
    let (rss1, log1) = (proc_status(pid).rss_kib, log_len(&log));
    c.c.stop_sessions(
        Instant::now(),
        &StopSessionsRepr {
            accept: Accept::Ok,
            sessions: vec![StopSession {
                sid,
                next_seqno: PACKETS,
                skip_ranges: vec![],
            }],
        },
    )
    .unwrap();
    c.c.fetch_session(
        Instant::now(),
        &FetchSessionRepr {
            sid,
            begin_seq: 0,
            end_seq: u32::MAX,
        },
    )
    .unwrap();
    let records = match c.event() {
        ClientEvent::FetchReply(r) => r.records,
        other => panic!("{other:?}"),
    };
    drop(c);
    println!(
        "OWAMP receive session, {JUNK} junk datagrams ({dropped} dropped by the kernel): daemon \
         RSS {rss0} -> {rss1} KiB ({:+} KiB), log {log0} -> {log1} bytes (+{}), {} records kept \
         for {PACKETS} packets",
        rss1 as i64 - rss0 as i64,
        log1 - log0,
        records.len()
    );
    print!("{}", log_part(&log, log0, log1));
    assert!(
        dropped < JUNK as u64 / 2,
        "the kernel dropped {dropped} of the junk: the daemon did not see it"
    );
    assert!(
        records.len() <= 2 * PACKETS as usize && records.iter().all(|r| r.seq < PACKETS),
        "{} records",
        records.len()
    );
    assert!(records.iter().filter(|r| r.seq == 7).count() >= PACKETS as usize);
    assert!(rss1 < rss0 + 4096, "RSS {rss0} -> {rss1} KiB");
    assert!(log1 - log0 <= 4096, "the log grew by {} bytes", log1 - log0);
    assert_eq!(owping(), (0, 0), "owping after the junk");
}

/// A million junk datagrams from the client's own address at a TWAMP reflector in
/// authenticated mode (the length of a real packet with a bad HMAC, or shorter) do not grow
/// the daemon's memory or its log, and none is reflected; a real packet still is, and a
/// legitimate twping gets every packet afterwards.
#[test]
fn junk_at_an_authenticated_reflector_is_bounded() {
    let _busy = busy();
    let dir = tempfile::tempdir().unwrap();
    let (d, log, range) = junk_daemon(dir.path());
    let pid = d.pid();
    let keys = dir.path().join("keys.pfs");
    let twping = || {
        let v = json_of(
            &Command::new(IPPM)
                .args(["twping", &d.addr, "-A", "A", "-u", "alice", "-k"])
                .arg(&keys)
                .args(["-c", "50", "-i", "0.01f", "-L", "2", "--json"])
                .output()
                .unwrap(),
        );
        assert_eq!(v["mode"], "authenticated");
        v["loss"]["lost"].as_u64().unwrap()
    };
    assert_eq!(twping(), 0);

    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut c = Ctl::new(&d.addr, Protocol::Twamp, SecurityMode::Authenticated);
    let (sid, port) = c.tw_session(sock.local_addr().unwrap());
    assert!(range.contains(&port), "{port} is not in {range:?}");
    c.start();
    sock.connect(("127.0.0.1", port)).unwrap();
    let (rss0, log0) = (proc_status(pid).rss_kib, log_len(&log));
    let mut rng = Junk(0x2545_f491_4f6c_dd1d);
    let pool: Vec<Vec<u8>> = (0..POOL)
        .map(|i| {
            let len = if i % 2 == 0 { 112 } else { rng.next() % 48 };
            (0..len).map(|_| rng.next() as u8).collect()
        })
        .collect();
    let dropped = flood(&sock, port, JUNK, &pool);
    let (rss1, log1) = (proc_status(pid).rss_kib, log_len(&log));
    // A real packet is still reflected, and is the first: nothing of the junk was.
    let prot =
        TestProtection::new(SecurityMode::Authenticated, c.c.test_keys(&sid).as_ref()).unwrap();
    let mut pkt = vec![0u8; 112];
    SenderRepr {
        seq: 7,
        timestamp: Timestamp::new(1, 2),
        error_estimate: ErrorEstimate::new(false, 0, 1),
    }
    .emit(&mut pkt, Layout::Protected)
    .unwrap();
    prot.protect(PacketKind::Sender, &mut pkt);
    sock.send(&pkt).unwrap();
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf).unwrap();
    prot.unprotect(PacketKind::Reflector, &mut buf[..n])
        .unwrap();
    let r = ReflectorRepr::parse(&buf[..n], Layout::Protected).unwrap();
    assert_eq!((r.sender_seq, r.seq), (7, 0), "junk was reflected");
    drop(c);
    println!(
        "TWAMP reflector (authenticated), {JUNK} junk datagrams ({dropped} dropped by the \
         kernel): daemon RSS {rss0} -> {rss1} KiB ({:+} KiB), log {log0} -> {log1} bytes (+{})",
        rss1 as i64 - rss0 as i64,
        log1 - log0
    );
    print!("{}", log_part(&log, log0, log1));
    assert!(
        dropped < JUNK as u64 / 2,
        "the kernel dropped {dropped} of the junk: the daemon did not see it"
    );
    assert!(rss1 < rss0 + 4096, "RSS {rss0} -> {rss1} KiB");
    assert!(log1 - log0 <= 4096, "the log grew by {} bytes", log1 - log0);
    assert_eq!(twping(), 0, "twping after the junk");
}

/// Every test packet the daemon sends leaves with TTL / Hop Limit 255 (RFC 4656 §4.1.2, RFC
/// 5357 §4.2.1): its TWAMP replies and its OWAMP packets, over IPv4 and IPv6, as a socket
/// that asks for the received TTL (IP_RECVTTL, IPV6_HOPLIMIT) sees them. (The kernel's default,
/// 64, before.)
#[test]
fn test_packets_leave_with_ttl_255() {
    for ip in ["127.0.0.1", "::1"] {
        let addr: IpAddr = ip.parse().unwrap();
        let d = Daemon::start_both(ip, &[], None);
        let sock = ippm_net::udp::blocking_socket(SocketAddr::new(addr, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let me = sock.local_addr().unwrap();
        let mut buf = [0u8; 2048];

        let mut c = Ctl::new(&d.addr, Protocol::Twamp, SecurityMode::Open);
        let (_, port) = c.tw_session(me);
        c.start();
        let reflector = SocketAddr::new(addr, port);
        for seq in 0..3 {
            sock.send_to(&open_packet(seq, 64), reflector).unwrap();
            let m = ippm_net::udp::recv_blocking(&sock, &mut buf).unwrap();
            assert_eq!(m.from, reflector);
            let r = ReflectorRepr::parse(&buf[..m.len], Layout::Open).unwrap();
            assert_eq!(r.sender_seq, seq);
            println!(
                "{ip}: TWAMP reply {seq} arrived with TTL {:?} (our packet reached the \
                 reflector with {})",
                m.ttl, r.sender_ttl
            );
            assert_eq!(m.ttl, Some(255), "{ip}: TWAMP reply TTL");
            // Ours leave with 255 too (the same socket options), and the reflector says so.
            assert_eq!(r.sender_ttl, 255, "{ip}: TTL the reflector saw");
        }
        drop(c);

        let owamp = d.owamp.clone().unwrap();
        let mut c = Ctl::new(&owamp, Protocol::Owamp, SecurityMode::Open);
        c.session(&ow_request(me, true, 3, Duration::from_millis(10)));
        c.start();
        for seq in 0..3 {
            let m = ippm_net::udp::recv_blocking(&sock, &mut buf).unwrap();
            let p = SenderRepr::parse(&buf[..m.len], Layout::Open).unwrap();
            assert_eq!(p.seq, seq);
            println!("{ip}: OWAMP packet {seq} arrived with TTL {:?}", m.ttl);
            assert_eq!(m.ttl, Some(255), "{ip}: OWAMP packet TTL");
        }
    }
}
