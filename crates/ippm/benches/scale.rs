//! `cargo bench -p ippm --bench scale`: many concurrent sessions against one `ippm serve`.
//!
//! Each case (N sessions at R packets/s each) runs in a process of its own (this program
//! again, with IPPM_SCALE_CASE set), so that its client RSS starts fresh and a failure stays
//! in its case. There a fresh `ippm serve` (the bench-profile binary cargo builds for this
//! bench) listens on a free loopback port, pinned to CPU 1, and the process runs N `twping`
//! (then, in another case, N `owping`, one-way to the daemon) library calls as tasks of one
//! tokio runtime on a single thread pinned to CPU 0. Session starts are staggered at
//! IPPM_SCALE_SETUP_RATE per second, and each session gets, when it starts, enough packets to
//! go on sending until the last one has started and then IPPM_SCALE_SECONDS more; figures per
//! packet and per second are taken over the window where every session sends and none is
//! being set up or torn down (from /proc samples every 250 ms and the packets' own time
//! stamps). Beside each figure: what the rest of the machine used meanwhile, since these
//! machines are shared.
//!
//! Cases: N = 100, 1,000 and 10,000 at 10 packets/s, and N = 10,000 at 1 packet/s (the idle
//! cost). Per case it prints sessions started and failed, packets sent, loss, the daemon's CPU
//! time per packet reflected (TWAMP) or received (OWAMP) from /proc/PID/stat, its CPU share
//! of a core, its threads at the peak, its RSS growth per session, and the client's CPU per
//! packet and RSS growth per session (getrusage, /proc/self/status). Beside them, measured
//! in the same run at the same aggregate packet rate: a raw batched UDP echo (one thread,
//! recvmmsg/sendmmsg, `common::batch`) for TWAMP, a raw batched receiver for OWAMP, with
//! their CPU per packet. The targets are printed beside the figures, with whether each is met.
//!
//! Environment:
//! - IPPM_SCALE_SECONDS (default 20): seconds during which every session sends;
//! - IPPM_SCALE_MAX_N (default 10000): cases with more sessions are left out;
//! - IPPM_SCALE_SETUP_RATE (default 200): session starts per second at most (TWAMP set-ups
//!   are also held to IPPM_SCALE_SETUPS_IN_FLIGHT, default 4, at a time, so that a slow
//!   daemon is not swamped);
//! - IPPM_SCALE_PROTOCOLS (default "twamp,owamp");
//! - IPPM_SCALE_CLIENT_THREADS (default 1): more makes the client's runtime a multi-thread one
//!   with that many workers, not pinned (for machines with cores to spare);
//! - IPPM_SCALE_MODE (default "authenticated"; or "open", "encrypted").
//!
//! What it takes care of: RLIMIT_NOFILE's soft limit raised to the hard one, and the hard one
//! to 2N + 1024 where the process may (CAP_SYS_RESOURCE), inherited by the daemon, with a
//! warning when that is still short (a session takes a TCP and a UDP socket on each side);
//! the loopback ephemeral port range checked against N; the daemon's `--max-connections` and
//! `--max-sessions-total` set above N; set-ups held to a few at a time; and the daemon stopped
//! by its PID whatever happens (a guard, a panic hook, a watchdog in the case's process, and
//! the parent, which ends a case and its daemon when the case overruns its time budget). The
//! run ends by itself: every wait has a limit, and what is left at the case's limit is
//! aborted and counted as failed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ippm_net::owamp_client::{OwpingOptions, OwpingResult, owping};
use ippm_net::twamp_client::{
    Interval, Progress, Reply, Sent, TwpingOptions, TwpingResult, twping,
};
use ippm_net::udp::blocking_socket;
use ippm_proto::session::Secret;
use ippm_proto::wire::owamp::DataRecord;
use ippm_proto::wire::test::Layout;
use ippm_proto::{SecurityMode, Timestamp};
use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage, setrlimit};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::task::JoinSet;

mod common;
use common::batch::{self, Echo};
use common::{IPPM, SECRET, SENDER_CPU, SERVER_CPU, pin};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// (sessions, packets per second each).
const CASES: [(usize, u32); 4] = [(100, 10), (1_000, 10), (10_000, 10), (10_000, 1)];
/// The kernel reports /proc CPU times in USER_HZ ticks, which it fixes at 100 per second on
/// every architecture Linux runs on today.
const USER_HZ: i64 = 100;
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
const LOSS_TIMEOUT: Duration = Duration::from_secs(1);
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// Seconds of the raw baselines at most.
const RAW_SECONDS: f64 = 5.0;
/// The batched sender sends a batch every millisecond: what a tokio timer wheel does to the
/// sessions' packets too.
const RAW_TICK: Duration = Duration::from_millis(1);

/// The targets.
const LOSS_TARGET: f64 = 0.0001;
const CPU_RATIO_TARGET: f64 = 3.0;
const IDLE_TARGET: f64 = 0.05;
const RSS_TARGET_KIB: f64 = 16.0;

/// The daemon's PID while one runs, for the panic hook and the watchdog.
static DAEMON_PID: AtomicI32 = AtomicI32::new(0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Twamp,
    Owamp,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Self::Twamp => "twamp",
            Self::Owamp => "owamp",
        }
    }
}

#[derive(Debug, Clone)]
struct Config {
    secs: f64,
    max_n: usize,
    setup_rate: f64,
    in_flight: usize,
    client_threads: usize,
    protocols: Vec<Proto>,
    mode: SecurityMode,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

impl Config {
    fn from_env() -> Self {
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
    fn ramp(&self, n: usize) -> Duration {
        Duration::from_secs_f64(n as f64 / self.setup_rate)
    }

    /// How long the ramp may take: sessions not started by then are given up.
    fn ramp_limit(&self, n: usize) -> Duration {
        self.ramp(n) * 3 + Duration::from_secs(10)
    }

    /// Packets for the `k`-th session to start, `elapsed` into the ramp: enough to go on
    /// sending until the last session has started (at the start rate seen so far, with room
    /// to spare) and then `secs` more, but not past the ramp limit. So all N send together for
    /// about `secs` even when set-ups come slower than planned.
    fn count(&self, n: usize, rate: u32, k: usize, elapsed: Duration) -> u32 {
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
    fn session_limit(count: u32, rate: u32) -> Duration {
        Duration::from_secs_f64(f64::from(count) / f64::from(rate))
            + LOSS_TIMEOUT
            + CONTROL_TIMEOUT * 4
    }

    /// How long the sessions of a case may take, from the first start.
    fn sessions_limit(&self, n: usize, rate: u32) -> Duration {
        self.ramp_limit(n)
            + Self::session_limit(self.max_count(n, rate), rate)
            + Duration::from_secs(5)
    }

    /// How long a whole case may take: the raw baseline, the daemon, the sessions.
    fn case_budget(&self, n: usize, rate: u32) -> Duration {
        Duration::from_secs_f64(RAW_SECONDS + 10.0)
            + self.sessions_limit(n, rate)
            + Duration::from_secs(30)
    }
}

// ---------------------------------------------------------------------------------------------
// Resources of this process and the daemon.

/// Raises RLIMIT_NOFILE's soft limit to the hard one, and the hard one to `need` when it is
/// below and this process may (root). Returns (soft, hard) after.
fn raise_nofile(need: u64) -> (u64, u64) {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return (0, 0);
    };
    if hard < need {
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(need);
        let want = need.min(nr_open);
        if setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
            return (want, want);
        }
    }
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return (hard, hard);
    }
    getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((soft, hard))
}

/// The loopback ephemeral port range, (low, high).
fn port_range() -> Option<(u32, u32)> {
    let s = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = s.split_whitespace().map(|x| x.parse::<u32>());
    Some((it.next()?.ok()?, it.next()?.ok()?))
}

/// utime + stime of a process (`pid`, or "self"), ns.
fn proc_cpu_ns(pid: &str) -> Option<i64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After "(comm) ": state is field 3, utime 14 and stime 15 (proc(5)).
    let f: Vec<&str> = s.get(s.rfind(')')? + 2..)?.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<i64>().ok()? + f.get(12)?.parse::<i64>().ok()?;
    Some(ticks * (1_000_000_000 / USER_HZ))
}

/// (Threads, VmRSS in KiB) of a process.
fn proc_status(pid: &str) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        s.lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((field("Threads:")?, field("VmRSS:")?))
}

/// This process's CPU time (user and system, all threads), ns.
fn self_cpu_ns() -> i64 {
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let t = |v: nix::sys::time::TimeVal| v.tv_sec() * 1_000_000_000 + v.tv_usec() * 1_000;
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0)
}

/// "Max open files" of a process, as /proc/PID/limits says.
fn proc_nofile(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .map(|l| {
                    l.split_whitespace()
                        .skip(3)
                        .take(2)
                        .collect::<Vec<_>>()
                        .join("/")
                })
        })
        .unwrap_or_else(|| "?".into())
}

/// CPU time the whole machine spent busy (all CPUs, /proc/stat), ns.
fn machine_busy_ns() -> i64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    // user nice system idle iowait irq softirq steal ...: all but idle and iowait.
    let ticks: i64 = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .filter_map(|(_, v)| v.parse::<i64>().ok())
        .sum();
    ticks * (1_000_000_000 / USER_HZ)
}

/// What the rest of the machine did meanwhile: a gauge of how far to trust a figure.
#[derive(Debug, Clone, Copy)]
struct Noise {
    at: Instant,
    busy_ns: i64,
    ours_ns: i64,
    udp: (u64, u64),
}

impl Noise {
    /// Now; `ours_ns` is the CPU time of what is measured (this process, the daemon).
    fn now(ours_ns: i64) -> Self {
        Self {
            at: Instant::now(),
            busy_ns: machine_busy_ns(),
            ours_ns,
            udp: udp_drops(),
        }
    }

    /// Since `before`: other processes' CPU in cores, and kernel UDP receive-buffer drops.
    fn since(&self, before: &Self) -> String {
        let wall = (self.at - before.at).as_nanos().max(1) as f64;
        let others = (self.busy_ns - before.busy_ns) - (self.ours_ns - before.ours_ns);
        format!(
            "other processes used {:.0}% of a core, kernel UDP receive-buffer drops {}",
            others.max(0) as f64 / wall * 100.0,
            self.udp.0 - before.udp.0
        )
    }
}

/// The kernel's UDP counters RcvbufErrors and InErrors (all sockets of this machine).
fn udp_drops() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = s.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return (0, 0);
    };
    let get = |name: &str| {
        names
            .split_whitespace()
            .position(|x| x == name)
            .and_then(|i| values.split_whitespace().nth(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("RcvbufErrors"), get("InErrors"))
}

fn kill_daemon_now() {
    let pid = DAEMON_PID.swap(0, Ordering::SeqCst);
    if pid > 0 {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon.

/// `ippm serve` for one protocol on a free loopback port, pinned to the server CPU, limits set
/// above `n`; stopped by its PID when dropped (SIGTERM, then SIGKILL after 5 s).
struct Daemon {
    child: Child,
    pid: i32,
    addr: SocketAddr,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(proto: Proto, n: usize) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let keys = dir.path().join("keys.pfs");
        let hex: String = SECRET.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(&keys, format!("bench {hex}\n")).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
        let log = dir.path().join("serve.log");
        let stderr = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let limit = (n + 64).to_string();
        let cpu = SERVER_CPU.to_string();
        let listen = format!("--{}-listen", proto.name());
        let keys = keys.to_str().unwrap_or_default();
        let serve = |wrap: &[&str]| {
            let argv: Vec<&str> = wrap
                .iter()
                .copied()
                .chain(["taskset", "-c", &cpu, IPPM, "serve", &listen, "127.0.0.1:0"])
                .chain(["--keys", keys, "--count", "1024"])
                .chain(["--max-connections", &limit, "--max-sessions-total", &limit])
                .collect();
            Command::new(argv[0])
                .args(&argv[1..])
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(stderr.try_clone()?)
                .spawn()
        };
        // setpriv makes the daemon die with this process, however this one ends; without
        // setpriv, the guard, the panic hook and the parent's kill are left.
        let child = match serve(&["setpriv", "--pdeathsig", "KILL"]) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serve(&[]),
            r => r,
        }
        .map_err(|e| format!("taskset and ippm serve: {e}"))?;
        // setpriv and taskset exec ippm: the child's PID is the daemon's.
        let pid = child.id() as i32;
        DAEMON_PID.store(pid, Ordering::SeqCst);
        // For the parent process, which stops it should this one be stopped.
        println!("@@daemon {pid}");
        let mut guard = Self {
            child,
            pid,
            addr: SocketAddr::new(LO, 0),
            log,
            _dir: dir,
        };
        let Some(stdout) = guard.child.stdout.take() else {
            return Err("no stdout".into());
        };
        let mut lines = BufReader::new(stdout);
        let prefix = format!("listening {} ", proto.name());
        let mut line = String::new();
        loop {
            line.clear();
            match lines.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let log = std::fs::read_to_string(&guard.log).unwrap_or_default();
                    return Err(format!("ippm serve ended before listening: {log}"));
                }
                Ok(_) => {}
            }
            if let Some(a) = line.trim().strip_prefix(&prefix) {
                guard.addr = a.parse().map_err(|e| format!("{a}: {e}"))?;
                break;
            }
        }
        // Keep reading its stdout, so that it never blocks on a full pipe.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut lines, &mut std::io::sink());
        });
        Ok(guard)
    }

    /// The distinct warnings it logged (without the time stamps), with their counts.
    fn warnings(&self) -> Vec<(String, usize)> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut m: HashMap<String, usize> = HashMap::new();
        for l in text.lines() {
            // tracing's lines: "TIME  LEVEL target: message key=value ..."; keep the message.
            let msg = l
                .split_once(": ")
                .map_or(l, |x| x.1)
                .split(" peer=")
                .next()
                .unwrap_or(l);
            *m.entry(msg.trim().to_string()).or_default() += 1;
        }
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort_by_key(|x| std::cmp::Reverse(x.1));
        v
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGTERM);
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                DAEMON_PID.store(0, Ordering::SeqCst);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        DAEMON_PID.store(0, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// Sampling.

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    wall: Timestamp,
    daemon_cpu_ns: i64,
    daemon_threads: u64,
    daemon_rss_kib: u64,
    client_cpu_ns: i64,
    client_rss_kib: u64,
    /// The whole machine's busy CPU time.
    machine_busy_ns: i64,
    udp: (u64, u64),
}

fn sample(pid: i32) -> Option<Sample> {
    let p = pid.to_string();
    let (daemon_threads, daemon_rss_kib) = proc_status(&p)?;
    let (_, client_rss_kib) = proc_status("self")?;
    Some(Sample {
        at: Instant::now(),
        wall: ippm_net::clock::now(),
        daemon_cpu_ns: proc_cpu_ns(&p)?,
        daemon_threads,
        daemon_rss_kib,
        client_cpu_ns: self_cpu_ns(),
        client_rss_kib,
        machine_busy_ns: machine_busy_ns(),
        udp: udp_drops(),
    })
}

/// Samples the daemon and this process every [`SAMPLE_EVERY`] on the sender CPU.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    fn start(pid: i32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            pin(SENDER_CPU);
            let mut v = Vec::new();
            let t0 = Instant::now();
            let mut k = 0u32;
            loop {
                if let Some(s) = sample(pid) {
                    v.push(s);
                }
                if stop2.load(Ordering::Relaxed) {
                    return v;
                }
                k += 1;
                let next = t0 + SAMPLE_EVERY * k;
                if let Some(d) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
        });
        Self { stop, thread }
    }

    fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// The raw baselines.

#[derive(Debug, Clone, Copy)]
struct RawFigures {
    rate: u64,
    cpu_per_packet_ns: f64,
    cpu_share: f64,
    per_call: f64,
    loss: f64,
    achieved: f64,
}

/// TWAMP: the batched echo on the server CPU, the batched sender and receiver on the sender
/// CPU, at `rate` for RAW_SECONDS (or less).
fn raw_echo(rate: u64, secs: f64, len: usize) -> RawFigures {
    let n = ((rate as f64) * secs).max(1.0) as u64;
    let echo = Echo::start(
        blocking_socket(SocketAddr::new(LO, 0)).unwrap(),
        SERVER_CPU,
        false,
    );
    let s = blocking_socket(SocketAddr::new(LO, 0)).unwrap();
    let s2 = s.try_clone().unwrap();
    let recv = std::thread::spawn(move || {
        pin(SENDER_CPU);
        batch::receive(&s2, n, Duration::from_millis(500), |_, _| {}).0
    });
    let t0 = Instant::now();
    let achieved = batch::send_paced(&s, echo.addr, rate, n, len, RAW_TICK);
    let sending = t0.elapsed();
    let got = recv.join().unwrap_or(0);
    let st = echo.finish();
    RawFigures {
        rate,
        cpu_per_packet_ns: st.cpu_ns as f64 / st.echoed.max(1) as f64,
        cpu_share: st.cpu_ns as f64 / sending.as_nanos() as f64,
        per_call: st.received as f64 / st.batches.max(1) as f64,
        loss: 1.0 - got as f64 / n as f64,
        achieved,
    }
}

/// OWAMP: the batched receiver on the server CPU, the batched sender on the sender CPU.
fn raw_sink(rate: u64, secs: f64, len: usize) -> RawFigures {
    let n = ((rate as f64) * secs).max(1.0) as u64;
    let rx = blocking_socket(SocketAddr::new(LO, 0)).unwrap();
    let to = rx.local_addr().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let recv = std::thread::spawn(move || {
        pin(SERVER_CPU);
        let cpu0 = batch::thread_cpu_ns();
        let _ = ready_tx.send(());
        // The sender starts once this thread is ready, so the silence that ends the receive
        // can only come after the last packet.
        let (got, calls) = batch::receive(&rx, n, Duration::from_millis(500), |_, _| {});
        (got, calls, batch::thread_cpu_ns() - cpu0)
    });
    let _ = ready_rx.recv();
    let tx = blocking_socket(SocketAddr::new(LO, 0)).unwrap();
    let t0 = Instant::now();
    let achieved = batch::send_paced(&tx, to, rate, n, len, RAW_TICK);
    let sending = t0.elapsed();
    let (got, calls, cpu) = recv.join().unwrap_or((0, 0, 0));
    let per_call = got as f64 / calls.max(1) as f64;
    RawFigures {
        rate,
        cpu_per_packet_ns: cpu as f64 / got.max(1) as f64,
        cpu_share: cpu as f64 / sending.as_nanos() as f64,
        per_call,
        loss: 1.0 - got as f64 / n as f64,
        achieved,
    }
}

/// Runs a raw baseline, and once more if it lost more than 0.1% (a busy machine): the run
/// with the lower loss is kept, with what the rest of the machine did meanwhile.
fn raw_twice(f: impl Fn() -> RawFigures) -> (RawFigures, String) {
    let before = Noise::now(self_cpu_ns());
    let r = f();
    let noise = Noise::now(self_cpu_ns()).since(&before);
    if r.loss <= 0.001 {
        return (r, noise);
    }
    let before = Noise::now(self_cpu_ns());
    let again = f();
    let noise_again = Noise::now(self_cpu_ns()).since(&before);
    if again.loss < r.loss {
        (
            again,
            format!("{noise_again}; a first run lost {:.4}%", r.loss * 100.0),
        )
    } else {
        (
            r,
            format!("{noise}; a second run lost {:.4}%", again.loss * 100.0),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The sessions.

/// What the sessions of a case came to.
#[derive(Default)]
struct Outcome {
    started: usize,
    failed: usize,
    errors: HashMap<String, usize>,
    sent: u64,
    received: u64,
    /// Per session: the first and the last send time.
    firsts: Vec<Timestamp>,
    lasts: Vec<Timestamp>,
    /// When the daemon received each packet (T2, or the OWAMP receive time).
    daemon_times: Vec<Timestamp>,
    /// When the client sent each packet (T1).
    client_times: Vec<Timestamp>,
    setups: Vec<Duration>,
    /// Packets per session (each gets its count when it starts).
    counts: Vec<u32>,
    /// Lost packets by where in their session: the first tenth, between, the last tenth.
    lost_where: [u64; 3],
}

impl Outcome {
    fn note_lost(&mut self, seen: &[bool]) {
        for (i, _) in seen.iter().enumerate().filter(|(_, s)| !**s) {
            let tenth = i * 10 / seen.len();
            self.lost_where[match tenth {
                0 => 0,
                9 => 2,
                _ => 1,
            }] += 1;
        }
    }

    fn fail(&mut self, why: String) {
        self.failed += 1;
        *self.errors.entry(why).or_default() += 1;
    }

    fn twamp(&mut self, r: &TwpingResult) {
        self.started += 1;
        self.counts.push(r.sent.len() as u32);
        self.sent += r.sent.len() as u64;
        let mut seen = vec![false; r.sent.len()];
        for p in &r.replies {
            if let Some(s) = seen.get_mut(p.reflector.sender_seq as usize) {
                if !*s {
                    *s = true;
                    self.received += 1;
                }
            }
            self.daemon_times.push(p.reflector.receive_timestamp);
        }
        self.note_lost(&seen);
        self.client_times.extend(r.sent.iter().map(|s| s.time));
        if let (Some(a), Some(b)) = (r.sent.first(), r.sent.last()) {
            self.firsts.push(a.time);
            self.lasts.push(b.time);
        }
        self.setups.push(r.setup_time);
    }

    fn owamp(&mut self, r: &OwpingResult, count: u32) {
        let Some(w) = &r.to_server else {
            self.fail("no client-to-server session in the result".into());
            return;
        };
        self.started += 1;
        self.counts.push(count);
        self.sent += u64::from(count);
        let mut seen = vec![false; count as usize];
        let (mut first, mut last) = (None::<Timestamp>, None::<Timestamp>);
        for rec in &w.records {
            if rec.recv_time == Timestamp::default() {
                continue;
            }
            if let Some(s) = seen.get_mut(rec.seq as usize) {
                if !*s {
                    *s = true;
                    self.received += 1;
                }
            }
            self.daemon_times.push(rec.recv_time);
            self.client_times.push(rec.send_time);
            first = Some(first.map_or(rec.send_time, |f| f.min(rec.send_time)));
            last = Some(last.map_or(rec.send_time, |l| l.max(rec.send_time)));
        }
        self.note_lost(&seen);
        if let (Some(a), Some(b)) = (first, last) {
            self.firsts.push(a);
            self.lasts.push(b);
        }
        self.setups.push(r.setup_time);
    }
}

fn twping_options(server: SocketAddr, rate: u32, count: u32, mode: SecurityMode) -> TwpingOptions {
    TwpingOptions {
        server,
        modes: vec![mode],
        identity: Some((b"bench".to_vec(), Secret::new(SECRET.to_vec()))),
        ike: None,
        progress: None,
        count,
        interval: Interval::Fixed(Duration::from_secs(1) / rate),
        padding: None,
        dscp: 0,
        loss_timeout: LOSS_TIMEOUT,
        local: None,
        ports: None,
        max_count: 1 << 16,
        control_timeout: CONTROL_TIMEOUT,
        session_control: false,
        reflect: None,
        symmetrical: false,
        // The per-packet times place each packet in or out of the measuring window.
        keep_records: true,
    }
}

fn owping_options(server: SocketAddr, rate: u32, count: u32, mode: SecurityMode) -> OwpingOptions {
    OwpingOptions {
        server,
        modes: vec![mode],
        identity: Some((b"bench".to_vec(), Secret::new(SECRET.to_vec()))),
        ike: None,
        progress: None,
        count,
        interval: Interval::Fixed(Duration::from_secs(1) / rate),
        padding: 0,
        dscp: 0,
        loss_timeout: LOSS_TIMEOUT,
        local: None,
        ports: None,
        max_count: 1 << 16,
        control_timeout: CONTROL_TIMEOUT,
        to_server: true,
        from_server: false,
    }
}

/// Runs N sessions staggered at the set-up rate, each within its limit, the lot within the
/// case's limit (what is left then is aborted and counted as failed).
fn run_sessions(
    rt: &tokio::runtime::Runtime,
    proto: Proto,
    server: SocketAddr,
    cfg: &Config,
    n: usize,
    rate: u32,
) -> Outcome {
    let mode = cfg.mode;
    let setup_rate = cfg.setup_rate;
    let plan = Arc::new(cfg.clone());
    rt.block_on(async move {
        enum Done {
            Twamp(Box<TwpingResult>),
            Owamp(Box<OwpingResult>, u32),
        }
        let mut set: JoinSet<Result<Done, String>> = JoinSet::new();
        let in_flight = Arc::new(tokio::sync::Semaphore::new(cfg.in_flight));
        let begun = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let t0 = tokio::time::Instant::now() + Duration::from_millis(100);
        let ramp_end = t0 + cfg.ramp_limit(n);
        for i in 0..n {
            let at = t0 + Duration::from_secs_f64(i as f64 / setup_rate);
            let (begun, plan) = (begun.clone(), plan.clone());
            // The k-th session to begin gets its count then.
            let count_now = move || {
                let k = begun.fetch_add(1, Ordering::Relaxed) + 1;
                let c = plan.count(n, rate, k, t0.elapsed());
                (c, Config::session_limit(c, rate))
            };
            match proto {
                Proto::Twamp => {
                    let sem = in_flight.clone();
                    set.spawn(async move {
                        tokio::time::sleep_until(at).await;
                        // Held until the session is started (Progress::Started) or has failed.
                        let Ok(Ok(permit)) =
                            tokio::time::timeout_at(ramp_end, sem.acquire_owned()).await
                        else {
                            return Err("not set up within the ramp's time limit".into());
                        };
                        let mut permit = Some(permit);
                        let (count, limit) = count_now();
                        let mut o = twping_options(server, rate, count, mode);
                        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                        o.progress = Some(tx);
                        let run = tokio::time::timeout(limit, twping(&o));
                        tokio::pin!(run);
                        let r = loop {
                            tokio::select! {
                                r = &mut run => break r,
                                m = rx.recv(), if permit.is_some() => {
                                    if matches!(m, Some(Progress::Started { .. }) | None) {
                                        permit = None;
                                        // Packets are not wanted: twping's reports fail at once.
                                        rx.close();
                                    }
                                }
                            }
                        };
                        drop(permit);
                        match r {
                            Ok(Ok(r)) => Ok(Done::Twamp(Box::new(r))),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err("no result within the session's time limit".into()),
                        }
                    });
                }
                Proto::Owamp => {
                    set.spawn(async move {
                        tokio::time::sleep_until(at).await;
                        let (count, limit) = count_now();
                        let o = owping_options(server, rate, count, mode);
                        match tokio::time::timeout(limit, owping(&o)).await {
                            Ok(Ok(r)) => Ok(Done::Owamp(Box::new(r), count)),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err("no result within the session's time limit".into()),
                        }
                    });
                }
            }
        }
        let deadline = t0 + cfg.sessions_limit(n, rate);
        let mut out = Outcome::default();
        loop {
            match tokio::time::timeout_at(deadline, set.join_next()).await {
                Ok(Some(Ok(Ok(Done::Twamp(r))))) => out.twamp(&r),
                Ok(Some(Ok(Ok(Done::Owamp(r, count))))) => out.owamp(&r, count),
                Ok(Some(Ok(Err(e)))) => out.fail(e),
                Ok(Some(Err(e))) => out.fail(format!("task: {e}")),
                Ok(None) => break,
                Err(_) => {
                    for _ in 0..set.len() {
                        out.fail("the case's time limit".into());
                    }
                    // Aborted, their sockets close before the next case.
                    set.abort_all();
                    while set.join_next().await.is_some() {}
                    break;
                }
            }
        }
        out
    })
}

// ---------------------------------------------------------------------------------------------
// Figures.

/// The figures of one case.
#[derive(Debug, Clone, Copy)]
struct Figures {
    proto: Proto,
    n: usize,
    rate: u32,
    ran: bool,
    started: usize,
    failed: usize,
    loss: f64,
    daemon_cpu_per_packet_ns: f64,
    daemon_cpu_share: f64,
    daemon_rss_per_session_kib: f64,
    raw_cpu_per_packet_ns: f64,
}

impl Figures {
    fn not_run(proto: Proto, n: usize, rate: u32) -> Self {
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
    fn line(&self) -> String {
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

    fn parse(line: &str) -> Option<Self> {
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

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT MET" }
}

fn between(t: &[Timestamp], a: Timestamp, b: Timestamp) -> u64 {
    t.iter().filter(|x| **x >= a && **x <= b).count() as u64
}

fn run_case(
    rt: &tokio::runtime::Runtime,
    cfg: &Config,
    proto: Proto,
    n: usize,
    rate: u32,
) -> Figures {
    let layout = Layout::of(cfg.mode);
    let total = n as u64 * u64::from(rate);
    println!(
        "\n== {}, N = {n} sessions at {rate} packets/s each ({total}/s in all), {:?} mode ==",
        proto.name().to_uppercase(),
        cfg.mode
    );
    let raw_secs = cfg.secs.min(RAW_SECONDS);
    let raw = match proto {
        Proto::Twamp => {
            // twping pads for equal-size replies.
            let len = layout.sender_header_len() + layout.symmetric_padding();
            let (r, noise) = raw_twice(|| raw_echo(total, raw_secs, len));
            println!(
                "raw batched echo (1 thread, recvmmsg/sendmmsg, {len}-octet packets, \
                 {raw_secs} s at {}/s, sent {:.0}/s): {:.2} us CPU/packet, {:.1}% of a core, \
                 {:.1} packets per recvmmsg, loss {:.4}% (meanwhile {noise})",
                r.rate,
                r.achieved,
                r.cpu_per_packet_ns / 1e3,
                r.cpu_share * 100.0,
                r.per_call,
                r.loss * 100.0
            );
            r
        }
        Proto::Owamp => {
            let len = layout.sender_header_len();
            let (r, noise) = raw_twice(|| raw_sink(total, raw_secs, len));
            println!(
                "raw batched receiver (1 thread, recvmmsg, {len}-octet packets, {raw_secs} s at \
                 {}/s, sent {:.0}/s): {:.2} us CPU/packet, {:.1}% of a core, {:.1} packets per \
                 recvmmsg, loss {:.4}% (meanwhile {noise})",
                r.rate,
                r.achieved,
                r.cpu_per_packet_ns / 1e3,
                r.cpu_share * 100.0,
                r.per_call,
                r.loss * 100.0
            );
            r
        }
    };
    let mut fig = Figures {
        failed: n,
        raw_cpu_per_packet_ns: raw.cpu_per_packet_ns,
        ..Figures::not_run(proto, n, rate)
    };
    let daemon = match Daemon::start(proto, n) {
        Ok(d) => d,
        Err(e) => {
            println!("daemon did not start: {e}");
            return fig;
        }
    };
    println!(
        "daemon: pid {}, {} on CPU {SERVER_CPU}, open files limit {}",
        daemon.pid,
        daemon.addr,
        proc_nofile(daemon.pid)
    );
    let sampler = Sampler::start(daemon.pid);
    // A first sample before any session: the "before" figures.
    std::thread::sleep(SAMPLE_EVERY * 2);
    let t_case = Instant::now();
    let udp_before = udp_drops();
    let out = run_sessions(rt, proto, daemon.addr, cfg, n, rate);
    let udp_after = udp_drops();
    let case_wall = t_case.elapsed();
    let samples = sampler.finish();
    let warnings = daemon.warnings();
    drop(daemon);
    fig.ran = true;
    fig.started = out.started;
    fig.failed = out.failed;

    let ramp = match (out.firsts.iter().min(), out.firsts.iter().max()) {
        (Some(a), Some(b)) => b.nanos_since(*a) as f64 / 1e9,
        _ => f64::NAN,
    };
    println!(
        "sessions: {} started, {} failed (starts planned at {:.0}/s over {:.1} s, took {ramp:.1} \
         s; set-up median {:.1} ms, longest {:.1} ms; {} to {} packets each; case {:.1} s)",
        out.started,
        out.failed,
        cfg.setup_rate,
        cfg.ramp(n).as_secs_f64(),
        median(out.setups.clone()).as_secs_f64() * 1e3,
        out.setups
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3,
        out.counts.iter().min().copied().unwrap_or(0),
        out.counts.iter().max().copied().unwrap_or(0),
        case_wall.as_secs_f64()
    );
    let mut errors: Vec<_> = out.errors.iter().collect();
    errors.sort_by_key(|x| std::cmp::Reverse(*x.1));
    for (e, k) in errors.iter().take(5) {
        println!("  failed: {k} x {e}");
    }
    for (w, k) in warnings.iter().take(5) {
        println!("  daemon log: {k} x {w}");
    }
    fig.loss = 1.0 - out.received as f64 / out.sent.max(1) as f64;
    let [early, mid, late] = out.lost_where;
    println!(
        "packets: {} sent, {} {}, loss {:.4}% ({} lost: {early} in the first tenth of their \
         session, {late} in the last, {mid} between; kernel UDP receive-buffer drops on this \
         machine meanwhile: {})",
        out.sent,
        out.received,
        if proto == Proto::Twamp {
            "reflected back"
        } else {
            "received by the daemon"
        },
        fig.loss * 100.0,
        out.sent - out.received,
        udp_after.0 - udp_before.0,
    );
    let Some(first) = samples.first() else {
        println!("no samples of the daemon");
        return fig;
    };
    // The window: every session sending, none being set up.
    let (mut w0, mut w1, mut whole) = (
        out.firsts.iter().max().copied(),
        out.lasts.iter().min().copied(),
        false,
    );
    if !matches!((w0, w1), (Some(a), Some(b)) if b.nanos_since(a) > 2_000_000_000) {
        // The sessions did not all overlap (failures, or a ramp longer than the sessions):
        // the whole sending period instead.
        w0 = out.firsts.iter().min().copied();
        w1 = out.lasts.iter().max().copied();
        whole = true;
    }
    let (a, b) = match (w0, w1) {
        (Some(w0), Some(w1)) => (
            samples.iter().find(|s| s.wall >= w0).copied(),
            samples.iter().rev().find(|s| s.wall <= w1).copied(),
        ),
        _ => (None, None),
    };
    let (Some(a), Some(b)) = (a, b) else {
        println!("no sending window to measure over");
        return fig;
    };
    if b.at <= a.at {
        println!("sending window shorter than the sampling period");
        return fig;
    }
    let wall = b.at - a.at;
    let d_packets = between(&out.daemon_times, a.wall, b.wall);
    let c_packets = between(&out.client_times, a.wall, b.wall);
    let d_cpu = (b.daemon_cpu_ns - a.daemon_cpu_ns) as f64;
    let c_cpu = (b.client_cpu_ns - a.client_cpu_ns) as f64;
    let sessions = out.started.max(1) as f64;
    let others = (b.machine_busy_ns - a.machine_busy_ns) as f64 - d_cpu - c_cpu;
    println!(
        "window: {:.1} s {}, {d_packets} packets at the daemon, {c_packets} sent (meanwhile \
         other processes used {:.0}% of a core, kernel UDP receive-buffer drops {})",
        wall.as_secs_f64(),
        if whole {
            "(the whole sending period: the sessions did not all overlap)"
        } else {
            "with every session sending"
        },
        others.max(0.0) / wall.as_nanos() as f64 * 100.0,
        b.udp.0 - a.udp.0
    );
    fig.daemon_cpu_per_packet_ns = d_cpu / d_packets.max(1) as f64;
    fig.daemon_cpu_share = d_cpu / wall.as_nanos() as f64;
    let ratio = fig.daemon_cpu_per_packet_ns / raw.cpu_per_packet_ns;
    println!(
        "daemon CPU per packet {}: {:.2} us = {ratio:.2}x the raw batched {} ({:.2} us) \
         (target <= {CPU_RATIO_TARGET}x: {})",
        if proto == Proto::Twamp {
            "reflected"
        } else {
            "received"
        },
        fig.daemon_cpu_per_packet_ns / 1e3,
        if proto == Proto::Twamp {
            "echo"
        } else {
            "receiver"
        },
        raw.cpu_per_packet_ns / 1e3,
        met(ratio <= CPU_RATIO_TARGET)
    );
    let idle_note = if rate == 1 {
        format!(
            " (idle target <= {:.0}%: {})",
            IDLE_TARGET * 100.0,
            met(fig.daemon_cpu_share <= IDLE_TARGET)
        )
    } else {
        String::new()
    };
    println!(
        "daemon CPU: {:.1}% of a core{idle_note}",
        fig.daemon_cpu_share * 100.0
    );
    let peak_threads = samples.iter().map(|s| s.daemon_threads).max().unwrap_or(0);
    let peak_rss = samples.iter().map(|s| s.daemon_rss_kib).max().unwrap_or(0);
    fig.daemon_rss_per_session_kib =
        peak_rss.saturating_sub(first.daemon_rss_kib) as f64 / sessions;
    let count = out.counts.iter().map(|&c| f64::from(c)).sum::<f64>() / sessions;
    let stored = if proto == Proto::Owamp {
        format!(
            "; the records it must keep for Fetch-Session take {:.1} KiB/session of that",
            count * size_of::<DataRecord>() as f64 / 1024.0
        )
    } else {
        String::new()
    };
    println!(
        "daemon threads: {peak_threads} at the peak ({} before); RSS {:.1} MiB at the peak, \
         {:.1} MiB before: {:.2} KiB/session (target <= {RSS_TARGET_KIB} KiB: {}){stored}",
        first.daemon_threads,
        peak_rss as f64 / 1024.0,
        first.daemon_rss_kib as f64 / 1024.0,
        fig.daemon_rss_per_session_kib,
        met(fig.daemon_rss_per_session_kib <= RSS_TARGET_KIB)
    );
    let c_peak_rss = samples.iter().map(|s| s.client_rss_kib).max().unwrap_or(0);
    let kept = match proto {
        Proto::Twamp => size_of::<Sent>() + size_of::<Reply>(),
        Proto::Owamp => size_of::<DataRecord>(),
    };
    println!(
        "client: {:.2} us CPU/packet sent, {:.1}% of a core; RSS {:.2} KiB/session ({:.1} MiB \
         at the peak, {:.1} MiB before; the per-packet records the library returns take {:.1} \
         KiB/session of that at the end)",
        c_cpu / c_packets.max(1) as f64 / 1e3,
        c_cpu / wall.as_nanos() as f64 * 100.0,
        c_peak_rss.saturating_sub(first.client_rss_kib) as f64 / sessions,
        c_peak_rss as f64 / 1024.0,
        first.client_rss_kib as f64 / 1024.0,
        count * kept as f64 / 1024.0
    );
    if proto == Proto::Twamp && n >= 10_000 && rate == 10 {
        println!(
            "target: {n} TWAMP sessions at {rate}/s with < {:.2}% loss: {}",
            LOSS_TARGET * 100.0,
            met(out.failed == 0 && fig.loss < LOSS_TARGET)
        );
    }
    fig
}

fn summary(cfg: &Config, figs: &[Figures]) {
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

/// Set in the child process that runs one case: "PROTO N RATE".
const CASE_ENV: &str = "IPPM_SCALE_CASE";

fn main() {
    let cfg = Config::from_env();
    if let Ok(spec) = std::env::var(CASE_ENV) {
        child_main(&cfg, &spec);
        return;
    }
    let cases: Vec<(Proto, usize, u32)> = CASES
        .iter()
        .filter(|(n, _)| *n <= cfg.max_n)
        .flat_map(|&(n, r)| cfg.protocols.iter().map(move |&p| (p, n, r)))
        .collect();
    let largest = cases.iter().map(|c| c.1).max().unwrap_or(0);
    let budget: Duration = cases
        .iter()
        .map(|&(_, n, r)| cfg.case_budget(n, r) + CHILD_GRACE)
        .sum();
    println!(
        "ippm scale benchmark on loopback: {} s with every session sending, session starts at \
         {:.0}/s, {:?} mode, cases up to N = {} (IPPM_SCALE_MAX_N), at most {:.0} s",
        cfg.secs,
        cfg.setup_rate,
        cfg.mode,
        cfg.max_n,
        budget.as_secs_f64()
    );
    let client = if cfg.client_threads > 1 {
        format!(
            "client: a tokio runtime of {} threads, not pinned (IPPM_SCALE_CLIENT_THREADS)",
            cfg.client_threads
        )
    } else {
        format!("client (one tokio thread for all sessions) on CPU {SENDER_CPU}")
    };
    println!(
        "placement: daemon (ippm serve, taskset) and raw echo/receiver on CPU {SERVER_CPU}; \
         raw sender on CPU {SENDER_CPU}; {client}; each case in a process of its own (a fresh \
         client RSS, a failure kept to its case)"
    );
    // A TCP and a UDP socket per session in the client and in the daemon, and some to spare.
    let need = 2 * largest as u64 + 1024;
    let (soft, hard) = raise_nofile(need);
    println!(
        "open files limit (inherited by the cases and their daemons): {soft}/{hard}, need \
         about {need}: {}",
        if soft >= need {
            "ok"
        } else {
            "TOO LOW, expect failed sessions"
        }
    );
    if let Some((lo, hi)) = port_range() {
        let span = hi.saturating_sub(lo) + 1;
        // UDP: the client's and the daemon's test sockets, all on 127.0.0.1; TCP: the client's
        // control connections (TIME_WAIT ports are reused on loopback with tcp_tw_reuse).
        let udp = 2 * largest as u32;
        println!(
            "ephemeral ports {lo}-{hi} ({span}): need {udp} UDP and {largest} TCP on \
             127.0.0.1: {}",
            if udp + 64 <= span {
                "ok"
            } else {
                "TOO FEW, expect failed sessions (sysctl net.ipv4.ip_local_port_range)"
            }
        );
    }
    let mut figs = Vec::new();
    for (proto, n, rate) in cases {
        figs.push(run_child(&cfg, proto, n, rate));
        let _ = std::io::stdout().flush();
    }
    summary(&cfg, &figs);
}

/// Room past a case's own budget before the parent stops it.
const CHILD_GRACE: Duration = Duration::from_secs(15);

/// Runs one case in a child process (this program again, with [`CASE_ENV`]), passing its
/// output through; stops it, and its daemon, should it overrun its budget.
fn run_child(cfg: &Config, proto: Proto, n: usize, rate: u32) -> Figures {
    let mut fig = Figures::not_run(proto, n, rate);
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            println!("cannot find this program to run the case: {e}");
            return fig;
        }
    };
    let spawned = Command::new(exe)
        .env(CASE_ENV, format!("{} {n} {rate}", proto.name()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            println!("cannot start the case: {e}");
            return fig;
        }
    };
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
    }
    let until = Instant::now() + cfg.case_budget(n, rate) + CHILD_GRACE;
    let mut daemon: Option<i32> = None;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(pid) = line.strip_prefix("@@daemon ") {
                    daemon = pid.trim().parse().ok();
                } else if let Some(f) = line.strip_prefix("@@figures ") {
                    if let Some(f) = Figures::parse(f) {
                        fig = f;
                    }
                } else {
                    println!("{line}");
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                println!("case overran its budget: stopped");
                let _ = child.kill();
                // The daemon, orphaned by that, goes too (if it is still ours: an ippm serve).
                if let Some(pid) = daemon {
                    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    if String::from_utf8_lossy(&cmd).contains("serve") {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
                break;
            }
        }
    }
    match child.wait() {
        Ok(st) if !st.success() => println!("case ended with {st}"),
        Err(e) => println!("case: {e}"),
        _ => {}
    }
    fig
}

/// One case, in its own process: the figures go to the parent in a last `@@figures` line.
fn child_main(cfg: &Config, spec: &str) {
    let mut it = spec.split_whitespace();
    let proto = match it.next() {
        Some("owamp") => Proto::Owamp,
        _ => Proto::Twamp,
    };
    let n: usize = it.next().and_then(|x| x.parse().ok()).unwrap_or(100);
    let rate: u32 = it.next().and_then(|x| x.parse().ok()).unwrap_or(10);
    // This process (and so its daemon, see Daemon::start) dies with the parent.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    // Inherited from the parent already; again for a case run on its own.
    raise_nofile(2 * n as u64 + 1024);
    // Whatever happens, the daemon goes: on a panic anywhere, and when the case overruns.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        kill_daemon_now();
        default_hook(info);
    }));
    let budget = cfg.case_budget(n, rate);
    std::thread::spawn(move || {
        std::thread::sleep(budget);
        println!("case over its time budget of {budget:?}: stopping");
        kill_daemon_now();
        std::process::exit(2);
    });
    let rt = if cfg.client_threads > 1 {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.client_threads)
            .enable_all()
            .build()
            .unwrap()
    } else {
        pin(SENDER_CPU);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let fig = run_case(&rt, cfg, proto, n, rate);
    println!("@@figures {}", fig.line());
}
