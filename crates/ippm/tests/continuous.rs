//! Continuous measurement: `ippm serve` with `[[measure]]` entries runs back-to-back TWAMP and
//! OWAMP sessions against two other daemons on loopback for over a minute, with results in the
//! archive while sessions run; SIGKILLed mid-session and restarted, it keeps every completed
//! session intact and marks the interrupted ones. `ippm results` and `ippm report` read the
//! archive.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::measuring::{Measuring, results, sessions};
use common::{Daemon, IPPM};

/// Packets per session (20/s for 5 s).
const COUNT: u64 = 100;

#[test]
fn continuous_measurement_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let twamp = Daemon::start("127.0.0.1:0", &[], None);
    let owamp = Daemon::start_owamp("127.0.0.1:0", &[]);
    let archive = d.join("archive.db");
    let config = d.join("ippm.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[twamp]
listen = ["127.0.0.1:0"]
[owamp]
listen = ["127.0.0.1:0"]
[archive]
path = "{}"
[metrics]
listen = "127.0.0.1:0"

[[measure]]
peer = "{}"
protocol = "twamp"
rate = 20
schedule = "fixed"
session = 5
loss_timeout = 1

[[measure]]
peer = "{}"
protocol = "owamp"
rate = 20
session = 5
loss_timeout = 1
"#,
            archive.display(),
            twamp.addr,
            owamp.addr
        ),
    )
    .unwrap();
    let log = d.join("serve.log");
    let t0 = Instant::now();
    let mut a = Measuring::start(&config, &[], &log);

    // Results appear while a session runs: packets and a running summary.
    let mut seen_running = false;
    while t0.elapsed() < Duration::from_secs(20) && !seen_running {
        std::thread::sleep(Duration::from_millis(500));
        if archive.exists() {
            seen_running = sessions(&archive, &[]).iter().any(|s| {
                s["status"] == "running"
                    && s["protocol"] == "twamp"
                    && s["record_count"].as_u64().unwrap_or(0) > 0
                    && s["summary"]["loss"]["sent"].as_u64().unwrap_or(0) > 0
            });
        }
    }
    assert!(
        seen_running,
        "no running session with records: {:?}",
        sessions(&archive, &[])
    );

    // Prometheus sees them running.
    let body = a.scrape();
    assert!(
        body.contains(&format!(
            "ippm_sessions_running{{peer=\"{}\",protocol=\"twamp\"}} 1",
            twamp.addr
        )),
        "{body}"
    );

    // Over a minute of back-to-back sessions, then SIGKILL in the middle of one.
    while t0.elapsed() < Duration::from_secs(62) {
        std::thread::sleep(Duration::from_millis(500));
    }
    loop {
        let running = sessions(&archive, &[])
            .iter()
            .any(|s| s["status"] == "running" && s["record_count"].as_u64().unwrap_or(0) > 10);
        if running {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = sessions(&archive, &[]);
    // ... and the completed ones, with their packets.
    let body = a.scrape();
    for needle in [
        format!(
            "ippm_sessions_total{{peer=\"{}\",protocol=\"twamp\",status=\"complete\"}}",
            twamp.addr
        ),
        format!(
            "ippm_packets_sent_total{{peer=\"{}\",protocol=\"owamp\",direction=\"from_server\"}}",
            owamp.addr
        ),
        format!(
            "ippm_delay_seconds{{peer=\"{}\",protocol=\"twamp\",direction=\"round_trip\",quantile=\"0.5\"}}",
            twamp.addr
        ),
    ] {
        assert!(body.contains(&needle), "{needle} missing:\n{body}");
    }
    a.child.kill().unwrap(); // SIGKILL
    a.child.wait().unwrap();
    drop(a);

    // Restarted: the interrupted sessions are marked, new ones begin.
    let log2 = d.join("serve2.log");
    let a2 = Measuring::start(&config, &[], &log2);
    let after = sessions(&archive, &[]);
    let interrupted: Vec<_> = after
        .iter()
        .filter(|s| s["status"] == "interrupted")
        .collect();
    let were_running: Vec<_> = before
        .iter()
        .filter(|s| s["status"] == "running")
        .map(|s| s["id"].clone())
        .collect();
    assert!(!were_running.is_empty());
    for id in &were_running {
        assert!(
            interrupted.iter().any(|s| s["id"] == *id),
            "session {id} was running at the kill and is not marked interrupted: {after:?}"
        );
    }
    assert_eq!(interrupted.len(), were_running.len());

    // Every completed session is intact: all its packets, and its summary.
    let complete: Vec<_> = after.iter().filter(|s| s["status"] == "complete").collect();
    let tw = complete.iter().filter(|s| s["protocol"] == "twamp").count();
    let ow = complete.iter().filter(|s| s["protocol"] == "owamp").count();
    assert!(
        tw >= 8 && ow >= 8,
        "{tw} TWAMP and {ow} OWAMP sessions complete"
    );
    for s in &complete {
        let per_direction = if s["protocol"] == "twamp" { 1 } else { 2 };
        assert_eq!(
            s["record_count"].as_u64(),
            Some(COUNT * per_direction),
            "{s}"
        );
        if s["protocol"] == "twamp" {
            assert_eq!(s["summary"]["loss"]["sent"].as_u64(), Some(COUNT), "{s}");
            assert_eq!(s["summary"]["loss"]["lost"].as_u64(), Some(0), "{s}");
        } else {
            for dir in ["to_server", "from_server"] {
                assert_eq!(
                    s["summary"][dir]["loss"]["sent"].as_u64(),
                    Some(COUNT),
                    "{s}"
                );
            }
        }
    }
    // A session completed before the kill: its packets, exported.
    let id = complete[complete.len() - 1]["id"]
        .as_i64()
        .unwrap()
        .to_string();
    let exported = results(&archive, &["export", "--session", &id]);
    let recs = exported["sessions"][0]["records"].as_array().unwrap();
    assert_eq!(
        recs.len() as u64,
        COUNT
            * if exported["sessions"][0]["protocol"] == "twamp" {
                1
            } else {
                2
            }
    );

    // New sessions after the restart.
    let t1 = Instant::now();
    let mut resumed = false;
    while t1.elapsed() < Duration::from_secs(20) && !resumed {
        std::thread::sleep(Duration::from_millis(500));
        resumed = sessions(&archive, &[])
            .iter()
            .any(|s| s["status"] == "complete" && !after.iter().any(|o| o["id"] == s["id"]));
    }
    assert!(resumed, "no session completed after the restart");
    drop(a2);

    // A plot of an archived session.
    let svg = d.join("plot.svg");
    let out = Command::new(IPPM)
        .args(["report", "--archive"])
        .arg(&archive)
        .args(["--session", &id, "--plot"])
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg") || text.starts_with("<?xml"),
        "{}",
        &text[..100.min(text.len())]
    );

    // CSV export: a header and one row per session.
    let out = Command::new(IPPM)
        .args(["results", "--archive"])
        .arg(&archive)
        .args(["export", "--format", "csv"])
        .output()
        .unwrap();
    let csv = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        csv.lines().count(),
        sessions(&archive, &[]).len() + 1,
        "{csv}"
    );
}

/// A peer that is down: each attempt is archived as failed with the reason, and the attempts
/// come further and further apart (1 s, 2 s, 4 s, ...) instead of hammering the peer.
#[test]
fn continuous_measurement_backs_off_while_the_peer_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A port nobody listens on: bound and dropped.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let archive = d.join("archive.db");
    let config = d.join("ippm.toml");
    std::fs::write(
        &config,
        format!(
            "[twamp]\nlisten = [\"127.0.0.1:0\"]\n[owamp]\nlisten = [\"127.0.0.1:0\"]\n\
             [archive]\npath = \"{}\"\n\n[[measure]]\npeer = \"{dead}\"\nprotocol = \"twamp\"\n",
            archive.display()
        ),
    )
    .unwrap();
    let a = Measuring::start(&config, &[], &d.join("serve.log"));
    std::thread::sleep(Duration::from_millis(7500));
    drop(a);
    let s = sessions(&archive, &[]);
    // Attempts at about 0, 1, 3 and 7 s: four, not dozens.
    assert!((3..=5).contains(&s.len()), "{} attempts: {s:?}", s.len());
    for x in &s {
        assert_eq!(x["status"], "failed", "{x}");
        assert!(
            x["reason"].as_str().unwrap_or("").contains("refused"),
            "{x}"
        );
    }
    let starts: Vec<i64> = s
        .iter()
        .rev()
        .map(|x| x["started_unix_ns"].as_i64().unwrap())
        .collect();
    let gaps: Vec<i64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2).all(|g| g[1] > g[0]),
        "gaps {gaps:?} do not grow"
    );
}
