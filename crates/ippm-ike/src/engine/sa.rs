//! An IKE SA as the engine keeps it: what every SA has (addresses, SPIs, the message
//! windows of RFC 7296 §2.3) in [`Link`], and what only its current state holds in
//! [`State`] (rustls' `Expect*` style). A state holds exactly the material it needs: an
//! initiator waiting for the IKE_SA_INIT response has its Diffie-Hellman key and no SK keys,
//! one waiting for IKE_AUTH has its keys and no Diffie-Hellman key, so no code path can ask
//! a state for what it does not have.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use zeroize::Zeroizing;

use crate::auth::{self, Identity};
use crate::codepoints::ExchangeType;
use crate::dh::DhPrivate;
use crate::keys::{Contributions, IkeKeys};
use crate::message::{Flags, Header};
use crate::proposal::IkeProposal;
use crate::sk::{self, SkKeys};

use super::api::{Failure, RandomError, Spis};

/// What every IKE SA has, whatever its state.
pub(super) struct Link {
    pub(super) spis: Spis,
    /// Whether we are the original initiator.
    pub(super) initiator: bool,
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
    pub(super) next_request_id: u32,
    pub(super) outstanding: Option<Outstanding>,
    /// Requests waiting for the window.
    pub(super) queued: VecDeque<QueuedRequest>,
    pub(super) peer_next_id: u32,
    pub(super) last_response: Option<(u32, Vec<u8>)>,
    pub(super) created: Instant,
    pub(super) last_heard: Instant,
}

impl Link {
    pub(super) fn new(
        spis: Spis,
        initiator: bool,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
    ) -> Self {
        Self {
            spis,
            initiator,
            local,
            remote,
            next_request_id: 0,
            outstanding: None,
            queued: VecDeque::new(),
            peer_next_id: 0,
            last_response: None,
            created: now,
            last_heard: now,
        }
    }

    /// The SPI the SA is filed under: the one we chose.
    pub(super) fn key(&self) -> [u8; 8] {
        if self.initiator {
            self.spis.i
        } else {
            self.spis.r
        }
    }

    pub(super) fn header(&self, exchange: ExchangeType, response: bool, message_id: u32) -> Header {
        let mut flags = 0;
        if self.initiator {
            flags |= Flags::INITIATOR;
        }
        if response {
            flags |= Flags::RESPONSE;
        }
        Header {
            spi_i: self.spis.i,
            spi_r: self.spis.r,
            exchange,
            flags: Flags(flags),
            message_id,
        }
    }
}

pub(super) struct IkeSa {
    pub(super) link: Link,
    pub(super) state: State,
}

pub(super) enum State {
    /// Initiator: IKE_SA_INIT sent.
    InitSent(Box<ExpectInitResponse>),
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH (half-open).
    InitAnswered(Box<Handshake>),
    /// Initiator: IKE_AUTH sent.
    AuthSent(Box<ExpectAuthResponse>),
    /// Established (or being deleted).
    Established(Box<Established>),
}

impl State {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Self::InitSent(_) => "IKE_SA_INIT sent",
            Self::InitAnswered(_) => "half-open",
            Self::AuthSent(_) => "IKE_AUTH sent",
            Self::Established(e) if e.deleting => "deleting",
            Self::Established(_) => "established",
        }
    }

    /// The SK keys, once IKE_SA_INIT is done.
    pub(super) fn crypto(&self) -> Option<&Crypto> {
        match self {
            Self::InitSent(_) => None,
            Self::InitAnswered(h) => Some(&h.crypto),
            Self::AuthSent(a) => Some(&a.hs.crypto),
            Self::Established(e) => Some(&e.crypto),
        }
    }

    /// The connection, once known (a responder learns it from IDi).
    pub(super) fn conn(&self) -> Option<usize> {
        match self {
            Self::InitSent(e) => Some(e.conn),
            Self::InitAnswered(_) => None,
            Self::AuthSent(a) => Some(a.conn),
            Self::Established(e) => Some(e.conn),
        }
    }

    pub(super) fn established(&self) -> Option<&Established> {
        match self {
            Self::Established(e) => Some(e),
            _ => None,
        }
    }

    /// Whether events about the SA are for the driver (see [`Established::announced`]).
    pub(super) fn announced(&self) -> bool {
        self.established().is_none_or(|e| e.announced)
    }

    /// Established and not being deleted.
    pub(super) fn up(&self) -> Option<&Established> {
        self.established().filter(|e| !e.deleting)
    }
}

/// Initiator, IKE_SA_INIT sent: our Diffie-Hellman key and nonce wait for the response.
pub(super) struct ExpectInitResponse {
    pub(super) conn: usize,
    pub(super) dh: DhPrivate,
    pub(super) ni: Vec<u8>,
    /// The responder's COOKIE, to repeat (§2.6).
    pub(super) cookie: Option<Vec<u8>>,
    /// Retries after COOKIE or INVALID_KE_PAYLOAD.
    pub(super) retries: u8,
    /// Our request as sent, which our AUTH covers (§2.15).
    pub(super) own_init: Vec<u8>,
}

/// IKE_SA_INIT done, IKE_AUTH not yet: the keys and what AUTH covers (§2.15).
pub(super) struct Handshake {
    pub(super) crypto: Crypto,
    pub(super) ni: Vec<u8>,
    pub(super) nr: Vec<u8>,
    /// Our IKE_SA_INIT message (request or response) and the peer's.
    pub(super) own_init: Vec<u8>,
    pub(super) peer_init: Vec<u8>,
    /// The peer's SIGNATURE_HASH_ALGORITHMS (RFC 7427), if it sent them.
    pub(super) peer_hashes: Option<Vec<u16>>,
}

impl Handshake {
    /// RFC 7296 §2.15: the octets the initiator's (`by_initiator`) or the responder's AUTH
    /// covers: its own IKE_SA_INIT message, the other side's nonce, prf(SK_p, ID'). `we_initiated`:
    /// our role.
    pub(super) fn signed_octets(
        &self,
        we_initiated: bool,
        by_initiator: bool,
        id: &Identity,
    ) -> Vec<u8> {
        let c = &self.crypto;
        let (message, nonce, sk_p) = match (by_initiator, we_initiated) {
            (true, true) => (&self.own_init, &self.nr, &c.keys.sk_pi),
            (true, false) => (&self.peer_init, &self.nr, &c.keys.sk_pi),
            (false, true) => (&self.peer_init, &self.ni, &c.keys.sk_pr),
            (false, false) => (&self.own_init, &self.ni, &c.keys.sk_pr),
        };
        auth::signed_octets(c.proposal.prf, message, nonce, sk_p, id)
    }
}

/// Initiator, IKE_AUTH sent.
pub(super) struct ExpectAuthResponse {
    pub(super) conn: usize,
    pub(super) hs: Handshake,
}

/// An established IKE SA.
pub(super) struct Established {
    pub(super) conn: usize,
    pub(super) crypto: Crypto,
    pub(super) peer_id: Identity,
    /// RFC 7717's `prf(SK_d, "IPPM")`.
    pub(super) ippm_secret: Zeroizing<Vec<u8>>,
    pub(super) at: Instant,
    /// When to rekey on our own (None: not now).
    pub(super) next_rekey: Option<Instant>,
    /// When a rekey replaced this SA (no further rekeys of it); the peer that rekeyed deletes
    /// it, and we do if it does not.
    pub(super) superseded: Option<Instant>,
    /// A Delete of this SA is outstanding.
    pub(super) deleting: bool,
    /// A rekey of this SA by the peer, answered while ours was outstanding (§2.8.2): which
    /// of the two new SAs stays is decided by the nonces once ours is answered.
    pub(super) crossing: Option<Crossing>,
    /// Whether Established (and Rekeyed) went out for it. The new SAs of crossing rekeys are
    /// announced only once they survive, so that the driver never follows one that is
    /// about to go; one that does not survive goes without an event.
    pub(super) announced: bool,
}

/// The peer's rekey that crossed ours: its new SA (filed under `key`, unannounced) and the
/// nonces of its exchange.
pub(super) struct Crossing {
    pub(super) key: [u8; 8],
    pub(super) ni: Vec<u8>,
    pub(super) nr: Vec<u8>,
}

impl Established {
    pub(super) fn new(conn: usize, crypto: Crypto, peer_id: Identity, now: Instant) -> Self {
        let ippm_secret = crypto.keys.ippm_secret();
        Self {
            conn,
            crypto,
            peer_id,
            ippm_secret,
            at: now,
            next_rekey: None,
            superseded: None,
            deleting: false,
            crossing: None,
            announced: false,
        }
    }
}

/// What one of our outstanding requests is.
pub(super) enum RequestKind {
    /// IKE_SA_INIT or IKE_AUTH (the state tells which).
    Setup,
    Delete,
    Liveness,
    Rekey(Box<RekeyRequest>),
}

/// Our CREATE_CHILD_SA rekeying the IKE SA, while it is outstanding.
pub(super) struct RekeyRequest {
    pub(super) new_spi_i: [u8; 8],
    pub(super) ni: Vec<u8>,
    pub(super) dh: DhPrivate,
    pub(super) proposals: Vec<IkeProposal>,
    pub(super) retries: u8,
}

pub(super) struct Outstanding {
    pub(super) message_id: u32,
    pub(super) data: Vec<u8>,
    pub(super) kind: RequestKind,
    pub(super) sent: u32,
    pub(super) next: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QueuedRequest {
    Delete,
    Rekey,
}

/// The material of an IKE SA once IKE_SA_INIT is done.
pub(super) struct Crypto {
    pub(super) proposal: IkeProposal,
    pub(super) keys: IkeKeys,
    pub(super) out: SkKeys,
    pub(super) inb: SkKeys,
}

/// An error inside the handling of one message: logged, the message dropped.
#[derive(Debug)]
pub(super) enum Reject {
    /// Not for us, malformed, or out of window: ignore.
    Ignore(String),
    /// The SA cannot go on.
    Fail(Failure),
}

impl From<RandomError> for Reject {
    fn from(e: RandomError) -> Self {
        Self::Fail(Failure::Local(e.to_string()))
    }
}

impl From<Failure> for Reject {
    fn from(f: Failure) -> Self {
        Self::Fail(f)
    }
}

pub(super) fn ignore(why: impl Into<String>) -> Reject {
    Reject::Ignore(why.into())
}

pub(super) fn protocol(why: impl Into<String>) -> Reject {
    Reject::Fail(Failure::Protocol(why.into()))
}

/// The keys of a new IKE SA (`old`: the SA a rekey replaces, §2.18).
pub(super) fn derive(
    proposal: IkeProposal,
    ni: &[u8],
    nr: &[u8],
    g_ir: &[u8],
    spis: Spis,
    initiator: bool,
    old: Option<&IkeKeys>,
) -> Result<Crypto, Failure> {
    let c = Contributions {
        ni,
        nr,
        g_ir,
        spi_i: &spis.i,
        spi_r: &spis.r,
    };
    let lengths = proposal.suite().key_lengths();
    let keys = match old {
        None => IkeKeys::derive(proposal.prf, c, lengths),
        Some(old) => old.rekey(proposal.prf, c, lengths),
    }
    .map_err(|e| Failure::Local(e.to_string()))?;
    let (out, inb) = sk::directional(&keys, proposal.suite(), initiator)
        .map_err(|e| Failure::Local(e.to_string()))?;
    Ok(Crypto {
        proposal,
        keys,
        out,
        inb,
    })
}
