//! A measuring `ippm serve` (`[[measure]]` entries and an `[archive]`), and the archive read
//! back through the real CLI (`ippm results`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::IPPM;

/// A running `ippm serve --config CONFIG`, killed (by its PID) when dropped.
pub(crate) struct Measuring {
    pub(crate) child: Child,
    /// The metrics listener (`host:port`), if it has one.
    pub(crate) metrics: String,
}

impl Measuring {
    /// Starts `ippm serve --config CONFIG EXTRA...` and waits until it announces its archive;
    /// its log goes to `log`.
    pub(crate) fn start(config: &Path, extra: &[&str], log: &Path) -> Self {
        let mut child = Command::new(IPPM)
            .args(["serve", "--config"])
            .arg(config)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut metrics = String::new();
        loop {
            let mut line = String::new();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "ippm serve ended:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            if let Some(m) = line.trim().strip_prefix("metrics ") {
                m.strip_prefix("http://")
                    .and_then(|m| m.strip_suffix("/metrics"))
                    .unwrap_or(m)
                    .clone_into(&mut metrics);
            }
            if line.starts_with("archive ") {
                break;
            }
        }
        // Keep draining what it prints later.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Self { child, metrics }
    }

    /// `GET /metrics` (the whole response).
    pub(crate) fn scrape(&self) -> String {
        super::scrape(&self.metrics)
    }
}

impl Drop for Measuring {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ippm results --archive ARCHIVE ARGS...`, its output parsed as JSON.
pub(crate) fn results(archive: &Path, args: &[&str]) -> serde_json::Value {
    let out = results_raw(archive, args);
    serde_json::from_slice(&out).unwrap()
}

/// `ippm results --archive ARCHIVE ARGS...`: its output, which must be a success.
pub(crate) fn results_raw(archive: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(IPPM)
        .arg("results")
        .arg("--archive")
        .arg(archive)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Every session `ippm results list --json` shows (with `args` added), newest first.
pub(crate) fn sessions(archive: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    results(archive, &[&["list", "--json"], args].concat())
        .as_array()
        .unwrap()
        .clone()
}
