//! What the STAMP reflector remembers of its senders, bounded whatever they send: stateful
//! sessions (RFC 8762 §4.2: keyed by the sender's address and port, the address it sent to,
//! and the SSID) and each source's packet rate.
//!
//! A session is created only for a packet that passed its checks, so junk and forged HMACs
//! leave no state. The table holds at most `max_sessions`, and `max_sessions_per_source` from
//! one source (an IPv4 address or an IPv6 /64); a session not heard from for
//! `session_timeout` is forgotten. Rate buckets are forgotten once full again: a full bucket
//! is the same as none, so forgetting it loses nothing, and their table cannot be grown past
//! its bound by forged sources either.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
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

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The sessions and rate buckets of one reflector socket.
#[derive(Debug)]
pub(crate) struct Flows {
    bounds: Bounds,
    flows: HashMap<FlowKey, Flow>,
    per_source: HashMap<Source, usize>,
    buckets: HashMap<Source, Bucket>,
    last_sweep: Instant,
}

impl Flows {
    pub(crate) fn new(bounds: Bounds) -> Self {
        Self {
            bounds,
            flows: HashMap::new(),
            per_source: HashMap::new(),
            buckets: HashMap::new(),
            last_sweep: Instant::now(),
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

    /// Whether the session `key` exists or could be created now.
    pub(crate) fn room_for(&mut self, key: &FlowKey, now: Instant) -> Result<(), Full> {
        if self.flows.contains_key(key) {
            return Ok(());
        }
        if self.flows.len() >= self.bounds.max_sessions {
            self.sweep(now);
            if self.flows.len() >= self.bounds.max_sessions {
                return Err(Full::Table);
            }
        }
        let held = self
            .per_source
            .get(&Source::of(key.peer.ip()))
            .copied()
            .unwrap_or(0);
        if held >= self.bounds.max_sessions_per_source {
            return Err(Full::Source);
        }
        Ok(())
    }

    /// The session `key`, created if there is room; seen now.
    pub(crate) fn entry(&mut self, key: FlowKey, now: Instant) -> Result<&mut Flow, Full> {
        self.room_for(&key, now)?;
        let source = Source::of(key.peer.ip());
        let f = self.flows.entry(key).or_insert_with(|| {
            *self.per_source.entry(source).or_insert(0) += 1;
            Flow {
                seq: 0,
                received: 0,
                sent: 0,
                last_reply: None,
                last_seen: now,
                source,
            }
        });
        f.last_seen = now;
        Ok(f)
    }

    /// Forgets the sessions idle for their timeout, and full rate buckets. Returns whether
    /// anything is left to sweep later.
    pub(crate) fn sweep(&mut self, now: Instant) -> bool {
        let timeout = self.bounds.session_timeout;
        let per_source = &mut self.per_source;
        self.flows.retain(|_, f| {
            let keep = now.saturating_duration_since(f.last_seen) < timeout;
            if !keep {
                if let Some(n) = per_source.get_mut(&f.source) {
                    *n -= 1;
                    if *n == 0 {
                        per_source.remove(&f.source);
                    }
                }
            }
            keep
        });
        self.forget_full_buckets(now);
        self.last_sweep = now;
        self.shrink();
        !self.flows.is_empty() || !self.buckets.is_empty()
    }

    /// After a flood, give the memory back.
    fn shrink(&mut self) {
        if self.flows.capacity() > 4 * self.flows.len().max(256) {
            self.flows.shrink_to(self.flows.len() * 2);
            self.per_source.shrink_to(self.per_source.len() * 2);
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
        let mut f = Flows::new(bounds());
        f.entry(key("198.51.100.1", 1, 0), t0).unwrap().seq = 7;
        f.entry(key("198.51.100.1", 1, 1), t0).unwrap();
        // The same 4-tuple and SSID is the same session, whatever else.
        assert_eq!(f.entry(key("198.51.100.1", 1, 0), t0).unwrap().seq, 7);
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
        let mut f = Flows::new(bounds());
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
        let mut open = Flows::new(Bounds {
            rate_per_source: 0,
            ..bounds()
        });
        assert_eq!((0..10_000).filter(|_| open.admit(a, t0)).count(), 10_000);
    }

    #[test]
    fn forged_sources_cannot_grow_the_bucket_table() {
        let t0 = Instant::now();
        let mut f = Flows::new(bounds());
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
}
