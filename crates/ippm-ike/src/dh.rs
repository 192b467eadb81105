//! Diffie-Hellman groups for the KE payload (RFC 7296 §3.4) and `g^ir` (§2.14).
//!
//! Four groups, by their IANA Transform Type 4 ids:
//!
//! * 14, 2048-bit MODP (RFC 3526 §3): public value `g^x mod p` as 256 octets, left-padded
//!   with zeros (RFC 7296 §3.4); the shared secret is padded the same way. The peer's value
//!   must satisfy `1 < y < p-1`, which rules out the subgroups of order 1 and 2 (p is a safe
//!   prime). Arithmetic is crypto-bigint's constant-time Montgomery exponentiation.
//! * 19 and 20, 256- and 384-bit random ECP (RFC 5903 §7): public value `x | y`, each
//!   coordinate padded to the field size, with no SEC1 `0x04` prefix; the shared secret is the
//!   x coordinate only (RFC 5903 §9 records that change from RFC 4753's `x | y`). The peer's
//!   point must lie on the curve and must not be the identity.
//! * 31, Curve25519 (RFC 8031): 32-octet public value and shared secret, X25519 as in RFC 7748;
//!   an all-zero shared secret (the peer sent a point of small order) is refused, as RFC 8031
//!   §2 and RFC 7748 §6.1 ask.
//!
//! Private values take their randomness as an argument ([`DhPrivate::from_random`]) so the
//! state machine stays deterministic and tests can use published keys;
//! [`DhPrivate::generate`] is the convenience that draws it from the operating system.

use crypto_bigint::modular::{FixedMontyForm, FixedMontyParams};
use crypto_bigint::{EncodedUint, Encoding, Odd, U512, U2048};
use p256::elliptic_curve::sec1::ToSec1Point;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::codepoints::transform;

/// The RFC 3526 §3 2048-bit MODP prime, `2^2048 - 2^1984 - 1 + 2^64 * { [2^1918 pi] + 124476 }`.
const MODP_2048_P: Odd<U2048> = Odd::<U2048>::from_be_hex(concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1",
    "29024E088A67CC74020BBEA63B139B22514A08798E3404DD",
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245",
    "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D",
    "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F",
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D",
    "670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9",
    "DE2BCBF6955817183995497CEA956AE515D2261898FA0510",
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF",
));

/// Montgomery parameters for [`MODP_2048_P`], computed at compile time.
const MODP_2048_PARAMS: FixedMontyParams<{ U2048::LIMBS }> = FixedMontyParams::new(MODP_2048_P);

/// The RFC 3526 generator, 2.
const MODP_2048_G: U2048 = U2048::from_u8(2);

/// Octets of the MODP-2048 private exponent: 512 bits.
///
/// RFC 3526 §8 estimates group 14 at 110 to 160 bits of strength and asks for an exponent of
/// 220 to 320 bits to match. 512 bits clears the upper estimate with a wide margin (so the
/// exponent is never the weak point, whatever estimate one believes), costs little next to a
/// full 2048-bit exponent, and fills whole 64-bit limbs. The exponent is used as drawn; it is
/// not reduced modulo the group order, which is far larger.
const MODP_2048_SECRET_LEN: usize = 64;

/// Octets of a MODP-2048 public value or shared secret.
const MODP_2048_LEN: usize = 256;

/// A Diffie-Hellman group this implementation supports (IANA IKEv2 Transform Type 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DhGroup {
    /// 2048-bit MODP group (RFC 3526), id 14.
    Modp2048,
    /// 256-bit random ECP group, NIST P-256 (RFC 5903), id 19.
    Ecp256,
    /// 384-bit random ECP group, NIST P-384 (RFC 5903), id 20.
    Ecp384,
    /// Curve25519 (RFC 8031), id 31.
    Curve25519,
}

impl DhGroup {
    /// The group with this Transform Type 4 id, if supported.
    pub fn from_id(id: u16) -> Option<Self> {
        match id {
            transform::DH_MODP_2048 => Some(Self::Modp2048),
            transform::DH_ECP_256 => Some(Self::Ecp256),
            transform::DH_ECP_384 => Some(Self::Ecp384),
            transform::DH_X25519 => Some(Self::Curve25519),
            _ => None,
        }
    }

    /// The group's Transform Type 4 id (also the KE payload's Diffie-Hellman Group Num).
    pub fn id(self) -> u16 {
        match self {
            Self::Modp2048 => transform::DH_MODP_2048,
            Self::Ecp256 => transform::DH_ECP_256,
            Self::Ecp384 => transform::DH_ECP_384,
            Self::Curve25519 => transform::DH_X25519,
        }
    }

    /// Length of the public value, the KE payload's Key Exchange Data: 256, 64, 96 or 32.
    pub fn public_len(self) -> usize {
        match self {
            Self::Modp2048 => MODP_2048_LEN,
            Self::Ecp256 => 64,
            Self::Ecp384 => 96,
            Self::Curve25519 => 32,
        }
    }

    /// Length of the shared secret `g^ir`: 256, 32, 48 or 32.
    pub fn shared_len(self) -> usize {
        match self {
            Self::Modp2048 => MODP_2048_LEN,
            Self::Ecp256 => 32,
            Self::Ecp384 => 48,
            Self::Curve25519 => 32,
        }
    }

    /// Octets of randomness [`DhPrivate::from_random`] takes: 64 (a 512-bit MODP exponent),
    /// 32 and 48 (an ECP scalar, big-endian), 32 (an X25519 scalar, clamped by X25519).
    pub fn secret_len(self) -> usize {
        match self {
            Self::Modp2048 => MODP_2048_SECRET_LEN,
            Self::Ecp256 => 32,
            Self::Ecp384 => 48,
            Self::Curve25519 => 32,
        }
    }
}

/// Why a Diffie-Hellman computation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DhError {
    /// The peer's public value has the wrong length for the group.
    #[error("{group:?} public value of {got} octets, expected {expected}")]
    PublicLength {
        /// The group.
        group: DhGroup,
        /// Its public value length.
        expected: usize,
        /// The length received.
        got: usize,
    },
    /// The peer's ECP public value is not a point on the curve, or is the identity.
    #[error("{0:?} public value is not a valid curve point")]
    InvalidPoint(DhGroup),
    /// The peer's MODP public value is not in `2..=p-2`.
    #[error("MODP public value out of range (must be 1 < y < p-1)")]
    PublicOutOfRange,
    /// X25519 produced the all-zero value: the peer's point has small order.
    #[error("X25519 shared secret is all zero (peer sent a small-order point)")]
    AllZeroSharedSecret,
    /// `from_random` was given the wrong amount of randomness.
    #[error("{group:?} needs {expected} octets of randomness, got {got}")]
    RandomLength {
        /// The group.
        group: DhGroup,
        /// [`DhGroup::secret_len`].
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// The randomness does not make a usable private value (an ECP scalar of zero or not
    /// below the group order, or a zero MODP exponent): draw fresh randomness and retry.
    #[error("{0:?} private value out of range; retry with fresh randomness")]
    PrivateOutOfRange(DhGroup),
    /// The operating system's random number generator failed.
    #[error("system randomness unavailable: {0}")]
    Rng(getrandom::Error),
}

/// The secret part of one group's key pair.
enum Secret {
    /// A MODP exponent (zeroized on drop).
    Modp(Zeroizing<U512>),
    /// A P-256 scalar (zeroized on drop by `SecretKey`).
    Ecp256(p256::SecretKey),
    /// A P-384 scalar (zeroized on drop by `SecretKey`).
    Ecp384(p384::SecretKey),
    /// An X25519 scalar (zeroized on drop by `StaticSecret`).
    X25519(x25519_dalek::StaticSecret),
}

/// A Diffie-Hellman private value and its public value.
///
/// The private part is zeroized on drop and never printed: `Debug` shows only the group.
pub struct DhPrivate {
    secret: Secret,
    /// The public value, computed once (KE payload data).
    public: Vec<u8>,
}

impl std::fmt::Debug for DhPrivate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhPrivate")
            .field("group", &self.group())
            .field("secret", &"<redacted>")
            .finish()
    }
}

// Every variant of `Secret` zeroizes itself on drop; the public value is not secret.
impl ZeroizeOnDrop for DhPrivate {}

/// How many fresh draws [`DhPrivate::generate`] makes before giving up. An ECP draw fails with
/// probability below 2^-32 (P-256's order is just under 2^256) and a MODP draw with 2^-512,
/// so a failure here means the random source is broken.
const GENERATE_ATTEMPTS: usize = 8;

impl DhPrivate {
    /// A private value for `group` from `random`, which must be exactly
    /// [`DhGroup::secret_len`] octets of fresh randomness.
    ///
    /// MODP: a big-endian 512-bit exponent. ECP: a big-endian scalar, refused with
    /// [`DhError::PrivateOutOfRange`] if zero or not below the group order (the caller retries
    /// with fresh randomness rather than biasing the scalar). X25519: the RFC 7748 scalar,
    /// clamped by X25519 itself.
    pub fn from_random(group: DhGroup, random: &[u8]) -> Result<Self, DhError> {
        if random.len() != group.secret_len() {
            return Err(DhError::RandomLength {
                group,
                expected: group.secret_len(),
                got: random.len(),
            });
        }
        match group {
            DhGroup::Modp2048 => {
                let bytes =
                    Zeroizing::new(EncodedUint::<{ U512::LIMBS }>::try_from(random).map_err(
                        |_| DhError::RandomLength {
                            group,
                            expected: group.secret_len(),
                            got: random.len(),
                        },
                    )?);
                let x = Zeroizing::new(U512::from_be_bytes(*bytes));
                if (!x.is_nonzero()).to_bool() {
                    return Err(DhError::PrivateOutOfRange(group));
                }
                let public = modp_pow(&MODP_2048_G, &x);
                Ok(Self {
                    secret: Secret::Modp(x),
                    public: public.to_vec(),
                })
            }
            DhGroup::Ecp256 => {
                let sk = p256::SecretKey::from_slice(random)
                    .map_err(|_| DhError::PrivateOutOfRange(group))?;
                let point = sk.public_key().to_sec1_point(false);
                let public = xy_of_uncompressed(point.as_bytes(), group)?;
                Ok(Self {
                    secret: Secret::Ecp256(sk),
                    public,
                })
            }
            DhGroup::Ecp384 => {
                let sk = p384::SecretKey::from_slice(random)
                    .map_err(|_| DhError::PrivateOutOfRange(group))?;
                let point = sk.public_key().to_sec1_point(false);
                let public = xy_of_uncompressed(point.as_bytes(), group)?;
                Ok(Self {
                    secret: Secret::Ecp384(sk),
                    public,
                })
            }
            DhGroup::Curve25519 => {
                let bytes: Zeroizing<[u8; 32]> =
                    Zeroizing::new(random.try_into().map_err(|_| DhError::RandomLength {
                        group,
                        expected: group.secret_len(),
                        got: random.len(),
                    })?);
                let sk = x25519_dalek::StaticSecret::from(*bytes);
                let public = x25519_dalek::PublicKey::from(&sk).to_bytes().to_vec();
                Ok(Self {
                    secret: Secret::X25519(sk),
                    public,
                })
            }
        }
    }

    /// A fresh private value for `group` from the operating system's random number
    /// generator, drawing again if a draw is out of range.
    pub fn generate(group: DhGroup) -> Result<Self, DhError> {
        let mut random = Zeroizing::new(vec![0u8; group.secret_len()]);
        let mut last = DhError::PrivateOutOfRange(group);
        for _ in 0..GENERATE_ATTEMPTS {
            getrandom::fill(&mut random).map_err(DhError::Rng)?;
            match Self::from_random(group, &random) {
                Ok(private) => return Ok(private),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The group.
    pub fn group(&self) -> DhGroup {
        match self.secret {
            Secret::Modp(_) => DhGroup::Modp2048,
            Secret::Ecp256(_) => DhGroup::Ecp256,
            Secret::Ecp384(_) => DhGroup::Ecp384,
            Secret::X25519(_) => DhGroup::Curve25519,
        }
    }

    /// The public value: the KE payload's Key Exchange Data, [`DhGroup::public_len`] octets.
    pub fn public(&self) -> Vec<u8> {
        self.public.clone()
    }

    /// The shared secret `g^ir` with the peer's public value (its KE payload data),
    /// [`DhGroup::shared_len`] octets, after validating that value.
    pub fn shared(&self, peer_public: &[u8]) -> Result<Zeroizing<Vec<u8>>, DhError> {
        let group = self.group();
        if peer_public.len() != group.public_len() {
            return Err(DhError::PublicLength {
                group,
                expected: group.public_len(),
                got: peer_public.len(),
            });
        }
        match &self.secret {
            Secret::Modp(x) => {
                let bytes = EncodedUint::<{ U2048::LIMBS }>::try_from(peer_public)
                    .map_err(|_| DhError::PublicOutOfRange)?;
                let y = U2048::from_be_bytes(bytes);
                // The peer's value is public: plain comparisons are fine.
                let p_minus_1 = MODP_2048_P.get().wrapping_sub(&U2048::ONE);
                if y <= U2048::ONE || y >= p_minus_1 {
                    return Err(DhError::PublicOutOfRange);
                }
                Ok(modp_pow(&y, x))
            }
            Secret::Ecp256(sk) => {
                let pk = p256::PublicKey::from_sec1_bytes(&sec1_uncompressed(peer_public))
                    .map_err(|_| DhError::InvalidPoint(group))?;
                let shared = sk.diffie_hellman(&pk);
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
            Secret::Ecp384(sk) => {
                let pk = p384::PublicKey::from_sec1_bytes(&sec1_uncompressed(peer_public))
                    .map_err(|_| DhError::InvalidPoint(group))?;
                let shared = sk.diffie_hellman(&pk);
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
            Secret::X25519(sk) => {
                let bytes: [u8; 32] = peer_public
                    .try_into()
                    .map_err(|_| DhError::InvalidPoint(group))?;
                let shared = sk.diffie_hellman(&x25519_dalek::PublicKey::from(bytes));
                // RFC 7748 §6.1 / RFC 8031 §2: refuse the all-zero value, which X25519 yields
                // exactly for points of small order (constant time in dalek).
                if !shared.was_contributory() {
                    return Err(DhError::AllZeroSharedSecret);
                }
                Ok(Zeroizing::new(shared.as_bytes().to_vec()))
            }
        }
    }
}

/// `base^x mod p` for the RFC 3526 2048-bit prime, constant time in `x` (every exponent bit is
/// processed), as 256 big-endian octets.
fn modp_pow(base: &U2048, x: &U512) -> Zeroizing<Vec<u8>> {
    let mut base_m = FixedMontyForm::new(base, &MODP_2048_PARAMS);
    let mut result_m = base_m.pow(x);
    let mut result = result_m.retrieve();
    let out = Zeroizing::new(result.to_be_bytes().as_ref().to_vec());
    base_m.zeroize();
    result_m.zeroize();
    result.zeroize();
    out
}

/// SEC1 uncompressed encoding `0x04 | x | y` of an RFC 5903 public value `x | y`, so that
/// `from_sec1_bytes` checks it is on the curve.
fn sec1_uncompressed(xy: &[u8]) -> Vec<u8> {
    let mut sec1 = Vec::with_capacity(xy.len() + 1);
    sec1.push(0x04);
    sec1.extend_from_slice(xy);
    sec1
}

/// The RFC 5903 public value `x | y` of a SEC1 uncompressed point `0x04 | x | y`.
fn xy_of_uncompressed(sec1: &[u8], group: DhGroup) -> Result<Vec<u8>, DhError> {
    match sec1.split_first() {
        Some((0x04, xy)) if xy.len() == group.public_len() => Ok(xy.to_vec()),
        _ => Err(DhError::InvalidPoint(group)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_lengths() {
        for (id, group, public, shared, secret) in [
            (14, DhGroup::Modp2048, 256, 256, 64),
            (19, DhGroup::Ecp256, 64, 32, 32),
            (20, DhGroup::Ecp384, 96, 48, 48),
            (31, DhGroup::Curve25519, 32, 32, 32),
        ] {
            assert_eq!(DhGroup::from_id(id), Some(group));
            assert_eq!(group.id(), id);
            assert_eq!(group.public_len(), public);
            assert_eq!(group.shared_len(), shared);
            assert_eq!(group.secret_len(), secret);
        }
        for id in [0, 1, 2, 5, 15, 21, 32, 0xffff] {
            assert_eq!(DhGroup::from_id(id), None);
        }
    }

    #[test]
    fn modp_prime_matches_rfc3526_formula_bits() {
        // 2^2048 - 2^1984 - 1 + 2^64 * {...}: top and bottom 64 bits are all ones.
        let p = MODP_2048_P.get().to_be_bytes();
        let p = p.as_ref();
        assert_eq!(p.len(), 256);
        assert!(p.iter().take(8).all(|&b| b == 0xff));
        assert!(p.iter().skip(248).all(|&b| b == 0xff));
    }

    #[test]
    fn zero_modp_exponent_refused() {
        assert_eq!(
            DhPrivate::from_random(DhGroup::Modp2048, &[0; 64]).unwrap_err(),
            DhError::PrivateOutOfRange(DhGroup::Modp2048)
        );
    }

    #[test]
    fn debug_redacts() {
        let k = DhPrivate::from_random(DhGroup::Curve25519, &[0x42; 32]).unwrap();
        let s = format!("{k:?}");
        assert!(s.contains("Curve25519"));
        assert!(!s.contains("42"));
        assert!(!s.to_lowercase().contains("4242"));
    }
}
