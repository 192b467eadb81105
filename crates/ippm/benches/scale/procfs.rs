//! Resources of this process and the daemon: /proc and getrusage readings, the open-files
//! limit, the loopback ephemeral port range, and what the rest of the machine did meanwhile
//! ([`Noise`]).

use std::time::Instant;

use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage, setrlimit};

/// The kernel reports /proc CPU times in USER_HZ ticks, which it fixes at 100 per second on
/// every architecture Linux runs on today.
const USER_HZ: i64 = 100;

/// Raises RLIMIT_NOFILE's soft limit to the hard one, and the hard one to `need` when it is
/// below and this process may (root). Returns (soft, hard) after.
pub(crate) fn raise_nofile(need: u64) -> (u64, u64) {
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
pub(crate) fn port_range() -> Option<(u32, u32)> {
    let s = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = s.split_whitespace().map(|x| x.parse::<u32>());
    Some((it.next()?.ok()?, it.next()?.ok()?))
}

/// utime + stime of a process (`pid`, or "self"), ns.
pub(crate) fn proc_cpu_ns(pid: &str) -> Option<i64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After "(comm) ": state is field 3, utime 14 and stime 15 (proc(5)).
    let f: Vec<&str> = s.get(s.rfind(')')? + 2..)?.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<i64>().ok()? + f.get(12)?.parse::<i64>().ok()?;
    Some(ticks * (1_000_000_000 / USER_HZ))
}

/// (Threads, VmRSS in KiB) of a process.
pub(crate) fn proc_status(pid: &str) -> Option<(u64, u64)> {
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
pub(crate) fn self_cpu_ns() -> i64 {
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let t = |v: nix::sys::time::TimeVal| v.tv_sec() * 1_000_000_000 + v.tv_usec() * 1_000;
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0)
}

/// "Max open files" of a process, as /proc/PID/limits says.
pub(crate) fn proc_nofile(pid: i32) -> String {
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
pub(crate) fn machine_busy_ns() -> i64 {
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
pub(crate) struct Noise {
    at: Instant,
    busy_ns: i64,
    ours_ns: i64,
    udp: (u64, u64),
}

impl Noise {
    /// Now; `ours_ns` is the CPU time of what is measured (this process, the daemon).
    pub(crate) fn now(ours_ns: i64) -> Self {
        Self {
            at: Instant::now(),
            busy_ns: machine_busy_ns(),
            ours_ns,
            udp: udp_drops(),
        }
    }

    /// Since `before`: other processes' CPU in cores, and kernel UDP receive-buffer drops.
    pub(crate) fn since(&self, before: &Self) -> String {
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
pub(crate) fn udp_drops() -> (u64, u64) {
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
