//! Continuous measurement in the daemon (what perfSONAR's powstream does for OWAMP, for both
//! protocols): each `[[measure]]` entry runs back-to-back sessions to its peer, writes packets
//! and a running summary to the archive while a session runs (every second), the summary and
//! the figures for Prometheus when it ends, and restarts with a growing delay while the peer
//! is down. The archive is not needed to measure: a session whose results cannot be written
//! (a full disk, see `archiving`) runs and reaches Prometheus all the same.
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
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use ippm_archive::{Direction, NewSession, Protocol, Record, SessionId, Status};
use ippm_net::ike::IkeHandle;
use ippm_net::metrics::Metrics;

use crate::figures::{owamp_figures, twamp_figures};
use ippm_net::owamp_client::{OwpingOptions, OwpingResult, owping};
use ippm_net::twamp_client::{Interval, Progress, TwpingOptions, TwpingResult, twping};
use ippm_proto::session::{IkeCredential, PassphraseStore, Secret, SecretStore};
use ippm_proto::{SecurityMode, Timestamp};
use serde::Deserialize;
use tokio::sync::watch;

/// How often a running session's packets and summary go to the archive.
const FLUSH: Duration = Duration::from_secs(1);
/// First and longest delay before trying a failed peer again.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// `[archive]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ArchiveSection {
    pub(crate) path: Option<PathBuf>,
    pub(crate) keep_records_days: Option<f64>,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsSection {
    pub(crate) listen: Option<SocketAddr>,
}

/// One `[[measure]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MeasureSection {
    peer: String,
    protocol: String,
    modes: Option<String>,
    identity: Option<String>,
    ike: Option<String>,
    rate: Option<f64>,
    schedule: Option<String>,
    session: Option<f64>,
    padding: Option<u32>,
    dscp: Option<u8>,
    loss_timeout: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IkeUse {
    Fallback,
    Initiate,
    Require,
    Off,
}

/// A checked `[[measure]]` entry.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// `host:port` as configured (the archive's and the metrics' peer label).
    label: String,
    server: SocketAddr,
    protocol: Protocol,
    modes: Vec<SecurityMode>,
    identity: Option<(Vec<u8>, Secret)>,
    ike: IkeUse,
    interval: Interval,
    count: u32,
    padding: Option<u32>,
    dscp: u8,
    loss_timeout: Duration,
    params: serde_json::Value,
}

impl Spec {
    /// Checks an entry (`n`: its position, for messages) against the key file.
    pub(crate) fn parse(
        m: &MeasureSection,
        n: usize,
        keys: &PassphraseStore,
    ) -> anyhow::Result<Self> {
        let what = format!("[[measure]] #{} ({})", n + 1, m.peer);
        let protocol = match m.protocol.as_str() {
            "twamp" => Protocol::Twamp,
            "owamp" => Protocol::Owamp,
            p => bail!("{what}: protocol = {p:?}: use \"twamp\" or \"owamp\""),
        };
        let port = if protocol == Protocol::Twamp {
            862
        } else {
            861
        };
        let server = crate::test_args::resolve(&m.peer, false, false, port)
            .with_context(|| format!("{what}: peer"))?;
        let ike = match m.ike.as_deref().unwrap_or("fallback") {
            "fallback" => IkeUse::Fallback,
            "initiate" => IkeUse::Initiate,
            "require" => IkeUse::Require,
            "off" => IkeUse::Off,
            x => bail!("{what}: ike = {x:?}: use fallback, initiate, require or off"),
        };
        let identity = match &m.identity {
            Some(id) => Some((
                id.as_bytes().to_vec(),
                keys.passphrase(id.as_bytes())
                    .with_context(|| format!("{what}: identity {id:?} is not in the key file"))?,
            )),
            None => None,
        };
        let letters = m.modes.clone().unwrap_or_else(|| {
            if identity.is_some() || ike != IkeUse::Off {
                "AEO".into()
            } else {
                "O".into()
            }
        });
        let mut modes = ippm_net::twamp_client::modes_from_letters(&letters)
            .with_context(|| format!("{what}: modes takes letters O, A, E, M"))?;
        if protocol == Protocol::Owamp {
            modes.retain(|m| *m != SecurityMode::Mixed);
        }
        if matches!(ike, IkeUse::Require | IkeUse::Initiate) {
            modes.retain(|m| *m != SecurityMode::Open);
        }
        if modes.is_empty() {
            bail!("{what}: no usable mode in {letters:?}");
        }
        let rate = m.rate.unwrap_or(10.0);
        if !(0.001..=100_000.0).contains(&rate) {
            bail!("{what}: rate = {rate}: between 0.001 and 100000 packets per second");
        }
        let gap = Duration::from_secs_f64(1.0 / rate);
        let interval = match m.schedule.as_deref().unwrap_or("exponential") {
            "exponential" => Interval::Exponential(gap),
            "fixed" => Interval::Fixed(gap),
            x => bail!("{what}: schedule = {x:?}: use \"exponential\" or \"fixed\""),
        };
        let session = m.session.unwrap_or(60.0);
        if !(1.0..=86_400.0).contains(&session) {
            bail!("{what}: session = {session}: between 1 and 86400 seconds");
        }
        let count = (session * rate).round().max(1.0) as u32;
        let loss_timeout = m.loss_timeout.unwrap_or(2.0);
        if !(0.0..=3600.0).contains(&loss_timeout) {
            bail!("{what}: loss_timeout = {loss_timeout}: between 0 and 3600 seconds");
        }
        let dscp = m.dscp.unwrap_or(0);
        if dscp > 63 {
            bail!("{what}: dscp = {dscp}: 0 to 63");
        }
        let params = serde_json::json!({
            "peer": m.peer,
            "protocol": m.protocol,
            "modes": letters,
            "identity": m.identity,
            "ike": m.ike.as_deref().unwrap_or("fallback"),
            "rate": rate,
            "schedule": m.schedule.as_deref().unwrap_or("exponential"),
            "count": count,
            "padding": m.padding,
            "dscp": dscp,
            "loss_timeout": loss_timeout,
        });
        Ok(Self {
            label: server.to_string(),
            server,
            protocol,
            modes,
            identity,
            ike,
            interval,
            count,
            padding: m.padding,
            dscp,
            loss_timeout: Duration::from_secs_f64(loss_timeout),
            params,
        })
    }
}

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
async fn credential(spec: &Spec, ike: Option<&IkeHandle>) -> Result<Option<IkeCredential>, String> {
    let to_cred =
        |(spis, secret): (ippm_ike::engine::Spis, zeroize::Zeroizing<Vec<u8>>)| IkeCredential {
            spi_i: spis.i,
            spi_r: spis.r,
            secret: Secret::new(secret.to_vec()),
        };
    let peer = spec.server.ip();
    match (spec.ike, ike) {
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
    let protocol = spec.protocol;
    let pname = if protocol == Protocol::Twamp {
        "twamp"
    } else {
        "owamp"
    };
    let ike = match credential(spec, sinks.ike.as_ref()).await {
        Ok(c) => c,
        Err(e) => {
            failed_before_start(spec, sinks, started, &e).await;
            return false;
        }
    };
    let identity = if matches!(spec.ike, IkeUse::Require | IkeUse::Initiate) {
        None
    } else {
        spec.identity.clone()
    };
    match protocol {
        Protocol::Twamp => twamp_session(spec, sinks, started, identity, ike, pname).await,
        Protocol::Owamp => owamp_session(spec, sinks, started, identity, ike, pname).await,
    }
}

/// A session that failed before its test began: archived as failed, counted.
async fn failed_before_start(spec: &Spec, sinks: &Sinks, started: i64, why: &str) {
    tracing::warn!(peer = %spec.label, "measurement session failed: {why}");
    let pname = if spec.protocol == Protocol::Twamp {
        "twamp"
    } else {
        "owamp"
    };
    sinks.metrics.session_ended(&spec.label, pname, "failed");
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
    pname: &'static str,
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
    sinks.metrics.session_ended(&spec.label, pname, "failed");
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

fn twamp_record(r: &ippm_net::twamp_client::Reply) -> Record {
    let f = &r.reflector;
    Record {
        direction: Direction::RoundTrip,
        seq: f.sender_seq,
        t1_unix_ns: ts_ns(f.sender_timestamp),
        t2_unix_ns: Some(ts_ns(f.receive_timestamp)),
        t3_unix_ns: Some(ts_ns(f.timestamp)),
        t4_unix_ns: Some(ts_ns(r.recv_time)),
        ttl: r.ttl,
    }
}

fn twamp_summary(r: &TwpingResult) -> (String, ippm_stats::TwoWayReport) {
    let tw = crate::report::twoway(r);
    let json = serde_json::to_string(&tw.json(r, false)).unwrap_or_default();
    (json, tw.report().clone())
}

/// The running summary of a session in progress, from its records so far.
fn twamp_partial_summary(r: &TwpingResult) -> (String, ippm_stats::TwoWayReport) {
    let tw = crate::report::twoway_from_records(r);
    let json = serde_json::to_string(&tw.json(r, false)).unwrap_or_default();
    (json, tw.report().clone())
}

async fn twamp_session(
    spec: &Spec,
    sinks: &Sinks,
    started: i64,
    identity: Option<(Vec<u8>, Secret)>,
    ike: Option<IkeCredential>,
    pname: &'static str,
) -> bool {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = TwpingOptions {
        server: spec.server,
        modes: spec.modes.clone(),
        identity,
        ike,
        count: spec.count,
        interval: spec.interval,
        padding: spec.padding,
        dscp: spec.dscp,
        loss_timeout: spec.loss_timeout,
        local: None,
        ports: None,
        max_count: ippm_proto::crypto::DEFAULT_MAX_COUNT,
        control_timeout: Duration::from_secs(10),
        rng: ippm_net::rng::os(),
        session_control: false,
        reflect: None,
        symmetrical: false,
        progress: Some(tx),
        // Every packet goes to the archive.
        keep_records: true,
    };
    let task = tokio::spawn(async move { twping(&opts).await });
    // The session as far as it went, for the running summary.
    let mut partial: Option<TwpingResult> = None;
    let mut id: Option<SessionId> = None;
    // Whether the test began (Start-Ack), archived or not.
    let mut started_test = false;
    let mut pending: Vec<Record> = Vec::new();
    let mut tick = tokio::time::interval(FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(Progress::Started { sid, mode }) => {
                    sinks.metrics.session_started(&spec.label, pname);
                    let new = NewSession {
                        peer: spec.label.clone(),
                        protocol: Protocol::Twamp,
                        mode: mode.to_string(),
                        sid: Some(hex(&sid)),
                        started_unix_ns: started,
                        params_json: spec.params.to_string(),
                    };
                    started_test = true;
                    id = sinks
                        .archive
                        .write("a session's start", move |a| a.start_session(&new))
                        .await;
                    partial = Some(TwpingResult {
                        mode,
                        sid,
                        local: spec.server,
                        reflector: spec.server,
                        padding: spec.padding.unwrap_or(0),
                        sent: Vec::new(),
                        replies: Vec::new(),
                        bad_replies: 0,
                        setup_time: Duration::ZERO,
                        extensions: ippm_proto::Modes::NONE,
                        reflect_mismatches: 0,
                        kernel_tx_stamps: 0,
                        report: ippm_stats::two_way(&[], &[]),
                        first_sent: None,
                        last_sent: None,
                    });
                }
                Some(Progress::Sent(s)) => {
                    if let Some(p) = &mut partial {
                        p.sent.push(s);
                    }
                }
                Some(Progress::Reply(r)) => {
                    pending.push(twamp_record(&r));
                    if let Some(p) = &mut partial {
                        p.replies.push(r);
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                if let Some(p) = &partial
                    && !pending.is_empty()
                {
                    let summary = id.map(|_| twamp_partial_summary(p).0);
                    flush(sinks, id, std::mem::take(&mut pending), summary).await;
                }
            }
        }
    }
    let result = match task.await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("measurement task: {e}");
            return false;
        }
    };
    match (result, started_test) {
        (Ok(r), true) => {
            // Packets that never came back: records without a receive time.
            let answered: std::collections::HashSet<u32> =
                r.replies.iter().map(|p| p.reflector.sender_seq).collect();
            pending.extend(
                r.sent
                    .iter()
                    .filter(|s| !answered.contains(&s.seq))
                    .map(|s| Record {
                        direction: Direction::RoundTrip,
                        seq: s.seq,
                        t1_unix_ns: ts_ns(s.t1()),
                        t2_unix_ns: None,
                        t3_unix_ns: None,
                        t4_unix_ns: None,
                        ttl: None,
                    }),
            );
            let (summary, report) = twamp_summary(&r);
            let batch = std::mem::take(&mut pending);
            match id {
                Some(id) => {
                    sinks
                        .archive
                        .write("a session's end", move |a| {
                            a.add_records(id, &batch, Some(&summary), now_ns())?;
                            a.finish_session(id, Status::Complete, None, Some(&summary), now_ns())
                        })
                        .await;
                }
                None => sinks.archive.skipped("a session's end"),
            }
            sinks
                .metrics
                .observe_session(&twamp_figures(&spec.label, &report));
            for _ in 0..r.bad_replies {
                sinks.metrics.hmac_failure(&spec.label, pname);
            }
            sinks.metrics.session_ended(&spec.label, pname, "complete");
            tracing::info!(
                peer = %spec.label, sid = %hex(&r.sid),
                sent = report.loss.sent, lost = report.loss.lost,
                "measurement session complete"
            );
            true
        }
        (Err(e), true) => {
            session_failed(
                spec,
                sinks,
                id,
                std::mem::take(&mut pending),
                e.to_string(),
                pname,
            )
            .await;
            false
        }
        // A result without a Start-Ack cannot be: twping reports Started before it runs.
        (Ok(_), false) => false,
        (Err(e), false) => {
            failed_before_start(spec, sinks, started, &e.to_string()).await;
            false
        }
    }
}

fn owamp_records(w: &ippm_net::owamp_client::OneWay, direction: Direction) -> Vec<Record> {
    let seen: std::collections::HashSet<u32> = w.records.iter().map(|r| r.seq).collect();
    let mut out: Vec<Record> = w
        .records
        .iter()
        .map(|r| Record {
            direction,
            seq: r.seq,
            t1_unix_ns: ts_ns(w.send_time(r)),
            t2_unix_ns: None,
            t3_unix_ns: None,
            t4_unix_ns: (r.recv_time != Timestamp::ZERO).then(|| ts_ns(r.recv_time)),
            ttl: Some(r.ttl),
        })
        .collect();
    out.extend(
        (0..w.next_seqno)
            .filter(|s| !seen.contains(s))
            .map(|seq| Record {
                direction,
                seq,
                t1_unix_ns: 0,
                t2_unix_ns: None,
                t3_unix_ns: None,
                t4_unix_ns: None,
                ttl: None,
            }),
    );
    out
}

async fn owamp_session(
    spec: &Spec,
    sinks: &Sinks,
    started: i64,
    identity: Option<(Vec<u8>, Secret)>,
    ike: Option<IkeCredential>,
    pname: &'static str,
) -> bool {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = OwpingOptions {
        server: spec.server,
        modes: spec.modes.clone(),
        identity,
        ike,
        progress: Some(tx),
        count: spec.count,
        interval: spec.interval,
        padding: spec.padding.unwrap_or(0),
        dscp: spec.dscp,
        loss_timeout: spec.loss_timeout,
        local: None,
        ports: None,
        max_count: ippm_proto::crypto::DEFAULT_MAX_COUNT,
        control_timeout: Duration::from_secs(10),
        rng: ippm_net::rng::os(),
        to_server: true,
        from_server: true,
    };
    sinks.metrics.session_started(&spec.label, pname);
    let task = tokio::spawn(async move { owping(&opts).await });
    // OWAMP's mode is known only with the result; the packets from the server come live.
    let new = NewSession {
        peer: spec.label.clone(),
        protocol: Protocol::Owamp,
        mode: spec
            .modes
            .first()
            .map_or_else(|| "-".into(), ToString::to_string),
        sid: None,
        started_unix_ns: started,
        params_json: spec.params.to_string(),
    };
    let id = sinks
        .archive
        .write("a session's start", move |a| a.start_session(&new))
        .await;
    let mut pending: Vec<Record> = Vec::new();
    let mut tick = tokio::time::interval(FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            rec = rx.recv() => match rec {
                Some(r) => pending.push(Record {
                    direction: Direction::FromServer,
                    seq: r.seq,
                    t1_unix_ns: ts_ns(r.send_time),
                    t2_unix_ns: None,
                    t3_unix_ns: None,
                    t4_unix_ns: Some(ts_ns(r.recv_time)),
                    ttl: Some(r.ttl),
                }),
                None => break,
            },
            _ = tick.tick() => {
                if !pending.is_empty() {
                    flush(sinks, id, std::mem::take(&mut pending), None).await;
                }
            }
        }
    }
    let result: Result<OwpingResult, _> = match task.await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("measurement task: {e}");
            return false;
        }
    };
    match result {
        Ok(r) => {
            // Every record as the session ended: replaces the live ones of that direction.
            let mut records = Vec::new();
            let mut figures = Vec::new();
            let mut summary = serde_json::Map::new();
            for (w, dir, name) in [
                (&r.to_server, Direction::ToServer, "to_server"),
                (&r.from_server, Direction::FromServer, "from_server"),
            ] {
                if let Some(w) = w {
                    let rep = crate::owping::report(w);
                    figures.push(owamp_figures(&spec.label, name, &rep));
                    summary.insert(name.into(), serde_json::to_value(&rep).unwrap_or_default());
                    let mut recs = owamp_records(w, dir);
                    if dir == Direction::FromServer {
                        // What arrived went to the archive as it came (all but the last
                        // second's, still pending); what did not arrive goes now.
                        recs.retain(|x| x.t4_unix_ns.is_none());
                        recs.append(&mut pending);
                    }
                    records.extend(recs);
                }
            }
            summary.insert("mode".into(), r.mode.to_string().into());
            let summary = serde_json::Value::Object(summary).to_string();
            let sid = r
                .to_server
                .as_ref()
                .or(r.from_server.as_ref())
                .map(|w| hex(&w.sid));
            match id {
                Some(id) => {
                    sinks
                        .archive
                        .write("a session's end", move |a| {
                            if let Some(sid) = sid {
                                a.set_sid(id, &sid)?;
                            }
                            a.add_records(id, &records, Some(&summary), now_ns())?;
                            a.finish_session(id, Status::Complete, None, Some(&summary), now_ns())
                        })
                        .await;
                }
                None => sinks.archive.skipped("a session's end"),
            }
            for f in &figures {
                sinks.metrics.observe_session(f);
            }
            sinks.metrics.session_ended(&spec.label, pname, "complete");
            true
        }
        Err(e) => {
            session_failed(
                spec,
                sinks,
                id,
                std::mem::take(&mut pending),
                e.to_string(),
                pname,
            )
            .await;
            false
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
