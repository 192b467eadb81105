//! twping's and owping's library entry points with a random source that fails: the run ends
//! with the typed RNG error, and never connects and goes on with zero keys. A source that
//! fails only later (after the session keys, at the SID or the padding) ends the run the same
//! way. STAMP's sender too, before its first packet.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ippm_net::owamp_client::{OwpingOptions, owping};
use ippm_net::owamp_server::{OwampServerOptions, Store};
use ippm_net::rng::{OsRandom, RandomError, SecureRandom};
use ippm_net::twamp_client::{Interval, TwpingError, TwpingOptions, twping};
use ippm_net::twamp_server::{TwampServerOptions, serve};
use ippm_proto::session::{PassphraseStore, Secret, ServerConfig};
use ippm_proto::{Modes, SecurityMode, Timestamp};
use tokio::net::TcpListener;

const ALICE: &[u8] = b"correct horse battery staple";

/// Gives `ok` good fills (from the OS), then fails every one; counts the fills asked for.
#[derive(Debug)]
struct FailsAfter {
    ok: usize,
    calls: AtomicUsize,
}

impl FailsAfter {
    fn new(ok: usize) -> Arc<Self> {
        Arc::new(Self {
            ok,
            calls: AtomicUsize::new(0),
        })
    }
}

impl SecureRandom for FailsAfter {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.ok {
            OsRandom.fill(buf)
        } else {
            Err(RandomError)
        }
    }
}

fn server_config(modes: Modes) -> Arc<ServerConfig> {
    let mut store = PassphraseStore::new();
    store.insert("alice", Secret::new(ALICE.to_vec()));
    let mut control = ServerConfig::new(modes, Arc::new(store), Timestamp::new(1, 0));
    control.count = 1024;
    Arc::new(control)
}

async fn twamp_server() -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let opts = Arc::new(TwampServerOptions::new(server_config(Modes(0x0f))));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(serve(listener, opts, rx));
    (addr, tx)
}

async fn owamp_server() -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let opts = Arc::new(OwampServerOptions::new(server_config(Modes(0x07))));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(ippm_net::owamp_server::serve(
        listener,
        opts,
        Arc::new(Store::default()),
        rx,
    ));
    (addr, tx)
}

fn alice() -> Option<(Vec<u8>, Secret)> {
    Some((b"alice".to_vec(), Secret::new(ALICE.to_vec())))
}

fn twping_options(server: SocketAddr, rng: Arc<dyn SecureRandom>) -> TwpingOptions {
    TwpingOptions {
        server,
        modes: vec![SecurityMode::Encrypted],
        identity: alice(),
        ike: None,
        progress: None,
        count: 5,
        interval: Interval::Exponential(Duration::from_millis(2)),
        padding: None,
        dscp: 0,
        loss_timeout: Duration::from_millis(300),
        local: None,
        ports: None,
        max_count: 1 << 16,
        control_timeout: Duration::from_secs(5),
        rng,
        session_control: false,
        reflect: None,
        symmetrical: false,
        keep_records: true,
    }
}

fn owping_options(server: SocketAddr, rng: Arc<dyn SecureRandom>) -> OwpingOptions {
    OwpingOptions {
        server,
        modes: vec![SecurityMode::Encrypted],
        identity: alice(),
        ike: None,
        progress: None,
        count: 5,
        interval: Interval::Fixed(Duration::from_millis(2)),
        padding: 16,
        dscp: 0,
        loss_timeout: Duration::from_millis(300),
        local: None,
        ports: None,
        max_count: 1 << 16,
        control_timeout: Duration::from_secs(5),
        rng,
        to_server: true,
        from_server: true,
    }
}

/// A listener that counts the connections made to it.
async fn counting_listener() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind((IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
        .await
        .unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let seen = n.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (addr, n)
}

fn is_random(e: &TwpingError) -> bool {
    matches!(e, TwpingError::Random(RandomError))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_generator_ends_the_run_before_any_connection() {
    let (addr, connections) = counting_listener().await;
    let e = twping(&twping_options(addr, FailsAfter::new(0)))
        .await
        .unwrap_err();
    assert!(is_random(&e), "twping: {e}");
    assert!(
        e.to_string().contains("random number generator failed"),
        "{e}"
    );
    let e = owping(&owping_options(addr, FailsAfter::new(0)))
        .await
        .unwrap_err();
    assert!(is_random(&e), "owping: {e}");
    // The keys are drawn before connecting: nothing went to the network.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generator_failing_after_the_keys_ends_the_run() {
    let (addr, _stop) = twamp_server().await;
    // A good source works against this server (the baseline for what follows).
    let r = twping(&twping_options(addr, ippm_net::rng::os()))
        .await
        .unwrap();
    assert_eq!(r.replies.len(), 5);
    // The three session keys draw, then the padding does not: an error, no test result.
    let rng = FailsAfter::new(3);
    let e = twping(&twping_options(addr, rng.clone()))
        .await
        .unwrap_err();
    assert!(is_random(&e), "twping: {e}");
    assert_eq!(rng.calls.load(Ordering::SeqCst), 4);

    let (addr, _stop) = owamp_server().await;
    owping(&owping_options(addr, ippm_net::rng::os()))
        .await
        .unwrap();
    // The keys draw, then the SID of the session from the server does not.
    let rng = FailsAfter::new(3);
    let e = owping(&owping_options(addr, rng.clone()))
        .await
        .unwrap_err();
    assert!(is_random(&e), "owping: {e}");
    assert_eq!(rng.calls.load(Ordering::SeqCst), 4);
}

/// STAMP (issue 14: checked everywhere): the sender draws its padding and its schedule's seed
/// before the first packet; a source failing at either ends the run with the typed error and
/// nothing sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_generator_ends_a_stamp_run_before_any_packet() {
    use ippm_net::stamp_client::{StampClientError, StampMode, StampOptions, TlvSelection, stamp};
    let reflector = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    reflector.set_nonblocking(true).unwrap();
    // Padding first (one fill), then the seed: fail at the first, then at the second.
    for ok in [0, 1] {
        let rng = FailsAfter::new(ok);
        let opts = StampOptions {
            reflector: reflector.local_addr().unwrap(),
            count: 5,
            interval: Interval::Fixed(Duration::from_millis(1)),
            dscp: 0,
            loss_timeout: Duration::from_secs(1),
            local: None,
            ports: None,
            mode: StampMode::Unauthenticated,
            key: None,
            ssid: 1,
            tlvs: TlvSelection {
                padding: Some(16),
                ..TlvSelection::default()
            },
            keep_records: false,
            progress: None,
            rng: rng.clone(),
        };
        let e = stamp(&opts).await.unwrap_err();
        assert!(
            matches!(e, StampClientError::Random(RandomError)),
            "{ok}: {e}"
        );
        assert_eq!(rng.calls.load(Ordering::SeqCst), ok + 1);
        // Loopback delivers as it sends: had a packet gone, it would be here now.
        let mut buf = [0u8; 2048];
        assert_eq!(
            reflector.recv(&mut buf).unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock,
            "{ok}: a packet was sent"
        );
    }
}
