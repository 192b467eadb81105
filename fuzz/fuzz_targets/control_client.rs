//! Arbitrary bytes into the OWAMP and TWAMP client state machines as the server's side of
//! the stream: as the greeting and beyond, and after a real in-memory handshake with a
//! command outstanding (encrypted with the real session key in the protected modes).
//! Invariant: no panic, and after an error the client stays closed.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use ippm_proto::crypto::{ControlSealer, SessionKeys};
use ippm_proto::session::{
    Client, ClientConfig, ClientRandom, PassphraseStore, Secret, Server, ServerConfig,
    ServerRandom,
};
use ippm_proto::wire::owamp::FetchSessionRepr;
use ippm_proto::{Modes, Protocol, SecurityMode, Timestamp};
use libfuzzer_sys::fuzz_target;

/// The control connection's peer (TEST-NET-1).
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

const SECRET: &[u8] = b"fuzz secret";

fn client(protocol: Protocol, mode: SecurityMode, now: Instant) -> Client {
    let mut cfg = if mode == SecurityMode::Open {
        ClientConfig::open()
    } else {
        ClientConfig::with_passphrase(vec![mode], b"fuzz", Secret::new(SECRET.to_vec()))
    };
    cfg.max_count = 1024;
    cfg.max_message = 1 << 20;
    let random = ClientRandom { client_iv: [4; 16], aes_key: [5; 16], hmac_key: [6; 32] };
    Client::new(protocol, cfg, random, now)
}

fn feed(c: &mut Client, now: Instant, data: &[u8], chunk: usize) {
    for part in data.chunks(chunk.max(1)) {
        let r = c.handle_input(now, part);
        if r.is_err() {
            assert!(c.is_closed());
            return;
        }
        while c.poll_event().is_some() {}
        while c.poll_transmit().is_some() {}
    }
    let _ = c.handle_close();
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let protocol = if sel & 1 == 0 { Protocol::Owamp } else { Protocol::Twamp };
    let chunk = usize::from(sel >> 4) + 1;
    let now = Instant::now();
    let mode = match (sel >> 2) & 3 {
        0 => SecurityMode::Open,
        1 => SecurityMode::Authenticated,
        2 => SecurityMode::Encrypted,
        _ if protocol == Protocol::Twamp => SecurityMode::Mixed,
        _ => SecurityMode::Authenticated,
    };
    if sel & 2 == 0 {
        let mut c = client(protocol, mode, now);
        feed(&mut c, now, rest, chunk);
        return;
    }
    let mut store = PassphraseStore::new();
    store.insert("fuzz", Secret::new(SECRET.to_vec()));
    let mut scfg = ServerConfig::new(Modes(0x0f), Arc::new(store), Timestamp::new(1, 2));
    scfg.count = 1024;
    let random = ServerRandom { challenge: [1; 16], salt: [2; 16], server_iv: [3; 16] };
    let mut s = Server::new(protocol, Arc::new(scfg), PEER, random, now);
    let mut c = client(protocol, mode, now);
    for _ in 0..4 {
        while let Some(d) = s.poll_transmit() {
            c.handle_input(now, &d).expect("handshake");
        }
        while let Some(d) = c.poll_transmit() {
            s.handle_input(now, &d).expect("handshake");
        }
    }
    while c.poll_event().is_some() {}
    // Put the client in a state that expects an answer (bit 7 chooses which).
    let _ = match (protocol, sel & 0x80 != 0) {
        (Protocol::Owamp, true) => c.fetch_session(now, &FetchSessionRepr {
            sid: [7; 16],
            begin_seq: 0,
            end_seq: u32::MAX,
        }),
        (_, _) => c.start_sessions(now),
    };
    while c.poll_transmit().is_some() {}
    let mut bytes = rest.to_vec();
    if mode != SecurityMode::Open {
        bytes.truncate(bytes.len() / 16 * 16);
        let keys = SessionKeys { aes: [5; 16], hmac: [6; 32] };
        // The server's stream continues after Server-Start's encrypted block; encrypting from
        // a fresh chain with the server IV gives bytes that decrypt to garbage after the first
        // block, which exercises the HMAC path as well as the framing.
        ControlSealer::new(&keys, [3; 16]).encrypt(&mut bytes);
    }
    feed(&mut c, now, &bytes, chunk);
});
