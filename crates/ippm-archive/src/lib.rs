//! The local measurement archive: OWAMP, TWAMP and STAMP sessions with their parameters and summary
//! statistics, and their per-packet records, in one embedded SQLite database.
//!
//! The daemon runs sessions back to back (powstream-style) and writes each one as it goes:
//! [`Archive::start_session`] when it begins, [`Archive::add_records`] every few seconds with
//! the packets seen since the last call and the running summary, [`Archive::finish_session`] at
//! the end. Readers (the CLI, an exporter, a second process) see a session while it is still
//! running: the database is in WAL mode, so readers work on the last committed state and never
//! block the writer, and the writer never blocks them.
//!
//! # Crash safety
//!
//! Every write is one transaction, so a daemon killed at any moment (SIGKILL included) leaves
//! the database as it was after the last commit: a session's records and its record count,
//! summary and update time change together or not at all. Commits are made with
//! `synchronous = FULL`, so a commit that returned is on disk even if the machine loses power
//! right after. At start the daemon calls [`Archive::mark_interrupted`], which turns the sessions
//! a crash left `running` into `interrupted`, keeping what they had recorded.
//!
//! # The WAL's size
//!
//! A daemon writes for months, on disks that may be small. SQLite checkpoints the WAL into
//! the database every 1000 pages (set explicitly at open) and the file is cut back to 4 MiB
//! after each checkpoint; the daemon also calls [`Archive::checkpoint_passive`] every few
//! seconds and [`Archive::checkpoint`] (which truncates the WAL to nothing) after pruning and
//! while its disk is full, so the WAL holds a few seconds of writes, not a disk's worth.
//!
//! # Schema
//!
//! The schema carries its version in SQLite's `user_version`; [`Archive::open`] applies the
//! migrations the file lacks in one transaction and refuses a file newer than this code
//! ([`ArchiveError::SchemaTooNew`]). Version 2 (version 1 lacked `stamp` in `protocol`):
//!
//! - `sessions`: one row per test session: `id` (the [`SessionId`]), `peer`, `protocol`
//!   (`twamp`/`owamp`/`stamp`), `mode`, `sid` (hex, may be filled in later), `status`
//!   (`running`/`complete`/`failed`/`interrupted`), `reason`, `started_ns`, `ended_ns`,
//!   `updated_ns` (Unix nanoseconds), `params` and `summary` (JSON text), and `records`, the
//!   number of per-packet records it holds now. Indexed on `started_ns`, on
//!   (`peer`, `started_ns`) and on `ended_ns`.
//! - `records`: one row per packet arrival, keyed (`session_id`, `direction`, `seq`,
//!   `arrival`), `session_id` referencing `sessions(id)` with `ON DELETE CASCADE`;
//!   `direction` is 0 round trip, 1 to the server, 2 from the server; `t1`..`t4` are Unix
//!   nanoseconds (`t4` NULL for a lost packet) and `ttl` the received TTL.
//!
//! **Duplicates.** A packet that arrives twice (a duplicate in the network) is a second record
//! with the same direction and sequence number; the archive keeps both. The `arrival` column
//! numbers the arrivals of one (session, direction, seq) from 0 in the order they were added,
//! so [`Archive::records`] returns duplicates after the first arrival, in arrival order.
//!
//! # Exports
//!
//! [`Archive::export_json`] writes one JSON document ([`Export`]);
//! [`Archive::export_csv`] one CSV row per session with the key summary fields flattened (the
//! columns are listed at [`SESSION_CSV_COLUMNS`]); [`Archive::export_records_csv`] one row per
//! packet record ([`RECORD_CSV_COLUMNS`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod export;
mod schema;
mod store;

use serde::{Deserialize, Serialize};

pub use error::ArchiveError;
pub use export::{Export, ExportedSession, RECORD_CSV_COLUMNS, SESSION_CSV_COLUMNS};
pub use store::Archive;

/// A session's key in the archive (SQLite rowid).
pub type SessionId = i64;

/// The measurement protocol of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TWAMP (RFC 5357): round-trip records.
    Twamp,
    /// OWAMP (RFC 4656): one-way records in either direction.
    Owamp,
    /// STAMP (RFC 8762): round-trip records, as TWAMP's.
    Stamp,
}

impl Protocol {
    /// The name stored in the archive and used in exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Twamp => "twamp",
            Self::Owamp => "owamp",
            Self::Stamp => "stamp",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "twamp" => Some(Self::Twamp),
            "owamp" => Some(Self::Owamp),
            "stamp" => Some(Self::Stamp),
            _ => None,
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a session stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Started and not yet ended: its records and summary grow.
    Running,
    /// Ended normally.
    Complete,
    /// Ended by an error (the reason says which).
    Failed,
    /// Left running by a daemon that stopped without ending it (found at the next start).
    Interrupted,
}

impl Status {
    /// The name stored in the archive and used in exports.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Complete => "complete",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(Self::Running),
            "complete" => Some(Self::Complete),
            "failed" => Some(Self::Failed),
            "interrupted" => Some(Self::Interrupted),
            _ => None,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A session about to start, as given to [`Archive::start_session`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSession {
    /// The peer as configured (`host:port`).
    pub peer: String,
    /// OWAMP, TWAMP or STAMP.
    pub protocol: Protocol,
    /// The security mode (`"open"`, `"authenticated"`, `"encrypted"`, `"mixed"`, ...; STAMP's
    /// `"unauthenticated"` or `"authenticated"`).
    pub mode: String,
    /// The session identifier in hex, if known yet ([`Archive::set_sid`] fills it in later);
    /// a STAMP session's is its SSID, `ssid:N` in decimal.
    pub sid: Option<String>,
    /// When the session started, Unix nanoseconds.
    pub started_unix_ns: i64,
    /// The test parameters as a JSON document.
    pub params_json: String,
}

/// The direction of a packet record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// TWAMP: sender to reflector and back.
    RoundTrip,
    /// OWAMP: from the client to the server.
    ToServer,
    /// OWAMP: from the server to the client.
    FromServer,
}

impl Direction {
    /// The name used in exports (`round_trip`, `to_server`, `from_server`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundTrip => "round_trip",
            Self::ToServer => "to_server",
            Self::FromServer => "from_server",
        }
    }

    fn code(self) -> i64 {
        match self {
            Self::RoundTrip => 0,
            Self::ToServer => 1,
            Self::FromServer => 2,
        }
    }

    fn from_code(c: i64) -> Option<Self> {
        match c {
            0 => Some(Self::RoundTrip),
            1 => Some(Self::ToServer),
            2 => Some(Self::FromServer),
            _ => None,
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One packet. TWAMP: direction [`Direction::RoundTrip`] with t1 (send), t2 (reflector
/// receive), t3 (reflector send), t4 (receive); OWAMP: direction [`Direction::ToServer`] or
/// [`Direction::FromServer`] with t1 (send) and t4 (receive). A lost packet has t4 `None`.
/// Times are Unix nanoseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Which way the packet went.
    pub direction: Direction,
    /// The sender's sequence number.
    pub seq: u32,
    /// Send time.
    pub t1_unix_ns: i64,
    /// Reflector receive time (TWAMP).
    pub t2_unix_ns: Option<i64>,
    /// Reflector send time (TWAMP).
    pub t3_unix_ns: Option<i64>,
    /// Receive time; `None` if the packet was lost.
    pub t4_unix_ns: Option<i64>,
    /// The TTL (hop limit) the packet arrived with, if known.
    pub ttl: Option<u8>,
}

/// A session as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRow {
    /// Its key.
    pub id: SessionId,
    /// The peer as configured (`host:port`).
    pub peer: String,
    /// OWAMP, TWAMP or STAMP.
    pub protocol: Protocol,
    /// The security mode.
    pub mode: String,
    /// The session identifier in hex, once known.
    pub sid: Option<String>,
    /// Where it stands.
    pub status: Status,
    /// Why it failed or was interrupted (or a note on completion).
    pub reason: Option<String>,
    /// When it started, Unix nanoseconds.
    pub started_unix_ns: i64,
    /// When it ended, Unix nanoseconds; `None` while running. For an interrupted session this
    /// is the time of its last write, the last moment the archive knew it was running.
    pub ended_unix_ns: Option<i64>,
    /// Its last write, Unix nanoseconds.
    pub updated_unix_ns: i64,
    /// The test parameters.
    pub params: serde_json::Value,
    /// The latest summary statistics (running while the session runs, final after).
    pub summary: Option<serde_json::Value>,
    /// How many per-packet records the archive holds for it now (0 once pruned). Named
    /// `record_count` in JSON, where `records` is the list of records in an export.
    #[serde(rename = "record_count")]
    pub records: u64,
}

/// Which sessions [`Archive::sessions`] and the exports select. The default selects all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this peer (exact match on the configured `host:port`).
    pub peer: Option<String>,
    /// Only this protocol.
    pub protocol: Option<Protocol>,
    /// Only sessions that started at or after this time (Unix nanoseconds).
    pub since_unix_ns: Option<i64>,
    /// Only sessions that started before this time (Unix nanoseconds).
    pub until_unix_ns: Option<i64>,
    /// Only sessions in this state.
    pub status: Option<Status>,
    /// At most this many (the newest).
    pub limit: Option<usize>,
}
