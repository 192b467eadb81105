//! RFC 7717 end to end: O/TWAMP keyed from IKEv2 SAs, across two hosts (two network
//! namespaces). `cargo test rfc7717` selects these; they need root and the packages of
//! `common::charon::PACKAGES` (and tshark for the capture).
//!
//! - Two `ippm serve` hosts, each with its own certificate from one CA and no passphrase:
//!   TWAMP (authenticated, encrypted, mixed) and OWAMP (authenticated, encrypted) from A to B
//!   with zero loss, keyed from the IKE SA; the capture shows the IKEv2-derived mode bit and
//!   the SPIs in KeyID.
//! - strongSwan on A initiates the IKE SA to ippm on B; `ippm twping` on A is handed the SPIs
//!   and prf(SK_d, "IPPM") computed from charon's SK_d; unknown SPIs get Accept = 6.
//! - A rekey and a delete of the IKE SA in the middle of long sessions leave them running.
//! - Legacy interop both ways; and no interface of the daemon yields an IKE key.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

mod common;
use common::IPPM;
use common::charon::{
    Charon, CharonConfig, KeyType, NetPair, PSK, Pki, Role, Side, unhex, wait_until,
};
use common::ike_hosts::{Host, client, config, host, ping, text, write_secret};

const WAIT: Duration = Duration::from_secs(15);

fn assert_twamp_clean(o: &Output, v: &serde_json::Value, mode: &str, count: u64) {
    assert!(o.status.success(), "{}", text(o));
    assert_eq!(v["mode"], mode, "{}", text(o));
    assert_eq!(v["loss"]["sent"], count, "{}", text(o));
    assert_eq!(v["loss"]["lost"], 0, "{}", text(o));
}

fn assert_owamp_clean(o: &Output, v: &serde_json::Value, mode: &str, count: u64) {
    assert!(o.status.success(), "{}", text(o));
    assert_eq!(v["mode"], mode, "{}", text(o));
    for dir in ["to_server", "from_server"] {
        assert_eq!(v[dir]["loss"]["sent"], count, "{dir}: {}", text(o));
        assert_eq!(v[dir]["loss"]["lost"], 0, "{dir}: {}", text(o));
    }
}

/// A packet capture in one side's namespace (dumpcap), stopped by its PID.
struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    fn start(net: &NetPair, side: Side, file: &Path) -> Self {
        let child = net
            .command(side, "dumpcap")
            .args([
                "-q",
                "-i",
                "any",
                "-f",
                "tcp port 861 or tcp port 862",
                "-w",
            ])
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dumpcap (Debian package tshark)");
        assert!(wait_until(|| file.exists(), WAIT), "dumpcap did not start");
        std::thread::sleep(Duration::from_millis(300));
        Self {
            child,
            file: file.to_owned(),
        }
    }

    /// Stops the capture (SIGTERM to its PID); the file.
    fn stop(mut self) -> PathBuf {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        std::thread::sleep(Duration::from_millis(300));
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
        self.file.clone()
    }
}

/// The TCP payloads of a capture sent to `port`, in order.
fn payloads_to(file: &Path, port: u16) -> Vec<Vec<u8>> {
    {
        let out = Command::new("tshark")
            .args(["-r"])
            .arg(file)
            .args([
                "-Y",
                &format!("tcp.dstport == {port} && tcp.len > 0"),
                "-T",
                "fields",
                "-e",
                "tcp.payload",
            ])
            .output()
            .expect("tshark");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| unhex(&l.replace(':', "")))
            .collect()
    }
}

/// The Mode of each 164-octet Set-Up-Response whose KeyID is `key_id`.
fn setups(payloads: &[Vec<u8>], key_id: &[u8]) -> Vec<u32> {
    payloads
        .iter()
        .filter(|p| p.len() == 164 && p[4..84] == *key_id)
        .map(|p| u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
        .collect()
}

impl Drop for Capture {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The established SA (SPIi, SPIr) A's daemon lists.
fn only_sa(h: &Host) -> (String, String) {
    let l = h.daemon.listed();
    assert_eq!(l.len(), 1, "{l:?}");
    l[0].clone()
}

#[test]
fn rfc7717_two_ippm_hosts_with_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let net = NetPair::new();
    let pki = Pki::generate(d, KeyType::Ecdsa);
    let b = host(&net, d, Side::B, &config(d, Side::B, Some(&pki), false, ""));
    let a = host(&net, d, Side::A, &config(d, Side::A, Some(&pki), false, ""));
    let cap = Capture::start(&net, Side::B, &d.join("b.pcapng"));
    let ctl = a.control.to_str().unwrap().to_owned();
    let base = ["--ike-control", ctl.as_str(), "-c", "20", "-i", "0.01f"];

    // No SA yet: --ike require fails clearly; --ike initiate has A's daemon set one up.
    let (o, _) = client(
        &net,
        Side::A,
        &[&["twping", "--ike", "require"][..], &base, &["192.0.2.2"]].concat(),
    );
    assert!(
        !o.status.success() && text(&o).contains("no IKE SA with 192.0.2.2"),
        "{}\n{}",
        text(&o),
        a.log()
    );
    let (o, v) = client(
        &net,
        Side::A,
        &[
            &["twping", "--ike", "initiate", "-A", "A"][..],
            &base,
            &["192.0.2.2"],
        ]
        .concat(),
    );
    if !o.status.success() {
        eprintln!("A:\n{}\nB:\n{}", a.log(), b.log());
    }
    assert_twamp_clean(&o, &v, "authenticated", 20);
    let spis = only_sa(&a);
    assert_eq!(b.daemon.listed(), vec![spis.clone()]);

    for mode in [("E", "encrypted"), ("M", "mixed")] {
        let (o, v) = client(
            &net,
            Side::A,
            &[
                &["twping", "--ike", "require", "-A", mode.0][..],
                &base,
                &["192.0.2.2"],
            ]
            .concat(),
        );
        assert_twamp_clean(&o, &v, mode.1, 20);
    }
    for mode in [("A", "authenticated"), ("E", "encrypted")] {
        let (o, v) = client(
            &net,
            Side::A,
            &[
                &["owping", "--ike", "require", "-A", mode.0][..],
                &base,
                &["192.0.2.2"],
            ]
            .concat(),
        );
        assert_owamp_clean(&o, &v, mode.1, 20);
    }
    // The default (--ike fallback) uses the SA too: there is no passphrase anywhere.
    let (o, v) = client(
        &net,
        Side::A,
        &[&["twping", "-A", "E"][..], &base, &["192.0.2.2"]].concat(),
    );
    assert_twamp_clean(&o, &v, "encrypted", 20);

    // On the wire: Set-Up-Responses (164 octets) carry the IKEv2-derived bit with the security
    // mode, and SPIi|SPIr|zeros as KeyID.
    let key_id: Vec<u8> = [unhex(&spis.0), unhex(&spis.1), vec![0; 64]].concat();
    let file = cap.stop();
    let payloads_862 = payloads_to(&file, 862);
    let payloads_861 = payloads_to(&file, 861);
    let modes_862 = setups(&payloads_862, &key_id);
    let modes_861 = setups(&payloads_861, &key_id);
    // TWAMP: authenticated, encrypted, mixed (each with 0x80, and the RFC 5938/6038 bits
    // clear as twping asked none), encrypted again; OWAMP: authenticated, encrypted (0x10).
    assert_eq!(
        modes_862,
        vec![0x82, 0x84, 0x88, 0x84],
        "{payloads_862:02x?}"
    );
    assert_eq!(modes_861, vec![0x12, 0x14]);
}

/// charon on A sets up the IKE SA with ippm on B; `ippm twping` on A gets the SPIs and the
/// secret computed from charon's SK_d; B finds the SA by its SPIs. Unknown SPIs: Accept = 6.
/// And nothing the daemon says (socket answers, `ippm ike list`, logs, errors) holds an IKE key.
#[test]
fn rfc7717_strongswan_keys_a_twping_to_ippm() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let net = NetPair::new();
    let b = host(&net, d, Side::B, &config(d, Side::B, None, false, ""));
    let charon = Charon::start(&net, Side::A, CharonConfig::new(None, Role::Initiator));
    charon.initiate("psk");
    let sas = charon.list_sas();
    assert_eq!(sas.len(), 1, "{}", charon.log_summary());
    let (spi_i, spi_r) = (sas[0].spi_i.clone(), sas[0].spi_r.clone());
    assert!(wait_until(
        || b.daemon.listed() == vec![(spi_i.clone(), spi_r.clone())],
        WAIT
    ));
    let keys = charon
        .keys()
        .into_iter()
        .find(|k| k.spi_i == spi_i && k.spi_r == spi_r)
        .expect("charon logged the SA's keys");
    let secret = d.join("ippm.secret");
    write_secret(&secret, &format!("{}\n", keys.ippm_secret));
    let spis = format!("{spi_i}:{spi_r}");
    let sec = secret.to_str().unwrap();
    let run = |spis: &str, mode: &str| {
        ping(
            &net,
            &format!(
                "twping --ike-spi {spis} --ike-secret-file {sec} -A {mode} -c 20 -i 0.01f 192.0.2.2"
            ),
        )
    };
    let mut said = Vec::new();
    for (m, name) in [("A", "authenticated"), ("E", "encrypted")] {
        let (o, v) = run(&spis, m);
        assert_twamp_clean(&o, &v, name, 20);
        said.push(text(&o));
    }
    let (o, v) = ping(
        &net,
        &format!("owping --ike-spi {spis} --ike-secret-file {sec} -A A -c 20 -i 0.01f 192.0.2.2"),
    );
    assert_owamp_clean(&o, &v, "authenticated", 20);
    said.push(text(&o));

    // SPIs B does not know: Accept = 6 for the client, a log line with the SPIs at B.
    let (o, _) = run("0102030405060708:1112131415161718", "A");
    assert!(!o.status.success(), "{}", text(&o));
    let err = text(&o);
    assert!(
        err.contains("6") && err.to_lowercase().contains("ike"),
        "{err}"
    );
    said.push(err);
    assert!(
        wait_until(
            || b.log().contains("0102030405060708_i 1112131415161718_r"),
            WAIT
        ),
        "{}",
        b.log()
    );

    // The right SPIs and secret from the wrong host (another address of A's, which the SA
    // is not with): Accept = 6, and B's log names the SPIs, the peer and the SA's peer.
    let ns = net.ns(Side::A).to_owned();
    let ip_a = |args: &[&str]| {
        let o = Command::new("ip")
            .args(["-n", &ns])
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let shown = ip_a(&["-o", "-4", "addr", "show", "to", "192.0.2.1/32"]);
    let dev = shown
        .split_whitespace()
        .nth(1)
        .expect("A's interface")
        .to_owned();
    ip_a(&["addr", "add", "192.0.2.3/32", "dev", &dev]);
    ip_a(&[
        "route",
        "replace",
        "192.0.2.2/32",
        "dev",
        &dev,
        "src",
        "192.0.2.3",
    ]);
    let (o, _) = run(&spis, "A");
    let err = text(&o);
    assert!(!o.status.success() && err.contains('6'), "{err}");
    said.push(err);
    assert!(
        wait_until(
            || b.log().lines().any(|l| l.contains("with another host")
                && l.contains("peer=192.0.2.3")
                && l.contains("sa_peer=192.0.2.1")),
            WAIT
        ),
        "{}",
        b.log()
    );
    ip_a(&["route", "del", "192.0.2.2/32"]);
    let (o, v) = run(&spis, "A");
    assert_twamp_clean(&o, &v, "authenticated", 20);

    // No interface of the daemon yields an IKE key: not the socket's answers (list, and the
    // RFC 7717 secret a local client may ask for, which is not an IKE key), not `ippm ike`,
    // not its log, not the clients' output.
    let (ok, list) = b.daemon.ike(&["list", "--json"]);
    assert!(ok, "{list}");
    said.push(list);
    let (ok, secret_answer) = socket_request(&b.control, r#"{"cmd":"secret","peer":"192.0.2.1"}"#);
    assert!(
        ok && secret_answer.contains(&keys.ippm_secret),
        "{secret_answer}"
    );
    said.push(secret_answer);
    for bad in [r#"{"cmd":"keys"}"#, r#"{"cmd":"secret"}"#, "garbage"] {
        let (_, a) = socket_request(&b.control, bad);
        assert!(a.contains("\"ok\":false"), "{a}");
        said.push(a);
    }
    said.push(b.log());
    let all = said.join("\n").to_lowercase();
    for (name, key) in [
        ("SK_d", &keys.sk_d),
        ("SK_ai", &keys.sk_ai),
        ("SK_ar", &keys.sk_ar),
        ("SK_ei", &keys.sk_ei),
        ("SK_er", &keys.sk_er),
        ("SK_pi", &keys.sk_pi),
        ("SK_pr", &keys.sk_pr),
        ("SKEYSEED", &keys.skeyseed),
        ("g^ir", &keys.g_ir),
    ] {
        assert!(!key.is_empty(), "{name}");
        assert!(
            !all.contains(key.as_str()),
            "{name} appears in the daemon's output"
        );
    }
    assert!(!all.contains(&PSK.to_lowercase()));
}

/// One request on a daemon's control socket (from the root namespace; the socket is a file).
fn socket_request(control: &Path, line: &str) -> (bool, String) {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(control).unwrap();
    s.write_all(line.as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).unwrap();
    (answer.contains("\"ok\":true"), answer)
}

/// Long sessions run on while the IKE SA that keyed them is rekeyed and then deleted; new
/// sessions use the newest SA, and none once it is gone (or a new one with --ike initiate).
#[test]
fn rfc7717_rekey_and_delete_during_long_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let net = NetPair::new();
    let b = host(&net, d, Side::B, &config(d, Side::B, None, false, ""));
    let a = host(&net, d, Side::A, &config(d, Side::A, None, true, ""));
    assert!(
        wait_until(|| a.daemon.listed().len() == 1, WAIT),
        "{}",
        a.log()
    );
    let first = only_sa(&a);
    let ctl = a.control.to_str().unwrap().to_owned();
    let long = |proto: &str, mode: &str| {
        net.command(Side::A, IPPM)
            .args([
                proto,
                "--ike",
                "require",
                "--ike-control",
                &ctl,
                "-A",
                mode,
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
            .unwrap()
    };
    let tw = long("twping", "A");
    let ow = long("owping", "E");
    std::thread::sleep(Duration::from_millis(800));
    let (ok, out) = a.daemon.ike(&["rekey", "peer"]);
    assert!(ok, "{out}");
    assert!(
        wait_until(
            || {
                let l = a.daemon.listed();
                l.len() == 1 && l[0] != first && b.daemon.listed() == l
            },
            WAIT
        ),
        "rekey: {:?} {:?}",
        a.daemon.listed(),
        b.daemon.listed()
    );
    let second = only_sa(&a);
    std::thread::sleep(Duration::from_millis(800));
    let (ok, out) = a.daemon.ike(&["down", "peer"]);
    assert!(ok, "{out}");
    assert!(wait_until(
        || a.daemon.listed().is_empty() && b.daemon.listed().is_empty(),
        WAIT
    ));
    let tw = tw.wait_with_output().unwrap();
    let ow = ow.wait_with_output().unwrap();
    let v = serde_json::from_slice(&tw.stdout).unwrap_or(serde_json::Value::Null);
    assert_twamp_clean(&tw, &v, "authenticated", 300);
    let v = serde_json::from_slice(&ow.stdout).unwrap_or(serde_json::Value::Null);
    assert_owamp_clean(&ow, &v, "encrypted", 300);
    assert!(
        text(&tw).contains(&first.0) || a.log().contains(&first.0),
        "the sessions were keyed from the first SA"
    );
    let _ = second;

    // With the SA gone: require fails, initiate brings a new one (the connection's start =
    // true would too, but an operator's down is not undone).
    let base = [
        "--ike-control",
        ctl.as_str(),
        "-c",
        "10",
        "-i",
        "0.01f",
        "192.0.2.2",
    ];
    let (o, _) = client(
        &net,
        Side::A,
        &[&["twping", "--ike", "require", "-A", "A"][..], &base].concat(),
    );
    assert!(!o.status.success(), "{}", text(&o));
    let (o, v) = client(
        &net,
        Side::A,
        &[&["twping", "--ike", "initiate", "-A", "A"][..], &base].concat(),
    );
    assert_twamp_clean(&o, &v, "authenticated", 10);
    let third = only_sa(&a);
    assert!(third != first && third != second);
}

/// Without RFC 7717 on one side: our client with it off gets service from a server that
/// offers it, and against a server that does not, falls back (default) or fails (require).
#[test]
fn rfc7717_legacy_interop() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let net = NetPair::new();
    let keys = common::keyfile(d);
    let keys_line = format!("keys = \"{}\"", keys.display());
    let b = host(
        &net,
        d,
        Side::B,
        &config(d, Side::B, None, false, &keys_line),
    );
    let _a = host(&net, d, Side::A, &config(d, Side::A, None, true, ""));
    let ctl = d.join("a.sock");
    let ctl = ctl.to_str().unwrap();
    let k = keys.to_str().unwrap();
    // B offers RFC 7717 and passphrases: a client without RFC 7717 uses the passphrase.
    let (o, v) = ping(
        &net,
        &format!("twping --ike off -u alice -k {k} -A A -c 10 -i 0.01f 192.0.2.2"),
    );
    assert_twamp_clean(&o, &v, "authenticated", 10);
    let (o, v) = ping(
        &net,
        &format!("owping --ike off -u alice -k {k} -A E -c 10 -i 0.01f 192.0.2.2"),
    );
    assert_owamp_clean(&o, &v, "encrypted", 10);
    drop(b);

    // A server without IKE (no bit offered): --ike fallback uses the passphrase, --ike
    // require fails and says why.
    let plain = net
        .command(Side::B, IPPM)
        .args([
            "serve",
            "--twamp-listen",
            "192.0.2.2:862",
            "--owamp-listen",
            "192.0.2.2:861",
            "--keys",
            k,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut plain = Killed(plain);
    {
        use std::io::{BufRead, BufReader};
        let mut line = String::new();
        BufReader::new(plain.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("listening"), "{line}");
    }
    let (o, v) = ping(
        &net,
        &format!("twping --ike-control {ctl} -u alice -k {k} -A A -c 10 -i 0.01f 192.0.2.2"),
    );
    assert_twamp_clean(&o, &v, "authenticated", 10);
    let (o, _) = ping(
        &net,
        &format!("twping --ike require --ike-control {ctl} -A A -c 10 192.0.2.2"),
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("RFC 7717"), "{}", text(&o));
    let _ = &mut plain;
}

/// A child killed (by its PID) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `--ike inline`: a client with no daemon of its own runs the IKE initiator in-process for
/// one test, and deletes the SA when it ends.
#[test]
fn rfc7717_inline_ike_initiator() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let net = NetPair::new();
    let b = host(&net, d, Side::B, &config(d, Side::B, None, false, ""));
    // A's configuration, but no daemon on A.
    let a_conf = config(d, Side::A, None, false, "");
    let conf = a_conf.to_str().unwrap();
    let (o, v) = ping(
        &net,
        &format!("twping --ike inline --ike-config {conf} -A E -c 20 -i 0.01f 192.0.2.2"),
    );
    assert_twamp_clean(&o, &v, "encrypted", 20);
    assert!(
        text(&o).contains("keyed from an inline IKE SA"),
        "{}",
        text(&o)
    );
    // The client deleted its SA on the way out.
    assert!(
        wait_until(|| b.daemon.listed().is_empty(), WAIT),
        "{:?}\n{}",
        b.daemon.listed(),
        b.log()
    );
    let (o, v) = ping(
        &net,
        &format!("owping --ike inline --ike-config {conf} -A A -c 20 -i 0.01f 192.0.2.2"),
    );
    assert_owamp_clean(&o, &v, "authenticated", 20);
}
