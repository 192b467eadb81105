//! The TWAMP Session-Reflector (RFC 5357 §4.2): one task per test session.
//!
//! Per packet: the kernel's receive timestamp (SO_TIMESTAMPNS) is the Receive Timestamp; the
//! sender's packet is checked (HMAC in the protected modes) and dropped with a log line if it
//! fails; the reply carries the reflector's own sequence number, the sender's sequence number,
//! timestamp and error estimate, and the TTL the sender's packet arrived with; its padding is
//! the start of the sender's padding, truncated so the reply is as long as the request
//! (RFC 5357 §4.2.1, RFC 6038 §5.2); its Timestamp is taken just before it is protected and
//! sent. Replies go to the packet's source (which may differ from the requested sender port
//! behind NAT) but only to the control connection's peer address.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ippm_proto::wire::test::{PacketKind, ReflectorRepr, SenderRepr, TestProtection};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::clock::{self, ClockState};

/// Largest test packet handled.
pub const MAX_PACKET: usize = 65_535;

/// What one reflector needs.
#[derive(Debug)]
pub struct ReflectorSession {
    /// The session's socket (blocking: the reflector has a thread of its own).
    pub socket: std::net::UdpSocket,
    /// Packet protection for the session's mode and keys.
    pub protection: TestProtection,
    /// Only packets from this address are reflected.
    pub peer: IpAddr,
    /// RFC 6038 symmetrical size: the reflected padding starts after the sender's MBZ run.
    pub symmetrical: bool,
    /// Counts reflected packets and stamps activity (milliseconds since `epoch`).
    pub stats: Arc<ReflectorStats>,
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

/// How a session is told to end: `Some(grace)` keeps reflecting for `grace` (the session's
/// Timeout after Stop-Sessions, RFC 5357 §4.2), `None` stops at once; dropping the sender
/// stops it too.
pub type StopSignal = watch::Receiver<Option<Duration>>;

/// How often a reflector waiting for packets looks at its stop signal.
const STOP_POLL: Duration = Duration::from_millis(50);

/// Runs one reflector on the calling thread until stopped. The thread blocks in `recvmsg`,
/// so the kernel wakes it directly when a packet arrives: no executor and no hand-off between
/// the kernel's receive timestamp and the reply (RFC 5357 §4.2 wants T3 - T2 small and honest).
pub fn run_blocking(s: ReflectorSession, stop: StopSignal, epoch: std::time::Instant) {
    if let Err(e) = s.socket.set_read_timeout(Some(STOP_POLL)) {
        warn!(error = %e, "reflector cannot set its socket timeout");
        return;
    }
    let mut rx = vec![0u8; MAX_PACKET];
    let mut tx = vec![0u8; MAX_PACKET];
    let mut seq: u32 = 0;
    let mut clock_state = ClockState::read();
    let mut clock_read = std::time::Instant::now();
    let mut deadline: Option<std::time::Instant> = None;
    loop {
        if deadline.is_none() {
            match (*stop.borrow(), stop.has_changed()) {
                (Some(grace), _) => deadline = Some(std::time::Instant::now() + grace),
                // The control connection is gone without a Stop-Sessions: stop now.
                (None, Err(_)) => return,
                (None, Ok(_)) => {}
            }
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return;
        }
        let meta = match crate::udp::recv_blocking(&s.socket, &mut rx) {
            Ok(m) => m,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => {
                warn!(error = %e, "reflector receive failed");
                std::thread::sleep(STOP_POLL);
                continue;
            }
        };
        let recv_time = meta
            .kernel_time
            .map(ippm_proto::Timestamp::from_unix)
            .unwrap_or_else(clock::now);
        if meta.from.ip() != s.peer {
            s.stats.dropped.fetch_add(1, Ordering::Relaxed);
            debug!(from = %meta.from, "test packet from an address other than the client's, dropped");
            continue;
        }
        if clock_read.elapsed() > Duration::from_secs(1) {
            clock_state = ClockState::read();
            clock_read = std::time::Instant::now();
        }
        let pkt = &mut rx[..meta.len];
        let len = match reflect_packet(
            &s.protection,
            s.symmetrical,
            seq,
            pkt,
            recv_time,
            meta.ttl,
            clock_state.error_estimate(),
            &mut tx,
        ) {
            Ok(len) => len,
            Err(why) => {
                s.stats.dropped.fetch_add(1, Ordering::Relaxed);
                warn!(from = %meta.from, len = meta.len, why, "test packet failed its check, dropped");
                continue;
            }
        };
        if let Err(e) = s.socket.send_to(&tx[..len], meta.from) {
            warn!(to = %meta.from, error = %e, "reflector send failed");
            continue;
        }
        seq = seq.wrapping_add(1);
        s.stats.reflected.fetch_add(1, Ordering::Relaxed);
        let ms = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        s.stats.last_activity_ms.store(ms, Ordering::Relaxed);
    }
}

/// The reflector's per-packet work, without I/O: checks and decrypts the sender's packet in
/// place, lays out the reply in `tx`, stamps its Timestamp and protects it. Returns the reply's
/// length, or why the packet is dropped. Allocates nothing.
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
    // Stamped as late as possible: after this only protection and the send remain.
    ReflectorRepr::stamp(&mut tx[..len], layout, clock::now());
    protection.protect(PacketKind::Reflector, &mut tx[..len]);
    Ok(len)
}
