//! The one Session-Sender of every role that sends test packets on a schedule: twping's
//! sender, owping's sender to the server, and the OWAMP server's sender to the client.
//!
//! The schedule is lazy (offsets from the start, one at a time), so a session asked for any
//! number of packets holds the same few hundred octets. Each turn queues what is due, at most
//! one batch; a sender that is behind (a zero or tiny interval) sends a batch and waits its
//! turn behind the other sessions, so it can never hold an engine thread. A packet's
//! Timestamp is taken in [`SendPlan::seal`], just before protection and the send.
//!
//! What goes into each packet at that moment (the sequence number, the timestamp, the error
//! estimate, the protection over them, and any per-packet field a format has) is the plan's
//! [`PacketFormat`]: TWAMP's and OWAMP's is their [`TestProtection`], STAMP's is in
//! `stamp_client`. The schedule, the batching and the transmit-stamp ring are written once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ippm_proto::schedule::{ExpGenerator, Schedule};
use ippm_proto::time::bits_to_duration;
use ippm_proto::wire::test::{PacketKind, SenderRepr, TestProtection};
use ippm_proto::{ErrorEstimate, Timestamp};

use crate::clock::{self, ClockCache};
use crate::engine::Out;
use crate::sys::BATCH;

/// Send offsets from the session's start, one per packet; the first is usually zero.
pub(crate) type Offsets = Box<dyn Iterator<Item = Duration> + Send>;

/// Offsets of an RFC 4656 §5 schedule (OWAMP, both sides: the SID seeds the generator).
pub(crate) fn schedule_offsets(s: Schedule) -> Offsets {
    Box::new(s.map(bits_to_duration))
}

/// Offsets with a fixed gap, or exponential gaps of this mean (twping's `-i`), from `seed`.
pub(crate) fn gap_offsets(gap: Duration, exponential: bool, seed: &[u8; 16]) -> Offsets {
    let mut g = ExpGenerator::new(seed);
    let mean = ippm_proto::time::duration_to_bits(gap);
    let mut t = Duration::ZERO;
    let mut first = true;
    Box::new(std::iter::from_fn(move || {
        if !first {
            t += if exponential {
                bits_to_duration(ippm_proto::schedule::mul(g.next_exp(), mean))
            } else {
                gap
            };
        }
        first = false;
        Some(t)
    }))
}

/// How a session's packets are finished just before the send: `pkt` is a copy of the plan's
/// template; the format writes `seq`, the timestamp `time` (just taken), the clock's `error`
/// and its per-packet fields, then protects the packet. Returns whether the packet can go.
pub(crate) trait PacketFormat: Send + 'static {
    /// Finishes one packet; `false` leaves it unsent as far as the records go.
    fn seal(&mut self, pkt: &mut [u8], seq: u32, time: Timestamp, error: ErrorEstimate) -> bool;
}

/// OWAMP and TWAMP test packets (RFC 4656 §4.1.2, RFC 5357 §4.1.2): the header in the
/// session's layout, then the mode's protection.
impl PacketFormat for TestProtection {
    fn seal(&mut self, pkt: &mut [u8], seq: u32, time: Timestamp, error: ErrorEstimate) -> bool {
        let repr = SenderRepr {
            seq,
            timestamp: time,
            error_estimate: error,
        };
        if repr.emit(pkt, self.layout()).is_err() {
            return false;
        }
        self.protect(PacketKind::Sender, pkt);
        true
    }
}

/// A packet sealed: what goes in the sender's own records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sealed {
    pub(crate) seq: u32,
    pub(crate) time: Timestamp,
    pub(crate) error: ErrorEstimate,
}

/// Transmit stamps come back with the socket's datagram index; the last this many are
/// remembered to map an index back to its sequence number (stamps come back microseconds
/// after the send).
const STAMP_RING: usize = 256;

/// One session's sending side, its packets finished by `F`.
pub(crate) struct SendPlan<F: PacketFormat = TestProtection> {
    offsets: Offsets,
    start: Instant,
    count: u32,
    next_seq: u32,
    next_at: Option<Instant>,
    /// The plaintext of every packet: header (filled at seal) and padding.
    template: Vec<u8>,
    format: F,
    to: SocketAddr,
    clock: ClockCache,
    /// Sequence numbers queued this turn, sealed in this order.
    queued: std::collections::VecDeque<u32>,
    /// Datagrams the kernel has taken on this socket, and the seq of the last few by index.
    accepted: u32,
    ring: [u32; STAMP_RING],
    /// When the last packet was queued.
    last: Option<Instant>,
}

impl<F: PacketFormat> std::fmt::Debug for SendPlan<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendPlan")
            .field("to", &self.to)
            .field("count", &self.count)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl<F: PacketFormat> SendPlan<F> {
    /// `count` packets of `template` (padding included; `format` overwrites its per-packet
    /// fields) to `to`, the first at `start` plus the first offset.
    pub(crate) fn new(
        mut offsets: Offsets,
        start: Instant,
        count: u32,
        template: Vec<u8>,
        format: F,
        to: SocketAddr,
    ) -> Self {
        let next_at = if count > 0 {
            offsets.next().map(|o| start + o)
        } else {
            None
        };
        Self {
            offsets,
            start,
            count,
            next_seq: 0,
            next_at,
            template,
            format,
            to,
            clock: ClockCache::new(),
            queued: std::collections::VecDeque::with_capacity(BATCH),
            accepted: 0,
            ring: [0; STAMP_RING],
            last: None,
        }
    }

    /// Queues what is due (at most what `out` has room for). Returns when the next packet is
    /// due, or `None` once every packet has been queued.
    pub(crate) fn due(&mut self, now: Instant, out: &mut Out<'_>) -> Option<Instant> {
        while let Some(at) = self.next_at {
            if at > now || !out.has_room() {
                return Some(at);
            }
            let template = &self.template;
            if !out.send(self.to, |slot| {
                let pkt = slot.get_mut(..template.len())?;
                pkt.copy_from_slice(template);
                Some(template.len())
            }) {
                // A template longer than a datagram cannot be sent: nothing more will be.
                self.next_at = None;
                return None;
            }
            self.queued.push_back(self.next_seq);
            self.last = Some(now);
            self.next_seq += 1;
            self.next_at = if self.next_seq < self.count {
                self.offsets.next().map(|o| self.start + o)
            } else {
                None
            };
        }
        None
    }

    /// Stamps and protects the next queued packet, just before the send.
    pub(crate) fn seal(&mut self, pkt: &mut [u8]) -> Option<Sealed> {
        let seq = self.queued.pop_front()?;
        let error = self.clock.estimate();
        let time = clock::now();
        if !self.format.seal(pkt, seq, time, error) {
            return None;
        }
        self.ring[self.accepted as usize % STAMP_RING] = seq;
        self.accepted = self.accepted.wrapping_add(1);
        Some(Sealed { seq, time, error })
    }

    /// The kernel did not take the last `queued - sent` sealed packets: they do not count
    /// toward the socket's datagram index.
    pub(crate) fn unsent(&mut self, sent: usize, queued: usize) {
        let n = u32::try_from(queued.saturating_sub(sent)).unwrap_or(u32::MAX);
        self.accepted = self.accepted.wrapping_sub(n);
        self.queued.clear();
    }

    /// The sequence number of the socket's datagram `id`, if it is recent enough to know.
    pub(crate) fn seq_of(&self, id: u32) -> Option<u32> {
        let behind = self.accepted.wrapping_sub(id);
        (behind >= 1 && (behind as usize) <= STAMP_RING)
            .then(|| self.ring[id as usize % STAMP_RING])
    }

    /// The Error Estimate for a timestamp taken now on this session's clock.
    pub(crate) fn error_estimate(&mut self) -> ErrorEstimate {
        self.clock.estimate()
    }

    /// Packets queued so far (the Next Seqno of RFC 4656 §3.8).
    pub(crate) fn next_seq(&self) -> u32 {
        self.next_seq
    }

    /// Whether every packet has been queued.
    pub(crate) fn done(&self) -> bool {
        self.next_at.is_none()
    }

    /// When the last packet was queued.
    pub(crate) fn last_sent(&self) -> Option<Instant> {
        self.last
    }

    /// Where the packets go.
    pub(crate) fn to(&self) -> SocketAddr {
        self.to
    }
}
