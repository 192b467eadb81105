//! strongSwan's charon as an independent IKEv2 peer for interop tests: two fresh network
//! namespaces joined by a veth pair ([`NetPair`]), a PKI made with strongSwan's `pki`
//! ([`Pki`]), and charon with its own configuration, private `/run` and `ike = 4` log in one of
//! the namespaces ([`Charon`]). [`Charon::keys`] reads the keys of every IKE SA out of that
//! log (Debian's strongSwan 5.9.8 has no save-keys plugin): the key oracle for RFC 7717.
//!
//! Needs root, `ip` (iproute2), `unshare`, `openssl` and Debian's strongSwan packages
//! ([`PACKAGES`]); a missing tool fails the test with a message naming the packages.
//!
//! Typical use (ours in side B, charon in side A):
//!
//! ```ignore
//! let net = NetPair::new();                       // ippm-<pid>-<n>-a / -b, deleted on drop
//! let dir = tempfile::tempdir().unwrap();
//! let pki = Pki::generate(dir.path(), KeyType::Rsa);
//! let charon = Charon::start(&net, Side::A, CharonConfig::new(Some(&pki), Role::Responder));
//! let ours = net.command_b(IPPM).args(["serve", ...]).spawn();   // 192.0.2.2
//! // ... ours initiates to 192.0.2.1:500 with PSK_ID_INITIATOR / PSK, or charon.initiate("psk")
//! let sa = &charon.list_sas()[0];
//! let keys = charon.keys().into_iter().find(|k| k.spi_i == sa.spi_i && k.spi_r == sa.spi_r);
//! // compare keys.ippm_secret with ours
//! ```
//!
//! Key log notes: at `ike = 4` charon logs g^ir, SKEYSEED and SK_d .. SK_pr, and the AUTH
//! octets (which hold the IKE_SA_INIT messages and nonces); `enc = 4` adds the plain text of
//! every SK payload, which is where the nonces and SPIs of an IKE rekey come from. A rekey's
//! keys are logged by the thread that ran the exchange, under the old SA's ID on the side that
//! rekeyed and under the new SA's ID on the other; the side that rekeys is the new SA's
//! initiator.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ippm_ike::keys::Prf;

/// The Debian packages these tests need (`.ci/run` installs them).
pub(crate) const PACKAGES: &str = "strongswan-charon strongswan-swanctl strongswan-pki \
     libstrongswan-standard-plugins iproute2 openssl";

const CHARON: &str = "/usr/lib/ipsec/charon";
const PLUGINDIR: &str = "/usr/lib/ipsec/plugins";

/// The pre-shared key of the `psk` connections.
pub(crate) const PSK: &str = "owamp-ikev2-interop-psk";
/// PSK identities (ID_FQDN).
pub(crate) const PSK_ID_RESPONDER: &str = "psk-responder.example";
pub(crate) const PSK_ID_INITIATOR: &str = "psk-initiator.example";
/// Certificate identities (ID_FQDN, also the certificates' subjectAltName).
pub(crate) const CERT_ID_RESPONDER: &str = "responder.example";
pub(crate) const CERT_ID_INITIATOR: &str = "initiator.example";

/// Panics with the packages to install unless strongSwan and the tools are here.
pub(crate) fn require_strongswan() {
    let mut missing = Vec::new();
    if !Path::new(CHARON).exists() {
        missing.push(CHARON.to_owned());
    }
    for plugin in ["openssl", "kdf", "vici"] {
        let p = format!("{PLUGINDIR}/libstrongswan-{plugin}.so");
        if !Path::new(&p).exists() {
            missing.push(p);
        }
    }
    for tool in ["swanctl", "pki", "openssl", "ip", "unshare"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()));
        if !found {
            missing.push(tool.to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "strongSwan interop tests need {} (missing: {}); on Debian: \
         apt-get install --no-install-recommends {PACKAGES} (.ci/run does this)",
        PACKAGES,
        missing.join(", ")
    );
    assert!(
        nix::unistd::geteuid().is_root(),
        "strongSwan interop tests need root (network namespaces, charon on port 500)"
    );
}

/// Runs a command to completion; panics with its output unless it succeeds.
fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (Debian packages: {PACKAGES})"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Unique per process and test: `<pid>-<n>`.
fn unique() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One end of a [`NetPair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// 192.0.2.1: the strongSwan side.
    A,
    /// 192.0.2.2: ours.
    B,
}

impl Side {
    /// The address of this side.
    pub(crate) fn addr(self) -> &'static str {
        match self {
            Self::A => "192.0.2.1",
            Self::B => "192.0.2.2",
        }
    }

    /// The other side.
    pub(crate) fn peer(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }
}

/// Two fresh network namespaces joined by a veth pair: side A 192.0.2.1/24, side B
/// 192.0.2.2/24, loopback up in both. Dropping it deletes exactly the namespaces it made
/// (which takes the veth pair with them).
#[derive(Debug)]
pub(crate) struct NetPair {
    a: String,
    b: String,
    created: Vec<String>,
}

impl NetPair {
    /// Makes the namespaces `ippm-<pid>-<n>-a` and `-b`; panics (after cleaning up) on failure.
    pub(crate) fn new() -> Self {
        require_strongswan();
        let u = unique();
        let mut pair = Self {
            a: format!("ippm-{u}-a"),
            b: format!("ippm-{u}-b"),
            created: Vec::new(),
        };
        for ns in [pair.a.clone(), pair.b.clone()] {
            run(Command::new("ip").args(["netns", "add", &ns]));
            pair.created.push(ns);
        }
        // Interface names (at most 15 octets) are unique per process and test, so that tests
        // running in parallel never clash, wherever the kernel checks the names.
        let (va, vb) = (format!("ip{u}a"), format!("ip{u}b"));
        assert!(va.len() <= 15, "interface name {va} too long");
        run(Command::new("ip").args([
            "link", "add", &va, "netns", &pair.a, "type", "veth", "peer", "name", &vb, "netns",
            &pair.b,
        ]));
        for (side, ns, dev) in [(Side::A, &pair.a, &va), (Side::B, &pair.b, &vb)] {
            let cidr = format!("{}/24", side.addr());
            run(Command::new("ip").args(["-n", ns, "addr", "add", &cidr, "dev", dev]));
            run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]));
            run(Command::new("ip").args(["-n", ns, "link", "set", dev, "up"]));
        }
        pair
    }

    /// The name of a side's namespace.
    pub(crate) fn ns(&self, side: Side) -> &str {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    /// A command that runs `program` in a side's namespace (`ip netns exec`; the PID of the
    /// spawned child is the program's own, as `ip netns exec` execs it).
    pub(crate) fn command(&self, side: Side, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.ns(side)]).arg(program);
        c
    }

    /// A command that runs `program` in side B (ours, 192.0.2.2).
    pub(crate) fn command_b(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.command(Side::B, program)
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        for ns in self.created.drain(..).rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The key type of a [`Pki`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyType {
    /// RSA 2048.
    Rsa,
    /// ECDSA P-256.
    Ecdsa,
}

impl KeyType {
    fn pki_args(self) -> [&'static str; 4] {
        match self {
            Self::Rsa => ["--type", "rsa", "--size", "2048"],
            Self::Ecdsa => ["--type", "ecdsa", "--size", "256"],
        }
    }
}

/// One end entity of a [`Pki`]: PEM certificate and key, DER and PKCS#8 copies.
#[derive(Debug, Clone)]
pub(crate) struct Entity {
    /// Its identity, also the certificate's subjectAltName (dNSName).
    pub(crate) id: &'static str,
    /// Certificate, PEM.
    pub(crate) cert: PathBuf,
    /// Certificate, DER.
    pub(crate) cert_der: PathBuf,
    /// Private key, PEM (strongSwan's `pki` output: PKCS#1 for RSA, SEC1 for ECDSA).
    pub(crate) key: PathBuf,
    /// Private key, DER of the same structure.
    pub(crate) key_der: PathBuf,
    /// Private key, PKCS#8 DER (unencrypted).
    pub(crate) pk8_der: PathBuf,
}

/// A CA and two end entities, `responder.example` and `initiator.example`.
#[derive(Debug, Clone)]
pub(crate) struct Pki {
    /// The key type of all three.
    pub(crate) key_type: KeyType,
    /// CA certificate, PEM.
    pub(crate) ca_cert: PathBuf,
    /// CA certificate, DER.
    pub(crate) ca_cert_der: PathBuf,
    /// CA key, PEM.
    pub(crate) ca_key: PathBuf,
    /// `responder.example`.
    pub(crate) responder: Entity,
    /// `initiator.example`.
    pub(crate) initiator: Entity,
}

impl Pki {
    /// Generates the PKI in `dir` (which must exist) with strongSwan's `pki` and openssl.
    pub(crate) fn generate(dir: &Path, key_type: KeyType) -> Self {
        require_strongswan();
        let kt = key_type.pki_args();
        let gen_key = |path: &Path| {
            let out = run(Command::new("pki")
                .args(["--gen"])
                .args(kt)
                .args(["--outform", "pem"]));
            fs::write(path, out.stdout).unwrap();
        };
        let ca_key = dir.join("ca.key");
        let ca_cert = dir.join("ca.crt");
        gen_key(&ca_key);
        let out = run(Command::new("pki")
            .args(["--self", "--ca", "--lifetime", "3650", "--in"])
            .arg(&ca_key)
            .args(&kt[..2])
            .args([
                "--dn",
                "C=XX, O=ippm interop test, CN=ippm interop test CA",
                "--outform",
                "pem",
            ]));
        fs::write(&ca_cert, out.stdout).unwrap();
        let ca_cert_der = dir.join("ca.crt.der");
        run(Command::new("openssl")
            .args(["x509", "-outform", "der", "-in"])
            .arg(&ca_cert)
            .arg("-out")
            .arg(&ca_cert_der));
        let entity = |id: &'static str| {
            let host = id.trim_end_matches(".example");
            let e = Entity {
                id,
                cert: dir.join(format!("{host}.crt")),
                cert_der: dir.join(format!("{host}.crt.der")),
                key: dir.join(format!("{host}.key")),
                key_der: dir.join(format!("{host}.key.der")),
                pk8_der: dir.join(format!("{host}.pk8.der")),
            };
            gen_key(&e.key);
            let public = run(Command::new("pki")
                .args(["--pub", "--in"])
                .arg(&e.key)
                .args(&kt[..2]));
            let cert = pipe(
                Command::new("pki")
                    .args(["--issue", "--lifetime", "3650", "--cacert"])
                    .arg(&ca_cert)
                    .arg("--cakey")
                    .arg(&ca_key)
                    .args(["--dn", &format!("C=XX, O=ippm interop test, CN={id}")])
                    .args(["--san", id, "--flag", "serverAuth", "--flag", "clientAuth"])
                    .args(["--outform", "pem"]),
                &public.stdout,
            );
            fs::write(&e.cert, cert).unwrap();
            run(Command::new("openssl")
                .args(["x509", "-outform", "der", "-in"])
                .arg(&e.cert)
                .arg("-out")
                .arg(&e.cert_der));
            run(Command::new("openssl")
                .args(["pkey", "-outform", "der", "-in"])
                .arg(&e.key)
                .arg("-out")
                .arg(&e.key_der));
            run(Command::new("openssl")
                .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "der", "-in"])
                .arg(&e.key)
                .arg("-out")
                .arg(&e.pk8_der));
            e
        };
        Self {
            key_type,
            responder: entity(CERT_ID_RESPONDER),
            initiator: entity(CERT_ID_INITIATOR),
            ca_cert,
            ca_cert_der,
            ca_key,
        }
    }
}

/// Runs `cmd` with `input` on its stdin; panics unless it succeeds.
fn pipe(cmd: &mut Command, input: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (Debian packages: {PACKAGES})"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// RFC 6023 childless IKE SAs (swanctl's `childless`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Childless {
    /// Accept IKE_AUTH with or without a Child SA.
    Allow,
    /// Only childless IKE SAs (as responder, reject IKE_AUTH with a Child SA).
    Force,
    /// Never childless.
    Never,
}

impl Childless {
    fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Force => "force",
            Self::Never => "never",
        }
    }
}

/// Which certificate and identities a [`Charon`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `responder.example` / `psk-responder.example`; the peer is the initiator.
    Responder,
    /// `initiator.example` / `psk-initiator.example`; the peer is the responder.
    Initiator,
}

/// How a [`Charon`] is configured. [`CharonConfig::new`] gives the defaults; fields are
/// public to change.
#[derive(Debug, Clone)]
pub(crate) struct CharonConfig {
    /// IKE proposals of both connections (strongSwan syntax), e.g. `default` or
    /// `aes128-sha256-x25519`.
    pub(crate) proposals: String,
    /// RFC 6023 childless setting of both connections.
    pub(crate) childless: Childless,
    /// `send_cert` of the `cert` connection: `always`, `ifasked` or `never`.
    pub(crate) send_cert: String,
    /// Local and remote identities of the `psk` connection.
    pub(crate) psk_local_id: String,
    pub(crate) psk_remote_id: String,
    /// The pre-shared key.
    pub(crate) psk: String,
    /// Local and remote identities of the `cert` connection.
    pub(crate) cert_local_id: String,
    pub(crate) cert_remote_id: String,
    /// swanctl `auth` of the `cert` connection's local and remote sections: `pubkey`
    /// (strongSwan signs RSA with PKCS#1 v1.5 and accepts PSS too), or e.g.
    /// `ike:rsa/pss-sha512` to sign with RSASSA-PSS (local) or accept only it (remote).
    pub(crate) cert_local_auth: String,
    pub(crate) cert_remote_auth: String,
    /// The PKI of the `cert` connection and which of its entities is ours; without one,
    /// only the `psk` connection is configured.
    pub(crate) pki: Option<(Pki, Role)>,
    /// `remote_addrs` of both connections; `None`: the other side's address, and any
    /// address when responding.
    pub(crate) remote_addrs: Option<String>,
    /// Port charon initiates to.
    pub(crate) remote_port: u16,
    /// charon's IKE port (and `port + 4000` for NAT-T) in its namespace.
    pub(crate) port: u16,
    /// Extra lines in strongswan.conf's `charon { }` section.
    pub(crate) extra_charon: String,
    /// Give both connections a Child SA `net` (`swanctl --initiate --child net` proposes it
    /// in IKE_AUTH).
    pub(crate) child: bool,
}

impl CharonConfig {
    /// Defaults for a charon in `role`: strongSwan's default proposals, childless allowed,
    /// send_cert always, the identities of `role` (local) and of the other role (remote),
    /// the certificate of `role` from `pki`, ports 500.
    pub(crate) fn new(pki: Option<&Pki>, role: Role) -> Self {
        let (psk_local, psk_remote, cert_local, cert_remote) = match role {
            Role::Responder => (
                PSK_ID_RESPONDER,
                PSK_ID_INITIATOR,
                CERT_ID_RESPONDER,
                CERT_ID_INITIATOR,
            ),
            Role::Initiator => (
                PSK_ID_INITIATOR,
                PSK_ID_RESPONDER,
                CERT_ID_INITIATOR,
                CERT_ID_RESPONDER,
            ),
        };
        Self {
            proposals: "default".into(),
            childless: Childless::Allow,
            send_cert: "always".into(),
            psk_local_id: psk_local.into(),
            psk_remote_id: psk_remote.into(),
            psk: PSK.into(),
            cert_local_id: cert_local.into(),
            cert_remote_id: cert_remote.into(),
            cert_local_auth: "pubkey".into(),
            cert_remote_auth: "pubkey".into(),
            pki: pki.map(|p| (p.clone(), role)),
            remote_addrs: None,
            remote_port: 500,
            port: 500,
            extra_charon: String::new(),
            child: false,
        }
    }
}

/// One IKE SA as `swanctl --list-sas` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SaInfo {
    /// Connection name.
    pub(crate) name: String,
    /// charon's unique ID of the IKE SA.
    pub(crate) unique_id: u32,
    /// ESTABLISHED, CONNECTING, REKEYING, REKEYED, DELETING, ...
    pub(crate) state: String,
    /// Initiator's SPI, 16 hex digits.
    pub(crate) spi_i: String,
    /// Responder's SPI, 16 hex digits.
    pub(crate) spi_r: String,
    /// Whether this charon is the original initiator of the SA.
    pub(crate) initiator: bool,
    /// Negotiated proposal as swanctl prints it, e.g. `AES_CBC-128/HMAC_SHA2_256_128/...`.
    pub(crate) proposal: String,
}

/// The keys of one IKE SA, read from charon's `ike = 4` log (all hex, lower case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SaKeys {
    /// Connection name (from the log tag).
    pub(crate) conn: String,
    /// charon's unique ID of the IKE SA the keys were logged under (for a rekey: the old
    /// SA, which runs the exchange).
    pub(crate) log_id: u32,
    /// For an SA made by an IKE rekey (CREATE_CHILD_SA): the SPIs (i, r) of the SA it
    /// replaced; `None` for one from IKE_SA_INIT.
    pub(crate) rekey_of: Option<(String, String)>,
    pub(crate) spi_i: String,
    pub(crate) spi_r: String,
    /// Selected proposal in the log's notation, e.g.
    /// `AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519`.
    pub(crate) proposal: String,
    pub(crate) ni: String,
    pub(crate) nr: String,
    pub(crate) g_ir: String,
    pub(crate) skeyseed: String,
    pub(crate) sk_d: String,
    pub(crate) sk_ai: String,
    pub(crate) sk_ar: String,
    pub(crate) sk_ei: String,
    pub(crate) sk_er: String,
    pub(crate) sk_pi: String,
    pub(crate) sk_pr: String,
    /// RFC 7717: prf(SK_d, "IPPM") with the negotiated PRF (empty if the PRF is unknown).
    pub(crate) ippm_secret: String,
}

impl SaKeys {
    /// The negotiated PRF, from the proposal.
    pub(crate) fn prf(&self) -> Option<Prf> {
        prf_of(&self.proposal)
    }
}

/// The PRF named in a proposal (log or swanctl notation).
pub(crate) fn prf_of(proposal: &str) -> Option<Prf> {
    proposal.split('/').find_map(|t| match t {
        "PRF_HMAC_SHA1" => Some(Prf::HmacSha1),
        "PRF_HMAC_SHA2_256" => Some(Prf::HmacSha256),
        "PRF_HMAC_SHA2_384" => Some(Prf::HmacSha384),
        "PRF_HMAC_SHA2_512" => Some(Prf::HmacSha512),
        _ => None,
    })
}

/// Lower-case hex.
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// Hex to bytes; panics on bad input.
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|_| panic!("hex {s}")))
        .collect()
}

/// Polls `pred` every 50 ms until it holds or `timeout` passes; whether it held.
pub(crate) fn wait_until(mut pred: impl FnMut() -> bool, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if pred() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running charon in one side of a [`NetPair`], with its own configuration directory,
/// private `/run` and log. Dropping it stops it by the PID it wrote (SIGTERM, then SIGKILL).
#[derive(Debug)]
pub(crate) struct Charon {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pid: i32,
    /// The side it runs in.
    pub(crate) side: Side,
    /// Its address.
    pub(crate) addr: &'static str,
    /// Its configuration.
    pub(crate) config: CharonConfig,
}

impl Charon {
    /// Writes the configuration, starts charon in `side` of `net`, waits for its vici socket
    /// and loads the connections (`psk` and, with a PKI, `cert`) and secrets.
    pub(crate) fn start(net: &NetPair, side: Side, config: CharonConfig) -> Self {
        require_strongswan();
        let dir = tempfile::Builder::new()
            .prefix(&format!("ippm-charon-{}-", unique()))
            .tempdir()
            .unwrap();
        let d = dir.path();
        fs::create_dir(d.join("run")).unwrap();
        let swanctl = d.join("swanctl");
        for sub in [
            "", "conf.d", "x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey",
            "private", "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12",
        ] {
            fs::create_dir_all(swanctl.join(sub)).unwrap();
        }
        fs::write(d.join("strongswan.conf"), strongswan_conf(d, &config)).unwrap();
        fs::write(
            swanctl.join("swanctl.conf"),
            swanctl_conf(side, &config, &swanctl),
        )
        .unwrap();

        // The pid file path (/run/charon.pid) is compiled in: a private /run (bind mount of
        // our run directory in a new mount namespace) lets several charons run at once.
        // `ip netns exec`, `unshare` (no --fork) and `sh -c 'exec'` all exec, so the child's
        // PID is charon's.
        let stdout = fs::File::create(d.join("charon.stdout")).unwrap();
        let child = net
            .command(side, "unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$1" /run && exec "$2""#)
            .arg("sh")
            .arg(d.join("run"))
            .arg(CHARON)
            .env("STRONGSWAN_CONF", d.join("strongswan.conf"))
            .stdin(Stdio::null())
            .stdout(stdout.try_clone().unwrap())
            .stderr(stdout)
            .spawn()
            .unwrap_or_else(|e| panic!("start charon: {e} (Debian packages: {PACKAGES})"));
        let mut c = Self {
            pid: child.id() as i32,
            child: Some(child),
            dir,
            side,
            addr: side.addr(),
            config,
        };
        let (vici, pidfile) = (c.dir.path().join("run/charon.vici"), c.pid_file());
        let up = wait_until(
            || {
                vici.exists()
                    && fs::read_to_string(&pidfile).is_ok_and(|s| s.trim().parse::<i32>().is_ok())
            },
            Duration::from_secs(10),
        );
        assert!(
            up && !c.exited(),
            "charon did not start:\n{}\n{}",
            fs::read_to_string(c.dir.path().join("charon.stdout")).unwrap_or_default(),
            c.log_summary()
        );
        let written: i32 = fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(written, c.pid, "charon's pid file names another process");
        c.swanctl(&["--load-all"]);
        c
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("run/charon.pid")
    }

    fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(ch) => !matches!(ch.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// charon's PID.
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// Its state directory (configuration, `run/`, `charon.log`).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `cert` connection's CA and own certificate, if configured.
    pub(crate) fn pki(&self) -> Option<&Pki> {
        self.config.pki.as_ref().map(|(p, _)| p)
    }

    /// Runs swanctl against this charon; panics (with charon's log) unless it succeeds.
    pub(crate) fn swanctl(&self, args: &[&str]) -> String {
        let out = self.try_swanctl(args);
        match out {
            Ok(s) => s,
            Err(e) => panic!(
                "swanctl {args:?} failed:\n{e}\n--- charon log (without enc):\n{}",
                self.log_summary()
            ),
        }
    }

    /// Runs swanctl against this charon: its stdout, or stdout and stderr on failure.
    pub(crate) fn try_swanctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("swanctl")
            .args(args)
            .env("STRONGSWAN_CONF", self.dir.path().join("strongswan.conf"))
            .env("SWANCTL_DIR", self.dir.path().join("swanctl"))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("swanctl: {e} (Debian packages: {PACKAGES})"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "{}{stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Initiates a childless IKE SA of connection `conn` (`psk` or `cert`) to the peer and
    /// waits until it is established (or fails: panics with the log).
    pub(crate) fn initiate(&self, conn: &str) -> String {
        self.swanctl(&["--initiate", "--ike", conn, "--timeout", "15"])
    }

    /// Deletes the IKE SAs of `conn` (INFORMATIONAL Delete to the peer), waiting for it.
    pub(crate) fn terminate(&self, conn: &str) -> String {
        self.swanctl(&["--terminate", "--ike", conn, "--timeout", "10"])
    }

    /// Starts a rekey of `conn`'s IKE SA (`swanctl --rekey --ike`, which returns at once;
    /// use [`Charon::wait_for`]).
    pub(crate) fn rekey_ike(&self, conn: &str) -> String {
        self.swanctl(&["--rekey", "--ike", conn])
    }

    /// The IKE SAs charon has now (`swanctl --list-sas --raw`).
    pub(crate) fn list_sas(&self) -> Vec<SaInfo> {
        parse_list_sas(&self.swanctl(&["--list-sas", "--raw"]))
    }

    /// Polls `pred` every 50 ms until it holds or `timeout` passes; whether it held.
    pub(crate) fn wait_for(&self, mut pred: impl FnMut(&Self) -> bool, timeout: Duration) -> bool {
        wait_until(|| pred(self), timeout)
    }

    /// charon's log (filelog, `ike = 4`) so far.
    pub(crate) fn log_text(&self) -> String {
        fs::read_to_string(self.dir.path().join("charon.log")).unwrap_or_default()
    }

    /// The log without the `[ENC]` lines (enc = 4 is very verbose) and without hex dumps:
    /// for failure messages.
    pub(crate) fn log_summary(&self) -> String {
        let dump_line = |l: &str| {
            let text = l.split("> ").nth(1).or_else(|| l.split("] ").nth(1));
            text.and_then(|t| t.trim_start().split_once(": "))
                .is_some_and(|(o, _)| !o.is_empty() && o.chars().all(|c| c.is_ascii_digit()))
        };
        let mut s = String::new();
        for l in self.log_text().lines() {
            if !l.contains("[ENC]") && !dump_line(l) {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }

    /// The keys of every IKE SA in the log so far, in the order they were derived.
    pub(crate) fn keys(&self) -> Vec<SaKeys> {
        parse_keys(&self.log_text())
    }
}

impl Drop for Charon {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Only our child, and only while it is still running (not yet reaped): its PID
        // cannot have been reused.
        if matches!(child.try_wait(), Ok(None)) {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGTERM);
            let end = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
            }
        }
        let _ = child.wait();
    }
}

fn strongswan_conf(d: &Path, c: &CharonConfig) -> String {
    let d = d.display();
    format!(
        r#"# written by ippm's test harness (tests/common/charon.rs)
charon {{
  # explicit plugin list; 'kdf' is needed for prf+ in 5.9.8 when a list is given
  load = random nonce openssl kdf aes sha1 sha2 hmac gcm pem pkcs1 pkcs8 x509 revocation constraints pubkey gmp kernel-netlink socket-default vici
  port = {port}
  port_nat_t = {natt}
  install_routes = no
  install_virtual_ip = no
  retransmit_tries = 2
  retransmit_timeout = 1.0
  retransmit_base = 1.4
  {extra}
  plugins {{
    vici {{
      socket = unix://{d}/run/charon.vici
    }}
  }}
  filelog {{
    keylog {{
      path = {d}/charon.log
      time_format = %F %T
      ike_name = yes
      append = no
      flush_line = yes
      default = 1
      cfg = 2
      # ike = 4 logs g^ir, SKEYSEED, SK_d .. SK_pr and the AUTH octets
      ike = 4
      # enc = 4 dumps the plain text of every SK payload: the nonces and SPIs of IKE rekeys
      enc = 4
      net = 1
    }}
  }}
  syslog {{
    daemon {{
      default = -1
    }}
    auth {{
      default = -1
    }}
  }}
}}
swanctl {{
  socket = unix://{d}/run/charon.vici
  load = random openssl pem pkcs1 pkcs8 x509 revocation constraints pubkey
}}
"#,
        port = c.port,
        natt = c.port + 4000,
        extra = c.extra_charon,
    )
}

fn swanctl_conf(side: Side, c: &CharonConfig, swanctl: &Path) -> String {
    let local = side.addr();
    let remote = c
        .remote_addrs
        .clone()
        .unwrap_or_else(|| format!("{}, 0.0.0.0/0", side.peer().addr()));
    let common = format!(
        "    version = 2
    local_addrs = {local}
    remote_addrs = {remote}
    remote_port = {rport}
    proposals = {props}
    childless = {childless}
    mobike = no
{children}",
        rport = c.remote_port,
        props = c.proposals,
        childless = c.childless.as_str(),
        children = if c.child {
            "    children {\n      net {\n        local_ts = dynamic\n        remote_ts = dynamic\n        \
             esp_proposals = aes128-sha256\n      }\n    }\n"
        } else {
            ""
        },
    );
    let mut conf = format!(
        "# written by ippm's test harness (tests/common/charon.rs)
connections {{
  psk {{
{common}    local {{
      auth = psk
      id = {}
    }}
    remote {{
      auth = psk
      id = {}
    }}
  }}
",
        c.psk_local_id, c.psk_remote_id
    );
    if let Some((pki, role)) = &c.pki {
        let me = match role {
            Role::Responder => &pki.responder,
            Role::Initiator => &pki.initiator,
        };
        fs::copy(&pki.ca_cert, swanctl.join("x509ca/ca.crt")).unwrap();
        fs::copy(&me.cert, swanctl.join("x509/own.crt")).unwrap();
        fs::copy(&me.key, swanctl.join("private/own.key")).unwrap();
        let _ = write!(
            conf,
            "  cert {{
{common}    send_cert = {send}
    local {{
      auth = {lauth}
      certs = own.crt
      id = {lid}
    }}
    remote {{
      auth = {rauth}
      cacerts = ca.crt
      id = {rid}
    }}
  }}
",
            send = c.send_cert,
            lauth = c.cert_local_auth,
            rauth = c.cert_remote_auth,
            lid = c.cert_local_id,
            rid = c.cert_remote_id,
        );
    }
    let _ = write!(
        conf,
        "}}
secrets {{
  ike-interop {{
    id-1 = {}
    id-2 = {}
    secret = \"{}\"
  }}
}}
",
        c.psk_local_id, c.psk_remote_id, c.psk
    );
    conf
}

/// Parses `swanctl --list-sas --raw`: one line per IKE SA,
/// `list-sa event {NAME {uniqueid=1 version=2 state=ESTABLISHED ... child-sas {...}}}`.
pub(crate) fn parse_list_sas(raw: &str) -> Vec<SaInfo> {
    let mut out = Vec::new();
    for line in raw.lines() {
        let Some(rest) = line.trim().strip_prefix("list-sa event {") else {
            continue;
        };
        let Some((name, body)) = rest.split_once(" {") else {
            continue;
        };
        // Top-level key=value pairs only (before any nested section).
        let top = body.split(" child-sas {").next().unwrap_or(body);
        let kv: HashMap<&str, &str> = top
            .split_whitespace()
            .filter_map(|t| t.split_once('='))
            .collect();
        let get = |k: &str| kv.get(k).copied().unwrap_or("").to_owned();
        let proposal = [
            "encr-alg",
            "encr-keysize",
            "integ-alg",
            "prf-alg",
            "dh-group",
        ]
        .iter()
        .filter_map(|k| kv.get(k).copied())
        .collect::<Vec<_>>()
        .join("/");
        out.push(SaInfo {
            name: name.to_owned(),
            unique_id: get("uniqueid").parse().unwrap_or(0),
            state: get("state"),
            spi_i: get("initiator-spi"),
            spi_r: get("responder-spi"),
            initiator: get("initiator") == "yes",
            proposal,
        });
    }
    out
}

/// What a thread of charon last processed, to tell an IKE_SA_INIT key derivation from an
/// IKE rekey's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastMsg {
    None,
    IkeSaInit,
    /// A CREATE_CHILD_SA exchange rekeying the IKE SA: its SPIs and message ID.
    IkeRekey([u8; 16], u32),
    Other,
}

/// One side of a CREATE_CHILD_SA exchange that rekeys the IKE SA.
#[derive(Debug, Clone, Default)]
struct RekeyHalf {
    nonce: Vec<u8>,
    spi: Vec<u8>,
}

/// IKE rekey exchanges: (old SA's SPIs, message ID) -> (request half, response half).
type Rekeys = HashMap<([u8; 16], u32), (Option<RekeyHalf>, Option<RekeyHalf>)>;

/// A hex dump being read (`label => N bytes @ 0x...` and the lines after it).
#[derive(Debug)]
struct Dump {
    label: String,
    id: Option<u32>,
    want: usize,
    buf: Vec<u8>,
}

/// Per-thread parser state.
#[derive(Debug)]
struct Thread {
    dump: Option<Dump>,
    /// The current `encrypted payload (en|de)cryption:` block: its plain text and header.
    plain: Option<Vec<u8>>,
    assoc: Option<Vec<u8>>,
    last: LastMsg,
    proposal: String,
    /// The key record this thread is filling (index into the records).
    record: Option<usize>,
}

/// A key record while parsing.
#[derive(Debug, Default)]
struct Rec {
    keys: SaKeys,
    kind: Option<LastMsg>,
    fields: HashMap<&'static str, Vec<u8>>,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|x| u32::from_be_bytes(x.try_into().unwrap()))
}

/// Walks an IKEv2 payload chain starting with `first`: (type, body) pairs.
fn payloads(mut next: u8, mut data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while next != 0 && data.len() >= 4 {
        let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
        if len < 4 || len > data.len() {
            break;
        }
        out.push((next, &data[4..len]));
        next = data[0];
        data = &data[len..];
    }
    out
}

/// From a CREATE_CHILD_SA message's plain text: the nonce and the IKE SPI of its SA payload,
/// if it carries an IKE proposal (protocol 1, 8-octet SPI): an IKE rekey.
fn ike_rekey_half(first: u8, plain: &[u8]) -> Option<RekeyHalf> {
    let mut half = RekeyHalf::default();
    let mut ike = false;
    for (ty, body) in payloads(first, plain) {
        match ty {
            // SA: first proposal substructure; protocol ID at 5, SPI size at 6, SPI at 8.
            33 if body.len() >= 8 && body[5] == 1 && body[6] == 8 && body.len() >= 16 => {
                ike = true;
                half.spi = body[8..16].to_vec();
            }
            40 => half.nonce = body.to_vec(),
            _ => {}
        }
    }
    ike.then_some(half)
}

/// The nonce of an IKE_SA_INIT message (cleartext).
fn init_nonce(msg: &[u8]) -> Option<Vec<u8>> {
    let first = *msg.get(16)?;
    payloads(first, msg.get(28..)?)
        .into_iter()
        .find(|(ty, _)| *ty == 40)
        .map(|(_, b)| b.to_vec())
}

/// Parses charon's log (`ike = 4`, `enc = 4`, `ike_name = yes`) into one [`SaKeys`] per key
/// derivation, in log order.
///
/// An IKE_SA_INIT derivation takes its nonces and SPIs from the AUTH octets logged under
/// the same IKE SA (message | other's nonce | prf(SK_p, ID)). An IKE rekey (CREATE_CHILD_SA)
/// is logged by the thread that processed the exchange's message: under the old SA's ID by
/// the rekey initiator, under the new SA's by the responder. Its nonces and new SPIs come from
/// the decrypted request and response (enc = 4 dumps every SK payload's plain text and the
/// header it is bound to); the exchange is the one the deriving thread just decrypted.
pub(crate) fn parse_keys(log: &str) -> Vec<SaKeys> {
    let mut threads: HashMap<String, Thread> = HashMap::new();
    let mut recs: Vec<Rec> = Vec::new();
    let mut octets: HashMap<u32, Vec<Vec<u8>>> = HashMap::new();
    let mut names: HashMap<u32, String> = HashMap::new();
    let mut proposals: HashMap<u32, String> = HashMap::new();
    let mut rekeys = Rekeys::new();

    for line in log.lines() {
        // "DATE TIME TT[GRP] <name|id> text" or without the tag.
        let mut it = line.splitn(3, ' ');
        let (Some(_date), Some(_time), Some(rest)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let Some((tid, rest)) = rest.split_once('[') else {
            continue;
        };
        let Some((_grp, rest)) = rest.split_once("] ") else {
            continue;
        };
        let (tag, text) = match rest.strip_prefix('<').and_then(|r| r.split_once("> ")) {
            Some((tag, text)) => (Some(tag), text),
            None => (None, rest),
        };
        let id = tag.and_then(|t| {
            let (name, id) = match t.split_once('|') {
                Some((n, i)) => (Some(n), i),
                None => (None, t),
            };
            let id: u32 = id.parse().ok()?;
            if let Some(n) = name {
                names.insert(id, n.to_owned());
            }
            Some(id)
        });
        let th = threads.entry(tid.to_owned()).or_insert_with(|| Thread {
            dump: None,
            plain: None,
            assoc: None,
            last: LastMsg::None,
            proposal: String::new(),
            record: None,
        });

        // Hex dump continuation: "  16: 3A 4B ...  ascii".
        if let Some(d) = th.dump.as_mut() {
            let t = text.trim_start();
            if let Some((off, bytes)) = t.split_once(": ")
                && off.chars().all(|c| c.is_ascii_digit())
            {
                let n = (d.want - d.buf.len()).min(16);
                let hexpart: String = bytes.get(..3 * n - 1).unwrap_or("").split(' ').collect();
                d.buf.extend(unhex(&hexpart));
                if d.buf.len() < d.want {
                    continue;
                }
                let d = th.dump.take().unwrap();
                finish_dump(d, th, &mut recs, &proposals, &mut octets, &mut rekeys);
                continue;
            }
            th.dump = None;
        }

        if let Some((label, after)) = text.split_once(" => ") {
            if let Some(n) = after.split(' ').next() {
                if let Ok(want) = n.parse::<usize>()
                    && after.contains(" bytes @ ")
                {
                    let d = Dump {
                        label: label.trim().to_owned(),
                        id,
                        want,
                        buf: Vec::new(),
                    };
                    if want == 0 {
                        finish_dump(d, th, &mut recs, &proposals, &mut octets, &mut rekeys);
                    } else {
                        th.dump = Some(d);
                    }
                    continue;
                }
            }
        }
        if text.starts_with("encrypted payload encryption:")
            || text.starts_with("encrypted payload decryption:")
        {
            th.plain = None;
            th.assoc = None;
        } else if text.starts_with("received packet: ") {
            // Processing of a new message starts; key derivation follows in this thread.
            th.last = LastMsg::None;
            th.proposal.clear();
        } else if text.starts_with("parsed IKE_SA_INIT ") {
            th.last = LastMsg::IkeSaInit;
        } else if let Some(p) = text.strip_prefix("selected proposal: IKE:") {
            th.proposal = p.split(' ').next().unwrap_or("").to_owned();
            if let Some(id) = id {
                proposals.insert(id, th.proposal.clone());
            }
        }
    }

    recs.into_iter()
        .filter_map(|r| {
            let mut k = r.keys;
            let get = |f: &str| r.fields.get(f).map(|v| hex(v)).unwrap_or_default();
            if !r.fields.contains_key("sk_d") {
                return None;
            }
            k.g_ir = get("g_ir");
            k.skeyseed = get("skeyseed");
            k.sk_d = get("sk_d");
            k.sk_ai = get("sk_ai");
            k.sk_ar = get("sk_ar");
            k.sk_ei = get("sk_ei");
            k.sk_er = get("sk_er");
            k.sk_pi = get("sk_pi");
            k.sk_pr = get("sk_pr");
            if k.conn.is_empty() {
                k.conn = names.get(&k.log_id).cloned().unwrap_or_default();
            }
            match r.kind {
                Some(LastMsg::IkeRekey(spis, mid)) => {
                    k.rekey_of = Some((hex(&spis[..8]), hex(&spis[8..])));
                    if let Some((req, resp)) = rekeys.get(&(spis, mid)) {
                        if let Some(q) = req {
                            k.ni = hex(&q.nonce);
                            k.spi_i = hex(&q.spi);
                        }
                        if let Some(p) = resp {
                            k.nr = hex(&p.nonce);
                            k.spi_r = hex(&p.spi);
                        }
                    }
                }
                _ => {
                    let prflen = r.fields.get("sk_pi").map_or(0, Vec::len);
                    for oc in octets.get(&k.log_id).into_iter().flatten() {
                        let Some(mlen) = u32_at(oc, 24).map(|l| l as usize) else {
                            continue;
                        };
                        if oc.len() < mlen + prflen || mlen < 28 {
                            continue;
                        }
                        let other = &oc[mlen..oc.len() - prflen];
                        let own = init_nonce(&oc[..mlen]).unwrap_or_default();
                        if oc[19] & 0x20 != 0 {
                            // IKE_SA_INIT response (Nr) | Ni
                            if k.ni.is_empty() {
                                k.ni = hex(other);
                            }
                            if k.nr.is_empty() {
                                k.nr = hex(&own);
                            }
                            k.spi_i = hex(&oc[..8]);
                            k.spi_r = hex(&oc[8..16]);
                        } else {
                            if k.nr.is_empty() {
                                k.nr = hex(other);
                            }
                            if k.ni.is_empty() {
                                k.ni = hex(&own);
                            }
                            if k.spi_i.is_empty() {
                                k.spi_i = hex(&oc[..8]);
                            }
                        }
                    }
                }
            }
            if let Some(prf) = k.prf() {
                k.ippm_secret = hex(&prf.prf(&unhex(&k.sk_d), b"IPPM"));
            }
            Some(k)
        })
        .collect()
}

fn finish_dump(
    d: Dump,
    th: &mut Thread,
    recs: &mut Vec<Rec>,
    proposals: &HashMap<u32, String>,
    octets: &mut HashMap<u32, Vec<Vec<u8>>>,
    rekeys: &mut Rekeys,
) {
    let field = match d.label.as_str() {
        "shared Diffie Hellman secret" => {
            // A new key derivation starts in this thread.
            // The IKE_SA_INIT responder derives the keys only when the first IKE_AUTH
            // request arrives, in another thread than the one that chose the proposal; a
            // rekey responder logs them under the new SA, the proposal under the old one.
            let proposal = match (th.last, d.id.and_then(|id| proposals.get(&id))) {
                (LastMsg::IkeRekey(..), _) | (_, None) => th.proposal.clone(),
                (_, Some(p)) => p.clone(),
            };
            recs.push(Rec {
                keys: SaKeys {
                    log_id: d.id.unwrap_or(0),
                    proposal,
                    ..SaKeys::default()
                },
                kind: Some(th.last),
                fields: HashMap::new(),
            });
            th.record = Some(recs.len() - 1);
            Some("g_ir")
        }
        "SKEYSEED" => Some("skeyseed"),
        "Sk_d secret" => Some("sk_d"),
        "Sk_ai secret" => Some("sk_ai"),
        "Sk_ar secret" => Some("sk_ar"),
        "Sk_ei secret" => Some("sk_ei"),
        "Sk_er secret" => Some("sk_er"),
        "Sk_pi secret" => Some("sk_pi"),
        "Sk_pr secret" => Some("sk_pr"),
        l if l.starts_with("octets = message") => {
            if let Some(id) = d.id {
                octets.entry(id).or_default().push(d.buf);
            }
            return;
        }
        "plain" => {
            th.plain = Some(d.buf);
            return message_done(th, rekeys);
        }
        "assoc" => {
            th.assoc = Some(d.buf);
            return message_done(th, rekeys);
        }
        _ => return,
    };
    if let (Some(f), Some(r)) = (field, th.record.and_then(|i| recs.get_mut(i))) {
        r.fields.entry(f).or_insert(d.buf);
    }
    if field == Some("sk_pr") {
        th.record = None;
    }
}

/// Once a thread has logged both the plain text and the header of an SK payload: if it is
/// an IKE rekey's CREATE_CHILD_SA message, remember its nonce and SPI.
fn message_done(th: &mut Thread, rekeys: &mut Rekeys) {
    // An SK payload (not SKF: 28-octet IKE header + 4-octet SK header) en- or decrypted.
    if let (Some(plain), Some(assoc)) = (&th.plain, &th.assoc) {
        if assoc.len() == 32 && assoc[16] == 46 {
            let spis: [u8; 16] = assoc[..16].try_into().unwrap();
            let (exchange, response) = (assoc[18], assoc[19] & 0x20 != 0);
            let mid = u32_at(assoc, 20).unwrap_or(0);
            let half = (exchange == 36)
                .then(|| ike_rekey_half(assoc[28], plain))
                .flatten();
            match half {
                Some(h) => {
                    let e = rekeys.entry((spis, mid)).or_default();
                    if response {
                        e.1 = Some(h);
                    } else {
                        e.0 = Some(h);
                    }
                    th.last = LastMsg::IkeRekey(spis, mid);
                }
                None => th.last = LastMsg::Other,
            }
        }
        th.plain = None;
        th.assoc = None;
    }
}
