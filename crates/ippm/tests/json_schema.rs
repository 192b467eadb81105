//! `--json` is a documented interface: what `ippm twping` and `ippm owping` print validates
//! against the JSON Schemas in docs/schema (with and without per-packet records).

use std::process::Command;

mod common;
use common::{Daemon, IPPM};

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
