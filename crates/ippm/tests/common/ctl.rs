//! Our own control client for the tests that speak O/TWAMP-Control by hand: the session state
//! machine over a blocking TCP stream, with fixed randomness.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use ippm_proto::session::{Client, ClientConfig, ClientEvent, ClientRandom, Secret};
use ippm_proto::{Protocol, SecurityMode};

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
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
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
        match me.event() {
            ClientEvent::Established { .. } => {}
            other => panic!("{other:?}"),
        }
        me
    }

    /// Writes what the state machine has queued.
    pub(crate) fn flush(&mut self) {
        while let Some(o) = self.c.poll_transmit() {
            self.s.write_all(&o).unwrap();
        }
    }

    /// The next event, reading from the server as needed.
    pub(crate) fn event(&mut self) -> ClientEvent {
        let mut buf = [0u8; 65536];
        loop {
            self.flush();
            if let Some(e) = self.c.poll_event() {
                return e;
            }
            let n = self.s.read(&mut buf).unwrap();
            assert!(n > 0, "server closed");
            self.c.handle_input(Instant::now(), &buf[..n]).unwrap();
        }
    }
}
