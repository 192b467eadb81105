//! IKE SA key derivation (RFC 7296 §2.13, §2.14) and RFC 7717's derived secret.
//!
//! `SKEYSEED = prf(Ni | Nr, g^ir)`, then `SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr
//! = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)`, and for O/TWAMP (RFC 7717 §5.1, DESIGN.md choice
//! 4) `prf(SK_d, "IPPM")`. SK_d and the other keys never leave this crate: [`IkeKeys`] hands
//! out only the derived secret.

use hmac::{Hmac, KeyInit, Mac};
use zeroize::Zeroizing;

use crate::codepoints::transform;

/// Why keys could not be derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// prf+ can produce at most 255 blocks (RFC 7296 §2.13).
    #[error("prf+ asked for {0} octets, more than 255 blocks")]
    TooLong(usize),
}

/// The pseudorandom functions ippm negotiates (HMAC based: keys of any length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prf {
    /// PRF_HMAC_SHA1 (for old peers).
    HmacSha1,
    /// PRF_HMAC_SHA2_256.
    HmacSha256,
    /// PRF_HMAC_SHA2_384.
    HmacSha384,
    /// PRF_HMAC_SHA2_512.
    HmacSha512,
}

impl Prf {
    /// The PRF of a transform ID, if supported.
    pub fn from_transform_id(id: u16) -> Option<Self> {
        match id {
            transform::PRF_HMAC_SHA1 => Some(Self::HmacSha1),
            transform::PRF_HMAC_SHA2_256 => Some(Self::HmacSha256),
            transform::PRF_HMAC_SHA2_384 => Some(Self::HmacSha384),
            transform::PRF_HMAC_SHA2_512 => Some(Self::HmacSha512),
            _ => None,
        }
    }

    /// The transform ID (IANA Transform Type 2).
    pub fn transform_id(self) -> u16 {
        match self {
            Self::HmacSha1 => transform::PRF_HMAC_SHA1,
            Self::HmacSha256 => transform::PRF_HMAC_SHA2_256,
            Self::HmacSha384 => transform::PRF_HMAC_SHA2_384,
            Self::HmacSha512 => transform::PRF_HMAC_SHA2_512,
        }
    }

    /// Output length in octets, which is also the preferred key length (RFC 7296 §2.13): the
    /// length of SK_d, SK_pi and SK_pr.
    pub fn output_len(self) -> usize {
        match self {
            Self::HmacSha1 => 20,
            Self::HmacSha256 => 32,
            Self::HmacSha384 => 48,
            Self::HmacSha512 => 64,
        }
    }

    /// `prf(key, data)`.
    pub fn prf(self, key: &[u8], data: &[u8]) -> Zeroizing<Vec<u8>> {
        fn run<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Zeroizing<Vec<u8>> {
            // HMAC takes keys of any length, so new_from_slice cannot fail.
            match <M as KeyInit>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(data);
                    Zeroizing::new(m.finalize().into_bytes().to_vec())
                }
                Err(_) => Zeroizing::new(Vec::new()),
            }
        }
        match self {
            Self::HmacSha1 => run::<Hmac<sha1::Sha1>>(key, data),
            Self::HmacSha256 => run::<Hmac<sha2::Sha256>>(key, data),
            Self::HmacSha384 => run::<Hmac<sha2::Sha384>>(key, data),
            Self::HmacSha512 => run::<Hmac<sha2::Sha512>>(key, data),
        }
    }

    /// `prf+(key, seed)` truncated to `len` octets: T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 |
    /// S | n), at most 255 blocks (RFC 7296 §2.13).
    pub fn prf_plus(
        self,
        key: &[u8],
        seed: &[u8],
        len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let blocks = len.div_ceil(self.output_len());
        if blocks > 255 {
            return Err(KeyError::TooLong(len));
        }
        let mut out = Zeroizing::new(Vec::with_capacity(blocks * self.output_len()));
        let mut t: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::new());
        let mut input = Zeroizing::new(Vec::new());
        for n in 1..=blocks {
            input.clear();
            input.extend_from_slice(&t);
            input.extend_from_slice(seed);
            input.push(n as u8);
            t = self.prf(key, &input);
            out.extend_from_slice(&t);
        }
        out.truncate(len);
        Ok(out)
    }
}

/// Key lengths of the negotiated encryption and integrity algorithms, in octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLengths {
    /// Encryption key (plus salt for AES-GCM, RFC 5282).
    pub encr: usize,
    /// Integrity key (0 for AEAD ciphers).
    pub integ: usize,
}

/// What an exchange contributes to the keys: the nonces, the Diffie-Hellman shared secret
/// and the SPIs of the (new) IKE SA.
#[derive(Clone, Copy)]
pub struct Contributions<'a> {
    /// Ni.
    pub ni: &'a [u8],
    /// Nr.
    pub nr: &'a [u8],
    /// g^ir.
    pub g_ir: &'a [u8],
    /// SPIi.
    pub spi_i: &'a [u8; 8],
    /// SPIr.
    pub spi_r: &'a [u8; 8],
}

impl std::fmt::Debug for Contributions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Contributions([redacted])")
    }
}

/// The keys of one IKE SA. Zeroized on drop, never printed; only [`IkeKeys::ippm_secret`]
/// leaves the crate.
// SK_a*, SK_e* and SK_p* are read by the SK payload protection and the AUTH computation,
// which build on this (issue 5); until then only SK_d and the test read them.
#[allow(dead_code)]
pub struct IkeKeys {
    prf: Prf,
    pub(crate) sk_d: Zeroizing<Vec<u8>>,
    pub(crate) sk_ai: Zeroizing<Vec<u8>>,
    pub(crate) sk_ar: Zeroizing<Vec<u8>>,
    pub(crate) sk_ei: Zeroizing<Vec<u8>>,
    pub(crate) sk_er: Zeroizing<Vec<u8>>,
    pub(crate) sk_pi: Zeroizing<Vec<u8>>,
    pub(crate) sk_pr: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for IkeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IkeKeys({:?}, [redacted])", self.prf)
    }
}

impl IkeKeys {
    /// RFC 7296 §2.14: SKEYSEED from the nonces and the Diffie-Hellman shared secret, then the
    /// seven keys from prf+.
    pub fn derive(prf: Prf, c: Contributions<'_>, lengths: KeyLengths) -> Result<Self, KeyError> {
        let Contributions {
            ni,
            nr,
            g_ir,
            spi_i,
            spi_r,
        } = c;
        let mut nonces = Zeroizing::new(Vec::with_capacity(ni.len() + nr.len()));
        nonces.extend_from_slice(ni);
        nonces.extend_from_slice(nr);
        let skeyseed = prf.prf(&nonces, g_ir);
        let mut seed = Zeroizing::new(nonces.to_vec());
        seed.extend_from_slice(spi_i);
        seed.extend_from_slice(spi_r);
        Self::from_skeyseed(prf, &skeyseed, &seed, lengths)
    }

    /// Rekeying the IKE SA (RFC 7296 §2.18): SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr),
    /// with the new SA's nonces and SPIs.
    pub fn rekey(
        &self,
        prf: Prf,
        c: Contributions<'_>,
        lengths: KeyLengths,
    ) -> Result<Self, KeyError> {
        let Contributions {
            ni,
            nr,
            g_ir,
            spi_i,
            spi_r,
        } = c;
        let mut data = Zeroizing::new(g_ir.to_vec());
        data.extend_from_slice(ni);
        data.extend_from_slice(nr);
        let skeyseed = self.prf.prf(&self.sk_d, &data);
        let mut seed = Zeroizing::new(ni.to_vec());
        seed.extend_from_slice(nr);
        seed.extend_from_slice(spi_i);
        seed.extend_from_slice(spi_r);
        // When the new SA negotiated another PRF, prf+ also runs with the old SA's PRF (the
        // exchange belongs to the old SA, §2.18), as strongSwan does; the keys take the new
        // PRF's lengths, and the new SA uses the new PRF from then on.
        Self::from_skeyseed_with(self.prf, prf, &skeyseed, &seed, lengths)
    }

    fn from_skeyseed(
        prf: Prf,
        skeyseed: &[u8],
        seed: &[u8],
        l: KeyLengths,
    ) -> Result<Self, KeyError> {
        Self::from_skeyseed_with(prf, prf, skeyseed, seed, l)
    }

    /// prf+ with `plus`; the keys of an SA whose PRF is `prf`.
    fn from_skeyseed_with(
        plus: Prf,
        prf: Prf,
        skeyseed: &[u8],
        seed: &[u8],
        l: KeyLengths,
    ) -> Result<Self, KeyError> {
        let p = prf.output_len();
        let total = p + 2 * l.integ + 2 * l.encr + 2 * p;
        let km = plus.prf_plus(skeyseed, seed, total)?;
        let mut at = 0;
        let mut take = |n: usize| {
            let k = Zeroizing::new(km[at..at + n].to_vec());
            at += n;
            k
        };
        Ok(Self {
            prf,
            sk_d: take(p),
            sk_ai: take(l.integ),
            sk_ar: take(l.integ),
            sk_ei: take(l.encr),
            sk_er: take(l.encr),
            sk_pi: take(p),
            sk_pr: take(p),
        })
    }

    /// RFC 7717 §5.1: the O/TWAMP shared secret `prf(SK_d, "IPPM")`, as long as the PRF's
    /// output. The only key material this crate hands out.
    pub fn ippm_secret(&self) -> Zeroizing<Vec<u8>> {
        self.prf.prf(&self.sk_d, b"IPPM")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn prf_rfc4231_case_2() {
        // RFC 4231 test case 2 ("Jefe"), HMAC-SHA-256 and -512.
        let d = b"what do ya want for nothing?";
        assert_eq!(
            Prf::HmacSha256.prf(b"Jefe", d).as_slice(),
            h("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        assert_eq!(
            Prf::HmacSha512.prf(b"Jefe", d).as_slice(),
            h(
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
            )
        );
    }

    /// Golden values computed independently (Python's hmac module) from fixed inputs:
    /// Ni = 00..1f, Nr = 20..3f, g^ir = 32 x 5a, SPIi = 8 x 01, SPIr = 8 x 02.
    #[test]
    fn derivation_matches_an_independent_computation() {
        let ni: Vec<u8> = (0..32).collect();
        let nr: Vec<u8> = (32..64).collect();
        let cases = [
            (
                Prf::HmacSha256,
                KeyLengths {
                    encr: 16,
                    integ: 32,
                },
                "19d20957da79c4a88231765ae4195d333f716ba571a2ce082c82c96b8fb9cfc7",
                "2602f40b5f2eca36242465bf0b931d1ec00214fed110ae333fbc07ed26a8cb4e",
            ),
            (
                Prf::HmacSha384,
                KeyLengths {
                    encr: 32,
                    integ: 48,
                },
                "e87579e686ec4628ce80336d4f120738ab623e82722e851046e417d4dcad949034e06c3a2dd98814785e344a3c4e8495",
                "492d09f6767143a83a3247645863af554b824e5ca4e05f25a2bea78e41c022b5185535b27f2f0dd26927aa6db17d1f0c",
            ),
            (
                Prf::HmacSha1,
                KeyLengths {
                    encr: 16,
                    integ: 20,
                },
                "493aaaeef5ec134adb134048bb1e803dac1baaa6",
                "cfcec1455771ca409fbd0812314ab0784401104b",
            ),
        ];
        for (prf, lengths, sk_d, ippm) in cases {
            let c = Contributions {
                ni: &ni,
                nr: &nr,
                g_ir: &[0x5a; 32],
                spi_i: &[1; 8],
                spi_r: &[2; 8],
            };
            let k = IkeKeys::derive(prf, c, lengths).unwrap();
            assert_eq!(k.sk_d.as_slice(), h(sk_d), "{prf:?}");
            assert_eq!(k.ippm_secret().as_slice(), h(ippm), "{prf:?}");
            assert_eq!(k.sk_ai.len(), lengths.integ);
            assert_eq!(k.sk_er.len(), lengths.encr);
            assert_eq!(k.sk_pr.len(), prf.output_len());
        }
        // The SHA-256 key material continues past SK_d with SK_ai (second 32 octets).
        let c = Contributions {
            ni: &ni,
            nr: &nr,
            g_ir: &[0x5a; 32],
            spi_i: &[1; 8],
            spi_r: &[2; 8],
        };
        let k = IkeKeys::derive(
            Prf::HmacSha256,
            c,
            KeyLengths {
                encr: 16,
                integ: 32,
            },
        )
        .unwrap();
        assert_eq!(
            k.sk_ai.as_slice(),
            h("7e1a027dfb42f8a6b3c8d978f9e827ccd7b712e3380984504bf8739ab944d30f")
        );
    }

    /// All seven keys of the three IKE SAs charon logged (tests/data/ike_sa_keys.txt).
    #[test]
    fn all_keys_match_strongswan() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ike_sa_keys.txt");
        let text = std::fs::read_to_string(path).unwrap();
        let mut n = 0;
        for line in text.lines().filter(|l| l.starts_with("ike_sa=")) {
            let f = |k: &str| {
                let v = line
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                    .unwrap();
                h(v)
            };
            let (ni, nr, g_ir) = (f("ni"), f("nr"), f("g_ir"));
            let spi_i: [u8; 8] = f("spi_i").try_into().unwrap();
            let spi_r: [u8; 8] = f("spi_r").try_into().unwrap();
            let c = Contributions {
                ni: &ni,
                nr: &nr,
                g_ir: &g_ir,
                spi_i: &spi_i,
                spi_r: &spi_r,
            };
            let k = IkeKeys::derive(
                Prf::HmacSha256,
                c,
                KeyLengths {
                    encr: 16,
                    integ: 32,
                },
            )
            .unwrap();
            for (name, got) in [
                ("sk_d", &k.sk_d),
                ("sk_ai", &k.sk_ai),
                ("sk_ar", &k.sk_ar),
                ("sk_ei", &k.sk_ei),
                ("sk_er", &k.sk_er),
                ("sk_pi", &k.sk_pi),
                ("sk_pr", &k.sk_pr),
            ] {
                assert_eq!(got.as_slice(), f(name), "{name} in {line}");
            }
            assert_eq!(k.ippm_secret().as_slice(), f("ippm_secret"));
            n += 1;
        }
        assert_eq!(n, 3);
    }

    #[test]
    fn prf_plus_bounds_and_redaction() {
        assert!(Prf::HmacSha1.prf_plus(b"k", b"s", 255 * 20).is_ok());
        assert_eq!(
            Prf::HmacSha1.prf_plus(b"k", b"s", 255 * 20 + 1),
            Err(KeyError::TooLong(5101))
        );
        let lengths = KeyLengths {
            encr: 16,
            integ: 32,
        };
        let c = Contributions {
            ni: &[1; 16],
            nr: &[2; 16],
            g_ir: &[3; 32],
            spi_i: &[4; 8],
            spi_r: &[5; 8],
        };
        let k = IkeKeys::derive(Prf::HmacSha256, c, lengths).unwrap();
        assert_eq!(format!("{k:?}"), "IkeKeys(HmacSha256, [redacted])");
        // A rekey gives different keys and a different derived secret.
        let c2 = Contributions {
            ni: &[6; 16],
            nr: &[7; 16],
            g_ir: &[8; 32],
            spi_i: &[9; 8],
            spi_r: &[10; 8],
        };
        let r = k.rekey(Prf::HmacSha256, c2, lengths).unwrap();
        assert_ne!(r.ippm_secret(), k.ippm_secret());
        assert_eq!(Prf::from_transform_id(5), Some(Prf::HmacSha256));
        assert_eq!(Prf::from_transform_id(4), None);
    }
}
