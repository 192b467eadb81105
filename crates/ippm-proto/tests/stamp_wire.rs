//! STAMP (RFC 8762, RFC 8972): golden TLVs written out from the RFC figures, the TLV
//! iterator's edge cases, HMAC known answers, and the reflector's rules (TLV answers, the
//! U/M/I flags, TWAMP-Light packets) end to end through `build_sender`, `reflect_layout`,
//! `seal` and `open_reflected`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ippm_proto::stamp::{
    self, MacAddr, Received, ReflectorConfig, ReflectorTlvInputs, Reply, StampError, StampKey,
    TlvIntegrity,
};
use ippm_proto::wire::stamp::{ReflectorRepr, SenderRepr, StampMode};
use ippm_proto::wire::stamp_tlv::{
    AccessId, AccessReport, ClassOfService, DirectMeasurement, FollowUpTelemetry, Location,
    LocationSub, LocationSubTlv, ReturnCode, SyncSource, TimestampInfo, TimestampMethod, Tlv,
    TlvFlags, TlvRepr, TlvType, Tlvs,
};
use ippm_proto::{ErrorEstimate, Timestamp, WireError};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace([' ', '\n'], "")).unwrap()
}

const U: TlvFlags = TlvFlags::U;

fn sender() -> SenderRepr {
    SenderRepr {
        seq: 7,
        timestamp: Timestamp::new(0xe3a1_b2c3, 0x8000_0000),
        error_estimate: ErrorEstimate::from_bits(0x8101),
        ssid: 0xbeef,
    }
}

fn key() -> StampKey {
    StampKey::new(&(0u8..32).collect::<Vec<_>>()).unwrap()
}

fn cfg(mode: StampMode, key: Option<&StampKey>) -> ReflectorConfig<'_> {
    ReflectorConfig {
        mode,
        key,
        extensions: true,
        error_estimate: ErrorEstimate::from_bits(0x0001),
    }
}

fn rx(packet: &[u8]) -> Received<'_> {
    Received {
        packet,
        receive_time: Timestamp::new(0xe3a1_b2c3, 0xc000_0000),
        ttl: Some(0xfe),
        dscp: 10,
        ecn: 1,
    }
}

fn inputs() -> ReflectorTlvInputs {
    ReflectorTlvInputs {
        dst_port: 862,
        src_port: 50000,
        dst_addr: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        src_addr: Some(IpAddr::V6("2001:db8::2".parse::<Ipv6Addr>().unwrap())),
        src_mac: Some(MacAddr::Eui48([2, 0, 0, 0, 0, 1])),
        timestamp_info: Some(TimestampInfo {
            sync_in: SyncSource::NTP,
            method_in: TimestampMethod::SW_LOCAL,
            sync_out: SyncSource::NTP,
            method_out: TimestampMethod::SW_LOCAL,
        }),
        counters: Some((7, 8)),
        follow_up: Some(FollowUpTelemetry {
            seq: 4,
            timestamp: Timestamp::new(0xe3a1_b2c3, 0x4000_0000),
            mode: TimestampMethod::SW_LOCAL,
        }),
        permitted_dscp: 1 << 46,
    }
}

/// Reflects `pkt` and returns the reply and its octets.
fn reflect(c: &ReflectorConfig<'_>, pkt: &[u8], seq: Option<u32>) -> (Reply, Vec<u8>) {
    let mut tx = vec![0xa5; 2048];
    let r = stamp::reflect_layout(c, &rx(pkt), seq, &inputs(), &mut tx).unwrap();
    tx.truncate(r.sealing.len);
    (r, tx)
}

// Sender TLVs, each as RFC 8972 draws it, U set (§4: "A Session-Sender MUST set the U flag").
//   Location (Figure 8): Flags 80, Type 02, Length 0038; Destination Port 0000, Source Port 0000;
//     sub-TLV Source MAC (§4.2.1): 80 01 0008 + 8 MBZ
//     sub-TLV Destination IP:      80 04 0010 + 16 MBZ
//     sub-TLV Source IP:           80 07 0010 + 16 MBZ
const LOCATION_REQ: &str = "80020038 00000000
    80010008 0000000000000000
    80040010 00000000000000000000000000000000
    80070010 00000000000000000000000000000000";
//   Timestamp Information (Figure 11): 80 03 0004; Sync Src In, Timestamp In, Sync Src Out,
//     Timestamp Out all zero from the sender.
const TSINFO_REQ: &str = "80030004 00000000";
//   Class of Service (Figure 12): 80 04 0004; DSCP1 = 46 (101110), DSCP2 0, ECN 0, RP 0,
//     Reserved 0000: b8 00 0000.
const COS_REQ: &str = "80040004 b8000000";
//   Direct Measurement (Figure 13): 80 05 000c; S_TxC 00000005, R_RxC 0, R_TxC 0.
const DM_REQ: &str = "8005000c 00000005 00000000 00000000";
//   Access Report (Figure 14): 80 06 0004; ID 1 (3GPP) | Resv 0 = 10, Return Code 01,
//     Reserved 0000.
const AR_REQ: &str = "80060004 10010000";
//   Follow-Up Telemetry (Figure 15): 80 07 0010; Sequence Number, Follow-Up Timestamp,
//     Timestamp M, Reserved all zero.
const FU_REQ: &str = "80070010 00000000 0000000000000000 00000000";
//   An unknown type (240, Experimental Use), Length 2.
const UNKNOWN: &str = "80f00002 abcd";
//   Extra Padding (Figure 7): 80 01 0003 and three octets of padding.
const PAD: &str = "80010003 010203";

// The reflector's answers with `inputs()` (stateful), flags cleared on what it understood:
//   Location: ports 035e (862) c350 (50000); Source EUI-48 (type 2) 020000000001 + MBZ 0000;
//     Destination IPv4 (type 5) c0000201 + 12 MBZ; Source IPv6 (type 9) 2001:db8::2.
const LOCATION_ANS: &str = "00020038 035ec350
    00020008 0200000000010000
    00050010 c0000201000000000000000000000000
    00090010 20010db8000000000000000000000002";
//   Timestamp Information: NTP (1), SW Local (2), NTP (1), SW Local (2).
const TSINFO_ANS: &str = "00030004 01020102";
//   Class of Service: DSCP1 46, DSCP2 10 (001010), ECN 01, RP 0 (46 is permitted):
//     101110 00|1010 01 00 = b8 a4, Reserved 0000.
const COS_ANS: &str = "00040004 b8a40000";
//   Direct Measurement: S_TxC copied, R_RxC 7, R_TxC 8.
const DM_ANS: &str = "0005000c 00000005 00000007 00000008";
//   Access Report: ID and Return Code copied.
const AR_ANS: &str = "00060004 10010000";
//   Follow-Up Telemetry: the previous reply's Sequence Number 4, its timestamp, SW Local.
const FU_ANS: &str = "00070010 00000004 e3a1b2c340000000 02000000";
//   Extra Padding: content copied, U cleared.
const PAD_ANS: &str = "00010003 010203";

#[test]
fn every_tlv_golden_request_parses_and_reemits() {
    let cases: [(&str, TlvRepr<'_>); 7] = [
        (
            LOCATION_REQ,
            TlvRepr::Location(Location {
                dst_port: 0,
                src_port: 0,
                subs: [
                    LocationSub::SourceMac,
                    LocationSub::DestinationIp,
                    LocationSub::SourceIp,
                ]
                .into_iter()
                .map(|sub| LocationSubTlv { flags: U, sub })
                .collect(),
            }),
        ),
        (
            TSINFO_REQ,
            TlvRepr::TimestampInfo(TimestampInfo::default(), &[]),
        ),
        (
            COS_REQ,
            TlvRepr::ClassOfService(ClassOfService {
                dscp1: 46,
                ..Default::default()
            }),
        ),
        (
            DM_REQ,
            TlvRepr::DirectMeasurement(DirectMeasurement {
                s_txc: 5,
                ..Default::default()
            }),
        ),
        (
            AR_REQ,
            TlvRepr::AccessReport(AccessReport {
                id: AccessId::ThreeGpp,
                return_code: ReturnCode::NETWORK_AVAILABLE,
            }),
        ),
        (
            FU_REQ,
            TlvRepr::FollowUpTelemetry(FollowUpTelemetry::default()),
        ),
        (UNKNOWN, TlvRepr::Unknown(TlvType(0xf0), &[0xab, 0xcd])),
    ];
    for (hex, want) in cases {
        let b = h(hex);
        let mut it = Tlvs::new(&b);
        let t = it.next().unwrap().unwrap();
        assert!(it.next().is_none(), "{hex}");
        assert_eq!(t.flags, U);
        assert_eq!(t.len(), b.len());
        assert_eq!(TlvRepr::parse(&t).unwrap(), want, "{hex}");
        let mut out = vec![0xa5; want.buffer_len()];
        assert_eq!(want.emit(&mut out, U).unwrap(), b.len());
        assert_eq!(out, b, "{hex}");
    }
}

#[test]
fn every_tlv_golden_answer_parses() {
    let answers = [LOCATION_ANS, TSINFO_ANS, COS_ANS, AR_ANS, FU_ANS];
    for hex in answers {
        let b = h(hex);
        let t = Tlvs::new(&b).next().unwrap().unwrap();
        TlvRepr::parse(&t).unwrap();
    }
    let b = h(COS_ANS);
    let t = Tlvs::new(&b).next().unwrap().unwrap();
    assert_eq!(
        TlvRepr::parse(&t).unwrap(),
        TlvRepr::ClassOfService(ClassOfService {
            dscp1: 46,
            dscp2: 10,
            ecn: 1,
            rp: 0
        })
    );
}

/// Every prefix of a known fixed-length TLV's value is a typed error, never a panic; every
/// prefix of a TLV area stops the iterator with a `MalformedTlv` at the cut.
#[test]
fn truncated_tlvs() {
    for hex in [
        LOCATION_REQ,
        TSINFO_REQ,
        COS_REQ,
        DM_REQ,
        AR_REQ,
        FU_REQ,
        UNKNOWN,
        PAD,
    ] {
        let b = h(hex);
        for n in 0..b.len() {
            let items: Vec<_> = Tlvs::new(&b[..n]).collect();
            if n == 0 {
                assert!(items.is_empty());
                continue;
            }
            let [Err(m)] = items.as_slice() else {
                panic!("{hex} cut at {n}: {items:?}")
            };
            assert_eq!(m.offset, 0);
            let want = if n < 4 {
                "STAMP TLV header"
            } else {
                "STAMP TLV value"
            };
            assert_eq!(m.reason, WireError::Truncated(want));
        }
        let typ = b[1];
        for n in 0..b.len() - 4 {
            let t = Tlv {
                offset: 0,
                flags: U,
                typ,
                value: &b[4..4 + n],
            };
            let r = TlvRepr::parse(&t);
            match TlvType(typ) {
                // Any length is valid for these; Timestamp Information needs 4.
                TlvType::EXTRA_PADDING => assert!(r.is_ok()),
                // Cut at a sub-TLV boundary, what is left is a shorter valid TLV.
                TlvType::LOCATION | TlvType::TIMESTAMP_INFO
                    if n >= 4 && Tlvs::new(&b[8..4 + n]).is_well_formed() =>
                {
                    assert!(r.is_ok(), "{hex} value cut at {n}: {r:?}")
                }
                _ if typ == 0xf0 => assert!(r.is_ok()),
                _ => assert!(
                    matches!(
                        r,
                        Err(WireError::InvalidValue { .. } | WireError::Truncated(_))
                    ),
                    "{hex} value cut at {n}: {r:?}"
                ),
            }
        }
    }
}

#[test]
fn iterator_edge_cases() {
    // Zero-length TLVs are well formed.
    let b = h("80f00000 80010000");
    let v: Vec<_> = Tlvs::new(&b).map(Result::unwrap).collect();
    assert_eq!(v.len(), 2);
    assert_eq!((v[1].offset, v[1].value.len()), (4, 0));
    // A Length past the packet stops the walk there, after the good TLV.
    let b = h("80010001 aa 80040100 b8000000");
    let v: Vec<_> = Tlvs::new(&b).collect();
    assert_eq!(v.len(), 2);
    let Err(m) = v[1] else { panic!() };
    assert_eq!((m.offset, m.rest.len()), (5, 8));
    assert!(!Tlvs::new(&b).is_well_formed());
    // Fused: nothing after the malformed TLV.
    let mut it = Tlvs::new(&b[..7]);
    assert!(it.next().unwrap().is_ok());
    assert!(it.next().unwrap().is_err());
    assert!(it.next().is_none());
    assert!(it.next().is_none());
    // Wrong lengths for fixed-length types.
    for (hex, field) in [
        ("80040003 b80000", "Class of Service TLV.Length"),
        ("80050000", "Direct Measurement TLV.Length"),
        (
            "80070011 00000000000000000000000000000000 00",
            "Follow-Up Telemetry TLV.Length",
        ),
        ("80080004 00000000", "HMAC TLV.Length"),
        ("80020003 000000", "Location TLV.Length"),
        ("80030000", "Timestamp Information TLV.Length"),
    ] {
        let b = h(hex);
        let t = Tlvs::new(&b).next().unwrap().unwrap();
        assert!(
            matches!(TlvRepr::parse(&t), Err(WireError::InvalidValue { field: f, .. }) if f == field),
            "{hex}"
        );
    }
    // Access Report: ID other than 1 or 2.
    let b = h("80060004 30010000");
    let t = Tlvs::new(&b).next().unwrap().unwrap();
    assert_eq!(
        TlvRepr::parse(&t),
        Err(WireError::InvalidValue {
            field: "Access Report TLV.ID",
            value: 3
        })
    );
    // Nested sub-TLV errors: a sub-TLV past the end of the Location TLV, one of the wrong
    // length, and a truncated sub-TLV header.
    for hex in [
        "8002000c 00000000 80010010 00000000",
        "8002000f 00000000 80010007 00000000000000",
        "80020006 00000000 8001",
        "80030006 00000000 8001",
    ] {
        let b = h(hex);
        let t = Tlvs::new(&b).next().unwrap().unwrap();
        assert!(TlvRepr::parse(&t).is_err(), "{hex}");
    }
}

/// HMAC-SHA-256-128: RFC 4231 Test Cases 2 and 5 (the latter is the truncation test).
#[test]
fn hmac_rfc4231() {
    let k = StampKey::new(b"Jefe").unwrap();
    assert_eq!(
        k.hmac(&[b"what do ya ", b"want for nothing?"]),
        h("5bdcc146bf60754e6a042426089575c7")[..]
    );
    let k = StampKey::from_hex(" 0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c\n").unwrap();
    assert_eq!(
        k.hmac(&[b"Test With Truncation"]),
        h("a3b6167473100ee06e0c796c2955552b")[..]
    );
    assert!(k.verify(
        &[b"Test With Truncation"],
        &h("a3b6167473100ee06e0c796c2955552b")
    ));
    assert!(!k.verify(
        &[b"Test With Truncation"],
        &h("a3b6167473100ee06e0c796c2955552c")
    ));
    assert!(!k.verify(&[b"Test With Truncation"], &h("a3b6")));
    assert_eq!(StampKey::new(b"").unwrap_err(), StampError::BadKey("empty"));
    assert!(StampKey::from_hex("abc").is_err());
    assert!(StampKey::from_hex("zz").is_err());
    assert_eq!(format!("{k:?}"), "StampKey([redacted])");
}

/// The STAMP key of an IKE SA, against Python:
///
/// ```text
/// python3 -c 'import hmac,hashlib; s=bytes(range(32));
///   k=hmac.new(s,b"IPPM STAMP"+bytes([1]*8)+bytes([2]*8),hashlib.sha256).digest();
///   print(hmac.new(k,bytes.fromhex("00000007"),hashlib.sha256).hexdigest()[:32])'
/// 4f2d05d8cac2370e5a1117f678ea239a
/// ```
#[test]
fn stamp_key_from_an_ike_sa() {
    let secret: Vec<u8> = (0..32).collect();
    let k = StampKey::from_ike(&secret, [1; 8], [2; 8]).unwrap();
    assert_eq!(
        k.hmac(&[&[0, 0, 0, 7]]),
        h("4f2d05d8cac2370e5a1117f678ea239a")[..]
    );
    // Another SA (its SPIs), another key, from the same secret.
    let other = StampKey::from_ike(&secret, [1; 8], [3; 8]).unwrap();
    assert_ne!(other.hmac(&[&[0, 0, 0, 7]]), k.hmac(&[&[0, 0, 0, 7]]));
    assert!(StampKey::from_ike(&[], [1; 8], [2; 8]).is_err());
}

/// The base-packet HMAC and the HMAC TLV of an authenticated sender packet, against values
/// computed independently with Python:
///
/// ```text
/// python3 -c 'import hmac,hashlib; k=bytes(range(32));
///   p=bytes.fromhex("00000007"+"00"*12+"e3a1b2c380000000"+"8101"+"beef"+"00"*68);
///   print(hmac.new(k,p,hashlib.sha256).hexdigest()[:32]);
///   print(hmac.new(k,bytes.fromhex("00000007"+"80040004b8000000"),hashlib.sha256).hexdigest()[:32])'
/// 857242fef49f0fad94736c89b3316293
/// 2f556bae6162b93341ee8ddf894a6e1a
/// ```
#[test]
fn hmac_known_answers() {
    let k = key();
    let mut buf = vec![0xa5; 256];
    let cos = TlvRepr::ClassOfService(ClassOfService {
        dscp1: 46,
        ..Default::default()
    });
    let s = stamp::build_sender(
        &mut buf,
        StampMode::Authenticated,
        &sender(),
        &[cos],
        Some(&k),
    )
    .unwrap();
    assert_eq!(s.len, 112 + 8 + 20);
    assert_eq!(s.hmac_tlv, Some(120));
    stamp::seal(&mut buf, &s, Some(&k), sender().timestamp).unwrap();
    let pkt = &buf[..s.len];
    assert_eq!(pkt[96..112], h("857242fef49f0fad94736c89b3316293")[..]);
    // The HMAC TLV: Flags 80 (U, from the sender), Type 08, Length 0010, HMAC.
    assert_eq!(
        pkt[120..],
        h("80080010 2f556bae6162b93341ee8ddf894a6e1a")[..]
    );
    assert_eq!(
        SenderRepr::parse(pkt, StampMode::Authenticated).unwrap(),
        sender()
    );
}

/// One sender packet with every TLV, reflected by a stateful reflector: every answer as
/// written out above, sealed, and read back by the sender.
#[test]
fn reflect_every_tlv() {
    let tlvs = [
        LOCATION_REQ,
        TSINFO_REQ,
        COS_REQ,
        DM_REQ,
        AR_REQ,
        FU_REQ,
        UNKNOWN,
        PAD,
    ]
    .concat();
    let mut pkt = vec![0u8; 44];
    sender().emit(&mut pkt, StampMode::Unauthenticated).unwrap();
    pkt.extend(h(&tlvs));
    let (r, tx) = reflect(&cfg(StampMode::Unauthenticated, None), &pkt, Some(3));
    assert_eq!(tx.len(), pkt.len());
    assert_eq!(r.dscp, Some(46));
    assert_eq!(r.tlv_integrity, TlvIntegrity::Unprotected);
    assert!(!r.short_sender);
    let want = [
        LOCATION_ANS,
        TSINFO_ANS,
        COS_ANS,
        DM_ANS,
        AR_ANS,
        FU_ANS,
        UNKNOWN,
        PAD_ANS,
    ]
    .concat();
    assert_eq!(hex::encode(&tx[44..]), hex::encode(h(&want)));
    let base = ReflectorRepr::parse(&tx, StampMode::Unauthenticated).unwrap();
    assert_eq!(base.seq, 3);
    assert_eq!(base.ssid, 0xbeef);
    assert_eq!(base.sender_seq, 7);
    assert_eq!(base.sender_ttl, 0xfe);
    assert_eq!(base.timestamp, Timestamp::ZERO);

    let mut tx = tx;
    stamp::seal(&mut tx, &r.sealing, None, Timestamp::new(9, 9)).unwrap();
    let got = stamp::open_reflected(&tx, StampMode::Unauthenticated, None).unwrap();
    assert_eq!(got.repr.timestamp, Timestamp::new(9, 9));
    // The unknown TLV (U) is skipped; the other seven are usable.
    let usable: Vec<_> = got.usable_tlvs().collect();
    assert_eq!(usable.len(), 7);
    assert!(usable.iter().all(|t| t.tlv_type() != TlvType(0xf0)));

    // Stateless: Sequence Number copied, Follow-Up Telemetry zero (§4.7).
    let (_, tx) = reflect(&cfg(StampMode::Unauthenticated, None), &pkt, None);
    assert_eq!(
        ReflectorRepr::parse(&tx, StampMode::Unauthenticated)
            .unwrap()
            .seq,
        7
    );
    let fu = Tlvs::new(&tx[44..])
        .map(Result::unwrap)
        .find(|t| t.tlv_type() == TlvType::FOLLOW_UP_TELEMETRY)
        .unwrap();
    assert_eq!(fu.flags, TlvFlags::NONE);
    assert!(fu.value.iter().all(|&b| b == 0));
}

/// The M flag (RFC 8972 §4): processing stops at the malformed TLV, which and everything after
/// it are copied as received, M set on it.
#[test]
fn malformed_stops_processing() {
    let mut base = vec![0u8; 44];
    sender()
        .emit(&mut base, StampMode::Unauthenticated)
        .unwrap();
    let c = cfg(StampMode::Unauthenticated, None);
    // (sender TLVs, expected reply TLVs)
    let cases = [
        // CoS with Length 3, then a DM the reflector must not touch.
        (
            [COS_REQ, "80040003 b80000", DM_REQ].concat(),
            [COS_ANS, "40040003 b80000", DM_REQ].concat(),
        ),
        // A Length past the end of the packet.
        ("80040100 b8000000".into(), "40040100 b8000000".into()),
        // A header cut short.
        ([COS_REQ, "8004"].concat(), [COS_ANS, "4004"].concat()),
        // Follow-Up Telemetry of Length 12: Sequence Number and timestamp zeroed (§4.7).
        (
            "8007000c 11111111 2222222222222222".into(),
            "4007000c 00000000 0000000000000000".into(),
        ),
        // Location with a Source MAC sub-TLV of Length 7: M on the TLV and on the sub-TLV.
        (
            "8002000f 00000000 80010007 00000000000000".into(),
            "4002000f 00000000 c0010007 00000000000000".into(),
        ),
        // Zero-length CoS: malformed; a zero-length unknown TLV before it: U.
        ("80f00000 80040000".into(), "80f00000 40040000".into()),
    ];
    for (sent, want) in cases {
        let mut pkt = base.clone();
        pkt.extend(h(&sent));
        let (r, tx) = reflect(&c, &pkt, Some(0));
        assert_eq!(hex::encode(&tx[44..]), hex::encode(h(&want)), "{sent}");
        let got = stamp::open_reflected(&tx, StampMode::Unauthenticated, None).unwrap();
        assert!(got.usable_tlvs().all(|t| !t.flags.contains(TlvFlags::M)));
        assert_eq!(r.sealing.len, pkt.len());
    }
}

/// TLV integrity (RFC 8972 §4.8) with a key in unauthenticated mode, and the I flag.
#[test]
fn tlv_integrity() {
    let k = key();
    let other = StampKey::new(b"another key").unwrap();
    let cos = TlvRepr::ClassOfService(ClassOfService {
        dscp1: 46,
        ..Default::default()
    });
    let pad = [0u8; 5];
    let tlvs = [cos, TlvRepr::ExtraPadding(&pad)];
    let mode = StampMode::Unauthenticated;
    let mut buf = vec![0u8; 256];
    let s = stamp::build_sender(&mut buf, mode, &sender(), &tlvs, Some(&k)).unwrap();
    // CoS, then the HMAC TLV, then the padding after it.
    assert_eq!(s.hmac_tlv, Some(44 + 8));
    stamp::seal(&mut buf, &s, Some(&k), Timestamp::new(1, 1)).unwrap();
    let pkt = buf[..s.len].to_vec();

    let (r, mut tx) = reflect(&cfg(mode, Some(&k)), &pkt, Some(0));
    assert_eq!(r.tlv_integrity, TlvIntegrity::Verified);
    assert_eq!(r.sealing.hmac_tlv, Some(52));
    stamp::seal(&mut tx, &r.sealing, Some(&k), Timestamp::new(2, 2)).unwrap();
    let got = stamp::open_reflected(&tx, mode, Some(&k)).unwrap();
    assert_eq!(got.tlv_integrity, TlvIntegrity::Verified);
    assert_eq!(got.usable_tlvs().count(), 2);
    // The sender with another key: the reply's TLVs are not usable, the packet still is.
    let got = stamp::open_reflected(&tx, mode, Some(&other)).unwrap();
    assert_eq!(got.tlv_integrity, TlvIntegrity::Failed);
    assert_eq!(got.usable_tlvs().count(), 0);

    // Failures at the reflector: every TLV copied with I set, none processed.
    let mut tampered = pkt.clone();
    tampered[44 + 4] ^= 0x04;
    let mut misplaced = pkt[..44].to_vec();
    misplaced.extend(&pkt[52..72]);
    misplaced.extend(&pkt[44..52]);
    let mut unprotected = pkt[..52].to_vec();
    unprotected.extend(&pkt[72..]);
    for (name, p, key) in [
        ("tampered", &tampered, Some(&k)),
        ("wrong key", &pkt, Some(&other)),
        ("HMAC TLV before CoS", &misplaced, Some(&k)),
        ("no HMAC TLV", &unprotected, Some(&k)),
        ("no key", &pkt, None),
    ] {
        let (r, tx) = reflect(&cfg(mode, key), p, Some(0));
        assert_eq!(r.tlv_integrity, TlvIntegrity::Failed, "{name}");
        assert_eq!(r.sealing.hmac_tlv, None);
        assert_eq!(r.dscp, None, "{name}: CoS must not be processed");
        for t in Tlvs::new(&tx[44..]) {
            let t = t.unwrap();
            assert_eq!(t.flags, U.union(TlvFlags::I), "{name}");
        }
        let mut want = p[44..].to_vec();
        for t in Tlvs::new(&p[44..]) {
            want[t.unwrap().offset] |= TlvFlags::I.0;
        }
        assert_eq!(tx[44..], want[..], "{name}");
        let got = stamp::open_reflected(&tx, mode, key).unwrap();
        assert_eq!(got.tlv_integrity, TlvIntegrity::FailedAtReflector);
        assert_eq!(got.usable_tlvs().count(), 0);
    }

    // A key, and only Extra Padding: nothing to protect (§4.8's exception).
    let mut p = pkt[..44].to_vec();
    p.extend(h(PAD));
    let (r, _) = reflect(&cfg(mode, Some(&k)), &p, Some(0));
    assert_eq!(r.tlv_integrity, TlvIntegrity::Unprotected);
    let s = stamp::build_sender(
        &mut buf,
        mode,
        &sender(),
        &[TlvRepr::ExtraPadding(&pad)],
        Some(&k),
    )
    .unwrap();
    assert_eq!(s.hmac_tlv, None);
}

#[test]
fn authenticated_mode() {
    let k = key();
    let mode = StampMode::Authenticated;
    let mut buf = vec![0u8; 256];
    let pad = [7u8; 9];
    let s = stamp::build_sender(
        &mut buf,
        mode,
        &sender(),
        &[TlvRepr::ExtraPadding(&pad)],
        Some(&k),
    )
    .unwrap();
    stamp::seal(&mut buf, &s, Some(&k), Timestamp::new(5, 5)).unwrap();
    let pkt = buf[..s.len].to_vec();
    let (r, mut tx) = reflect(&cfg(mode, Some(&k)), &pkt, Some(1));
    assert_eq!(tx.len(), pkt.len());
    stamp::seal(&mut tx, &r.sealing, Some(&k), Timestamp::new(6, 6)).unwrap();
    let got = stamp::open_reflected(&tx, mode, Some(&k)).unwrap();
    assert_eq!(got.repr.sender_timestamp, Timestamp::new(5, 5));
    assert_eq!(got.repr.timestamp, Timestamp::new(6, 6));
    assert_eq!(got.usable_tlvs().count(), 1);

    // Every bit of the covered 96 octets matters; the HMAC field too.
    for i in (0..112).step_by(7) {
        let mut bad = pkt.clone();
        bad[i] ^= 1;
        let mut tx = vec![0; 512];
        let e = stamp::reflect_layout(&cfg(mode, Some(&k)), &rx(&bad), None, &inputs(), &mut tx);
        assert_eq!(e, Err(StampError::BadHmac), "octet {i}");
    }
    let mut bad = tx.clone();
    bad[3] ^= 1;
    assert_eq!(
        stamp::open_reflected(&bad, mode, Some(&k)),
        Err(StampError::BadHmac)
    );
    assert_eq!(
        stamp::open_reflected(&tx, mode, None),
        Err(StampError::NoKey)
    );
    let mut out = vec![0; 512];
    assert_eq!(
        stamp::reflect_layout(&cfg(mode, None), &rx(&pkt), None, &inputs(), &mut out),
        Err(StampError::NoKey)
    );
    assert_eq!(
        stamp::build_sender(&mut out, mode, &sender(), &[], None),
        Err(StampError::NoKey)
    );
    // No TWAMP-Light in authenticated mode (RFC 8762 §4.6): a short packet is an error.
    for n in 0..112 {
        assert_eq!(
            stamp::reflect_layout(
                &cfg(mode, Some(&k)),
                &rx(&pkt[..n]),
                None,
                &inputs(),
                &mut out
            ),
            Err(StampError::Wire(WireError::Truncated(
                "STAMP sender packet"
            )))
        );
        assert!(stamp::open_reflected(&tx[..n], mode, Some(&k)).is_err());
    }
}

/// RFC 8762 §4.6: a TWAMP-Light sender's packet shorter than the base gets the 44-octet base
/// packet; a longer one gets a reply of its size with the rest copied.
#[test]
fn twamp_light_senders() {
    let mut light = vec![0u8; 14];
    light[..4].copy_from_slice(&9u32.to_be_bytes());
    light[4..12].copy_from_slice(&Timestamp::new(3, 4).to_bytes());
    light[12..14].copy_from_slice(&[0x80, 0x01]);
    let c = cfg(StampMode::Unauthenticated, None);
    let (r, tx) = reflect(&c, &light, None);
    assert!(r.short_sender);
    assert_eq!(tx.len(), 44);
    let base = ReflectorRepr::parse(&tx, StampMode::Unauthenticated).unwrap();
    assert_eq!((base.seq, base.sender_seq, base.ssid), (9, 9, 0));
    assert_eq!(base.sender_timestamp, Timestamp::new(3, 4));
    // The reply is what a TWAMP-Light sender expects (RFC 5357 §4.2.1 open layout).
    let tw =
        ippm_proto::wire::test::ReflectorRepr::parse(&tx, ippm_proto::wire::test::Layout::Open)
            .unwrap();
    assert_eq!(tw.sender_timestamp, Timestamp::new(3, 4));
    // A 100-octet TWAMP-Light packet with random-looking padding, extensions off: copied.
    let mut long = light.clone();
    long.extend((0..86u8).map(|i| i.wrapping_mul(37)));
    let off = ReflectorConfig {
        extensions: false,
        ..c
    };
    let (r, tx) = reflect(&off, &long, None);
    assert_eq!(r.sealing.len, 100);
    assert_eq!(tx[44..], long[44..]);
    // Shorter than 14 octets: not a test packet.
    let mut out = [0u8; 64];
    for n in 0..14 {
        assert_eq!(
            stamp::reflect_layout(&c, &rx(&light[..n]), None, &inputs(), &mut out),
            Err(StampError::Wire(WireError::Truncated(
                "TWAMP-Light sender packet"
            )))
        );
    }
    // A reply buffer too small.
    assert_eq!(
        stamp::reflect_layout(&c, &rx(&long), None, &inputs(), &mut out),
        Err(StampError::Wire(WireError::BufferTooSmall("STAMP reply")))
    );
}

/// The reflector and the sender-side parser on every length of a packet full of TLVs, and on
/// a refused DSCP (RP = 1).
#[test]
fn every_length_and_cos_refused() {
    let tlvs = [LOCATION_REQ, COS_REQ, DM_REQ, FU_REQ, PAD].concat();
    let mut pkt = vec![0u8; 44];
    sender().emit(&mut pkt, StampMode::Unauthenticated).unwrap();
    pkt.extend(h(&tlvs));
    let c = cfg(StampMode::Unauthenticated, None);
    let mut tx = vec![0u8; 512];
    for n in 0..=pkt.len() {
        let r = stamp::reflect_layout(&c, &rx(&pkt[..n]), Some(1), &inputs(), &mut tx);
        match r {
            Ok(r) => assert_eq!(r.sealing.len, n.max(44)),
            Err(e) => assert!(n < 14, "{n}: {e:?}"),
        }
        let _ = stamp::open_reflected(&pkt[..n], StampMode::Unauthenticated, None)
            .map(|r| r.usable_tlvs().count());
    }
    let mut i = inputs();
    i.permitted_dscp = 0;
    let r = stamp::reflect_layout(&c, &rx(&pkt), Some(1), &i, &mut tx).unwrap();
    // DSCP1 refused: the received DSCP, RP = 1.
    assert_eq!(r.dscp, Some(10));
    let cos = Tlvs::new(&tx[44..r.sealing.len])
        .map(Result::unwrap)
        .find(|t| t.tlv_type() == TlvType::CLASS_OF_SERVICE)
        .unwrap();
    assert_eq!(
        TlvRepr::parse(&cos).unwrap(),
        TlvRepr::ClassOfService(ClassOfService {
            dscp1: 46,
            dscp2: 10,
            ecn: 1,
            rp: 1
        })
    );
}
