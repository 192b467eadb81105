//! The archive's errors.

use std::path::PathBuf;

use crate::{SessionId, Status};

/// What can go wrong with the archive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The directory that should hold the database could not be created.
    #[error("cannot create the archive directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite reported an error (opening, a busy database past the timeout, a full disk, ...).
    #[error("archive database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file was written by a newer version of ippm, with a schema this one does not know.
    #[error("the archive has schema version {found}, newer than the {supported} this ippm knows")]
    SchemaTooNew {
        /// The file's `user_version`.
        found: i64,
        /// The newest version this code knows.
        supported: i64,
    },
    /// SQLite would not put the database in WAL mode.
    #[error("the archive could not be put in WAL mode (journal mode is {0:?})")]
    NotWal(String),
    /// No session has this id.
    #[error("no session {0} in the archive")]
    NoSuchSession(SessionId),
    /// The session has ended: its records and summary can no longer change.
    #[error("session {id} is {status}, not running")]
    NotRunning {
        /// The session.
        id: SessionId,
        /// Its state.
        status: Status,
    },
    /// [`crate::Archive::finish_session`] was given [`Status::Running`].
    #[error("a session cannot be finished as running")]
    FinishAsRunning,
    /// A JSON document given to the archive does not parse.
    #[error("the {what} is not valid JSON: {source}")]
    InvalidJson {
        /// Which document (`test parameters`, `summary`).
        what: &'static str,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// A stored value is not one this code writes (the file was altered by hand, or damaged).
    #[error("corrupt archive: {0}")]
    Corrupt(String),
    /// Writing an export failed.
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    /// Encoding a JSON export failed.
    #[error("encoding the JSON export: {0}")]
    Json(#[source] serde_json::Error),
    /// Writing a CSV export failed.
    #[error("writing the CSV export: {0}")]
    Csv(#[from] csv::Error),
}
