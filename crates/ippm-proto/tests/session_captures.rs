//! Our control state machines against perfSONAR's, byte for byte: every capture in
//! `tests/data/captures` is replayed twice.
//!
//! - Server replay: our [`Server`], given the greeting's Challenge and Salt and the
//!   Server-IV that owampd/twampd used, is fed the bytes owping/twping sent, answers each
//!   request as perfSONAR's server did, and must produce exactly the bytes perfSONAR's server
//!   sent (ciphertext and HMACs included).
//! - Client replay: our [`Client`], given the Client-IV and session keys that owping/twping
//!   chose, is fed the bytes the server sent, issues the same commands, and must produce
//!   exactly the bytes perfSONAR's client sent.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use ippm_proto::session::{
    Client, ClientConfig, ClientEvent, ClientRandom, Error, FetchReply, PassphraseStore, Secret,
    Server, ServerConfig, ServerEvent, ServerRandom,
};
use ippm_proto::wire::owamp::{
    AcceptSessionRepr, FetchAckRepr, FetchSessionRepr, RequestSessionRepr, StopSessionsRepr,
};
use ippm_proto::wire::twamp::{RequestTwSessionRepr, TwStopSessionsRepr};
use ippm_proto::{Accept, Modes, Protocol, SecurityMode, Timestamp};
use serde_json::Value;

mod common;
use common::{arr, hex, vectors};

/// The control connection's peer (TEST-NET-1).
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

struct Msg {
    dir_c2s: bool,
    name: String,
    raw: Vec<u8>,
    plain: Vec<u8>,
}

/// The capture's control messages in protocol order: each client command followed by the
/// server messages that answer it.
fn script(c: &Value) -> Vec<Msg> {
    let all: Vec<Msg> = c["control_messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let raw = hex(&m["raw_hex"]);
            Msg {
                dir_c2s: m["direction"] == "C->S",
                name: m["name"].as_str().unwrap().to_owned(),
                plain: m
                    .get("plaintext_hex")
                    .map(hex)
                    .unwrap_or_else(|| raw.clone()),
                raw,
            }
        })
        .collect();
    let (mut cs, mut ss): (Vec<Msg>, Vec<Msg>) = all.into_iter().partition(|m| m.dir_c2s);
    cs.reverse();
    ss.reverse();
    let owamp = c["protocol"] == "OWAMP";
    let mut out = vec![];
    out.push(ss.pop().unwrap()); // greeting
    out.push(cs.pop().unwrap()); // set-up-response
    out.push(ss.pop().unwrap()); // server-start
    while let Some(m) = cs.pop() {
        let answers = match m.name.as_str() {
            "Request-Session" | "Request-TW-Session" | "Start-Sessions" => 1,
            "Stop-Sessions" if owamp => 1,
            "Stop-Sessions" => 0,
            "Fetch-Session" => 4,
            other => panic!("unexpected {other}"),
        };
        out.push(m);
        for _ in 0..answers {
            out.push(ss.pop().unwrap());
        }
    }
    assert!(ss.is_empty());
    out
}

fn protocol(c: &Value) -> Protocol {
    if c["protocol"] == "OWAMP" {
        Protocol::Owamp
    } else {
        Protocol::Twamp
    }
}

fn mode(c: &Value) -> SecurityMode {
    match c["mode_requested"].as_str().unwrap() {
        "O" => SecurityMode::Open,
        "A" => SecurityMode::Authenticated,
        "E" => SecurityMode::Encrypted,
        "M" => SecurityMode::Mixed,
        other => panic!("{other}"),
    }
}

fn drain_server(s: &mut Server) -> Vec<u8> {
    let mut out = vec![];
    while let Some(d) = s.poll_transmit() {
        out.extend(d);
    }
    out
}

fn drain_client(c: &mut Client) -> Vec<u8> {
    let mut out = vec![];
    while let Some(d) = c.poll_transmit() {
        out.extend(d);
    }
    out
}

#[test]
fn server_replays_perfsonar_server_byte_for_byte() {
    let v = vectors();
    for c in v["captures"].as_array().unwrap() {
        let file = c["file"].as_str().unwrap();
        let protocol = protocol(c);
        let g = &c["greeting"];
        let mut store = PassphraseStore::new();
        // The server's passphrase file (the wrong-passphrase capture's client used another).
        store.insert(
            "alice",
            Secret::new(b"correct horse battery staple".to_vec()),
        );
        let start_time = Timestamp::from_bytes(arr(&c["server_start"]["start_time"]["hex"]));
        let mut cfg = ServerConfig::new(
            Modes(g["modes"].as_u64().unwrap() as u32),
            Arc::new(store),
            start_time,
        );
        cfg.count = g["count"].as_u64().unwrap() as u32;
        let random = ServerRandom {
            challenge: arr(&g["challenge_hex"]),
            salt: arr(&g["salt_hex"]),
            server_iv: arr(&c["server_start"]["server_iv_hex"]),
        };
        let now = Instant::now();
        let mut server = Server::new(protocol, Arc::new(cfg), PEER, random, now);
        let msgs = script(c);
        let mut expect_out: Vec<u8> = vec![];
        let mut fetch_parts: Vec<&Msg> = vec![];
        for (i, m) in msgs.iter().enumerate() {
            if !m.dir_c2s {
                expect_out.extend(&m.raw);
                if m.name.starts_with("Fetch data") || m.name == "Fetch-Ack" {
                    fetch_parts.push(m);
                }
                continue;
            }
            // Everything the server sent before this client message must match.
            assert_eq!(
                ::hex::encode(drain_server(&mut server)),
                ::hex::encode(&expect_out),
                "{file} before {}",
                m.name
            );
            expect_out.clear();
            let r = server.handle_input(now, &m.raw);
            if file.contains("wrong") {
                assert_eq!(r, Err(Error::AuthenticationFailed), "{file}");
                continue;
            }
            r.unwrap_or_else(|e| panic!("{file} {}: {e}", m.name));
            // Answer as perfSONAR's server did, from the messages that follow. Every client
            // message after the Set-Up-Response must surface as exactly one event.
            let answer = msgs.get(i + 1);
            let mut events = 0;
            while let Some(ev) = server.poll_event() {
                events += 1;
                match ev {
                    ServerEvent::Established { mode: got, .. } => assert_eq!(got, mode(c)),
                    ServerEvent::RequestSession(_) | ServerEvent::RequestTwSession(_) => {
                        let a = AcceptSessionRepr::parse(&answer.unwrap().plain).unwrap();
                        server.accept_session(a.sid, a.port).unwrap();
                    }
                    ServerEvent::StartSessions => server.start_ack(Accept::Ok).unwrap(),
                    ServerEvent::StopSessions(stop) => {
                        assert_eq!(protocol, Protocol::Owamp);
                        assert_eq!(stop, StopSessionsRepr::parse(&m.plain).unwrap());
                        let ours = StopSessionsRepr::parse(&answer.unwrap().plain).unwrap();
                        server.stop_sessions(&ours).unwrap();
                    }
                    ServerEvent::StopTwSessions(stop) => {
                        assert_eq!(protocol, Protocol::Twamp);
                        assert_eq!((stop.accept, stop.num_sessions), (Accept::Ok, 1));
                    }
                    ServerEvent::FetchSession(_) => {
                        let parts: Vec<&Msg> = msgs[i + 1..i + 5].iter().collect();
                        let ack = FetchAckRepr::parse(&parts[0].plain).unwrap();
                        let request = RequestSessionRepr::parse(&parts[1].plain).unwrap();
                        let skips = ippm_proto::wire::owamp::parse_skip_ranges(
                            &parts[2].plain,
                            ack.num_skip_ranges,
                        )
                        .unwrap();
                        let records = ippm_proto::wire::owamp::parse_records(
                            &parts[3].plain,
                            ack.num_records,
                        )
                        .unwrap();
                        server
                            .fetch_reply(Ok(FetchReply {
                                finished: ack.finished,
                                next_seqno: ack.next_seqno,
                                request,
                                skip_ranges: skips,
                                records,
                            }))
                            .unwrap();
                    }
                    other => panic!("{file}: unexpected {other:?}"),
                }
            }
            assert_eq!(events, 1, "{file}: events after {}", m.name);
        }
        assert_eq!(
            ::hex::encode(drain_server(&mut server)),
            ::hex::encode(&expect_out),
            "{file} at end"
        );
    }
}

#[test]
fn client_replays_perfsonar_client_byte_for_byte() {
    let v = vectors();
    for c in v["captures"].as_array().unwrap() {
        let file = c["file"].as_str().unwrap();
        let protocol = protocol(c);
        let mode = mode(c);
        let mut cfg = if mode == SecurityMode::Open {
            ClientConfig::open()
        } else {
            ClientConfig::with_passphrase(
                vec![mode],
                c["user"].as_str().unwrap().as_bytes(),
                Secret::new(c["passphrase"].as_str().unwrap().as_bytes().to_vec()),
            )
        };
        cfg.modes = vec![mode];
        let random = if mode == SecurityMode::Open {
            ClientRandom {
                client_iv: [0; 16],
                aes_key: [0; 16],
                hmac_key: [0; 32],
            }
        } else {
            ClientRandom {
                client_iv: arr(&c["setup_response"]["client_iv_hex"]),
                aes_key: arr(&c["keys"]["aes_session_key_hex"]),
                hmac_key: arr(&c["keys"]["hmac_session_key_hex"]),
            }
        };
        let now = Instant::now();
        let mut client = Client::new(protocol, cfg, random, now);
        let msgs = script(c);
        for m in &msgs {
            if !m.dir_c2s {
                let r = client.handle_input(now, &m.raw);
                if file.contains("wrong") && m.name == "Server-Start" {
                    assert_eq!(r, Err(Error::Rejected(Accept::Failure)), "{file}");
                    break;
                }
                r.unwrap_or_else(|e| panic!("{file} {}: {e}", m.name));
                continue;
            }
            while let Some(ev) = client.poll_event() {
                check_event(file, &ev);
            }
            match m.name.as_str() {
                "Set-Up-Response" => {}
                "Request-Session" => client
                    .request_session(now, &RequestSessionRepr::parse(&m.plain).unwrap())
                    .unwrap(),
                "Request-TW-Session" => client
                    .request_tw_session(now, &RequestTwSessionRepr::parse(&m.plain).unwrap())
                    .unwrap(),
                "Start-Sessions" => client.start_sessions(now).unwrap(),
                "Stop-Sessions" if protocol == Protocol::Twamp => {
                    let stop = TwStopSessionsRepr::parse(&m.plain).unwrap();
                    client
                        .stop_tw_sessions(now, stop.accept, stop.num_sessions)
                        .unwrap()
                }
                "Stop-Sessions" => client
                    .stop_sessions(now, &StopSessionsRepr::parse(&m.plain).unwrap())
                    .unwrap(),
                "Fetch-Session" => client
                    .fetch_session(now, &FetchSessionRepr::parse(&m.plain).unwrap())
                    .unwrap(),
                other => panic!("{other}"),
            }
            assert_eq!(
                ::hex::encode(drain_client(&mut client)),
                ::hex::encode(&m.raw),
                "{file}: {}",
                m.name
            );
        }
        let mut saw_fetch = false;
        while let Some(ev) = client.poll_event() {
            check_event(file, &ev);
            if let ClientEvent::FetchReply(r) = ev {
                assert_eq!(r.records.len(), 5);
                assert!(r.finished);
                saw_fetch = true;
            }
        }
        assert_eq!(saw_fetch, protocol == Protocol::Owamp, "{file}");
    }
}

fn check_event(file: &str, ev: &ClientEvent) {
    match ev {
        ClientEvent::SessionRejected(a) | ClientEvent::StartAck(a @ Accept::Failure) => {
            panic!("{file}: refused {a:?}")
        }
        ClientEvent::FetchRejected(a) => panic!("{file}: fetch refused {a:?}"),
        _ => {}
    }
}
