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
