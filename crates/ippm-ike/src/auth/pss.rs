//! RSASSA-PSS (RFC 8017 §8.1) in RFC 7427 Digital Signature authentication: the
//! id-RSASSA-PSS AlgorithmIdentifiers ippm sends, and the reading (with `der`) of the
//! RSASSA-PSS-params (RFC 4055 §3.1) peers send.
//!
//! ring verifies and signs PSS only with MGF1 over the signature's hash and a salt as long
//! as the hash (RFC 8017's recommendation; what libreswan and strongSwan send), so those are
//! the only parameters accepted; anything else is a [`PssError`], decided from the
//! parameters before any signature arithmetic.

use der::asn1::{Null, ObjectIdentifier};
use der::{Decode, ErrorKind, Header, Reader, SliceReader, Tag, TagNumber};
use ring::signature;

use super::{HASH_SHA2_256, HASH_SHA2_384, HASH_SHA2_512};

/// id-RSASSA-PSS (RFC 8017 Appendix A.2.3).
const ID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
/// id-mgf1 (RFC 8017 Appendix B.2.1).
const ID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

/// id-RSASSA-PSS as an encoded OBJECT IDENTIFIER (tag, length, arcs).
const PSS_OID_TLV: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a,
];

/// The AlgorithmIdentifiers ippm sends: RSASSA-PSS with SHA-256 (SHA-384, SHA-512), MGF1
/// with the same hash, salt as long as the hash, hash parameters NULL and the trailer field
/// left at its DEFAULT (omitted, as DER wants). These are the octets the Mozilla Root Store
/// Policy §5.1.1 prescribes; RFC 7427 Appendix A.4.3's example for SHA-256 differs only in
/// also encoding trailerField 1 (`a3 03 02 01 01`), which [`parse`] accepts too.
const ALG_PSS_SHA256: &[u8] = &[
    0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x34, 0xa0,
    0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00,
    0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30,
    0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0xa2, 0x03,
    0x02, 0x01, 0x20,
];
const ALG_PSS_SHA384: &[u8] = &[
    0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x34, 0xa0,
    0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00,
    0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30,
    0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0xa2, 0x03,
    0x02, 0x01, 0x30,
];
const ALG_PSS_SHA512: &[u8] = &[
    0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x34, 0xa0,
    0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00,
    0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30,
    0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0xa2, 0x03,
    0x02, 0x01, 0x40,
];

/// How ippm signs AUTH with an RSA key under RFC 7427 (method 14, used whenever the peer
/// sent SIGNATURE_HASH_ALGORITHMS). Either way ippm verifies both from peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RsaSignature {
    /// RSASSA-PSS (RFC 8017 §8.1), MGF1 with the signature's hash, salt as long as the
    /// hash. The default: RFC 8247 §3.2 puts RSASSA-PSS ahead of PKCS#1 v1.5 for Digital
    /// Signature authentication (its draft rfc4307bis said PSS MUST, PKCS#1 v1.5 MAY),
    /// libreswan signs with PSS (its strongSwan interop tests record it refusing PKCS#1 v1.5
    /// replies unless configured otherwise), and
    /// strongSwan verifies PSS whatever its own `charon.rsa_pss` (which only decides how it
    /// signs; default no). SIGNATURE_HASH_ALGORITHMS names hashes, not paddings, so there is
    /// nothing to negotiate: a peer that verifies no PSS needs [`RsaSignature::Pkcs1`].
    #[default]
    Pss,
    /// RSASSA-PKCS1-v1_5 (RFC 8017 §8.2), sha*WithRSAEncryption.
    Pkcs1,
}

/// Why an id-RSASSA-PSS AlgorithmIdentifier was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PssError {
    /// Not the DER of an AlgorithmIdentifier with RSASSA-PSS-params: truncated, wrong tags,
    /// octets left over, parameters absent (RFC 4055 §3.1 requires them with signatures).
    #[error("malformed RSASSA-PSS AlgorithmIdentifier")]
    Malformed,
    /// A hash other than SHA-256, SHA-384 or SHA-512; an absent hashAlgorithm means SHA-1.
    #[error("RSASSA-PSS with a hash other than SHA-256, SHA-384 or SHA-512")]
    UnsupportedHash,
    /// A mask generation function other than MGF1 with the signature's own hash (an
    /// absent maskGenAlgorithm means MGF1 with SHA-1).
    #[error("RSASSA-PSS mask generation other than MGF1 with the signature's hash")]
    UnsupportedMgf,
    /// A salt length other than the hash's (an absent saltLength means 20).
    #[error("RSASSA-PSS salt length {got}: only {expected} (the hash length) is verified")]
    SaltLength {
        /// The parameters' saltLength.
        got: u64,
        /// The hash's length, the only one verified.
        expected: u64,
    },
    /// A trailer field other than 1, the only one RFC 8017 defines.
    #[error("RSASSA-PSS trailer field {0}")]
    TrailerField(u64),
}

/// The hashes ippm does RSASSA-PSS with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PssHash {
    Sha256,
    Sha384,
    Sha512,
}

impl PssHash {
    /// The hash of an IKEv2 Hash Algorithms number (RFC 7427 §7).
    pub(super) fn from_ike(hash: u16) -> Option<Self> {
        match hash {
            HASH_SHA2_256 => Some(Self::Sha256),
            HASH_SHA2_384 => Some(Self::Sha384),
            HASH_SHA2_512 => Some(Self::Sha512),
            _ => None,
        }
    }

    /// The AlgorithmIdentifier ippm sends with its signatures.
    pub(super) fn algorithm_identifier(self) -> &'static [u8] {
        match self {
            Self::Sha256 => ALG_PSS_SHA256,
            Self::Sha384 => ALG_PSS_SHA384,
            Self::Sha512 => ALG_PSS_SHA512,
        }
    }

    /// ring's signing encoding (salt as long as the hash).
    pub(super) fn signing(self) -> &'static dyn signature::RsaEncoding {
        match self {
            Self::Sha256 => &signature::RSA_PSS_SHA256,
            Self::Sha384 => &signature::RSA_PSS_SHA384,
            Self::Sha512 => &signature::RSA_PSS_SHA512,
        }
    }

    /// ring's verification algorithm (2048 to 8192 bit moduli, salt as long as the hash).
    pub(super) fn verification(self) -> &'static signature::RsaParameters {
        match self {
            Self::Sha256 => &signature::RSA_PSS_2048_8192_SHA256,
            Self::Sha384 => &signature::RSA_PSS_2048_8192_SHA384,
            Self::Sha512 => &signature::RSA_PSS_2048_8192_SHA512,
        }
    }

    /// The hash's output length in octets, the salt length ippm uses and verifies.
    fn len(self) -> u64 {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    fn from_oid(oid: ObjectIdentifier) -> Option<Self> {
        [
            (ID_SHA256, Self::Sha256),
            (ID_SHA384, Self::Sha384),
            (ID_SHA512, Self::Sha512),
        ]
        .into_iter()
        .find_map(|(o, h)| (o == oid).then_some(h))
    }
}

/// Reads an RFC 7427 AlgorithmIdentifier: `Ok(None)` unless it names id-RSASSA-PSS,
/// the hash if its parameters are ones ippm verifies, the reason otherwise. The DER is read
/// whole before any parameter is judged, so broken encodings are always
/// [`PssError::Malformed`], whatever they would have said.
pub(super) fn parse(algid: &[u8]) -> Result<Option<PssHash>, PssError> {
    if !names_pss(algid) {
        return Ok(None);
    }
    let raw = read(algid).map_err(|_| PssError::Malformed)?;
    raw.judge().map(Some)
}

/// Whether `algid` starts like an AlgorithmIdentifier for id-RSASSA-PSS: a SEQUENCE header
/// (any length form a DER encoder may use here) and the OID. Looked at before parsing so
/// that a PSS identifier with truncated or broken parameters gets a [`PssError`] rather than
/// "unsupported signature algorithm".
fn names_pss(algid: &[u8]) -> bool {
    let header_len = match algid.get(1) {
        Some(0..=0x7f) => 2,
        Some(0x81) => 3,
        Some(0x82) => 4,
        _ => return false,
    };
    algid.first() == Some(&0x30)
        && algid
            .get(header_len..)
            .is_some_and(|rest| rest.starts_with(PSS_OID_TLV))
}

/// RSASSA-PSS-params as encoded, before judgement: `None` where a field is absent.
struct RawParams {
    /// hashAlgorithm: `Some(None)` for a hash other than ours.
    hash: Option<Option<PssHash>>,
    mgf: Option<Mgf>,
    salt: Option<u64>,
    trailer: Option<u64>,
}

/// A MaskGenAlgorithm as encoded.
enum Mgf {
    /// MGF1 with one of our hashes, or (`None`) another.
    Mgf1(Option<PssHash>),
    /// Another mask generation function (its parameters unread).
    Other,
}

impl RawParams {
    /// The hash if ippm verifies these parameters, applying the DEFAULTs of absent fields
    /// (RFC 8017 Appendix A.2.3: SHA-1, MGF1 with SHA-1, salt 20, trailer 1).
    fn judge(self) -> Result<PssHash, PssError> {
        let hash = self.hash.flatten().ok_or(PssError::UnsupportedHash)?;
        match self.mgf {
            Some(Mgf::Mgf1(Some(h))) if h == hash => {}
            _ => return Err(PssError::UnsupportedMgf),
        }
        let salt = self.salt.unwrap_or(20);
        if salt != hash.len() {
            return Err(PssError::SaltLength {
                got: salt,
                expected: hash.len(),
            });
        }
        // DER omits a DEFAULT value, but RFC 7427's own example (A.4.3) and strongSwan's
        // `rsa_pss_trailerfield` encode trailerField 1, so an explicit 1 is accepted.
        match self.trailer.unwrap_or(1) {
            1 => Ok(hash),
            other => Err(PssError::TrailerField(other)),
        }
    }
}

/// The DER walk: AlgorithmIdentifier { id-RSASSA-PSS, RSASSA-PSS-params }, nothing
/// after it. The parameters MUST be present with a signature (RFC 4055 §3.1).
fn read(algid: &[u8]) -> der::Result<RawParams> {
    let mut r = SliceReader::new(algid)?;
    let raw = r.sequence(|r| {
        let oid: ObjectIdentifier = r.decode()?;
        if oid != ID_RSASSA_PSS {
            return Err(r.error(ErrorKind::OidUnknown { oid }));
        }
        r.sequence(read_params)
    })?;
    r.finish()?;
    Ok(raw)
}

/// RSASSA-PSS-params, every field explicitly tagged and optional. Fields out of order or
/// unknown ones are left unread, which the enclosing SEQUENCE reports as trailing data.
fn read_params(r: &mut SliceReader<'_>) -> der::Result<RawParams> {
    Ok(RawParams {
        hash: explicit(r, 0, hash_algorithm)?,
        mgf: explicit(r, 1, mask_gen_algorithm)?,
        salt: explicit(r, 2, |r| r.decode::<u64>())?,
        trailer: explicit(r, 3, |r| r.decode::<u64>())?,
    })
}

/// The contents of the explicitly tagged `[number]` field if it is next.
fn explicit<'r, T>(
    r: &mut SliceReader<'r>,
    number: u32,
    f: impl FnOnce(&mut SliceReader<'r>) -> der::Result<T>,
) -> der::Result<Option<T>> {
    if r.is_finished() || Tag::peek(r)? != TagNumber(number).context_specific(true) {
        return Ok(None);
    }
    let header = Header::decode(r)?;
    r.read_nested(header.length(), f).map(Some)
}

/// A hash AlgorithmIdentifier, parameters NULL or absent (RFC 4055 §2.1 has verifiers
/// accept both): SHA-256, SHA-384, SHA-512, or (`None`) another.
fn hash_algorithm(r: &mut SliceReader<'_>) -> der::Result<Option<PssHash>> {
    r.sequence(|r| {
        let oid: ObjectIdentifier = r.decode()?;
        if !r.is_finished() {
            r.decode::<Null>()?;
        }
        Ok(PssHash::from_oid(oid))
    })
}

/// A MaskGenAlgorithm: MGF1 and its hash, or another function.
fn mask_gen_algorithm(r: &mut SliceReader<'_>) -> der::Result<Mgf> {
    r.sequence(|r| {
        let oid: ObjectIdentifier = r.decode()?;
        if oid != ID_MGF1 {
            // Parameters whose syntax ippm does not know: skipped, not judged.
            let rest = r.remaining_len();
            r.read_slice(rest)?;
            return Ok(Mgf::Other);
        }
        hash_algorithm(r).map(Mgf::Mgf1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_identifiers_read_back() {
        for h in [PssHash::Sha256, PssHash::Sha384, PssHash::Sha512] {
            assert_eq!(parse(h.algorithm_identifier()), Ok(Some(h)));
        }
    }

    #[test]
    fn other_algorithms_are_not_pss() {
        // sha256WithRSAEncryption, ecdsa-with-SHA256, garbage, nothing.
        let rsa = [
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05,
            0x00,
        ];
        let ec = [
            0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
        ];
        for a in [&rsa[..], &ec[..], b"\x30", b"", b"\x30\x83\x00\x00\x00"] {
            assert_eq!(parse(a), Ok(None), "{a:02x?}");
        }
    }
}
