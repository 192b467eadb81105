//! The TWAMP Session-Reflector (RFC 5357 §4.2): a `Role` of the test-packet engine.
//!
//! Per packet: the kernel's receive timestamp (SO_TIMESTAMPNS) is the Receive Timestamp; the
//! sender's packet is checked (HMAC in the protected modes) and dropped, counted, if it fails;
//! the reply carries the reflector's own sequence number, the sender's sequence number,
//! timestamp and error estimate, and the TTL the sender's packet arrived with; its padding is
//! the start of the sender's padding, truncated so the reply is as long as the request
//! (RFC 5357 §4.2.1, RFC 6038 §5.2); its Timestamp is taken just before it is protected and
//! sent (`Role::seal`). Replies go to the packet's source (which may differ from the requested
//! sender port behind NAT) but only to the control connection's peer address.

use std::net::{IpAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ippm_proto::wire::test::{Layout, PacketKind, ReflectorRepr, SenderRepr, TestProtection};
use tracing::{debug, warn};

use crate::admission::SessionPermit;
use crate::clock::{self, ClockCache};
use crate::counters::{TEST_PACKET_BAD, TEST_PACKET_STRANGER};
use crate::engine::{End, Engine, Out, RecvMeta, Role, SessionHandle};

/// Largest test packet handled.
pub const MAX_PACKET: usize = 65_535;

/// What one reflector needs.
#[derive(Debug)]
pub struct ReflectorSession {
    /// The session's socket.
    pub socket: UdpSocket,
    /// Packet protection for the session's mode and keys.
    pub protection: TestProtection,
    /// Only packets from this address are reflected.
    pub peer: IpAddr,
    /// RFC 6038 symmetrical size: the reflected padding starts after the sender's MBZ run.
    pub symmetrical: bool,
    /// Counts reflected packets and stamps activity (milliseconds since `epoch`).
    pub stats: Arc<ReflectorStats>,
    /// The control connection's start, the origin of `stats.last_activity_ms`.
    pub epoch: Instant,
}

/// Counters one reflector shares with its control connection.
#[derive(Debug, Default)]
pub struct ReflectorStats {
    /// Packets reflected.
    pub reflected: AtomicU64,
    /// Packets dropped (bad HMAC, too short, wrong source).
    pub dropped: AtomicU64,
    /// Monotonic milliseconds of the last packet, for the control connection's idle timer.
    pub last_activity_ms: AtomicU64,
}

impl ReflectorSession {
    /// Starts reflecting on `engine`; the session ends when the handle is dropped or stopped.
    /// Runs the reflector on `engine`; it holds `permit` (its place in the daemon's session
    /// limits) until it ends, which may be after its control connection is gone.
    pub(crate) fn start(
        self,
        engine: &Engine,
        permit: Option<SessionPermit>,
    ) -> std::io::Result<SessionHandle> {
        let Self {
            socket,
            protection,
            peer,
            symmetrical,
            stats,
            epoch,
        } = self;
        let role = Reflect {
            layout: protection.layout(),
            protection,
            peer,
            symmetrical,
            stats,
            epoch,
            seq: 0,
            clock: ClockCache::new(),
            _permit: permit,
        };
        engine.add(socket, Box::new(role), false)
    }
}

struct Reflect {
    /// Released when the engine drops the role, i.e. when the session really ends.
    _permit: Option<SessionPermit>,
    protection: TestProtection,
    layout: Layout,
    peer: IpAddr,
    symmetrical: bool,
    stats: Arc<ReflectorStats>,
    epoch: Instant,
    seq: u32,
    clock: ClockCache,
}

impl Role for Reflect {
    fn receive(&mut self, pkt: &mut [u8], meta: &RecvMeta, out: &mut Out<'_>) {
        if meta.from.ip() != self.peer {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(more) = TEST_PACKET_STRANGER.note() {
                debug!(from = %meta.from, suppressed = more, "test packet from an address other than the client's, dropped");
            }
            return;
        }
        let recv_time = meta
            .kernel_time
            .map(ippm_proto::Timestamp::from_unix)
            .unwrap_or_else(clock::now);
        let error_estimate = self.clock.estimate();
        let mut why = None;
        let (protection, symmetrical, seq) = (&self.protection, self.symmetrical, self.seq);
        let queued = out.send(meta.from, |tx| {
            match reflect_layout(
                protection,
                symmetrical,
                seq,
                pkt,
                recv_time,
                meta.ttl,
                error_estimate,
                tx,
            ) {
                Ok(len) => Some(len),
                Err(w) => {
                    why = Some(w);
                    None
                }
            }
        });
        if let Some(why) = why {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(more) = TEST_PACKET_BAD.note() {
                warn!(from = %meta.from, len = meta.len, why, suppressed = more, "test packet failed its check, dropped");
            }
            return;
        }
        if queued {
            self.seq = self.seq.wrapping_add(1);
            self.stats.reflected.fetch_add(1, Ordering::Relaxed);
            let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.stats.last_activity_ms.store(ms, Ordering::Relaxed);
        }
    }

    fn seal(&mut self, pkt: &mut [u8]) {
        seal_reply(&self.protection, self.layout, pkt);
    }

    fn unsent(&mut self, sent: usize, queued: usize) {
        let lost = (queued - sent) as u64;
        self.stats.reflected.fetch_sub(lost, Ordering::Relaxed);
        self.stats.dropped.fetch_add(lost, Ordering::Relaxed);
    }

    fn end(&mut self, _why: End) {}
}

/// The reflector's per-packet work, without I/O: checks and decrypts the sender's packet in
/// place, lays out the reply in `tx`, stamps its Timestamp and protects it. Returns the reply's
/// length, or why the packet is dropped. Allocates nothing. (The engine does the same in two
/// steps, [`reflect_layout`] when the packet arrives and [`seal_reply`] just before the send.)
#[allow(clippy::too_many_arguments)]
pub fn reflect_packet(
    protection: &TestProtection,
    symmetrical: bool,
    seq: u32,
    pkt: &mut [u8],
    recv_time: ippm_proto::Timestamp,
    ttl: Option<u8>,
    error_estimate: ippm_proto::ErrorEstimate,
    tx: &mut [u8],
) -> Result<usize, &'static str> {
    let len = reflect_layout(
        protection,
        symmetrical,
        seq,
        pkt,
        recv_time,
        ttl,
        error_estimate,
        tx,
    )?;
    seal_reply(protection, protection.layout(), &mut tx[..len]);
    Ok(len)
}

/// Checks and decrypts the sender's packet in place and lays out the reply in `tx`, its
/// Timestamp still zero and unprotected. Returns the reply's length, or why the packet is
/// dropped. Allocates nothing.
#[allow(clippy::too_many_arguments)]
pub fn reflect_layout(
    protection: &TestProtection,
    symmetrical: bool,
    seq: u32,
    pkt: &mut [u8],
    recv_time: ippm_proto::Timestamp,
    ttl: Option<u8>,
    error_estimate: ippm_proto::ErrorEstimate,
    tx: &mut [u8],
) -> Result<usize, &'static str> {
    let layout = protection.layout();
    protection
        .unprotect(PacketKind::Sender, pkt)
        .map_err(|_| "HMAC or length check failed")?;
    let sender = SenderRepr::parse(pkt, layout).map_err(|_| "shorter than a test packet")?;
    let header = layout.reflector_header_len();
    let len = pkt.len().max(header).min(tx.len());
    let repr = ReflectorRepr {
        seq,
        timestamp: ippm_proto::Timestamp::ZERO,
        error_estimate,
        receive_timestamp: recv_time,
        sender_seq: sender.seq,
        sender_timestamp: sender.timestamp,
        sender_error_estimate: sender.error_estimate,
        // 255 when the kernel did not say (RFC 5357 §4.2.1).
        sender_ttl: ttl.unwrap_or(255),
    };
    repr.emit(tx, layout)
        .map_err(|_| "reply buffer too small")?;
    let mut from = layout.sender_header_len();
    if symmetrical {
        from += layout.symmetric_padding();
    }
    let src = pkt.get(from..).unwrap_or(&[]);
    let pad = &mut tx[header..len];
    let n = pad.len().min(src.len());
    pad[..n].copy_from_slice(&src[..n]);
    pad[n..].fill(0);
    Ok(len)
}

/// Stamps a laid-out reply's Timestamp (now: after this only protection and the send remain)
/// and protects it.
pub fn seal_reply(protection: &TestProtection, layout: Layout, reply: &mut [u8]) {
    ReflectorRepr::stamp(reply, layout, clock::now());
    protection.protect(PacketKind::Reflector, reply);
}
