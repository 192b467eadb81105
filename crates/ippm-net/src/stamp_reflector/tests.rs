//! The reflector on a real engine and real sockets, driven by a sender built from
//! `ippm_proto::stamp` (build_sender, seal, open_reflected).

use std::net::UdpSocket;

use ippm_proto::stamp::{TlvIntegrity, build_sender, open_reflected};
use ippm_proto::wire::stamp::SenderRepr;
use ippm_proto::wire::stamp_tlv::{ClassOfService, DirectMeasurement, TlvRepr, TlvType};
use ippm_proto::{ErrorEstimate, Timestamp};

use super::*;

fn key(b: u8) -> Arc<StampKey> {
    Arc::new(StampKey::new(&[b; 32]).unwrap())
}

struct Sender {
    sock: UdpSocket,
    to: SocketAddr,
    mode: StampMode,
    key: Option<Arc<StampKey>>,
    ssid: u16,
}

impl Sender {
    fn new(local: &str, to: SocketAddr, mode: StampMode, key: Option<Arc<StampKey>>) -> Self {
        let sock = crate::udp::blocking_socket(local.parse().unwrap()).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        Self {
            sock,
            to,
            mode,
            key,
            ssid: 7,
        }
    }

    /// Sends packet `seq` with `tlvs`.
    fn send(&self, seq: u32, tlvs: &[TlvRepr<'_>]) {
        let mut buf = [0u8; 1500];
        let repr = SenderRepr {
            seq,
            timestamp: Timestamp::ZERO,
            error_estimate: ErrorEstimate::from_duration(false, Duration::from_millis(1)),
            ssid: self.ssid,
        };
        let s = build_sender(&mut buf, self.mode, &repr, tlvs, self.key.as_deref()).unwrap();
        seal(&mut buf, &s, self.key.as_deref(), clock::now()).unwrap();
        self.sock.send_to(&buf[..s.len], self.to).unwrap();
    }

    /// The next reply's octets, or `None` after the timeout.
    fn recv(&self) -> Option<(Vec<u8>, RecvMeta)> {
        let mut buf = [0u8; 2048];
        let m = crate::udp::recv_blocking(&self.sock, &mut buf).ok()?;
        Some((buf[..m.len].to_vec(), m))
    }
}

fn start(opts: &StampReflectorOptions, listen: &str) -> (StampReflector, Engine) {
    let engine = Engine::start(2).unwrap();
    let r = StampReflector::start(&engine, listen.parse().unwrap(), opts).unwrap();
    (r, engine)
}

#[test]
fn stateful_sequence_numbers_per_session_and_stateless_copies() {
    for stateful in [true, false] {
        let opts = StampReflectorOptions {
            stateful,
            ..Default::default()
        };
        let (r, _e) = start(&opts, "127.0.0.1:0");
        let a = Sender::new(
            "127.0.0.1:0",
            r.local_addr(),
            StampMode::Unauthenticated,
            None,
        );
        let mut b = Sender::new(
            "127.0.0.1:0",
            r.local_addr(),
            StampMode::Unauthenticated,
            None,
        );
        b.ssid = 9;
        // a sends 100, 101, 105 (two lost on the way); b 0, 1.
        for (s, seq) in [(&a, 100), (&b, 0), (&a, 101), (&b, 1), (&a, 105)] {
            s.send(seq, &[]);
            let (pkt, m) = s.recv().expect("a reply");
            let got = open_reflected(&pkt, StampMode::Unauthenticated, None).unwrap();
            assert_eq!(got.repr.sender_seq, seq);
            assert_eq!(got.repr.ssid, s.ssid);
            assert_eq!(m.ttl, Some(255), "replies leave with TTL 255");
            assert_eq!(got.repr.sender_ttl, 255);
            assert!(got.repr.receive_timestamp <= got.repr.timestamp);
            let expect = match (stateful, s.ssid, seq) {
                (false, _, seq) => seq,
                (true, 7, 100) => 0,
                (true, 7, 101) => 1,
                (true, 7, 105) => 2,
                (true, _, seq) => seq,
            };
            assert_eq!(got.repr.seq, expect, "stateful={stateful} {seq}");
        }
        assert_eq!(opts.stats.reflected.get(), 5);
        let held = opts.stats.sessions.get();
        assert_eq!(held, if stateful { 2 } else { 0 });
        drop(r);
    }
}

#[test]
fn authenticated_mode_and_a_wrong_key() {
    let opts = StampReflectorOptions {
        mode: StampMode::Authenticated,
        key: Some(key(1)),
        ..Default::default()
    };
    let (r, _e) = start(&opts, "[::1]:0");
    let good = Sender::new(
        "[::1]:0",
        r.local_addr(),
        StampMode::Authenticated,
        Some(key(1)),
    );
    good.send(0, &[]);
    let (pkt, _) = good.recv().expect("a reply");
    assert_eq!(pkt.len(), 112);
    let got = open_reflected(&pkt, StampMode::Authenticated, Some(&key(1))).unwrap();
    assert_eq!(got.repr.sender_seq, 0);
    assert!(
        open_reflected(&pkt, StampMode::Authenticated, Some(&key(2))).is_err(),
        "the reply's HMAC is the key's"
    );
    // A wrong key, an unauthenticated packet: not answered, and no session made.
    let bad = Sender::new(
        "[::1]:0",
        r.local_addr(),
        StampMode::Authenticated,
        Some(key(2)),
    );
    bad.send(0, &[]);
    assert!(bad.recv().is_none());
    let open = Sender::new("[::1]:0", r.local_addr(), StampMode::Unauthenticated, None);
    open.send(0, &[]);
    assert!(open.recv().is_none());
    assert_eq!(opts.stats.sessions.get(), 1);
    // The good sender still is.
    good.send(1, &[]);
    let (pkt, _) = good.recv().expect("a reply");
    let got = open_reflected(&pkt, StampMode::Authenticated, Some(&key(1))).unwrap();
    assert_eq!((got.repr.sender_seq, got.repr.seq), (1, 1));
}

#[test]
fn per_prefix_keys_and_the_allow_list() {
    let opts = StampReflectorOptions {
        allow: vec!["127.0.0.0/30".parse().unwrap()],
        peers: vec![StampPeer {
            prefix: "127.0.0.2/32".parse().unwrap(),
            mode: StampMode::Authenticated,
            key: Some(key(3)),
        }],
        ..Default::default()
    };
    let (r, _e) = start(&opts, "0.0.0.0:0");
    let to = |ip: &str| SocketAddr::new(ip.parse().unwrap(), r.local_addr().port());
    // 127.0.0.1: the default, open.
    let open = Sender::new(
        "127.0.0.1:0",
        to("127.0.0.1"),
        StampMode::Unauthenticated,
        None,
    );
    open.send(0, &[]);
    assert!(open.recv().is_some());
    // 127.0.0.2: its own key; open packets from it are not answered.
    let keyed = Sender::new(
        "127.0.0.2:0",
        to("127.0.0.3"),
        StampMode::Authenticated,
        Some(key(3)),
    );
    keyed.send(0, &[]);
    let (pkt, m) = keyed.recv().expect("a reply");
    assert_eq!(m.from, to("127.0.0.3"), "from the address it was sent to");
    open_reflected(&pkt, StampMode::Authenticated, Some(&key(3))).unwrap();
    let keyed_open = Sender::new(
        "127.0.0.2:0",
        to("127.0.0.1"),
        StampMode::Unauthenticated,
        None,
    );
    keyed_open.send(0, &[]);
    assert!(keyed_open.recv().is_none());
    // 127.0.0.9: outside the list, counted, not answered.
    let before = STAMP_NOT_ALLOWED.count();
    let outsider = Sender::new(
        "127.0.0.9:0",
        to("127.0.0.1"),
        StampMode::Unauthenticated,
        None,
    );
    for seq in 0..50 {
        outsider.send(seq, &[]);
    }
    assert!(outsider.recv().is_none());
    assert!(STAMP_NOT_ALLOWED.count() >= before + 50);
}

#[test]
fn twamp_light_senders_get_the_base_packet() {
    let (r, _e) = start(&StampReflectorOptions::default(), "127.0.0.1:0");
    let s = Sender::new(
        "127.0.0.1:0",
        r.local_addr(),
        StampMode::Unauthenticated,
        None,
    );
    // A TWAMP-Light sender's 14-octet header and no padding (RFC 8762 §4.6).
    let mut pkt = [0u8; 14];
    pkt[..4].copy_from_slice(&5u32.to_be_bytes());
    s.sock.send_to(&pkt, r.local_addr()).unwrap();
    let (reply, _) = s.recv().expect("a reply");
    assert_eq!(reply.len(), 44);
    let got = open_reflected(&reply, StampMode::Unauthenticated, None).unwrap();
    assert_eq!((got.repr.sender_seq, got.repr.seq), (5, 0));
}

#[test]
fn tlvs_answered_class_of_service_applied_and_counters_per_session() {
    let opts = StampReflectorOptions {
        // DSCP 46 may be asked for, 10 may not.
        permitted_dscp: 1 << 46,
        ..Default::default()
    };
    let (r, _e) = start(&opts, "127.0.0.1:0");
    let s = Sender::new(
        "127.0.0.1:0",
        r.local_addr(),
        StampMode::Unauthenticated,
        None,
    );
    crate::udp::set_dscp_blocking(&s.sock, 12).unwrap();
    let dm = |n| {
        TlvRepr::DirectMeasurement(DirectMeasurement {
            s_txc: n,
            r_rxc: 0,
            r_txc: 0,
        })
    };
    for (seq, dscp1, reply_dscp) in [(0u32, 46u8, 46u8), (1, 10, 12)] {
        let cos = TlvRepr::ClassOfService(ClassOfService {
            dscp1,
            dscp2: 0,
            ecn: 0,
            rp: 0,
        });
        s.send(seq, &[cos, dm(seq + 1)]);
        let (pkt, m) = s.recv().expect("a reply");
        assert_eq!(m.tos.map(|t| t >> 2), Some(reply_dscp), "DSCP1 {dscp1}");
        let got = open_reflected(&pkt, StampMode::Unauthenticated, None).unwrap();
        assert_eq!(got.tlv_integrity, TlvIntegrity::Unprotected);
        let tlvs: Vec<_> = got.usable_tlvs().collect();
        assert_eq!(tlvs.len(), 2, "both understood, none flagged");
        match TlvRepr::parse(&tlvs[0]).unwrap() {
            TlvRepr::ClassOfService(c) => {
                assert_eq!(c.dscp2, 12, "the DSCP it arrived with");
                assert_eq!(c.rp, u8::from(dscp1 != 46), "RP says DSCP1 was not used");
            }
            other => panic!("{other:?}"),
        }
        match TlvRepr::parse(&tlvs[1]).unwrap() {
            TlvRepr::DirectMeasurement(d) => {
                assert_eq!(d.s_txc, seq + 1);
                assert_eq!((d.r_rxc, d.r_txc), (seq + 1, seq), "this session's counts");
            }
            other => panic!("{other:?}"),
        }
    }
    // An unknown TLV comes back with U set; a Follow-Up Telemetry TLV reports the previous
    // reply's real send time.
    let unknown = TlvRepr::Unknown(TlvType(200), &[1, 2, 3, 4]);
    let fu = TlvRepr::FollowUpTelemetry(FollowUpTelemetry {
        seq: 0,
        timestamp: Timestamp::ZERO,
        mode: TimestampMethod(0),
    });
    s.send(2, &[unknown, fu]);
    let (pkt, _) = s.recv().expect("a reply");
    let got = open_reflected(&pkt, StampMode::Unauthenticated, None).unwrap();
    let all: Vec<_> = got.tlvs().map(Result::unwrap).collect();
    assert!(
        all[0]
            .flags
            .contains(ippm_proto::wire::stamp_tlv::TlvFlags::U)
    );
    match TlvRepr::parse(&all[1]).unwrap() {
        TlvRepr::FollowUpTelemetry(f) => {
            assert_eq!(f.seq, 1, "the previous reply");
            assert_eq!(f.mode, TimestampMethod::SW_LOCAL);
            assert!(f.timestamp > Timestamp::ZERO, "a kernel transmit stamp");
            assert!(f.timestamp < got.repr.timestamp);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn junk_and_floods_are_counted_not_answered_and_others_still_served() {
    let opts = StampReflectorOptions {
        rate_per_source: 50,
        ..Default::default()
    };
    let (r, _e) = start(&opts, "127.0.0.1:0");
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    junk.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let before = TEST_PACKET_BAD.count();
    // Shorter than a TWAMP-Light header; TLV lengths past the end are answered with M set,
    // which the TLV tests cover; here: what cannot be read at all.
    for n in 0..14 {
        junk.send_to(&vec![0xff; n], r.local_addr()).unwrap();
    }
    let mut buf = [0u8; 128];
    assert!(junk.recv_from(&mut buf).is_err(), "nothing answered");
    assert!(TEST_PACKET_BAD.count() >= before + 13);
    // A flood from one source: 50 answered in its first second.
    let flood = Sender::new(
        "127.0.0.1:0",
        r.local_addr(),
        StampMode::Unauthenticated,
        None,
    );
    for seq in 0..500 {
        flood.send(seq, &[]);
    }
    let mut answered = 0;
    while flood.recv().is_some() {
        answered += 1;
    }
    assert!((50..=60).contains(&answered), "{answered}");
    // Another source is answered meanwhile.
    let other = Sender::new(
        "127.0.0.2:0",
        r.local_addr(),
        StampMode::Unauthenticated,
        None,
    );
    other.send(0, &[]);
    assert!(other.recv().is_some());
}
