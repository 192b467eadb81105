//! Sequence numbers remembered within a sliding window: a bit set, or a hash set when the window
//! covers every number (the batch functions).

use std::collections::{HashMap, HashSet};
use std::mem::{size_of, size_of_val};

use fixedbitset::FixedBitSet;

/// Windows at least this wide cover all of a u32's numbers, so they are kept in hash sets.
const WHOLE_RANGE: u64 = 1 << 32;

/// What inserting a sequence number found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Not seen before.
    New,
    /// Seen before.
    Again,
    /// Below the window: whether it was seen is forgotten.
    Old,
}

/// A set of sequence numbers that remembers the `width` numbers up to the highest one inserted.
#[derive(Debug, Clone)]
pub(crate) enum SeqSet {
    /// Bit `seq % width` stands for `seq` while `seq` is within the window.
    Window {
        bits: FixedBitSet,
        width: u64,
        highest: Option<u64>,
    },
    All(HashSet<u32>),
}

impl SeqSet {
    pub(crate) fn new(width: usize) -> Self {
        let width = (width as u64).max(1);
        if width >= WHOLE_RANGE {
            Self::All(HashSet::new())
        } else {
            Self::Window {
                bits: FixedBitSet::with_capacity(width as usize),
                width,
                highest: None,
            }
        }
    }

    /// Inserts `seq`; a number above the highest slides the window up to it.
    pub(crate) fn insert(&mut self, seq: u32) -> Seen {
        match self {
            Self::All(set) => {
                if set.insert(seq) {
                    Seen::New
                } else {
                    Seen::Again
                }
            }
            Self::Window {
                bits,
                width,
                highest,
            } => {
                let s = u64::from(seq);
                match *highest {
                    Some(h) if s > h => slide(bits, *width, h, s),
                    Some(h) if s + *width <= h => return Seen::Old,
                    Some(_) => {}
                    None => {}
                }
                *highest = Some(highest.map_or(s, |h| h.max(s)));
                if bits.put((s % *width) as usize) {
                    Seen::Again
                } else {
                    Seen::New
                }
            }
        }
    }

    /// Whether `seq` was inserted; `None` when it is below the window.
    pub(crate) fn contains(&self, seq: u32) -> Option<bool> {
        match self {
            Self::All(set) => Some(set.contains(&seq)),
            Self::Window {
                bits,
                width,
                highest,
            } => {
                let s = u64::from(seq);
                match *highest {
                    None => Some(false),
                    Some(h) if s > h => Some(false),
                    Some(h) if s + *width <= h => None,
                    Some(_) => Some(bits.contains((s % *width) as usize)),
                }
            }
        }
    }

    /// Heap bytes held.
    pub(crate) fn memory_bytes(&self) -> usize {
        match self {
            Self::All(set) => set.capacity() * (size_of::<u32>() + 1),
            Self::Window { bits, .. } => size_of_val(bits.as_slice()),
        }
    }
}

/// Clears the bits of the numbers `from + 1 ..= to` (which held numbers a window below them).
fn slide(bits: &mut FixedBitSet, width: u64, from: u64, to: u64) {
    let steps = to - from;
    if steps >= width {
        bits.clear();
        return;
    }
    let start = ((from + 1) % width) as usize;
    let end = start + steps as usize;
    let width = width as usize;
    if end <= width {
        bits.set_range(start..end, false);
    } else {
        bits.set_range(start.., false);
        bits.set_range(..end - width, false);
    }
}

/// A value per sequence number, for the `width` most recently inserted numbers that do not
/// collide modulo `width` (direct-mapped), or for all of them.
#[derive(Debug, Clone)]
pub(crate) enum SeqMap {
    Ring {
        slots: Vec<(u32, i64)>,
        used: FixedBitSet,
    },
    All(HashMap<u32, i64>),
}

impl SeqMap {
    pub(crate) fn new(width: usize) -> Self {
        let width = (width as u64).max(1);
        if width >= WHOLE_RANGE {
            Self::All(HashMap::new())
        } else {
            Self::Ring {
                slots: vec![(0, 0); width as usize],
                used: FixedBitSet::with_capacity(width as usize),
            }
        }
    }

    pub(crate) fn insert(&mut self, seq: u32, value: i64) {
        match self {
            Self::All(map) => {
                map.insert(seq, value);
            }
            Self::Ring { slots, used } => {
                let i = seq as usize % slots.len();
                slots[i] = (seq, value);
                used.insert(i);
            }
        }
    }

    pub(crate) fn get(&self, seq: u32) -> Option<i64> {
        match self {
            Self::All(map) => map.get(&seq).copied(),
            Self::Ring { slots, used } => {
                let i = seq as usize % slots.len();
                let (s, v) = slots[i];
                (used.contains(i) && s == seq).then_some(v)
            }
        }
    }

    /// Heap bytes held.
    pub(crate) fn memory_bytes(&self) -> usize {
        match self {
            Self::All(map) => map.capacity() * (size_of::<(u32, i64)>() + 1),
            Self::Ring { slots, used } => {
                slots.capacity() * size_of::<(u32, i64)>() + size_of_val(used.as_slice())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn window_slides_and_forgets() {
        let mut s = SeqSet::new(4);
        assert_eq!(s.insert(10), Seen::New);
        assert_eq!(s.insert(10), Seen::Again);
        assert_eq!(s.insert(7), Seen::New);
        assert_eq!(s.insert(6), Seen::Old);
        assert_eq!(s.contains(6), None);
        assert_eq!(s.contains(8), Some(false));
        assert_eq!(s.insert(12), Seen::New);
        // 7 and 8 left the window; 9..=12 are in it.
        assert_eq!(s.contains(8), None);
        assert_eq!(s.contains(10), Some(true));
        assert_eq!(s.contains(11), Some(false));
        assert_eq!(s.insert(100), Seen::New);
        assert_eq!(s.contains(97), Some(false));
        assert_eq!(s.contains(96), None);
        // The top of the range does not overflow.
        assert_eq!(s.insert(u32::MAX), Seen::New);
        assert_eq!(s.insert(u32::MAX), Seen::Again);
        assert_eq!(s.contains(u32::MAX - 3), Some(false));
        assert_eq!(s.contains(u32::MAX - 4), None);
    }

    #[test]
    fn map_is_direct_mapped() {
        let mut m = SeqMap::new(4);
        assert_eq!(m.get(0), None);
        m.insert(1, 10);
        m.insert(2, 20);
        assert_eq!((m.get(1), m.get(2), m.get(5)), (Some(10), Some(20), None));
        m.insert(5, 50);
        assert_eq!((m.get(1), m.get(5)), (None, Some(50)));
    }

    proptest! {
        /// Within the window the bit set answers as a hash set does.
        #[test]
        fn window_matches_a_set(seqs in prop::collection::vec(0u32..300, 0..400), width in 1usize..64) {
            let mut w = SeqSet::new(width);
            let mut all = SeqSet::new(usize::MAX);
            let mut highest = None;
            for s in seqs {
                highest = highest.max(Some(s));
                let expect = all.insert(s);
                let got = w.insert(s);
                if u64::from(s) + width as u64 <= u64::from(highest.unwrap()) {
                    prop_assert_eq!(got, Seen::Old);
                } else {
                    prop_assert_eq!(got, expect);
                }
            }
        }
    }
}
