//! The system clock as the protocols see it: NTP timestamps and honest error estimates.
//!
//! The error estimate comes from the kernel's NTP state (`ntp_adjtime` in read-only mode), which
//! both ntpd and chrony maintain: when the kernel says the clock is synchronized, S is set and
//! the error is the kernel's estimated error; otherwise S is clear and the error is the kernel's
//! maximum error (16 s on a clock nobody disciplines). ippm never refuses to run because no
//! NTP daemon is present; it says so in the error estimate instead.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ippm_proto::{ErrorEstimate, Timestamp};

/// The kernel's view of the clock's quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockState {
    /// The kernel reports the clock synchronized to an external source.
    pub synchronized: bool,
    /// Estimated error (synchronized) or maximum error (not).
    pub error: Duration,
}

impl ClockState {
    /// Reads the kernel's NTP state. Falls back to "unsynchronized, 16 s" where the call fails.
    pub fn read() -> Self {
        crate::sys::ntp_state().unwrap_or(Self {
            synchronized: false,
            error: Duration::from_secs(16),
        })
    }

    /// The Error Estimate field for timestamps taken now.
    pub fn error_estimate(&self) -> ErrorEstimate {
        ErrorEstimate::from_duration(self.synchronized, self.error)
    }
}

/// The kernel's clock state, read at most once a second: the per-packet paths stamp an error
/// estimate on every packet, and the NTP state changes slowly.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClockCache {
    /// The field as of the last read (encoding it takes floating-point work: once a second,
    /// not once a packet).
    estimate: ErrorEstimate,
    read_at: std::time::Instant,
}

impl ClockCache {
    pub(crate) fn new() -> Self {
        Self {
            estimate: ClockState::read().error_estimate(),
            read_at: std::time::Instant::now(),
        }
    }

    /// The Error Estimate field for timestamps taken now.
    pub(crate) fn estimate(&mut self) -> ErrorEstimate {
        if self.read_at.elapsed() > Duration::from_secs(1) {
            self.estimate = ClockState::read().error_estimate();
            self.read_at = std::time::Instant::now();
        }
        self.estimate
    }
}

/// The current time as an NTP timestamp.
pub fn now() -> Timestamp {
    from_system(SystemTime::now())
}

/// A system time as an NTP timestamp (times before 1970 map to the epoch).
pub fn from_system(t: SystemTime) -> Timestamp {
    Timestamp::from_unix(t.duration_since(UNIX_EPOCH).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_now() {
        let t = now();
        let back = t.to_unix().unwrap();
        let sys = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(sys.saturating_sub(back) < Duration::from_secs(1));
    }

    #[test]
    fn clock_state_is_sane() {
        let s = ClockState::read();
        let e = s.error_estimate();
        assert!(e.is_valid());
        assert_eq!(e.synchronized(), s.synchronized);
        assert!(e.seconds() >= s.error.as_secs_f64());
        // The kernel's maximum error is bounded at 16 s.
        assert!(s.error <= Duration::from_secs(17));
    }
}
