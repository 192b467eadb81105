//! Round trips (`Repr -> emit -> parse == Repr`) as property tests for every control message,
//! emit into junk-filled buffers, and the framing rules the state machines rely on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ippm_proto::schedule::Slot;
use ippm_proto::wire::owamp::{
    self, AcceptSessionRepr, DataRecord, FetchAckRepr, FetchSessionRepr, MAX_SCHEDULE_SLOTS,
    RequestSessionRepr, SkipRange, StartAckRepr, StopSession, StopSessionsRepr, TypeP,
};
use ippm_proto::wire::twamp::{
    RequestTwSessionRepr, StartNAckRepr, StartNSessionsRepr, StopNAckRepr, StopNSessionsRepr,
    TwStopSessionsRepr,
};
use ippm_proto::{Accept, ErrorEstimate, Timestamp, WireError};
use proptest::prelude::*;

fn addr_pair() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<[u8; 4]>())
            .prop_map(|(a, b)| (IpAddr::V4(Ipv4Addr::from(a)), IpAddr::V4(Ipv4Addr::from(b)))),
        (any::<[u8; 16]>(), any::<[u8; 16]>())
            .prop_map(|(a, b)| (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)))),
    ]
}

fn slot() -> impl Strategy<Value = Slot> {
    prop_oneof![
        any::<u64>().prop_map(Slot::Exponential),
        any::<u64>().prop_map(Slot::Fixed)
    ]
}

prop_compose! {
    fn request_session()(
        (sender_address, receiver_address) in addr_pair(),
        conf_sender: bool, num_packets: u32, sender_port: u16, receiver_port: u16,
        sid: [u8; 16], padding_length: u32, start: u64, timeout: u64, type_p: u32,
        slots in prop::collection::vec(slot(), 0..8),
    ) -> RequestSessionRepr {
        RequestSessionRepr {
            conf_sender,
            conf_receiver: !conf_sender,
            num_packets,
            sender_port,
            receiver_port,
            sender_address,
            receiver_address,
            sid,
            padding_length,
            start_time: Timestamp::from_bits(start),
            timeout,
            type_p: TypeP(type_p),
            slots,
        }
    }
}

prop_compose! {
    fn stop_sessions()(accept: u8, sessions in prop::collection::vec(
        (any::<[u8; 16]>(), any::<u32>(), prop::collection::vec(any::<(u32, u32)>(), 0..5)), 0..4)
    ) -> StopSessionsRepr {
        StopSessionsRepr {
            accept: Accept::from(accept),
            sessions: sessions.into_iter().map(|(sid, next_seqno, r)| StopSession {
                sid,
                next_seqno,
                skip_ranges: r.into_iter().map(|(first, last)| SkipRange { first, last }).collect(),
            }).collect(),
        }
    }
}

fn emit_junk(len: usize, emit: impl FnOnce(&mut [u8]) -> Result<(), WireError>) -> Vec<u8> {
    let mut b = vec![0xa5; len];
    emit(&mut b).unwrap();
    b
}

proptest! {
    #[test]
    fn request_session_round_trip(r in request_session()) {
        let b = emit_junk(r.buffer_len(), |b| r.emit(b));
        prop_assert_eq!(&b, &r.to_vec());
        prop_assert_eq!(RequestSessionRepr::required_len(&b[..8]).unwrap(), b.len());
        prop_assert_eq!(RequestSessionRepr::parse(&b).unwrap(), r);
        let short = matches!(RequestSessionRepr::parse(&b[..b.len() - 1]), Err(WireError::Truncated(_)));
        prop_assert!(short);
        let mut longer = b.clone();
        longer.push(0);
        prop_assert_eq!(RequestSessionRepr::parse(&longer), Err(WireError::TrailingData("Request-Session")));
    }

    #[test]
    fn request_tw_session_round_trip(
        (sender_address, receiver_address) in addr_pair(), sp: u16, rp: u16, pad: u32,
        start: u64, timeout: u64, type_p: u32, o: u16, l: u16,
    ) {
        let r = RequestTwSessionRepr {
            sender_port: sp, receiver_port: rp, sender_address, receiver_address,
            padding_length: pad, start_time: Timestamp::from_bits(start), timeout,
            type_p: TypeP(type_p), octets_to_reflect: o, padding_to_reflect: l,
        };
        let b = emit_junk(r.buffer_len(), |b| r.emit(b));
        prop_assert_eq!(RequestTwSessionRepr::parse(&b).unwrap(), r);
    }

    #[test]
    fn stop_sessions_round_trip(r in stop_sessions()) {
        let b = emit_junk(r.buffer_len(), |b| r.emit(b));
        prop_assert_eq!(b.len() % 16, 0);
        // required_len grows to the exact length as the message arrives, block by block.
        let mut prev = 0;
        for n in (0..=b.len()).step_by(16) {
            let need = StopSessionsRepr::required_len(&b[..n]).unwrap();
            prop_assert!(need >= prev && need <= b.len() && (need > n || n == b.len()));
            prev = need;
        }
        prop_assert_eq!(prev, b.len());
        prop_assert_eq!(StopSessionsRepr::parse(&b).unwrap(), r);
    }

    #[test]
    fn fixed_messages_round_trip(accept: u8, port: u16, sid: [u8; 16], ro: u16, so: u16,
                                 b1: u32, b2: u32, fin: bool, n1 in 0u32..1000, n2 in 0u32..1000) {
        let a = AcceptSessionRepr { accept: Accept::from(accept), port, sid, reflected_octets: ro, server_octets: so };
        prop_assert_eq!(AcceptSessionRepr::parse(&emit_junk(48, |b| a.emit(b))).unwrap(), a);
        let s = StartAckRepr { accept: Accept::from(accept) };
        prop_assert_eq!(StartAckRepr::parse(&emit_junk(32, |b| s.emit(b))).unwrap(), s);
        let f = FetchSessionRepr { sid, begin_seq: b1, end_seq: b2 };
        prop_assert_eq!(FetchSessionRepr::parse(&emit_junk(48, |b| f.emit(b))).unwrap(), f);
        let k = FetchAckRepr { accept: Accept::from(accept), finished: fin, next_seqno: b1, num_skip_ranges: n1, num_records: n2 };
        prop_assert_eq!(FetchAckRepr::parse(&emit_junk(32, |b| k.emit(b))).unwrap(), k);
        let t = TwStopSessionsRepr { accept: Accept::from(accept), num_sessions: b1 };
        prop_assert_eq!(TwStopSessionsRepr::parse(&emit_junk(32, |b| t.emit(b))).unwrap(), t);
    }

    #[test]
    fn n_sessions_round_trip(accept: u8, sids in prop::collection::vec(any::<[u8; 16]>(), 1..6)) {
        let a = Accept::from(accept);
        let m = StartNSessionsRepr { sids: sids.clone() }.to_vec();
        prop_assert_eq!(StartNSessionsRepr::required_len(&m[..16]).unwrap(), m.len());
        prop_assert_eq!(StartNSessionsRepr::parse(&m).unwrap().sids, sids.clone());
        prop_assert_eq!(StartNAckRepr::parse(&StartNAckRepr { accept: a, sids: sids.clone() }.to_vec()).unwrap(), StartNAckRepr { accept: a, sids: sids.clone() });
        prop_assert_eq!(StopNSessionsRepr::parse(&StopNSessionsRepr { sids: sids.clone() }.to_vec()).unwrap().sids, sids.clone());
        prop_assert_eq!(StopNAckRepr::parse(&StopNAckRepr { accept: a, sids: sids.clone() }.to_vec()).unwrap(), StopNAckRepr { accept: a, sids });
        // A Start-N-Sessions is not a Stop-N-Sessions.
        let wrong = matches!(StopNSessionsRepr::parse(&m), Err(WireError::InvalidValue { .. }));
        prop_assert!(wrong);
    }

    #[test]
    fn fetch_parts_round_trip(ranges in prop::collection::vec(any::<(u32, u32)>(), 0..9),
                              recs in prop::collection::vec(any::<(u32, u16, u16, u64, u64, u8)>(), 0..9)) {
        let ranges: Vec<SkipRange> = ranges.into_iter().map(|(first, last)| SkipRange { first, last }).collect();
        let b = owamp::emit_skip_ranges(&ranges);
        prop_assert_eq!(b.len(), owamp::skip_ranges_len(ranges.len() as u32).unwrap());
        prop_assert_eq!(owamp::parse_skip_ranges(&b, ranges.len() as u32).unwrap(), ranges);
        let recs: Vec<DataRecord> = recs.into_iter().map(|(seq, se, re, st, rt, ttl)| DataRecord {
            seq, send_error: ErrorEstimate::from_bits(se), recv_error: ErrorEstimate::from_bits(re),
            send_time: Timestamp::from_bits(st), recv_time: Timestamp::from_bits(rt), ttl,
        }).collect();
        let b = owamp::emit_records(&recs);
        prop_assert_eq!(b.len() % 16, 0);
        prop_assert_eq!(owamp::parse_records(&b, recs.len() as u32).unwrap(), recs);
    }
}

#[test]
fn hostile_counts_fail_before_the_body() {
    let mut h = vec![0u8; 16];
    h[0] = 1;
    h[4..8].copy_from_slice(&(MAX_SCHEDULE_SLOTS + 1).to_be_bytes());
    assert!(matches!(
        RequestSessionRepr::required_len(&h),
        Err(WireError::TooLarge { .. })
    ));
    h[4..8].copy_from_slice(&MAX_SCHEDULE_SLOTS.to_be_bytes());
    assert_eq!(
        RequestSessionRepr::required_len(&h).unwrap(),
        112 + 16 * 4096 + 16
    );
    // Stop-Sessions: too many sessions, then too many skip ranges in a record.
    let mut s = vec![0u8; 40];
    s[0] = 3;
    s[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        StopSessionsRepr::required_len(&s),
        Err(WireError::TooLarge { .. })
    ));
    s[4..8].copy_from_slice(&1u32.to_be_bytes());
    s[36..40].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        StopSessionsRepr::required_len(&s),
        Err(WireError::TooLarge { .. })
    ));
    // RFC 5938: zero sessions is invalid, too many is refused.
    let mut n = vec![0u8; 16];
    n[0] = 7;
    assert!(matches!(
        StartNSessionsRepr::required_len(&n),
        Err(WireError::InvalidValue { .. })
    ));
    n[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        StartNSessionsRepr::required_len(&n),
        Err(WireError::TooLarge { .. })
    ));
    assert!(owamp::records_len(u32::MAX).is_err());
    assert!(owamp::skip_ranges_len(u32::MAX).is_err());
    let mut ack = [0u8; 32];
    ack[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        FetchAckRepr::parse(&ack),
        Err(WireError::TooLarge { .. })
    ));
}

#[test]
fn bad_values_are_typed_errors() {
    let mut r = RequestSessionRepr::parse(&request_bytes())
        .unwrap()
        .to_vec();
    r[1] = 5; // IPVN 5
    assert!(matches!(
        RequestSessionRepr::parse(&r),
        Err(WireError::InvalidValue {
            field: "Request-Session.IPVN",
            value: 5
        })
    ));
    let mut r = request_bytes();
    r[112] = 2; // slot type 2
    assert!(matches!(
        RequestSessionRepr::parse(&r),
        Err(WireError::InvalidValue { .. })
    ));
    let mut r = request_bytes();
    r[2] = 7; // Conf-Sender not 0 or 1
    assert!(matches!(
        RequestSessionRepr::parse(&r),
        Err(WireError::InvalidValue { .. })
    ));
    let mut r = request_bytes();
    r[0] = 2;
    assert!(matches!(
        RequestSessionRepr::parse(&r),
        Err(WireError::InvalidValue { .. })
    ));
    // Emit into a short buffer is an error, never a panic.
    let req = RequestSessionRepr::parse(&request_bytes()).unwrap();
    assert_eq!(
        req.emit(&mut [0u8; 100]),
        Err(WireError::BufferTooSmall("Request-Session"))
    );
}

fn request_bytes() -> Vec<u8> {
    RequestSessionRepr {
        conf_sender: false,
        conf_receiver: true,
        num_packets: 5,
        sender_port: 1,
        receiver_port: 0,
        sender_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        receiver_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        sid: [0; 16],
        padding_length: 0,
        start_time: Timestamp::ZERO,
        timeout: 0,
        type_p: TypeP(0),
        slots: vec![Slot::Exponential(0x1999_99a0)],
    }
    .to_vec()
}
