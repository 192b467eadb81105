//! stamp-suite, an independent STAMP (RFC 8762/8972) Session-Sender and Session-Reflector
//! (crates.io; `cargo install stamp-suite --locked --version 1.0.0`, which .ci/run does), for
//! the STAMP interop tests. What it does and how it deviates: docs/interop-stamp-suite.md.
//!
//! Not installed: the test says so and passes, except in CI (`CI=true`), where that fails it.
#![allow(dead_code)]

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::proc::{Guarded, Ran, run_bounded};

/// The version .ci/run installs, and the one docs/interop-stamp-suite.md describes.
pub(crate) const VERSION: &str = "1.0.0";

/// A 32-octet HMAC key, hex (stamp-suite wants at least 16 octets).
pub(crate) const KEY: &str = "00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210";
/// Another one: the wrong key.
pub(crate) const WRONG_KEY: &str =
    "ff112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210";

/// The stamp-suite binary: `$STAMP_SUITE`, else `stamp-suite` on PATH, else in
/// `$CARGO_HOME/bin` or `~/.cargo/bin`; `None` if none exists.
pub(crate) fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STAMP_SUITE") {
        return Some(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(Path::new(&home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("stamp-suite"))
        .find(|p| p.is_file())
}

/// The binary, or `None` after saying why the test does not run. In CI (`CI=true`) a
/// missing stamp-suite fails the test instead: .ci/run installs it.
pub(crate) fn require() -> Option<PathBuf> {
    match binary() {
        Some(b) => {
            let v = Command::new(&b).arg("--version").output();
            let v = v.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
            if !matches!(&v, Ok(v) if *v == format!("stamp-suite {VERSION}")) {
                eprintln!("note: {} is {v:?}; these tests know {VERSION}", b.display());
            }
            Some(b)
        }
        None if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "stamp-suite is not installed, and CI must run the STAMP interop tests \
             (.ci/run: cargo install stamp-suite --locked --version {VERSION})"
        ),
        None => {
            eprintln!(
                "SKIPPED: stamp-suite is not installed (cargo install stamp-suite --locked \
                 --version {VERSION}, or set STAMP_SUITE=/path/to/stamp-suite)"
            );
            None
        }
    }
}

/// Writes `hex` and a newline to `dir/name`, mode 600 (stamp-suite refuses a key file that
/// group or others can read).
pub(crate) fn key_file(dir: &Path, name: &str, hex: &str) -> PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    writeln!(f, "{hex}").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// How to run a stamp-suite reflector.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReflectorOpts {
    /// The address to listen on (127.0.0.1 when `None`).
    pub(crate) addr: Option<IpAddr>,
    /// The port; 0 (the default here) lets the kernel choose, and [`Reflector::addr`] says
    /// which.
    pub(crate) port: u16,
    /// Authenticated mode (`-A A`) with this key file; open mode (`-A O`) without.
    pub(crate) key: Option<PathBuf>,
    /// `--stateful-reflector`: its own sequence numbers per session (RFC 8762 §4.3.1).
    pub(crate) stateful: bool,
}

/// What a reflector counted, printed as JSON on stdout when it stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReflectorStats {
    /// Datagrams it received.
    pub(crate) received: u64,
    /// Replies it sent.
    pub(crate) reflected: u64,
    /// Packets it dropped (a bad HMAC, a malformed packet, a rate limit).
    pub(crate) dropped: u64,
    /// The sessions it learned: (client address, SSID, received, transmitted).
    pub(crate) sessions: Vec<(String, u16, u64, u64)>,
}

/// A running stamp-suite reflector, stopped by [`Reflector::stop`] or killed (by its PID)
/// when dropped.
pub(crate) struct Reflector {
    child: Guarded,
    /// The address it listens on.
    pub(crate) addr: SocketAddr,
    log: PathBuf,
    out: PathBuf,
}

impl Reflector {
    /// Starts `stamp-suite --is-reflector` with `opts` (files in `dir`) and waits, at most
    /// 15 s, until it says where it listens.
    pub(crate) fn start(bin: &Path, opts: &ReflectorOpts, dir: &Path) -> Self {
        let ip = opts
            .addr
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let log = dir.join(format!("stamp-suite-reflector-{n}.log"));
        let out = dir.join(format!("stamp-suite-reflector-{n}.out"));
        let mut cmd = Command::new(bin);
        cmd.args(["--is-reflector", "--local-addr", &ip.to_string()])
            .args(["--local-port", &opts.port.to_string()])
            .args(["--output-format", "json"]);
        match &opts.key {
            Some(k) => cmd.args(["--auth-mode", "A", "--hmac-key-file"]).arg(k),
            None => cmd.args(["--auth-mode", "O"]),
        };
        if opts.stateful {
            cmd.arg("--stateful-reflector");
        }
        let child = cmd
            // It says where it listens at info level.
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut child = Guarded(child);
        let end = Instant::now() + Duration::from_secs(15);
        let addr = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            // "STAMP Reflector listening on 127.0.0.1:51015 (nix mode, real TTL)"
            if let Some(a) = text
                .split("STAMP Reflector listening on ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|a| a.parse::<SocketAddr>().ok())
            {
                break a;
            }
            if !child.running() {
                panic!("stamp-suite reflector {cmd:?} ended:\n{text}");
            }
            if Instant::now() >= end {
                panic!("stamp-suite reflector {cmd:?} did not say it listens within 15 s:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Self {
            child,
            addr,
            log,
            out,
        }
    }

    /// Its log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops it (SIGTERM, at most 10 s) and returns what it counted.
    pub(crate) fn stop(mut self) -> ReflectorStats {
        use nix::sys::signal::Signal;
        let status = self
            .child
            .signal_and_wait(Signal::SIGTERM, Duration::from_secs(10));
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let v: serde_json::Value = text
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| {
                panic!(
                    "no statistics from the stamp-suite reflector (exit {status:?}):\n{text}\n{}",
                    self.log()
                )
            });
        let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"));
        ReflectorStats {
            received: n("total_packets_received"),
            reflected: n("total_packets_reflected"),
            dropped: n("total_packets_dropped"),
            sessions: v["sessions"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| {
                            (
                                s["client"].as_str().unwrap_or_default().to_owned(),
                                s["ssid"].as_u64().unwrap_or_default() as u16,
                                s["packets_received"].as_u64().unwrap_or_default(),
                                s["packets_transmitted"].as_u64().unwrap_or_default(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// How to run the stamp-suite sender.
#[derive(Debug, Clone)]
pub(crate) struct SenderOpts {
    /// The reflector.
    pub(crate) remote: SocketAddr,
    /// Packets to send (`--count`).
    pub(crate) count: u32,
    /// Interval between them, ms (`--send-delay`).
    pub(crate) interval_ms: u32,
    /// Seconds to wait for a reply before counting the packet lost (`--timeout`).
    pub(crate) timeout_s: u32,
    /// Authenticated mode with this key file; open mode without.
    pub(crate) key: Option<PathBuf>,
    /// The SSID (RFC 8972 §3) to send; 0 when `None`.
    pub(crate) ssid: Option<u16>,
    /// The local UDP port (0: any).
    pub(crate) local_port: u16,
}

impl SenderOpts {
    /// `count` open-mode packets to `remote`, 10 ms apart, 2 s for the last reply.
    pub(crate) fn new(remote: SocketAddr, count: u32) -> Self {
        Self {
            remote,
            count,
            interval_ms: 10,
            timeout_s: 2,
            key: None,
            ssid: None,
            local_port: 0,
        }
    }
}

/// One reply, as the sender's `-R` prints it (on stderr with `--output-format json`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Reply {
    /// The Session-Sender Sequence Number the reply carries.
    pub(crate) seq: u32,
    /// T4 - T1 on the sender's monotonic clock (the reflector's processing included), ms.
    pub(crate) rtt_ms: f64,
    /// The Session-Sender TTL the reflector saw.
    pub(crate) ttl: u8,
    /// The reflector's Receive Timestamp (T2), raw 64-bit NTP.
    pub(crate) t2: u64,
    /// The reflector's Timestamp (T3), raw 64-bit NTP.
    pub(crate) t3: u64,
}

/// What a stamp-suite sender reported.
#[derive(Debug, Clone)]
pub(crate) struct SenderReport {
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) lost: u64,
    pub(crate) loss_percent: f64,
    /// Round-trip time min / median / max, ms (`None` without replies).
    pub(crate) rtt_min_ms: Option<f64>,
    pub(crate) rtt_median_ms: Option<f64>,
    pub(crate) rtt_max_ms: Option<f64>,
    /// Forward (T2 - T1) and reverse (T4 - T3) one-way delay minima, ms.
    pub(crate) forward_min_ms: Option<f64>,
    pub(crate) reverse_min_ms: Option<f64>,
    /// Distinct replies and duplicates.
    pub(crate) unique_replies: u64,
    pub(crate) duplicate_replies: u64,
    /// The reflector sequence number of the last reply.
    pub(crate) last_reflector_seq: Option<u32>,
    /// Replies whose reflector sequence number differed from the sender's (a stateful
    /// reflector's own counting).
    pub(crate) independent_seqs: u64,
    /// Every reply.
    pub(crate) replies: Vec<Reply>,
    /// The whole summary, and the run itself (its exit status is 0 even when every packet
    /// was lost).
    pub(crate) json: serde_json::Value,
    pub(crate) ran: Ran,
}

impl SenderReport {
    /// Everything, for assertion messages.
    pub(crate) fn dump(&self) -> String {
        format!("{:#?}\n{}", self.replies, self.ran.both())
    }
}

/// Runs the stamp-suite sender with `opts` (files in `dir`), bounded in time, and reads its
/// JSON summary and per-packet lines.
pub(crate) fn send(bin: &Path, opts: &SenderOpts, dir: &Path) -> SenderReport {
    let local = match opts.remote.ip() {
        IpAddr::V4(_) => "127.0.0.1",
        // Its local address defaults to 0.0.0.0, which cannot reach an IPv6 reflector.
        IpAddr::V6(_) => "::1",
    };
    let mut cmd = Command::new(bin);
    cmd.args(["--remote-addr", &opts.remote.ip().to_string()])
        .args(["--remote-port", &opts.remote.port().to_string()])
        .args(["--local-addr", local])
        .args(["--local-port", &opts.local_port.to_string()])
        .args(["--count", &opts.count.to_string()])
        .args(["--send-delay", &opts.interval_ms.to_string()])
        .args(["--timeout", &opts.timeout_s.to_string()])
        .args(["--output-format", "json", "-R"]);
    match &opts.key {
        Some(k) => cmd.args(["--auth-mode", "A", "--hmac-key-file"]).arg(k),
        None => cmd.args(["--auth-mode", "O"]),
    };
    if let Some(s) = opts.ssid {
        cmd.args(["--ssid", &s.to_string()]);
    }
    cmd.env("RUST_LOG", "warn").env("NO_COLOR", "1");
    let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    let within = Duration::from_millis(
        u64::from(opts.count) * u64::from(opts.interval_ms) + u64::from(opts.timeout_s) * 1000,
    ) + Duration::from_secs(30);
    let ran = run_bounded(cmd, dir, &format!("stamp-suite-sender-{n}"), within);
    assert!(
        ran.status.success(),
        "the stamp-suite sender failed:\n{}",
        ran.both()
    );
    let json: serde_json::Value = ran
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|v| v["type"] == "summary")
        .unwrap_or_else(|| panic!("no JSON summary from stamp-suite:\n{}", ran.both()));
    let replies = ran.stderr.lines().filter_map(parse_reply).collect();
    let u = |k: &str| {
        json[k]
            .as_u64()
            .unwrap_or_else(|| panic!("no {k} in {json}"))
    };
    let m = &json["measurements"];
    let mu = |k: &str| m[k].as_u64().unwrap_or_default();
    SenderReport {
        sent: u("packets_sent"),
        received: u("packets_received"),
        lost: u("packets_lost"),
        loss_percent: json["loss_percent"].as_f64().unwrap_or(f64::NAN),
        rtt_min_ms: json["min_rtt_ms"].as_f64(),
        rtt_median_ms: json["median_rtt_ms"].as_f64(),
        rtt_max_ms: json["max_rtt_ms"].as_f64(),
        forward_min_ms: json["owd"]["forward_min_ms"].as_f64(),
        reverse_min_ms: json["owd"]["reverse_min_ms"].as_f64(),
        unique_replies: mu("unique_replies"),
        duplicate_replies: mu("duplicate_replies"),
        last_reflector_seq: m["last_reflector_sequence"].as_u64().map(|s| s as u32),
        independent_seqs: mu("independent_sequence_observations"),
        replies,
        json,
        ran,
    }
}

/// `seq=0 rtt=0.136ms ttl=255 reflector_recv_ts=17204235495591351125 reflector_send_ts=...`
pub(crate) fn parse_reply(line: &str) -> Option<Reply> {
    let mut seq = None;
    let mut rtt = None;
    let mut ttl = None;
    let mut t2 = None;
    let mut t3 = None;
    for w in line.split_whitespace() {
        let (k, v) = w.split_once('=')?;
        match k {
            "seq" => seq = v.parse().ok(),
            "rtt" => rtt = v.strip_suffix("ms")?.parse().ok(),
            "ttl" => ttl = v.parse().ok(),
            "reflector_recv_ts" => t2 = v.parse().ok(),
            "reflector_send_ts" => t3 = v.parse().ok(),
            _ => {}
        }
    }
    Some(Reply {
        seq: seq?,
        rtt_ms: rtt?,
        ttl: ttl?,
        t2: t2?,
        t3: t3?,
    })
}

/// A raw 64-bit NTP timestamp (RFC 5905), in nanoseconds since the Unix epoch (this era).
pub(crate) fn ntp_unix_ns(t: u64) -> i128 {
    const NTP_UNIX: i128 = 2_208_988_800;
    let secs = i128::from(t >> 32) - NTP_UNIX;
    let frac = (i128::from(t & 0xffff_ffff) * 1_000_000_000) >> 32;
    secs * 1_000_000_000 + frac
}
