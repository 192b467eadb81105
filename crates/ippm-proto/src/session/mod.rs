//! Control-session state machines, client and server, OWAMP and TWAMP, without I/O.
//!
//! Both sides follow quinn-proto's shape. The caller owns the TCP connection and the clock:
//!
//! 1. Construct with a configuration, the randomness the side needs, and `now`.
//! 2. Feed every octet read from the connection to `handle_input(now, data)`.
//! 3. After every call, drain `poll_transmit()` (octets to write, in order) and `poll_event()`
//!    (what happened: a session was requested, accepted, started, ...).
//! 4. Arm a timer for `poll_timeout()` and call `handle_timeout(now)` when it fires.
//! 5. Issue commands (`request_session`, `start_sessions`, `accept_session`, ...) when the
//!    application decides; they queue output like everything else.
//! 6. When a method returns an [`Error`], or `is_closed()` turns true, write out what
//!    `poll_transmit()` still holds (a refusal, for example) and close the connection.
//!
//! Internally each side keeps an "expect" state (rustls style); a message that does not fit
//! it is an [`Error::UnexpectedMessage`].

mod channel;
pub mod client;
pub mod server;

use std::fmt;
use std::net::IpAddr;

use zeroize::Zeroizing;

use crate::WireError;
use crate::codepoints::{Accept, Command, Modes, Protocol, SecurityMode};
use crate::crypto::CryptoError;
use crate::wire::setup::KeyId;

pub use client::{Client, ClientConfig, ClientEvent, ClientRandom, FetchResult, IkeCredential};
pub use server::{FetchReply, FetchReplyHeader, Server, ServerConfig, ServerEvent, ServerRandom};

/// Why a control session failed. Every variant ends the control connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A message could not be parsed.
    #[error("malformed message: {0}")]
    Wire(#[from] WireError),
    /// An HMAC field did not match: the peer has another key, or the stream was altered.
    #[error("HMAC check failed")]
    BadHmac,
    /// The peer sent a message that is not allowed in the current state.
    #[error("unexpected message: expected {expected}, got command {got:?}")]
    UnexpectedMessage {
        /// What the state allows.
        expected: &'static str,
        /// The command octet received.
        got: Command,
    },
    /// Client: the server's greeting offered no mode at all (it will not serve this client).
    #[error("server offers no mode (Modes = 0): it refuses this client")]
    NoModes,
    /// Client: none of the server's modes is one this client is configured to use.
    #[error("no common mode: the server offers {}", offered.named(*protocol))]
    NoCommonMode {
        /// What the server advertised.
        offered: Modes,
        /// The protocol of the connection, whose registry names the bits.
        protocol: Protocol,
    },
    /// Server: the Set-Up-Response chose a mode that was not advertised, or not exactly one
    /// security mode.
    // Compact: a client chooses how often the server logs this.
    #[error("client chose mode {chosen:#}, server advertised {advertised:#}")]
    UnsupportedMode {
        /// The Mode field of the Set-Up-Response.
        chosen: Modes,
        /// What the server advertised.
        advertised: Modes,
    },
    /// Server: the Set-Up-Response had Mode 0, i.e. the client gave up.
    #[error("client declined every mode")]
    ClientDeclined,
    /// Client: the PBKDF2 Count in the greeting is not acceptable.
    #[error("unacceptable PBKDF2 Count: {0}")]
    BadCount(CryptoError),
    /// Server: the KeyID names no known identity, or the Token did not decrypt to the
    /// greeting's Challenge (wrong passphrase).
    #[error("authentication failed")]
    AuthenticationFailed,
    /// Server: policy does not let this identity (or an anonymous client) use this mode.
    #[error("policy does not permit {0} mode for this client")]
    NotPermitted(SecurityMode),
    /// Server: the KeyID carries IKEv2 SPIs for which no SA exists (RFC 7717 §5.3).
    #[error("no IKEv2 SA for SPIi {spi_i:02x?} SPIr {spi_r:02x?}")]
    UnknownIkeSa {
        /// SPIi from the KeyID.
        spi_i: [u8; 8],
        /// SPIr from the KeyID.
        spi_r: [u8; 8],
    },
    /// Client: the server refused (Server-Start Accept, or an ack the session cannot go on
    /// without).
    #[error("server refused: Accept = {0}")]
    Rejected(Accept),
    /// A command was issued in a state that does not allow it (a bug in the caller).
    #[error("{0} is not allowed now")]
    InvalidCommand(&'static str),
    /// The peer broke a rule of the protocol not covered by the other variants.
    #[error("protocol violation: {0}")]
    ProtocolViolation(&'static str),
    /// Server: a streamed Fetch-Session answer was given another number of records than its
    /// Fetch-Ack announced (a bug in the caller; the answer cannot be completed).
    #[error("Fetch-Session answer announced {announced} records, {given} given")]
    FetchRecordCount {
        /// Number of Records in the Fetch-Ack.
        announced: u32,
        /// Records given when the mismatch showed (more than announced, or fewer at the end).
        given: u64,
    },
    /// A configured limit was reached.
    #[error("limit reached: {0}")]
    Limit(&'static str),
    /// The peer sent more than the connection buffers without completing a message.
    #[error("input overflow")]
    InputOverflow,
    /// The peer did not answer in time, or the connection stayed idle past its limit.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The session is closed; no more input or commands are taken.
    #[error("control connection closed")]
    Closed,
    /// An internal invariant failed (a bug in ippm).
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// A shared secret: a passphrase's octets, or an RFC 7717 `prf(SK_d, "IPPM")`. Zeroized on drop,
/// never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps the secret's octets.
    pub fn new(octets: Vec<u8>) -> Self {
        Self(Zeroizing::new(octets))
    }

    /// The octets, for PBKDF2.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Where a server finds the shared secret a Set-Up-Response's KeyID names.
pub trait SecretStore: Send + Sync + fmt::Debug {
    /// The passphrase of `identity`, matched exactly (not by prefix, as perfSONAR does).
    fn passphrase(&self, identity: &[u8]) -> Option<Secret>;

    /// RFC 7717: the derived secret `prf(SK_d, "IPPM")` of the IKEv2 SA with these SPIs,
    /// if that SA is with `peer`, the control connection's peer (an SA names the host it
    /// authenticated; another host naming its SPIs gets nothing).
    fn ike_secret(&self, spi_i: [u8; 8], spi_r: [u8; 8], peer: IpAddr) -> Option<Secret> {
        let _ = (spi_i, spi_r, peer);
        None
    }

    /// Whether `identity` (`None` in open mode) may use `mode`; checked once the client has
    /// proved its identity, before Server-Start. A refusal is Server-Start Accept = 1.
    fn permits(&self, identity: Option<&KeyIdentity>, mode: SecurityMode) -> bool {
        let _ = (identity, mode);
        true
    }
}

/// A [`SecretStore`] of passphrases held in memory, as read from a perfSONAR-style `.pfs`
/// file (identity, whitespace, hex of the passphrase).
#[derive(Debug, Default, Clone)]
pub struct PassphraseStore {
    entries: Vec<(Vec<u8>, Secret)>,
}

impl PassphraseStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) an identity.
    pub fn insert(&mut self, identity: impl Into<Vec<u8>>, secret: Secret) {
        let identity = identity.into();
        self.entries.retain(|(id, _)| *id != identity);
        self.entries.push((identity, secret));
    }

    /// Whether `identity` has a passphrase here.
    pub fn passphrase_known(&self, identity: &[u8]) -> bool {
        self.entries.iter().any(|(id, _)| id == identity)
    }

    /// Number of identities.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl SecretStore for PassphraseStore {
    fn passphrase(&self, identity: &[u8]) -> Option<Secret> {
        self.entries
            .iter()
            .find(|(id, _)| id == identity)
            .map(|(_, s)| s.clone())
    }
}

/// How the Set-Up-Response named its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyIdentity {
    /// A passphrase identity (KeyID up to its first NUL).
    Name(Vec<u8>),
    /// RFC 7717: the IKEv2 SA with these SPIs.
    Ike {
        /// SPIi.
        spi_i: [u8; 8],
        /// SPIr.
        spi_r: [u8; 8],
    },
}

impl KeyIdentity {
    /// The KeyID field for this identity.
    pub fn to_key_id(&self) -> KeyId {
        match self {
            Self::Name(n) => KeyId::from_identity(n),
            Self::Ike { spi_i, spi_r } => KeyId::from_spis(*spi_i, *spi_r),
        }
    }
}

/// Builds a SID the way RFC 4656 §3.5 suggests: the receiver's IPv4 address (or the last four
/// octets of its IPv6 address), an NTP timestamp, and four random octets.
pub fn make_sid(addr: IpAddr, now: crate::Timestamp, random: [u8; 4]) -> [u8; 16] {
    let mut sid = [0u8; 16];
    let a = match addr {
        IpAddr::V4(v4) => v4.octets(),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [o[12], o[13], o[14], o[15]]
        }
    };
    sid[..4].copy_from_slice(&a);
    sid[4..12].copy_from_slice(&now.to_bytes());
    sid[12..].copy_from_slice(&random);
    sid
}

/// What [`WireError::Truncated`] names when the peer closes the connection in the middle of a
/// message.
pub const PEER_CLOSED_MID_MESSAGE: &str = "message (peer closed the connection mid-message)";

/// Removes the SIDs an RFC 5938 ack names from those still awaiting one. False when the ack
/// names a SID that was not asked about (or names one twice).
pub(crate) fn remove_acked(pending: &mut Vec<[u8; 16]>, acked: &[[u8; 16]]) -> bool {
    for sid in acked {
        let Some(i) = pending.iter().position(|p| p == sid) else {
            return false;
        };
        pending.swap_remove(i);
    }
    true
}

/// RFC 4656 §3.8: a Stop-Sessions must describe exactly the send sessions of its sender that
/// no earlier Stop-Sessions described, each once.
pub(crate) fn describes_exactly(
    stop: &crate::wire::owamp::StopSessionsRepr,
    open_sends: &[[u8; 16]],
) -> bool {
    let mut want: Vec<[u8; 16]> = open_sends.to_vec();
    stop.sessions.len() == want.len()
        && stop
            .sessions
            .iter()
            .all(|s| remove_acked(&mut want, std::slice::from_ref(&s.sid)))
}
