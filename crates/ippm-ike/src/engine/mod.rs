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
//!
//! One module per job: `init` (IKE_SA_INIT), `cookies` (the half-open table and COOKIEs,
//! §2.6), `ike_auth` (IKE_AUTH), `rekey` (CREATE_CHILD_SA), `informational`, `timers`
//! (retransmission, expiry, rekey and liveness timers), `exchange` (routing a message to
//! its SA and state), `sa` (an SA and its states), `authenticate` (AUTH payloads).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Instant, SystemTime};

use zeroize::Zeroizing;

use crate::config::Config;
use crate::dh::{DhGroup, DhPrivate};
use crate::message::Message;
use crate::proposal::IkeProposal;

mod api;
mod authenticate;
mod cookies;
mod exchange;
mod ike_auth;
mod informational;
mod init;
mod payloads;
mod rekey;
mod sa;
mod timers;

pub use api::{
    DeleteReason, EngineError, Event, Failure, OsRandom, Random, RandomError, SaInfo, Spis,
    Transmit,
};

use sa::{IkeSa, QueuedRequest};

/// Octets of our nonces.
const NONCE_LEN: usize = 32;

/// The RFC 7717 secret of a rekeyed-away SA, kept a while for sessions that named it.
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
    /// By the SPI we chose.
    sas: HashMap<[u8; 8], IkeSa>,
    /// Responder half-open SAs and the COOKIE secret.
    half_open: cookies::HalfOpen,
    retired: Vec<Retired>,
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

impl Engine {
    /// An engine for `config`, with `rng` as its randomness.
    pub fn new(config: Config, mut rng: Box<dyn Random>) -> Result<Self, RandomError> {
        let half_open = cookies::HalfOpen::new(rng.as_mut())?;
        Ok(Self {
            config,
            rng,
            sas: HashMap::new(),
            half_open,
            retired: Vec::new(),
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
            .map(|s| {
                let est = s.state.established();
                SaInfo {
                    spis: s.link.spis,
                    connection: s
                        .state
                        .conn()
                        .map(|c| self.config.connections[c].name.clone()),
                    peer: s.link.remote,
                    local: s.link.local,
                    initiator: s.link.initiator,
                    state: s.state.name(),
                    proposal: s.state.crypto().map(|c| c.proposal),
                    peer_id: est.map(|e| e.peer_id.to_string()),
                    age: now.saturating_duration_since(est.map_or(s.link.created, |e| e.at)),
                }
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
            if s.link.spis == spis
                && ok(s.link.remote.ip())
                && let Some(e) = s.state.up()
            {
                return Some(e.ippm_secret.clone());
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
            .filter(|s| s.link.remote.ip() == peer)
            .filter_map(|s| Some((s.link.spis, s.state.up()?)))
            .filter(|(_, e)| e.superseded.is_none() && e.announced)
            .max_by_key(|(_, e)| e.at)
            .map(|(spis, e)| (spis, e.ippm_secret.clone()))
    }

    /// Every IKE SA with `peer` whose secret may still key a test packet: the established
    /// ones, newest first, then those rekeyed or deleted within the retired grace period,
    /// most recently retired first (a STAMP reflector tries them in this order).
    pub fn ippm_secrets_with_peer(
        &self,
        peer: IpAddr,
        now: Instant,
    ) -> Vec<(Spis, Zeroizing<Vec<u8>>)> {
        let mut live: Vec<_> = self
            .sas
            .values()
            .filter(|s| s.link.remote.ip() == peer)
            .filter_map(|s| Some((s.link.spis, s.state.up()?)))
            .filter(|(_, e)| e.announced)
            .map(|(spis, e)| (e.at, spis, e.ippm_secret.clone()))
            .collect();
        live.sort_by_key(|(at, _, _)| std::cmp::Reverse(*at));
        let retired = self
            .retired
            .iter()
            .rev()
            .filter(|r| r.peer == peer && r.until > now)
            .map(|r| (r.spis, r.secret.clone()));
        live.into_iter()
            .map(|(_, spis, secret)| (spis, secret))
            .chain(retired)
            .collect()
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
                s.link.remote.ip().to_string() == peer_or_name
                    || s.state
                        .conn()
                        .is_some_and(|c| self.config.connections[c].name == peer_or_name)
            })
            .map(|s| s.link.spis)
            .collect()
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
        self.route(now, wall, local, remote, data, &msg);
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
        if sa.state.up().is_none() {
            self.sas.insert(key, sa);
            return Err(EngineError::NotEstablished(spis));
        }
        if !sa.link.queued.contains(&req) {
            sa.link.queued.push_back(req);
        }
        self.pump(&mut sa, now);
        self.put_back(sa);
        Ok(())
    }

    /// The proposals acceptable when rekeying an SA of connection `conn`: the connection's,
    /// then the responder list.
    fn pool(&self, conn: usize) -> Vec<IkeProposal> {
        let mut v: Vec<IkeProposal> = self.config.connections[conn].proposals.clone();
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
            .find(|k| self.sas.get(k).is_some_and(|s| s.link.spis == spis))
    }

    fn put_back(&mut self, sa: IkeSa) {
        self.sas.insert(sa.link.key(), sa);
    }

    /// Removes what indexes an SA that is gone.
    fn forget(&mut self, remote: SocketAddr, spis: Spis) {
        self.half_open.remove(remote, spis);
    }

    fn retire(&mut self, spis: Spis, peer: IpAddr, secret: &Zeroizing<Vec<u8>>, now: Instant) {
        self.retired.push(Retired {
            spis,
            peer,
            secret: secret.clone(),
            until: now + self.config.limits.retired_grace,
        });
    }

    fn dh(&mut self, group: DhGroup) -> Result<DhPrivate, Failure> {
        let mut random = Zeroizing::new(vec![0u8; group.secret_len()]);
        let mut last = None;
        // A draw can be out of range for the group (a P-curve scalar ≥ n): draw again.
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
            "Diffie-Hellman key generation failed: {}",
            last.map_or_else(String::new, |e| e.to_string())
        )))
    }

    /// `n` random octets.
    fn random_vec(&mut self, n: usize) -> Result<Vec<u8>, RandomError> {
        let mut v = vec![0u8; n];
        self.rng.fill(&mut v)?;
        Ok(v)
    }

    fn random_spi(&mut self) -> Result<[u8; 8], RandomError> {
        let mut spi = [0u8; 8];
        self.rng.fill(&mut spi)?;
        Ok(spi)
    }
}
