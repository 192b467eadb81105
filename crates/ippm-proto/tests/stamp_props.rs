//! STAMP property tests: `Repr -> emit -> parse == Repr` for both base packets in both modes
//! and for every TLV; the reflector and the sender-side parser on arbitrary bytes (no panic,
//! the reply keeps the sender's size and TLV boundaries); and sender -> reflector -> sender
//! round trips with random TLV lists, with and without a key.

use std::net::{Ipv4Addr, Ipv6Addr};

use ippm_proto::stamp::{
    self, Received, ReflectorConfig, ReflectorTlvInputs, StampKey, TlvIntegrity,
};
use ippm_proto::wire::stamp::{ReflectorRepr, SenderRepr, StampMode};
use ippm_proto::wire::stamp_tlv::{
    AccessId, AccessReport, ClassOfService, DirectMeasurement, FollowUpTelemetry, Location,
    LocationSub, LocationSubTlv, ReturnCode, SubTlvType, SyncSource, TimestampInfo,
    TimestampMethod, TlvFlags, TlvRepr, TlvType, Tlvs,
};
use ippm_proto::{ErrorEstimate, Timestamp};
use proptest::prelude::*;

fn mode() -> impl Strategy<Value = StampMode> {
    prop_oneof![
        Just(StampMode::Unauthenticated),
        Just(StampMode::Authenticated)
    ]
}

prop_compose! {
    fn sender()(seq: u32, ts: u64, err: u16, ssid: u16) -> SenderRepr {
        SenderRepr {
            seq,
            timestamp: Timestamp::from_bits(ts),
            error_estimate: ErrorEstimate::from_bits(err),
            ssid,
        }
    }
}

prop_compose! {
    fn reflector()(seq: u32, ts: u64, err: u16, ssid: u16, rts: u64, sseq: u32, sts: u64,
                   serr: u16, ttl: u8) -> ReflectorRepr {
        ReflectorRepr {
            seq,
            timestamp: Timestamp::from_bits(ts),
            error_estimate: ErrorEstimate::from_bits(err),
            ssid,
            receive_timestamp: Timestamp::from_bits(rts),
            sender_seq: sseq,
            sender_timestamp: Timestamp::from_bits(sts),
            sender_error_estimate: ErrorEstimate::from_bits(serr),
            sender_ttl: ttl,
        }
    }
}

/// Owned material a `TlvRepr` borrows from.
#[derive(Debug, Clone)]
enum Tlv {
    Padding(Vec<u8>),
    Location(u16, u16, Vec<(u8, u8, Vec<u8>)>),
    TsInfo([u8; 4], Vec<(u8, u8, Vec<u8>)>),
    Cos(u8, u8, u8, u8),
    Dm(u32, u32, u32),
    Ar(bool, u8),
    Fu(u32, u64, u8),
    Hmac([u8; 16]),
    Unknown(u8, Vec<u8>),
}

fn sub_tlv() -> impl Strategy<Value = (u8, u8, Vec<u8>)> {
    (
        any::<u8>(),
        prop_oneof![0x01u8..=0x09, 0x0au8..=0xff],
        prop::collection::vec(any::<u8>(), 0..20),
    )
}

fn tlv() -> impl Strategy<Value = Tlv> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Tlv::Padding),
        (
            any::<u16>(),
            any::<u16>(),
            prop::collection::vec(sub_tlv(), 0..4)
        )
            .prop_map(|(d, s, subs)| Tlv::Location(d, s, subs)),
        (any::<[u8; 4]>(), prop::collection::vec(sub_tlv(), 0..3))
            .prop_map(|(f, subs)| Tlv::TsInfo(f, subs)),
        (0u8..64, 0u8..64, 0u8..4, 0u8..4).prop_map(|(a, b, c, d)| Tlv::Cos(a, b, c, d)),
        any::<(u32, u32, u32)>().prop_map(|(a, b, c)| Tlv::Dm(a, b, c)),
        any::<(bool, u8)>().prop_map(|(a, b)| Tlv::Ar(a, b)),
        any::<(u32, u64, u8)>().prop_map(|(a, b, c)| Tlv::Fu(a, b, c)),
        any::<[u8; 16]>().prop_map(Tlv::Hmac),
        (0x09u8..=0xff, prop::collection::vec(any::<u8>(), 0..30))
            .prop_map(|(t, v)| Tlv::Unknown(t, v)),
    ]
}

/// A Location sub-TLV from arbitrary material: known types get their valid length.
fn location_sub(typ: u8, v: &[u8]) -> LocationSub<'_> {
    let mut a16 = [0u8; 16];
    for (d, s) in a16.iter_mut().zip(v) {
        *d = *s;
    }
    let mut m8 = [0u8; 8];
    m8.copy_from_slice(&a16[..8]);
    let mut m6 = [0u8; 6];
    m6.copy_from_slice(&a16[..6]);
    let v4 = Ipv4Addr::new(a16[0], a16[1], a16[2], a16[3]);
    match typ {
        1 => LocationSub::SourceMac,
        2 => LocationSub::SourceEui48(m6),
        3 => LocationSub::SourceEui64(m8),
        4 => LocationSub::DestinationIp,
        5 => LocationSub::DestinationIpv4(v4),
        6 => LocationSub::DestinationIpv6(Ipv6Addr::from(a16)),
        7 => LocationSub::SourceIp,
        8 => LocationSub::SourceIpv4(v4),
        9 => LocationSub::SourceIpv6(Ipv6Addr::from(a16)),
        t => LocationSub::Unknown(SubTlvType(t), v),
    }
}

impl Tlv {
    /// The repr, and raw sub-TLV octets it may need (Timestamp Information's).
    fn repr<'a>(&'a self, scratch: &'a mut Vec<u8>) -> TlvRepr<'a> {
        match self {
            Self::Padding(v) => TlvRepr::ExtraPadding(v),
            Self::Location(d, s, subs) => TlvRepr::Location(Location {
                dst_port: *d,
                src_port: *s,
                subs: subs
                    .iter()
                    .map(|(f, t, v)| LocationSubTlv {
                        flags: TlvFlags(*f),
                        sub: location_sub(*t, v),
                    })
                    .collect(),
            }),
            Self::TsInfo(f, subs) => {
                for (fl, t, v) in subs {
                    scratch.extend([*fl, *t]);
                    scratch.extend((v.len() as u16).to_be_bytes());
                    scratch.extend(v);
                }
                TlvRepr::TimestampInfo(
                    TimestampInfo {
                        sync_in: SyncSource(f[0]),
                        method_in: TimestampMethod(f[1]),
                        sync_out: SyncSource(f[2]),
                        method_out: TimestampMethod(f[3]),
                    },
                    scratch,
                )
            }
            Self::Cos(a, b, c, d) => TlvRepr::ClassOfService(ClassOfService {
                dscp1: *a,
                dscp2: *b,
                ecn: *c,
                rp: *d,
            }),
            Self::Dm(a, b, c) => TlvRepr::DirectMeasurement(DirectMeasurement {
                s_txc: *a,
                r_rxc: *b,
                r_txc: *c,
            }),
            Self::Ar(a, b) => TlvRepr::AccessReport(AccessReport {
                id: if *a {
                    AccessId::ThreeGpp
                } else {
                    AccessId::NonThreeGpp
                },
                return_code: ReturnCode(*b),
            }),
            Self::Fu(a, b, c) => TlvRepr::FollowUpTelemetry(FollowUpTelemetry {
                seq: *a,
                timestamp: Timestamp::from_bits(*b),
                mode: TimestampMethod(*c),
            }),
            Self::Hmac(h) => TlvRepr::Hmac(*h),
            Self::Unknown(t, v) => TlvRepr::Unknown(TlvType(*t), v),
        }
    }
}

fn key() -> StampKey {
    StampKey::new(b"a STAMP test key of 32 octets...").unwrap()
}

proptest! {
    #[test]
    fn sender_round_trip(r in sender(), m in mode(), extra in 0usize..20) {
        let mut b = vec![0xa5; m.base_len() + extra];
        r.emit(&mut b, m).unwrap();
        prop_assert_eq!(SenderRepr::parse(&b, m).unwrap(), r);
        prop_assert!(b[m.base_len()..].iter().all(|&x| x == 0xa5));
    }

    #[test]
    fn reflector_round_trip(r in reflector(), m in mode()) {
        let mut b = vec![0xa5; m.base_len()];
        r.emit(&mut b, m).unwrap();
        prop_assert_eq!(ReflectorRepr::parse(&b, m).unwrap(), r);
    }

    #[test]
    fn tlv_round_trip(t in tlv(), flags: u8) {
        let mut scratch = Vec::new();
        let repr = t.repr(&mut scratch);
        let mut b = vec![0xa5; repr.buffer_len()];
        prop_assert_eq!(repr.emit(&mut b, TlvFlags(flags)).unwrap(), b.len());
        let items: Vec<_> = Tlvs::new(&b).collect();
        prop_assert_eq!(items.len(), 1);
        let got = items[0].unwrap();
        prop_assert_eq!(got.flags, TlvFlags(flags));
        prop_assert_eq!(got.tlv_type(), repr.tlv_type());
        prop_assert_eq!(&TlvRepr::parse(&got).unwrap(), &repr);
        // Too small a buffer is an error, not a panic.
        let n = b.len() - 1;
        prop_assert!(repr.emit(&mut b[..n], TlvFlags(flags)).is_err());
    }

    /// Arbitrary octets: the reflector never panics; an accepted packet gets a reply of its own
    /// size (or the base size), and a well-formed TLV area comes back with the same TLV
    /// boundaries.
    #[test]
    fn reflect_arbitrary(pkt in prop::collection::vec(any::<u8>(), 0..300), sel: u8,
                         seq: Option<u32>) {
        let k = key();
        let m = if sel & 1 == 0 { StampMode::Unauthenticated } else { StampMode::Authenticated };
        let cfg = ReflectorConfig {
            mode: m,
            key: (sel & 2 != 0).then_some(&k),
            extensions: sel & 4 != 0,
            error_estimate: ErrorEstimate::from_bits(1),
        };
        let rx = Received {
            packet: &pkt,
            receive_time: Timestamp::from_bits(5),
            ttl: None,
            dscp: sel >> 2,
            ecn: sel & 3,
        };
        let inputs = ReflectorTlvInputs { permitted_dscp: u64::MAX, ..Default::default() };
        let mut tx = vec![0xa5; 400];
        if let Ok(r) = stamp::reflect_layout(&cfg, &rx, seq, &inputs, &mut tx) {
            prop_assert_eq!(r.sealing.len, pkt.len().max(m.base_len()));
            let reply = &tx[..r.sealing.len];
            ReflectorRepr::parse(reply, m).unwrap();
            let (a, b) = (&pkt[m.base_len().min(pkt.len())..], &reply[m.base_len()..]);
            if Tlvs::new(a).is_well_formed() {
                let ia: Vec<_> = Tlvs::new(a).map(|t| t.unwrap()).map(|t| (t.offset, t.len()))
                    .collect();
                let ib: Vec<_> = Tlvs::new(b).map(|t| t.unwrap()).map(|t| (t.offset, t.len()))
                    .collect();
                prop_assert_eq!(ia, ib);
            }
            let mut tx2 = tx.clone();
            let sealed = stamp::seal(&mut tx2, &r.sealing, cfg.key, Timestamp::from_bits(9));
            if sealed.is_ok() {
                let got = stamp::open_reflected(&tx2[..r.sealing.len], m, cfg.key);
                prop_assert!(got.is_ok());
                let _ = got.unwrap().usable_tlvs().count();
            }
        }
        if let Ok(got) = stamp::open_reflected(&pkt, m, cfg.key) {
            let _ = got.usable_tlvs().count();
        }
    }

    /// Sender -> reflector -> sender with random TLVs: the base fields carry through, the
    /// reply keeps the size, and with a key the TLVs verify at both ends.
    #[test]
    fn sender_reflector_round_trip(s in sender(), m in mode(), tlvs in
                                   prop::collection::vec(tlv(), 0..5), use_key: bool,
                                   seq: Option<u32>) {
        let k = key();
        let key = (use_key || m == StampMode::Authenticated).then_some(&k);
        // The HMAC TLV is `build_sender`'s to place.
        let tlvs: Vec<_> = tlvs.into_iter().filter(|t| !matches!(t, Tlv::Hmac(_))).collect();
        let mut scratch: Vec<Vec<u8>> = vec![Vec::new(); tlvs.len()];
        let reprs: Vec<_> = tlvs.iter().zip(scratch.iter_mut()).map(|(t, s)| t.repr(s)).collect();
        let mut buf = vec![0u8; 2048];
        let sealing = stamp::build_sender(&mut buf, m, &s, &reprs, key).unwrap();
        stamp::seal(&mut buf, &sealing, key, s.timestamp).unwrap();
        let pkt = &buf[..sealing.len];
        prop_assert_eq!(SenderRepr::parse(pkt, m).unwrap(), s);
        let cfg = ReflectorConfig {
            mode: m,
            key,
            extensions: true,
            error_estimate: ErrorEstimate::from_bits(1),
        };
        let rx = Received {
            packet: pkt,
            receive_time: Timestamp::from_bits(5),
            ttl: Some(64),
            dscp: 0,
            ecn: 0,
        };
        let mut tx = vec![0u8; 2048];
        let r = stamp::reflect_layout(&cfg, &rx, seq, &ReflectorTlvInputs::default(), &mut tx)
            .unwrap();
        prop_assert_eq!(r.sealing.len, pkt.len());
        let protected = key.is_some()
            && reprs.iter().any(|t| t.tlv_type() != TlvType::EXTRA_PADDING);
        let want = if protected { TlvIntegrity::Verified } else { TlvIntegrity::Unprotected };
        prop_assert_eq!(r.tlv_integrity, want);
        stamp::seal(&mut tx, &r.sealing, key, Timestamp::from_bits(6)).unwrap();
        let got = stamp::open_reflected(&tx[..r.sealing.len], m, key).unwrap();
        prop_assert_eq!(got.repr.sender_seq, s.seq);
        prop_assert_eq!(got.repr.seq, seq.unwrap_or(s.seq));
        prop_assert_eq!(got.repr.ssid, s.ssid);
        prop_assert_eq!(got.repr.sender_timestamp, s.timestamp);
        prop_assert_eq!(got.repr.sender_ttl, 64);
        prop_assert_eq!(got.tlv_integrity, want);
    }
}
