//! A full archive disk, for real: the measuring daemon runs in a private mount namespace
//! whose archive directory is a 512 KiB tmpfs, filled with `dd` before it starts and again
//! while it runs. It starts anyway, serves TWAMP and keeps measuring, says the archive is
//! degraded (a metric, a few log lines, not one per write), and archives again by itself when
//! space comes back.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{Daemon, IPPM};

/// The measuring daemon in its own mount namespace, killed (by its PID) when dropped; the
/// mount goes with it.
struct Measuring {
    child: Child,
    twamp: String,
    metrics: String,
    /// The stdout line about the archive.
    archive_line: String,
}

impl Drop for Measuring {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Measuring {
    /// The archive directory as the daemon sees it (through its own root, so in its mount
    /// namespace, where the tmpfs is).
    fn dir(&self, inner: &Path) -> PathBuf {
        Path::new(&format!("/proc/{}/root", self.child.id())).join(inner.strip_prefix("/").unwrap())
    }

    fn metric(&self, name: &str) -> f64 {
        metric(&http_get(&self.metrics), name)
    }
}

/// `unshare -m`: mounts a 512 KiB tmpfs on `dir`, fills it when `fill` says so, and execs
/// `ippm serve --config CONFIG` (so the child's PID is the daemon's).
fn start(dir: &Path, fill: bool, config: &Path, log: &Path) -> Measuring {
    let d = dir.display();
    let dd = if fill {
        format!("dd if=/dev/zero of={d}/fill bs=4k 2>/dev/null;")
    } else {
        String::new()
    };
    let script = format!(
        "mount -t tmpfs -o size=512k ippm-full-disk-test {d} && {dd} exec {IPPM} serve --config {}",
        config.display()
    );
    let mut child = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("unshare");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut twamp, mut metrics) = (String::new(), String::new());
    let archive_line = loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "ippm serve ended:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        if let Some(a) = line.trim().strip_prefix("listening twamp ") {
            twamp = a.to_owned();
        }
        if let Some(m) = line.trim().strip_prefix("metrics ") {
            metrics = m.to_owned();
        }
        if line.starts_with("archive ") {
            break line.trim().to_owned();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Measuring {
        child,
        twamp,
        metrics,
        archive_line,
    }
}

/// A GET of `url` (http://host:port/path): the body.
fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// The value of the sample whose name and labels start with `name` (0 if there is none).
fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Sessions in the archive, as `ippm results list --json` run in the daemon's mount
/// namespace shows them (none if it cannot be read). Not through `/proc/PID/root`: SQLite
/// resolves that link, and would open the file of that name in this namespace.
fn archived(pid: u32, db: &Path) -> Vec<serde_json::Value> {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", IPPM, "results", "--archive"])
        .arg(db)
        .args(["list", "--json"])
        .output()
        .unwrap();
    if !out.status.success() {
        // On a full disk `ippm results` cannot open the archive either.
        return Vec::new();
    }
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// Waits up to `within` for `f`; whether it came true.
fn wait_for(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    f()
}

fn twping_works(addr: &str) {
    let out = Command::new(IPPM)
        .args(["twping", addr, "-c", "5", "-i", "0.001f", "-L", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("5 sent, 0 lost"),
        "twping on a full disk: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fill(dir: &Path) {
    // dd stops with "No space left on device": that is the point.
    let _ = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", dir.join("fill").display()))
        .arg("bs=4k")
        .stderr(Stdio::null())
        .status()
        .unwrap();
}

#[test]
fn a_full_archive_disk_degrades_archiving_not_measuring() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (a mount namespace with a tmpfs)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let target = Daemon::start("127.0.0.1:0", &[], None);
    let adir = d.join("archive");
    std::fs::create_dir(&adir).unwrap();
    let db = adir.join("archive.db");
    let config = d.join("ippm.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[twamp]
listen = ["127.0.0.1:0"]
[owamp]
listen = []
[archive]
path = "{}"
[metrics]
listen = "127.0.0.1:0"

[[measure]]
peer = "{}"
protocol = "twamp"
rate = 20
schedule = "fixed"
session = 2
loss_timeout = 0.5
"#,
            db.display(),
            target.addr
        ),
    )
    .unwrap();
    let log = d.join("serve.log");
    let t0 = Instant::now();

    // 1. Started on a full disk: it serves and measures, without an archive.
    let mut m = start(&adir, true, &config, &log);
    let inner = m.dir(&adir);
    assert!(m.archive_line.contains("not open"), "{}", m.archive_line);
    twping_works(&m.twamp);
    let complete = "ippm_sessions_total{peer=";
    assert!(
        wait_for(Duration::from_secs(20), || m.metric(complete) >= 2.0),
        "no measurement session completed on a full disk"
    );
    assert_eq!(m.metric("ippm_archive_degraded "), 1.0);
    let lost = "ippm_dropped_total{event=\"result_not_archived\"}";
    assert!(m.metric(lost) > 0.0);
    assert!(archived(m.child.id(), &db).is_empty());

    // 2. Space comes back: the archive opens by itself and sessions appear in it.
    std::fs::remove_file(inner.join("fill")).unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || archived(m.child.id(), &db)
            .iter()
            .any(|s| s["status"] == "complete")),
        "no session archived after space came back:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(m.metric("ippm_archive_degraded "), 0.0);

    // 3. The disk fills while it runs: archiving degrades, measuring goes on.
    fill(&inner);
    assert!(
        wait_for(Duration::from_secs(30), || m
            .metric("ippm_archive_degraded ")
            == 1.0),
        "the archive is not degraded on a full disk"
    );
    let lost_before = m.metric(lost);
    let sessions_before = m.metric(complete);
    assert!(
        wait_for(Duration::from_secs(20), || m.metric(complete)
            >= sessions_before + 3.0),
        "measurement stopped on a full disk"
    );
    twping_works(&m.twamp);
    assert!(m.metric(lost) > lost_before, "writes fail and are counted");
    let archived_full = archived(m.child.id(), &db).len();

    // 4. Space again: archiving resumes by itself.
    std::fs::remove_file(inner.join("fill")).unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || archived(m.child.id(), &db)
            .len()
            > archived_full + 1),
        "archiving did not resume:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(wait_for(Duration::from_secs(10), || m
        .metric("ippm_archive_degraded ")
        == 0.0));
    assert!(
        m.child.try_wait().unwrap().is_none(),
        "the daemon is still the one started"
    );
    let elapsed = t0.elapsed();
    let failed_writes = m.metric(lost);
    drop(m);

    // The log says it, a line per ten seconds at most per kind, not a line per write.
    let text = std::fs::read_to_string(&log).unwrap();
    let about: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains("not archived")
                || l.contains("cannot open the archive")
                || l.contains("archive degraded")
        })
        .collect();
    let lines = about.len();
    // Per ten seconds: a line about failed writes and one about the state changing.
    let bound = 2 * (elapsed.as_secs() / 10 + 1) + 2;
    assert!(lines >= 2, "no log line about the full disk:\n{text}");
    assert!(
        lines as u64 <= bound,
        "{lines} log lines about the archive in {elapsed:?} (bound {bound}):\n{text}"
    );
    assert!(
        failed_writes > lines as f64,
        "{failed_writes} failed writes, {lines} lines: every write is logged"
    );
    assert!(text.contains("archiving resumes"), "{text}");
    assert!(text.contains("disk is full"), "{text}");
    eprintln!(
        "full disk: {failed_writes} writes not archived, {lines} log lines about it in \
         {elapsed:?}:\n{}",
        about.join("\n")
    );
}
