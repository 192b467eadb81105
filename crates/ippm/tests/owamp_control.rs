//! OWAMP-Control against the real daemon with our own client state machine: Fetch-Session of
//! full and partial ranges, a session stopped early with skip ranges, a server session
//! stopped early (its Stop-Sessions says how far it got), and hostile requests (absurd slot
//! and packet counts, junk test packets) refused with an Accept code and a log line while the
//! daemon keeps serving.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use ippm_proto::schedule::Slot;
use ippm_proto::session::ClientEvent;
use ippm_proto::wire::owamp::{
    FetchSessionRepr, RequestSessionRepr, SkipRange, StopSession, StopSessionsRepr,
};
use ippm_proto::wire::test::{Layout, SenderRepr};
use ippm_proto::{Accept, ErrorEstimate, Protocol, SecurityMode, Timestamp};

mod common;
use common::ctl::Ctl;
use common::{Daemon, IPPM};

fn request(udp: &UdpSocket, server_sends: bool, packets: u32, gap_ms: u64) -> RequestSessionRepr {
    let mut r = common::ctl::ow_request(
        udp.local_addr().unwrap(),
        server_sends,
        packets,
        Duration::from_millis(gap_ms),
    );
    // Half a second of Timeout after Stop-Sessions.
    r.timeout = 1 << 31;
    r
}

fn send_test(udp: &UdpSocket, to: SocketAddr, seq: u32) {
    let mut p = vec![0u8; 14];
    SenderRepr {
        seq,
        timestamp: Timestamp::new(3_900_000_000, seq),
        error_estimate: ErrorEstimate::new(false, 0, 1),
    }
    .emit(&mut p, Layout::Open)
    .unwrap();
    udp.send_to(&p, to).unwrap();
}

#[test]
fn fetch_ranges_skips_and_early_stop() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let d = Daemon::start_owamp_logged("127.0.0.1:0", &[], &log);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut c = Ctl::new(&d.addr, Protocol::Owamp, SecurityMode::Open);
    // We send 10 packets, but skip 3..=4, and the server sends 1000 at 10 ms that we stop
    // after about 50 ms.
    c.c.request_session(Instant::now(), &request(&udp, false, 10, 1))
        .unwrap();
    let (sid, port) = match c.event() {
        ClientEvent::SessionAccepted { sid, port, .. } => (sid, port),
        other => panic!("{other:?}"),
    };
    let mut server_req = request(&udp, true, 1000, 10);
    server_req.start_time = Timestamp::ZERO;
    c.c.request_session(Instant::now(), &server_req).unwrap();
    assert!(matches!(c.event(), ClientEvent::SessionAccepted { .. }));
    c.c.start_sessions(Instant::now()).unwrap();
    assert_eq!(c.event(), ClientEvent::StartAck(Accept::Ok));
    let to = SocketAddr::new(udp.local_addr().unwrap().ip(), port);
    for seq in (0..10).filter(|s| !(3..=4).contains(s)) {
        send_test(&udp, to, seq);
    }
    // A duplicate, which the receiver keeps.
    send_test(&udp, to, 7);
    // Junk, which it does not: too short to be a test packet, and from another address.
    for junk in [&[][..], &[0xff; 3][..], &[0x5a; 13][..]] {
        udp.send_to(junk, to).unwrap();
    }
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    let mut p = vec![0u8; 14];
    SenderRepr {
        seq: 3,
        timestamp: Timestamp::new(1, 1),
        error_estimate: ErrorEstimate::new(false, 0, 1),
    }
    .emit(&mut p, Layout::Open)
    .unwrap();
    stranger.send_to(&p, to).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    let stop = StopSessionsRepr {
        accept: Accept::Ok,
        sessions: vec![StopSession {
            sid,
            next_seqno: 10,
            skip_ranges: vec![SkipRange { first: 3, last: 4 }],
        }],
    };
    c.c.stop_sessions(Instant::now(), &stop).unwrap();
    match c.event() {
        ClientEvent::StopSessions(s) => {
            let n = s.sessions[0].next_seqno;
            assert_eq!(s.sessions[0].sid, [0x42; 16]);
            assert!(
                (2..=20).contains(&n),
                "the server stopped early, after {n} packets"
            );
        }
        other => panic!("{other:?}"),
    }
    std::thread::sleep(Duration::from_millis(100));
    // Full range.
    c.c.fetch_session(
        Instant::now(),
        &FetchSessionRepr {
            sid,
            begin_seq: 0,
            end_seq: u32::MAX,
        },
    )
    .unwrap();
    match c.event() {
        ClientEvent::FetchReply(r) => {
            assert_eq!(r.next_seqno, 10);
            assert_eq!(r.skip_ranges, vec![SkipRange { first: 3, last: 4 }]);
            let mut seqs: Vec<u32> = r.records.iter().map(|x| x.seq).collect();
            seqs.sort_unstable();
            assert_eq!(seqs, vec![0, 1, 2, 5, 6, 7, 7, 8, 9], "duplicates kept");
            assert_eq!(
                r.request.receiver_port, port,
                "the stored request has our port"
            );
            assert!(r.records.iter().all(|x| x.ttl == 64 && !x.is_lost()));
        }
        other => panic!("{other:?}"),
    }
    // Partial range.
    c.c.fetch_session(
        Instant::now(),
        &FetchSessionRepr {
            sid,
            begin_seq: 5,
            end_seq: 7,
        },
    )
    .unwrap();
    match c.event() {
        ClientEvent::FetchReply(r) => {
            let mut seqs: Vec<u32> = r.records.iter().map(|x| x.seq).collect();
            seqs.sort_unstable();
            assert_eq!(seqs, vec![5, 6, 7, 7]);
        }
        other => panic!("{other:?}"),
    }
    // An unknown session.
    c.c.fetch_session(
        Instant::now(),
        &FetchSessionRepr {
            sid: [9; 16],
            begin_seq: 0,
            end_seq: 1,
        },
    )
    .unwrap();
    assert_eq!(c.event(), ClientEvent::FetchRejected(Accept::Failure));

    // Hostile: absurd packet count (Accept 4, connection goes on) ...
    c.c.request_session(Instant::now(), &request(&udp, false, u32::MAX, 1))
        .unwrap();
    assert_eq!(
        c.event(),
        ClientEvent::SessionRejected(Accept::PermanentResourceLimitation)
    );
    // ... and an absurd slot count, written by hand: Accept 4, then the server hangs up.
    let mut raw = TcpStream::connect(&d.addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut g = [0u8; 64];
    raw.read_exact(&mut g).unwrap();
    let mut setup = [0u8; 164];
    setup[3] = 1;
    raw.write_all(&setup).unwrap();
    let mut start = [0u8; 48];
    raw.read_exact(&mut start).unwrap();
    let mut req = request(&udp, false, 10, 1).to_vec();
    req[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    raw.write_all(&req[..16]).unwrap();
    let mut rest = Vec::new();
    let _ = raw.read_to_end(&mut rest);
    assert_eq!(rest.len(), 48);
    assert_eq!(Accept::from(rest[0]), Accept::PermanentResourceLimitation);

    // Still serving.
    let out = std::process::Command::new(IPPM)
        .args(["owping", &d.addr, "-c", "5", "-i", "0.001f", "-L", "0.3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(d);
    let log = std::fs::read_to_string(&log).unwrap();
    for reason in [
        "too many packets",
        "above the limit",
        "Fetch-Session for an unknown session",
    ] {
        assert!(log.contains(reason), "no log line for {reason:?}:\n{log}");
    }
}

/// A server session stopped in the middle of a fast schedule: its Stop-Sessions says how far
/// it got, exactly. Every packet below that Next Seqno was sent (all arrive on loopback) and
/// none at or past it, whatever moment the stop lands on (RFC 4656 §3.8).
#[test]
fn server_next_seqno_is_exact_when_stopped_mid_flood() {
    let d = Daemon::start_owamp("127.0.0.1:0", &[]);
    for round in 0..5 {
        let udp = ippm_net::udp::blocking_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut c = Ctl::new(&d.addr, Protocol::Owamp, SecurityMode::Open);
        // 1,000,000 packets 20 us apart: far more than get out before the stop.
        let mut req = request(&udp, true, 1_000_000, 0);
        req.slots = vec![Slot::Fixed(ippm_proto::time::duration_to_bits(
            Duration::from_micros(20),
        ))];
        // Drained as they come, so no socket buffer overflows: every packet sent arrives.
        let rx = udp.try_clone().unwrap();
        let drain = std::thread::spawn(move || {
            let mut seqs = Vec::new();
            let mut buf = [0u8; 256];
            while let Ok(m) = ippm_net::udp::recv_blocking(&rx, &mut buf) {
                seqs.push(SenderRepr::parse(&buf[..m.len], Layout::Open).unwrap().seq);
            }
            seqs
        });
        c.c.request_session(Instant::now(), &req).unwrap();
        assert!(matches!(c.event(), ClientEvent::SessionAccepted { .. }));
        c.c.start_sessions(Instant::now()).unwrap();
        assert_eq!(c.event(), ClientEvent::StartAck(Accept::Ok));
        std::thread::sleep(Duration::from_millis(20 + 7 * round));
        c.c.stop_sessions(
            Instant::now(),
            &StopSessionsRepr {
                accept: Accept::Ok,
                sessions: vec![],
            },
        )
        .unwrap();
        let next = match c.event() {
            ClientEvent::StopSessions(s) => s.sessions[0].next_seqno,
            other => panic!("{other:?}"),
        };
        let mut seen = vec![false; next as usize];
        let mut beyond = Vec::new();
        for seq in drain.join().unwrap() {
            match seen.get_mut(seq as usize) {
                Some(s) => *s = true,
                None => beyond.push(seq),
            }
        }
        assert!(next > 100, "round {round}: stopped after {next} packets");
        assert!(
            beyond.is_empty(),
            "round {round}: Next Seqno {next}, yet {beyond:?} came"
        );
        let missing = seen.iter().filter(|s| !**s).count();
        assert_eq!(missing, 0, "round {round}: {missing} of {next} never came");
    }
}
