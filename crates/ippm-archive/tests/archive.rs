//! The archive's API end to end: every field round trips, filters, the life of a session,
//! readers on a second connection while a session runs, pruning, exports, the schema version.

use std::time::Instant;

use ippm_archive::{
    Archive, ArchiveError, Direction, Export, Filter, NewSession, Protocol, RECORD_CSV_COLUMNS,
    Record, SESSION_CSV_COLUMNS, Status,
};
use serde_json::json;

const SEC: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * SEC;

fn twamp(peer: &str, started: i64) -> NewSession {
    NewSession {
        peer: peer.into(),
        protocol: Protocol::Twamp,
        mode: "authenticated".into(),
        sid: None,
        started_unix_ns: started,
        params_json: json!({"count": 100, "interval": 0.1, "padding": 0, "dscp": 46}).to_string(),
    }
}

fn owamp(peer: &str, started: i64) -> NewSession {
    NewSession {
        peer: peer.into(),
        protocol: Protocol::Owamp,
        mode: "open".into(),
        sid: Some("0a0b0c0d".into()),
        started_unix_ns: started,
        params_json: json!({"count": 10}).to_string(),
    }
}

fn rt(seq: u32, base: i64) -> Record {
    Record {
        direction: Direction::RoundTrip,
        seq,
        t1_unix_ns: base + i64::from(seq) * 1_000_000,
        t2_unix_ns: Some(base + i64::from(seq) * 1_000_000 + 40_000),
        t3_unix_ns: Some(base + i64::from(seq) * 1_000_000 + 45_000),
        t4_unix_ns: Some(base + i64::from(seq) * 1_000_000 + 90_000),
        ttl: Some(255),
    }
}

/// A TWAMP summary as `ippm twping --json` lays it out (the fields the CSV reads).
fn twamp_summary(sent: u64, lost: u64) -> serde_json::Value {
    json!({
        "protocol": "twamp",
        "loss": {"sent": sent, "received": sent - lost, "lost": lost,
                 "loss_ratio": lost as f64 / sent as f64, "forward_lost": lost, "backward_lost": 0},
        "duplicates": 1,
        "forward_duplicates": 1,
        "round_trip": {"count": sent - lost, "min_ns": 85000, "median_ns": 85000.0,
                       "max_ns": 91000, "mean_ns": 86000.5, "percentiles": []},
        "round_trip_jitter_ns": 120.25,
        "forward": {"count": 3, "min_ns": 40000, "median_ns": 41000.0, "max_ns": 42000,
                    "mean_ns": 41000.0, "percentiles": []},
        "backward": null
    })
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

#[test]
fn archive_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Archive>();
}

#[test]
fn every_field_round_trips() {
    let a = Archive::open_in_memory().unwrap();
    let mut new = owamp("[2001:db8::1]:861", T0);
    new.params_json = json!({"count": 10, "nested": {"a": [1, 2, 3]}, "s": "x\"y"}).to_string();
    let id = a.start_session(&new).unwrap();

    let s = a.session(id).unwrap().unwrap();
    assert_eq!(s.id, id);
    assert_eq!(s.peer, "[2001:db8::1]:861");
    assert_eq!(s.protocol, Protocol::Owamp);
    assert_eq!(s.mode, "open");
    assert_eq!(s.sid.as_deref(), Some("0a0b0c0d"));
    assert_eq!(s.status, Status::Running);
    assert_eq!(s.reason, None);
    assert_eq!(s.started_unix_ns, T0);
    assert_eq!(s.ended_unix_ns, None);
    assert_eq!(s.updated_unix_ns, T0);
    assert_eq!(
        s.params,
        json!({"count": 10, "nested": {"a": [1, 2, 3]}, "s": "x\"y"})
    );
    assert_eq!(s.summary, None);
    assert_eq!(s.records, 0);

    a.set_sid(id, "00112233445566778899aabbccddeeff").unwrap();
    // Every direction, every optional field present and absent, extreme values.
    let records = vec![
        Record {
            direction: Direction::FromServer,
            seq: u32::MAX,
            t1_unix_ns: i64::MIN,
            t2_unix_ns: None,
            t3_unix_ns: None,
            t4_unix_ns: None,
            ttl: None,
        },
        Record {
            direction: Direction::ToServer,
            seq: 0,
            t1_unix_ns: T0,
            t2_unix_ns: None,
            t3_unix_ns: None,
            t4_unix_ns: Some(i64::MAX),
            ttl: Some(0),
        },
        Record {
            direction: Direction::RoundTrip,
            seq: 1,
            t1_unix_ns: -5,
            t2_unix_ns: Some(-4),
            t3_unix_ns: Some(-3),
            t4_unix_ns: Some(-2),
            ttl: Some(u8::MAX),
        },
    ];
    let summary = json!({"to_server": {"loss": {"sent": 1, "lost": 0}}, "f": 1.5});
    a.add_records(id, &records, Some(&summary.to_string()), T0 + SEC)
        .unwrap();
    a.finish_session(
        id,
        Status::Failed,
        Some("peer closed the control connection"),
        None,
        T0 + 2 * SEC,
    )
    .unwrap();

    let s = a.session(id).unwrap().unwrap();
    assert_eq!(s.sid.as_deref(), Some("00112233445566778899aabbccddeeff"));
    assert_eq!(s.status, Status::Failed);
    assert_eq!(
        s.reason.as_deref(),
        Some("peer closed the control connection")
    );
    assert_eq!(s.ended_unix_ns, Some(T0 + 2 * SEC));
    assert_eq!(s.updated_unix_ns, T0 + 2 * SEC);
    // No final summary given: the running one stays.
    assert_eq!(s.summary, Some(summary));
    assert_eq!(s.records, 3);
    // (direction, seq) order: round trip, to server, from server.
    assert_eq!(
        a.records(id).unwrap(),
        vec![records[2].clone(), records[1].clone(), records[0].clone()]
    );
}

#[test]
fn duplicates_are_further_arrivals_in_order() {
    let a = Archive::open_in_memory().unwrap();
    let id = a.start_session(&twamp("h:862", T0)).unwrap();
    let first = rt(5, T0);
    let dup = Record {
        t4_unix_ns: Some(T0 + 5_000_000 + 95_000),
        ttl: Some(254),
        ..first.clone()
    };
    let dup2 = Record {
        t4_unix_ns: Some(T0 + 5_000_000 + 99_000),
        ..first.clone()
    };
    // The first arrival and a duplicate in one batch, a second duplicate in a later one,
    // with other sequence numbers around them.
    a.add_records(id, &[rt(6, T0), first.clone(), dup.clone()], None, T0)
        .unwrap();
    a.add_records(id, &[dup2.clone(), rt(4, T0)], None, T0)
        .unwrap();
    assert_eq!(
        a.records(id).unwrap(),
        vec![rt(4, T0), first, dup, dup2, rt(6, T0)]
    );
    assert_eq!(a.session(id).unwrap().unwrap().records, 5);
}

#[test]
fn session_life_and_errors() {
    let a = Archive::open_in_memory().unwrap();
    let id = a.start_session(&twamp("h:862", T0)).unwrap();
    let running = twamp_summary(10, 1).to_string();
    a.add_records(id, &[rt(0, T0), rt(1, T0)], Some(&running), T0 + SEC)
        .unwrap();
    let s = a.session(id).unwrap().unwrap();
    assert_eq!(s.summary, Some(twamp_summary(10, 1)));
    assert_eq!(s.updated_unix_ns, T0 + SEC);
    // A batch without a summary keeps the last one and still moves the update time.
    a.add_records(id, &[rt(2, T0)], None, T0 + 2 * SEC).unwrap();
    let s = a.session(id).unwrap().unwrap();
    assert_eq!(s.summary, Some(twamp_summary(10, 1)));
    assert_eq!(s.updated_unix_ns, T0 + 2 * SEC);
    assert_eq!(s.records, 3);

    assert!(matches!(
        a.finish_session(id, Status::Running, None, None, T0),
        Err(ArchiveError::FinishAsRunning)
    ));
    assert!(matches!(
        a.add_records(id, &[rt(3, T0)], Some("{not json"), T0),
        Err(ArchiveError::InvalidJson {
            what: "summary",
            ..
        })
    ));
    let mut bad = twamp("h:862", T0);
    bad.params_json = "[1,".into();
    assert!(matches!(
        a.start_session(&bad),
        Err(ArchiveError::InvalidJson {
            what: "test parameters",
            ..
        })
    ));
    // The failed batch wrote nothing.
    assert_eq!(a.records(id).unwrap().len(), 3);

    let fin = twamp_summary(10, 0).to_string();
    a.finish_session(id, Status::Complete, None, Some(&fin), T0 + 3 * SEC)
        .unwrap();
    let s = a.session(id).unwrap().unwrap();
    assert_eq!(s.status, Status::Complete);
    assert_eq!(s.summary, Some(twamp_summary(10, 0)));

    // An ended session takes no more records, summaries or endings.
    assert!(matches!(
        a.add_records(id, &[rt(3, T0)], Some(&running), T0 + 4 * SEC),
        Err(ArchiveError::NotRunning { id: i, status: Status::Complete }) if i == id
    ));
    assert!(matches!(
        a.finish_session(id, Status::Failed, Some("late"), None, T0 + 4 * SEC),
        Err(ArchiveError::NotRunning { .. })
    ));
    let s = a.session(id).unwrap().unwrap();
    assert_eq!(s.summary, Some(twamp_summary(10, 0)));
    assert_eq!(s.records, 3);
    assert_eq!(s.ended_unix_ns, Some(T0 + 3 * SEC));

    // Unknown sessions.
    assert!(matches!(
        a.add_records(999, &[rt(0, T0)], None, T0),
        Err(ArchiveError::NoSuchSession(999))
    ));
    assert!(matches!(
        a.set_sid(999, "00"),
        Err(ArchiveError::NoSuchSession(999))
    ));
    assert!(matches!(
        a.finish_session(999, Status::Complete, None, None, T0),
        Err(ArchiveError::NoSuchSession(999))
    ));
    assert!(matches!(
        a.records(999),
        Err(ArchiveError::NoSuchSession(999))
    ));
    assert_eq!(a.session(999).unwrap(), None);
}

#[test]
fn mark_interrupted_only_touches_running_sessions() {
    let a = Archive::open_in_memory().unwrap();
    let done = a.start_session(&twamp("a:862", T0)).unwrap();
    a.finish_session(done, Status::Complete, None, None, T0 + SEC)
        .unwrap();
    let left = a.start_session(&twamp("b:862", T0)).unwrap();
    a.add_records(left, &[rt(0, T0)], Some("{\"n\":1}"), T0 + 5 * SEC)
        .unwrap();
    let left2 = a.start_session(&owamp("c:861", T0 + SEC)).unwrap();

    assert_eq!(a.mark_interrupted(T0 + 100 * SEC).unwrap(), 2);
    let s = a.session(left).unwrap().unwrap();
    assert_eq!(s.status, Status::Interrupted);
    assert_eq!(
        s.reason.as_deref(),
        Some("daemon stopped before the session ended")
    );
    // Ended at its last write; updated now; what it recorded is kept.
    assert_eq!(s.ended_unix_ns, Some(T0 + 5 * SEC));
    assert_eq!(s.updated_unix_ns, T0 + 100 * SEC);
    assert_eq!(s.summary, Some(json!({"n": 1})));
    assert_eq!(a.records(left).unwrap(), vec![rt(0, T0)]);
    assert_eq!(
        a.session(left2).unwrap().unwrap().ended_unix_ns,
        Some(T0 + SEC)
    );
    let d = a.session(done).unwrap().unwrap();
    assert_eq!(d.status, Status::Complete);
    assert_eq!(d.reason, None);
    assert_eq!(d.updated_unix_ns, T0 + SEC);
    assert_eq!(a.mark_interrupted(T0 + 200 * SEC).unwrap(), 0);
}

#[test]
fn filters_select_and_order_newest_first() {
    let a = Archive::open_in_memory().unwrap();
    let s1 = a.start_session(&twamp("a:862", T0)).unwrap();
    let s2 = a.start_session(&owamp("a:861", T0 + SEC)).unwrap();
    let s3 = a.start_session(&twamp("b:862", T0 + 2 * SEC)).unwrap();
    let s4 = a.start_session(&twamp("a:862", T0 + 3 * SEC)).unwrap();
    // Same start as s4: the later id is newer.
    let s5 = a.start_session(&owamp("b:861", T0 + 3 * SEC)).unwrap();
    a.finish_session(s1, Status::Complete, None, None, T0 + 10 * SEC)
        .unwrap();
    a.finish_session(s3, Status::Failed, Some("x"), None, T0 + 10 * SEC)
        .unwrap();

    let ids = |f: Filter| -> Vec<i64> { a.sessions(&f).unwrap().iter().map(|s| s.id).collect() };
    assert_eq!(ids(Filter::default()), vec![s5, s4, s3, s2, s1]);
    assert_eq!(
        ids(Filter {
            peer: Some("a:862".into()),
            ..Filter::default()
        }),
        vec![s4, s1]
    );
    assert_eq!(
        ids(Filter {
            protocol: Some(Protocol::Owamp),
            ..Filter::default()
        }),
        vec![s5, s2]
    );
    assert_eq!(
        ids(Filter {
            since_unix_ns: Some(T0 + SEC),
            until_unix_ns: Some(T0 + 3 * SEC),
            ..Filter::default()
        }),
        vec![s3, s2]
    );
    assert_eq!(
        ids(Filter {
            status: Some(Status::Running),
            ..Filter::default()
        }),
        vec![s5, s4, s2]
    );
    assert_eq!(
        ids(Filter {
            status: Some(Status::Failed),
            ..Filter::default()
        }),
        vec![s3]
    );
    assert_eq!(
        ids(Filter {
            limit: Some(2),
            ..Filter::default()
        }),
        vec![s5, s4]
    );
    assert_eq!(
        ids(Filter {
            peer: Some("a:862".into()),
            protocol: Some(Protocol::Twamp),
            status: Some(Status::Running),
            since_unix_ns: Some(T0),
            until_unix_ns: Some(T0 + 4 * SEC),
            limit: Some(10),
        }),
        vec![s4]
    );
    assert_eq!(
        ids(Filter {
            peer: Some("nobody:1".into()),
            ..Filter::default()
        }),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids(Filter {
            limit: Some(0),
            ..Filter::default()
        }),
        Vec::<i64>::new()
    );
}

#[test]
fn prune_drops_old_records_and_keeps_sessions() {
    let a = Archive::open_in_memory().unwrap();
    let old = a.start_session(&twamp("a:862", T0)).unwrap();
    a.add_records(old, &[rt(0, T0), rt(1, T0)], None, T0)
        .unwrap();
    a.finish_session(
        old,
        Status::Complete,
        None,
        Some(&twamp_summary(2, 0).to_string()),
        T0 + SEC,
    )
    .unwrap();
    let recent = a.start_session(&twamp("a:862", T0 + 10 * SEC)).unwrap();
    a.add_records(recent, &[rt(0, T0)], None, T0).unwrap();
    a.finish_session(recent, Status::Complete, None, None, T0 + 20 * SEC)
        .unwrap();
    // A running session that started long ago keeps its records whatever the cut-off.
    let running = a.start_session(&twamp("b:862", T0 - 100 * SEC)).unwrap();
    a.add_records(running, &[rt(0, T0), rt(1, T0), rt(2, T0)], None, T0)
        .unwrap();

    assert_eq!(a.prune_records(T0 + 15 * SEC).unwrap(), 2);
    let o = a.session(old).unwrap().unwrap();
    assert_eq!(o.records, 0);
    assert_eq!(o.summary, Some(twamp_summary(2, 0)));
    assert_eq!(o.status, Status::Complete);
    assert_eq!(a.records(old).unwrap(), vec![]);
    assert_eq!(a.records(recent).unwrap().len(), 1);
    assert_eq!(a.records(running).unwrap().len(), 3);
    // Again: nothing more to delete at that cut-off.
    assert_eq!(a.prune_records(T0 + 15 * SEC).unwrap(), 0);
    assert_eq!(a.prune_records(i64::MAX).unwrap(), 1);
    assert_eq!(a.records(running).unwrap().len(), 3);
    assert_eq!(a.sessions(&Filter::default()).unwrap().len(), 3);
}

#[test]
fn json_export_parses_back() {
    let a = Archive::open_in_memory().unwrap();
    let t = a.start_session(&twamp("a:862", T0)).unwrap();
    let recs = vec![rt(0, T0), rt(1, T0)];
    a.add_records(t, &recs, None, T0).unwrap();
    a.finish_session(
        t,
        Status::Complete,
        None,
        Some(&twamp_summary(2, 0).to_string()),
        T0 + SEC,
    )
    .unwrap();
    let o = a.start_session(&owamp("b:861", T0 + SEC)).unwrap();
    let empty = a.start_session(&owamp("c:861", T0 - SEC)).unwrap();

    let mut out = Vec::new();
    a.export_json(&Filter::default(), true, &mut out).unwrap();
    let raw: serde_json::Value = serde_json::from_slice(&out).unwrap();
    // The documented shape: {"sessions":[{...session..., "records":[...]}]}
    let first = &raw["sessions"][0];
    assert_eq!(first["id"], json!(o));
    assert_eq!(first["protocol"], json!("owamp"));
    assert_eq!(first["status"], json!("running"));
    assert_eq!(first["record_count"], json!(0));
    assert_eq!(first["records"], json!([]));
    assert_eq!(raw["sessions"][1]["records"][0]["direction"], "round_trip");
    assert_eq!(raw["sessions"][1]["summary"]["loss"]["sent"], json!(2));

    let parsed: Export = serde_json::from_slice(&out).unwrap();
    let ids: Vec<i64> = parsed.sessions.iter().map(|s| s.session.id).collect();
    assert_eq!(ids, vec![o, t, empty]);
    assert_eq!(parsed.sessions[1].session, a.session(t).unwrap().unwrap());
    assert_eq!(parsed.sessions[1].records.as_deref(), Some(&recs[..]));
    assert_eq!(parsed.sessions[0].session, a.session(o).unwrap().unwrap());

    // Without records: no "records" key at all; filtered.
    let mut out = Vec::new();
    a.export_json(
        &Filter {
            protocol: Some(Protocol::Twamp),
            ..Filter::default()
        },
        false,
        &mut out,
    )
    .unwrap();
    let raw: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(raw["sessions"].as_array().unwrap().len(), 1);
    assert!(raw["sessions"][0].get("records").is_none());
    let parsed: Export = serde_json::from_slice(&out).unwrap();
    assert_eq!(parsed.sessions[0].records, None);
    assert_eq!(parsed.sessions[0].session.records, 2);

    // An empty selection is still one document.
    let mut out = Vec::new();
    a.export_json(
        &Filter {
            peer: Some("none:1".into()),
            ..Filter::default()
        },
        true,
        &mut out,
    )
    .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out).unwrap(),
        json!({"sessions": []})
    );
}

fn read_csv(bytes: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_reader(bytes);
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|row| row.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

#[test]
fn session_csv_has_the_documented_columns() {
    let a = Archive::open_in_memory().unwrap();
    let t = a.start_session(&twamp("a:862", T0)).unwrap();
    a.set_sid(t, "ff00").unwrap();
    a.add_records(t, &[rt(0, T0)], None, T0).unwrap();
    a.finish_session(
        t,
        Status::Complete,
        Some("done, \"ok\""),
        Some(&twamp_summary(100, 3).to_string()),
        T0 + SEC,
    )
    .unwrap();
    let o = a.start_session(&owamp("[::1]:861", T0 + SEC)).unwrap();
    let ow = json!({
        "protocol": "owamp",
        "to_server": {"loss": {"sent": 10, "received": 9, "lost": 1, "loss_ratio": 0.1},
                      "duplicates": 0, "delay": {"min_ns": -5, "median_ns": 7.5, "mean_ns": 8.0,
                      "max_ns": 20}, "jitter_ns": 1.25},
        "from_server": {"loss": {"sent": 10, "received": 10, "lost": 0, "loss_ratio": 0.0},
                        "duplicates": 2, "delay": null, "jitter_ns": null}
    });
    a.add_records(o, &[], Some(&ow.to_string()), T0 + 2 * SEC)
        .unwrap();

    let mut out = Vec::new();
    a.export_csv(&Filter::default(), &mut out).unwrap();
    let (header, rows) = read_csv(&out);
    assert_eq!(header, SESSION_CSV_COLUMNS);
    assert_eq!(header.len(), 38);
    assert_eq!(rows.len(), 2);
    let col = |row: &Vec<String>, name: &str| -> String {
        let i = header.iter().position(|h| h == name).unwrap();
        row[i].clone()
    };

    let ow_row = &rows[0];
    assert_eq!(col(ow_row, "id"), o.to_string());
    assert_eq!(col(ow_row, "peer"), "[::1]:861");
    assert_eq!(col(ow_row, "protocol"), "owamp");
    assert_eq!(col(ow_row, "status"), "running");
    assert_eq!(col(ow_row, "ended_unix_ns"), "");
    assert_eq!(col(ow_row, "updated_unix_ns"), (T0 + 2 * SEC).to_string());
    assert_eq!(col(ow_row, "rt_sent"), "");
    assert_eq!(col(ow_row, "fwd_sent"), "10");
    assert_eq!(col(ow_row, "fwd_lost"), "1");
    assert_eq!(col(ow_row, "fwd_loss_ratio"), "0.1");
    assert_eq!(col(ow_row, "fwd_delay_min_ns"), "-5");
    assert_eq!(col(ow_row, "fwd_delay_median_ns"), "7.5");
    assert_eq!(col(ow_row, "fwd_delay_mean_ns"), "8.0");
    assert_eq!(col(ow_row, "fwd_delay_max_ns"), "20");
    assert_eq!(col(ow_row, "fwd_jitter_ns"), "1.25");
    assert_eq!(col(ow_row, "bwd_lost"), "0");
    assert_eq!(col(ow_row, "bwd_duplicates"), "2");
    assert_eq!(col(ow_row, "bwd_delay_median_ns"), "");
    assert_eq!(col(ow_row, "bwd_jitter_ns"), "");

    let tw = &rows[1];
    let expected_start = [
        t.to_string(),
        "a:862".into(),
        "twamp".into(),
        "authenticated".into(),
        "ff00".into(),
        "complete".into(),
        "done, \"ok\"".into(),
        T0.to_string(),
        (T0 + SEC).to_string(),
        (T0 + SEC).to_string(),
        "1".into(),
    ];
    assert_eq!(tw[..11], expected_start);
    assert_eq!(col(tw, "rt_sent"), "100");
    assert_eq!(col(tw, "rt_lost"), "3");
    assert_eq!(col(tw, "rt_loss_ratio"), "0.03");
    assert_eq!(col(tw, "rt_duplicates"), "1");
    assert_eq!(col(tw, "rt_delay_min_ns"), "85000");
    assert_eq!(col(tw, "rt_delay_median_ns"), "85000.0");
    assert_eq!(col(tw, "rt_delay_mean_ns"), "86000.5");
    assert_eq!(col(tw, "rt_delay_max_ns"), "91000");
    assert_eq!(col(tw, "rt_jitter_ns"), "120.25");
    assert_eq!(col(tw, "fwd_sent"), "100");
    assert_eq!(col(tw, "fwd_lost"), "3");
    assert_eq!(col(tw, "fwd_duplicates"), "1");
    assert_eq!(col(tw, "fwd_delay_min_ns"), "40000");
    assert_eq!(col(tw, "bwd_lost"), "0");
    assert_eq!(col(tw, "bwd_delay_min_ns"), "");
}

#[test]
fn record_csv_has_the_documented_columns() {
    let a = Archive::open_in_memory().unwrap();
    let id = a.start_session(&owamp("b:861", T0)).unwrap();
    let recs = [
        Record {
            direction: Direction::ToServer,
            seq: 0,
            t1_unix_ns: T0,
            t2_unix_ns: None,
            t3_unix_ns: None,
            t4_unix_ns: Some(T0 + 1234),
            ttl: Some(62),
        },
        Record {
            direction: Direction::ToServer,
            seq: 1,
            t1_unix_ns: T0 + 10,
            t2_unix_ns: None,
            t3_unix_ns: None,
            t4_unix_ns: None,
            ttl: None,
        },
        Record {
            direction: Direction::FromServer,
            seq: 0,
            t1_unix_ns: T0,
            t2_unix_ns: None,
            t3_unix_ns: None,
            t4_unix_ns: Some(T0 - 7),
            ttl: Some(255),
        },
    ];
    a.add_records(id, &recs, None, T0).unwrap();
    let mut out = Vec::new();
    a.export_records_csv(id, &mut out).unwrap();
    let (header, rows) = read_csv(&out);
    assert_eq!(header, RECORD_CSV_COLUMNS);
    let t0 = T0.to_string();
    assert_eq!(
        rows,
        vec![
            vec![
                "to_server".to_string(),
                "0".into(),
                t0.clone(),
                "".into(),
                "".into(),
                (T0 + 1234).to_string(),
                "62".into(),
                "1234".into()
            ],
            vec![
                "to_server".to_string(),
                "1".into(),
                (T0 + 10).to_string(),
                "".into(),
                "".into(),
                "".into(),
                "".into(),
                "".into()
            ],
            vec![
                "from_server".to_string(),
                "0".into(),
                t0,
                "".into(),
                "".into(),
                (T0 - 7).to_string(),
                "255".into(),
                "-7".into()
            ],
        ]
    );
    let tw = a.start_session(&twamp("a:862", T0)).unwrap();
    a.add_records(tw, &[rt(3, T0)], None, T0).unwrap();
    let mut out = Vec::new();
    a.export_records_csv(tw, &mut out).unwrap();
    let (_, rows) = read_csv(&out);
    // (t4 - t1) - (t3 - t2) = 90000 - 5000
    assert_eq!(rows[0][0], "round_trip");
    assert_eq!(rows[0][7], "85000");
    assert!(matches!(
        a.export_records_csv(12345, &mut Vec::new()),
        Err(ArchiveError::NoSuchSession(12345))
    ));
}

#[test]
fn open_creates_directories_and_reopens() {
    let dir = tmp();
    let path = dir.path().join("var/lib/ippm/archive.sqlite");
    let id = {
        let a = Archive::open(&path).unwrap();
        assert_eq!(a.path(), Some(path.as_path()));
        let id = a.start_session(&twamp("a:862", T0)).unwrap();
        a.add_records(id, &[rt(0, T0)], Some("{}"), T0).unwrap();
        id
    };
    let a = Archive::open(&path).unwrap();
    assert_eq!(a.records(id).unwrap(), vec![rt(0, T0)]);
    let raw = rusqlite::Connection::open(&path).unwrap();
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = raw
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
    // Cascade: deleting a session by hand takes its records with it (foreign keys on).
    drop(a);
    raw.execute_batch("PRAGMA foreign_keys = ON; DELETE FROM sessions;")
        .unwrap();
    let n: i64 = raw
        .query_row("SELECT count(*) FROM records", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tmp();
    let path = dir.path().join("a.sqlite");
    drop(Archive::open(&path).unwrap());
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("PRAGMA user_version = 7").unwrap();
    drop(raw);
    assert!(matches!(
        Archive::open(&path),
        Err(ArchiveError::SchemaTooNew {
            found: 7,
            supported: 2
        })
    ));
}

#[test]
fn a_reader_sees_a_running_session_without_blocking_the_writer() {
    let dir = tmp();
    let path = dir.path().join("a.sqlite");
    let writer = Archive::open(&path).unwrap();
    let id = writer.start_session(&twamp("a:862", T0)).unwrap();
    let batch1: Vec<Record> = (0..50).map(|s| rt(s, T0)).collect();
    writer
        .add_records(
            id,
            &batch1,
            Some(&twamp_summary(50, 0).to_string()),
            T0 + SEC,
        )
        .unwrap();

    // A second connection (as the CLI would open) sees the session mid-way.
    let reader = Archive::open(&path).unwrap();
    let s = reader.session(id).unwrap().unwrap();
    assert_eq!(s.status, Status::Running);
    assert_eq!(s.records, 50);
    assert_eq!(s.summary, Some(twamp_summary(50, 0)));
    assert_eq!(s.updated_unix_ns, T0 + SEC);
    assert_eq!(reader.records(id).unwrap(), batch1);

    // A reader holding a read transaction open does not stop the writer (WAL), and keeps
    // seeing its snapshot until it ends the transaction.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("BEGIN").unwrap();
    let count = |c: &rusqlite::Connection| -> i64 {
        c.query_row("SELECT count(*) FROM records", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(count(&raw), 50);
    let batch2: Vec<Record> = (50..100).map(|s| rt(s, T0)).collect();
    let started = Instant::now();
    writer
        .add_records(
            id,
            &batch2,
            Some(&twamp_summary(100, 0).to_string()),
            T0 + 2 * SEC,
        )
        .unwrap();
    assert!(
        started.elapsed().as_secs() < 2,
        "the writer waited for the reader"
    );
    assert_eq!(count(&raw), 50);
    raw.execute_batch("COMMIT").unwrap();
    assert_eq!(count(&raw), 100);

    let s = reader.session(id).unwrap().unwrap();
    assert_eq!(s.records, 100);
    assert_eq!(s.summary, Some(twamp_summary(100, 0)));
    writer
        .finish_session(id, Status::Complete, None, None, T0 + 3 * SEC)
        .unwrap();
    assert_eq!(
        reader.session(id).unwrap().unwrap().status,
        Status::Complete
    );
    // The reader's export is the same running state the writer left.
    let mut out = Vec::new();
    reader
        .export_json(&Filter::default(), true, &mut out)
        .unwrap();
    let e: Export = serde_json::from_slice(&out).unwrap();
    assert_eq!(e.sessions[0].records.as_ref().map(Vec::len), Some(100));
}

#[test]
fn insert_rate_of_100k_records() {
    const N: u32 = 100_000;
    let dir = tmp();
    let a = Archive::open(&dir.path().join("rate.sqlite")).unwrap();
    let id = a.start_session(&twamp("a:862", T0)).unwrap();
    let records: Vec<Record> = (0..N).map(|s| rt(s, T0)).collect();
    let summary = twamp_summary(u64::from(N), 0).to_string();
    let started = Instant::now();
    a.add_records(id, &records, Some(&summary), T0).unwrap();
    let one_batch = started.elapsed();

    // The daemon's way: many small batches (one per flush), each its own transaction.
    let id2 = a.start_session(&twamp("a:862", T0)).unwrap();
    let started = Instant::now();
    for chunk in records.chunks(1000) {
        a.add_records(id2, chunk, Some(&summary), T0).unwrap();
    }
    let batches = started.elapsed();

    let rate = |d: std::time::Duration| f64::from(N) / d.as_secs_f64();
    println!(
        "ippm-archive insert rate: {N} records in one transaction {:.0} ms ({:.0} records/s); \
         in 100 transactions of 1000 {:.0} ms ({:.0} records/s)",
        one_batch.as_secs_f64() * 1e3,
        rate(one_batch),
        batches.as_secs_f64() * 1e3,
        rate(batches)
    );
    assert_eq!(a.session(id).unwrap().unwrap().records, u64::from(N));
    assert_eq!(a.session(id2).unwrap().unwrap().records, u64::from(N));
    let back = a.records(id2).unwrap();
    assert_eq!(back.len(), N as usize);
    assert_eq!(back[77_777], records[77_777]);
}

/// A STAMP session: stored and read back as `stamp`, selected by protocol, and its two-way
/// summary exported in the round-trip columns as a TWAMP one's.
#[test]
fn stamp_sessions_round_trip_and_export_as_two_way() {
    let a = Archive::open_in_memory().unwrap();
    let new = NewSession {
        protocol: Protocol::Stamp,
        mode: "authenticated".into(),
        sid: Some("ssid:4660".into()),
        ..twamp("r:862", T0)
    };
    let s = a.start_session(&new).unwrap();
    a.start_session(&twamp("a:862", T0 + SEC)).unwrap();
    a.add_records(s, &[rt(0, T0), rt(1, T0)], None, T0).unwrap();
    let mut summary = twamp_summary(2, 0);
    summary["protocol"] = "stamp".into();
    a.finish_session(
        s,
        Status::Complete,
        None,
        Some(&summary.to_string()),
        T0 + SEC,
    )
    .unwrap();
    let rows = a
        .sessions(&Filter {
            protocol: Some(Protocol::Stamp),
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        (row.protocol, row.mode.as_str(), row.sid.as_deref()),
        (Protocol::Stamp, "authenticated", Some("ssid:4660"))
    );
    assert_eq!(row.protocol.as_str(), "stamp");
    assert_eq!(a.records(s).unwrap(), vec![rt(0, T0), rt(1, T0)]);
    let mut out = Vec::new();
    a.export_csv(
        &Filter {
            protocol: Some(Protocol::Stamp),
            ..Filter::default()
        },
        &mut out,
    )
    .unwrap();
    let (header, rows) = read_csv(&out);
    let col = |name: &str| rows[0][header.iter().position(|h| h == name).unwrap()].clone();
    assert_eq!(col("protocol"), "stamp");
    assert_eq!(col("rt_sent"), "2");
    assert_eq!(col("rt_lost"), "0");
    assert_eq!(col("rt_delay_min_ns"), "85000");
}
