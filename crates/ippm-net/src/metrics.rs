//! The daemon's Prometheus endpoint: measurement results, session counts, HMAC failures and
//! IKE SA state as metric families, and the HTTP server that exposes them on `GET /metrics`.
//!
//! # Metric families
//!
//! Every name has the one prefix `ippm_`, times are in seconds, and counters end in `_total`.
//! `peer` is the peer as configured (`host:port`), `protocol` is `twamp`, `owamp` or `stamp`
//! (a STAMP session has TWAMP's families), and `direction` is `round_trip`, `to_server` or
//! `from_server`.
//!
//! | family | type | labels |
//! |---|---|---|
//! | `ippm_packets_sent_total` | counter | peer, protocol, direction |
//! | `ippm_packets_received_total` | counter | peer, protocol, direction |
//! | `ippm_packets_lost_total` | counter | peer, protocol, direction |
//! | `ippm_packets_duplicate_total` | counter | peer, protocol, direction |
//! | `ippm_packets_reordered_total` | counter | peer, protocol, direction |
//! | `ippm_delay_seconds` | gauge | peer, protocol, direction, quantile |
//! | `ippm_delay_min_seconds` | gauge | peer, protocol, direction |
//! | `ippm_delay_max_seconds` | gauge | peer, protocol, direction |
//! | `ippm_jitter_seconds` | gauge | peer, protocol, direction |
//! | `ippm_sessions_total` | counter | peer, protocol, status |
//! | `ippm_sessions_running` | gauge | peer, protocol |
//! | `ippm_hmac_failures_total` | counter | peer, protocol |
//! | `ippm_ike_sas` | gauge | peer, connection, state (only when the IKE service runs; a connection with a configured peer address always has its `state="established"` series, 0 while it has no SA) |
//! | `ippm_build_info` | info (a gauge of 1 in the Prometheus text format) | version |
//!
//! A family appears in the exposition once it has a series (the first session, HMAC failure,
//! IKE SA or connection with a configured peer); `ippm_build_info` is always there.
//!
//! # Why the delay is a gauge with a `quantile` label, not a histogram
//!
//! The daemon does not see the delay samples one by one as they happen: a measurement
//! session is summarised when it ends (or each time a running session is updated), by
//! `ippm-stats`, into its quantiles, minimum, maximum and jitter. Those are already the
//! figures an operator wants, computed exactly over all of the session's packets; a histogram
//! would have to re-bucket them into fixed bounds, losing precision, and would mix sessions
//! of different lengths. So `ippm_delay_seconds{quantile="0.99"}` holds the 99th percentile of
//! the latest session with that peer and direction, like the quantiles of a Prometheus
//! summary, and Prometheus' own storage keeps its history. Quantiles of different sessions
//! must not be averaged; use `max_over_time` or `quantile_over_time` on them instead.
//!
//! The packet counts, on the other hand, are counters that add up every session's figures, so
//! that `rate()` and `increase()` give loss ratios over any window.
//!
//! # Cardinality
//!
//! Every label value comes from the configuration or from a fixed set: peers are the
//! configured measurement peers, protocols, directions and statuses are fixed words, and the
//! quantiles are the few the daemon computes. IKE SAs are counted by connection (configured),
//! by peer address and by state; an SA whose connection is not known yet (a half-open
//! responder SA, from any address) is counted under `peer="unidentified"` so unauthenticated
//! traffic cannot add series. The number of series is therefore bounded by the number of
//! configured peers and connections, not by traffic.
//!
//! # Exposition formats
//!
//! The registry and its encoding are the Prometheus project's Rust client
//! (`prometheus-client`), which writes OpenMetrics 1.0 text. A scraper that asks for it
//! (`Accept: application/openmetrics-text`, as Prometheus does) gets that; any other client
//! gets the classic Prometheus text format 0.0.4, derived from the same encoding.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::ike::IkeHandle;

/// The one prefix of every metric name.
const PREFIX: &str = "ippm";

/// Content type of the OpenMetrics 1.0 text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the Prometheus text format 0.0.4.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why the metrics could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The exposition encoder failed.
    #[error("cannot encode the metrics: {0}")]
    Encode(#[from] std::fmt::Error),
    /// The OpenMetrics text did not have the shape the Prometheus text conversion expects.
    #[error("cannot convert the OpenMetrics text to the Prometheus text format: {0}")]
    Convert(String),
}

/// The text format of an exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (`application/openmetrics-text`), ending in `# EOF`.
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    PrometheusText,
}

impl Format {
    /// The format a scraper asks for in its `Accept` header: OpenMetrics if it names
    /// `application/openmetrics-text`, else the Prometheus text format.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a)
                if a.split(',').any(|part| {
                    let mut fields = part.split(';').map(str::trim);
                    let media = fields.next().unwrap_or_default();
                    let refused = fields.any(|f| {
                        f.strip_prefix("q=")
                            .and_then(|q| q.parse::<f64>().ok())
                            .is_some_and(|q| q <= 0.0)
                    });
                    media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
                }) =>
            {
                Self::OpenMetrics
            }
            _ => Self::PrometheusText,
        }
    }

    /// The HTTP `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Self::PrometheusText => PROMETHEUS_TEXT_CONTENT_TYPE,
        }
    }
}

/// One measurement session's figures for one peer and direction, as `ippm-stats` summarises
/// them.
///
/// The counts are added to the counters: for a finished session give its totals, once; for a
/// running session updated periodically give what is new since the previous update
/// ([`SessionFigures::since`] computes it). The delay figures replace the previous ones of
/// the same peer, protocol and direction; `None` (no packet arrived) removes them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionFigures {
    /// The peer as configured, `host:port`.
    pub peer: String,
    /// `twamp`, `owamp` or `stamp`.
    pub protocol: &'static str,
    /// `round_trip`, `to_server` or `from_server`.
    pub direction: &'static str,
    /// Test packets sent.
    pub sent: u64,
    /// Test packets received.
    pub received: u64,
    /// Test packets lost.
    pub lost: u64,
    /// Duplicate test packets.
    pub duplicates: u64,
    /// Reordered test packets (RFC 4737).
    pub reordered: u64,
    /// Delay quantiles: (quantile in 0.0..=1.0, delay in seconds).
    pub delay_quantiles_seconds: Vec<(f64, f64)>,
    /// Smallest delay, seconds.
    pub delay_min_seconds: Option<f64>,
    /// Largest delay, seconds.
    pub delay_max_seconds: Option<f64>,
    /// Jitter (delay variation), seconds.
    pub jitter_seconds: Option<f64>,
}

impl SessionFigures {
    /// What is new in `self` (a running session's cumulative figures) since `earlier` (the
    /// same session's figures at the previous update): the counts are differences (never
    /// below zero), the delay figures are `self`'s.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            sent: self.sent.saturating_sub(earlier.sent),
            received: self.received.saturating_sub(earlier.received),
            lost: self.lost.saturating_sub(earlier.lost),
            duplicates: self.duplicates.saturating_sub(earlier.duplicates),
            reordered: self.reordered.saturating_sub(earlier.reordered),
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    peer: String,
    protocol: String,
    direction: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuantileLabels {
    peer: String,
    protocol: String,
    direction: String,
    quantile: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
    protocol: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    peer: String,
    protocol: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IkeLabels {
    peer: String,
    connection: String,
    state: String,
}

type SecondsGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The daemon's metric families and their registry. Cheap to update from any task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    sent: Family<DirectionLabels, Counter>,
    received: Family<DirectionLabels, Counter>,
    lost: Family<DirectionLabels, Counter>,
    duplicate: Family<DirectionLabels, Counter>,
    reordered: Family<DirectionLabels, Counter>,
    delay: Family<QuantileLabels, SecondsGauge>,
    delay_min: Family<DirectionLabels, SecondsGauge>,
    delay_max: Family<DirectionLabels, SecondsGauge>,
    jitter: Family<DirectionLabels, SecondsGauge>,
    sessions: Family<StatusLabels, Counter>,
    running: Family<PeerLabels, Gauge>,
    hmac_failures: Family<PeerLabels, Counter>,
    /// 1 while the archive cannot be written.
    archive_degraded: Gauge,
    /// The STAMP reflectors' counts.
    stamp: crate::stamp_reflector::StampStats,
    /// The quantile label values last exported per peer, protocol and direction, so that a
    /// session reporting other quantiles does not leave the previous session's behind.
    quantiles: Mutex<std::collections::HashMap<DirectionLabels, Vec<String>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data under this lock is a plain map, consistent between calls: go on after a panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A quantile as a label value: the shortest decimal that reads back as the same number
/// (`0.5`, `0.99`, `1`).
fn quantile_label(q: f64) -> String {
    format!("{q}")
}

impl Metrics {
    /// The registry with every family registered (and no series yet but `ippm_build_info`).
    pub fn new() -> Arc<Self> {
        let mut m = Self {
            sent: Family::default(),
            received: Family::default(),
            lost: Family::default(),
            duplicate: Family::default(),
            reordered: Family::default(),
            delay: Family::default(),
            delay_min: Family::default(),
            delay_max: Family::default(),
            jitter: Family::default(),
            sessions: Family::default(),
            running: Family::default(),
            hmac_failures: Family::default(),
            archive_degraded: Gauge::default(),
            stamp: Default::default(),
            quantiles: Mutex::new(std::collections::HashMap::new()),
            registry: Registry::with_prefix(PREFIX),
        };
        m.registry.register(
            "build",
            "The ippm version that runs",
            Info::new(vec![(
                "version".to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            )]),
        );
        m.registry.register(
            "packets_sent",
            "Test packets sent, summed over measurement sessions",
            m.sent.clone(),
        );
        m.registry.register(
            "packets_received",
            "Test packets received, summed over measurement sessions",
            m.received.clone(),
        );
        m.registry.register(
            "packets_lost",
            "Test packets lost, summed over measurement sessions",
            m.lost.clone(),
        );
        m.registry.register(
            "packets_duplicate",
            "Duplicate test packets received, summed over measurement sessions",
            m.duplicate.clone(),
        );
        m.registry.register(
            "packets_reordered",
            "Reordered test packets (RFC 4737), summed over measurement sessions",
            m.reordered.clone(),
        );
        m.registry.register_with_unit(
            "delay",
            "Delay quantiles of the latest measurement session (per-session summary, not a histogram)",
            Unit::Seconds,
            m.delay.clone(),
        );
        m.registry.register_with_unit(
            "delay_min",
            "Smallest delay of the latest measurement session",
            Unit::Seconds,
            m.delay_min.clone(),
        );
        m.registry.register_with_unit(
            "delay_max",
            "Largest delay of the latest measurement session",
            Unit::Seconds,
            m.delay_max.clone(),
        );
        m.registry.register_with_unit(
            "jitter",
            "Delay variation (jitter) of the latest measurement session",
            Unit::Seconds,
            m.jitter.clone(),
        );
        m.registry.register(
            "sessions",
            "Measurement sessions ended, by how they ended (complete, failed, interrupted)",
            m.sessions.clone(),
        );
        m.registry.register(
            "sessions_running",
            "Measurement sessions running now",
            m.running.clone(),
        );
        m.registry.register(
            "hmac_failures",
            "Test packets dropped for a bad HMAC",
            m.hmac_failures.clone(),
        );
        m.registry.register(
            "archive_degraded",
            "1 while the archive cannot be opened or written (a full disk): measuring and \
             serving go on, results are not archived (counted as the dropped event \
             result_not_archived)",
            m.archive_degraded.clone(),
        );
        m.registry.register(
            "stamp_reflected",
            "STAMP and TWAMP-Light packets answered by the Session-Reflector",
            m.stamp.reflected.clone(),
        );
        m.registry.register(
            "stamp_sessions",
            "Stateful STAMP sessions the Session-Reflector holds now",
            m.stamp.sessions.clone(),
        );
        m.registry.register(
            "dropped",
            "Connections, sessions and test packets the daemon refused or dropped, by event",
            crate::counters::DROPPED.clone(),
        );
        Arc::new(m)
    }

    /// The counters a STAMP reflector updates (clones share the counts).
    pub fn stamp_stats(&self) -> crate::stamp_reflector::StampStats {
        self.stamp.clone()
    }

    /// Adds a session's counts and sets its delay figures (see [`SessionFigures`]).
    /// Quantiles outside 0..=1 and values that are not finite are left out.
    pub fn observe_session(&self, s: &SessionFigures) {
        let key = DirectionLabels {
            peer: s.peer.clone(),
            protocol: s.protocol.to_owned(),
            direction: s.direction.to_owned(),
        };
        for (family, n) in [
            (&self.sent, s.sent),
            (&self.received, s.received),
            (&self.lost, s.lost),
            (&self.duplicate, s.duplicates),
            (&self.reordered, s.reordered),
        ] {
            family.get_or_create(&key).inc_by(n);
        }

        let quantile_key = |quantile: String| QuantileLabels {
            peer: key.peer.clone(),
            protocol: key.protocol.clone(),
            direction: key.direction.clone(),
            quantile,
        };
        let mut now = Vec::new();
        for &(q, v) in &s.delay_quantiles_seconds {
            if !(0.0..=1.0).contains(&q) || !v.is_finite() {
                tracing::debug!(quantile = q, value = v, "metrics: delay quantile left out");
                continue;
            }
            let label = quantile_label(q);
            self.delay
                .get_or_create(&quantile_key(label.clone()))
                .set(v);
            now.push(label);
        }
        {
            let mut known = lock(&self.quantiles);
            if let Some(before) = known.get(&key) {
                for old in before.iter().filter(|q| !now.contains(q)) {
                    self.delay.remove(&quantile_key(old.clone()));
                }
            }
            known.insert(key.clone(), now);
        }

        for (family, v) in [
            (&self.delay_min, s.delay_min_seconds),
            (&self.delay_max, s.delay_max_seconds),
            (&self.jitter, s.jitter_seconds),
        ] {
            match v.filter(|v| v.is_finite()) {
                Some(v) => {
                    family.get_or_create(&key).set(v);
                }
                None => {
                    family.remove(&key);
                }
            }
        }
    }

    /// A measurement session with `peer` started.
    pub fn session_started(&self, peer: &str, protocol: &str) {
        self.running
            .get_or_create(&peer_labels(peer, protocol))
            .inc();
    }

    /// A measurement session with `peer` ended; `status` is `complete`, `failed` or
    /// `interrupted`. The running count never goes below zero.
    pub fn session_ended(&self, peer: &str, protocol: &str, status: &str) {
        self.sessions
            .get_or_create(&StatusLabels {
                peer: peer.to_owned(),
                protocol: protocol.to_owned(),
                status: status.to_owned(),
            })
            .inc();
        let running = self.running.get_or_create(&peer_labels(peer, protocol));
        let _ = running
            .inner()
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n: i64| {
                (n > 0).then(|| n - 1)
            });
    }

    /// A test packet from or to `peer` was dropped for a bad HMAC.
    pub fn hmac_failure(&self, peer: &str, protocol: &str) {
        self.hmac_failures
            .get_or_create(&peer_labels(peer, protocol))
            .inc();
    }

    /// Sets `ippm_archive_degraded`: 1 while the archive cannot be opened or written.
    pub fn set_archive_degraded(&self, degraded: bool) {
        self.archive_degraded.set(i64::from(degraded));
    }

    /// Counts one write that did not reach the archive (a session's start, a second's
    /// packets, its end) in `ippm_dropped_total{event="result_not_archived"}`. A full disk
    /// fails every write: `Some(n)` when a line is to be logged now, `n` being the writes lost
    /// since the last line that were counted but not logged (at most one line per ten
    /// seconds).
    pub fn result_not_archived(&self) -> Option<u64> {
        crate::counters::RESULT_NOT_ARCHIVED.note()
    }

    /// The OpenMetrics text exposition of every family (without IKE SA state).
    pub fn encode(&self) -> Result<String, MetricsError> {
        self.encode_as(Format::OpenMetrics, None)
    }

    /// The exposition in `format`; with `ike`, the IKE SAs' state as of now is included
    /// (`ippm_ike_sas`).
    pub fn encode_as(
        &self,
        format: Format,
        ike: Option<&IkeHandle>,
    ) -> Result<String, MetricsError> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode_registry(&mut out, &self.registry)?;
        if let Some(ike) = ike {
            encode_ike(&mut out, ike)?;
        }
        prometheus_client::encoding::text::encode_eof(&mut out)?;
        match format {
            Format::OpenMetrics => Ok(out),
            Format::PrometheusText => openmetrics_to_prometheus_text(&out),
        }
    }
}

fn peer_labels(peer: &str, protocol: &str) -> PeerLabels {
    PeerLabels {
        peer: peer.to_owned(),
        protocol: protocol.to_owned(),
    }
}

/// An IKE SA state name as a label value: lower case, words joined by `_`
/// (`IKE_SA_INIT sent` becomes `ike_sa_init_sent`, `half-open` becomes `half_open`).
fn state_label(state: &str) -> String {
    state
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Encodes `ippm_ike_sas` from the IKE SAs there are now, with the same encoder as the
/// registry (a registry made for this scrape).
fn encode_ike(out: &mut String, ike: &IkeHandle) -> Result<(), MetricsError> {
    let family: Family<IkeLabels, Gauge> = Family::default();
    // A connection with a configured peer is always there, established or not, so that
    // "no established SA" is a 0 to alert on rather than a missing series.
    for (name, addr) in ike.peer_connections() {
        let _ = family.get_or_create(&IkeLabels {
            peer: addr.ip().to_string(),
            connection: name,
            state: "established".to_owned(),
        });
    }
    for sa in ike.list() {
        let labels = match &sa.connection {
            Some(name) => IkeLabels {
                peer: sa.peer.ip().to_string(),
                connection: name.clone(),
                state: state_label(sa.state),
            },
            None => IkeLabels {
                peer: "unidentified".to_owned(),
                connection: String::new(),
                state: state_label(sa.state),
            },
        };
        family.get_or_create(&labels).inc();
    }
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register(
        "ike_sas",
        "IKE SAs by peer, connection and state, as of the scrape",
        family,
    );
    prometheus_client::encoding::text::encode_registry(out, &registry)?;
    Ok(())
}

/// The Prometheus text format 0.0.4 of an OpenMetrics text as `prometheus-client` writes it:
/// a counter family is named with its `_total` suffix, an info family becomes a gauge named
/// with `_info`, and the `# UNIT` and `# EOF` lines go. Samples and label escaping are the same
/// in both formats.
pub fn openmetrics_to_prometheus_text(om: &str) -> Result<String, MetricsError> {
    let mut out = String::with_capacity(om.len());
    // (HELP line of the family being read, waiting for its TYPE)
    let mut help: Option<(&str, &str)> = None;
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, typ) = rest
                .split_once(' ')
                .ok_or_else(|| MetricsError::Convert(format!("bad TYPE line {line:?}")))?;
            let (exposed, typ) = match typ {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (name.to_owned(), typ),
                "unknown" => (name.to_owned(), "untyped"),
                other => {
                    return Err(MetricsError::Convert(format!(
                        "type {other:?} has no Prometheus text form"
                    )));
                }
            };
            if let Some((help_name, text)) = help.take() {
                if help_name != name {
                    return Err(MetricsError::Convert(format!(
                        "HELP of {help_name:?} before TYPE of {name:?}"
                    )));
                }
                out.push_str(&format!("# HELP {exposed} {text}\n"));
            }
            out.push_str(&format!("# TYPE {exposed} {typ}\n"));
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
        } else if line.starts_with('#') {
            return Err(MetricsError::Convert(format!("unexpected line {line:?}")));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

/// Limits of the metrics HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Time allowed for a request's headers to arrive.
    pub header_timeout: Duration,
    /// Longest a connection may stay open (reading, answering, kept alive), so a client that
    /// stops reading cannot hold it.
    pub connection_timeout: Duration,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(60),
            max_connections: 64,
        }
    }
}

/// Serves `GET /metrics` (and `HEAD`; 404 elsewhere, 405 for other methods) on `listener`
/// until `stop` turns true, with the default [`ServeOptions`]. With `ike`, each scrape
/// includes the IKE SAs' state.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    ike: Option<IkeHandle>,
    stop: watch::Receiver<bool>,
) {
    serve_with(listener, metrics, ike, stop, ServeOptions::default()).await;
}

/// [`serve`] with explicit limits.
pub async fn serve_with(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    ike: Option<IkeHandle>,
    mut stop: watch::Receiver<bool>,
    opts: ServeOptions,
) {
    let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let mut conns = JoinSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        let accepted = tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
                continue;
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, from) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: wait a little rather than spin.
                tracing::warn!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%from, "metrics: too many connections; closing");
            continue;
        };
        let (metrics, ike) = (metrics.clone(), ike.clone());
        conns.spawn(async move {
            let _permit = permit;
            serve_connection(stream, from, metrics, ike, opts).await;
        });
    }
    conns.shutdown().await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    from: SocketAddr,
    metrics: Arc<Metrics>,
    ike: Option<IkeHandle>,
    opts: ServeOptions,
) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let response = respond(&req, &metrics, ike.as_ref());
        async move { Ok::<_, Infallible>(response) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout)
        .max_buf_size(16 * 1024);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(opts.connection_timeout, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%from, "metrics: connection: {e}"),
        Err(_) => tracing::debug!(%from, "metrics: connection open too long; closed"),
    }
}

fn respond(
    req: &Request<Incoming>,
    metrics: &Metrics,
    ike: Option<&IkeHandle>,
) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found; the metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    match metrics.encode_as(format, ike) {
        Ok(body) => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            r
        }
        Err(e) => {
            tracing::warn!("metrics: {e}");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics\n",
            )
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> SessionFigures {
        SessionFigures {
            peer: "192.0.2.1:862".into(),
            protocol: "twamp",
            direction: "round_trip",
            sent: 100,
            received: 97,
            lost: 3,
            duplicates: 1,
            reordered: 2,
            delay_quantiles_seconds: vec![(0.5, 0.0012), (0.9, 0.0021), (0.99, 0.0043)],
            delay_min_seconds: Some(0.0009),
            delay_max_seconds: Some(0.0051),
            jitter_seconds: Some(0.0002),
        }
    }

    const RT: &str = r#"{peer="192.0.2.1:862",protocol="twamp",direction="round_trip"}"#;

    #[test]
    fn names_types_and_values() -> Result<(), MetricsError> {
        let m = Metrics::new();
        // ippm_dropped_total is process-wide (other unit tests of this binary count events
        // into it), so it is left out of this comparison; counters.rs tests it. The archive
        // gauge and the STAMP reflector's two have no labels, so their one series is always
        // written: checked below.
        let empty: String = m
            .encode()?
            .lines()
            .filter(|l| {
                !l.contains("ippm_dropped")
                    && !l.contains("ippm_archive_degraded")
                    && !l.contains("ippm_stamp_")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        // A family without series is not written; the build information always is.
        assert_eq!(
            empty,
            format!(
                "# HELP ippm_build The ippm version that runs.\n# TYPE ippm_build info\n\
                 ippm_build_info{{version=\"{}\"}} 1\n# EOF\n",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert!(m.encode()?.contains("\nippm_archive_degraded 0\n"));
        let stamp = m.stamp_stats();
        stamp.reflected.inc_by(3);
        stamp.sessions.set(2);
        let text = m.encode()?;
        assert!(text.contains("\nippm_stamp_reflected_total 3\n"), "{text}");
        assert!(text.contains("\nippm_stamp_sessions 2\n"), "{text}");
        m.set_archive_degraded(true);
        assert!(m.encode()?.contains("\nippm_archive_degraded 1\n"));
        m.set_archive_degraded(false);
        m.observe_session(&figures());
        m.observe_session(&figures());
        m.session_started("192.0.2.1:862", "twamp");
        m.session_ended("192.0.2.1:862", "twamp", "complete");
        m.hmac_failure("192.0.2.1:862", "twamp");
        let text = m.encode()?;
        for (want, line) in [
            ("ippm_packets_sent_total", "200"),
            ("ippm_packets_received_total", "194"),
            ("ippm_packets_lost_total", "6"),
            ("ippm_packets_duplicate_total", "2"),
            ("ippm_packets_reordered_total", "4"),
            ("ippm_delay_min_seconds", "0.0009"),
            ("ippm_delay_max_seconds", "0.0051"),
            ("ippm_jitter_seconds", "0.0002"),
        ] {
            let sample = format!("{want}{RT} {line}\n");
            assert!(text.contains(&sample), "{sample} not in\n{text}");
        }
        assert!(text.contains(
            "ippm_delay_seconds{peer=\"192.0.2.1:862\",protocol=\"twamp\",direction=\"round_trip\",quantile=\"0.99\"} 0.0043\n"
        ));
        for (family, typ) in [
            ("ippm_packets_sent", "counter"),
            ("ippm_delay_seconds", "gauge"),
            ("ippm_sessions", "counter"),
            ("ippm_sessions_running", "gauge"),
            ("ippm_hmac_failures", "counter"),
            ("ippm_build", "info"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} {typ}\n")),
                "{family} in\n{text}"
            );
        }
        assert!(text.contains("# UNIT ippm_delay_seconds seconds\n"));
        assert!(text.contains(&format!(
            "ippm_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.ends_with("# EOF\n"));
        // One prefix only, everywhere.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                line.starts_with("ippm_") && !line.starts_with("ippm_ippm"),
                "{line}"
            );
        }
        Ok(())
    }

    #[test]
    fn latest_session_replaces_delay_figures() -> Result<(), MetricsError> {
        let m = Metrics::new();
        m.observe_session(&figures());
        let later = SessionFigures {
            delay_quantiles_seconds: vec![(0.5, 0.002)],
            delay_min_seconds: None,
            delay_max_seconds: Some(0.003),
            jitter_seconds: None,
            ..figures()
        };
        m.observe_session(&later);
        let text = m.encode()?;
        assert!(text.contains("quantile=\"0.5\"} 0.002\n"), "{text}");
        assert!(!text.contains("quantile=\"0.9\""), "{text}");
        assert!(!text.contains("quantile=\"0.99\""), "{text}");
        assert!(
            !text.contains(&format!("ippm_delay_min_seconds{RT}")),
            "{text}"
        );
        assert!(
            !text.contains(&format!("ippm_jitter_seconds{RT}")),
            "{text}"
        );
        assert!(text.contains(&format!("ippm_delay_max_seconds{RT} 0.003\n")));
        Ok(())
    }

    #[test]
    fn bad_quantiles_and_values_are_left_out() -> Result<(), MetricsError> {
        let m = Metrics::new();
        m.observe_session(&SessionFigures {
            delay_quantiles_seconds: vec![
                (1.5, 0.1),
                (-0.1, 0.1),
                (f64::NAN, 0.1),
                (0.5, f64::NAN),
                (1.0, 0.2),
            ],
            delay_min_seconds: Some(f64::INFINITY),
            ..figures()
        });
        let text = m.encode()?;
        let quantiles: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("ippm_delay_seconds{"))
            .collect();
        assert_eq!(
            quantiles,
            [
                r#"ippm_delay_seconds{peer="192.0.2.1:862",protocol="twamp",direction="round_trip",quantile="1"} 0.2"#
            ]
        );
        assert!(!text.contains("ippm_delay_min_seconds{"));
        Ok(())
    }

    #[test]
    fn sessions_running_and_ended() -> Result<(), MetricsError> {
        let m = Metrics::new();
        let peer = "[2001:db8::1]:861";
        m.session_started(peer, "owamp");
        m.session_started(peer, "owamp");
        m.session_ended(peer, "owamp", "complete");
        m.session_ended(peer, "owamp", "interrupted");
        m.session_ended(peer, "owamp", "failed");
        m.hmac_failure(peer, "owamp");
        m.hmac_failure(peer, "owamp");
        let text = m.encode()?;
        let l = r#"peer="[2001:db8::1]:861",protocol="owamp""#;
        // A third end without a start (a session that failed before it counted as started)
        // does not take the running count below zero.
        assert!(
            text.contains(&format!("ippm_sessions_running{{{l}}} 0\n")),
            "{text}"
        );
        for status in ["complete", "interrupted", "failed"] {
            assert!(text.contains(&format!(
                "ippm_sessions_total{{{l},status=\"{status}\"}} 1\n"
            )));
        }
        assert!(text.contains(&format!("ippm_hmac_failures_total{{{l}}} 2\n")));
        Ok(())
    }

    #[test]
    fn since_gives_increments() {
        let early = SessionFigures {
            sent: 40,
            received: 39,
            lost: 1,
            duplicates: 0,
            reordered: 1,
            ..figures()
        };
        let d = figures().since(&early);
        assert_eq!(
            (d.sent, d.received, d.lost, d.duplicates, d.reordered),
            (60, 58, 2, 1, 1)
        );
        assert_eq!(d.delay_quantiles_seconds, figures().delay_quantiles_seconds);
        assert_eq!(early.since(&figures()).sent, 0);
    }

    #[test]
    fn label_values_are_escaped() -> Result<(), MetricsError> {
        let m = Metrics::new();
        m.hmac_failure("we\"ird\\host\n:1", "twamp");
        let text = m.encode()?;
        assert!(
            text.contains(
                r#"ippm_hmac_failures_total{peer="we\"ird\\host\n:1",protocol="twamp"} 1"#
            ),
            "{text}"
        );
        Ok(())
    }

    #[test]
    fn prometheus_text_conversion() -> Result<(), MetricsError> {
        let m = Metrics::new();
        m.observe_session(&figures());
        let text = m.encode_as(Format::PrometheusText, None)?;
        assert!(text.contains("# HELP ippm_packets_sent_total Test packets sent"));
        assert!(text.contains("# TYPE ippm_packets_sent_total counter\n"));
        assert!(text.contains(&format!("ippm_packets_sent_total{RT} 100\n")));
        assert!(text.contains("# TYPE ippm_build_info gauge\n"));
        assert!(text.contains("# TYPE ippm_delay_seconds gauge\n"));
        assert!(!text.contains("# UNIT"));
        assert!(!text.contains("# EOF"));
        // Samples are the same in both formats.
        let samples = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(samples(&text), samples(&m.encode()?));
        Ok(())
    }

    #[test]
    fn help_texts_need_no_escaping() -> Result<(), MetricsError> {
        // The encoder writes HELP text as it is; ours must have nothing to escape.
        let text = Metrics::new().encode()?;
        for line in text.lines().filter(|l| l.starts_with("# HELP")) {
            assert!(!line.contains('\\') && !line.contains('"'), "{line}");
        }
        Ok(())
    }

    #[test]
    fn accept_header_negotiation() {
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(Format::from_accept(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::from_accept(None), Format::PrometheusText);
        assert_eq!(Format::from_accept(Some("*/*")), Format::PrometheusText);
        assert_eq!(
            Format::from_accept(Some("application/openmetrics-text;q=0, text/plain")),
            Format::PrometheusText
        );
    }

    #[test]
    fn ike_state_labels() {
        assert_eq!(state_label("IKE_SA_INIT sent"), "ike_sa_init_sent");
        assert_eq!(state_label("half-open"), "half_open");
        assert_eq!(state_label("established"), "established");
    }
}
