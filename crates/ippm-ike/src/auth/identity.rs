//! IKEv2 identities (RFC 7296 §3.5) and their configuration syntax.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use der::asn1::{Any, ObjectIdentifier, SetOfVec};
use der::{Decode, Encode, Tag};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use super::AuthError;
use crate::codepoints::IdType;

/// Longest identification data accepted (names and DNs are far shorter).
const MAX_ID_LEN: usize = 4096;

/// An IKEv2 identity (the data of an IDi or IDr payload).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// ID_FQDN: a fully qualified domain name.
    Fqdn(String),
    /// ID_IPV4_ADDR.
    Ipv4(Ipv4Addr),
    /// ID_IPV6_ADDR.
    Ipv6(Ipv6Addr),
    /// ID_RFC822_ADDR: an e-mail address.
    Rfc822(String),
    /// ID_DER_ASN1_DN: the DER encoding of an X.501 Name.
    Dn(Vec<u8>),
}

/// Attribute names accepted in DN strings, with their OIDs and the string type used.
const DN_ATTRIBUTES: &[(&str, &str, Tag)] = &[
    ("C", "2.5.4.6", Tag::PrintableString),
    ("CN", "2.5.4.3", Tag::Utf8String),
    ("O", "2.5.4.10", Tag::Utf8String),
    ("OU", "2.5.4.11", Tag::Utf8String),
    ("L", "2.5.4.7", Tag::Utf8String),
    ("ST", "2.5.4.8", Tag::Utf8String),
    ("S", "2.5.4.8", Tag::Utf8String),
    ("SN", "2.5.4.4", Tag::Utf8String),
    ("SERIALNUMBER", "2.5.4.5", Tag::PrintableString),
    ("T", "2.5.4.12", Tag::Utf8String),
    ("TITLE", "2.5.4.12", Tag::Utf8String),
    ("GN", "2.5.4.42", Tag::Utf8String),
    ("E", "1.2.840.113549.1.9.1", Tag::Ia5String),
    ("EMAILADDRESS", "1.2.840.113549.1.9.1", Tag::Ia5String),
    ("DC", "0.9.2342.19200300.100.1.25", Tag::Ia5String),
    ("UID", "0.9.2342.19200300.100.1.1", Tag::Utf8String),
];

fn invalid(what: impl Into<String>) -> AuthError {
    AuthError::InvalidIdentity(what.into())
}

impl Identity {
    /// Reads the identification data of an ID payload of type `ty`.
    pub fn from_payload(ty: IdType, data: &[u8]) -> Result<Self, AuthError> {
        if data.len() > MAX_ID_LEN {
            return Err(invalid("identification data too long"));
        }
        match ty {
            IdType::IPV4_ADDR => <[u8; 4]>::try_from(data)
                .map(|a| Self::Ipv4(Ipv4Addr::from(a)))
                .map_err(|_| invalid("ID_IPV4_ADDR is not 4 octets")),
            IdType::IPV6_ADDR => <[u8; 16]>::try_from(data)
                .map(|a| Self::Ipv6(Ipv6Addr::from(a)))
                .map_err(|_| invalid("ID_IPV6_ADDR is not 16 octets")),
            IdType::FQDN => {
                let s = std::str::from_utf8(data).map_err(|_| invalid("ID_FQDN is not text"))?;
                if s.is_empty() || !s.is_ascii() || s.bytes().any(|b| b.is_ascii_control()) {
                    return Err(invalid("ID_FQDN is not a printable ASCII name"));
                }
                Ok(Self::Fqdn(s.to_owned()))
            }
            IdType::RFC822_ADDR => {
                let s = std::str::from_utf8(data)
                    .map_err(|_| invalid("ID_RFC822_ADDR is not UTF-8"))?;
                if s.is_empty() || s.chars().any(char::is_control) {
                    return Err(invalid("ID_RFC822_ADDR is empty or has control characters"));
                }
                Ok(Self::Rfc822(s.to_owned()))
            }
            IdType::DER_ASN1_DN => {
                check_dn(data)?;
                Ok(Self::Dn(data.to_vec()))
            }
            other => Err(AuthError::UnsupportedIdType(other)),
        }
    }

    /// The ID type and identification data of an ID payload for this identity.
    pub fn to_payload(&self) -> (IdType, Vec<u8>) {
        match self {
            Self::Fqdn(s) => (IdType::FQDN, s.as_bytes().to_vec()),
            Self::Ipv4(a) => (IdType::IPV4_ADDR, a.octets().to_vec()),
            Self::Ipv6(a) => (IdType::IPV6_ADDR, a.octets().to_vec()),
            Self::Rfc822(s) => (IdType::RFC822_ADDR, s.as_bytes().to_vec()),
            Self::Dn(d) => (IdType::DER_ASN1_DN, d.clone()),
        }
    }

    /// Reads an identity in configuration syntax: an IPv4 or IPv6 literal; `dn:<hex DER>`; a
    /// distinguished name such as `C=XX, O=Org, CN=name` (attributes C, CN, O, OU, L, ST, SN,
    /// serialNumber, T, GN, E, DC, UID; no escapes); `user@host` (RFC 822); `@name` (FQDN,
    /// strongSwan's way to force one); anything else is an FQDN.
    pub fn parse(s: &str) -> Result<Self, AuthError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(invalid("empty identity"));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(match ip {
                IpAddr::V4(a) => Self::Ipv4(a),
                IpAddr::V6(a) => Self::Ipv6(a),
            });
        }
        if let Some(hex) = s.strip_prefix("dn:") {
            let der = decode_hex(hex.trim()).ok_or_else(|| invalid("dn: is not hex"))?;
            // The same checks as for a received ID payload (length, DER): what we accept in
            // the configuration, a peer accepts on the wire.
            return Self::from_payload(IdType::DER_ASN1_DN, &der);
        }
        if s.contains('=') {
            return Self::from_payload(IdType::DER_ASN1_DN, &encode_dn(s)?);
        }
        if let Some(name) = s.strip_prefix('@') {
            return Self::from_payload(IdType::FQDN, name.as_bytes());
        }
        if s.contains('@') {
            return Self::from_payload(IdType::RFC822_ADDR, s.as_bytes());
        }
        Self::from_payload(IdType::FQDN, s.as_bytes())
    }

    /// The subject DN of a DER certificate, as an identity.
    pub fn from_cert_subject(cert_der: &[u8]) -> Result<Self, AuthError> {
        let (_, cert) = X509Certificate::from_der(cert_der)
            .map_err(|e| AuthError::MalformedCertificate(e.to_string()))?;
        Ok(Self::Dn(cert.subject().as_raw().to_vec()))
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fqdn(s) | Self::Rfc822(s) => f.write_str(s),
            Self::Ipv4(a) => write!(f, "{a}"),
            Self::Ipv6(a) => write!(f, "{a}"),
            Self::Dn(d) => match X509Name::from_der(d) {
                Ok((_, name)) => {
                    match name.to_string_with_registry(x509_parser::objects::oid_registry()) {
                        Ok(s) => f.write_str(&s),
                        Err(_) => write_hex_dn(f, d),
                    }
                }
                Err(_) => write_hex_dn(f, d),
            },
        }
    }
}

fn write_hex_dn(f: &mut fmt::Formatter<'_>, d: &[u8]) -> fmt::Result {
    f.write_str("dn:")?;
    d.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Checks that `der` is exactly one X.501 Name.
pub(super) fn check_dn(der: &[u8]) -> Result<(), AuthError> {
    match X509Name::from_der(der) {
        Ok(([], _)) => Ok(()),
        Ok(_) => Err(invalid("trailing data after the DN")),
        Err(e) => Err(invalid(format!("malformed DN: {e}"))),
    }
}

/// Encodes a DN string (`C=XX, O=Org, CN=name`, or with `/` separators) as DER with the
/// der crate: one attribute per RDN, in the order given.
fn encode_dn(s: &str) -> Result<Vec<u8>, AuthError> {
    let der_err = |e: der::Error| invalid(format!("cannot encode DN: {e}"));
    let sep = if s.contains(',') { ',' } else { '/' };
    let mut rdns: Vec<Any> = Vec::new();
    for part in s.split(sep).map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| invalid(format!("DN component without '=': {part}")))?;
        let (key, value) = (key.trim(), value.trim());
        if value.is_empty() || value.contains('\\') {
            return Err(invalid(format!("unsupported DN value in {part}")));
        }
        let upper = key.to_ascii_uppercase();
        let &(_, oid, tag) = DN_ATTRIBUTES
            .iter()
            .find(|(k, _, _)| *k == upper)
            .ok_or_else(|| invalid(format!("unknown DN attribute {key}")))?;
        let oid = ObjectIdentifier::new(oid).map_err(|e| invalid(e.to_string()))?;
        let value_any = match tag {
            Tag::PrintableString => der::asn1::PrintableStringRef::new(value)
                .map(|v| Any::from(v.to_owned()))
                .map_err(der_err)?,
            Tag::Ia5String => der::asn1::Ia5StringRef::new(value)
                .map(|v| Any::from(v.to_owned()))
                .map_err(der_err)?,
            _ => Any::new(Tag::Utf8String, value.as_bytes()).map_err(der_err)?,
        };
        let oid_any = Any::new(Tag::ObjectIdentifier, oid.as_bytes()).map_err(der_err)?;
        let atv = vec![oid_any, value_any].to_der().map_err(der_err)?;
        let atv = Any::from_der(&atv).map_err(der_err)?;
        let rdn: SetOfVec<Any> = vec![atv].try_into().map_err(der_err)?;
        let rdn = Any::from_der(&rdn.to_der().map_err(der_err)?).map_err(der_err)?;
        rdns.push(rdn);
    }
    if rdns.is_empty() {
        return Err(invalid("empty DN"));
    }
    let der = rdns.to_der().map_err(der_err)?;
    check_dn(&der)?;
    Ok(der)
}

/// Whether two DER Names are the same: equal octets, or the same attributes in the same RDNs
/// and order, with string values equal ignoring ASCII case (so a PrintableString and a
/// UTF8String with the same text match, as RFC 5280 §7.1's comparison allows).
pub(super) fn dn_matches(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    let (Ok((_, a)), Ok((_, b))) = (X509Name::from_der(a), X509Name::from_der(b)) else {
        return false;
    };
    let (ra, rb): (Vec<_>, Vec<_>) = (a.iter().collect(), b.iter().collect());
    ra.len() == rb.len()
        && ra.iter().zip(&rb).all(|(x, y)| {
            let (xa, ya): (Vec<_>, Vec<_>) = (x.iter().collect(), y.iter().collect());
            xa.len() == ya.len()
                && xa.iter().zip(&ya).all(|(p, q)| {
                    p.attr_type() == q.attr_type()
                        && match (p.as_str(), q.as_str()) {
                            (Ok(s), Ok(t)) => s.trim().eq_ignore_ascii_case(t.trim()),
                            _ => p.as_slice() == q.as_slice(),
                        }
                })
        })
}
