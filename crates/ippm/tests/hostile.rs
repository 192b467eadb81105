//! Hostile peers against the real daemon: truncated, oversized, out-of-order and bad-HMAC
//! control messages, and junk test packets. Each is refused with a logged reason, and the
//! daemon keeps serving well-behaved clients throughout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use ippm_proto::session::ClientEvent;
use ippm_proto::wire::owamp::{FetchSessionRepr, TypeP};
use ippm_proto::wire::test::{Layout, PacketKind, ReflectorRepr, SenderRepr, TestProtection};
use ippm_proto::wire::twamp::RequestTwSessionRepr;
use ippm_proto::{ErrorEstimate, Protocol, SecurityMode, Timestamp};

mod common;
use common::ctl::Ctl;
use common::{Daemon, IPPM};

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads until the server closes the connection; returns what it sent.
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// A well-behaved client must still get service.
fn twping_works(d: &Daemon) {
    let out = Command::new(IPPM)
        .args([
            "twping",
            &d.addr.to_string(),
            "-c",
            "5",
            "-i",
            "0.001f",
            "-L",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("5 sent, 0 lost"));
}

fn request(port: u16) -> RequestTwSessionRepr {
    RequestTwSessionRepr {
        sender_port: port,
        receiver_port: 0,
        sender_address: "127.0.0.1".parse().unwrap(),
        receiver_address: "127.0.0.1".parse().unwrap(),
        padding_length: 64,
        start_time: Timestamp::ZERO,
        timeout: 1 << 32,
        type_p: TypeP(0),
        octets_to_reflect: 0,
        padding_to_reflect: 0,
    }
}

#[test]
fn hostile_control_and_test_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let keys = common::keyfile(dir.path());
    let log = dir.path().join("serve.log");
    let d = Daemon::start(
        "127.0.0.1:0",
        &["--keys", keys.to_str().unwrap()],
        Some(&log),
    );
    let addr: SocketAddr = d.addr.parse().unwrap();
    twping_works(&d);

    // Truncated: half a Set-Up-Response, then the client goes away.
    let mut s = connect(addr);
    let mut greeting = [0u8; 64];
    s.read_exact(&mut greeting).unwrap();
    s.write_all(&[0u8; 100]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    read_to_close(&mut s);

    // Out of order: a Request-TW-Session where the Set-Up-Response belongs. The server refuses
    // the mode with Server-Start Accept = 3 and closes.
    let mut s = connect(addr);
    s.read_exact(&mut greeting).unwrap();
    let mut junk = request(1).to_vec();
    junk.resize(164, 0);
    s.write_all(&junk).unwrap();
    let reply = read_to_close(&mut s);
    assert_eq!(reply.len(), 48, "one Server-Start, then close");
    assert_eq!(reply[15], 3);

    // Out of order after set-up: an OWAMP Fetch-Session on a TWAMP connection.
    let mut c = Ctl::new(&addr.to_string(), Protocol::Twamp, SecurityMode::Open);
    c.s.write_all(
        &FetchSessionRepr {
            sid: [0; 16],
            begin_seq: 0,
            end_seq: 1,
        }
        .to_vec(),
    )
    .unwrap();
    read_to_close(&mut c.s);

    // Oversized: a Stop-N-Sessions claiming 2^31 sessions.
    let mut c = Ctl::new(&addr.to_string(), Protocol::Twamp, SecurityMode::Open);
    let mut m = vec![0u8; 48];
    m[0] = 9;
    m[12..16].copy_from_slice(&(1u32 << 31).to_be_bytes());
    c.s.write_all(&m).unwrap();
    read_to_close(&mut c.s);

    // Bad HMAC: a Request-TW-Session with one bit flipped in flight.
    let mut c = Ctl::new(
        &addr.to_string(),
        Protocol::Twamp,
        SecurityMode::Authenticated,
    );
    c.c.request_tw_session(Instant::now(), &request(9)).unwrap();
    let mut wire = c.c.poll_transmit().unwrap();
    wire[20] ^= 0x04;
    c.s.write_all(&wire).unwrap();
    read_to_close(&mut c.s);

    twping_works(&d);

    // Junk test packets at a live reflector, then a real one: the junk is dropped with a log
    // line, the real packet is reflected.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut c = Ctl::new(
        &addr.to_string(),
        Protocol::Twamp,
        SecurityMode::Authenticated,
    );
    c.c.request_tw_session(Instant::now(), &request(udp.local_addr().unwrap().port()))
        .unwrap();
    let (sid, port) = match c.event() {
        ClientEvent::SessionAccepted { sid, port, .. } => (sid, port),
        other => panic!("{other:?}"),
    };
    c.c.start_sessions(Instant::now()).unwrap();
    assert!(matches!(c.event(), ClientEvent::StartAck(_)));
    let refl: SocketAddr = SocketAddr::new(addr.ip(), port);
    for junk in [vec![], vec![0xff; 3], vec![0x5a; 48], vec![0u8; 200]] {
        udp.send_to(&junk, refl).unwrap();
    }
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
    udp.send_to(&pkt, refl).unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = udp.recv_from(&mut buf).unwrap();
    assert_eq!(from, refl);
    let reply = &mut buf[..n];
    prot.unprotect(PacketKind::Reflector, reply).unwrap();
    let r = ReflectorRepr::parse(reply, Layout::Protected).unwrap();
    assert_eq!((r.sender_seq, r.seq), (7, 0), "junk was not reflected");
    assert_eq!(n, 112);

    twping_works(&d);
    drop(c);
    std::thread::sleep(Duration::from_millis(200));
    let log = std::fs::read_to_string(&log).unwrap();
    for reason in [
        "truncated message (peer closed the connection mid-message)",
        "client chose mode",
        "unexpected message",
        "above the limit",
        "HMAC check failed",
        "test packet failed its check, dropped",
    ] {
        assert!(
            log.contains(reason),
            "no log line for {reason:?} in:\n{log}"
        );
    }
}
