//! X.509 credentials: the local private key and certificate chain, the trusted CAs, chain
//! validation (rustls-webpki) and AUTH signatures (ring).

use std::fmt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, TrustAnchor, UnixTime};
use sha1::{Digest, Sha1};
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
};
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use super::identity::dn_matches;
use super::pss::{self, PssHash, RsaSignature};
use super::{AuthError, HASH_SHA2_256, HASH_SHA2_384, HASH_SHA2_512, Identity};
use crate::codepoints::AuthMethod;

/// RFC 7427 Appendix A.1.2: sha256WithRSAEncryption AlgorithmIdentifier.
const ALG_RSA_SHA256: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];
/// RFC 7427 Appendix A.1.3: sha384WithRSAEncryption.
const ALG_RSA_SHA384: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c, 0x05, 0x00,
];
/// RFC 7427 Appendix A.1.4: sha512WithRSAEncryption.
const ALG_RSA_SHA512: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d, 0x05, 0x00,
];
/// RFC 7427 Appendix A.3.2: ecdsa-with-SHA256.
const ALG_ECDSA_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
/// RFC 7427 Appendix A.3.3: ecdsa-with-SHA384.
const ALG_ECDSA_SHA384: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
];
/// RFC 7427 Appendix A.3.4: ecdsa-with-SHA512.
const ALG_ECDSA_SHA512: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04,
];

/// EKU key purposes accepted for IKE (OID contents): serverAuth, clientAuth, ipsecIKE
/// (RFC 4945 §5.1.3.12, 1.3.6.1.5.5.7.3.17) and anyExtendedKeyUsage (2.5.29.37.0).
const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
const EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
const EKU_IPSEC_IKE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x11];
const EKU_ANY: &[u8] = &[0x55, 0x1d, 0x25, 0x00];

/// Most certificates accepted in one file or chain.
const MAX_CERTS: usize = 16;

/// The elliptic curves of ECDSA keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

enum KeyKind {
    Rsa(Box<RsaKeyPair>),
    Ecdsa {
        curve: Curve,
        /// Signs r|s (RFC 4754).
        fixed: Box<EcdsaKeyPair>,
        /// Signs ASN.1 DER (RFC 7427).
        asn1: Box<EcdsaKeyPair>,
    },
}

/// A private key for AUTH signatures: RSA, or ECDSA on P-256 or P-384 (held by ring).
pub struct PrivateKey {
    kind: KeyKind,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, [redacted])", self.kind_name())
    }
}

fn ec_pair(
    curve: Curve,
    make: impl Fn(&'static signature::EcdsaSigningAlgorithm) -> Option<EcdsaKeyPair>,
) -> Option<KeyKind> {
    let (f, a) = match curve {
        Curve::P256 => (
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        ),
        Curve::P384 => (
            &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        ),
    };
    Some(KeyKind::Ecdsa {
        curve,
        fixed: Box::new(make(f)?),
        asn1: Box::new(make(a)?),
    })
}

impl PrivateKey {
    /// Reads a key from PEM (`PRIVATE KEY`, `RSA PRIVATE KEY`, `EC PRIVATE KEY`) or DER
    /// (PKCS#8, PKCS#1 RSAPrivateKey or SEC1 ECPrivateKey). Encrypted keys are not read.
    pub fn from_bytes(data: &[u8]) -> Result<Self, AuthError> {
        if is_pem(data) {
            let key = PrivateKeyDer::from_pem_slice(data)
                .map_err(|e| AuthError::UnsupportedKey(format!("PEM: {e}")))?;
            return match key {
                PrivateKeyDer::Pkcs8(k) => Self::from_pkcs8(k.secret_pkcs8_der()),
                PrivateKeyDer::Pkcs1(k) => Self::from_pkcs1(k.secret_pkcs1_der()),
                PrivateKeyDer::Sec1(k) => Self::from_sec1(k.secret_sec1_der()),
                _ => Err(AuthError::UnsupportedKey("unknown PEM key type".into())),
            };
        }
        Self::from_pkcs8(data)
            .or_else(|_| Self::from_pkcs1(data))
            .or_else(|_| Self::from_sec1(data))
            .map_err(|_| {
                AuthError::UnsupportedKey("not a PKCS#8, PKCS#1 RSA or SEC1 P-256/P-384 key".into())
            })
    }

    /// Reads a key file (PEM or DER, see [`PrivateKey::from_bytes`]).
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let data = Zeroizing::new(std::fs::read(path).map_err(|e| load_err(path, e))?);
        Self::from_bytes(&data).map_err(|e| load_err(path, e))
    }

    /// A PKCS#8 (RFC 5958) RSA or EC key.
    fn from_pkcs8(der: &[u8]) -> Result<Self, AuthError> {
        let rng = SystemRandom::new();
        if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
            return Ok(Self {
                kind: KeyKind::Rsa(Box::new(k)),
            });
        }
        [Curve::P256, Curve::P384]
            .into_iter()
            .find_map(|c| ec_pair(c, |alg| EcdsaKeyPair::from_pkcs8(alg, der, &rng).ok()))
            .map(|kind| Self { kind })
            .ok_or_else(|| {
                AuthError::UnsupportedKey("PKCS#8 key is not RSA, P-256 or P-384".into())
            })
    }

    /// A PKCS#1 RSAPrivateKey.
    fn from_pkcs1(der: &[u8]) -> Result<Self, AuthError> {
        RsaKeyPair::from_der(der)
            .map(|k| Self {
                kind: KeyKind::Rsa(Box::new(k)),
            })
            .map_err(|e| AuthError::UnsupportedKey(format!("PKCS#1 RSA key: {e}")))
    }

    /// A SEC1 ECPrivateKey (RFC 5915), read with the sec1 crate; it must carry its public
    /// key (as openssl and strongSwan write it).
    fn from_sec1(der: &[u8]) -> Result<Self, AuthError> {
        let key = sec1::EcPrivateKey::try_from(der)
            .map_err(|e| AuthError::UnsupportedKey(format!("SEC1 key: {e}")))?;
        let public = key
            .public_key
            .ok_or_else(|| AuthError::UnsupportedKey("SEC1 key without public key".into()))?;
        let curves: &[Curve] = match key.parameters.map(|p| p.named_curve()) {
            Some(Some(oid)) if oid.to_string() == "1.2.840.10045.3.1.7" => &[Curve::P256],
            Some(Some(oid)) if oid.to_string() == "1.3.132.0.34" => &[Curve::P384],
            Some(_) => {
                return Err(AuthError::UnsupportedKey(
                    "SEC1 key on a curve other than P-256 or P-384".into(),
                ));
            }
            None => &[Curve::P256, Curve::P384],
        };
        let rng = SystemRandom::new();
        curves
            .iter()
            .find_map(|&c| {
                ec_pair(c, |alg| {
                    EcdsaKeyPair::from_private_key_and_public_key(
                        alg,
                        key.private_key,
                        public,
                        &rng,
                    )
                    .ok()
                })
            })
            .map(|kind| Self { kind })
            .ok_or_else(|| AuthError::UnsupportedKey("SEC1 key rejected".into()))
    }

    fn kind_name(&self) -> &'static str {
        match &self.kind {
            KeyKind::Rsa(_) => "RSA",
            KeyKind::Ecdsa {
                curve: Curve::P256, ..
            } => "ECDSA P-256",
            KeyKind::Ecdsa {
                curve: Curve::P384, ..
            } => "ECDSA P-384",
        }
    }

    /// The public key as it appears in a certificate's subjectPublicKey BIT STRING (DER
    /// RSAPublicKey, or the uncompressed EC point).
    fn public_key_bits(&self) -> &[u8] {
        match &self.kind {
            KeyKind::Rsa(k) => k.public_key().as_ref(),
            KeyKind::Ecdsa { fixed, .. } => fixed.public_key().as_ref(),
        }
    }
}

fn load_err(path: &Path, e: impl fmt::Display) -> AuthError {
    AuthError::Load {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn is_pem(data: &[u8]) -> bool {
    data.windows(11).any(|w| w == b"-----BEGIN ")
}

/// Reads the certificates of a PEM (one or more) or DER (one) file's contents.
fn certs_from_bytes(data: &[u8]) -> Result<Vec<Vec<u8>>, AuthError> {
    let certs: Vec<Vec<u8>> = if is_pem(data) {
        CertificateDer::pem_slice_iter(data)
            .take(MAX_CERTS + 1)
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<_, _>>()
            .map_err(|e| AuthError::MalformedCertificate(format!("PEM: {e}")))?
    } else {
        vec![data.to_vec()]
    };
    if certs.is_empty() {
        return Err(AuthError::NoCertificate);
    }
    if certs.len() > MAX_CERTS {
        return Err(AuthError::MalformedCertificate(
            "too many certificates".into(),
        ));
    }
    for c in &certs {
        parse_cert(c)?;
    }
    Ok(certs)
}

fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, AuthError> {
    match X509Certificate::from_der(der) {
        Ok(([], c)) => Ok(c),
        Ok(_) => Err(AuthError::MalformedCertificate(
            "trailing data after the certificate".into(),
        )),
        Err(e) => Err(AuthError::MalformedCertificate(e.to_string())),
    }
}

/// Our certificate chain and private key.
#[derive(Debug)]
pub struct LocalCredential {
    /// The chain, DER, end entity first (sent in CERT payloads).
    pub chain: Vec<Vec<u8>>,
    key: PrivateKey,
    rsa_signature: RsaSignature,
}

impl LocalCredential {
    /// A credential from DER certificates (end entity first) and its key; checks that the
    /// key is the end entity's.
    pub fn new(chain: Vec<Vec<u8>>, key: PrivateKey) -> Result<Self, AuthError> {
        let ee = chain.first().ok_or(AuthError::NoCertificate)?;
        let cert = parse_cert(ee)?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_bits() {
            return Err(AuthError::KeyMismatch);
        }
        for c in chain.iter().skip(1) {
            parse_cert(c)?;
        }
        Ok(Self {
            chain,
            key,
            rsa_signature: RsaSignature::default(),
        })
    }

    /// The same credential signing RFC 7427 AUTH with `scheme` when its key is RSA (ECDSA
    /// keys ignore it). The default is [`RsaSignature::Pss`].
    pub fn with_rsa_signature(mut self, scheme: RsaSignature) -> Self {
        self.rsa_signature = scheme;
        self
    }

    /// How an RSA key of this credential signs RFC 7427 AUTH.
    pub fn rsa_signature(&self) -> RsaSignature {
        self.rsa_signature
    }

    /// Loads certificates (PEM or DER files; the first certificate of the first file is
    /// the end entity, the others intermediates) and the private key (PEM or DER: PKCS#8,
    /// PKCS#1, SEC1); checks that the key is the end entity's.
    pub fn load(cert_paths: &[&Path], key_path: &Path) -> Result<Self, AuthError> {
        let mut chain = Vec::new();
        for p in cert_paths {
            let data = std::fs::read(p).map_err(|e| load_err(p, e))?;
            chain.extend(certs_from_bytes(&data).map_err(|e| load_err(p, e))?);
        }
        let key = PrivateKey::load(key_path)?;
        Self::new(chain, key).map_err(|e| match e {
            AuthError::KeyMismatch => AuthError::KeyMismatch,
            other => load_err(key_path, other),
        })
    }

    /// Our identity as the end-entity certificate's subject DN.
    pub fn identity_dn(&self) -> Identity {
        let subject = self
            .chain
            .first()
            .and_then(|c| X509Certificate::from_der(c).ok())
            .map(|(_, c)| c.subject().as_raw().to_vec());
        // `new` checked that the end entity exists and parses.
        Identity::Dn(subject.unwrap_or_default())
    }

    /// Signs the AUTH octets. `peer_hashes` is the peer's SIGNATURE_HASH_ALGORITHMS
    /// (RFC 7427), `None` if it sent none.
    ///
    /// With them: method 14 (RFC 7427 §3: a one-octet length, the DER AlgorithmIdentifier,
    /// the signature): RSA with the first of SHA-256, SHA-384, SHA-512 the peer supports,
    /// RSASSA-PSS (MGF1 with that hash, salt as long as it) or PKCS#1 v1.5 as
    /// [`LocalCredential::with_rsa_signature`] chose (PSS by default); ECDSA (ASN.1 DER signature) with SHA-256 on P-256 and SHA-384 on P-384 if
    /// the peer supports that hash, else method 9/10. Without them: method 9 or 10 (RFC 4754
    /// r|s) for ECDSA keys; for RSA keys method 1 would need SHA-1 signing, which ring does
    /// not offer: [`AuthError::Sha1SigningNotOffered`].
    pub fn sign(
        &self,
        octets: &[u8],
        peer_hashes: Option<&[u16]>,
    ) -> Result<(AuthMethod, Vec<u8>), AuthError> {
        let rng = SystemRandom::new();
        match (&self.key.kind, peer_hashes) {
            (KeyKind::Rsa(k), Some(hashes)) => {
                // SHA-256 first, as for every key: the hash ippm announces first.
                let hash = [HASH_SHA2_256, HASH_SHA2_384, HASH_SHA2_512]
                    .into_iter()
                    .find(|h| hashes.contains(h))
                    .ok_or(AuthError::NoCommonHash)?;
                let (enc, alg) = rsa_encoding(self.rsa_signature, hash)?;
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(enc, &rng, octets, &mut sig)
                    .map_err(|_| AuthError::SigningFailed)?;
                Ok((AuthMethod::DIGITAL_SIGNATURE, rfc7427_auth(alg, &sig)))
            }
            (KeyKind::Rsa(_), None) => Err(AuthError::Sha1SigningNotOffered),
            (KeyKind::Ecdsa { curve, fixed, asn1 }, hashes) => {
                let (hash, alg, method) = match curve {
                    Curve::P256 => (HASH_SHA2_256, ALG_ECDSA_SHA256, AuthMethod::ECDSA_256),
                    Curve::P384 => (HASH_SHA2_384, ALG_ECDSA_SHA384, AuthMethod::ECDSA_384),
                };
                if hashes.is_some_and(|h| h.contains(&hash)) {
                    let sig = asn1
                        .sign(&rng, octets)
                        .map_err(|_| AuthError::SigningFailed)?;
                    Ok((
                        AuthMethod::DIGITAL_SIGNATURE,
                        rfc7427_auth(alg, sig.as_ref()),
                    ))
                } else {
                    let sig = fixed
                        .sign(&rng, octets)
                        .map_err(|_| AuthError::SigningFailed)?;
                    Ok((method, sig.as_ref().to_vec()))
                }
            }
        }
    }
}

/// ring's signing encoding and the RFC 7427 AlgorithmIdentifier for an RSA signature with
/// `hash` (one of ours).
fn rsa_encoding(
    scheme: RsaSignature,
    hash: u16,
) -> Result<(&'static dyn signature::RsaEncoding, &'static [u8]), AuthError> {
    let pkcs1: [(u16, &'static dyn signature::RsaEncoding, &'static [u8]); 3] = [
        (HASH_SHA2_256, &signature::RSA_PKCS1_SHA256, ALG_RSA_SHA256),
        (HASH_SHA2_384, &signature::RSA_PKCS1_SHA384, ALG_RSA_SHA384),
        (HASH_SHA2_512, &signature::RSA_PKCS1_SHA512, ALG_RSA_SHA512),
    ];
    match scheme {
        RsaSignature::Pss => {
            PssHash::from_ike(hash).map(|h| (h.signing(), h.algorithm_identifier()))
        }
        RsaSignature::Pkcs1 => pkcs1
            .into_iter()
            .find_map(|(h, enc, alg)| (h == hash).then_some((enc, alg))),
    }
    .ok_or(AuthError::NoCommonHash)
}

/// RFC 7427 §3 authentication data. The AlgorithmIdentifiers are short constants.
fn rfc7427_auth(alg: &[u8], sig: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + alg.len() + sig.len());
    out.push(alg.len() as u8);
    out.extend_from_slice(alg);
    out.extend_from_slice(sig);
    out
}

/// The EKU policy for IKE certificates (RFC 4945 §5.1.3.12): no EKU, or one that includes
/// serverAuth, clientAuth, ipsecIKE or anyExtendedKeyUsage.
struct IkeEku;

impl webpki::ExtendedKeyUsageValidator for IkeEku {
    fn validate(&self, iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let accepted = [EKU_SERVER_AUTH, EKU_CLIENT_AUTH, EKU_IPSEC_IKE, EKU_ANY]
            .map(webpki::KeyPurposeId::new);
        let mut empty = true;
        for id in iter {
            empty = false;
            let id = id?;
            if accepted.contains(&id) {
                return Ok(());
            }
        }
        if empty {
            Ok(())
        } else {
            #[allow(deprecated)]
            Err(webpki::Error::RequiredEkuNotFound)
        }
    }
}

/// The CAs trusted to certify peers.
pub struct TrustStore {
    certs: Vec<Vec<u8>>,
    anchors: Vec<TrustAnchor<'static>>,
}

impl fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustStore({} CAs)", self.certs.len())
    }
}

/// The kind of public key in a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerKey {
    Rsa,
    Ec(Curve),
    Other,
}

impl PeerKey {
    fn name(self) -> &'static str {
        match self {
            Self::Rsa => "RSA",
            Self::Ec(Curve::P256) => "ECDSA P-256",
            Self::Ec(Curve::P384) => "ECDSA P-384",
            Self::Other => "unsupported",
        }
    }
}

impl TrustStore {
    /// Loads CA certificates from PEM (one or more per file) or DER files.
    pub fn load(paths: &[&Path]) -> Result<Self, AuthError> {
        let mut certs = Vec::new();
        for p in paths {
            let data = std::fs::read(p).map_err(|e| load_err(p, e))?;
            certs.extend(certs_from_bytes(&data).map_err(|e| load_err(p, e))?);
        }
        Self::from_der(certs)
    }

    /// A trust store of DER CA certificates.
    pub fn from_der(certs: Vec<Vec<u8>>) -> Result<Self, AuthError> {
        let mut anchors = Vec::with_capacity(certs.len());
        for c in &certs {
            parse_cert(c)?;
            let der = CertificateDer::from(c.as_slice());
            let anchor = webpki::anchor_from_trusted_cert(&der)
                .map_err(|e| AuthError::MalformedCertificate(format!("CA: {e}")))?;
            anchors.push(anchor.to_owned());
        }
        Ok(Self { certs, anchors })
    }

    /// CERTREQ data for encoding 4 (X.509 signature): the concatenated SHA-1 hashes of each
    /// CA's SubjectPublicKeyInfo (RFC 7296 §3.7).
    pub fn certreq_data(&self) -> Vec<u8> {
        self.certs
            .iter()
            .filter_map(|c| X509Certificate::from_der(c).ok())
            .flat_map(|(_, c)| Sha1::digest(c.public_key().raw).to_vec())
            .collect()
    }

    /// Validates the peer's chain at `now` (rustls-webpki: anchors, intermediates, validity,
    /// EKU absent or allowing serverAuth, clientAuth, ipsecIKE or anyExtendedKeyUsage),
    /// checks that `id` is the certificate's (FQDN, RFC 822 and IP against the
    /// subjectAltName entries, names case-insensitively; a DN against the subject), then
    /// verifies the AUTH data: method 1 (RSA PKCS#1 SHA-1), 9 and 10 (ECDSA P-256/SHA-256,
    /// P-384/SHA-384, r|s), 14 (RFC 7427: RSA PKCS#1 v1.5 or RSASSA-PSS (MGF1 with the
    /// same hash, salt as long as the hash) with SHA-256/384/512, ECDSA with SHA-256/384
    /// (ring) or SHA-512 (p256/p384, which ring lacks)).
    #[allow(clippy::too_many_arguments)]
    pub fn verify_peer(
        &self,
        end_entity: &[u8],
        intermediates: &[Vec<u8>],
        id: &Identity,
        method: AuthMethod,
        auth_data: &[u8],
        octets: &[u8],
        now: SystemTime,
    ) -> Result<(), AuthError> {
        let cert = parse_cert(end_entity)?;
        self.validate_chain(end_entity, intermediates, now)?;
        if !id_matches(&cert, id) {
            return Err(AuthError::IdentityMismatch(id.to_string()));
        }
        verify_signature(&cert, method, auth_data, octets)
    }

    fn validate_chain(
        &self,
        end_entity: &[u8],
        intermediates: &[Vec<u8>],
        now: SystemTime,
    ) -> Result<(), AuthError> {
        if intermediates.len() > MAX_CERTS {
            return Err(AuthError::InvalidChain("too many intermediates".into()));
        }
        let ee_der = CertificateDer::from(end_entity);
        let ee = webpki::EndEntityCert::try_from(&ee_der)
            .map_err(|e| AuthError::MalformedCertificate(e.to_string()))?;
        let inter: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let since_epoch = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| AuthError::InvalidChain("time before 1970".into()))?;
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            &inter,
            UnixTime::since_unix_epoch(since_epoch),
            IkeEku,
            None,
            None,
        )
        .map(|_| ())
        .map_err(|e| {
            #[allow(deprecated)]
            match e {
                webpki::Error::UnknownIssuer => AuthError::UnknownCa,
                webpki::Error::CertExpired { .. } => AuthError::Expired,
                webpki::Error::CertNotValidYet { .. } => AuthError::NotYetValid,
                webpki::Error::RequiredEkuNotFound
                | webpki::Error::RequiredEkuNotFoundContext(_) => AuthError::BadKeyUsage,
                other => AuthError::InvalidChain(other.to_string()),
            }
        })
    }
}

fn id_matches(cert: &X509Certificate<'_>, id: &Identity) -> bool {
    if let Identity::Dn(dn) = id {
        return dn_matches(dn, cert.subject().as_raw());
    }
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    san.value.general_names.iter().any(|name| match (id, name) {
        (Identity::Fqdn(f), GeneralName::DNSName(d)) => f
            .trim_end_matches('.')
            .eq_ignore_ascii_case(d.trim_end_matches('.')),
        (Identity::Rfc822(a), GeneralName::RFC822Name(b)) => a.eq_ignore_ascii_case(b),
        (Identity::Ipv4(a), GeneralName::IPAddress(b)) => a.octets().as_slice() == *b,
        (Identity::Ipv6(a), GeneralName::IPAddress(b)) => a.octets().as_slice() == *b,
        _ => false,
    })
}

fn peer_key(cert: &X509Certificate<'_>) -> PeerKey {
    let spki = cert.public_key();
    let alg = &spki.algorithm;
    if alg.algorithm == OID_PKCS1_RSAENCRYPTION {
        return PeerKey::Rsa;
    }
    if alg.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = alg.parameters.as_ref().and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 => PeerKey::Ec(Curve::P256),
            Some(c) if c == OID_NIST_EC_P384 => PeerKey::Ec(Curve::P384),
            _ => PeerKey::Other,
        };
    }
    PeerKey::Other
}

fn verify_signature(
    cert: &X509Certificate<'_>,
    method: AuthMethod,
    auth_data: &[u8],
    octets: &[u8],
) -> Result<(), AuthError> {
    let key = peer_key(cert);
    let mismatch = || AuthError::MethodKeyMismatch {
        method,
        key: key.name(),
    };
    let (verifier, sig) = match method {
        AuthMethod::RSA_SIG if key == PeerKey::Rsa => (
            Verifier::Ring(&signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY),
            auth_data,
        ),
        AuthMethod::ECDSA_256 if key == PeerKey::Ec(Curve::P256) => (
            Verifier::Ring(&signature::ECDSA_P256_SHA256_FIXED),
            auth_data,
        ),
        AuthMethod::ECDSA_384 if key == PeerKey::Ec(Curve::P384) => (
            Verifier::Ring(&signature::ECDSA_P384_SHA384_FIXED),
            auth_data,
        ),
        AuthMethod::RSA_SIG | AuthMethod::ECDSA_256 | AuthMethod::ECDSA_384 => {
            return Err(mismatch());
        }
        AuthMethod::DIGITAL_SIGNATURE => {
            let (&len, rest) = auth_data
                .split_first()
                .ok_or(AuthError::Malformed("RFC 7427 authentication data"))?;
            let (algid, sig) = rest
                .split_at_checked(usize::from(len))
                .ok_or(AuthError::Malformed("RFC 7427 authentication data"))?;
            (rfc7427_algorithm(algid, key)?, sig)
        }
        other => return Err(AuthError::UnsupportedMethod(other)),
    };
    let public = cert.public_key().subject_public_key.data.as_ref();
    let ok = match verifier {
        Verifier::Ring(alg) => signature::UnparsedPublicKey::new(alg, public)
            .verify(octets, sig)
            .is_ok(),
        Verifier::EcdsaSha512(curve) => ecdsa_sha512_verify(curve, public, octets, sig),
    };
    if ok {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
    }
}

/// How an AUTH signature is checked.
enum Verifier {
    /// By ring.
    Ring(&'static dyn signature::VerificationAlgorithm),
    /// ECDSA with SHA-512 (RFC 7427 ecdsa-with-SHA512), which ring does not verify: by the
    /// RustCrypto p256/p384 crates.
    EcdsaSha512(Curve),
}

fn ecdsa_sha512_verify(curve: Curve, public: &[u8], octets: &[u8], sig: &[u8]) -> bool {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let digest = sha2::Sha512::digest(octets);
    match curve {
        Curve::P256 => {
            let (Ok(key), Ok(sig)) = (
                p256::ecdsa::VerifyingKey::from_sec1_bytes(public),
                p256::ecdsa::Signature::from_der(sig),
            ) else {
                return false;
            };
            key.verify_prehash(&digest, &sig).is_ok()
        }
        Curve::P384 => {
            let (Ok(key), Ok(sig)) = (
                p384::ecdsa::VerifyingKey::from_sec1_bytes(public),
                p384::ecdsa::Signature::from_der(sig),
            ) else {
                return false;
            };
            key.verify_prehash(&digest, &sig).is_ok()
        }
    }
}

/// The verifier for an RFC 7427 AlgorithmIdentifier and key.
fn rfc7427_algorithm(algid: &[u8], key: PeerKey) -> Result<Verifier, AuthError> {
    let wrong_key = || AuthError::MethodKeyMismatch {
        method: AuthMethod::DIGITAL_SIGNATURE,
        key: key.name(),
    };
    let rsa = [
        (ALG_RSA_SHA256, &signature::RSA_PKCS1_2048_8192_SHA256),
        (ALG_RSA_SHA384, &signature::RSA_PKCS1_2048_8192_SHA384),
        (ALG_RSA_SHA512, &signature::RSA_PKCS1_2048_8192_SHA512),
    ];
    if let Some((_, alg)) = rsa.iter().find(|(a, _)| *a == algid) {
        return match key {
            PeerKey::Rsa => Ok(Verifier::Ring(*alg)),
            _ => Err(wrong_key()),
        };
    }
    // RSASSA-PSS identifiers come in more than one encoding (hash parameters NULL or absent,
    // trailerField omitted or 1), so they are parsed rather than compared.
    if let Some(hash) = pss::parse(algid)? {
        return match key {
            PeerKey::Rsa => Ok(Verifier::Ring(hash.verification())),
            _ => Err(wrong_key()),
        };
    }
    let curve = match key {
        PeerKey::Ec(c) => Some(c),
        _ => None,
    };
    let known_ecdsa = [ALG_ECDSA_SHA256, ALG_ECDSA_SHA384, ALG_ECDSA_SHA512].contains(&algid);
    match (curve, algid) {
        (_, _) if !known_ecdsa => Err(AuthError::UnsupportedSignatureAlgorithm),
        (None, _) => Err(wrong_key()),
        (Some(Curve::P256), ALG_ECDSA_SHA256) => {
            Ok(Verifier::Ring(&signature::ECDSA_P256_SHA256_ASN1))
        }
        (Some(Curve::P384), ALG_ECDSA_SHA256) => {
            Ok(Verifier::Ring(&signature::ECDSA_P384_SHA256_ASN1))
        }
        (Some(Curve::P256), ALG_ECDSA_SHA384) => {
            Ok(Verifier::Ring(&signature::ECDSA_P256_SHA384_ASN1))
        }
        (Some(Curve::P384), ALG_ECDSA_SHA384) => {
            Ok(Verifier::Ring(&signature::ECDSA_P384_SHA384_ASN1))
        }
        (Some(c), _) => Ok(Verifier::EcdsaSha512(c)),
    }
}
