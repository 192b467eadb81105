//! Writes the ike_engine fuzz target's seeds (layout: fuzz_targets/ike_engine_common.rs):
//! real datagrams from engines with the target's deterministic randomness and
//! configurations, so they are valid for the engine under test when replayed, and scripts of
//! the harness's own ops.
//!
//! Run from the fuzz/ folder: `cargo run --example make_ike_engine_seeds`. The seeds are
//! committed; this program documents where they come from and rewrites them identically.
#[path = "../fuzz_targets/ike_engine_common.rs"]
mod common;

use std::fs;
use std::path::Path;
use std::time::{Instant, SystemTime};

use common::*;
use ippm_ike::config::{Config, Connection, LocalAuth, Psk, RemoteAuth};
use ippm_ike::engine::{Engine, Event, Spis};
use ippm_ike::proposal::IkeProposal;

/// Two engines in memory: `peer` (the fuzz input's side) and `dut`, a twin of the engine
/// under test (same configuration, same randomness, so it answers exactly as the target's
/// engine will). Records what `peer` sends.
struct Pair {
    peer: Engine,
    dut: Engine,
    now: Instant,
    sent: Vec<Vec<u8>>,
    events: Vec<Event>,
}

impl Pair {
    fn new(peer: Config, peer_seed: u64, flags: u8) -> Self {
        Self {
            peer: Engine::new(peer, Box::new(Counter::new(peer_seed))).expect("peer"),
            dut: Engine::new(
                responder_config(flags),
                Box::new(Counter::new(SEED_RESPONDER)),
            )
            .expect("dut"),
            now: Instant::now(),
            sent: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Delivers everything until both are quiet.
    fn run(&mut self) {
        let wall = SystemTime::now();
        for _ in 0..100 {
            let mut quiet = true;
            while let Some(t) = self.peer.poll_transmit() {
                quiet = false;
                self.sent.push(t.data.clone());
                self.dut
                    .handle_datagram(self.now, wall, addr(LOCAL), addr(PEER), &t.data);
            }
            while let Some(t) = self.dut.poll_transmit() {
                quiet = false;
                self.peer
                    .handle_datagram(self.now, wall, addr(PEER), addr(LOCAL), &t.data);
            }
            self.events
                .extend(std::iter::from_fn(|| self.peer.poll_event()));
            if quiet {
                return;
            }
        }
        panic!("the engines do not settle");
    }

    fn established(&self) -> Vec<Spis> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Established { spis, .. } => Some(*spis),
                _ => None,
            })
            .collect()
    }
}

/// Flags octet, then RAW records of `datagrams` (`op`: OP_RAW with its flags).
fn raw_seed(flags: u8, op: u8, datagrams: &[Vec<u8>]) -> Vec<u8> {
    let mut s = vec![flags];
    for d in datagrams {
        record(&mut s, op, d);
    }
    s
}

/// The engine under test as responder of a real initiator: IKE_SA_INIT, IKE_AUTH, a rekey,
/// the old SA's delete, the new SA's delete.
fn real_initiator(flags: u8) -> Vec<Vec<u8>> {
    let mut p = Pair::new(initiator_config(flags), SEED_INITIATOR, flags);
    p.peer
        .initiate(p.now, "to-b", addr(PEER), None)
        .expect("initiate");
    p.run();
    let spis = p.established()[0];
    p.peer.rekey(p.now, spis).expect("rekey");
    p.run();
    let new = p.peer.list(p.now)[0].spis;
    assert_ne!(new, spis);
    p.peer.delete(p.now, new).expect("delete");
    p.run();
    assert!(p.peer.list(p.now).is_empty());
    assert!(p.dut.list(p.now).is_empty());
    p.sent
}

/// The engine under test initiating (`initiate` by the operator) to a peer engine.
fn dut_initiates(flags: u8) -> Vec<u8> {
    let psk = Psk::new(PSK.to_vec());
    let peer = Config {
        connections: vec![Connection {
            name: "from-b".into(),
            local_id: ippm_ike::auth::Identity::parse(INITIATOR_ID).expect("id"),
            remote_id: Some(ippm_ike::auth::Identity::parse(RESPONDER_ID).expect("id")),
            local_auth: LocalAuth::Psk(psk.clone()),
            remote_auth: RemoteAuth::Psk(psk),
            remote_addr: None,
            proposals: IkeProposal::defaults(),
        }],
        limits: limits(0),
        ..Config::default()
    };
    let mut p = Pair::new(peer, SEED_INITIATOR, flags);
    p.dut
        .initiate(p.now, "to-a", addr(LOCAL), Some(addr(PEER)))
        .expect("initiate");
    // The roles are reversed: what the peer sends answers the engine under test.
    p.run();
    assert_eq!(p.established().len(), 1, "{:?}", p.events);
    let mut s = vec![flags];
    record(&mut s, OP_OPERATOR, &[2, 0]);
    for d in &p.sent {
        // Patch SPIi with the engine's (the same octets: it shows the fuzzer the bit).
        record(&mut s, OP_RAW | 0x80, d);
    }
    s
}

/// IKE_SA_INIT requests of `n` other initiators (a flood from one address).
fn flood(n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|k| {
            let mut e = Engine::new(
                initiator_config(0),
                Box::new(Counter::new(SEED_INITIATOR ^ (k + 1))),
            )
            .expect("engine");
            e.initiate(Instant::now(), "to-b", addr(PEER), None)
                .expect("initiate");
            e.poll_transmit().expect("INIT").data
        })
        .collect()
}

fn script(flags: u8, ops: &[(u8, &[u8])]) -> Vec<u8> {
    let mut s = vec![flags];
    for (op, d) in ops {
        record(&mut s, *op, d);
    }
    s
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/ike_engine");
    fs::create_dir_all(&dir).expect("mkdir");
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    let n = IkeProposal::defaults().len() as u8;

    // Real datagrams of a real initiator, for every default proposal: the whole exchange
    // as raw records, and (flag bit 0) the part after the replayed handshake.
    for k in 0..n {
        let flags = k << 1;
        let d = real_initiator(flags);
        seeds.push((format!("real-initiator-p{k}"), raw_seed(flags, OP_RAW, &d)));
        seeds.push((
            format!("real-after-handshake-p{k}"),
            raw_seed(flags | FLAG_ESTABLISH, OP_RAW, &d[2..]),
        ));
    }
    seeds.push(("dut-initiates".into(), dut_initiates(0)));
    seeds.push((
        "dut-initiates-tiny".into(),
        dut_initiates(FLAG_TINY_LIMITS | FLAG_TIMERS),
    ));
    let f = flood(6);
    let mut s = raw_seed(FLAG_TINY_LIMITS, OP_RAW, &f);
    record(&mut s, OP_INIT, &[0, 0]);
    record(&mut s, OP_REQUEST, &[3, 0]);
    seeds.push(("flood-cookie".into(), s));
    seeds.push((
        "flood-expire".into(),
        script(
            FLAG_TINY_LIMITS,
            &[
                (OP_RAW, &f[0]),
                (OP_RAW, &f[1]),
                (OP_TIME, &[0, 0x01, 0x40]),
                (OP_RAW, &f[2]),
                (OP_RAW | 0x08, &f[2]),
            ],
        ),
    ));

    // Scripts of the harness's ops: the harness is the peer.
    let e = FLAG_ESTABLISH;
    seeds.push((
        "harness-liveness-rekey-delete".into(),
        script(
            e,
            &[
                (OP_REQUEST, &[0, 0]),
                (OP_REQUEST, &[2, 0]),
                (OP_REQUEST | 0x10, &[0, 0]),
                (OP_REQUEST, &[1, 0]),
                (OP_REQUEST | 0x10, &[4, 0]),
                (OP_REQUEST | 0x10, &[1, 0]),
            ],
        ),
    ));
    seeds.push((
        "harness-rekey-other-proposals".into(),
        script(
            e | (2 << 1),
            &[
                (OP_REQUEST, &[2, 4]),
                (OP_REQUEST | 0x10, &[2, 6]),
                (OP_REQUEST | 0x20, &[2, 8]),
                (OP_OPERATOR | 0x30, &[3, 0]),
            ],
        ),
    ));
    seeds.push((
        "harness-init-auth".into(),
        script(
            0,
            &[
                (OP_INIT, &[0, 4]),
                (OP_REQUEST, &[3, 0]),
                (OP_REQUEST, &[0, 0]),
                (OP_INIT, &[2, 0]),
                (OP_REQUEST | 0x10, &[3, 2 | 4]),
                (OP_INIT, &[3, 0]),
                (OP_REQUEST | 0x20, &[3, 1]),
                (OP_INIT, &[5, 0]),
                (OP_REQUEST | 0x30, &[3, 8]),
            ],
        ),
    ));
    seeds.push((
        "harness-invalid-ke".into(),
        script(
            FLAG_FEW_PROPOSALS,
            &[
                // Not accepted; accepted; the second accepted with another group (INVALID_KE);
                // the same, given up.
                (OP_INIT, &[1, 0]),
                (OP_INIT, &[4, 8]),
                (OP_INIT, &[5, 8]),
                (OP_INIT, &[5, 8 | 2]),
                (OP_REQUEST, &[3, 0]),
                (OP_REQUEST | 0x10, &[3, 0]),
            ],
        ),
    ));
    seeds.push((
        "timers-liveness-rekey".into(),
        script(
            e | FLAG_TIMERS,
            &[
                (OP_TIME, &[1]),
                (OP_ANSWER, &[0]),
                (OP_TIME, &[1]),
                (OP_TIME, &[1]),
                (OP_ANSWER, &[0]),
                (OP_ANSWER | 0x10, &[0]),
                (OP_TIME, &[0, 0x10, 0x00]),
                (OP_ANSWER, &[0]),
                (OP_REQUEST | 0x10, &[1, 0]),
                (OP_TIME, &[1]),
                (OP_TIME, &[1]),
                (OP_TIME, &[1]),
                (OP_TIME, &[1]),
                (OP_TIME, &[1]),
                (OP_TIME, &[1]),
            ],
        ),
    ));
    seeds.push((
        "operator-rekey-refused-delete".into(),
        script(
            e,
            &[
                (OP_OPERATOR, &[0, 0]),
                (OP_ANSWER, &[2]),
                (OP_ANSWER, &[0]),
                (OP_OPERATOR, &[0, 0]),
                (OP_ANSWER, &[1]),
                (OP_OPERATOR, &[1, 0]),
                (OP_TIME, &[1]),
                (OP_ANSWER, &[0]),
            ],
        ),
    ));
    seeds.push((
        "sealed-window".into(),
        script(
            e,
            &[
                // An empty INFORMATIONAL at the next ID, again (a retransmission), one ahead,
                // one behind, with the wrong I bit, with the Version bit.
                (OP_SEALED_REQUEST, &[0, 0, 0]),
                (OP_SEALED_REQUEST, &[0, 1, 0]),
                (OP_SEALED_REQUEST, &[0, 2, 0]),
                (OP_SEALED_REQUEST, &[0, 0x13, 0]),
                (OP_SEALED_REQUEST, &[0, 4, 0]),
                (OP_SEALED_REQUEST, &[0, 8, 0]),
                (OP_SEALED_REQUEST, &[1, 0, 0]),
                (OP_SEALED_REQUEST, &[2, 0, 0]),
                (OP_SEALED_RESPONSE, &[0, 0, 0]),
                // A Delete payload (type 42) for the IKE SA, as a chain: next 0, flags 0,
                // length 8, protocol IKE, SPI size 0, no SPIs.
                (OP_SEALED_REQUEST, &[0, 0, 42, 0, 0, 0, 8, 1, 0, 0, 0]),
            ],
        ),
    ));
    seeds.push((
        "operator-queries-rng-failure".into(),
        script(
            e,
            &[
                (OP_OPERATOR, &[3, 0]),
                (OP_OPERATOR, &[4, 1]),
                (OP_REQUEST, &[0, 0]),
                (OP_OPERATOR, &[4, 3]),
                (OP_REQUEST, &[2, 0]),
                (OP_OPERATOR, &[2, 1]),
                (OP_TIME, &[1]),
            ],
        ),
    ));

    for (name, s) in &seeds {
        fs::write(dir.join(name), s).expect("write");
    }
    println!("ike_engine {}", seeds.len());
}
