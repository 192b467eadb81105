//! STAMP keyed from IKEv2 (ippm's extension of RFC 7717, docs/stamp.md) across two hosts in
//! two network namespaces: `ippm stamp --ike` on A against the STAMP reflector of `ippm
//! serve` on B (`[stamp] ike = true`), authenticated with no key typed anywhere; a sender
//! without the key is not answered; a rekey and a delete of the IKE SA in the middle of a
//! run leave it without loss (the reflector takes the retired SA's key through its grace
//! period); a new SA keys the next run. `cargo test stamp` selects these (they need root).

use std::process::Stdio;
use std::time::Duration;

mod common;
use common::IPPM;
use common::charon::{NetPair, Side, wait_until};
use common::ike_hosts::{client, config, host, text};

const WAIT: Duration = Duration::from_secs(15);

/// B's reflector: authenticated with keys from IKE, stateful for everyone.
const REFLECTOR: &str = "[stamp]\nlisten = [\"192.0.2.2:862\"]\nike = true\nstateful = true\n";

fn assert_clean(o: &std::process::Output, v: &serde_json::Value, count: u64) {
    assert!(o.status.success(), "{}", text(o));
    assert_eq!(v["mode"], "authenticated", "{}", text(o));
    assert_eq!(v["loss"]["sent"], count, "{}", text(o));
    assert_eq!(v["loss"]["lost"], 0, "{}", text(o));
}

#[test]
fn stamp_keyed_from_ike_sas_across_rekeys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let net = NetPair::new();
    let b = host(
        &net,
        d,
        Side::B,
        &config(d, Side::B, None, false, REFLECTOR),
    );
    let a = host(&net, d, Side::A, &config(d, Side::A, None, false, ""));
    let ctl = a.control.to_str().unwrap().to_owned();
    let base = ["--ike-control", ctl.as_str(), "-c", "20", "-i", "0.01f"];

    // No SA yet: --ike require fails and says so; --ike initiate has A's daemon set one up.
    let (o, _) = client(
        &net,
        Side::A,
        &[&["stamp", "--ike", "require"][..], &base, &["192.0.2.2"]].concat(),
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("no IKE SA"), "{}", text(&o));
    let (o, v) = client(
        &net,
        Side::A,
        &[
            &["stamp", "--ike", "initiate", "--direct-measurement"][..],
            &base,
            &["192.0.2.2"],
        ]
        .concat(),
    );
    if !o.status.success() {
        eprintln!("A:\n{}\nB:\n{}", a.log(), b.log());
    }
    // The run that brings the SA up: its first packet was once lost in CI (the SA's birth at
    // the reflector; not yet explained, see the closing note of issue 13), so at most one
    // here; every later run must lose none.
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(v["mode"], "authenticated", "{}", text(&o));
    assert!(v["loss"]["lost"].as_u64() <= Some(1), "{}", text(&o));
    // The TLVs were protected by the HMAC TLV under the same key, and verified.
    assert_eq!(
        v["tlvs"]["integrity"]["verified"],
        v["loss"]["received"],
        "{}",
        text(&o)
    );
    let first = a.daemon.listed();
    assert_eq!(first.len(), 1);

    // Without the key: unauthenticated packets, or a key of our own, are not answered.
    let (o, _) = client(
        &net,
        Side::A,
        &[
            &["stamp", "--ike", "off", "-c", "5", "-L", "0.5"][..],
            &["192.0.2.2"],
        ]
        .concat(),
    );
    assert!(!o.status.success(), "{}", text(&o));
    let key = d.join("other.key");
    common::ike_hosts::write_secret(&key, &"ab".repeat(32));
    let (o, _) = client(
        &net,
        Side::A,
        &[
            &["stamp", "-A", "A", "--hmac-key-file", key.to_str().unwrap()][..],
            &["-c", "5", "-L", "0.5", "192.0.2.2"],
        ]
        .concat(),
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("no reply"), "{}", text(&o));

    // A long run keyed from the first SA; the SA is rekeyed, then deleted, under it.
    let long = net
        .command(Side::A, IPPM)
        .args([
            "stamp",
            "--ike",
            "require",
            "--ike-control",
            &ctl,
            "-c",
            "300",
            "-i",
            "0.01f",
            "--json",
            "192.0.2.2",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let (ok, out) = a.daemon.ike(&["rekey", "peer"]);
    assert!(ok, "{out}");
    assert!(
        wait_until(
            || {
                let l = a.daemon.listed();
                l.len() == 1 && l != first && b.daemon.listed() == l
            },
            WAIT
        ),
        "rekey: {:?} {:?}",
        a.daemon.listed(),
        b.daemon.listed()
    );
    let second = a.daemon.listed();
    std::thread::sleep(Duration::from_millis(800));
    // A new run now uses the new SA while the long one still uses the old.
    let (o, v) = client(
        &net,
        Side::A,
        &[&["stamp", "--ike", "require"][..], &base, &["192.0.2.2"]].concat(),
    );
    assert_clean(&o, &v, 20);
    let (ok, out) = a.daemon.ike(&["down", "peer"]);
    assert!(ok, "{out}");
    let o = long.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_clean(&o, &v, 300);
    assert_eq!(v["loss"]["received"], 300, "{}", text(&o));

    // Deleted: --ike require fails; --ike initiate brings a third SA, which keys the next.
    let (o, _) = client(
        &net,
        Side::A,
        &[&["stamp", "--ike", "require"][..], &base, &["192.0.2.2"]].concat(),
    );
    assert!(!o.status.success(), "{}", text(&o));
    let (o, v) = client(
        &net,
        Side::A,
        &[&["stamp", "--ike", "initiate"][..], &base, &["192.0.2.2"]].concat(),
    );
    assert_clean(&o, &v, 20);
    let third = a.daemon.listed();
    assert!(third != first && third != second);
    // Nothing logged a key.
    for log in [a.log(), b.log()] {
        assert!(!log.to_lowercase().contains("secret="), "{log}");
    }
}
