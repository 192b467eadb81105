//! The STAMP reflector of a real `ippm serve` under hostile input (issue 13): a flood from
//! outside the allow-list, junk and truncated packets, TLV lengths past the packet, a source
//! over its rate, and a source opening sessions from thousands of ports. Throughout, a
//! legitimate sender must get every packet reflected in order, the drops must be counted in
//! `ippm_dropped_total`, the sessions held must stay bounded and the log small.
//!
//! Sources are loopback addresses: the legitimate sender 127.0.0.1, the outsider 127.0.0.2,
//! the insiders 127.0.0.3 (over its rate), 127.0.0.4 (junk) and 127.0.0.5 (sessions from
//! thousands of ports). `cargo test stamp` selects this.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ippm_proto::stamp::{build_sender, open_reflected, seal};
use ippm_proto::wire::stamp::{SenderRepr, StampMode};
use ippm_proto::wire::stamp_tlv::{TlvFlags, TlvRepr};
use ippm_proto::{ErrorEstimate, Timestamp};

mod common;
use common::{Daemon, free_ports, scrape, series};

const MODE: StampMode = StampMode::Unauthenticated;

/// A sender packet with sequence number `seq` and `tlvs`.
fn packet(seq: u32, ssid: u16, tlvs: &[TlvRepr<'_>]) -> Vec<u8> {
    let mut buf = vec![0u8; 1500];
    let repr = SenderRepr {
        seq,
        timestamp: Timestamp::ZERO,
        error_estimate: ErrorEstimate::from_duration(false, Duration::from_millis(1)),
        ssid,
    };
    let s = build_sender(&mut buf, MODE, &repr, tlvs, None).unwrap();
    let now = Timestamp::from_unix(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap(),
    );
    seal(&mut buf, &s, None, now).unwrap();
    buf.truncate(s.len);
    buf
}

fn bound(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

/// Sends from `ip` until `stop`, each datagram made by `make(i)`, at most `rate` per second;
/// returns how many were sent and how many answers came back.
fn spray(
    ip: &'static str,
    to: SocketAddr,
    rate: u64,
    stop: Arc<AtomicBool>,
    make: impl Fn(u64) -> Vec<u8> + Send + 'static,
) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::spawn(move || {
        let s = bound(ip);
        s.set_nonblocking(true).unwrap();
        let t0 = Instant::now();
        let (mut n, mut answers) = (0u64, 0u64);
        let mut buf = [0u8; 2048];
        let mut drain = |answers: &mut u64| {
            while s.recv_from(&mut buf).is_ok() {
                *answers += 1;
            }
        };
        while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(20) {
            let due = (t0.elapsed().as_secs_f64() * rate as f64) as u64;
            if n >= due {
                drain(&mut answers);
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            let _ = s.send_to(&make(n), to);
            n += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
        drain(&mut answers);
        (n, answers)
    })
}

#[test]
fn stamp_hostile_input_is_counted_not_answered_and_a_legitimate_sender_is_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1);
    let metrics = format!("127.0.0.1:{}", free_ports(1));
    let cfg = dir.path().join("ippm.toml");
    std::fs::write(
        &cfg,
        format!(
            "[stamp]\nlisten = [\"127.0.0.1:{port}\"]\n\
             allow = [\"127.0.0.1/32\", \"127.0.0.3/32\", \"127.0.0.4/32\", \"127.0.0.5/32\"]\n\
             rate_per_source = 2000\nmax_sessions_per_source = 64\nsession_timeout = 5\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("serve.log");
    let (mut d, _) = Daemon::start_args(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--metrics-listen",
            &metrics,
        ],
        1,
        Some(&log),
    );
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let before = scrape(&metrics);

    let stop = Arc::new(AtomicBool::new(false));
    // The outsider: valid packets at 30,000/s from outside the allow-list.
    let outsider = spray("127.0.0.2", to, 30_000, stop.clone(), |i| {
        packet(i as u32, 1, &[])
    });
    // An insider over its rate (2,000/s allowed): 10,000/s of valid packets.
    let greedy = spray("127.0.0.3", to, 10_000, stop.clone(), |i| {
        packet(i as u32, 2, &[])
    });
    // Another insider: junk (shorter than any header, a TLV whose Length runs past the
    // packet); a third: a new session from a new port every packet.
    let junk = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let s = bound("127.0.0.4");
            let mut sent = 0u64;
            let mut buf = [0u8; 64];
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(20) {
                for n in 0..14 {
                    let _ = s.send_to(&[0xa5; 14][..n], to);
                }
                let mut past = packet(0, 3, &[]);
                past.extend_from_slice(&[0x00, 0x01, 0x03, 0xe8]); // Extra Padding, 1000 octets
                past.extend_from_slice(&[0u8; 8]);
                let _ = s.send_to(&past, to);
                // Replies to the malformed TLV come back with M set.
                while let Ok((n, _)) = s.recv_from(&mut buf) {
                    assert!(n >= 44, "only whole packets are answered");
                }
                sent += 15;
                std::thread::sleep(Duration::from_millis(2));
            }
            sent
        }
    });
    let ports = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut opened = 0u64;
            while !stop.load(Ordering::Relaxed) && opened < 3000 {
                let s = bound("127.0.0.5");
                let _ = s.send_to(&packet(0, 4, &[]), to);
                opened += 1;
            }
            opened
        }
    });

    // The legitimate sender: 2,000 packets at 500/s, every reply checked.
    std::thread::sleep(Duration::from_millis(300));
    let me = bound("127.0.0.1");
    let me2 = me.try_clone().unwrap();
    me2.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let n = 2000u32;
    let receiver = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut got = Vec::new();
        while let Ok((len, _)) = me2.recv_from(&mut buf) {
            let r = open_reflected(&buf[..len], MODE, None).unwrap();
            got.push((r.repr.sender_seq, r.repr.seq));
            if got.len() == n as usize {
                break;
            }
        }
        got
    });
    let t0 = Instant::now();
    for seq in 0..n {
        let due = t0 + Duration::from_micros(2000 * u64::from(seq));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        me.send_to(&packet(seq, 9, &[]), to).unwrap();
    }
    let got = receiver.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let (sent_out, answered_out) = outsider.join().unwrap();
    let (sent_greedy, answered_greedy) = greedy.join().unwrap();
    assert_eq!(answered_out, 0, "nothing answered outside the allow-list");
    let sent_junk = junk.join().unwrap();
    let opened = ports.join().unwrap();

    // Every packet reflected once, and the reflector's own count has no gap: nothing lost
    // either way, whatever the others sent.
    assert_eq!(got.len(), n as usize, "replies to the legitimate sender");
    let seqs: HashSet<u32> = got.iter().map(|g| g.0).collect();
    assert_eq!(seqs.len(), n as usize);
    let mut own: Vec<u32> = got.iter().map(|g| g.1).collect();
    own.sort_unstable();
    assert_eq!(
        own,
        (0..n).collect::<Vec<_>>(),
        "stateful: 0.. without a gap"
    );

    let after = scrape(&metrics);
    let delta = |event: &str| {
        let s = format!("ippm_dropped_total{{event=\"{event}\"}}");
        series(&after, &s) - series(&before, &s)
    };
    let not_allowed = delta("stamp_not_allowed");
    let limited = delta("stamp_rate_limited");
    let bad = delta("test_packet_bad");
    let refused = delta("stamp_session_refused");
    eprintln!(
        "outsider {sent_out}, greedy {sent_greedy}, junk {sent_junk}, ports {opened}; \
         not allowed {not_allowed}, rate limited {limited}, bad {bad}, sessions refused {refused}"
    );
    // Loopback drops nothing the reflector keeps up with: the outsider's packets are counted
    // (on a loaded machine the kernel may drop some before the reflector sees them, hence not
    // all; none was answered, checked above).
    assert!(
        not_allowed >= 0.5 * sent_out as f64,
        "{not_allowed} of {sent_out}"
    );
    // 2,000/s answered from the greedy source, a second's worth in a burst.
    let secs = t0.elapsed().as_secs_f64() + 0.5;
    assert!(
        (answered_greedy as f64) < 2_000.0 * (secs + 1.0),
        "{answered_greedy} answered in {secs} s"
    );
    assert!(
        limited >= 0.5 * sent_greedy as f64,
        "{limited} of {sent_greedy}"
    );
    assert!(
        bad >= 0.9 * (sent_junk as f64 * 14.0 / 15.0),
        "{bad} of {sent_junk}"
    );
    assert!(
        refused >= (opened - 64) as f64 * 0.9,
        "{refused} of {opened}"
    );
    // Sessions bounded: 64 from 127.0.0.5, a few from the rest.
    let held = series(&after, "ippm_stamp_sessions");
    assert!(held <= 64.0 + 8.0, "{held} sessions held");
    let reflected = series(&after, "ippm_stamp_reflected_total");
    assert!(reflected >= f64::from(n));

    // The log: a few lines per kind of event, not one per packet.
    let status = d.terminate(Duration::from_secs(5));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines = text.lines().count();
    assert!(lines < 60, "{lines} log lines:\n{text}");
    assert!(!text.contains("panicked"), "{text}");
}

/// A TLV that runs past the end of the packet comes back whole, flagged M (RFC 8972 §4),
/// and the base packet is answered as usual.
#[test]
fn stamp_tlv_length_past_the_packet_is_answered_flagged_malformed() {
    let port = free_ports(1);
    let listen = format!("127.0.0.1:{port}");
    let (_d, _) = Daemon::start_args(&["--stamp-listen", &listen], 1, None);
    let s = bound("127.0.0.1");
    let mut pkt = packet(7, 5, &[TlvRepr::ExtraPadding(&[0; 8])]);
    // The Extra Padding's Length says 1000 octets; 8 follow.
    pkt[46..48].copy_from_slice(&1000u16.to_be_bytes());
    s.send_to(&pkt, &listen).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = s.recv_from(&mut buf).expect("a reply");
    assert_eq!(n, pkt.len(), "as long as the request");
    let r = open_reflected(&buf[..n], MODE, None).unwrap();
    assert_eq!(r.repr.sender_seq, 7);
    let t = r.tlvs().next().unwrap();
    let bad = t.expect_err("still malformed as reflected");
    assert_eq!(buf[44] & TlvFlags::M.0, TlvFlags::M.0, "{bad:?}");
    assert_eq!(r.usable_tlvs().count(), 0);
}
