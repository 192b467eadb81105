//! The TWAMP server and twping against each other on loopback, in every mode, IPv4 and IPv6.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ippm_net::twamp_client::{Interval, TwpingError, TwpingOptions, twping};
use ippm_net::twamp_server::{TwampServerOptions, serve};
use ippm_proto::session::{PassphraseStore, Secret, ServerConfig};
use ippm_proto::{Accept, Modes, SecurityMode, Timestamp};
use tokio::net::TcpListener;

async fn start_server(ip: IpAddr, modes: Modes) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let mut store = PassphraseStore::new();
    store.insert(
        "alice",
        Secret::new(b"correct horse battery staple".to_vec()),
    );
    let mut control = ServerConfig::new(modes, Arc::new(store), Timestamp::new(1, 0));
    control.count = 1024;
    let opts = Arc::new(TwampServerOptions::new(Arc::new(control)));
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(serve(listener, opts, rx));
    (addr, tx)
}

fn options(server: SocketAddr, mode: SecurityMode) -> TwpingOptions {
    TwpingOptions {
        server,
        modes: vec![mode],
        identity: (mode != SecurityMode::Open).then(|| {
            (
                b"alice".to_vec(),
                Secret::new(b"correct horse battery staple".to_vec()),
            )
        }),
        ike: None,
        progress: None,
        count: 20,
        interval: Interval::Fixed(Duration::from_millis(2)),
        padding: None,
        dscp: 0,
        loss_timeout: Duration::from_millis(500),
        local: None,
        ports: None,
        max_count: 1 << 16,
        control_timeout: Duration::from_secs(5),
        rng: ippm_net::rng::os(),
        session_control: false,
        reflect: None,
        symmetrical: false,
        keep_records: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_both_families() {
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let (addr, stop) = start_server(ip, Modes(0x0f)).await;
        for mode in SecurityMode::all() {
            let r = twping(&options(addr, mode))
                .await
                .unwrap_or_else(|e| panic!("{ip} {mode}: {e}"));
            assert_eq!(r.mode, mode);
            assert_eq!(r.sent.len(), 20);
            assert_eq!(r.replies.len(), 20, "{ip} {mode}: lost replies on loopback");
            assert_eq!(r.bad_replies, 0);
            let header = ippm_proto::wire::test::Layout::of(mode).reflector_header_len();
            for (i, rep) in r.replies.iter().enumerate() {
                let f = &rep.reflector;
                assert_eq!(f.seq as usize, i, "reflector sequence numbers count up");
                let sent = r.sent[f.sender_seq as usize];
                assert_eq!(f.sender_timestamp, sent.time);
                // T1 <= T2 <= T3 <= T4 on one clock.
                assert!(f.receive_timestamp >= sent.time, "{mode}");
                assert!(f.timestamp >= f.receive_timestamp);
                assert!(rep.recv_time >= f.timestamp);
                assert!(rep.recv_time.nanos_since(sent.time) < 50_000_000);
                assert_eq!(
                    f.sender_ttl, 255,
                    "{ip}: sent with TTL 255 (RFC 5357 §4.1.2), as the reflector saw it"
                );
                assert!(header > 0);
            }
        }
        let _ = stop.send(true);
    }
}

#[tokio::test]
async fn wrong_passphrase_and_unoffered_mode_are_refused() {
    let (addr, _stop) = start_server(IpAddr::V4(Ipv4Addr::LOCALHOST), Modes(0x0f)).await;
    let mut o = options(addr, SecurityMode::Authenticated);
    o.identity = Some((b"alice".to_vec(), Secret::new(b"wrong".to_vec())));
    let e = twping(&o).await.unwrap_err();
    assert!(
        matches!(
            e,
            TwpingError::Control(ippm_proto::session::Error::Rejected(Accept::Failure))
        ),
        "{e}"
    );
    let (addr, _stop2) = start_server(IpAddr::V4(Ipv4Addr::LOCALHOST), Modes(0x01)).await;
    let e = twping(&options(addr, SecurityMode::Encrypted))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            TwpingError::Control(ippm_proto::session::Error::NoCommonMode { .. })
        ),
        "{e}"
    );
}

#[tokio::test]
async fn padding_and_dscp_are_honoured() {
    let (addr, _stop) = start_server(IpAddr::V4(Ipv4Addr::LOCALHOST), Modes(0x0f)).await;
    let mut o = options(addr, SecurityMode::Authenticated);
    o.padding = Some(100);
    o.dscp = 46;
    o.count = 3;
    let r = twping(&o).await.unwrap();
    assert_eq!(r.padding, 100);
    assert_eq!(r.replies.len(), 3);
}

#[tokio::test]
async fn rfc5938_and_rfc6038() {
    let (addr, _stop) = start_server(IpAddr::V4(Ipv4Addr::LOCALHOST), Modes(0x7f)).await;
    for mode in [SecurityMode::Open, SecurityMode::Encrypted] {
        for (session_control, reflect, symmetrical) in [
            (true, None, false),
            (false, Some(40), false),
            (false, None, true),
            (true, Some(16), true),
        ] {
            let mut o = options(addr, mode);
            o.count = 10;
            o.session_control = session_control;
            o.reflect = reflect;
            o.symmetrical = symmetrical;
            let r = twping(&o).await.unwrap_or_else(|e| {
                panic!("{mode} {session_control} {reflect:?} {symmetrical}: {e}")
            });
            assert_eq!(r.replies.len(), 10);
            assert_eq!(
                r.reflect_mismatches, 0,
                "reflected padding came back unchanged"
            );
            assert_eq!(
                r.extensions
                    .contains(Modes::TWAMP_INDIVIDUAL_SESSION_CONTROL),
                session_control
            );
            assert_eq!(
                r.extensions.contains(Modes::TWAMP_REFLECT_OCTETS),
                reflect.is_some()
            );
            assert_eq!(
                r.extensions.contains(Modes::TWAMP_SYMMETRICAL_SIZE),
                symmetrical
            );
        }
    }
    // A server that does not offer them: the client says so instead of silently going on.
    let (legacy, _stop2) = start_server(IpAddr::V4(Ipv4Addr::LOCALHOST), Modes(0x0f)).await;
    let mut o = options(legacy, SecurityMode::Open);
    o.session_control = true;
    assert!(matches!(twping(&o).await, Err(TwpingError::NotOffered(_))));
    // Too little padding for the octets to reflect: Accept = 3.
    let mut o = options(addr, SecurityMode::Open);
    o.reflect = Some(40);
    o.padding = Some(30);
    assert!(matches!(
        twping(&o).await,
        Err(TwpingError::SessionRefused(Accept::NotSupported))
    ));
}
