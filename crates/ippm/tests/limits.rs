//! The limits both protocols obey, from one place (`ippm_net::admission` and
//! `ippm_net::policy`): OWAMP sessions count against the session total and obey the
//! `[open]` / per-identity session limits and the test ports as TWAMP sessions do, and the
//! totals hold over all listeners, not per listener.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ippm_proto::session::ClientEvent;
use ippm_proto::{Accept, Protocol, SecurityMode};

mod common;
use common::ctl::{Ctl, ow_request, tw_request};
use common::{Daemon, free_ports};

/// `--max-sessions-total` bounds OWAMP sessions too (each a socket on the engine, and a
/// descriptor), not only TWAMP's.
#[test]
fn owamp_sessions_count_against_the_total() {
    let d = Daemon::start_both("127.0.0.1", &["--max-sessions-total", "2"], None);
    let owamp = d.owamp.clone().unwrap();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sink.local_addr().unwrap();
    let mut c = Ctl::new(&owamp, Protocol::Owamp, SecurityMode::Open);
    let gap = Duration::from_secs(1);
    for i in 0..2u8 {
        let mut req = ow_request(me, true, 10, gap);
        req.sid = [i; 16];
        c.session(&req);
    }
    let mut req = ow_request(me, true, 10, gap);
    req.sid = [9; 16];
    c.c.request_session(Instant::now(), &req).unwrap();
    assert_eq!(
        c.event(),
        ClientEvent::SessionRejected(Accept::TemporaryResourceLimitation),
        "a third OWAMP session beyond --max-sessions-total 2"
    );
}

/// `--max-sessions-total` is "most test sessions at once, over all connections": with two
/// listeners (IPv4 and IPv6, the default pair) it is not taken twice.
#[test]
fn twamp_session_total_over_all_listeners() {
    let (d, listening) = Daemon::start_args(
        &[
            "--twamp-listen",
            "127.0.0.1:0",
            "--twamp-listen",
            "[::1]:0",
            "--max-sessions-total",
            "1",
        ],
        2,
        None,
    );
    let v4 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let v6 = UdpSocket::bind("[::1]:0").unwrap();
    let mut first = Ctl::new(&listening[0].1, Protocol::Twamp, SecurityMode::Open);
    first.tw_session(v4.local_addr().unwrap());
    // Started: a set-up connection's sessions never give way to a newcomer's.
    first.start();
    let mut second = Ctl::new(&listening[1].1, Protocol::Twamp, SecurityMode::Open);
    second
        .c
        .request_tw_session(Instant::now(), &tw_request(v6.local_addr().unwrap()))
        .unwrap();
    assert_eq!(
        second.event(),
        ClientEvent::SessionRejected(Accept::TemporaryResourceLimitation),
        "a second session beyond --max-sessions-total 1, on the other listener"
    );
    drop(d);
}

/// `--test-ports` bounds the ports of OWAMP receive sessions as of TWAMP's: a Receiver Port
/// asked for outside it is not bound; the session gets a port of the range.
#[test]
fn owamp_receiver_port_within_the_test_ports() {
    let p = free_ports(2);
    let range = format!("{p}-{p}");
    let d = Daemon::start_both("127.0.0.1", &["--test-ports", &range], None);
    let owamp = d.owamp.clone().unwrap();
    let me: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut c = Ctl::new(&owamp, Protocol::Owamp, SecurityMode::Open);
    let mut req = ow_request(me, false, 10, Duration::from_secs(1));
    req.receiver_port = p + 1;
    let (_, port) = c.session(&req);
    assert_eq!(port, p, "asked for {}, outside {range}", p + 1);
}

/// `[open] max_sessions` (and `[[identity]] max_sessions`) limit the sessions of a control
/// connection, OWAMP's as TWAMP's.
#[test]
fn owamp_sessions_obey_the_open_limit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ippm.toml");
    std::fs::write(&cfg, "[open]\nmax_sessions = 1\n").unwrap();
    let d = Daemon::start_both("127.0.0.1", &["--config", cfg.to_str().unwrap()], None);
    let me: SocketAddr = "127.0.0.1:9".parse().unwrap();
    // TWAMP: the second is refused.
    let mut c = Ctl::new(&d.addr, Protocol::Twamp, SecurityMode::Open);
    c.tw_session(me);
    c.c.request_tw_session(Instant::now(), &tw_request(me))
        .unwrap();
    assert!(matches!(c.event(), ClientEvent::SessionRejected(_)));
    // OWAMP: so should it be.
    let mut c = Ctl::new(
        d.owamp.as_ref().unwrap(),
        Protocol::Owamp,
        SecurityMode::Open,
    );
    let gap = Duration::from_secs(1);
    c.session(&ow_request(me, false, 10, gap));
    c.c.request_session(Instant::now(), &ow_request(me, false, 10, gap))
        .unwrap();
    let second = c.event();
    assert!(
        matches!(second, ClientEvent::SessionRejected(_)),
        "a second OWAMP session beyond [open] max_sessions = 1: {second:?}"
    );
}

/// `[[identity]] max_sessions` holds for an authenticated OWAMP client as for TWAMP: the
/// third session of `alice` (limit 2) is refused, with Accept = 4 (the identity's limit does
/// not change by waiting).
#[test]
fn owamp_sessions_obey_the_identity_limit() {
    let dir = tempfile::tempdir().unwrap();
    let keys = common::keyfile(dir.path());
    let cfg = dir.path().join("ippm.toml");
    std::fs::write(
        &cfg,
        format!(
            "keys = {:?}\n[[identity]]\nname = \"alice\"\nmax_sessions = 2\n",
            keys.to_str().unwrap()
        ),
    )
    .unwrap();
    let d = Daemon::start_both("127.0.0.1", &["--config", cfg.to_str().unwrap()], None);
    let me: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let gap = Duration::from_secs(1);
    for (addr, protocol) in [
        (d.owamp.clone().unwrap(), Protocol::Owamp),
        (d.addr.clone(), Protocol::Twamp),
    ] {
        let mut c = Ctl::new(&addr, protocol, SecurityMode::Authenticated);
        for _ in 0..2 {
            match protocol {
                Protocol::Owamp => {
                    c.session(&ow_request(me, false, 10, gap));
                }
                Protocol::Twamp => {
                    c.tw_session(me);
                }
            }
        }
        match protocol {
            Protocol::Owamp => {
                c.c.request_session(Instant::now(), &ow_request(me, false, 10, gap))
            }
            Protocol::Twamp => c.c.request_tw_session(Instant::now(), &tw_request(me)),
        }
        .unwrap();
        assert_eq!(
            c.event(),
            ClientEvent::SessionRejected(Accept::PermanentResourceLimitation),
            "{protocol:?}: a third session of alice, whose limit is 2"
        );
    }
}
