//! JSON and CSV exports.
//!
//! # The session CSV ([`Archive::export_csv`])
//!
//! One row per session, newest first, with the header [`SESSION_CSV_COLUMNS`]. The first
//! eleven columns are the session itself: `id`, `peer`, `protocol`, `mode`, `sid`, `status`,
//! `reason`, `started_unix_ns`, `ended_unix_ns`, `updated_unix_ns`, `record_count`. The rest
//! come from the summary, in three groups of nine: `rt_` (round trip), `fwd_` (toward the
//! server) and `bwd_` (from the server), each with `sent`, `lost`, `loss_ratio`, `duplicates`,
//! `delay_min_ns`, `delay_median_ns`, `delay_mean_ns`, `delay_max_ns` and `jitter_ns`.
//!
//! They are read from the summary laid out as `ippm twping --json` and `ippm owping --json`
//! print it (a STAMP session's summary is laid out as a TWAMP one, as `ippm stamp --json`
//! prints it):
//!
//! | group | TWAMP and STAMP summary (the two-way report at the top level) | OWAMP summary |
//! |---|---|---|
//! | `rt_` | `loss.sent`, `loss.lost`, `loss.loss_ratio`, `duplicates`, `round_trip.{min,median,mean,max}_ns`, `round_trip_jitter_ns` | (empty) |
//! | `fwd_` | `loss.sent`, `loss.forward_lost`, -, `forward_duplicates`, `forward.{min,median,mean,max}_ns`, - | `to_server.loss.{sent,lost,loss_ratio}`, `to_server.duplicates`, `to_server.delay.{min,median,mean,max}_ns`, `to_server.jitter_ns` |
//! | `bwd_` | -, `loss.backward_lost`, -, -, `backward.{min,median,mean,max}_ns`, - | the same under `from_server` |
//!
//! A field the summary lacks (or a session with no summary yet) is an empty cell; numbers are
//! written as JSON writes them. The whole summary is in the JSON export.
//!
//! # The record CSV ([`Archive::export_records_csv`])
//!
//! One row per packet record in (direction, seq) order, header [`RECORD_CSV_COLUMNS`]:
//! `direction` (`round_trip`, `to_server`, `from_server`), `seq`, `t1_unix_ns` .. `t4_unix_ns`
//! and `ttl` (empty when absent), and `delay_ns`: for a round trip (t4 - t1) - (t3 - t2), the
//! round-trip time without the reflector's own time (t4 - t1 if t2 or t3 is missing); one way
//! t4 - t1; empty for a lost packet.

use std::cell::RefCell;
use std::io::{BufWriter, Write};

use rusqlite::Connection;
use serde::ser::{Error as _, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};

use crate::store::{for_each_record, select_session, select_sessions};
use crate::{Archive, ArchiveError, Direction, Filter, Protocol, Record, SessionId, SessionRow};

/// The header of [`Archive::export_csv`] (see the [module documentation](crate#exports) and
/// [`Archive::export_csv`] for where each column comes from).
pub const SESSION_CSV_COLUMNS: &[&str] = &[
    "id",
    "peer",
    "protocol",
    "mode",
    "sid",
    "status",
    "reason",
    "started_unix_ns",
    "ended_unix_ns",
    "updated_unix_ns",
    "record_count",
    "rt_sent",
    "rt_lost",
    "rt_loss_ratio",
    "rt_duplicates",
    "rt_delay_min_ns",
    "rt_delay_median_ns",
    "rt_delay_mean_ns",
    "rt_delay_max_ns",
    "rt_jitter_ns",
    "fwd_sent",
    "fwd_lost",
    "fwd_loss_ratio",
    "fwd_duplicates",
    "fwd_delay_min_ns",
    "fwd_delay_median_ns",
    "fwd_delay_mean_ns",
    "fwd_delay_max_ns",
    "fwd_jitter_ns",
    "bwd_sent",
    "bwd_lost",
    "bwd_loss_ratio",
    "bwd_duplicates",
    "bwd_delay_min_ns",
    "bwd_delay_median_ns",
    "bwd_delay_mean_ns",
    "bwd_delay_max_ns",
    "bwd_jitter_ns",
];

/// The header of [`Archive::export_records_csv`].
pub const RECORD_CSV_COLUMNS: &[&str] = &[
    "direction",
    "seq",
    "t1_unix_ns",
    "t2_unix_ns",
    "t3_unix_ns",
    "t4_unix_ns",
    "ttl",
    "delay_ns",
];

/// The session columns before the summary ones.
const SESSION_FIELDS: usize = 11;

/// Where each summary column of the session CSV comes from: a JSON pointer into a TWAMP
/// summary and one into an OWAMP summary, in [`SESSION_CSV_COLUMNS`] order after the session
/// fields.
const SUMMARY_SOURCES: &[(Option<&str>, Option<&str>)] = &[
    // rt_
    (Some("/loss/sent"), None),
    (Some("/loss/lost"), None),
    (Some("/loss/loss_ratio"), None),
    (Some("/duplicates"), None),
    (Some("/round_trip/min_ns"), None),
    (Some("/round_trip/median_ns"), None),
    (Some("/round_trip/mean_ns"), None),
    (Some("/round_trip/max_ns"), None),
    (Some("/round_trip_jitter_ns"), None),
    // fwd_
    (Some("/loss/sent"), Some("/to_server/loss/sent")),
    (Some("/loss/forward_lost"), Some("/to_server/loss/lost")),
    (None, Some("/to_server/loss/loss_ratio")),
    (Some("/forward_duplicates"), Some("/to_server/duplicates")),
    (Some("/forward/min_ns"), Some("/to_server/delay/min_ns")),
    (
        Some("/forward/median_ns"),
        Some("/to_server/delay/median_ns"),
    ),
    (Some("/forward/mean_ns"), Some("/to_server/delay/mean_ns")),
    (Some("/forward/max_ns"), Some("/to_server/delay/max_ns")),
    (None, Some("/to_server/jitter_ns")),
    // bwd_
    (None, Some("/from_server/loss/sent")),
    (Some("/loss/backward_lost"), Some("/from_server/loss/lost")),
    (None, Some("/from_server/loss/loss_ratio")),
    (None, Some("/from_server/duplicates")),
    (Some("/backward/min_ns"), Some("/from_server/delay/min_ns")),
    (
        Some("/backward/median_ns"),
        Some("/from_server/delay/median_ns"),
    ),
    (
        Some("/backward/mean_ns"),
        Some("/from_server/delay/mean_ns"),
    ),
    (Some("/backward/max_ns"), Some("/from_server/delay/max_ns")),
    (None, Some("/from_server/jitter_ns")),
];

/// The document [`Archive::export_json`] writes: `{"sessions": [...]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Export {
    /// The selected sessions, newest first.
    pub sessions: Vec<ExportedSession>,
}

/// One session in a JSON export: the [`SessionRow`]'s fields (its record count as
/// `record_count`) and, when asked for, its `records`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportedSession {
    /// The session.
    #[serde(flatten)]
    pub session: SessionRow,
    /// Its packet records in (direction, seq) order, if the export includes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<Vec<Record>>,
}

/// An [`ExportedSession`] that reads its records from the database while it is written.
#[derive(Serialize)]
struct StreamedSession<'a> {
    #[serde(flatten)]
    session: &'a SessionRow,
    #[serde(skip_serializing_if = "Option::is_none")]
    records: Option<StreamedRecords<'a>>,
}

struct StreamedRecords<'a> {
    conn: &'a Connection,
    id: SessionId,
    /// The archive error that stopped the serialization, kept typed for the caller.
    failure: &'a RefCell<Option<ArchiveError>>,
}

/// Either a database error or the serializer's own, out of the record loop.
enum Step<E> {
    Archive(ArchiveError),
    Write(E),
}

impl<E> From<ArchiveError> for Step<E> {
    fn from(e: ArchiveError) -> Self {
        Self::Archive(e)
    }
}

impl Serialize for StreamedRecords<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        let walked = for_each_record::<Step<S::Error>>(self.conn, self.id, |r| {
            seq.serialize_element(&r).map_err(Step::Write)
        });
        match walked {
            Ok(()) => seq.end(),
            Err(Step::Write(e)) => Err(e),
            Err(Step::Archive(e)) => {
                let msg = e.to_string();
                *self.failure.borrow_mut() = Some(e);
                Err(S::Error::custom(msg))
            }
        }
    }
}

impl Archive {
    /// Writes the sessions `f` selects (newest first) as one JSON document,
    /// `{"sessions":[{...session..., "records":[...]}]}` ([`Export`]), with each session's
    /// packet records if `with_records`. Records are streamed from the database, not
    /// gathered in memory.
    ///
    /// The export reads one consistent state of the archive and holds this `Archive`'s
    /// connection until it is written: to export from a busy daemon, open a second `Archive`
    /// on the same file (WAL readers never block the writer).
    pub fn export_json(
        &self,
        f: &Filter,
        with_records: bool,
        out: &mut dyn Write,
    ) -> Result<(), ArchiveError> {
        self.read(|conn| {
            let sessions = select_sessions(conn, f)?;
            let failure = RefCell::new(None);
            let mut w = BufWriter::new(out);
            w.write_all(b"{\"sessions\":[")?;
            for (i, session) in sessions.iter().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                let item = StreamedSession {
                    session,
                    records: with_records.then_some(StreamedRecords {
                        conn,
                        id: session.id,
                        failure: &failure,
                    }),
                };
                if let Err(e) = serde_json::to_writer(&mut w, &item) {
                    return Err(match failure.take() {
                        Some(archive) => archive,
                        None if e.is_io() => ArchiveError::Io(e.into()),
                        None => ArchiveError::Json(e),
                    });
                }
            }
            w.write_all(b"]}\n")?;
            w.flush()?;
            Ok(())
        })
    }

    /// Writes the sessions `f` selects (newest first) as CSV, one row per session, with the
    /// header [`SESSION_CSV_COLUMNS`]: the session's fields, then the key summary fields
    /// flattened (the [module documentation](crate#exports) and the table in this crate's
    /// `export` module docs give each column's source).
    ///
    /// The TWAMP summary is expected laid out as `ippm twping --json` prints it (the two-way
    /// report's fields at the top level: `loss`, `duplicates`, `round_trip`, `forward`, ...);
    /// the OWAMP one as `ippm owping --json` does (`to_server` and `from_server`, each a
    /// one-way report with `loss`, `duplicates`, `delay`, `jitter_ns`). A field the summary
    /// lacks is an empty cell.
    pub fn export_csv(&self, f: &Filter, out: &mut dyn Write) -> Result<(), ArchiveError> {
        let sessions = self.read(|conn| select_sessions(conn, f))?;
        let mut w = csv::Writer::from_writer(out);
        w.write_record(SESSION_CSV_COLUMNS)?;
        for s in &sessions {
            w.write_record(session_csv_row(s))?;
        }
        w.flush()?;
        Ok(())
    }

    /// Writes one session's packet records as CSV, header [`RECORD_CSV_COLUMNS`]:
    /// `direction`, `seq`, `t1_unix_ns`..`t4_unix_ns`, `ttl`, and `delay_ns` (round trip:
    /// (t4 - t1) - (t3 - t2); one way: t4 - t1; empty when lost). Streamed from the database.
    pub fn export_records_csv(
        &self,
        id: SessionId,
        out: &mut dyn Write,
    ) -> Result<(), ArchiveError> {
        self.read(|conn| {
            if select_session(conn, id)?.is_none() {
                return Err(ArchiveError::NoSuchSession(id));
            }
            let mut w = csv::Writer::from_writer(out);
            w.write_record(RECORD_CSV_COLUMNS)?;
            for_each_record::<ArchiveError>(conn, id, |r| {
                w.write_record(record_csv_row(&r))?;
                Ok(())
            })?;
            w.flush()?;
            Ok(())
        })
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn session_csv_row(s: &SessionRow) -> Vec<String> {
    let mut row = vec![
        s.id.to_string(),
        s.peer.clone(),
        s.protocol.as_str().to_string(),
        s.mode.clone(),
        s.sid.clone().unwrap_or_default(),
        s.status.as_str().to_string(),
        s.reason.clone().unwrap_or_default(),
        s.started_unix_ns.to_string(),
        opt(s.ended_unix_ns),
        s.updated_unix_ns.to_string(),
        s.records.to_string(),
    ];
    debug_assert_eq!(row.len(), SESSION_FIELDS);
    for (twamp, owamp) in SUMMARY_SOURCES {
        let pointer = match s.protocol {
            // A STAMP summary is laid out as a TWAMP one (the two-way report at the top).
            Protocol::Twamp | Protocol::Stamp => twamp,
            Protocol::Owamp => owamp,
        };
        let value = pointer.and_then(|p| s.summary.as_ref().and_then(|v| v.pointer(p)));
        row.push(match value {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(t)) => t.clone(),
            Some(v) => v.to_string(),
        });
    }
    row
}

fn record_csv_row(r: &Record) -> [String; 8] {
    let delay = r.t4_unix_ns.map(|t4| {
        let total = i128::from(t4) - i128::from(r.t1_unix_ns);
        match (r.direction, r.t2_unix_ns, r.t3_unix_ns) {
            (Direction::RoundTrip, Some(t2), Some(t3)) => total - (i128::from(t3) - i128::from(t2)),
            _ => total,
        }
    });
    [
        r.direction.as_str().to_string(),
        r.seq.to_string(),
        r.t1_unix_ns.to_string(),
        opt(r.t2_unix_ns),
        opt(r.t3_unix_ns),
        opt(r.t4_unix_ns),
        opt(r.ttl),
        opt(delay),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_summary_column_has_a_source() {
        assert_eq!(
            SESSION_CSV_COLUMNS.len(),
            SESSION_FIELDS + SUMMARY_SOURCES.len()
        );
    }

    #[test]
    fn round_trip_delay_leaves_out_the_reflector_time() {
        let r = Record {
            direction: Direction::RoundTrip,
            seq: 7,
            t1_unix_ns: 1_000,
            t2_unix_ns: Some(1_400),
            t3_unix_ns: Some(1_500),
            t4_unix_ns: Some(2_000),
            ttl: Some(64),
        };
        assert_eq!(record_csv_row(&r)[7], "900");
        let lost = Record {
            t4_unix_ns: None,
            ..r.clone()
        };
        assert_eq!(record_csv_row(&lost)[7], "");
        let one_way = Record {
            direction: Direction::FromServer,
            t2_unix_ns: None,
            t3_unix_ns: None,
            ..r
        };
        assert_eq!(record_csv_row(&one_way)[7], "1000");
    }
}
