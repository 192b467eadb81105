//! Order statistics of a stream of values in bounded memory: every value while there are at
//! most [`Bounds::exact_values`], then an HdrHistogram.

use std::mem::size_of;

use hdrhistogram::Histogram;

use crate::Bounds;
use crate::summary::{Approximation, Digest, Percentile, Summary};

/// Count, minimum, maximum and sum exactly; the values themselves up to a bound, then in
/// histograms. Optionally a second histogram for the values' PDV (value minus the minimum).
#[derive(Debug, Clone)]
pub(crate) struct Quantiles {
    exact_limit: usize,
    significant_digits: u8,
    max_magnitude: u64,
    relative_error: f64,
    with_pdv: bool,
    exact: Vec<i64>,
    approx: Option<Approx>,
    count: u64,
    min: i64,
    max: i64,
    sum: i128,
}

#[derive(Debug, Clone)]
struct Approx {
    values: SignedHistogram,
    /// The values less the smallest of the exact ones (the minimum then), so that the PDV's
    /// error is relative to the PDV rather than to the delay.
    pdv: Option<SignedHistogram>,
}

/// A histogram of `value - origin` over both signs: HdrHistogram keeps a relative precision of
/// magnitudes, so the negative differences have their own histogram (made when the first
/// comes).
#[derive(Debug, Clone)]
pub(crate) struct SignedHistogram {
    origin: i64,
    above: Histogram<u64>,
    below: Option<Histogram<u64>>,
}

impl SignedHistogram {
    fn new(origin: i64, significant_digits: u8, max_magnitude: u64) -> Self {
        Self {
            origin,
            above: Histogram::new_with_bounds(1, max_magnitude, significant_digits)
                .expect("normalized bounds make a valid histogram"),
            below: None,
        }
    }

    fn record(&mut self, v: i64) {
        let d = i128::from(v) - i128::from(self.origin);
        let magnitude = u64::try_from(d.unsigned_abs()).unwrap_or(u64::MAX);
        if d >= 0 {
            self.above.saturating_record(magnitude);
        } else {
            let above = &self.above;
            self.below
                .get_or_insert_with(|| Histogram::new_from(above))
                .saturating_record(magnitude);
        }
    }

    /// The values less the origin at the given ranks (0-based, ascending), each its bucket's
    /// middle.
    fn at_ranks(&self, ranks: &[u64]) -> Vec<i128> {
        let n_below = self.below.as_ref().map_or(0, Histogram::len);
        let split = ranks.partition_point(|&r| r < n_below);
        let mut out = Vec::with_capacity(ranks.len());
        if let Some(below) = &self.below {
            // Ascending values below the origin are descending magnitudes.
            let m: Vec<u64> = ranks[..split]
                .iter()
                .rev()
                .map(|&r| n_below - 1 - r)
                .collect();
            out.extend(
                magnitudes(below, &m)
                    .into_iter()
                    .rev()
                    .map(|x| -i128::from(x)),
            );
        }
        let m: Vec<u64> = ranks[split..].iter().map(|&r| r - n_below).collect();
        out.extend(magnitudes(&self.above, &m).into_iter().map(i128::from));
        out
    }

    fn memory_bytes(&self) -> usize {
        let h = |h: &Histogram<u64>| h.distinct_values() * size_of::<u64>();
        h(&self.above) + self.below.as_ref().map_or(0, h)
    }
}

/// The recorded magnitudes at the given ranks (ascending), in one walk over the buckets.
fn magnitudes(h: &Histogram<u64>, ranks: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(ranks.len());
    let mut below = 0u64;
    let mut ranks = ranks.iter().peekable();
    for bucket in h.iter_recorded() {
        if ranks.peek().is_none() {
            break;
        }
        below += bucket.count_since_last_iteration();
        while ranks.next_if(|&&r| r < below).is_some() {
            out.push(h.median_equivalent(bucket.value_iterated_to()));
        }
    }
    // Only with ranks beyond the count, which callers do not ask for.
    out.resize(out.len() + ranks.count(), h.max());
    out
}

impl Quantiles {
    pub(crate) fn new(bounds: &Bounds, with_pdv: bool) -> Self {
        let b = bounds.normalized();
        Self {
            exact_limit: b.exact_values,
            significant_digits: b.significant_digits,
            max_magnitude: b.histogram_max_ns,
            relative_error: b.relative_error(),
            with_pdv,
            exact: Vec::new(),
            approx: None,
            count: 0,
            min: i64::MAX,
            max: i64::MIN,
            sum: 0,
        }
    }

    pub(crate) fn push(&mut self, v: i64) {
        if self.approx.is_none() && self.exact.len() >= self.exact_limit {
            self.switch(v);
        }
        match &mut self.approx {
            None => self.exact.push(v),
            Some(a) => {
                a.values.record(v);
                if let Some(p) = &mut a.pdv {
                    p.record(v);
                }
            }
        }
        self.count += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += i128::from(v);
    }

    /// From exact values to histograms, before `next` is recorded.
    fn switch(&mut self, next: i64) {
        let (d, m) = (self.significant_digits, self.max_magnitude);
        let origin = if self.exact.is_empty() {
            next
        } else {
            self.min
        };
        let mut a = Approx {
            values: SignedHistogram::new(0, d, m),
            pdv: self.with_pdv.then(|| SignedHistogram::new(origin, d, m)),
        };
        for &v in &self.exact {
            a.values.record(v);
            if let Some(p) = &mut a.pdv {
                p.record(v);
            }
        }
        self.exact = Vec::new();
        self.approx = Some(a);
    }

    /// The values' order statistics, `None` when there are none.
    pub(crate) fn snapshot(&self) -> Option<Snapshot<'_>> {
        self.view(false)
    }

    /// The order statistics of the values' PDV (RFC 5481: each value minus the smallest),
    /// `None` when there are none. Only approximate when made `with_pdv`.
    pub(crate) fn pdv_snapshot(&self) -> Option<Snapshot<'_>> {
        self.view(true)
    }

    fn view(&self, pdv: bool) -> Option<Snapshot<'_>> {
        if self.count == 0 {
            return None;
        }
        let shift = if pdv { self.min } else { 0 };
        let Some(a) = &self.approx else {
            let v = self.exact.iter().map(|v| v.saturating_sub(shift)).collect();
            return Summary::new(v).map(Snapshot::Exact);
        };
        let hist = if pdv { a.pdv.as_ref()? } else { &a.values };
        let n = i128::from(self.count);
        Some(Snapshot::Approx {
            hist,
            shift,
            count: self.count,
            min: self.min.saturating_sub(shift),
            max: self.max.saturating_sub(shift),
            mean: (self.sum - n * i128::from(shift)) as f64 / n as f64,
            approximation: Approximation {
                exact_up_to: self.exact_limit,
                relative_error: self.relative_error,
            },
        })
    }

    /// Heap bytes held.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.exact.capacity() * size_of::<i64>()
            + self.approx.as_ref().map_or(0, |a| {
                a.values.memory_bytes() + a.pdv.as_ref().map_or(0, SignedHistogram::memory_bytes)
            })
    }
}

/// Order statistics ready to read: the sorted values, or the histogram.
#[derive(Debug)]
pub(crate) enum Snapshot<'a> {
    Exact(Summary),
    Approx {
        hist: &'a SignedHistogram,
        /// Subtracted from every value (the minimum, for the PDV).
        shift: i64,
        count: u64,
        min: i64,
        max: i64,
        mean: f64,
        approximation: Approximation,
    },
}

impl Snapshot<'_> {
    /// Percentiles as [`Summary::percentile`] defines them.
    pub(crate) fn percentiles(&self, ps: &[f64]) -> Vec<f64> {
        let (hist, shift, count, min, max) = match self {
            Self::Exact(s) => return ps.iter().map(|&p| s.percentile(p)).collect(),
            Self::Approx {
                hist,
                shift,
                count,
                min,
                max,
                ..
            } => (hist, shift, count, min, max),
        };
        let n = *count;
        let ranks: Vec<(f64, u64, u64)> = ps
            .iter()
            .map(|&p| {
                let p = if p.is_nan() {
                    50.0
                } else {
                    p.clamp(0.0, 100.0)
                };
                let h = (n - 1) as f64 * p / 100.0;
                let lo = (h.floor() as u64).min(n - 1);
                (h - lo as f64, lo, (lo + 1).min(n - 1))
            })
            .collect();
        let mut wanted: Vec<u64> = ranks.iter().flat_map(|&(_, lo, hi)| [lo, hi]).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let values = hist.at_ranks(&wanted);
        let value = |r: u64| {
            let i = wanted.partition_point(|&w| w < r);
            (i128::from(hist.origin) + values[i] - i128::from(*shift)) as f64
        };
        ranks
            .iter()
            .map(|&(frac, lo, hi)| {
                let (a, b) = (value(lo), value(hi));
                (a + frac * (b - a)).clamp(*min as f64, *max as f64)
            })
            .collect()
    }

    /// perfSONAR's jitter: P95 - P50.
    pub(crate) fn jitter(&self) -> f64 {
        let p = self.percentiles(&[95.0, 50.0]);
        p[0] - p[1]
    }

    pub(crate) fn digest(&self, ps: &[f64]) -> Digest {
        match self {
            Self::Exact(s) => s.digest(ps),
            Self::Approx {
                count,
                min,
                max,
                mean,
                approximation,
                ..
            } => {
                let mut all = vec![50.0];
                all.extend_from_slice(ps);
                let v = self.percentiles(&all);
                Digest {
                    count: usize::try_from(*count).unwrap_or(usize::MAX),
                    min_ns: *min,
                    median_ns: v[0],
                    max_ns: *max,
                    mean_ns: *mean,
                    percentiles: ps
                        .iter()
                        .zip(&v[1..])
                        .map(|(&percentile, &value_ns)| Percentile {
                            percentile,
                            value_ns,
                        })
                        .collect(),
                    approximation: Some(*approximation),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn bounds(exact: usize) -> Bounds {
        Bounds {
            exact_values: exact,
            ..Bounds::DEFAULT
        }
    }

    fn filled(exact: usize, values: &[i64], pdv: bool) -> Quantiles {
        let mut q = Quantiles::new(&bounds(exact), pdv);
        for &v in values {
            q.push(v);
        }
        q
    }

    /// The exact type-7 percentile and the bound on the approximation's error: relative to the
    /// larger magnitude of the two values it interpolates between (after subtracting `origin`).
    fn exact_and_bound(sorted: &[i64], p: f64, origin: i64, eps: f64) -> (f64, f64) {
        let h = (sorted.len() - 1) as f64 * p / 100.0;
        let lo = h.floor() as usize;
        let hi = (lo + 1).min(sorted.len() - 1);
        let (a, b) = (sorted[lo] as f64, sorted[hi] as f64);
        let m = ((sorted[lo] - origin).abs()).max((sorted[hi] - origin).abs()) as f64;
        (a + (h - lo as f64) * (b - a), eps * m + 1e-6 * m.max(1.0))
    }

    #[test]
    fn exact_below_the_bound() {
        let v = [5, -3, 8, 8, 1];
        let q = filled(5, &v, true);
        let d = q.snapshot().unwrap().digest(&[25.0, 90.0]);
        assert_eq!(d, Summary::new(v.to_vec()).unwrap().digest(&[25.0, 90.0]));
        assert!(d.approximation.is_none());
        let p = q.pdv_snapshot().unwrap().digest(&[25.0]);
        assert_eq!(
            p,
            Summary::new(vec![8, 0, 11, 11, 4]).unwrap().digest(&[25.0])
        );
        assert!(Quantiles::new(&bounds(5), false).snapshot().is_none());
    }

    #[test]
    fn approximate_above_it() {
        let v: Vec<i64> = (0..10_000).map(|i| 1_000_000 + i * 37).collect();
        let q = filled(100, &v, true);
        let d = q.snapshot().unwrap().digest(&[99.0]);
        assert_eq!(d.count, 10_000);
        assert_eq!((d.min_ns, d.max_ns), (1_000_000, 1_000_000 + 9_999 * 37));
        assert_eq!(d.mean_ns, 1_000_000.0 + 9_999.0 * 37.0 / 2.0);
        assert_eq!(
            d.approximation,
            Some(Approximation {
                exact_up_to: 100,
                relative_error: 1.0 / 2048.0
            })
        );
        let exact = Summary::new(v.clone()).unwrap();
        assert!((d.median_ns - exact.median()).abs() <= exact.median() / 2048.0);
        let p = q.pdv_snapshot().unwrap().digest(&[]);
        assert_eq!((p.min_ns, p.max_ns), (0, 9_999 * 37));
        assert!((p.median_ns - (exact.median() - 1e6)).abs() <= (exact.median() - 1e6) / 2048.0);
    }

    #[test]
    fn no_exact_values_at_all() {
        let q = filled(0, &[7, -7, 0], true);
        let s = q.snapshot().unwrap();
        assert_eq!(s.percentiles(&[0.0, 50.0, 100.0]), vec![-7.0, 0.0, 7.0]);
        assert_eq!(
            q.pdv_snapshot().unwrap().percentiles(&[0.0, 100.0]),
            vec![0.0, 14.0]
        );
    }

    #[test]
    fn memory_stops_growing() {
        let mut q = Quantiles::new(&bounds(1000), true);
        for i in 0..5000 {
            q.push(i * 1000 - 2_000_000);
        }
        // Histograms come at the switch, the one for values below the origin with the first.
        let one = 35_840 * 8;
        assert_eq!(q.memory_bytes(), 3 * one);
        q.push(-3_000_000);
        assert_eq!(q.memory_bytes(), 4 * one);
        for i in 0..100_000 {
            q.push((i % 7919) * 1_000_003 - 5_000_000);
        }
        assert_eq!(q.memory_bytes(), 4 * one);
    }

    proptest! {
        #[test]
        fn within_the_relative_error(
            v in prop::collection::vec(prop_oneof![-10_000_000i64..10_000_000, 0i64..5000, 1_000_000i64..1_001_000], 1..3000),
            exact in 0usize..200,
            p in 0.0f64..=100.0,
        ) {
            let q = filled(exact, &v, true);
            let eps = 1.0 / 2048.0;
            let mut sorted = v.clone();
            sorted.sort_unstable();
            let got = q.snapshot().unwrap().percentiles(&[p])[0];
            let (want, bound) = exact_and_bound(&sorted, p, 0, eps);
            prop_assert!((got - want).abs() <= bound, "{} vs {} (bound {})", got, want, bound);
            // PDV: relative to the distance from the smallest of the exact values.
            let min = sorted[0];
            let origin = if v.len() > exact { v[..exact.max(1)].iter().copied().min().unwrap() } else { min };
            let pdv: Vec<i64> = sorted.iter().map(|x| x - min).collect();
            let got = q.pdv_snapshot().unwrap().percentiles(&[p])[0];
            let (want, bound) = exact_and_bound(&pdv, p, origin - min, eps);
            prop_assert!((got - want).abs() <= bound, "pdv {} vs {} (bound {})", got, want, bound);
            if v.len() <= exact {
                let s = Summary::new(v.clone()).unwrap();
                prop_assert_eq!(q.snapshot().unwrap().digest(&[25.0, 99.0]), s.digest(&[25.0, 99.0]));
            }
        }
    }
}
