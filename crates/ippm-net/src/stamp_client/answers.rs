//! What a STAMP Session-Sender reads from the replies: the base packet's HMAC (a reply that
//! fails it is dropped), the TLVs' flags and integrity (never fatal), and the reflector's
//! answers to each TLV, gathered with memory that does not grow with the packets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ippm_proto::Timestamp;
use ippm_proto::stamp::{StampError, StampKey, TlvIntegrity, open_reflected};
use ippm_proto::wire::stamp::{ReflectorRepr, StampMode};
use ippm_proto::wire::stamp_tlv::{
    AccessId, FollowUpTelemetry, LocationSub, TlvFlags, TlvRepr, TlvType,
};
use serde::Serialize;

use crate::engine::RecvMeta;
use crate::twoway_sender::ReplyFormat;

/// The reflector's fields as the two-way statistics (and twping's report) take them: a STAMP
/// reflector packet is a TWAMP-Test reflector packet with an SSID (RFC 8762 §4.3), which the
/// statistics do not need.
pub fn reply_fields(r: &ReflectorRepr) -> ippm_proto::wire::test::ReflectorRepr {
    ippm_proto::wire::test::ReflectorRepr {
        seq: r.seq,
        timestamp: r.timestamp,
        error_estimate: r.error_estimate,
        receive_timestamp: r.receive_timestamp,
        sender_seq: r.sender_seq,
        sender_timestamp: r.sender_timestamp,
        sender_error_estimate: r.sender_error_estimate,
        sender_ttl: r.sender_ttl,
    }
}

/// How the TLVs of one type came back, over the replies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TlvFlagCounts {
    /// The TLV's name.
    pub tlv: &'static str,
    /// Replies where the reflector answered it (no flag set).
    pub answered: u64,
    /// U set: the reflector did not understand it (or supports no TLVs and copied it).
    pub unrecognized: u64,
    /// M set: the reflector found it malformed.
    pub malformed: u64,
    /// I set: the reflector could not verify our TLVs' HMAC.
    pub integrity_failed: u64,
    /// Replies without it.
    pub absent: u64,
}

/// What became of the TLVs' integrity (RFC 8972 §4.8), over the replies that carried TLVs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IntegrityCounts {
    /// The reply's HMAC TLV verified.
    pub verified: u64,
    /// No HMAC TLV, and none needed (no key, or Extra Padding only).
    pub unprotected: u64,
    /// The reply's HMAC TLV did not verify, was misplaced or missing: its TLVs are not used.
    pub failed: u64,
    /// The reflector set the I flag: it could not verify our TLVs (wrong or no key there).
    pub failed_at_reflector: u64,
}

/// The reflector's Location answer (RFC 8972 §4.2): where our packet arrived from its side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocationAnswer {
    /// UDP destination port of our packet at the reflector.
    pub dst_port: u16,
    /// UDP source port of our packet at the reflector (differs from ours behind a NAT).
    pub src_port: u16,
    /// Destination address of our packet at the reflector, if reported.
    pub dst_addr: Option<IpAddr>,
    /// Source address of our packet at the reflector, if reported.
    pub src_addr: Option<IpAddr>,
    /// Source MAC of the last hop, hex, if the reflector knew it.
    pub src_mac: Option<String>,
}

/// The reflector's Timestamp Information answer (RFC 8972 §4.3), registry names where known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimestampInfoAnswer {
    /// Synchronization source at the reflector's ingress.
    pub sync_in: String,
    /// How it took T2.
    pub method_in: String,
    /// Synchronization source at its egress.
    pub sync_out: String,
    /// How it took T3.
    pub method_out: String,
}

/// DSCP and ECN as the reflector received our packets, and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DscpEcnCount {
    /// DSCP (6 bits).
    pub dscp: u8,
    /// ECN (2 bits).
    pub ecn: u8,
    /// Replies that said so.
    pub replies: u64,
}

/// The Class of Service answers (RFC 8972 §4.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CosAnswer {
    /// The DSCP we asked the reply to be sent with (DSCP1, as echoed).
    pub requested_dscp: u8,
    /// Replies whose RP was 1: the reflector's policy refused DSCP1 and sent the reply with
    /// the DSCP our packet arrived with.
    pub refused: u64,
    /// Replies with RP 0 (DSCP1 used for the reply).
    pub accepted: u64,
    /// DSCP2 and ECN: our packets' DSCP and ECN as they reached the reflector.
    pub received_at_reflector: Vec<DscpEcnCount>,
    /// The DSCP and ECN the replies arrived with here (when the kernel said).
    pub replies_arrived_with: Vec<DscpEcnCount>,
}

/// The Direct Measurement answer (RFC 8972 §4.5) with the highest S_TxC: counters against
/// ours. Our S_TxC counts the packet that carries it, and R_RxC is taken to count it too (it
/// has arrived). RFC 8972 does not say whether R_TxC counts the reply that carries it (ippm's
/// reflector does not: the reply is being filled); a reflector that answers every packet it
/// counts has R_TxC = R_RxC - 1 if not, R_RxC if so, and that is how it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DirectMeasurementAnswer {
    /// Our packets transmitted (S_TxC, as echoed).
    pub s_txc: u32,
    /// Packets the reflector received (R_RxC).
    pub r_rxc: u32,
    /// Packets the reflector transmitted (R_TxC).
    pub r_txc: u32,
    /// Replies we had received when that reply arrived (it included).
    pub received: u64,
    /// Whether the reflector filled its counters (both zero: it does not report them).
    pub counters_filled: bool,
    /// Lost on the way out, by the counters: S_TxC - R_RxC (`None` when the reflector does
    /// not fill its counters).
    pub forward_lost: Option<u64>,
    /// Lost on the way back, by the counters: replies sent (R_TxC, plus this one when it
    /// does not count it) - received (`None` as above).
    pub backward_lost: Option<u64>,
}

/// The Access Report echo (RFC 8972 §4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AccessReportAnswer {
    /// Access ID echoed: "3gpp" or "non-3gpp".
    pub id: &'static str,
    /// Return Code echoed.
    pub return_code: u8,
    /// Replies that carried it back (each one acknowledges the report, so no retransmission
    /// timer is needed: every test packet carries it).
    pub acknowledged: u64,
}

/// Follow-Up Telemetry (RFC 8972 §4.7): the reflector's real send times of its previous
/// replies, and the reflector time corrected with them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FollowUpAnswer {
    /// Replies whose Follow-Up Telemetry carried a real send time (non-zero).
    pub reported: u64,
    /// Of those, the times matched to a reply we had (by the reflector's Sequence Number).
    pub matched: u64,
    /// How the reflector took those times (Timestamp M, registry name where known).
    pub method: Option<String>,
    /// Real send time minus the reply's own Timestamp (T3), ns: min, mean, max.
    pub send_delay_ns: Option<[f64; 3]>,
    /// Reflector time with the real send time, FollowUp - T2, ns: min, mean, max.
    pub corrected_reflector_ns: Option<[f64; 3]>,
    /// Round trip with the real send time, (T4 - T1) - (FollowUp - T2), ns: min, mean, max
    /// (T1 as the packet carried it).
    pub corrected_round_trip_ns: Option<[f64; 3]>,
}

/// Everything the reflector said about our TLVs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TlvReport {
    /// Replies that carried a TLV area.
    pub replies_with_tlvs: u64,
    /// Per TLV type we sent, how it came back.
    pub flags: Vec<TlvFlagCounts>,
    /// Integrity of the replies' TLVs.
    pub integrity: IntegrityCounts,
    /// The last Location answer.
    pub location: Option<LocationAnswer>,
    /// Replies whose Location answer differed from the one before (a NAT or path change).
    pub location_changes: u64,
    /// The last Timestamp Information answer.
    pub timestamp_info: Option<TimestampInfoAnswer>,
    /// Class of Service answers.
    pub class_of_service: Option<CosAnswer>,
    /// Direct Measurement counters.
    pub direct_measurement: Option<DirectMeasurementAnswer>,
    /// Access Report echo.
    pub access_report: Option<AccessReportAnswer>,
    /// Follow-Up Telemetry.
    pub follow_up: Option<FollowUpAnswer>,
}

/// The name of a TLV type, for reports.
pub fn tlv_name(t: TlvType) -> &'static str {
    match t {
        TlvType::EXTRA_PADDING => "extra-padding",
        TlvType::LOCATION => "location",
        TlvType::TIMESTAMP_INFO => "timestamp-info",
        TlvType::CLASS_OF_SERVICE => "class-of-service",
        TlvType::DIRECT_MEASUREMENT => "direct-measurement",
        TlvType::ACCESS_REPORT => "access-report",
        TlvType::FOLLOW_UP_TELEMETRY => "follow-up-telemetry",
        TlvType::HMAC => "hmac",
        _ => "unknown",
    }
}

fn codepoint_name(name: Option<&'static str>, v: u8) -> String {
    name.map_or_else(
        || v.to_string(),
        |n| n.to_ascii_lowercase().replace('_', "-"),
    )
}

/// min, sum, max and count of a series, in constant memory.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    n: u64,
    min: f64,
    max: f64,
    sum: f64,
}

impl Span {
    fn push(&mut self, v: f64) {
        if self.n == 0 {
            (self.min, self.max) = (v, v);
        }
        self.n += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v;
    }

    fn get(&self) -> Option<[f64; 3]> {
        (self.n > 0).then(|| [self.min, self.sum / self.n as f64, self.max])
    }
}

/// Recent replies by the reflector's Sequence Number, for Follow-Up Telemetry (which
/// reports on the reply before).
const FOLLOW_RING: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Recent {
    rseq: u32,
    t1: Timestamp,
    t2: Timestamp,
    t3: Timestamp,
    t4: Timestamp,
}

/// Why replies were dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BadReplies {
    /// The base packet's HMAC did not verify (authenticated mode): wrong key or mode.
    pub bad_hmac: u64,
    /// Shorter than the mode's base packet, or unreadable.
    pub malformed: u64,
    /// Another session's SSID.
    pub other_ssid: u64,
}

/// How the STAMP sender reads its replies (the [`ReplyFormat`] of its session).
#[derive(Debug)]
pub(crate) struct StampReplies {
    mode: StampMode,
    key: Option<StampKey>,
    ssid: u16,
    /// The TLV types we send, in order.
    sent_types: Vec<TlvType>,
    pub(crate) bad: BadReplies,
    pub(crate) replies: u64,
    /// A reply whose reflector Sequence Number differs from ours: the reflector is stateful.
    pub(crate) rseq_differs: bool,
    /// Replies with SSID zero (a reflector that does not implement RFC 8972).
    pub(crate) ssid_zero: u64,
    pub(crate) tlvs: TlvReport,
    cos_seen: Box<[u64; 256]>,
    /// The TOS octets replies arrived with (Class of Service sessions).
    tos_seen: Box<[u64; 256]>,
    dm_max: Option<DirectMeasurementAnswer>,
    recent: [Option<Recent>; FOLLOW_RING],
    fu: (Span, Span, Span),
}

impl StampReplies {
    pub(crate) fn new(
        mode: StampMode,
        key: Option<StampKey>,
        ssid: u16,
        sent_types: Vec<TlvType>,
    ) -> Self {
        let flags = sent_types
            .iter()
            .map(|&t| TlvFlagCounts {
                tlv: tlv_name(t),
                ..TlvFlagCounts::default()
            })
            .collect();
        Self {
            mode,
            key,
            ssid,
            sent_types,
            bad: BadReplies::default(),
            replies: 0,
            rseq_differs: false,
            ssid_zero: 0,
            tlvs: TlvReport {
                flags,
                ..TlvReport::default()
            },
            cos_seen: Box::new([0; 256]),
            tos_seen: Box::new([0; 256]),
            dm_max: None,
            recent: [None; FOLLOW_RING],
            fu: Default::default(),
        }
    }

    /// The TLV report once every reply is in.
    pub(crate) fn finish(&mut self) -> TlvReport {
        let mut t = self.tlvs.clone();
        let counts = |seen: &[u64; 256]| -> Vec<DscpEcnCount> {
            seen.iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, &n)| DscpEcnCount {
                    dscp: (i >> 2) as u8,
                    ecn: (i & 3) as u8,
                    replies: n,
                })
                .collect()
        };
        if let Some(c) = &mut t.class_of_service {
            c.received_at_reflector = counts(&self.cos_seen);
            c.replies_arrived_with = counts(&self.tos_seen);
        }
        t.direct_measurement = self.dm_max;
        if let Some(f) = &mut t.follow_up {
            f.send_delay_ns = self.fu.0.get();
            f.corrected_reflector_ns = self.fu.1.get();
            f.corrected_round_trip_ns = self.fu.2.get();
        }
        t
    }

    fn flags(&mut self, area: &[u8]) {
        let mut seen = vec![false; self.sent_types.len()];
        for t in ippm_proto::wire::stamp_tlv::Tlvs::new(area).flatten() {
            let Some(i) = self.sent_types.iter().position(|&s| s == t.tlv_type()) else {
                continue;
            };
            seen[i] = true;
            let c = &mut self.tlvs.flags[i];
            if t.flags.contains(TlvFlags::I) {
                c.integrity_failed += 1;
            } else if t.flags.contains(TlvFlags::M) {
                c.malformed += 1;
            } else if t.flags.contains(TlvFlags::U) {
                c.unrecognized += 1;
            } else {
                c.answered += 1;
            }
        }
        for (c, s) in self.tlvs.flags.iter_mut().zip(seen) {
            if !s {
                c.absent += 1;
            }
        }
    }

    fn answer(&mut self, t: TlvRepr<'_>) {
        match t {
            TlvRepr::Location(l) => {
                let mut a = LocationAnswer {
                    dst_port: l.dst_port,
                    src_port: l.src_port,
                    dst_addr: None,
                    src_addr: None,
                    src_mac: None,
                };
                // All zero: the reflector does not know the MAC (RFC 8972 §4.2.2).
                let hex = |b: &[u8]| {
                    b.iter()
                        .any(|&x| x != 0)
                        .then(|| b.iter().map(|x| format!("{x:02x}")).collect::<String>())
                };
                for s in &l.subs {
                    match s.sub {
                        LocationSub::SourceEui48(m) => a.src_mac = hex(&m),
                        LocationSub::SourceEui64(m) => a.src_mac = hex(&m),
                        LocationSub::DestinationIpv4(ip) => a.dst_addr = Some(IpAddr::V4(ip)),
                        LocationSub::DestinationIpv6(ip) => a.dst_addr = Some(IpAddr::V6(ip)),
                        LocationSub::SourceIpv4(ip) => a.src_addr = Some(IpAddr::V4(ip)),
                        LocationSub::SourceIpv6(ip) => a.src_addr = Some(IpAddr::V6(ip)),
                        _ => {}
                    }
                }
                // An address the reflector did not fill is all zero: not reported.
                for ip in [&mut a.dst_addr, &mut a.src_addr] {
                    if matches!(ip, Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
                        || matches!(ip, Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)))
                    {
                        *ip = None;
                    }
                }
                if self.tlvs.location.as_ref().is_some_and(|old| *old != a) {
                    self.tlvs.location_changes += 1;
                }
                self.tlvs.location = Some(a);
            }
            TlvRepr::TimestampInfo(i, _) => {
                self.tlvs.timestamp_info = Some(TimestampInfoAnswer {
                    sync_in: codepoint_name(i.sync_in.name(), i.sync_in.0),
                    method_in: codepoint_name(i.method_in.name(), i.method_in.0),
                    sync_out: codepoint_name(i.sync_out.name(), i.sync_out.0),
                    method_out: codepoint_name(i.method_out.name(), i.method_out.0),
                });
            }
            TlvRepr::ClassOfService(c) => {
                let a = self.tlvs.class_of_service.get_or_insert(CosAnswer {
                    requested_dscp: c.dscp1,
                    refused: 0,
                    accepted: 0,
                    received_at_reflector: Vec::new(),
                    replies_arrived_with: Vec::new(),
                });
                if c.rp == 1 {
                    a.refused += 1;
                } else {
                    a.accepted += 1;
                }
                self.cos_seen[usize::from((c.dscp2 & 0x3f) << 2 | (c.ecn & 3))] += 1;
            }
            TlvRepr::DirectMeasurement(d) if self.dm_max.is_none_or(|m| d.s_txc >= m.s_txc) => {
                let received = self.replies;
                let sent = if d.r_txc < d.r_rxc {
                    d.r_txc.wrapping_add(1)
                } else {
                    d.r_txc
                };
                // Both zero: a reflector that does not count (a stateless one), not loss.
                let filled = d.r_rxc != 0 || d.r_txc != 0;
                self.dm_max = Some(DirectMeasurementAnswer {
                    s_txc: d.s_txc,
                    r_rxc: d.r_rxc,
                    r_txc: d.r_txc,
                    received,
                    counters_filled: filled,
                    forward_lost: filled.then(|| u64::from(d.s_txc.saturating_sub(d.r_rxc))),
                    backward_lost: filled.then(|| u64::from(sent).saturating_sub(received)),
                });
            }
            TlvRepr::AccessReport(a) => {
                let e = self.tlvs.access_report.get_or_insert(AccessReportAnswer {
                    id: "",
                    return_code: 0,
                    acknowledged: 0,
                });
                e.id = match a.id {
                    AccessId::ThreeGpp => "3gpp",
                    AccessId::NonThreeGpp => "non-3gpp",
                };
                e.return_code = a.return_code.0;
                e.acknowledged += 1;
            }
            TlvRepr::FollowUpTelemetry(f) => self.follow_up(f),
            _ => {}
        }
    }

    fn follow_up(&mut self, f: FollowUpTelemetry) {
        let a = self.tlvs.follow_up.get_or_insert(FollowUpAnswer {
            reported: 0,
            matched: 0,
            method: None,
            send_delay_ns: None,
            corrected_reflector_ns: None,
            corrected_round_trip_ns: None,
        });
        if f.timestamp == Timestamp::ZERO {
            // A stateless reflector, or nothing sent before this reply.
            return;
        }
        a.reported += 1;
        a.method = Some(codepoint_name(f.mode.name(), f.mode.0));
        let Some(p) = self.recent[f.seq as usize % FOLLOW_RING].filter(|p| p.rseq == f.seq) else {
            return;
        };
        a.matched += 1;
        let ns = |from: Timestamp, to: Timestamp| to.nanos_since(from) as f64;
        self.fu.0.push(ns(p.t3, f.timestamp));
        self.fu.1.push(ns(p.t2, f.timestamp));
        self.fu.2.push(ns(p.t1, p.t4) - ns(p.t2, f.timestamp));
    }
}

impl ReplyFormat for StampReplies {
    fn open(
        &mut self,
        pkt: &mut [u8],
        meta: &RecvMeta,
        recv_time: Timestamp,
    ) -> Option<ippm_proto::wire::test::ReflectorRepr> {
        self.read(pkt, recv_time, meta.tos)
    }
}

impl StampReplies {
    /// Checks and reads one reply that arrived at `recv_time` (T4) with TOS octet `tos`
    /// (when the kernel said); `None`: dropped.
    pub(crate) fn read(
        &mut self,
        pkt: &[u8],
        recv_time: Timestamp,
        tos: Option<u8>,
    ) -> Option<ippm_proto::wire::test::ReflectorRepr> {
        let r = match open_reflected(pkt, self.mode, self.key.as_ref()) {
            Ok(r) => r,
            Err(StampError::BadHmac | StampError::NoKey) => {
                self.bad.bad_hmac += 1;
                return None;
            }
            Err(_) => {
                self.bad.malformed += 1;
                return None;
            }
        };
        if r.repr.ssid != self.ssid {
            if r.repr.ssid != 0 {
                self.bad.other_ssid += 1;
                return None;
            }
            self.ssid_zero += 1;
        }
        self.replies += 1;
        self.rseq_differs |= r.repr.seq != r.repr.sender_seq;
        if let Some(t) = tos.filter(|_| self.sent_types.contains(&TlvType::CLASS_OF_SERVICE)) {
            self.tos_seen[usize::from(t)] += 1;
        }
        if !r.area.is_empty() && !self.sent_types.is_empty() {
            self.tlvs.replies_with_tlvs += 1;
            self.flags(r.area);
            let i = &mut self.tlvs.integrity;
            match r.tlv_integrity {
                TlvIntegrity::Verified => i.verified += 1,
                TlvIntegrity::Unprotected => i.unprotected += 1,
                TlvIntegrity::Failed => i.failed += 1,
                TlvIntegrity::FailedAtReflector => i.failed_at_reflector += 1,
            }
            for t in r.usable_tlvs() {
                if let Ok(t) = TlvRepr::parse(&t) {
                    self.answer(t);
                }
            }
            // After its own Follow-Up Telemetry: the next reply's is about this one.
            self.recent[r.repr.seq as usize % FOLLOW_RING] = Some(Recent {
                rseq: r.repr.seq,
                t1: r.repr.sender_timestamp,
                t2: r.repr.receive_timestamp,
                t3: r.repr.timestamp,
                t4: recv_time,
            });
        }
        Some(reply_fields(&r.repr))
    }
}
