//! What the daemon refused or dropped, counted and said without flooding the log.
//!
//! An attacker chooses how often these happen (a junk datagram per packet, a refused
//! connection per SYN), so none of them may cost a log line each: every event is counted in
//! the metric `ippm_dropped_total{event="..."}`, and logged at most once per interval with
//! the number of events the line stands for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// The label of `ippm_dropped_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DropLabels {
    event: &'static str,
}

/// Every event's counter, registered by [`crate::metrics::Metrics::new`] (a clone shares
/// the counts).
pub(crate) static DROPPED: LazyLock<Family<DropLabels, Counter>> = LazyLock::new(Family::default);

/// How often a line is logged for one kind of event at most.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// At most one log line per interval for an event that can come once per packet: the first
/// occurrence is logged, the rest are counted and said in the next line.
#[derive(Debug)]
pub(crate) struct LogLimit {
    interval: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl LogLimit {
    pub(crate) const fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether to log now; when it says yes, also how many were not logged since the last
    /// line.
    pub(crate) fn check(&self) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock().ok()?;
        if last.is_some_and(|t| now.duration_since(t) < self.interval) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// One kind of refused or dropped thing: a `static` per call site kind.
#[derive(Debug)]
pub(crate) struct Dropped {
    event: &'static str,
    counter: OnceLock<Counter>,
    log: LogLimit,
}

impl Dropped {
    /// `event` is the metric label: lower case with underscores, e.g. `test_packet_bad`.
    pub(crate) const fn new(event: &'static str) -> Self {
        Self {
            event,
            counter: OnceLock::new(),
            log: LogLimit::new(LOG_INTERVAL),
        }
    }

    /// Counts one; `Some(n)` when a line is to be logged now, `n` being the events since the
    /// last line that were counted but not logged.
    pub(crate) fn note(&self) -> Option<u64> {
        self.counter
            .get_or_init(|| {
                DROPPED
                    .get_or_create(&DropLabels { event: self.event })
                    .clone()
            })
            .inc();
        self.log.check()
    }

    /// How many so far (for tests and log lines).
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.counter.get().map_or(0, Counter::get)
    }
}

// The catalogue: every event the daemon counts, in one place (docs/prometheus.md lists them).

/// A test packet that failed its check (length, HMAC, format).
pub(crate) static TEST_PACKET_BAD: Dropped = Dropped::new("test_packet_bad");
/// A test packet from an address other than the session's peer.
pub(crate) static TEST_PACKET_STRANGER: Dropped = Dropped::new("test_packet_stranger");
/// A received OWAMP test packet the record store had no room for.
pub(crate) static TEST_RECORD_NO_ROOM: Dropped = Dropped::new("test_record_no_room");
/// A test socket's receive failed.
pub(crate) static TEST_RECV_ERROR: Dropped = Dropped::new("test_recv_error");
/// Test packets the kernel would not send.
pub(crate) static TEST_SEND_ERROR: Dropped = Dropped::new("test_send_error");
/// A write to the measurement archive that failed (full disk) or was not made (the archive
/// could not be opened): its results are not archived.
pub(crate) static RESULT_NOT_ARCHIVED: Dropped = Dropped::new("result_not_archived");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limit_says_the_suppressed_count() {
        let l = LogLimit::new(Duration::from_millis(50));
        assert_eq!(l.check(), Some(0));
        assert_eq!(l.check(), None);
        assert_eq!(l.check(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(l.check(), Some(2));
    }

    #[test]
    fn dropped_counts_every_event_and_logs_one() {
        static E: Dropped = Dropped::new("unit_test_event");
        let logged = (0..1000).filter(|_| E.note().is_some()).count();
        assert_eq!(logged, 1);
        assert_eq!(E.count(), 1000);
        let fam = DROPPED.get_or_create(&DropLabels {
            event: "unit_test_event",
        });
        assert_eq!(fam.get(), 1000, "the metric family shares the count");
    }
}
