//! One-way (OWAMP) metrics from a receiver's packet records.
//!
//! Delay is `receive - send` on two clocks, reported as it is and flagged unsynchronized
//! unless both clocks said they were. Loss is RFC 7680's: a packet the sender sent (sequence
//! numbers below its Next Seqno, less the ranges it says it skipped) that never arrived.
//! Jitter is perfSONAR's (P95 - P50 of delay); PDV and IPDV are RFC 5481's.

use std::collections::HashSet;

use serde::Serialize;

use crate::reorder::{Reordering, reordering};
use crate::summary::{Digest, Summary};
use crate::twoway::PERCENTILES;

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
pub fn one_way(next_seqno: u32, skipped: &[(u32, u32)], records: &[Record]) -> OneWayReport {
    let is_skipped = |s: u32| skipped.iter().any(|&(a, b)| (a..=b).contains(&s));
    let sent = (0..next_seqno).filter(|&s| !is_skipped(s)).count();
    let mut seen = HashSet::new();
    let mut first = Vec::new();
    let mut duplicates = 0;
    for r in records
        .iter()
        .filter(|r| r.recv_ns.is_some() && r.seq < next_seqno && !is_skipped(r.seq))
    {
        if seen.insert(r.seq) {
            first.push(r);
        } else {
            duplicates += 1;
        }
    }
    let received = first.len();
    let lost = sent.saturating_sub(received);
    let delays: Vec<i64> = first
        .iter()
        .filter_map(|r| r.recv_ns.map(|t| t - r.send_ns))
        .collect();
    let summary = Summary::new(delays.clone());
    let mut by_seq: Vec<(u32, i64)> = first
        .iter()
        .map(|r| r.seq)
        .zip(delays.iter().copied())
        .collect();
    by_seq.sort_unstable_by_key(|x| x.0);
    let ipdv: Vec<i64> = by_seq
        .windows(2)
        .filter(|w| w[1].0 == w[0].0 + 1)
        .map(|w| w[1].1 - w[0].1)
        .collect();
    let digest = |v: Vec<i64>| Summary::new(v).map(|s| s.digest(&PERCENTILES));
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
        duplicates,
        jitter_ns: summary
            .as_ref()
            .map(|s| s.percentile(95.0) - s.percentile(50.0)),
        pdv: summary
            .as_ref()
            .and_then(|s| digest(delays.iter().map(|d| d - s.min()).collect())),
        delay: summary.as_ref().map(|s| s.digest(&PERCENTILES)),
        ipdv: digest(ipdv),
        synchronized: !first.is_empty() && first.iter().all(|r| r.synchronized),
        max_error_ns: first.iter().map(|r| r.error_ns).fold(0.0, f64::max),
        reordering: reordering(first.iter().map(|r| r.seq)),
        hops: crate::hop_counts(first.iter().filter_map(|r| r.ttl)),
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
}
