//! What the `ike_engine` fuzz target and its seed generator (seeds/make_ike_engine_seeds.rs)
//! share: the deterministic randomness, the two engines' configurations, the addresses and
//! the layout of a fuzz input.
//!
//! Input layout: one flags octet, then records `op (1) | length (2, big endian) | data`
//! until the input ends (a short last record takes what is left).
//!
//! Flags:
//! * bit 0: first replay a real initiator engine's IKE_SA_INIT and IKE_AUTH into the
//!   responder, so an IKE SA is established whose keys the harness knows;
//! * bits 1-4: which of [`IkeProposal::defaults`] that initiator offers (modulo their number);
//! * bit 5: tiny limits (cookie threshold 1, 3 half-open, 2 established);
//! * bit 6: short timers (rekey after 300 s, liveness check after 30 s of silence);
//! * bit 7: the responder accepts only two proposals (x25519 and ecp256 with AES-CBC-128), so
//!   the harness's own IKE_SA_INITs meet INVALID_KE_PAYLOAD and NO_PROPOSAL_CHOSEN.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ippm_ike::auth::Identity;
use ippm_ike::config::{Config, Connection, Limits, LocalAuth, Psk, RemoteAuth};
use ippm_ike::engine::{Random, RandomError};
use ippm_ike::proposal::IkeProposal;

/// The responder (the engine under test).
pub const LOCAL: &str = "192.0.2.1:500";
/// The peer every datagram comes from, unless a record says otherwise.
pub const PEER: &str = "192.0.2.2:500";
/// Another source: the same host from another port (a NAT rebinding, or an attacker).
pub const PEER2: &str = "192.0.2.2:4500";

pub const PSK: &[u8] = b"fuzzing secret";
pub const INITIATOR_ID: &str = "a.example";
pub const RESPONDER_ID: &str = "b.example";
/// A second connection, with an address identity and another key.
pub const OTHER_ID: &str = "192.0.2.7";
pub const OTHER_PSK: &[u8] = b"other secret";

/// Seeds of the three generators: the real initiator, the responder, the harness.
pub const SEED_INITIATOR: u64 = 0x1111_2222_3333_4444;
pub const SEED_RESPONDER: u64 = 0x5555_6666_7777_8888;
pub const SEED_HARNESS: u64 = 0x9999_aaaa_bbbb_cccc;

pub const FLAG_ESTABLISH: u8 = 0x01;
pub const FLAG_TINY_LIMITS: u8 = 0x20;
pub const FLAG_TIMERS: u8 = 0x40;
pub const FLAG_FEW_PROPOSALS: u8 = 0x80;

/// Record op codes (the op octet modulo [`OPS`]; the high bits are the op's own flags).
/// An arbitrary datagram. Op bit 7: overwrite its first 16 octets with the SPIs of a known
/// IKE SA (bits 4-6 pick which), bit 6: and its Message ID with that SA's next one; bit 3:
/// send it from [`PEER2`].
pub const OP_RAW: u8 = 0;
/// A request sealed with a known SA's keys: `exchange | id mode | first payload | chain`
/// (the chain as parsed by `parse_chain`; if it does not parse, no payloads). Bits 4-6
/// pick the SA.
pub const OP_SEALED_REQUEST: u8 = 1;
/// A response sealed with a known SA's keys to the engine's latest request on it, same
/// data layout.
pub const OP_SEALED_RESPONSE: u8 = 2;
/// Time passes: `mode | 2 octets`: mode bit 0 jumps to the engine's next timeout, else
/// the clock moves by the two octets times 100 ms; then `handle_timeout`.
pub const OP_TIME: u8 = 3;
/// A well-formed request on a known SA: `kind | arg`: 0 liveness check, 1 delete the IKE
/// SA, 2 rekey it (proposal `arg`), 3 the IKE_AUTH of a harness-made SA (PSK; arg bit 0:
/// wrong key, bit 1: no IDr, bit 2: propose a Child SA, bit 3: the other connection's
/// identity), 4 delete a Child SA.
pub const OP_REQUEST: u8 = 4;
/// A well-formed answer to the engine's latest request on a known SA (empty, or a rekey
/// answer with fresh keys when it is a rekey): `arg` bit 0: refuse the rekey
/// (NO_PROPOSAL_CHOSEN), bit 1: answer INVALID_KE_PAYLOAD.
pub const OP_ANSWER: u8 = 5;
/// A harness-made IKE_SA_INIT request: `proposal | flags` (bit 0: ignore a COOKIE, bit 1:
/// ignore INVALID_KE_PAYLOAD, bit 2: send the SIGNATURE_HASH_ALGORITHMS notify, bit 3: offer
/// a second proposal, `proposal + 4`; the KE payload is of the first one's group).
pub const OP_INIT: u8 = 6;
/// The operator: `kind | arg`: 0 rekey a known SA, 1 delete it, 2 initiate to the peer
/// (the responder's connection has no address; the peer then answers with raw
/// datagrams), 3 query list/find/secrets, 4 make the next `arg % 4` random fills fail.
pub const OP_OPERATOR: u8 = 7;
pub const OPS: u8 = 8;

/// SplitMix64: a counter-based generator, so runs are reproducible. `fail` (shared with
/// the harness) makes that many upcoming fills fail; `log` records every fill.
pub struct Counter {
    state: u64,
    pub fail: Arc<AtomicU32>,
    pub log: Option<Arc<Mutex<Vec<Vec<u8>>>>>,
}

impl Counter {
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed,
            fail: Arc::new(AtomicU32::new(0)),
            log: None,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill_octets(&mut v);
        v
    }

    fn fill_octets(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let x = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&x[..chunk.len()]);
        }
    }
}

impl Random for Counter {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), RandomError> {
        if self
            .fail
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(RandomError);
        }
        self.fill_octets(buf);
        if let Some(log) = &self.log {
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(buf.to_vec());
        }
        Ok(())
    }
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn id(s: &str) -> Identity {
    Identity::parse(s).expect("identity")
}

fn psk_conn(name: &str, local: &str, remote: &str, key: &[u8], to: Option<&str>) -> Connection {
    let psk = Psk::new(key.to_vec());
    Connection {
        name: name.into(),
        local_id: id(local),
        remote_id: Some(id(remote)),
        local_auth: LocalAuth::Psk(psk.clone()),
        remote_auth: RemoteAuth::Psk(psk),
        remote_addr: to.map(addr),
        proposals: IkeProposal::defaults(),
    }
}

/// The proposal the real initiator offers (flags bits 1-4).
pub fn initiator_proposal(flags: u8) -> IkeProposal {
    let d = IkeProposal::defaults();
    d[usize::from((flags >> 1) & 0x0f) % d.len()]
}

/// The responder's proposals (flags bit 7).
pub fn responder_proposals(flags: u8) -> Vec<IkeProposal> {
    let d = IkeProposal::defaults();
    if flags & FLAG_FEW_PROPOSALS != 0 {
        vec![d[0], d[4]]
    } else {
        d
    }
}

/// Whether the real initiator's handshake can run under these flags.
pub fn can_establish(flags: u8) -> bool {
    flags & FLAG_ESTABLISH != 0 && responder_proposals(flags).contains(&initiator_proposal(flags))
}

pub fn limits(flags: u8) -> Limits {
    let mut l = Limits {
        rekey_time: None,
        dpd_delay: None,
        ..Limits::default()
    };
    if flags & FLAG_TINY_LIMITS != 0 {
        // The first IKE_SA_INIT needs no cookie, so the real handshake runs unchanged.
        l.cookie_threshold = 1;
        l.half_open_max = 3;
        l.established_max = 2;
    }
    if flags & FLAG_TIMERS != 0 {
        l.rekey_time = Some(Duration::from_secs(300));
        l.dpd_delay = Some(Duration::from_secs(30));
    }
    l
}

/// The engine under test: a responder for two connections.
pub fn responder_config(flags: u8) -> Config {
    Config {
        connections: vec![
            psk_conn("to-a", RESPONDER_ID, INITIATOR_ID, PSK, None),
            psk_conn("other", RESPONDER_ID, OTHER_ID, OTHER_PSK, None),
        ],
        proposals: responder_proposals(flags),
        limits: limits(flags),
    }
}

/// The real initiator whose handshake is replayed.
pub fn initiator_config(flags: u8) -> Config {
    let mut c = psk_conn("to-b", INITIATOR_ID, RESPONDER_ID, PSK, Some(LOCAL));
    c.proposals = vec![initiator_proposal(flags)];
    Config {
        connections: vec![c],
        limits: limits(0),
        ..Config::default()
    }
}

/// Appends a record.
pub fn record(out: &mut Vec<u8>, op: u8, data: &[u8]) {
    out.push(op);
    let len = u16::try_from(data.len()).expect("record fits");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
}
