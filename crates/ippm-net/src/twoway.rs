//! What a twping run keeps as its packets go and come: the two-way statistics, accumulated
//! with memory independent of the packet count (`ippm_stats::TwoWayAccumulator`), and every
//! record only when asked for (per-packet output, plots, the archive).
//!
//! The sender's T1 is the kernel's transmit stamp where it gives one. A reply is counted
//! against its packet's stamp: the engine reads a session's transmit stamps before its
//! replies, so the stamp of a packet is in before the reply to it; a packet is entered into
//! the statistics once its stamp is in, when its first reply comes, or when 256 packets later
//! no stamp has come.

use ippm_proto::{ErrorEstimate, Timestamp};
use ippm_stats::{Bounds, Reflected, TwoWayAccumulator, TwoWayReport};

use crate::packets::{Reply, Sent};

/// What a two-way test (twping's TWAMP, `ippm stamp`'s STAMP) measured, as the reports and
/// plots read it: one report and plot code for both.
pub trait TwoWayResult {
    /// Our test address.
    fn local(&self) -> std::net::SocketAddr;
    /// The reflector's test address.
    fn reflector(&self) -> std::net::SocketAddr;
    /// The statistics, accumulated as the packets went and came.
    fn report(&self) -> &TwoWayReport;
    /// When the first packet was sent (its timestamp).
    fn first_sent(&self) -> Option<Timestamp>;
    /// When the last packet was sent (its timestamp).
    fn last_sent(&self) -> Option<Timestamp>;
    /// Every packet sent, in order (empty unless records were kept).
    fn sent(&self) -> &[Sent];
    /// Every reply, in arrival order (empty unless records were kept).
    fn replies(&self) -> &[Reply];
    /// Packets whose send time is the kernel's transmit stamp.
    fn kernel_tx_stamps(&self) -> u32;
}

/// Packets in flight between the send and the kernel's transmit stamp that are remembered:
/// the stamp comes microseconds after the send (and is read before any reply).
const RING: usize = 256;

fn err_ns(e: ErrorEstimate) -> f64 {
    e.seconds() * 1e9
}

/// A sent packet as the statistics take it, in ns since `base`.
pub fn stats_sent(s: &Sent, base: Timestamp) -> ippm_stats::Sent {
    ippm_stats::Sent {
        seq: s.seq,
        t1_ns: s.t1().nanos_since(base),
    }
}

/// A reply as the statistics take it, in ns since `base`, against `t1` (its packet's best
/// send time, see [`Sent::t1`]; the packet's own timestamp when the packet is not known).
pub fn stats_reply(p: &Reply, t1: Timestamp, base: Timestamp) -> Reflected {
    let f = &p.reflector;
    Reflected {
        sender_seq: f.sender_seq,
        reflector_seq: f.seq,
        t1_ns: t1.nanos_since(base),
        t2_ns: f.receive_timestamp.nanos_since(base),
        t3_ns: f.timestamp.nanos_since(base),
        t4_ns: p.recv_time.nanos_since(base),
        forward_ttl: Some(f.sender_ttl),
        backward_ttl: p.ttl,
        synchronized: f.sender_error_estimate.synchronized()
            && f.error_estimate.synchronized()
            && p.recv_error.synchronized(),
        forward_error_ns: err_ns(f.sender_error_estimate) + err_ns(f.error_estimate),
        backward_error_ns: err_ns(f.error_estimate) + err_ns(p.recv_error),
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    sent: Sent,
    /// Entered into the statistics.
    counted: bool,
}

/// The statistics of one run, fed packet by packet, and its records when kept.
#[derive(Debug)]
pub struct Collector {
    acc: TwoWayAccumulator,
    base: Option<Timestamp>,
    ring: Vec<Option<Pending>>,
    keep: bool,
    /// Every packet sent, in order (only when records are kept).
    pub sent: Vec<Sent>,
    /// Every reply, in arrival order (only when records are kept).
    pub replies: Vec<Reply>,
    /// Packets whose T1 is the kernel's transmit stamp.
    pub kernel_stamps: u32,
    /// The first and the last packet's timestamps.
    pub first: Option<Timestamp>,
    /// See `first`.
    pub last: Option<Timestamp>,
}

impl Collector {
    /// For a run of `packets` packets (the windows are sized to it, up to the defaults);
    /// `keep`: also keep every record (memory grows with the packets).
    pub fn new(keep: bool, packets: u64) -> Self {
        Self {
            acc: TwoWayAccumulator::new(Bounds::for_packets(packets)),
            base: None,
            ring: vec![None; RING],
            keep,
            sent: Vec::new(),
            replies: Vec::new(),
            kernel_stamps: 0,
            first: None,
            last: None,
        }
    }

    fn base(&mut self, t: Timestamp) -> Timestamp {
        *self.base.get_or_insert(t)
    }

    fn count(&mut self, i: usize) {
        if let Some(p) = self.ring[i].as_mut().filter(|p| !p.counted) {
            p.counted = true;
            let s = p.sent;
            let base = self.base(s.time);
            self.acc.push_sent(stats_sent(&s, base));
        }
    }

    /// A packet left (its user-space timestamp).
    pub fn sent(&mut self, s: Sent) {
        self.base(s.time);
        self.first.get_or_insert(s.time);
        self.last = Some(s.time);
        let i = s.seq as usize % RING;
        // The packet RING before this one had no stamp: counted as it is.
        self.count(i);
        self.ring[i] = Some(Pending {
            sent: s,
            counted: false,
        });
        if self.keep {
            self.sent.push(s);
        }
    }

    /// The kernel's transmit stamp of packet `seq`.
    pub fn tx_stamp(&mut self, seq: u32, time: Timestamp) {
        let i = seq as usize % RING;
        let Some(p) = self.ring[i].as_mut().filter(|p| p.sent.seq == seq) else {
            return;
        };
        if p.sent.kernel_time.is_none() {
            self.kernel_stamps += 1;
        }
        p.sent.kernel_time = Some(time);
        if self.keep {
            // Packets are sent in sequence from 0: a packet's record is at its seq.
            if let Some(s) = self.sent.get_mut(seq as usize).filter(|s| s.seq == seq) {
                s.kernel_time = Some(time);
            }
        }
        self.count(i);
    }

    /// A reply that passed its checks.
    pub fn reply(&mut self, r: Reply) {
        let seq = r.reflector.sender_seq;
        let i = seq as usize % RING;
        let known = self.ring[i].filter(|p| p.sent.seq == seq);
        let t1 = match known {
            Some(p) => {
                self.count(i);
                p.sent.t1()
            }
            None => r.reflector.sender_timestamp,
        };
        let base = self.base(r.reflector.sender_timestamp);
        self.acc.push_reply(&stats_reply(&r, t1, base));
        if self.keep {
            self.replies.push(r);
        }
    }

    /// The statistics so far (cheap enough to call every second).
    pub fn report(&self) -> TwoWayReport {
        self.acc.report()
    }

    /// The run is over: every packet not yet entered is, and the statistics are final.
    pub fn finish(&mut self) -> TwoWayReport {
        let mut left: Vec<usize> = (0..RING)
            .filter(|&i| self.ring[i].is_some_and(|p| !p.counted))
            .collect();
        left.sort_by_key(|&i| self.ring[i].map(|p| p.sent.seq));
        for i in left {
            self.count(i);
        }
        self.acc.report()
    }

    /// Memory the statistics hold (not counting kept records).
    pub fn memory_bytes(&self) -> usize {
        self.acc.memory_bytes() + self.ring.len() * size_of::<Option<Pending>>()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ippm_proto::wire::test::ReflectorRepr;

    use super::*;

    fn ts(us: u64) -> Timestamp {
        Timestamp::from_unix(Duration::from_micros(1_700_000_000_000_000 + us))
    }

    /// A session of `n` packets 100 us apart, every 7th lost, every 11th reply duplicated,
    /// replies 30 us after their packet, transmit stamps 2 us after the user timestamp for the
    /// packets `stamped` says.
    fn session(
        n: u32,
        stamped: impl Fn(u32) -> bool,
    ) -> Vec<(Sent, Option<Timestamp>, Vec<Reply>)> {
        let e = ErrorEstimate::from_duration(false, Duration::from_micros(10));
        let mut rseq = 0;
        (0..n)
            .map(|seq| {
                let t = ts(u64::from(seq) * 100);
                let sent = Sent {
                    seq,
                    time: t,
                    error: e,
                    kernel_time: None,
                };
                let k = stamped(seq).then(|| t + Duration::from_micros(2));
                let mut replies = Vec::new();
                if seq % 7 != 3 {
                    for dup in 0..if seq % 11 == 5 { 2 } else { 1 } {
                        let f = ReflectorRepr {
                            seq: rseq,
                            timestamp: t + Duration::from_micros(15),
                            error_estimate: e,
                            receive_timestamp: t + Duration::from_micros(10),
                            sender_seq: seq,
                            sender_timestamp: t,
                            sender_error_estimate: e,
                            sender_ttl: 255,
                        };
                        rseq += 1;
                        replies.push(Reply {
                            reflector: f,
                            recv_time: t + Duration::from_micros(30 + dup),
                            recv_error: e,
                            ttl: Some(255),
                        });
                    }
                }
                (sent, k, replies)
            })
            .collect()
    }

    fn batch(c: &Collector) -> TwoWayReport {
        let base = c.sent[0].time;
        let sent: Vec<_> = c.sent.iter().map(|s| stats_sent(s, base)).collect();
        let replies: Vec<_> = c
            .replies
            .iter()
            .map(|r| {
                let s = &c.sent[r.reflector.sender_seq as usize];
                stats_reply(r, s.t1(), base)
            })
            .collect();
        ippm_stats::two_way(&sent, &replies)
    }

    #[test]
    fn streamed_statistics_equal_the_batch_ones_over_the_records() {
        // Every packet stamped; none; every other one.
        for stamped in [|_| true, |_| false, |s: u32| s % 2 == 0] as [fn(u32) -> bool; 3] {
            let mut c = Collector::new(true, 5_000);
            for (s, k, replies) in session(5_000, stamped) {
                c.sent(s);
                if let Some(k) = k {
                    c.tx_stamp(s.seq, k);
                }
                for r in replies {
                    c.reply(r);
                }
            }
            let streamed = c.finish();
            assert_eq!(streamed, batch(&c));
            assert_eq!(streamed.loss.sent, 5_000);
            assert_eq!(streamed.loss.lost, 714);
            assert_eq!(
                c.kernel_stamps as usize,
                c.sent.iter().filter(|s| s.kernel_time.is_some()).count()
            );
            // The kernel's stamp is T1 where it came: 2 us later than the packet's, so the
            // round trip (30 us less the reflector's 5) is 2 us shorter.
            let rt = streamed.round_trip.unwrap();
            let expect = if stamped(0) { 23_000 } else { 25_000 };
            assert_eq!(rt.min_ns, expect, "{stamped:?}");
        }
    }

    #[test]
    fn a_reply_before_its_stamp_and_a_stamp_that_never_comes() {
        let mut c = Collector::new(false, 3);
        let s = session(3, |_| true);
        // Packet 0: the reply first (no stamp yet: the packet's own T1), then a stamp too
        // late to matter. Packet 1: no stamp ever. Packet 2: stamped.
        c.sent(s[0].0);
        c.reply(s[0].2[0]);
        c.tx_stamp(0, s[0].1.unwrap());
        c.sent(s[1].0);
        c.sent(s[2].0);
        c.tx_stamp(2, s[2].1.unwrap());
        c.reply(s[2].2[0]);
        let r = c.finish();
        assert_eq!(r.loss.sent, 3);
        assert_eq!(r.loss.lost, 1);
        let rt = r.round_trip.unwrap();
        assert_eq!((rt.min_ns, rt.max_ns), (23_000, 25_000));
        // Nothing kept.
        assert!(c.sent.is_empty() && c.replies.is_empty());
    }

    #[test]
    fn memory_does_not_grow_with_the_packets() {
        let mut c = Collector::new(false, 400_000);
        let mut at_100k = 0;
        for (i, (s, k, replies)) in session(400_000, |_| true).into_iter().enumerate() {
            c.sent(s);
            c.tx_stamp(s.seq, k.unwrap());
            for r in replies {
                c.reply(r);
            }
            if i == 100_000 {
                at_100k = c.memory_bytes();
            }
        }
        assert_eq!(c.memory_bytes(), at_100k);
        assert!(c.sent.is_empty() && c.replies.is_empty());
        assert_eq!(c.finish().loss.sent, 400_000);
    }
}
