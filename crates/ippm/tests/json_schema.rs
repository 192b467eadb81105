//! `--json` is a documented interface: what `ippm twping`, `ippm owping` and `ippm stamp` print
//! validates against the JSON Schemas in docs/schema (with and without per-packet records).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

mod common;
use common::{Daemon, IPPM, free_ports};

fn schema(name: &str) -> jsonschema::Validator {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/schema/").to_owned() + name;
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::draft202012::new(&v).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn run(args: &[&str]) -> serde_json::Value {
    let out = Command::new(IPPM).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check(v: &jsonschema::Validator, doc: &serde_json::Value) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
}

#[test]
fn twping_and_owping_json_follow_their_schemas() {
    let tw = Daemon::start("127.0.0.1:0", &[], None);
    let ow = Daemon::start_owamp("127.0.0.1:0", &[]);
    let tws = schema("twping.schema.json");
    let ows = schema("owping.schema.json");
    // One packet: no two consecutive sequence numbers, so no IPDV (null, which the schema
    // allows).
    let doc = run(&["twping", "-c", "1", "--json", tw.addr.as_str()]);
    assert!(doc["round_trip_ipdv"].is_null(), "{doc}");
    check(&tws, &doc);
    for extra in [&[][..], &["-R"][..]] {
        let doc = run(&[
            &["twping", "-c", "5", "-i", "0.01f", "--json"][..],
            extra,
            &[tw.addr.as_str()],
        ]
        .concat());
        check(&tws, &doc);
        assert_eq!(doc["records"].is_array(), !extra.is_empty());
        let doc = run(&[
            &["owping", "-c", "5", "-i", "0.01f", "--json"][..],
            extra,
            &[ow.addr.as_str()],
        ]
        .concat());
        check(&ows, &doc);
    }
    // One direction only.
    let doc = run(&[
        "owping",
        "-t",
        "-c",
        "3",
        "-i",
        "0.01f",
        "--json",
        ow.addr.as_str(),
    ]);
    check(&ows, &doc);
    assert!(doc.get("from_server").is_none());
    // The schemas are strict: an unknown field is an error.
    let mut doc = run(&[
        "twping",
        "-c",
        "2",
        "-i",
        "0.01f",
        "--json",
        tw.addr.as_str(),
    ]);
    doc["surprise"] = 1.into();
    assert!(!tws.is_valid(&doc));
}

/// Every RFC 8972 TLV `ippm stamp` sends.
const EVERY_TLV: &[&str] = &[
    "--location",
    "--timestamp-info",
    "--cos",
    "46:1",
    "--direct-measurement",
    "--access-report",
    "1:1",
    "--follow-up",
    "-s",
    "100",
];

#[test]
fn stamp_json_follows_its_schema() {
    let ss = schema("stamp.schema.json");
    // The two-way statistics are twping's, defined the same way: the shared definitions and
    // the fields both print are the same text, but for what STAMP may leave null.
    let read = |name: &str| -> serde_json::Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/schema/").to_owned() + name;
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let (st, tw) = (read("stamp.schema.json"), read("twping.schema.json"));
    assert_eq!(st["$defs"], tw["$defs"]);
    for (k, v) in tw["properties"].as_object().unwrap() {
        match k.as_str() {
            "protocol" | "mode" | "sid" | "padding" | "setup_time_ns" | "round_trip_ipdv" => {}
            "loss" => {
                for f in ["sent", "received", "lost", "loss_ratio"] {
                    assert_eq!(
                        st["properties"]["loss"]["properties"][f],
                        v["properties"][f]
                    );
                }
            }
            _ => assert_eq!(&st["properties"][k], v, "{k}"),
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("stamp.key");
    std::fs::write(
        &key,
        "8f0e2a9c4b7d6e5f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081\n",
    )
    .unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let key = key.to_str().unwrap();
    let mut checked = 0;
    for stateful in [true, false] {
        for mode in ["unauthenticated", "authenticated"] {
            let port = free_ports(1);
            let cfg = dir.path().join(format!("{mode}-{stateful}.toml"));
            std::fs::write(
                &cfg,
                format!(
                    "[stamp]\nlisten = [\"127.0.0.1:{port}\"]\nkey_file = \"{key}\"\n\
                     mode = \"{mode}\"\nstateful = {stateful}\n"
                ),
            )
            .unwrap();
            let (_d, listening) = Daemon::start_args(&["--config", cfg.to_str().unwrap()], 1, None);
            assert_eq!(listening[0].0, "stamp");
            let to = listening[0].1.as_str();
            // How the sender keys its packets: authenticated with the key; unauthenticated
            // without one, and with one (an HMAC TLV over the TLVs).
            let keyed = &["-A", "A", "--hmac-key-file", key][..];
            let keys: &[&[&str]] = if mode == "authenticated" {
                &[keyed]
            } else {
                &[&["-A", "O"], &["-A", "O", "--hmac-key-file", key]]
            };
            for &k in keys {
                for tlvs in [&[][..], EVERY_TLV] {
                    for raw in [&[][..], &["-R"][..]] {
                        let what = format!("stateful={stateful} {k:?} {tlvs:?} {raw:?}");
                        let base = ["stamp", "--json", "-c", "5", "-i", "0.005f", "-L", "1"];
                        let doc = run(&[&base[..], k, tlvs, raw, &[to]].concat());
                        check(&ss, &doc);
                        checked += 1;
                        assert_eq!(doc["protocol"], "stamp", "{what}");
                        assert_eq!(doc["mode"], mode, "{what}");
                        assert_eq!(doc["loss"]["sent"], 5, "{what}");
                        assert_eq!(doc["loss"]["received"], 5, "{what}");
                        assert_eq!(doc["records"].is_array(), !raw.is_empty(), "{what}");
                        let t = &doc["tlvs"];
                        let hmac = k.len() == 4 && !tlvs.is_empty();
                        assert_eq!(doc["hmac_tlv"], hmac, "{what}");
                        let sent = doc["tlvs_sent"].as_array().unwrap();
                        if tlvs.is_empty() {
                            assert!(sent.is_empty(), "{what}");
                            assert!(t["location"].is_null() && t["follow_up"].is_null());
                            continue;
                        }
                        assert_eq!(sent.len(), 7 + usize::from(hmac), "{what}");
                        assert_eq!(t["flags"].as_array().unwrap().len(), sent.len());
                        if !hmac {
                            // The reflector has a key and we none: it sets the I flag, and
                            // its answers are not used (null).
                            assert_eq!(t["integrity"]["failed_at_reflector"], 5, "{what}");
                            assert!(t["access_report"].is_null(), "{what}");
                            continue;
                        }
                        assert_eq!(t["integrity"]["verified"], 5, "{what}");
                        assert_eq!(t["access_report"]["id"], "3gpp", "{what}");
                        let (dm, fu) = (&t["direct_measurement"], &t["follow_up"]);
                        assert_eq!(dm["counters_filled"], stateful, "{what}");
                        // A stateless reflector fills neither its counters nor Follow-Up
                        // Telemetry: what would come from them is null.
                        assert_eq!(dm["forward_lost"].is_null(), !stateful, "{what}");
                        assert_eq!(fu["send_delay_ns"].is_null(), !stateful, "{what}");
                        assert_eq!(fu["method"].is_null(), !stateful, "{what}");
                        // The schema is strict, down in the TLV answers too.
                        let mut bad = doc.clone();
                        bad["tlvs"]["direct_measurement"]["surprise"] = 1.into();
                        assert!(!ss.is_valid(&bad), "{what}");
                    }
                }
            }
        }
    }
    assert_eq!(checked, 2 * (2 + 1) * 2 * 2);
    // One packet: no IPDV (no two consecutive sequence numbers), and null is documented.
    let (_d, listening) = {
        let port = free_ports(1);
        let cfg = dir.path().join("one.toml");
        std::fs::write(&cfg, format!("[stamp]\nlisten = [\"127.0.0.1:{port}\"]\n")).unwrap();
        Daemon::start_args(&["--config", cfg.to_str().unwrap()], 1, None)
    };
    let mut doc = run(&["stamp", "--json", "-c", "1", "-L", "1", &listening[0].1]);
    check(&ss, &doc);
    assert!(doc["round_trip_ipdv"].is_null());
    // The schema is strict: an unknown field is an error.
    doc["surprise"] = 1.into();
    assert!(!ss.is_valid(&doc));
}
