//! The daemon's way to the archive, which may fail: a full disk (or an archive that cannot be
//! opened at start) degrades archiving, never measuring or serving.
//!
//! - A write that fails is counted (`ippm_dropped_total{event="result_not_archived"}`, one
//!   per write: a session's start, a second's packets, its end), logged at most once per ten
//!   seconds, and sets `ippm_archive_degraded` to 1; the next write that works sets it back
//!   to 0 and says so. Measurement sessions go on either way, their figures still go to
//!   Prometheus.
//! - An archive that cannot be opened at start (its disk full, its directory not writable)
//!   leaves the daemon running without one: the error is logged, the gauge says 1, and the
//!   opening is tried again every few seconds until it works.
//! - Every few seconds the WAL is checkpointed, so that it holds no more than a few seconds of
//!   writes; while degraded, and after each hourly prune, it is also truncated, so that the
//!   space it holds goes back to the disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ippm_archive::{Archive, ArchiveError};
use ippm_net::metrics::Metrics;
use tokio::sync::watch;

/// How often an archive that could not be opened is tried again (and a degraded one's WAL
/// checkpointed): cheap, and soon enough that freeing space brings archiving back quickly.
const RETRY: Duration = Duration::from_secs(5);
/// How often old per-packet records are pruned.
const PRUNE: Duration = Duration::from_secs(3600);
/// The fewest seconds between two lines about the archive's state (one line per failed
/// write would be one a second per measurement while the disk is full).
const STATE_LOG: Duration = Duration::from_secs(10);

/// The archive as the daemon writes it: open or not yet, degraded or not.
pub(crate) struct ArchiveSink {
    path: PathBuf,
    archive: Mutex<Option<Arc<Archive>>>,
    degraded: AtomicBool,
    metrics: Arc<Metrics>,
    /// Lines saying archiving degraded (a write failed on a working archive, it cannot be
    /// opened) and that it works again: at most one of each per interval, however often a
    /// disk on the edge of full flips between the two.
    degraded_line: LineLimit,
    resumed_line: LineLimit,
}

/// At most one line per [`STATE_LOG`].
#[derive(Default)]
struct LineLimit(Mutex<Option<Instant>>);

impl LineLimit {
    /// Whether a line may be logged now (and if so, that it is).
    fn due(&self) -> bool {
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < STATE_LOG) {
            return false;
        }
        *last = Some(now);
        true
    }
}

impl ArchiveSink {
    /// Opens the archive at `path` and marks the sessions a previous daemon left running;
    /// when that fails, logs why and returns a sink without an archive (degraded), which
    /// [`ArchiveSink::maintain`] keeps trying to open. Blocks (call before serving starts or
    /// off the runtime).
    pub(crate) fn open(path: &Path, metrics: Arc<Metrics>) -> Arc<Self> {
        let sink = Arc::new(Self {
            path: path.to_path_buf(),
            archive: Mutex::new(None),
            degraded: AtomicBool::new(false),
            metrics,
            degraded_line: LineLimit::default(),
            resumed_line: LineLimit::default(),
        });
        if let Err(e) = sink.try_open() {
            sink.set_degraded(true);
            sink.degraded_line.due();
            tracing::error!(
                archive = %path.display(),
                "cannot open the archive: {e}; measuring and serving without archiving, \
                 trying again every {}s",
                RETRY.as_secs()
            );
        }
        sink
    }

    /// Whether the archive is open.
    pub(crate) fn is_open(&self) -> bool {
        self.current().is_some()
    }

    fn current(&self) -> Option<Arc<Archive>> {
        // The Option is replaced whole: a panic elsewhere cannot leave it half written.
        self.archive
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn try_open(&self) -> Result<(), ArchiveError> {
        let archive = Archive::open(&self.path)?;
        let n = archive.mark_interrupted(crate::results::now_ns())?;
        if n > 0 {
            tracing::warn!(
                sessions = n,
                "sessions left running by the last daemon marked interrupted"
            );
        }
        *self.archive.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(archive));
        Ok(())
    }

    fn set_degraded(&self, on: bool) -> bool {
        self.metrics.set_archive_degraded(on);
        self.degraded.swap(on, Ordering::Relaxed)
    }

    /// A write that did not reach the archive: counted, logged at most once per interval;
    /// a storage failure on an archive that worked degrades it, and says so.
    fn not_archived(&self, what: &str, why: &dyn std::fmt::Display, storage: bool) {
        let unlogged = self.metrics.result_not_archived();
        if storage && !self.set_degraded(true) && self.degraded_line.due() {
            tracing::error!(
                archive = %self.path.display(),
                "archive degraded: {why}; measuring and serving go on, results are not \
                 archived until writing works again"
            );
            return;
        }
        if let Some(unlogged) = unlogged {
            tracing::error!(
                archive = %self.path.display(),
                suppressed = unlogged,
                "results not archived ({what}): {why}; measuring goes on \
                 (ippm_archive_degraded, ippm_dropped_total{{event=\"result_not_archived\"}})"
            );
        }
    }

    /// A session's results could not be written because the session has no archive entry
    /// (its start was not archived): counted like a failed write.
    pub(crate) fn skipped(&self, what: &str) {
        self.not_archived(what, &"the session's start was not archived", false);
    }

    /// Runs a blocking archive call off the runtime. `None` if it was not archived (no
    /// archive open, or the write failed): counted and logged here, so callers only skip
    /// what depended on it.
    pub(crate) async fn write<T: Send + 'static>(
        self: &Arc<Self>,
        what: &str,
        f: impl FnOnce(&Archive) -> Result<T, ArchiveError> + Send + 'static,
    ) -> Option<T> {
        let Some(a) = self.current() else {
            self.not_archived(what, &"the archive is not open", true);
            return None;
        };
        match tokio::task::spawn_blocking(move || f(&a)).await {
            Ok(Ok(v)) => {
                if self.set_degraded(false) && self.resumed_line.due() {
                    tracing::info!(archive = %self.path.display(), "archive: writing again");
                }
                Some(v)
            }
            Ok(Err(e)) => {
                let storage = is_storage(&e);
                self.not_archived(what, &e, storage);
                None
            }
            Err(e) => {
                self.not_archived(what, &e, false);
                None
            }
        }
    }

    /// Until `stop`: every few seconds opens the archive if it is not open, or checkpoints
    /// its WAL if it is; and prunes per-packet records older than `keep` (hourly), with a
    /// checkpoint after.
    pub(crate) async fn maintain(
        self: Arc<Self>,
        keep: Option<Duration>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut retry = tokio::time::interval(RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut prune = tokio::time::interval(PRUNE);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = retry.tick() => self.retry().await,
                _ = prune.tick(), if keep.is_some() => {
                    if let Some(keep) = keep {
                        self.prune(keep).await;
                    }
                }
                _ = stop.changed() => return,
            }
        }
    }

    async fn retry(self: &Arc<Self>) {
        if let Some(a) = self.current() {
            // Keep the WAL to a few seconds of writes (SQLite's own checkpoint waits for
            // 4 MiB, more than a small disk may have); while degraded, also cut its file to
            // nothing, giving its space back. A failure here says nothing the writes do not.
            let truncate = self.degraded.load(Ordering::Relaxed);
            let res = tokio::task::spawn_blocking(move || {
                if truncate {
                    a.checkpoint()
                } else {
                    a.checkpoint_passive()
                }
            })
            .await;
            if let Ok(Err(e)) = res {
                tracing::debug!("archive checkpoint: {e}");
            }
            return;
        }
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.try_open()).await {
            Ok(Ok(())) => {
                self.set_degraded(false);
                self.resumed_line.due();
                tracing::info!(archive = %self.path.display(), "archive opened: archiving resumes");
            }
            Ok(Err(e)) => {
                if self.degraded_line.due() {
                    tracing::error!(
                        archive = %self.path.display(),
                        "cannot open the archive: {e}; still measuring without archiving"
                    );
                }
            }
            Err(e) => tracing::error!("archive task: {e}"),
        }
    }

    async fn prune(self: &Arc<Self>, keep: Duration) {
        let Some(a) = self.current() else {
            return;
        };
        let before = crate::results::now_ns() - i64::try_from(keep.as_nanos()).unwrap_or(i64::MAX);
        let res = tokio::task::spawn_blocking(move || {
            let n = a.prune_records(before)?;
            // The deleted pages are free in the file now; the WAL that carried the deletes
            // is copied in and cut to nothing, so it cannot grow without bound.
            a.checkpoint()?;
            Ok::<_, ArchiveError>(n)
        })
        .await;
        match res {
            Ok(Ok(n)) if n > 0 => {
                tracing::info!(records = n, "archive: old per-packet records pruned");
            }
            Ok(Err(e)) => tracing::error!("archive prune: {e}"),
            _ => {}
        }
    }
}

/// Whether an error is the storage failing (full disk, I/O), which degrades archiving until
/// it works again, rather than a wrong call.
fn is_storage(e: &ArchiveError) -> bool {
    matches!(
        e,
        ArchiveError::Sqlite(_)
            | ArchiveError::CreateDir { .. }
            | ArchiveError::Io(_)
            | ArchiveError::NotWal(_)
    )
}
