//! `cargo bench -p ippm --bench ike`: IKE SA set-up time of ippm's IKEv2 against strongSwan's
//! charon, in one run on one machine, with PSK and with RSA and ECDSA certificates, proposal
//! aes128-sha256-x25519, childless IKE SAs. Needs root and strongSwan (tests/common/charon.rs:
//! two network namespaces joined by a veth pair, side A 192.0.2.1, side B 192.0.2.2).
//!
//! Each figure is the time from "initiate" to "established on the initiator", the responder
//! in side A, the initiator in side B:
//!
//! - (a) charon -> charon: a second charon in side B (IKE port 10500) initiates to the
//!   charon in side A over a vici connection the bench keeps open (so no swanctl process
//!   start is counted): from writing the `initiate` request to reading its answer, which
//!   charon sends once the IKE SA is established; the median round trip of a `version`
//!   request (the same vici path without any IKE work) is subtracted.
//! - (a') the same set-up started with `swanctl --initiate` minus a `swanctl --list-sas`
//!   taken right after it (the swanctl process start and vici connect), for reference.
//!   As a cross-check of (a), charon B's own log (1 ms resolution) gives the mean time from
//!   "initiating IKE_SA" to "established" of all its set-ups.
//! - (b) ippm -> charon: our IKE service in-process in side B (`ippm_net::ike::start` on its
//!   own one-thread runtime): from the call of `IkeHandle::up` to the engine's
//!   "IKE SA established" event, time-stamped by a tracing layer on the service's thread as it
//!   is emitted (not polled).
//! - (c) ippm -> ippm: as (b), to a second in-process service in side A (192.0.2.1:1500).
//!
//! Placement: everything of the initiator side (charon B, our service B, this thread, swanctl)
//! on CPU 0, everything of the responder side (charon A, our service A) on CPU 1. Both
//! charons log at level 1 (a usual production level; the harness's key log at ike = 4 /
//! enc = 4 is turned down with `swanctl --reload-settings`). The cases are interleaved (in
//! a rotating order) in every round, after a warm-up, and every SA is deleted by its
//! initiator before the next set-up, so the machine's noise hits all of them alike; the
//! ratios are to charon -> charon (a) in the same run.
//!
//! IPPM_BENCH_IKE_N (default 50) sets the number of set-ups per case and authentication.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use ippm_ike::config::{Config, Connection, Limits};
use ippm_ike::engine::Spis;
use ippm_ike::proposal::IkeProposal;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

mod common;
use common::{SENDER_CPU, SERVER_CPU, pin};

#[path = "../tests/common/charon/mod.rs"]
mod charon;
#[path = "../tests/common/ours.rs"]
mod ours;
use charon::{Charon, CharonConfig, KeyType, NetPair, Pki, Role, Side};
use ours::Ours;

const PROPOSAL: &str = "aes128-sha256-x25519";
const WAIT: Duration = Duration::from_secs(15);
const WARMUP: usize = 5;
/// charon A (responder) and our service B: the usual IKE port.
const CHARON_A: &str = "192.0.2.1:500";
const OURS_B: &str = "192.0.2.2:500";
/// Our responder in side A, beside charon A.
const OURS_A: &str = "192.0.2.1:1500";
/// charon B's IKE port (ours has 500 in side B).
const CHARON_B_PORT: u16 = 10500;

// ---------------------------------------------------------------------------------------
// Our IKE service, in-process, and the precise "established" signal.

/// The "IKE SA established" events of our engines where we are the initiator: (SPIs as
/// printed, when emitted).
type EstablishedTx = Sender<(String, Instant)>;

/// A tracing layer that time-stamps our engine's "IKE SA established" event on the thread
/// that emits it, at once.
struct Established(EstablishedTx);

#[derive(Default)]
struct EstablishedFields {
    message: String,
    spis: String,
    initiator: bool,
}

impl tracing::field::Visit for EstablishedFields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "spis" => self.spis = format!("{value:?}"),
            _ => {}
        }
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        if field.name() == "initiator" {
            self.initiator = value;
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Established {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let at = Instant::now();
        if event.metadata().target() != "ippm_ike::engine" {
            return;
        }
        let mut f = EstablishedFields::default();
        event.record(&mut f);
        if f.initiator && f.message == "IKE SA established" {
            let _ = self.0.send((f.spis, at));
        }
    }
}

/// Whether no IKE SA with this initiator SPI is left.
fn gone(ours: &Ours, spi_i: [u8; 8]) -> bool {
    ours.handle.list().iter().all(|s| s.spis.i != spi_i)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Auth {
    Psk,
    Rsa,
    Ecdsa,
}

impl Auth {
    fn charon_conn(self) -> &'static str {
        match self {
            Self::Psk => "psk",
            Self::Rsa | Self::Ecdsa => "cert",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Psk => "PSK",
            Self::Rsa => "RSA-2048 cert",
            Self::Ecdsa => "ECDSA P-256 cert",
        }
    }
}

/// Our connection: the initiator's identities when `initiator`, to `remote`.
fn connection(
    name: &str,
    auth: Auth,
    pki: &Pki,
    initiator: bool,
    remote: Option<&str>,
) -> Connection {
    let pki = (auth != Auth::Psk).then_some(pki);
    ours::connection(name, pki, initiator, PROPOSAL, remote)
}

fn config(connections: Vec<Connection>) -> Config {
    Config {
        connections,
        proposals: vec![IkeProposal::parse(PROPOSAL).unwrap()],
        limits: Limits {
            retransmit_timeout: Duration::from_millis(500),
            retransmit_tries: 4,
            rekey_time: None,
            dpd_delay: None,
            ..Limits::default()
        },
    }
}

// ---------------------------------------------------------------------------------------
// A minimal vici client (strongSwan's control protocol): requests and their answers.

/// vici packet types.
const CMD_REQUEST: u8 = 0;
const CMD_RESPONSE: u8 = 1;
const CMD_UNKNOWN: u8 = 2;
/// vici message elements.
const SECTION_START: u8 = 1;
const SECTION_END: u8 = 2;
const KEY_VALUE: u8 = 3;
const LIST_START: u8 = 4;
const LIST_ITEM: u8 = 5;
const LIST_END: u8 = 6;

struct Vici {
    sock: UnixStream,
}

impl Vici {
    fn connect(path: &Path) -> Self {
        let sock = UnixStream::connect(path).unwrap_or_else(|e| panic!("vici {path:?}: {e}"));
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Self { sock }
    }

    /// Sends request `cmd` with these key/values; returns the answer's top-level key/values.
    fn request(&mut self, cmd: &str, kv: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut p = vec![0; 4];
        p.push(CMD_REQUEST);
        p.push(cmd.len() as u8);
        p.extend_from_slice(cmd.as_bytes());
        for (k, v) in kv {
            p.push(KEY_VALUE);
            p.push(k.len() as u8);
            p.extend_from_slice(k.as_bytes());
            p.extend_from_slice(&(v.len() as u16).to_be_bytes());
            p.extend_from_slice(v.as_bytes());
        }
        let len = (p.len() - 4) as u32;
        p[..4].copy_from_slice(&len.to_be_bytes());
        self.sock.write_all(&p).unwrap();
        loop {
            let mut len = [0u8; 4];
            self.sock.read_exact(&mut len).unwrap();
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            self.sock.read_exact(&mut body).unwrap();
            match body.first() {
                Some(&CMD_RESPONSE) => return top_level(&body[1..]),
                Some(&CMD_UNKNOWN) => panic!("vici: unknown command {cmd}"),
                // Events (none registered) and anything else: not our answer.
                _ => {}
            }
        }
    }

    /// As [`Vici::request`]; panics unless the answer says `success = yes`.
    fn command(&mut self, cmd: &str, kv: &[(&str, &str)]) {
        let r = self.request(cmd, kv);
        let get = |k: &str| r.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
        assert_eq!(get("success"), Some("yes"), "vici {cmd} {kv:?}: {r:?}");
    }
}

/// The top-level key/values of a vici message (sections and lists skipped).
fn top_level(mut m: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let name = |m: &mut &[u8]| -> String {
        let n = usize::from(m[0]);
        let s = String::from_utf8_lossy(&m[1..1 + n]).into_owned();
        *m = &m[1 + n..];
        s
    };
    let value = |m: &mut &[u8]| -> String {
        let n = usize::from(u16::from_be_bytes([m[0], m[1]]));
        let s = String::from_utf8_lossy(&m[2..2 + n]).into_owned();
        *m = &m[2 + n..];
        s
    };
    while let Some((&t, rest)) = m.split_first() {
        m = rest;
        match t {
            SECTION_START | LIST_START => {
                name(&mut m);
                depth += 1;
            }
            SECTION_END | LIST_END => depth = depth.saturating_sub(1),
            KEY_VALUE => {
                let k = name(&mut m);
                let v = value(&mut m);
                if depth == 0 {
                    out.push((k, v));
                }
            }
            LIST_ITEM => {
                value(&mut m);
            }
            _ => break,
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The test bed: charon A and our service A (responders) in side A, charon B and our service
// B (initiators) in side B.

/// Turns a harness charon's log down to level 1 (from the key log's ike = 4 / enc = 4) and
/// pins all its threads to `cpu`.
fn tune_charon(c: &Charon, cpu: usize) {
    let conf = c.dir().join("strongswan.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        match t.split_once(" = ").map(|(k, _)| k) {
            Some("ike" | "enc" | "cfg" | "net" | "default") if indent.len() == 6 => {
                out.push_str(indent);
                out.push_str(t.split_once(" = ").unwrap().0);
                out.push_str(" = 1\n");
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    assert!(out.contains("      ike = 1\n") && out.contains("      enc = 1\n"));
    // Milliseconds in the log's time stamps, for the cross-check of (a).
    let out = out.replace(
        "      flush_line = yes\n",
        "      flush_line = yes\n      time_add_ms = yes\n",
    );
    assert!(out.contains("time_add_ms"));
    std::fs::write(&conf, out).unwrap();
    c.swanctl(&["--reload-settings"]);
    let ok = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &c.pid().to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "taskset -a -p {cpu} {} (util-linux)", c.pid());
}

struct Bed {
    _dir: tempfile::TempDir,
    charon_a: Charon,
    charon_b: Charon,
    vici_b: Vici,
    ours_a: Ours,
    ours_b: Ours,
    // Dropped last: the namespaces.
    _net: NetPair,
}

impl Bed {
    /// Everything for PSK and certificates of this key type.
    fn new(kt: KeyType) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let net = NetPair::new();
        let pki = Pki::generate(dir.path(), kt);
        let auth = match kt {
            KeyType::Rsa => Auth::Rsa,
            KeyType::Ecdsa => Auth::Ecdsa,
        };

        let mut ca = CharonConfig::new(Some(&pki), Role::Responder);
        ca.proposals = PROPOSAL.into();
        let charon_a = Charon::start(&net, Side::A, ca);
        tune_charon(&charon_a, SERVER_CPU);
        let mut cb = CharonConfig::new(Some(&pki), Role::Initiator);
        cb.proposals = PROPOSAL.into();
        cb.port = CHARON_B_PORT;
        let charon_b = Charon::start(&net, Side::B, cb);
        tune_charon(&charon_b, SENDER_CPU);
        let vici_b = Vici::connect(&charon_b.dir().join("run/charon.vici"));

        let ours_a = Ours::start(
            &net,
            Side::A,
            OURS_A,
            || pin(SERVER_CPU),
            config(vec![
                connection("psk-in", Auth::Psk, &pki, false, None),
                connection("cert-in", auth, &pki, false, None),
            ]),
        );
        let ours_b = Ours::start(
            &net,
            Side::B,
            OURS_B,
            || pin(SENDER_CPU),
            config(vec![
                connection("psk", Auth::Psk, &pki, true, Some(CHARON_A)),
                connection("cert", auth, &pki, true, Some(CHARON_A)),
                connection("psk-ippm", Auth::Psk, &pki, true, Some(OURS_A)),
                connection("cert-ippm", auth, &pki, true, Some(OURS_A)),
            ]),
        );
        Self {
            _dir: dir,
            charon_a,
            charon_b,
            vici_b,
            ours_a,
            ours_b,
            _net: net,
        }
    }

    /// (a) charon B -> charon A over vici: the `initiate` round trip (raw, not yet net of
    /// the `version` round trip), then the SA is terminated.
    fn charon_vici(&mut self, conn: &str) -> Duration {
        let t0 = Instant::now();
        self.vici_b.command(
            "initiate",
            &[("ike", conn), ("timeout", "15000"), ("loglevel", "-1")],
        );
        let t = t0.elapsed();
        self.vici_b.command(
            "terminate",
            &[("ike", conn), ("timeout", "10000"), ("loglevel", "-1")],
        );
        t
    }

    /// The round trip of a vici request without IKE work.
    fn vici_rtt(&mut self) -> Duration {
        let t0 = Instant::now();
        let r = self.vici_b.request("version", &[]);
        let t = t0.elapsed();
        assert!(r.iter().any(|(k, _)| k == "daemon"), "vici version: {r:?}");
        t
    }

    /// (a') charon B -> charon A with `swanctl --initiate`, and a `swanctl --list-sas` right
    /// after it: (initiate, list-sas) wall times.
    fn charon_swanctl(&mut self, conn: &str) -> (Duration, Duration) {
        let t0 = Instant::now();
        self.charon_b
            .swanctl(&["--initiate", "--ike", conn, "--timeout", "15"]);
        let init = t0.elapsed();
        let t0 = Instant::now();
        let sas = self.charon_b.list_sas();
        let list = t0.elapsed();
        assert!(
            sas.iter()
                .any(|s| s.name == conn && s.state == "ESTABLISHED"),
            "swanctl --initiate {conn}: {sas:?}"
        );
        self.vici_b.command(
            "terminate",
            &[("ike", conn), ("timeout", "10000"), ("loglevel", "-1")],
        );
        (init, list)
    }

    /// (b) and (c): our service B initiates connection `conn`; then deletes the SA and waits
    /// until it is gone on both sides (`to_ours`: the responder is our service A).
    fn ippm(&self, conn: &str, to_ours: bool, est: &Receiver<(String, Instant)>) -> Duration {
        let t0 = Instant::now();
        let spis = self.ours_b.handle.up(conn).unwrap();
        let (full, t1) = wait_established(est, spis).unwrap_or_else(|| {
            panic!(
                "ippm {conn}: not established: ours {:?}, charon A {:?}\n{}",
                self.ours_b.handle.list(),
                self.charon_a.list_sas(),
                self.charon_a.log_summary()
            )
        });
        self.ours_b.handle.down(&full).unwrap();
        let end = Instant::now() + WAIT;
        while !(gone(&self.ours_b, spis.i) && (!to_ours || gone(&self.ours_a, spis.i))) {
            assert!(Instant::now() < end, "ippm {conn}: delete hangs");
            std::thread::sleep(Duration::from_micros(200));
        }
        t1 - t0
    }
}

/// charon's own "initiating IKE_SA" to "IKE_SA ... established" times in its log (1 ms
/// resolution) for connection `conn`.
fn log_setups(log: &str, conn: &str) -> Vec<Duration> {
    // "2026-01-02 03:04:05.678 12[IKE] <psk|7> text"
    let stamp = |l: &str| -> Option<f64> {
        let (hms, ms) = l.split(' ').nth(1)?.split_once('.')?;
        let mut f = hms.split(':').map(|x| x.parse::<f64>().ok());
        Some(f.next()?? * 3600.0 + f.next()?? * 60.0 + f.next()?? + ms.parse::<f64>().ok()? / 1e3)
    };
    let tag = format!("<{conn}|");
    let mut started = std::collections::HashMap::new();
    let mut out = Vec::new();
    for l in log.lines() {
        let Some(id) = l
            .split_once(&tag)
            .and_then(|(_, r)| r.split_once('>'))
            .map(|(i, _)| i)
        else {
            continue;
        };
        if l.contains("> initiating IKE_SA ") {
            if let Some(t) = stamp(l) {
                started.insert(id.to_owned(), t);
            }
        } else if l.contains(" established between ")
            && let (Some(t0), Some(t1)) = (started.remove(id), stamp(l))
        {
            out.push(Duration::from_secs_f64((t1 - t0).max(0.0)));
        }
    }
    out
}

/// Waits for our "established" event of the SA with this initiator SPI: (its SPIs as
/// printed, when).
fn wait_established(est: &Receiver<(String, Instant)>, spis: Spis) -> Option<(String, Instant)> {
    let want = spis.to_string();
    let want = want.split('_').next().unwrap_or_default();
    let end = Instant::now() + WAIT;
    loop {
        let left = end.checked_duration_since(Instant::now())?;
        let (s, at) = est.recv_timeout(left).ok()?;
        if s.starts_with(want) {
            return Some((s, at));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Statistics and the run.

/// Median and 90th percentile (nearest rank), ms.
fn stats(v: &[Duration]) -> (f64, f64) {
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    if ms.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = ms.len();
    let median = if n % 2 == 0 {
        f64::midpoint(ms[n / 2 - 1], ms[n / 2])
    } else {
        ms[n / 2]
    };
    let p90 = ms[((n * 9).div_ceil(10)).clamp(1, n) - 1];
    (median, p90)
}

/// The samples of one authentication method.
#[derive(Default)]
struct Samples {
    vici_raw: Vec<Duration>,
    vici_rtt: Vec<Duration>,
    swanctl_init: Vec<Duration>,
    swanctl_list: Vec<Duration>,
    ippm_charon: Vec<Duration>,
    ippm_ippm: Vec<Duration>,
    /// charon B's own log of all its set-ups of this connection (both ways, and warm-up).
    charon_log: Vec<Duration>,
}

impl Samples {
    /// (a): the vici `initiate` round trips net of the median `version` round trip.
    fn charon(&self) -> Vec<Duration> {
        let (rtt, _) = stats(&self.vici_rtt);
        let rtt = Duration::from_secs_f64(rtt / 1e3);
        self.vici_raw
            .iter()
            .map(|d| d.saturating_sub(rtt))
            .collect()
    }

    /// (a'): each `swanctl --initiate` net of the `--list-sas` right after it.
    fn swanctl(&self) -> Vec<Duration> {
        self.swanctl_init
            .iter()
            .zip(&self.swanctl_list)
            .map(|(i, l)| i.saturating_sub(*l))
            .collect()
    }
}

/// N rounds (after the warm-up) of every case for `auth`, in a rotating order.
fn run(bed: &mut Bed, auth: Auth, n: usize, est: &Receiver<(String, Instant)>) -> Samples {
    let conn = auth.charon_conn();
    let ippm_conn = format!("{conn}-ippm");
    let mut s = Samples::default();
    for round in 0..WARMUP + n {
        let keep = round >= WARMUP;
        for k in 0..4 {
            match (round + k) % 4 {
                0 => {
                    let rtt = bed.vici_rtt();
                    let t = bed.charon_vici(conn);
                    if keep {
                        s.vici_rtt.push(rtt);
                        s.vici_raw.push(t);
                    }
                }
                1 => {
                    let t = bed.ippm(conn, false, est);
                    if keep {
                        s.ippm_charon.push(t);
                    }
                }
                2 => {
                    let t = bed.ippm(&ippm_conn, true, est);
                    if keep {
                        s.ippm_ippm.push(t);
                    }
                }
                _ => {
                    let (i, l) = bed.charon_swanctl(conn);
                    if keep {
                        s.swanctl_init.push(i);
                        s.swanctl_list.push(l);
                    }
                }
            }
            // Let both sides finish with the deleted SA.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    s.charon_log = log_setups(&bed.charon_b.log_text(), conn);
    s
}

fn main() {
    // `cargo bench` passes `--bench`; a test-mode run (`cargo test --benches`) does nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the IKE benchmark needs root (network namespaces, port 500): skipped");
        return;
    }
    let n: usize = std::env::var("IPPM_BENCH_IKE_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50)
        .max(1);
    let started = Instant::now();
    pin(SENDER_CPU);
    let (tx, est) = std::sync::mpsc::channel();
    tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(Established(tx))
        .init();

    println!(
        "ippm IKEv2 benchmark: IKE SA set-up (childless, {PROPOSAL}), initiator in netns B \
         (CPU {SENDER_CPU}), responder in netns A (CPU {SERVER_CPU}), over a veth pair; \
         {n} set-ups per case after {WARMUP} warm-up, cases interleaved, each SA deleted \
         before the next\n"
    );
    let mut results = Vec::new();
    for kt in [KeyType::Rsa, KeyType::Ecdsa] {
        let mut bed = Bed::new(kt);
        let auths: &[Auth] = match kt {
            KeyType::Rsa => &[Auth::Psk, Auth::Rsa],
            KeyType::Ecdsa => &[Auth::Ecdsa],
        };
        for &auth in auths {
            results.push((auth, run(&mut bed, auth, n, &est)));
        }
    }

    println!(
        "{:<17} {:>17} {:>17} {:>17} | {:>13} {:>13} | {:>17}",
        "",
        "(a) charon->charon",
        "(b) ippm->charon",
        "(c) ippm->ippm",
        "b/a",
        "c/a",
        "(a') via swanctl"
    );
    println!(
        "{:<17} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} | {:>6} {:>6} {:>6} {:>6} | {:>8} {:>8}",
        "ms",
        "median",
        "p90",
        "median",
        "p90",
        "median",
        "p90",
        "median",
        "p90",
        "median",
        "p90",
        "median",
        "p90"
    );
    for (auth, s) in &results {
        let (am, ap) = stats(&s.charon());
        let (bm, bp) = stats(&s.ippm_charon);
        let (cm, cp) = stats(&s.ippm_ippm);
        let (sm, sp) = stats(&s.swanctl());
        println!(
            "{:<17} {am:>8.3} {ap:>8.3} {bm:>8.3} {bp:>8.3} {cm:>8.3} {cp:>8.3} | {:>6.2} {:>6.2} \
             {:>6.2} {:>6.2} | {sm:>8.3} {sp:>8.3}",
            auth.label(),
            bm / am,
            bp / ap,
            cm / am,
            cp / ap
        );
    }
    println!();
    let mean = |v: &[Duration]| v.iter().sum::<Duration>().as_secs_f64() * 1e3 / v.len() as f64;
    for (auth, s) in &results {
        let (rm, _) = stats(&s.vici_raw);
        let (vm, vp) = stats(&s.vici_rtt);
        let (im, _) = stats(&s.swanctl_init);
        let (lm, _) = stats(&s.swanctl_list);
        println!(
            "{}: (a) raw vici initiate round trip median {rm:.3} ms, vici version round trip \
             median {vm:.3} ms (p90 {vp:.3}) subtracted; (a') swanctl --initiate median \
             {im:.3} ms, swanctl --list-sas median {lm:.3} ms; cross-check of (a): charon B's \
             own log, initiating to established, mean {:.3} ms over its {} set-ups (1 ms \
             resolution; both ways, warm-up included), (a) mean {:.3} ms",
            auth.label(),
            mean(&s.charon_log),
            s.charon_log.len(),
            mean(&s.charon()),
        );
    }
    println!(
        "\n(a) is charon's own work: set-up started and awaited through a vici connection kept \
         open, net of a vici round trip; (a') shows what the swanctl process start adds (its \
         difference is noisier). (b) and (c) run from IkeHandle::up to the engine's \
         established event, in-process. Ratios < 1: ippm faster than charon->charon.\n\
         total run time {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
