//! Figures: a case's, passed from its process to the parent in one line, and the summary
//! against the targets.

use std::time::Duration;

use ippm_proto::Timestamp;

use crate::config::{Config, Proto};
use crate::{CPU_RATIO_TARGET, IDLE_TARGET, LOSS_TARGET, RSS_TARGET_KIB};

/// The figures of one case.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Figures {
    pub(crate) proto: Proto,
    pub(crate) n: usize,
    pub(crate) rate: u32,
    pub(crate) ran: bool,
    pub(crate) started: usize,
    pub(crate) failed: usize,
    pub(crate) loss: f64,
    pub(crate) daemon_cpu_per_packet_ns: f64,
    pub(crate) daemon_cpu_share: f64,
    pub(crate) daemon_rss_per_session_kib: f64,
    pub(crate) raw_cpu_per_packet_ns: f64,
}

impl Figures {
    pub(crate) fn not_run(proto: Proto, n: usize, rate: u32) -> Self {
        Self {
            proto,
            n,
            rate,
            ran: false,
            started: 0,
            failed: 0,
            loss: f64::NAN,
            daemon_cpu_per_packet_ns: f64::NAN,
            daemon_cpu_share: f64::NAN,
            daemon_rss_per_session_kib: f64::NAN,
            raw_cpu_per_packet_ns: f64::NAN,
        }
    }

    /// One line for the parent process.
    pub(crate) fn line(&self) -> String {
        format!(
            "{} {} {} {} {} {} {} {} {} {} {}",
            self.proto.name(),
            self.n,
            self.rate,
            self.ran,
            self.started,
            self.failed,
            self.loss,
            self.daemon_cpu_per_packet_ns,
            self.daemon_cpu_share,
            self.daemon_rss_per_session_kib,
            self.raw_cpu_per_packet_ns
        )
    }

    pub(crate) fn parse(line: &str) -> Option<Self> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok());
        Some(Self {
            proto: match *f.first()? {
                "owamp" => Proto::Owamp,
                _ => Proto::Twamp,
            },
            n: f.get(1)?.parse().ok()?,
            rate: f.get(2)?.parse().ok()?,
            ran: f.get(3)?.parse().ok()?,
            started: f.get(4)?.parse().ok()?,
            failed: f.get(5)?.parse().ok()?,
            loss: num(6)?,
            daemon_cpu_per_packet_ns: num(7)?,
            daemon_cpu_share: num(8)?,
            daemon_rss_per_session_kib: num(9)?,
            raw_cpu_per_packet_ns: num(10)?,
        })
    }
}

pub(crate) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

pub(crate) fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT MET" }
}

pub(crate) fn between(t: &[Timestamp], a: Timestamp, b: Timestamp) -> u64 {
    t.iter().filter(|x| **x >= a && **x <= b).count() as u64
}

pub(crate) fn summary(cfg: &Config, figs: &[Figures]) {
    println!("\n== targets ==");
    let find = |p: Proto, n: usize, r: u32| {
        figs.iter()
            .find(|f| f.proto == p && f.n == n && f.rate == r && f.ran)
    };
    let not_run = |p: Proto, n: usize| {
        if !cfg.protocols.contains(&p) {
            "not run (IPPM_SCALE_PROTOCOLS)".to_string()
        } else if n > cfg.max_n {
            format!("not run (IPPM_SCALE_MAX_N = {})", cfg.max_n)
        } else {
            "not measured (see above)".to_string()
        }
    };
    let line = match find(Proto::Twamp, 10_000, 10) {
        Some(f) => format!(
            "{} started, {} failed, loss {:.4}%: {}",
            f.started,
            f.failed,
            f.loss * 100.0,
            met(f.failed == 0 && f.loss < LOSS_TARGET)
        ),
        None => not_run(Proto::Twamp, 10_000),
    };
    println!("10,000 TWAMP sessions at 10/s with < 0.01% loss: {line}");
    for p in [Proto::Twamp, Proto::Owamp] {
        let line = match find(p, 10_000, 10) {
            Some(f) => {
                let r = f.daemon_cpu_per_packet_ns / f.raw_cpu_per_packet_ns;
                format!(
                    "{:.2} us vs {:.2} us, {r:.2}x: {}",
                    f.daemon_cpu_per_packet_ns / 1e3,
                    f.raw_cpu_per_packet_ns / 1e3,
                    met(r <= CPU_RATIO_TARGET)
                )
            }
            None => not_run(p, 10_000),
        };
        println!(
            "{} daemon CPU per packet <= {CPU_RATIO_TARGET}x the raw batched baseline's \
             (10,000 at 10/s): {line}",
            p.name().to_uppercase()
        );
    }
    for p in [Proto::Twamp, Proto::Owamp] {
        let line = match find(p, 10_000, 1) {
            Some(f) => format!(
                "{:.2}% of a core: {}",
                f.daemon_cpu_share * 100.0,
                met(f.daemon_cpu_share <= IDLE_TARGET)
            ),
            None => not_run(p, 10_000),
        };
        println!(
            "{} idle cost (10,000 sessions at 1/s) <= 5% of a core: {line}",
            p.name().to_uppercase()
        );
    }
    for p in [Proto::Twamp, Proto::Owamp] {
        let line = match find(p, 10_000, 10) {
            Some(f) => format!(
                "{:.2} KiB: {}",
                f.daemon_rss_per_session_kib,
                met(f.daemon_rss_per_session_kib <= RSS_TARGET_KIB)
            ),
            None => not_run(p, 10_000),
        };
        println!(
            "{} daemon RSS <= 16 KiB per session (10,000 at 10/s): {line}",
            p.name().to_uppercase()
        );
    }
    // What ran, in one table.
    println!(
        "\n{:>6} {:>6} {:>4} {:>8} {:>7} {:>9} {:>10} {:>10} {:>7} {:>8} {:>10}",
        "proto",
        "N",
        "pps",
        "started",
        "failed",
        "loss %",
        "us/pkt",
        "raw us/pkt",
        "ratio",
        "% core",
        "KiB/sess"
    );
    for f in figs.iter().filter(|f| f.ran) {
        println!(
            "{:>6} {:>6} {:>4} {:>8} {:>7} {:>9.4} {:>10.2} {:>10.2} {:>7.2} {:>8.2} {:>10.2}",
            f.proto.name(),
            f.n,
            f.rate,
            f.started,
            f.failed,
            f.loss * 100.0,
            f.daemon_cpu_per_packet_ns / 1e3,
            f.raw_cpu_per_packet_ns / 1e3,
            f.daemon_cpu_per_packet_ns / f.raw_cpu_per_packet_ns,
            f.daemon_cpu_share * 100.0,
            f.daemon_rss_per_session_kib
        );
    }
}
