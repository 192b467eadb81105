//! The engine's public types: what the driver passes in and gets out.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::codepoints::NotifyType;
use crate::proposal::IkeProposal;

/// A source of randomness (SPIs, nonces, IVs, Diffie-Hellman secrets, cookie secrets).
pub trait Random: Send {
    /// Fills `buf` with random octets.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), RandomError>;
}

/// The operating system's generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), RandomError> {
        getrandom::fill(buf).map_err(|_| RandomError)
    }
}

/// The random generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the random number generator failed")]
pub struct RandomError;

/// The SPIs of an IKE SA: its name on the wire and in RFC 7717's KeyID.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Spis {
    /// SPIi (the original initiator's).
    pub i: [u8; 8],
    /// SPIr.
    pub r: [u8; 8],
}

impl fmt::Display for Spis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.i {
            write!(f, "{b:02x}")?;
        }
        f.write_str("_i ")?;
        for b in self.r {
            write!(f, "{b:02x}")?;
        }
        f.write_str("_r")
    }
}

impl fmt::Debug for Spis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Our address to send from.
    pub local: SocketAddr,
    /// The peer.
    pub remote: SocketAddr,
    /// The IKE message.
    pub data: Vec<u8>,
}

/// Why an IKE SA went away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteReason {
    /// The peer sent a Delete.
    ByPeer,
    /// We deleted it (operator, or a rekey replaced it).
    ByUs,
    /// The peer stopped answering.
    PeerDead,
}

/// Why setting up an IKE SA failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The peer answered with an error notification.
    #[error("peer answered {0:?}")]
    PeerError(NotifyType),
    /// The peer did not answer.
    #[error("no answer from the peer")]
    Timeout,
    /// The peer did not prove the identity required, or its proof did not verify.
    #[error("authentication of the peer failed: {0}")]
    Authentication(String),
    /// The peer's answer was not what the exchange requires.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// No connection of ours fits the peer.
    #[error("no connection configured for {0}")]
    NoConnection(String),
    /// A local failure (credentials, randomness).
    #[error("local error: {0}")]
    Local(String),
}

/// What happened, for the driver's logs and users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An IKE SA is up.
    Established {
        /// Its SPIs.
        spis: Spis,
        /// The connection it belongs to.
        connection: String,
        /// The peer.
        peer: SocketAddr,
        /// The identity the peer proved.
        peer_id: String,
        /// Whether we initiated it.
        initiator: bool,
        /// The negotiated proposal.
        proposal: IkeProposal,
    },
    /// An IKE SA was rekeyed: `new` replaces `old`.
    Rekeyed {
        /// The old SA.
        old: Spis,
        /// The new SA.
        new: Spis,
    },
    /// An IKE SA is gone.
    Deleted {
        /// Its SPIs.
        spis: Spis,
        /// Why.
        reason: DeleteReason,
    },
    /// Setting up an IKE SA failed.
    Failed {
        /// The SPIs so far (SPIr may be zero).
        spis: Spis,
        /// The peer.
        peer: SocketAddr,
        /// Why.
        failure: Failure,
    },
}

/// What [`Engine::list`](super::Engine::list) tells about an IKE SA: never keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaInfo {
    /// SPIs.
    pub spis: Spis,
    /// Connection name (None while a responder does not know it yet).
    pub connection: Option<String>,
    /// Peer address.
    pub peer: SocketAddr,
    /// Our address.
    pub local: SocketAddr,
    /// Whether we are the original initiator.
    pub initiator: bool,
    /// State name.
    pub state: &'static str,
    /// The negotiated proposal.
    pub proposal: Option<IkeProposal>,
    /// The identity the peer proved.
    pub peer_id: Option<String>,
    /// Time since the SA was established (or created, before that).
    pub age: Duration,
}

/// Errors of the operator's calls ([`Engine::initiate`](super::Engine::initiate), [`Engine::delete`](super::Engine::delete),
/// [`Engine::rekey`](super::Engine::rekey)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// No connection of that name.
    #[error("no connection named {0:?}")]
    UnknownConnection(String),
    /// The connection has no peer address to initiate to.
    #[error("connection {0:?} has no remote address")]
    NoRemoteAddress(String),
    /// No IKE SA with these SPIs.
    #[error("no IKE SA {0}")]
    UnknownSa(Spis),
    /// The SA is not established.
    #[error("IKE SA {0} is not established")]
    NotEstablished(Spis),
    /// A local failure.
    #[error("{0}")]
    Local(String),
}
