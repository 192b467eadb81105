//! The IKEv2 engine as a responder under a scripted, partly hostile peer: arbitrary
//! datagrams, and datagrams the harness seals with the keys of IKE SAs it set up itself, so
//! the encrypted exchanges, the Message ID window, rekeys, deletes and the timers are all
//! reached. Randomness is deterministic (fuzz_targets/ike_engine_common.rs), so a crash
//! replays.
//!
//! The input layout and the record ops are described in ike_engine_common.rs. The harness
//! plays the peer: it replays a real initiator engine's IKE_SA_INIT and IKE_AUTH (flag bit
//! 0), makes its own IKE_SA_INITs and IKE_AUTHs, rekeys (RFC 7296 §2.18) and answers the
//! engine's requests, deriving every key itself (§2.14), and lets the input choose between
//! well-formed and arbitrary payloads, Message IDs and SPIs.
//!
//! Invariants besides "no panic":
//! * every datagram the engine sends parses, goes from LOCAL to the peer it came from, and,
//!   on an IKE SA whose keys the harness knows, opens under those keys with the right I bit;
//! * half-open IKE SAs never exceed `half_open_max`, and all IKE SAs never exceed
//!   `established_max + half_open_max` plus the rekeys the peer may leave undeleted (see
//!   [`check`]);
//! * after `handle_timeout(now)`, `poll_timeout()` is later than `now` (a driver that sleeps
//!   until then does not spin);
//! * an established IKE SA's RFC 7717 secret is `prf(SK_d, "IPPM")` of the keys the harness
//!   derived;
//! * when the engine answers the harness's IKE_SA_INIT, it chose a proposal offered, of the
//!   KE payload's group, and INVALID_KE_PAYLOAD names the group of a proposal offered.
#![no_main]

#[path = "ike_engine_common.rs"]
mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use ippm_ike::auth::{self, Identity};
use ippm_ike::codepoints::{AuthMethod, ExchangeType, NotifyType, PayloadType, ProtocolId};
use ippm_ike::dh::{DhGroup, DhPrivate};
use ippm_ike::engine::{Engine, Event, Spis};
use ippm_ike::keys::Prf;
use ippm_ike::message::{Flags, Header, Proposal, parse_chain};
use ippm_ike::proposal::IkeProposal;
use ippm_ike::sk::{self, SkKeys, Suite};
use ippm_ike::{Message, Payload};
use libfuzzer_sys::fuzz_target;

/// Records handled per input.
const MAX_RECORDS: usize = 256;
/// Diffie-Hellman computations of the harness per input (MODP is slow).
const MAX_DH: u32 = 24;
/// IKE SAs the harness keeps keys for.
const MAX_KNOWN: usize = 16;

/// An IKE SA's keys as the harness derives them.
#[derive(Clone)]
struct Keys {
    prf: Prf,
    d: Vec<u8>,
    ai: Vec<u8>,
    ar: Vec<u8>,
    ei: Vec<u8>,
    er: Vec<u8>,
    pi: Vec<u8>,
}

/// `{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi |
/// SPIr)`, prf+ run with `plus` (the old SA's PRF when rekeying), lengths those of `prf`.
fn expand(
    plus: Prf,
    prf: Prf,
    skeyseed: &[u8],
    ni: &[u8],
    nr: &[u8],
    s: Spis,
    suite: Suite,
) -> Keys {
    let l = suite.key_lengths();
    let p = prf.output_len();
    let seed = [ni, nr, &s.i, &s.r].concat();
    let km = plus
        .prf_plus(skeyseed, &seed, 3 * p + 2 * l.integ + 2 * l.encr)
        .expect("prf+ length");
    let mut at = 0;
    let mut take = |n: usize| {
        at += n;
        km[at - n..at].to_vec()
    };
    Keys {
        prf,
        d: take(p),
        ai: take(l.integ),
        ar: take(l.integ),
        ei: take(l.encr),
        er: take(l.encr),
        pi: take(p),
    }
}

/// RFC 7296 §2.14.
fn derive_initial(p: IkeProposal, ni: &[u8], nr: &[u8], g_ir: &[u8], s: Spis) -> Keys {
    let skeyseed = p.prf.prf(&[ni, nr].concat(), g_ir);
    expand(p.prf, p.prf, &skeyseed, ni, nr, s, p.suite())
}

/// RFC 7296 §2.18: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr).
fn derive_rekey(old: &Keys, p: IkeProposal, ni: &[u8], nr: &[u8], g_ir: &[u8], s: Spis) -> Keys {
    let skeyseed = old.prf.prf(&old.d, &[g_ir, ni, nr].concat());
    expand(old.prf, p.prf, &skeyseed, ni, nr, s, p.suite())
}

fn sk_keys(suite: Suite, e: &[u8], a: &[u8]) -> SkKeys {
    SkKeys::new(suite, e, a).expect("derived key lengths fit the suite")
}

struct PendingRekey {
    id: u32,
    spi_i: [u8; 8],
    ni: Vec<u8>,
    dh: DhPrivate,
}

/// An IKE SA as the peer sees it.
struct PeerSa {
    spis: Spis,
    /// Whether the harness is the SA's original initiator.
    we_initiator: bool,
    keys: Keys,
    out: SkKeys,
    inb: SkKeys,
    /// Message ID of our next request.
    next_id: u32,
    /// The engine's latest request on this SA.
    engine_req: Option<(u32, ExchangeType, Vec<Payload>)>,
    /// A harness-made SA before IKE_AUTH: our IKE_SA_INIT request and Nr.
    auth: Option<(Vec<u8>, Vec<u8>)>,
    rekey: Option<PendingRekey>,
}

impl PeerSa {
    fn new(spis: Spis, we_initiator: bool, p: IkeProposal, keys: Keys, next_id: u32) -> Self {
        let i = sk_keys(p.suite(), &keys.ei, &keys.ai);
        let r = sk_keys(p.suite(), &keys.er, &keys.ar);
        let (out, inb) = if we_initiator { (i, r) } else { (r, i) };
        Self {
            spis,
            we_initiator,
            keys,
            out,
            inb,
            next_id,
            engine_req: None,
            auth: None,
            rekey: None,
        }
    }

    fn header(&self, exchange: ExchangeType, response: bool, id: u32) -> Header {
        let mut f = 0;
        if self.we_initiator {
            f |= Flags::INITIATOR;
        }
        if response {
            f |= Flags::RESPONSE;
        }
        Header {
            spi_i: self.spis.i,
            spi_r: self.spis.r,
            exchange,
            flags: Flags(f),
            message_id: id,
        }
    }
}

/// A real initiator engine's handshake with the responder, and the keys behind it.
struct Transcript {
    init_req: Vec<u8>,
    init_resp: Vec<u8>,
    auth_req: Vec<u8>,
    auth_resp: Vec<u8>,
    spis: Spis,
    proposal: IkeProposal,
    keys: Keys,
}

fn payloads_of(data: &[u8]) -> Vec<Payload> {
    Message::parse(data).expect("handshake message").payloads
}

fn nonce_of(p: &[Payload]) -> Option<&[u8]> {
    p.iter().find_map(|x| match x {
        Payload::Nonce(n) => Some(n.as_slice()),
        _ => None,
    })
}

fn ke_of(p: &[Payload]) -> Option<(u16, &[u8])> {
    p.iter().find_map(|x| match x {
        Payload::Ke { group, data } => Some((*group, data.as_slice())),
        _ => None,
    })
}

fn sa_of(p: &[Payload]) -> Option<&[Proposal]> {
    p.iter().find_map(|x| match x {
        Payload::Sa(v) => Some(v.as_slice()),
        _ => None,
    })
}

fn notify_of(p: &[Payload], ty: NotifyType) -> Option<&[u8]> {
    p.iter().find_map(|x| match x {
        Payload::Notify { ty: t, data, .. } if *t == ty => Some(data.as_slice()),
        _ => None,
    })
}

fn notify(ty: NotifyType, data: Vec<u8>) -> Payload {
    Payload::Notify {
        protocol: ProtocolId(0),
        spi: Vec::new(),
        ty,
        data,
    }
}

fn id_payload(initiator: bool, id: &Identity) -> Payload {
    let (ty, data) = id.to_payload();
    Payload::Id {
        initiator,
        ty,
        data,
    }
}

/// Runs the real initiator against the responder once per proposal. The initiator's
/// randomness is recorded, and its Diffie-Hellman secret found by the public value it sent,
/// so the harness does not depend on the order the engine draws randomness in.
fn make_transcript(flags: u8) -> Transcript {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut ri = Counter::new(SEED_INITIATOR);
    ri.log = Some(log.clone());
    let mut a = Engine::new(initiator_config(flags), Box::new(ri)).expect("initiator");
    let mut b = Engine::new(
        responder_config(flags),
        Box::new(Counter::new(SEED_RESPONDER)),
    )
    .expect("responder");
    let now = Instant::now();
    let wall = SystemTime::now();
    let spis = a.initiate(now, "to-b", addr(PEER), None).expect("initiate");
    let pass = |from: &mut Engine, to: &mut Engine, src: &str, dst: &str| {
        let t = from.poll_transmit().expect("a message");
        to.handle_datagram(now, wall, addr(dst), addr(src), &t.data);
        t.data
    };
    let init_req = pass(&mut a, &mut b, PEER, LOCAL);
    let init_resp = pass(&mut b, &mut a, LOCAL, PEER);
    let auth_req = pass(&mut a, &mut b, PEER, LOCAL);
    let auth_resp = pass(&mut b, &mut a, LOCAL, PEER);
    let up = |e: &mut Engine| {
        std::iter::from_fn(|| e.poll_event())
            .find_map(|e| match e {
                Event::Established { spis, .. } => Some(spis),
                _ => None,
            })
            .expect("the real handshake establishes an IKE SA")
    };
    let spis_b = up(&mut b);
    assert_eq!(up(&mut a), spis_b);
    assert_eq!(spis_b.i, spis.i);

    let proposal = initiator_proposal(flags);
    let group = proposal.dh;
    let req = payloads_of(&init_req);
    let resp = payloads_of(&init_resp);
    let (ni, (_, ke_i)) = (nonce_of(&req).expect("Ni"), ke_of(&req).expect("KEi"));
    let (nr, (_, ke_r)) = (nonce_of(&resp).expect("Nr"), ke_of(&resp).expect("KEr"));
    let fills = log.lock().expect("log").clone();
    let dh = fills
        .iter()
        .filter(|f| f.len() == group.secret_len())
        .filter_map(|f| DhPrivate::from_random(group, f).ok())
        .find(|k| k.public() == ke_i)
        .expect("the initiator's DH secret is among its random fills");
    let g_ir = dh.shared(ke_r).expect("g^ir");
    let keys = derive_initial(proposal, ni, nr, &g_ir, spis_b);
    let sa = PeerSa::new(spis_b, true, proposal, keys.clone(), 2);
    assert!(
        sk::open(&sa.out, &auth_req).is_ok() && sk::open(&sa.inb, &auth_resp).is_ok(),
        "harness: the keys it derives do not open the real IKE_AUTH"
    );
    assert_eq!(
        b.ippm_secret(spis_b, None, now)
            .as_deref()
            .map(|s| s.to_vec()),
        Some(keys.prf.prf(&keys.d, b"IPPM").to_vec())
    );
    Transcript {
        init_req,
        init_resp,
        auth_req,
        auth_resp,
        spis: spis_b,
        proposal,
        keys,
    }
}

fn transcript(flags: u8) -> &'static Transcript {
    static T: [OnceLock<Transcript>; 16] = [const { OnceLock::new() }; 16];
    // Only the proposal matters: limits, timers and the responder's own proposal list do
    // not change a single octet of the handshake (checked at each replay).
    let i = usize::from((flags >> 1) & 0x0f) % IkeProposal::defaults().len();
    T[i].get_or_init(|| make_transcript(flags & 0x1e))
}

struct Harness {
    eng: Engine,
    now: Instant,
    wall: SystemTime,
    /// The harness's own randomness (SPIs, nonces, IVs, DH secrets).
    rng: Counter,
    /// Makes the engine's random fills fail.
    fail: Arc<std::sync::atomic::AtomicU32>,
    sas: Vec<PeerSa>,
    /// SPIi of IKE SAs the engine initiated (raw datagrams may answer them).
    targets: Vec<[u8; 8]>,
    /// The harness's IKE_SA_INIT in flight, and the engine's answer to it.
    init_spi: Option<[u8; 8]>,
    init_answer: Option<Vec<u8>>,
    dh_budget: u32,
    /// CREATE_CHILD_SA messages the engine sent (its rekey requests and its answers to
    /// ours), a bound on the IKE SAs rekeys made: each may leave an old IKE SA that stays
    /// until the peer deletes it, which a peer need not do. Not the `Rekeyed` events: the
    /// new SAs of crossing rekeys (§2.8.2) are announced only once one survives, and a
    /// redundant one is never announced.
    rekeys: usize,
}

impl Harness {
    fn new(flags: u8) -> Self {
        let rng = Counter::new(SEED_RESPONDER);
        let fail = rng.fail.clone();
        let eng = Engine::new(responder_config(flags), Box::new(rng)).expect("engine");
        let mut h = Self {
            eng,
            now: Instant::now(),
            wall: SystemTime::now(),
            rng: Counter::new(SEED_HARNESS),
            fail,
            sas: Vec::new(),
            targets: Vec::new(),
            init_spi: None,
            init_answer: None,
            dh_budget: MAX_DH,
            rekeys: 0,
        };
        if can_establish(flags) {
            let t = transcript(flags);
            for (req, resp) in [(&t.init_req, &t.init_resp), (&t.auth_req, &t.auth_resp)] {
                h.eng
                    .handle_datagram(h.now, h.wall, addr(LOCAL), addr(PEER), req);
                let got = h.eng.poll_transmit().expect("the replay is answered");
                assert_eq!(&got.data, resp, "harness: the replayed handshake diverged");
            }
            while h.eng.poll_event().is_some() {}
            h.sas
                .push(PeerSa::new(t.spis, true, t.proposal, t.keys.clone(), 2));
        }
        h
    }

    fn dh(&mut self, group: DhGroup) -> Option<DhPrivate> {
        self.dh_budget = self.dh_budget.checked_sub(1)?;
        (0..8).find_map(|_| DhPrivate::from_random(group, &self.rng.bytes(group.secret_len())).ok())
    }

    fn pick(&self, op: u8) -> Option<usize> {
        (!self.sas.is_empty()).then(|| usize::from(op >> 4 & 7) % self.sas.len())
    }

    fn deliver(&mut self, from: &str, data: &[u8]) {
        self.eng
            .handle_datagram(self.now, self.wall, addr(LOCAL), addr(from), data);
        self.drain();
    }

    fn send_sealed(
        &mut self,
        i: usize,
        exchange: ExchangeType,
        response: bool,
        id: u32,
        inner: &[Payload],
        flip: u8,
    ) {
        let sa = &self.sas[i];
        let mut h = sa.header(exchange, response, id);
        h.flags.0 ^= flip;
        let iv = self.rng.bytes(sa.out.iv_len());
        if let Ok(d) = sk::seal(&sa.out, &h, &[], inner, &iv) {
            self.deliver(PEER, &d);
        }
    }

    fn request(&mut self, i: usize, exchange: ExchangeType, inner: &[Payload]) -> u32 {
        let id = self.sas[i].next_id;
        self.send_sealed(i, exchange, false, id, inner, 0);
        id
    }

    /// What the engine sends: checked, and remembered as the peer would.
    fn drain(&mut self) {
        while let Some(t) = self.eng.poll_transmit() {
            assert_eq!(t.local, addr(LOCAL));
            assert!(t.remote == addr(PEER) || t.remote == addr(PEER2), "{t:?}");
            let m = Message::parse(&t.data).expect("the engine's datagrams parse");
            self.sent(&t.data, &m);
        }
        while self.eng.poll_event().is_some() {}
    }

    fn sent(&mut self, data: &[u8], m: &Message) {
        let h = m.header;
        if h.exchange == ExchangeType::CREATE_CHILD_SA {
            self.rekeys += 1;
        }
        if h.exchange == ExchangeType::IKE_SA_INIT {
            if !h.flags.response() {
                if !self.targets.contains(&h.spi_i) && self.targets.len() < MAX_KNOWN {
                    self.targets.push(h.spi_i);
                }
            } else if self.init_spi == Some(h.spi_i) {
                self.init_answer = Some(data.to_vec());
            }
            return;
        }
        let Some(i) = self
            .sas
            .iter()
            .position(|s| s.spis.i == h.spi_i && s.spis.r == h.spi_r)
        else {
            return;
        };
        let sa = &mut self.sas[i];
        assert_eq!(
            h.flags.initiator(),
            !sa.we_initiator,
            "the engine's I bit on {:?}",
            sa.spis
        );
        let opened = match sk::open(&sa.inb, data) {
            Ok(o) => o,
            Err(e) => panic!(
                "the engine's {:?} on {:?} does not open under the derived keys: {e}",
                h.exchange, sa.spis
            ),
        };
        if !h.flags.response() {
            sa.engine_req = Some((h.message_id, h.exchange, opened.inner));
            return;
        }
        if h.message_id == sa.next_id {
            sa.next_id = sa.next_id.wrapping_add(1);
        }
        if h.message_id == 1 {
            sa.auth = None;
        }
        if sa.rekey.as_ref().is_some_and(|r| r.id == h.message_id)
            && let Some(r) = sa.rekey.take()
        {
            self.rekey_done(i, r, &opened.inner);
        }
    }

    /// The engine answered our rekey request.
    fn rekey_done(&mut self, i: usize, r: PendingRekey, p: &[Payload]) {
        let (Some([chosen]), Some(nr), Some((_, ke))) = (sa_of(p), nonce_of(p), ke_of(p)) else {
            return;
        };
        let Some(prop) = IkeProposal::from_selected(chosen) else {
            return;
        };
        let (Ok(spi_r), Ok(g_ir)) = (chosen.spi.as_slice().try_into(), r.dh.shared(ke)) else {
            return;
        };
        let spis = Spis {
            i: r.spi_i,
            r: spi_r,
        };
        let keys = derive_rekey(&self.sas[i].keys, prop, &r.ni, nr, &g_ir, spis);
        if self.sas.len() < MAX_KNOWN {
            self.sas.push(PeerSa::new(spis, true, prop, keys, 0));
        }
    }

    fn op_raw(&mut self, op: u8, data: &[u8]) {
        let mut d = data.to_vec();
        let n = self.sas.len() + self.targets.len();
        if op & 0x80 != 0 && d.len() >= 16 && n > 0 {
            let k = usize::from(op >> 4 & 7) % n;
            if let Some(sa) = self.sas.get(k) {
                d[..8].copy_from_slice(&sa.spis.i);
                d[8..16].copy_from_slice(&sa.spis.r);
                if op & 0x40 != 0 && d.len() >= 24 {
                    d[20..24].copy_from_slice(&sa.next_id.to_be_bytes());
                }
            } else {
                d[..8].copy_from_slice(&self.targets[k - self.sas.len()]);
            }
        }
        self.deliver(if op & 0x08 != 0 { PEER2 } else { PEER }, &d);
    }

    fn op_sealed(&mut self, op: u8, data: &[u8], response: bool) {
        let Some(i) = self.pick(op) else {
            return;
        };
        let at = |k: usize| data.get(k).copied().unwrap_or(0);
        let (ex, mode, first) = (at(0), at(1), at(2));
        let exchange = match ex {
            0..=63 => [
                ExchangeType::INFORMATIONAL,
                ExchangeType::CREATE_CHILD_SA,
                ExchangeType::IKE_AUTH,
                ExchangeType::IKE_SA_INIT,
            ][usize::from(ex % 4)],
            v => ExchangeType(v),
        };
        let inner =
            parse_chain(PayloadType(first), data.get(3..).unwrap_or_default()).unwrap_or_default();
        let sa = &self.sas[i];
        let base = if response {
            sa.engine_req.as_ref().map_or(0, |r| r.0)
        } else {
            sa.next_id
        };
        let id = match mode & 3 {
            0 => base,
            1 => base.wrapping_sub(1),
            2 => base.wrapping_add(1),
            _ => u32::from(mode >> 4),
        };
        // Mode bit 2: the wrong I bit; bit 3: the Version bit.
        let flip = (if mode & 4 != 0 { Flags::INITIATOR } else { 0 })
            | (if mode & 8 != 0 { Flags::VERSION } else { 0 });
        self.send_sealed(i, exchange, response, id, &inner, flip);
    }

    fn op_time(&mut self, data: &[u8]) {
        let mode = data.first().copied().unwrap_or(0);
        if mode & 1 != 0 {
            if let Some(t) = self.eng.poll_timeout() {
                self.now = self.now.max(t);
            }
        } else {
            let v = u16::from_be_bytes([
                data.get(1).copied().unwrap_or(0),
                data.get(2).copied().unwrap_or(0),
            ]);
            self.now += Duration::from_millis(u64::from(v) * 100);
        }
        self.eng.handle_timeout(self.now);
        if let Some(t) = self.eng.poll_timeout() {
            assert!(
                t > self.now,
                "poll_timeout is {:?} before the handle_timeout that just ran",
                self.now - t
            );
        }
        self.drain();
    }

    fn op_request(&mut self, op: u8, data: &[u8]) {
        let Some(i) = self.pick(op) else {
            return;
        };
        let kind = data.first().copied().unwrap_or(0) % 5;
        let arg = data.get(1).copied().unwrap_or(0);
        match kind {
            0 => {
                self.request(i, ExchangeType::INFORMATIONAL, &[]);
            }
            1 => {
                let d = Payload::Delete {
                    protocol: ProtocolId::IKE,
                    spi_size: 0,
                    spis: Vec::new(),
                };
                self.request(i, ExchangeType::INFORMATIONAL, &[d]);
            }
            2 => {
                let d = IkeProposal::defaults();
                let p = d[usize::from(arg) % d.len()];
                let Some(dh) = self.dh(p.dh) else {
                    return;
                };
                let spi_i: [u8; 8] = self.rng.bytes(8).try_into().expect("8");
                let ni = self.rng.bytes(32);
                let inner = [
                    Payload::Sa(vec![p.to_wire(1, &spi_i)]),
                    Payload::Nonce(ni.clone()),
                    Payload::Ke {
                        group: p.dh.id(),
                        data: dh.public(),
                    },
                ];
                // Recorded before sending: the answer arrives while it is delivered.
                let id = self.sas[i].next_id;
                self.sas[i].rekey = Some(PendingRekey { id, spi_i, ni, dh });
                self.request(i, ExchangeType::CREATE_CHILD_SA, &inner);
            }
            3 => {
                let Some((own_init, nr)) = self.sas[i].auth.clone() else {
                    return;
                };
                let other = arg & 8 != 0;
                let idi =
                    Identity::parse(if other { OTHER_ID } else { INITIATOR_ID }).expect("identity");
                let psk: &[u8] = match (arg & 1 != 0, other) {
                    (true, _) => b"wrong",
                    (false, true) => OTHER_PSK,
                    (false, false) => PSK,
                };
                let k = &self.sas[i].keys;
                let octets = auth::signed_octets(k.prf, &own_init, &nr, &k.pi, &idi);
                let mut inner = vec![id_payload(true, &idi)];
                if arg & 2 == 0 {
                    inner.push(id_payload(
                        false,
                        &Identity::parse(RESPONDER_ID).expect("identity"),
                    ));
                }
                inner.push(Payload::Auth {
                    method: AuthMethod::PSK,
                    data: auth::psk_auth(k.prf, psk, &octets).to_vec(),
                });
                if arg & 4 != 0 {
                    let mut child = IkeProposal::defaults()[0].to_wire(1, &[1, 2, 3, 4]);
                    child.protocol = ProtocolId::ESP;
                    inner.push(Payload::Sa(vec![child]));
                }
                inner.push(notify(NotifyType::INITIAL_CONTACT, Vec::new()));
                self.request(i, ExchangeType::IKE_AUTH, &inner);
            }
            _ => {
                let d = Payload::Delete {
                    protocol: ProtocolId::ESP,
                    spi_size: 4,
                    spis: vec![vec![1, 2, 3, 4], arg.to_be_bytes().repeat(4)],
                };
                self.request(i, ExchangeType::INFORMATIONAL, &[d]);
            }
        }
    }

    fn op_answer(&mut self, op: u8, data: &[u8]) {
        let Some(i) = self.pick(op) else {
            return;
        };
        let Some((id, exchange, req)) = self.sas[i].engine_req.take() else {
            return;
        };
        let arg = data.first().copied().unwrap_or(0);
        let mut inner = Vec::new();
        let ike_props: Vec<&Proposal> = sa_of(&req)
            .unwrap_or_default()
            .iter()
            .filter(|p| p.protocol == ProtocolId::IKE)
            .collect();
        if exchange == ExchangeType::CREATE_CHILD_SA && !ike_props.is_empty() {
            let ke = ke_of(&req);
            let ni = nonce_of(&req);
            let chosen = ike_props.iter().find_map(|p| {
                let ip = IkeProposal::from_selected(p)?;
                (Some(ip.dh.id()) == ke.map(|k| k.0)).then_some((p.num, p.spi.clone(), ip))
            });
            if arg & 2 != 0 {
                let g = ike_props
                    .iter()
                    .rev()
                    .find_map(|p| IkeProposal::from_selected(p))
                    .map_or(DhGroup::Curve25519.id(), |p| p.dh.id());
                inner.push(notify(
                    NotifyType::INVALID_KE_PAYLOAD,
                    g.to_be_bytes().to_vec(),
                ));
            } else if let (false, Some((num, spi, p)), Some((_, ke)), Some(ni)) =
                (arg & 1 != 0, chosen, ke, ni)
            {
                let (ke, ni) = (ke.to_vec(), ni.to_vec());
                let Some(dh) = self.dh(p.dh) else {
                    return;
                };
                let (Ok(spi_i), Ok(g_ir)) = (<[u8; 8]>::try_from(spi.as_slice()), dh.shared(&ke))
                else {
                    return;
                };
                let spi_r: [u8; 8] = self.rng.bytes(8).try_into().expect("8");
                let nr = self.rng.bytes(32);
                let spis = Spis { i: spi_i, r: spi_r };
                let keys = derive_rekey(&self.sas[i].keys, p, &ni, &nr, &g_ir, spis);
                inner = vec![
                    Payload::Sa(vec![p.to_wire(num, &spi_r)]),
                    Payload::Nonce(nr),
                    Payload::Ke {
                        group: p.dh.id(),
                        data: dh.public(),
                    },
                ];
                if self.sas.len() < MAX_KNOWN {
                    // The engine initiated the rekey: it is the new SA's original initiator.
                    self.sas.push(PeerSa::new(spis, false, p, keys, 0));
                }
            } else {
                inner.push(notify(NotifyType::NO_PROPOSAL_CHOSEN, Vec::new()));
            }
        }
        self.send_sealed(i, exchange, true, id, &inner, 0);
    }

    fn op_init(&mut self, data: &[u8]) {
        let d = IkeProposal::defaults();
        let first = usize::from(data.first().copied().unwrap_or(0));
        let f = data.get(1).copied().unwrap_or(0);
        // Flag bit 3: a second proposal, so the KE payload may be of the wrong group.
        let mut offered = vec![d[first % d.len()]];
        if f & 8 != 0 {
            offered.push(d[(first + 4) % d.len()]);
        }
        let mut group = offered[0].dh;
        let spi_i: [u8; 8] = self.rng.bytes(8).try_into().expect("8");
        let ni = self.rng.bytes(32);
        let Some(mut dh) = self.dh(group) else {
            return;
        };
        let mut cookie = None;
        for _ in 0..3 {
            let mut payloads = Vec::new();
            if let Some(c) = &cookie {
                payloads.push(notify(NotifyType::COOKIE, Vec::clone(c)));
            }
            let props = offered.iter().zip(1..).map(|(p, n)| p.to_wire(n, &[]));
            payloads.extend([
                Payload::Sa(props.collect()),
                Payload::Ke {
                    group: group.id(),
                    data: dh.public(),
                },
                Payload::Nonce(ni.clone()),
                notify(NotifyType::CHILDLESS_IKEV2_SUPPORTED, Vec::new()),
            ]);
            if f & 4 != 0 {
                payloads.push(notify(
                    NotifyType::SIGNATURE_HASH_ALGORITHMS,
                    auth::hash_algorithms_notify_data(),
                ));
            }
            let header = Header {
                spi_i,
                spi_r: [0; 8],
                exchange: ExchangeType::IKE_SA_INIT,
                flags: Flags(Flags::INITIATOR),
                message_id: 0,
            };
            let Ok(req) = (Message { header, payloads }).emit() else {
                return;
            };
            self.init_spi = Some(spi_i);
            self.init_answer = None;
            self.deliver(PEER, &req);
            self.init_spi = None;
            let Some(resp) = self.init_answer.take() else {
                return;
            };
            let m = Message::parse(&resp).expect("checked in drain");
            let rp = &m.payloads;
            if let Some(c) = notify_of(rp, NotifyType::COOKIE) {
                if f & 1 != 0 {
                    return;
                }
                cookie = Some(c.to_vec());
                continue;
            }
            if let Some(g) = notify_of(rp, NotifyType::INVALID_KE_PAYLOAD) {
                let g = <[u8; 2]>::try_from(g).ok().map(u16::from_be_bytes);
                let Some(q) = offered.iter().find(|q| Some(q.dh.id()) == g) else {
                    // The engine asked for a group of no proposal offered.
                    panic!("INVALID_KE_PAYLOAD asks for {g:?}, not offered in {offered:?}");
                };
                if f & 2 != 0 {
                    return;
                }
                group = q.dh;
                let Some(k) = self.dh(group) else {
                    return;
                };
                dh = k;
                continue;
            }
            let (Some([chosen]), Some(nr), Some((_, ke))) = (sa_of(rp), nonce_of(rp), ke_of(rp))
            else {
                return;
            };
            let p = IkeProposal::from_selected(chosen)
                .filter(|p| offered.contains(p) && p.dh == group)
                .unwrap_or_else(|| {
                    panic!("the engine chose {chosen:?}; offered {offered:?} with KE {group:?}")
                });
            let spis = Spis {
                i: spi_i,
                r: m.header.spi_r,
            };
            let g_ir = dh.shared(ke).expect("the engine's KE payload is valid");
            let keys = derive_initial(p, &ni, nr, &g_ir, spis);
            if self.sas.len() < MAX_KNOWN {
                let mut sa = PeerSa::new(spis, true, p, keys, 1);
                sa.auth = Some((req, nr.to_vec()));
                self.sas.push(sa);
            }
            return;
        }
    }

    fn op_operator(&mut self, op: u8, data: &[u8]) {
        let kind = data.first().copied().unwrap_or(0) % 5;
        let arg = data.get(1).copied().unwrap_or(0);
        let spis = self.pick(op).map(|i| self.sas[i].spis);
        let now = self.now;
        match (kind, spis) {
            (0, Some(s)) => {
                let _ = self.eng.rekey(now, s);
            }
            (1, Some(s)) => {
                let _ = self.eng.delete(now, s);
            }
            (2, _) => {
                let name = if arg & 1 != 0 { "other" } else { "to-a" };
                let _ = self.eng.initiate(now, name, addr(LOCAL), Some(addr(PEER)));
            }
            (3, _) => {
                let _ = self.eng.list(now);
                let _ = self.eng.find("192.0.2.2");
                let _ = self.eng.find("to-a");
                let _ = self.eng.ippm_secret_for_peer(addr(PEER).ip());
                if let Some(s) = spis {
                    let _ = self.eng.ippm_secret(s, Some(addr(PEER2).ip()), now);
                }
            }
            (4, _) => self.fail.store(u32::from(arg % 4), Ordering::Relaxed),
            _ => {}
        }
        self.drain();
    }

    /// The invariants that hold between records.
    fn check(&self) {
        let list = self.eng.list(self.now);
        let l = &self.eng.config().limits;
        let half = list.iter().filter(|s| s.state == "half-open").count();
        assert!(half <= l.half_open_max, "{half} half-open IKE SAs");
        assert!(
            list.len() <= l.established_max + l.half_open_max + self.rekeys,
            "{} IKE SAs after {} rekeys: {list:#?}",
            list.len(),
            self.rekeys
        );
        for sa in &self.sas {
            if list
                .iter()
                .any(|s| s.spis == sa.spis && s.state == "established")
            {
                let k = &sa.keys;
                assert_eq!(
                    self.eng
                        .ippm_secret(sa.spis, None, self.now)
                        .as_deref()
                        .map(Vec::as_slice),
                    Some(k.prf.prf(&k.d, b"IPPM").as_slice()),
                    "the RFC 7717 secret of {:?}",
                    sa.spis
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mut h = Harness::new(flags);
    h.check();
    for _ in 0..MAX_RECORDS {
        let Some((&op, r)) = rest.split_first() else {
            break;
        };
        let (len, r) = match r.split_first_chunk::<2>() {
            Some((len, r)) => (usize::from(u16::from_be_bytes(*len)), r),
            None => (r.len(), r),
        };
        let (rec, r) = r.split_at(len.min(r.len()));
        rest = r;
        match op % OPS {
            OP_RAW => h.op_raw(op, rec),
            OP_SEALED_REQUEST => h.op_sealed(op, rec, false),
            OP_SEALED_RESPONSE => h.op_sealed(op, rec, true),
            OP_TIME => h.op_time(rec),
            OP_REQUEST => h.op_request(op, rec),
            OP_ANSWER => h.op_answer(op, rec),
            OP_INIT => h.op_init(rec),
            _ => h.op_operator(op, rec),
        }
        h.check();
    }
});
