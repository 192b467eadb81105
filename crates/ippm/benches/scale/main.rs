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
//! the loopback ephemeral port range checked against N; the daemon's `--max-connections`,
//! `--max-sessions-total` and their per-source limits set above N; set-ups held to a few at a time; and the daemon stopped
//! by its PID whatever happens (a guard, a panic hook, a watchdog in the case's process, and
//! the parent, which ends a case and its daemon when the case overruns its time budget). The
//! run ends by itself: every wait has a limit, and what is left at the case's limit is
//! aborted and counted as failed.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ippm_net::twamp_client::{Reply, Sent};
use ippm_proto::wire::owamp::DataRecord;
use ippm_proto::wire::test::Layout;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[path = "../common/mod.rs"]
mod common;
mod config;
mod daemon;
mod figures;
mod procfs;
mod raw;
mod sampler;
mod sessions;

use common::{SENDER_CPU, SERVER_CPU, pin};
use config::{Config, Proto};
use daemon::{Daemon, kill_daemon_now};
use figures::{Figures, between, median, met, summary};
use procfs::{port_range, proc_nofile, raise_nofile, udp_drops};
use raw::{raw_echo, raw_sink, raw_twice};
use sampler::Sampler;
use sessions::run_sessions;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// (sessions, packets per second each).
const CASES: [(usize, u32); 4] = [(100, 10), (1_000, 10), (10_000, 10), (10_000, 1)];
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
const LOSS_TIMEOUT: Duration = Duration::from_secs(1);
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// Seconds of the raw baselines at most.
const RAW_SECONDS: f64 = 5.0;

/// The targets.
const LOSS_TARGET: f64 = 0.0001;
const CPU_RATIO_TARGET: f64 = 3.0;
const IDLE_TARGET: f64 = 0.05;
const RSS_TARGET_KIB: f64 = 16.0;

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
