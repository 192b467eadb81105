//! The OWAMP server and owping against each other on loopback: both directions, every mode,
//! IPv4 and IPv6, fixed and exponential schedules, Fetch-Session, Stop-Sessions both ways.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ippm_net::owamp_client::{OwpingOptions, owping};
use ippm_net::owamp_server::{OwampServerOptions, Store, serve};
use ippm_net::twamp_client::Interval;
use ippm_proto::session::{PassphraseStore, Secret, ServerConfig};
use ippm_proto::{Modes, SecurityMode, Timestamp};
use tokio::net::TcpListener;

async fn start(ip: IpAddr) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let mut store = PassphraseStore::new();
    store.insert(
        "alice",
        Secret::new(b"correct horse battery staple".to_vec()),
    );
    let mut control = ServerConfig::new(Modes(0x07), Arc::new(store), Timestamp::new(1, 0));
    control.count = 1024;
    let opts = Arc::new(OwampServerOptions::new(Arc::new(control)));
    let l = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
    let a = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(serve(l, opts, Arc::new(Store::default()), rx));
    (a, tx)
}

fn options(server: SocketAddr, mode: SecurityMode, interval: Interval) -> OwpingOptions {
    OwpingOptions {
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
        interval,
        padding: 0,
        dscp: 0,
        loss_timeout: Duration::from_millis(300),
        local: None,
        ports: None,
        max_count: 1 << 16,
        control_timeout: Duration::from_secs(5),
        rng: ippm_net::rng::os(),
        to_server: true,
        from_server: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_directions_every_mode() {
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let (addr, _stop) = start(ip).await;
        for mode in [
            SecurityMode::Open,
            SecurityMode::Authenticated,
            SecurityMode::Encrypted,
        ] {
            for interval in [
                Interval::Fixed(Duration::from_millis(2)),
                Interval::Exponential(Duration::from_millis(2)),
            ] {
                let r = owping(&options(addr, mode, interval))
                    .await
                    .unwrap_or_else(|e| panic!("{ip} {mode}: {e}"));
                assert_eq!(r.mode, mode);
                for (dir, w) in [
                    ("to", r.to_server.as_ref().unwrap()),
                    ("from", r.from_server.as_ref().unwrap()),
                ] {
                    assert_eq!(w.next_seqno, 20, "{ip} {mode} {dir}");
                    let mut seqs: Vec<u32> = w.records.iter().map(|x| x.seq).collect();
                    seqs.sort_unstable();
                    assert_eq!(
                        seqs,
                        (0..20).collect::<Vec<_>>(),
                        "{ip} {mode} {dir}: every packet, once"
                    );
                    for x in &w.records {
                        assert!(x.recv_time >= x.send_time, "{dir}: received before sent");
                        assert!(x.recv_time.nanos_since(x.send_time) < 50_000_000);
                        assert_eq!(
                            x.ttl, 255,
                            "{ip} {dir}: sent with TTL 255 (RFC 4656 §4.1.2)"
                        );
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn one_direction_and_refusals() {
    let (addr, _stop) = start(IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let mut o = options(
        addr,
        SecurityMode::Open,
        Interval::Fixed(Duration::from_millis(1)),
    );
    o.from_server = false;
    let r = owping(&o).await.unwrap();
    assert!(r.from_server.is_none());
    assert_eq!(r.to_server.unwrap().records.len(), 20);
    let mut o = options(
        addr,
        SecurityMode::Authenticated,
        Interval::Fixed(Duration::from_millis(1)),
    );
    o.to_server = false;
    o.padding = 100;
    let r = owping(&o).await.unwrap();
    assert!(r.to_server.is_none());
    assert_eq!(r.from_server.unwrap().records.len(), 20);
    // Too many packets: Accept 4.
    let mut o = options(
        addr,
        SecurityMode::Open,
        Interval::Fixed(Duration::from_millis(1)),
    );
    o.count = 20_000_000;
    assert!(owping(&o).await.is_err());
}
