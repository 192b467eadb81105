//! Reordering metrics of RFC 4737 over the sequence numbers of packets in arrival order
//! (duplicates removed: only each packet's first arrival counts).

use serde::Serialize;

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
    /// Extents of all reordered packets, in arrival order.
    pub extents: Vec<usize>,
    /// n-reordering (§5): entry n-1 counts packets that are n-reordered, for n = 1..=3.
    pub n_reordered: [usize; 3],
}

/// Computes the RFC 4737 metrics of `arrivals` (sequence numbers in arrival order).
pub fn reordering(arrivals: impl IntoIterator<Item = u32>) -> Reordering {
    let mut seen = std::collections::HashSet::new();
    let s: Vec<u32> = arrivals.into_iter().filter(|x| seen.insert(*x)).collect();
    let mut next_exp: Option<u64> = None;
    let mut reordered = 0;
    let mut extents = Vec::new();
    let mut n_reordered = [0usize; 3];
    for (k, &sk) in s.iter().enumerate() {
        let v = u64::from(sk);
        match next_exp {
            Some(ne) if v < ne => {
                reordered += 1;
                // §4.2.1: extent = k - j for the earliest j < k with s[j] > s[k].
                let j = s[..k].iter().position(|&x| x > sk).unwrap_or(k);
                extents.push(k - j);
                // §5: n-reordered when the n packets just before it all have larger numbers.
                let run = s[..k].iter().rev().take_while(|&&x| x > sk).count();
                for (n, slot) in n_reordered.iter_mut().enumerate() {
                    if run > n {
                        *slot += 1;
                    }
                }
            }
            _ => next_exp = Some(v + 1),
        }
    }
    Reordering {
        received: s.len(),
        reordered,
        reordered_ratio: if s.is_empty() {
            0.0
        } else {
            reordered as f64 / s.len() as f64
        },
        max_extent: extents.iter().copied().max().unwrap_or(0),
        extents,
        n_reordered,
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
}
