//! Listen addresses as people write them: `ADDR` or `ADDR:PORT` (the protocol's port when none
//! is given), on the command line and in the configuration file, where `listen` is one
//! address or a list of them.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::Deserializer;
use serde::de::{SeqAccess, Visitor};

/// OWAMP-Control's port (RFC 4656 §2).
pub(crate) const OWAMP_PORT: u16 = 861;
/// TWAMP-Control's port (RFC 5357 §3.1), and STAMP's (RFC 8762 §4.1.1).
pub(crate) const TWAMP_PORT: u16 = 862;
/// IKEv2's port (RFC 7296 §2).
pub(crate) const IKE_PORT: u16 = 500;
/// The metrics endpoint's port when only an address is given (the README's).
pub(crate) const METRICS_PORT: u16 = 9862;

/// `s` as an address: `192.0.2.1:862`, `[2001:db8::1]:862`, or without the port (`192.0.2.1`,
/// `2001:db8::1`, `[2001:db8::1]`), which is then `port`.
pub(crate) fn addr(s: &str, port: u16) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, port))
        .map_err(|_| {
            format!(
                "{s:?} is not an address: write an IP address with an optional port, \
                 e.g. 127.0.0.1, 127.0.0.1:{port}, ::1 or [::1]:{port}"
            )
        })
}

/// clap value parsers, one per protocol's port.
pub(crate) fn twamp(s: &str) -> Result<SocketAddr, String> {
    addr(s, TWAMP_PORT)
}

/// See [`twamp`].
pub(crate) fn owamp(s: &str) -> Result<SocketAddr, String> {
    addr(s, OWAMP_PORT)
}

/// See [`twamp`].
pub(crate) fn ike(s: &str) -> Result<SocketAddr, String> {
    addr(s, IKE_PORT)
}

/// See [`twamp`].
pub(crate) fn metrics(s: &str) -> Result<SocketAddr, String> {
    addr(s, METRICS_PORT)
}

/// serde `deserialize_with` for `listen = "ADDR"` or `listen = ["ADDR", ...]` with the
/// default port `PORT`; the field needs `#[serde(default)]` as well.
pub(crate) fn list<'de, D: Deserializer<'de>, const PORT: u16>(
    d: D,
) -> Result<Option<Vec<SocketAddr>>, D::Error> {
    d.deserialize_any(Addrs::<PORT>).map(Some)
}

/// serde `deserialize_with` for one address with the default port `PORT`.
pub(crate) fn one<'de, D: Deserializer<'de>, const PORT: u16>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let s: String = serde::Deserialize::deserialize(d)?;
    addr(&s, PORT).map(Some).map_err(serde::de::Error::custom)
}

struct Addrs<const PORT: u16>;

impl<'de, const PORT: u16> Visitor<'de> for Addrs<PORT> {
    type Value = Vec<SocketAddr>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an address or a list of addresses")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
        addr(s, PORT).map(|a| vec![a]).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(s) = seq.next_element::<String>()? {
            out.push(addr(&s, PORT).map_err(serde::de::Error::custom)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_default() {
        assert_eq!(twamp("127.0.0.1"), Ok("127.0.0.1:862".parse().unwrap()));
        assert_eq!(owamp("::1"), Ok("[::1]:861".parse().unwrap()));
        assert_eq!(ike("[::1]"), Ok("[::1]:500".parse().unwrap()));
        assert_eq!(twamp("[::1]:9"), Ok("[::1]:9".parse().unwrap()));
        assert!(twamp("localhost").unwrap_err().contains("127.0.0.1:862"));
    }

    #[test]
    fn one_or_many() {
        #[derive(serde::Deserialize)]
        struct S {
            #[serde(default, deserialize_with = "list::<_, 862>")]
            listen: Option<Vec<SocketAddr>>,
        }
        let one: S = toml::from_str("listen = \"127.0.0.1\"").unwrap();
        assert_eq!(one.listen, Some(vec!["127.0.0.1:862".parse().unwrap()]));
        let two: S = toml::from_str("listen = [\"127.0.0.1:1\", \"::1\"]").unwrap();
        assert_eq!(
            two.listen,
            Some(vec![
                "127.0.0.1:1".parse().unwrap(),
                "[::1]:862".parse().unwrap()
            ])
        );
        let none: S = toml::from_str("").unwrap();
        assert_eq!(none.listen, None);
    }
}
