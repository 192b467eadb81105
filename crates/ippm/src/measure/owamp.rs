//! An OWAMP session of a `[[measure]]` entry: the packets from the server go to the archive
//! as they come; both directions' records, the summary and the figures when it ends.

use std::time::Duration;

use ippm_archive::{Direction, NewSession, Protocol, Record, Status};
use ippm_net::owamp_client::{OwpingOptions, OwpingResult, owping};
use ippm_proto::session::{IkeCredential, Secret};

use super::config::ControlSpec;
use super::{FLUSH, Sinks, Spec, flush, hex, now_ns, session_failed, ts_ns};
use crate::figures::owamp_figures;

/// A direction's records for the archive: each one the receiver has, and a record without a
/// receive time for each packet the sender counted that it does not have, at the time the
/// schedule had it sent (the sender stamps only what it sends, so a lost packet that no
/// record names has no other send time).
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
            t4_unix_ns: (!r.is_lost()).then(|| ts_ns(r.recv_time)),
            ttl: Some(r.ttl),
        })
        .collect();
    let scheduled = w.scheduled_send_times(w.next_seqno);
    out.extend(
        (0..w.next_seqno)
            .filter(|s| !seen.contains(s))
            .filter_map(|seq| {
                let t1 = scheduled.get(seq as usize)?;
                Some(Record {
                    direction,
                    seq,
                    t1_unix_ns: ts_ns(*t1),
                    t2_unix_ns: None,
                    t3_unix_ns: None,
                    t4_unix_ns: None,
                    ttl: None,
                })
            }),
    );
    out
}

pub(super) async fn session(
    spec: &Spec,
    c: &ControlSpec,
    sinks: &Sinks,
    started: i64,
    identity: Option<(Vec<u8>, Secret)>,
    ike: Option<IkeCredential>,
) -> bool {
    let pname = spec.protocol.as_str();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = OwpingOptions {
        server: spec.server,
        modes: c.modes.clone(),
        identity,
        ike,
        progress: Some(tx),
        count: spec.count,
        interval: spec.interval,
        padding: c.padding.unwrap_or(0),
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
    // The packets from the server come live, but the mode the server chose is known only
    // with the result: until then the session's mode is "-" (not yet negotiated), never one
    // of the modes offered, which the server may not have taken.
    let new = NewSession {
        peer: spec.label.clone(),
        protocol: Protocol::Owamp,
        mode: "-".into(),
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
            let mode = r.mode.to_string();
            summary.insert("mode".into(), mode.clone().into());
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
                            a.set_mode(id, &mode)?;
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
            session_failed(spec, sinks, id, std::mem::take(&mut pending), e.to_string()).await;
            false
        }
    }
}
