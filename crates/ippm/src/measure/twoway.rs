//! A two-way session of a `[[measure]]` entry, TWAMP or STAMP: one loop for both. The replies
//! go to the archive every second with a running summary computed from the records so far;
//! at the end the packets never answered, the final summary, and the figures for Prometheus.
//! What differs between the protocols is behind [`TwoWayRun`]: how the run starts, which
//! event begins its test (TWAMP's Start-Ack, STAMP's first packet), its archive row and its
//! summary document.

use std::collections::HashSet;
use std::time::Duration;

use ippm_archive::{Direction, NewSession, Record, SessionId, Status};
use ippm_net::stamp_client::{StampOptions, StampResult, stamp};
use ippm_net::twamp_client::{Progress, Reply, Sent, TwpingOptions, TwpingResult, twping};
use ippm_net::twoway::TwoWayResult;
use ippm_proto::session::{IkeCredential, Secret};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use super::config::ControlSpec;
use super::{FLUSH, Sinks, Spec, failed_before_start, flush, hex, now_ns, session_failed, ts_ns};
use crate::figures::two_way_figures;
use crate::report::{TwoWay, twoway, twoway_from_records};

/// A test that has begun: its archive row's mode and session id, and an empty result that
/// collects the packets for the running summary.
pub(super) struct Begun<R> {
    mode: String,
    sid: String,
    partial: R,
}

/// What the session loop needs of a two-way protocol.
pub(super) trait TwoWayRun {
    type Result: TwoWayResult + Send + 'static;
    type Error: std::fmt::Display + Send + 'static;
    /// Starts the run, reporting its packets to `progress`.
    fn start(
        &self,
        progress: UnboundedSender<Progress>,
    ) -> JoinHandle<Result<Self::Result, Self::Error>>;
    /// `Some` when `ev` is the event the test begins with.
    fn begins(&self, ev: &Progress) -> Option<Begun<Self::Result>>;
    /// Where a result keeps its packets sent and replies.
    fn records(r: &mut Self::Result) -> (&mut Vec<Sent>, &mut Vec<Reply>);
    /// The summary document the archive keeps, from `tw`, the statistics of `r`.
    fn summary(tw: &TwoWay, r: &Self::Result) -> String;
    /// The session's id, for the log.
    fn sid(r: &Self::Result) -> String;
    /// Replies dropped for a bad HMAC (or malformed).
    fn bad_replies(r: &Self::Result) -> u64;
    /// Why a run that went to its end still failed (`None`: it did not).
    fn failure(r: &Self::Result) -> Option<String>;
}

/// TWAMP: a twping run.
pub(super) struct Twamp {
    opts: TwpingOptions,
}

impl Twamp {
    pub(super) fn new(
        spec: &Spec,
        c: &ControlSpec,
        identity: Option<(Vec<u8>, Secret)>,
        ike: Option<IkeCredential>,
    ) -> Self {
        let opts = TwpingOptions {
            server: spec.server,
            modes: c.modes.clone(),
            identity,
            ike,
            count: spec.count,
            interval: spec.interval,
            padding: c.padding,
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
            progress: None,
            // Every packet goes to the archive.
            keep_records: true,
        };
        Self { opts }
    }
}

impl TwoWayRun for Twamp {
    type Result = TwpingResult;
    type Error = ippm_net::twamp_client::TwpingError;

    fn start(
        &self,
        progress: UnboundedSender<Progress>,
    ) -> JoinHandle<Result<TwpingResult, Self::Error>> {
        let mut opts = self.opts.clone();
        opts.progress = Some(progress);
        tokio::spawn(async move { twping(&opts).await })
    }

    fn begins(&self, ev: &Progress) -> Option<Begun<TwpingResult>> {
        let Progress::Started {
            sid,
            mode,
            local,
            reflector,
            setup_time,
        } = *ev
        else {
            return None;
        };
        // The run's own addresses and set-up time, as the one-off twping reports them.
        Some(Begun {
            mode: mode.to_string(),
            sid: hex(&sid),
            partial: TwpingResult {
                mode,
                sid,
                local,
                reflector,
                padding: self.opts.padding.unwrap_or(0),
                sent: Vec::new(),
                replies: Vec::new(),
                bad_replies: 0,
                setup_time,
                extensions: ippm_proto::Modes::NONE,
                reflect_mismatches: 0,
                kernel_tx_stamps: 0,
                report: ippm_stats::two_way(&[], &[]),
                first_sent: None,
                last_sent: None,
            },
        })
    }

    fn records(r: &mut TwpingResult) -> (&mut Vec<Sent>, &mut Vec<Reply>) {
        (&mut r.sent, &mut r.replies)
    }

    fn summary(tw: &TwoWay, r: &TwpingResult) -> String {
        serde_json::to_string(&tw.json(r, false)).unwrap_or_default()
    }

    fn sid(r: &TwpingResult) -> String {
        hex(&r.sid)
    }

    fn bad_replies(r: &TwpingResult) -> u64 {
        r.bad_replies
    }

    fn failure(_: &TwpingResult) -> Option<String> {
        // The control connection said the peer took the session: loss is a measurement.
        None
    }
}

/// STAMP: an `ippm stamp` run, its options checked with the entry.
pub(super) struct Stamp {
    pub(super) opts: StampOptions,
}

impl TwoWayRun for Stamp {
    type Result = StampResult;
    type Error = ippm_net::stamp_client::StampClientError;

    fn start(
        &self,
        progress: UnboundedSender<Progress>,
    ) -> JoinHandle<Result<StampResult, Self::Error>> {
        let mut opts = self.opts.clone();
        opts.progress = Some(progress);
        tokio::spawn(async move { stamp(&opts).await })
    }

    fn begins(&self, ev: &Progress) -> Option<Begun<StampResult>> {
        // No control exchange: the session begins with its first packet.
        if !matches!(ev, Progress::Sent(_)) {
            return None;
        }
        let o = &self.opts;
        Some(Begun {
            mode: o.mode.name().into(),
            sid: format!("ssid:{}", o.ssid),
            partial: StampResult {
                mode: o.mode,
                ssid: o.ssid,
                // Not known until the run ends; the running summary does without.
                local: o.reflector,
                reflector: o.reflector,
                packet_len: o.packet_len().unwrap_or(0),
                tlvs_sent: Vec::new(),
                hmac_tlv: false,
                report: ippm_stats::two_way(&[], &[]),
                first_sent: None,
                last_sent: None,
                sent: Vec::new(),
                replies: Vec::new(),
                bad: Default::default(),
                ssid_not_echoed: 0,
                reflector_stateful: None,
                tlvs: Default::default(),
                kernel_tx_stamps: 0,
            },
        })
    }

    fn records(r: &mut StampResult) -> (&mut Vec<Sent>, &mut Vec<Reply>) {
        (&mut r.sent, &mut r.replies)
    }

    fn summary(tw: &TwoWay, r: &StampResult) -> String {
        stamp_summary(tw, r).to_string()
    }

    fn sid(r: &StampResult) -> String {
        format!("ssid:{}", r.ssid)
    }

    fn bad_replies(r: &StampResult) -> u64 {
        r.bad_replies()
    }

    fn failure(r: &StampResult) -> Option<String> {
        // Without a control connection, nothing answered is all there is to tell a reflector
        // that is down (or refuses this key or mode) from loss: taken as a failure, so that
        // the next attempt backs off as for a peer that is down.
        if r.report.loss.received > 0 || r.report.loss.sent == 0 {
            return None;
        }
        Some(if r.bad.bad_hmac > 0 {
            format!(
                "no reply accepted: {} replies failed their HMAC check (does the reflector use \
                 this key and mode?)",
                r.bad.bad_hmac
            )
        } else {
            format!(
                "no reply to {} packets: is a STAMP reflector listening at {}, with this key and \
                 mode?",
                r.report.loss.sent, r.reflector
            )
        })
    }
}

/// A STAMP session's summary: `ippm stamp --json` without records, from the statistics so far
/// (a running session's result has not looked at the reflector's numbers yet).
fn stamp_summary(tw: &TwoWay, r: &StampResult) -> serde_json::Value {
    let stateful = r.reflector_stateful.or_else(|| {
        (!r.replies.is_empty()).then(|| {
            r.replies
                .iter()
                .any(|p| p.reflector.seq != p.reflector.sender_seq)
        })
    });
    crate::stamp::json_with(r, tw.report(), stateful, false).unwrap_or_default()
}

fn reply_record(r: &Reply) -> Record {
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

/// Packets that never came back: records without a receive time.
fn unanswered(r: &impl TwoWayResult) -> impl Iterator<Item = Record> + '_ {
    let answered: HashSet<u32> = r.replies().iter().map(|p| p.reflector.sender_seq).collect();
    r.sent()
        .iter()
        .filter(move |s| !answered.contains(&s.seq))
        .map(|s| Record {
            direction: Direction::RoundTrip,
            seq: s.seq,
            t1_unix_ns: ts_ns(s.t1()),
            t2_unix_ns: None,
            t3_unix_ns: None,
            t4_unix_ns: None,
            ttl: None,
        })
}

/// One two-way session; whether it completed.
pub(super) async fn session<P: TwoWayRun>(
    run: P,
    spec: &Spec,
    sinks: &Sinks,
    started: i64,
) -> bool {
    let pname = spec.protocol.as_str();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = run.start(tx);
    // The session as far as it went, for the running summary; `Some` once its test began.
    let mut partial: Option<P::Result> = None;
    let mut id: Option<SessionId> = None;
    let mut pending: Vec<Record> = Vec::new();
    let mut tick = tokio::time::interval(FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                if partial.is_none()
                    && let Some(b) = run.begins(&ev)
                {
                    sinks.metrics.session_started(&spec.label, pname);
                    let new = NewSession {
                        peer: spec.label.clone(),
                        protocol: spec.protocol,
                        mode: b.mode,
                        sid: Some(b.sid),
                        started_unix_ns: started,
                        params_json: spec.params.to_string(),
                    };
                    id = sinks
                        .archive
                        .write("a session's start", move |a| a.start_session(&new))
                        .await;
                    partial = Some(b.partial);
                }
                match ev {
                    Progress::Started { .. } => {}
                    Progress::Sent(s) => {
                        if let Some(p) = &mut partial {
                            P::records(p).0.push(s);
                        }
                    }
                    Progress::Reply(r) => {
                        pending.push(reply_record(&r));
                        if let Some(p) = &mut partial {
                            P::records(p).1.push(r);
                        }
                    }
                }
            }
            _ = tick.tick() => {
                if let Some(p) = &partial
                    && !pending.is_empty()
                {
                    let summary = id.map(|_| P::summary(&twoway_from_records(p), p));
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
    match (result, partial.is_some()) {
        (Ok(r), true) => {
            pending.extend(unanswered(&r));
            let tw = twoway(&r);
            let summary = P::summary(&tw, &r);
            let report = tw.report().clone();
            let failure = P::failure(&r);
            let (status, why) = match &failure {
                None => (Status::Complete, None),
                Some(why) => (Status::Failed, Some(why.clone())),
            };
            let batch = std::mem::take(&mut pending);
            match id {
                Some(id) => {
                    sinks
                        .archive
                        .write("a session's end", move |a| {
                            a.add_records(id, &batch, Some(&summary), now_ns())?;
                            a.finish_session(id, status, why.as_deref(), Some(&summary), now_ns())
                        })
                        .await;
                }
                None => sinks.archive.skipped("a session's end"),
            }
            // The packets went and were lost, answered or not: the figures say so.
            sinks
                .metrics
                .observe_session(&two_way_figures(&spec.label, pname, &report));
            for _ in 0..P::bad_replies(&r) {
                sinks.metrics.hmac_failure(&spec.label, pname);
            }
            let sid = P::sid(&r);
            let (sent, lost) = (report.loss.sent, report.loss.lost);
            match &failure {
                None => {
                    sinks.metrics.session_ended(&spec.label, pname, "complete");
                    tracing::info!(
                        peer = %spec.label, %sid, sent, lost, "measurement session complete"
                    );
                }
                Some(why) => {
                    sinks.metrics.session_ended(&spec.label, pname, "failed");
                    tracing::warn!(
                        peer = %spec.label, %sid, sent, lost, "measurement session failed: {why}"
                    );
                }
            }
            failure.is_none()
        }
        (Err(e), true) => {
            session_failed(spec, sinks, id, std::mem::take(&mut pending), e.to_string()).await;
            false
        }
        // TWAMP reports Started before it runs, STAMP its first packet: a result without
        // either sent nothing.
        (Ok(_), false) => {
            failed_before_start(
                spec,
                sinks,
                started,
                "the session ended before its test began",
            )
            .await;
            false
        }
        (Err(e), false) => {
            failed_before_start(spec, sinks, started, &e.to_string()).await;
            false
        }
    }
}
