//! [`Archive`]: the connection and every read and write.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use crate::{
    ArchiveError, Direction, Filter, NewSession, Protocol, Record, SessionId, SessionRow, Status,
    schema,
};

/// How long a write waits for another connection's write to finish before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The size (bytes) the WAL file is cut back to after a checkpoint: about what one automatic
/// checkpoint interval writes, so that the WAL never holds much more than that on a small
/// disk (where 64 MiB of WAL can be the whole disk).
const WAL_SIZE_LIMIT: i64 = 4 * 1024 * 1024;

/// Pages written to the WAL before a commit checkpoints it (SQLite's default, set here so
/// that no build or environment can turn automatic checkpoints off).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 1000;

/// The reason [`Archive::mark_interrupted`] records.
pub(crate) const INTERRUPTED_REASON: &str = "daemon stopped before the session ended";

const SESSION_COLUMNS: &str = "id, peer, protocol, mode, sid, status, reason, started_ns, \
                               ended_ns, updated_ns, params, summary, records";

/// The first arrival of a (direction, seq): inserts nothing if there is one already.
const INSERT_FIRST_ARRIVAL: &str = "INSERT INTO records \
     (session_id, direction, seq, arrival, t1, t2, t3, t4, ttl) \
     VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING";

/// A further arrival (a duplicate packet): numbered after those already there.
const INSERT_NEXT_ARRIVAL: &str = "INSERT INTO records \
     (session_id, direction, seq, arrival, t1, t2, t3, t4, ttl) \
     VALUES (?1, ?2, ?3, \
       (SELECT count(*) FROM records WHERE session_id = ?1 AND direction = ?2 AND seq = ?3), \
       ?4, ?5, ?6, ?7, ?8)";

const SELECT_RECORDS: &str = "SELECT direction, seq, t1, t2, t3, t4, ttl FROM records \
     WHERE session_id = ?1 ORDER BY direction, seq, arrival";

/// The measurement archive: one SQLite connection behind a mutex, so one `Archive` can be
/// shared by every task of the daemon (`Send` and `Sync`). Other processes (or a second
/// `Archive` on the same file) read it at the same time: the database is in WAL mode.
///
/// Every method is one transaction. Methods block while another holds the connection, and a
/// write waits up to ten seconds for another connection's write.
pub struct Archive {
    conn: Mutex<Connection>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Archive {
    /// Opens the archive at `path`, creating its directory and the file if needed, bringing
    /// the schema up to date, and setting WAL mode (checkpointed automatically every 1000
    /// pages, its file cut back to 4 MiB after each checkpoint), a busy timeout,
    /// `synchronous = FULL` and foreign keys. Opening does not touch sessions: the daemon
    /// calls [`Archive::mark_interrupted`] itself at start.
    pub fn open(path: &Path) -> Result<Self, ArchiveError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| ArchiveError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(ArchiveError::NotWal(mode));
        }
        Self::setup(conn, Some(path.to_path_buf()))
    }

    /// Opens a new, empty archive in memory (for tests; nothing survives the value).
    pub fn open_in_memory() -> Result<Self, ArchiveError> {
        Self::setup(Connection::open_in_memory()?, None)
    }

    fn setup(mut conn: Connection, path: Option<PathBuf>) -> Result<Self, ArchiveError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // A daemon that writes for months: checkpoint as it goes, and after each checkpoint
        // cut the WAL file back, so that it does not grow without bound.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        conn.set_prepared_statement_cache_capacity(32);
        schema::migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// The file this archive was opened on (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The connection. A panic while another thread held it leaves nothing half done (an
    /// open transaction rolls back when dropped), so a poisoned lock is taken as it is.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks every session still `running` as `interrupted`, with the reason "daemon stopped
    /// before the session ended", its end time the time of its last write, and its update
    /// time `now_unix_ns`. The daemon calls this once at start, before it starts sessions;
    /// returns how many sessions it marked.
    pub fn mark_interrupted(&self, now_unix_ns: i64) -> Result<usize, ArchiveError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx
            .prepare_cached(
                "UPDATE sessions SET status = 'interrupted', reason = ?1, \
                 ended_ns = updated_ns, updated_ns = ?2 WHERE status = 'running'",
            )?
            .execute(params![INTERRUPTED_REASON, now_unix_ns])?;
        tx.commit()?;
        Ok(n)
    }

    /// Records a new session as `running`, with no records and no summary yet; returns its id.
    pub fn start_session(&self, s: &NewSession) -> Result<SessionId, ArchiveError> {
        check_json("test parameters", &s.params_json)?;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached(
            "INSERT INTO sessions (peer, protocol, mode, sid, status, started_ns, updated_ns, \
             params) VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?5, ?6)",
        )?
        .execute(params![
            s.peer,
            s.protocol.as_str(),
            s.mode,
            s.sid,
            s.started_unix_ns,
            s.params_json
        ])?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// Sets (or replaces) a session's SID, in hex.
    pub fn set_sid(&self, id: SessionId, sid: &str) -> Result<(), ArchiveError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx
            .prepare_cached("UPDATE sessions SET sid = ?1 WHERE id = ?2")?
            .execute(params![sid, id])?;
        if n == 0 {
            return Err(ArchiveError::NoSuchSession(id));
        }
        tx.commit()?;
        Ok(())
    }

    /// Sets a session's mode: the one the control exchange negotiated, known (for OWAMP)
    /// only once the session has run, where its start could only record what was offered.
    pub fn set_mode(&self, id: SessionId, mode: &str) -> Result<(), ArchiveError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx
            .prepare_cached("UPDATE sessions SET mode = ?1 WHERE id = ?2")?
            .execute(params![mode, id])?;
        if n == 0 {
            return Err(ArchiveError::NoSuchSession(id));
        }
        tx.commit()?;
        Ok(())
    }

    /// Appends packet records to a running session and, if given, replaces its running
    /// summary, and sets its update time: all in one transaction, so a reader sees the records
    /// and the summary that counts them together. Fails with [`ArchiveError::NotRunning`]
    /// once the session has ended. A record whose (direction, seq) is already there is kept
    /// as a further arrival (a duplicate packet).
    pub fn add_records(
        &self,
        id: SessionId,
        records: &[Record],
        summary_json: Option<&str>,
        now_unix_ns: i64,
    ) -> Result<(), ArchiveError> {
        if let Some(s) = summary_json {
            check_json("summary", s)?;
        }
        let added = i64::try_from(records.len()).unwrap_or(i64::MAX);
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx
            .prepare_cached(
                "UPDATE sessions SET records = records + ?1, summary = coalesce(?2, summary), \
                 updated_ns = ?3 WHERE id = ?4 AND status = 'running'",
            )?
            .execute(params![added, summary_json, now_unix_ns, id])?;
        if n == 0 {
            return Err(not_running(&tx, id)?);
        }
        {
            let mut first = tx.prepare_cached(INSERT_FIRST_ARRIVAL)?;
            for r in records {
                let values = params![
                    id,
                    r.direction.code(),
                    r.seq,
                    r.t1_unix_ns,
                    r.t2_unix_ns,
                    r.t3_unix_ns,
                    r.t4_unix_ns,
                    r.ttl
                ];
                if first.execute(values)? == 0 {
                    tx.prepare_cached(INSERT_NEXT_ARRIVAL)?.execute(values)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Ends a running session with `status` (not [`Status::Running`]), an optional reason,
    /// and, if given, its final summary (otherwise the last running summary stays).
    pub fn finish_session(
        &self,
        id: SessionId,
        status: Status,
        reason: Option<&str>,
        summary_json: Option<&str>,
        ended_unix_ns: i64,
    ) -> Result<(), ArchiveError> {
        if status == Status::Running {
            return Err(ArchiveError::FinishAsRunning);
        }
        if let Some(s) = summary_json {
            check_json("summary", s)?;
        }
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx
            .prepare_cached(
                "UPDATE sessions SET status = ?1, reason = ?2, summary = coalesce(?3, summary), \
                 ended_ns = ?4, updated_ns = ?4 WHERE id = ?5 AND status = 'running'",
            )?
            .execute(params![
                status.as_str(),
                reason,
                summary_json,
                ended_unix_ns,
                id
            ])?;
        if n == 0 {
            return Err(not_running(&tx, id)?);
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes the per-packet records of the sessions that ended before `older_than_unix_ns`
    /// (running sessions are never touched), keeping the sessions, their parameters and
    /// summaries; returns how many records it deleted. Each session is its own transaction,
    /// so a large prune lets the writer in between sessions.
    pub fn prune_records(&self, older_than_unix_ns: i64) -> Result<usize, ArchiveError> {
        let ids: Vec<SessionId> = {
            let conn = self.lock();
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM sessions WHERE ended_ns < ?1 AND status != 'running' \
                 AND records > 0",
            )?;
            stmt.query_map([older_than_unix_ns], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        let mut deleted = 0;
        for id in ids {
            let mut conn = self.lock();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            deleted += tx
                .prepare_cached("DELETE FROM records WHERE session_id = ?1")?
                .execute([id])?;
            tx.prepare_cached("UPDATE sessions SET records = 0 WHERE id = ?1")?
                .execute([id])?;
            tx.commit()?;
        }
        Ok(deleted)
    }

    /// Copies everything in the WAL into the database and truncates the WAL file to zero
    /// octets (`PRAGMA wal_checkpoint(TRUNCATE)`), waiting up to the busy timeout for readers
    /// of older states. The automatic checkpoints are passive and never wait, so a reader
    /// that is always there, or a disk that was full when they ran, can leave the WAL large;
    /// the daemon calls this after pruning and while the archive is degraded, to give the
    /// space back. Returns whether it completed (`false`: a reader still used the WAL, and
    /// its file was not truncated).
    pub fn checkpoint(&self) -> Result<bool, ArchiveError> {
        let conn = self.lock();
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        Ok(busy == 0)
    }

    /// Copies what it can of the WAL into the database without waiting for anyone
    /// (`PRAGMA wal_checkpoint(PASSIVE)`), so that the next write starts the WAL from its
    /// beginning again instead of appending. SQLite's automatic checkpoint comes only after
    /// 1000 pages (4 MiB), which on a small disk can be more than the disk holds; the daemon
    /// calls this every few seconds, keeping the WAL to what a few seconds write. Returns
    /// whether every frame was copied.
    pub fn checkpoint_passive(&self) -> Result<bool, ArchiveError> {
        let conn = self.lock();
        let (busy, log, done): (i64, i64, i64) =
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        Ok(busy == 0 && log == done)
    }

    /// The sessions `f` selects, newest (latest start) first.
    pub fn sessions(&self, f: &Filter) -> Result<Vec<SessionRow>, ArchiveError> {
        let conn = self.lock();
        select_sessions(&conn, f)
    }

    /// One session, if there is one with this id.
    pub fn session(&self, id: SessionId) -> Result<Option<SessionRow>, ArchiveError> {
        let conn = self.lock();
        select_session(&conn, id)
    }

    /// A session's packet records in (direction, seq) order, duplicates after the first
    /// arrival; empty once pruned. [`ArchiveError::NoSuchSession`] if there is no such session.
    pub fn records(&self, id: SessionId) -> Result<Vec<Record>, ArchiveError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        if select_session(&tx, id)?.is_none() {
            return Err(ArchiveError::NoSuchSession(id));
        }
        let mut out = Vec::new();
        for_each_record::<ArchiveError>(&tx, id, |r| {
            out.push(r);
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs `f` on the connection inside one read transaction, so that everything it reads
    /// is one consistent state of the archive.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, ArchiveError>,
    ) -> Result<T, ArchiveError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        f(&tx)
    }
}

/// The error for a write to session `id` that matched no running session.
fn not_running(conn: &Connection, id: SessionId) -> Result<ArchiveError, ArchiveError> {
    Ok(match select_session(conn, id)? {
        None => ArchiveError::NoSuchSession(id),
        Some(s) => ArchiveError::NotRunning {
            id,
            status: s.status,
        },
    })
}

fn check_json(what: &'static str, s: &str) -> Result<(), ArchiveError> {
    serde_json::from_str::<serde::de::IgnoredAny>(s)
        .map(drop)
        .map_err(|source| ArchiveError::InvalidJson { what, source })
}

/// A sessions row as SQLite holds it, before its text fields are parsed.
struct RawSession {
    id: SessionId,
    peer: String,
    protocol: String,
    mode: String,
    sid: Option<String>,
    status: String,
    reason: Option<String>,
    started: i64,
    ended: Option<i64>,
    updated: i64,
    params: String,
    summary: Option<String>,
    records: i64,
}

impl RawSession {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            peer: r.get(1)?,
            protocol: r.get(2)?,
            mode: r.get(3)?,
            sid: r.get(4)?,
            status: r.get(5)?,
            reason: r.get(6)?,
            started: r.get(7)?,
            ended: r.get(8)?,
            updated: r.get(9)?,
            params: r.get(10)?,
            summary: r.get(11)?,
            records: r.get(12)?,
        })
    }

    fn parse(self) -> Result<SessionRow, ArchiveError> {
        let id = self.id;
        let bad = |what: &str| ArchiveError::Corrupt(format!("session {id}: {what}"));
        Ok(SessionRow {
            id,
            protocol: Protocol::parse(&self.protocol)
                .ok_or_else(|| bad(&format!("protocol {:?}", self.protocol)))?,
            status: Status::parse(&self.status)
                .ok_or_else(|| bad(&format!("status {:?}", self.status)))?,
            params: serde_json::from_str(&self.params)
                .map_err(|e| bad(&format!("test parameters: {e}")))?,
            summary: self
                .summary
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| bad(&format!("summary: {e}")))?,
            records: u64::try_from(self.records)
                .map_err(|_| bad(&format!("record count {}", self.records)))?,
            peer: self.peer,
            mode: self.mode,
            sid: self.sid,
            reason: self.reason,
            started_unix_ns: self.started,
            ended_unix_ns: self.ended,
            updated_unix_ns: self.updated,
        })
    }
}

pub(crate) fn select_session(
    conn: &Connection,
    id: SessionId,
) -> Result<Option<SessionRow>, ArchiveError> {
    conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"
    ))?
    .query_row([id], RawSession::from_row)
    .optional()?
    .map(RawSession::parse)
    .transpose()
}

pub(crate) fn select_sessions(
    conn: &Connection,
    f: &Filter,
) -> Result<Vec<SessionRow>, ArchiveError> {
    let mut sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE 1 = 1");
    let mut args: Vec<Value> = Vec::new();
    if let Some(p) = &f.peer {
        args.push(Value::Text(p.clone()));
        sql.push_str(&format!(" AND peer = ?{}", args.len()));
    }
    if let Some(p) = f.protocol {
        args.push(Value::Text(p.as_str().into()));
        sql.push_str(&format!(" AND protocol = ?{}", args.len()));
    }
    if let Some(t) = f.since_unix_ns {
        args.push(Value::Integer(t));
        sql.push_str(&format!(" AND started_ns >= ?{}", args.len()));
    }
    if let Some(t) = f.until_unix_ns {
        args.push(Value::Integer(t));
        sql.push_str(&format!(" AND started_ns < ?{}", args.len()));
    }
    if let Some(s) = &f.status {
        args.push(Value::Text(s.as_str().into()));
        sql.push_str(&format!(" AND status = ?{}", args.len()));
    }
    sql.push_str(" ORDER BY started_ns DESC, id DESC");
    if let Some(l) = f.limit {
        args.push(Value::Integer(i64::try_from(l).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" LIMIT ?{}", args.len()));
    }
    let mut stmt = conn.prepare_cached(&sql)?;
    let raw = stmt
        .query_map(rusqlite::params_from_iter(args), RawSession::from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    raw.into_iter().map(RawSession::parse).collect()
}

/// Calls `f` on each of session `id`'s records in (direction, seq, arrival) order, without
/// holding them all in memory. `f`'s own error type lets a serializer's error pass through.
pub(crate) fn for_each_record<E: From<ArchiveError>>(
    conn: &Connection,
    id: SessionId,
    mut f: impl FnMut(Record) -> Result<(), E>,
) -> Result<(), E> {
    let db = |e: rusqlite::Error| E::from(ArchiveError::from(e));
    let bad = |what: String| {
        E::from(ArchiveError::Corrupt(format!(
            "session {id} record: {what}"
        )))
    };
    let mut stmt = conn.prepare_cached(SELECT_RECORDS).map_err(db)?;
    let mut rows = stmt.query([id]).map_err(db)?;
    while let Some(row) = rows.next().map_err(db)? {
        let code: i64 = row.get(0).map_err(db)?;
        let seq: i64 = row.get(1).map_err(db)?;
        let ttl: Option<i64> = row.get(6).map_err(db)?;
        f(Record {
            direction: Direction::from_code(code)
                .ok_or_else(|| bad(format!("direction {code}")))?,
            seq: u32::try_from(seq).map_err(|_| bad(format!("seq {seq}")))?,
            t1_unix_ns: row.get(2).map_err(db)?,
            t2_unix_ns: row.get(3).map_err(db)?,
            t3_unix_ns: row.get(4).map_err(db)?,
            t4_unix_ns: row.get(5).map_err(db)?,
            ttl: ttl
                .map(u8::try_from)
                .transpose()
                .map_err(|_| bad(format!("ttl {ttl:?}")))?,
        })?;
    }
    Ok(())
}
