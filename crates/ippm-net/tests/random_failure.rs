//! A failing random number generator on the server side: nothing is keyed from zeros. A
//! connection that cannot draw its Challenge, Salt and Server-IV is closed before the
//! greeting; a session that cannot draw its SID is refused (Accept = 2); and the next
//! connection, once the generator works again, is served.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ippm_net::owamp_server::{OwampServerOptions, Store};
use ippm_net::rng::{RandomError, SecureRandom};
use ippm_net::twamp_server::TwampServerOptions;
use ippm_proto::schedule::Slot;
use ippm_proto::session::{Client, ClientConfig, ClientEvent, ClientRandom, ServerConfig};
use ippm_proto::wire::owamp::{RequestSessionRepr, TypeP};
use ippm_proto::wire::twamp::RequestTwSessionRepr;
use ippm_proto::{Accept, Modes, Protocol, Timestamp};
use tokio::net::TcpListener;

/// The OS generator, failing while `broken`, or from the `after`-th draw on.
#[derive(Debug, Default)]
struct Flaky {
    broken: AtomicBool,
    after: AtomicUsize,
    draws: AtomicUsize,
}

impl SecureRandom for Flaky {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        let n = self.draws.fetch_add(1, Ordering::SeqCst);
        let after = self.after.load(Ordering::SeqCst);
        if self.broken.load(Ordering::SeqCst) || (after > 0 && n >= after) {
            return Err(RandomError);
        }
        ippm_net::rng::OsRandom.fill(buf)
    }
}

impl Flaky {
    fn set(&self, broken: bool, after: usize) {
        self.draws.store(0, Ordering::SeqCst);
        self.after.store(after, Ordering::SeqCst);
        self.broken.store(broken, Ordering::SeqCst);
    }
}

async fn start(
    protocol: Protocol,
    rng: Arc<Flaky>,
) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let control = Arc::new(ServerConfig::new(
        Modes::OPEN,
        Arc::new(ippm_proto::session::PassphraseStore::new()),
        Timestamp::new(1, 0),
    ));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    match protocol {
        Protocol::Twamp => {
            let mut o = TwampServerOptions::new(control);
            o.rules.random = rng;
            tokio::spawn(ippm_net::twamp_server::serve(l, Arc::new(o), rx));
        }
        Protocol::Owamp => {
            let mut o = OwampServerOptions::new(control);
            o.rules.random = rng;
            tokio::spawn(ippm_net::owamp_server::serve(
                l,
                Arc::new(o),
                Arc::new(Store::default()),
                rx,
            ));
        }
    }
    (a, tx)
}

/// Everything the server sends until it closes (or 3 s pass).
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// Sets up open mode and asks for one session: the event that answers it.
fn request_one(addr: SocketAddr, protocol: Protocol) -> ClientEvent {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let r = ClientRandom {
        client_iv: [1; 16],
        aes_key: [2; 16],
        hmac_key: [3; 32],
    };
    let mut c = Client::new(protocol, ClientConfig::open(), r, Instant::now());
    let me: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut asked = false;
    let mut buf = [0u8; 4096];
    loop {
        while let Some(o) = c.poll_transmit() {
            s.write_all(&o).unwrap();
        }
        match c.poll_event() {
            Some(ClientEvent::Established { .. }) if !asked => {
                asked = true;
                match protocol {
                    Protocol::Twamp => c.request_tw_session(
                        Instant::now(),
                        &RequestTwSessionRepr {
                            sender_port: 9,
                            receiver_port: 0,
                            sender_address: me.ip(),
                            receiver_address: me.ip(),
                            padding_length: 0,
                            start_time: Timestamp::ZERO,
                            timeout: 1 << 32,
                            type_p: TypeP(0),
                            octets_to_reflect: 0,
                            padding_to_reflect: 0,
                        },
                    ),
                    Protocol::Owamp => c.request_session(
                        Instant::now(),
                        &RequestSessionRepr {
                            conf_sender: false,
                            conf_receiver: true,
                            num_packets: 10,
                            sender_port: 9,
                            receiver_port: 0,
                            sender_address: me.ip(),
                            receiver_address: me.ip(),
                            sid: [0; 16],
                            padding_length: 0,
                            start_time: Timestamp::ZERO,
                            timeout: 1 << 32,
                            type_p: TypeP(0),
                            slots: vec![Slot::Fixed(1 << 32)],
                        },
                    ),
                }
                .unwrap();
                continue;
            }
            Some(ev) => return ev,
            None => {}
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "server closed");
        c.handle_input(Instant::now(), &buf[..n]).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_generator_keys_nothing() {
    for protocol in [Protocol::Twamp, Protocol::Owamp] {
        let rng = Arc::new(Flaky::default());
        let (addr, _stop) = start(protocol, rng.clone()).await;
        // No random octets for the greeting: closed with nothing sent (no Challenge of zeros).
        rng.set(true, 0);
        let got =
            tokio::task::spawn_blocking(move || read_all(&mut TcpStream::connect(addr).unwrap()))
                .await
                .unwrap();
        assert!(
            got.is_empty(),
            "{protocol:?}: {} octets sent without randomness",
            got.len()
        );
        // Greeting drawn (three draws), the SID's draw fails: the session is refused.
        rng.set(false, 3);
        let ev = tokio::task::spawn_blocking(move || request_one(addr, protocol))
            .await
            .unwrap();
        assert_eq!(
            ev,
            ClientEvent::SessionRejected(Accept::InternalError),
            "{protocol:?}"
        );
        // Working again: served.
        rng.set(false, 0);
        let ev = tokio::task::spawn_blocking(move || request_one(addr, protocol))
            .await
            .unwrap();
        assert!(
            matches!(ev, ClientEvent::SessionAccepted { .. }),
            "{protocol:?}: {ev:?}"
        );
    }
}
