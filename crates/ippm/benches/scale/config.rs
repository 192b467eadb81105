//! What a run is asked for: the protocols and the settings read from the environment
//! (IPPM_SCALE_*), with the time limits that follow from them.

use std::time::Duration;

use ippm_proto::SecurityMode;

use crate::{CONTROL_TIMEOUT, LOSS_TIMEOUT, RAW_SECONDS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    Twamp,
    Owamp,
}

impl Proto {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Twamp => "twamp",
            Self::Owamp => "owamp",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) secs: f64,
    pub(crate) max_n: usize,
    pub(crate) setup_rate: f64,
    pub(crate) in_flight: usize,
    pub(crate) client_threads: usize,
    pub(crate) protocols: Vec<Proto>,
    pub(crate) mode: SecurityMode,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

impl Config {
    pub(crate) fn from_env() -> Self {
        let protocols = std::env::var("IPPM_SCALE_PROTOCOLS")
            .unwrap_or_else(|_| "twamp,owamp".into())
            .split(',')
            .filter_map(|p| match p.trim() {
                "twamp" => Some(Proto::Twamp),
                "owamp" => Some(Proto::Owamp),
                _ => None,
            })
            .collect();
        let mode = match std::env::var("IPPM_SCALE_MODE").as_deref() {
            Ok("open") => SecurityMode::Open,
            Ok("encrypted") => SecurityMode::Encrypted,
            _ => SecurityMode::Authenticated,
        };
        Self {
            secs: env_or("IPPM_SCALE_SECONDS", 20.0f64).max(1.0),
            max_n: env_or("IPPM_SCALE_MAX_N", 10_000usize),
            setup_rate: env_or("IPPM_SCALE_SETUP_RATE", 200.0f64).max(1.0),
            in_flight: env_or("IPPM_SCALE_SETUPS_IN_FLIGHT", 4usize).max(1),
            client_threads: env_or("IPPM_SCALE_CLIENT_THREADS", 1usize).max(1),
            protocols,
            mode,
        }
    }

    /// The planned ramp: N session starts at the set-up rate.
    pub(crate) fn ramp(&self, n: usize) -> Duration {
        Duration::from_secs_f64(n as f64 / self.setup_rate)
    }

    /// How long the ramp may take: sessions not started by then are given up.
    pub(crate) fn ramp_limit(&self, n: usize) -> Duration {
        self.ramp(n) * 3 + Duration::from_secs(10)
    }

    /// Packets for the `k`-th session to start, `elapsed` into the ramp: enough to go on
    /// sending until the last session has started (at the start rate seen so far, with room
    /// to spare) and then `secs` more, but not past the ramp limit. So all N send together for
    /// about `secs` even when set-ups come slower than planned.
    pub(crate) fn count(&self, n: usize, rate: u32, k: usize, elapsed: Duration) -> u32 {
        let e = elapsed.as_secs_f64();
        let seen = if e > 0.5 {
            (k as f64 / e).min(self.setup_rate)
        } else {
            self.setup_rate
        };
        let rest = (n.saturating_sub(k) as f64 / seen.max(1.0) * 2.0 + 2.0)
            .min((self.ramp_limit(n).as_secs_f64() - e).max(0.0));
        ((rest + self.secs) * f64::from(rate)).ceil() as u32
    }

    /// The most packets a session gets.
    fn max_count(&self, n: usize, rate: u32) -> u32 {
        ((self.ramp_limit(n).as_secs_f64() + self.secs) * f64::from(rate)).ceil() as u32
    }

    /// How long a session of `count` packets may take, from its start.
    pub(crate) fn session_limit(count: u32, rate: u32) -> Duration {
        Duration::from_secs_f64(f64::from(count) / f64::from(rate))
            + LOSS_TIMEOUT
            + CONTROL_TIMEOUT * 4
    }

    /// How long the sessions of a case may take, from the first start.
    pub(crate) fn sessions_limit(&self, n: usize, rate: u32) -> Duration {
        self.ramp_limit(n)
            + Self::session_limit(self.max_count(n, rate), rate)
            + Duration::from_secs(5)
    }

    /// How long a whole case may take: the raw baseline, the daemon, the sessions.
    pub(crate) fn case_budget(&self, n: usize, rate: u32) -> Duration {
        Duration::from_secs_f64(RAW_SECONDS + 10.0)
            + self.sessions_limit(n, rate)
            + Duration::from_secs(30)
    }
}
