//! The streamed Fetch-Session answer (`fetch_reply_begin` / `fetch_reply_records` /
//! `fetch_reply_end`): the same octets as the whole answer in every OWAMP mode, read by the
//! client however it is cut, and every misuse refused with a typed error.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ippm_proto::session::{
    Client, ClientConfig, ClientEvent, ClientRandom, Error, FetchReply, FetchReplyHeader,
    PassphraseStore, Secret, Server, ServerConfig, ServerEvent, ServerRandom,
};
use ippm_proto::wire::owamp::{
    self, AcceptSessionRepr, DataRecord, FetchAckRepr, MAX_FETCH_RECORDS, RequestSessionRepr,
    SkipRange, StopSessionsRepr,
};
use ippm_proto::{Accept, ErrorEstimate, Modes, Protocol, SecurityMode, Timestamp, WireError};

mod common;
use common::{arr, client_stop, fetch_repr, hex, owamp_request, vectors};

/// The control connection's peer (TEST-NET-1).
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

const MODES: [SecurityMode; 3] = [
    SecurityMode::Open,
    SecurityMode::Authenticated,
    SecurityMode::Encrypted,
];

/// A client and server with a Fetch-Session request delivered and its event taken.
struct Conn {
    client: Client,
    server: Server,
    now: Instant,
}

impl Conn {
    fn new(mode: SecurityMode) -> Self {
        let mut secrets = PassphraseStore::new();
        secrets.insert("alice", Secret::new(b"fetch me".to_vec()));
        let mut cfg = ServerConfig::new(Modes(0x07), Arc::new(secrets), Timestamp::new(7, 0));
        cfg.count = 1024;
        let now = Instant::now();
        let server = Server::new(
            Protocol::Owamp,
            Arc::new(cfg),
            PEER,
            ServerRandom {
                challenge: [0x11; 16],
                salt: [0x22; 16],
                server_iv: [0x33; 16],
            },
            now,
        );
        let ccfg = if mode == SecurityMode::Open {
            ClientConfig::open()
        } else {
            ClientConfig::with_passphrase(vec![mode], b"alice", Secret::new(b"fetch me".to_vec()))
        };
        let client = Client::new(
            Protocol::Owamp,
            ccfg,
            ClientRandom {
                client_iv: [0x44; 16],
                aes_key: [0x55; 16],
                hmac_key: [0x66; 32],
            },
            now,
        );
        let mut c = Self {
            client,
            server,
            now,
        };
        c.shuttle();
        assert!(matches!(
            c.client.poll_event(),
            Some(ClientEvent::Established { .. })
        ));
        assert!(matches!(
            c.server.poll_event(),
            Some(ServerEvent::Established { .. })
        ));
        c.client
            .fetch_session(now, &fetch_repr([7; 16], 0, u32::MAX))
            .unwrap();
        c.shuttle();
        assert!(matches!(
            c.server.poll_event(),
            Some(ServerEvent::FetchSession(_))
        ));
        c
    }

    /// Moves octets both ways until neither side has anything to send.
    fn shuttle(&mut self) {
        loop {
            let mut moved = false;
            while let Some(d) = self.server.poll_transmit() {
                self.client.handle_input(self.now, &d).unwrap();
                moved = true;
            }
            while let Some(d) = self.client.poll_transmit() {
                self.server.handle_input(self.now, &d).unwrap();
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    /// Everything the server has queued, as one run of octets.
    fn server_output(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(d) = self.server.poll_transmit() {
            out.extend_from_slice(&d);
        }
        out
    }
}

fn records(n: u32) -> Vec<DataRecord> {
    let base = Timestamp::new(0xeeae_16a1, 0);
    (0..n)
        .map(|seq| DataRecord {
            seq,
            send_error: ErrorEstimate::new(false, 0, 1),
            recv_error: ErrorEstimate::new(true, 3, 7),
            send_time: base + Duration::from_micros(u64::from(seq) * 100),
            recv_time: base + Duration::from_micros(u64::from(seq) * 100 + 37),
            ttl: seq as u8,
        })
        .collect()
}

fn reply(n: u32) -> FetchReply {
    FetchReply {
        finished: true,
        next_seqno: n + 2,
        request: owamp_request(false, 9000, n + 2, 3),
        skip_ranges: vec![
            SkipRange { first: 1, last: 1 },
            SkipRange { first: 5, last: 9 },
            SkipRange {
                first: n,
                last: n + 1,
            },
        ],
        records: records(n),
    }
}

fn header(r: &FetchReply) -> FetchReplyHeader {
    FetchReplyHeader {
        finished: r.finished,
        next_seqno: r.next_seqno,
        request: r.request.clone(),
        skip_ranges: r.skip_ranges.clone(),
        num_records: r.records.len() as u32,
    }
}

/// Cuts `recs` into parts of the given sizes, cycling through them (a size of 0 gives an
/// empty part, which must be harmless).
fn parts<'a>(recs: &'a [DataRecord], sizes: &[usize]) -> Vec<&'a [DataRecord]> {
    let mut out = Vec::new();
    let mut at = 0;
    for &n in sizes.iter().cycle() {
        if at >= recs.len() {
            break;
        }
        let end = (at + n).min(recs.len());
        out.push(&recs[at..end]);
        at = end;
    }
    out
}

/// Streamed in parts of every awkward size (one record, parts that end mid-block, a part
/// that is exactly a block multiple, empty parts), the octets are exactly those of the whole
/// answer, in every mode: the CBC chain and the HMAC run over the parts as over one message.
#[test]
fn streamed_answer_is_the_whole_answer_in_every_mode() {
    for mode in MODES {
        for n in [0u32, 1, 15, 16, 17, 1000, 4099] {
            let r = reply(n);
            let mut whole = Conn::new(mode);
            whole.server.fetch_reply(Ok(r.clone())).unwrap();
            let want = whole.server_output();
            for sizes in [
                &[1][..],
                &[7, 0, 3],
                &[16],
                &[1024],
                &[5000],
                &[2, 31, 0, 640],
            ] {
                let mut s = Conn::new(mode);
                s.server.fetch_reply_begin(header(&r)).unwrap();
                for p in parts(&r.records, sizes) {
                    s.server.fetch_reply_records(p).unwrap();
                }
                s.server.fetch_reply_end().unwrap();
                let got = s.server_output();
                assert_eq!(got.len(), want.len(), "{mode} n={n} parts {sizes:?}");
                assert!(got == want, "{mode} n={n} parts {sizes:?}: octets differ");
            }
        }
    }
}

/// perfSONAR's owampd answers in the OWAMP captures (open, authenticated, encrypted; five
/// records, so the record part ends mid-block) are reproduced byte for byte when the records
/// are streamed in parts that cut the CBC blocks anywhere: a reference that does not come
/// from this crate's own whole-answer code.
#[test]
fn streamed_answer_replays_the_perfsonar_captures() {
    let v = vectors();
    let owamp: Vec<_> = v["captures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["protocol"] == "OWAMP")
        .collect();
    assert_eq!(owamp.len(), 3);
    for sizes in [&[1][..], &[2, 3], &[0, 4, 1], &[5]] {
        for c in &owamp {
            let file = c["file"].as_str().unwrap();
            let g = &c["greeting"];
            let mut secrets = PassphraseStore::new();
            secrets.insert(
                "alice",
                Secret::new(b"correct horse battery staple".to_vec()),
            );
            let mut cfg = ServerConfig::new(
                Modes(g["modes"].as_u64().unwrap() as u32),
                Arc::new(secrets),
                Timestamp::from_bytes(arr(&c["server_start"]["start_time"]["hex"])),
            );
            cfg.count = g["count"].as_u64().unwrap() as u32;
            let random = ServerRandom {
                challenge: arr(&g["challenge_hex"]),
                salt: arr(&g["salt_hex"]),
                server_iv: arr(&c["server_start"]["server_iv_hex"]),
            };
            let now = Instant::now();
            let mut server = Server::new(Protocol::Owamp, Arc::new(cfg), PEER, random, now);
            let msgs = c["control_messages"].as_array().unwrap();
            let from = |dir: &str| -> Vec<(Vec<u8>, Vec<u8>)> {
                msgs.iter()
                    .filter(|m| m["direction"] == dir)
                    .map(|m| {
                        let raw = hex(&m["raw_hex"]);
                        let plain = m
                            .get("plaintext_hex")
                            .map(hex)
                            .unwrap_or_else(|| raw.clone());
                        (raw, plain)
                    })
                    .collect()
            };
            let (client, theirs) = (from("C->S"), from("S->C"));
            // Greeting and Server-Start come before any command is answered.
            let mut answer = 2;
            for (raw, _) in &client {
                server.handle_input(now, raw).unwrap();
                while let Some(ev) = server.poll_event() {
                    match ev {
                        ServerEvent::Established { .. } => {}
                        ServerEvent::RequestSession(_) => {
                            let a = AcceptSessionRepr::parse(&theirs[answer].1).unwrap();
                            server.accept_session(a.sid, a.port).unwrap();
                            answer += 1;
                        }
                        ServerEvent::StartSessions => {
                            server.start_ack(Accept::Ok).unwrap();
                            answer += 1;
                        }
                        ServerEvent::StopSessions(_) => {
                            let s = StopSessionsRepr::parse(&theirs[answer].1).unwrap();
                            server.stop_sessions(&s).unwrap();
                            answer += 1;
                        }
                        ServerEvent::FetchSession(_) => {
                            let ack = FetchAckRepr::parse(&theirs[answer].1).unwrap();
                            let request = RequestSessionRepr::parse(&theirs[answer + 1].1).unwrap();
                            let skips = owamp::parse_skip_ranges(
                                &theirs[answer + 2].1,
                                ack.num_skip_ranges,
                            )
                            .unwrap();
                            let recs = owamp::parse_records(&theirs[answer + 3].1, ack.num_records)
                                .unwrap();
                            assert_eq!(recs.len(), 5, "{file}");
                            server
                                .fetch_reply_begin(FetchReplyHeader {
                                    finished: ack.finished,
                                    next_seqno: ack.next_seqno,
                                    request,
                                    skip_ranges: skips,
                                    num_records: ack.num_records,
                                })
                                .unwrap();
                            for p in parts(&recs, sizes) {
                                server.fetch_reply_records(p).unwrap();
                            }
                            server.fetch_reply_end().unwrap();
                            answer += 4;
                        }
                        other => panic!("{file}: {other:?}"),
                    }
                }
            }
            assert_eq!(answer, theirs.len(), "{file}");
            let mut got = Vec::new();
            while let Some(d) = server.poll_transmit() {
                got.extend_from_slice(&d);
            }
            let want: Vec<u8> = theirs.iter().flat_map(|(raw, _)| raw.clone()).collect();
            assert_eq!(
                ::hex::encode(got),
                ::hex::encode(want),
                "{file} parts {sizes:?}"
            );
        }
    }
}

/// The client takes a streamed answer of many parts, each part delivered as the server
/// queued it, and in the protected modes checks the HMAC over all of them.
#[test]
fn client_reads_a_streamed_answer_of_many_parts() {
    for mode in MODES {
        let r = reply(20_000);
        let mut c = Conn::new(mode);
        c.server.fetch_reply_begin(header(&r)).unwrap();
        let mut deliveries = 0;
        let mut feed = |c: &mut Conn| {
            while let Some(d) = c.server.poll_transmit() {
                c.client.handle_input(c.now, &d).unwrap();
                deliveries += 1;
            }
        };
        feed(&mut c);
        for p in parts(&r.records, &[1024, 999, 1]) {
            c.server.fetch_reply_records(p).unwrap();
            // One part queued at a time: at most its records and a carried partial block.
            assert!(c.server.queued_octets() <= p.len() * DataRecord::LEN + 15);
            feed(&mut c);
            assert_eq!(c.client.poll_event(), None, "{mode}: answer before its end");
        }
        c.server.fetch_reply_end().unwrap();
        feed(&mut c);
        assert!(deliveries > 20, "{mode}: only {deliveries} deliveries");
        match c.client.poll_event() {
            Some(ClientEvent::FetchReply(got)) => {
                assert_eq!(got.records, r.records, "{mode}");
                assert_eq!(got.skip_ranges, r.skip_ranges, "{mode}");
                assert_eq!(got.request, r.request, "{mode}");
                assert_eq!((got.finished, got.next_seqno), (true, 20_002), "{mode}");
            }
            other => panic!("{mode}: {other:?}"),
        }
        assert!(c.client.is_ready(), "{mode}");
        // The connection goes on: another fetch, refused this time.
        c.client
            .fetch_session(c.now, &fetch_repr([9; 16], 0, 1))
            .unwrap();
        c.shuttle();
        assert!(matches!(
            c.server.poll_event(),
            Some(ServerEvent::FetchSession(_))
        ));
        c.server.fetch_reply(Err(Accept::Failure)).unwrap();
        c.shuttle();
        assert_eq!(
            c.client.poll_event(),
            Some(ClientEvent::FetchRejected(Accept::Failure))
        );
    }
}

/// A command that arrives while the answer streams is held, and handled once it ends (open
/// mode, where a Fetch-Session's octets can be written by hand).
#[test]
fn input_is_held_while_the_answer_streams() {
    let r = reply(100);
    let mut c = Conn::new(SecurityMode::Open);
    c.server.fetch_reply_begin(header(&r)).unwrap();
    c.server.fetch_reply_records(&r.records[..50]).unwrap();
    let next = fetch_repr([1; 16], 3, 4);
    c.server.handle_input(c.now, &next.to_vec()).unwrap();
    assert_eq!(
        c.server.poll_event(),
        None,
        "handled in the middle of the answer"
    );
    c.server.fetch_reply_records(&r.records[50..]).unwrap();
    assert_eq!(c.server.poll_event(), None);
    c.server.fetch_reply_end().unwrap();
    assert_eq!(c.server.poll_event(), Some(ServerEvent::FetchSession(next)));
}

#[test]
fn too_many_records_is_a_typed_error_and_closes() {
    for mode in MODES {
        let r = reply(10);
        let mut c = Conn::new(mode);
        c.server.fetch_reply_begin(header(&r)).unwrap();
        c.server.fetch_reply_records(&r.records[..6]).unwrap();
        let err = c.server.fetch_reply_records(&r.records[..5]).unwrap_err();
        assert_eq!(
            err,
            Error::FetchRecordCount {
                announced: 10,
                given: 11
            },
            "{mode}"
        );
        assert!(c.server.is_closed(), "{mode}");
        assert_eq!(
            c.server.fetch_reply_end(),
            Err(Error::InvalidCommand("fetch_reply_end"))
        );
    }
}

#[test]
fn too_few_records_is_a_typed_error_and_closes() {
    let r = reply(10);
    let mut c = Conn::new(SecurityMode::Encrypted);
    c.server.fetch_reply_begin(header(&r)).unwrap();
    c.server.fetch_reply_records(&r.records[..9]).unwrap();
    assert_eq!(
        c.server.fetch_reply_end(),
        Err(Error::FetchRecordCount {
            announced: 10,
            given: 9
        })
    );
    assert!(c.server.is_closed());
}

/// Nothing else may go out in the middle of the answer, and the parts cannot come without
/// a beginning.
#[test]
fn other_commands_are_refused_while_streaming() {
    let r = reply(4);
    let mut c = Conn::new(SecurityMode::Authenticated);
    assert_eq!(
        c.server.fetch_reply_records(&r.records),
        Err(Error::InvalidCommand("fetch_reply_records"))
    );
    assert_eq!(
        c.server.fetch_reply_end(),
        Err(Error::InvalidCommand("fetch_reply_end"))
    );
    c.server.fetch_reply_begin(header(&r)).unwrap();
    let queued = c.server.queued_octets();
    assert_eq!(
        c.server.fetch_reply_begin(header(&r)),
        Err(Error::InvalidCommand("fetch_reply_begin"))
    );
    assert_eq!(
        c.server.fetch_reply(Err(Accept::Failure)),
        Err(Error::InvalidCommand("fetch_reply"))
    );
    assert_eq!(
        c.server.fetch_reply(Ok(r.clone())),
        Err(Error::InvalidCommand("fetch_reply_begin"))
    );
    assert_eq!(
        c.server.start_ack(Accept::Ok),
        Err(Error::InvalidCommand("start_ack"))
    );
    assert_eq!(
        c.server.accept_session([1; 16], 1),
        Err(Error::InvalidCommand("accept_session"))
    );
    assert_eq!(
        c.server.stop_sessions(&client_stop([1; 16], 1)),
        Err(Error::InvalidCommand("stop_sessions"))
    );
    // None of the refusals queued anything; the answer still completes.
    assert_eq!(c.server.queued_octets(), queued);
    c.server.fetch_reply_records(&r.records).unwrap();
    c.server.fetch_reply_end().unwrap();
    let out = c.server_output();
    c.client.handle_input(c.now, &out).unwrap();
    assert!(matches!(
        c.client.poll_event(),
        Some(ClientEvent::FetchReply(_))
    ));
}

/// Counts the client could not parse are refused before anything is queued.
#[test]
fn counts_beyond_the_wire_limits_are_refused() {
    let r = reply(1);
    let mut c = Conn::new(SecurityMode::Open);
    let mut h = header(&r);
    h.num_records = MAX_FETCH_RECORDS + 1;
    assert!(matches!(
        c.server.fetch_reply_begin(h),
        Err(Error::Limit(_))
    ));
    assert_eq!(c.server.queued_octets(), 0);
    let mut h = header(&r);
    h.skip_ranges = vec![SkipRange { first: 0, last: 0 }; 65_537];
    assert!(matches!(
        c.server.fetch_reply_begin(h),
        Err(Error::Limit(_))
    ));
    assert_eq!(c.server.queued_octets(), 0);
}

/// A streamed answer cut short by the connection closing is a truncated message to the
/// client; a bit flipped in the middle of the records fails the HMAC over them.
#[test]
fn truncated_or_altered_stream_is_detected_by_the_client() {
    for mode in MODES {
        let r = reply(3000);
        let mut c = Conn::new(mode);
        c.server.fetch_reply_begin(header(&r)).unwrap();
        for p in parts(&r.records, &[1000]) {
            c.server.fetch_reply_records(p).unwrap();
        }
        // The end (padding and HMAC) never comes.
        let out = c.server_output();
        c.client.handle_input(c.now, &out).unwrap();
        assert_eq!(c.client.poll_event(), None);
        assert_eq!(
            c.client.handle_close(),
            Err(Error::Wire(WireError::Truncated(
                ippm_proto::session::PEER_CLOSED_MID_MESSAGE
            ))),
            "{mode}"
        );
    }
    for mode in [SecurityMode::Authenticated, SecurityMode::Encrypted] {
        let r = reply(3000);
        let mut c = Conn::new(mode);
        c.server.fetch_reply_begin(header(&r)).unwrap();
        for p in parts(&r.records, &[1000]) {
            c.server.fetch_reply_records(p).unwrap();
        }
        c.server.fetch_reply_end().unwrap();
        let mut out = c.server_output();
        let mid = out.len() / 2;
        out[mid] ^= 0x04;
        assert_eq!(
            c.client.handle_input(c.now, &out),
            Err(Error::BadHmac),
            "{mode}"
        );
    }
}
