//! The in-memory harness of the engine tests: two engines, a virtual clock and a wire
//! that can lose, duplicate or forge messages.
// Each test crate uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use ippm_ike::auth::Identity;
use ippm_ike::config::{Config, Connection, Limits, LocalAuth, Psk, RemoteAuth};
use ippm_ike::engine::{Engine, Event, OsRandom, Spis, Transmit};
use ippm_ike::proposal::IkeProposal;

pub(crate) mod flood;

pub(crate) const A: &str = "192.0.2.2:500";
pub(crate) const B: &str = "192.0.2.1:500";

pub(crate) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub(crate) fn psk_conn(
    name: &str,
    local: &str,
    remote: &str,
    key: &str,
    to: Option<&str>,
) -> Connection {
    let psk = Psk::new(key.as_bytes().to_vec());
    Connection {
        name: name.into(),
        local_id: Identity::parse(local).unwrap(),
        remote_id: Some(Identity::parse(remote).unwrap()),
        local_auth: LocalAuth::Psk(psk.clone()),
        remote_auth: RemoteAuth::Psk(psk),
        remote_addr: to.map(addr),
        proposals: IkeProposal::defaults(),
    }
}

pub(crate) fn quiet_limits() -> Limits {
    Limits {
        rekey_time: None,
        dpd_delay: None,
        ..Limits::default()
    }
}

pub(crate) struct Pair {
    pub(crate) a: Engine,
    pub(crate) b: Engine,
    pub(crate) now: Instant,
    /// Datagrams in flight: (to B?, transmit).
    pub(crate) wire: Vec<(bool, Transmit)>,
    pub(crate) events_a: Vec<Event>,
    pub(crate) events_b: Vec<Event>,
    pub(crate) delivered: usize,
}

impl Pair {
    pub(crate) fn new(ca: Config, cb: Config) -> Self {
        Self {
            a: Engine::new(ca, Box::new(OsRandom)).unwrap(),
            b: Engine::new(cb, Box::new(OsRandom)).unwrap(),
            now: Instant::now(),
            wire: Vec::new(),
            events_a: Vec::new(),
            events_b: Vec::new(),
            delivered: 0,
        }
    }

    pub(crate) fn psk() -> Self {
        let ca = Config {
            connections: vec![psk_conn(
                "to-b",
                "a.example",
                "b.example",
                "secret",
                Some(B),
            )],
            limits: quiet_limits(),
            ..Config::default()
        };
        let cb = Config {
            connections: vec![psk_conn("to-a", "b.example", "a.example", "secret", None)],
            limits: quiet_limits(),
            ..Config::default()
        };
        Self::new(ca, cb)
    }

    pub(crate) fn collect(&mut self) {
        while let Some(t) = self.a.poll_transmit() {
            assert_eq!(t.remote, addr(B));
            self.wire.push((true, t));
        }
        while let Some(t) = self.b.poll_transmit() {
            assert_eq!(t.remote, addr(A));
            self.wire.push((false, t));
        }
        while let Some(e) = self.a.poll_event() {
            self.events_a.push(e);
        }
        while let Some(e) = self.b.poll_event() {
            self.events_b.push(e);
        }
    }

    /// Delivers datagrams until both are quiet; `keep` decides per datagram (index, to B?)
    /// whether it arrives.
    pub(crate) fn run_with(&mut self, mut keep: impl FnMut(usize, bool, &[u8]) -> bool) {
        for _ in 0..1000 {
            self.collect();
            if self.wire.is_empty() {
                return;
            }
            let (to_b, t) = self.wire.remove(0);
            let n = self.delivered;
            self.delivered += 1;
            if !keep(n, to_b, &t.data) {
                continue;
            }
            let wall = SystemTime::now();
            if to_b {
                self.b
                    .handle_datagram(self.now, wall, addr(B), addr(A), &t.data);
            } else {
                self.a
                    .handle_datagram(self.now, wall, addr(A), addr(B), &t.data);
            }
        }
        panic!("the engines do not settle");
    }

    /// Delivers the next datagram in flight (all of them arrive); false when none is.
    pub(crate) fn step(&mut self) -> bool {
        self.collect();
        if self.wire.is_empty() {
            return false;
        }
        let (to_b, t) = self.wire.remove(0);
        self.delivered += 1;
        let wall = SystemTime::now();
        if to_b {
            self.b
                .handle_datagram(self.now, wall, addr(B), addr(A), &t.data);
        } else {
            self.a
                .handle_datagram(self.now, wall, addr(A), addr(B), &t.data);
        }
        true
    }

    pub(crate) fn run(&mut self) {
        self.run_with(|_, _, _| true);
    }

    /// Moves the clock to the engines' next timeout (or by `max`) and runs it.
    pub(crate) fn tick(&mut self, max: Duration) {
        let next = [self.a.poll_timeout(), self.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.now + max);
        self.now = next.min(self.now + max).max(self.now);
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
    }

    pub(crate) fn up(&mut self) -> Spis {
        let spis = self.a.initiate(self.now, "to-b", addr(A), None).unwrap();
        self.run();
        let est = established(&self.events_a);
        assert_eq!(est.len(), 1, "A: {:?}", self.events_a);
        assert_eq!(established(&self.events_b), est, "B: {:?}", self.events_b);
        assert_eq!(est[0].i, spis.i);
        est[0]
    }

    pub(crate) fn secrets_agree(&self, spis: Spis) -> Vec<u8> {
        let sa = self
            .a
            .ippm_secret(spis, None, self.now)
            .expect("A has the SA");
        let sb = self
            .b
            .ippm_secret(spis, None, self.now)
            .expect("B has the SA");
        assert_eq!(*sa, *sb);
        sa.to_vec()
    }
}

pub(crate) fn established(ev: &[Event]) -> Vec<Spis> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Established { spis, .. } => Some(*spis),
            _ => None,
        })
        .collect()
}
