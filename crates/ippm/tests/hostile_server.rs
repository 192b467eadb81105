//! Hostile servers against the real clients: `ippm twping` and `ippm owping` against a server
//! written here that trickles a valid Server-Greeting one octet a second (the control timeout
//! covers the whole exchange, not each read), and against one that accepts a test session
//! with port 0 (refused as an error, not reported as a session of 100% loss).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use ippm_proto::wire::owamp::AcceptSessionRepr;
use ippm_proto::wire::setup::{ServerGreetingRepr, ServerStartRepr, SetUpResponseRepr};
use ippm_proto::{Accept, Modes, Timestamp};

mod common;
use common::IPPM;

/// The clients' control timeout (`ippm twping` / `ippm owping` use 10 s).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed beyond it: process start, the connection, the exit.
const SLACK: Duration = Duration::from_secs(3);

/// An open-mode Server-Greeting.
fn greeting() -> Vec<u8> {
    let g = ServerGreetingRepr {
        modes: Modes::OPEN,
        challenge: [7; 16],
        salt: [9; 16],
        count: 1024,
    };
    let mut b = vec![0; ServerGreetingRepr::LEN];
    g.emit(&mut b).unwrap();
    b
}

/// Serves one connection on a loopback listener with `f`, in a thread; returns the address.
fn hostile(f: impl FnOnce(TcpStream) + Send + 'static) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        if let Ok((s, _)) = l.accept() {
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            f(s);
        }
    });
    addr
}

/// Writes a valid greeting one octet a second until the client hangs up (64 s if it never
/// does): each read the client makes gets something well inside any per-read timer.
fn trickle(mut s: TcpStream) {
    for b in greeting() {
        if s.write_all(&[b]).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Open-mode set-up done right, then an Accept-Session that says Accept = 0 with port 0 for
/// every request. `request_len`: the octets of one session request in open mode.
fn accept_port_zero(mut s: TcpStream, request_len: usize) {
    let _ = s.write_all(&greeting());
    let mut setup = vec![0; SetUpResponseRepr::LEN];
    if s.read_exact(&mut setup).is_err() {
        return;
    }
    let start = ServerStartRepr {
        accept: Accept::Ok,
        server_iv: [0; 16],
        start_time: Timestamp::new(3_900_000_000, 0),
    };
    let mut b = vec![0; ServerStartRepr::LEN];
    start.emit(&mut b).unwrap();
    let _ = s.write_all(&b);
    let mut req = vec![0; request_len];
    let mut sid = 1u8;
    while s.read_exact(&mut req).is_ok() {
        let a = AcceptSessionRepr::new(Accept::Ok, 0, [sid; 16]);
        let mut b = vec![0; AcceptSessionRepr::LEN];
        a.emit(&mut b).unwrap();
        if s.write_all(&b).is_err() {
            return;
        }
        sid += 1;
    }
}

/// Runs `ippm ARGS...`: (exit success, stderr, how long it took).
fn ippm(args: &[&str]) -> (bool, String, Duration) {
    let t0 = Instant::now();
    let out = Command::new(IPPM).args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        t0.elapsed(),
    )
}

fn assert_gave_up_on_greeting(tool: &str) {
    let addr = hostile(trickle);
    let (ok, out, took) = ippm(&[tool, &addr, "-c", "1"]);
    assert!(!ok, "{tool} succeeded against a trickling server: {out}");
    assert!(
        took < CONTROL_TIMEOUT + SLACK,
        "{tool} took {took:?} against a server trickling its greeting (deadline {CONTROL_TIMEOUT:?})"
    );
    assert!(
        took >= CONTROL_TIMEOUT - Duration::from_secs(1),
        "{tool} gave up after {took:?}, before the deadline: {out}"
    );
    assert!(
        out.contains("did not complete the greeting and set-up within 10s"),
        "{tool}: {out}"
    );
}

#[test]
fn twping_gives_up_on_a_trickled_greeting_at_the_deadline() {
    assert_gave_up_on_greeting("twping");
}

#[test]
fn owping_gives_up_on_a_trickled_greeting_at_the_deadline() {
    assert_gave_up_on_greeting("owping");
}

#[test]
fn twping_refuses_an_accept_session_with_port_zero() {
    // Request-TW-Session in open mode: 112 octets.
    let addr = hostile(|s| accept_port_zero(s, 112));
    let (ok, out, took) = ippm(&["twping", &addr, "-c", "5", "-i", "0.01f", "-L", "1"]);
    assert!(!ok, "twping went on with port 0: {out}");
    assert!(out.contains("port 0"), "{out}");
    assert!(
        !out.contains("100.0%") && !out.contains("5 sent"),
        "reported a test: {out}"
    );
    assert!(took < CONTROL_TIMEOUT, "{took:?}");
}

#[test]
fn owping_refuses_an_accept_session_with_port_zero() {
    // Request-Session in open mode with one schedule slot: 112 + 16 + 16 (HMAC) octets.
    let addr = hostile(|s| accept_port_zero(s, 144));
    let (ok, out, took) = ippm(&["owping", &addr, "-c", "5", "-i", "0.01f", "-L", "1"]);
    assert!(!ok, "owping went on with port 0: {out}");
    assert!(out.contains("port 0"), "{out}");
    assert!(!out.contains("5 sent"), "reported a test: {out}");
    assert!(took < CONTROL_TIMEOUT, "{took:?}");
}
