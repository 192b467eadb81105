//! Our own control client for the tests that speak O/TWAMP-Control by hand: the session state
//! machine over a blocking TCP stream, with fixed randomness; and the session requests they
//! send.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ippm_proto::schedule::Slot;
use ippm_proto::session::{Client, ClientConfig, ClientEvent, ClientRandom, Secret};
use ippm_proto::time::duration_to_bits;
use ippm_proto::wire::owamp::{RequestSessionRepr, TypeP};
use ippm_proto::wire::twamp::RequestTwSessionRepr;
use ippm_proto::{Accept, Protocol, SecurityMode, Timestamp};

/// A control connection driven by the tests.
pub(crate) struct Ctl {
    pub(crate) s: std::net::TcpStream,
    pub(crate) c: Client,
}

impl Ctl {
    /// Connects to `addr` and sets up `mode` (the protected ones as `alice`, see
    /// [`super::keyfile`]).
    pub(crate) fn new(addr: &str, protocol: Protocol, mode: SecurityMode) -> Self {
        let s = std::net::TcpStream::connect(addr).unwrap();
        Self::over(s, protocol, mode).unwrap()
    }

    /// Sets up `mode` over a connection made by the caller (e.g. from another source
    /// address); an error if the server closes or refuses first.
    pub(crate) fn over(
        s: std::net::TcpStream,
        protocol: Protocol,
        mode: SecurityMode,
    ) -> Result<Self, String> {
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let cfg = if mode == SecurityMode::Open {
            ClientConfig::open()
        } else {
            ClientConfig::with_passphrase(vec![mode], b"alice", Secret::new(super::ALICE.to_vec()))
        };
        let r = ClientRandom {
            client_iv: [1; 16],
            aes_key: [2; 16],
            hmac_key: [3; 32],
        };
        let mut me = Self {
            s,
            c: Client::new(protocol, cfg, r, Instant::now()),
        };
        match me.try_event()? {
            ClientEvent::Established { .. } => Ok(me),
            other => Err(format!("{other:?}")),
        }
    }

    /// Writes what the state machine has queued.
    pub(crate) fn flush(&mut self) {
        while let Some(o) = self.c.poll_transmit() {
            self.s.write_all(&o).unwrap();
        }
    }

    /// The next event, reading from the server as needed.
    pub(crate) fn event(&mut self) -> ClientEvent {
        self.try_event().unwrap()
    }

    /// The next event, or why there is none (the server closed, a read failed).
    pub(crate) fn try_event(&mut self) -> Result<ClientEvent, String> {
        let mut buf = [0u8; 4096];
        loop {
            while let Some(o) = self.c.poll_transmit() {
                self.s.write_all(&o).map_err(|e| e.to_string())?;
            }
            if let Some(e) = self.c.poll_event() {
                return Ok(e);
            }
            let n = self.s.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("server closed".into());
            }
            self.c
                .handle_input(Instant::now(), &buf[..n])
                .map_err(|e| e.to_string())?;
        }
    }

    /// Requests an OWAMP session; its SID and port.
    pub(crate) fn session(&mut self, req: &RequestSessionRepr) -> ([u8; 16], u16) {
        self.c.request_session(Instant::now(), req).unwrap();
        match self.event() {
            ClientEvent::SessionAccepted { sid, port, .. } => (sid, port),
            other => panic!("{other:?}"),
        }
    }

    /// Requests a TWAMP session from `me`; its SID and the reflector's port.
    pub(crate) fn tw_session(&mut self, me: SocketAddr) -> ([u8; 16], u16) {
        self.c
            .request_tw_session(Instant::now(), &tw_request(me))
            .unwrap();
        match self.event() {
            ClientEvent::SessionAccepted { sid, port, .. } => (sid, port),
            other => panic!("{other:?}"),
        }
    }

    pub(crate) fn start(&mut self) {
        self.c.start_sessions(Instant::now()).unwrap();
        assert_eq!(self.event(), ClientEvent::StartAck(Accept::Ok));
    }
}

/// An OWAMP session between `me` and the server: the server sends to `me` when
/// `server_sends`, else `me` sends to it; `packets` with a fixed `gap`.
pub(crate) fn ow_request(
    me: SocketAddr,
    server_sends: bool,
    packets: u32,
    gap: Duration,
) -> RequestSessionRepr {
    RequestSessionRepr {
        conf_sender: server_sends,
        conf_receiver: !server_sends,
        num_packets: packets,
        sender_port: if server_sends { 0 } else { me.port() },
        receiver_port: if server_sends { me.port() } else { 0 },
        sender_address: me.ip(),
        receiver_address: me.ip(),
        sid: if server_sends { [0x42; 16] } else { [0; 16] },
        padding_length: 0,
        start_time: Timestamp::ZERO,
        timeout: 1 << 32,
        type_p: TypeP(0),
        slots: vec![Slot::Fixed(duration_to_bits(gap))],
    }
}

/// A TWAMP session whose sender is `me`.
pub(crate) fn tw_request(me: SocketAddr) -> RequestTwSessionRepr {
    RequestTwSessionRepr {
        sender_port: me.port(),
        receiver_port: 0,
        sender_address: me.ip(),
        receiver_address: me.ip(),
        padding_length: 64,
        start_time: Timestamp::ZERO,
        timeout: 1 << 32,
        type_p: TypeP(0),
        octets_to_reflect: 0,
        padding_to_reflect: 0,
    }
}
