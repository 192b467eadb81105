//! The responder under IKE_SA_INIT floods that answer its COOKIEs (so the sources are real):
//! per-source half-open limits, eviction when the table is full, bounded memory, and a
//! legitimate initiator from another address that still gets through. Sans-I/O: the flood
//! is an engine of its own whose requests are handed to the responder directly.

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use ippm_ike::config::Limits;
use ippm_ike::engine::{Engine, OsRandom};

mod common;
use common::flood::{Flood, Tally, responder};
use common::{A, B, Pair, addr, established, quiet_limits};

/// Half-open SAs on `b` per peer IP.
fn half_open_of(b: &Engine, now: Instant, ip: &str) -> usize {
    let ip: IpAddr = ip.parse().unwrap();
    b.list(now)
        .iter()
        .filter(|s| s.state == "half-open" && s.peer.ip() == ip)
        .count()
}

/// Runs the legitimate pair to completion while the flood goes on: `per_step` flood
/// requests between any two of the pair's datagrams.
fn complete_under_flood(pair: &mut Pair, flood: &mut Flood, per_step: usize) -> Tally {
    let mut total = Tally::default();
    pair.a.initiate(pair.now, "to-b", addr(A), None).unwrap();
    for _ in 0..200 {
        let mut others = Vec::new();
        let t = flood.send(&mut pair.b, pair.now, per_step, &mut others);
        total.cookies += t.cookies;
        total.admitted += t.admitted;
        total.dropped += t.dropped;
        for d in others {
            pair.a
                .handle_datagram(pair.now, SystemTime::now(), addr(A), addr(B), &d);
        }
        if !pair.step() {
            break;
        }
    }
    pair.collect();
    total
}

#[test]
fn a_cookie_echoing_flood_from_one_address_does_not_keep_others_out() {
    // The defaults, but the SA table smaller than the flood.
    let limits = Limits {
        half_open_max: 1024,
        ..quiet_limits()
    };
    let per_source = limits.half_open_per_source_max;
    let mut pair = Pair::new(Pair::psk().a.config().clone(), responder(limits.clone()));
    let mut flood = Flood::new(&["198.51.100.66"]);
    let mut others = Vec::new();
    let t = flood.send(&mut pair.b, pair.now, 5000, &mut others);
    assert!(others.is_empty());
    eprintln!("flood of 5000 from one address: {t:?}");
    // The source gets its share and no more; every request past the threshold had to
    // echo a COOKIE first.
    assert_eq!(t.admitted, per_source, "{t:?}");
    assert_eq!(t.dropped, 5000 - per_source, "{t:?}");
    assert_eq!(t.cookies, 5000 - limits.cookie_threshold, "{t:?}");
    assert_eq!(half_open_of(&pair.b, pair.now, "198.51.100.66"), per_source);
    // An initiator from elsewhere completes while the flood goes on.
    let during = complete_under_flood(&mut pair, &mut flood, 50);
    assert_eq!(during.admitted, 0, "{during:?}");
    assert_eq!(established(&pair.events_a).len(), 1, "{:?}", pair.events_a);
    assert_eq!(established(&pair.events_b).len(), 1);
    // Memory: the flood's half-open SAs and the one real SA, nothing else.
    assert_eq!(pair.b.list(pair.now).len(), per_source + 1);
    // The flood's half-open SAs expire; the real one stays.
    pair.now += limits.half_open_timeout + Duration::from_secs(1);
    pair.b.handle_timeout(pair.now);
    assert_eq!(pair.b.list(pair.now).len(), 1);
}

#[test]
fn a_full_table_makes_room_for_a_new_source() {
    let limits = Limits {
        cookie_threshold: 4,
        half_open_max: 64,
        half_open_per_source_max: 8,
        ..quiet_limits()
    };
    let mut pair = Pair::new(Pair::psk().a.config().clone(), responder(limits.clone()));
    // Sixteen addresses: twice what the table holds at eight each.
    let ips: Vec<String> = (1..=16).map(|i| format!("203.0.113.{i}")).collect();
    let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    let mut flood = Flood::new(&refs);
    let mut others = Vec::new();
    let t = flood.send(&mut pair.b, pair.now, 3000, &mut others);
    eprintln!("flood of 3000 from 16 addresses: {t:?}");
    let ho = |b: &Engine, now| {
        b.list(now)
            .iter()
            .filter(|s| s.state == "half-open")
            .count()
    };
    assert_eq!(ho(&pair.b, pair.now), 64);
    for ip in &refs {
        assert!(half_open_of(&pair.b, pair.now, ip) <= 8, "{ip}");
    }
    // The table is full, yet a new source gets in (evicting the oldest half-open SA of a
    // source holding the most) and completes.
    complete_under_flood(&mut pair, &mut flood, 10);
    assert_eq!(established(&pair.events_a).len(), 1, "{:?}", pair.events_a);
    assert!(ho(&pair.b, pair.now) <= 64);
    assert!(pair.b.list(pair.now).len() <= 65);
}

#[test]
fn the_per_source_limit_counts_an_ipv6_64_as_one_source() {
    let limits = Limits {
        cookie_threshold: 2,
        half_open_per_source_max: 5,
        ..quiet_limits()
    };
    let mut b = Engine::new(responder(limits.clone()), Box::new(OsRandom)).unwrap();
    let now = Instant::now();
    let mut others = Vec::new();
    // Two addresses of one /64, and one of another.
    let mut same = Flood::new(&["2001:db8:1:2::1", "2001:db8:1:2::ffff"]);
    let t = same.send(&mut b, now, 200, &mut others);
    assert_eq!(t.admitted, 5, "{t:?}");
    let mut other = Flood::new(&["2001:db8:1:3::1"]);
    let t = other.send(&mut b, now, 200, &mut others);
    assert_eq!(t.admitted, 5, "{t:?}");
    // IPv4 sources are addresses: a neighbour is not held back.
    let mut v4 = Flood::new(&["192.0.2.77"]);
    let t = v4.send(&mut b, now, 200, &mut others);
    assert_eq!(t.admitted, 5, "{t:?}");
    let mut v4b = Flood::new(&["192.0.2.78"]);
    assert_eq!(v4b.send(&mut b, now, 200, &mut others).admitted, 5);
    assert_eq!(b.list(now).len(), 20);
    // Once they expire, the source may try again.
    let later = now + limits.half_open_timeout + Duration::from_secs(1);
    b.handle_timeout(later);
    assert!(b.list(later).is_empty());
    assert_eq!(same.send(&mut b, later, 10, &mut others).admitted, 5);
    assert!(others.is_empty());
}
