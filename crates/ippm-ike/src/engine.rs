//! The IKEv2 engine: initiator and responder state machines for every IKE SA of a node, and
//! the SA database, without I/O (quinn's shape). The driver feeds it datagrams
//! ([`Engine::handle_datagram`]) and timeouts ([`Engine::handle_timeout`]), sends what
//! [`Engine::poll_transmit`] gives, and reads [`Engine::poll_event`].
//!
//! Exchanges: IKE_SA_INIT (with COOKIE and INVALID_KE_PAYLOAD retries), IKE_AUTH (PSK and
//! certificates, childless per RFC 6023: a Child SA the peer proposes is refused while the IKE
//! SA stands), INFORMATIONAL (delete, liveness) and CREATE_CHILD_SA rekeying the IKE SA
//! (RFC 7296 §1.3.2). One request outstanding per direction (window size 1, §2.3), with
//! retransmission by the requester and cached responses for the peer's retransmissions (§2.1).
//!
//! The only secret that leaves: [`Engine::ippm_secret`], RFC 7717's `prf(SK_d, "IPPM")`.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::auth::{self, Identity};
use crate::codepoints::{AuthMethod, ExchangeType, NotifyType, ProtocolId};
use crate::config::{Config, Connection, LocalAuth, RemoteAuth};
use crate::dh::{DhGroup, DhPrivate};
use crate::keys::{Contributions, IkeKeys};
use crate::message::{Flags, Header, Message, Payload};
use crate::proposal::{IkeProposal, Selection, select};
use crate::sk::{self, SkKeys};

/// Octets of our nonces.
const NONCE_LEN: usize = 32;
/// CERT encoding: X.509 Certificate - Signature (RFC 7296 §3.6).
const CERT_X509_SIGNATURE: u8 = 4;
/// How long an SA replaced by a peer's rekey waits for the peer's Delete before we send one.
const SUPERSEDED_GRACE: Duration = Duration::from_secs(30);
/// After a refused rekey, the next attempt.
const REKEY_RETRY: Duration = Duration::from_secs(60);
/// IKE_SA_INIT retries after COOKIE or INVALID_KE_PAYLOAD before giving up.
const MAX_INIT_RETRIES: u8 = 3;

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

/// What [`Engine::list`] tells about an IKE SA: never keys.
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

/// Errors of the operator's calls ([`Engine::initiate`], [`Engine::delete`], [`Engine::rekey`]).
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Initiator: IKE_SA_INIT sent.
    InitSent,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH (half-open).
    InitAnswered,
    /// Initiator: IKE_AUTH sent.
    AuthSent,
    Established,
    /// A Delete of this SA is outstanding.
    Deleting,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            Self::InitSent => "IKE_SA_INIT sent",
            Self::InitAnswered => "half-open",
            Self::AuthSent => "IKE_AUTH sent",
            Self::Established => "established",
            Self::Deleting => "deleting",
        }
    }
}

/// What one of our outstanding requests is.
enum RequestKind {
    Init,
    Auth,
    Delete,
    Liveness,
    Rekey(Box<RekeyRequest>),
}

/// What a responder contributes to a new IKE SA.
struct ResponderPart {
    dh: DhPrivate,
    g_ir: Zeroizing<Vec<u8>>,
    spi_r: [u8; 8],
    nr: Vec<u8>,
}

struct RekeyRequest {
    new_spi_i: [u8; 8],
    ni: Vec<u8>,
    dh: DhPrivate,
    proposals: Vec<IkeProposal>,
    retries: u8,
}

struct Outstanding {
    message_id: u32,
    data: Vec<u8>,
    kind: RequestKind,
    sent: u32,
    next: Instant,
}

/// The material of an IKE SA once IKE_SA_INIT is done.
struct Crypto {
    proposal: IkeProposal,
    keys: IkeKeys,
    out: SkKeys,
    inb: SkKeys,
}

struct IkeSa {
    spis: Spis,
    initiator: bool,
    local: SocketAddr,
    remote: SocketAddr,
    state: State,
    conn: Option<usize>,
    crypto: Option<Crypto>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    /// Our IKE_SA_INIT message (request or response) and the peer's, for AUTH (§2.15).
    own_init: Vec<u8>,
    peer_init: Vec<u8>,
    /// Initiator, before IKE_SA_INIT completes.
    dh: Option<DhPrivate>,
    cookie: Option<Vec<u8>>,
    init_retries: u8,
    peer_hashes: Option<Vec<u16>>,
    peer_id: Option<Identity>,
    ippm_secret: Option<Zeroizing<Vec<u8>>>,
    next_request_id: u32,
    outstanding: Option<Outstanding>,
    /// Requests waiting for the window.
    queued: VecDeque<QueuedRequest>,
    peer_next_id: u32,
    last_response: Option<(u32, Vec<u8>)>,
    created: Instant,
    established_at: Option<Instant>,
    /// When to rekey on our own (None: not now).
    next_rekey: Option<Instant>,
    last_heard: Instant,
    /// Set once a rekey replaced this SA (no further rekeys of it).
    superseded: bool,
    /// When a rekey replaced it; the peer that rekeyed deletes it, and we do if it does not.
    superseded_at: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueuedRequest {
    Delete,
    Rekey,
}

struct Retired {
    spis: Spis,
    peer: IpAddr,
    secret: Zeroizing<Vec<u8>>,
    until: Instant,
}

/// All IKE SAs of a node.
pub struct Engine {
    config: Config,
    rng: Box<dyn Random>,
    sas: HashMap<[u8; 8], IkeSa>,
    /// Responder half-open SAs by (peer, SPIi), to recognise retransmitted IKE_SA_INITs.
    half_open: HashMap<(SocketAddr, [u8; 8]), [u8; 8]>,
    retired: Vec<Retired>,
    cookie_secret: Zeroizing<[u8; 32]>,
    cookie_version: u32,
    cookie_rotated: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("sas", &self.sas.len())
            .field("half_open", &self.half_open.len())
            .finish_non_exhaustive()
    }
}

/// An error inside the handling of one message: logged, the message dropped.
#[derive(Debug)]
enum Reject {
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

fn ignore(why: impl Into<String>) -> Reject {
    Reject::Ignore(why.into())
}

fn protocol(why: impl Into<String>) -> Reject {
    Reject::Fail(Failure::Protocol(why.into()))
}

fn notify(ty: NotifyType, data: Vec<u8>) -> Payload {
    Payload::Notify {
        protocol: ProtocolId(0),
        spi: Vec::new(),
        ty,
        data,
    }
}

fn find_notify(payloads: &[Payload], ty: NotifyType) -> Option<&[u8]> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify { ty: t, data, .. } if *t == ty => Some(data.as_slice()),
        _ => None,
    })
}

fn first_error(payloads: &[Payload]) -> Option<NotifyType> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify { ty, .. } if ty.is_error() => Some(*ty),
        _ => None,
    })
}

fn nonce(payloads: &[Payload]) -> Option<&[u8]> {
    payloads.iter().find_map(|p| match p {
        Payload::Nonce(n) => Some(n.as_slice()),
        _ => None,
    })
}

fn ke(payloads: &[Payload]) -> Option<(u16, &[u8])> {
    payloads.iter().find_map(|p| match p {
        Payload::Ke { group, data } => Some((*group, data.as_slice())),
        _ => None,
    })
}

fn sa_payload(payloads: &[Payload]) -> Option<&[crate::message::Proposal]> {
    payloads.iter().find_map(|p| match p {
        Payload::Sa(props) => Some(props.as_slice()),
        _ => None,
    })
}

fn id_payload(payloads: &[Payload], initiator: bool) -> Option<Result<Identity, String>> {
    payloads.iter().find_map(|p| match p {
        Payload::Id {
            initiator: i,
            ty,
            data,
        } if *i == initiator => Some(Identity::from_payload(*ty, data).map_err(|e| e.to_string())),
        _ => None,
    })
}

fn certs(payloads: &[Payload]) -> Vec<Vec<u8>> {
    payloads
        .iter()
        .filter_map(|p| match p {
            Payload::Cert { encoding, data } if *encoding == CERT_X509_SIGNATURE => {
                Some(data.clone())
            }
            _ => None,
        })
        .collect()
}

fn auth_payload(payloads: &[Payload]) -> Option<(AuthMethod, &[u8])> {
    payloads.iter().find_map(|p| match p {
        Payload::Auth { method, data } => Some((*method, data.as_slice())),
        _ => None,
    })
}

fn id_to_payload(id: &Identity, initiator: bool) -> Payload {
    let (ty, data) = id.to_payload();
    Payload::Id {
        initiator,
        ty,
        data,
    }
}

impl Engine {
    fn connection_of(&self, sa: &IkeSa) -> Result<Connection, Failure> {
        sa.conn
            .map(|c| self.config.connections[c].clone())
            .ok_or_else(|| Failure::Local("no connection".into()))
    }

    /// An engine for `config`, with `rng` as its randomness.
    pub fn new(config: Config, mut rng: Box<dyn Random>) -> Result<Self, RandomError> {
        let mut cookie_secret = Zeroizing::new([0u8; 32]);
        rng.fill(cookie_secret.as_mut())?;
        Ok(Self {
            config,
            rng,
            sas: HashMap::new(),
            half_open: HashMap::new(),
            retired: Vec::new(),
            cookie_secret,
            cookie_version: 0,
            cookie_rotated: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The IKE SAs, without keys.
    pub fn list(&self, now: Instant) -> Vec<SaInfo> {
        let mut v: Vec<_> = self
            .sas
            .values()
            .map(|s| SaInfo {
                spis: s.spis,
                connection: s.conn.map(|c| self.config.connections[c].name.clone()),
                peer: s.remote,
                local: s.local,
                initiator: s.initiator,
                state: s.state.name(),
                proposal: s.crypto.as_ref().map(|c| c.proposal),
                peer_id: s.peer_id.as_ref().map(ToString::to_string),
                age: now.saturating_duration_since(s.established_at.unwrap_or(s.created)),
            })
            .collect();
        v.sort_by_key(|s| (s.connection.clone(), s.age));
        v
    }

    /// RFC 7717 §5.1: `prf(SK_d, "IPPM")` of the IKE SA with these SPIs, established (or
    /// rekeyed away within [`Limits::retired_grace`](crate::config::Limits)), if the peer
    /// is the one the SA is with (`peer`: None skips that check).
    pub fn ippm_secret(
        &self,
        spis: Spis,
        peer: Option<IpAddr>,
        now: Instant,
    ) -> Option<Zeroizing<Vec<u8>>> {
        let ok = |ip: IpAddr| peer.is_none_or(|p| p == ip);
        for s in self.sas.values() {
            if s.spis == spis && s.state == State::Established && ok(s.remote.ip()) {
                return s.ippm_secret.clone();
            }
        }
        self.retired
            .iter()
            .find(|r| r.spis == spis && r.until > now && ok(r.peer))
            .map(|r| r.secret.clone())
    }

    /// The newest established IKE SA with `peer` and its RFC 7717 secret (client side).
    pub fn ippm_secret_for_peer(&self, peer: IpAddr) -> Option<(Spis, Zeroizing<Vec<u8>>)> {
        self.sas
            .values()
            .filter(|s| s.state == State::Established && !s.superseded && s.remote.ip() == peer)
            .max_by_key(|s| s.established_at)
            .and_then(|s| Some((s.spis, s.ippm_secret.clone()?)))
    }

    /// Starts an IKE SA for connection `name` to its configured address (or `remote`).
    pub fn initiate(
        &mut self,
        now: Instant,
        name: &str,
        local: SocketAddr,
        remote: Option<SocketAddr>,
    ) -> Result<Spis, EngineError> {
        let idx = self
            .config
            .connections
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| EngineError::UnknownConnection(name.to_owned()))?;
        let conn = &self.config.connections[idx];
        let remote = remote
            .or(conn.remote_addr)
            .ok_or_else(|| EngineError::NoRemoteAddress(name.to_owned()))?;
        let l = &self.config.limits;
        if self.sas.len() >= l.established_max + l.half_open_max {
            return Err(EngineError::Local(format!(
                "{} IKE SAs: the limit (established_max + half_open_max) is reached",
                self.sas.len()
            )));
        }
        let local_err = |e: &dyn fmt::Display| EngineError::Local(e.to_string());
        let first = *conn
            .proposals
            .first()
            .ok_or_else(|| EngineError::Local(format!("connection {name:?} has no proposals")))?;
        let mut spi_i = [0u8; 8];
        self.rng.fill(&mut spi_i).map_err(|e| local_err(&e))?;
        let mut ni = vec![0u8; NONCE_LEN];
        self.rng.fill(&mut ni).map_err(|e| local_err(&e))?;
        let dh = self.dh(first.dh).map_err(|e| local_err(&e))?;
        let spis = Spis {
            i: spi_i,
            r: [0; 8],
        };
        let mut sa = IkeSa::new(spis, true, local, remote, now);
        sa.conn = Some(idx);
        sa.ni = ni;
        sa.dh = Some(dh);
        let data = self.init_request(&sa).map_err(|e| local_err(&e))?;
        sa.own_init.clone_from(&data);
        tracing::info!(connection = name, %remote, %spis, "initiating IKE SA");
        self.send_request(&mut sa, now, data, RequestKind::Init);
        self.sas.insert(spi_i, sa);
        Ok(spis)
    }

    /// Deletes an established IKE SA (INFORMATIONAL with a Delete payload).
    pub fn delete(&mut self, now: Instant, spis: Spis) -> Result<(), EngineError> {
        self.queue_request(now, spis, QueuedRequest::Delete)
    }

    /// Rekeys an established IKE SA (CREATE_CHILD_SA, RFC 7296 §1.3.2).
    pub fn rekey(&mut self, now: Instant, spis: Spis) -> Result<(), EngineError> {
        self.queue_request(now, spis, QueuedRequest::Rekey)
    }

    /// The SPIs of the established IKE SAs with this peer address or of this connection.
    pub fn find(&self, peer_or_name: &str) -> Vec<Spis> {
        self.sas
            .values()
            .filter(|s| {
                s.remote.ip().to_string() == peer_or_name
                    || s.conn
                        .is_some_and(|c| self.config.connections[c].name == peer_or_name)
            })
            .map(|s| s.spis)
            .collect()
    }

    fn queue_request(
        &mut self,
        now: Instant,
        spis: Spis,
        req: QueuedRequest,
    ) -> Result<(), EngineError> {
        let key = self
            .local_spi_of(spis)
            .ok_or(EngineError::UnknownSa(spis))?;
        let mut sa = self.sas.remove(&key).ok_or(EngineError::UnknownSa(spis))?;
        if sa.state != State::Established {
            self.sas.insert(key, sa);
            return Err(EngineError::NotEstablished(spis));
        }
        if !sa.queued.contains(&req) {
            sa.queued.push_back(req);
        }
        self.pump(&mut sa, now);
        self.put_back(key, sa);
        Ok(())
    }

    /// The proposals acceptable when rekeying `sa`: its connection's, then the responder list.
    fn pool(&self, sa: &IkeSa) -> Vec<IkeProposal> {
        let mut v: Vec<IkeProposal> = sa
            .conn
            .map(|c| self.config.connections[c].proposals.clone())
            .unwrap_or_default();
        for p in &self.config.proposals {
            if !v.contains(p) {
                v.push(*p);
            }
        }
        v
    }

    fn local_spi_of(&self, spis: Spis) -> Option<[u8; 8]> {
        [spis.i, spis.r]
            .into_iter()
            .find(|k| self.sas.get(k).is_some_and(|s| s.spis == spis))
    }

    /// When [`Engine::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let l = &self.config.limits;
        self.sas
            .values()
            .flat_map(|s| {
                let retransmit = s.outstanding.as_ref().map(|o| o.next);
                let half_open =
                    (s.state == State::InitAnswered).then(|| s.created + l.half_open_timeout);
                let est = s.state == State::Established;
                let rekey = s.next_rekey.filter(|_| est && !s.superseded);
                let stale = s
                    .superseded_at
                    .filter(|_| est && !s.queued.contains(&QueuedRequest::Delete))
                    .map(|t| t + SUPERSEDED_GRACE);
                let idle = est && s.outstanding.is_none() && s.queued.is_empty();
                let dpd = l.dpd_delay.filter(|_| idle).map(|d| s.last_heard + d);
                [retransmit, half_open, rekey, dpd, stale]
            })
            .flatten()
            .chain(self.retired.iter().map(|r| r.until))
            .min()
    }

    /// Runs the timers: retransmissions, dead peers, half-open expiry, rekeys, liveness.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.retired.retain(|r| r.until > now);
        let keys: Vec<[u8; 8]> = self.sas.keys().copied().collect();
        for key in keys {
            let Some(mut sa) = self.sas.remove(&key) else {
                continue;
            };
            if self.run_timers(&mut sa, now) {
                self.put_back(key, sa);
            } else {
                self.forget(&sa);
            }
        }
    }

    /// Returns false when the SA is to go.
    fn run_timers(&mut self, sa: &mut IkeSa, now: Instant) -> bool {
        let l = self.config.limits.clone();
        if sa.state == State::InitAnswered && now >= sa.created + l.half_open_timeout {
            tracing::debug!(spis = %sa.spis, peer = %sa.remote, "half-open IKE SA expired");
            return false;
        }
        if sa
            .outstanding
            .as_ref()
            .is_some_and(|o| now >= o.next && o.sent >= l.retransmit_tries)
            && let Some(o) = sa.outstanding.take()
        {
            return self.request_timed_out(sa, o.kind);
        }
        if let Some(o) = sa.outstanding.as_mut()
            && now >= o.next
        {
            o.sent += 1;
            o.next = now + retransmit_delay(&l, o.sent);
            tracing::debug!(spis = %sa.spis, id = o.message_id, n = o.sent, "retransmitting");
            self.transmits.push_back(Transmit {
                local: sa.local,
                remote: sa.remote,
                data: o.data.clone(),
            });
        }
        if sa.state == State::Established {
            // A peer that rekeyed should have deleted the old SA by now (§2.8); one that
            // does not (or a Delete that got lost) must not leave SAs piling up.
            if sa
                .superseded_at
                .is_some_and(|t| now >= t + SUPERSEDED_GRACE)
                && !sa.queued.contains(&QueuedRequest::Delete)
            {
                sa.queued.push_back(QueuedRequest::Delete);
                // Should the Delete not go out (no randomness), try again a grace later.
                sa.superseded_at = Some(now);
            }
            if sa.next_rekey.is_some_and(|t| now >= t) && !sa.superseded {
                sa.next_rekey = None;
                if !sa.queued.contains(&QueuedRequest::Rekey) {
                    sa.queued.push_back(QueuedRequest::Rekey);
                }
            }
            if let Some(d) = l.dpd_delay
                && now >= sa.last_heard + d
                && sa.outstanding.is_none()
                && sa.queued.is_empty()
            {
                let data = match self.informational(sa, Vec::new()) {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(spis = %sa.spis, "liveness check: {e}");
                        // Try again a delay later rather than at once.
                        sa.last_heard = now;
                        return true;
                    }
                };
                self.send_request(sa, now, data, RequestKind::Liveness);
            }
        }
        self.pump(sa, now);
        true
    }

    fn request_timed_out(&mut self, sa: &mut IkeSa, kind: RequestKind) -> bool {
        match kind {
            RequestKind::Init | RequestKind::Auth => {
                tracing::warn!(spis = %sa.spis, peer = %sa.remote, "no answer to IKE SA set-up");
                self.events.push_back(Event::Failed {
                    spis: sa.spis,
                    peer: sa.remote,
                    failure: Failure::Timeout,
                });
            }
            RequestKind::Delete => {
                self.events.push_back(Event::Deleted {
                    spis: sa.spis,
                    reason: DeleteReason::ByUs,
                });
            }
            RequestKind::Liveness | RequestKind::Rekey(_) => {
                tracing::warn!(spis = %sa.spis, peer = %sa.remote, "peer stopped answering; IKE SA deleted");
                self.events.push_back(Event::Deleted {
                    spis: sa.spis,
                    reason: DeleteReason::PeerDead,
                });
            }
        }
        false
    }

    fn put_back(&mut self, key: [u8; 8], sa: IkeSa) {
        self.sas.insert(key, sa);
    }

    /// Removes what indexes an SA that is gone.
    fn forget(&mut self, sa: &IkeSa) {
        self.half_open.remove(&(sa.remote, sa.spis.i));
    }

    fn retire(&mut self, sa: &IkeSa, now: Instant) {
        if let Some(secret) = &sa.ippm_secret {
            self.retired.push(Retired {
                spis: sa.spis,
                peer: sa.remote.ip(),
                secret: secret.clone(),
                until: now + self.config.limits.retired_grace,
            });
        }
    }

    fn dh(&mut self, group: DhGroup) -> Result<DhPrivate, Failure> {
        let mut random = Zeroizing::new(vec![0u8; group.secret_len()]);
        let mut last = None;
        for _ in 0..8 {
            self.rng
                .fill(&mut random)
                .map_err(|e| Failure::Local(e.to_string()))?;
            match DhPrivate::from_random(group, &random) {
                Ok(k) => return Ok(k),
                Err(e) => last = Some(e),
            }
        }
        Err(Failure::Local(format!(
            "no Diffie-Hellman key: {}",
            last.map_or_else(String::new, |e| e.to_string())
        )))
    }

    fn send_request(&mut self, sa: &mut IkeSa, now: Instant, data: Vec<u8>, kind: RequestKind) {
        let message_id = if matches!(kind, RequestKind::Init) {
            0
        } else {
            sa.next_request_id
        };
        if !matches!(kind, RequestKind::Init) {
            sa.next_request_id = sa.next_request_id.wrapping_add(1);
        }
        self.transmits.push_back(Transmit {
            local: sa.local,
            remote: sa.remote,
            data: data.clone(),
        });
        sa.outstanding = Some(Outstanding {
            message_id,
            data,
            kind,
            sent: 1,
            next: now + retransmit_delay(&self.config.limits, 1),
        });
    }

    /// Sends the next queued request if the window is free.
    fn pump(&mut self, sa: &mut IkeSa, now: Instant) {
        while sa.outstanding.is_none() && sa.state == State::Established {
            let Some(req) = sa.queued.pop_front() else {
                return;
            };
            let res = match req {
                QueuedRequest::Delete => self.start_delete(sa, now),
                QueuedRequest::Rekey => self.start_rekey(sa, now, None),
            };
            if let Err(e) = res {
                tracing::warn!(spis = %sa.spis, "{req:?}: {e}");
            }
        }
    }

    fn start_delete(&mut self, sa: &mut IkeSa, now: Instant) -> Result<(), Failure> {
        let data = self.informational(
            sa,
            vec![Payload::Delete {
                protocol: ProtocolId::IKE,
                spi_size: 0,
                spis: Vec::new(),
            }],
        )?;
        tracing::info!(spis = %sa.spis, peer = %sa.remote, "deleting IKE SA");
        sa.state = State::Deleting;
        sa.queued.clear();
        self.send_request(sa, now, data, RequestKind::Delete);
        Ok(())
    }

    fn start_rekey(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        group: Option<DhGroup>,
    ) -> Result<(), Failure> {
        if sa.superseded {
            return Ok(());
        }
        let current = sa.crypto()?.proposal;
        // Offer the current proposal first, then the connection's (or the responder list).
        let mut proposals = vec![current];
        proposals.extend(self.pool(sa).into_iter().filter(|p| *p != current));
        let group = group.unwrap_or(current.dh);
        let dh = self.dh(group)?;
        let mut new_spi_i = [0u8; 8];
        self.rng
            .fill(&mut new_spi_i)
            .map_err(|e| Failure::Local(e.to_string()))?;
        let mut ni = vec![0u8; NONCE_LEN];
        self.rng
            .fill(&mut ni)
            .map_err(|e| Failure::Local(e.to_string()))?;
        let data = self.rekey_request(sa, &proposals, new_spi_i, &ni, &dh)?;
        tracing::info!(spis = %sa.spis, "rekeying IKE SA");
        self.send_request(
            sa,
            now,
            data,
            RequestKind::Rekey(Box::new(RekeyRequest {
                new_spi_i,
                ni,
                dh,
                proposals,
                retries: 0,
            })),
        );
        Ok(())
    }

    fn rekey_request(
        &mut self,
        sa: &IkeSa,
        proposals: &[IkeProposal],
        new_spi_i: [u8; 8],
        ni: &[u8],
        dh: &DhPrivate,
    ) -> Result<Vec<u8>, Failure> {
        let props = numbered(proposals, &new_spi_i);
        let inner = vec![
            Payload::Sa(props),
            Payload::Nonce(ni.to_vec()),
            Payload::Ke {
                group: dh.group().id(),
                data: dh.public(),
            },
        ];
        self.seal(
            sa,
            ExchangeType::CREATE_CHILD_SA,
            false,
            sa.next_request_id,
            &inner,
        )
    }

    fn informational(&mut self, sa: &IkeSa, inner: Vec<Payload>) -> Result<Vec<u8>, Failure> {
        self.seal(
            sa,
            ExchangeType::INFORMATIONAL,
            false,
            sa.next_request_id,
            &inner,
        )
    }

    fn seal(
        &mut self,
        sa: &IkeSa,
        exchange: ExchangeType,
        response: bool,
        message_id: u32,
        inner: &[Payload],
    ) -> Result<Vec<u8>, Failure> {
        let crypto = sa.crypto()?;
        let mut iv = vec![0u8; crypto.out.iv_len()];
        self.rng
            .fill(&mut iv)
            .map_err(|e| Failure::Local(e.to_string()))?;
        let header = sa.header(exchange, response, message_id);
        sk::seal(&crypto.out, &header, &[], inner, &iv).map_err(|e| Failure::Local(e.to_string()))
    }

    fn init_request(&self, sa: &IkeSa) -> Result<Vec<u8>, Failure> {
        let conn = sa
            .conn
            .map(|c| &self.config.connections[c])
            .ok_or_else(|| Failure::Local("no connection".into()))?;
        let dh = sa
            .dh
            .as_ref()
            .ok_or_else(|| Failure::Local("no DH key".into()))?;
        // The group of the KE payload goes first, so the responder need not retry.
        let mut proposals: Vec<IkeProposal> = conn
            .proposals
            .iter()
            .filter(|p| p.dh == dh.group())
            .copied()
            .collect();
        proposals.extend(conn.proposals.iter().filter(|p| p.dh != dh.group()));
        let mut payloads = Vec::new();
        if let Some(c) = &sa.cookie {
            payloads.push(notify(NotifyType::COOKIE, c.clone()));
        }
        payloads.extend([
            Payload::Sa(numbered(&proposals, &[])),
            Payload::Ke {
                group: dh.group().id(),
                data: dh.public(),
            },
            Payload::Nonce(sa.ni.clone()),
            notify(NotifyType::CHILDLESS_IKEV2_SUPPORTED, Vec::new()),
            notify(
                NotifyType::SIGNATURE_HASH_ALGORITHMS,
                auth::hash_algorithms_notify_data(),
            ),
        ]);
        Message {
            header: sa.header(ExchangeType::IKE_SA_INIT, false, 0),
            payloads,
        }
        .emit()
        .map_err(|e| Failure::Local(e.to_string()))
    }

    /// Handles one received datagram (`local`: the address it came to).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        wall: SystemTime,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%remote, "dropped an IKE datagram: {e}");
                return;
            }
        };
        let h = msg.header;
        if h.exchange == ExchangeType::IKE_SA_INIT && !h.flags.response() {
            if !h.flags.initiator() || h.spi_r != [0; 8] || h.message_id != 0 {
                tracing::debug!(%remote, "dropped a malformed IKE_SA_INIT request");
                return;
            }
            if let Err(e) = self.respond_init(now, local, remote, data, &msg) {
                self.log_drop(remote, None, e);
            }
            return;
        }
        let key = if h.flags.initiator() {
            h.spi_r
        } else {
            h.spi_i
        };
        let Some(mut sa) = self.sas.remove(&key) else {
            tracing::debug!(%remote, exchange = ?h.exchange, "dropped an IKE message for an unknown SA");
            return;
        };
        let keep = if sa.remote != remote || (h.flags.initiator() == sa.initiator) {
            tracing::debug!(%remote, spis = %sa.spis, "dropped an IKE message from the wrong peer or role");
            true
        } else if h.flags.response() {
            self.handle_response(&mut sa, now, wall, data, &msg)
        } else {
            self.handle_request(&mut sa, now, wall, data, &msg)
        };
        if keep {
            self.pump(&mut sa, now);
            self.put_back(key, sa);
        } else {
            self.forget(&sa);
        }
    }

    fn log_drop(&mut self, remote: SocketAddr, sa: Option<&IkeSa>, d: Reject) {
        match d {
            Reject::Ignore(why) => tracing::debug!(%remote, "dropped an IKE message: {why}"),
            Reject::Fail(failure) => {
                tracing::warn!(%remote, "IKE: {failure}");
                if let Some(sa) = sa {
                    self.events.push_back(Event::Failed {
                        spis: sa.spis,
                        peer: remote,
                        failure,
                    });
                }
            }
        }
    }

    fn cookie_for(&self, version: u32, ni: &[u8], ip: IpAddr, spi_i: &[u8; 8]) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(ni);
        match ip {
            IpAddr::V4(a) => h.update(a.octets()),
            IpAddr::V6(a) => h.update(a.octets()),
        }
        h.update(spi_i);
        h.update(version.to_be_bytes());
        h.update(self.cookie_secret.as_ref());
        let mut c = version.to_be_bytes().to_vec();
        c.extend_from_slice(&h.finalize());
        c
    }

    fn cookie_ok(&self, cookie: &[u8], ni: &[u8], ip: IpAddr, spi_i: &[u8; 8]) -> bool {
        let (Some(v), 36) = (cookie.first_chunk::<4>(), cookie.len()) else {
            return false;
        };
        let version = u32::from_be_bytes(*v);
        // The current secret only (a rotation invalidates cookies in flight; the initiator
        // gets a fresh one).
        version == self.cookie_version
            && bool::from(self.cookie_for(version, ni, ip, spi_i).ct_eq(cookie))
    }

    fn respond_init(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        msg: &Message,
    ) -> Result<(), Reject> {
        let h = msg.header;
        // A retransmitted request gets the same answer.
        if let Some(k) = self.half_open.get(&(remote, h.spi_i))
            && let Some(sa) = self.sas.get(k)
        {
            if sa.peer_init == data {
                if let Some((_, resp)) = &sa.last_response {
                    self.transmits.push_back(Transmit {
                        local,
                        remote,
                        data: resp.clone(),
                    });
                }
                return Ok(());
            }
            return Err(ignore("a second IKE_SA_INIT for a half-open SA"));
        }
        let p = &msg.payloads;
        let ni = nonce(p).ok_or_else(|| ignore("IKE_SA_INIT without a nonce"))?;
        let limits = &self.config.limits;
        if self.half_open.len() >= limits.half_open_max {
            return Err(ignore("half-open IKE SA limit reached"));
        }
        if self.sas.len() >= limits.established_max + limits.half_open_max {
            return Err(ignore("IKE SA limit reached"));
        }
        if self.half_open.len() >= limits.cookie_threshold {
            // Cookie secrets change now and then (§2.6), never while one is still fresh.
            if self
                .cookie_rotated
                .is_none_or(|t| now.duration_since(t) > Duration::from_secs(60))
            {
                self.rng.fill(self.cookie_secret.as_mut())?;
                self.cookie_version = self.cookie_version.wrapping_add(1);
                self.cookie_rotated = Some(now);
            }
            let first_is_cookie =
                matches!(p.first(), Some(Payload::Notify { ty, .. }) if *ty == NotifyType::COOKIE);
            let presented = find_notify(p, NotifyType::COOKIE).filter(|_| first_is_cookie);
            if !presented.is_some_and(|c| self.cookie_ok(c, ni, remote.ip(), &h.spi_i)) {
                let cookie = self.cookie_for(self.cookie_version, ni, remote.ip(), &h.spi_i);
                self.answer_unprotected(local, remote, h, notify(NotifyType::COOKIE, cookie));
                return Ok(());
            }
        }
        let theirs = sa_payload(p).ok_or_else(|| ignore("IKE_SA_INIT without an SA payload"))?;
        let (group, ke_data) = ke(p).ok_or_else(|| ignore("IKE_SA_INIT without a KE payload"))?;
        let (num, proposal) = match select(&self.config.proposals, theirs, Some(group)) {
            Selection::Chosen { num, proposal } => (num, proposal),
            Selection::WrongGroup(g) => {
                tracing::debug!(%remote, "asking for DH group {g:?} (INVALID_KE_PAYLOAD)");
                let n = notify(
                    NotifyType::INVALID_KE_PAYLOAD,
                    g.id().to_be_bytes().to_vec(),
                );
                self.answer_unprotected(local, remote, h, n);
                return Ok(());
            }
            Selection::None => {
                tracing::warn!(%remote, "no acceptable IKE proposal");
                let n = notify(NotifyType::NO_PROPOSAL_CHOSEN, Vec::new());
                self.answer_unprotected(local, remote, h, n);
                return Ok(());
            }
        };
        let ResponderPart {
            dh,
            g_ir,
            spi_r,
            nr,
        } = self.responder_contribution(proposal.dh, ke_data)?;
        let spis = Spis {
            i: h.spi_i,
            r: spi_r,
        };
        let crypto = derive(proposal, ni, &nr, &g_ir, spis, false, None)?;
        let mut sa = IkeSa::new(spis, false, local, remote, now);
        sa.ni = ni.to_vec();
        sa.nr = nr.clone();
        sa.crypto = Some(crypto);
        sa.state = State::InitAnswered;
        sa.peer_init = data.to_vec();
        sa.peer_hashes = find_notify(p, NotifyType::SIGNATURE_HASH_ALGORITHMS)
            .and_then(|d| auth::parse_hash_algorithms(d).ok());
        let mut out = vec![
            Payload::Sa(vec![proposal.to_wire(num, &[])]),
            Payload::Ke {
                group: proposal.dh.id(),
                data: dh.public(),
            },
            Payload::Nonce(nr),
        ];
        let certreq = self.certreq_data();
        if !certreq.is_empty() {
            out.push(Payload::CertReq {
                encoding: CERT_X509_SIGNATURE,
                data: certreq,
            });
        }
        out.push(notify(NotifyType::CHILDLESS_IKEV2_SUPPORTED, Vec::new()));
        if sa.peer_hashes.is_some() {
            out.push(notify(
                NotifyType::SIGNATURE_HASH_ALGORITHMS,
                auth::hash_algorithms_notify_data(),
            ));
        }
        let resp = Message {
            header: sa.header(ExchangeType::IKE_SA_INIT, true, 0),
            payloads: out,
        }
        .emit()
        .map_err(|e| Reject::Fail(Failure::Local(e.to_string())))?;
        sa.own_init.clone_from(&resp);
        sa.last_response = Some((0, resp.clone()));
        sa.peer_next_id = 1;
        self.transmits.push_back(Transmit {
            local,
            remote,
            data: resp,
        });
        tracing::debug!(%remote, %spis, %proposal, "IKE_SA_INIT answered");
        self.half_open.insert((remote, h.spi_i), spi_r);
        self.sas.insert(spi_r, sa);
        Ok(())
    }

    /// A responder's part of a new IKE SA (IKE_SA_INIT, or a rekey): its Diffie-Hellman key
    /// and the shared secret with the initiator's KE data, its SPI and its nonce.
    fn responder_contribution(
        &mut self,
        group: DhGroup,
        ke_data: &[u8],
    ) -> Result<ResponderPart, Reject> {
        let dh = self.dh(group).map_err(Reject::Fail)?;
        let g_ir = dh
            .shared(ke_data)
            .map_err(|e| ignore(format!("the initiator's KE payload: {e}")))?;
        let mut spi_r = [0u8; 8];
        self.rng.fill(&mut spi_r)?;
        let mut nr = vec![0u8; NONCE_LEN];
        self.rng.fill(&mut nr)?;
        Ok(ResponderPart {
            dh,
            g_ir,
            spi_r,
            nr,
        })
    }

    fn certreq_data(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for c in &self.config.connections {
            if let RemoteAuth::Cert(store) = &c.remote_auth {
                let d = store.certreq_data();
                // The same CA in several connections is asked for once.
                for h in d.chunks(20) {
                    if !out.chunks(20).any(|o| o == h) {
                        out.extend_from_slice(h);
                    }
                }
            }
        }
        out
    }

    /// An unprotected IKE_SA_INIT answer (COOKIE, INVALID_KE_PAYLOAD, NO_PROPOSAL_CHOSEN).
    fn answer_unprotected(&mut self, local: SocketAddr, remote: SocketAddr, h: Header, n: Payload) {
        let header = Header {
            spi_i: h.spi_i,
            spi_r: [0; 8],
            exchange: ExchangeType::IKE_SA_INIT,
            flags: Flags(Flags::RESPONSE),
            message_id: 0,
        };
        if let Ok(data) = (Message {
            header,
            payloads: vec![n],
        })
        .emit()
        {
            self.transmits.push_back(Transmit {
                local,
                remote,
                data,
            });
        }
    }

    /// Returns false when the SA is to go.
    fn handle_response(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        wall: SystemTime,
        data: &[u8],
        msg: &Message,
    ) -> bool {
        let matches = sa
            .outstanding
            .as_ref()
            .is_some_and(|o| o.message_id == msg.header.message_id);
        if !matches {
            tracing::debug!(spis = %sa.spis, id = msg.header.message_id, "dropped a response to no outstanding request");
            return true;
        }
        let payloads = if msg.header.exchange == ExchangeType::IKE_SA_INIT {
            msg.payloads.clone()
        } else {
            match self.open(sa, data) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(spis = %sa.spis, "dropped a response: {e}");
                    return true;
                }
            }
        };
        sa.last_heard = now;
        let Some(o) = sa.outstanding.take() else {
            return true;
        };
        let res = match o.kind {
            RequestKind::Init => self.init_response(sa, now, data, msg, &payloads),
            RequestKind::Auth => self.auth_response(sa, now, wall, &payloads),
            RequestKind::Delete => {
                tracing::info!(spis = %sa.spis, "IKE SA deleted");
                self.events.push_back(Event::Deleted {
                    spis: sa.spis,
                    reason: DeleteReason::ByUs,
                });
                return false;
            }
            RequestKind::Liveness => Ok(true),
            RequestKind::Rekey(r) => self.rekey_response(sa, now, *r, &payloads),
        };
        match res {
            Ok(keep) => keep,
            Err(Reject::Ignore(why)) => {
                tracing::debug!(spis = %sa.spis, "dropped: {why}");
                true
            }
            Err(Reject::Fail(failure)) => {
                tracing::warn!(spis = %sa.spis, peer = %sa.remote, "IKE SA failed: {failure}");
                let established = sa.state == State::Established;
                self.events.push_back(if established {
                    Event::Deleted {
                        spis: sa.spis,
                        reason: DeleteReason::ByUs,
                    }
                } else {
                    Event::Failed {
                        spis: sa.spis,
                        peer: sa.remote,
                        failure,
                    }
                });
                established
            }
        }
    }

    fn open(&self, sa: &IkeSa, data: &[u8]) -> Result<Vec<Payload>, String> {
        let crypto = sa.crypto.as_ref().ok_or("no keys yet")?;
        sk::open(&crypto.inb, data)
            .map(|o| o.inner)
            .map_err(|e| e.to_string())
    }

    fn init_response(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        data: &[u8],
        msg: &Message,
        p: &[Payload],
    ) -> Result<bool, Reject> {
        if let Some(cookie) = find_notify(p, NotifyType::COOKIE) {
            if sa.init_retries >= MAX_INIT_RETRIES || cookie.is_empty() || cookie.len() > 64 {
                return Err(protocol("repeated or invalid COOKIE"));
            }
            sa.init_retries += 1;
            sa.cookie = Some(cookie.to_vec());
            return self.resend_init(sa, now);
        }
        if let Some(d) = find_notify(p, NotifyType::INVALID_KE_PAYLOAD) {
            let group = wanted_group(d);
            let conn = sa.conn.map(|c| &self.config.connections[c]);
            let ours =
                conn.is_some_and(|c| group.is_some_and(|g| c.proposals.iter().any(|p| p.dh == g)));
            match group {
                Some(g) if ours && sa.init_retries < MAX_INIT_RETRIES => {
                    tracing::debug!(spis = %sa.spis, "peer asks for DH group {g:?}");
                    sa.init_retries += 1;
                    sa.dh = Some(self.dh(g).map_err(Reject::Fail)?);
                    return self.resend_init(sa, now);
                }
                _ => {
                    return Err(Reject::Fail(Failure::PeerError(
                        NotifyType::INVALID_KE_PAYLOAD,
                    )));
                }
            }
        }
        if let Some(e) = first_error(p) {
            return Err(Reject::Fail(Failure::PeerError(e)));
        }
        if msg.header.spi_r == [0; 8] {
            return Err(protocol("IKE_SA_INIT response without SPIr"));
        }
        let props = sa_payload(p).ok_or_else(|| protocol("no SA payload"))?;
        let [chosen] = props else {
            return Err(protocol("the responder must choose one proposal"));
        };
        let proposal = IkeProposal::from_selected(chosen)
            .ok_or_else(|| protocol("the chosen proposal is not well formed or unsupported"))?;
        let conn = sa
            .conn
            .map(|c| &self.config.connections[c])
            .ok_or_else(|| Reject::Fail(Failure::Local("no connection".into())))?;
        if !conn.proposals.contains(&proposal) {
            return Err(protocol(format!(
                "the responder chose {proposal}, which we did not offer"
            )));
        }
        let (group, ke_data) = ke(p).ok_or_else(|| protocol("no KE payload"))?;
        let dh = sa
            .dh
            .take()
            .ok_or_else(|| Reject::Fail(Failure::Local("no DH key".into())))?;
        if group != proposal.dh.id() || dh.group() != proposal.dh {
            return Err(protocol("KE payload of another group than the chosen one"));
        }
        let nr = nonce(p).ok_or_else(|| protocol("no nonce"))?.to_vec();
        if find_notify(p, NotifyType::CHILDLESS_IKEV2_SUPPORTED).is_none() {
            return Err(protocol(
                "the responder does not support childless IKE SAs (RFC 6023, CHILDLESS_IKEV2_SUPPORTED)",
            ));
        }
        let g_ir = dh
            .shared(ke_data)
            .map_err(|e| protocol(format!("responder's KE payload: {e}")))?;
        sa.spis.r = msg.header.spi_r;
        sa.nr = nr;
        sa.peer_hashes = find_notify(p, NotifyType::SIGNATURE_HASH_ALGORITHMS)
            .and_then(|d| auth::parse_hash_algorithms(d).ok());
        sa.crypto = Some(derive(
            proposal, &sa.ni, &sa.nr, &g_ir, sa.spis, true, None,
        )?);
        // The octets as received are what the responder signed.
        sa.peer_init = data.to_vec();
        self.send_auth(sa, now)?;
        Ok(true)
    }

    fn resend_init(&mut self, sa: &mut IkeSa, now: Instant) -> Result<bool, Reject> {
        let data = self.init_request(sa).map_err(Reject::Fail)?;
        sa.own_init.clone_from(&data);
        self.send_request(sa, now, data, RequestKind::Init);
        Ok(true)
    }

    fn send_auth(&mut self, sa: &mut IkeSa, now: Instant) -> Result<(), Reject> {
        let conn = self.connection_of(sa).map_err(Reject::Fail)?;
        let octets = sa
            .signed_octets(true, &conn.local_id)
            .map_err(Reject::Fail)?;
        let crypto = sa.crypto().map_err(Reject::Fail)?;
        let mut inner = vec![id_to_payload(&conn.local_id, true)];
        let (method, auth_data) = local_auth(&conn, &octets, crypto, sa.peer_hashes.as_deref())?;
        if let LocalAuth::Cert(cred) = &conn.local_auth {
            // Our chain goes with every signature: the peer holds no certificates of ours.
            for c in &cred.chain {
                inner.push(Payload::Cert {
                    encoding: CERT_X509_SIGNATURE,
                    data: c.clone(),
                });
            }
        }
        if let RemoteAuth::Cert(store) = &conn.remote_auth {
            inner.push(Payload::CertReq {
                encoding: CERT_X509_SIGNATURE,
                data: store.certreq_data(),
            });
        }
        if let Some(r) = &conn.remote_id {
            inner.push(id_to_payload(r, false));
        }
        inner.push(Payload::Auth {
            method,
            data: auth_data,
        });
        inner.push(notify(NotifyType::INITIAL_CONTACT, Vec::new()));
        let data = self
            .seal(sa, ExchangeType::IKE_AUTH, false, 1, &inner)
            .map_err(Reject::Fail)?;
        sa.state = State::AuthSent;
        sa.next_request_id = 1;
        self.send_request(sa, now, data, RequestKind::Auth);
        Ok(())
    }

    fn auth_response(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        wall: SystemTime,
        p: &[Payload],
    ) -> Result<bool, Reject> {
        if let Some(e) = first_error(p) {
            // A Child SA error with an IKE SA that stands is not ours to see (we propose
            // none); any error here means no IKE SA.
            return Err(Reject::Fail(Failure::PeerError(e)));
        }
        let conn = self.connection_of(sa).map_err(Reject::Fail)?;
        let idr = id_payload(p, false)
            .ok_or_else(|| protocol("no IDr"))?
            .map_err(|e| protocol(format!("IDr: {e}")))?;
        if let Some(want) = &conn.remote_id
            && *want != idr
        {
            return Err(Reject::Fail(Failure::Authentication(format!(
                "responder is {idr}, not {want}"
            ))));
        }
        let octets = sa.signed_octets(false, &idr).map_err(Reject::Fail)?;
        verify_peer(
            &conn,
            sa.crypto().map_err(Reject::Fail)?,
            &idr,
            p,
            &octets,
            wall,
        )?;
        sa.peer_id = Some(idr);
        sa.conn_established(now);
        sa.next_request_id = 2;
        self.established(sa);
        Ok(true)
    }

    fn established(&mut self, sa: &mut IkeSa) {
        let Some(crypto) = &sa.crypto else {
            return;
        };
        sa.state = State::Established;
        sa.ippm_secret = Some(crypto.keys.ippm_secret());
        sa.next_rekey = self
            .config
            .limits
            .rekey_time
            .map(|d| sa.established_at.unwrap_or(sa.last_heard) + d);
        sa.dh = None;
        let connection = sa
            .conn
            .map(|c| self.config.connections[c].name.clone())
            .unwrap_or_default();
        let peer_id = sa
            .peer_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        tracing::info!(
            spis = %sa.spis, peer = %sa.remote, %peer_id, connection,
            proposal = %crypto.proposal, initiator = sa.initiator,
            "IKE SA established"
        );
        self.events.push_back(Event::Established {
            spis: sa.spis,
            connection,
            peer: sa.remote,
            peer_id,
            initiator: sa.initiator,
            proposal: crypto.proposal,
        });
    }

    fn rekey_response(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        mut r: RekeyRequest,
        p: &[Payload],
    ) -> Result<bool, Reject> {
        if let Some(d) = find_notify(p, NotifyType::INVALID_KE_PAYLOAD) {
            if let Some(g) = wanted_group(d)
                && r.retries < MAX_INIT_RETRIES
                && r.proposals.iter().any(|p| p.dh == g)
            {
                r.retries += 1;
                r.dh = self.dh(g).map_err(Reject::Fail)?;
                let data = self
                    .rekey_request(sa, &r.proposals, r.new_spi_i, &r.ni, &r.dh)
                    .map_err(Reject::Fail)?;
                self.send_request(sa, now, data, RequestKind::Rekey(Box::new(r)));
                return Ok(true);
            }
        }
        if let Some(e) = first_error(p) {
            // The old SA stands; try again later.
            tracing::warn!(spis = %sa.spis, "rekey refused by the peer: {e:?}");
            sa.next_rekey = Some(now + REKEY_RETRY);
            return Ok(true);
        }
        let props = sa_payload(p).ok_or_else(|| ignore("rekey response without SA"))?;
        let [chosen] = props else {
            return Err(ignore("rekey response must choose one proposal"));
        };
        let proposal = IkeProposal::from_selected(chosen)
            .filter(|c| r.proposals.contains(c))
            .ok_or_else(|| ignore("rekey response chose what we did not offer"))?;
        let spi_r: [u8; 8] = chosen
            .spi
            .as_slice()
            .try_into()
            .map_err(|_| ignore("rekey response SPI is not 8 octets"))?;
        let (group, ke_data) = ke(p).ok_or_else(|| ignore("rekey response without KE"))?;
        if group != proposal.dh.id() || r.dh.group() != proposal.dh {
            return Err(ignore("rekey KE of another group"));
        }
        let nr = nonce(p).ok_or_else(|| ignore("rekey response without nonce"))?;
        let g_ir =
            r.dh.shared(ke_data)
                .map_err(|e| ignore(format!("rekey KE: {e}")))?;
        let new_spis = Spis {
            i: r.new_spi_i,
            r: spi_r,
        };
        let old = sa.crypto().map_err(Reject::Fail)?;
        let crypto = derive(proposal, &r.ni, nr, &g_ir, new_spis, true, Some(&old.keys))?;
        let mut new = IkeSa::new(new_spis, true, sa.local, sa.remote, now);
        new.inherit(sa, crypto, r.ni.clone(), nr.to_vec(), now);
        self.rekeyed(sa, new, now);
        // We initiated the rekey: we delete the old SA (§2.8).
        sa.queued.clear();
        sa.queued.push_back(QueuedRequest::Delete);
        Ok(true)
    }

    fn rekeyed(&mut self, old: &mut IkeSa, mut new: IkeSa, now: Instant) {
        old.superseded = true;
        old.superseded_at = Some(now);
        self.retire(old, now);
        self.established(&mut new);
        tracing::info!(old = %old.spis, new = %new.spis, "IKE SA rekeyed");
        self.events.push_back(Event::Rekeyed {
            old: old.spis,
            new: new.spis,
        });
        let key = if new.initiator {
            new.spis.i
        } else {
            new.spis.r
        };
        self.sas.insert(key, new);
    }

    /// Returns false when the SA is to go.
    fn handle_request(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        wall: SystemTime,
        data: &[u8],
        msg: &Message,
    ) -> bool {
        let id = msg.header.message_id;
        if id != sa.peer_next_id {
            if let Some((last, resp)) = &sa.last_response
                && *last == id
            {
                // Our response was lost: send it again, unprocessed (§2.1). Only once the
                // message proves authentic, so nobody can make us send at will.
                if msg.header.exchange == ExchangeType::IKE_SA_INIT || self.open(sa, data).is_ok() {
                    self.transmits.push_back(Transmit {
                        local: sa.local,
                        remote: sa.remote,
                        data: resp.clone(),
                    });
                }
            } else {
                tracing::debug!(spis = %sa.spis, id, "dropped a request outside the window");
            }
            return true;
        }
        let p = match self.open(sa, data) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(spis = %sa.spis, "dropped a request: {e}");
                return true;
            }
        };
        sa.last_heard = now;
        let res = match (msg.header.exchange, sa.state) {
            (ExchangeType::IKE_AUTH, State::InitAnswered) => self.auth_request(sa, now, wall, &p),
            (ExchangeType::INFORMATIONAL, State::Established | State::Deleting) => {
                self.informational_request(sa, &p)
            }
            (ExchangeType::CREATE_CHILD_SA, State::Established) => {
                self.create_child_request(sa, now, &p)
            }
            (ExchangeType::CREATE_CHILD_SA, State::Deleting) => self
                .respond(
                    sa,
                    ExchangeType::CREATE_CHILD_SA,
                    vec![notify(NotifyType::TEMPORARY_FAILURE, Vec::new())],
                )
                .map(|()| true),
            (ex, st) => Err(ignore(format!("{ex:?} request in state {}", st.name()))),
        };
        match res {
            Ok(keep) => keep,
            Err(d) => {
                let gone = matches!(d, Reject::Fail(_)) && sa.state != State::Established;
                let remote = sa.remote;
                self.log_drop(remote, Some(&*sa), d);
                !gone
            }
        }
    }

    /// Sends a response to the peer's current request and caches it for retransmissions.
    fn respond(
        &mut self,
        sa: &mut IkeSa,
        exchange: ExchangeType,
        inner: Vec<Payload>,
    ) -> Result<(), Reject> {
        let id = sa.peer_next_id;
        let data = self
            .seal(sa, exchange, true, id, &inner)
            .map_err(Reject::Fail)?;
        sa.last_response = Some((id, data.clone()));
        sa.peer_next_id = id.wrapping_add(1);
        self.transmits.push_back(Transmit {
            local: sa.local,
            remote: sa.remote,
            data,
        });
        Ok(())
    }

    fn auth_request(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        wall: SystemTime,
        p: &[Payload],
    ) -> Result<bool, Reject> {
        let remote = sa.remote;
        let fail = |this: &mut Self, sa: &mut IkeSa, failure: Failure| -> Result<bool, Reject> {
            tracing::warn!(%remote, spis = %sa.spis, "IKE_AUTH refused: {failure}");
            let n = notify(NotifyType::AUTHENTICATION_FAILED, Vec::new());
            this.respond(sa, ExchangeType::IKE_AUTH, vec![n])?;
            this.events.push_back(Event::Failed {
                spis: sa.spis,
                peer: remote,
                failure,
            });
            Ok(false)
        };
        let idi = match id_payload(p, true) {
            Some(Ok(id)) => id,
            Some(Err(e)) => return fail(self, sa, Failure::Protocol(format!("IDi: {e}"))),
            None => return fail(self, sa, Failure::Protocol("no IDi".into())),
        };
        let wanted_idr = match id_payload(p, false) {
            Some(Ok(id)) => Some(id),
            Some(Err(e)) => return fail(self, sa, Failure::Protocol(format!("IDr: {e}"))),
            None => None,
        };
        let Some(idx) = self.config.connections.iter().position(|c| {
            let remote_ok = match (&c.remote_id, &c.remote_auth) {
                (Some(r), _) => *r == idi,
                (None, RemoteAuth::Cert(_)) => true,
                (None, RemoteAuth::Psk(_)) => false,
            };
            remote_ok && wanted_idr.as_ref().is_none_or(|w| *w == c.local_id)
        }) else {
            return fail(self, sa, Failure::NoConnection(idi.to_string()));
        };
        let conn = self.config.connections[idx].clone();
        let proof = (|| {
            let crypto = sa.crypto().map_err(Reject::Fail)?;
            let theirs = sa.signed_octets(true, &idi).map_err(Reject::Fail)?;
            let ours = sa
                .signed_octets(false, &conn.local_id)
                .map_err(Reject::Fail)?;
            verify_peer(&conn, crypto, &idi, p, &theirs, wall)?;
            local_auth(&conn, &ours, crypto, sa.peer_hashes.as_deref())
        })();
        let (method, auth_data) = match proof {
            Ok(a) => a,
            Err(Reject::Fail(f)) => return fail(self, sa, f),
            Err(d) => return fail(self, sa, Failure::Protocol(format!("{d:?}"))),
        };
        let mut inner = vec![id_to_payload(&conn.local_id, false)];
        if let LocalAuth::Cert(cred) = &conn.local_auth {
            for c in &cred.chain {
                inner.push(Payload::Cert {
                    encoding: CERT_X509_SIGNATURE,
                    data: c.clone(),
                });
            }
        }
        inner.push(Payload::Auth {
            method,
            data: auth_data,
        });
        // RFC 6023: a Child SA is not set up; the IKE SA stands (RFC 7296 §1.2).
        if sa_payload(p).is_some() {
            tracing::info!(%remote, "refusing the Child SA proposed in IKE_AUTH (childless)");
            inner.push(notify(NotifyType::NO_PROPOSAL_CHOSEN, Vec::new()));
        }
        self.respond(sa, ExchangeType::IKE_AUTH, inner)?;
        self.half_open.remove(&(sa.remote, sa.spis.i));
        sa.conn = Some(idx);
        sa.peer_id = Some(idi);
        sa.conn_established(now);
        sa.next_request_id = 0;
        self.established(sa);
        Ok(true)
    }

    fn informational_request(&mut self, sa: &mut IkeSa, p: &[Payload]) -> Result<bool, Reject> {
        let delete_ike = p
            .iter()
            .any(|x| matches!(x, Payload::Delete { protocol, .. } if *protocol == ProtocolId::IKE));
        if delete_ike {
            self.respond(sa, ExchangeType::INFORMATIONAL, Vec::new())?;
            tracing::info!(spis = %sa.spis, peer = %sa.remote, "IKE SA deleted by the peer");
            self.events.push_back(Event::Deleted {
                spis: sa.spis,
                reason: DeleteReason::ByPeer,
            });
            return Ok(false);
        }
        // Deletes of Child SAs we never had get an empty answer; so do liveness checks and
        // status notifications.
        for x in p {
            if let Payload::Notify { ty, .. } = x
                && ty.is_error()
            {
                tracing::warn!(spis = %sa.spis, "peer reports {ty:?}");
            }
        }
        self.respond(sa, ExchangeType::INFORMATIONAL, Vec::new())?;
        Ok(true)
    }

    fn create_child_request(
        &mut self,
        sa: &mut IkeSa,
        now: Instant,
        p: &[Payload],
    ) -> Result<bool, Reject> {
        let Some(props) = sa_payload_ike(p) else {
            // A new Child SA, or a Child SA rekey: there are none here.
            let n = if find_notify(p, NotifyType::REKEY_SA).is_some() {
                NotifyType::CHILD_SA_NOT_FOUND
            } else {
                NotifyType::NO_ADDITIONAL_SAS
            };
            tracing::info!(spis = %sa.spis, "refusing a Child SA (childless IKE SA)");
            self.respond(
                sa,
                ExchangeType::CREATE_CHILD_SA,
                vec![notify(n, Vec::new())],
            )?;
            return Ok(true);
        };
        if sa.superseded {
            self.respond(
                sa,
                ExchangeType::CREATE_CHILD_SA,
                vec![notify(NotifyType::TEMPORARY_FAILURE, Vec::new())],
            )?;
            return Ok(true);
        }
        let (group, ke_data) = ke(p).ok_or_else(|| ignore("rekey without KE"))?;
        let ni = nonce(p)
            .ok_or_else(|| ignore("rekey without nonce"))?
            .to_vec();
        let pool = self.pool(sa);
        let (num, proposal) = match select(&pool, props, Some(group)) {
            Selection::Chosen { num, proposal } => (num, proposal),
            Selection::WrongGroup(g) => {
                let n = notify(
                    NotifyType::INVALID_KE_PAYLOAD,
                    g.id().to_be_bytes().to_vec(),
                );
                self.respond(sa, ExchangeType::CREATE_CHILD_SA, vec![n])?;
                return Ok(true);
            }
            Selection::None => {
                let n = notify(NotifyType::NO_PROPOSAL_CHOSEN, Vec::new());
                self.respond(sa, ExchangeType::CREATE_CHILD_SA, vec![n])?;
                return Ok(true);
            }
        };
        let chosen = props
            .iter()
            .find(|x| x.num == num)
            .ok_or_else(|| ignore("chosen proposal vanished"))?;
        let spi_i: [u8; 8] = chosen
            .spi
            .as_slice()
            .try_into()
            .map_err(|_| ignore("rekey SPI is not 8 octets"))?;
        let ResponderPart {
            dh,
            g_ir,
            spi_r,
            nr,
        } = self.responder_contribution(proposal.dh, ke_data)?;
        let new_spis = Spis { i: spi_i, r: spi_r };
        let old = sa.crypto().map_err(Reject::Fail)?;
        let crypto = derive(proposal, &ni, &nr, &g_ir, new_spis, false, Some(&old.keys))?;
        let inner = vec![
            Payload::Sa(vec![proposal.to_wire(num, &spi_r)]),
            Payload::Nonce(nr.clone()),
            Payload::Ke {
                group: proposal.dh.id(),
                data: dh.public(),
            },
        ];
        self.respond(sa, ExchangeType::CREATE_CHILD_SA, inner)?;
        let mut new = IkeSa::new(new_spis, false, sa.local, sa.remote, now);
        new.inherit(sa, crypto, ni, nr, now);
        self.rekeyed(sa, new, now);
        // The peer deletes the old SA; a rekey of ours in flight is moot (§2.8.2 handles a
        // collision by the nonces; we let the peer's rekey win and withdraw ours).
        sa.queued.retain(|q| *q != QueuedRequest::Rekey);
        Ok(true)
    }
}

/// The group an INVALID_KE_PAYLOAD notification asks for, if it is one we know.
fn wanted_group(data: &[u8]) -> Option<DhGroup> {
    let id: [u8; 2] = data.try_into().ok()?;
    DhGroup::from_id(u16::from_be_bytes(id))
}

fn sa_payload_ike(p: &[Payload]) -> Option<&[crate::message::Proposal]> {
    sa_payload(p).filter(|props| props.iter().any(|x| x.protocol == ProtocolId::IKE))
}

fn numbered(proposals: &[IkeProposal], spi: &[u8]) -> Vec<crate::message::Proposal> {
    proposals
        .iter()
        .zip(1u8..)
        .map(|(p, n)| p.to_wire(n, spi))
        .collect()
}

fn retransmit_delay(l: &crate::config::Limits, sent: u32) -> Duration {
    let f = l
        .retransmit_base
        .powi(i32::try_from(sent.saturating_sub(1)).unwrap_or(i32::MAX));
    l.retransmit_timeout.mul_f64(f.min(1e6))
}

fn derive(
    proposal: IkeProposal,
    ni: &[u8],
    nr: &[u8],
    g_ir: &[u8],
    spis: Spis,
    initiator: bool,
    old: Option<&IkeKeys>,
) -> Result<Crypto, Reject> {
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
    .map_err(|e| Reject::Fail(Failure::Local(e.to_string())))?;
    let (out, inb) = sk::directional(&keys, proposal.suite(), initiator)
        .map_err(|e| Reject::Fail(Failure::Local(e.to_string())))?;
    Ok(Crypto {
        proposal,
        keys,
        out,
        inb,
    })
}

fn local_auth(
    conn: &Connection,
    octets: &[u8],
    crypto: &Crypto,
    peer_hashes: Option<&[u16]>,
) -> Result<(AuthMethod, Vec<u8>), Reject> {
    match &conn.local_auth {
        LocalAuth::Psk(psk) => Ok((
            AuthMethod::PSK,
            auth::psk_auth(crypto.proposal.prf, psk.octets(), octets).to_vec(),
        )),
        LocalAuth::Cert(cred) => cred
            .sign(octets, peer_hashes)
            .map_err(|e| Reject::Fail(Failure::Local(format!("signing AUTH: {e}")))),
    }
}

fn verify_peer(
    conn: &Connection,
    crypto: &Crypto,
    id: &Identity,
    p: &[Payload],
    octets: &[u8],
    wall: SystemTime,
) -> Result<(), Reject> {
    let (method, data) = auth_payload(p).ok_or_else(|| protocol("no AUTH payload"))?;
    let authn = |s: String| Reject::Fail(Failure::Authentication(s));
    match &conn.remote_auth {
        RemoteAuth::Psk(psk) => {
            if method != AuthMethod::PSK {
                return Err(authn(format!(
                    "{method:?} where a pre-shared key is configured"
                )));
            }
            if !auth::psk_verify(crypto.proposal.prf, psk.octets(), octets, data) {
                return Err(authn("pre-shared key AUTH does not verify".into()));
            }
            Ok(())
        }
        RemoteAuth::Cert(store) => {
            let certs = certs(p);
            let (ee, rest) = certs
                .split_first()
                .ok_or_else(|| authn("no certificate".into()))?;
            store
                .verify_peer(ee, rest, id, method, data, octets, wall)
                .map_err(|e| authn(e.to_string()))
        }
    }
}

impl IkeSa {
    fn crypto(&self) -> Result<&Crypto, Failure> {
        self.crypto
            .as_ref()
            .ok_or_else(|| Failure::Local("no keys".into()))
    }

    /// RFC 7296 §2.15: the octets the initiator's (`by_initiator`) or the responder's AUTH
    /// covers: its own IKE_SA_INIT message, the other side's nonce, prf(SK_p, ID').
    fn signed_octets(&self, by_initiator: bool, id: &Identity) -> Result<Vec<u8>, Failure> {
        let c = self.crypto()?;
        let (message, nonce, sk_p) = match (by_initiator, self.initiator) {
            (true, true) => (&self.own_init, &self.nr, &c.keys.sk_pi),
            (true, false) => (&self.peer_init, &self.nr, &c.keys.sk_pi),
            (false, true) => (&self.peer_init, &self.ni, &c.keys.sk_pr),
            (false, false) => (&self.own_init, &self.ni, &c.keys.sk_pr),
        };
        Ok(auth::signed_octets(
            c.proposal.prf,
            message,
            nonce,
            sk_p,
            id,
        ))
    }

    fn new(
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
            state: State::InitSent,
            conn: None,
            crypto: None,
            ni: Vec::new(),
            nr: Vec::new(),
            own_init: Vec::new(),
            peer_init: Vec::new(),
            dh: None,
            cookie: None,
            init_retries: 0,
            peer_hashes: None,
            peer_id: None,
            ippm_secret: None,
            next_request_id: 0,
            outstanding: None,
            queued: VecDeque::new(),
            peer_next_id: 0,
            last_response: None,
            created: now,
            established_at: None,
            next_rekey: None,
            last_heard: now,
            superseded: false,
            superseded_at: None,
        }
    }

    fn header(&self, exchange: ExchangeType, response: bool, message_id: u32) -> Header {
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

    fn conn_established(&mut self, now: Instant) {
        self.established_at = Some(now);
        self.last_heard = now;
    }

    /// A new SA from a rekey of `old`: same peer, connection and identity.
    fn inherit(&mut self, old: &Self, crypto: Crypto, ni: Vec<u8>, nr: Vec<u8>, now: Instant) {
        self.conn = old.conn;
        self.peer_id = old.peer_id.clone();
        self.peer_hashes = old.peer_hashes.clone();
        self.crypto = Some(crypto);
        self.ni = ni;
        self.nr = nr;
        self.conn_established(now);
    }
}
