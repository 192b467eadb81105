//! The responder's half-open IKE SAs (IKE_SA_INIT answered, IKE_AUTH not yet) and the
//! COOKIEs that guard them (RFC 7296 §2.6): which IKE_SA_INIT requests are admitted.
//!
//! The policy, in order:
//! 1. Once `cookie_threshold` SAs are half-open, a request must echo a COOKIE, which costs
//!    us no state and proves the source address answers (so the per-source counts below
//!    count real sources, not spoofed ones).
//! 2. A source (IPv4 address, IPv6 /64) holds at most `half_open_per_source_max` half-open
//!    SAs; beyond that its requests are dropped.
//! 3. When the table (`half_open_max`) is full, a request from a source holding fewer
//!    half-open SAs than the source holding the most evicts that source's oldest one.
//!    A flood from a few addresses, echoing cookies, therefore keeps at most its share,
//!    and a legitimate initiator from elsewhere still gets in.
//!
//! Drops are counted and logged once per [`DROP_LOG_INTERVAL`], not once per packet.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::codepoints::NotifyType;
use crate::message::{Message, Payload};

use super::Engine;
use super::api::{Random, RandomError, Spis, Transmit};
use super::payloads::{find_notify, nonce, notify};
use super::sa::{Reject, State, ignore};

/// How long a COOKIE secret lives at least (§2.6: change it now and then, never while one
/// is still fresh).
const COOKIE_SECRET_LIFE: Duration = Duration::from_secs(60);
/// Drops of IKE_SA_INIT requests are logged as counts over this long.
pub(super) const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Who is counted as one source: an IPv4 address, or the /64 of an IPv6 address (a host
/// commonly has a whole /64 to pick addresses from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Source {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl Source {
    pub(super) fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Self::V4(a.octets()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.octets()),
                None => {
                    let o = a.octets();
                    let mut p = [0u8; 8];
                    p.copy_from_slice(&o[..8]);
                    Self::V6(p)
                }
            },
        }
    }
}

/// Counts of dropped IKE_SA_INIT requests since `since`.
#[derive(Debug, Default)]
struct Drops {
    since: Option<Instant>,
    per_source: u64,
    table_full: u64,
    sa_limit: u64,
    evicted: u64,
}

#[derive(Clone, Copy)]
enum DropKind {
    PerSource,
    TableFull,
    SaLimit,
    Evicted,
}

impl Drops {
    fn note(&mut self, now: Instant, what: DropKind) {
        if self.since.is_none() {
            // The first of a series is told at once; the rest as counts.
            let why = match what {
                DropKind::PerSource => {
                    "an IKE_SA_INIT dropped: its source is at its half-open limit"
                }
                DropKind::TableFull => "an IKE_SA_INIT dropped: the half-open table is full",
                DropKind::SaLimit => "an IKE_SA_INIT dropped: the IKE SA limit is reached",
                DropKind::Evicted => "a half-open IKE SA evicted for a source holding fewer",
            };
            tracing::warn!(
                "{why} (further ones are counted over {}s)",
                DROP_LOG_INTERVAL.as_secs()
            );
            self.since = Some(now);
        }
        match what {
            DropKind::PerSource => self.per_source += 1,
            DropKind::TableFull => self.table_full += 1,
            DropKind::SaLimit => self.sa_limit += 1,
            DropKind::Evicted => self.evicted += 1,
        }
        self.flush(now);
    }

    /// Logs and resets the counts once the interval is over.
    fn flush(&mut self, now: Instant) {
        if self
            .since
            .is_some_and(|t| now.saturating_duration_since(t) >= DROP_LOG_INTERVAL)
        {
            tracing::warn!(
                per_source_limit = self.per_source,
                table_full = self.table_full,
                sa_limit = self.sa_limit,
                evicted = self.evicted,
                "IKE_SA_INIT requests dropped and half-open IKE SAs evicted in the last {}s",
                DROP_LOG_INTERVAL.as_secs()
            );
            *self = Self::default();
        }
    }
}

/// The half-open table and the COOKIE secret.
pub(super) struct HalfOpen {
    /// By (peer, SPIi), to recognise retransmitted IKE_SA_INITs: our SPIr.
    index: HashMap<(SocketAddr, [u8; 8]), [u8; 8]>,
    /// Each source's half-open SAs (SPIr), oldest first. No empty entries, so this holds
    /// at most as many entries as `index`.
    by_source: HashMap<Source, VecDeque<[u8; 8]>>,
    secret: Zeroizing<[u8; 32]>,
    version: u32,
    rotated: Option<Instant>,
    drops: Drops,
}

impl HalfOpen {
    pub(super) fn new(rng: &mut dyn Random) -> Result<Self, RandomError> {
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.fill(secret.as_mut())?;
        Ok(Self {
            index: HashMap::new(),
            by_source: HashMap::new(),
            secret,
            version: 0,
            rotated: None,
            drops: Drops::default(),
        })
    }

    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// Half-open SAs of `ip`'s source.
    pub(super) fn of_source(&self, ip: IpAddr) -> usize {
        self.by_source.get(&Source::of(ip)).map_or(0, VecDeque::len)
    }

    pub(super) fn insert(&mut self, remote: SocketAddr, spis: Spis) {
        self.index.insert((remote, spis.i), spis.r);
        self.by_source
            .entry(Source::of(remote.ip()))
            .or_default()
            .push_back(spis.r);
    }

    /// The SA is no longer half-open (established, failed, expired); a no-op for others.
    pub(super) fn remove(&mut self, remote: SocketAddr, spis: Spis) {
        if self.index.get(&(remote, spis.i)) != Some(&spis.r) {
            return;
        }
        self.index.remove(&(remote, spis.i));
        let src = Source::of(remote.ip());
        if let Some(q) = self.by_source.get_mut(&src) {
            q.retain(|r| *r != spis.r);
            if q.is_empty() {
                self.by_source.remove(&src);
            }
        }
    }

    /// The table is full and `ip`'s source wants in: the oldest half-open SA of the source
    /// holding the most, if that source holds more than `ip`'s would after admission
    /// (otherwise the newcomer is the one over its share).
    fn victim_for(&self, ip: IpAddr) -> Option<[u8; 8]> {
        let mine = self.of_source(ip);
        let (_, q) = self.by_source.iter().max_by_key(|(_, q)| q.len())?;
        if q.len() > mine + 1 {
            q.front().copied()
        } else {
            None
        }
    }

    pub(super) fn flush_drops(&mut self, now: Instant) {
        self.drops.flush(now);
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
        h.update(self.secret.as_ref());
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
        version == self.version && bool::from(self.cookie_for(version, ni, ip, spi_i).ct_eq(cookie))
    }
}

impl Engine {
    /// Whether a new IKE_SA_INIT request is to be answered with a new SA. Answers
    /// retransmissions and COOKIE demands itself (returning false).
    pub(super) fn admit_init(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        msg: &Message,
    ) -> Result<bool, Reject> {
        let h = msg.header;
        // A retransmitted request gets the same answer.
        if let Some(k) = self.half_open.index.get(&(remote, h.spi_i))
            && let Some(sa) = self.sas.get(k)
        {
            let same = matches!(&sa.state, State::InitAnswered(hs) if hs.peer_init == data);
            if same {
                if let Some((_, resp)) = &sa.link.last_response {
                    self.transmits.push_back(Transmit {
                        local,
                        remote,
                        data: resp.clone(),
                    });
                }
                return Ok(false);
            }
            return Err(ignore("a second IKE_SA_INIT for a half-open SA"));
        }
        let p = &msg.payloads;
        let ni = nonce(p).ok_or_else(|| ignore("IKE_SA_INIT without a nonce"))?;
        let limits = &self.config.limits;
        // 1. COOKIEs first: answering one is stateless, so a full table still answers them.
        if self.half_open.len() >= limits.cookie_threshold {
            let ho = &mut self.half_open;
            if ho
                .rotated
                .is_none_or(|t| now.duration_since(t) > COOKIE_SECRET_LIFE)
            {
                self.rng.fill(ho.secret.as_mut())?;
                ho.version = ho.version.wrapping_add(1);
                ho.rotated = Some(now);
            }
            let first_is_cookie =
                matches!(p.first(), Some(Payload::Notify { ty, .. }) if *ty == NotifyType::COOKIE);
            let presented = find_notify(p, NotifyType::COOKIE).filter(|_| first_is_cookie);
            if !presented.is_some_and(|c| ho.cookie_ok(c, ni, remote.ip(), &h.spi_i)) {
                let cookie = ho.cookie_for(ho.version, ni, remote.ip(), &h.spi_i);
                self.answer_unprotected(local, remote, h, notify(NotifyType::COOKIE, cookie));
                return Ok(false);
            }
        }
        // 2. The source's share.
        if self.half_open.of_source(remote.ip()) >= limits.half_open_per_source_max {
            self.half_open.drops.note(now, DropKind::PerSource);
            return Err(ignore("per-source half-open IKE SA limit reached"));
        }
        // 3. A full table makes room from the source holding the most, if that is not us.
        let victim = if self.half_open.len() >= limits.half_open_max {
            let Some(v) = self.half_open.victim_for(remote.ip()) else {
                self.half_open.drops.note(now, DropKind::TableFull);
                return Err(ignore("half-open IKE SA limit reached"));
            };
            Some(v)
        } else {
            None
        };
        let after = self.sas.len() - usize::from(victim.is_some());
        if after >= limits.established_max + limits.half_open_max {
            self.half_open.drops.note(now, DropKind::SaLimit);
            return Err(ignore("IKE SA limit reached"));
        }
        if let Some(sa) = victim.and_then(|v| self.sas.remove(&v)) {
            tracing::debug!(spis = %sa.link.spis, peer = %sa.link.remote, "evicted a half-open IKE SA");
            self.half_open.remove(sa.link.remote, sa.link.spis);
            self.half_open.drops.note(now, DropKind::Evicted);
        }
        Ok(true)
    }
}
