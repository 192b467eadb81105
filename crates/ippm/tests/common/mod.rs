//! A real `ippm serve` for the CLI tests, and a key file.
#![allow(dead_code)]

pub(crate) mod capture;
pub(crate) mod charon;
pub(crate) mod ctl;
pub(crate) mod ike_hosts;
pub(crate) mod measuring;
pub(crate) mod ours;
pub(crate) mod proc;
pub(crate) mod stamp_suite;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const IPPM: &str = env!("CARGO_BIN_EXE_ippm");

/// The passphrase of `alice` in [`keyfile`].
pub(crate) const ALICE: &[u8] = b"correct horse battery staple";

/// A running `ippm serve`, stopped (by its PID) when dropped.
pub(crate) struct Daemon {
    child: Child,
    /// The TWAMP-Control address it listens on (the OWAMP one for [`Daemon::start_owamp`]).
    pub(crate) addr: String,
    /// The OWAMP-Control address, when started with [`Daemon::start_both`].
    pub(crate) owamp: Option<String>,
}

impl Daemon {
    /// Starts `ippm serve --twamp-listen LISTEN EXTRA...`; its log goes to `log` (or nowhere).
    pub(crate) fn start(listen: &str, extra: &[&str], log: Option<&Path>) -> Self {
        let stderr = match log {
            Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
            None => Stdio::null(),
        };
        let mut child = Command::new(IPPM)
            .args(["serve", "--twamp-listen", listen])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start ippm serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening twamp ")
            .expect(&line)
            .to_owned();
        Self {
            child,
            addr,
            owamp: None,
        }
    }

    /// Starts `ippm serve` with a TWAMP and an OWAMP listener on `ip` (any free ports) and
    /// `EXTRA...`; its log goes to `log` (or nowhere).
    pub(crate) fn start_both(ip: &str, extra: &[&str], log: Option<&Path>) -> Self {
        let any = if ip.contains(':') {
            format!("[{ip}]:0")
        } else {
            format!("{ip}:0")
        };
        let args = [&["--twamp-listen", &any, "--owamp-listen", &any][..], extra].concat();
        let (mut d, listening) = Self::start_args(&args, 2, log);
        for (what, addr) in listening {
            match what.as_str() {
                "owamp" => d.owamp = Some(addr),
                _ => d.addr = addr,
            }
        }
        d
    }

    /// Starts `ippm serve ARGS...` and waits until it says it listens on `listeners`
    /// addresses: those, as (protocol, address). `addr` is the first TWAMP one (or empty).
    pub(crate) fn start_args(
        args: &[&str],
        listeners: usize,
        log: Option<&Path>,
    ) -> (Self, Vec<(String, String)>) {
        Self::start_limited(args, listeners, log, None)
    }

    /// [`Daemon::start_args`] with the daemon's file descriptor limit (soft and hard) set to
    /// `nofile`, as systemd or a shell's `ulimit -n` would.
    pub(crate) fn start_limited(
        args: &[&str],
        listeners: usize,
        log: Option<&Path>,
        nofile: Option<u64>,
    ) -> (Self, Vec<(String, String)>) {
        let stderr = match log {
            Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
            None => Stdio::null(),
        };
        // prlimit(1) (util-linux) sets the limit and execs the daemon: the PID stays its.
        let limit = nofile.map(|n| format!("--nofile={n}:{n}"));
        let mut cmd = match &limit {
            Some(l) => {
                let mut c = Command::new("prlimit");
                c.args([l.as_str(), "--", IPPM]);
                c
            }
            None => Command::new(IPPM),
        };
        let mut child = cmd
            .arg("serve")
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start ippm serve");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut listening = Vec::new();
        while listening.len() < listeners {
            let mut line = String::new();
            assert!(out.read_line(&mut line).unwrap() > 0, "ippm serve ended");
            if let Some((what, addr)) = line
                .trim()
                .strip_prefix("listening ")
                .and_then(|l| l.split_once(' '))
            {
                listening.push((what.to_owned(), addr.to_owned()));
            }
        }
        let addr = listening
            .iter()
            .find(|(w, _)| w == "twamp")
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        let d = Self {
            child,
            addr,
            owamp: None,
        };
        (d, listening)
    }

    /// The daemon's process ID.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `within` for the daemon to exit: its status, or `None`
    /// if it is still running then (the guard kills it when dropped).
    pub(crate) fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let pid = Pid::from_raw(i32::try_from(self.child.id()).ok()?);
        kill(pid, Signal::SIGTERM).ok()?;
        let end = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts `ippm serve --owamp-listen LISTEN EXTRA...` (OWAMP only).
    pub(crate) fn start_owamp(listen: &str, extra: &[&str]) -> Self {
        Self::owamp(listen, extra, Stdio::null())
    }

    /// Like [`Daemon::start_owamp`], logging to `log`.
    pub(crate) fn start_owamp_logged(listen: &str, extra: &[&str], log: &Path) -> Self {
        Self::owamp(
            listen,
            extra,
            Stdio::from(std::fs::File::create(log).unwrap()),
        )
    }

    fn owamp(listen: &str, extra: &[&str], stderr: Stdio) -> Self {
        let mut child = Command::new(IPPM)
            .args(["serve", "--owamp-listen", listen])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start ippm serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening owamp ")
            .expect(&line)
            .to_owned();
        Self {
            child,
            addr,
            owamp: None,
        }
    }
}

/// Memory and threads of a process, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStatus {
    /// VmRSS, KiB.
    pub(crate) rss_kib: u64,
    /// VmHWM (the peak RSS), KiB.
    pub(crate) hwm_kib: u64,
    /// Threads.
    pub(crate) threads: u64,
}

/// Reads `/proc/PID/status`.
pub(crate) fn proc_status(pid: u32) -> ProcStatus {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    ProcStatus {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        threads: field("Threads:"),
    }
}

/// User plus system CPU time of a process so far, from `/proc/PID/stat` (in clock ticks of
/// USER_HZ, which Linux fixes at 100 per second for this interface).
pub(crate) fn cpu_time(pid: u32) -> Duration {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name is in parentheses and may hold spaces: count fields after it.
    let rest = &text[text.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 of stat(5) (utime, stime); `rest` starts at field 3.
    Duration::from_millis((f[11] + f[12]) * 10)
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a mode-600 pass-phrase file with `alice` in `dir`.
pub(crate) fn keyfile(dir: &Path) -> PathBuf {
    let p = dir.join("keys.pfs");
    let mut f = std::fs::File::create(&p).unwrap();
    let hex: String = ALICE.iter().map(|b| format!("{b:02x}")).collect();
    writeln!(f, "alice\t{hex}").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// `ippm serve` with an `[ike]` section, in one side of a [`charon::NetPair`]; killed (by its
/// PID) when dropped unless stopped first with [`IkeDaemon::stop`] (SIGTERM).
pub(crate) struct IkeDaemon {
    child: Child,
    control: PathBuf,
}

impl IkeDaemon {
    /// Starts `ippm serve --config CONFIG` in `side` and waits for its IKE control socket
    /// (O/TWAMP listen where the file says, else on ports 861 and 862).
    pub(crate) fn start(
        net: &charon::NetPair,
        side: charon::Side,
        config: &Path,
        control: &Path,
        log: &Path,
    ) -> Self {
        let mut child = net
            .command(side, IPPM)
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info,ippm_ike=debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!(
                    "ippm serve ended: {seen}\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            seen.push_str(&line);
            if line.starts_with("ike control ") {
                break;
            }
        }
        // Keep reading what it prints later (its O/TWAMP listeners).
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        assert!(seen.contains("listening ike "), "{seen}");
        Self {
            child,
            control: control.to_owned(),
        }
    }

    /// `ippm ike --control SOCK ARGS...`: (success, stdout).
    pub(crate) fn ike(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(IPPM)
            .arg("ike")
            .arg("--control")
            .arg(&self.control)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// The established SAs `ippm ike list --json` shows, as (SPIi, SPIr) hex.
    pub(crate) fn listed(&self) -> Vec<(String, String)> {
        let (ok, out) = self.ike(&["list", "--json"]);
        assert!(ok, "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["sas"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|s| s["state"] == "established")
                    .map(|s| {
                        let spis = s["spis"].as_str().unwrap();
                        let (i, r) = spis.split_once(' ').unwrap();
                        (
                            i.trim_end_matches("_i").to_owned(),
                            r.trim_end_matches("_r").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn stop(&mut self) -> std::process::ExitStatus {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        }
        self.child.wait().unwrap()
    }
}

impl Drop for IkeDaemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A UDP socket's counters in `/proc/net/udp` or `/proc/net/udp6`, found by its local port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UdpCounters {
    /// Octets waiting in its receive queue (with the kernel's per-datagram overhead).
    pub(crate) rx_queue: u64,
    /// Datagrams dropped for want of room in its receive buffer.
    pub(crate) drops: u64,
}

/// The counters of the UDP socket bound to local `port` (any address), if there is one.
pub(crate) fn udp_counters(port: u16) -> Option<UdpCounters> {
    let want = format!(":{port:04X}");
    ["/proc/net/udp", "/proc/net/udp6"].iter().find_map(|f| {
        let text = std::fs::read_to_string(f).ok()?;
        text.lines().skip(1).find_map(|l| {
            let v: Vec<&str> = l.split_whitespace().collect();
            if !v.get(1)?.ends_with(&want) {
                return None;
            }
            let (_, rx) = v.get(4)?.split_once(':')?;
            Some(UdpCounters {
                rx_queue: u64::from_str_radix(rx, 16).ok()?,
                drops: v.get(12)?.parse().ok()?,
            })
        })
    })
}

/// A port P with P..P+n free for UDP on 127.0.0.1 (nothing holds them when this returns).
pub(crate) fn free_ports(n: u16) -> u16 {
    for _ in 0..100 {
        let first = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = first.local_addr().unwrap().port();
        if p > u16::MAX - n {
            continue;
        }
        let rest: Result<Vec<_>, _> = (1..n)
            .map(|i| UdpSocket::bind(("127.0.0.1", p + i)))
            .collect();
        if rest.is_ok() {
            return p;
        }
    }
    panic!("no {n} free consecutive UDP ports");
}

/// A TCP connection to `to` from `source` (any 127.0.0.0/8 address is this host's, so tests
/// play many clients from many sources on loopback).
pub(crate) fn connect_from(
    source: std::net::IpAddr,
    to: std::net::SocketAddr,
) -> std::io::Result<std::net::TcpStream> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(to),
        socket2::Type::STREAM,
        None,
    )?;
    s.bind(&std::net::SocketAddr::new(source, 0).into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(2))?;
    Ok(s.into())
}

/// Raises this process's soft file descriptor limit to the hard one (a flood of connections
/// from the test needs more than the usual 1024).
pub(crate) fn raise_nofile() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    hard
}

/// `GET /metrics` from the daemon's metrics listener.
pub(crate) fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The value of the series `name{labels}` in a scrape (0 when absent).
pub(crate) fn series(scrape: &str, name_and_labels: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}
