//! What an [`Engine`](crate::engine::Engine) is told: the connections it may set up or
//! accept, their identities and credentials, the proposals, and its timers and limits.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::auth::{Identity, LocalCredential, TrustStore};
use crate::proposal::IkeProposal;

/// A pre-shared key. Zeroized on drop, never printed.
#[derive(Clone)]
pub struct Psk(Zeroizing<Vec<u8>>);

impl Psk {
    /// Wraps the key's octets.
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Self(Zeroizing::new(key.into()))
    }

    pub(crate) fn octets(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Psk([redacted])")
    }
}

/// How we prove who we are.
#[derive(Debug, Clone)]
pub enum LocalAuth {
    /// A pre-shared key (RFC 7296 §2.15).
    Psk(Psk),
    /// Our certificate chain and private key.
    Cert(Arc<LocalCredential>),
}

/// How the peer must prove who it is.
#[derive(Debug, Clone)]
pub enum RemoteAuth {
    /// A pre-shared key (RFC 7296 §2.15).
    Psk(Psk),
    /// A certificate that chains to one of these CAs.
    Cert(Arc<TrustStore>),
}

/// One connection: a peer we set up IKE SAs with (as initiator, when `remote_addr` is set)
/// or accept them from (as responder, when the peer's identity matches `remote_id`).
#[derive(Debug, Clone)]
pub struct Connection {
    /// Its name (`ippm ike up NAME`, logs).
    pub name: String,
    /// Our identity (IDi or IDr).
    pub local_id: Identity,
    /// The identity the peer must prove; None accepts any identity its certificate proves
    /// (certificate authentication only).
    pub remote_id: Option<Identity>,
    /// How we authenticate.
    pub local_auth: LocalAuth,
    /// How the peer must authenticate.
    pub remote_auth: RemoteAuth,
    /// The peer's address, to initiate to (port 500 unless stated).
    pub remote_addr: Option<SocketAddr>,
    /// Proposals offered as initiator (in order of preference).
    pub proposals: Vec<IkeProposal>,
}

/// Timers and limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// First retransmission timeout (RFC 7296 §2.1).
    pub retransmit_timeout: Duration,
    /// Each further timeout is this factor longer.
    pub retransmit_base: f64,
    /// Transmissions of one request before the peer is declared dead.
    pub retransmit_tries: u32,
    /// Half-open IKE SAs (IKE_SA_INIT answered, IKE_AUTH not yet) above which new
    /// IKE_SA_INIT requests must carry a COOKIE (RFC 7296 §2.6).
    pub cookie_threshold: usize,
    /// Hard bound on half-open IKE SAs. When the table is full, a request from a source
    /// holding fewer half-open SAs than the source holding the most takes the place of that
    /// source's oldest; other requests are dropped.
    pub half_open_max: usize,
    /// Bound on the half-open IKE SAs of one source (an IPv4 address, or an IPv6 /64, which
    /// one host usually has whole): a flood that answers COOKIEs from few addresses holds at
    /// most this many each, and cannot fill the table for everyone else.
    pub half_open_per_source_max: usize,
    /// Bound on established IKE SAs.
    pub established_max: usize,
    /// A half-open SA that does not complete IKE_AUTH in this time is dropped.
    pub half_open_timeout: Duration,
    /// Rekey an IKE SA this long after it was set up, less a random part of
    /// `rekey_rand_time` (None: never on our own).
    pub rekey_time: Option<Duration>,
    /// The rekey comes up to this much before `rekey_time`, uniformly at random, so that two
    /// peers with the same lifetime do not both rekey at once (RFC 7296 §2.8.1; strongSwan's
    /// `rand_time`). None: a tenth of `rekey_time`.
    pub rekey_rand_time: Option<Duration>,
    /// Send a liveness check (empty INFORMATIONAL) after this long without hearing from the
    /// peer (None: never).
    pub dpd_delay: Option<Duration>,
    /// How long the RFC 7717 secret of a rekeyed IKE SA stays available for control sessions
    /// that named the old SPIs.
    pub retired_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            retransmit_timeout: Duration::from_secs(2),
            retransmit_base: 1.8,
            retransmit_tries: 5,
            cookie_threshold: 32,
            half_open_max: 4096,
            half_open_per_source_max: 64,
            established_max: 16384,
            half_open_timeout: Duration::from_secs(30),
            rekey_time: Some(Duration::from_secs(4 * 3600)),
            rekey_rand_time: None,
            dpd_delay: Some(Duration::from_secs(60)),
            retired_grace: Duration::from_secs(120),
        }
    }
}

/// Everything an engine is told.
#[derive(Debug, Clone)]
pub struct Config {
    /// The connections.
    pub connections: Vec<Connection>,
    /// Proposals accepted as responder (in order of preference).
    pub proposals: Vec<IkeProposal>,
    /// Timers and limits.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            connections: Vec::new(),
            proposals: IkeProposal::defaults(),
            limits: Limits::default(),
        }
    }
}
