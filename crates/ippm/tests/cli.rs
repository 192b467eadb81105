//! The real binary: `ippm serve` on loopback and `ippm twping` against it, in every mode, and
//! the errors a user meets.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

mod common;
use common::{Daemon, IPPM, keyfile};

fn twping(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(IPPM)
        .arg("twping")
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
fn twping_every_mode_against_serve() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path());
    let k = keys.to_str().unwrap();
    for listen in ["127.0.0.1:0", "[::1]:0"] {
        let d = Daemon::start(listen, &["--keys", k], None);
        for (letter, name) in [
            ("O", "unauthenticated"),
            ("A", "authenticated"),
            ("E", "encrypted"),
            ("M", "mixed"),
        ] {
            let (ok, out, err) = twping(&[
                &d.addr, "-c", "10", "-i", "0.002f", "-L", "1", "-A", letter, "-u", "alice", "-k",
                k,
            ]);
            assert!(ok, "{listen} {letter}: {err}");
            assert!(out.contains(&format!("mode:\t{name}")), "{out}");
            assert!(out.contains("10 sent, 0 lost (0.000%"), "{out}");
            assert!(out.contains("round-trip time min/median/max = "), "{out}");
            assert!(out.contains("send hops = 0 (consistently)"), "{out}");
        }
        // RFC 5938 and RFC 6038 through the command line.
        let (ok, out, err) = twping(&[
            &d.addr,
            "-c",
            "5",
            "-i",
            "0.002f",
            "-A",
            "E",
            "-u",
            "alice",
            "-k",
            k,
            "--session-control",
            "--reflect",
            "20",
            "--symmetrical",
        ]);
        assert!(ok, "{err}");
        assert!(
            out.contains(
                "extensions:\tindividual session control, reflect octets, symmetrical size"
            ),
            "{out}"
        );
        assert!(out.contains("5 sent, 0 lost"), "{out}");
        assert!(!out.contains("reflected padding differed"), "{out}");
        // JSON output parses and agrees.
        let (ok, out, err) = twping(&[&d.addr, "-c", "5", "-i", "0.001f", "--json"]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["loss"]["sent"], 5);
        assert_eq!(v["loss"]["lost"], 0);
        assert_eq!(v["round_trip"]["count"], 5);
        assert!(v["round_trip"]["min_ns"].as_i64().unwrap() > 0);
    }
}

#[test]
fn one_packet_with_short_loss_timeout_is_quick() {
    let d = Daemon::start("127.0.0.1:0", &[], None);
    let t = std::time::Instant::now();
    let (ok, out, err) = twping(&[&d.addr, "-c", "1", "-L", "0.05"]);
    assert!(ok, "{err}");
    assert!(out.contains("1 sent, 0 lost"), "{out}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path());
    let k = keys.to_str().unwrap();
    let d = Daemon::start("127.0.0.1:0", &["--keys", k, "--modes", "AE"], None);
    // Open mode not offered.
    let (ok, _, err) = twping(&[&d.addr, "-c", "1"]);
    assert!(!ok);
    assert!(err.contains("no common mode"), "{err}");
    // A key file others can read is refused.
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, _, err) = twping(&[&d.addr, "-u", "alice", "-k", k]);
    assert!(!ok);
    assert!(err.contains("chmod 600"), "{err}");
    // Unknown identity.
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, _, err) = twping(&[&d.addr, "-u", "bob", "-k", k]);
    assert!(!ok);
    assert!(err.contains("\"bob\" is not in"), "{err}");
    // Nobody listening.
    let (ok, _, err) = twping(&["127.0.0.1:1", "-c", "1"]);
    assert!(!ok);
    assert!(err.contains("twping 127.0.0.1:1"), "{err}");
}

#[test]
fn half_open_connections_time_out() {
    use std::io::Read;
    let d = Daemon::start("127.0.0.1:0", &["--setup-timeout", "1"], None);
    let mut s = std::net::TcpStream::connect(&d.addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let t = std::time::Instant::now();
    let mut buf = Vec::new();
    // The greeting, then nothing from us: the server hangs up after the setup timeout.
    s.read_to_end(&mut buf).unwrap();
    assert_eq!(buf.len(), 64);
    let waited = t.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(900)
            && waited < std::time::Duration::from_secs(3),
        "{waited:?}"
    );
}

#[test]
fn per_identity_policy() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path());
    let k = keys.to_str().unwrap();
    let cfg = dir.path().join("ippm.toml");
    std::fs::write(
        &cfg,
        format!("keys = {k:?}\n[twamp]\nmodes = \"OAE\"\n[open]\nmax_sessions = 1\n[[identity]]\nname = \"alice\"\nmodes = \"E\"\n"),
    )
    .unwrap();
    let d = Daemon::start("127.0.0.1:0", &["--config", cfg.to_str().unwrap()], None);
    // alice may use encrypted mode only.
    let (ok, _, err) = twping(&[
        &d.addr, "-c", "2", "-i", "0.001f", "-A", "A", "-u", "alice", "-k", k,
    ]);
    assert!(!ok);
    assert!(err.contains("Accept = 1"), "{err}");
    let (ok, out, err) = twping(&[
        &d.addr, "-c", "2", "-i", "0.001f", "-A", "E", "-u", "alice", "-k", k,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("2 sent, 0 lost"), "{out}");
    let (ok, _, err) = twping(&[&d.addr, "-c", "2", "-i", "0.001f"]);
    assert!(ok, "open mode is allowed: {err}");
}

#[test]
fn statistics_agree_with_the_records() {
    let d = Daemon::start("127.0.0.1:0", &[], None);
    let (ok, out, err) = twping(&[&d.addr, "-c", "50", "-i", "0.001f", "--json", "-R"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 50);
    let ns = |r: &serde_json::Value, k: &str| r[k].as_u64().unwrap() as i64;
    let mut rtt: Vec<i64> = recs
        .iter()
        .map(|r| {
            (ns(r, "t4_unix_ns") - ns(r, "t1_unix_ns"))
                - (ns(r, "t3_unix_ns") - ns(r, "t2_unix_ns"))
        })
        .collect();
    rtt.sort_unstable();
    let close = |a: f64, b: f64| (a - b).abs() <= 4.0;
    let rt = &v["round_trip"];
    assert!(
        close(rt["min_ns"].as_f64().unwrap(), rtt[0] as f64),
        "{rt} vs {rtt:?}"
    );
    assert!(close(rt["max_ns"].as_f64().unwrap(), rtt[49] as f64));
    assert!(close(
        rt["median_ns"].as_f64().unwrap(),
        (rtt[24] + rtt[25]) as f64 / 2.0
    ));
    let mut seqs: Vec<u64> = recs
        .iter()
        .map(|r| r["sender_seq"].as_u64().unwrap())
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(v["loss"]["lost"].as_u64().unwrap(), 50 - seqs.len() as u64);
    // The reflector numbered its replies 0..50, in order.
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["reflector_seq"].as_u64().unwrap(), i as u64);
        assert!(
            ns(r, "t1_unix_ns") <= ns(r, "t2_unix_ns")
                && ns(r, "t3_unix_ns") <= ns(r, "t4_unix_ns")
        );
    }
}
