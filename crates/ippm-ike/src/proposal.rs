//! IKE SA proposals: what we offer, what we accept, and the strongSwan-style names operators
//! write in configuration (`aes128-sha256-x25519`, `aes256gcm16-prfsha384-ecp384`).

use std::fmt;

use crate::codepoints::{ProtocolId, TransformType, transform};
use crate::dh::DhGroup;
use crate::keys::Prf;
use crate::message::{Attribute, Proposal, Transform};
use crate::sk::{Encr, Integ, Suite};

/// One IKE SA proposal: a single transform of each type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IkeProposal {
    /// Encryption.
    pub encr: Encr,
    /// Integrity (None with AES-GCM).
    pub integ: Option<Integ>,
    /// Pseudorandom function.
    pub prf: Prf,
    /// Diffie-Hellman group.
    pub dh: DhGroup,
}

/// Why a proposal name could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IKE proposal {name:?}: {why}")]
pub struct ProposalError {
    name: String,
    why: &'static str,
}

impl IkeProposal {
    /// The proposals offered when none are configured, in order of preference. The first is
    /// strongSwan's first default, so the common case needs no INVALID_KE_PAYLOAD round trip.
    pub fn defaults() -> Vec<Self> {
        use DhGroup::*;
        use Encr::*;
        let cbc = |encr, integ, prf, dh| Self {
            encr,
            integ: Some(integ),
            prf,
            dh,
        };
        let gcm = |encr, prf, dh| Self {
            encr,
            integ: None,
            prf,
            dh,
        };
        vec![
            cbc(
                AesCbc128,
                Integ::HmacSha2_256_128,
                Prf::HmacSha256,
                Curve25519,
            ),
            cbc(
                AesCbc256,
                Integ::HmacSha2_384_192,
                Prf::HmacSha384,
                Curve25519,
            ),
            gcm(AesGcm16_128, Prf::HmacSha256, Curve25519),
            gcm(AesGcm16_256, Prf::HmacSha384, Curve25519),
            cbc(AesCbc128, Integ::HmacSha2_256_128, Prf::HmacSha256, Ecp256),
            cbc(AesCbc256, Integ::HmacSha2_384_192, Prf::HmacSha384, Ecp384),
            gcm(AesGcm16_256, Prf::HmacSha384, Ecp384),
            cbc(
                AesCbc128,
                Integ::HmacSha2_256_128,
                Prf::HmacSha256,
                Modp2048,
            ),
            cbc(
                AesCbc256,
                Integ::HmacSha2_512_256,
                Prf::HmacSha512,
                Modp2048,
            ),
        ]
    }

    /// The SK payload suite of this proposal.
    pub fn suite(&self) -> Suite {
        Suite {
            encr: self.encr,
            integ: self.integ,
        }
    }

    /// Parses a strongSwan-style name: `ENCR-[INTEG-]PRF|INTEG-DH`, e.g. `aes128-sha256-x25519`
    /// (the PRF follows the integrity algorithm), `aes256-sha384-prfsha512-ecp384` or
    /// `aes128gcm16-prfsha256-modp2048` (AEAD needs an explicit PRF).
    pub fn parse(s: &str) -> Result<Self, ProposalError> {
        let err = |why| ProposalError {
            name: s.to_owned(),
            why,
        };
        let mut encr = None;
        let mut integ = None;
        let mut prf = None;
        let mut dh = None;
        for tok in s.trim().to_ascii_lowercase().split('-') {
            let slot_taken = "an algorithm of the same type given twice";
            match tok {
                "aes128" | "aes256" | "aes128gcm16" | "aes256gcm16" | "aes128gcm128"
                | "aes256gcm128" => {
                    let e = match tok {
                        "aes128" => Encr::AesCbc128,
                        "aes256" => Encr::AesCbc256,
                        "aes128gcm16" | "aes128gcm128" => Encr::AesGcm16_128,
                        _ => Encr::AesGcm16_256,
                    };
                    if encr.replace(e).is_some() {
                        return Err(err(slot_taken));
                    }
                }
                "sha256" | "sha384" | "sha512" => {
                    let i = match tok {
                        "sha256" => Integ::HmacSha2_256_128,
                        "sha384" => Integ::HmacSha2_384_192,
                        _ => Integ::HmacSha2_512_256,
                    };
                    if integ.replace(i).is_some() {
                        return Err(err(slot_taken));
                    }
                }
                "prfsha1" | "prfsha256" | "prfsha384" | "prfsha512" => {
                    let p = match tok {
                        "prfsha1" => Prf::HmacSha1,
                        "prfsha256" => Prf::HmacSha256,
                        "prfsha384" => Prf::HmacSha384,
                        _ => Prf::HmacSha512,
                    };
                    if prf.replace(p).is_some() {
                        return Err(err(slot_taken));
                    }
                }
                "x25519" | "curve25519" | "ecp256" | "ecp384" | "modp2048" => {
                    let g = match tok {
                        "x25519" | "curve25519" => DhGroup::Curve25519,
                        "ecp256" => DhGroup::Ecp256,
                        "ecp384" => DhGroup::Ecp384,
                        _ => DhGroup::Modp2048,
                    };
                    if dh.replace(g).is_some() {
                        return Err(err(slot_taken));
                    }
                }
                _ => return Err(err("unknown algorithm name")),
            }
        }
        let encr = encr.ok_or_else(|| err("no encryption algorithm"))?;
        if encr.is_aead() && integ.is_some() {
            return Err(err("AES-GCM takes no integrity algorithm"));
        }
        if !encr.is_aead() && integ.is_none() {
            return Err(err("AES-CBC needs an integrity algorithm"));
        }
        let prf = match (prf, integ) {
            (Some(p), _) => p,
            (None, Some(Integ::HmacSha2_256_128)) => Prf::HmacSha256,
            (None, Some(Integ::HmacSha2_384_192)) => Prf::HmacSha384,
            (None, Some(Integ::HmacSha2_512_256)) => Prf::HmacSha512,
            (None, None) => return Err(err("AES-GCM needs an explicit PRF (prfsha256...)")),
        };
        let dh = dh.ok_or_else(|| err("no Diffie-Hellman group"))?;
        Ok(Self {
            encr,
            integ,
            prf,
            dh,
        })
    }

    /// This proposal as an SA payload proposal (`spi` empty in IKE_SA_INIT, the new SA's SPI
    /// when rekeying).
    pub fn to_wire(&self, num: u8, spi: &[u8]) -> Proposal {
        let mut transforms = vec![Transform {
            ty: TransformType::ENCR,
            id: self.encr.transform_id(),
            attributes: vec![Attribute::Short {
                ty: transform::ATTR_KEY_LENGTH,
                value: self.encr.key_length_bits(),
            }],
        }];
        transforms.push(Transform {
            ty: TransformType::PRF,
            id: self.prf.transform_id(),
            attributes: Vec::new(),
        });
        if let Some(i) = self.integ {
            transforms.push(Transform {
                ty: TransformType::INTEG,
                id: i.id(),
                attributes: Vec::new(),
            });
        }
        transforms.push(Transform {
            ty: TransformType::DH,
            id: self.dh.id(),
            attributes: Vec::new(),
        });
        Proposal {
            num,
            protocol: ProtocolId::IKE,
            spi: spi.to_vec(),
            transforms,
        }
    }

    /// Reads a proposal that holds exactly one transform of each type (what a responder
    /// sends back). None if it holds anything else or something unsupported.
    pub fn from_selected(p: &Proposal) -> Option<Self> {
        if p.protocol != ProtocolId::IKE {
            return None;
        }
        let one = |ty| {
            let mut it = p.transforms.iter().filter(|t| t.ty == ty);
            let first = it.next();
            if it.next().is_some() { None } else { first }
        };
        if p.transforms.iter().any(|t| {
            ![
                TransformType::ENCR,
                TransformType::PRF,
                TransformType::INTEG,
                TransformType::DH,
            ]
            .contains(&t.ty)
        }) {
            return None;
        }
        let e = one(TransformType::ENCR)?;
        let encr = Encr::from_transform(e.id, e.key_length())?;
        let prf = Prf::from_transform_id(one(TransformType::PRF)?.id)?;
        let integ = match one(TransformType::INTEG) {
            Some(t) if t.id != transform::AUTH_NONE => Some(Integ::from_id(t.id)?),
            _ => None,
        };
        if encr.is_aead() != integ.is_none() {
            return None;
        }
        let dh = DhGroup::from_id(one(TransformType::DH)?.id)?;
        Some(Self {
            encr,
            integ,
            prf,
            dh,
        })
    }

    /// Whether a peer's proposal (which may list several transforms of each type) allows
    /// this one.
    pub fn offered_in(&self, p: &Proposal) -> bool {
        if p.protocol != ProtocolId::IKE {
            return false;
        }
        let has = |ty: TransformType, ok: &dyn Fn(&Transform) -> bool| {
            p.transforms.iter().any(|t| t.ty == ty && ok(t))
        };
        // A transform with an attribute we do not know must not be chosen (§3.3.6).
        let known_attrs = |t: &Transform| {
            t.attributes.iter().all(|a| {
                matches!(
                    a,
                    Attribute::Short {
                        ty: transform::ATTR_KEY_LENGTH,
                        ..
                    }
                )
            })
        };
        let encr_ok = has(TransformType::ENCR, &|t| {
            known_attrs(t) && Encr::from_transform(t.id, t.key_length()) == Some(self.encr)
        });
        let prf_ok = has(TransformType::PRF, &|t| {
            t.attributes.is_empty() && t.id == self.prf.transform_id()
        });
        let integ_ok = match self.integ {
            Some(i) => has(TransformType::INTEG, &|t| {
                t.attributes.is_empty() && t.id == i.id()
            }),
            // With an AEAD cipher the proposal has no integrity transform, or "NONE".
            None => p
                .transforms
                .iter()
                .filter(|t| t.ty == TransformType::INTEG)
                .all(|t| t.id == transform::AUTH_NONE),
        };
        let dh_ok = has(TransformType::DH, &|t| {
            t.attributes.is_empty() && t.id == self.dh.id()
        });
        encr_ok && prf_ok && integ_ok && dh_ok
    }
}

impl fmt::Display for IkeProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let encr = match self.encr {
            Encr::AesCbc128 => "aes128",
            Encr::AesCbc256 => "aes256",
            Encr::AesGcm16_128 => "aes128gcm16",
            Encr::AesGcm16_256 => "aes256gcm16",
        };
        let prf = match self.prf {
            Prf::HmacSha1 => "prfsha1",
            Prf::HmacSha256 => "prfsha256",
            Prf::HmacSha384 => "prfsha384",
            Prf::HmacSha512 => "prfsha512",
        };
        let dh = match self.dh {
            DhGroup::Curve25519 => "x25519",
            DhGroup::Ecp256 => "ecp256",
            DhGroup::Ecp384 => "ecp384",
            DhGroup::Modp2048 => "modp2048",
        };
        match self.integ {
            Some(i) => {
                let integ = match i {
                    Integ::HmacSha2_256_128 => "sha256",
                    Integ::HmacSha2_384_192 => "sha384",
                    Integ::HmacSha2_512_256 => "sha512",
                };
                write!(f, "{encr}-{integ}-{prf}-{dh}")
            }
            None => write!(f, "{encr}-{prf}-{dh}"),
        }
    }
}

/// What a responder chose from an initiator's SA payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// A proposal whose group matches the initiator's KE payload: go on.
    Chosen {
        /// The initiator's Proposal Num (echoed in the response).
        num: u8,
        /// What was chosen.
        proposal: IkeProposal,
    },
    /// A proposal was acceptable, but for another group than the KE payload's: answer
    /// INVALID_KE_PAYLOAD with this group (§1.2).
    WrongGroup(DhGroup),
    /// Nothing acceptable: NO_PROPOSAL_CHOSEN.
    None,
}

/// Picks from the peer's proposals (in the peer's order of preference) the first that one of
/// `ours` allows, preferring a choice that fits the peer's KE group (no extra round trip).
pub fn select(ours: &[IkeProposal], theirs: &[Proposal], ke_group: Option<u16>) -> Selection {
    let mut fallback = None;
    for p in theirs {
        for o in ours {
            if o.offered_in(p) {
                if Some(o.dh.id()) == ke_group {
                    return Selection::Chosen {
                        num: p.num,
                        proposal: *o,
                    };
                }
                fallback.get_or_insert(o.dh);
            }
        }
    }
    match fallback {
        Some(g) => Selection::WrongGroup(g),
        None => Selection::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in IkeProposal::defaults() {
            assert_eq!(IkeProposal::parse(&p.to_string()).unwrap(), p);
        }
        let p = IkeProposal::parse("aes128-sha256-x25519").unwrap();
        assert_eq!(p.prf, Prf::HmacSha256);
        assert_eq!(p.integ, Some(Integ::HmacSha2_256_128));
        assert_eq!(p.dh, DhGroup::Curve25519);
        for bad in [
            "",
            "aes128",
            "aes128gcm16-x25519",
            "aes128gcm16-sha256-prfsha256-x25519",
            "aes128-x25519",
            "aes128-sha256",
            "aes128-aes256-sha256-x25519",
            "3des-sha1-modp1024",
        ] {
            assert!(IkeProposal::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wire_form_is_read_back() {
        for p in IkeProposal::defaults() {
            let w = p.to_wire(3, &[]);
            assert_eq!(w.num, 3);
            assert_eq!(IkeProposal::from_selected(&w), Some(p));
            assert!(p.offered_in(&w));
        }
    }

    #[test]
    fn selection_prefers_the_ke_group() {
        let ours = IkeProposal::defaults();
        let x = IkeProposal::parse("aes128-sha256-x25519").unwrap();
        let m = IkeProposal::parse("aes128-sha256-modp2048").unwrap();
        // The peer's one proposal lists both groups, as strongSwan's default does.
        let mut both = x.to_wire(1, &[]);
        both.transforms
            .push(m.to_wire(1, &[]).transforms[3].clone());
        assert_eq!(
            select(&ours, std::slice::from_ref(&both), Some(14)),
            Selection::Chosen {
                num: 1,
                proposal: m
            }
        );
        assert_eq!(
            select(&ours, std::slice::from_ref(&both), Some(31)),
            Selection::Chosen {
                num: 1,
                proposal: x
            }
        );
        assert_eq!(
            select(&ours, &[x.to_wire(1, &[])], Some(19)),
            Selection::WrongGroup(DhGroup::Curve25519)
        );
        let only = [IkeProposal::parse("aes256gcm16-prfsha512-ecp256").unwrap()];
        assert_eq!(
            select(&only, &[x.to_wire(1, &[])], Some(31)),
            Selection::None
        );
    }
}
