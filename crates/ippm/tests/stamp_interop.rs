//! STAMP (RFC 8762/8972) against an independent peer, stamp-suite (crates.io; .ci/run installs
//! the version tests/common/stamp_suite.rs names; docs/interop-stamp-suite.md says what it
//! does): its sender against `ippm serve`'s Session-Reflector and `ippm stamp` against its
//! reflector, open and authenticated, IPv4 and IPv6, a wrong key on either side; and Wireshark's
//! TWAMP-Test dissector (tshark 4.0 has no STAMP one; STAMP's unauthenticated packets are
//! TWAMP-Test's layout with the SSID in an MBZ field) on `ippm stamp` against `ippm serve`.
//! The `stamp_suite_harness_*` tests check the harness on stamp-suite against itself.
//!
//! Every process a test starts is stopped by its guard (by PID), panics included; every wait
//! is bounded; everything is on loopback.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;
use common::IPPM;
use common::capture::{Capture, abs_time_ns, has_protocol, malformed, tshark};
use common::proc::{Guarded, Ran, run_bounded};
use common::stamp_suite::{
    self as ss, KEY, Reflector, ReflectorOpts, SenderOpts, SenderReport, WRONG_KEY,
};

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// A UDP port nothing holds on `ip` (when this returns).
fn free_udp_port(ip: IpAddr) -> u16 {
    UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `ippm serve` with a STAMP Session-Reflector on `stamp`, and TWAMP and OWAMP listeners on
/// any free loopback port (so that it listens on nothing else); killed (by its PID) when
/// dropped.
struct Serve {
    /// Kills the daemon when dropped.
    _guard: Guarded,
    /// The Session-Reflector's address.
    stamp: SocketAddr,
    /// The metrics endpoint, when asked for.
    metrics: Option<String>,
    log: PathBuf,
}

impl Serve {
    /// `ippm serve --stamp-listen IP:PORT [--stamp-key-file KEY] [--metrics-listen ...]`.
    fn start(ip: IpAddr, key: Option<&Path>, metrics: bool, dir: &Path) -> Self {
        let stamp = SocketAddr::new(ip, free_udp_port(ip));
        let any = SocketAddr::new(ip, 0).to_string();
        let mut args: Vec<String> = [
            "--twamp-listen",
            &any,
            "--owamp-listen",
            &any,
            "--stamp-listen",
            &stamp.to_string(),
        ]
        .map(String::from)
        .to_vec();
        if let Some(k) = key {
            args.push("--stamp-key-file".into());
            args.push(k.to_str().unwrap().into());
        }
        let metrics = metrics.then(|| format!("127.0.0.1:{}", common::free_ports(1)));
        if let Some(m) = &metrics {
            args.push("--metrics-listen".into());
            args.push(m.clone());
        }
        Self::spawn(&args, stamp, metrics, dir)
    }

    /// `ippm serve --config FILE`, whose `[stamp]` section listens on `stamp`.
    fn with_config(config: &str, stamp: SocketAddr, dir: &Path) -> Self {
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let path = dir.join(format!("ippm-{n}.toml"));
        std::fs::write(&path, config).unwrap();
        Self::spawn(
            &["--config".into(), path.to_str().unwrap().into()],
            stamp,
            None,
            dir,
        )
    }

    fn spawn(args: &[String], stamp: SocketAddr, metrics: Option<String>, dir: &Path) -> Self {
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let log = dir.join(format!("serve-{n}.log"));
        let child = Command::new(IPPM)
            .arg("serve")
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start ippm serve");
        let mut child = Guarded(child);
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.0.stdout.take().unwrap();
        // Reads what it says for as long as it runs (so it never blocks on a full pipe).
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let failed = |why: &str, seen: &str| -> ! {
            panic!(
                "ippm serve {args:?} {why} (does it have the STAMP reflector yet?)\n\
                 --- stdout\n{seen}\n--- log\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        };
        // TWAMP and OWAMP say where they listen; the STAMP listener is up when its port is
        // bound (whatever the daemon prints for it).
        let end = Instant::now() + Duration::from_secs(20);
        let mut seen = String::new();
        let ready = |seen: &str| {
            seen.contains("listening twamp ")
                && seen.contains("listening owamp ")
                && (metrics.is_none() || seen.contains("metrics http://"))
        };
        while !ready(&seen) {
            let left = end.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    seen.push_str(&line);
                    seen.push('\n');
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => failed("ended", &seen),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    failed("was not ready within 20 s", &seen)
                }
            }
        }
        while common::udp_counters(stamp.port()).is_none() {
            if !child.running() {
                failed("ended", &seen);
            }
            if Instant::now() >= end {
                failed(&format!("does not listen on {stamp} (UDP)"), &seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            _guard: child,
            stamp,
            metrics,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /metrics`.
    fn scrape(&self) -> String {
        common::scrape(self.metrics.as_deref().expect("started with metrics"))
    }
}

/// The `ippm_dropped_total` series of a scrape: (event label, value).
fn dropped(scrape: &str) -> Vec<(String, f64)> {
    scrape
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("ippm_dropped_total{")?;
            let (labels, value) = rest.split_once('}')?;
            let event = labels
                .split(',')
                .find_map(|kv| kv.trim().strip_prefix("event="))
                .unwrap_or("")
                .trim_matches('"')
                .to_owned();
            Some((event, value.trim().parse().ok()?))
        })
        .collect()
}

/// The value of the `ippm_dropped_total` series for `event` (0 when absent).
fn dropped_event(scrape: &str, event: &str) -> f64 {
    dropped(scrape)
        .iter()
        .filter(|(e, _)| e == event)
        .map(|(_, v)| v)
        .sum()
}

/// The value of the unlabelled series `name` (0 when absent).
fn series(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn dropped_sum(scrape: &str) -> f64 {
    dropped(scrape).iter().map(|(_, v)| v).sum()
}

/// `ippm stamp TARGET -c N -i 0.01f --json EXTRA...`, at most 60 s: the run and its JSON (if
/// it printed one).
fn ippm_stamp(
    target: SocketAddr,
    count: u32,
    extra: &[&str],
    dir: &Path,
) -> (Ran, Option<serde_json::Value>) {
    let mut cmd = Command::new(IPPM);
    cmd.args(["stamp", &target.to_string(), "-c", &count.to_string()])
        .args(["-i", "0.01f", "--json"])
        .args(extra);
    let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    let ran = run_bounded(
        cmd,
        dir,
        &format!("ippm-stamp-{n}"),
        Duration::from_secs(60),
    );
    let json = serde_json::from_str(ran.stdout.trim()).ok();
    (ran, json)
}

/// Checks an `ippm stamp --json` result (the keys of `ippm twping --json`, docs/schema): `n`
/// sent, all received, no loss, a round trip; `mode` when it says one.
fn check_ippm_result(v: &serde_json::Value, n: u64, mode: &str, ran: &Ran) {
    let ctx = || format!("{v:#}\n{}", ran.both());
    let loss = &v["loss"];
    assert_eq!(loss["sent"].as_u64(), Some(n), "{}", ctx());
    assert_eq!(loss["received"].as_u64(), Some(n), "{}", ctx());
    assert_eq!(loss["lost"].as_u64(), Some(0), "{}", ctx());
    assert_eq!(loss["loss_ratio"].as_f64(), Some(0.0), "{}", ctx());
    let rt = &v["round_trip"];
    assert!(rt.is_object(), "no round_trip: {}", ctx());
    assert_eq!(rt["count"].as_u64(), Some(n), "{}", ctx());
    let (min, max) = (rt["min_ns"].as_i64(), rt["max_ns"].as_i64());
    assert!(
        matches!((min, max), (Some(a), Some(b)) if a > 0 && a <= b && b < 1_000_000_000),
        "round trip min/max {min:?}/{max:?}: {}",
        ctx()
    );
    if let Some(m) = v.get("mode") {
        assert_eq!(m, mode, "{}", ctx());
    }
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

/// What a stamp-suite sender says of a reflector that answered all `n` packets: nothing
/// lost or duplicated, every sequence number once, sane times (loopback, one clock).
fn check_all_reflected(r: &SenderReport, n: u64) {
    let ctx = || r.dump();
    assert_eq!(
        (r.sent, r.received, r.lost),
        (n, n, 0),
        "sent/received/lost: {}",
        ctx()
    );
    assert_eq!(r.loss_percent, 0.0, "{}", ctx());
    assert_eq!((r.unique_replies, r.duplicate_replies), (n, 0), "{}", ctx());
    let (min, med, max) = (
        r.rtt_min_ms.unwrap_or(-1.0),
        r.rtt_median_ms.unwrap_or(-1.0),
        r.rtt_max_ms.unwrap_or(-1.0),
    );
    assert!(
        0.0 < min && min <= med && med <= max && max < 1000.0,
        "RTT min/median/max {min}/{med}/{max} ms: {}",
        ctx()
    );
    let mut seqs: Vec<u32> = r.replies.iter().map(|p| p.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..n as u32).collect::<Vec<_>>(), "{}", ctx());
    let now = now_ns();
    for p in &r.replies {
        // The TTL the reflector saw: stamp-suite sends 255 (RFC 8762 §4.3.1 Session-Sender TTL).
        assert_eq!(p.ttl, 255, "{p:?}: {}", ctx());
        assert!(p.rtt_ms > 0.0, "{p:?}: {}", ctx());
        let (t2, t3) = (ss::ntp_unix_ns(p.t2), ss::ntp_unix_ns(p.t3));
        assert!(
            (now - t2).abs() < 60_000_000_000 && t2 <= t3 && t3 - t2 < 1_000_000_000,
            "T2 {t2} / T3 {t3} (now {now}): {p:?}: {}",
            ctx()
        );
    }
    // One host, one clock: both one-way delays are small (their split depends on where each
    // side takes its stamps).
    for d in [r.forward_min_ms, r.reverse_min_ms] {
        assert!(
            d.is_some_and(|d| d.abs() < 1000.0),
            "one-way {d:?}: {}",
            ctx()
        );
    }
    for bad in ["zeroed SSID", "HMAC verification failed", "Discarding"] {
        assert!(!r.ran.stderr.contains(bad), "{bad}: {}", ctx());
    }
}

// ---------------------------------------------------------------------------------------------
// The harness on stamp-suite against itself (these pass without ippm's STAMP).

#[test]
fn stamp_suite_harness_against_itself() {
    let Some(bin) = ss::require() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = ss::key_file(d, "stamp.key", KEY);
    let wrong = ss::key_file(d, "wrong.key", WRONG_KEY);
    for ip in [V4, V6] {
        for k in [None, Some(key.clone())] {
            let refl = Reflector::start(
                &bin,
                &ReflectorOpts {
                    addr: Some(ip),
                    key: k.clone(),
                    ..Default::default()
                },
                d,
            );
            let mut o = SenderOpts::new(refl.addr, 5);
            o.key = k.clone();
            o.ssid = Some(4242);
            let r = ss::send(&bin, &o, d);
            check_all_reflected(&r, 5);
            if k.is_some() {
                // The wrong key: the reflector drops every packet.
                o.key = Some(wrong.clone());
                o.timeout_s = 1;
                let r = ss::send(&bin, &o, d);
                assert_eq!((r.sent, r.received), (5, 0), "{}", r.dump());
                assert!(r.ran.status.success(), "it exits 0 even so");
            }
            let s = refl.stop();
            let bad = if k.is_some() { 5 } else { 0 };
            assert_eq!((s.received, s.reflected, s.dropped), (5 + bad, 5, bad));
            assert!(s.sessions.iter().any(|x| x.1 == 4242 && x.3 == 5), "{s:?}");
        }
    }
}

#[test]
fn stamp_suite_harness_stateful_reflector_counts_per_session() {
    let Some(bin) = ss::require() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for stateful in [false, true] {
        let refl = Reflector::start(
            &bin,
            &ReflectorOpts {
                stateful,
                ..Default::default()
            },
            d,
        );
        let runs = same_session_twice(&bin, refl.addr, d);
        check_counting(&runs, stateful);
        refl.stop();
    }
}

/// Two stamp-suite runs of 5 packets in one session (the same 4-tuple and SSID).
fn same_session_twice(bin: &Path, reflector: SocketAddr, dir: &Path) -> [SenderReport; 2] {
    let mut o = SenderOpts::new(reflector, 5);
    o.ssid = Some(7);
    o.local_port = free_udp_port(reflector.ip());
    [ss::send(bin, &o, dir), ss::send(bin, &o, dir)]
}

/// A stateless reflector copies the sender's sequence numbers; a stateful one counts on
/// within the session (RFC 8762 §4.3.1): the second run's replies carry 5..9.
fn check_counting(runs: &[SenderReport; 2], stateful: bool) {
    for r in runs {
        check_all_reflected(r, 5);
    }
    let last = runs.each_ref().map(|r| r.last_reflector_seq);
    let independent = runs.each_ref().map(|r| r.independent_seqs);
    if stateful {
        assert_eq!(
            (last, independent),
            ([Some(4), Some(9)], [0, 5]),
            "{}",
            runs[1].dump()
        );
    } else {
        assert_eq!(
            (last, independent),
            ([Some(4), Some(4)], [0, 0]),
            "{}",
            runs[1].dump()
        );
    }
}

#[test]
fn stamp_suite_reply_line_and_ntp_timestamp_parse() {
    // A per-packet line of stamp-suite 1.0.0's sender (-R with --output-format json).
    let r = ss::parse_reply(
        "seq=2 rtt=0.117ms ttl=255 reflector_recv_ts=17204235495683915719 \
         reflector_send_ts=17204235495683947206",
    )
    .unwrap();
    assert_eq!((r.seq, r.ttl), (2, 255));
    assert!((r.rtt_ms - 0.117).abs() < 1e-9);
    assert_eq!(ss::ntp_unix_ns(r.t2) / 1_000_000_000, 1_796_684_424);
    assert!(ss::parse_reply("Warning: reflector returned a zeroed SSID").is_none());
}

#[test]
fn stamp_tshark_absolute_times_parse() {
    assert_eq!(
        abs_time_ns("Dec  7, 2026 23:01:38.603332770 UTC"),
        Some(1_796_684_498_603_332_770)
    );
    assert_eq!(abs_time_ns("Jan  1, 1970 00:00:00.000000000 UTC"), Some(0));
    assert_eq!(
        abs_time_ns("Feb 29, 2024 12:00:00.5 UTC"),
        Some(1_709_208_000_500_000_000)
    );
    assert_eq!(abs_time_ns("garbage"), None);
}

// ---------------------------------------------------------------------------------------------
// stamp-suite's Session-Sender -> ippm serve's Session-Reflector.

fn suite_sender_to_ippm(ip: IpAddr, authenticated: bool) {
    let Some(bin) = ss::require() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = authenticated.then(|| ss::key_file(d, "stamp.key", KEY));
    let serve = Serve::start(ip, key.as_deref(), false, d);
    let mut o = SenderOpts::new(serve.stamp, 20);
    o.key = key;
    o.ssid = Some(4242);
    let r = ss::send(&bin, &o, d);
    check_all_reflected(&r, 20);
    // A stateless reflector (the default for a peer it does not know) copies the sequence
    // numbers; a stateful one counts from 0 in a new session: either way they match here.
    assert_eq!(r.independent_seqs, 0, "{}\n{}", r.dump(), serve.log());
}

#[test]
fn stamp_suite_sender_to_ippm_reflector_open_ipv4() {
    suite_sender_to_ippm(V4, false);
}

#[test]
fn stamp_suite_sender_to_ippm_reflector_open_ipv6() {
    suite_sender_to_ippm(V6, false);
}

#[test]
fn stamp_suite_sender_to_ippm_reflector_authenticated_ipv4() {
    suite_sender_to_ippm(V4, true);
}

#[test]
fn stamp_suite_sender_to_ippm_reflector_authenticated_ipv6() {
    suite_sender_to_ippm(V6, true);
}

/// A sender with the wrong key gets no reply, and the daemon counts every packet it dropped in
/// `ippm_dropped_total`; the right key still works afterwards.
#[test]
fn stamp_suite_sender_with_wrong_key_gets_no_reply_from_ippm_and_is_counted() {
    let Some(bin) = ss::require() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = ss::key_file(d, "stamp.key", KEY);
    let wrong = ss::key_file(d, "wrong.key", WRONG_KEY);
    let serve = Serve::start(V4, Some(&key), true, d);
    let before = serve.scrape();
    let mut o = SenderOpts::new(serve.stamp, 10);
    o.key = Some(wrong);
    o.timeout_s = 1;
    let r = ss::send(&bin, &o, d);
    assert_eq!((r.sent, r.received), (10, 0), "{}", r.dump());
    // The counters may lag the packets a little. A bad HMAC is a `test_packet_bad`
    // (docs/prometheus.md: "tampering or a key mismatch").
    let bad =
        |s: &str| dropped_event(s, "test_packet_bad") - dropped_event(&before, "test_packet_bad");
    let end = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let s = serve.scrape();
        if bad(&s) >= 10.0 || Instant::now() >= end {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        bad(&after) >= 10.0 && dropped_sum(&after) - dropped_sum(&before) >= 10.0,
        "ippm_dropped_total rose by {:?} for 10 bad packets: {:?}\n{}",
        bad(&after),
        dropped(&after),
        serve.log()
    );
    assert_eq!(
        series(&after, "ippm_stamp_reflected_total"),
        series(&before, "ippm_stamp_reflected_total"),
        "answered a bad packet: {after}"
    );
    o.key = Some(key);
    let r = ss::send(&bin, &o, d);
    check_all_reflected(&r, 10);
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let s = serve.scrape();
        let answered = series(&s, "ippm_stamp_reflected_total")
            - series(&before, "ippm_stamp_reflected_total");
        if answered >= 10.0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "ippm_stamp_reflected_total rose by {answered}: {s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `[stamp]` in the configuration file: `stateful = true` counts within a session (two
/// stamp-suite runs from one port and SSID: the second one's replies carry 5..9), `false`
/// copies the sender's numbers; the mode and key come from the file too.
#[test]
fn stamp_suite_sender_sees_ippm_stateful_and_stateless_reflector_from_config() {
    let Some(bin) = ss::require() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = ss::key_file(d, "stamp.key", KEY);
    for stateful in [false, true] {
        let stamp = SocketAddr::new(V4, free_udp_port(V4));
        let (mode, key_line) = if stateful {
            (
                "authenticated",
                format!("key_file = {:?}\n", key.to_str().unwrap()),
            )
        } else {
            ("unauthenticated", String::new())
        };
        let config = format!(
            "[twamp]\nlisten = [\"127.0.0.1:0\"]\n[owamp]\nlisten = [\"127.0.0.1:0\"]\n\
             [stamp]\nlisten = [\"{stamp}\"]\nmode = \"{mode}\"\n{key_line}stateful = {stateful}\n"
        );
        let serve = Serve::with_config(&config, stamp, d);
        let mut o = SenderOpts::new(stamp, 5);
        o.ssid = Some(7);
        o.local_port = free_udp_port(V4);
        o.key = stateful.then(|| key.clone());
        let runs = [ss::send(&bin, &o, d), ss::send(&bin, &o, d)];
        check_counting(&runs, stateful);
        drop(serve);
    }
}

// ---------------------------------------------------------------------------------------------
// ippm stamp -> stamp-suite's Session-Reflector.

fn ippm_to_suite_reflector(ip: IpAddr, authenticated: bool) {
    let Some(bin) = ss::require() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = authenticated.then(|| ss::key_file(d, "stamp.key", KEY));
    let refl = Reflector::start(
        &bin,
        &ReflectorOpts {
            addr: Some(ip),
            key: key.clone(),
            stateful: authenticated,
            ..Default::default()
        },
        d,
    );
    let mut extra = vec!["--ssid", "4242", "-R"];
    if let Some(k) = &key {
        extra.extend(["-A", "A", "--hmac-key-file", k.to_str().unwrap()]);
    }
    let (ran, json) = ippm_stamp(refl.addr, 20, &extra, d);
    assert!(ran.status.success(), "{}\n{}", ran.both(), refl.log());
    let v = json.unwrap_or_else(|| panic!("no JSON: {}", ran.both()));
    let mode = if authenticated {
        "authenticated"
    } else {
        "unauthenticated"
    };
    check_ippm_result(&v, 20, mode, &ran);
    let records = v["records"].as_array().cloned().unwrap_or_default();
    assert_eq!(records.len(), 20, "{v:#}");
    for r in &records {
        // stamp-suite answers statelessly (copying the sequence number) or, stateful, counts
        // from 0 in this one session: the same numbers here.
        assert_eq!(r["sender_seq"], r["reflector_seq"], "{r}");
        // It reports the TTL it received; ippm sends 255 (DESIGN.md, the test engine).
        assert_eq!(r["sender_ttl"].as_u64(), Some(255), "{r}");
    }
    let s = refl.stop();
    assert_eq!((s.received, s.reflected, s.dropped), (20, 20, 0), "{s:?}");
    assert!(
        s.sessions.iter().any(|x| x.1 == 4242 && x.2 == 20),
        "stamp-suite saw no session with SSID 4242: {s:?}"
    );
}

#[test]
fn ippm_stamp_to_stamp_suite_reflector_open_ipv4() {
    ippm_to_suite_reflector(V4, false);
}

#[test]
fn ippm_stamp_to_stamp_suite_reflector_open_ipv6() {
    ippm_to_suite_reflector(V6, false);
}

#[test]
fn ippm_stamp_to_stamp_suite_reflector_authenticated_ipv4() {
    ippm_to_suite_reflector(V4, true);
}

#[test]
fn ippm_stamp_to_stamp_suite_reflector_authenticated_ipv6() {
    ippm_to_suite_reflector(V6, true);
}

/// The wrong key: stamp-suite drops every packet, `ippm stamp` accepts no reply and fails.
#[test]
fn ippm_stamp_with_wrong_key_is_refused_by_stamp_suite_reflector() {
    let Some(bin) = ss::require() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = ss::key_file(d, "stamp.key", KEY);
    let wrong = ss::key_file(d, "wrong.key", WRONG_KEY);
    let refl = Reflector::start(
        &bin,
        &ReflectorOpts {
            key: Some(key),
            ..Default::default()
        },
        d,
    );
    let (ran, json) = ippm_stamp(
        refl.addr,
        5,
        &["-A", "A", "--hmac-key-file", wrong.to_str().unwrap()],
        d,
    );
    assert!(
        !ran.status.success(),
        "exit 0 without a reply: {}",
        ran.both()
    );
    if let Some(v) = json {
        assert_eq!(v["loss"]["received"].as_u64(), Some(0), "{v:#}");
    }
    let s = refl.stop();
    assert_eq!(s.reflected, 0, "{s:?}");
    assert!(s.dropped >= 1 && s.dropped == s.received, "{s:?}");
}

// ---------------------------------------------------------------------------------------------
// Wireshark on ippm's own STAMP packets.

/// One dissected packet: the twamp.test fields tshark shows.
#[derive(Debug)]
struct Dissected {
    src_port: u16,
    udp_len: u32,
    seq: u32,
    t: i128,
    t2: i128,
    sender_seq: u32,
    sender_t: i128,
    sender_ttl: u32,
    /// The field TWAMP calls MBZ after the Error Estimate: STAMP's SSID (RFC 8972 §3).
    ssid: u32,
}

/// The STAMP packets to and from the reflector on `port` in `pcap`, decoded as TWAMP-Test:
/// `n` each way, none malformed or warned about (nor by a STAMP dissector, if this tshark has
/// one); (sent, replies, tshark's fields for messages).
fn dissect(pcap: &Path, port: u16, n: usize) -> (Vec<Dissected>, Vec<Dissected>, String) {
    let r = pcap.to_str().unwrap();
    let decode = format!("udp.port=={port},twamp.test");
    if has_protocol("stamp") {
        // A STAMP-aware dissector (tshark 4.0 has none): nothing malformed through it either.
        let bad = malformed(r, &format!("udp.port=={port},stamp"));
        assert!(bad.trim().is_empty(), "STAMP dissector: {bad}");
    } else {
        eprintln!("this tshark has no STAMP dissector; decoding as TWAMP-Test");
    }
    let summary = tshark(&["-r", r, "-d", &decode]);
    assert_eq!(
        summary.lines().filter(|l| l.contains("TWAMP-Test")).count(),
        2 * n,
        "{summary}"
    );
    let bad = malformed(r, &decode);
    assert!(bad.trim().is_empty(), "malformed or warned:\n{bad}");
    // Without TWAMP-Control to tell the directions apart, the dissector reads every packet
    // with the reflector's layout: a sender packet's Sequence Number, Timestamp (T1) and SSID
    // are at the same places, the rest is its MBZ.
    let mut args = vec!["-r", r, "-d", &decode, "-T", "fields"];
    for f in [
        "udp.srcport",
        "udp.length",
        "twamp.test.seq_number",
        "twamp.test.timestamp",
        "twamp.test.receive_timestamp",
        "twamp.test.sender_seq_number",
        "twamp.test.sender_timestamp",
        "twamp.test.sender_ttl",
        "twamp.test.mbz1",
    ] {
        args.extend(["-e", f]);
    }
    let fields = tshark(&args);
    let packets: Vec<Dissected> = fields
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let n = |i: usize| -> u32 {
                f.get(i)
                    .and_then(|x| x.parse().ok())
                    .unwrap_or_else(|| panic!("field {i} of {l}"))
            };
            let t = |i: usize| {
                f.get(i)
                    .and_then(|x| abs_time_ns(x))
                    .unwrap_or_else(|| panic!("field {i} of {l}"))
            };
            Dissected {
                src_port: n(0) as u16,
                udp_len: n(1),
                seq: n(2),
                t: t(3),
                t2: t(4),
                sender_seq: n(5),
                sender_t: t(6),
                sender_ttl: n(7),
                ssid: n(8),
            }
        })
        .collect();
    let (replies, sent): (Vec<Dissected>, Vec<Dissected>) =
        packets.into_iter().partition(|p| p.src_port == port);
    assert_eq!((sent.len(), replies.len()), (n, n), "{fields}");
    (sent, replies, fields)
}

/// The same timestamp, as tshark and the peer show it (NTP format: they may round the
/// fraction differently).
fn same_time(a: i128, b: i128) -> bool {
    (a - b).abs() <= 2
}

/// The harness's dissection on stamp-suite's own packets (passes without ippm's STAMP):
/// clean, and the fields are the ones its sender reports.
#[test]
fn stamp_suite_harness_tshark_dissects_stamp_suite_packets() {
    let Some(bin) = ss::require() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let refl = Reflector::start(&bin, &ReflectorOpts::default(), d);
    let pcap = d.join("stamp-suite.pcapng");
    let cap = Capture::start(&format!("udp port {}", refl.addr.port()), &pcap);
    let mut o = SenderOpts::new(refl.addr, 5);
    o.ssid = Some(77);
    let rep = ss::send(&bin, &o, d);
    let pcap = cap.stop();
    check_all_reflected(&rep, 5);
    let (sent, replies, fields) = dissect(&pcap, refl.addr.port(), 5);
    for r in &rep.replies {
        let p = replies
            .iter()
            .find(|p| p.sender_seq == r.seq)
            .unwrap_or_else(|| panic!("no reply to {}: {fields}", r.seq));
        let s = sent.iter().find(|s| s.seq == r.seq).unwrap();
        let ctx = format!("{r:?}\nsent {s:?}\nreply {p:?}");
        assert!(same_time(p.t2, ss::ntp_unix_ns(r.t2)), "T2: {ctx}");
        assert!(same_time(p.t, ss::ntp_unix_ns(r.t3)), "T3: {ctx}");
        assert_eq!(s.t, p.sender_t, "T1 echoed: {ctx}");
        assert_eq!(p.sender_ttl, u32::from(r.ttl), "{ctx}");
        assert_eq!((s.ssid, p.ssid), (77, 77), "{ctx}");
        assert_eq!((s.udp_len, p.udp_len), (8 + 44, 8 + 44), "{ctx}");
    }
    refl.stop();
}

/// `ippm stamp -R --json` against `ippm serve` (unauthenticated), captured on loopback and
/// decoded as TWAMP-Test: every packet dissects cleanly, and the sequence numbers, timestamps,
/// TTL and SSID the dissector shows are the ones `ippm stamp` reports.
#[test]
fn tshark_dissects_ippm_stamp_test_packets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serve = Serve::start(V4, None, false, d);
    let port = serve.stamp.port();
    let pcap = d.join("stamp.pcapng");
    let cap = Capture::start(&format!("udp port {port}"), &pcap);
    let (ran, json) = ippm_stamp(serve.stamp, 5, &["-R", "--ssid", "77"], d);
    let pcap = cap.stop();
    assert!(ran.status.success(), "{}\n{}", ran.both(), serve.log());
    let v = json.unwrap_or_else(|| panic!("no JSON: {}", ran.both()));
    check_ippm_result(&v, 5, "unauthenticated", &ran);
    let (sent, replies, fields) = dissect(&pcap, port, 5);
    for p in sent.iter().chain(&replies) {
        // The SSID in both directions (RFC 8972 §3: the reflector copies it).
        assert_eq!(p.ssid, 77, "SSID: {p:?}");
    }
    let records = v["records"].as_array().cloned().unwrap_or_default();
    assert_eq!(records.len(), 5, "{v:#}");
    let ns = |rec: &serde_json::Value, k: &str| -> i128 {
        rec[k]
            .as_i64()
            .unwrap_or_else(|| panic!("no {k} in {rec}"))
            .into()
    };
    for rec in &records {
        let seq = rec["sender_seq"].as_u64().unwrap() as u32;
        let s = sent
            .iter()
            .find(|p| p.seq == seq)
            .unwrap_or_else(|| panic!("no sender packet {seq}: {fields}"));
        let p = replies
            .iter()
            .find(|p| p.sender_seq == seq)
            .unwrap_or_else(|| panic!("no reply to {seq}: {fields}"));
        let ctx = format!("{rec}\nsent {s:?}\nreply {p:?}");
        let t1 = ns(rec, "t1_user_unix_ns");
        assert!(same_time(s.t, t1), "T1 in the packet: {ctx}");
        assert!(same_time(p.sender_t, t1), "T1 echoed: {ctx}");
        assert!(same_time(p.t2, ns(rec, "t2_unix_ns")), "T2: {ctx}");
        assert!(same_time(p.t, ns(rec, "t3_unix_ns")), "T3: {ctx}");
        assert_eq!(
            Some(u64::from(p.seq)),
            rec["reflector_seq"].as_u64(),
            "{ctx}"
        );
        assert_eq!(
            Some(u64::from(p.sender_ttl)),
            rec["sender_ttl"].as_u64(),
            "{ctx}"
        );
        // Symmetrical size (RFC 8762 §4.2): the reply is as long as the packet.
        assert_eq!(s.udp_len, p.udp_len, "{ctx}");
        assert!(
            s.udp_len >= 8 + 44,
            "at least the unauthenticated base packet: {ctx}"
        );
    }
}

/// What stamp-suite's sender does not check (it reads replies leniently and never looks at
/// the echoed Session-Sender Timestamp or Error Estimate), seen on the wire: `ippm serve`
/// answers stamp-suite's packets with the same size, the sender's Sequence Number, Timestamp
/// and SSID copied, the TTL it received, and T2 <= T3 as stamp-suite reports them.
#[test]
fn tshark_shows_ippm_reflector_echoing_stamp_suite_packets() {
    let Some(bin) = ss::require() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let serve = Serve::start(V4, None, false, d);
    let port = serve.stamp.port();
    let pcap = d.join("stamp-suite-to-ippm.pcapng");
    let cap = Capture::start(&format!("udp port {port}"), &pcap);
    let mut o = SenderOpts::new(serve.stamp, 5);
    o.ssid = Some(77);
    let rep = ss::send(&bin, &o, d);
    let pcap = cap.stop();
    check_all_reflected(&rep, 5);
    let (sent, replies, fields) = dissect(&pcap, port, 5);
    for p in &replies {
        let s = sent
            .iter()
            .find(|s| s.seq == p.sender_seq)
            .unwrap_or_else(|| panic!("a reply to no packet: {p:?}\n{fields}"));
        let r = rep.replies.iter().find(|r| r.seq == p.sender_seq).unwrap();
        let ctx = format!("sent {s:?}\nreply {p:?}\nstamp-suite {r:?}");
        assert_eq!(p.sender_t, s.t, "T1 echoed: {ctx}");
        assert_eq!((s.ssid, p.ssid), (77, 77), "SSID copied: {ctx}");
        assert_eq!(p.sender_ttl, 255, "the TTL it received: {ctx}");
        assert_eq!(p.seq, p.sender_seq, "a new session counts from 0: {ctx}");
        assert_eq!(s.udp_len, p.udp_len, "symmetrical size: {ctx}");
        assert!(p.t2 <= p.t, "T2 <= T3: {ctx}");
        assert!(same_time(p.t2, ss::ntp_unix_ns(r.t2)), "T2: {ctx}");
        assert!(same_time(p.t, ss::ntp_unix_ns(r.t3)), "T3: {ctx}");
    }
}
