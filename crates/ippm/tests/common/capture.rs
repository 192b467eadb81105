//! Loopback captures with dumpcap and their dissection with tshark (Debian's package tshark;
//! .ci/run installs it), for the dissection tests of every protocol.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::proc::Guarded;

/// A dumpcap capture on `lo`, stopped (SIGINT to its PID, which flushes the file) by
/// [`Capture::stop`], killed if dropped first.
pub(crate) struct Capture {
    child: Guarded,
    path: PathBuf,
}

impl Capture {
    /// Starts capturing on `lo` what matches the capture `filter` into `path`, and returns
    /// once dumpcap says it captures (and the filter is in place).
    pub(crate) fn start(filter: &str, path: &Path) -> Self {
        let child = Command::new("dumpcap")
            .args(["-q", "-i", "lo", "-f", filter, "-w"])
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dumpcap is needed for this test (Debian package tshark; .ci/run installs it)");
        let mut child = Guarded(child);
        // dumpcap says when it is capturing; read its stderr on a thread so the wait is bounded
        // (and keep reading it so it never blocks on a full pipe).
        let err = child.0.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut seen = String::new();
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                seen.push_str(&line);
                seen.push('\n');
                if line.contains("Capturing on") {
                    let _ = tx.send(Ok(()));
                }
            }
            let _ = tx.send(Err(seen));
        });
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Ok(())) => {}
            Ok(Err(seen)) => panic!("dumpcap ended before capturing:\n{seen}"),
            Err(_) => panic!("dumpcap did not start capturing within 15 s"),
        }
        // It says so a little before the filter is in place.
        std::thread::sleep(Duration::from_secs(1));
        Self {
            child,
            path: path.to_owned(),
        }
    }

    /// Lets the last packets arrive, stops the capture and returns the file.
    pub(crate) fn stop(mut self) -> PathBuf {
        std::thread::sleep(Duration::from_millis(300));
        let _ = self
            .child
            .signal_and_wait(nix::sys::signal::Signal::SIGINT, Duration::from_secs(10));
        self.path.clone()
    }
}

/// `tshark ARGS...`: its standard output; fails the test if tshark fails.
pub(crate) fn tshark(args: &[&str]) -> String {
    let out = Command::new("tshark")
        .args(args)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .output()
        .expect("tshark is needed for this test (Debian package tshark; .ci/run installs it)");
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What in `pcap`, decoded with `decode` (tshark's `-d`), is malformed or warned about by
/// the dissectors (empty: nothing).
pub(crate) fn malformed(pcap: &str, decode: &str) -> String {
    tshark(&[
        "-r",
        pcap,
        "-d",
        decode,
        "-Y",
        "_ws.malformed || _ws.expert.severity >= warning",
    ])
}

/// Whether this tshark has a dissector whose filter name is `name` (`tshark -G protocols`).
pub(crate) fn has_protocol(name: &str) -> bool {
    tshark(&["-G", "protocols"])
        .lines()
        .any(|l| l.split('\t').nth(2) == Some(name))
}

/// An absolute time as tshark's fields print it with TZ=UTC (`Dec  7, 2026
/// 23:01:38.603332770 UTC`), in nanoseconds since the Unix epoch.
pub(crate) fn abs_time_ns(s: &str) -> Option<i128> {
    let mut it = s.split_whitespace();
    let name = it.next()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == name)? as i64
        + 1;
    let day: i64 = it.next()?.trim_end_matches(',').parse().ok()?;
    let year: i64 = it.next()?.parse().ok()?;
    let time = it.next()?;
    if it.next() != Some("UTC") {
        return None;
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut hms = hms.split(':').map(|x| x.parse::<i64>());
    let (h, m, sec) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next()?.ok()?);
    let frac = format!("{frac:0<9}");
    let nanos: i128 = frac.get(..9)?.parse().ok()?;
    // Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + sec;
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}
