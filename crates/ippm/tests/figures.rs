//! Figures that come from what happened, with the real binaries: owping's counts from the
//! protocol (also on a loaded machine), the archive's negotiated mode and lost packets' send
//! times, sessions ended at SIGTERM, twping ending when its server does.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::measuring::{Measuring, sessions};
use common::proc::{Guarded, run_bounded};
use common::{Daemon, IPPM, keyfile};

/// Threads that keep every core busy until dropped (joined then), for at most `limit`.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(limit: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let end = Instant::now() + limit;
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Checks one direction of `owping --json -R`: the figures are what the records show.
fn counts_agree(dir: &serde_json::Value, what: &str) {
    let recs = dir["records"].as_array().unwrap();
    let received: BTreeSet<u64> = recs
        .iter()
        .filter(|r| !r["recv_unix_ns"].is_null())
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    let sent = dir["loss"]["sent"].as_u64().unwrap();
    assert_eq!(
        dir["loss"]["received"].as_u64().unwrap(),
        received.len() as u64,
        "{what}: received is not what the records show: {dir}"
    );
    assert!(
        received.iter().all(|&s| s < sent),
        "{what}: records past the sender's count ({sent}): {dir}"
    );
    assert!(dir.get("unknown_records").is_none(), "{what}: {dir}");
    assert_eq!(
        dir["loss"]["lost"].as_u64().unwrap(),
        sent - received.len() as u64,
        "{what}: {dir}"
    );
}

#[test]
fn owping_counts_from_the_protocol_under_cpu_load() {
    let d = Daemon::start_owamp("127.0.0.1:0", &[]);
    let dir = tempfile::tempdir().unwrap();
    // Busy threads on every core, ~5 s, while owping runs -f, -t and both ways.
    let _load = Load::start(Duration::from_secs(6));
    let t0 = Instant::now();
    let mut runs = 0;
    while t0.elapsed() < Duration::from_secs(5) || runs < 3 {
        for (i, way) in [&["-f"][..], &["-t"][..], &[][..]].iter().enumerate() {
            let mut cmd = Command::new(IPPM);
            cmd.args(["owping", &d.addr, "-c", "20", "-i", "0.005f", "-L", "0.2"])
                .args(["--json", "-R"])
                .args(*way);
            let r = run_bounded(
                cmd,
                dir.path(),
                &format!("run{runs}-{i}"),
                Duration::from_secs(30),
            );
            assert!(r.status.success(), "{}", r.both());
            let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
            for w in ["to_server", "from_server"] {
                if !v[w].is_null() {
                    counts_agree(&v[w], w);
                    // Nothing is lost on loopback but for the load: whatever the server sent
                    // and counted came in.
                    if w == "from_server" {
                        assert_eq!(v[w]["loss"]["lost"], 0, "{}", r.both());
                    }
                }
            }
        }
        runs += 1;
    }
}

#[test]
fn owping_counts_text_matches_the_listed_records() {
    let d = Daemon::start_owamp("127.0.0.1:0", &[]);
    let out = Command::new(IPPM)
        .args(["owping", &d.addr, "-f", "-c", "20", "-i", "0.002f", "-R"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let listed = text
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f.len() == 4 && f.iter().all(|x| x.parse::<f64>().is_ok())
        })
        .count();
    assert_eq!(listed, 20, "{text}");
    assert!(text.contains("20 sent, 0 lost"), "{text}");
}

/// A measuring daemon's config: an archive in `dir` and `measure` appended.
fn config(dir: &std::path::Path, head: &str, measure: &str) -> std::path::PathBuf {
    let path = dir.join("ippm.toml");
    std::fs::write(
        &path,
        format!(
            "{head}[twamp]\nlisten = [\"127.0.0.1:0\"]\n[owamp]\nlisten = [\"127.0.0.1:0\"]\n\
             [archive]\npath = \"{}\"\n\n{measure}",
            dir.join("archive.db").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn cli_archive_keeps_the_negotiated_owamp_mode() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The server offers open only; the entry offers A, E and O (identity and keys given).
    let peer = Daemon::start_owamp("127.0.0.1:0", &[]);
    let keys = keyfile(d);
    let cfg = config(
        d,
        &format!("keys = \"{}\"\n", keys.display()),
        &format!(
            "[[measure]]\npeer = \"{}\"\nprotocol = \"owamp\"\nmodes = \"AEO\"\n\
             identity = \"alice\"\nrate = 20\nsession = 1\nloss_timeout = 1\n",
            peer.addr
        ),
    );
    let archive = d.join("archive.db");
    let _m = Measuring::start(&cfg, &[], &d.join("serve.log"));
    let t0 = Instant::now();
    let done = loop {
        let s = sessions(&archive, &["--status", "complete"]);
        if let Some(s) = s.first() {
            break s.clone();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no complete session: {:?}\n{}",
            sessions(&archive, &[]),
            std::fs::read_to_string(d.join("serve.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Open mode is "unauthenticated" wherever the archive names a mode (TWAMP's rows too).
    assert_eq!(done["mode"], "unauthenticated", "{done}");
    assert_eq!(done["summary"]["mode"], "unauthenticated", "{done}");
    // The CSV export says the same.
    let csv = common::measuring::results_raw(
        &archive,
        &["export", "--status", "complete", "--format", "csv"],
    );
    let csv = String::from_utf8_lossy(&csv);
    assert!(
        csv.contains(",owamp,unauthenticated,") && !csv.contains("encrypted"),
        "{csv}"
    );
}

#[test]
fn cli_sigterm_ends_the_running_sessions_as_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let peer = Daemon::start("127.0.0.1:0", &[], None);
    let cfg = config(
        d,
        "",
        &format!(
            "[[measure]]\npeer = \"{}\"\nprotocol = \"twamp\"\nrate = 20\nsession = 60\n",
            peer.addr
        ),
    );
    let archive = d.join("archive.db");
    let mut m = Measuring::start(&cfg, &[], &d.join("serve.log"));
    let t0 = Instant::now();
    while !sessions(&archive, &[])
        .iter()
        .any(|s| s["status"] == "running" && s["record_count"].as_u64().unwrap_or(0) > 0)
    {
        assert!(t0.elapsed() < Duration::from_secs(20), "no running session");
        std::thread::sleep(Duration::from_millis(200));
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(m.child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let t0 = Instant::now();
    while m.child.try_wait().unwrap().is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let all = sessions(&archive, &[]);
    assert!(!all.is_empty());
    assert!(all.iter().all(|s| s["status"] != "running"), "{all:?}");
    assert!(all.iter().any(|s| s["status"] == "interrupted"), "{all:?}");
}

#[test]
fn cli_twping_stops_when_the_server_dies() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start("127.0.0.1:0", &[], None);
    let child = Command::new(IPPM)
        .args(["twping", &d.addr, "-c", "400", "-i", "0.02f", "-L", "1"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("out")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("err")).unwrap())
        .spawn()
        .unwrap();
    let mut tw = Guarded(child);
    std::thread::sleep(Duration::from_millis(1500));
    // The daemon dies (by its PID) mid-test: its sockets close.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(d.pid()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = d.terminate(Duration::from_secs(5));
    // Well before the 8 s the test would still run.
    let status = tw
        .wait_for(Duration::from_secs(4))
        .expect("twping still runs");
    let err = std::fs::read_to_string(dir.path().join("err")).unwrap();
    let out = std::fs::read_to_string(dir.path().join("out")).unwrap();
    assert!(!status.success(), "{out}\n{err}");
    assert!(
        err.contains("the server closed the control connection during the test"),
        "{err}"
    );
    assert!(!out.contains("lost"), "{out}");
}
