//! What the STAMP reflector remembers of its senders, bounded whatever they send: stateful
//! sessions (RFC 8762 §4.2: keyed by the sender's address and port, the address it sent to,
//! and the SSID) and each source's packet rate.
//!
//! A session is created only for a packet that passed its checks, so junk and forged HMACs
//! leave no state. The sessions of every socket of a reflector are counted together (a
//! [`Census`], locked only where a session is made or forgotten, never per packet): at most
//! `max_sessions`, and `max_sessions_per_source` from one source (an IPv4 address or an IPv6
//! /64); a session not heard from for `session_timeout` is forgotten. Rate buckets are forgotten once full again: a full bucket
//! is the same as none, so forgetting it loses nothing, and their table cannot be grown past
//! its bound by forged sources either.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ippm_proto::wire::stamp_tlv::FollowUpTelemetry;

use crate::admission::Source;

/// A stateful session's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FlowKey {
    /// The Session-Sender's address and port.
    pub(crate) peer: SocketAddr,
    /// The address the sender sent to (ours).
    pub(crate) local: IpAddr,
    /// The sender's SSID (0 for a TWAMP-Light sender).
    pub(crate) ssid: u16,
}

/// One stateful session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flow {
    /// The reflector's Sequence Number for the next reply.
    pub(crate) seq: u32,
    /// Packets received that passed their checks (Direct Measurement's R_RxC).
    pub(crate) received: u32,
    /// Replies sent (R_TxC).
    pub(crate) sent: u32,
    /// The previous reply's Sequence Number and real transmit time, once the kernel said it
    /// (Follow-Up Telemetry).
    pub(crate) last_reply: Option<FollowUpTelemetry>,
    last_seen: Instant,
    source: Source,
}

/// The bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) max_sessions: usize,
    pub(crate) max_sessions_per_source: usize,
    pub(crate) session_timeout: Duration,
    /// Packets per second one source may have answered (0: no limit); a second's worth may
    /// come in a burst.
    pub(crate) rate_per_source: u32,
}

/// Why a session was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// Every place is taken by a live session.
    Table,
    /// The source holds its share.
    Source,
}

/// The sessions of all of a reflector's sockets, by source.
#[derive(Debug, Default)]
pub(crate) struct Census {
    inner: Mutex<(usize, HashMap<Source, usize>)>,
}

impl Census {
    /// Counts a new session of `source`, if the bounds let it.
    fn add(&self, source: Source, b: &Bounds) -> Result<(), Full> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per) = &mut *g;
        if *total >= b.max_sessions {
            return Err(Full::Table);
        }
        let held = per.entry(source).or_insert(0);
        if *held >= b.max_sessions_per_source {
            return Err(Full::Source);
        }
        *held += 1;
        *total += 1;
        Ok(())
    }

    /// Forgets sessions of these sources (one per item).
    fn remove(&self, sources: impl IntoIterator<Item = Source>) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per) = &mut *g;
        for source in sources {
            *total = total.saturating_sub(1);
            if let Some(n) = per.get_mut(&source) {
                *n -= 1;
                if *n == 0 {
                    per.remove(&source);
                }
            }
        }
        if per.capacity() > 4 * per.len().max(256) {
            per.shrink_to(per.len() * 2);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The sessions and rate buckets of one reflector socket.
#[derive(Debug)]
pub(crate) struct Flows {
    bounds: Bounds,
    /// Looked up twice per packet: foldhash rather than SipHash (about a third of the reflector's
    /// user-space time in a profile), still randomly seeded against chosen keys.
    flows: HashMap<FlowKey, Flow, foldhash::fast::RandomState>,
    census: Arc<Census>,
    buckets: HashMap<Source, Bucket>,
}

impl Drop for Flows {
    fn drop(&mut self) {
        self.census.remove(self.flows.values().map(|f| f.source));
    }
}

impl Flows {
    /// One socket's table; `census` counts the sessions of all of the reflector's sockets.
    pub(crate) fn new(bounds: Bounds, census: Arc<Census>) -> Self {
        Self {
            bounds,
            flows: HashMap::default(),
            census,
            buckets: HashMap::new(),
        }
    }

    /// Sessions held.
    pub(crate) fn len(&self) -> usize {
        self.flows.len()
    }

    /// Takes one packet's worth from `ip`'s rate; `false`: over its rate, not to be answered.
    pub(crate) fn admit(&mut self, ip: IpAddr, now: Instant) -> bool {
        let rate = f64::from(self.bounds.rate_per_source);
        if rate == 0.0 {
            return true;
        }
        let burst = rate.max(1.0);
        let src = Source::of(ip);
        if !self.buckets.contains_key(&src) && self.buckets.len() >= self.bucket_room() {
            self.forget_full_buckets(now);
            if self.buckets.len() >= self.bucket_room() {
                // Every bucket was used within the last second: a source not seen in that
                // time waits until one refills.
                return false;
            }
        }
        let b = self.buckets.entry(src).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let earned = now.saturating_duration_since(b.at).as_secs_f64() * rate;
        b.tokens = (b.tokens + earned).min(burst);
        b.at = now;
        if b.tokens < 1.0 {
            return false;
        }
        b.tokens -= 1.0;
        true
    }

    /// As many sources as sessions, and at least a few thousand.
    fn bucket_room(&self) -> usize {
        self.bounds.max_sessions.max(4096)
    }

    fn forget_full_buckets(&mut self, now: Instant) {
        let rate = f64::from(self.bounds.rate_per_source);
        let burst = rate.max(1.0);
        self.buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
        });
    }

    /// The session `key`, if it is known.
    pub(crate) fn get(&mut self, key: &FlowKey) -> Option<&mut Flow> {
        self.flows.get_mut(key)
    }

    /// The session `key`, created if the bounds let it (and whether it was created now);
    /// seen now.
    pub(crate) fn entry(&mut self, key: FlowKey, now: Instant) -> Result<(&mut Flow, bool), Full> {
        let mut created = false;
        if !self.flows.contains_key(&key) {
            let source = Source::of(key.peer.ip());
            match self.census.add(source, &self.bounds) {
                // Maybe full of this socket's idle sessions: forget those and look again.
                Err(Full::Table) => {
                    self.sweep(now);
                    self.census.add(source, &self.bounds)?;
                }
                r => r?,
            }
            self.flows.insert(
                key,
                Flow {
                    seq: 0,
                    received: 0,
                    sent: 0,
                    last_reply: None,
                    last_seen: now,
                    source,
                },
            );
            created = true;
        }
        let f = self.flows.get_mut(&key).ok_or(Full::Table)?;
        f.last_seen = now;
        Ok((f, created))
    }

    /// Forgets the session `key` (made for a packet that then failed its checks).
    pub(crate) fn remove(&mut self, key: &FlowKey) {
        if let Some(f) = self.flows.remove(key) {
            self.census.remove([f.source]);
        }
    }

    /// Forgets the sessions idle for their timeout, and full rate buckets. Returns whether
    /// anything is left to sweep later.
    pub(crate) fn sweep(&mut self, now: Instant) -> bool {
        let timeout = self.bounds.session_timeout;
        let mut gone = Vec::new();
        self.flows.retain(|_, f| {
            let keep = now.saturating_duration_since(f.last_seen) < timeout;
            if !keep {
                gone.push(f.source);
            }
            keep
        });
        if !gone.is_empty() {
            self.census.remove(gone);
        }
        self.forget_full_buckets(now);
        self.shrink();
        !self.flows.is_empty() || !self.buckets.is_empty()
    }

    /// After a flood, give the memory back.
    fn shrink(&mut self) {
        if self.flows.capacity() > 4 * self.flows.len().max(256) {
            self.flows.shrink_to(self.flows.len() * 2);
        }
        if self.buckets.capacity() > 4 * self.buckets.len().max(256) {
            self.buckets.shrink_to(self.buckets.len() * 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> Bounds {
        Bounds {
            max_sessions: 4,
            max_sessions_per_source: 2,
            session_timeout: Duration::from_secs(10),
            rate_per_source: 5,
        }
    }

    fn key(ip: &str, port: u16, ssid: u16) -> FlowKey {
        FlowKey {
            peer: SocketAddr::new(ip.parse().unwrap(), port),
            local: "192.0.2.1".parse().unwrap(),
            ssid,
        }
    }

    #[test]
    fn sessions_are_bounded_in_total_and_per_source_and_expire() {
        let t0 = Instant::now();
        let mut f = Flows::new(bounds(), Arc::default());
        f.entry(key("198.51.100.1", 1, 0), t0).unwrap().0.seq = 7;
        f.entry(key("198.51.100.1", 1, 1), t0).unwrap();
        // The same 4-tuple and SSID is the same session, whatever else.
        let (again, created) = f.entry(key("198.51.100.1", 1, 0), t0).unwrap();
        assert_eq!((again.seq, created), (7, false));
        assert_eq!(
            f.entry(key("198.51.100.1", 2, 0), t0).unwrap_err(),
            Full::Source
        );
        f.entry(key("198.51.100.2", 1, 0), t0).unwrap();
        f.entry(key("2001:db8::1", 1, 0), t0).unwrap();
        // One /64 is one source.
        assert_eq!(
            f.entry(key("2001:db8::2", 1, 0), t0).unwrap_err(),
            Full::Table
        );
        assert_eq!(f.len(), 4);
        // Kept alive: one of the sessions is seen again later; the rest time out.
        let later = t0 + Duration::from_secs(6);
        f.entry(key("198.51.100.2", 1, 0), later).unwrap();
        let end = t0 + Duration::from_secs(11);
        f.entry(key("2001:db8::2", 1, 0), end).unwrap();
        assert_eq!(f.len(), 2);
        assert!(f.get(&key("198.51.100.1", 1, 0)).is_none(), "forgotten");
        // The source's share is back.
        f.entry(key("198.51.100.1", 3, 0), end).unwrap();
        f.entry(key("198.51.100.1", 4, 0), end).unwrap();
    }

    #[test]
    fn the_rate_per_source_allows_a_second_at_once_then_the_rate() {
        let t0 = Instant::now();
        let mut f = Flows::new(bounds(), Arc::default());
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let b: IpAddr = "198.51.100.2".parse().unwrap();
        assert_eq!((0..20).filter(|_| f.admit(a, t0)).count(), 5);
        // Another source has its own.
        assert!(f.admit(b, t0));
        // 5/s: one more after 200 ms, two after 400 ms more.
        let t1 = t0 + Duration::from_millis(200);
        assert_eq!((0..20).filter(|_| f.admit(a, t1)).count(), 1);
        let t2 = t1 + Duration::from_millis(400);
        assert_eq!((0..20).filter(|_| f.admit(a, t2)).count(), 2);
        // No limit at all with rate 0.
        let mut open = Flows::new(
            Bounds {
                rate_per_source: 0,
                ..bounds()
            },
            Arc::default(),
        );
        assert_eq!((0..10_000).filter(|_| open.admit(a, t0)).count(), 10_000);
    }

    #[test]
    fn forged_sources_cannot_grow_the_bucket_table() {
        let t0 = Instant::now();
        let mut f = Flows::new(bounds(), Arc::default());
        let room = f.bucket_room();
        let mut admitted = 0;
        for i in 0..(room as u32 + 1000) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            admitted += usize::from(f.admit(ip, t0));
        }
        assert_eq!(admitted, room, "new sources wait once the table is full");
        assert!(f.buckets.len() <= room);
        // A second later every bucket is full again: forgotten, and room for newcomers.
        let t1 = t0 + Duration::from_secs(1);
        assert!(f.admit("203.0.113.9".parse().unwrap(), t1));
        assert_eq!(f.buckets.len(), 1);
    }

    /// Sessions made, refused, timed out, forgotten and dropped with their socket, at random
    /// over three sockets sharing one census: the census always equals what the sockets
    /// hold, and no bound is ever passed.
    #[test]
    fn the_census_matches_the_sockets_whatever_happens() {
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Packet { socket: usize, src: u8, port: u16 },
            Forget { socket: usize, src: u8, port: u16 },
            Later(u64),
            Sweep(usize),
            Restart(usize),
        }
        let op = prop_oneof![
            6 => (0..3usize, 0..4u8, 0..8u16)
                .prop_map(|(socket, src, port)| Op::Packet { socket, src, port }),
            1 => (0..3usize, 0..4u8, 0..8u16)
                .prop_map(|(socket, src, port)| Op::Forget { socket, src, port }),
            1 => (0..15u64).prop_map(Op::Later),
            1 => (0..3usize).prop_map(Op::Sweep),
            1 => (0..3usize).prop_map(Op::Restart),
        ];
        let b = Bounds {
            max_sessions: 10,
            max_sessions_per_source: 4,
            session_timeout: Duration::from_secs(10),
            rate_per_source: 0,
        };
        proptest!(ProptestConfig::with_cases(300), |(ops in proptest::collection::vec(op, 1..150))| {
            let census = Arc::new(Census::default());
            let mut sockets: Vec<Flows> = (0..3).map(|_| Flows::new(b, census.clone())).collect();
            let mut now = Instant::now();
            for op in ops {
                match op {
                    Op::Packet { socket, src, port } => {
                        let k = key(&format!("198.51.100.{src}"), port, 0);
                        let _ = sockets[socket].entry(k, now);
                    }
                    Op::Forget { socket, src, port } => {
                        sockets[socket].remove(&key(&format!("198.51.100.{src}"), port, 0));
                    }
                    Op::Later(s) => now += Duration::from_secs(s),
                    Op::Sweep(socket) => {
                        sockets[socket].sweep(now);
                    }
                    Op::Restart(socket) => sockets[socket] = Flows::new(b, census.clone()),
                }
                let held: usize = sockets.iter().map(Flows::len).sum();
                let (total, per) = &*census.inner.lock().unwrap();
                prop_assert_eq!(*total, held);
                prop_assert!(held <= b.max_sessions);
                prop_assert_eq!(per.values().sum::<usize>(), held);
                prop_assert!(per.values().all(|&n| n > 0 && n <= b.max_sessions_per_source));
            }
        });
    }
}
