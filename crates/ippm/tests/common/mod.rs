//! A real `ippm serve` for the CLI tests, and a key file.
#![allow(dead_code)]

pub(crate) mod charon;
pub(crate) mod ours;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub(crate) const IPPM: &str = env!("CARGO_BIN_EXE_ippm");

/// The passphrase of `alice` in [`keyfile`].
pub(crate) const ALICE: &[u8] = b"correct horse battery staple";

/// A running `ippm serve`, stopped (by its PID) when dropped.
pub(crate) struct Daemon {
    child: Child,
    /// The TWAMP-Control address it listens on.
    pub(crate) addr: String,
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
        Self { child, addr }
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
        Self { child, addr }
    }
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
