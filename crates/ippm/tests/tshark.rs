//! Wireshark's dissectors (tshark, Debian's package) on captured ippm TWAMP traffic: every
//! TWAMP-Control message of an open-mode exchange and every TWAMP-Test packet, in open and
//! authenticated mode, dissects with no malformed packet and no expert warning. (Wireshark
//! cannot decrypt the control stream of the protected modes; perfSONAR's own captures show as
//! malformed there too, so those are checked for the test packets only.)
//! STAMP's captures are in stamp_interop.rs; the capture helpers in common/capture.rs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

mod common;
use common::IPPM;
use common::capture::{Capture, malformed, tshark};
use common::proc::Guarded;

#[test]
fn tshark_dissects_ippm_twamp() {
    let dir = tempfile::tempdir().unwrap();
    let keys = common::keyfile(dir.path());
    let base = 20_000 + (std::process::id() % 2000) as u16 * 10;
    let (srv_ports, cli_ports) = (
        format!("{}-{}", base, base + 4),
        format!("{}-{}", base + 5, base + 9),
    );
    let serve = common::Daemon::start(
        "127.0.0.1:0",
        &["--keys", keys.to_str().unwrap(), "--test-ports", &srv_ports],
        None,
    );
    let addr = serve.addr.clone();
    let port = addr.rsplit(':').next().unwrap().to_owned();

    let pcap = dir.path().join("ippm.pcapng");
    let filter = format!("tcp port {port} or udp portrange {}-{}", base, base + 9);
    let cap = Capture::start(&filter, &pcap);
    for mode in ["O", "A"] {
        let out = Command::new(IPPM)
            .args([
                "twping", &addr, "-c", "5", "-i", "0.01f", "-L", "1", "-A", mode,
            ])
            .args([
                "-u",
                "alice",
                "-k",
                keys.to_str().unwrap(),
                "-P",
                &cli_ports,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pcap = cap.stop();

    let decode = [
        "-d",
        &format!("tcp.port=={port},twamp.control"),
        "-d",
        &format!("udp.port=={}-{},twamp.test", base, base + 9),
    ];
    let r = pcap.to_str().unwrap();
    let summary = tshark(&[&["-r", r][..], &decode[..]].concat());
    let count = |what: &str| summary.lines().filter(|l| l.contains(what)).count();
    // Two control connections (the open one's messages all readable) and 2 x 10 test packets.
    assert_eq!(count("TWAMP-Test"), 20, "{summary}");
    for msg in [
        "Server Greeting",
        "Setup Response",
        "Server Start",
        "Request Session",
        "Accept Session",
        "Start Sessions",
        "Start Sessions ACK",
        "Stop Session",
    ] {
        assert!(count(msg) >= 1, "no {msg} in:\n{summary}");
    }
    // The open exchange and all test packets: nothing malformed, no TWAMP expert warnings
    // (TCP's own analysis, e.g. a duplicate ACK on loopback, is not ours to judge).
    let open_stream = "tcp.stream == 0";
    let bad = tshark(&[
        &["-r", r][..],
        &decode[..],
        &["-Y", &format!("(twamp.test || (twamp.control && {open_stream})) && (_ws.malformed || _ws.expert.severity >= warning)")][..],
    ]
    .concat());
    assert!(bad.trim().is_empty(), "malformed or warned:\n{bad}");
}

#[test]
fn tshark_dissects_ippm_owamp_test_packets() {
    let base = 30_000 + (std::process::id() % 2000) as u16 * 10;
    let ports = format!("{}-{}", base, base + 9);
    let dir = tempfile::tempdir().unwrap();
    let serve = Command::new(IPPM)
        .args([
            "serve",
            "--owamp-listen",
            "127.0.0.1:0",
            "--test-ports",
            &ports,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut serve = Guarded(serve);
    let mut line = String::new();
    BufReader::new(serve.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening owamp ")
        .unwrap()
        .to_owned();
    let pcap = dir.path().join("owamp.pcapng");
    let filter = format!("udp portrange {}-{}", base, base + 9);
    let cap = Capture::start(&filter, &pcap);
    let out = Command::new(IPPM)
        .args([
            "owping", &addr, "-c", "5", "-i", "0.01f", "-L", "0.5", "-P", &ports,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pcap = cap.stop();
    let r = pcap.to_str().unwrap();
    let decode = format!("udp.port=={}-{},owamp.test", base, base + 9);
    let summary = tshark(&["-r", r, "-d", &decode]);
    assert_eq!(
        summary.lines().filter(|l| l.contains("OWAMP")).count(),
        10,
        "{summary}"
    );
    let bad = malformed(r, &decode);
    assert!(bad.trim().is_empty(), "malformed or warned:\n{bad}");
}
