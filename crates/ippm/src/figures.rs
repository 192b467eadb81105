//! A measurement session's results as the figures Prometheus gets (`ippm_net::metrics`):
//! counts, the delay quantiles the report computed, extremes and jitter, in seconds.

use ippm_net::metrics::SessionFigures;

/// The median and the report's percentiles as (quantile, seconds), in quantile order.
fn quantiles(d: &ippm_stats::summary::Digest) -> Vec<(f64, f64)> {
    let mut q = vec![(0.5, d.median_ns / 1e9)];
    for p in &d.percentiles {
        if p.percentile != 50.0 {
            q.push((p.percentile / 100.0, p.value_ns / 1e9));
        }
    }
    q.sort_by(|a, b| a.0.total_cmp(&b.0));
    q
}

/// A two-way session's figures (round trip): `protocol` is `twamp` or `stamp`, the families
/// are the same.
pub(crate) fn two_way_figures(
    peer: &str,
    protocol: &'static str,
    r: &ippm_stats::TwoWayReport,
) -> SessionFigures {
    let d = r.round_trip.as_ref();
    SessionFigures {
        peer: peer.to_owned(),
        protocol,
        direction: "round_trip",
        sent: r.loss.sent as u64,
        received: r.loss.received as u64,
        lost: r.loss.lost as u64,
        duplicates: r.duplicates as u64,
        reordered: r.round_trip_reordering.reordered as u64,
        delay_quantiles_seconds: d.map(quantiles).unwrap_or_default(),
        delay_min_seconds: d.map(|d| d.min_ns as f64 / 1e9),
        delay_max_seconds: d.map(|d| d.max_ns as f64 / 1e9),
        jitter_seconds: r.round_trip_jitter_ns.map(|j| j / 1e9),
    }
}

/// One direction of an OWAMP session (`to_server` or `from_server`).
pub(crate) fn owamp_figures(
    peer: &str,
    direction: &'static str,
    r: &ippm_stats::OneWayReport,
) -> SessionFigures {
    let d = r.delay.as_ref();
    SessionFigures {
        peer: peer.to_owned(),
        protocol: "owamp",
        direction,
        sent: r.loss.sent as u64,
        received: r.loss.received as u64,
        lost: r.loss.lost as u64,
        duplicates: r.duplicates as u64,
        reordered: r.reordering.reordered as u64,
        delay_quantiles_seconds: d.map(quantiles).unwrap_or_default(),
        delay_min_seconds: d.map(|d| d.min_ns as f64 / 1e9),
        delay_max_seconds: d.map(|d| d.max_ns as f64 / 1e9),
        jitter_seconds: r.jitter_ns.map(|j| j / 1e9),
    }
}
