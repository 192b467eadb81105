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

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::reorder::{Reordering, reordering};
use crate::summary::{Digest, Summary};

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
pub fn two_way(sent: &[Sent], replies: &[Reflected]) -> TwoWayReport {
    let sent_seqs: HashSet<u32> = sent.iter().map(|s| s.seq).collect();
    // First arrival per sender sequence number; replies for packets never sent are ignored.
    let mut first: HashMap<u32, &Reflected> = HashMap::new();
    let mut order = Vec::new();
    let mut duplicates = 0;
    for r in replies.iter().filter(|r| sent_seqs.contains(&r.sender_seq)) {
        match first.entry(r.sender_seq) {
            std::collections::hash_map::Entry::Occupied(_) => duplicates += 1,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(r);
                order.push(r);
            }
        }
    }
    let refl_per_seq = {
        let mut m: HashMap<u32, HashSet<u32>> = HashMap::new();
        for r in replies.iter().filter(|r| sent_seqs.contains(&r.sender_seq)) {
            m.entry(r.sender_seq).or_default().insert(r.reflector_seq);
        }
        m
    };
    let forward_duplicates = refl_per_seq
        .values()
        .map(|s| s.len().saturating_sub(1))
        .sum();

    let received = first.len();
    let lost = sent_seqs.len().saturating_sub(received);
    let refl: HashSet<u32> = replies.iter().map(|r| r.reflector_seq).collect();
    let backward_lost = refl
        .iter()
        .max()
        .map(|&m| (m as usize + 1).saturating_sub(refl.len()))
        .unwrap_or(0)
        .min(lost);
    let loss = Loss {
        sent: sent_seqs.len(),
        received,
        lost,
        loss_ratio: if sent_seqs.is_empty() {
            0.0
        } else {
            lost as f64 / sent_seqs.len() as f64
        },
        forward_lost: lost - backward_lost,
        backward_lost,
    };

    let rtt: Vec<i64> = order
        .iter()
        .map(|r| (r.t4_ns - r.t1_ns) - (r.t3_ns - r.t2_ns))
        .collect();
    let rtt_sum = Summary::new(rtt.clone());
    let mut by_seq: Vec<(u32, i64)> = order
        .iter()
        .map(|r| r.sender_seq)
        .zip(rtt.iter().copied())
        .collect();
    by_seq.sort_unstable_by_key(|x| x.0);
    let ipdv: Vec<i64> = by_seq
        .windows(2)
        .filter(|w| w[1].0 == w[0].0 + 1)
        .map(|w| w[1].1 - w[0].1)
        .collect();
    let pdv = rtt_sum
        .as_ref()
        .map(|s| rtt.iter().map(|d| d - s.min()).collect::<Vec<_>>());
    let synchronized = !order.is_empty() && order.iter().all(|r| r.synchronized);
    let one_way_error_ns = order
        .iter()
        .map(|r| r.forward_error_ns.max(r.backward_error_ns))
        .fold(0.0, f64::max);

    let mut fwd_order: Vec<&Reflected> = order.clone();
    fwd_order.sort_by_key(|r| r.reflector_seq);
    let digest = |v: Vec<i64>| Summary::new(v).map(|s| s.digest(&PERCENTILES));

    TwoWayReport {
        loss,
        duplicates,
        forward_duplicates,
        round_trip_jitter_ns: rtt_sum
            .as_ref()
            .map(|s| s.percentile(95.0) - s.percentile(50.0)),
        round_trip: rtt_sum.as_ref().map(|s| s.digest(&PERCENTILES)),
        forward: digest(order.iter().map(|r| r.t2_ns - r.t1_ns).collect()),
        backward: digest(order.iter().map(|r| r.t4_ns - r.t3_ns).collect()),
        one_way_synchronized: synchronized,
        one_way_error_ns,
        reflector_processing: digest(order.iter().map(|r| r.t3_ns - r.t2_ns).collect()),
        round_trip_ipdv: digest(ipdv),
        round_trip_pdv: pdv.and_then(digest),
        forward_reordering: reordering(fwd_order.iter().map(|r| r.sender_seq)),
        backward_reordering: reordering(replies.iter().map(|r| r.reflector_seq)),
        round_trip_reordering: reordering(order.iter().map(|r| r.sender_seq)),
        forward_hops: crate::hop_counts(order.iter().filter_map(|r| r.forward_ttl)),
        backward_hops: crate::hop_counts(order.iter().filter_map(|r| r.backward_ttl)),
    }
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
}
