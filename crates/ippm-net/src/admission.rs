//! Who may hold a control connection or a test session now, for OWAMP and TWAMP alike.
//!
//! One [`Admission`] serves the whole daemon, so its limits hold over every listener (the
//! default pair `0.0.0.0` + `[::]` must not double them) and over both protocols where
//! they share a resource (a test session is a socket, whichever protocol asked for it):
//! - control connections: at most `max_connections` per protocol, `max_connections_per_source`
//!   per protocol from one source;
//! - test sessions: at most `max_sessions_total` over both protocols, and
//!   `max_sessions_per_source` from one source.
//!
//! A source is an IPv4 address or an IPv6 /64: one host owns a whole /64, so counting IPv6
//! addresses one by one would give an attacker 2^64 sources.
//!
//! When the connection table is full, the oldest connection that has not finished its
//! set-up (no Start-Sessions yet) makes room, taken from the source that holds the most
//! connections: a squatter or a slowloris client gives way to a newcomer, while a client
//! that set up its sessions keeps its place, and a flood from a few sources evicts its own
//! connections before anybody else's. Sessions likewise: when the session limit is reached,
//! the oldest connection still setting up that holds sessions, from the source holding the
//! most, is closed and its sessions (requested, never started: each a socket held for
//! nothing) are given to the newcomer. Started sessions are never taken.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use ippm_proto::{Accept, Protocol};
use tokio::sync::Notify;

use crate::counters::CONNECTION_EVICTED;

/// The limits; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Most control connections of one protocol at once, over all its listeners.
    pub max_connections: usize,
    /// Most control connections of one protocol from one source.
    pub max_connections_per_source: usize,
    /// Most test sessions at once, OWAMP and TWAMP together.
    pub max_sessions_total: usize,
    /// Most test sessions at once from one source.
    pub max_sessions_per_source: usize,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_connections_per_source: 32,
            max_sessions_total: 1024,
            max_sessions_per_source: 256,
        }
    }
}

/// Where a connection comes from, as the limits count it: an IPv4 address, or the /64 of
/// an IPv6 address (an IPv4-mapped IPv6 address counts as its IPv4 address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// The source `ip` counts as.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Self(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Every slot of the protocol is held by connections that have finished their set-up.
    #[error("connection limit reached ({0} connections, all set up)")]
    Full(usize),
    /// The source holds its share, every one of them set up.
    #[error("connection limit of this source reached ({0} connections, all set up)")]
    SourceFull(usize),
}

/// The daemon's admission state, shared by every listener of both protocols.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    conns: HashMap<u64, Conn>,
    per_protocol: [usize; 2],
    conns_per_source: HashMap<(usize, Source), usize>,
    sessions: usize,
    sessions_per_source: HashMap<Source, usize>,
}

#[derive(Debug)]
struct Conn {
    protocol: usize,
    source: Source,
    since: Instant,
    set_up: bool,
    evict: Arc<Notify>,
    /// Sessions its permits hold now.
    sessions: usize,
    /// Set when the connection is evicted: its permits no longer count (their sessions were
    /// taken off the totals then, and the connection's task drops them as it ends).
    void: Arc<AtomicBool>,
}

fn index(p: Protocol) -> usize {
    match p {
        Protocol::Owamp => 0,
        Protocol::Twamp => 1,
    }
}

/// Decrements a per-source count, forgetting the source at zero (the maps stay as small
/// as the set of sources that hold something now).
fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<Conn> {
        let c = self.conns.remove(&id)?;
        self.per_protocol[c.protocol] = self.per_protocol[c.protocol].saturating_sub(1);
        release(&mut self.conns_per_source, &(c.protocol, c.source));
        Some(c)
    }

    /// Closes connection `id` to make room: out of the table, its sessions off the totals.
    fn evict(&mut self, id: u64) -> bool {
        let Some(c) = self.remove(id) else {
            return false;
        };
        c.void.store(true, Ordering::Relaxed);
        self.sessions = self.sessions.saturating_sub(c.sessions);
        for _ in 0..c.sessions {
            release(&mut self.sessions_per_source, &c.source);
        }
        c.evict.notify_one();
        true
    }

    /// The connection whose sessions make room for one more: not set up, not `asking`,
    /// holding sessions (from `source` when given), from the source holding the most
    /// sessions, the oldest of that source.
    fn session_victim(&self, asking: u64, source: Option<Source>) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(id, c)| **id != asking && !c.set_up && c.sessions > 0)
            .filter(|(_, c)| source.is_none_or(|s| s == c.source))
            .min_by_key(|(_, c)| {
                let held = self
                    .sessions_per_source
                    .get(&c.source)
                    .copied()
                    .unwrap_or(0);
                (std::cmp::Reverse(held), c.since)
            })
            .map(|(id, _)| *id)
    }

    /// The connection to close to make room: not set up, of `protocol` (and of `source`
    /// when given), from the source holding the most, the oldest of that source.
    fn victim(&self, protocol: usize, source: Option<Source>) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(_, c)| c.protocol == protocol && !c.set_up)
            .filter(|(_, c)| source.is_none_or(|s| s == c.source))
            .min_by_key(|(_, c)| {
                let held = self
                    .conns_per_source
                    .get(&(c.protocol, c.source))
                    .copied()
                    .unwrap_or(0);
                (std::cmp::Reverse(held), c.since)
            })
            .map(|(id, _)| *id)
    }
}

impl Admission {
    /// An empty table with these limits.
    pub fn new(limits: AdmissionLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            inner: Mutex::new(Inner::default()),
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> AdmissionLimits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Counts only; each update leaves them consistent, so a panic elsewhere is no reason
        // to stop admitting.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection of `protocol` from `peer`, closing one still setting up if that
    /// is what makes room (its task sees [`Ticket::evicted`]); says whether one was closed.
    pub fn admit(
        self: &Arc<Self>,
        protocol: Protocol,
        peer: IpAddr,
        now: Instant,
    ) -> Result<(Ticket, bool), Refused> {
        let p = index(protocol);
        let source = Source::of(peer);
        let mut inner = self.lock();
        let mut evicted = false;
        let from_source = inner
            .conns_per_source
            .get(&(p, source))
            .copied()
            .unwrap_or(0);
        if from_source >= self.limits.max_connections_per_source {
            let id = inner
                .victim(p, Some(source))
                .ok_or(Refused::SourceFull(from_source))?;
            evicted = inner.evict(id);
        } else if inner.per_protocol[p] >= self.limits.max_connections {
            let id = inner
                .victim(p, None)
                .ok_or(Refused::Full(inner.per_protocol[p]))?;
            evicted = inner.evict(id);
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let evict = Arc::new(Notify::new());
        let void = Arc::new(AtomicBool::new(false));
        inner.conns.insert(
            id,
            Conn {
                protocol: p,
                source,
                since: now,
                set_up: false,
                evict: evict.clone(),
                sessions: 0,
                void: void.clone(),
            },
        );
        inner.per_protocol[p] += 1;
        *inner.conns_per_source.entry((p, source)).or_default() += 1;
        Ok((
            Ticket {
                admission: self.clone(),
                id,
                source,
                set_up: false,
                evict,
                void,
                granted: 0,
                took: 0,
            },
            evicted,
        ))
    }

    /// Control connections of `protocol` held now.
    pub fn connections(&self, protocol: Protocol) -> usize {
        self.lock().per_protocol[index(protocol)]
    }

    /// Test sessions held now, both protocols.
    pub fn sessions(&self) -> usize {
        self.lock().sessions
    }
}

/// A refused session: the Accept code for the client and the reason for the log.
pub type SessionRefusal = (Accept, &'static str);

/// A control connection's place in the table; dropping it frees the place.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    source: Source,
    set_up: bool,
    evict: Arc<Notify>,
    void: Arc<AtomicBool>,
    /// Sessions this connection was granted (the per-connection limit counts these).
    granted: usize,
    /// Connections closed to give this one sessions.
    took: usize,
}

impl Ticket {
    /// The connection finished its set-up: from now on it is not closed to make room.
    pub fn set_up(&mut self) {
        if !self.set_up {
            self.set_up = true;
            if let Some(c) = self.admission.lock().conns.get_mut(&self.id) {
                c.set_up = true;
            }
        }
    }

    /// Resolves once the connection has been closed to make room for another.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }

    /// A test session for this connection, within `per_connection` (the identity's limit,
    /// `None`: none beyond the state machine's), the source's share and the total; the
    /// permit holds the place until dropped (keep it with the session's socket).
    pub fn session(
        &mut self,
        per_connection: Option<usize>,
    ) -> Result<SessionPermit, SessionRefusal> {
        if per_connection.is_some_and(|max| self.granted >= max) {
            return Err((
                Accept::PermanentResourceLimitation,
                "session limit of this identity",
            ));
        }
        let limits = self.admission.limits;
        let mut inner = self.admission.lock();
        let held = |inner: &Inner| {
            inner
                .sessions_per_source
                .get(&self.source)
                .copied()
                .unwrap_or(0)
        };
        let took = self.took;
        if held(&inner) >= limits.max_sessions_per_source {
            let id = inner.session_victim(self.id, Some(self.source)).ok_or((
                Accept::TemporaryResourceLimitation,
                "session limit of this source",
            ))?;
            self.took += usize::from(inner.evict(id));
        }
        if inner.sessions >= limits.max_sessions_total {
            let id = inner.session_victim(self.id, None).ok_or((
                Accept::TemporaryResourceLimitation,
                "server-wide session limit",
            ))?;
            self.took += usize::from(inner.evict(id));
        }
        if self.took > took {
            if let Some(more) = CONNECTION_EVICTED.note() {
                tracing::info!(source = %self.source, suppressed = more,
                    "session limit reached: closed the oldest connection still setting up that \
                     held sessions (from the source holding the most)");
            }
        }
        // A victim may have held fewer sessions than the limits are over by (limits lowered
        // by nobody, but sessions of evicted connections are already off the counts): check.
        if held(&inner) >= limits.max_sessions_per_source
            || inner.sessions >= limits.max_sessions_total
        {
            return Err((
                Accept::TemporaryResourceLimitation,
                "server-wide session limit",
            ));
        }
        inner.sessions += 1;
        *inner.sessions_per_source.entry(self.source).or_default() += 1;
        if let Some(c) = inner.conns.get_mut(&self.id) {
            c.sessions += 1;
        }
        drop(inner);
        self.granted += 1;
        Ok(SessionPermit {
            admission: self.admission.clone(),
            source: self.source,
            conn: self.id,
            void: self.void.clone(),
        })
    }
}

impl Ticket {
    /// Connections closed (so far) to give this one its sessions.
    pub fn took(&self) -> usize {
        self.took
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Gone already if it was evicted. Its permits keep counting on their own.
        self.admission.lock().remove(self.id);
    }
}

/// A test session's place in the table, held by the session until it ends (a stopped
/// session that outlives its control connection keeps it for its Timeout).
#[derive(Debug)]
pub struct SessionPermit {
    admission: Arc<Admission>,
    source: Source,
    conn: u64,
    /// Its connection was evicted: the session was taken off the counts then.
    void: Arc<AtomicBool>,
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        if self.void.load(Ordering::Relaxed) {
            return;
        }
        let mut inner = self.admission.lock();
        inner.sessions = inner.sessions.saturating_sub(1);
        release(&mut inner.sessions_per_source, &self.source);
        if let Some(c) = inner.conns.get_mut(&self.conn) {
            c.sessions = c.sessions.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    fn limits(conns: usize, per_source: usize) -> AdmissionLimits {
        AdmissionLimits {
            max_connections: conns,
            max_connections_per_source: per_source,
            max_sessions_total: 4,
            max_sessions_per_source: 3,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sources_are_v4_addresses_and_v6_prefixes() {
        assert_eq!(
            Source::of(ip("2001:db8::1")),
            Source::of(ip("2001:db8::ffff:2"))
        );
        assert_ne!(
            Source::of(ip("2001:db8::1")),
            Source::of(ip("2001:db8:0:1::1"))
        );
        assert_eq!(
            Source::of(ip("::ffff:192.0.2.7")),
            Source::of(ip("192.0.2.7"))
        );
        assert_ne!(Source::of(ip("192.0.2.7")), Source::of(ip("192.0.2.8")));
        assert_eq!(Source::of(ip("2001:db8::1")).to_string(), "2001:db8::/64");
    }

    #[test]
    fn full_table_evicts_the_oldest_not_set_up_of_the_largest_source() {
        let a = Admission::new(limits(4, 3));
        let t0 = Instant::now();
        let at = |s| t0 + std::time::Duration::from_secs(s);
        let (mut good, _) = a.admit(Protocol::Twamp, ip("192.0.2.1"), at(0)).unwrap();
        good.set_up();
        let flood: Vec<_> = (1..=3)
            .map(|s| a.admit(Protocol::Twamp, ip("192.0.2.66"), at(s)).unwrap().0)
            .collect();
        // Full: a newcomer from another source evicts the flood's oldest, not `good`.
        let (_new, evicted) = a.admit(Protocol::Twamp, ip("192.0.2.2"), at(9)).unwrap();
        assert!(evicted);
        assert_eq!(a.connections(Protocol::Twamp), 4);
        let fut = flood[0].evicted();
        futures_ready(fut);
        // The other protocol has its own slots.
        assert!(a.admit(Protocol::Owamp, ip("192.0.2.66"), at(10)).is_ok());
        drop(flood);
        assert_eq!(a.connections(Protocol::Twamp), 2);
    }

    #[test]
    fn per_source_limit_evicts_within_the_source_or_refuses() {
        let a = Admission::new(limits(100, 2));
        let now = Instant::now();
        let (mut x, _) = a.admit(Protocol::Owamp, ip("2001:db8::1"), now).unwrap();
        let (y, _) = a.admit(Protocol::Owamp, ip("2001:db8::2"), now).unwrap();
        // Same /64, the third: evicts one of its own that is not set up.
        x.set_up();
        let (_z, evicted) = a.admit(Protocol::Owamp, ip("2001:db8::3"), now).unwrap();
        assert!(evicted);
        futures_ready(y.evicted());
        // Dropping an evicted ticket frees nothing twice.
        drop(y);
        assert_eq!(a.connections(Protocol::Owamp), 2);
        // _z is not set up: the next from the /64 takes its place.
        let (mut w, evicted) = a.admit(Protocol::Owamp, ip("2001:db8::4"), now).unwrap();
        assert!(evicted);
        w.set_up();
        // Both places set up: refused, and another source is not affected.
        assert_eq!(
            a.admit(Protocol::Owamp, ip("2001:db8::5"), now)
                .unwrap_err(),
            Refused::SourceFull(2)
        );
        assert!(a.admit(Protocol::Owamp, ip("2001:db8:1::5"), now).is_ok());
    }

    #[test]
    fn sessions_count_over_connections_and_are_released() {
        let a = Admission::new(limits(10, 10));
        let now = Instant::now();
        let (mut c1, _) = a.admit(Protocol::Twamp, ip("192.0.2.1"), now).unwrap();
        let (mut c2, _) = a.admit(Protocol::Owamp, ip("192.0.2.1"), now).unwrap();
        let (mut c3, _) = a.admit(Protocol::Owamp, ip("192.0.2.9"), now).unwrap();
        let p1 = c1.session(None).unwrap();
        let _p2 = c2.session(Some(5)).unwrap();
        let _p3 = c2.session(Some(5)).unwrap();
        // Set up, nobody gives way: the source holds 3 (over both protocols).
        c1.set_up();
        c2.set_up();
        assert_eq!(
            c1.session(None).unwrap_err().1,
            "session limit of this source"
        );
        let _p4 = c3.session(None).unwrap();
        c3.set_up();
        assert_eq!(a.sessions(), 4);
        assert_eq!(c3.session(None).unwrap_err().1, "server-wide session limit");
        drop(p1);
        // A session outlives its connection's ticket.
        drop(c1);
        assert_eq!(a.sessions(), 3);
        let _p5 = c3.session(Some(2)).unwrap();
        assert_eq!(
            c3.session(Some(2)).unwrap_err(),
            (
                Accept::PermanentResourceLimitation,
                "session limit of this identity"
            )
        );
    }

    #[test]
    fn sessions_never_started_give_way() {
        let a = Admission::new(limits(10, 10));
        let t0 = Instant::now();
        let at = |s| t0 + std::time::Duration::from_secs(s);
        // A squatter holds the whole session table with sessions it never starts.
        let (mut squat, _) = a.admit(Protocol::Twamp, ip("192.0.2.66"), at(0)).unwrap();
        let held: Vec<_> = (0..3).map(|_| squat.session(None).unwrap()).collect();
        let (mut squat2, _) = a.admit(Protocol::Owamp, ip("192.0.2.67"), at(1)).unwrap();
        let _held2 = squat2.session(None).unwrap();
        assert_eq!(a.sessions(), 4);
        // A newcomer gets a session: the connection of the source holding the most goes.
        let (mut good, _) = a.admit(Protocol::Twamp, ip("192.0.2.1"), at(2)).unwrap();
        let mine = good.session(None).unwrap();
        assert_eq!(good.took(), 1);
        futures_ready(squat.evicted());
        assert_eq!(a.sessions(), 2, "the squatter's three are off the count");
        // Its permits, dropped as its task ends, do not count twice.
        drop(held);
        assert_eq!(a.sessions(), 2);
        // Started sessions (a set-up connection) are never taken.
        good.set_up();
        let (mut other, _) = a.admit(Protocol::Twamp, ip("192.0.2.2"), at(3)).unwrap();
        let _o = other.session(None).unwrap();
        let _o2 = other.session(None).unwrap();
        other.set_up();
        assert_eq!(a.sessions(), 4);
        // squat2 (not set up) gives way; then only set-up holders are left.
        let (mut late, _) = a.admit(Protocol::Owamp, ip("192.0.2.3"), at(4)).unwrap();
        let _l = late.session(None).unwrap();
        futures_ready(squat2.evicted());
        late.set_up();
        let (mut last, _) = a.admit(Protocol::Owamp, ip("192.0.2.4"), at(5)).unwrap();
        assert_eq!(
            last.session(None).unwrap_err().1,
            "server-wide session limit"
        );
        drop(mine);
        assert!(last.session(None).is_ok());
    }

    /// Polls `f` once: it must be ready (a stored notification).
    fn futures_ready<F: Future>(f: F) {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        assert!(f.as_mut().poll(&mut cx).is_ready(), "not evicted");
    }
}
