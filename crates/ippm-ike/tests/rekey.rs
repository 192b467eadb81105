//! Rekeying the IKE SA when both peers do it at once (RFC 7296 §2.8.1, §2.8.2), and the
//! jitter of the rekey timers that makes that rare.

use std::time::Duration;

use ippm_ike::config::Config;
use ippm_ike::engine::{DeleteReason, Event, Spis};

mod common;
use common::{Pair, established};

fn rekeyed(ev: &[Event], old: Spis) -> Vec<Spis> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Rekeyed { old: o, new } if *o == old => Some(*new),
            _ => None,
        })
        .collect()
}

fn deleted(ev: &[Event]) -> Vec<(Spis, DeleteReason)> {
    ev.iter()
        .filter_map(|e| match e {
            Event::Deleted { spis, reason } => Some((*spis, reason.clone())),
            _ => None,
        })
        .collect()
}

/// After a rekey of `old`: one new SA on both sides, the same, announced once, carrying
/// the same secret, with `old` gone but for its grace secret. Returns it.
fn one_survivor(pair: &mut Pair, old: Spis) -> Spis {
    let la = pair.a.list(pair.now);
    let lb = pair.b.list(pair.now);
    assert_eq!(la.len(), 1, "A: {la:?}");
    assert_eq!(lb.len(), 1, "B: {lb:?}");
    let new = la[0].spis;
    assert_eq!(lb[0].spis, new);
    assert_ne!(new, old);
    assert_eq!(la[0].state, "established");
    assert_eq!(
        rekeyed(&pair.events_a, old),
        vec![new],
        "{:?}",
        pair.events_a
    );
    assert_eq!(
        rekeyed(&pair.events_b, old),
        vec![new],
        "{:?}",
        pair.events_b
    );
    pair.secrets_agree(new);
    assert_eq!(pair.a.ippm_secret_for_peer(la[0].peer.ip()).unwrap().0, new);
    assert_eq!(pair.b.ippm_secret_for_peer(lb[0].peer.ip()).unwrap().0, new);
    // The old SA went on both sides, deleted by one and so by the other; the redundant
    // new SA went without ever being announced.
    let (da, db) = (deleted(&pair.events_a), deleted(&pair.events_b));
    assert_eq!(da.len(), 1, "{da:?}");
    assert_eq!(db.len(), 1, "{db:?}");
    assert_eq!((da[0].0, db[0].0), (old, old));
    assert!(
        matches!(
            (&da[0].1, &db[0].1),
            (DeleteReason::ByUs, DeleteReason::ByPeer) | (DeleteReason::ByPeer, DeleteReason::ByUs)
        ),
        "{da:?} {db:?}"
    );
    // Established: the first SA, then the survivor only.
    assert_eq!(established(&pair.events_a)[1..], [new]);
    assert_eq!(established(&pair.events_b)[1..], [new]);
    new
}

#[test]
fn crossing_rekeys_leave_one_new_sa_chosen_by_the_lowest_nonce() {
    let mut by_a = 0;
    // The nonces are random, so which side's SA survives varies: run until both have.
    for round in 0..64 {
        let mut pair = Pair::psk();
        let old = pair.up();
        // Both start at the same instant; the requests cross on the wire.
        pair.a.rekey(pair.now, old).unwrap();
        pair.b.rekey(pair.now, old).unwrap();
        pair.collect();
        assert_eq!(pair.wire.len(), 2);
        assert!(pair.wire[0].0 && !pair.wire[1].0, "one request each way");
        pair.run();
        let new = one_survivor(&mut pair, old);
        let a_initiated = pair.a.list(pair.now)[0].initiator;
        by_a += usize::from(a_initiated);
        // Nothing is left to do later: no SA to delete after a grace, no retransmissions.
        for _ in 0..10 {
            pair.tick(Duration::from_secs(60));
            pair.run();
        }
        assert_eq!(pair.a.list(pair.now).len(), 1);
        assert_eq!(pair.b.list(pair.now).len(), 1);
        assert_eq!(pair.a.list(pair.now)[0].spis, new);
        // The survivor rekeys on as usual.
        pair.b.rekey(pair.now, new).unwrap();
        pair.run();
        let newer = pair.b.list(pair.now)[0].spis;
        assert_ne!(newer, new);
        assert_eq!(pair.a.list(pair.now)[0].spis, newer);
        if round >= 8 && by_a > 0 && by_a < round + 1 {
            return;
        }
    }
    panic!("one side's SA survived every time ({by_a} of 64 by A)");
}

#[test]
fn a_crossing_seen_by_one_side_only_still_leaves_one_sa() {
    let mut pair = Pair::psk();
    let old = pair.up();
    pair.a.rekey(pair.now, old).unwrap();
    pair.b.rekey(pair.now, old).unwrap();
    pair.collect();
    // B's request is held back: B answers A's rekey while its own is outstanding, A
    // completes its rekey without noticing and deletes the old SA.
    let (to_b, req2) = pair.wire.remove(1);
    assert!(!to_b);
    pair.run();
    // Then B's request arrives, at an SA A has deleted.
    pair.wire.push((to_b, req2));
    pair.run();
    let new = one_survivor(&mut pair, old);
    assert!(pair.a.list(pair.now)[0].initiator, "A's rekey is the one");
    assert_eq!(pair.b.list(pair.now)[0].spis, new);
}

/// The rekey time of the one SA of `e`: its only timer.
fn rekey_at(pair: &Pair) -> (Duration, Duration) {
    let a = pair.a.poll_timeout().unwrap() - pair.now;
    let b = pair.b.poll_timeout().unwrap() - pair.now;
    (a, b)
}

#[test]
fn rekey_timers_are_jittered_within_rand_time() {
    let with = |rekey: u64, rand: Option<u64>| {
        let p = Pair::psk();
        let mut ca: Config = p.a.config().clone();
        let mut cb: Config = p.b.config().clone();
        for c in [&mut ca, &mut cb] {
            c.limits.rekey_time = Some(Duration::from_secs(rekey));
            c.limits.rekey_rand_time = rand.map(Duration::from_secs);
        }
        let mut pair = Pair::new(ca, cb);
        pair.up();
        pair
    };
    // The default window: a tenth of rekey_time, before it.
    let mut seen = Vec::new();
    for _ in 0..20 {
        let pair = with(1000, None);
        let (a, b) = rekey_at(&pair);
        for t in [a, b] {
            assert!(t <= Duration::from_secs(1000), "{t:?}");
            assert!(t >= Duration::from_secs(900), "{t:?}");
        }
        assert_ne!(
            a, b,
            "two peers with the same lifetime rekey at different times"
        );
        seen.extend([a, b]);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 40);
    // Spread over the window, not bunched at one end.
    assert!(seen[39] - seen[0] > Duration::from_secs(50), "{seen:?}");
    // A configured window.
    let pair = with(600, Some(300));
    let (a, b) = rekey_at(&pair);
    for t in [a, b] {
        assert!(
            t <= Duration::from_secs(600) && t >= Duration::from_secs(300),
            "{t:?}"
        );
    }
    // None at all.
    let pair = with(600, Some(0));
    assert_eq!(
        rekey_at(&pair),
        (Duration::from_secs(600), Duration::from_secs(600))
    );
    // When the timer fires, the SA rekeys.
    let mut pair = with(1000, None);
    let old = pair.a.list(pair.now)[0].spis;
    pair.tick(Duration::from_secs(1001));
    pair.run();
    assert_eq!(pair.a.list(pair.now).len(), 1);
    assert_ne!(pair.a.list(pair.now)[0].spis, old);
}
