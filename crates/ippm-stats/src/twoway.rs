//! Two-way (TWAMP) metrics from what the Session-Sender sent and what came back.
//!
//! - Round-trip delay (RFC 5357 §4.2.1 / RFC 2681) is `(T4 - T1) - (T3 - T2)`: the reflector's
//!   processing time is taken out, so only one clock's differences are used on each side and
//!   the result is right whether or not the two clocks agree.
//! - Forward `T2 - T1` and backward `T4 - T3` one-way delays mix the two clocks: they are
//!   reported, but flagged unsynchronized unless both clocks said they are synchronized.
//! - Loss per direction uses the reflector's own sequence numbers: the reflector numbers the
//!   packets it reflects 0, 1, 2, ... so a reflector number missing below the highest one
//!   received is a reply lost on the way back; every other lost packet is counted as lost on
//!   the way out (a reply lost after the last one that arrived cannot be told apart and is
//!   counted forward).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::mem::{size_of, size_of_val};

use fixedbitset::FixedBitSet;
use serde::Serialize;

use crate::Bounds;
use crate::quantiles::{Quantiles, Snapshot};
use crate::reorder::{ReorderTracker, Reordering, is_zero};
use crate::summary::Digest;
use crate::window::{Seen, SeqMap, SeqSet};

/// One packet the sender sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Sequence number.
    pub seq: u32,
    /// T1, ns.
    pub t1_ns: i64,
}

/// One reply received.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reflected {
    /// The sender's sequence number, as reflected.
    pub sender_seq: u32,
    /// The reflector's own sequence number.
    pub reflector_seq: u32,
    /// T1 as reflected, ns.
    pub t1_ns: i64,
    /// T2: reflector receive time, ns.
    pub t2_ns: i64,
    /// T3: reflector send time, ns.
    pub t3_ns: i64,
    /// T4: sender receive time, ns.
    pub t4_ns: i64,
    /// TTL of the sender's packet at the reflector.
    pub forward_ttl: Option<u8>,
    /// TTL of the reply at the sender.
    pub backward_ttl: Option<u8>,
    /// Both clocks claimed synchronization (S bits of T1, T2, T3 and T4).
    pub synchronized: bool,
    /// Sum of the error estimates of T1 and T2, ns.
    pub forward_error_ns: f64,
    /// Sum of the error estimates of T3 and T4, ns.
    pub backward_error_ns: f64,
}

/// Loss counts of a session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Loss {
    /// Packets sent.
    pub sent: usize,
    /// Distinct packets whose reply came back.
    pub received: usize,
    /// sent - received.
    pub lost: usize,
    /// lost / sent (0 when nothing was sent).
    pub loss_ratio: f64,
    /// Lost on the way to the reflector (inferred, see the module docs).
    pub forward_lost: usize,
    /// Lost on the way back (inferred from gaps in the reflector's numbers).
    pub backward_lost: usize,
}

/// Everything a two-way run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TwoWayReport {
    /// Loss.
    pub loss: Loss,
    /// Replies beyond the first for a sequence number (duplicated on either way).
    pub duplicates: usize,
    /// Packets the reflector reflected more than once (forward duplicates).
    pub forward_duplicates: usize,
    /// Replies for a sender sequence number never sent, ignored but for the reflector's
    /// numbering. Absent from JSON when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub unknown_replies: usize,
    /// Replies that came after their packet had left a [`TwoWayAccumulator`]'s loss window
    /// ([`Bounds::loss_window`]): counted lost. Always 0 from [`two_way`]; absent from JSON
    /// when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub late_replies: usize,
    /// Round-trip delay without reflector processing.
    pub round_trip: Option<Digest>,
    /// perfSONAR's two-way jitter: P95 - P50 of the round-trip delay.
    pub round_trip_jitter_ns: Option<f64>,
    /// T2 - T1.
    pub forward: Option<Digest>,
    /// T4 - T3.
    pub backward: Option<Digest>,
    /// Whether the one-way figures can be trusted (both clocks synchronized throughout).
    pub one_way_synchronized: bool,
    /// Largest sum of error estimates over the one-way figures, ns.
    pub one_way_error_ns: f64,
    /// T3 - T2.
    pub reflector_processing: Option<Digest>,
    /// IPDV of the round-trip delay: differences of consecutive packets' delays (RFC 5481).
    pub round_trip_ipdv: Option<Digest>,
    /// Round-trip PDV: delay minus the minimum delay (RFC 5481).
    pub round_trip_pdv: Option<Digest>,
    /// Reordering on the way out (order the reflector received them in).
    pub forward_reordering: Reordering,
    /// Reordering of the replies as they came back, by the reflector's numbers.
    pub backward_reordering: Reordering,
    /// Reordering of the round trip, by the sender's numbers in arrival order.
    pub round_trip_reordering: Reordering,
    /// Distinct hop counts on the way out.
    pub forward_hops: Vec<u8>,
    /// Distinct hop counts on the way back.
    pub backward_hops: Vec<u8>,
}

/// The percentiles digests carry.
pub const PERCENTILES: [f64; 5] = [25.0, 75.0, 90.0, 95.0, 99.0];

/// Computes the report. `replies` are in arrival order.
///
/// The same as pushing `sent` and then `replies` into a [`TwoWayAccumulator`] with
/// [`Bounds::UNBOUNDED`].
pub fn two_way(sent: &[Sent], replies: &[Reflected]) -> TwoWayReport {
    let mut acc = TwoWayAccumulator::new(Bounds::UNBOUNDED);
    for s in sent {
        acc.push_sent(*s);
    }
    for r in replies {
        acc.push_reply(r);
    }
    acc.report()
}

/// The two-way statistics accumulated packet by packet, in memory set by [`Bounds`] whatever
/// the number of packets.
///
/// Push each packet sent ([`push_sent`](Self::push_sent)) before its replies, and every reply
/// as it arrives, duplicates included ([`push_reply`](Self::push_reply)); [`report`](Self::report)
/// at any time. Pushed in that order, the report equals [`two_way`]'s over the same packets
/// while the input stays within the bounds (see [`Bounds`] for what happens beyond them).
///
/// - A reply whose sender sequence number was never sent (or not yet) is counted in
///   [`TwoWayReport::unknown_replies`] and otherwise only counts for the reflector's numbering
///   (backward loss and reordering), as in [`two_way`].
/// - A reply whose sender sequence number is [`Bounds::loss_window`] or more below the highest
///   sent is late ([`TwoWayReport::late_replies`]): its packet stays lost.
/// - A forward duplicate is a reply repeating a sender sequence number with a reflector number
///   not seen before: RFC 5357 §4.2.1 has the reflector number each packet it reflects, so a
///   reply duplicated on the way back repeats its number. (A reflector number older than the
///   window is taken as seen.)
/// - Sequence numbers are taken as they are: after a wrap from `u32::MAX` to 0, the new
///   numbers are below the window (the sender sends at most `u32::MAX` packets per session, so
///   its numbers do not wrap).
#[derive(Debug, Clone)]
pub struct TwoWayAccumulator {
    bounds: Bounds,
    sent: SeqSet,
    sent_count: usize,
    received: SeqSet,
    received_count: usize,
    reflector: SeqSet,
    reflector_count: usize,
    reflector_max: Option<u32>,
    duplicates: usize,
    forward_duplicates: usize,
    unknown_replies: usize,
    late_replies: usize,
    round_trip: Quantiles,
    forward: Quantiles,
    backward: Quantiles,
    reflector_processing: Quantiles,
    ipdv: Quantiles,
    /// Round-trip delays by sender sequence number, for the IPDV.
    delays: SeqMap,
    synchronized: bool,
    one_way_error_ns: f64,
    /// First replies not yet handed to `forward_reordering`, by (reflector number, arrival),
    /// with their sender sequence number.
    pending: BinaryHeap<Reverse<(u32, u64, u32)>>,
    arrivals: u64,
    forward_reordering: ReorderTracker,
    backward_reordering: ReorderTracker,
    round_trip_reordering: ReorderTracker,
    forward_ttls: FixedBitSet,
    backward_ttls: FixedBitSet,
}

impl TwoWayAccumulator {
    /// An accumulator with these bounds.
    pub fn new(bounds: Bounds) -> Self {
        let b = bounds.normalized();
        let q = |pdv| Quantiles::new(&b, pdv);
        Self {
            bounds: b,
            sent: SeqSet::new(b.loss_window),
            sent_count: 0,
            received: SeqSet::new(b.loss_window),
            received_count: 0,
            reflector: SeqSet::new(b.loss_window),
            reflector_count: 0,
            reflector_max: None,
            duplicates: 0,
            forward_duplicates: 0,
            unknown_replies: 0,
            late_replies: 0,
            round_trip: q(true),
            forward: q(false),
            backward: q(false),
            reflector_processing: q(false),
            ipdv: q(false),
            delays: SeqMap::new(b.reorder_window),
            synchronized: true,
            one_way_error_ns: 0.0,
            pending: BinaryHeap::new(),
            arrivals: 0,
            forward_reordering: ReorderTracker::new(&b),
            backward_reordering: ReorderTracker::new(&b),
            round_trip_reordering: ReorderTracker::new(&b),
            forward_ttls: FixedBitSet::with_capacity(256),
            backward_ttls: FixedBitSet::with_capacity(256),
        }
    }

    /// The bounds it was made with (each field in its valid range).
    pub fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    /// A packet sent. Sending a sequence number again within the window counts once, as in
    /// [`two_way`]; one below the window counts as new.
    pub fn push_sent(&mut self, sent: Sent) {
        match self.sent.insert(sent.seq) {
            Seen::New | Seen::Old => self.sent_count += 1,
            Seen::Again => {}
        }
    }

    /// A reply, in arrival order.
    pub fn push_reply(&mut self, r: &Reflected) {
        let arrival = self.arrivals;
        self.arrivals += 1;
        let new_reflection = match self.reflector.insert(r.reflector_seq) {
            Seen::New => {
                self.reflector_count += 1;
                self.reflector_max = self.reflector_max.max(Some(r.reflector_seq));
                self.backward_reordering.push(r.reflector_seq);
                true
            }
            Seen::Again | Seen::Old => false,
        };
        match self.sent.contains(r.sender_seq) {
            None => {
                self.late_replies += 1;
                return;
            }
            Some(false) => {
                self.unknown_replies += 1;
                return;
            }
            Some(true) => {}
        }
        match self.received.insert(r.sender_seq) {
            Seen::Again => {
                self.duplicates += 1;
                if new_reflection {
                    self.forward_duplicates += 1;
                }
                return;
            }
            // Not below the window: received numbers are sent numbers, at most the highest.
            Seen::Old => {
                self.late_replies += 1;
                return;
            }
            Seen::New => {}
        }
        self.received_count += 1;
        let rtt = (r.t4_ns.saturating_sub(r.t1_ns)).saturating_sub(r.t3_ns.saturating_sub(r.t2_ns));
        self.round_trip.push(rtt);
        self.forward.push(r.t2_ns.saturating_sub(r.t1_ns));
        self.backward.push(r.t4_ns.saturating_sub(r.t3_ns));
        self.reflector_processing
            .push(r.t3_ns.saturating_sub(r.t2_ns));
        ipdv(&mut self.delays, &mut self.ipdv, r.sender_seq, rtt);
        self.synchronized &= r.synchronized;
        self.one_way_error_ns = self
            .one_way_error_ns
            .max(r.forward_error_ns.max(r.backward_error_ns));
        self.pending
            .push(Reverse((r.reflector_seq, arrival, r.sender_seq)));
        if self.pending.len() > self.bounds.reorder_window {
            if let Some(Reverse((_, _, seq))) = self.pending.pop() {
                self.forward_reordering.push(seq);
            }
        }
        self.round_trip_reordering.push(r.sender_seq);
        if let Some(t) = r.forward_ttl {
            self.forward_ttls.insert(usize::from(t));
        }
        if let Some(t) = r.backward_ttl {
            self.backward_ttls.insert(usize::from(t));
        }
    }

    /// The report so far. Its cost is bounded by the bounds, not the number of packets: it
    /// sorts copies of the exact values (at most [`Bounds::exact_values`] per digest) or walks
    /// the histograms, and replays the replies still waiting for the reflector's order.
    pub fn report(&self) -> TwoWayReport {
        let received = self.received_count;
        let sent = self.sent_count;
        let lost = sent.saturating_sub(received);
        let backward_lost = self
            .reflector_max
            .map_or(0, |m| (m as usize + 1).saturating_sub(self.reflector_count))
            .min(lost);
        let mut forward_reordering = self.forward_reordering.clone();
        let mut pending: Vec<(u32, u64, u32)> = self.pending.iter().map(|r| r.0).collect();
        pending.sort_unstable();
        for (_, _, seq) in pending {
            forward_reordering.push(seq);
        }
        let digest = |q: &Quantiles| q.snapshot().map(|s| s.digest(&PERCENTILES));
        let rtt = self.round_trip.snapshot();
        TwoWayReport {
            loss: Loss {
                sent,
                received,
                lost,
                loss_ratio: if sent == 0 {
                    0.0
                } else {
                    lost as f64 / sent as f64
                },
                forward_lost: lost - backward_lost,
                backward_lost,
            },
            duplicates: self.duplicates,
            forward_duplicates: self.forward_duplicates,
            unknown_replies: self.unknown_replies,
            late_replies: self.late_replies,
            round_trip_jitter_ns: rtt.as_ref().map(Snapshot::jitter),
            round_trip: rtt.map(|s| s.digest(&PERCENTILES)),
            forward: digest(&self.forward),
            backward: digest(&self.backward),
            one_way_synchronized: received > 0 && self.synchronized,
            one_way_error_ns: self.one_way_error_ns,
            reflector_processing: digest(&self.reflector_processing),
            round_trip_ipdv: digest(&self.ipdv),
            round_trip_pdv: self
                .round_trip
                .pdv_snapshot()
                .map(|s| s.digest(&PERCENTILES)),
            forward_reordering: forward_reordering.report(),
            backward_reordering: self.backward_reordering.report(),
            round_trip_reordering: self.round_trip_reordering.report(),
            forward_hops: crate::hop_counts(self.forward_ttls.ones().map(ttl)),
            backward_hops: crate::hop_counts(self.backward_ttls.ones().map(ttl)),
        }
    }

    /// Bytes of memory it holds, its own size included. It stops growing once each part has
    /// reached its bound; with [`Bounds::DEFAULT`], under 5 MiB.
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>()
            + self.sent.memory_bytes()
            + self.received.memory_bytes()
            + self.reflector.memory_bytes()
            + [
                &self.round_trip,
                &self.forward,
                &self.backward,
                &self.reflector_processing,
                &self.ipdv,
            ]
            .iter()
            .map(|q| q.memory_bytes())
            .sum::<usize>()
            + self.delays.memory_bytes()
            + self.pending.capacity() * size_of::<Reverse<(u32, u64, u32)>>()
            + self.forward_reordering.memory_bytes()
            + self.backward_reordering.memory_bytes()
            + self.round_trip_reordering.memory_bytes()
            + size_of_val(self.forward_ttls.as_slice())
            + size_of_val(self.backward_ttls.as_slice())
    }
}

impl Default for TwoWayAccumulator {
    fn default() -> Self {
        Self::new(Bounds::DEFAULT)
    }
}

/// A TTL from a 256-bit set's index.
pub(crate) fn ttl(i: usize) -> u8 {
    u8::try_from(i).unwrap_or(u8::MAX)
}

/// RFC 5481 IPDV: the delay differences of consecutive sequence numbers (the later number's
/// delay minus the earlier's), each pair counted when its second packet arrives.
pub(crate) fn ipdv(delays: &mut SeqMap, ipdv: &mut Quantiles, seq: u32, delay: i64) {
    if let Some(d) = seq.checked_sub(1).and_then(|s| delays.get(s)) {
        ipdv.push(delay.saturating_sub(d));
    }
    if let Some(d) = seq.checked_add(1).and_then(|s| delays.get(s)) {
        ipdv.push(d.saturating_sub(delay));
    }
    delays.insert(seq, delay);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sent(n: u32) -> Vec<Sent> {
        (0..n)
            .map(|seq| Sent {
                seq,
                t1_ns: i64::from(seq) * 1_000_000,
            })
            .collect()
    }

    /// A reply for `seq`, reflected as the reflector's `rseq`-th packet: forward 100 us,
    /// processing 10 us, backward 200 us.
    fn reply(seq: u32, rseq: u32) -> Reflected {
        let t1 = i64::from(seq) * 1_000_000;
        Reflected {
            sender_seq: seq,
            reflector_seq: rseq,
            t1_ns: t1,
            t2_ns: t1 + 100_000,
            t3_ns: t1 + 110_000,
            t4_ns: t1 + 310_000,
            forward_ttl: Some(255),
            backward_ttl: Some(64),
            synchronized: false,
            forward_error_ns: 1.0,
            backward_error_ns: 2.0,
        }
    }

    #[test]
    fn clean_run() {
        let r = two_way(&sent(5), &(0..5).map(|i| reply(i, i)).collect::<Vec<_>>());
        assert_eq!(
            r.loss,
            Loss {
                sent: 5,
                received: 5,
                lost: 0,
                loss_ratio: 0.0,
                forward_lost: 0,
                backward_lost: 0
            }
        );
        let rt = r.round_trip.unwrap();
        assert_eq!(
            (rt.min_ns, rt.max_ns, rt.median_ns),
            (300_000, 300_000, 300_000.0)
        );
        assert_eq!(r.round_trip_jitter_ns, Some(0.0));
        assert_eq!(r.forward.unwrap().median_ns, 100_000.0);
        assert_eq!(r.backward.unwrap().median_ns, 200_000.0);
        assert_eq!(r.reflector_processing.unwrap().max_ns, 10_000);
        assert!(!r.one_way_synchronized);
        assert_eq!(r.one_way_error_ns, 2.0);
        assert_eq!(
            (r.forward_hops.clone(), r.backward_hops.clone()),
            (vec![0], vec![0])
        );
        assert_eq!(r.round_trip_reordering.reordered, 0);
        assert_eq!(r.round_trip_ipdv.unwrap().max_ns, 0);
    }

    #[test]
    fn loss_per_direction() {
        // 6 sent. Packet 1 lost forward (the reflector never numbered it); the reply to packet
        // 3 (reflector number 2) lost backward; packet 5 lost with nothing after it: counted
        // forward.
        let replies = vec![reply(0, 0), reply(2, 1), reply(4, 3)];
        let r = two_way(&sent(6), &replies);
        assert_eq!(r.loss.lost, 3);
        assert_eq!(r.loss.backward_lost, 1);
        assert_eq!(r.loss.forward_lost, 2);
        assert!((r.loss.loss_ratio - 0.5).abs() < 1e-12);
    }

    #[test]
    fn every_loss_rate_is_defined() {
        let r = two_way(&sent(4), &[]);
        assert_eq!(r.loss.loss_ratio, 1.0);
        assert!(r.round_trip.is_none() && r.round_trip_jitter_ns.is_none());
        let r = two_way(&[], &[]);
        assert_eq!(r.loss.loss_ratio, 0.0);
        // 99% loss: still numbers, not NaN.
        let r = two_way(&sent(100), &[reply(50, 0)]);
        assert!((r.loss.loss_ratio - 0.99).abs() < 1e-12);
        assert_eq!(r.round_trip.unwrap().count, 1);
    }

    #[test]
    fn duplicates_and_reordering() {
        // Packet 1 reflected twice (forward duplicate); replies arrive 0, 2, 1, 1.
        let replies = vec![reply(0, 0), reply(2, 2), reply(1, 1), reply(1, 3)];
        let r = two_way(&sent(3), &replies);
        assert_eq!(r.duplicates, 1);
        assert_eq!(r.forward_duplicates, 1);
        assert_eq!(r.loss.received, 3);
        assert_eq!(r.round_trip_reordering.reordered, 1);
        assert_eq!(
            r.forward_reordering.reordered, 0,
            "the reflector got them in order"
        );
        assert_eq!(r.backward_reordering.reordered, 1);
    }

    #[test]
    fn unsynchronized_clocks_give_negative_one_way_but_right_round_trip() {
        let mut x = reply(0, 0);
        // The reflector's clock is 1 s behind.
        x.t2_ns -= 1_000_000_000;
        x.t3_ns -= 1_000_000_000;
        let r = two_way(&sent(1), &[x]);
        assert!(r.forward.unwrap().min_ns < 0);
        assert_eq!(r.round_trip.unwrap().min_ns, 300_000);
    }

    proptest! {
        #[test]
        fn loss_adds_up(keep in prop::collection::vec(any::<bool>(), 0..60), shuffle in any::<u64>()) {
            let n = keep.len() as u32;
            let mut replies: Vec<Reflected> = Vec::new();
            let mut rseq = 0;
            for (i, k) in keep.iter().enumerate() {
                if *k {
                    replies.push(reply(i as u32, rseq));
                    rseq += 1;
                }
            }
            let before = two_way(&sent(n), &replies);
            prop_assert_eq!(before.loss.received + before.loss.lost, before.loss.sent);
            prop_assert_eq!(before.loss.forward_lost + before.loss.backward_lost, before.loss.lost);
            // Arrival order changes reordering, not the delay statistics.
            if replies.len() > 1 {
                let k = (shuffle as usize) % replies.len();
                replies.rotate_left(k);
            }
            let after = two_way(&sent(n), &replies);
            prop_assert_eq!(before.round_trip.map(|d| d.median_ns), after.round_trip.map(|d| d.median_ns));
            prop_assert_eq!(before.loss, after.loss);
        }
    }

    use crate::reference::{self, Event, Path, assert_near, paths, split, twamp_session};

    fn stream(events: &[Event], bounds: Bounds) -> TwoWayAccumulator {
        let mut acc = TwoWayAccumulator::new(bounds);
        for e in events {
            match e {
                Event::Sent(s) => acc.push_sent(*s),
                Event::Reply(r) => acc.push_reply(r),
            }
        }
        acc
    }

    fn batch(events: &[Event]) -> TwoWayReport {
        let (s, r) = split(events);
        two_way(&s, &r)
    }

    fn without_digests(mut r: TwoWayReport) -> TwoWayReport {
        r.round_trip = None;
        r.round_trip_jitter_ns = None;
        r.forward = None;
        r.backward = None;
        r.reflector_processing = None;
        r.round_trip_ipdv = None;
        r.round_trip_pdv = None;
        r
    }

    /// Sends 0..n, and replies (sender seq, reflector seq) in this order.
    fn run(n: u32, replies: &[(u32, u32)], bounds: Bounds) -> (TwoWayReport, TwoWayReport) {
        let sent = sent(n);
        let replies: Vec<Reflected> = replies.iter().map(|&(s, r)| reply(s, r)).collect();
        let mut acc = TwoWayAccumulator::new(bounds);
        sent.iter().for_each(|s| acc.push_sent(*s));
        replies.iter().for_each(|r| acc.push_reply(r));
        (acc.report(), two_way(&sent, &replies))
    }

    #[test]
    fn nothing_received_and_all_lost() {
        let (acc, batch) = run(4, &[], Bounds::DEFAULT);
        assert_eq!(acc, batch);
        assert_eq!((acc.loss.lost, acc.loss.loss_ratio), (4, 1.0));
        assert!(acc.round_trip.is_none() && acc.round_trip_pdv.is_none());
        assert_eq!(acc.round_trip_reordering.received, 0);
        assert!(!acc.one_way_synchronized);
        let (acc, batch) = run(0, &[], Bounds::DEFAULT);
        assert_eq!(acc, batch);
        assert_eq!(acc.loss.loss_ratio, 0.0);
        assert_eq!(TwoWayAccumulator::default().report(), batch);
    }

    #[test]
    fn duplicates_of_the_last_packet_and_a_reply_never_sent() {
        // 2 is the last sent; it comes back three times, once reflected again (reflector
        // number 4). 9 was never sent: counted, and only its reflector number counts.
        let replies = [(0, 0), (1, 1), (2, 2), (2, 2), (9, 3), (2, 4)];
        let (acc, batch) = run(3, &replies, Bounds::DEFAULT);
        assert_eq!(acc, batch);
        assert_eq!((acc.duplicates, acc.forward_duplicates), (2, 1));
        assert_eq!(acc.unknown_replies, 1);
        assert_eq!((acc.loss.received, acc.loss.lost), (3, 0));
        assert_eq!(acc.backward_reordering.received, 5);
        assert_eq!(acc.round_trip.unwrap().count, 3);
    }

    #[test]
    fn huge_sequence_numbers() {
        let top = u32::MAX - 2;
        let sent: Vec<Sent> = (top..=u32::MAX).map(|seq| Sent { seq, t1_ns: 0 }).collect();
        let replies: Vec<Reflected> = [
            (u32::MAX, u32::MAX),
            (top, top),
            (top + 1, top + 1),
            (u32::MAX, u32::MAX),
        ]
        .iter()
        .map(|&(s, r)| reply(s, r))
        .collect();
        let mut acc = TwoWayAccumulator::default();
        sent.iter().for_each(|s| acc.push_sent(*s));
        replies.iter().for_each(|r| acc.push_reply(r));
        let r = acc.report();
        assert_eq!(r, two_way(&sent, &replies));
        assert_eq!((r.loss.received, r.duplicates), (3, 1));
        assert_eq!(r.round_trip_ipdv.unwrap().count, 2);
        assert_eq!(r.round_trip_reordering.reordered, 2);
        assert_eq!(r.backward_reordering.reordered, 2);
        // Reflector numbers below u32::MAX - 2 never came: a huge gap, but no more lost
        // backward than lost.
        assert_eq!(r.loss.backward_lost, 0);
    }

    #[test]
    fn wrapped_sequence_numbers_are_below_the_window() {
        // Numbers are taken as they are: after u32::MAX, 0 and 1 are far below the window, so
        // their replies are late (the batch function, which forgets nothing, takes them as
        // reordered, RFC 4737 §8's "by definition").
        let seqs = [u32::MAX - 1, u32::MAX, 0, 1];
        let sent: Vec<Sent> = seqs.iter().map(|&seq| Sent { seq, t1_ns: 0 }).collect();
        let replies: Vec<Reflected> = seqs.iter().zip(0..).map(|(&s, r)| reply(s, r)).collect();
        let mut acc = TwoWayAccumulator::default();
        for (s, r) in sent.iter().zip(&replies) {
            acc.push_sent(*s);
            acc.push_reply(r);
        }
        let r = acc.report();
        assert_eq!((r.loss.sent, r.loss.received, r.late_replies), (4, 2, 2));
        let b = two_way(&sent, &replies);
        assert_eq!((b.loss.received, b.round_trip_reordering.reordered), (4, 2));
    }

    #[test]
    fn a_reply_older_than_the_loss_window_is_late() {
        let bounds = Bounds {
            loss_window: 10,
            ..Bounds::DEFAULT
        };
        let mut acc = TwoWayAccumulator::new(bounds);
        for s in sent(100) {
            acc.push_sent(s);
        }
        acc.push_reply(&reply(90, 0));
        acc.push_reply(&reply(89, 1));
        acc.push_reply(&reply(5, 2));
        let r = acc.report();
        assert_eq!((r.loss.received, r.loss.lost, r.late_replies), (1, 99, 2));
        assert_eq!(r.unknown_replies, 0);
        // A duplicate send within the window counts once; one below it counts again.
        acc.push_sent(Sent { seq: 95, t1_ns: 0 });
        acc.push_sent(Sent { seq: 3, t1_ns: 0 });
        assert_eq!(acc.report().loss.sent, 101);
    }

    #[test]
    fn replies_more_than_the_buffer_late_are_taken_in_arrival_order() {
        // The reflector got 0..6 in order; the replies came back 1..6 then 0. With a buffer of
        // 8 replies the reflector's order is restored; with 2, 0 reaches the forward
        // reordering after 1..4 and is reordered there.
        let mut replies: Vec<(u32, u32)> = (1..6).map(|i| (i, i)).collect();
        replies.push((0, 0));
        let (acc, batch) = run(6, &replies, Bounds::DEFAULT);
        assert_eq!(acc, batch);
        assert_eq!(acc.forward_reordering.reordered, 0);
        let small = Bounds {
            reorder_window: 2,
            ..Bounds::DEFAULT
        };
        let (acc, _) = run(6, &replies, small);
        assert_eq!(acc.forward_reordering.reordered, 1);
        // The round trip's extent of 0 is 5, beyond the window of 2 in-order arrivals: it is
        // given as a lower bound above the window.
        let (a, b) = (&acc.round_trip_reordering, &batch.round_trip_reordering);
        assert_eq!((a.reordered, a.n_reordered), (b.reordered, b.n_reordered));
        assert_eq!((b.max_extent, b.extents_lower_bounds), (5, 0));
        assert_eq!((a.max_extent, a.extents_lower_bounds), (3, 1));
    }

    proptest! {
        /// The batch function through the accumulator gives what it gave before.
        #[test]
        fn batch_is_what_it_was(path in paths()) {
            let (s, r) = split(&twamp_session(&path));
            prop_assert_eq!(two_way(&s, &r), reference::two_way(&s, &r));
        }

        /// Streamed within the bounds, the report is the batch function's, at any moment.
        #[test]
        fn accumulator_equals_batch_within_bounds(path in paths(), cut in 0.0f64..=1.0) {
            let events = twamp_session(&path);
            let acc = stream(&events, Bounds::DEFAULT);
            prop_assert_eq!(acc.report(), batch(&events));
            let cut = (events.len() as f64 * cut) as usize;
            prop_assert_eq!(stream(&events[..cut], Bounds::DEFAULT).report(), batch(&events[..cut]));
        }

        /// Beyond the exact values, the digests are within the documented error and every
        /// count stays exact.
        #[test]
        fn beyond_the_exact_values(path in paths(), exact in 0usize..50, digits in 1u8..=3) {
            let events = twamp_session(&path);
            let bounds = Bounds { exact_values: exact, significant_digits: digits, ..Bounds::DEFAULT };
            let got = stream(&events, bounds).report();
            let want = batch(&events);
            let eps = bounds.relative_error();
            assert_near(&got.round_trip, &want.round_trip, eps, exact);
            assert_near(&got.forward, &want.forward, eps, exact);
            assert_near(&got.backward, &want.backward, eps, exact);
            assert_near(&got.reflector_processing, &want.reflector_processing, eps, exact);
            assert_near(&got.round_trip_ipdv, &want.round_trip_ipdv, eps, exact);
            assert_near(&got.round_trip_pdv, &want.round_trip_pdv, eps, exact);
            if let (Some(g), Some(w), Some(d)) = (got.round_trip_jitter_ns, want.round_trip_jitter_ns, &want.round_trip) {
                prop_assert!((g - w).abs() <= 2.0 * eps * d.max_ns.unsigned_abs().max(d.min_ns.unsigned_abs()) as f64 + 1e-3);
            }
            prop_assert_eq!(without_digests(got), without_digests(want));
        }

        /// Tight windows that the session still fits in change nothing.
        #[test]
        fn tight_windows_that_fit(path in paths()) {
            let events = twamp_session(&Path { jitter_ns: path.jitter_ns.min(900_000), ..path });
            // Delays vary by under 1 ms, 10 packets' worth: reordering and duplicates stay
            // within 64 numbers and the replies within 64 places of the reflector's order.
            let bounds = Bounds { loss_window: 512, reorder_window: 64, ..Bounds::DEFAULT };
            prop_assert_eq!(stream(&events, bounds).report(), batch(&events));
        }
    }

    /// Ten million packets through the default bounds: the memory stops growing once each part
    /// is full (the exact values turned into histograms, the windows wrapped), and stays under
    /// the documented 5 MiB.
    #[test]
    fn ten_million_packets_in_constant_memory() {
        let mut acc = TwoWayAccumulator::default();
        let mut rng = reference::Rng::new(7);
        let mut at_start = 0;
        let mut peak = 0;
        let n = 10_000_000u32;
        let mut rseq = 0;
        let mut duplicates = 0;
        for seq in 0..n {
            acc.push_sent(Sent {
                seq,
                t1_ns: i64::from(seq) * 1000,
            });
            if rng.chance(1) {
                continue;
            }
            let mut r = reply(seq, rseq);
            rseq += 1;
            // Delays in 300 us .. 1.3 ms, both IPDV signs; one reply in 100 a duplicate.
            r.t4_ns += rng.below(1_000_000) as i64;
            r.t2_ns -= rng.below(50_000) as i64;
            acc.push_reply(&r);
            if seq % 100 == 0 {
                acc.push_reply(&r);
                duplicates += 1;
            }
            if seq == 1_000_000 {
                at_start = acc.memory_bytes();
            }
            if seq % 1_000_000 == 0 {
                peak = peak.max(acc.memory_bytes());
            }
        }
        let r = acc.report();
        assert_eq!(r.loss.sent, n as usize);
        assert_eq!(r.loss.received + r.loss.lost, r.loss.sent);
        assert_eq!(r.duplicates, duplicates);
        assert_eq!(acc.memory_bytes(), at_start);
        assert!(peak <= 5 << 20, "{peak}");
        assert!(r.round_trip.unwrap().approximation.is_some());
    }
}
