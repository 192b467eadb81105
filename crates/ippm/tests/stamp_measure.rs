//! Continuous STAMP measurement: `ippm serve` with a `[[measure]] protocol = "stamp"` entry
//! against a second `ippm serve` that reflects STAMP on loopback, read back through `ippm
//! results` and `ippm report` and the Prometheus endpoint; a wrong key gives failed sessions
//! archived as such; configuration mistakes name the entry and the key.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::measuring::{Measuring, results_raw, sessions};
use common::{Daemon, IPPM, series};

const KEY_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const OTHER_KEY_HEX: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
/// Packets per session: 20/s for 2 s.
const COUNT: u64 = 40;
const SSID: u64 = 4660;

fn key_file(dir: &Path, name: &str, hex: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{hex}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// `ippm serve --stamp-listen 127.0.0.1:0` with the key in `key`: a stateful, authenticated
/// reflector (strangers get stateless reflection unless `stateful = true`).
fn reflector(dir: &Path, key: &Path) -> (Daemon, String) {
    let config = dir.join("reflector.toml");
    std::fs::write(
        &config,
        format!(
            "[stamp]\nkey_file = {:?}\nstateful = true\n",
            key.display().to_string()
        ),
    )
    .unwrap();
    let log = dir.join("reflector.log");
    let (d, listening) = Daemon::start_args(
        &[
            "--config",
            config.to_str().unwrap(),
            "--stamp-listen",
            "127.0.0.1:0",
        ],
        1,
        Some(&log),
    );
    let addr = listening
        .iter()
        .find(|(w, _)| w == "stamp")
        .map(|(_, a)| a.clone())
        .expect("a STAMP listener");
    (d, addr)
}

/// The measuring daemon's configuration: its own listeners out of the way, the archive, and
/// one STAMP entry with `entry` added.
fn measuring_config(dir: &Path, archive: &Path, peer: &str, entry: &str) -> PathBuf {
    let config = dir.join("measure.toml");
    std::fs::write(
        &config,
        format!(
            "[twamp]\nlisten = [\"127.0.0.1:0\"]\n[owamp]\nlisten = [\"127.0.0.1:0\"]\n\
             [archive]\npath = {:?}\n\n[[measure]]\npeer = \"{peer}\"\nprotocol = \"stamp\"\n\
             {entry}",
            archive.display().to_string()
        ),
    )
    .unwrap();
    config
}

/// Waits up to `within` for `f` to hold.
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

#[test]
fn stamp_continuous_measurement_archives_exports_and_exposes_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = key_file(d, "stamp.key", KEY_HEX);
    let (_reflector, peer) = reflector(d, &key);
    let archive = d.join("archive.db");
    let config = measuring_config(
        d,
        &archive,
        &peer,
        &format!(
            "key_file = {:?}\nstamp_mode = \"authenticated\"\nssid = {SSID}\nrate = 20\n\
             schedule = \"fixed\"\nsession = 2\nloss_timeout = 1\ntlvs = [\"timestamp-info\"]\n",
            key.display().to_string()
        ),
    );
    let log = d.join("measure.log");
    let m = Measuring::start(&config, &["--metrics-listen", "127.0.0.1:0"], &log);
    let complete = |a: &Path| sessions(a, &["--protocol", "stamp", "--status", "complete"]);
    // Results appear while a session runs (packets and a running summary, every second):
    // sessions keep coming, so one is caught running sooner or later.
    let mut seen_running = false;
    assert!(
        wait_for(Duration::from_secs(40), || {
            seen_running |= sessions(&archive, &["--status", "running"])
                .iter()
                .any(|s| {
                    s["record_count"].as_u64().unwrap_or(0) > 0
                        && s["summary"]["protocol"] == "stamp"
                        && s["summary"]["loss"]["sent"].as_u64().unwrap_or(0) > 0
                });
            seen_running && complete(&archive).len() >= 2
        }),
        "running seen: {seen_running}; fewer than two complete STAMP sessions: {:?}\n{}",
        sessions(&archive, &[]),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let done = complete(&archive);
    for s in &done {
        assert_eq!(s["protocol"], "stamp", "{s}");
        assert_eq!(s["mode"], "authenticated", "{s}");
        assert_eq!(s["sid"], format!("ssid:{SSID}"), "{s}");
        assert_eq!(s["peer"], peer.as_str(), "{s}");
        assert_eq!(s["record_count"].as_u64(), Some(COUNT), "{s}");
        let summary = &s["summary"];
        assert_eq!(summary["protocol"], "stamp", "{s}");
        assert_eq!(summary["ssid"].as_u64(), Some(SSID), "{s}");
        assert_eq!(summary["loss"]["sent"].as_u64(), Some(COUNT), "{s}");
        assert_eq!(summary["loss"]["lost"].as_u64(), Some(0), "{s}");
        assert!(summary["round_trip"]["median_ns"].as_f64().is_some(), "{s}");
        // Nothing lost: the split per direction is known (0 and 0) whatever the reflector.
        assert_eq!(summary["loss_per_direction_known"], true, "{s}");
        assert_eq!(summary["loss"]["forward_lost"].as_u64(), Some(0), "{s}");
        // The TLV asked for came back, protected by the HMAC TLV (the key, with a TLV).
        assert_eq!(
            summary["tlvs"]["integrity"]["verified"].as_u64(),
            Some(COUNT),
            "{s}"
        );
        assert_eq!(s["params"]["ssid"].as_u64(), Some(SSID), "{s}");
    }
    // The packets of one, exported.
    let id = done[0]["id"].as_i64().unwrap().to_string();
    let exported: serde_json::Value =
        serde_json::from_slice(&results_raw(&archive, &["export", "--session", &id])).unwrap();
    let recs = exported["sessions"][0]["records"].as_array().unwrap();
    assert_eq!(recs.len() as u64, COUNT);
    assert!(
        recs.iter()
            .all(|r| r["direction"] == "round_trip" && r["t4_unix_ns"].as_i64().is_some()),
        "{recs:?}"
    );
    // The text list and the session CSV know the protocol, with the two-way columns filled.
    let list = String::from_utf8(results_raw(&archive, &["list", "--protocol", "stamp"])).unwrap();
    assert!(
        list.contains(" stamp ") && list.contains("authenticated"),
        "{list}"
    );
    let csv = String::from_utf8(results_raw(
        &archive,
        &[
            "export",
            "--format",
            "csv",
            "--protocol",
            "stamp",
            "--status",
            "complete",
        ],
    ))
    .unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(
        (col("protocol"), col("rt_sent"), col("rt_lost")),
        ("stamp", "40", "0"),
        "{csv}"
    );
    // A plot of it.
    let svg = d.join("stamp.svg");
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
    assert!(text.starts_with("<svg") || text.starts_with("<?xml"));
    // Prometheus: the TWAMP families, labelled stamp.
    let body = m.scrape();
    let rt = format!("{{peer=\"{peer}\",protocol=\"stamp\",direction=\"round_trip\"}}");
    let sent = series(&body, &format!("ippm_packets_sent_total{rt}"));
    assert!(sent >= (2 * COUNT) as f64, "{sent} sent:\n{body}");
    assert_eq!(
        series(&body, &format!("ippm_packets_lost_total{rt}")),
        0.0,
        "{body}"
    );
    assert!(
        series(
            &body,
            &format!(
                "ippm_sessions_total{{peer=\"{peer}\",protocol=\"stamp\",status=\"complete\"}}"
            )
        ) >= 2.0,
        "{body}"
    );
    let median = format!(
        "ippm_delay_seconds{{peer=\"{peer}\",protocol=\"stamp\",direction=\"round_trip\",quantile=\"0.5\"}}"
    );
    assert!(body.contains(&median), "{median} missing:\n{body}");
}

/// The reflector has another key: nothing is answered, and every session is archived as
/// failed with its packets (all lost) and the reason, while the daemon keeps measuring.
#[test]
fn stamp_measurement_with_a_wrong_key_records_failed_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let theirs = key_file(d, "theirs.key", KEY_HEX);
    let ours = key_file(d, "ours.key", OTHER_KEY_HEX);
    let (_reflector, peer) = reflector(d, &theirs);
    let archive = d.join("archive.db");
    // No stamp_mode: authenticated, since a key is given.
    let config = measuring_config(
        d,
        &archive,
        &peer,
        &format!(
            "key_file = {:?}\nrate = 10\nschedule = \"fixed\"\nsession = 1\nloss_timeout = 0.5\n",
            ours.display().to_string()
        ),
    );
    let log = d.join("measure.log");
    let mut m = Measuring::start(&config, &["--metrics-listen", "127.0.0.1:0"], &log);
    let failed = |a: &Path| sessions(a, &["--protocol", "stamp", "--status", "failed"]);
    assert!(
        wait_for(Duration::from_secs(30), || failed(&archive).len() >= 2),
        "fewer than two failed sessions: {:?}\n{}",
        sessions(&archive, &[]),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(m.child.try_wait().unwrap().is_none(), "the daemon ended");
    let all = sessions(&archive, &[]);
    assert!(
        all.iter().all(|s| s["status"] != "complete"),
        "a session with the wrong key completed: {all:?}"
    );
    for s in failed(&archive) {
        assert_eq!(s["mode"], "authenticated", "{s}");
        assert!(s["sid"].as_str().unwrap_or("").starts_with("ssid:"), "{s}");
        assert!(
            s["reason"].as_str().unwrap_or("").contains("no reply"),
            "{s}"
        );
        assert_eq!(s["record_count"].as_u64(), Some(10), "{s}");
        assert_eq!(s["summary"]["loss"]["lost"].as_u64(), Some(10), "{s}");
        assert!(s["summary"]["round_trip"].is_null(), "{s}");
    }
    // Every session of the entry has the same SSID, drawn once.
    let sids: std::collections::HashSet<_> = all.iter().map(|s| s["sid"].to_string()).collect();
    assert_eq!(sids.len(), 1, "{all:?}");
    let body = m.scrape();
    assert!(
        series(
            &body,
            &format!("ippm_sessions_total{{peer=\"{peer}\",protocol=\"stamp\",status=\"failed\"}}")
        ) >= 2.0,
        "{body}"
    );
}

/// `ippm serve --config FILE` refuses the file: its stderr.
fn refused(dir: &Path, toml: &str) -> String {
    let config = dir.join("bad.toml");
    std::fs::write(&config, toml).unwrap();
    let out = Command::new(IPPM)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success(), "accepted:\n{toml}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn stamp_measure_config_errors_name_the_entry_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = key_file(d, "stamp.key", KEY_HEX);
    let k = format!("{:?}", key.display().to_string());
    // A valid TWAMP entry first: the mistakes are in entry #2.
    let head = "[twamp]\nlisten = [\"127.0.0.1:0\"]\n[owamp]\nlisten = [\"127.0.0.1:0\"]\n\
                [[measure]]\npeer = \"127.0.0.1\"\nprotocol = \"twamp\"\n\n[[measure]]\n";
    for (entry, says) in [
        (
            "peer = \"127.0.0.1\"\nprotocol = \"stamp\"\nidentity = \"alice\"\n".to_owned(),
            &["identity", "key_file"][..],
        ),
        (
            "peer = \"127.0.0.1\"\nprotocol = \"stamp\"\nmodes = \"A\"\n".to_owned(),
            &["modes", "stamp_mode"][..],
        ),
        (
            "peer = \"127.0.0.1\"\nprotocol = \"stamp\"\nike = \"require\"\n".to_owned(),
            &["ike", "key_file"][..],
        ),
        (
            "peer = \"127.0.0.1\"\nprotocol = \"stamp\"\nstamp_mode = \"authenticated\"\n"
                .to_owned(),
            &["stamp_mode", "key_file"][..],
        ),
        (
            format!(
                "peer = \"127.0.0.1\"\nprotocol = \"stamp\"\nkey_file = {k}\nstamp_mode = \"E\"\n"
            ),
            &["stamp_mode = \"E\"", "unauthenticated"][..],
        ),
        (
            "peer = \"127.0.0.1\"\nprotocol = \"stamp\"\nssid = 0\n".to_owned(),
            &["ssid = 0"][..],
        ),
        (
            "peer = \"127.0.0.1\"\nprotocol = \"stamp\"\ntlvs = [\"location\", \"hmac\"]\n"
                .to_owned(),
            &["tlvs", "\"hmac\"", "follow-up"][..],
        ),
        (
            "peer = \"127.0.0.1\"\nprotocol = \"stamp\"\ncos = 64\n".to_owned(),
            &["cos = 64"][..],
        ),
        (
            "peer = \"127.0.0.1\"\nprotocol = \"stamp\"\npadding = 70000\n".to_owned(),
            &["padding = 70000"][..],
        ),
        (
            "peer = \"127.0.0.1\"\nprotocol = \"stamp\"\nkey_file = \"/nonexistent/k\"\n"
                .to_owned(),
            &["key_file"][..],
        ),
        (
            "peer = \"127.0.0.1\"\nprotocol = \"twamp\"\nssid = 7\n".to_owned(),
            &["ssid", "STAMP"][..],
        ),
        (
            format!("peer = \"127.0.0.1\"\nprotocol = \"owamp\"\nkey_file = {k}\n"),
            &["key_file", "identity"][..],
        ),
        (
            "peer = \"127.0.0.1\"\nprotocol = \"stamp-light\"\n".to_owned(),
            &["protocol", "\"stamp\""][..],
        ),
    ] {
        let err = refused(d, &format!("{head}{entry}"));
        assert!(err.contains("[[measure]] #2 (127.0.0.1)"), "{entry}: {err}");
        for s in says {
            assert!(err.contains(s), "{entry}: {s:?} not in {err}");
        }
    }
}
