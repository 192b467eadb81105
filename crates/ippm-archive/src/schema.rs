//! The schema and its migrations, versioned by SQLite's `user_version`.

use rusqlite::{Connection, TransactionBehavior};

use crate::ArchiveError;

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only: never edit one
/// that has shipped.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: sessions and their per-packet records.
    "CREATE TABLE sessions (
        id         INTEGER PRIMARY KEY,
        peer       TEXT    NOT NULL,
        protocol   TEXT    NOT NULL CHECK (protocol IN ('twamp', 'owamp')),
        mode       TEXT    NOT NULL,
        sid        TEXT,
        status     TEXT    NOT NULL
                   CHECK (status IN ('running', 'complete', 'failed', 'interrupted')),
        reason     TEXT,
        started_ns INTEGER NOT NULL,
        ended_ns   INTEGER,
        updated_ns INTEGER NOT NULL,
        params     TEXT    NOT NULL,
        summary    TEXT,
        records    INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_started ON sessions (started_ns);
    CREATE INDEX sessions_peer ON sessions (peer, started_ns);
    CREATE INDEX sessions_ended ON sessions (ended_ns);
    CREATE TABLE records (
        session_id INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        direction  INTEGER NOT NULL CHECK (direction IN (0, 1, 2)),
        seq        INTEGER NOT NULL,
        arrival    INTEGER NOT NULL,
        t1         INTEGER NOT NULL,
        t2         INTEGER,
        t3         INTEGER,
        t4         INTEGER,
        ttl        INTEGER,
        PRIMARY KEY (session_id, direction, seq, arrival)
    ) WITHOUT ROWID;",
    // 1 -> 2: STAMP sessions. SQLite cannot alter a CHECK, so both tables are rebuilt. The
    // records move first to a table that references the new sessions table: dropping the old
    // sessions table (an implicit DELETE, foreign keys being on) then cascades into nothing,
    // and renaming the new sessions table rewrites the reference (SQLite 3.26 and later,
    // which the bundled library is). The indexes went with the old table and are made again.
    "CREATE TABLE sessions_v2 (
        id         INTEGER PRIMARY KEY,
        peer       TEXT    NOT NULL,
        protocol   TEXT    NOT NULL CHECK (protocol IN ('twamp', 'owamp', 'stamp')),
        mode       TEXT    NOT NULL,
        sid        TEXT,
        status     TEXT    NOT NULL
                   CHECK (status IN ('running', 'complete', 'failed', 'interrupted')),
        reason     TEXT,
        started_ns INTEGER NOT NULL,
        ended_ns   INTEGER,
        updated_ns INTEGER NOT NULL,
        params     TEXT    NOT NULL,
        summary    TEXT,
        records    INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO sessions_v2 (id, peer, protocol, mode, sid, status, reason, started_ns,
                             ended_ns, updated_ns, params, summary, records)
        SELECT id, peer, protocol, mode, sid, status, reason, started_ns, ended_ns,
               updated_ns, params, summary, records FROM sessions;
    CREATE TABLE records_v2 (
        session_id INTEGER NOT NULL REFERENCES sessions_v2 (id) ON DELETE CASCADE,
        direction  INTEGER NOT NULL CHECK (direction IN (0, 1, 2)),
        seq        INTEGER NOT NULL,
        arrival    INTEGER NOT NULL,
        t1         INTEGER NOT NULL,
        t2         INTEGER,
        t3         INTEGER,
        t4         INTEGER,
        ttl        INTEGER,
        PRIMARY KEY (session_id, direction, seq, arrival)
    ) WITHOUT ROWID;
    INSERT INTO records_v2 (session_id, direction, seq, arrival, t1, t2, t3, t4, ttl)
        SELECT session_id, direction, seq, arrival, t1, t2, t3, t4, ttl FROM records;
    DROP TABLE records;
    DROP TABLE sessions;
    ALTER TABLE sessions_v2 RENAME TO sessions;
    ALTER TABLE records_v2 RENAME TO records;
    CREATE INDEX sessions_started ON sessions (started_ns);
    CREATE INDEX sessions_peer ON sessions (peer, started_ns);
    CREATE INDEX sessions_ended ON sessions (ended_ns);",
];

/// The schema version this code writes.
pub(crate) fn current_version() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

/// Brings the database to the current version, in one immediate transaction so that two
/// processes opening a new file at once do not both create the tables.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), ArchiveError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let supported = current_version();
    if found > supported {
        return Err(ArchiveError::SchemaTooNew { found, supported });
    }
    let done = usize::try_from(found)
        .map_err(|_| ArchiveError::Corrupt(format!("negative schema version {found}")))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.execute_batch(sql)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(i + 1).unwrap_or(i64::MAX),
        )?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 1 file with a session and its records: brought to the current version with
    /// both kept, the cascade still in place, and STAMP sessions accepted.
    #[test]
    fn version_1_migrates_for_stamp_keeping_sessions_and_records() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            "PRAGMA user_version = 1;
             INSERT INTO sessions (id, peer, protocol, mode, status, started_ns, updated_ns,
                                   params, summary, records)
                 VALUES (7, 'a:862', 'twamp', 'open', 'complete', 1, 2, '{}', '{}', 2);
             INSERT INTO records VALUES (7, 0, 0, 0, 10, 11, 12, 13, 64),
                                        (7, 0, 1, 0, 20, NULL, NULL, NULL, NULL);",
        )
        .unwrap();
        assert!(
            conn.execute_batch(
                "INSERT INTO sessions (peer, protocol, mode, status, started_ns, updated_ns, \
                 params) VALUES ('b:862', 'stamp', 'authenticated', 'running', 1, 1, '{}')"
            )
            .is_err(),
            "version 1 refuses stamp"
        );
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, current_version());
        let count =
            |c: &Connection, sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(
            count(&conn, "SELECT count(*) FROM records WHERE session_id = 7"),
            2
        );
        assert_eq!(count(&conn, "SELECT records FROM sessions WHERE id = 7"), 2);
        conn.execute_batch(
            "INSERT INTO sessions (id, peer, protocol, mode, status, started_ns, updated_ns, \
             params) VALUES (8, 'b:862', 'stamp', 'authenticated', 'running', 1, 1, '{}');
             INSERT INTO records VALUES (8, 0, 0, 0, 10, 11, 12, 13, 64);",
        )
        .unwrap();
        // Records still belong to their sessions: no orphan can be added, deletes cascade.
        assert!(
            conn.execute_batch("INSERT INTO records VALUES (99, 0, 0, 0, 1, 1, 1, 1, 1)")
                .is_err()
        );
        conn.execute_batch("DELETE FROM sessions WHERE id = 7")
            .unwrap();
        assert_eq!(count(&conn, "SELECT count(*) FROM records"), 1);
        let indexes = count(
            &conn,
            "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name LIKE 'sessions_%'",
        );
        assert_eq!(indexes, 3);
    }
}
