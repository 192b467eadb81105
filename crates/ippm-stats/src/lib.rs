//! Metrics over packet records: delay, delay variation, loss, duplicates, reordering, hops.
//!
//! Pure code over records, no I/O: the batch functions [`two_way`] and [`one_way`] over
//! complete slices, and the accumulators [`TwoWayAccumulator`] and [`OneWayAccumulator`] that
//! take the records as they arrive, report at any time, and hold memory set by their
//! [`Bounds`] whatever the number of packets (the batch functions are the accumulators with
//! [`Bounds::UNBOUNDED`]: one implementation). Times are signed nanoseconds on one epoch (the
//! runtime converts NTP timestamps), so one-way delays between unsynchronized clocks may be
//! negative and are reported as they are, flagged. Statistics are defined at every loss rate:
//! an empty set gives `None`, never NaN.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bounds;
pub mod oneway;
mod quantiles;
#[cfg(test)]
mod reference;
pub mod reorder;
pub mod summary;
pub mod twoway;
mod window;

pub use bounds::Bounds;
pub use oneway::{OneWayAccumulator, OneWayReport, one_way};
pub use reorder::Reordering;
pub use summary::Summary;
pub use twoway::{Reflected, Sent, TwoWayAccumulator, TwoWayReport, two_way};

/// Hop count from a received TTL: the distance from the nearest common initial TTL (64, 128 or
/// 255) at or above it. perfSONAR prints the same ("hops = 0" for TTL 255 on loopback).
pub fn hops(ttl: u8) -> u8 {
    let initial = if ttl <= 64 {
        64
    } else if ttl <= 128 {
        128
    } else {
        255
    };
    initial - ttl
}

/// The distinct hop counts seen, smallest first ("consistently N" when there is one).
pub fn hop_counts(ttls: impl IntoIterator<Item = u8>) -> Vec<u8> {
    let mut v: Vec<u8> = ttls.into_iter().map(hops).collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_guess() {
        assert_eq!(hops(255), 0);
        assert_eq!(hops(64), 0);
        assert_eq!(hops(60), 4);
        assert_eq!(hops(120), 8);
        assert_eq!(hops(250), 5);
        assert_eq!(hop_counts([255, 255, 254, 64]), vec![0, 1]);
        assert!(hop_counts([]).is_empty());
    }
}
