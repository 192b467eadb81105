//! Child processes of the interop tests: a guard that stops (by its PID) the process it holds
//! when dropped, panics included, and a bounded run of a command.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A child process this test started; killed (by its PID) and reaped when dropped, unless it
/// has exited already.
pub(crate) struct Guarded(pub(crate) Child);

impl Guarded {
    /// Its PID.
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Whether it is still running.
    pub(crate) fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// Sends `signal` (to this PID only) and waits up to `within` for the exit: its status, or
    /// `None` if it still runs then (the drop kills it).
    pub(crate) fn signal_and_wait(
        &mut self,
        signal: nix::sys::signal::Signal,
        within: Duration,
    ) -> Option<ExitStatus> {
        if let Ok(Some(s)) = self.0.try_wait() {
            return Some(s);
        }
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).ok()?);
        let _ = nix::sys::signal::kill(pid, signal);
        self.wait_for(within)
    }

    /// Waits up to `within` for the process to exit.
    pub(crate) fn wait_for(&mut self, within: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + within;
        loop {
            if let Ok(Some(s)) = self.0.try_wait() {
                return Some(s);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// What a bounded run gave.
#[derive(Debug, Clone)]
pub(crate) struct Ran {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Ran {
    /// Both outputs, for assertion messages.
    pub(crate) fn both(&self) -> String {
        format!(
            "exit: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` (no standard input, outputs to files in `dir` named after `name`) and waits at
/// most `within`; past that it is killed and the test fails.
pub(crate) fn run_bounded(mut cmd: Command, dir: &Path, name: &str, within: Duration) -> Ran {
    let out = dir.join(format!("{name}.stdout"));
    let err = dir.join(format!("{name}.stderr"));
    let child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut g = Guarded(child);
    let status = g.wait_for(within);
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    match status {
        Some(status) => Ran {
            status,
            stdout: read(&out),
            stderr: read(&err),
        },
        None => {
            drop(g);
            panic!(
                "{cmd:?} still ran after {within:?}; killed.\n--- stdout\n{}\n--- stderr\n{}",
                read(&out),
                read(&err)
            )
        }
    }
}
