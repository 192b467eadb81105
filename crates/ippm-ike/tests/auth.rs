//! IKEv2 authentication against independent oracles: python3's hmac for shared-key AUTH and
//! the signed octets, the openssl CLI and strongSwan's `pki` for keys, certificates and
//! signatures, rcgen for certificate chains.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ippm_ike::auth::{
    AuthError, HASH_SHA2_256, HASH_SHA2_384, HASH_SHA2_512, Identity, LocalCredential, PrivateKey,
    RsaSignature, TrustStore, hash_algorithms_notify_data, parse_hash_algorithms, psk_auth,
    psk_verify, signed_octets,
};
use ippm_ike::codepoints::{AuthMethod, IdType};
use ippm_ike::keys::Prf;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, date_time_ymd,
};

/// RFC 7427 Appendix A AlgorithmIdentifiers, copied from the RFC's hex dumps.
const RFC_SHA256_RSA: &str = "300d06092a864886f70d01010b0500";
const RFC_SHA512_RSA: &str = "300d06092a864886f70d01010d0500";
const RFC_ECDSA_SHA256: &str = "300a06082a8648ce3d040302";
const RFC_ECDSA_SHA384: &str = "300a06082a8648ce3d040303";
/// RSASSA-PSS with SHA-256 and SHA-512 (MGF1 with the same hash, salt the hash's length) as
/// ippm sends them: the Mozilla Root Store Policy's DER (tests/pss.rs has the details).
const PSS_SHA256: &str = "304106092a864886f70d01010a3034a00f300d06096086480165030402010500\
                          a11c301a06092a864886f70d010108300d06096086480165030402010500a203\
                          020120";
const PSS_SHA512: &str = "304106092a864886f70d01010a3034a00f300d06096086480165030402030500\
                          a11c301a06092a864886f70d010108300d06096086480165030402030500a203\
                          020140";

const ALL_HASHES: &[u16] = &[HASH_SHA2_256, HASH_SHA2_384, HASH_SHA2_512];

fn run(cmd: &str, args: &[&str], dir: &Path) -> Vec<u8> {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn python(script: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "ippm-auth-{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// 2025-06-01, inside the validity of the rcgen certificates (2024..2030).
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_748_736_000)
}

fn prf_name(prf: Prf) -> &'static str {
    match prf {
        Prf::HmacSha1 => "sha1",
        Prf::HmacSha256 => "sha256",
        Prf::HmacSha384 => "sha384",
        Prf::HmacSha512 => "sha512",
    }
}

#[test]
fn psk_auth_matches_python_hmac() {
    let psk = b"a shared secret of some length";
    let octets: Vec<u8> = (0..200u8).collect();
    for prf in [
        Prf::HmacSha1,
        Prf::HmacSha256,
        Prf::HmacSha384,
        Prf::HmacSha512,
    ] {
        let h = prf_name(prf);
        let expected = python(&format!(
            "import hmac,hashlib\nk=hmac.new(b'a shared secret of some length', b'Key Pad for IKEv2', hashlib.{h}).digest()\n\
             print(hmac.new(k, bytes(range(200)), hashlib.{h}).hexdigest())"
        ));
        let got = psk_auth(prf, psk, &octets);
        assert_eq!(hex::encode(got.as_slice()), expected, "{prf:?}");
        assert!(psk_verify(prf, psk, &octets, &got));
        let mut bad = got.to_vec();
        bad[3] ^= 1;
        assert!(!psk_verify(prf, psk, &octets, &bad));
        assert!(!psk_verify(prf, psk, &octets, &got[..got.len() - 1]));
        assert!(!psk_verify(prf, b"another secret", &octets, &got));
        assert!(!psk_verify(prf, psk, &octets[1..], &got));
    }
}

#[test]
fn signed_octets_layout_matches_rfc7296() {
    let msg: Vec<u8> = (0..120u8).collect();
    let nonce = [0xabu8; 32];
    let sk_p: Vec<u8> = (100..132u8).collect();
    let id = Identity::Fqdn("psk-responder.example".into());
    let got = signed_octets(Prf::HmacSha256, &msg, &nonce, &sk_p, &id);
    let expected = python(
        "import hmac,hashlib\n\
         m=hmac.new(bytes(range(100,132)), bytes([2,0,0,0])+b'psk-responder.example', hashlib.sha256).digest()\n\
         print((bytes(range(120))+bytes([0xab]*32)+m).hex())",
    );
    assert_eq!(hex::encode(&got), expected);
    let v4 = signed_octets(
        Prf::HmacSha1,
        &[],
        &[],
        b"k",
        &Identity::Ipv4(Ipv4Addr::new(192, 0, 2, 1)),
    );
    let expected = python(
        "import hmac,hashlib\nprint(hmac.new(b'k', bytes([1,0,0,0,192,0,2,1]), hashlib.sha1).hexdigest())",
    );
    assert_eq!(hex::encode(&v4), expected);
}

#[test]
fn hash_algorithm_notify() {
    assert_eq!(hash_algorithms_notify_data(), [0, 2, 0, 3, 0, 4]);
    assert_eq!(
        parse_hash_algorithms(&[0, 2, 0, 5, 0x12, 0x34]).unwrap(),
        [2, 5, 0x1234]
    );
    assert_eq!(parse_hash_algorithms(&[]).unwrap(), Vec::<u16>::new());
    assert!(matches!(
        parse_hash_algorithms(&[0, 2, 0]),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn identities_parse_encode_and_display() {
    let cases = [
        ("192.0.2.1", IdType::IPV4_ADDR, vec![192, 0, 2, 1]),
        (
            "2001:db8::1",
            IdType::IPV6_ADDR,
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)
                .octets()
                .to_vec(),
        ),
        (
            "user@example.org",
            IdType::RFC822_ADDR,
            b"user@example.org".to_vec(),
        ),
        (
            "psk-responder.example",
            IdType::FQDN,
            b"psk-responder.example".to_vec(),
        ),
        ("@odd@name", IdType::FQDN, b"odd@name".to_vec()),
    ];
    for (text, ty, data) in cases {
        let id = Identity::parse(text).unwrap();
        assert_eq!(id.to_payload(), (ty, data.clone()), "{text}");
        assert_eq!(Identity::from_payload(ty, &data).unwrap(), id);
        if !text.starts_with('@') {
            assert_eq!(id.to_string(), text);
        }
    }
    assert!(matches!(
        Identity::from_payload(IdType::IPV4_ADDR, &[1, 2, 3]),
        Err(AuthError::InvalidIdentity(_))
    ));
    assert!(matches!(
        Identity::from_payload(IdType::DER_ASN1_DN, &[0x30, 0x05, 1]),
        Err(AuthError::InvalidIdentity(_))
    ));
    assert!(matches!(
        Identity::from_payload(IdType::KEY_ID, b"x"),
        Err(AuthError::UnsupportedIdType(IdType::KEY_ID))
    ));
    assert!(Identity::parse("").is_err());
    assert!(Identity::parse("C=XX, BOGUS=1").is_err());
}

#[test]
fn dn_strings_encode_like_openssl() {
    let dir = temp_dir("dn");
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "k.pem",
            "-subj",
            "/C=XX/O=Example Org/CN=name.example",
            "-days",
            "1",
            "-outform",
            "DER",
            "-out",
            "c.der",
        ],
        &dir,
    );
    let cert = std::fs::read(dir.join("c.der")).unwrap();
    let from_cert = Identity::from_cert_subject(&cert).unwrap();
    let parsed = Identity::parse("C=XX, O=Example Org, CN=name.example").unwrap();
    assert_eq!(parsed, from_cert);
    assert_eq!(parsed.to_string(), "C=XX, O=Example Org, CN=name.example");
    let (ty, der) = parsed.to_payload();
    assert_eq!(ty, IdType::DER_ASN1_DN);
    assert_eq!(Identity::from_payload(ty, &der).unwrap(), parsed);
    let hex_form = Identity::parse(&format!("dn:{}", hex::encode(&der))).unwrap();
    assert_eq!(hex_form, parsed);
    // openssl's own rendering of the subject, one RDN per line.
    let text = String::from_utf8(run(
        "openssl",
        &[
            "x509", "-inform", "DER", "-in", "c.der", "-noout", "-subject", "-nameopt", "RFC2253",
        ],
        &dir,
    ))
    .unwrap();
    assert_eq!(text.trim(), "subject=CN=name.example,O=Example Org,C=XX");
}

// ---------------------------------------------------------------------------------------
// rcgen chains

#[derive(Clone, Copy, Debug)]
enum Alg {
    Rsa,
    P256,
    P384,
}

fn key_for(alg: Alg, dir: &Path) -> KeyPair {
    match alg {
        Alg::Rsa => {
            // ring cannot generate RSA keys: openssl does, rcgen signs with it.
            run(
                "openssl",
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    "rsa.pem",
                ],
                dir,
            );
            let pem = std::fs::read_to_string(dir.join("rsa.pem")).unwrap();
            KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap()
        }
        Alg::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        Alg::P384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
    }
}

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    der: Vec<u8>,
}

fn validity(p: &mut CertificateParams) {
    p.not_before = date_time_ymd(2024, 1, 1);
    p.not_after = date_time_ymd(2030, 1, 1);
}

fn make_ca(name: &str, alg: Alg, dir: &Path, parent: Option<&Ca>) -> Ca {
    let key = key_for(alg, dir);
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params);
    let cert = match parent {
        None => params.self_signed(&key).unwrap(),
        Some(p) => params
            .signed_by(&key, &Issuer::from_params(&p.params, &p.key))
            .unwrap(),
    };
    Ca {
        der: cert.der().to_vec(),
        params,
        key,
    }
}

fn make_ee(
    ca: &Ca,
    alg: Alg,
    dir: &Path,
    edit: impl FnOnce(&mut CertificateParams),
) -> (Vec<u8>, KeyPair) {
    let key = key_for(alg, dir);
    let mut params = CertificateParams::new(vec!["responder.example".to_string()]).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CountryName, "XX");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Org");
    params
        .distinguished_name
        .push(DnType::CommonName, "responder.example");
    params.subject_alt_names.extend([
        SanType::IpAddress("192.0.2.7".parse().unwrap()),
        SanType::IpAddress("2001:db8::7".parse().unwrap()),
        SanType::Rfc822Name("ike@example.org".try_into().unwrap()),
    ]);
    validity(&mut params);
    edit(&mut params);
    let cert = params
        .signed_by(&key, &Issuer::from_params(&ca.params, &ca.key))
        .unwrap();
    (cert.der().to_vec(), key)
}

fn credential(ee: &[u8], key: &KeyPair) -> LocalCredential {
    LocalCredential::new(
        vec![ee.to_vec()],
        PrivateKey::from_bytes(&key.serialize_der()).unwrap(),
    )
    .unwrap()
}

fn rfc7427_parts(auth: &[u8]) -> (&[u8], &[u8]) {
    let len = usize::from(auth[0]);
    (&auth[1..1 + len], &auth[1 + len..])
}

#[test]
fn sign_then_verify_every_method() {
    let dir = temp_dir("methods");
    let octets = b"RealMessage | NonceData | prf(SK_p, RestOfIDPayload)".repeat(5);
    for ca_alg in [Alg::P256, Alg::Rsa] {
        let ca = make_ca("Test CA", ca_alg, &dir, None);
        let store = TrustStore::from_der(vec![ca.der.clone()]).unwrap();
        for alg in [Alg::Rsa, Alg::P256, Alg::P384] {
            let (ee, key) = make_ee(&ca, alg, &dir, |_| {});
            let cred = credential(&ee, &key);
            let id = Identity::Fqdn("responder.example".into());
            let verify = |method, data: &[u8]| {
                store.verify_peer(&ee, &[], &id, method, data, &octets, now())
            };
            // RFC 7427 with the peer's hashes.
            let (method, data) = cred.sign(&octets, Some(ALL_HASHES)).unwrap();
            assert_eq!(method, AuthMethod::DIGITAL_SIGNATURE, "{alg:?}");
            let (algid, _) = rfc7427_parts(&data);
            let expected = match alg {
                Alg::Rsa => PSS_SHA256,
                Alg::P256 => RFC_ECDSA_SHA256,
                Alg::P384 => RFC_ECDSA_SHA384,
            };
            assert_eq!(hex::encode(algid), expected);
            verify(method, &data).unwrap();
            // Only SHA-512 offered.
            let signed = cred.sign(&octets, Some(&[HASH_SHA2_512]));
            match alg {
                Alg::Rsa => {
                    let (m, d) = signed.unwrap();
                    assert_eq!(hex::encode(rfc7427_parts(&d).0), PSS_SHA512);
                    verify(m, &d).unwrap();
                    // PKCS#1 v1.5 when configured.
                    let pkcs1 = credential(&ee, &key).with_rsa_signature(RsaSignature::Pkcs1);
                    for (hashes, want) in [
                        (ALL_HASHES, RFC_SHA256_RSA),
                        (&[HASH_SHA2_512][..], RFC_SHA512_RSA),
                    ] {
                        let (m, d) = pkcs1.sign(&octets, Some(hashes)).unwrap();
                        assert_eq!(hex::encode(rfc7427_parts(&d).0), want);
                        verify(m, &d).unwrap();
                    }
                }
                Alg::P256 => assert_eq!(signed.unwrap().0, AuthMethod::ECDSA_256),
                Alg::P384 => assert_eq!(signed.unwrap().0, AuthMethod::ECDSA_384),
            }
            // Without RFC 7427: RFC 4754 for ECDSA; RSA would need SHA-1 signing.
            match alg {
                Alg::Rsa => assert_eq!(
                    cred.sign(&octets, None),
                    Err(AuthError::Sha1SigningNotOffered)
                ),
                Alg::P256 | Alg::P384 => {
                    let (m, d) = cred.sign(&octets, None).unwrap();
                    let want = if matches!(alg, Alg::P256) {
                        (AuthMethod::ECDSA_256, 64)
                    } else {
                        (AuthMethod::ECDSA_384, 96)
                    };
                    assert_eq!((m, d.len()), want);
                    verify(m, &d).unwrap();
                    // The wrong RFC 4754 method for the curve.
                    let other = if m == AuthMethod::ECDSA_256 {
                        AuthMethod::ECDSA_384
                    } else {
                        AuthMethod::ECDSA_256
                    };
                    assert!(matches!(
                        verify(other, &d),
                        Err(AuthError::MethodKeyMismatch { .. })
                    ));
                }
            }
            assert_eq!(
                verify(AuthMethod::PSK, &data),
                Err(AuthError::UnsupportedMethod(AuthMethod::PSK))
            );
        }
    }
}

#[test]
fn failures_are_specific() {
    let dir = temp_dir("failures");
    let ca = make_ca("Test CA", Alg::P256, &dir, None);
    let other_ca = make_ca("Other CA", Alg::P256, &dir, None);
    let store = TrustStore::from_der(vec![ca.der.clone()]).unwrap();
    let other_store = TrustStore::from_der(vec![other_ca.der.clone()]).unwrap();
    let (ee, key) = make_ee(&ca, Alg::P256, &dir, |_| {});
    let cred = credential(&ee, &key);
    let octets = b"the signed octets".to_vec();
    let (method, data) = cred.sign(&octets, Some(ALL_HASHES)).unwrap();
    let id = Identity::Fqdn("responder.example".into());
    let check = |store: &TrustStore, id: &Identity, data: &[u8], octets: &[u8], at| {
        store.verify_peer(&ee, &[], id, method, data, octets, at)
    };
    check(&store, &id, &data, &octets, now()).unwrap();
    assert_eq!(
        check(&other_store, &id, &data, &octets, now()),
        Err(AuthError::UnknownCa)
    );
    let year = |y: u64| UNIX_EPOCH + Duration::from_secs((y - 1970) * 365 * 86400);
    assert_eq!(
        check(&store, &id, &data, &octets, year(2031)),
        Err(AuthError::Expired)
    );
    assert_eq!(
        check(&store, &id, &data, &octets, year(2023)),
        Err(AuthError::NotYetValid)
    );
    assert!(matches!(
        check(
            &store,
            &Identity::Fqdn("initiator.example".into()),
            &data,
            &octets,
            now()
        ),
        Err(AuthError::IdentityMismatch(_))
    ));
    let mut tampered = data.clone();
    let last = tampered.len() - 5;
    tampered[last] ^= 0x40;
    assert_eq!(
        check(&store, &id, &tampered, &octets, now()),
        Err(AuthError::BadSignature)
    );
    let mut bad_octets = octets.clone();
    bad_octets[0] ^= 1;
    assert_eq!(
        check(&store, &id, &data, &bad_octets, now()),
        Err(AuthError::BadSignature)
    );
    // A changed AlgorithmIdentifier (ecdsa-with-SHA384) no longer verifies.
    let mut alg384 = data.clone();
    alg384[12] = 0x03;
    assert_eq!(
        check(&store, &id, &alg384, &octets, now()),
        Err(AuthError::BadSignature)
    );
    // An RSA AlgorithmIdentifier on an EC key, an unknown one, truncated data.
    let mut rsa_alg = vec![15];
    rsa_alg.extend(hex::decode(RFC_SHA256_RSA).unwrap());
    rsa_alg.extend(rfc7427_parts(&data).1);
    assert!(matches!(
        check(&store, &id, &rsa_alg, &octets, now()),
        Err(AuthError::MethodKeyMismatch { .. })
    ));
    let mut unknown = data.clone();
    unknown[12] = 0x09;
    assert_eq!(
        check(&store, &id, &unknown, &octets, now()),
        Err(AuthError::UnsupportedSignatureAlgorithm)
    );
    assert!(matches!(
        check(&store, &id, &[40, 1, 2], &octets, now()),
        Err(AuthError::Malformed(_))
    ));
    assert!(matches!(
        check(&store, &id, &[], &octets, now()),
        Err(AuthError::Malformed(_))
    ));
    // A key that is not the certificate's.
    let other_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    assert_eq!(
        LocalCredential::new(
            vec![ee.clone()],
            PrivateKey::from_bytes(&other_key.serialize_der()).unwrap()
        )
        .unwrap_err(),
        AuthError::KeyMismatch
    );
    // Garbage certificates.
    assert!(matches!(
        store.verify_peer(b"\x30\x03abc", &[], &id, method, &data, &octets, now()),
        Err(AuthError::MalformedCertificate(_))
    ));
    assert!(TrustStore::from_der(vec![b"not a cert".to_vec()]).is_err());
}

#[test]
fn identities_match_subject_alt_names_and_subject() {
    let dir = temp_dir("ids");
    let ca = make_ca("Test CA", Alg::P384, &dir, None);
    let store = TrustStore::from_der(vec![ca.der.clone()]).unwrap();
    let (ee, key) = make_ee(&ca, Alg::P384, &dir, |_| {});
    let cred = credential(&ee, &key);
    let octets = b"octets".to_vec();
    let (method, data) = cred.sign(&octets, None).unwrap();
    let ok = [
        "responder.example",
        "RESPONDER.Example",
        "192.0.2.7",
        "2001:db8::7",
        "ike@example.org",
        "IKE@EXAMPLE.ORG",
        "C=XX, O=Org, CN=responder.example",
        "C=xx, O=ORG, CN=Responder.Example",
    ];
    for text in ok {
        let id = Identity::parse(text).unwrap();
        store
            .verify_peer(&ee, &[], &id, method, &data, &octets, now())
            .unwrap_or_else(|e| panic!("{text}: {e}"));
    }
    assert_eq!(
        cred.identity_dn(),
        Identity::from_cert_subject(&ee).unwrap()
    );
    assert_eq!(
        cred.identity_dn().to_string(),
        "C=XX, O=Org, CN=responder.example"
    );
    store
        .verify_peer(&ee, &[], &cred.identity_dn(), method, &data, &octets, now())
        .unwrap();
    let bad = [
        "other.example",
        "192.0.2.8",
        "2001:db8::8",
        "nobody@example.org",
        "C=XX, O=Org, CN=other.example",
        "O=Org, CN=responder.example",
    ];
    for text in bad {
        let id = Identity::parse(text).unwrap();
        assert!(
            matches!(
                store.verify_peer(&ee, &[], &id, method, &data, &octets, now()),
                Err(AuthError::IdentityMismatch(_))
            ),
            "{text}"
        );
    }
}

#[test]
fn chains_and_extended_key_usage() {
    let dir = temp_dir("chain");
    let root = make_ca("Root", Alg::P384, &dir, None);
    let inter = make_ca("Intermediate", Alg::P256, &dir, Some(&root));
    let store = TrustStore::from_der(vec![root.der.clone()]).unwrap();
    let id = Identity::Fqdn("responder.example".into());
    let octets = b"chain octets".to_vec();
    let (ee, key) = make_ee(&inter, Alg::Rsa, &dir, |_| {});
    let cred = LocalCredential::new(
        vec![ee.clone(), inter.der.clone()],
        PrivateKey::from_bytes(&key.serialize_der()).unwrap(),
    )
    .unwrap();
    let (m, d) = cred.sign(&octets, Some(ALL_HASHES)).unwrap();
    store
        .verify_peer(&ee, &cred.chain[1..], &id, m, &d, &octets, now())
        .unwrap();
    assert_eq!(
        store.verify_peer(&ee, &[], &id, m, &d, &octets, now()),
        Err(AuthError::UnknownCa)
    );
    // EKU: ipsecIKE, serverAuth, clientAuth and none are accepted; codeSigning alone is not.
    let eku_cases: [(Vec<ExtendedKeyUsagePurpose>, bool); 5] = [
        (vec![], true),
        (
            vec![ExtendedKeyUsagePurpose::Other(vec![
                1, 3, 6, 1, 5, 5, 7, 3, 17,
            ])],
            true,
        ),
        (vec![ExtendedKeyUsagePurpose::ServerAuth], true),
        (
            vec![
                ExtendedKeyUsagePurpose::CodeSigning,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            true,
        ),
        (vec![ExtendedKeyUsagePurpose::CodeSigning], false),
    ];
    for (ekus, accepted) in eku_cases {
        let (ee, key) = make_ee(&root, Alg::P256, &dir, |p| {
            p.extended_key_usages = ekus.clone()
        });
        let (m, d) = credential(&ee, &key).sign(&octets, None).unwrap();
        let r = store.verify_peer(&ee, &[], &id, m, &d, &octets, now());
        if accepted {
            r.unwrap_or_else(|e| panic!("{ekus:?}: {e}"));
        } else {
            assert_eq!(r, Err(AuthError::BadKeyUsage), "{ekus:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// openssl and strongSwan files

/// certreq_data equals openssl's SHA-1 of each CA's DER SubjectPublicKeyInfo.
fn openssl_spki_sha1(dir: &Path, cert: &str) -> String {
    run(
        "openssl",
        &["x509", "-in", cert, "-noout", "-pubkey", "-out", "pub.pem"],
        dir,
    );
    let out = run(
        "openssl",
        &[
            "pkey", "-pubin", "-in", "pub.pem", "-outform", "DER", "-out", "pub.der",
        ],
        dir,
    );
    assert!(out.is_empty());
    let out = String::from_utf8(run("openssl", &["dgst", "-sha1", "-r", "pub.der"], dir)).unwrap();
    out.split_whitespace().next().unwrap().to_owned()
}

#[test]
fn openssl_keys_and_certificates() {
    let dir = temp_dir("openssl");
    let o = |args: &[&str]| run("openssl", args, &dir);
    // CA: P-384 SEC1 key.
    o(&[
        "ecparam",
        "-name",
        "secp384r1",
        "-genkey",
        "-noout",
        "-out",
        "ca.key",
    ]);
    o(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-subj",
        "/C=XX/O=Test/CN=OpenSSL CA",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        "ca.crt",
    ]);
    o(&["x509", "-in", "ca.crt", "-outform", "DER", "-out", "ca.der"]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:moon.example,IP:192.0.2.1,email:moon@example.org\n\
         extendedKeyUsage=1.3.6.1.5.5.7.3.17\n",
    )
    .unwrap();
    // End entities: RSA PKCS#1 PEM, RSA PKCS#8 DER, EC SEC1 PEM and DER, EC PKCS#8 PEM.
    o(&["genrsa", "-traditional", "-out", "rsa.key", "2048"]);
    o(&[
        "pkey",
        "-in",
        "rsa.key",
        "-outform",
        "DER",
        "-out",
        "rsa.p8.der",
    ]);
    o(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "ec.key",
    ]);
    o(&[
        "ec",
        "-in",
        "ec.key",
        "-outform",
        "DER",
        "-out",
        "ec.sec1.der",
    ]);
    o(&["pkey", "-in", "ec.key", "-out", "ec.p8.pem"]);
    for k in ["rsa", "ec"] {
        o(&[
            "req",
            "-new",
            "-key",
            &format!("{k}.key"),
            "-subj",
            &format!("/C=XX/O=Test/CN={k}.moon.example"),
            "-out",
            &format!("{k}.csr"),
        ]);
        o(&[
            "x509",
            "-req",
            "-in",
            &format!("{k}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            "ext.cnf",
            "-out",
            &format!("{k}.crt"),
        ]);
        o(&[
            "x509",
            "-in",
            &format!("{k}.crt"),
            "-outform",
            "DER",
            "-out",
            &format!("{k}.der"),
        ]);
    }
    assert!(
        std::fs::read_to_string(dir.join("rsa.key"))
            .unwrap()
            .contains("BEGIN RSA PRIVATE KEY")
    );
    assert!(
        std::fs::read_to_string(dir.join("ec.key"))
            .unwrap()
            .contains("BEGIN EC PRIVATE KEY")
    );
    for ca in ["ca.crt", "ca.der"] {
        let store = TrustStore::load(&[&dir.join(ca)]).unwrap();
        assert_eq!(
            hex::encode(store.certreq_data()),
            openssl_spki_sha1(&dir, "ca.crt")
        );
    }
    let store = TrustStore::load(&[&dir.join("ca.crt")]).unwrap();
    let octets: Vec<u8> = (0..=255).collect();
    std::fs::write(dir.join("octets.bin"), &octets).unwrap();
    let now = SystemTime::now();
    let pairs = [
        ("rsa.crt", "rsa.key"),
        ("rsa.der", "rsa.p8.der"),
        ("ec.crt", "ec.key"),
        ("ec.der", "ec.sec1.der"),
        ("ec.crt", "ec.p8.pem"),
    ];
    for (cert, key) in pairs {
        let cred = LocalCredential::load(&[&dir.join(cert)], &dir.join(key))
            .unwrap_or_else(|e| panic!("{cert} {key}: {e}"));
        let (m, d) = cred.sign(&octets, Some(ALL_HASHES)).unwrap();
        for id in ["moon.example", "192.0.2.1", "moon@example.org"] {
            store
                .verify_peer(
                    &cred.chain[0],
                    &[],
                    &Identity::parse(id).unwrap(),
                    m,
                    &d,
                    &octets,
                    now,
                )
                .unwrap_or_else(|e| panic!("{cert} {id}: {e}"));
        }
        // Our RFC 7427 signature verifies with openssl, with the hash its
        // AlgorithmIdentifier names (as openssl reads it): RSASSA-PSS (SHA-256, MGF1 with
        // SHA-256, salt 32) for RSA, ECDSA with SHA-256.
        let (algid, sig) = rfc7427_parts(&d);
        std::fs::write(dir.join("algid.der"), algid).unwrap();
        std::fs::write(dir.join("sig.bin"), sig).unwrap();
        let parsed =
            String::from_utf8(o(&["asn1parse", "-inform", "DER", "-in", "algid.der"])).unwrap();
        let rsa = parsed.contains("rsassaPss");
        assert!(
            (rsa && parsed.contains("sha256") && parsed.contains("mgf1") && parsed.contains(":20"))
                || parsed.contains("ecdsa-with-SHA256"),
            "{parsed}"
        );
        o(&[
            "x509",
            "-in",
            cert,
            "-inform",
            if cert.ends_with("der") { "DER" } else { "PEM" },
            "-noout",
            "-pubkey",
            "-out",
            "ee.pub",
        ]);
        let pss: &[&str] = if rsa {
            &[
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:digest",
            ]
        } else {
            &[]
        };
        let v = o(&[
            &["dgst", "-sha256", "-verify", "ee.pub"][..],
            pss,
            &["-signature", "sig.bin", "octets.bin"],
        ]
        .concat());
        assert_eq!(String::from_utf8(v).unwrap().trim(), "Verified OK");
    }
    // Signatures made by openssl verify: RFC 7427 (RSA and ECDSA with SHA-256, SHA-384 and
    // SHA-512) and method 1 (RSA PKCS#1 with SHA-1).
    let ee_rsa = std::fs::read(dir.join("rsa.der")).unwrap();
    let ee_ec = std::fs::read(dir.join("ec.der")).unwrap();
    let id = Identity::Fqdn("moon.example".into());
    let cases = [
        ("rsa.key", "-sha256", RFC_SHA256_RSA, &ee_rsa),
        (
            "rsa.key",
            "-sha384",
            "300d06092a864886f70d01010c0500",
            &ee_rsa,
        ),
        ("rsa.key", "-sha512", RFC_SHA512_RSA, &ee_rsa),
        ("ec.key", "-sha256", RFC_ECDSA_SHA256, &ee_ec),
        ("ec.key", "-sha384", RFC_ECDSA_SHA384, &ee_ec),
        ("ec.key", "-sha512", "300a06082a8648ce3d040304", &ee_ec),
    ];
    for (key, hash, algid, ee) in cases {
        o(&["dgst", hash, "-sign", key, "-out", "osig.bin", "octets.bin"]);
        let sig = std::fs::read(dir.join("osig.bin")).unwrap();
        let algid = hex::decode(algid).unwrap();
        let mut data = vec![algid.len() as u8];
        data.extend(&algid);
        data.extend(&sig);
        store
            .verify_peer(
                ee,
                &[],
                &id,
                AuthMethod::DIGITAL_SIGNATURE,
                &data,
                &octets,
                now,
            )
            .unwrap_or_else(|e| panic!("{key} {hash}: {e}"));
        assert_eq!(
            store.verify_peer(
                ee,
                &[],
                &id,
                AuthMethod::DIGITAL_SIGNATURE,
                &data,
                &octets[1..],
                now
            ),
            Err(AuthError::BadSignature)
        );
    }
    o(&[
        "dgst",
        "-sha1",
        "-sign",
        "rsa.key",
        "-out",
        "sha1.bin",
        "octets.bin",
    ]);
    // Our RFC 4754 signature (method 9, r|s) verifies with openssl once python3 wraps r and s
    // in the DER SEQUENCE openssl reads.
    let cred = LocalCredential::load(&[&dir.join("ec.crt")], &dir.join("ec.key")).unwrap();
    let (m, rs) = cred.sign(&octets, None).unwrap();
    assert_eq!((m, rs.len()), (AuthMethod::ECDSA_256, 64));
    let der = python(&format!(
        "rs=bytes.fromhex('{}')\n\
         def i(b):\n b=b.lstrip(bytes(1)) or bytes(1)\n b=bytes(1)+b if b[0]&0x80 else b\n return bytes([2,len(b)])+b\n\
         body=i(rs[:32])+i(rs[32:])\nprint((bytes([0x30,len(body)])+body).hex())",
        hex::encode(&rs)
    ));
    std::fs::write(dir.join("rs.der"), hex::decode(der).unwrap()).unwrap();
    o(&[
        "x509", "-in", "ec.crt", "-noout", "-pubkey", "-out", "ec.pub",
    ]);
    let v = o(&[
        "dgst",
        "-sha256",
        "-verify",
        "ec.pub",
        "-signature",
        "rs.der",
        "octets.bin",
    ]);
    assert_eq!(String::from_utf8(v).unwrap().trim(), "Verified OK");
    let sig = std::fs::read(dir.join("sha1.bin")).unwrap();
    store
        .verify_peer(&ee_rsa, &[], &id, AuthMethod::RSA_SIG, &sig, &octets, now)
        .unwrap();
    assert!(matches!(
        store.verify_peer(&ee_ec, &[], &id, AuthMethod::RSA_SIG, &sig, &octets, now),
        Err(AuthError::MethodKeyMismatch { .. })
    ));
    // The wrong key for a certificate, and a missing file.
    assert_eq!(
        LocalCredential::load(&[&dir.join("rsa.crt")], &dir.join("ec.key")).unwrap_err(),
        AuthError::KeyMismatch
    );
    assert!(matches!(
        LocalCredential::load(&[&dir.join("nope.crt")], &dir.join("ec.key")),
        Err(AuthError::Load { .. })
    ));
    assert!(matches!(
        PrivateKey::load(&dir.join("ca.crt")),
        Err(AuthError::Load { .. })
    ));
}

#[test]
fn strongswan_pki_keys_and_certificates() {
    let dir = temp_dir("pki");
    let p = |args: &[&str]| run("pki", args, &dir);
    let w = |name: &str, data: Vec<u8>| std::fs::write(dir.join(name), data).unwrap();
    w(
        "ca.key",
        p(&[
            "--gen",
            "--type",
            "ecdsa",
            "--size",
            "384",
            "--outform",
            "pem",
        ]),
    );
    w(
        "ca.crt",
        p(&[
            "--self",
            "--ca",
            "--in",
            "ca.key",
            "--type",
            "ecdsa",
            "--lifetime",
            "30",
            "--dn",
            "C=CH, O=strongSwan, CN=strongSwan Root CA",
            "--outform",
            "pem",
        ]),
    );
    w(
        "rsa.key",
        p(&[
            "--gen",
            "--type",
            "rsa",
            "--size",
            "2048",
            "--outform",
            "pem",
        ]),
    );
    w(
        "rsa.der.key",
        p(&["--gen", "--type", "rsa", "--size", "3072"]),
    );
    w(
        "ec.key",
        p(&[
            "--gen",
            "--type",
            "ecdsa",
            "--size",
            "256",
            "--outform",
            "pem",
        ]),
    );
    w(
        "ec384.der.key",
        p(&["--gen", "--type", "ecdsa", "--size", "384"]),
    );
    assert!(
        std::fs::read_to_string(dir.join("rsa.key"))
            .unwrap()
            .contains("BEGIN RSA PRIVATE KEY")
    );
    assert!(
        std::fs::read_to_string(dir.join("ec.key"))
            .unwrap()
            .contains("BEGIN EC PRIVATE KEY")
    );
    let keys = [
        ("rsa.key", "rsa", "pem"),
        ("rsa.der.key", "rsa", "der"),
        ("ec.key", "ecdsa", "pem"),
        ("ec384.der.key", "ecdsa", "der"),
    ];
    let store = TrustStore::load(&[&dir.join("ca.crt")]).unwrap();
    assert_eq!(
        hex::encode(store.certreq_data()),
        openssl_spki_sha1(&dir, "ca.crt")
    );
    let octets = b"strongSwan-made credentials".to_vec();
    for (i, (key, ty, form)) in keys.into_iter().enumerate() {
        let cert = format!("ee{i}.crt");
        let dn = format!("C=CH, O=strongSwan, CN=moon{i}.strongswan.org");
        w(
            &cert,
            p(&[
                "--issue",
                "--cacert",
                "ca.crt",
                "--cakey",
                "ca.key",
                "--type",
                "priv",
                "--in",
                key,
                "--lifetime",
                "30",
                "--dn",
                &dn,
                "--san",
                &format!("moon{i}.strongswan.org"),
                "--san",
                "192.0.2.1",
                "--san",
                "moon@strongswan.org",
                "--flag",
                "serverAuth",
                "--outform",
                form,
            ]),
        );
        let _ = ty;
        let cred = LocalCredential::load(&[&dir.join(&cert)], &dir.join(key))
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        for hashes in [Some(ALL_HASHES), None] {
            let Ok((m, d)) = cred.sign(&octets, hashes) else {
                assert_eq!(hashes, None);
                continue;
            };
            for id in [
                dn.clone(),
                format!("moon{i}.strongswan.org"),
                "192.0.2.1".into(),
                "moon@strongswan.org".into(),
            ] {
                store
                    .verify_peer(
                        &cred.chain[0],
                        &[],
                        &Identity::parse(&id).unwrap(),
                        m,
                        &d,
                        &octets,
                        SystemTime::now(),
                    )
                    .unwrap_or_else(|e| panic!("{key} {id}: {e}"));
            }
        }
        // pki writes PrintableStrings where openssl and ippm write UTF8String: the
        // identities differ in octets but match (above) and read the same.
        assert_eq!(cred.identity_dn().to_string(), dn);
    }
}

/// Found by the ike_cert fuzz target: a configured DN whose encoding is longer than any ID
/// payload we accept loaded without error (and would have failed only at IKE_AUTH).
#[test]
fn configured_identities_are_bounded_like_received_ones() {
    let long = vec!["C=A"; 342].join(",");
    assert!(matches!(
        Identity::parse(&long),
        Err(AuthError::InvalidIdentity(_))
    ));
    let fits = vec!["C=A"; 340].join(",");
    let id = Identity::parse(&fits).unwrap();
    let (ty, data) = id.to_payload();
    assert_eq!(Identity::from_payload(ty, &data).unwrap(), id);
    let hex_dn = format!("dn:{}", "30".repeat(2100));
    assert!(Identity::parse(&hex_dn).is_err());
}
