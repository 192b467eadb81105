//! `ippm stamp` end to end, against a small Session-Reflector written here with only
//! `std::net::UdpSocket` and ippm-proto's reflector functions (`reflect_layout` + `seal`),
//! independent of the daemon's: both modes, both address families, stateful and stateless,
//! forward and backward loss, every RFC 8972 TLV, wrong keys and key files.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ippm_proto::stamp::{
    Received, ReflectorConfig, ReflectorTlvInputs, StampError, StampKey, reflect_layout, seal,
};
use ippm_proto::wire::stamp::{ReflectorRepr, SenderRepr, StampMode};
use ippm_proto::wire::stamp_tlv::{FollowUpTelemetry, SyncSource, TimestampInfo, TimestampMethod};
use ippm_proto::{ErrorEstimate, Timestamp};
use serde_json::Value;

const IPPM: &str = env!("CARGO_BIN_EXE_ippm");
const KEY_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const OTHER_KEY_HEX: &str = "ffeeddccbbaa99887766554433221100";

fn now() -> Timestamp {
    Timestamp::from_unix(SystemTime::now().duration_since(UNIX_EPOCH).unwrap())
}

/// How the test reflector behaves.
#[derive(Clone)]
struct Behaviour {
    mode: StampMode,
    key: Option<&'static str>,
    /// Numbers its own replies (RFC 8762 §4.3.1), and keeps Follow-Up state.
    stateful: bool,
    /// Reads TLVs (an RFC 8972 reflector); off, copies them.
    extensions: bool,
    /// Sender sequence numbers "lost on the way in": never seen.
    drop_in: &'static [u32],
    /// Reflector sequence numbers "lost on the way back": counted as sent, never sent.
    drop_out: &'static [u32],
    /// Answers authenticated packets whatever their HMAC (a broken reflector), sealed with
    /// its own key.
    unchecked: bool,
}

impl Behaviour {
    fn new(mode: StampMode, stateful: bool) -> Self {
        Self {
            mode,
            key: None,
            stateful,
            extensions: true,
            drop_in: &[],
            drop_out: &[],
            unchecked: false,
        }
    }

    fn key(mut self, k: &'static str) -> Self {
        self.key = Some(k);
        self
    }
}

/// DSCP and ECN the test reflector says our packets arrived with (std cannot read them).
const SEEN_DSCP: u8 = 12;
const SEEN_ECN: u8 = 2;

struct Reflector {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Reflector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Reflector {
    fn start(ip: IpAddr, b: Behaviour) -> Self {
        let sock = UdpSocket::bind((ip, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || serve(&sock, &b, &s));
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

fn serve(sock: &UdpSocket, b: &Behaviour, stop: &AtomicBool) {
    let key = b.key.map(|k| StampKey::from_hex(k).unwrap());
    let cfg = ReflectorConfig {
        mode: b.mode,
        key: key.as_ref(),
        extensions: b.extensions,
        error_estimate: ErrorEstimate::from_duration(false, Duration::from_micros(100)),
    };
    let me = sock.local_addr().unwrap();
    let (mut rx_count, mut tx_count, mut rseq) = (0u32, 0u32, 0u32);
    let mut follow_up: Option<FollowUpTelemetry> = None;
    let mut buf = vec![0u8; 65_536];
    let mut out = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let t2 = now();
        let pkt = &buf[..n];
        let Ok(sender) = SenderRepr::parse_twamp_light(pkt) else {
            continue;
        };
        if b.drop_in.contains(&sender.seq) {
            continue;
        }
        rx_count += 1;
        let inputs = ReflectorTlvInputs {
            dst_port: me.port(),
            src_port: from.port(),
            dst_addr: Some(me.ip()),
            src_addr: Some(from.ip()),
            src_mac: None,
            timestamp_info: Some(TimestampInfo {
                sync_in: SyncSource::NTP,
                method_in: TimestampMethod::SW_LOCAL,
                sync_out: SyncSource::NTP,
                method_out: TimestampMethod::SW_LOCAL,
            }),
            // R_TxC without this reply, as ippm's reflector counts.
            counters: Some((rx_count, tx_count)),
            follow_up,
            permitted_dscp: u64::MAX >> 16,
        };
        let rx = Received {
            packet: pkt,
            receive_time: t2,
            ttl: Some(64),
            dscp: SEEN_DSCP,
            ecn: SEEN_ECN,
        };
        let seq = b.stateful.then_some(rseq);
        let reply = match reflect_layout(&cfg, &rx, seq, &inputs, &mut out) {
            Ok(r) => r.sealing,
            Err(StampError::BadHmac) if b.unchecked => {
                // A reflector that does not check: answers with its own key.
                let s = SenderRepr::parse(pkt, b.mode).unwrap();
                ReflectorRepr {
                    seq: seq.unwrap_or(s.seq),
                    ssid: s.ssid,
                    receive_timestamp: t2,
                    sender_seq: s.seq,
                    sender_timestamp: s.timestamp,
                    sender_error_estimate: s.error_estimate,
                    sender_ttl: 64,
                    ..ReflectorRepr::default()
                }
                .emit(&mut out, b.mode)
                .unwrap();
                ippm_proto::stamp::Sealing {
                    len: b.mode.base_len(),
                    mode: b.mode,
                    hmac_tlv: None,
                }
            }
            Err(_) => continue,
        };
        seal(&mut out, &reply, key.as_ref(), now()).unwrap();
        tx_count += 1;
        let this = seq.unwrap_or(sender.seq);
        if b.stateful {
            rseq += 1;
        }
        if !b.drop_out.contains(&this) {
            let _ = sock.send_to(&out[..reply.len], from);
        }
        follow_up = Some(FollowUpTelemetry {
            seq: this,
            timestamp: now(),
            mode: TimestampMethod::SW_LOCAL,
        });
    }
}

fn ippm(args: &[&str]) -> Output {
    Command::new(IPPM).args(args).output().unwrap()
}

/// `ippm stamp ARGS... ADDR --json`, which must succeed.
fn stamp_json(addr: SocketAddr, args: &[&str]) -> Value {
    let a = addr.to_string();
    let out = ippm(
        &[
            &["stamp", "--json", "-i", "0.002f", "-L", "0.5"][..],
            args,
            &[&a],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn key_file(dir: &tempfile::TempDir, hex: &str, mode: u32) -> String {
    let p = dir.path().join(format!("key-{mode:o}-{}", &hex[..4]));
    std::fs::write(&p, format!("{hex}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p.to_str().unwrap().to_owned()
}

const FAMILIES: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

#[test]
fn stamp_unauthenticated_both_families_every_reply() {
    for ip in FAMILIES {
        let r = Reflector::start(ip, Behaviour::new(StampMode::Unauthenticated, true));
        let v = stamp_json(r.addr, &["-c", "20", "--ssid", "4242", "-R"]);
        assert_eq!(v["protocol"], "stamp");
        assert_eq!(v["mode"], "unauthenticated");
        assert_eq!(v["ssid"], 4242);
        assert_eq!(v["reflector"], r.addr.to_string());
        assert_eq!(v["packet_len"], 44);
        assert_eq!(v["loss"]["sent"], 20);
        assert_eq!(v["loss"]["lost"], 0);
        assert_eq!(v["loss"]["forward_lost"], 0);
        // Nothing lost on the way in: a stateful reflector's numbers equal ours.
        assert_eq!(v["reflector_stateful"], false);
        assert_eq!(v["loss_per_direction_known"], true);
        assert_eq!(v["duplicates"], 0);
        assert_eq!(v["records"].as_array().unwrap().len(), 20);
        assert_eq!(v["records"][0]["sender_ttl"], 64);
        assert!(v["round_trip"]["min_ns"].as_i64().unwrap() > 0);
        assert_eq!(v["tlvs_sent"].as_array().unwrap().len(), 0);
    }
}

#[test]
fn stamp_stateful_reflector_splits_the_loss_per_direction() {
    let b = Behaviour {
        drop_in: &[3, 7],
        drop_out: &[10],
        ..Behaviour::new(StampMode::Unauthenticated, true)
    };
    let r = Reflector::start(Ipv4Addr::LOCALHOST.into(), b);
    let v = stamp_json(r.addr, &["-c", "20", "--direct-measurement"]);
    let l = &v["loss"];
    assert_eq!(
        (l["sent"].as_u64(), l["lost"].as_u64()),
        (Some(20), Some(3))
    );
    assert_eq!(v["reflector_stateful"], true);
    assert_eq!(v["loss_per_direction_known"], true);
    assert_eq!(l["forward_lost"], 2);
    assert_eq!(l["backward_lost"], 1);
    // The counters say the same: the last reply carries S_TxC 20, R_RxC 18, R_TxC 17 (the
    // replies before it), and 17 replies had come back, it included.
    let dm = &v["tlvs"]["direct_measurement"];
    assert_eq!(dm["s_txc"], 20);
    assert_eq!(dm["r_rxc"], 18);
    assert_eq!(dm["r_txc"], 17);
    assert_eq!(dm["received"], 17);
    assert_eq!(dm["forward_lost"], 2);
    assert_eq!(dm["backward_lost"], 1);
    assert_eq!(dm["counters_filled"], true);
}

#[test]
fn stamp_stateless_reflector_leaves_the_split_unknown() {
    let b = Behaviour {
        drop_in: &[5],
        ..Behaviour::new(StampMode::Unauthenticated, false)
    };
    let r = Reflector::start(Ipv6Addr::LOCALHOST.into(), b);
    let v = stamp_json(r.addr, &["-c", "12", "--follow-up"]);
    assert_eq!(v["loss"]["lost"], 1);
    assert_eq!(v["reflector_stateful"], false);
    assert_eq!(v["loss_per_direction_known"], false);
    assert!(v["loss"]["forward_lost"].is_null() && v["loss"]["backward_lost"].is_null());
    // RFC 8972 §4.7: a stateless reflector zeroes Follow-Up Telemetry.
    assert_eq!(v["tlvs"]["follow_up"]["reported"], 0);
    let a = r.addr.to_string();
    let out = ippm(&["stamp", "-c", "6", "-i", "0.002f", "-L", "0.5", &a]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--- ippm stamp statistics"), "{text}");
    assert!(text.contains("6 sent, 1 lost"), "{text}");
    assert!(
        text.contains("stateless reflector: loss per direction unknown"),
        "{text}"
    );
    assert!(text.contains("round-trip time min/median/max"), "{text}");
    assert!(text.contains("(clocks unsynchronized)"), "{text}");
}

#[test]
fn stamp_authenticated_both_families() {
    let dir = tempfile::tempdir().unwrap();
    let kf = key_file(&dir, KEY_HEX, 0o600);
    for ip in FAMILIES {
        let b = Behaviour::new(StampMode::Authenticated, true).key(KEY_HEX);
        let r = Reflector::start(ip, b);
        let v = stamp_json(
            r.addr,
            &[
                "-c",
                "10",
                "-A",
                "A",
                "--hmac-key-file",
                &kf,
                "--location",
                "-s",
                "32",
            ],
        );
        assert_eq!(v["mode"], "authenticated");
        assert_eq!(v["loss"]["lost"], 0);
        // 112 + Location 60 + HMAC TLV 20 + Extra Padding 36.
        assert_eq!(v["packet_len"], 228);
        assert_eq!(v["hmac_tlv"], true);
        assert_eq!(
            v["tlvs_sent"],
            serde_json::json!(["location", "hmac", "extra-padding"])
        );
        assert_eq!(v["tlvs"]["integrity"]["verified"], 10);
        let loc = &v["tlvs"]["location"];
        assert_eq!(loc["dst_port"], r.addr.port());
        assert_eq!(loc["dst_addr"], ip.to_string());
        assert_eq!(loc["src_addr"], ip.to_string());
        let local: SocketAddr = v["local"].as_str().unwrap().parse().unwrap();
        assert_eq!(loc["src_port"], local.port());
        assert_eq!(v["bad_replies"]["bad_hmac"], 0);
    }
}

#[test]
fn stamp_wrong_key_gets_no_accepted_reply_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let kf = key_file(&dir, KEY_HEX, 0o600);
    let args = |a: &str| -> Vec<String> {
        [
            "stamp",
            "-c",
            "5",
            "-i",
            "0.002f",
            "-L",
            "0.3",
            "-A",
            "A",
            "--hmac-key-file",
            &kf,
            a,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    // A reflector that checks: it drops every packet.
    let b = Behaviour::new(StampMode::Authenticated, true).key(OTHER_KEY_HEX);
    let r = Reflector::start(Ipv4Addr::LOCALHOST.into(), b);
    let out = Command::new(IPPM)
        .args(args(&r.addr.to_string()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "no reply from {}: is a STAMP reflector listening there?",
            r.addr
        )),
        "{err}"
    );
    // One that answers anyway, with its own key: every reply fails our check.
    let b = Behaviour {
        unchecked: true,
        ..Behaviour::new(StampMode::Authenticated, true).key(OTHER_KEY_HEX)
    };
    let r = Reflector::start(Ipv4Addr::LOCALHOST.into(), b);
    let out = Command::new(IPPM)
        .args(args(&r.addr.to_string()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no reply from") && err.contains("5 replies failed their HMAC check"),
        "{err}"
    );
}

#[test]
fn stamp_tlv_integrity_failure_at_the_reflector_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let kf = key_file(&dir, KEY_HEX, 0o600);
    let b = Behaviour::new(StampMode::Unauthenticated, true).key(OTHER_KEY_HEX);
    let r = Reflector::start(Ipv4Addr::LOCALHOST.into(), b);
    let v = stamp_json(
        r.addr,
        &["-c", "8", "--hmac-key-file", &kf, "--direct-measurement"],
    );
    assert_eq!(v["loss"]["lost"], 0);
    assert_eq!(v["hmac_tlv"], true);
    assert_eq!(v["tlvs"]["integrity"]["failed_at_reflector"], 8);
    assert_eq!(v["tlvs"]["flags"][0]["tlv"], "direct-measurement");
    assert_eq!(v["tlvs"]["flags"][0]["integrity_failed"], 8);
    assert!(v["tlvs"]["direct_measurement"].is_null());
    let a = r.addr.to_string();
    let out = ippm(&[
        "stamp",
        "-c",
        "3",
        "-i",
        "0.002f",
        "--hmac-key-file",
        &kf,
        "--direct-measurement",
        &a,
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("I flag in 3 replies: the reflector could not verify our TLVs"),
        "{text}"
    );
}

#[test]
fn stamp_every_tlv_answered() {
    let r = Reflector::start(
        Ipv4Addr::LOCALHOST.into(),
        Behaviour::new(StampMode::Unauthenticated, true),
    );
    let v = stamp_json(
        r.addr,
        &[
            "-c",
            "10",
            "--location",
            "--timestamp-info",
            "--cos",
            "46:1",
            "--direct-measurement",
            "--access-report",
            "3gpp:1",
            "--follow-up",
            "-s",
            "100",
        ],
    );
    assert_eq!(v["loss"]["lost"], 0);
    // 44 + Location 60 + Timestamp Info 8 + CoS 8 + DM 16 + Access Report 8 + Follow-Up 20
    // + Extra Padding 104; no key, no HMAC TLV.
    assert_eq!(v["packet_len"], 268);
    assert_eq!(v["hmac_tlv"], false);
    let t = &v["tlvs"];
    assert_eq!(t["replies_with_tlvs"], 10);
    for f in t["flags"].as_array().unwrap() {
        assert_eq!(f["answered"], 10, "{f}");
    }
    assert_eq!(t["flags"].as_array().unwrap().len(), 7);
    assert_eq!(t["integrity"]["unprotected"], 10);
    assert_eq!(t["location"]["dst_port"], r.addr.port());
    assert_eq!(t["location_changes"], 0);
    assert_eq!(t["timestamp_info"]["sync_in"], "ntp");
    assert_eq!(t["timestamp_info"]["method_out"], "sw-local");
    let cos = &t["class_of_service"];
    assert_eq!(cos["requested_dscp"], 46);
    assert_eq!(cos["accepted"], 10);
    assert_eq!(cos["refused"], 0);
    assert_eq!(
        cos["received_at_reflector"],
        serde_json::json!([{"dscp": SEEN_DSCP, "ecn": SEEN_ECN, "replies": 10}])
    );
    // The test reflector cannot set a reply's DSCP (std sockets): they arrive with 0.
    assert_eq!(
        cos["replies_arrived_with"],
        serde_json::json!([{"dscp": 0, "ecn": 0, "replies": 10}])
    );
    assert_eq!(t["direct_measurement"]["s_txc"], 10);
    assert_eq!(t["direct_measurement"]["forward_lost"], 0);
    let a = &t["access_report"];
    assert_eq!(
        (a["id"].as_str(), a["return_code"].as_u64()),
        (Some("3gpp"), Some(1))
    );
    assert_eq!(a["acknowledged"], 10);
    // Each reply but the first reports the real send time of the one before.
    let f = &t["follow_up"];
    assert_eq!(f["reported"], 9);
    assert_eq!(f["matched"], 9);
    assert_eq!(f["method"], "sw-local");
    assert!(f["send_delay_ns"][0].as_f64().unwrap() >= 0.0);
    assert!(f["corrected_round_trip_ns"][2].as_f64().unwrap() > 0.0);
}

#[test]
fn stamp_text_report_plot_and_a_reflector_without_tlvs() {
    let b = Behaviour {
        extensions: false,
        ..Behaviour::new(StampMode::Unauthenticated, false)
    };
    let r = Reflector::start(Ipv4Addr::LOCALHOST.into(), b);
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("stamp.svg");
    let a = r.addr.to_string();
    let out = ippm(&[
        "stamp",
        "-c",
        "5",
        "-i",
        "0.002f",
        "--location",
        "--ssid",
        "7",
        "--plot",
        svg.to_str().unwrap(),
        &a,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "mode:\tunauthenticated (RFC 8762), SSID 7",
        "TLVs: location",
        "5 sent, 0 lost",
        "location: answered in 0, U (not understood) in 5",
        "send hops = ",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.contains("STAMP delay, unauthenticated"), "{plot}");
}

#[test]
fn stamp_key_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let kf = key_file(&dir, KEY_HEX, 0o644);
    let out = ippm(&["stamp", "-A", "A", "--hmac-key-file", &kf, "127.0.0.1:9"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mode 644") && err.contains("chmod 600"),
        "{err}"
    );
}

#[test]
fn stamp_input_errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, "nothexxx").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    let bad = bad.to_str().unwrap();
    for (args, want) in [
        (&["-c", "0"][..], "at least one packet: give -c 1 or more"),
        (&["-A", "A"][..], "needs the HMAC key: --hmac-key-file FILE"),
        (&["-A", "E"][..], "O (unauthenticated) or A (authenticated)"),
        (&["-s", "70000"][..], "room for at most 65459 octets"),
        (&["-s", "65459", "--location"][..], "use a smaller -s"),
        (&["--cos", "64"][..], "DSCP 0-63"),
        (
            &["--access-report", "5:1"][..],
            "ID 1 (3gpp) or 2 (non-3gpp)",
        ),
        (&["--hmac-key-file", bad][..], "not hex"),
        (&["--plot", "x.pdf"][..], ".svg or .png"),
    ] {
        let out = ippm(&[&["stamp"][..], args, &["127.0.0.1:9"]].concat());
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// `ippm serve` with only a STAMP reflector on `listen` (port 0: any) and `extra`.
struct Serve {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Serve {
    fn start(listen: &str, extra: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(IPPM)
            .args(["serve", "--stamp-listen", listen])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening stamp ")
            .unwrap_or_else(|| panic!("{line:?}"))
            .parse()
            .unwrap();
        Self { child, addr }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn stamp_against_the_ippm_serve_reflector() {
    // Stateful for every sender (by default only for configured peers), so the counters and
    // Follow-Up Telemetry are the session's.
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("ippm.toml");
    std::fs::write(&cfg, "[stamp]\nstateful = true\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    let s = Serve::start("127.0.0.1:0", &["--config", cfg]);
    let v = stamp_json(
        s.addr,
        &[
            "-c",
            "10",
            "--location",
            "--timestamp-info",
            "--cos",
            "46",
            "--direct-measurement",
            "--access-report",
            "non-3gpp:2",
            "--follow-up",
        ],
    );
    assert_eq!(v["loss"]["lost"], 0);
    let t = &v["tlvs"];
    for f in t["flags"].as_array().unwrap() {
        assert_eq!(f["answered"], 10, "{f}");
    }
    assert_eq!(t["location"]["dst_port"], s.addr.port());
    let dm = &t["direct_measurement"];
    assert_eq!(
        (dm["s_txc"].as_u64(), dm["r_rxc"].as_u64()),
        (Some(10), Some(10))
    );
    assert_eq!(
        (dm["forward_lost"].as_u64(), dm["backward_lost"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(t["access_report"]["id"], "non-3gpp");
    assert_eq!(t["class_of_service"]["accepted"], 10);
    // The reflector sent its replies with DSCP1, and the kernel says they came so.
    assert_eq!(
        t["class_of_service"]["replies_arrived_with"],
        serde_json::json!([{"dscp": 46, "ecn": 0, "replies": 10}])
    );
    // The first reply after transmit stamps start has nothing to report, and a stamp the
    // kernel has not handed over when the next request is answered gives zeros too (RFC 8972
    // §4.7 allows it): most, not all, of the later replies report.
    let reported = t["follow_up"]["reported"].as_u64().unwrap();
    assert!((7..=9).contains(&reported), "{reported}");
    drop(s);

    let dir = tempfile::tempdir().unwrap();
    let kf = key_file(&dir, KEY_HEX, 0o600);
    let s = Serve::start("[::1]:0", &["--stamp-key-file", &kf]);
    let v = stamp_json(
        s.addr,
        &[
            "-c",
            "5",
            "-A",
            "A",
            "--hmac-key-file",
            &kf,
            "--direct-measurement",
        ],
    );
    assert_eq!(v["mode"], "authenticated");
    assert_eq!(v["loss"]["lost"], 0);
    assert_eq!(v["tlvs"]["integrity"]["verified"], 5);
}
