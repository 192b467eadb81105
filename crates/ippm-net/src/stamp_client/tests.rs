//! The STAMP sender's per-packet work and reply reading, against independent computations
//! (HMAC-SHA-256 with the `hmac` and `sha2` crates directly) and the reflector's functions
//! of `ippm_proto::stamp`.

use std::net::{Ipv4Addr, Ipv6Addr};

use hmac::{Hmac, KeyInit, Mac};
use ippm_proto::stamp::{Received, ReflectorConfig, ReflectorTlvInputs, reflect_layout};
use ippm_proto::wire::stamp::ReflectorRepr;
use ippm_proto::wire::stamp_tlv::{SyncSource, TimestampMethod};
use sha2::Sha256;

use super::*;
use crate::stamp_client::answers::StampReplies;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

fn hmac16(parts: &[&[u8]]) -> [u8; 16] {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(KEY).unwrap();
    for p in parts {
        m.update(p);
    }
    let full = m.finalize().into_bytes();
    full[..16].try_into().unwrap()
}

fn ts(ms: u64) -> Timestamp {
    Timestamp::from_unix(Duration::from_millis(1_700_000_000_000 + ms))
}

fn opts(mode: StampMode, key: bool, tlvs: TlvSelection) -> StampOptions {
    StampOptions {
        reflector: "192.0.2.1:862".parse().unwrap(),
        count: 3,
        interval: Interval::Fixed(Duration::from_millis(10)),
        dscp: 0,
        loss_timeout: Duration::from_secs(1),
        local: None,
        ports: None,
        mode,
        key: key.then(|| StampKey::new(KEY).unwrap()),
        ssid: 0xbeef,
        tlvs,
        keep_records: false,
        progress: None,
        rng: rng::os(),
    }
}

fn every_tlv() -> TlvSelection {
    TlvSelection {
        padding: Some(10),
        location: true,
        timestamp_info: true,
        class_of_service: Some(CosRequest { dscp: 46, ecn: 1 }),
        direct_measurement: true,
        access_report: Some(AccessReport {
            id: AccessId::ThreeGpp,
            return_code: ReturnCode::NETWORK_AVAILABLE,
        }),
        follow_up: true,
    }
}

fn stamper(l: &Layout, o: &StampOptions) -> StampStamper {
    StampStamper {
        sealing: l.sealing,
        key: o.key.clone(),
        ssid: o.ssid,
        s_txc_at: l.s_txc_at,
        txc: 0,
    }
}

/// Seals packet `seq` of the session (T1 at `ms`).
fn packet(l: &Layout, s: &mut StampStamper, seq: u32, ms: u64) -> Vec<u8> {
    let mut pkt = l.template.clone();
    let err = ErrorEstimate::from_duration(true, Duration::from_micros(100));
    assert!(s.seal(&mut pkt, seq, ts(ms), err));
    pkt
}

#[test]
fn stamp_packets_carry_seq_t1_ssid_and_s_txc_with_hmacs_that_verify() {
    let pad = [0x5a; 10];
    let o = opts(StampMode::Authenticated, true, every_tlv());
    let l = Layout::new(&o, &pad).unwrap();
    // Base 112, Location 4+4+12+20+20, Timestamp Info 8, CoS 8, DM 16, Access Report 8,
    // Follow-Up 20, HMAC 20, Extra Padding 14.
    assert_eq!(l.template.len(), 112 + 60 + 8 + 8 + 16 + 8 + 20 + 20 + 14);
    assert_eq!(o.packet_len().unwrap(), l.template.len());
    assert_eq!(
        l.types,
        [
            TlvType::LOCATION,
            TlvType::TIMESTAMP_INFO,
            TlvType::CLASS_OF_SERVICE,
            TlvType::DIRECT_MEASUREMENT,
            TlvType::ACCESS_REPORT,
            TlvType::FOLLOW_UP_TELEMETRY,
            TlvType::HMAC,
            TlvType::EXTRA_PADDING,
        ]
    );
    let mut s = stamper(&l, &o);
    for (seq, ms) in [(0u32, 0u64), (1, 10), (2, 20)] {
        let pkt = packet(&l, &mut s, seq, ms);
        let r = SenderRepr::parse(&pkt, StampMode::Authenticated).unwrap();
        assert_eq!((r.seq, r.timestamp, r.ssid), (seq, ts(ms), 0xbeef));
        assert!(r.error_estimate.synchronized());
        // RFC 8762 §4.4: HMAC over octets 0..96, at 96..112.
        assert_eq!(pkt[96..112], hmac16(&[&pkt[..96]]));
        let tlvs: Vec<_> = Tlvs::new(&pkt[112..]).map(Result::unwrap).collect();
        // RFC 8972 §4: U set on every TLV a sender sends, M and I clear.
        assert!(tlvs.iter().all(|t| t.flags == TlvFlags::U), "{tlvs:?}");
        let dm = tlvs
            .iter()
            .find(|t| t.tlv_type() == TlvType::DIRECT_MEASUREMENT)
            .unwrap();
        // S_TxC: packets transmitted, this one included; R_RxC, R_TxC zero.
        let mut want = [0u8; 12];
        want[..4].copy_from_slice(&(seq + 1).to_be_bytes());
        assert_eq!(dm.value, want);
        let cos = tlvs
            .iter()
            .find(|t| t.tlv_type() == TlvType::CLASS_OF_SERVICE)
            .unwrap();
        assert_eq!(cos.value, [46 << 2, 0, 0, 0]);
        // RFC 8972 §4.8: the HMAC TLV covers the Sequence Number and the TLVs before it.
        let h = tlvs.iter().find(|t| t.tlv_type() == TlvType::HMAC).unwrap();
        assert_eq!(h.value, hmac16(&[&pkt[0..4], &pkt[112..112 + h.offset]]));
        let p = tlvs.last().unwrap();
        assert_eq!((p.tlv_type(), p.value), (TlvType::EXTRA_PADDING, &pad[..]));
    }
}

#[test]
fn unauthenticated_packets_get_an_hmac_tlv_only_with_a_key_and_real_tlvs() {
    let dm = TlvSelection {
        direct_measurement: true,
        ..TlvSelection::default()
    };
    let pad_only = TlvSelection {
        padding: Some(100),
        ..TlvSelection::default()
    };
    for (tlvs, key, hmac, len) in [
        (dm.clone(), true, true, 44 + 16 + 20),
        (dm, false, false, 44 + 16),
        (pad_only.clone(), true, false, 44 + 104),
        (pad_only, false, false, 44 + 104),
        (TlvSelection::default(), true, false, 44),
    ] {
        let o = opts(StampMode::Unauthenticated, key, tlvs);
        let pad = vec![0u8; usize::from(o.tlvs.padding.unwrap_or(0))];
        let l = Layout::new(&o, &pad).unwrap();
        assert_eq!(l.template.len(), len);
        assert_eq!(l.sealing.hmac_tlv.is_some(), hmac);
        let mut s = stamper(&l, &o);
        let pkt = packet(&l, &mut s, 7, 3);
        let r = SenderRepr::parse(&pkt, StampMode::Unauthenticated).unwrap();
        assert_eq!((r.seq, r.timestamp, r.ssid), (7, ts(3), 0xbeef));
        if let Some(at) = l.sealing.hmac_tlv {
            assert_eq!(pkt[at + 4..at + 20], hmac16(&[&pkt[0..4], &pkt[44..at]]));
        }
    }
}

#[test]
fn input_checks_before_any_network_work() {
    let o = opts(StampMode::Authenticated, false, TlvSelection::default());
    assert!(matches!(
        o.packet_len(),
        Err(StampClientError::Stamp(StampError::NoKey))
    ));
    let mut o = opts(
        StampMode::Unauthenticated,
        false,
        TlvSelection {
            padding: Some(65_507 - 44 - 4 + 1),
            ..TlvSelection::default()
        },
    );
    assert!(matches!(
        o.packet_len(),
        Err(StampClientError::TooLarge {
            len: 65_508,
            max: 65_507
        })
    ));
    // IPv6 has 20 more octets of room.
    o.reflector = "[2001:db8::1]:862".parse().unwrap();
    assert_eq!(o.packet_len().unwrap(), 65_508);
}

/// A reflector's reply to `pkt` (ippm-proto's reflector functions), T2 and T3 as given.
fn reflect(
    pkt: &[u8],
    mode: StampMode,
    key: Option<&StampKey>,
    seq: Option<u32>,
    inputs: &ReflectorTlvInputs,
    (t2, t3): (Timestamp, Timestamp),
) -> Vec<u8> {
    let cfg = ReflectorConfig {
        mode,
        key,
        extensions: true,
        error_estimate: ErrorEstimate::from_duration(true, Duration::from_micros(50)),
    };
    let rx = Received {
        packet: pkt,
        receive_time: t2,
        ttl: Some(62),
        dscp: 10,
        ecn: 1,
    };
    let mut out = vec![0u8; pkt.len()];
    let reply = reflect_layout(&cfg, &rx, seq, inputs, &mut out).unwrap();
    seal(&mut out, &reply.sealing, key, t3).unwrap();
    out
}

#[test]
fn replies_become_twamp_fields_and_tlv_answers() {
    let o = opts(StampMode::Authenticated, true, every_tlv());
    let pad = [0u8; 10];
    let l = Layout::new(&o, &pad).unwrap();
    let mut s = stamper(&l, &o);
    let key = o.key.clone().unwrap();
    let mut replies = StampReplies::new(o.mode, o.key.clone(), o.ssid, l.types.clone());
    // Packet 1 lost on the way in; the stateful reflector numbers its replies 0, 1; its
    // real send times are 3 ms after its T3 (Follow-Up Telemetry reports them one reply
    // late).
    let mut follow_up = None;
    let mut rseq = 0;
    for seq in 0u32..3 {
        let t1 = u64::from(seq) * 10;
        let pkt = packet(&l, &mut s, seq, t1);
        if seq == 1 {
            continue;
        }
        let inputs = ReflectorTlvInputs {
            dst_port: 862,
            src_port: 40_000,
            dst_addr: Some(Ipv4Addr::new(192, 0, 2, 1).into()),
            src_addr: Some(Ipv4Addr::new(198, 51, 100, 7).into()),
            src_mac: None,
            timestamp_info: Some(TimestampInfo {
                sync_in: SyncSource::NTP,
                method_in: TimestampMethod::SW_LOCAL,
                sync_out: SyncSource::NTP,
                method_out: TimestampMethod::SW_LOCAL,
            }),
            // R_TxC counting this reply (ippm's reflector does not: the end-to-end tests
            // have that kind).
            counters: Some((rseq + 1, rseq + 1)),
            follow_up,
            permitted_dscp: 1 << 46,
        };
        let (t2, t3) = (ts(t1 + 5), ts(t1 + 6));
        let out = reflect(&pkt, o.mode, Some(&key), Some(rseq), &inputs, (t2, t3));
        let f = replies
            .read(&out, ts(t1 + 11), Some(46 << 2 | 1))
            .expect("accepted");
        let want = ReflectorRepr::parse(&out, o.mode).unwrap();
        assert_eq!(f, reply_fields(&want));
        assert_eq!((f.seq, f.sender_seq, f.sender_ttl), (rseq, seq, 62));
        assert_eq!((f.receive_timestamp, f.timestamp), (t2, t3));
        follow_up = Some(FollowUpTelemetry {
            seq: rseq,
            timestamp: ts(t1 + 9),
            mode: TimestampMethod::HW_ASSIST,
        });
        rseq += 1;
    }
    assert!(replies.rseq_differs);
    let t = replies.finish();
    assert_eq!(t.replies_with_tlvs, 2);
    assert_eq!(t.integrity.verified, 2);
    assert!(
        t.flags
            .iter()
            .all(|c| c.answered == 2 && c.unrecognized + c.malformed + c.absent == 0),
        "{:?}",
        t.flags
    );
    let loc = t.location.unwrap();
    assert_eq!((loc.dst_port, loc.src_port), (862, 40_000));
    assert_eq!(loc.src_addr, Some(Ipv4Addr::new(198, 51, 100, 7).into()));
    assert_eq!(loc.dst_addr, Some(Ipv4Addr::new(192, 0, 2, 1).into()));
    // The reflector knew no MAC: a zeroed EUI-64, not reported.
    assert_eq!(loc.src_mac, None);
    assert_eq!(t.location_changes, 0);
    assert_eq!(t.timestamp_info.unwrap().method_in, "sw-local");
    let cos = t.class_of_service.unwrap();
    assert_eq!((cos.requested_dscp, cos.accepted, cos.refused), (46, 2, 0));
    assert_eq!(
        cos.received_at_reflector,
        [DscpEcnCount {
            dscp: 10,
            ecn: 1,
            replies: 2
        }]
    );
    // The reflector permitted DSCP1: the replies came with it (and ECT(1)).
    assert_eq!(
        cos.replies_arrived_with,
        [DscpEcnCount {
            dscp: 46,
            ecn: 1,
            replies: 2
        }]
    );
    // The last reply: S_TxC 3, R_RxC 2, R_TxC 2, 2 replies received: one lost on the way
    // in, none on the way back.
    let dm = t.direct_measurement.unwrap();
    assert_eq!((dm.s_txc, dm.r_rxc, dm.r_txc, dm.received), (3, 2, 2, 2));
    assert_eq!((dm.forward_lost, dm.backward_lost), (Some(1), Some(0)));
    assert!(dm.counters_filled);
    let a = t.access_report.unwrap();
    assert_eq!((a.id, a.return_code, a.acknowledged), ("3gpp", 1, 2));
    let fu = t.follow_up.unwrap();
    assert_eq!((fu.reported, fu.matched), (1, 1));
    assert_eq!(fu.method.as_deref(), Some("hw-assist"));
    // Reply 0: T2 5, T3 6, real send 9, T1 0, T4 11 (ms).
    assert_eq!(fu.send_delay_ns, Some([3e6; 3]));
    assert_eq!(fu.corrected_reflector_ns, Some([4e6; 3]));
    assert_eq!(fu.corrected_round_trip_ns, Some([7e6; 3]));
}

#[test]
fn bad_hmacs_drop_the_reply_and_tlv_integrity_failures_only_the_tlvs() {
    let dm = TlvSelection {
        direct_measurement: true,
        ..TlvSelection::default()
    };
    let key = StampKey::new(KEY).unwrap();
    let other = StampKey::new(b"another key").unwrap();
    let window = (ts(1), ts(2));
    // Authenticated, the reflector with another key: it cannot verify our base HMAC and
    // drops the packet; had it answered with its key, we drop the reply.
    let o = opts(StampMode::Authenticated, true, dm.clone());
    let l = Layout::new(&o, &[]).unwrap();
    let pkt = packet(&l, &mut stamper(&l, &o), 0, 0);
    let mut r = StampReplies::new(o.mode, o.key.clone(), o.ssid, l.types.clone());
    let inputs = ReflectorTlvInputs::default();
    assert!(
        reflect_layout(
            &ReflectorConfig {
                mode: o.mode,
                key: Some(&other),
                extensions: true,
                error_estimate: ErrorEstimate::default(),
            },
            &Received {
                packet: &pkt,
                receive_time: ts(1),
                ttl: None,
                dscp: 0,
                ecn: 0
            },
            None,
            &inputs,
            &mut vec![0u8; pkt.len()],
        )
        .is_err()
    );
    let mut out = reflect(&pkt, o.mode, Some(&key), None, &inputs, window);
    out[20] ^= 1;
    assert!(r.read(&out, ts(3), None).is_none());
    assert_eq!(r.bad.bad_hmac, 1);
    // Too short for the mode's base packet.
    assert!(r.read(&out[..100], ts(3), None).is_none());
    assert_eq!(r.bad.malformed, 1);
    // Another session's SSID.
    let mut other_ssid = o.clone();
    other_ssid.ssid = 7;
    let l7 = Layout::new(&other_ssid, &[]).unwrap();
    let p7 = packet(&l7, &mut stamper(&l7, &other_ssid), 0, 0);
    let out = reflect(&p7, o.mode, Some(&key), None, &inputs, window);
    assert!(r.read(&out, ts(3), None).is_none());
    assert_eq!(r.bad.other_ssid, 1);

    // Unauthenticated, TLVs protected by our key, the reflector with another: it sets I on
    // every TLV, the reply still counts, its TLVs are not used.
    let o = opts(StampMode::Unauthenticated, true, dm);
    let l = Layout::new(&o, &[]).unwrap();
    let pkt = packet(&l, &mut stamper(&l, &o), 0, 0);
    let mut r = StampReplies::new(o.mode, o.key.clone(), o.ssid, l.types.clone());
    let out = reflect(&pkt, o.mode, Some(&other), None, &inputs, window);
    let f = r.read(&out, ts(3), None).expect("the base packet is fine");
    assert_eq!((f.seq, f.sender_seq), (0, 0));
    assert!(!r.rseq_differs);
    let t = r.finish();
    assert_eq!(t.integrity.failed_at_reflector, 1);
    assert_eq!(t.flags[0].integrity_failed, 1);
    assert_eq!(t.direct_measurement, None);
    // The reflector has our key but the reply's HMAC TLV was changed on the way: we cannot
    // verify it, the TLVs are not used.
    let mut out = reflect(&pkt, o.mode, Some(&key), None, &inputs, window);
    let at = l.sealing.hmac_tlv.unwrap();
    out[at + 4] ^= 0xff;
    assert!(r.read(&out, ts(3), None).is_some());
    assert_eq!(r.finish().integrity.failed, 1);
}

#[test]
fn a_reflector_without_extensions_copies_the_tlvs_with_u_set() {
    let o = opts(
        StampMode::Unauthenticated,
        false,
        TlvSelection {
            location: true,
            ..TlvSelection::default()
        },
    );
    let l = Layout::new(&o, &[]).unwrap();
    let pkt = packet(&l, &mut stamper(&l, &o), 0, 0);
    let cfg = ReflectorConfig {
        mode: o.mode,
        key: None,
        extensions: false,
        error_estimate: ErrorEstimate::default(),
    };
    let rx = Received {
        packet: &pkt,
        receive_time: ts(1),
        ttl: None,
        dscp: 0,
        ecn: 0,
    };
    let mut out = vec![0u8; pkt.len()];
    let reply = reflect_layout(&cfg, &rx, None, &ReflectorTlvInputs::default(), &mut out).unwrap();
    seal(&mut out, &reply.sealing, None, ts(2)).unwrap();
    let mut r = StampReplies::new(o.mode, None, o.ssid, l.types.clone());
    assert!(r.read(&out, ts(3), None).is_some());
    let t = r.finish();
    assert_eq!(t.flags[0].unrecognized, 1);
    assert_eq!(t.location, None);
}

#[test]
fn loss_per_direction_needs_a_stateful_reflector() {
    let result = |stateful: Option<bool>, lost: usize| {
        let mut report = ippm_stats::two_way(&[], &[]);
        report.loss.sent = 10;
        report.loss.lost = lost;
        report.loss.forward_lost = lost / 2;
        report.loss.backward_lost = lost - lost / 2;
        StampResult {
            mode: StampMode::Unauthenticated,
            ssid: 1,
            local: "[::1]:1".parse().unwrap(),
            reflector: (Ipv6Addr::LOCALHOST, 862).into(),
            packet_len: 44,
            tlvs_sent: Vec::new(),
            hmac_tlv: false,
            report,
            first_sent: None,
            last_sent: None,
            sent: Vec::new(),
            replies: Vec::new(),
            bad: BadReplies::default(),
            ssid_not_echoed: 0,
            reflector_stateful: stateful,
            tlvs: TlvReport::default(),
            kernel_tx_stamps: 0,
        }
    };
    assert_eq!(result(Some(true), 3).direction_loss(), Some((1, 2)));
    assert_eq!(result(Some(false), 3).direction_loss(), None);
    assert_eq!(result(Some(false), 0).direction_loss(), Some((0, 0)));
    assert_eq!(result(None, 10).direction_loss(), None);
}
