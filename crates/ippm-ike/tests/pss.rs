//! RSASSA-PSS in RFC 7427 Digital Signature authentication, against independent oracles:
//! golden AlgorithmIdentifier octets (RFC 7427 Appendix A.4 and the Mozilla Root Store
//! Policy §5.1.1), signatures made by the openssl CLI (as libreswan makes them: SHA-512,
//! MGF1-SHA-512, salt 64, and the other hashes), and openssl verifying ours. Parameters ippm
//! cannot verify (other salt lengths, another MGF hash, SHA-1 defaults) and truncated or
//! malformed ones are refused with their reason.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use ippm_ike::auth::{
    AuthError, HASH_SHA2_256, HASH_SHA2_384, HASH_SHA2_512, Identity, LocalCredential, PssError,
    RsaSignature, TrustStore,
};
use ippm_ike::codepoints::AuthMethod;
use proptest::prelude::*;

/// RFC 7427 Appendix A.4.1, "RSASSA-PSS with empty parameters" (all DEFAULTs: SHA-1).
const RFC7427_A41: &str = "300d06092a864886f70d01010a3000";
/// RFC 7427 Appendix A.4.2, "RSASSA-PSS with default parameters", spelled out (SHA-1,
/// MGF1-SHA-1, salt 20, trailer 1).
const RFC7427_A42: &str = "303e06092a864886f70d01010a3031a00b300906052b0e03021a0500a11830160609\
                           2a864886f70d010108300906052b0e03021a0500a203020114a303020101";
/// RFC 7427 Appendix A.4.3, "RSASSA-PSS with SHA-256": explicit trailerField 1.
const RFC7427_A43: &str = "304606092a864886f70d01010a3039a00f300d06096086480165030402010500a11c\
                           301a06092a864886f70d010108300d06096086480165030402010500a203020120\
                           a303020101";
/// Mozilla Root Store Policy §5.1.1: the DER (trailerField omitted) of RSASSA-PSS with
/// SHA-256/384/512, MGF1 with the same hash, salt as long as the hash. ippm sends these.
const MOZ_PSS_SHA256: &str = "304106092a864886f70d01010a3034a00f300d06096086480165030402010500\
                              a11c301a06092a864886f70d010108300d06096086480165030402010500a203\
                              020120";
const MOZ_PSS_SHA384: &str = "304106092a864886f70d01010a3034a00f300d06096086480165030402020500\
                              a11c301a06092a864886f70d010108300d06096086480165030402020500a203\
                              020130";
const MOZ_PSS_SHA512: &str = "304106092a864886f70d01010a3034a00f300d06096086480165030402030500\
                              a11c301a06092a864886f70d010108300d06096086480165030402030500a203\
                              020140";
/// RFC 7427 Appendix A.1.2, sha256WithRSAEncryption.
const RFC_SHA256_RSA: &str = "300d06092a864886f70d01010b0500";

const ALL_HASHES: &[u16] = &[HASH_SHA2_256, HASH_SHA2_384, HASH_SHA2_512];
const ID: &str = "pss.example";

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// One DER TLV with a short or two-octet length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n @ 0..=0x7f => out.push(n as u8),
        n @ 0x80..=0xff => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend(content);
    out
}

/// A SHA-2 AlgorithmIdentifier (2.16.840.1.101.3.4.2.`n`), parameters NULL or absent.
fn sha2(n: u8, null: bool) -> Vec<u8> {
    let mut c = tlv(0x06, &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, n]);
    if null {
        c.extend([0x05, 0x00]);
    }
    tlv(0x30, &c)
}

/// The parts of an RSASSA-PSS-params, each `None` to leave the field out (its DEFAULT).
#[derive(Clone)]
struct Params {
    hash: Option<Vec<u8>>,
    mgf_hash: Option<Vec<u8>>,
    salt: Option<Vec<u8>>,
    trailer: Option<Vec<u8>>,
}

impl Params {
    /// SHA-2 hash `n` (1: SHA-256, 2: SHA-384, 3: SHA-512) everywhere, salt `salt`.
    fn sha2(n: u8, salt: u8) -> Self {
        Self {
            hash: Some(sha2(n, true)),
            mgf_hash: Some(sha2(n, true)),
            salt: Some(tlv(0x02, &[salt])),
            trailer: None,
        }
    }

    /// The AlgorithmIdentifier id-RSASSA-PSS with these parameters.
    fn algid(&self) -> Vec<u8> {
        let mut p = Vec::new();
        if let Some(hash) = &self.hash {
            p.extend(tlv(0xa0, hash));
        }
        if let Some(mh) = &self.mgf_hash {
            let mut mgf = tlv(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08],
            );
            mgf.extend(mh);
            p.extend(tlv(0xa1, &tlv(0x30, &mgf)));
        }
        if let Some(s) = &self.salt {
            p.extend(tlv(0xa2, s));
        }
        if let Some(t) = &self.trailer {
            p.extend(tlv(0xa3, t));
        }
        let mut c = tlv(
            0x06,
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a],
        );
        c.extend(tlv(0x30, &p));
        tlv(0x30, &c)
    }
}

/// RFC 7427 authentication data: length of the AlgorithmIdentifier, it, the signature.
fn auth_data(algid: &[u8], sig: &[u8]) -> Vec<u8> {
    let mut d = vec![u8::try_from(algid.len()).unwrap()];
    d.extend(algid);
    d.extend(sig);
    d
}

fn rfc7427_parts(auth: &[u8]) -> (&[u8], &[u8]) {
    let len = usize::from(auth[0]);
    (&auth[1..1 + len], &auth[1 + len..])
}

fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "ippm-pss-{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs openssl in `dir`; panics unless it succeeds.
fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl (Debian package openssl): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A CA and an end entity `pss.example` (RSA 2048, and a P-256 one `ec.crt`) made by
/// openssl in a fresh directory, and the octets to sign in `octets.bin`.
struct Fixture {
    dir: PathBuf,
    store: TrustStore,
    ee: Vec<u8>,
    ec_ee: Vec<u8>,
    octets: Vec<u8>,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let dir = temp_dir(name);
        let o = |args: &[&str]| openssl(&dir, args);
        let rsa = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];
        o(&[&["genpkey"][..], &rsa, &["-out", "ca.key"]].concat());
        o(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=PSS test CA",
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
            "-out",
            "ca.crt",
        ]);
        std::fs::write(dir.join("ext.cnf"), format!("subjectAltName=DNS:{ID}\n")).unwrap();
        o(&[&["genpkey"][..], &rsa, &["-out", "ee.key"]].concat());
        o(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ec.key",
        ]);
        for (key, cert) in [("ee.key", "ee.crt"), ("ec.key", "ec.crt")] {
            o(&[
                "req",
                "-new",
                "-key",
                key,
                "-subj",
                "/CN=pss.example",
                "-out",
                "req.csr",
            ]);
            o(&[
                "x509", "-req", "-in", "req.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-days",
                "30", "-extfile", "ext.cnf", "-outform", "DER", "-out", cert,
            ]);
        }
        let octets: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        std::fs::write(dir.join("octets.bin"), &octets).unwrap();
        Self {
            store: TrustStore::load(&[&dir.join("ca.crt")]).unwrap(),
            ee: std::fs::read(dir.join("ee.crt")).unwrap(),
            ec_ee: std::fs::read(dir.join("ec.crt")).unwrap(),
            octets,
            dir,
        }
    }

    /// openssl's RSASSA-PSS signature of the octets with `digest` and salt length `salt`
    /// (`digest` for the hash length, or a number).
    fn openssl_sign(&self, digest: &str, salt: &str) -> Vec<u8> {
        openssl(
            &self.dir,
            &[
                "dgst",
                &format!("-{digest}"),
                "-sign",
                "ee.key",
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                &format!("rsa_pss_saltlen:{salt}"),
                "-sigopt",
                &format!("rsa_mgf1_md:{digest}"),
                "-out",
                "osig.bin",
                "octets.bin",
            ],
        );
        std::fs::read(self.dir.join("osig.bin")).unwrap()
    }

    fn verify_with(&self, ee: &[u8], data: &[u8], octets: &[u8]) -> Result<(), AuthError> {
        self.store.verify_peer(
            ee,
            &[],
            &Identity::Fqdn(ID.into()),
            AuthMethod::DIGITAL_SIGNATURE,
            data,
            octets,
            SystemTime::now(),
        )
    }

    fn verify(&self, data: &[u8]) -> Result<(), AuthError> {
        self.verify_with(&self.ee, data, &self.octets)
    }

    fn credential(&self) -> LocalCredential {
        LocalCredential::load(&[&self.dir.join("ee.crt")], &self.dir.join("ee.key")).unwrap()
    }
}

#[test]
fn golden_identifiers_are_consistent() {
    // Our builder reproduces every golden encoding: the check that the octets below
    // (and the mutations built with it) mean what the tests say.
    assert_eq!(hex::encode(Params::sha2(1, 32).algid()), MOZ_PSS_SHA256);
    assert_eq!(hex::encode(Params::sha2(2, 48).algid()), MOZ_PSS_SHA384);
    assert_eq!(hex::encode(Params::sha2(3, 64).algid()), MOZ_PSS_SHA512);
    let a43 = Params {
        trailer: Some(vec![0x02, 0x01, 0x01]),
        ..Params::sha2(1, 32)
    };
    assert_eq!(hex::encode(a43.algid()), RFC7427_A43);
    let empty = Params {
        hash: None,
        mgf_hash: None,
        salt: None,
        trailer: None,
    };
    assert_eq!(hex::encode(empty.algid()), RFC7427_A41);
    let sha1 = tlv(
        0x30,
        &[0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00],
    );
    let a42 = Params {
        hash: Some(sha1.clone()),
        mgf_hash: Some(sha1),
        salt: Some(vec![0x02, 0x01, 0x14]),
        trailer: Some(vec![0x02, 0x01, 0x01]),
    };
    assert_eq!(hex::encode(a42.algid()), RFC7427_A42);
}

#[test]
fn we_sign_pss_by_default_with_the_golden_identifiers_and_openssl_verifies() {
    let f = Fixture::new("sign");
    let cred = f.credential();
    assert_eq!(cred.rsa_signature(), RsaSignature::Pss);
    let cases = [
        (ALL_HASHES, MOZ_PSS_SHA256, "sha256"),
        (&[HASH_SHA2_384][..], MOZ_PSS_SHA384, "sha384"),
        (&[HASH_SHA2_512, 7][..], MOZ_PSS_SHA512, "sha512"),
    ];
    for (hashes, golden, digest) in cases {
        let (m, d) = cred.sign(&f.octets, Some(hashes)).unwrap();
        assert_eq!(m, AuthMethod::DIGITAL_SIGNATURE);
        let (algid, sig) = rfc7427_parts(&d);
        assert_eq!(hex::encode(algid), golden, "{digest}");
        assert_eq!(sig.len(), 256);
        f.verify(&d).unwrap();
        // openssl: PSS with this digest, MGF1 with it, salt exactly the digest's length.
        std::fs::write(f.dir.join("sig.bin"), sig).unwrap();
        openssl(
            &f.dir,
            &[
                "x509", "-in", "ee.crt", "-inform", "DER", "-noout", "-pubkey", "-out", "ee.pub",
            ],
        );
        let v = openssl(
            &f.dir,
            &[
                "dgst",
                &format!("-{digest}"),
                "-verify",
                "ee.pub",
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:digest",
                "-sigopt",
                &format!("rsa_mgf1_md:{digest}"),
                "-signature",
                "sig.bin",
                "octets.bin",
            ],
        );
        assert_eq!(String::from_utf8(v).unwrap().trim(), "Verified OK");
        // PSS is randomized: a second signature differs and verifies too.
        let (_, again) = cred.sign(&f.octets, Some(hashes)).unwrap();
        assert_ne!(again, d);
        f.verify(&again).unwrap();
    }
    assert_eq!(
        cred.sign(&f.octets, Some(&[1, 5])),
        Err(AuthError::NoCommonHash)
    );
    assert_eq!(
        cred.sign(&f.octets, None),
        Err(AuthError::Sha1SigningNotOffered)
    );
    // PKCS#1 v1.5 on request.
    let pkcs1 = f.credential().with_rsa_signature(RsaSignature::Pkcs1);
    let (_, d) = pkcs1.sign(&f.octets, Some(ALL_HASHES)).unwrap();
    assert_eq!(hex::encode(rfc7427_parts(&d).0), RFC_SHA256_RSA);
    f.verify(&d).unwrap();
}

#[test]
fn openssl_signatures_verify_in_every_encoding() {
    let f = Fixture::new("verify");
    for (n, digest, len) in [(1, "sha256", 32), (2, "sha384", 48), (3, "sha512", 64)] {
        let sig = f.openssl_sign(digest, "digest");
        let base = Params::sha2(n, len);
        let encodings = [
            base.clone(),
            // Hash parameters absent instead of NULL (RFC 4055 §2.1: accept both).
            Params {
                hash: Some(sha2(n, false)),
                mgf_hash: Some(sha2(n, false)),
                ..base.clone()
            },
            // trailerField 1 spelled out, as in RFC 7427 A.4.3.
            Params {
                trailer: Some(vec![0x02, 0x01, 0x01]),
                ..base.clone()
            },
        ];
        for p in encodings {
            let algid = p.algid();
            f.verify(&auth_data(&algid, &sig))
                .unwrap_or_else(|e| panic!("{digest} {}: {e}", hex::encode(&algid)));
            let mut other = f.octets.clone();
            other[3] ^= 1;
            assert_eq!(
                f.verify_with(&f.ee, &auth_data(&algid, &sig), &other),
                Err(AuthError::BadSignature)
            );
        }
        // The same signature claimed for another hash does not verify.
        let wrong = Params::sha2(if n == 1 { 3 } else { 1 }, if n == 1 { 64 } else { 32 });
        assert_eq!(
            f.verify(&auth_data(&wrong.algid(), &sig)),
            Err(AuthError::BadSignature)
        );
        // PSS on a certificate with an EC key.
        assert!(matches!(
            f.verify_with(&f.ec_ee, &auth_data(&base.algid(), &sig), &f.octets),
            Err(AuthError::MethodKeyMismatch { .. })
        ));
    }
    // RFC 7427's own SHA-256 example (A.4.3) with openssl's signature.
    let sig = f.openssl_sign("sha256", "digest");
    f.verify(&auth_data(&h(RFC7427_A43), &sig)).unwrap();
}

#[test]
fn other_salt_lengths_are_refused() {
    let f = Fixture::new("salt");
    // openssl's default for signing is the largest salt; ring verifies only hLen.
    let sig20 = f.openssl_sign("sha256", "20");
    assert_eq!(
        f.verify(&auth_data(&Params::sha2(1, 20).algid(), &sig20)),
        Err(AuthError::Pss(PssError::SaltLength {
            got: 20,
            expected: 32
        }))
    );
    // Claimed as salt 32, it is simply a bad signature.
    assert_eq!(
        f.verify(&auth_data(&Params::sha2(1, 32).algid(), &sig20)),
        Err(AuthError::BadSignature)
    );
    let max = f.openssl_sign("sha512", "max");
    assert_eq!(
        f.verify(&auth_data(&Params::sha2(3, 64).algid(), &max)),
        Err(AuthError::BadSignature)
    );
    // saltLength absent means 20.
    let absent = Params {
        salt: None,
        ..Params::sha2(1, 32)
    };
    assert_eq!(
        f.verify(&auth_data(&absent.algid(), &sig20)),
        Err(AuthError::Pss(PssError::SaltLength {
            got: 20,
            expected: 32
        }))
    );
}

#[test]
fn unverifiable_and_malformed_parameters_are_typed_errors() {
    let f = Fixture::new("params");
    let sig = f.openssl_sign("sha512", "digest");
    let check = |algid: &[u8]| f.verify(&auth_data(algid, &sig));
    let pss = |e| Err(AuthError::Pss(e));
    let base = Params::sha2(3, 64);
    // RFC 7427 A.4.1 and A.4.2: SHA-1.
    assert_eq!(check(&h(RFC7427_A41)), pss(PssError::UnsupportedHash));
    assert_eq!(check(&h(RFC7427_A42)), pss(PssError::UnsupportedHash));
    // SHA-512 signature with MGF1-SHA-256; MGF1 absent (SHA-1); another MGF; SHA-224.
    let mgf256 = Params {
        mgf_hash: Some(sha2(1, true)),
        ..base.clone()
    };
    assert_eq!(check(&mgf256.algid()), pss(PssError::UnsupportedMgf));
    let no_mgf = Params {
        mgf_hash: None,
        ..base.clone()
    };
    assert_eq!(check(&no_mgf.algid()), pss(PssError::UnsupportedMgf));
    let mut other_mgf = base.algid();
    let at = other_mgf
        .windows(9)
        .position(|w| w == [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08])
        .unwrap();
    other_mgf[at + 8] = 0x09;
    assert_eq!(check(&other_mgf), pss(PssError::UnsupportedMgf));
    let sha224 = Params {
        hash: Some(sha2(4, true)),
        mgf_hash: Some(sha2(4, true)),
        salt: Some(vec![0x02, 0x01, 28]),
        trailer: None,
    };
    assert_eq!(check(&sha224.algid()), pss(PssError::UnsupportedHash));
    let mgf224 = Params {
        mgf_hash: Some(sha2(4, true)),
        ..base.clone()
    };
    assert_eq!(check(&mgf224.algid()), pss(PssError::UnsupportedMgf));
    // Trailer field 2.
    let trailer2 = Params {
        trailer: Some(vec![0x02, 0x01, 0x02]),
        ..base.clone()
    };
    assert_eq!(check(&trailer2.algid()), pss(PssError::TrailerField(2)));
    // Malformed: parameters absent; a negative, a huge and a non-INTEGER salt; hash
    // parameters other than NULL; fields out of order; an unknown field; implicit tags;
    // octets after the parameters or after the identifier.
    let mut malformed = vec![tlv(
        0x30,
        &[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a,
        ],
    )];
    for salt in [
        vec![0x02, 0x01, 0xff],
        [&[0x02, 0x09, 0x01][..], &[0; 8]].concat(),
        vec![0x04, 0x01, 0x40],
    ] {
        malformed.push(
            Params {
                salt: Some(salt),
                ..base.clone()
            }
            .algid(),
        );
    }
    let bad_null = tlv(
        0x30,
        &[
            &tlv(0x06, &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 3])[..],
            &[0x04, 0x00],
        ]
        .concat(),
    );
    malformed.push(
        Params {
            hash: Some(bad_null),
            ..base.clone()
        }
        .algid(),
    );
    let alg = base.algid();
    // Swap the [0] and [1] fields: 0x0f+2 octets at 15, 0x1c+2 after them.
    let (head, rest) = alg.split_at(15);
    let (f0, rest) = rest.split_at(17);
    let (f1, rest) = rest.split_at(30);
    malformed.push([head, f1, f0, rest].concat());
    // An unknown [4] field inside the parameters.
    let mut extra = Params {
        trailer: Some(vec![0x02, 0x01, 0x01]),
        ..base.clone()
    }
    .algid();
    extra[1] += 5;
    extra[14] += 5;
    extra.extend([0xa4, 0x03, 0x02, 0x01, 0x00]);
    malformed.push(extra);
    let mut implicit = alg.clone();
    implicit[15] = 0x80;
    malformed.push(implicit);
    let mut inner_trailing = alg.clone();
    inner_trailing[1] += 2;
    inner_trailing[14] += 2;
    inner_trailing.extend([0x05, 0x00]);
    malformed.push(inner_trailing);
    let mut outer_trailing = alg.clone();
    outer_trailing[1] += 2;
    outer_trailing.extend([0x05, 0x00]);
    malformed.push(outer_trailing);
    // Every truncation that keeps the OID (shorter ones do not name PSS).
    for n in 13..alg.len() {
        malformed.push(alg[..n].to_vec());
    }
    for m in &malformed {
        assert_eq!(check(m), pss(PssError::Malformed), "{}", hex::encode(m));
    }
    for n in 0..13 {
        assert_eq!(
            check(&alg[..n]),
            Err(AuthError::UnsupportedSignatureAlgorithm),
            "{n}"
        );
    }
    // The unmodified identifier does verify (so the refusals above are the parameters').
    check(&alg).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any damage to the identifier, its length octet or the signature is an error, never
    /// a panic and never an accepted signature.
    #[test]
    fn damaged_pss_auth_data_never_verifies(pos in 0usize..400, xor in 1u8..=255, cut in 0usize..400) {
        let fixture = shared();
        let (f, data) = (&fixture.0, &fixture.1);
        let mut flipped = data.clone();
        let i = pos % flipped.len();
        flipped[i] ^= xor;
        prop_assert!(f.verify(&flipped).is_err());
        let truncated = &data[..cut % data.len()];
        prop_assert!(f.verify(truncated).is_err());
    }
}

/// One fixture and one valid SHA-512 PSS AUTH payload for all proptest cases.
fn shared() -> &'static (Fixture, Vec<u8>) {
    static SHARED: std::sync::OnceLock<(Fixture, Vec<u8>)> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let f = Fixture::new("prop");
        let sig = f.openssl_sign("sha512", "digest");
        let data = auth_data(&Params::sha2(3, 64).algid(), &sig);
        f.verify(&data).unwrap();
        (f, data)
    })
}
