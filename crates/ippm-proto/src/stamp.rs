//! STAMP test-packet processing (RFC 8762, RFC 8972) without I/O: the HMAC key, the
//! Session-Reflector's per-packet work as pure functions, and the Session-Sender's build and
//! verify. Formats are in [`crate::wire::stamp`] and [`crate::wire::stamp_tlv`].
//!
//! The reflector works in two steps, like TWAMP's `reflect_layout` + `seal_reply` in
//! `ippm-net`: [`reflect_layout`] when the packet arrives (checks the sender's HMACs, lays out
//! the reply with its TLV answers, Timestamp still zero) and [`seal`] just before the send
//! (stamps T3, computes the base HMAC and the HMAC TLV). The sender does the same with
//! [`build_sender`] then [`seal`] (stamping T1), and reads replies with [`open_reflected`].
//! None of them allocates.
//!
//! TLV policy (RFC 8972 §4, §4.8), the reflector's side:
//! - Integrity comes first. With a key, TLV integrity is on (always in authenticated mode;
//!   in unauthenticated mode the key is the "control to enable" RFC 8972 §4.8 asks for): the
//!   TLVs must end with an HMAC TLV, followed only by Extra Padding TLVs, unless every TLV is
//!   Extra Padding. An HMAC TLV that does not verify, sits elsewhere, is missing when
//!   required, or arrives without a key to check it makes the reflector copy every TLV with
//!   the I flag set and process none.
//! - A TLV whose type is unknown (or an Access Report with an invalid ID, which RFC 8972
//!   §4.6 says to discard) is copied with only U set.
//! - A TLV that runs past the packet, or whose Length is wrong for its type (a sub-TLV's
//!   included), stops processing: it and everything after it are copied as received, with M
//!   set on it (and on the bad sub-TLV).
//! - Every TLV understood goes back with the same length and no flag set, its
//!   reflector-filled fields written from [`ReflectorTlvInputs`].
//!
//! A packet of the mode's base length or longer gets a reply of the same length; a shorter
//! unauthenticated packet (a TWAMP-Light sender's 14 octets and padding) gets the 44-octet
//! base packet (RFC 8762 §4.6). Without [`ReflectorConfig::extensions`] the octets after the
//! base packet are copied without being read as TLVs (RFC 8762 §4.3), which is what a
//! TWAMP-Light sender's padding needs.

use std::net::IpAddr;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::WireError;
use crate::time::{ErrorEstimate, Timestamp};
use crate::wire::HMAC_LEN;
use crate::wire::check_len;
use crate::wire::stamp::{
    AUTH_HMAC_COVERS, HMAC_FIELD, ReflectorRepr, SenderRepr, StampMode, stamp_timestamp,
};
use crate::wire::stamp_tlv::{
    AccessReport, ClassOfService, DirectMeasurement, FollowUpTelemetry, Location, LocationSub,
    SubTlvType, TLV_HEADER_LEN, TimestampInfo, Tlv, TlvFlags, TlvRepr, TlvType, Tlvs,
};

type HmacSha256 = Hmac<Sha256>;

/// Why a STAMP packet was not reflected, built or accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StampError {
    /// The packet (or a buffer) has the wrong size.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The base packet's HMAC (RFC 8762 §4.4) did not verify: the packet is dropped.
    #[error("STAMP HMAC mismatch")]
    BadHmac,
    /// Authenticated mode, or a packet laid out with an HMAC TLV, and no key.
    #[error("STAMP authenticated mode needs a key")]
    NoKey,
    /// A key was empty or not hex.
    #[error("bad STAMP key: {0}")]
    BadKey(&'static str),
}

/// The HMAC-SHA-256 key of a STAMP session (RFC 8762 §4.4, RFC 8972 §4.8), held as the keyed
/// HMAC state so each packet costs one HMAC and no key schedule. The state is zeroized on drop
/// (hmac's `zeroize` feature) and the key octets given are not kept.
#[derive(Clone)]
pub struct StampKey {
    mac: HmacSha256,
}

impl StampKey {
    /// A key from its octets (any non-zero length; RFC 4868 §2.1.1 suggests 32).
    pub fn new(key: &[u8]) -> Result<Self, StampError> {
        if key.is_empty() {
            return Err(StampError::BadKey("empty"));
        }
        let mac = <HmacSha256 as KeyInit>::new_from_slice(key)
            .map_err(|_| StampError::BadKey("length"))?;
        Ok(Self { mac })
    }

    /// A key from hex, as in a key file (surrounding white space allowed); the decoded
    /// octets are zeroized once the HMAC state holds them.
    pub fn from_hex(text: &str) -> Result<Self, StampError> {
        let t = text.trim();
        if t.len() % 2 != 0 {
            return Err(StampError::BadKey("odd number of hex digits"));
        }
        let mut key = zeroize::Zeroizing::new(vec![0u8; t.len() / 2]);
        hex::decode_to_slice(t, &mut key).map_err(|_| StampError::BadKey("not hex"))?;
        Self::new(&key)
    }

    /// HMAC-SHA-256 of the concatenation of `parts`, truncated to 16 octets (RFC 4868).
    pub fn hmac(&self, parts: &[&[u8]]) -> [u8; HMAC_LEN] {
        let mut m = self.mac.clone();
        for p in parts {
            m.update(p);
        }
        let full = m.finalize().into_bytes();
        let mut out = [0u8; HMAC_LEN];
        out.copy_from_slice(&full[..HMAC_LEN]);
        out
    }

    /// Whether `received` is the HMAC of `parts`, compared in constant time.
    pub fn verify(&self, parts: &[&[u8]], received: &[u8]) -> bool {
        let want = self.hmac(parts);
        want.len() == received.len() && bool::from(want.ct_eq(received))
    }
}

impl std::fmt::Debug for StampKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StampKey([redacted])")
    }
}

/// What became of the TLVs' integrity (RFC 8972 §4.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlvIntegrity {
    /// No HMAC TLV, and none required.
    Unprotected,
    /// The HMAC TLV verified.
    Verified,
    /// The HMAC TLV did not verify, was misplaced, was missing when required, or could not be
    /// checked for want of a key.
    Failed,
    /// The reflector set the I flag: it could not verify the sender's TLVs.
    FailedAtReflector,
}

/// Where the packet's HMACs go, for [`seal`]: returned by [`reflect_layout`] and
/// [`build_sender`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealing {
    /// Octets of the packet laid out.
    pub len: usize,
    /// Its mode.
    pub mode: StampMode,
    /// Offset of an HMAC TLV whose HMAC [`seal`] computes, if any.
    pub hmac_tlv: Option<usize>,
}

/// Stamps the Timestamp (T1 or T3: take it just before calling this and sending) and computes
/// the HMACs: the base packet's in authenticated mode (octets 0..96, RFC 8762 §4.4) and the
/// HMAC TLV's (the Sequence Number and every TLV before it, RFC 8972 §4.8). `pkt` is the
/// buffer the packet was laid out in.
pub fn seal(
    pkt: &mut [u8],
    s: &Sealing,
    key: Option<&StampKey>,
    t: Timestamp,
) -> Result<(), StampError> {
    let pkt = pkt
        .get_mut(..s.len)
        .ok_or(WireError::BufferTooSmall("STAMP packet"))?;
    check_len(pkt, s.mode.base_len(), "STAMP packet")?;
    stamp_timestamp(pkt, s.mode, t);
    if let Some(off) = s.hmac_tlv {
        let key = key.ok_or(StampError::NoKey)?;
        let base = s.mode.base_len();
        let end = off + TLV_HEADER_LEN + HMAC_LEN;
        if off < base || end > pkt.len() {
            return Err(WireError::Truncated("STAMP HMAC TLV").into());
        }
        let mac = key.hmac(&[&pkt[0..4], &pkt[base..off]]);
        pkt[off + TLV_HEADER_LEN..end].copy_from_slice(&mac);
    }
    if s.mode == StampMode::Authenticated {
        // After the HMAC TLV: the base HMAC covers only octets 0..96, so the order does not
        // matter, but it is the last field the RFC has us write.
        let key = key.ok_or(StampError::NoKey)?;
        let mac = key.hmac(&[&pkt[..AUTH_HMAC_COVERS]]);
        pkt[HMAC_FIELD].copy_from_slice(&mac);
    }
    Ok(())
}

/// Checks the base HMAC of an authenticated packet of at least 112 octets.
fn verify_base(pkt: &[u8], key: Option<&StampKey>) -> Result<(), StampError> {
    let key = key.ok_or(StampError::NoKey)?;
    if key.verify(&[&pkt[..AUTH_HMAC_COVERS]], &pkt[HMAC_FIELD]) {
        Ok(())
    } else {
        Err(StampError::BadHmac)
    }
}

/// RFC 8972 §4.8's integrity rules over a TLV area whose packet's Sequence Number field is
/// `seq`; returns the HMAC TLV's offset in the area when it verified.
fn tlv_integrity(key: Option<&StampKey>, seq: &[u8], area: &[u8]) -> (TlvIntegrity, Option<usize>) {
    let mut hmac_tlv: Option<Tlv<'_>> = None;
    let mut misplaced = false;
    let mut all_padding = true;
    for t in Tlvs::new(area) {
        let Ok(t) = t else {
            // Unreadable octets: padding or not, nobody can tell.
            all_padding = false;
            misplaced |= hmac_tlv.is_some();
            break;
        };
        match t.tlv_type() {
            TlvType::EXTRA_PADDING => {}
            TlvType::HMAC if hmac_tlv.is_none() => {
                hmac_tlv = Some(t);
                all_padding = false;
            }
            _ => {
                all_padding = false;
                // Only Extra Padding may follow the HMAC TLV (RFC 8972 §4.8).
                misplaced |= hmac_tlv.is_some();
            }
        }
    }
    match (hmac_tlv, key) {
        (None, None) => (TlvIntegrity::Unprotected, None),
        (None, Some(_)) if all_padding => (TlvIntegrity::Unprotected, None),
        (None, Some(_)) | (Some(_), None) => (TlvIntegrity::Failed, None),
        (Some(h), Some(k)) => {
            let ok = !misplaced
                && h.value.len() == HMAC_LEN
                && k.verify(&[seq, &area[..h.offset]], h.value);
            if ok {
                (TlvIntegrity::Verified, Some(h.offset))
            } else {
                (TlvIntegrity::Failed, None)
            }
        }
    }
}

/// A Session-Reflector's fixed configuration for a session.
#[derive(Debug, Clone, Copy)]
pub struct ReflectorConfig<'k> {
    /// The session's mode.
    pub mode: StampMode,
    /// The HMAC key: required in authenticated mode; in unauthenticated mode it turns on TLV
    /// integrity (RFC 8972 §4.8).
    pub key: Option<&'k StampKey>,
    /// Read the octets after the base packet as RFC 8972 TLVs; off, they are copied as they
    /// are (an RFC 8762-only reflector, or TWAMP-Light senders whose padding is not TLVs).
    pub extensions: bool,
    /// The reflector clock's Error Estimate.
    pub error_estimate: ErrorEstimate,
}

/// One received packet and what the kernel said about it.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// The UDP payload.
    pub packet: &'a [u8],
    /// When it arrived (T2), from the kernel's receive timestamp.
    pub receive_time: Timestamp,
    /// Its IPv4 TTL or IPv6 Hop Limit, when the kernel said; 255 is sent otherwise, as TWAMP
    /// does (RFC 5357 §4.2.1).
    pub ttl: Option<u8>,
    /// Its DSCP (6 bits).
    pub dscp: u8,
    /// Its ECN (2 bits).
    pub ecn: u8,
}

/// A source MAC address as a Location TLV answer carries it (RFC 8972 §4.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MacAddr {
    /// EUI-48 (Ethernet).
    Eui48([u8; 6]),
    /// EUI-64.
    Eui64([u8; 8]),
}

/// The reflector's own inputs for the TLV answers. `None` or zero fields go back as zeros,
/// which RFC 8972 allows for information a reflector does not report.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReflectorTlvInputs {
    /// UDP destination port of the received packet (Location).
    pub dst_port: u16,
    /// UDP source port of the received packet (Location).
    pub src_port: u16,
    /// The received packet's destination address (Location), if reported.
    pub dst_addr: Option<IpAddr>,
    /// The received packet's source address (Location), if reported.
    pub src_addr: Option<IpAddr>,
    /// The received frame's source MAC (Location), if known and reported.
    pub src_mac: Option<MacAddr>,
    /// The clock's synchronization and timestamping methods (Timestamp Information).
    pub timestamp_info: Option<TimestampInfo>,
    /// The reflector's in-profile counters, received and transmitted (Direct Measurement).
    pub counters: Option<(u32, u32)>,
    /// The previous reply of the session: its Sequence Number and real transmit time
    /// (Follow-Up Telemetry); ignored by a stateless reflector, which sends zeros.
    pub follow_up: Option<FollowUpTelemetry>,
    /// DSCPs the local policy lets a sender pick for the reply (bit `d` for DSCP `d`), for
    /// the Class of Service TLV.
    pub permitted_dscp: u64,
}

/// A reply laid out by [`reflect_layout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// What [`seal`] needs.
    pub sealing: Sealing,
    /// The DSCP to send the reply with when a Class of Service TLV decided it (DSCP1 when
    /// permitted, the received DSCP otherwise, RFC 8972 §4.4); `None` leaves it to the
    /// session.
    pub dscp: Option<u8>,
    /// What became of the sender's TLVs' integrity.
    pub tlv_integrity: TlvIntegrity,
    /// The sender's packet was shorter than the base packet (a TWAMP-Light sender).
    pub short_sender: bool,
}

/// Checks the sender's packet and lays out the reply in `tx`, its Timestamp zero and its
/// HMACs not computed: call [`seal`] with [`Reply::sealing`] just before sending. `seq` is the
/// reflector's own Sequence Number for this reply (stateful), or `None` to copy the sender's
/// (stateless, RFC 8762 §4). Allocates nothing.
pub fn reflect_layout(
    cfg: &ReflectorConfig<'_>,
    rx: &Received<'_>,
    seq: Option<u32>,
    inputs: &ReflectorTlvInputs,
    tx: &mut [u8],
) -> Result<Reply, StampError> {
    let mode = cfg.mode;
    let base = mode.base_len();
    let pkt = rx.packet;
    let (sender, short_sender) = match mode {
        StampMode::Authenticated => {
            check_len(pkt, base, "STAMP sender packet")?;
            // RFC 8762 §4.4: verified as early as possible.
            verify_base(pkt, cfg.key)?;
            (SenderRepr::parse(pkt, mode)?, false)
        }
        StampMode::Unauthenticated if pkt.len() >= base => (SenderRepr::parse(pkt, mode)?, false),
        StampMode::Unauthenticated => (SenderRepr::parse_twamp_light(pkt)?, true),
    };
    let len = pkt.len().max(base);
    let out = tx
        .get_mut(..len)
        .ok_or(WireError::BufferTooSmall("STAMP reply"))?;
    ReflectorRepr {
        seq: seq.unwrap_or(sender.seq),
        timestamp: Timestamp::ZERO,
        error_estimate: cfg.error_estimate,
        ssid: sender.ssid,
        receive_timestamp: rx.receive_time,
        sender_seq: sender.seq,
        sender_timestamp: sender.timestamp,
        sender_error_estimate: sender.error_estimate,
        sender_ttl: rx.ttl.unwrap_or(255),
    }
    .emit(out, mode)?;
    let area_in = pkt.get(base..).unwrap_or(&[]);
    let area_out = &mut out[base..];
    area_out.copy_from_slice(area_in);
    let mut reply = Reply {
        sealing: Sealing {
            len,
            mode,
            hmac_tlv: None,
        },
        dscp: None,
        tlv_integrity: TlvIntegrity::Unprotected,
        short_sender,
    };
    if !cfg.extensions || area_in.is_empty() {
        return Ok(reply);
    }
    let (integrity, hmac_at) = tlv_integrity(cfg.key, &pkt[0..4], area_in);
    reply.tlv_integrity = integrity;
    // Computed even when processing stops before the HMAC TLV at a malformed TLV: the reply's
    // TLVs are then still authenticated, and the sender sees the M flag.
    reply.sealing.hmac_tlv = hmac_at.map(|o| base + o);
    if integrity == TlvIntegrity::Failed {
        // RFC 8972 §4.8: copy the TLVs, I set in each, process none.
        for t in Tlvs::new(area_in) {
            let off = match t {
                Ok(t) => t.offset,
                Err(m) => m.offset,
            };
            area_out[off] |= TlvFlags::I.0;
        }
        return Ok(reply);
    }
    let stateful = seq.is_some();
    for t in Tlvs::new(area_in) {
        let t = match t {
            Ok(t) => t,
            Err(m) => {
                area_out[m.offset] = TlvFlags::M.0;
                break;
            }
        };
        let out = &mut area_out[t.offset..t.end()];
        match answer(&t, out, rx, stateful, inputs, &mut reply.dscp) {
            Outcome::Understood => out[0] = 0,
            Outcome::Unrecognized => out[0] = TlvFlags::U.0,
            Outcome::Malformed { sub } => {
                // Copy the TLV and the rest as received, M on the TLV and the bad sub-TLV.
                area_out[t.offset..].copy_from_slice(&area_in[t.offset..]);
                area_out[t.offset] = TlvFlags::M.0;
                if let Some(s) = sub {
                    area_out[t.offset + TLV_HEADER_LEN + s] |= TlvFlags::M.0;
                }
                if t.tlv_type() == TlvType::FOLLOW_UP_TELEMETRY {
                    // §4.7: an invalid Length zeroes Sequence Number and Follow-Up Timestamp.
                    let v = t.offset + TLV_HEADER_LEN;
                    let n = t.value.len().min(12);
                    area_out[v..v + n].fill(0);
                }
                break;
            }
        }
    }
    Ok(reply)
}

/// What the reflector made of one TLV.
enum Outcome {
    /// Answered in place.
    Understood,
    /// Copied, not processed.
    Unrecognized,
    /// Length not valid for the type; `sub` is the offset in the value of a bad sub-TLV.
    Malformed { sub: Option<usize> },
}

/// Writes the answer to one well-formed TLV into `out`, which holds a copy of it.
fn answer(
    t: &Tlv<'_>,
    out: &mut [u8],
    rx: &Received<'_>,
    stateful: bool,
    inputs: &ReflectorTlvInputs,
    dscp: &mut Option<u8>,
) -> Outcome {
    let malformed = Outcome::Malformed { sub: None };
    let v = &mut out[TLV_HEADER_LEN..];
    if t.tlv_type() == TlvType::LOCATION {
        // Checked here rather than by `TlvRepr::parse`, which collects the sub-TLVs into a
        // Vec: the reflector's per-packet path does not allocate.
        if t.value.len() < Location::FIXED_LEN {
            return malformed;
        }
        if let Some(sub) = first_bad_sub(t) {
            return Outcome::Malformed { sub: Some(sub) };
        }
        answer_location(v, inputs);
        return Outcome::Understood;
    }
    match TlvRepr::parse(t) {
        Err(_) if t.tlv_type() == TlvType::ACCESS_REPORT && t.value.len() == AccessReport::LEN => {
            // An invalid Access ID: RFC 8972 §4.6 says discard; copied back unprocessed.
            Outcome::Unrecognized
        }
        Err(_) if t.tlv_type() == TlvType::TIMESTAMP_INFO => Outcome::Malformed {
            sub: first_bad_sub(t),
        },
        Err(_) => malformed,
        Ok(TlvRepr::ExtraPadding(_)) => Outcome::Understood,
        Ok(TlvRepr::Unknown(..)) => Outcome::Unrecognized,
        Ok(TlvRepr::Hmac(_)) => {
            // Computed by `seal` over the reply's own TLVs.
            v.fill(0);
            Outcome::Understood
        }
        // Handled above.
        Ok(TlvRepr::Location(_)) => Outcome::Understood,
        Ok(TlvRepr::TimestampInfo(..)) => {
            let mut a = [0u8; 4];
            inputs.timestamp_info.unwrap_or_default().emit(&mut a);
            v[..4].copy_from_slice(&a);
            // RFC 8972 defines no sub-TLV for this TLV: each one is unrecognized.
            for s in Tlvs::new(&t.value[TimestampInfo::LEN..]).flatten() {
                v[TimestampInfo::LEN + s.offset] = TlvFlags::U.0;
            }
            Outcome::Understood
        }
        Ok(TlvRepr::ClassOfService(c)) => {
            let permitted = inputs.permitted_dscp & (1u64 << (c.dscp1 & 0x3f)) != 0;
            let reply = ClassOfService {
                dscp1: c.dscp1,
                dscp2: rx.dscp & 0x3f,
                ecn: rx.ecn & 0x03,
                rp: u8::from(!permitted),
            };
            *dscp = Some(if permitted { c.dscp1 } else { rx.dscp & 0x3f });
            let mut a = [0u8; 4];
            reply.emit(&mut a);
            v.copy_from_slice(&a);
            Outcome::Understood
        }
        Ok(TlvRepr::DirectMeasurement(d)) => {
            let (r_rxc, r_txc) = inputs.counters.unwrap_or((0, 0));
            let mut a = [0u8; 12];
            DirectMeasurement {
                s_txc: d.s_txc,
                r_rxc,
                r_txc,
            }
            .emit(&mut a);
            v.copy_from_slice(&a);
            Outcome::Understood
        }
        Ok(TlvRepr::AccessReport(r)) => {
            let mut a = [0u8; 4];
            r.emit(&mut a);
            v.copy_from_slice(&a);
            Outcome::Understood
        }
        Ok(TlvRepr::FollowUpTelemetry(_)) => {
            let f = match (stateful, inputs.follow_up) {
                (true, Some(f)) => f,
                // §4.7: a stateless reflector (or one with nothing sent yet) sends zeros.
                _ => FollowUpTelemetry::default(),
            };
            let mut a = [0u8; 16];
            f.emit(&mut a);
            v.copy_from_slice(&a);
            Outcome::Understood
        }
    }
}

/// The offset in `t`'s value of its first bad sub-TLV (Location or Timestamp Information).
fn first_bad_sub(t: &Tlv<'_>) -> Option<usize> {
    // Both TLVs have 4 fixed octets before their sub-TLVs.
    let fixed = Location::FIXED_LEN;
    let subs = t.value.get(fixed..)?;
    for s in Tlvs::new(subs) {
        match s {
            Err(m) => return Some(fixed + m.offset),
            Ok(s) if t.tlv_type() == TlvType::LOCATION => {
                if LocationSub::parse(s.sub_tlv_type(), s.value).is_err() {
                    return Some(fixed + s.offset);
                }
            }
            Ok(_) => {}
        }
    }
    None
}

/// Answers a Location TLV's value in place (RFC 8972 §4.2.2): ports, then each request
/// sub-TLV replaced by the specific answer of the same size. The value has been checked by
/// [`first_bad_sub`]: every sub-TLV is well formed.
fn answer_location(v: &mut [u8], inputs: &ReflectorTlvInputs) {
    v[0..2].copy_from_slice(&inputs.dst_port.to_be_bytes());
    v[2..4].copy_from_slice(&inputs.src_port.to_be_bytes());
    let mut pos = 4;
    while pos + TLV_HEADER_LEN <= v.len() {
        let len = usize::from(u16::from_be_bytes([v[pos + 2], v[pos + 3]]));
        let end = pos + TLV_HEADER_LEN + len;
        let typ = SubTlvType(v[pos + 1]);
        let Some(value) = v.get_mut(pos + TLV_HEADER_LEN..end) else {
            break;
        };
        let (flags, new_type) = match typ {
            SubTlvType(0x01..=0x03) => {
                value.fill(0);
                match inputs.src_mac {
                    Some(MacAddr::Eui48(m)) => {
                        value[..6].copy_from_slice(&m);
                        (0, SubTlvType::SOURCE_EUI48)
                    }
                    Some(MacAddr::Eui64(m)) => {
                        value.copy_from_slice(&m);
                        (0, SubTlvType::SOURCE_EUI64)
                    }
                    // §4.2.2: no source MAC, a zeroed EUI-64.
                    None => (0, SubTlvType::SOURCE_EUI64),
                }
            }
            SubTlvType(0x04..=0x06) => (
                0,
                write_ip(value, inputs.dst_addr, SubTlvType::DESTINATION_IP, 0x05),
            ),
            SubTlvType(0x07..=0x09) => (
                0,
                write_ip(value, inputs.src_addr, SubTlvType::SOURCE_IP, 0x08),
            ),
            // Unknown: the received value back, U set.
            _ => (TlvFlags::U.0, typ),
        };
        v[pos] = flags;
        v[pos + 1] = new_type.0;
        pos = end;
    }
}

/// Writes an address answer into a 16-octet sub-TLV value: IPv4 as type `v4_type` (then 12
/// octets MBZ), IPv6 as `v4_type + 1`, none as the `generic` request type, all zero.
fn write_ip(value: &mut [u8], a: Option<IpAddr>, generic: SubTlvType, v4_type: u8) -> SubTlvType {
    value.fill(0);
    match a {
        Some(IpAddr::V4(a)) => {
            value[..4].copy_from_slice(&a.octets());
            SubTlvType(v4_type)
        }
        Some(IpAddr::V6(a)) => {
            value.copy_from_slice(&a.octets());
            SubTlvType(v4_type + 1)
        }
        None => generic,
    }
}

/// Lays out a Session-Sender packet in `buf`: the base packet (Timestamp zero), then `tlvs`
/// in order, each with the U flag set (RFC 8972 §4: a sender sets U on every TLV; sub-TLV
/// flags are the caller's). A bigger packet is made with an Extra Padding TLV, as RFC 8972
/// §4.1 recommends. With `key`, and TLVs
/// other than Extra Padding, an HMAC TLV is placed after the last of those (RFC 8972 §4.8;
/// Extra Padding may follow it). Call [`seal`] just before sending.
pub fn build_sender(
    buf: &mut [u8],
    mode: StampMode,
    repr: &SenderRepr,
    tlvs: &[TlvRepr<'_>],
    key: Option<&StampKey>,
) -> Result<Sealing, StampError> {
    if mode == StampMode::Authenticated && key.is_none() {
        return Err(StampError::NoKey);
    }
    repr.emit(buf, mode)?;
    let base = mode.base_len();
    let mut pos = base;
    let last_protected = tlvs
        .iter()
        .rposition(|t| t.tlv_type() != TlvType::EXTRA_PADDING);
    let mut hmac_tlv = None;
    for (i, t) in tlvs.iter().enumerate() {
        pos += t.emit(buf.get_mut(pos..).unwrap_or(&mut []), TlvFlags::U)?;
        if key.is_some() && Some(i) == last_protected {
            hmac_tlv = Some(pos);
            pos += TlvRepr::Hmac([0; HMAC_LEN])
                .emit(buf.get_mut(pos..).unwrap_or(&mut []), TlvFlags::U)?;
        }
    }
    Ok(Sealing {
        len: pos,
        mode,
        hmac_tlv,
    })
}

/// A reflected packet as the Session-Sender reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reflected<'a> {
    /// The base packet.
    pub repr: ReflectorRepr,
    /// The TLV area (after the base packet).
    pub area: &'a [u8],
    /// What became of the TLVs' integrity.
    pub tlv_integrity: TlvIntegrity,
}

impl<'a> Reflected<'a> {
    /// Every TLV of the area, as found.
    pub fn tlvs(&self) -> Tlvs<'a> {
        Tlvs::new(self.area)
    }

    /// The TLVs the sender may use, by RFC 8972 §4's rules: none when integrity failed (at
    /// either end); U-flagged TLVs skipped; processing stops at an M-flagged or malformed
    /// TLV; the HMAC TLV itself (already checked) is left out.
    pub fn usable_tlvs(&self) -> impl Iterator<Item = Tlv<'a>> + 'a {
        let usable = !matches!(
            self.tlv_integrity,
            TlvIntegrity::Failed | TlvIntegrity::FailedAtReflector
        );
        Tlvs::new(if usable { self.area } else { &[] })
            .map_while(|t| t.ok().filter(|t| !t.flags.contains(TlvFlags::M)))
            .filter(|t| !t.flags.contains(TlvFlags::U) && t.tlv_type() != TlvType::HMAC)
    }
}

/// Reads a reflected packet: checks the base HMAC in authenticated mode (a mismatch drops the
/// packet: [`StampError::BadHmac`]), then the TLVs' integrity (which never drops the packet,
/// only the TLVs: see [`Reflected::usable_tlvs`]).
pub fn open_reflected<'a>(
    pkt: &'a [u8],
    mode: StampMode,
    key: Option<&StampKey>,
) -> Result<Reflected<'a>, StampError> {
    let repr = ReflectorRepr::parse(pkt, mode)?;
    if mode == StampMode::Authenticated {
        verify_base(pkt, key)?;
    }
    let area = &pkt[mode.base_len()..];
    let flagged = Tlvs::new(area).any(|t| t.is_ok_and(|t| t.flags.contains(TlvFlags::I)));
    let tlv_integrity = if flagged {
        TlvIntegrity::FailedAtReflector
    } else {
        tlv_integrity(key, &pkt[0..4], area).0
    };
    Ok(Reflected {
        repr,
        area,
        tlv_integrity,
    })
}
