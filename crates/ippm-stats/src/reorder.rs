//! Reordering metrics of RFC 4737 over the sequence numbers of packets in arrival order
//! (duplicates removed: only each packet's first arrival counts).

use std::collections::VecDeque;
use std::mem::size_of;

use serde::Serialize;

use crate::Bounds;

/// RFC 4737 reordering of one stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reordering {
    /// Distinct packets that arrived.
    pub received: usize,
    /// Packets reordered (§4.1: sequence number below NextExp at arrival).
    pub reordered: usize,
    /// reordered / received (§4.1.3); 0 when nothing arrived.
    pub reordered_ratio: f64,
    /// Largest reordering extent (§4.2.1: how many packets earlier a reordered packet should
    /// have arrived).
    pub max_extent: usize,
    /// Extents of the reordered packets, in arrival order: all of them from the batch
    /// functions, the first [`Bounds::max_extents`] from an accumulator (`reordered` counts
    /// them all).
    pub extents: Vec<usize>,
    /// n-reordering (§5): entry n-1 counts packets that are n-reordered, for n = 1..=3.
    pub n_reordered: [usize; 3],
    /// Extents (among all, listed or not) whose reordering discontinuity had left an
    /// accumulator's history of [`Bounds::reorder_window`] in-order arrivals: each is a lower
    /// bound above the window (RFC 4737 §8: "expressed as greater than the window length"),
    /// and so may be `max_extent`. Always 0 from the batch functions; absent from JSON when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub extents_lower_bounds: usize,
}

pub(crate) fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Computes the RFC 4737 metrics of `arrivals` (sequence numbers in arrival order).
pub fn reordering(arrivals: impl IntoIterator<Item = u32>) -> Reordering {
    let mut seen = std::collections::HashSet::new();
    let mut t = ReorderTracker::new(&Bounds::UNBOUNDED);
    for s in arrivals.into_iter().filter(|x| seen.insert(*x)) {
        t.push(s);
    }
    t.report()
}

/// The RFC 4737 metrics accumulated over distinct arrivals (the caller drops duplicates), in
/// O(1) state but for a bounded history of in-order arrivals for the extents.
///
/// The extent of a reordered packet s\[k\] is k - j for the earliest j with s\[j\] > s\[k\]
/// (§4.2.3). Such an s\[j\] is larger than everything before it, so it set NextExp: it is an
/// in-order arrival. In-order arrivals increase, so the earliest larger one is found by binary
/// search among them; only the last `reorder_window` are kept. When s\[k\] is below the last
/// one dropped, its discontinuity was dropped too, at or before that one: k minus that one's
/// position is reported, a lower bound (above the window, since the window was full).
#[derive(Debug, Clone)]
pub(crate) struct ReorderTracker {
    history: usize,
    max_extents: usize,
    received: usize,
    next_exp: Option<u64>,
    reordered: usize,
    max_extent: usize,
    extents: Vec<usize>,
    extents_lower_bounds: usize,
    n_reordered: [usize; 3],
    /// The last three arrivals, the latest first.
    last: [u32; 3],
    /// In-order arrivals: (sequence number, arrival position), increasing.
    in_order: VecDeque<(u32, usize)>,
    /// The latest in-order arrival dropped from `in_order`.
    dropped: Option<(u32, usize)>,
}

impl ReorderTracker {
    pub(crate) fn new(bounds: &Bounds) -> Self {
        let b = bounds.normalized();
        Self {
            history: b.reorder_window,
            max_extents: b.max_extents,
            received: 0,
            next_exp: None,
            reordered: 0,
            max_extent: 0,
            extents: Vec::new(),
            extents_lower_bounds: 0,
            n_reordered: [0; 3],
            last: [0; 3],
            in_order: VecDeque::new(),
            dropped: None,
        }
    }

    /// One arrival, not a duplicate.
    pub(crate) fn push(&mut self, seq: u32) {
        let k = self.received;
        let v = u64::from(seq);
        match self.next_exp {
            Some(ne) if v < ne => {
                self.reordered += 1;
                let extent = match self.dropped {
                    Some((d, j)) if seq < d => {
                        self.extents_lower_bounds += 1;
                        k - j
                    }
                    _ => {
                        // The latest in-order arrival is NextExp - 1 > seq, and it is kept.
                        let i = self.in_order.partition_point(|&(x, _)| x <= seq);
                        k - self.in_order.get(i).map_or(k, |&(_, j)| j)
                    }
                };
                self.max_extent = self.max_extent.max(extent);
                if self.extents.len() < self.max_extents {
                    self.extents.push(extent);
                }
                // §5: n-reordered when the n packets just before it all have larger numbers.
                let run = self.last[..k.min(3)]
                    .iter()
                    .take_while(|&&x| x > seq)
                    .count();
                for (n, slot) in self.n_reordered.iter_mut().enumerate() {
                    if run > n {
                        *slot += 1;
                    }
                }
            }
            _ => {
                self.next_exp = Some(v + 1);
                if self.in_order.len() == self.history {
                    self.dropped = self.in_order.pop_front();
                }
                self.in_order.push_back((seq, k));
            }
        }
        self.last = [seq, self.last[0], self.last[1]];
        self.received += 1;
    }

    pub(crate) fn report(&self) -> Reordering {
        Reordering {
            received: self.received,
            reordered: self.reordered,
            reordered_ratio: if self.received == 0 {
                0.0
            } else {
                self.reordered as f64 / self.received as f64
            },
            max_extent: self.max_extent,
            extents: self.extents.clone(),
            n_reordered: self.n_reordered,
            extents_lower_bounds: self.extents_lower_bounds,
        }
    }

    /// Heap bytes held.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.in_order.capacity() * size_of::<(u32, usize)>()
            + self.extents.capacity() * size_of::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn in_order_and_empty() {
        let r = reordering([0, 1, 2, 3]);
        assert_eq!((r.reordered, r.max_extent, r.reordered_ratio), (0, 0, 0.0));
        let r = reordering([]);
        assert_eq!((r.received, r.reordered_ratio), (0, 0.0));
        // Gaps (losses) are not reordering.
        assert_eq!(reordering([0, 2, 5]).reordered, 0);
    }

    #[test]
    fn rfc4737_examples() {
        // §4.2.1-style: 1 2 4 5 3 6: packet 3 arrives 2 places late; only it is reordered.
        let r = reordering([1, 2, 4, 5, 3, 6]);
        assert_eq!(r.reordered, 1);
        assert_eq!(r.extents, vec![2]);
        assert_eq!(r.n_reordered, [1, 1, 0]);
        // 1 3 2 4: one packet, extent 1, 1-reordered only.
        let r = reordering([1, 3, 2, 4]);
        assert_eq!(
            (r.reordered, r.max_extent, r.n_reordered),
            (1, 1, [1, 0, 0])
        );
        // 4 1 2 3: 1, 2 and 3 are all reordered (below NextExp = 5); extents 1, 2, 3; only the
        // first has a larger packet immediately before it.
        let r = reordering([4, 1, 2, 3]);
        assert_eq!(r.reordered, 3);
        assert_eq!(r.extents, vec![1, 2, 3]);
        assert_eq!(r.n_reordered, [1, 0, 0]);
        assert!((r.reordered_ratio - 0.75).abs() < 1e-12);
        // Duplicates count once, at their first arrival.
        assert_eq!(reordering([1, 2, 2, 3]).reordered, 0);
    }

    proptest! {
        #[test]
        fn ratio_in_range(v in prop::collection::vec(0u32..50, 0..100)) {
            let r = reordering(v);
            prop_assert!((0.0..=1.0).contains(&r.reordered_ratio));
            prop_assert!(r.reordered <= r.received);
            prop_assert!(r.n_reordered[0] <= r.reordered && r.n_reordered[1] <= r.n_reordered[0]);
        }
    }

    use crate::reference;

    fn tracker(history: usize, max_extents: usize, arrivals: &[u32]) -> Reordering {
        let mut t = ReorderTracker::new(&Bounds {
            reorder_window: history,
            max_extents,
            ..Bounds::DEFAULT
        });
        arrivals.iter().for_each(|&s| t.push(s));
        t.report()
    }

    #[test]
    fn extents_beyond_the_history_are_lower_bounds() {
        // 0 should have come 4 places earlier; with 2 in-order arrivals kept (12 and 13), its
        // discontinuity (10) is gone and the extent is given as 3, above the window.
        let r = tracker(2, 10, &[10, 11, 12, 13, 0]);
        assert_eq!((r.extents.clone(), r.extents_lower_bounds), (vec![3], 1));
        assert_eq!(r.n_reordered, [1, 1, 1]);
        assert_eq!(reordering([10, 11, 12, 13, 0]).extents, vec![4]);
        // 12 is above the last dropped (11): exact.
        let r = tracker(2, 10, &[10, 11, 13, 14, 12]);
        assert_eq!((r.extents.clone(), r.extents_lower_bounds), (vec![2], 0));
    }

    #[test]
    fn extents_listed_up_to_the_bound() {
        let r = tracker(100, 2, &[4, 1, 2, 3]);
        assert_eq!((r.reordered, r.max_extent), (3, 3));
        assert_eq!(r.extents, vec![1, 2]);
    }

    #[test]
    fn huge_and_wrapped_numbers() {
        let r = reordering([u32::MAX - 1, u32::MAX, 0, 1]);
        // RFC 4737 §8: NextExp cannot decrease, so what comes after a wrap is reordered.
        assert_eq!((r.reordered, r.extents.clone()), (2, vec![2, 3]));
        assert_eq!(reordering([u32::MAX, u32::MAX]).received, 1);
    }

    proptest! {
        /// The batch function through the tracker gives what it gave before, and a history as
        /// long as the input forgets nothing.
        #[test]
        fn as_before(v in prop::collection::vec(prop_oneof![0u32..50, Just(u32::MAX), any::<u32>()], 0..150)) {
            let r = reordering(v.clone());
            prop_assert_eq!(&r, &reference::reordering(v.clone()));
            let mut seen = std::collections::HashSet::new();
            let distinct: Vec<u32> = v.into_iter().filter(|x| seen.insert(*x)).collect();
            prop_assert_eq!(tracker(distinct.len(), usize::MAX, &distinct), r.clone());
            // Any history: the counts stay, and every extent up to the history is exact.
            let short = tracker(4, usize::MAX, &distinct);
            prop_assert_eq!((short.received, short.reordered, short.n_reordered), (r.received, r.reordered, r.n_reordered));
            for (a, b) in short.extents.iter().zip(&r.extents) {
                let ok = if *b <= 4 { a == b } else { a <= b && *a > 4 };
                prop_assert!(ok, "{} for {}", a, b);
            }
        }
    }
}
