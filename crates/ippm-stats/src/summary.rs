//! Order statistics of a set of values (delays in nanoseconds).

use serde::Serialize;

/// Min, max, mean and percentiles of a non-empty set of values.
///
/// Percentiles interpolate linearly between closest ranks (the "type 7" definition of
/// Hyndman and Fan, R's and NumPy's default): for p in [0, 100], rank h = (n - 1) p / 100 and
/// the value is x[floor h] + (h - floor h)(x[floor h + 1] - x[floor h]). The median is the
/// 50th percentile.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    sorted: Vec<i64>,
}

impl Summary {
    /// The summary of `values`, or `None` when there are none.
    pub fn new(mut values: Vec<i64>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        Some(Self { sorted: values })
    }

    /// Number of values.
    pub fn count(&self) -> usize {
        self.sorted.len()
    }

    /// Smallest value.
    pub fn min(&self) -> i64 {
        self.sorted[0]
    }

    /// Largest value.
    pub fn max(&self) -> i64 {
        self.sorted[self.sorted.len() - 1]
    }

    /// Arithmetic mean.
    pub fn mean(&self) -> f64 {
        self.sorted.iter().map(|&v| v as f64).sum::<f64>() / self.sorted.len() as f64
    }

    /// The p-th percentile (p clamped to [0, 100]).
    pub fn percentile(&self, p: f64) -> f64 {
        let p = if p.is_nan() {
            50.0
        } else {
            p.clamp(0.0, 100.0)
        };
        let h = (self.sorted.len() - 1) as f64 * p / 100.0;
        let lo = h.floor() as usize;
        let hi = (lo + 1).min(self.sorted.len() - 1);
        let (a, b) = (self.sorted[lo] as f64, self.sorted[hi] as f64);
        a + (h - lo as f64) * (b - a)
    }

    /// The median.
    pub fn median(&self) -> f64 {
        self.percentile(50.0)
    }

    /// The values, sorted.
    pub fn values(&self) -> &[i64] {
        &self.sorted
    }

    /// A serializable digest with the given percentiles.
    pub fn digest(&self, percentiles: &[f64]) -> Digest {
        Digest {
            count: self.count(),
            min_ns: self.min(),
            median_ns: self.median(),
            max_ns: self.max(),
            mean_ns: self.mean(),
            percentiles: percentiles
                .iter()
                .map(|&p| Percentile {
                    percentile: p,
                    value_ns: self.percentile(p),
                })
                .collect(),
            approximation: None,
        }
    }
}

/// What reports carry of a [`Summary`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Digest {
    /// Number of values.
    pub count: usize,
    /// Minimum.
    pub min_ns: i64,
    /// Median.
    pub median_ns: f64,
    /// Maximum.
    pub max_ns: i64,
    /// Mean.
    pub mean_ns: f64,
    /// Chosen percentiles.
    pub percentiles: Vec<Percentile>,
    /// `None` when every figure is exact, as from the batch functions. From an accumulator with
    /// more than [`Bounds::exact_values`](crate::Bounds::exact_values) values: the median and
    /// percentiles come from a histogram, within the error given here; `count`, `min_ns` and
    /// `max_ns` stay exact, and `mean_ns` is the exact sum over the count. Absent from JSON
    /// when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approximation: Option<Approximation>,
}

/// How a [`Digest`]'s median and percentiles are approximated ("approximate above
/// `exact_up_to` values").
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Approximation {
    /// Values kept exactly; the digest has more.
    pub exact_up_to: usize,
    /// Bound on the relative error of the median and of each percentile, as
    /// [`Bounds::relative_error`](crate::Bounds::relative_error) defines it.
    pub relative_error: f64,
}

/// One percentile of a [`Digest`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentile {
    /// Which percentile (0-100).
    pub percentile: f64,
    /// Its value.
    pub value_ns: f64,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn hand_computed() {
        let s = Summary::new(vec![40, 10, 30, 20]).unwrap();
        assert_eq!((s.min(), s.max(), s.count()), (10, 40, 4));
        assert_eq!(s.mean(), 25.0);
        assert_eq!(s.median(), 25.0);
        // h = 3 * 0.95 = 2.85 -> 30 + 0.85 * 10
        assert!((s.percentile(95.0) - 38.5).abs() < 1e-9);
        assert_eq!(s.percentile(0.0), 10.0);
        assert_eq!(s.percentile(100.0), 40.0);
        assert_eq!(Summary::new(vec![7]).unwrap().percentile(95.0), 7.0);
        assert!(Summary::new(vec![]).is_none());
    }

    proptest! {
        #[test]
        fn percentiles_are_monotone_and_bounded(v in prop::collection::vec(-1_000_000i64..1_000_000, 1..200),
                                                 a in 0.0f64..100.0, b in 0.0f64..100.0) {
            let s = Summary::new(v).unwrap();
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(s.percentile(lo) <= s.percentile(hi));
            prop_assert!(s.percentile(lo) >= s.min() as f64 && s.percentile(hi) <= s.max() as f64);
            prop_assert!(s.mean() >= s.min() as f64 && s.mean() <= s.max() as f64);
        }
    }
}
