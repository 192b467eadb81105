//! `ippm stamp` against `ippm serve`'s reflector in every mode: unauthenticated and
//! authenticated, stateful and stateless, IPv4 and IPv6, with every RFC 8972 TLV, each
//! answer checked from the sender's side (what the reflector wrote in it) and the
//! reflector's (its metrics). `cargo test stamp` selects this.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use serde_json::Value;

mod common;
use common::{Daemon, IPPM, free_ports, scrape, series};

const KEY: &str = "8f0e2a9c4b7d6e5f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081";
const N: u64 = 30;

fn run_stamp(to: &str, extra: &[&str]) -> Value {
    let out = Command::new(IPPM)
        .args([
            "stamp",
            "--json",
            "-c",
            &N.to_string(),
            "-i",
            "0.005f",
            "-L",
            "1",
        ])
        .args([
            "--location",
            "--timestamp-info",
            "--cos",
            "46:1",
            "--direct-measurement",
            "--access-report",
            "non-3gpp:1",
            "--follow-up",
            "-s",
            "100",
        ])
        .args(extra)
        .arg(to)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn stamp_every_mode_family_and_reflection_with_every_tlv() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("stamp.key");
    std::fs::write(&key, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let key = key.to_str().unwrap();
    for stateful in [true, false] {
        for authenticated in [false, true] {
            let port = free_ports(1);
            let metrics = format!("127.0.0.1:{}", free_ports(1));
            let cfg = dir.path().join("ippm.toml");
            let mode = if authenticated {
                "authenticated"
            } else {
                "unauthenticated"
            };
            std::fs::write(
                &cfg,
                format!(
                    "[stamp]\nlisten = [\"127.0.0.1:{port}\", \"[::1]:{port}\"]\n\
                     key_file = \"{key}\"\nmode = \"{mode}\"\nstateful = {stateful}\n\
                     permitted_dscp = [0, 46]\n"
                ),
            )
            .unwrap();
            let (mut d, _) = Daemon::start_args(
                &[
                    "--config",
                    cfg.to_str().unwrap(),
                    "--metrics-listen",
                    &metrics,
                ],
                2,
                None,
            );
            let before = series(&scrape(&metrics), "ippm_stamp_reflected_total");
            for to in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
                let what = format!("{mode} stateful={stateful} {to}");
                let a = if authenticated { "A" } else { "O" };
                let v = run_stamp(&to, &["-A", a, "--hmac-key-file", key]);
                assert_eq!(v["mode"], mode, "{what}");
                let l = &v["loss"];
                assert_eq!(
                    (l["sent"].as_u64(), l["lost"].as_u64()),
                    (Some(N), Some(0)),
                    "{what}"
                );
                // 44 or 112 octets, an Extra Padding of 100 and the six TLVs, and the HMAC TLV.
                let base = if authenticated { 112 } else { 44 };
                assert!(v["packet_len"].as_u64().unwrap() > base + 104, "{what}");
                let t = &v["tlvs"];
                for f in t["flags"].as_array().unwrap() {
                    assert_eq!(f["answered"], N, "{what}: {f}");
                    assert_eq!(f["unrecognized"], 0, "{what}: {f}");
                    assert_eq!(f["malformed"], 0, "{what}: {f}");
                }
                // The HMAC TLV protected them both ways.
                assert_eq!(t["integrity"]["verified"], N, "{what}");
                // Location: the reflector saw our port and its own.
                assert_eq!(
                    t["location"]["dst_port"].as_u64(),
                    Some(u64::from(port)),
                    "{what}"
                );
                let local: std::net::SocketAddr = v["local"].as_str().unwrap().parse().unwrap();
                assert_eq!(
                    t["location"]["src_port"].as_u64(),
                    Some(u64::from(local.port())),
                    "{what}"
                );
                assert_eq!(t["timestamp_info"]["method_in"], "sw-local", "{what}");
                // CoS: DSCP 46 permitted, applied to the replies; ECN 1 seen at the reflector.
                let c = &t["class_of_service"];
                assert_eq!(c["accepted"], N, "{what}");
                assert_eq!(c["replies_arrived_with"][0]["dscp"], 46, "{what}");
                assert_eq!(c["received_at_reflector"][0]["ecn"], 1, "{what}");
                assert_eq!(t["access_report"]["acknowledged"], N, "{what}");
                let dm = &t["direct_measurement"];
                let fu = &t["follow_up"];
                if stateful {
                    // The session's counters and its own sequence numbers: the loss split
                    // per direction is known; Follow-Up Telemetry from the kernel's stamps.
                    assert_eq!(dm["r_rxc"], N, "{what}");
                    assert_eq!(dm["forward_lost"], 0, "{what}");
                    // All but the first, less one whose stamp was not in yet (zeros, as RFC
                    // 8972 §4.7 allows) now and then.
                    let reported = fu["reported"].as_u64().unwrap();
                    assert!((N - 3..N).contains(&reported), "{what}: {fu}");
                    // min, mean, max of the kernel transmit stamp less T3: never before T3.
                    assert!(fu["send_delay_ns"][0].as_f64() >= Some(0.0), "{what}: {fu}");
                } else {
                    // Stateless: no counters, zeros in Follow-Up; and nothing claimed.
                    assert_eq!(dm["counters_filled"], false, "{what}");
                    assert!(dm["forward_lost"].is_null(), "{what}");
                    assert_eq!(fu["reported"], 0, "{what}");
                }
            }
            let after = scrape(&metrics);
            assert_eq!(
                series(&after, "ippm_stamp_reflected_total") - before,
                (2 * N) as f64,
                "{mode} stateful={stateful}"
            );
            let held = series(&after, "ippm_stamp_sessions");
            assert_eq!(held, if stateful { 2.0 } else { 0.0 });
            d.terminate(std::time::Duration::from_secs(5));
        }
    }
}
