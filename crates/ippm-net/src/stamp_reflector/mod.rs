//! The STAMP Session-Reflector (RFC 8762, RFC 8972), which also answers TWAMP-Light senders
//! (RFC 8762 §4.6, RFC 5357 Appendix I): a `Role` of the test-packet engine.
//!
//! There is no control protocol: a listening address is served by one socket per engine
//! thread, all bound to it with SO_REUSEPORT, so the kernel spreads the senders over the
//! threads by 4-tuple and one sender's packets always reach the same thread, which holds its
//! session. The per-packet work is `ippm_proto::stamp`'s: [`reflect_layout`] when a packet
//! arrives (T2 the kernel's receive timestamp, the HMACs checked, the TLVs answered) and
//! [`seal`] just before the send (T3, the HMACs). A reply leaves from the address the packet
//! was sent to (IP_PKTINFO on a wildcard socket), with TTL 255, and with the DSCP a Class of
//! Service TLV asked for where the policy permits it.
//!
//! Before any of that, a packet from a source outside the allow-list, or over its source's
//! rate, is counted and not answered; one that fails its checks is counted too
//! (`ippm_dropped_total`), each kind logged at most once per interval.
//!
//! [`reflect_layout`]: ippm_proto::stamp::reflect_layout
//! [`seal`]: ippm_proto::stamp::seal

mod flows;

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use ippm_proto::Timestamp;
use ippm_proto::stamp::{
    Received, ReflectorConfig, ReflectorTlvInputs, Sealing, StampKey, reflect_layout, seal,
};
use ippm_proto::wire::stamp::{SenderPacket, StampMode};
use ippm_proto::wire::stamp_tlv::{FollowUpTelemetry, SyncSource, TimestampInfo, TimestampMethod};
use tracing::{debug, warn};

use self::flows::{Bounds, FlowKey, Flows, Full};
use crate::clock::{self, ClockCache};
use crate::counters::{
    STAMP_NOT_ALLOWED, STAMP_RATE_LIMITED, STAMP_SESSION_REFUSED, TEST_PACKET_BAD,
};
use crate::engine::{End, Engine, Out, RecvMeta, Role, SendOpts, SessionHandle, Wake};

/// How packets from a range of sources are checked: their mode and key.
#[derive(Debug, Clone)]
pub struct StampPeer {
    /// The sources this applies to (the longest matching prefix wins).
    pub prefix: IpNet,
    /// Their mode.
    pub mode: StampMode,
    /// Their HMAC key: required in authenticated mode; in unauthenticated mode it turns on
    /// TLV integrity (RFC 8972 §4.8).
    pub key: Option<Arc<StampKey>>,
}

/// What a STAMP reflector does.
#[derive(Debug, Clone)]
pub struct StampReflectorOptions {
    /// The mode for sources no [`StampPeer`] names.
    pub mode: StampMode,
    /// Their key.
    pub key: Option<Arc<StampKey>>,
    /// Per-prefix modes and keys.
    pub peers: Vec<StampPeer>,
    /// Stateful reflection (RFC 8762 §4.2.1): the reflector's own Sequence Numbers per
    /// session; stateless copies the sender's.
    pub stateful: bool,
    /// Read RFC 8972 TLVs after the base packet; off, those octets are copied unread.
    pub extensions: bool,
    /// Only these sources are answered (empty: every source).
    pub allow: Vec<IpNet>,
    /// Packets per second one source (an IPv4 address, an IPv6 /64) may have answered,
    /// per socket (0: no limit).
    pub rate_per_source: u32,
    /// Stateful sessions held at most, over all sockets.
    pub max_sessions: usize,
    /// Stateful sessions one source may hold, per socket.
    pub max_sessions_per_source: usize,
    /// A stateful session not heard from this long is forgotten.
    pub session_timeout: Duration,
    /// DSCPs a Class of Service TLV may ask the reply to carry (bit `d` for DSCP `d`).
    pub permitted_dscp: u64,
    /// Sockets per listening address (0: one per engine thread).
    pub sockets: usize,
    /// Counters shared by every socket of the reflector.
    pub stats: StampStats,
}

impl Default for StampReflectorOptions {
    fn default() -> Self {
        Self {
            mode: StampMode::Unauthenticated,
            key: None,
            peers: Vec::new(),
            stateful: true,
            extensions: true,
            allow: Vec::new(),
            rate_per_source: 0,
            max_sessions: 10_000,
            max_sessions_per_source: 256,
            session_timeout: Duration::from_secs(60),
            permitted_dscp: u64::MAX,
            sockets: 0,
            stats: StampStats::default(),
        }
    }
}

/// What a STAMP reflector counts (its drops are in `ippm_dropped_total`): the daemon's
/// metrics hold the same counters ([`crate::metrics::Metrics::stamp_stats`]); clones share
/// the counts.
#[derive(Debug, Default, Clone)]
pub struct StampStats {
    /// Packets answered.
    pub reflected: Counter,
    /// Stateful sessions held now.
    pub sessions: Gauge,
}

/// A running STAMP reflector on one address; dropping it stops it.
#[derive(Debug)]
pub struct StampReflector {
    local: SocketAddr,
    _sockets: Vec<SessionHandle>,
}

impl StampReflector {
    /// Binds `listen` (port 0: any free port) and reflects on `engine`.
    pub fn start(
        engine: &Engine,
        listen: SocketAddr,
        opts: &StampReflectorOptions,
    ) -> io::Result<Self> {
        let n = match opts.sockets {
            0 => engine.threads(),
            n => n,
        }
        .max(1);
        let first = crate::sys::test_socket_shared(listen, true)?;
        let local = first
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an IP socket"))?;
        let mut socks = vec![first];
        for _ in 1..n {
            socks.push(crate::sys::test_socket_shared(local, true)?);
        }
        let shared = Arc::new(opts.clone());
        let mut handles = Vec::with_capacity(n);
        for s in socks {
            let role = StampListen::new(shared.clone(), local, n);
            handles.push(engine.add(s.into(), Box::new(role), opts.stateful)?);
        }
        Ok(Self {
            local,
            _sockets: handles,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

/// Replies whose transmit stamps are awaited, by the socket's datagram index; they come
/// microseconds after the send.
const STAMP_RING: usize = 256;

/// A reply queued and not yet sealed.
struct Pending {
    sealing: Sealing,
    key: Option<Arc<StampKey>>,
    /// Its session and reflector Sequence Number (stateful).
    flow: Option<(FlowKey, u32)>,
}

/// One socket of a STAMP reflector.
struct StampListen {
    opts: Arc<StampReflectorOptions>,
    local: SocketAddr,
    flows: Flows,
    pending: VecDeque<Pending>,
    /// Datagrams the kernel has taken on this socket, and which reply each of the last few
    /// was.
    accepted: u32,
    ring: Vec<Option<(u32, FlowKey, u32)>>,
    clock: ClockCache,
    timestamp_info: TimestampInfo,
    /// Sessions counted in the shared gauge.
    counted: usize,
}

impl StampListen {
    fn new(opts: Arc<StampReflectorOptions>, local: SocketAddr, sockets: usize) -> Self {
        let bounds = Bounds {
            max_sessions: opts.max_sessions.div_ceil(sockets).max(1),
            max_sessions_per_source: opts.max_sessions_per_source.max(1),
            session_timeout: opts.session_timeout,
            rate_per_source: opts.rate_per_source,
        };
        let sync = if clock::ClockState::read().synchronized {
            SyncSource::NTP
        } else {
            SyncSource::LOCAL_FREE_RUNNING
        };
        Self {
            opts,
            local,
            flows: Flows::new(bounds),
            pending: VecDeque::with_capacity(crate::sys::BATCH),
            accepted: 0,
            ring: vec![None; STAMP_RING],
            clock: ClockCache::new(),
            // T2 is the kernel's software receive stamp, T3 a user-space stamp just before
            // the send: both software, local.
            timestamp_info: TimestampInfo {
                sync_in: sync,
                method_in: TimestampMethod::SW_LOCAL,
                sync_out: sync,
                method_out: TimestampMethod::SW_LOCAL,
            },
            counted: 0,
        }
    }

    /// The mode and key for packets from `ip`.
    fn rule(&self, ip: IpAddr) -> (StampMode, Option<&Arc<StampKey>>) {
        self.opts
            .peers
            .iter()
            .filter(|p| p.prefix.contains(&ip))
            .max_by_key(|p| p.prefix.prefix_len())
            .map_or((self.opts.mode, self.opts.key.as_ref()), |p| {
                (p.mode, p.key.as_ref())
            })
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        self.opts.allow.is_empty() || self.opts.allow.iter().any(|n| n.contains(&ip))
    }

    fn update_gauge(&mut self) {
        let now = self.flows.len();
        let delta = now as i64 - self.counted as i64;
        if delta != 0 {
            self.opts.stats.sessions.inc_by(delta);
        }
        self.counted = now;
    }
}

/// The sender's SSID (0 for a packet too short to carry one: TWAMP-Light's).
fn ssid_of(pkt: &[u8], mode: StampMode) -> u16 {
    SenderPacket::new_checked(pkt, mode).map_or(0, |p| p.ssid())
}

impl Role for StampListen {
    fn receive(&mut self, pkt: &mut [u8], meta: &RecvMeta, out: &mut Out<'_>) {
        let ip = meta.from.ip();
        if !self.allowed(ip) {
            if let Some(more) = STAMP_NOT_ALLOWED.note() {
                debug!(from = %meta.from, suppressed = more, "STAMP packet from outside the allow-list, not answered");
            }
            return;
        }
        let now = Instant::now();
        if !self.flows.admit(ip, now) {
            if let Some(more) = STAMP_RATE_LIMITED.note() {
                debug!(from = %meta.from, suppressed = more, "STAMP packets over the source's rate, not answered");
            }
            return;
        }
        let (mode, key) = self.rule(ip);
        let key = key.cloned();
        let local = meta.dst.unwrap_or_else(|| self.local.ip());
        let flow_key = FlowKey {
            peer: meta.from,
            local,
            ssid: ssid_of(pkt, mode),
        };
        // Stateful: the session's next Sequence Number and counters as they will be once
        // this packet is in (the session itself is created only if the packet passes).
        let flow = self
            .opts
            .stateful
            .then(|| self.flows.get(&flow_key).copied())
            .flatten();
        if self.opts.stateful && flow.is_none() {
            if let Err(why) = self.flows.room_for(&flow_key, now) {
                if let Some(more) = STAMP_SESSION_REFUSED.note() {
                    let why = match why {
                        Full::Table => "the session table is full",
                        Full::Source => "its source holds its share of sessions",
                    };
                    warn!(from = %meta.from, why, suppressed = more, "STAMP session not created, packet not answered");
                }
                return;
            }
        }
        let seq = self.opts.stateful.then(|| flow.map_or(0, |f| f.seq));
        let counters = flow.map_or((1, 0), |f| (f.received.wrapping_add(1), f.sent));
        let tos = meta.tos.unwrap_or(0);
        let rx = Received {
            packet: pkt,
            receive_time: meta
                .kernel_time
                .map(Timestamp::from_unix)
                .unwrap_or_else(clock::now),
            ttl: meta.ttl,
            dscp: tos >> 2,
            ecn: tos & 3,
        };
        let inputs = ReflectorTlvInputs {
            dst_port: self.local.port(),
            src_port: meta.from.port(),
            dst_addr: Some(local),
            src_addr: Some(ip),
            src_mac: None,
            timestamp_info: Some(self.timestamp_info),
            counters: self.opts.stateful.then_some(counters),
            follow_up: flow.and_then(|f| f.last_reply),
            permitted_dscp: self.opts.permitted_dscp,
        };
        let cfg = ReflectorConfig {
            mode,
            key: key.as_deref(),
            extensions: self.opts.extensions,
            error_estimate: self.clock.estimate(),
        };
        let src = meta.dst.map(|a| (a, meta.ifindex));
        let mut result = None;
        out.send_with(meta.from, |tx| {
            match reflect_layout(&cfg, &rx, seq, &inputs, tx) {
                Ok(reply) => {
                    let opts = SendOpts {
                        src,
                        tos: reply.dscp.map(|d| d << 2),
                    };
                    result = Some(Ok(reply));
                    Some((reply.sealing.len, opts))
                }
                Err(e) => {
                    result = Some(Err(e));
                    None
                }
            }
        });
        let reply = match result {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                if let Some(more) = TEST_PACKET_BAD.note() {
                    warn!(from = %meta.from, len = meta.len, error = %e, suppressed = more, "STAMP packet failed its check, not answered");
                }
                return;
            }
            // No room in this turn's batch (cannot happen: the engine flushes when full).
            None => return,
        };
        let mut at = None;
        if self.opts.stateful {
            // Room was checked above, on this thread: the session is there or is made now.
            if let Ok(f) = self.flows.entry(flow_key, now) {
                at = Some((flow_key, f.seq));
                f.seq = f.seq.wrapping_add(1);
                f.received = f.received.wrapping_add(1);
                f.sent = f.sent.wrapping_add(1);
            }
            self.update_gauge();
        }
        self.opts.stats.reflected.inc();
        self.pending.push_back(Pending {
            sealing: reply.sealing,
            key,
            flow: at,
        });
    }

    fn due(&mut self, now: Instant, _out: &mut Out<'_>) -> Wake {
        // Forgetting idle sessions: one turn per reflector socket every few seconds, not a
        // wake-up per session.
        self.flows.sweep(now);
        self.update_gauge();
        Wake::At(
            now + (self.opts.session_timeout / 4)
                .clamp(Duration::from_secs(1), Duration::from_secs(10)),
        )
    }

    fn seal(&mut self, pkt: &mut [u8]) {
        let Some(p) = self.pending.pop_front() else {
            return;
        };
        if let Err(e) = seal(pkt, &p.sealing, p.key.as_deref(), clock::now()) {
            debug!(error = %e, "STAMP reply could not be sealed");
        }
        let id = self.accepted;
        self.accepted = self.accepted.wrapping_add(1);
        if let Some((key, seq)) = p.flow {
            self.ring[id as usize % STAMP_RING] = Some((id, key, seq));
        }
    }

    fn unsent(&mut self, sent: usize, queued: usize) {
        let n = u32::try_from(queued.saturating_sub(sent)).unwrap_or(u32::MAX);
        self.accepted = self.accepted.wrapping_sub(n);
        self.pending.clear();
    }

    fn tx_stamp(&mut self, id: u32, time: Duration) {
        let Some((at, key, seq)) = self.ring[id as usize % STAMP_RING] else {
            return;
        };
        if at != id {
            return;
        }
        if let Some(f) = self.flows.get(&key) {
            f.last_reply = Some(FollowUpTelemetry {
                seq,
                timestamp: Timestamp::from_unix(time),
                mode: TimestampMethod::SW_LOCAL,
            });
        }
    }

    fn end(&mut self, _why: End) {
        self.opts.stats.sessions.dec_by(self.counted as i64);
        self.counted = 0;
    }
}

#[cfg(test)]
mod tests;
