//! A real `ippm serve` for the CLI tests, and a key file.
#![allow(dead_code)]

pub(crate) mod charon;

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
