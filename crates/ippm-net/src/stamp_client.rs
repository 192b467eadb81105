//! The STAMP Session-Sender behind `ippm stamp` (RFC 8762, with the RFC 8972 extensions).
//!
//! STAMP has no control protocol: the sender binds a test socket (TTL 255, kernel receive
//! and transmit timestamps, as twping's) and sends to the reflector's port. The packets are
//! laid out once per session with [`ippm_proto::stamp::build_sender`] (the base packet, the
//! TLVs asked for, an HMAC TLV after them when a key is given, Extra Padding last) and each
//! is finished just before its send by `StampStamper`: Sequence Number, Error Estimate,
//! SSID, Direct Measurement's S_TxC, then [`ippm_proto::stamp::seal`] (T1 and the HMACs).
//! The loop is the one twping runs (`twoway_sender`), with STAMP's `ReplyFormat`: a reply
//! whose base HMAC fails is counted and dropped; a TLV integrity failure is reported, and
//! only the TLVs are not used. Replies are converted to the [`Reply`] twping's statistics,
//! report and plots take, so those are the same code for both.
//!
//! Loss per direction comes from the reflector's Sequence Numbers, as for TWAMP, when the
//! reflector is stateful (RFC 8762 §4.3.1: it numbers its own replies). A stateless reflector
//! copies ours: when every reply's numbers are equal the sender cannot tell a stateless
//! reflector from a stateful one that lost nothing on the way in, and the split of any loss
//! is unknown ([`StampResult::direction_loss`]). Direct Measurement counters give the split
//! independently.

mod answers;

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use ippm_proto::stamp::{Sealing, StampError, build_sender, seal};
use ippm_proto::wire::HMAC_LEN;
use ippm_proto::wire::stamp::SenderRepr;
use ippm_proto::wire::stamp_tlv::{
    ClassOfService, DirectMeasurement, FollowUpTelemetry, Location, LocationSub, LocationSubTlv,
    TLV_HEADER_LEN, TimestampInfo, TlvFlags, TlvRepr, Tlvs,
};
use ippm_proto::{ErrorEstimate, Timestamp};

pub use answers::{
    AccessReportAnswer, BadReplies, CosAnswer, DirectMeasurementAnswer, DscpEcnCount,
    FollowUpAnswer, IntegrityCounts, LocationAnswer, TimestampInfoAnswer, TlvFlagCounts, TlvReport,
    reply_fields, tlv_name,
};
pub use ippm_proto::stamp::StampKey;
pub use ippm_proto::wire::stamp::StampMode;
pub use ippm_proto::wire::stamp_tlv::{AccessId, AccessReport, ReturnCode, TlvType};

pub use crate::packets::{Reply, Sent};
use crate::rng::{self, RandomError, SecureRandom};
use crate::sender::{PacketFormat, SendPlan, gap_offsets};
pub use crate::twamp_client::{Interval, Progress};
use crate::twoway::TwoWayResult;
use crate::twoway_sender::{self, Watch};
use crate::udp::{bind_first, blocking_socket};
use answers::StampReplies;

/// The STAMP port (RFC 8762 §4.1: 862, as TWAMP's).
pub const DEFAULT_PORT: u16 = 862;

/// Class of Service (RFC 8972 §4.4): what we ask for and what we send with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CosRequest {
    /// DSCP1: the DSCP the reflector is asked to send its reply with.
    pub dscp: u8,
    /// The ECN codepoint our packets carry (the reflector reports what reached it).
    pub ecn: u8,
}

/// Which RFC 8972 TLVs each test packet carries (an HMAC TLV is added after them whenever a
/// key is given and one of them is not Extra Padding).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlvSelection {
    /// Extra Padding (§4.1): this many octets of pseudo-random value, after the other TLVs
    /// (how a STAMP packet is made bigger).
    pub padding: Option<u16>,
    /// Location (§4.2): ports, Source MAC, Destination and Source IP as the reflector saw
    /// our packet.
    pub location: bool,
    /// Timestamp Information (§4.3): the reflector's clock sources and timestamping methods.
    pub timestamp_info: bool,
    /// Class of Service (§4.4).
    pub class_of_service: Option<CosRequest>,
    /// Direct Measurement (§4.5): S_TxC per packet, the reflector's counters back.
    pub direct_measurement: bool,
    /// Access Report (§4.6), carried by every packet.
    pub access_report: Option<AccessReport>,
    /// Follow-Up Telemetry (§4.7): the real send time of the reflector's previous reply.
    pub follow_up: bool,
}

impl TlvSelection {
    /// Whether any TLV other than Extra Padding is asked for (with a key, these get an HMAC
    /// TLV, RFC 8972 §4.8).
    pub fn any_protected(&self) -> bool {
        self.location
            || self.timestamp_info
            || self.class_of_service.is_some()
            || self.direct_measurement
            || self.access_report.is_some()
            || self.follow_up
    }

    /// The TLVs in the order they are sent, Extra Padding's value from `pad`.
    fn reprs<'a>(&self, pad: &'a [u8]) -> Vec<TlvRepr<'a>> {
        let mut v = Vec::new();
        if self.location {
            let sub = |sub| LocationSubTlv {
                flags: TlvFlags::U,
                sub,
            };
            v.push(TlvRepr::Location(Location {
                dst_port: 0,
                src_port: 0,
                subs: vec![
                    sub(LocationSub::SourceMac),
                    sub(LocationSub::DestinationIp),
                    sub(LocationSub::SourceIp),
                ],
            }));
        }
        if self.timestamp_info {
            v.push(TlvRepr::TimestampInfo(TimestampInfo::default(), &[]));
        }
        if let Some(c) = self.class_of_service {
            v.push(TlvRepr::ClassOfService(ClassOfService {
                dscp1: c.dscp & 0x3f,
                ..ClassOfService::default()
            }));
        }
        if self.direct_measurement {
            v.push(TlvRepr::DirectMeasurement(DirectMeasurement::default()));
        }
        if let Some(a) = self.access_report {
            v.push(TlvRepr::AccessReport(a));
        }
        if self.follow_up {
            v.push(TlvRepr::FollowUpTelemetry(FollowUpTelemetry::default()));
        }
        if self.padding.is_some() {
            v.push(TlvRepr::ExtraPadding(pad));
        }
        v
    }
}

/// What a STAMP run does.
#[derive(Debug, Clone)]
pub struct StampOptions {
    /// The Session-Reflector's address.
    pub reflector: SocketAddr,
    /// Packets to send.
    pub count: u32,
    /// Gaps between packets.
    pub interval: Interval,
    /// DSCP of the test packets.
    pub dscp: u8,
    /// How long to wait for replies after the last packet is sent.
    pub loss_timeout: Duration,
    /// Local address for the test packets (`None`: the one the route to the reflector uses).
    pub local: Option<IpAddr>,
    /// Local UDP ports to use.
    pub ports: Option<RangeInclusive<u16>>,
    /// Unauthenticated or authenticated (RFC 8762 §4.2).
    pub mode: StampMode,
    /// The HMAC key: required in authenticated mode; with TLVs it also protects them (the
    /// HMAC TLV, RFC 8972 §4.8) in either mode.
    pub key: Option<StampKey>,
    /// The Session Identifier (RFC 8972 §3).
    pub ssid: u16,
    /// The TLVs each packet carries.
    pub tlvs: TlvSelection,
    /// Keep every packet sent and every reply in the result.
    pub keep_records: bool,
    /// Where to report packets sent and replies as they happen.
    pub progress: Option<tokio::sync::mpsc::UnboundedSender<Progress>>,
    /// Where the schedule's seed and the padding come from (normally [`rng::os`]).
    pub rng: std::sync::Arc<dyn SecureRandom>,
}

/// The largest UDP payload to an address of `a`'s family (no jumbograms).
pub fn max_payload(a: &SocketAddr) -> usize {
    if a.is_ipv4() { 65_507 } else { 65_527 }
}

impl StampOptions {
    /// Octets of each test packet, checked: the mode has its key, the packet fits a UDP
    /// datagram. Touches no network: callers check their input with it first.
    pub fn packet_len(&self) -> Result<usize, StampClientError> {
        let pad = vec![0u8; usize::from(self.tlvs.padding.unwrap_or(0))];
        Ok(Layout::new(self, &pad)?.template.len())
    }
}

/// One session's packet, laid out.
#[derive(Debug)]
struct Layout {
    template: Vec<u8>,
    sealing: Sealing,
    /// Offset of Direct Measurement's S_TxC in the packet.
    s_txc_at: Option<usize>,
    /// The TLV types sent, in order (the HMAC TLV included).
    types: Vec<TlvType>,
}

impl Layout {
    fn new(opts: &StampOptions, pad: &[u8]) -> Result<Self, StampClientError> {
        let mode = opts.mode;
        if mode == StampMode::Authenticated && opts.key.is_none() {
            return Err(StampClientError::Stamp(StampError::NoKey));
        }
        let tlvs = opts.tlvs.reprs(pad);
        let hmac = if opts.key.is_some() && opts.tlvs.any_protected() {
            TLV_HEADER_LEN + HMAC_LEN
        } else {
            0
        };
        let len = mode.base_len() + tlvs.iter().map(TlvRepr::buffer_len).sum::<usize>() + hmac;
        let max = max_payload(&opts.reflector);
        if len > max {
            return Err(StampClientError::TooLarge { len, max });
        }
        let mut template = vec![0u8; len];
        let repr = SenderRepr {
            ssid: opts.ssid,
            ..SenderRepr::default()
        };
        let sealing = build_sender(&mut template, mode, &repr, &tlvs, opts.key.as_ref())?;
        template.truncate(sealing.len);
        let base = mode.base_len();
        let mut s_txc_at = None;
        let mut types = Vec::new();
        for t in Tlvs::new(&template[base..]).flatten() {
            if t.tlv_type() == TlvType::DIRECT_MEASUREMENT {
                s_txc_at = Some(base + t.offset + TLV_HEADER_LEN);
            }
            types.push(t.tlv_type());
        }
        Ok(Self {
            template,
            sealing,
            s_txc_at,
            types,
        })
    }
}

/// STAMP's [`PacketFormat`]: each packet finished just before its send.
#[derive(Debug)]
pub(crate) struct StampStamper {
    sealing: Sealing,
    key: Option<StampKey>,
    ssid: u16,
    s_txc_at: Option<usize>,
    /// Packets sealed so far: S_TxC, this packet included.
    txc: u32,
}

impl PacketFormat for StampStamper {
    fn seal(&mut self, pkt: &mut [u8], seq: u32, time: Timestamp, error: ErrorEstimate) -> bool {
        let mode = self.sealing.mode;
        let repr = SenderRepr {
            seq,
            timestamp: Timestamp::ZERO,
            error_estimate: error,
            ssid: self.ssid,
        };
        if repr.emit(pkt, mode).is_err() {
            return false;
        }
        if let Some(at) = self.s_txc_at {
            let Some(f) = pkt.get_mut(at..at + 4) else {
                return false;
            };
            self.txc = self.txc.wrapping_add(1);
            f.copy_from_slice(&self.txc.to_be_bytes());
        }
        seal(pkt, &self.sealing, self.key.as_ref(), time).is_ok()
    }
}

/// The outcome of a STAMP run.
#[derive(Debug, Clone)]
pub struct StampResult {
    /// The mode used.
    pub mode: StampMode,
    /// The SSID used.
    pub ssid: u16,
    /// Our test address.
    pub local: SocketAddr,
    /// The reflector's address.
    pub reflector: SocketAddr,
    /// Octets of each test packet (UDP payload).
    pub packet_len: usize,
    /// The TLV types each packet carried, in order (the HMAC TLV included).
    pub tlvs_sent: Vec<TlvType>,
    /// Whether the TLVs were protected by an HMAC TLV.
    pub hmac_tlv: bool,
    /// The statistics, accumulated as the packets went and came.
    pub report: ippm_stats::TwoWayReport,
    /// When the first and the last packet were sent (their timestamps).
    pub first_sent: Option<Timestamp>,
    /// See `first_sent`.
    pub last_sent: Option<Timestamp>,
    /// Every packet sent, in order (empty unless records were kept).
    pub sent: Vec<Sent>,
    /// Every reply, in arrival order, duplicates included (empty unless records were kept).
    pub replies: Vec<Reply>,
    /// Datagrams from the reflector that were dropped, by reason.
    pub bad: BadReplies,
    /// Replies accepted whose SSID was zero (a reflector without RFC 8972's SSID).
    pub ssid_not_echoed: u64,
    /// `Some(true)`: some reply's reflector Sequence Number differed from ours, so the
    /// reflector is stateful; `Some(false)`: every reply's were equal (stateless, or nothing
    /// lost on the way in); `None`: no reply.
    pub reflector_stateful: Option<bool>,
    /// What the reflector answered to our TLVs.
    pub tlvs: TlvReport,
    /// Packets sent whose send time is the kernel's transmit stamp.
    pub kernel_tx_stamps: u32,
}

impl StampResult {
    /// Datagrams dropped: failed the HMAC, malformed, or another session's.
    pub fn bad_replies(&self) -> u64 {
        self.bad.bad_hmac + self.bad.malformed + self.bad.other_ssid
    }

    /// Packets lost on the way out and on the way back, when that is known: from the
    /// reflector's own Sequence Numbers when it is stateful, trivially when nothing was
    /// lost; `None` for a reflector that looks stateless and some loss.
    pub fn direction_loss(&self) -> Option<(usize, usize)> {
        let l = &self.report.loss;
        if l.lost == 0 {
            return Some((0, 0));
        }
        (self.reflector_stateful == Some(true)).then_some((l.forward_lost, l.backward_lost))
    }
}

impl TwoWayResult for StampResult {
    fn local(&self) -> SocketAddr {
        self.local
    }
    fn reflector(&self) -> SocketAddr {
        self.reflector
    }
    fn report(&self) -> &ippm_stats::TwoWayReport {
        &self.report
    }
    fn first_sent(&self) -> Option<Timestamp> {
        self.first_sent
    }
    fn last_sent(&self) -> Option<Timestamp> {
        self.last_sent
    }
    fn sent(&self) -> &[Sent] {
        &self.sent
    }
    fn replies(&self) -> &[Reply] {
        &self.replies
    }
    fn kernel_tx_stamps(&self) -> u32 {
        self.kernel_tx_stamps
    }
}

/// Why a STAMP run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StampClientError {
    /// The packet cannot be built (authenticated mode without a key, ...).
    #[error("{0}")]
    Stamp(#[from] StampError),
    /// The packet would not fit a UDP datagram.
    #[error("a {len}-octet test packet does not fit a UDP datagram (at most {max} octets)")]
    TooLarge {
        /// Octets asked for.
        len: usize,
        /// The most there is room for.
        max: usize,
    },
    /// Socket trouble.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The random number generator failed: nothing was sent.
    #[error("{0}: no test was run")]
    Random(#[from] RandomError),
}

/// The local address the route to `to` uses (no packet is sent).
fn route_source(to: SocketAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = if to.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = std::net::UdpSocket::bind(any)?;
    s.connect(to)?;
    Ok(s.local_addr()?.ip())
}

/// Sets the whole TOS / Traffic Class octet: DSCP and ECN.
fn set_tos(sock: &std::net::UdpSocket, v6: bool, dscp: u8, ecn: u8) -> std::io::Result<()> {
    let tos = u32::from((dscp & 0x3f) << 2 | (ecn & 3));
    let s = socket2::SockRef::from(sock);
    if v6 {
        s.set_tclass_v6(tos)
    } else {
        s.set_tos_v4(tos)
    }
}

/// Runs one STAMP test session.
pub async fn stamp(opts: &StampOptions) -> Result<StampResult, StampClientError> {
    let mut pad = vec![0u8; usize::from(opts.tlvs.padding.unwrap_or(0))];
    // RFC 8972 §4.1: pseudo-random, controlled by the implementation (once per session).
    opts.rng.fill(&mut pad)?;
    let layout = Layout::new(opts, &pad)?;
    let local_ip = match opts.local {
        Some(ip) => ip,
        None => route_source(opts.reflector)?,
    };
    let socket = bind_first(local_ip, opts.ports.clone(), blocking_socket)?;
    let ecn = opts.tlvs.class_of_service.map_or(0, |c| c.ecn);
    if opts.dscp != 0 || ecn != 0 {
        set_tos(&socket, opts.reflector.is_ipv6(), opts.dscp, ecn)?;
    }
    let local = socket.local_addr()?;
    let (gap, exponential) = match opts.interval {
        Interval::Fixed(d) => (d, false),
        Interval::Exponential(d) => (d, true),
    };
    let packet_len = layout.template.len();
    let stamper = StampStamper {
        sealing: layout.sealing,
        key: opts.key.clone(),
        ssid: opts.ssid,
        s_txc_at: layout.s_txc_at,
        txc: 0,
    };
    let plan = SendPlan::new(
        gap_offsets(gap, exponential, &rng::array(opts.rng.as_ref())?),
        std::time::Instant::now() + Duration::from_millis(1),
        opts.count,
        layout.template,
        stamper,
        opts.reflector,
    );
    let replies = StampReplies::new(opts.mode, opts.key.clone(), opts.ssid, layout.types.clone());
    let watch = Watch {
        count: opts.count,
        loss_timeout: opts.loss_timeout,
        keep_records: opts.keep_records,
        progress: opts.progress.clone(),
    };
    let mut run = twoway_sender::run(socket, plan, replies, &watch).await?;
    let f = &mut run.format;
    Ok(StampResult {
        mode: opts.mode,
        ssid: opts.ssid,
        local,
        reflector: opts.reflector,
        packet_len,
        hmac_tlv: layout.sealing.hmac_tlv.is_some(),
        tlvs_sent: layout.types,
        report: run.report,
        first_sent: run.first,
        last_sent: run.last,
        sent: run.sent,
        replies: run.replies,
        bad: f.bad,
        ssid_not_echoed: f.ssid_zero,
        reflector_stateful: (f.replies > 0).then_some(f.rseq_differs),
        tlvs: f.finish(),
        kernel_tx_stamps: run.kernel_stamps,
    })
}

#[cfg(test)]
mod tests;
