//! IKEv2 authentication (RFC 7296 §2.15): the octets each side signs, shared-key AUTH, X.509
//! certificate signatures (RFC 7296 methods 1, RFC 4754 methods 9 and 10, RFC 7427 method 14
//! with RSASSA-PKCS1-v1_5, RSASSA-PSS or ECDSA), chain validation and identities.
//!
//! Signing and signature verification are ring's (but for ECDSA with SHA-512, which ring
//! lacks: the p256/p384 crates'), chain validation is rustls-webpki's,
//! certificate fields are read with x509-parser. The only ASN.1 written here are fixed
//! AlgorithmIdentifier octet strings (RFC 7427 Appendix A's, and the RSASSA-PSS ones of
//! `auth/pss.rs`); RSASSA-PSS-params are read with der.

use std::path::PathBuf;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::codepoints::{AuthMethod, IdType};
use crate::keys::Prf;

mod cert;
mod identity;
mod pss;

pub use cert::{LocalCredential, PrivateKey, TrustStore};
pub use identity::Identity;
pub use pss::{PssError, RsaSignature};

/// SHA2-256 in the IKEv2 Hash Algorithms registry (RFC 7427 §7).
pub const HASH_SHA2_256: u16 = 2;
/// SHA2-384 in the IKEv2 Hash Algorithms registry (RFC 7427 §7).
pub const HASH_SHA2_384: u16 = 3;
/// SHA2-512 in the IKEv2 Hash Algorithms registry (RFC 7427 §7).
pub const HASH_SHA2_512: u16 = 4;

/// The hash algorithms ippm signs and verifies with under RFC 7427, in preference order.
const OUR_HASHES: [u16; 3] = [HASH_SHA2_256, HASH_SHA2_384, HASH_SHA2_512];

/// At most this many hash algorithms are read from one notify (the registry has fewer).
const MAX_HASH_ALGORITHMS: usize = 64;

/// Why authentication, or loading what it needs, failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A certificate or key file could not be read or understood.
    #[error("cannot load {path}: {reason}")]
    Load {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Identification data that is not valid for its type (or an unparsable configured
    /// identity).
    #[error("invalid identity: {0}")]
    InvalidIdentity(String),
    /// An ID type this implementation does not handle.
    #[error("unsupported ID type {0:?}")]
    UnsupportedIdType(IdType),
    /// Octets that are not an X.509 certificate.
    #[error("malformed certificate: {0}")]
    MalformedCertificate(String),
    /// A private key that is not RSA, ECDSA P-256 or ECDSA P-384 in a form ring accepts.
    #[error("unsupported or malformed private key: {0}")]
    UnsupportedKey(String),
    /// The private key is not the one of the end-entity certificate.
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    /// No certificate was given.
    #[error("no certificate")]
    NoCertificate,
    /// The chain does not lead to one of the trusted CAs.
    #[error("certificate not issued by a trusted CA")]
    UnknownCa,
    /// A certificate of the chain has expired.
    #[error("certificate expired")]
    Expired,
    /// A certificate of the chain is not yet valid.
    #[error("certificate not yet valid")]
    NotYetValid,
    /// The certificate's extended key usage allows none of serverAuth, clientAuth, ipsecIKE
    /// or anyExtendedKeyUsage.
    #[error("certificate's extended key usage does not allow IKE")]
    BadKeyUsage,
    /// The chain is invalid for another reason (rustls-webpki's).
    #[error("invalid certificate chain: {0}")]
    InvalidChain(String),
    /// The peer's identity is not the certificate's.
    #[error("identity {0} does not match the certificate")]
    IdentityMismatch(String),
    /// The AUTH signature does not verify.
    #[error("bad AUTH signature")]
    BadSignature,
    /// An authentication method this implementation does not support (or not for this key).
    #[error("unsupported authentication method {0:?}")]
    UnsupportedMethod(AuthMethod),
    /// The certificate's key cannot be used with the authentication method.
    #[error("authentication method {method:?} cannot be used with a {key} key")]
    MethodKeyMismatch {
        /// The method.
        method: AuthMethod,
        /// The kind of key the certificate has.
        key: &'static str,
    },
    /// An RFC 7427 signature whose AlgorithmIdentifier is not one ippm verifies.
    #[error("unsupported RFC 7427 signature algorithm")]
    UnsupportedSignatureAlgorithm,
    /// An RFC 7427 id-RSASSA-PSS AlgorithmIdentifier whose parameters ippm does not
    /// verify, or cannot read.
    #[error("RFC 7427 RSASSA-PSS: {0}")]
    Pss(#[from] PssError),
    /// RSA with SHA-1 (method 1) is needed because the peer sent no
    /// SIGNATURE_HASH_ALGORITHMS, but ring does not sign with SHA-1.
    #[error("the peer supports no RFC 7427 hash and RSA SHA-1 signing is not offered")]
    Sha1SigningNotOffered,
    /// The peer's SIGNATURE_HASH_ALGORITHMS has no hash that this key can sign with.
    #[error("no hash algorithm in common with the peer for this key")]
    NoCommonHash,
    /// Malformed authentication data or notify data.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// Signing failed in ring.
    #[error("signing failed")]
    SigningFailed,
}

/// The octets one side signs or MACs (RFC 7296 §2.15):
/// `RealMessage | NonceData | prf(SK_p, RestOfIDPayload)`, where RealMessage is the signer's
/// own first message (IKE_SA_INIT request or response), NonceData the peer's nonce, SK_p the
/// signer's SK_pi or SK_pr and RestOfIDPayload = `IDType | 3 reserved zero octets | data`
/// of the signer's identity.
pub fn signed_octets(
    prf: Prf,
    own_first_message: &[u8],
    peer_nonce: &[u8],
    sk_p: &[u8],
    id: &Identity,
) -> Vec<u8> {
    let (ty, data) = id.to_payload();
    let mut rest = Vec::with_capacity(4 + data.len());
    rest.push(ty.0);
    rest.extend_from_slice(&[0, 0, 0]);
    rest.extend_from_slice(&data);
    let mac = prf.prf(sk_p, &rest);
    let mut out = Vec::with_capacity(own_first_message.len() + peer_nonce.len() + mac.len());
    out.extend_from_slice(own_first_message);
    out.extend_from_slice(peer_nonce);
    out.extend_from_slice(&mac);
    out
}

/// Shared-key AUTH data (RFC 7296 §2.15): `prf(prf(psk, "Key Pad for IKEv2"), octets)`.
pub fn psk_auth(prf: Prf, psk: &[u8], octets: &[u8]) -> Zeroizing<Vec<u8>> {
    let key = prf.prf(psk, b"Key Pad for IKEv2");
    prf.prf(&key, octets)
}

/// Checks received shared-key AUTH data, in constant time.
pub fn psk_verify(prf: Prf, psk: &[u8], octets: &[u8], received: &[u8]) -> bool {
    let expected = psk_auth(prf, psk, octets);
    expected.as_slice().ct_eq(received).into()
}

/// The notification data of the SIGNATURE_HASH_ALGORITHMS notify ippm sends (RFC 7427 §4):
/// SHA2-256, SHA2-384 and SHA2-512, two octets each.
pub fn hash_algorithms_notify_data() -> Vec<u8> {
    OUR_HASHES.iter().flat_map(|h| h.to_be_bytes()).collect()
}

/// Reads a SIGNATURE_HASH_ALGORITHMS notification's data: a list of 16-bit hash algorithm
/// identifiers (RFC 7427 §4), unknown values included.
pub fn parse_hash_algorithms(data: &[u8]) -> Result<Vec<u16>, AuthError> {
    if data.len() % 2 != 0 {
        return Err(AuthError::Malformed(
            "SIGNATURE_HASH_ALGORITHMS (odd length)",
        ));
    }
    if data.len() / 2 > MAX_HASH_ALGORITHMS {
        return Err(AuthError::Malformed(
            "SIGNATURE_HASH_ALGORITHMS (too many entries)",
        ));
    }
    Ok(data
        .chunks_exact(2)
        .filter_map(|c| match c {
            [a, b] => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        })
        .collect())
}
