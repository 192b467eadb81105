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

/// A budget of log lines for an event that can come once per packet or per connection: up
/// to `burst` lines at once, then one more per `interval` (a token bucket). Events beyond it
/// are counted and said in the next line that is logged.
#[derive(Debug)]
pub(crate) struct LogLimit {
    interval: Duration,
    burst: u32,
    /// Lines that may be logged now, and when the budget was last topped up.
    budget: Mutex<(u32, Option<Instant>)>,
    suppressed: AtomicU64,
}

impl LogLimit {
    /// One line per `interval`.
    pub(crate) const fn new(interval: Duration) -> Self {
        Self::with_burst(interval, 1)
    }

    /// `burst` lines at once, then one per `interval`.
    pub(crate) const fn with_burst(interval: Duration, burst: u32) -> Self {
        Self {
            interval,
            burst,
            budget: Mutex::new((0, None)),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether to log now; when it says yes, also how many were not logged since the last
    /// line.
    pub(crate) fn check(&self) -> Option<u64> {
        let now = Instant::now();
        let mut b = self.budget.lock().ok()?;
        let (tokens, since) = &mut *b;
        match since {
            None => {
                *tokens = self.burst;
                *since = Some(now);
            }
            Some(t) => {
                let step = self.interval.as_nanos().max(1);
                let earned = now.duration_since(*t).as_nanos() / step;
                if earned > 0 {
                    let earned = u32::try_from(earned).unwrap_or(u32::MAX);
                    *tokens = tokens.saturating_add(earned).min(self.burst);
                    // Keep the remainder, so the rate holds whatever the check times.
                    *t += self.interval.saturating_mul(earned);
                    if *tokens == self.burst {
                        *t = now;
                    }
                }
            }
        }
        if *tokens == 0 {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *tokens -= 1;
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
    /// One log line per [`LOG_INTERVAL`] (events that come once per packet).
    pub(crate) const fn new(event: &'static str) -> Self {
        Self {
            event,
            counter: OnceLock::new(),
            log: LogLimit::new(LOG_INTERVAL),
        }
    }

    /// Up to `burst` lines at once, then one per `interval`: for events that come once per
    /// connection, where the first few lines of a burst each tell something.
    pub(crate) const fn with_burst(event: &'static str, burst: u32, interval: Duration) -> Self {
        Self {
            event,
            counter: OnceLock::new(),
            log: LogLimit::with_burst(interval, burst),
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

/// After its burst, a per-connection event logs one line per this long: a flood costs about
/// 30 bytes of log a second per kind of event.
const PER_CONNECTION: Duration = Duration::from_secs(5);

/// A test packet that failed its check (length, HMAC, format).
pub(crate) static TEST_PACKET_BAD: Dropped = Dropped::new("test_packet_bad");
/// A test packet from an address other than the session's peer.
pub(crate) static TEST_PACKET_STRANGER: Dropped = Dropped::new("test_packet_stranger");
/// A received OWAMP test packet the record store had no room for.
pub(crate) static TEST_RECORD_NO_ROOM: Dropped = Dropped::new("test_record_no_room");
/// A test socket's receive failed.
pub(crate) static TEST_RECV_ERROR: Dropped = Dropped::new("test_recv_error");
/// A control client named an RFC 7717 IKE SA we do not have, or one with another host.
pub(crate) static IKE_SA_REFUSED: Dropped =
    Dropped::with_burst("ike_sa_refused", 5, PER_CONNECTION);
/// A control connection refused: every place (of its source) held by connections set up.
pub(crate) static CONNECTION_REFUSED: Dropped =
    Dropped::with_burst("connection_refused", 5, PER_CONNECTION);
/// A control connection still setting up, closed to make room for a newcomer.
pub(crate) static CONNECTION_EVICTED: Dropped =
    Dropped::with_burst("connection_evicted", 5, PER_CONNECTION);
/// accept(2) failed (out of file descriptors, mostly); the connection was closed.
pub(crate) static ACCEPT_FAILED: Dropped = Dropped::new("accept_failed");
/// A test session refused (a limit, no port, the policy).
pub(crate) static SESSION_REFUSED: Dropped =
    Dropped::with_burst("session_refused", 10, PER_CONNECTION);
/// A control connection ended by a protocol error, a timeout or a write that did not finish.
pub(crate) static CONNECTION_FAILED: Dropped =
    Dropped::with_burst("connection_failed", 8, PER_CONNECTION);
/// A STAMP packet from a source outside the reflector's allow-list.
pub(crate) static STAMP_NOT_ALLOWED: Dropped = Dropped::new("stamp_not_allowed");
/// A STAMP packet over its source's rate.
pub(crate) static STAMP_RATE_LIMITED: Dropped = Dropped::new("stamp_rate_limited");
/// A STAMP packet that would have started a stateful session, with no room for one.
pub(crate) static STAMP_SESSION_REFUSED: Dropped = Dropped::new("stamp_session_refused");
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
    fn burst_then_one_per_interval() {
        let l = LogLimit::with_burst(Duration::from_millis(100), 3);
        assert_eq!((0..10).filter(|_| l.check().is_some()).count(), 3);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(
            l.check(),
            Some(7),
            "the next line says how many were held back"
        );
        assert_eq!(l.check(), None);
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(
            (0..10).filter(|_| l.check().is_some()).count(),
            3,
            "refilled to the burst"
        );
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
