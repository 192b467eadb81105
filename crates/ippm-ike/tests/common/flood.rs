//! A flood of IKE_SA_INITs that echoes COOKIEs, sans-I/O.

use std::net::{IpAddr, SocketAddr};
use std::time::{Instant, SystemTime};

use ippm_ike::codepoints::{ExchangeType, NotifyType};
use ippm_ike::config::{Config, Limits};
use ippm_ike::engine::{Engine, OsRandom};
use ippm_ike::{Message, Payload};

use super::{B, Pair, addr};

/// What the responder did with the flood's requests.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Answered with a COOKIE.
    pub(crate) cookies: usize,
    /// Answered with an SA (a new half-open SA).
    pub(crate) admitted: usize,
    /// Not answered.
    pub(crate) dropped: usize,
}

/// An attacker that runs real IKE_SA_INITs and echoes COOKIEs, from `ips` in turn, with
/// ever-changing ports; it never sends IKE_AUTH.
pub(crate) struct Flood {
    pub(crate) engine: Engine,
    pub(crate) ips: Vec<IpAddr>,
    pub(crate) n: usize,
}

impl Flood {
    pub(crate) fn new(ips: &[&str]) -> Self {
        let mut cfg = Pair::psk().a.config().clone();
        // Room for every request of the test.
        cfg.limits.established_max = 1_000_000;
        Self {
            engine: Engine::new(cfg, Box::new(OsRandom)).unwrap(),
            ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            n: 0,
        }
    }

    /// `count` IKE_SA_INITs to `b`, each with its COOKIE round trip when asked; the
    /// responder's datagrams to anyone else (the legitimate initiator) go to `others`.
    pub(crate) fn send(
        &mut self,
        b: &mut Engine,
        now: Instant,
        count: usize,
        others: &mut Vec<Vec<u8>>,
    ) -> Tally {
        let mut t = Tally::default();
        for _ in 0..count {
            let ip = self.ips[self.n % self.ips.len()];
            let port = 1024 + (self.n % 60000) as u16;
            self.n += 1;
            let from = SocketAddr::new(ip, port);
            self.engine.initiate(now, "to-b", from, None).unwrap();
            let mut req = self.engine.poll_transmit().unwrap().data;
            // At most one COOKIE round trip.
            for round in 0..2 {
                b.handle_datagram(now, SystemTime::now(), addr(B), from, &req);
                let mut answer = None;
                while let Some(x) = b.poll_transmit() {
                    if x.remote == from {
                        answer = Some(x.data);
                    } else {
                        others.push(x.data);
                    }
                }
                let Some(answer) = answer else {
                    t.dropped += 1;
                    break;
                };
                let m = Message::parse(&answer).unwrap();
                assert_eq!(m.header.exchange, ExchangeType::IKE_SA_INIT);
                let cookie = m
                    .payloads
                    .iter()
                    .any(|p| matches!(p, Payload::Notify { ty, .. } if *ty == NotifyType::COOKIE));
                if !cookie {
                    t.admitted += 1;
                    break;
                }
                assert_eq!(round, 0, "a COOKIE demanded twice");
                t.cookies += 1;
                // Echo it: the flood engine resends with the COOKIE first.
                self.engine
                    .handle_datagram(now, SystemTime::now(), from, addr(B), &answer);
                req = self.engine.poll_transmit().unwrap().data;
            }
            // The flood's own SA table is not what is under test.
            while self.engine.poll_event().is_some() {}
        }
        t
    }
}

pub(crate) fn responder(limits: Limits) -> Config {
    let mut cfg = Pair::psk().b.config().clone();
    cfg.limits = limits;
    cfg
}
