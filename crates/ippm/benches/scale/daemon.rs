//! The daemon: `ippm serve` for a case, stopped by its PID whatever happens.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::LO;
use crate::common::{IPPM, SECRET, SERVER_CPU};
use crate::config::Proto;

/// The daemon's PID while one runs, for the panic hook and the watchdog.
static DAEMON_PID: AtomicI32 = AtomicI32::new(0);

pub(crate) fn kill_daemon_now() {
    let pid = DAEMON_PID.swap(0, Ordering::SeqCst);
    if pid > 0 {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// `ippm serve` for one protocol on a free loopback port, pinned to the server CPU, limits set
/// above `n`; stopped by its PID when dropped (SIGTERM, then SIGKILL after 5 s).
pub(crate) struct Daemon {
    child: Child,
    pub(crate) pid: i32,
    pub(crate) addr: SocketAddr,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    pub(crate) fn start(proto: Proto, n: usize) -> Result<Self, String> {
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
                // Every client of the bench is 127.0.0.1: one source.
                .chain(["--max-connections-per-source", &limit])
                .chain(["--max-sessions-per-source", &limit])
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
    pub(crate) fn warnings(&self) -> Vec<(String, usize)> {
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
