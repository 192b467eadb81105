//! Continuous measurement in the daemon (what perfSONAR's powstream does for OWAMP, for every
//! protocol): each `[[measure]]` entry runs back-to-back sessions to its peer, writes packets
//! and a running summary to the archive while a session runs (every second), the summary and
//! the figures for Prometheus when it ends, and restarts with a growing delay while the peer
//! is down. The archive is not needed to measure: a session whose results cannot be written
//! (a full disk, see `archiving`) runs and reaches Prometheus all the same.
//!
//! TWAMP and STAMP sessions are one loop (`twoway`); OWAMP's is its own (`owamp`), the entries
//! are checked in `config`.
//!
//! ```toml
//! [archive]
//! path = "/var/lib/ippm/archive.db"
//! keep_records_days = 7              # per-packet records; sessions and summaries stay
//!
//! [metrics]
//! listen = "127.0.0.1:9862"          # Prometheus /metrics
//!
//! [[measure]]
//! peer = "192.0.2.2"                 # host or host:port (862 TWAMP, 861 OWAMP)
//! protocol = "twamp"                 # or "owamp"
//! modes = "AE"                       # letters; default AEO with a key source, else O
//! identity = "alice"                 # passphrase identity from the key file, or
//! ike = "fallback"                   # RFC 7717: fallback | initiate | require | off
//! rate = 10                          # packets per second (mean)
//! schedule = "exponential"           # or "fixed"
//! session = 60                       # seconds per session
//! padding = 0                        # octets (default: twping's / owping's)
//! dscp = 0
//! loss_timeout = 2                   # seconds
//!
//! [[measure]]
//! peer = "192.0.2.3"                 # host or host:port (862)
//! protocol = "stamp"                 # RFC 8762 Session-Sender to a Session-Reflector
//! key_file = "/etc/ippm/stamp.key"   # HMAC key in hex, mode 600
//! stamp_mode = "authenticated"       # or "unauthenticated"; default authenticated with a key
//! ssid = 1234                        # 1-65535; default random, the same for every session
//! tlvs = ["location", "timestamp-info", "direct-measurement", "follow-up"]  # RFC 8972
//! cos = 46                           # Class of Service TLV: DSCP asked for the replies
//! padding = 0                        # octets of an Extra Padding TLV (default: none)
//! rate = 10                          # rate, schedule, session, dscp, loss_timeout as above
//! ```
//!
//! A STAMP session is archived with protocol `stamp`, its mode (`unauthenticated` or
//! `authenticated`) and its SSID as the sid (`ssid:1234`). STAMP has no control connection to
//! fail: a session whose packets all went unanswered (a reflector that is down, or that does
//! not take this key or mode) is archived as failed, with its records and summary, and the
//! next one waits as for a peer that is down.

mod config;
mod owamp;
mod twoway;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ippm_archive::{NewSession, Record, SessionId, Status};
use ippm_net::ike::IkeHandle;
use ippm_net::metrics::Metrics;
use ippm_proto::Timestamp;
use ippm_proto::session::{IkeCredential, Secret};
use tokio::sync::watch;

pub(crate) use config::{ArchiveSection, MeasureSection, MetricsSection, Spec};
use config::{ControlSpec, IkeUse, Kind};

/// How often a running session's packets and summary go to the archive.
const FLUSH: Duration = Duration::from_secs(1);
/// First and longest delay before trying a failed peer again.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// What the runners share.
#[derive(Clone)]
pub(crate) struct Sinks {
    /// Where results go when they can: a session whose results cannot be archived (full
    /// disk) still runs, and still goes to the metrics.
    pub(crate) archive: Arc<crate::archiving::ArchiveSink>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) ike: Option<IkeHandle>,
}

fn unix_ns(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn now_ns() -> i64 {
    unix_ns(SystemTime::now())
}

fn ts_ns(t: Timestamp) -> i64 {
    t.to_unix()
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Runs one `[[measure]]` entry until `stop`.
pub(crate) async fn run(spec: Spec, sinks: Sinks, mut stop: watch::Receiver<bool>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        if *stop.borrow() {
            return;
        }
        let ok = tokio::select! {
            ok = one_session(&spec, &sinks) => ok,
            _ = stop.changed() => return,
        };
        if ok {
            backoff = BACKOFF_MIN;
            continue;
        }
        tracing::info!(peer = %spec.label, "next attempt in {backoff:?}");
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// The RFC 7717 credential for a session, as the entry says.
async fn credential(
    spec: &Spec,
    c: &ControlSpec,
    ike: Option<&IkeHandle>,
) -> Result<Option<IkeCredential>, String> {
    let to_cred =
        |(spis, secret): (ippm_ike::engine::Spis, zeroize::Zeroizing<Vec<u8>>)| IkeCredential {
            spi_i: spis.i,
            spi_r: spis.r,
            secret: Secret::new(secret.to_vec()),
        };
    let peer = spec.server.ip();
    match (c.ike, ike) {
        (IkeUse::Off, _) => Ok(None),
        (IkeUse::Fallback, None) => Ok(None),
        (IkeUse::Fallback, Some(h)) => Ok(h.ippm_secret_for_peer(peer).map(to_cred)),
        (IkeUse::Require | IkeUse::Initiate, None) => {
            Err("RFC 7717 needs IKE in the daemon ([ike])".into())
        }
        (IkeUse::Require, Some(h)) => h
            .ippm_secret_for_peer(peer)
            .map(|c| Some(to_cred(c)))
            .ok_or_else(|| format!("no IKE SA with {peer}")),
        (IkeUse::Initiate, Some(h)) => h
            .ippm_secret_initiate(peer, Duration::from_secs(20))
            .await
            .map(|c| Some(to_cred(c)))
            .map_err(|e| e.to_string()),
    }
}

/// One session; whether it completed.
async fn one_session(spec: &Spec, sinks: &Sinks) -> bool {
    let started = now_ns();
    let resolved = match spec.resolve().await {
        Ok(s) => s,
        Err(e) => {
            failed_before_start(spec, sinks, started, &e).await;
            return false;
        }
    };
    let spec = &resolved;
    let (c, owamp) = match &spec.kind {
        Kind::Stamp(opts) => {
            let run = twoway::Stamp {
                opts: (**opts).clone(),
            };
            return twoway::session(run, spec, sinks, started).await;
        }
        Kind::Twamp(c) => (c, false),
        Kind::Owamp(c) => (c, true),
    };
    let ike = match credential(spec, c, sinks.ike.as_ref()).await {
        Ok(c) => c,
        Err(e) => {
            failed_before_start(spec, sinks, started, &e).await;
            return false;
        }
    };
    let identity = if matches!(c.ike, IkeUse::Require | IkeUse::Initiate) {
        None
    } else {
        c.identity.clone()
    };
    if owamp {
        owamp::session(spec, c, sinks, started, identity, ike).await
    } else {
        let run = twoway::Twamp::new(spec, c, identity, ike);
        twoway::session(run, spec, sinks, started).await
    }
}

/// A session that failed before its test began: archived as failed, counted.
async fn failed_before_start(spec: &Spec, sinks: &Sinks, started: i64, why: &str) {
    tracing::warn!(peer = %spec.label, "measurement session failed: {why}");
    sinks
        .metrics
        .session_ended(&spec.label, spec.protocol.as_str(), "failed");
    let new = NewSession {
        peer: spec.label.clone(),
        protocol: spec.protocol,
        mode: "-".into(),
        sid: None,
        started_unix_ns: started,
        params_json: spec.params.to_string(),
    };
    let why = why.to_owned();
    sinks
        .archive
        .write("a failed session", move |a| {
            let id = a.start_session(&new)?;
            a.finish_session(id, Status::Failed, Some(&why), None, now_ns())
        })
        .await;
}

/// A session that failed once started: its last packets and the reason to the archive
/// (`id`: its archive entry, `None` if its start could not be archived).
async fn session_failed(
    spec: &Spec,
    sinks: &Sinks,
    id: Option<SessionId>,
    batch: Vec<Record>,
    why: String,
) {
    tracing::warn!(peer = %spec.label, "measurement session failed: {why}");
    match id {
        Some(id) => {
            sinks
                .archive
                .write("a session's end", move |a| {
                    a.add_records(id, &batch, None, now_ns())?;
                    a.finish_session(id, Status::Failed, Some(&why), None, now_ns())
                })
                .await;
        }
        None => sinks.archive.skipped("a session's end"),
    }
    sinks
        .metrics
        .session_ended(&spec.label, spec.protocol.as_str(), "failed");
}

/// A second's packets of a running session to the archive; with no archive entry for the
/// session (its start could not be archived), dropped and counted, so that they do not pile
/// up in memory while the disk is full.
async fn flush(sinks: &Sinks, id: Option<SessionId>, batch: Vec<Record>, summary: Option<String>) {
    match id {
        Some(id) => {
            sinks
                .archive
                .write("a session's packets", move |a| {
                    a.add_records(id, &batch, summary.as_deref(), now_ns())
                })
                .await;
        }
        None => sinks.archive.skipped("a session's packets"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
