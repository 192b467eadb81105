//! A PKI made with strongSwan's `pki`: a CA and end-entity certificates of each key type.

use super::*;

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
