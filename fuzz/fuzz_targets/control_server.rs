//! Arbitrary bytes into the OWAMP and TWAMP server state machines, in every mode: as the
//! Set-Up-Response and what follows it, and as commands after an in-memory handshake with a
//! real client (encrypted with the real session key in the protected modes, so the bytes
//! reach the decryption, HMAC and command parsing). Invariant: no panic, and after an error the
//! server stays closed.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use ippm_proto::crypto::{ControlSealer, SessionKeys};
use ippm_proto::session::{
    Client, ClientConfig, ClientRandom, PassphraseStore, Secret, Server, ServerConfig,
    ServerEvent, ServerRandom,
};
use ippm_proto::{Accept, Modes, Protocol, SecurityMode, Timestamp};
use libfuzzer_sys::fuzz_target;

/// The control connection's peer (TEST-NET-1).
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

const SECRET: &[u8] = b"fuzz secret";

fn server(protocol: Protocol, now: Instant) -> Server {
    let mut store = PassphraseStore::new();
    store.insert("fuzz", Secret::new(SECRET.to_vec()));
    let modes = match protocol {
        Protocol::Owamp => Modes(0x07),
        Protocol::Twamp => Modes(0x7f),
    };
    let mut cfg = ServerConfig::new(modes, Arc::new(store), Timestamp::new(1, 2));
    cfg.count = 1024;
    let random = ServerRandom { challenge: [1; 16], salt: [2; 16], server_iv: [3; 16] };
    Server::new(protocol, Arc::new(cfg), PEER, random, now)
}

/// Answers whatever the server asks, so fuzz input keeps reaching the parser.
fn answer(s: &mut Server) {
    while let Some(ev) = s.poll_event() {
        let _ = match ev {
            ServerEvent::RequestSession(_) | ServerEvent::RequestTwSession(_) => {
                s.accept_session([7; 16], 9000)
            }
            ServerEvent::StartSessions => s.start_ack(Accept::Ok),
            ServerEvent::FetchSession(_) => s.fetch_reply(Err(Accept::Failure)),
            ServerEvent::StartNSessions(sids) => s.start_n_ack(Accept::Ok, sids),
            ServerEvent::StopNSessions(sids) => s.stop_n_ack(Accept::Ok, sids),
            _ => Ok(()),
        };
    }
    while s.poll_transmit().is_some() {}
}

fn feed(s: &mut Server, now: Instant, data: &[u8], chunk: usize) {
    for part in data.chunks(chunk.max(1)) {
        let closed_before = s.is_closed();
        let r = s.handle_input(now, part);
        if closed_before {
            assert!(r.is_err());
        }
        if r.is_err() {
            assert!(s.is_closed());
            return;
        }
        answer(s);
    }
    let _ = s.handle_close();
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let protocol = if sel & 1 == 0 { Protocol::Owamp } else { Protocol::Twamp };
    let chunk = usize::from(sel >> 4) + 1;
    let now = Instant::now();
    if sel & 2 == 0 {
        // Raw: the bytes are the Set-Up-Response and beyond.
        let mut s = server(protocol, now);
        while s.poll_transmit().is_some() {}
        feed(&mut s, now, rest, chunk);
        return;
    }
    // After a real handshake in the mode chosen by bits 2-3.
    let mode = match (sel >> 2) & 3 {
        0 => SecurityMode::Open,
        1 => SecurityMode::Authenticated,
        2 => SecurityMode::Encrypted,
        _ if protocol == Protocol::Twamp => SecurityMode::Mixed,
        _ => SecurityMode::Authenticated,
    };
    let mut s = server(protocol, now);
    let mut cfg = if mode == SecurityMode::Open {
        ClientConfig::open()
    } else {
        ClientConfig::with_passphrase(vec![mode], b"fuzz", Secret::new(SECRET.to_vec()))
    };
    cfg.max_count = 1024;
    let random = ClientRandom { client_iv: [4; 16], aes_key: [5; 16], hmac_key: [6; 32] };
    let mut c = Client::new(protocol, cfg, random, now);
    for _ in 0..4 {
        while let Some(d) = s.poll_transmit() {
            c.handle_input(now, &d).expect("handshake");
        }
        while let Some(d) = c.poll_transmit() {
            s.handle_input(now, &d).expect("handshake");
        }
    }
    answer(&mut s);
    if mode == SecurityMode::Open {
        feed(&mut s, now, rest, chunk);
        return;
    }
    // Protected: cut the input into messages of 2..=9 blocks (the first octet of each says how
    // many), and seal each with valid HMACs as a real client would (one at 96 for messages
    // long enough to be a Request-Session, one in the last block), so the plaintext reaches
    // the command parsers.
    let keys = SessionKeys { aes: [5; 16], hmac: [6; 32] };
    let mut sealer = ControlSealer::new(&keys, [4; 16]);
    let mut bytes = Vec::new();
    let mut input = rest;
    while let Some((&n, tail)) = input.split_first() {
        let len = (usize::from(n % 8) + 2) * 16;
        if tail.len() < len {
            break;
        }
        let mut msg = tail[..len].to_vec();
        input = &tail[len..];
        let offsets: &[usize] = if len >= 128 { &[96, len - 16] } else { &[len - 16] };
        sealer.seal(&mut msg, if n & 0x80 != 0 { &offsets[offsets.len() - 1..] } else { offsets });
        bytes.extend_from_slice(&msg);
    }
    feed(&mut s, now, &bytes, chunk);
});
