//! The real binary behaving like a Unix tool (issue 14, "Behaviour"): a closed pipe ends
//! quietly, errors are said once with what to do, modes are words, input is checked before
//! any network work, the daemon says where results go and survives a peer that does not
//! resolve.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::{Daemon, IPPM, keyfile};

fn ippm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(IPPM).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `ippm ARGS` with stdout a pipe whose reader goes away at once (before the command
/// writes), as `| head -c 0` would; the exit status and stderr.
fn with_closed_stdout(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(IPPM)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `ippm ARGS`, reads one line of its stdout, then closes the pipe.
fn after_first_line(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let mut child = Command::new(IPPM)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        line,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn quiet(what: &str, status: std::process::ExitStatus, err: &str) {
    assert!(status.success(), "{what}: {status:?} {err}");
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{what}: {err}"
    );
}

#[test]
fn cli_closed_pipe_ends_quietly() {
    let (d, listening) = Daemon::start_args(
        &[
            "--twamp-listen",
            "127.0.0.1:0",
            "--owamp-listen",
            "127.0.0.1:0",
            "--stamp-listen",
            "127.0.0.1:0",
        ],
        3,
        None,
    );
    let at = |p: &str| {
        listening
            .iter()
            .find(|(w, _)| w == p)
            .map(|(_, a)| a.clone())
            .unwrap()
    };
    let (tw, ow, st) = (d.addr.clone(), at("owamp"), at("stamp"));
    let fast = ["-c", "20", "-i", "0.001f", "-L", "1"];
    for args in [
        [&["twping", &tw][..], &fast].concat(),
        [&["twping", "--json", "-R", &tw][..], &fast].concat(),
        [&["owping", "-R", &ow][..], &fast].concat(),
        [&["owping", "--json", &ow][..], &fast].concat(),
        [&["stamp", &st][..], &fast].concat(),
        [&["stamp", "--json", &st][..], &fast].concat(),
        vec!["completions", "bash"],
        vec!["completions", "zsh"],
    ] {
        let (status, err) = with_closed_stdout(&args);
        quiet(&args.join(" "), status, &err);
    }
    // A reader that takes the first line and goes (`| head -1`): more than a pipe holds
    // follows it.
    let (status, line, err) = after_first_line(
        &[
            &["owping", "-R", &ow][..],
            &["-c", "2000", "-i", "0.0001f", "-L", "1"],
        ]
        .concat(),
    );
    assert!(!line.is_empty());
    quiet("owping -R | head -1", status, &err);

    // `ippm results`: an archive with more sessions than a pipe holds.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("archive.db");
    let archive = ippm_archive::Archive::open(&db).unwrap();
    for i in 0..1500 {
        let id = archive
            .start_session(&ippm_archive::NewSession {
                peer: format!("probe{i}.example.net:862"),
                protocol: ippm_archive::Protocol::Twamp,
                mode: "unauthenticated".into(),
                sid: None,
                started_unix_ns: 1_700_000_000_000_000_000 + i,
                params_json: "{}".into(),
            })
            .unwrap();
        archive
            .finish_session(id, ippm_archive::Status::Failed, Some("test"), None, 1)
            .unwrap();
    }
    drop(archive);
    let db = db.to_str().unwrap();
    for args in [
        vec!["results", "--archive", db, "list"],
        vec!["results", "--archive", db, "list", "--json"],
        vec!["results", "--archive", db, "export", "--format", "csv"],
        vec!["results", "--archive", db, "export", "--format", "json"],
    ] {
        let (status, err) = with_closed_stdout(&args);
        quiet(&args.join(" "), status, &err);
        let (status, line, err) = after_first_line(&args);
        assert!(!line.is_empty(), "{args:?}");
        quiet(&args.join(" "), status, &err);
    }
}

#[test]
fn cli_os_errors_once_with_what_to_do() {
    // A port nobody listens on: refused, said once, with the question to ask.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    for cmd in ["twping", "owping"] {
        let (ok, _, err) = ippm(&[cmd, &addr, "-c", "1"]);
        assert!(!ok);
        assert_eq!(err.matches("os error 111").count(), 1, "{err}");
        assert!(err.contains("is `ippm serve`"), "{err}");
        assert!(!err.contains("TWAMP-Control"), "{err}");
    }
    // A name that does not resolve.
    let (ok, _, err) = ippm(&["twping", "no-such-host.invalid", "-c", "1"]);
    assert!(!ok);
    assert!(err.contains("check the name"), "{err}");
    // A port in use: who has it, and what to do.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let t = taken.local_addr().unwrap().to_string();
    let (ok, _, err) = ippm(&["serve", "--twamp-listen", &t]);
    assert!(!ok);
    assert_eq!(err.matches("os error 98").count(), 1, "{err}");
    assert!(err.contains("another process listens"), "{err}");
}

#[test]
fn cli_modes_in_words_and_what_a_refusal_means() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path());
    let k = keys.to_str().unwrap();
    let log = dir.path().join("serve.log");
    let d = Daemon::start_both("127.0.0.1", &["--keys", k, "--modes", "E"], Some(&log));
    let ow = d.owamp.clone().unwrap();
    // -A E without an identity: the server offers E, which needs -u/-k.
    for (cmd, addr) in [("twping", &d.addr), ("owping", &ow)] {
        let (ok, _, err) = ippm(&[cmd, addr, "-c", "1", "-A", "E"]);
        assert!(!ok);
        assert!(err.contains("the server offers encrypted (E)"), "{err}");
        assert!(err.contains("-u USER -k FILE"), "{err}");
        assert!(
            !err.contains("Modes(0x") && !err.contains("TWAMP-Control"),
            "{err}"
        );
    }
    // A wrong passphrase: Accept = 1, and what to check, for either protocol.
    let wrong = dir.path().join("wrong.pfs");
    std::fs::write(&wrong, format!("alice {}\n", hex_of(b"not the passphrase"))).unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    for (cmd, addr) in [("twping", &d.addr), ("owping", &ow)] {
        let (ok, _, err) = ippm(&[
            cmd,
            addr,
            "-c",
            "1",
            "-A",
            "E",
            "-u",
            "alice",
            "-k",
            wrong.to_str().unwrap(),
        ]);
        assert!(!ok);
        assert!(err.contains("Accept = 1"), "{err}");
        assert!(
            err.contains("same refusal for an unknown identity"),
            "{err}"
        );
        assert!(!err.contains("TWAMP-Control"), "{err}");
    }
    drop(d);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("Modes(0x"), "{log}");
    assert!(log.contains("modes=encrypted (E)"), "{log}");
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn cli_input_checked_before_any_network_work() {
    // 192.0.2.1 (TEST-NET-1) answers nothing: an error that names the option comes first.
    for (args, says) in [
        (
            &["twping", "192.0.2.1", "-c", "0"][..],
            "at least one packet",
        ),
        (&["owping", "192.0.2.1", "-c", "0"], "at least one packet"),
        (&["stamp", "192.0.2.1", "-c", "0"], "at least one packet"),
        (&["twping", "192.0.2.1", "-L", "0"], "more than 0"),
        (&["owping", "192.0.2.1", "-L", "-1"], "more than 0"),
        (&["stamp", "192.0.2.1", "-L", "NaN"], "more than 0"),
        (&["twping", "192.0.2.1", "-s", "65494"], "at most 65493"),
        (&["twping", "::1", "-s", "65514"], "at most 65513"),
        (&["owping", "192.0.2.1", "-s", "70000"], "at most 65493"),
        (
            &["owping", "192.0.2.1", "-A", "E", "-s", "65460"],
            "at most 65459",
        ),
        (&["stamp", "192.0.2.1", "-s", "65500"], "at most"),
    ] {
        let t = std::time::Instant::now();
        let (ok, _, err) = ippm(args);
        assert!(!ok, "{args:?}");
        assert!(err.contains(says), "{args:?}: {err}");
        // Refused before a connection was tried (which would take the 10 s control timeout).
        assert!(t.elapsed() < Duration::from_secs(5), "{args:?}");
    }
}

#[test]
fn cli_a_huge_count_starts_sending() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let d = Daemon::start("127.0.0.1:0", &[], Some(&log));
    let mut child = Command::new(IPPM)
        .args(["twping", &d.addr, "-c", "1000000000", "-i", "0.001f"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The reflector accepted the session: the client is past every allocation by count.
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("test session accepted")
    {
        assert!(child.try_wait().unwrap().is_none(), "twping ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(child.try_wait().unwrap().is_none(), "twping ended");
    let rss = common::proc_status(child.id()).rss_kib;
    assert!(rss < 200 * 1024, "{rss} KiB");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn cli_listen_addresses_default_the_port() {
    // The flag: the address alone parses (the port is the protocol's: 862, which a test may
    // not be able to bind, so only the parse is checked here through the error it gives).
    let (ok, _, err) = ippm(&["serve", "--twamp-listen", "192.0.2.1"]);
    assert!(!ok);
    assert!(err.contains("192.0.2.1:862"), "{err}");
    let (ok, _, err) = ippm(&["serve", "--owamp-listen", "not-an-address"]);
    assert!(!ok);
    assert!(
        err.contains("write an IP address with an optional port"),
        "{err}"
    );
    // The file: `listen = "ADDR"` as well as a list.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ippm.toml");
    std::fs::write(&cfg, "[twamp]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let (d, listening) = Daemon::start_args(&["--config", cfg.to_str().unwrap()], 1, None);
    assert_eq!(listening[0].0, "twamp");
    drop(d);
    std::fs::write(&cfg, "[owamp]\nlisten = \"192.0.2.1\"\n").unwrap();
    let (ok, _, err) = ippm(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("192.0.2.1:861"), "{err}");
}

#[test]
fn cli_config_errors_name_file_section_key_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ippm.toml");
    let c = cfg.to_str().unwrap();
    for (text, says) in [
        ("[twamp]\ncount = \"many\"\n", "line 2, [twamp] count: "),
        (
            "[limits]\nmax_connections = -3\n",
            "[limits] max_connections: ",
        ),
        ("[twamp]\nlisten = 5\n", "an address or a list of addresses"),
        (
            "[[measure]]\npeer = \"x\"\nrate = \"fast\"\n",
            "[[measure]] rate: ",
        ),
    ] {
        std::fs::write(&cfg, text).unwrap();
        let (ok, _, err) = ippm(&["serve", "--config", c]);
        assert!(!ok);
        assert!(err.contains(&format!("config file {c}")), "{err}");
        assert!(err.contains(says), "{text}: {err}");
        for rust in ["u32", "usize", "f64", "i64", "struct "] {
            assert!(!err.contains(rust), "{text}: {err}");
        }
    }
    std::fs::write(&cfg, "[twamp]\ncount = \"many\"\n").unwrap();
    let (_, _, err) = ippm(&["serve", "--config", c]);
    assert!(err.contains("a whole number"), "{err}");
}

#[test]
fn cli_measure_says_where_results_go_and_survives_a_peer_that_does_not_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let peer = Daemon::start("127.0.0.1:0", &[], None);
    let archive = dir.path().join("a.db");
    let cfg = dir.path().join("ippm.toml");
    // No [archive]: the default path is said at start. The metrics port is taken, so the
    // daemon stops after saying it and before it opens (and writes) /var/lib.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let m = taken.local_addr().unwrap().to_string();
    std::fs::write(
        &cfg,
        "[twamp]\nlisten = \"127.0.0.1:0\"\n[[measure]]\npeer = \"127.0.0.1:1\"\nprotocol = \"twamp\"\n",
    )
    .unwrap();
    let (ok, _, text) = ippm(&[
        "serve",
        "--config",
        cfg.to_str().unwrap(),
        "--metrics-listen",
        &m,
    ]);
    assert!(!ok, "{text}");
    assert!(text.contains("/var/lib/ippm/archive.db"), "{text}");
    assert!(text.contains("[archive] path"), "{text}");

    // One peer that does not resolve, one that does: the daemon runs on, the one fails.
    std::fs::write(
        &cfg,
        format!(
            "[twamp]\nlisten = \"127.0.0.1:0\"\n[archive]\npath = {:?}\n\
             [[measure]]\npeer = \"no-such-peer.invalid\"\nprotocol = \"twamp\"\nsession = 1\nrate = 20\n\
             [[measure]]\npeer = {:?}\nprotocol = \"twamp\"\nsession = 1\nrate = 20\n",
            archive.to_str().unwrap(),
            peer.addr
        ),
    )
    .unwrap();
    let (_d, _) = Daemon::start_args(&["--config", cfg.to_str().unwrap()], 1, None);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let a = ippm_archive::Archive::open(&archive).unwrap();
        let rows = a.sessions(&ippm_archive::Filter::default()).unwrap();
        let failed = rows
            .iter()
            .find(|r| r.peer.starts_with("no-such-peer.invalid"));
        let done = rows
            .iter()
            .find(|r| r.peer == peer.addr && matches!(r.status, ippm_archive::Status::Complete));
        if let (Some(f), Some(_)) = (failed, done) {
            assert!(matches!(f.status, ippm_archive::Status::Failed));
            assert!(
                f.reason.as_deref().unwrap_or("").contains("cannot resolve"),
                "{:?}",
                f.reason
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{rows:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
