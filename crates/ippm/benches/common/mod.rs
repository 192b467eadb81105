//! What the benchmarks share: CPU pinning, pacing, medians, a pinned `ippm serve`, and the
//! batched raw baselines (`batch`).
#![allow(dead_code)]

pub(crate) mod batch;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;

pub(crate) const IPPM: &str = env!("CARGO_BIN_EXE_ippm");
/// The sender side runs here.
pub(crate) const SENDER_CPU: usize = 0;
/// The reflector / receiver side runs here.
pub(crate) const SERVER_CPU: usize = 1;

/// Pins the calling thread (best effort: on a one-CPU machine both sides share it).
pub(crate) fn pin(cpu: usize) {
    let mut set = CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = sched_setaffinity(Pid::from_raw(0), &set);
    }
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Calls `f` n times at `rate` per second, sleeping while far from the next call.
pub(crate) fn pace(rate: u64, n: u64, mut f: impl FnMut(u64)) {
    let start = Instant::now();
    let gap = Duration::from_nanos(1_000_000_000 / rate);
    for i in 0..n {
        let at = start + gap * i as u32;
        let now = Instant::now();
        if at > now + Duration::from_micros(100) {
            std::thread::sleep(at - now - Duration::from_micros(50));
        }
        while Instant::now() < at {
            std::hint::spin_loop();
        }
        f(i);
    }
}

/// The median (NaN for none).
pub(crate) fn median(mut v: Vec<i64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let m = v.len() / 2;
    if v.len() % 2 == 0 {
        (v[m - 1] + v[m]) as f64 / 2.0
    } else {
        v[m] as f64
    }
}

/// `ippm serve` pinned to the server CPU with a `bench` identity; killed when dropped.
pub(crate) struct Daemon {
    child: std::process::Child,
    /// The listening address.
    pub(crate) addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts it with `--{protocol}-listen 127.0.0.1:0`.
    pub(crate) fn start(protocol: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys.pfs");
        let mut f = std::fs::File::create(&keys).unwrap();
        let hex: String = SECRET.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(f, "bench {hex}").unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut child = Command::new("taskset")
            .args(["-c", &SERVER_CPU.to_string(), IPPM, "serve"])
            .args([&format!("--{protocol}-listen"), "127.0.0.1:0"])
            .args(["--keys", keys.to_str().unwrap(), "--count", "1024"])
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("taskset and ippm serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let prefix = format!("listening {protocol} ");
        let addr = line.trim().strip_prefix(&prefix).unwrap().parse().unwrap();
        Self {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `bench` identity's passphrase.
pub(crate) const SECRET: &[u8] = b"bench secret";
