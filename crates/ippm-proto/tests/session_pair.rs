//! Client and server control state machines driven against each other in memory (quinn's
//! `Pair`), in every mode of both protocols, and every way a peer can misbehave.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ippm_proto::session::{
    Client, ClientConfig, ClientEvent, ClientRandom, Error, IkeCredential, PassphraseStore, Secret,
    SecretStore, Server, ServerConfig, ServerEvent, ServerRandom,
};
use ippm_proto::wire::twamp::TwStopSessionsRepr;
use ippm_proto::{Accept, Modes, Protocol, SecurityMode, Timestamp, WireError};

mod common;
use common::*;

/// The control connection's peer (TEST-NET-1).
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// Changes a chunk in flight; the first argument is the chunk's offset in its stream.
type Tamper = Box<dyn FnMut(usize, &mut Vec<u8>)>;

/// One client/server pair connected by an in-memory "TCP" stream with a tamper hook.
struct Pair {
    client: Client,
    server: Server,
    now: Instant,
    client_events: Vec<ClientEvent>,
    server_events: Vec<ServerEvent>,
    client_err: Option<Error>,
    server_err: Option<Error>,
    /// Applied to every chunk the client sends; index = octet offset in the C->S stream.
    tamper_c2s: Option<Tamper>,
    tamper_s2c: Option<Tamper>,
    c2s_off: usize,
    s2c_off: usize,
}

impl Pair {
    fn new(protocol: Protocol, server_cfg: ServerConfig, client_cfg: ClientConfig) -> Self {
        let now = Instant::now();
        let server = Server::new(protocol, Arc::new(server_cfg), PEER, server_random(), now);
        let client = Client::new(protocol, client_cfg, client_random(), now);
        Self {
            client,
            server,
            now,
            client_events: Vec::new(),
            server_events: Vec::new(),
            client_err: None,
            server_err: None,
            tamper_c2s: None,
            tamper_s2c: None,
            c2s_off: 0,
            s2c_off: 0,
        }
    }

    /// Moves octets both ways until neither side has anything to send.
    fn drive(&mut self) {
        loop {
            let mut moved = false;
            while let Some(mut data) = self.server.poll_transmit() {
                if let Some(t) = &mut self.tamper_s2c {
                    t(self.s2c_off, &mut data);
                }
                self.s2c_off += data.len();
                moved = true;
                if self.client_err.is_none() && !self.client.is_closed() {
                    if let Err(e) = self.client.handle_input(self.now, &data) {
                        self.client_err = Some(e);
                    }
                }
            }
            while let Some(mut data) = self.client.poll_transmit() {
                if let Some(t) = &mut self.tamper_c2s {
                    t(self.c2s_off, &mut data);
                }
                self.c2s_off += data.len();
                moved = true;
                if self.server_err.is_none() && !self.server.is_closed() {
                    // Deliver one octet at a time for the first messages to exercise framing
                    // across reads; the rest in one go.
                    if self.c2s_off < 400 {
                        for b in &data {
                            if let Err(e) = self.server.handle_input(self.now, &[*b]) {
                                self.server_err = Some(e);
                                break;
                            }
                        }
                    } else if let Err(e) = self.server.handle_input(self.now, &data) {
                        self.server_err = Some(e);
                    }
                }
            }
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
            }
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e);
            }
            if !moved {
                return;
            }
        }
    }

    /// Start-Sessions, accepted: the set-up is over.
    fn start(&mut self) {
        self.client.start_sessions(self.now).unwrap();
        self.drive();
        self.server.start_ack(Accept::Ok).unwrap();
        self.drive();
    }

    fn last_client_event(&self) -> &ClientEvent {
        self.client_events.last().expect("a client event")
    }

    fn last_server_event(&self) -> &ServerEvent {
        self.server_events.last().expect("a server event")
    }

    fn establish(&mut self) -> SecurityMode {
        self.drive();
        assert_eq!(self.client_err, None);
        assert_eq!(self.server_err, None);
        match self.client_events.first() {
            Some(ClientEvent::Established { mode, .. }) => *mode,
            other => panic!("not established: {other:?}"),
        }
    }
}

fn store() -> Arc<dyn SecretStore> {
    let mut s = PassphraseStore::new();
    s.insert(
        "alice",
        Secret::new(b"correct horse battery staple".to_vec()),
    );
    s.insert("bob", Secret::new(b"bob-secret".to_vec()));
    Arc::new(s)
}

fn server_cfg(modes: Modes) -> ServerConfig {
    ServerConfig::new(modes, store(), Timestamp::new(0xeeae_165e, 0xa17d_6b65))
}

fn client_cfg(mode: SecurityMode) -> ClientConfig {
    if mode == SecurityMode::Open {
        ClientConfig::open()
    } else {
        ClientConfig::with_passphrase(
            vec![mode],
            b"alice",
            Secret::new(b"correct horse battery staple".to_vec()),
        )
    }
}

fn server_random() -> ServerRandom {
    ServerRandom {
        challenge: [0x11; 16],
        salt: [0x22; 16],
        server_iv: [0x33; 16],
    }
}

fn client_random() -> ClientRandom {
    ClientRandom {
        client_iv: [0x44; 16],
        aes_key: [0x55; 16],
        hmac_key: [0x66; 32],
    }
}

const ALL_TWAMP: Modes = Modes(0xff & !0x80);
const ALL_OWAMP: Modes = Modes(0x07);

fn modes_of(p: Protocol) -> Vec<SecurityMode> {
    SecurityMode::all()
        .into_iter()
        .filter(|m| m.available(p))
        .collect()
}

#[test]
fn twamp_full_exchange_every_mode() {
    for mode in modes_of(Protocol::Twamp) {
        let mut p = Pair::new(Protocol::Twamp, server_cfg(ALL_TWAMP), client_cfg(mode));
        assert_eq!(p.establish(), mode);
        match &p.server_events[0] {
            ServerEvent::Established {
                mode: m, identity, ..
            } => {
                assert_eq!(*m, mode);
                assert_eq!(identity.is_some(), mode != SecurityMode::Open);
            }
            other => panic!("{other:?}"),
        }
        let req = twamp_request(7000, 64);
        p.client.request_tw_session(p.now, &req).unwrap();
        p.drive();
        match p.last_server_event() {
            ServerEvent::RequestTwSession(r) => assert_eq!(r, &req),
            other => panic!("{other:?}"),
        }
        let sid = [0xa5; 16];
        p.server.accept_session(sid, 19033).unwrap();
        p.drive();
        assert_eq!(
            p.last_client_event(),
            &ClientEvent::SessionAccepted {
                sid,
                port: 19033,
                reflected_octets: 0,
                server_octets: 0
            }
        );
        // Both sides derive the same test keys.
        match mode {
            SecurityMode::Open => assert!(p.client.test_keys(&sid).is_none()),
            _ => assert_eq!(
                p.client.test_keys(&sid).unwrap().hmac,
                p.server.test_keys(&sid).unwrap().hmac
            ),
        }
        p.client.start_sessions(p.now).unwrap();
        p.drive();
        assert_eq!(p.last_server_event(), &ServerEvent::StartSessions);
        p.server.start_ack(Accept::Ok).unwrap();
        p.drive();
        assert_eq!(p.last_client_event(), &ClientEvent::StartAck(Accept::Ok));
        // RFC 5938 individual session control.
        p.client.start_n_sessions(p.now, vec![sid]).unwrap();
        p.drive();
        assert_eq!(
            p.last_server_event(),
            &ServerEvent::StartNSessions(vec![sid])
        );
        p.server.start_n_ack(Accept::Ok, vec![sid]).unwrap();
        p.drive();
        assert_eq!(
            p.last_client_event(),
            &ClientEvent::StartNAck {
                accept: Accept::Ok,
                sids: vec![sid]
            }
        );
        p.client.stop_n_sessions(p.now, vec![sid]).unwrap();
        p.drive();
        assert_eq!(
            p.last_server_event(),
            &ServerEvent::StopNSessions(vec![sid])
        );
        p.server.stop_n_ack(Accept::Ok, vec![sid]).unwrap();
        p.drive();
        assert_eq!(
            p.last_client_event(),
            &ClientEvent::StopNAck {
                accept: Accept::Ok,
                sids: vec![sid]
            }
        );
        p.client.stop_tw_sessions(p.now, Accept::Ok, 1).unwrap();
        p.drive();
        assert_eq!(
            p.last_server_event(),
            &ServerEvent::StopTwSessions(TwStopSessionsRepr {
                accept: Accept::Ok,
                num_sessions: 1
            })
        );
        assert_eq!((&p.client_err, &p.server_err), (&None, &None), "{mode}");
    }
}

#[test]
fn owamp_full_exchange_every_mode() {
    for mode in modes_of(Protocol::Owamp) {
        let mut p = Pair::new(Protocol::Owamp, server_cfg(ALL_OWAMP), client_cfg(mode));
        assert_eq!(p.establish(), mode);
        // Client -> server session, with two schedule slots.
        let req = owamp_request(false, 9000, 10, 2);
        p.client.request_session(p.now, &req).unwrap();
        p.drive();
        assert_eq!(
            p.last_server_event(),
            &ServerEvent::RequestSession(req.clone())
        );
        let sid1 = [0x01; 16];
        p.server.accept_session(sid1, 18901).unwrap();
        p.drive();
        assert_eq!(
            p.last_client_event(),
            &ClientEvent::SessionAccepted {
                sid: sid1,
                port: 18901,
                reflected_octets: 0,
                server_octets: 0
            }
        );
        // Server -> client session.
        let req2 = owamp_request(true, 9001, 5, 1);
        p.client.request_session(p.now, &req2).unwrap();
        p.drive();
        // The server sends: the session has the SID the client chose, echoed as owampd does.
        let sid2 = req2.sid;
        p.server.accept_session(sid2, 18902).unwrap();
        p.drive();
        p.client.start_sessions(p.now).unwrap();
        p.drive();
        p.server.start_ack(Accept::Ok).unwrap();
        p.drive();
        assert_eq!(p.last_client_event(), &ClientEvent::StartAck(Accept::Ok));
        // Stop from the client, answered by the server's own Stop-Sessions.
        let stop = client_stop(sid1, 10);
        p.client.stop_sessions(p.now, &stop).unwrap();
        p.drive();
        assert_eq!(p.last_server_event(), &ServerEvent::StopSessions(stop));
        let server_stop = client_stop(sid2, 5);
        p.server.stop_sessions(&server_stop).unwrap();
        p.drive();
        assert_eq!(
            p.last_client_event(),
            &ClientEvent::StopSessions(server_stop)
        );
        // Fetch the session the server received.
        let fetch = fetch_repr(sid1, 0, 0xffff_ffff);
        p.client.fetch_session(p.now, &fetch).unwrap();
        p.drive();
        assert_eq!(p.last_server_event(), &ServerEvent::FetchSession(fetch));
        let reply = fetch_reply(&req, 10);
        p.server.fetch_reply(Ok(reply.clone())).unwrap();
        p.drive();
        match p.last_client_event() {
            ClientEvent::FetchReply(r) => {
                assert_eq!(r.records, reply.records);
                assert_eq!(r.skip_ranges, reply.skip_ranges);
                assert_eq!(r.request, reply.request);
                assert_eq!((r.finished, r.next_seqno), (true, 10));
            }
            other => panic!("{other:?}"),
        }
        // A refused fetch leaves the connection usable.
        p.client
            .fetch_session(p.now, &fetch_repr([9; 16], 0, 1))
            .unwrap();
        p.drive();
        p.server.fetch_reply(Err(Accept::Failure)).unwrap();
        p.drive();
        assert_eq!(
            p.last_client_event(),
            &ClientEvent::FetchRejected(Accept::Failure)
        );
        assert!(p.client.is_ready());
        assert_eq!((&p.client_err, &p.server_err), (&None, &None), "{mode}");
    }
}

#[test]
fn stop_sessions_must_account_for_exactly_the_send_sessions() {
    let mut p = Pair::new(
        Protocol::Owamp,
        server_cfg(ALL_OWAMP),
        client_cfg(SecurityMode::Open),
    );
    p.establish();
    let req = owamp_request(false, 9000, 10, 1);
    p.client.request_session(p.now, &req).unwrap();
    p.drive();
    p.server.accept_session([1; 16], 18901).unwrap();
    p.drive();
    // Our client refuses to describe the wrong sessions...
    assert!(matches!(
        p.client.stop_sessions(p.now, &client_stop([9; 16], 10)),
        Err(Error::InvalidCommand(_))
    ));
    // ... and the server refuses a peer that does (RFC 4656 §3.8: SHOULD close).
    let mut p = Pair::new(
        Protocol::Owamp,
        server_cfg(ALL_OWAMP),
        client_cfg(SecurityMode::Open),
    );
    p.establish();
    p.client.request_session(p.now, &req).unwrap();
    p.drive();
    p.server.accept_session([1; 16], 18901).unwrap();
    p.drive();
    let bogus = client_stop([9; 16], 10).to_vec();
    assert!(matches!(
        p.server.handle_input(p.now, &bogus),
        Err(Error::ProtocolViolation(_))
    ));
    // A Request-Session with both or neither of Conf-Sender / Conf-Receiver is refused with
    // Accept 3, and the connection goes on.
    let mut p = Pair::new(
        Protocol::Owamp,
        server_cfg(ALL_OWAMP),
        client_cfg(SecurityMode::Open),
    );
    p.establish();
    let mut both = owamp_request(false, 9000, 10, 1);
    both.conf_sender = true;
    assert!(p.client.request_session(p.now, &both).is_err());
    p.server.handle_input(p.now, &both.to_vec()).unwrap();
    let out = p.server.poll_transmit().unwrap();
    assert_eq!(Accept::from(out[0]), Accept::NotSupported);
    assert!(!p.server.is_closed());
}

#[test]
fn rejected_session_keeps_connection() {
    let mut p = Pair::new(
        Protocol::Twamp,
        server_cfg(ALL_TWAMP),
        client_cfg(SecurityMode::Encrypted),
    );
    p.establish();
    p.client
        .request_tw_session(p.now, &twamp_request(7000, 64))
        .unwrap();
    p.drive();
    p.server
        .reject_session(Accept::TemporaryResourceLimitation)
        .unwrap();
    p.drive();
    assert_eq!(
        p.last_client_event(),
        &ClientEvent::SessionRejected(Accept::TemporaryResourceLimitation)
    );
    assert!(p.client.is_ready());
    p.client
        .request_tw_session(p.now, &twamp_request(7002, 64))
        .unwrap();
    p.drive();
    p.server.accept_session([3; 16], 1234).unwrap();
    p.drive();
    assert_eq!(
        p.last_client_event(),
        &ClientEvent::SessionAccepted {
            sid: [3; 16],
            port: 1234,
            reflected_octets: 0,
            server_octets: 0
        }
    );
}

#[test]
fn session_limit_per_connection() {
    let mut cfg = server_cfg(ALL_TWAMP);
    cfg.max_sessions = 1;
    let mut p = Pair::new(
        Protocol::Twamp,
        cfg,
        client_cfg(SecurityMode::Authenticated),
    );
    p.establish();
    p.client
        .request_tw_session(p.now, &twamp_request(7000, 64))
        .unwrap();
    p.drive();
    p.server.accept_session([1; 16], 1).unwrap();
    p.drive();
    p.client
        .request_tw_session(p.now, &twamp_request(7001, 64))
        .unwrap();
    p.drive();
    assert_eq!(
        p.last_client_event(),
        &ClientEvent::SessionRejected(Accept::TemporaryResourceLimitation)
    );
}

#[test]
fn ike_derived_key_and_unknown_sa() {
    #[derive(Debug)]
    struct Ike;
    impl SecretStore for Ike {
        fn passphrase(&self, _: &[u8]) -> Option<Secret> {
            None
        }
        fn ike_secret(&self, spi_i: [u8; 8], spi_r: [u8; 8], _peer: IpAddr) -> Option<Secret> {
            (spi_i == [1; 8] && spi_r == [2; 8]).then(|| Secret::new(vec![0x77; 32]))
        }
    }
    for (spi_r, ok) in [([2u8; 8], true), ([9u8; 8], false)] {
        let cfg = ServerConfig::new(Modes(0x0f | 0x80), Arc::new(Ike), Timestamp::new(1, 0));
        let mut ccfg = ClientConfig::open();
        ccfg.modes = vec![SecurityMode::Authenticated];
        ccfg.ike = Some(IkeCredential {
            spi_i: [1; 8],
            spi_r,
            secret: Secret::new(vec![0x77; 32]),
        });
        let mut p = Pair::new(Protocol::Twamp, cfg, ccfg);
        p.drive();
        if ok {
            match &p.client_events[0] {
                ClientEvent::Established { selected, .. } => assert_eq!(*selected, Modes(0x82)),
                other => panic!("{other:?}"),
            }
            match &p.server_events[0] {
                ServerEvent::Established { extensions, .. } => assert_eq!(*extensions, Modes(0x80)),
                other => panic!("{other:?}"),
            }
        } else {
            assert_eq!(p.client_err, Some(Error::Rejected(Accept::NoIkeSa)));
            assert_eq!(
                p.server_err,
                Some(Error::UnknownIkeSa {
                    spi_i: [1; 8],
                    spi_r: [9; 8]
                })
            );
            assert!(p.server.is_closed());
        }
    }
}

#[test]
fn legacy_server_gets_one_mode_bit() {
    // A server advertising no extension: the client must not set extension bits.
    let mut ccfg = client_cfg(SecurityMode::Authenticated);
    ccfg.extensions = Modes(0x70);
    let mut p = Pair::new(Protocol::Twamp, server_cfg(Modes(0x0f)), ccfg);
    p.establish();
    match &p.client_events[0] {
        ClientEvent::Established { selected, .. } => assert_eq!(*selected, Modes::AUTHENTICATED),
        other => panic!("{other:?}"),
    }
}

// ---- misbehaviour: each yields its typed error -------------------------------------------

#[test]
fn wrong_passphrase_is_refused_with_accept_1() {
    let ccfg = ClientConfig::with_passphrase(
        vec![SecurityMode::Authenticated],
        b"alice",
        Secret::new(b"wrong horse battery staple".to_vec()),
    );
    let mut p = Pair::new(Protocol::Twamp, server_cfg(ALL_TWAMP), ccfg);
    p.drive();
    assert_eq!(p.server_err, Some(Error::AuthenticationFailed));
    assert_eq!(p.client_err, Some(Error::Rejected(Accept::Failure)));
}

#[test]
fn unknown_identity_is_refused() {
    let ccfg = ClientConfig::with_passphrase(
        vec![SecurityMode::Encrypted],
        b"alic",
        Secret::new(b"correct horse battery staple".to_vec()),
    );
    let mut p = Pair::new(Protocol::Owamp, server_cfg(ALL_OWAMP), ccfg);
    p.drive();
    assert_eq!(p.server_err, Some(Error::AuthenticationFailed));
    assert_eq!(p.client_err, Some(Error::Rejected(Accept::Failure)));
}

#[test]
fn server_with_no_modes() {
    let mut p = Pair::new(
        Protocol::Twamp,
        server_cfg(Modes::NONE),
        client_cfg(SecurityMode::Open),
    );
    p.drive();
    assert_eq!(p.client_err, Some(Error::NoModes));
}

#[test]
fn no_common_mode_sends_mode_zero() {
    let mut p = Pair::new(
        Protocol::Twamp,
        server_cfg(Modes::OPEN),
        client_cfg(SecurityMode::Encrypted),
    );
    p.drive();
    assert_eq!(
        p.client_err,
        Some(Error::NoCommonMode {
            offered: Modes::OPEN,
            protocol: Protocol::Twamp,
        })
    );
    assert_eq!(p.server_err, Some(Error::ClientDeclined));
}

#[test]
fn unadvertised_mode_is_refused() {
    // The server offers open and authenticated; a client (forced by tampering) picks
    // encrypted.
    let mut p = Pair::new(
        Protocol::Owamp,
        server_cfg(Modes(0x03)),
        client_cfg(SecurityMode::Authenticated),
    );
    p.tamper_c2s = Some(Box::new(|off, data| {
        if off == 0 {
            data[3] = 0x04;
        }
    }));
    p.drive();
    assert_eq!(
        p.server_err,
        Some(Error::UnsupportedMode {
            chosen: Modes::ENCRYPTED,
            advertised: Modes(0x03)
        })
    );
    assert_eq!(p.client_err, Some(Error::Rejected(Accept::NotSupported)));
}

#[test]
fn two_security_bits_are_refused() {
    let mut p = Pair::new(
        Protocol::Twamp,
        server_cfg(ALL_TWAMP),
        client_cfg(SecurityMode::Open),
    );
    p.tamper_c2s = Some(Box::new(|off, data| {
        if off == 0 {
            data[3] = 0x03;
        }
    }));
    p.drive();
    assert!(matches!(p.server_err, Some(Error::UnsupportedMode { .. })));
}

#[test]
fn absurd_count_is_refused_by_client() {
    for (count, want) in [
        (1u32 << 24, "too large"),
        (3000, "not a power of two"),
        (512, "too small"),
    ] {
        let mut cfg = server_cfg(ALL_TWAMP);
        cfg.count = count;
        let mut p = Pair::new(
            Protocol::Twamp,
            cfg,
            client_cfg(SecurityMode::Authenticated),
        );
        p.drive();
        assert!(
            matches!(p.client_err, Some(Error::BadCount(_))),
            "{want}: {:?}",
            p.client_err
        );
    }
}

#[test]
fn tampered_control_stream_fails_hmac() {
    for protocol in [Protocol::Owamp, Protocol::Twamp] {
        for mode in [SecurityMode::Authenticated, SecurityMode::Encrypted] {
            // Flip one bit in the first command after the Set-Up-Response.
            let mut p = Pair::new(protocol, server_cfg(Modes(0x0f)), client_cfg(mode));
            p.establish();
            p.tamper_c2s = Some(Box::new(|_, data| data[40] ^= 0x01));
            match protocol {
                Protocol::Owamp => p
                    .client
                    .request_session(p.now, &owamp_request(false, 1, 1, 1))
                    .unwrap(),
                Protocol::Twamp => p
                    .client
                    .request_tw_session(p.now, &twamp_request(1, 64))
                    .unwrap(),
            }
            p.drive();
            assert_eq!(p.server_err, Some(Error::BadHmac), "{protocol:?} {mode}");
            assert!(p.server.is_closed());
        }
    }
}

#[test]
fn tampered_server_stream_fails_hmac() {
    let mut p = Pair::new(
        Protocol::Twamp,
        server_cfg(ALL_TWAMP),
        client_cfg(SecurityMode::Mixed),
    );
    p.establish();
    p.tamper_s2c = Some(Box::new(|_, data| data[5] ^= 0x80));
    p.client
        .request_tw_session(p.now, &twamp_request(1, 64))
        .unwrap();
    p.drive();
    p.server.accept_session([1; 16], 5).unwrap();
    p.drive();
    assert_eq!(p.client_err, Some(Error::BadHmac));
}

#[test]
fn wrong_message_is_unexpected() {
    // Fetch-Session is OWAMP only; a TWAMP server takes it as an unexpected command.
    let mut p = Pair::new(
        Protocol::Twamp,
        server_cfg(ALL_TWAMP),
        client_cfg(SecurityMode::Open),
    );
    p.establish();
    let fetch = fetch_bytes([0; 16]);
    let err = p.server.handle_input(p.now, &fetch).unwrap_err();
    assert!(matches!(
        err,
        Error::UnexpectedMessage {
            got: ippm_proto::Command::FetchSession,
            ..
        }
    ));
    assert!(p.server.is_closed());
    // A client that gets a message nobody asked for.
    let mut p = Pair::new(
        Protocol::Twamp,
        server_cfg(ALL_TWAMP),
        client_cfg(SecurityMode::Open),
    );
    p.establish();
    let err = p.client.handle_input(p.now, &[0u8; 48]).unwrap_err();
    assert!(matches!(err, Error::UnexpectedMessage { .. }));
}

#[test]
fn rfc5938_commands_need_the_mode_bit() {
    let mut p = Pair::new(
        Protocol::Twamp,
        server_cfg(Modes(0x0f)),
        client_cfg(SecurityMode::Open),
    );
    p.establish();
    let mut msg = vec![0u8; 48];
    msg[0] = 7; // Start-N-Sessions
    msg[15] = 1;
    let err = p.server.handle_input(p.now, &msg).unwrap_err();
    assert!(matches!(err, Error::UnexpectedMessage { .. }));
}

#[test]
fn truncated_message_on_close() {
    let mut p = Pair::new(
        Protocol::Twamp,
        server_cfg(ALL_TWAMP),
        client_cfg(SecurityMode::Open),
    );
    p.establish();
    let req = twamp_request_bytes();
    p.server.handle_input(p.now, &req[..50]).unwrap();
    assert!(p.server.poll_event().is_none());
    assert!(matches!(
        p.server.handle_close(),
        Err(Error::Wire(WireError::Truncated(_)))
    ));
    // A clean close at a message boundary is no error.
    let mut p = Pair::new(
        Protocol::Twamp,
        server_cfg(ALL_TWAMP),
        client_cfg(SecurityMode::Open),
    );
    p.establish();
    assert_eq!(p.server.handle_close(), Ok(()));
}

#[test]
fn truncated_set_up_response_then_close() {
    let now = Instant::now();
    let mut s = Server::new(
        Protocol::Owamp,
        Arc::new(server_cfg(ALL_OWAMP)),
        PEER,
        server_random(),
        now,
    );
    s.handle_input(now, &[0, 0, 0, 1]).unwrap();
    assert!(matches!(
        s.handle_close(),
        Err(Error::Wire(WireError::Truncated(_)))
    ));
}

#[test]
fn hostile_slot_count_is_refused_with_accept() {
    let mut p = Pair::new(
        Protocol::Owamp,
        server_cfg(ALL_OWAMP),
        client_cfg(SecurityMode::Open),
    );
    p.establish();
    let mut msg = vec![0u8; 16];
    msg[0] = 1;
    msg[1] = 4;
    msg[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    let err = p.server.handle_input(p.now, &msg).unwrap_err();
    assert!(
        matches!(err, Error::Wire(WireError::TooLarge { .. })),
        "{err:?}"
    );
    let out = p.server.poll_transmit().expect("an Accept-Session");
    assert_eq!(out.len(), 48);
    assert_eq!(Accept::from(out[0]), Accept::PermanentResourceLimitation);
}

#[test]
fn timeouts() {
    let now = Instant::now();
    let cfg = server_cfg(ALL_TWAMP);
    let setup = cfg.setup_timeout;
    let mut s = Server::new(Protocol::Twamp, Arc::new(cfg), PEER, server_random(), now);
    assert_eq!(s.poll_timeout(), Some(now + setup));
    assert_eq!(
        s.handle_timeout(now + setup - Duration::from_millis(1)),
        Ok(())
    );
    assert!(matches!(
        s.handle_timeout(now + setup),
        Err(Error::Timeout(_))
    ));
    assert!(s.is_closed());
    // A client waiting for an answer times out; one with nothing outstanding has no timer.
    let mut p = Pair::new(
        Protocol::Twamp,
        server_cfg(ALL_TWAMP),
        client_cfg(SecurityMode::Open),
    );
    p.establish();
    assert_eq!(p.client.poll_timeout(), None);
    p.client
        .request_tw_session(p.now, &twamp_request(1, 0))
        .unwrap();
    let d = p.client.poll_timeout().unwrap();
    assert!(matches!(
        p.client.handle_timeout(d),
        Err(Error::Timeout("Accept-Session"))
    ));
    // Until Start-Sessions the set-up deadline holds: test traffic does not move it.
    let mut p = Pair::new(
        Protocol::Twamp,
        server_cfg(ALL_TWAMP),
        client_cfg(SecurityMode::Open),
    );
    p.establish();
    let first = p.server.poll_timeout().unwrap();
    assert_eq!(
        first,
        p.now + setup,
        "the set-up deadline runs from the greeting"
    );
    p.server.note_activity(p.now + Duration::from_secs(1));
    assert_eq!(p.server.poll_timeout(), Some(first));
    assert!(!p.server.is_set_up());
    // Start-Sessions ends the set-up; then the idle deadline moves with commands and
    // activity.
    p.now += Duration::from_secs(5);
    p.start();
    assert!(p.server.is_set_up());
    let idle = p.server.poll_timeout().unwrap();
    assert_eq!(idle, p.now + Duration::from_secs(900));
    p.server.note_activity(p.now + Duration::from_secs(100));
    assert!(p.server.poll_timeout().unwrap() > idle);
}

/// Slowloris: a client that trickles its messages octet by octet is held to the set-up
/// deadline from the greeting, and once set up, octets of a message never completed do
/// not renew the idle deadline.
#[test]
fn trickled_octets_extend_no_deadline() {
    let cfg = server_cfg(ALL_TWAMP);
    let setup = cfg.setup_timeout;
    let mut p = Pair::new(Protocol::Twamp, cfg, client_cfg(SecurityMode::Open));
    let t0 = p.now;
    p.establish();
    p.client
        .request_tw_session(p.now, &twamp_request(1, 0))
        .unwrap();
    let req = p.client.poll_transmit().unwrap();
    // One octet every two seconds, as the attack did: the deadline never moves.
    for (i, b) in req.iter().take(req.len() - 1).enumerate() {
        let now = t0 + Duration::from_secs(2 * i as u64 / 8);
        p.server.handle_input(now, &[*b]).unwrap();
        assert_eq!(p.server.poll_timeout(), Some(t0 + setup), "octet {i}");
    }
    assert!(matches!(
        p.server.handle_timeout(t0 + setup),
        Err(Error::Timeout("the set-up to finish with Start-Sessions"))
    ));

    // Set up, then a partial command: the idle deadline is the last complete command's.
    let mut p = Pair::new(
        Protocol::Twamp,
        server_cfg(ALL_TWAMP),
        client_cfg(SecurityMode::Open),
    );
    p.establish();
    p.start();
    let idle = p.server.poll_timeout().unwrap();
    p.client
        .request_tw_session(p.now, &twamp_request(1, 0))
        .unwrap();
    let req = p.client.poll_transmit().unwrap();
    for (i, b) in req.iter().take(req.len() - 1).enumerate() {
        let now = p.now + Duration::from_secs(i as u64);
        p.server.handle_input(now, &[*b]).unwrap();
    }
    assert_eq!(p.server.poll_timeout(), Some(idle));
    // The last octet completes the command: now the deadline moves.
    let late = p.now + Duration::from_secs(200);
    p.server.handle_input(late, &req[req.len() - 1..]).unwrap();
    assert_eq!(
        p.server.poll_timeout(),
        Some(late + Duration::from_secs(900))
    );
}

#[test]
fn commands_out_of_order_are_refused() {
    let mut p = Pair::new(
        Protocol::Twamp,
        server_cfg(ALL_TWAMP),
        client_cfg(SecurityMode::Open),
    );
    assert_eq!(
        p.client.start_sessions(p.now),
        Err(Error::InvalidCommand("start_sessions"))
    );
    p.establish();
    assert!(matches!(
        p.client
            .request_session(p.now, &owamp_request(false, 1, 1, 1)),
        Err(Error::InvalidCommand(_))
    ));
    assert!(matches!(
        p.server.start_ack(Accept::Ok),
        Err(Error::InvalidCommand(_))
    ));
    assert!(matches!(
        p.client.fetch_session(p.now, &fetch_repr([0; 16], 0, 1)),
        Err(Error::InvalidCommand(_))
    ));
}
