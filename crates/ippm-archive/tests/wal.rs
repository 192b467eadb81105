//! The WAL of an archive that is written for a long time stays small: automatic checkpoints
//! keep it to about 4 MiB however much is written, and [`Archive::checkpoint`] truncates it to
//! nothing, with every record still there.

use ippm_archive::{Archive, Direction, NewSession, Protocol, Record, Status};

const SEC: i64 = 1_000_000_000;
const T0: i64 = 1_700_000_000 * SEC;

/// The WAL may hold one automatic checkpoint's pages (1000 of 4 KiB) and its headers; more
/// would mean it grows with what is written.
const WAL_BOUND: u64 = 5 * 1024 * 1024;

fn record(seq: u32) -> Record {
    let t = T0 + i64::from(seq) * 1_000_000;
    Record {
        direction: Direction::RoundTrip,
        seq,
        t1_unix_ns: t,
        t2_unix_ns: Some(t + 40_000),
        t3_unix_ns: Some(t + 45_000),
        t4_unix_ns: Some(t + 90_000),
        ttl: Some(64),
    }
}

fn wal_len(db: &std::path::Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map_or(0, |m| m.len())
}

#[test]
fn the_wal_stays_bounded_and_checkpoint_truncates_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let a = Archive::open(&db).unwrap();
    // A second of packets at a time, as the daemon writes: 400 000 records, some 40 MB of
    // pages through the WAL.
    let mut largest = 0;
    let mut seq = 0;
    for s in 0..20 {
        let id = a
            .start_session(&NewSession {
                peer: "192.0.2.1:862".into(),
                protocol: Protocol::Twamp,
                mode: "open".into(),
                sid: None,
                started_unix_ns: T0 + s * SEC,
                params_json: "{}".into(),
            })
            .unwrap();
        for _ in 0..20 {
            let batch: Vec<Record> = (seq..seq + 1000).map(record).collect();
            seq += 1000;
            a.add_records(id, &batch, Some("{}"), T0).unwrap();
            largest = largest.max(wal_len(&db));
        }
        a.finish_session(id, Status::Complete, None, None, T0 + s * SEC)
            .unwrap();
    }
    assert!(
        largest <= WAL_BOUND,
        "the WAL grew to {largest} octets with automatic checkpoints"
    );
    assert!(a.checkpoint().unwrap(), "no reader, yet incomplete");
    assert_eq!(wal_len(&db), 0, "TRUNCATE leaves an empty WAL");
    drop(a);
    // Everything is in the database file itself.
    let a = Archive::open(&db).unwrap();
    let sessions = a.sessions(&Default::default()).unwrap();
    assert_eq!(sessions.len(), 20);
    assert!(sessions.iter().all(|s| s.records == 20_000));
}
