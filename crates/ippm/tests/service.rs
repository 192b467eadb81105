//! What running ippm as a service needs: privileges dropped after binding ports below 1024,
//! man pages and shell completions generated from the CLI definition, a systemd unit.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

mod common;
use common::IPPM;

#[test]
fn serve_drops_privileges_after_binding_a_low_port() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (it binds port 863 and drops to nobody)"
    );
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let mut child = Command::new(IPPM)
        .args([
            "serve",
            "--twamp-listen",
            "127.0.0.1:863",
            "--user",
            "nobody",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "listening twamp 127.0.0.1:863");
    // The drop happens once everything is bound; wait for its log line.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    while !log.contains("ippm serve running") {
        let mut l = String::new();
        if err.read_line(&mut l).unwrap() == 0 {
            panic!("{log}");
        }
        log.push_str(&l);
    }
    assert!(log.contains("privileges dropped"), "{log}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let uids: Vec<u32> = uid_line
        .split_whitespace()
        .skip(1)
        .map(|u| u.parse().unwrap())
        .collect();
    assert_eq!(uids, vec![nobody.uid.as_raw(); 4], "{uid_line}");
    let gid_line = status.lines().find(|l| l.starts_with("Gid:")).unwrap();
    assert!(
        gid_line
            .split_whitespace()
            .skip(1)
            .all(|g| g == nobody.gid.as_raw().to_string()),
        "{gid_line}"
    );
    // And it still serves.
    let out = Command::new(IPPM)
        .args([
            "twping",
            "-c",
            "5",
            "-i",
            "0.01f",
            "--json",
            "127.0.0.1:863",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["loss"]["lost"], 0);
    let _ = child.kill();
    let _ = child.wait();

    let out = Command::new(IPPM)
        .args([
            "serve",
            "--twamp-listen",
            "127.0.0.1:0",
            "--user",
            "no-such-user-here",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such user"));
}

#[test]
fn man_pages_and_completions_come_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(IPPM)
        .arg("man")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (page, option) in [
        ("ippm.1", "twping"),
        ("ippm-serve.1", "ike\\-listen"),
        ("ippm-twping.1", "session\\-control"),
        ("ippm-owping.1", "ike\\-secret\\-file"),
        ("ippm-results.1", "export"),
        ("ippm-ike.1", "rekey"),
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
        assert!(text.contains(option), "{page} lacks {option}");
    }
    for (shell, marker) in [
        ("bash", "_ippm()"),
        ("zsh", "#compdef ippm"),
        ("fish", "complete -c ippm"),
    ] {
        let out = Command::new(IPPM)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(marker), "{shell}");
        assert!(
            text.contains("twping") && text.contains("results"),
            "{shell}"
        );
    }
}

#[test]
fn the_systemd_unit_runs_serve_and_drops_to_its_user() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../dist/systemd/ippm.service"
    ))
    .unwrap();
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    let args: Vec<&str> = exec
        .trim_start_matches("ExecStart=")
        .split_whitespace()
        .collect();
    assert_eq!(&args[..2], &["/usr/bin/ippm", "serve"]);
    // Every option the unit passes exists (ippm serve --help knows it).
    let help = Command::new(IPPM)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for a in args.iter().filter(|a| a.starts_with("--")) {
        assert!(help.contains(a), "{a} is not an option of ippm serve");
    }
    assert!(args.contains(&"--user"));
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ippm.service");
        std::fs::write(&p, unit.replace("/usr/bin/ippm", IPPM)).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&p)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("Unknown key") && !err.contains("Invalid"),
            "{err}"
        );
    }
}
