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

/// Blocks in its first write until told to go on: an export that holds its read
/// transaction (and so its snapshot of the WAL) open.
struct Held(Option<std::sync::mpsc::Receiver<()>>);

impl std::io::Write for Held {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(rx) = self.0.take() {
            let _ = rx.recv();
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_wal_grown_behind_a_reader_is_cut_back_once_it_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let a = Archive::open(&db).unwrap();
    let id = a
        .start_session(&NewSession {
            peer: "192.0.2.1:862".into(),
            protocol: Protocol::Twamp,
            mode: "open".into(),
            sid: None,
            started_unix_ns: T0,
            params_json: "{}".into(),
        })
        .unwrap();
    // A second process reading (here: a second connection exporting) keeps the WAL from
    // starting over, so it grows past any limit while the reader stays.
    let (go, wait) = std::sync::mpsc::channel();
    let path = db.clone();
    let reader = std::thread::spawn(move || {
        let r = Archive::open(&path).unwrap();
        r.export_json(&Default::default(), true, &mut Held(Some(wait)))
            .unwrap();
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut seq = 0;
    for _ in 0..150 {
        let batch: Vec<Record> = (seq..seq + 1000).map(record).collect();
        seq += 1000;
        a.add_records(id, &batch, None, T0).unwrap();
    }
    let grown = wal_len(&db);
    assert!(
        grown > WAL_BOUND,
        "the reader did not hold the WAL: {grown}"
    );
    go.send(()).unwrap();
    reader.join().unwrap();
    // With the reader gone the next automatic checkpoint completes, the WAL starts over, and
    // its file is cut back to the size limit rather than kept at its largest.
    for _ in 0..10 {
        let batch: Vec<Record> = (seq..seq + 1000).map(record).collect();
        seq += 1000;
        a.add_records(id, &batch, None, T0).unwrap();
    }
    let after = wal_len(&db);
    assert!(
        after <= WAL_BOUND,
        "the WAL stayed at {after} octets after growing to {grown}"
    );
    assert!(a.checkpoint().unwrap());
    assert_eq!(wal_len(&db), 0);
}
