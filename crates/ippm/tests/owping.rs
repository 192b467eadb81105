//! `ippm owping` against `ippm serve` with the real binaries: both directions and one, every
//! mode, IPv4 and IPv6, fixed and exponential schedules; statistics checked against the
//! per-packet records.

mod common;
use common::{Daemon, IPPM, keyfile};
use std::process::Command;

fn owping(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(IPPM)
        .arg("owping")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn owping_every_mode_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path());
    let k = keys.to_str().unwrap();
    for listen in ["127.0.0.1:0", "[::1]:0"] {
        let d = Daemon::start_owamp(listen, &["--keys", k]);
        for mode in ["O", "A", "E"] {
            for interval in ["0.002f", "0.002e"] {
                let (ok, out, err) = owping(&[
                    &d.addr, "-c", "20", "-i", interval, "-L", "0.5", "-A", mode, "-u", "alice",
                    "-k", k,
                ]);
                assert!(ok, "{listen} {mode}: {err}");
                assert_eq!(out.matches("20 sent, 0 lost (0.000%)").count(), 2, "{out}");
                assert_eq!(out.matches("hops = 0 (consistently)").count(), 2, "{out}");
            }
        }
        // One direction only.
        let (ok, out, err) = owping(&[&d.addr, "-c", "5", "-i", "0.001f", "-t"]);
        assert!(ok, "{err}");
        assert!(
            out.contains("statistics to") && !out.contains("statistics from"),
            "{out}"
        );
        let (ok, out, err) = owping(&[&d.addr, "-c", "5", "-i", "0.001f", "-f", "-s", "100"]);
        assert!(ok, "{err}");
        assert!(
            !out.contains("statistics to") && out.contains("statistics from"),
            "{out}"
        );
    }
}

#[test]
fn owping_statistics_agree_with_the_records() {
    let d = Daemon::start_owamp("127.0.0.1:0", &[]);
    let (ok, out, err) = owping(&[&d.addr, "-c", "30", "-i", "0.001f", "--json", "-R"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for dir in ["to_server", "from_server"] {
        let w = &v[dir];
        let recs = w["records"].as_array().unwrap();
        let mut delays: Vec<i64> = recs
            .iter()
            .map(|r| r["recv_unix_ns"].as_i64().unwrap() - r["send_unix_ns"].as_i64().unwrap())
            .collect();
        delays.sort_unstable();
        assert_eq!(delays.len(), 30);
        let close = |a: f64, b: f64| (a - b).abs() <= 4.0;
        assert!(
            close(w["delay"]["min_ns"].as_f64().unwrap(), delays[0] as f64),
            "{dir}"
        );
        assert!(
            close(w["delay"]["max_ns"].as_f64().unwrap(), delays[29] as f64),
            "{dir}"
        );
        assert!(close(
            w["delay"]["median_ns"].as_f64().unwrap(),
            (delays[14] + delays[15]) as f64 / 2.0
        ));
        assert_eq!(w["loss"]["lost"], 0);
    }
}
