//! IKEv2 messages (RFC 7296 §3): the IKE header and the payload chain, parsed into typed
//! payloads. The SK (and SKF) payload's body is kept opaque here: decrypting it is the
//! crypto layer's work, which then parses the inner chain with [`parse_chain`].
//!
//! ```text
//!                      1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IKE SA Initiator's SPI                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IKE SA Responder's SPI                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                          Message ID                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                            Length                             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! Generic payload header (§3.2):
//! | Next Payload  |C|  RESERVED   |         Payload Length        |
//! ```

use crate::WireError;
use crate::codec::{Reader, patch_u16, place_u16};
use crate::codepoints::{
    AuthMethod, ExchangeType, IdType, NotifyType, PayloadType, ProtocolId, TransformType,
};

/// Most payloads accepted in one chain.
pub const MAX_PAYLOADS: usize = 64;
/// Most proposals in one SA payload.
pub const MAX_PROPOSALS: usize = 32;
/// Most transforms in one proposal.
pub const MAX_TRANSFORMS: usize = 64;
/// Most attributes in one transform.
pub const MAX_ATTRIBUTES: usize = 8;
/// Nonce length bounds (RFC 7296 §3.9).
pub const NONCE_LEN: std::ops::RangeInclusive<usize> = 16..=256;

/// Header flags (RFC 7296 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// Set by the original initiator of the IKE SA.
    pub const INITIATOR: u8 = 0x08;
    /// Version: the sender can speak a higher major version.
    pub const VERSION: u8 = 0x10;
    /// This message is a response.
    pub const RESPONSE: u8 = 0x20;

    /// The I bit.
    pub fn initiator(self) -> bool {
        self.0 & Self::INITIATOR != 0
    }

    /// The R bit.
    pub fn response(self) -> bool {
        self.0 & Self::RESPONSE != 0
    }
}

/// The IKE header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// SPIi.
    pub spi_i: [u8; 8],
    /// SPIr (zero in the first message).
    pub spi_r: [u8; 8],
    /// Exchange type.
    pub exchange: ExchangeType,
    /// Flags.
    pub flags: Flags,
    /// Message ID.
    pub message_id: u32,
}

impl Header {
    /// Octets on the wire.
    pub const LEN: usize = 28;
}

/// One transform attribute (RFC 7296 §3.3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    /// AF = 1: a 2-octet value (Key Length is one).
    Short {
        /// Attribute type (without the AF bit).
        ty: u16,
        /// Value.
        value: u16,
    },
    /// AF = 0: a variable-length value.
    Long {
        /// Attribute type.
        ty: u16,
        /// Value.
        value: Vec<u8>,
    },
}

/// One transform of a proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    /// ENCR, PRF, INTEG, DH or ESN.
    pub ty: TransformType,
    /// The algorithm.
    pub id: u16,
    /// Its attributes.
    pub attributes: Vec<Attribute>,
}

impl Transform {
    /// The Key Length attribute, if any.
    pub fn key_length(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Short {
                ty: crate::codepoints::transform::ATTR_KEY_LENGTH,
                value,
            } => Some(*value),
            _ => None,
        })
    }
}

/// One proposal of an SA payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Proposal Num (1 for the first, counting up).
    pub num: u8,
    /// IKE, AH or ESP.
    pub protocol: ProtocolId,
    /// The SPI (empty in an IKE_SA_INIT proposal).
    pub spi: Vec<u8>,
    /// The transforms.
    pub transforms: Vec<Transform>,
}

/// A parsed payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Security Association (§3.3).
    Sa(Vec<Proposal>),
    /// Key Exchange (§3.4).
    Ke {
        /// Diffie-Hellman group.
        group: u16,
        /// The public value.
        data: Vec<u8>,
    },
    /// Identification of the initiator (IDi) or responder (IDr) (§3.5).
    Id {
        /// True for IDi.
        initiator: bool,
        /// ID type.
        ty: IdType,
        /// The identity.
        data: Vec<u8>,
    },
    /// Certificate (§3.6).
    Cert {
        /// Encoding (4: X.509 signature).
        encoding: u8,
        /// The certificate.
        data: Vec<u8>,
    },
    /// Certificate Request (§3.7).
    CertReq {
        /// Encoding.
        encoding: u8,
        /// Certification authorities (hashes of their public keys).
        data: Vec<u8>,
    },
    /// Authentication (§3.8).
    Auth {
        /// Method.
        method: AuthMethod,
        /// Authentication data.
        data: Vec<u8>,
    },
    /// Nonce (§3.9), 16 to 256 octets.
    Nonce(Vec<u8>),
    /// Notify (§3.10).
    Notify {
        /// Protocol the SPI belongs to (0 when there is none).
        protocol: ProtocolId,
        /// The SPI (may be empty).
        spi: Vec<u8>,
        /// Notify message type.
        ty: NotifyType,
        /// Notification data.
        data: Vec<u8>,
    },
    /// Delete (§3.11).
    Delete {
        /// IKE (no SPIs), AH or ESP.
        protocol: ProtocolId,
        /// SPI size (0 for IKE, 4 for AH/ESP).
        spi_size: u8,
        /// The SPIs.
        spis: Vec<Vec<u8>>,
    },
    /// Vendor ID (§3.12).
    VendorId(Vec<u8>),
    /// Encrypted and Authenticated (§3.14): IV, ciphertext, padding and ICV, opaque here. It
    /// is always the last payload of its chain.
    Sk {
        /// The type of the first payload inside.
        first_inner: PayloadType,
        /// IV || encrypted payloads || padding || ICV.
        body: Vec<u8>,
    },
    /// Encrypted and Authenticated Fragment (RFC 7383 §2.5).
    Skf {
        /// The type of the first inner payload (in fragment 1 only; else NONE).
        first_inner: PayloadType,
        /// Fragment Number (1-based).
        number: u16,
        /// Total Fragments.
        total: u16,
        /// IV || encrypted fragment || padding || ICV.
        body: Vec<u8>,
    },
    /// A payload this implementation keeps as it is: TSi/TSr, CP and EAP (not used by
    /// childless SAs), and any unknown type whose Critical bit is clear (§2.5: skipped).
    Other {
        /// Its type.
        ty: PayloadType,
        /// The Critical bit as received.
        critical: bool,
        /// Its body.
        body: Vec<u8>,
    },
}

impl Payload {
    /// The payload's type.
    pub fn ty(&self) -> PayloadType {
        match self {
            Self::Sa(_) => PayloadType::SA,
            Self::Ke { .. } => PayloadType::KE,
            Self::Id {
                initiator: true, ..
            } => PayloadType::IDI,
            Self::Id {
                initiator: false, ..
            } => PayloadType::IDR,
            Self::Cert { .. } => PayloadType::CERT,
            Self::CertReq { .. } => PayloadType::CERTREQ,
            Self::Auth { .. } => PayloadType::AUTH,
            Self::Nonce(_) => PayloadType::NONCE,
            Self::Notify { .. } => PayloadType::NOTIFY,
            Self::Delete { .. } => PayloadType::DELETE,
            Self::VendorId(_) => PayloadType::VENDOR_ID,
            Self::Sk { .. } => PayloadType::SK,
            Self::Skf { .. } => PayloadType::SKF,
            Self::Other { ty, .. } => *ty,
        }
    }
}

/// A whole IKE message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The header.
    pub header: Header,
    /// The payloads, in order.
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Parses a datagram (the IKE message exactly; no non-ESP marker). A major version other
    /// than 2 is [`WireError::UnsupportedVersion`], so the caller can answer
    /// INVALID_MAJOR_VERSION (§2.5).
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf);
        let spi_i = arr8(r.take(8, "IKE header")?);
        let spi_r = arr8(r.take(8, "IKE header")?);
        let next = PayloadType(r.u8("IKE header")?);
        let version = r.u8("IKE header")?;
        let exchange = ExchangeType(r.u8("IKE header")?);
        let flags = Flags(r.u8("IKE header")?);
        let message_id = r.u32("IKE header")?;
        let length = r.u32("IKE header")?;
        if version >> 4 != 2 {
            return Err(WireError::UnsupportedVersion {
                major: version >> 4,
                minor: version & 0xf,
            });
        }
        if length as usize != buf.len() {
            return Err(WireError::InvalidLength {
                what: "IKE header Length",
                value: length as usize,
            });
        }
        let payloads = parse_chain(next, r.rest())?;
        Ok(Self {
            header: Header {
                spi_i,
                spi_r,
                exchange,
                flags,
                message_id,
            },
            payloads,
        })
    }

    /// The message's octets.
    pub fn emit(&self) -> Result<Vec<u8>, WireError> {
        let h = &self.header;
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(&h.spi_i);
        out.extend_from_slice(&h.spi_r);
        out.push(
            self.payloads
                .first()
                .map_or(PayloadType::NONE, Payload::ty)
                .0,
        );
        out.push(0x20);
        out.push(h.exchange.0);
        out.push(h.flags.0);
        out.extend_from_slice(&h.message_id.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        emit_chain(&self.payloads, &mut out)?;
        let len = u32::try_from(out.len()).map_err(|_| WireError::TooLong("IKE message"))?;
        out[24..28].copy_from_slice(&len.to_be_bytes());
        Ok(out)
    }
}

fn arr8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    a
}

/// Parses a payload chain that starts with a payload of type `first` (the header's Next
/// Payload, or an SK payload's, once decrypted).
pub fn parse_chain(first: PayloadType, buf: &[u8]) -> Result<Vec<Payload>, WireError> {
    let mut r = Reader::new(buf);
    let mut next = first;
    let mut out = Vec::new();
    while next != PayloadType::NONE {
        if out.len() == MAX_PAYLOADS {
            return Err(WireError::TooMany {
                what: "payloads",
                max: MAX_PAYLOADS,
            });
        }
        let ty = next;
        next = PayloadType(r.u8("generic payload header")?);
        let critical = r.u8("generic payload header")? & 0x80 != 0;
        let len = usize::from(r.u16("generic payload header")?);
        if len < 4 {
            return Err(WireError::InvalidLength {
                what: "Payload Length",
                value: len,
            });
        }
        let mut body = r.sub(len - 4, "payload body")?;
        let p = parse_payload(ty, critical, next, &mut body)?;
        let is_encrypted = matches!(p, Payload::Sk { .. } | Payload::Skf { .. });
        out.push(p);
        if is_encrypted {
            // The Next Payload of SK/SKF names the first payload inside; nothing follows.
            r.expect_empty("SK payload (must be last)")?;
            return Ok(out);
        }
    }
    r.expect_empty("payload chain")?;
    Ok(out)
}

fn parse_payload(
    ty: PayloadType,
    critical: bool,
    next: PayloadType,
    b: &mut Reader<'_>,
) -> Result<Payload, WireError> {
    let p = match ty {
        PayloadType::SA => Payload::Sa(parse_sa(b)?),
        PayloadType::KE => {
            let group = b.u16("KE payload")?;
            b.u16("KE payload")?;
            Payload::Ke {
                group,
                data: b.rest().to_vec(),
            }
        }
        PayloadType::IDI | PayloadType::IDR => {
            let id_ty = IdType(b.u8("ID payload")?);
            b.take(3, "ID payload")?;
            Payload::Id {
                initiator: ty == PayloadType::IDI,
                ty: id_ty,
                data: b.rest().to_vec(),
            }
        }
        PayloadType::CERT => Payload::Cert {
            encoding: b.u8("CERT payload")?,
            data: b.rest().to_vec(),
        },
        PayloadType::CERTREQ => Payload::CertReq {
            encoding: b.u8("CERTREQ payload")?,
            data: b.rest().to_vec(),
        },
        PayloadType::AUTH => {
            let method = AuthMethod(b.u8("AUTH payload")?);
            b.take(3, "AUTH payload")?;
            Payload::Auth {
                method,
                data: b.rest().to_vec(),
            }
        }
        PayloadType::NONCE => {
            let n = b.rest();
            if !NONCE_LEN.contains(&n.len()) {
                return Err(WireError::InvalidLength {
                    what: "Nonce",
                    value: n.len(),
                });
            }
            Payload::Nonce(n.to_vec())
        }
        PayloadType::NOTIFY => {
            let protocol = ProtocolId(b.u8("Notify payload")?);
            let spi_size = b.u8("Notify payload")?;
            let nty = NotifyType(b.u16("Notify payload")?);
            let spi = b.take(usize::from(spi_size), "Notify SPI")?.to_vec();
            Payload::Notify {
                protocol,
                spi,
                ty: nty,
                data: b.rest().to_vec(),
            }
        }
        PayloadType::DELETE => {
            let protocol = ProtocolId(b.u8("Delete payload")?);
            let spi_size = b.u8("Delete payload")?;
            let n = usize::from(b.u16("Delete payload")?);
            if spi_size == 0 && n != 0 {
                return Err(WireError::InvalidLength {
                    what: "Delete Num of SPIs",
                    value: n,
                });
            }
            let mut spis = Vec::with_capacity(n.min(256));
            for _ in 0..n {
                spis.push(b.take(usize::from(spi_size), "Delete SPIs")?.to_vec());
            }
            b.expect_empty("Delete payload")?;
            Payload::Delete {
                protocol,
                spi_size,
                spis,
            }
        }
        PayloadType::VENDOR_ID => Payload::VendorId(b.rest().to_vec()),
        PayloadType::SK => Payload::Sk {
            first_inner: next,
            body: b.rest().to_vec(),
        },
        PayloadType::SKF => {
            let number = b.u16("SKF payload")?;
            let total = b.u16("SKF payload")?;
            if number == 0 || number > total {
                return Err(WireError::InvalidLength {
                    what: "SKF Fragment Number",
                    value: number.into(),
                });
            }
            Payload::Skf {
                first_inner: next,
                number,
                total,
                body: b.rest().to_vec(),
            }
        }
        PayloadType::TSI | PayloadType::TSR | PayloadType::CP | PayloadType::EAP => {
            Payload::Other {
                ty,
                critical,
                body: b.rest().to_vec(),
            }
        }
        _ if critical => return Err(WireError::UnsupportedCriticalPayload(ty)),
        _ => Payload::Other {
            ty,
            critical,
            body: b.rest().to_vec(),
        },
    };
    Ok(p)
}

fn parse_sa(b: &mut Reader<'_>) -> Result<Vec<Proposal>, WireError> {
    let mut props = Vec::new();
    loop {
        if props.len() == MAX_PROPOSALS {
            return Err(WireError::TooMany {
                what: "proposals",
                max: MAX_PROPOSALS,
            });
        }
        let last = b.u8("Proposal")?;
        b.u8("Proposal")?;
        let len = usize::from(b.u16("Proposal")?);
        if len < 8 {
            return Err(WireError::InvalidLength {
                what: "Proposal Length",
                value: len,
            });
        }
        let mut p = b.sub(len - 4, "Proposal")?;
        let num = p.u8("Proposal")?;
        let protocol = ProtocolId(p.u8("Proposal")?);
        let spi_size = p.u8("Proposal")?;
        let n = usize::from(p.u8("Proposal")?);
        if n > MAX_TRANSFORMS {
            return Err(WireError::TooMany {
                what: "transforms",
                max: MAX_TRANSFORMS,
            });
        }
        let spi = p.take(usize::from(spi_size), "Proposal SPI")?.to_vec();
        let mut transforms = Vec::with_capacity(n);
        for i in 0..n {
            let t_last = p.u8("Transform")?;
            if (t_last == 0) != (i + 1 == n) || !matches!(t_last, 0 | 3) {
                return Err(WireError::InvalidLength {
                    what: "Transform Last Substruc",
                    value: t_last.into(),
                });
            }
            p.u8("Transform")?;
            let tlen = usize::from(p.u16("Transform")?);
            if tlen < 8 {
                return Err(WireError::InvalidLength {
                    what: "Transform Length",
                    value: tlen,
                });
            }
            let mut t = p.sub(tlen - 4, "Transform")?;
            let ty = TransformType(t.u8("Transform")?);
            t.u8("Transform")?;
            let id = t.u16("Transform")?;
            let mut attributes = Vec::new();
            while t.remaining() > 0 {
                if attributes.len() == MAX_ATTRIBUTES {
                    return Err(WireError::TooMany {
                        what: "attributes",
                        max: MAX_ATTRIBUTES,
                    });
                }
                let at = t.u16("Transform attribute")?;
                if at & 0x8000 != 0 {
                    attributes.push(Attribute::Short {
                        ty: at & 0x7fff,
                        value: t.u16("Transform attribute")?,
                    });
                } else {
                    let alen = usize::from(t.u16("Transform attribute")?);
                    attributes.push(Attribute::Long {
                        ty: at,
                        value: t.take(alen, "Transform attribute")?.to_vec(),
                    });
                }
            }
            transforms.push(Transform { ty, id, attributes });
        }
        p.expect_empty("Proposal")?;
        props.push(Proposal {
            num,
            protocol,
            spi,
            transforms,
        });
        match last {
            0 => break,
            2 => continue,
            v => {
                return Err(WireError::InvalidLength {
                    what: "Proposal Last Substruc",
                    value: v.into(),
                });
            }
        }
    }
    b.expect_empty("SA payload")?;
    Ok(props)
}

/// Emits a payload chain (the caller writes the first type into the preceding header).
pub fn emit_chain(payloads: &[Payload], out: &mut Vec<u8>) -> Result<(), WireError> {
    for (i, p) in payloads.iter().enumerate() {
        let next = match p {
            Payload::Sk { first_inner, .. } | Payload::Skf { first_inner, .. } => *first_inner,
            _ => payloads.get(i + 1).map_or(PayloadType::NONE, Payload::ty),
        };
        let start = out.len();
        out.push(next.0);
        out.push(match p {
            Payload::Other { critical: true, .. } => 0x80,
            _ => 0,
        });
        let at = place_u16(out);
        emit_body(p, out)?;
        patch_u16(out, at, start)?;
    }
    Ok(())
}

fn emit_body(p: &Payload, out: &mut Vec<u8>) -> Result<(), WireError> {
    match p {
        Payload::Sa(props) => {
            for (i, prop) in props.iter().enumerate() {
                let start = out.len();
                out.push(if i + 1 == props.len() { 0 } else { 2 });
                out.push(0);
                let at = place_u16(out);
                out.push(prop.num);
                out.push(prop.protocol.0);
                out.push(u8::try_from(prop.spi.len()).map_err(|_| WireError::TooLong("SPI"))?);
                out.push(
                    u8::try_from(prop.transforms.len())
                        .map_err(|_| WireError::TooLong("transforms"))?,
                );
                out.extend_from_slice(&prop.spi);
                for (j, t) in prop.transforms.iter().enumerate() {
                    let tstart = out.len();
                    out.push(if j + 1 == prop.transforms.len() { 0 } else { 3 });
                    out.push(0);
                    let tat = place_u16(out);
                    out.push(t.ty.0);
                    out.push(0);
                    out.extend_from_slice(&t.id.to_be_bytes());
                    for a in &t.attributes {
                        match a {
                            Attribute::Short { ty, value } => {
                                out.extend_from_slice(&(ty | 0x8000).to_be_bytes());
                                out.extend_from_slice(&value.to_be_bytes());
                            }
                            Attribute::Long { ty, value } => {
                                out.extend_from_slice(&(ty & 0x7fff).to_be_bytes());
                                let l = u16::try_from(value.len())
                                    .map_err(|_| WireError::TooLong("attribute"))?;
                                out.extend_from_slice(&l.to_be_bytes());
                                out.extend_from_slice(value);
                            }
                        }
                    }
                    patch_u16(out, tat, tstart)?;
                }
                patch_u16(out, at, start)?;
            }
        }
        Payload::Ke { group, data } => {
            out.extend_from_slice(&group.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(data);
        }
        Payload::Id { ty, data, .. } => {
            out.extend_from_slice(&[ty.0, 0, 0, 0]);
            out.extend_from_slice(data);
        }
        Payload::Cert { encoding, data } | Payload::CertReq { encoding, data } => {
            out.push(*encoding);
            out.extend_from_slice(data);
        }
        Payload::Auth { method, data } => {
            out.extend_from_slice(&[method.0, 0, 0, 0]);
            out.extend_from_slice(data);
        }
        Payload::Nonce(n) | Payload::VendorId(n) => out.extend_from_slice(n),
        Payload::Notify {
            protocol,
            spi,
            ty,
            data,
        } => {
            out.push(protocol.0);
            out.push(u8::try_from(spi.len()).map_err(|_| WireError::TooLong("SPI"))?);
            out.extend_from_slice(&ty.0.to_be_bytes());
            out.extend_from_slice(spi);
            out.extend_from_slice(data);
        }
        Payload::Delete {
            protocol,
            spi_size,
            spis,
        } => {
            out.push(protocol.0);
            out.push(*spi_size);
            let n = u16::try_from(spis.len()).map_err(|_| WireError::TooLong("SPIs"))?;
            out.extend_from_slice(&n.to_be_bytes());
            for s in spis {
                out.extend_from_slice(s);
            }
        }
        Payload::Sk { body, .. } => out.extend_from_slice(body),
        Payload::Skf {
            number,
            total,
            body,
            ..
        } => {
            out.extend_from_slice(&number.to_be_bytes());
            out.extend_from_slice(&total.to_be_bytes());
            out.extend_from_slice(body);
        }
        Payload::Other { body, .. } => out.extend_from_slice(body),
    }
    Ok(())
}
