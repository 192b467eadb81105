//! One-way (OWAMP) metrics from a receiver's packet records.
//!
//! Delay is `receive - send` on two clocks, reported as it is and flagged unsynchronized
//! unless both clocks said they were. Loss is RFC 7680's: a packet the sender sent (sequence
//! numbers below its Next Seqno, less the ranges it says it skipped) that never arrived.
//! Jitter is perfSONAR's (P95 - P50 of delay); PDV and IPDV are RFC 5481's.

use std::mem::{size_of, size_of_val};

use fixedbitset::FixedBitSet;
use serde::Serialize;

use crate::Bounds;
use crate::quantiles::{Quantiles, Snapshot};
use crate::reorder::{ReorderTracker, Reordering, is_zero};
use crate::summary::Digest;
use crate::twoway::PERCENTILES;
use crate::window::{Seen, SeqMap, SeqSet};

/// One packet as the receiver recorded it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record {
    /// Sequence number.
    pub seq: u32,
    /// Send timestamp, ns.
    pub send_ns: i64,
    /// Receive timestamp, ns (`None`: lost).
    pub recv_ns: Option<i64>,
    /// Both timestamps' S bits set.
    pub synchronized: bool,
    /// Sum of the two error estimates, ns.
    pub error_ns: f64,
    /// TTL at the receiver.
    pub ttl: Option<u8>,
}

/// Loss of one direction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OneWayLoss {
    /// Packets sent (Next Seqno less skipped ones).
    pub sent: usize,
    /// Distinct packets received.
    pub received: usize,
    /// sent - received.
    pub lost: usize,
    /// lost / sent (0 when nothing was sent).
    pub loss_ratio: f64,
}

/// Everything measured in one direction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OneWayReport {
    /// Loss.
    pub loss: OneWayLoss,
    /// Receptions beyond the first of a sequence number.
    pub duplicates: usize,
    /// Received records for sequence numbers the sender did not send (at or above its Next
    /// Seqno, or skipped), ignored. Absent from JSON when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub unknown_records: usize,
    /// Records that came after their sequence number had left a [`OneWayAccumulator`]'s loss
    /// window ([`Bounds::loss_window`]): counted lost. Always 0 from [`one_way`]; absent from
    /// JSON when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub late_records: usize,
    /// One-way delay.
    pub delay: Option<Digest>,
    /// perfSONAR's jitter: P95 - P50 of the delay.
    pub jitter_ns: Option<f64>,
    /// RFC 5481 PDV: delay minus the minimum delay.
    pub pdv: Option<Digest>,
    /// RFC 5481 IPDV: delay differences of consecutive sequence numbers.
    pub ipdv: Option<Digest>,
    /// Both clocks synchronized for every packet.
    pub synchronized: bool,
    /// Largest sum of error estimates, ns.
    pub max_error_ns: f64,
    /// RFC 4737 reordering, in arrival order.
    pub reordering: Reordering,
    /// Distinct hop counts.
    pub hops: Vec<u8>,
}

/// Computes the report from the sender's Next Seqno, its skip ranges (inclusive) and the
/// receiver's records in arrival order (lost packets may be present with `recv_ns: None`).
///
/// The same as [`OneWayAccumulator::set_sender`] and then pushing `records` into a
/// [`OneWayAccumulator`] with [`Bounds::UNBOUNDED`].
pub fn one_way(next_seqno: u32, skipped: &[(u32, u32)], records: &[Record]) -> OneWayReport {
    let mut acc = OneWayAccumulator::new(Bounds::UNBOUNDED);
    acc.set_sender(next_seqno, skipped);
    for r in records {
        acc.push(r);
    }
    acc.report()
}

/// The one-way statistics accumulated record by record, in memory set by [`Bounds`] whatever
/// the number of packets.
///
/// Give the sender's Next Seqno and skip ranges when they are known
/// ([`set_sender`](Self::set_sender): before the records when fetching them, RFC 4656 §3.8; at
/// Stop-Sessions when receiving them), push each record as it arrives
/// ([`push`](Self::push)), and [`report`](Self::report) at any time. With the sender's range
/// given first, the report equals [`one_way`]'s over the same records while the input stays
/// within the bounds (see [`Bounds`] for what happens beyond them).
///
/// - Until the sender's range is given, every sequence number up to the highest seen in a
///   record (lost ones included) counts as sent, and every record counts; records pushed
///   before it that it excludes stay counted.
/// - A record whose sequence number is [`Bounds::loss_window`] or more below the highest
///   received is late ([`OneWayReport::late_records`]): its packet stays lost, as RFC 7680
///   has a packet that comes after the loss threshold.
/// - Sequence numbers are taken as they are (the sender's do not wrap within a session).
#[derive(Debug, Clone)]
pub struct OneWayAccumulator {
    bounds: Bounds,
    sender: Option<SenderRange>,
    highest: Option<u32>,
    received: SeqSet,
    received_count: usize,
    duplicates: usize,
    unknown_records: usize,
    late_records: usize,
    delay: Quantiles,
    ipdv: Quantiles,
    delays: SeqMap,
    synchronized: bool,
    max_error_ns: f64,
    reordering: ReorderTracker,
    ttls: FixedBitSet,
}

/// The packets the sender says it sent.
#[derive(Debug, Clone)]
struct SenderRange {
    next_seqno: u32,
    /// The skip ranges, merged and sorted, within 0..next_seqno.
    skipped: Vec<(u32, u32)>,
    /// How many numbers that leaves.
    sent: usize,
}

impl OneWayAccumulator {
    /// An accumulator with these bounds.
    pub fn new(bounds: Bounds) -> Self {
        let b = bounds.normalized();
        Self {
            bounds: b,
            sender: None,
            highest: None,
            received: SeqSet::new(b.loss_window),
            received_count: 0,
            duplicates: 0,
            unknown_records: 0,
            late_records: 0,
            delay: Quantiles::new(&b, true),
            ipdv: Quantiles::new(&b, false),
            delays: SeqMap::new(b.reorder_window),
            synchronized: true,
            max_error_ns: 0.0,
            reordering: ReorderTracker::new(&b),
            ttls: FixedBitSet::with_capacity(256),
        }
    }

    /// The bounds it was made with (each field in its valid range).
    pub fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    /// The sender's Next Seqno and skip ranges (inclusive; RFC 4656 §3.8): the packets sent are
    /// the sequence numbers below Next Seqno outside the ranges, and records for others are
    /// ignored from now on ([`OneWayReport::unknown_records`]). The ranges are kept (merged),
    /// so their number, bounded where they are parsed, adds to the memory.
    pub fn set_sender(&mut self, next_seqno: u32, skipped: &[(u32, u32)]) {
        let mut ranges: Vec<(u32, u32)> = skipped
            .iter()
            .filter(|&&(a, b)| a <= b && a < next_seqno)
            .map(|&(a, b)| (a, b.min(next_seqno - 1)))
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match merged.last_mut() {
                Some(last) if u64::from(a) <= u64::from(last.1) + 1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        let skipped: usize = merged.iter().map(|&(a, b)| (b - a) as usize + 1).sum();
        self.sender = Some(SenderRange {
            next_seqno,
            sent: next_seqno as usize - skipped,
            skipped: merged,
        });
    }

    fn sent_by_sender(&self, seq: u32) -> bool {
        let Some(s) = &self.sender else {
            return true;
        };
        let i = s.skipped.partition_point(|&(_, b)| b < seq);
        seq < s.next_seqno && s.skipped.get(i).is_none_or(|&(a, _)| seq < a)
    }

    /// A record, in arrival order.
    pub fn push(&mut self, r: &Record) {
        self.highest = self.highest.max(Some(r.seq));
        let Some(recv_ns) = r.recv_ns else {
            return;
        };
        if !self.sent_by_sender(r.seq) {
            self.unknown_records += 1;
            return;
        }
        match self.received.insert(r.seq) {
            Seen::Again => {
                self.duplicates += 1;
                return;
            }
            Seen::Old => {
                self.late_records += 1;
                return;
            }
            Seen::New => {}
        }
        self.received_count += 1;
        let delay = recv_ns.saturating_sub(r.send_ns);
        self.delay.push(delay);
        crate::twoway::ipdv(&mut self.delays, &mut self.ipdv, r.seq, delay);
        self.synchronized &= r.synchronized;
        self.max_error_ns = self.max_error_ns.max(r.error_ns);
        self.reordering.push(r.seq);
        if let Some(t) = r.ttl {
            self.ttls.insert(usize::from(t));
        }
    }

    /// The report so far. Its cost is bounded by the bounds, not the number of packets: it
    /// sorts copies of the exact values (at most [`Bounds::exact_values`] per digest) or walks
    /// the histograms.
    pub fn report(&self) -> OneWayReport {
        let sent = match &self.sender {
            Some(s) => s.sent,
            None => self.highest.map_or(0, |h| h as usize + 1),
        };
        let received = self.received_count;
        let lost = sent.saturating_sub(received);
        let delay = self.delay.snapshot();
        let digest = |s: Snapshot<'_>| s.digest(&PERCENTILES);
        OneWayReport {
            loss: OneWayLoss {
                sent,
                received,
                lost,
                loss_ratio: if sent == 0 {
                    0.0
                } else {
                    lost as f64 / sent as f64
                },
            },
            duplicates: self.duplicates,
            unknown_records: self.unknown_records,
            late_records: self.late_records,
            jitter_ns: delay.as_ref().map(Snapshot::jitter),
            pdv: self.delay.pdv_snapshot().map(digest),
            delay: delay.map(digest),
            ipdv: self.ipdv.snapshot().map(digest),
            synchronized: received > 0 && self.synchronized,
            max_error_ns: self.max_error_ns,
            reordering: self.reordering.report(),
            hops: crate::hop_counts(self.ttls.ones().map(crate::twoway::ttl)),
        }
    }

    /// Bytes of memory it holds, its own size included. It stops growing once each part has
    /// reached its bound (but for the sender's skip ranges); with [`Bounds::DEFAULT`], under
    /// 2 MiB.
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>()
            + self
                .sender
                .as_ref()
                .map_or(0, |s| s.skipped.capacity() * size_of::<(u32, u32)>())
            + self.received.memory_bytes()
            + self.delay.memory_bytes()
            + self.ipdv.memory_bytes()
            + self.delays.memory_bytes()
            + self.reordering.memory_bytes()
            + size_of_val(self.ttls.as_slice())
    }
}

impl Default for OneWayAccumulator {
    fn default() -> Self {
        Self::new(Bounds::DEFAULT)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rec(seq: u32, delay_us: Option<i64>) -> Record {
        let send = i64::from(seq) * 10_000_000;
        Record {
            seq,
            send_ns: send,
            recv_ns: delay_us.map(|d| send + d * 1000),
            synchronized: true,
            error_ns: 100.0,
            ttl: Some(255),
        }
    }

    #[test]
    fn hand_computed() {
        // Delays 100, 300, 200 us; packet 3 lost (recorded as lost), 4 arrives twice.
        let r = one_way(
            5,
            &[],
            &[
                rec(0, Some(100)),
                rec(1, Some(300)),
                rec(2, Some(200)),
                rec(3, None),
                rec(4, Some(150)),
                rec(4, Some(150)),
            ],
        );
        assert_eq!(
            r.loss,
            OneWayLoss {
                sent: 5,
                received: 4,
                lost: 1,
                loss_ratio: 0.2
            }
        );
        assert_eq!(r.duplicates, 1);
        let d = r.delay.unwrap();
        assert_eq!((d.min_ns, d.max_ns), (100_000, 300_000));
        assert_eq!(d.median_ns, 175_000.0);
        // IPDV over consecutive pairs (0,1) and (1,2): +200 us, -100 us.
        let i = r.ipdv.unwrap();
        assert_eq!((i.min_ns, i.max_ns, i.count), (-100_000, 200_000, 2));
        assert_eq!(r.pdv.unwrap().max_ns, 200_000);
        assert!(r.synchronized);
        assert_eq!(r.hops, vec![0]);
    }

    #[test]
    fn skipped_packets_are_not_lost() {
        // The sender skipped 2..=3 (RFC 4656 §3.8): those are neither sent nor lost.
        let r = one_way(
            6,
            &[(2, 3)],
            &[rec(0, Some(1)), rec(1, Some(1)), rec(4, Some(1))],
        );
        assert_eq!((r.loss.sent, r.loss.lost), (4, 1));
    }

    #[test]
    fn all_lost_and_nothing_sent() {
        let r = one_way(3, &[], &[]);
        assert_eq!(r.loss.loss_ratio, 1.0);
        assert!(r.delay.is_none() && r.jitter_ns.is_none());
        assert_eq!(one_way(0, &[], &[]).loss.loss_ratio, 0.0);
    }

    proptest! {
        #[test]
        fn loss_adds_up(keep in prop::collection::vec(any::<bool>(), 0..80)) {
            let n = keep.len() as u32;
            let recs: Vec<Record> = keep.iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| rec(i as u32, Some(5))).collect();
            let r = one_way(n, &[], &recs);
            prop_assert_eq!(r.loss.received + r.loss.lost, r.loss.sent);
            prop_assert!((0.0..=1.0).contains(&r.loss.loss_ratio));
        }
    }

    use crate::reference::{self, Path, assert_near, owamp_session, paths};

    fn stream(next: u32, skipped: &[(u32, u32)], records: &[Record], b: Bounds) -> OneWayReport {
        let mut acc = OneWayAccumulator::new(b);
        acc.set_sender(next, skipped);
        records.iter().for_each(|r| acc.push(r));
        acc.report()
    }

    fn without_digests(mut r: OneWayReport) -> OneWayReport {
        r.delay = None;
        r.jitter_ns = None;
        r.pdv = None;
        r.ipdv = None;
        r
    }

    #[test]
    fn nothing_received_and_all_lost() {
        let lost: Vec<Record> = (0..4).map(|s| rec(s, None)).collect();
        let r = stream(4, &[], &lost, Bounds::DEFAULT);
        assert_eq!(r, one_way(4, &[], &lost));
        assert_eq!((r.loss.lost, r.loss.loss_ratio), (4, 1.0));
        assert!(r.delay.is_none() && r.pdv.is_none() && r.ipdv.is_none());
        assert!(!r.synchronized);
        assert_eq!(OneWayAccumulator::default().report(), one_way(0, &[], &[]));
    }

    #[test]
    fn huge_sequence_numbers_and_duplicates_of_the_last() {
        let next = u32::MAX;
        let recs: Vec<Record> = [u32::MAX - 3, u32::MAX - 1, u32::MAX - 2, u32::MAX - 1]
            .iter()
            .map(|&s| Record {
                seq: s,
                send_ns: 0,
                recv_ns: Some(i64::from(s % 7)),
                synchronized: true,
                error_ns: 1.0,
                ttl: Some(60),
            })
            .collect();
        let r = stream(next, &[(0, u32::MAX - 4)], &recs, Bounds::DEFAULT);
        assert_eq!(r, one_way(next, &[(0, u32::MAX - 4)], &recs));
        assert_eq!((r.loss.sent, r.loss.received, r.duplicates), (3, 3, 1));
        assert_eq!(r.ipdv.unwrap().count, 2);
        assert_eq!(r.reordering.reordered, 1);
        // Without the sender's word, everything up to the highest number counts as sent.
        let mut acc = OneWayAccumulator::default();
        acc.push(&Record {
            seq: u32::MAX,
            ..recs[0]
        });
        assert_eq!(acc.report().loss.sent, 1 << 32);
    }

    #[test]
    fn records_the_sender_did_not_send() {
        // 7 is at or above Next Seqno, 2 was skipped: both ignored and counted.
        let recs = [
            rec(0, Some(1)),
            rec(7, Some(1)),
            rec(2, Some(1)),
            rec(3, None),
        ];
        let r = stream(5, &[(2, 2)], &recs, Bounds::DEFAULT);
        assert_eq!(r, one_way(5, &[(2, 2)], &recs));
        assert_eq!((r.unknown_records, r.loss.sent, r.loss.received), (2, 4, 1));
        // Given late, the sender's range applies from then on; what came before stays.
        let mut acc = OneWayAccumulator::default();
        recs.iter().for_each(|x| acc.push(x));
        assert_eq!(acc.report().loss.sent, 8);
        assert_eq!(acc.report().loss.received, 3);
        acc.set_sender(5, &[(2, 2)]);
        acc.push(&rec(9, Some(1)));
        let r = acc.report();
        assert_eq!((r.loss.sent, r.loss.received, r.unknown_records), (4, 3, 1));
    }

    #[test]
    fn late_and_wrapped_records() {
        let bounds = Bounds {
            loss_window: 10,
            ..Bounds::DEFAULT
        };
        let recs = [rec(50, Some(1)), rec(41, Some(1)), rec(40, Some(1))];
        let r = stream(60, &[], &recs, bounds);
        assert_eq!((r.loss.received, r.late_records, r.duplicates), (2, 1, 0));
        assert_eq!(r.loss.lost, 58);
        // Numbers are taken as they are: 0 after u32::MAX - 1 is far below the window.
        let mut acc = OneWayAccumulator::default();
        acc.push(&rec(u32::MAX - 1, Some(1)));
        acc.push(&rec(0, Some(1)));
        assert_eq!(acc.report().late_records, 1);
    }

    proptest! {
        /// The batch function through the accumulator gives what it gave before.
        #[test]
        fn batch_is_what_it_was(path in paths()) {
            // The old function counts the packets sent one by one from 0.
            let path = Path { first_seq: path.first_seq % 1000, ..path };
            let (next, skipped, recs) = owamp_session(&path);
            prop_assert_eq!(one_way(next, &skipped, &recs), reference::one_way(next, &skipped, &recs));
        }

        /// Streamed within the bounds, the report is the batch function's, at any moment.
        #[test]
        fn accumulator_equals_batch_within_bounds(path in paths(), cut in 0.0f64..=1.0) {
            let (next, skipped, recs) = owamp_session(&path);
            prop_assert_eq!(stream(next, &skipped, &recs, Bounds::DEFAULT), one_way(next, &skipped, &recs));
            let cut = (recs.len() as f64 * cut) as usize;
            prop_assert_eq!(
                stream(next, &skipped, &recs[..cut], Bounds::DEFAULT),
                one_way(next, &skipped, &recs[..cut])
            );
        }

        /// Beyond the exact values, the digests are within the documented error and every
        /// count stays exact.
        #[test]
        fn beyond_the_exact_values(path in paths(), exact in 0usize..50, digits in 1u8..=3) {
            let (next, skipped, recs) = owamp_session(&path);
            let bounds = Bounds { exact_values: exact, significant_digits: digits, ..Bounds::DEFAULT };
            let got = stream(next, &skipped, &recs, bounds);
            let want = one_way(next, &skipped, &recs);
            let eps = bounds.relative_error();
            assert_near(&got.delay, &want.delay, eps, exact);
            assert_near(&got.pdv, &want.pdv, eps, exact);
            assert_near(&got.ipdv, &want.ipdv, eps, exact);
            if let (Some(g), Some(w), Some(d)) = (got.jitter_ns, want.jitter_ns, &want.delay) {
                prop_assert!((g - w).abs() <= 2.0 * eps * d.max_ns.unsigned_abs().max(d.min_ns.unsigned_abs()) as f64 + 1e-3);
            }
            prop_assert_eq!(without_digests(got), without_digests(want));
        }

        /// Tight windows that the session still fits in change nothing.
        #[test]
        fn tight_windows_that_fit(path in paths()) {
            let path = Path { jitter_ns: path.jitter_ns.min(900_000), ..path };
            let (next, skipped, recs) = owamp_session(&path);
            let bounds = Bounds { loss_window: 512, reorder_window: 64, ..Bounds::DEFAULT };
            prop_assert_eq!(stream(next, &skipped, &recs, bounds), one_way(next, &skipped, &recs));
        }
    }

    /// Ten million records through the default bounds: the memory stops growing once each part
    /// is full, and stays under the documented 2 MiB.
    #[test]
    fn ten_million_records_in_constant_memory() {
        let mut acc = OneWayAccumulator::default();
        acc.set_sender(10_000_000, &[(5, 9)]);
        let mut rng = reference::Rng::new(11);
        let (mut at_start, mut peak, mut lost, mut duplicates) = (0, 0, 0, 0);
        for seq in 0..10_000_000u32 {
            if (5..=9).contains(&seq) {
                continue;
            }
            let delay = 1_000_000 + rng.below(2_000_000) as i64;
            let r = Record {
                seq,
                send_ns: i64::from(seq) * 1000,
                recv_ns: (!rng.chance(1)).then(|| i64::from(seq) * 1000 + delay),
                synchronized: true,
                error_ns: 10.0,
                ttl: Some(250),
            };
            acc.push(&r);
            if r.recv_ns.is_none() {
                lost += 1;
            } else if seq % 1000 == 0 {
                acc.push(&r);
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
        assert_eq!((r.loss.sent, r.loss.lost), (9_999_995, lost));
        assert_eq!(r.duplicates, duplicates);
        assert_eq!(acc.memory_bytes(), at_start);
        assert!(peak <= 2 << 20, "{peak}");
        assert!(r.delay.unwrap().approximation.is_some());
    }
}
