//! How much an accumulator remembers.

/// The bounds of an accumulator's state ([`TwoWayAccumulator`](crate::TwoWayAccumulator),
/// [`OneWayAccumulator`](crate::OneWayAccumulator)): each one caps one part of it, so that its
/// memory is set by these numbers whatever the number of packets. [`Bounds::DEFAULT`] keeps a
/// two-way accumulator under about 5 MiB and a one-way one under about 2 MiB (see
/// `memory_bytes`); [`Bounds::UNBOUNDED`], what the batch functions use, forgets nothing and
/// grows with the input.
///
/// Within the bounds the accumulators' reports equal the batch functions' exactly. Beyond them:
///
/// - Delay quantiles: once a digest has more than `exact_values` values, its median and
///   percentiles come from a histogram, within [`Bounds::relative_error`]; its count, minimum,
///   maximum and mean stay exact. The digest says so in
///   [`Digest::approximation`](crate::summary::Digest::approximation).
/// - Loss and duplicates: a packet is remembered while its sequence number is within
///   `loss_window` of the highest one (sent, for two-way; received, for one-way). A reply or
///   record older than that is *late*: counted as such and otherwise taken as lost, as RFC 7680
///   takes a packet that comes after the loss threshold. Size the window to at least the loss
///   timeout times the packet rate. The reflector's numbers (two-way backward loss and forward
///   duplicates) are remembered the same way, within `loss_window` of the highest; an older
///   one is taken as seen.
/// - Reordering (RFC 4737): the reordered count and ratio and n-reordering (n <= 3) need O(1)
///   state and stay exact. An extent needs the arrival position of its reordering
///   discontinuity; the last `reorder_window` in-order arrivals are kept (RFC 4737 §8 suggests
///   keeping only the discontinuities), so every extent up to `reorder_window` is exact and a
///   larger one may be reported as a lower bound above the window, counted in
///   [`Reordering::extents_lower_bounds`](crate::Reordering::extents_lower_bounds). At most
///   `max_extents` extents are listed (the first ones); the count of reordered packets stays
///   exact.
/// - IPDV: the delays of `reorder_window` sequence numbers are kept (by sequence number modulo
///   the window); a pair of consecutive packets whose second arrives after the first was
///   displaced by a packet `reorder_window` numbers further is not counted.
/// - Forward reordering (two-way): replies are put back into the reflector's order in a buffer
///   of `reorder_window` replies; a reply that comes back more than that many places late is
///   taken in arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Values a digest keeps exactly before it switches to a histogram. Default 65,536.
    pub exact_values: usize,
    /// Significant decimal digits of the histograms, 0 to 5 (HdrHistogram's precision). Default
    /// 3: a relative error of 1/2048 (0.049 %).
    pub significant_digits: u8,
    /// Largest magnitude, ns, the histograms tell apart; larger values are counted at it, so a
    /// percentile among them reads as it (the maximum stays exact). Default 2^43 ns (about
    /// 2.4 hours), which makes a histogram 35,840 counters (280 KiB).
    pub histogram_max_ns: u64,
    /// Sequence numbers remembered for loss and duplicates. Default 2^20 (1,048,576: 2 s of loss
    /// timeout at 500,000 packets a second), a 128 KiB bit set per set of numbers.
    pub loss_window: usize,
    /// Arrivals remembered for reordering extents, IPDV pairs and the reflector's order.
    /// Default 4,096.
    pub reorder_window: usize,
    /// Extents listed per reordering report. Default 1,024.
    pub max_extents: usize,
}

impl Bounds {
    /// The documented defaults.
    pub const DEFAULT: Self = Self {
        exact_values: 1 << 16,
        significant_digits: 3,
        histogram_max_ns: 1 << 43,
        loss_window: 1 << 20,
        reorder_window: 4096,
        max_extents: 1024,
    };

    /// Nothing forgotten: every value exact, every sequence number remembered (in hash sets,
    /// since a window of 2^32 sequence numbers would be 512 MiB of bits). What
    /// [`two_way`](crate::two_way) and [`one_way`](crate::one_way) use; memory grows with the
    /// input.
    pub const UNBOUNDED: Self = Self {
        exact_values: usize::MAX,
        significant_digits: 3,
        histogram_max_ns: 1 << 43,
        loss_window: usize::MAX,
        reorder_window: usize::MAX,
        max_extents: usize::MAX,
    };

    /// The defaults, with the windows no larger than a session of `packets` packets needs: for
    /// it every window is exact, and a short session (the usual one: hundreds of packets)
    /// holds kilobytes instead of the defaults' hundreds of kilobytes.
    pub fn for_packets(packets: u64) -> Self {
        let n = usize::try_from(packets).unwrap_or(usize::MAX).max(1);
        let d = Self::DEFAULT;
        Self {
            loss_window: d
                .loss_window
                .min(n.checked_next_power_of_two().unwrap_or(usize::MAX)),
            reorder_window: d.reorder_window.min(n),
            ..d
        }
    }

    /// The bound on the relative error of an approximated median or percentile: half the width
    /// of a histogram bucket over the smallest value in it, 1 / 2^ceil(log2(2 * 10^d)) for d
    /// significant digits (HdrHistogram keeps unit resolution up to 2 * 10^d). With the default
    /// 3 digits, 1/2048.
    ///
    /// Precisely, an approximated percentile that interpolates between the values x_lo and x_hi
    /// (ranks floor(h) and floor(h) + 1 of type 7, see [`Summary`](crate::Summary)) is within
    /// `relative_error * max(|x_lo|, |x_hi|)` of the exact one, so within `relative_error` of
    /// it in relative terms when the two have the same sign. For a PDV digest the error is
    /// relative to the delay minus the smallest delay of the first `exact_values` (which is the
    /// PDV itself unless the minimum fell afterwards).
    pub fn relative_error(&self) -> f64 {
        let d = self.normalized().significant_digits;
        let largest = 2.0 * 10f64.powi(i32::from(d));
        1.0 / 2f64.powf(largest.log2().ceil())
    }

    /// These bounds with every field in its valid range: at most 5 significant digits, a
    /// histogram range of at least 2 ns, windows of at least one.
    pub(crate) fn normalized(&self) -> Self {
        Self {
            exact_values: self.exact_values,
            significant_digits: self.significant_digits.min(5),
            histogram_max_ns: self.histogram_max_ns.max(2),
            loss_window: self.loss_window.max(1),
            reorder_window: self.reorder_window.max(1),
            max_extents: self.max_extents,
        }
    }
}

impl Default for Bounds {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_for_a_short_session_are_small_and_exact_for_it() {
        let b = Bounds::for_packets(600);
        assert_eq!((b.loss_window, b.reorder_window), (1024, 600));
        assert_eq!(Bounds::for_packets(u64::MAX), Bounds::DEFAULT);
        assert_eq!(Bounds::for_packets(0).loss_window, 1);
        let small = crate::TwoWayAccumulator::new(Bounds::for_packets(600)).memory_bytes();
        let full = crate::TwoWayAccumulator::new(Bounds::DEFAULT).memory_bytes();
        assert!(small * 10 < full, "{small} vs {full}");
    }

    #[test]
    fn relative_error_of_the_precision() {
        assert_eq!(Bounds::DEFAULT.relative_error(), 1.0 / 2048.0);
        let b = |d| Bounds {
            significant_digits: d,
            ..Bounds::DEFAULT
        };
        assert_eq!(b(2).relative_error(), 1.0 / 256.0);
        assert_eq!(b(0).relative_error(), 1.0 / 2.0);
        assert_eq!(b(9).relative_error(), b(5).relative_error());
    }
}
