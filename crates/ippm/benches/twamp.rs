//! `cargo bench -p ippm --bench twamp`: TWAMP speed against a raw UDP echo, in one run on
//! loopback, with the same CPU placement for both:
//!
//! - reflector side on CPU 1: the raw echo thread, or the `ippm serve` process
//!   (`taskset -c 1`);
//! - sender side on CPU 0: the raw sender and receiver threads, or `ippm twping`'s work (a
//!   single-threaded tokio runtime pinned to CPU 0).
//!
//! Figures are ratios to the raw echo measured in the same run, since these machines are
//! shared and noisy.
//!
//! (a) Highest rate actually achieved with < 0.01% loss, authenticated mode, vs the raw
//!     echo's.
//! (b) Median RTT at 100 packets/s net of reflector time, vs the raw echo's taken with kernel
//!     receive timestamps at both ends and send times taken right at the send.
//! (c) Reflector processing: user-space time per packet of the reflector's work (unprotect,
//!     reply, stamp, protect), and T3 - T2 vs the raw echo's.
//! (d) Control set-up time (connect to Start-Ack), authenticated mode.
//!
//! IPPM_BENCH_SECONDS (default 1) sets the length of each rate step.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ippm_net::reflector::reflect_packet;
use ippm_net::twamp_client::{Interval, TwpingOptions, twping};
use ippm_net::udp::{blocking_socket, recv_blocking};
use ippm_proto::crypto::TestKeys;
use ippm_proto::session::Secret;
use ippm_proto::wire::test::{Layout, PacketKind, SenderRepr, TestProtection};
use ippm_proto::{ErrorEstimate, SecurityMode, Timestamp};

mod common;
use common::{SENDER_CPU, SERVER_CPU, median, now_ns, pace, pin};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const RATES: [u64; 15] = [
    1_000, 2_000, 5_000, 10_000, 20_000, 35_000, 50_000, 75_000, 100_000, 125_000, 150_000,
    175_000, 200_000, 250_000, 300_000,
];

/// The raw echo: one thread on the reflector CPU, blocking socket, T2 from the kernel, T3
/// right before the send, both written into the echoed packet (offsets 8 and 16).
fn raw_echo() -> (SocketAddr, Arc<AtomicBool>) {
    let s = blocking_socket(SocketAddr::new(LO, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let addr = s.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    std::thread::spawn(move || {
        pin(SERVER_CPU);
        let mut buf = [0u8; 2048];
        while !stop2.load(Ordering::Relaxed) {
            let Ok(m) = recv_blocking(&s, &mut buf) else {
                continue;
            };
            let t2 = m
                .kernel_time
                .map(|d| d.as_nanos() as i64)
                .unwrap_or_else(now_ns);
            buf[8..16].copy_from_slice(&t2.to_be_bytes());
            buf[16..24].copy_from_slice(&now_ns().to_be_bytes());
            let _ = s.send_to(&buf[..m.len], m.from);
        }
    });
    (addr, stop)
}

/// Sends `n` packets of `len` octets at `rate` to the raw echo; returns (loss ratio, RTTs net
/// of echo time, echo times, achieved send rate).
fn raw_run(echo: SocketAddr, rate: u64, n: u64, len: usize) -> (f64, Vec<i64>, Vec<i64>, f64) {
    let s = blocking_socket(SocketAddr::new(LO, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let s2 = s.try_clone().unwrap();
    let recv = std::thread::spawn(move || {
        pin(SENDER_CPU);
        let mut buf = [0u8; 2048];
        let (mut got, mut rtt, mut proc_) = (0u64, Vec::new(), Vec::new());
        while let Ok(m) = recv_blocking(&s2, &mut buf) {
            got += 1;
            let t4 = m
                .kernel_time
                .map(|d| d.as_nanos() as i64)
                .unwrap_or_else(now_ns);
            let f = |o: usize| i64::from_be_bytes(buf[o..o + 8].try_into().unwrap());
            let (t1, t2, t3) = (f(0), f(8), f(16));
            rtt.push((t4 - t1) - (t3 - t2));
            proc_.push(t3 - t2);
            if got == n {
                break;
            }
        }
        (got, rtt, proc_)
    });
    let t0 = Instant::now();
    let mut pkt = vec![0u8; len];
    pace(rate, n, |_| {
        pkt[..8].copy_from_slice(&now_ns().to_be_bytes());
        let _ = s.send_to(&pkt, echo);
    });
    let achieved = n as f64 / t0.elapsed().as_secs_f64();
    let (got, rtt, proc_) = recv.join().unwrap();
    (1.0 - got as f64 / n as f64, rtt, proc_, achieved)
}

fn options(server: SocketAddr, rate: u64, n: u64) -> TwpingOptions {
    TwpingOptions {
        server,
        modes: vec![SecurityMode::Authenticated],
        identity: Some((b"bench".to_vec(), Secret::new(b"bench secret".to_vec()))),
        ike: None,
        progress: None,
        count: n as u32,
        interval: Interval::Fixed(Duration::from_nanos(1_000_000_000 / rate)),
        padding: None,
        dscp: 0,
        loss_timeout: Duration::from_millis(300),
        local: None,
        ports: None,
        max_count: 1 << 16,
        control_timeout: Duration::from_secs(10),
        session_control: false,
        reflect: None,
        symmetrical: false,
        keep_records: true,
    }
}

fn ns_between(a: Timestamp, b: Timestamp) -> i64 {
    b.nanos_since(a)
}

fn main() {
    let secs: f64 = std::env::var("IPPM_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let d = common::Daemon::start("twamp");
    let server = d.addr;
    pin(SENDER_CPU);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (echo, stop) = raw_echo();
    let len = 112; // authenticated TWAMP packets are 112 octets both ways
    println!("ippm TWAMP benchmark on loopback, {len}-octet packets, {secs} s per rate step");
    println!(
        "placement: reflector side (raw echo thread / ippm serve) on CPU {SERVER_CPU}, \
         sender side (raw sender+receiver / twping on a one-thread runtime) on CPU {SENDER_CPU}\n"
    );

    let mut raw_best = 0;
    let mut ippm_best = 0;
    println!(
        "{:>8}  {:>10} {:>10}  {:>10} {:>10}",
        "rate/s", "raw sent/s", "raw loss", "ippm sent/s", "ippm loss"
    );
    for rate in RATES {
        let n = ((rate as f64) * secs) as u64;
        let (raw_loss, _, _, raw_rate) = raw_run(echo, rate, n, len);
        let r = rt.block_on(twping(&options(server, rate, n))).unwrap();
        let got: std::collections::HashSet<u32> =
            r.replies.iter().map(|p| p.reflector.sender_seq).collect();
        let ippm_loss = 1.0 - got.len() as f64 / n as f64;
        let span = match (r.sent.first(), r.sent.last()) {
            (Some(a), Some(b)) => ns_between(a.time, b.time).max(1) as f64 / 1e9,
            _ => 1.0,
        };
        let ippm_rate = r.sent.len() as f64 / span;
        println!(
            "{rate:>8}  {raw_rate:>10.0} {:>9.4}%  {ippm_rate:>10.0} {:>9.4}%",
            raw_loss * 100.0,
            ippm_loss * 100.0
        );
        // The best is the highest rate actually sent (not merely asked for) with < 0.01% loss.
        if raw_loss < 0.0001 {
            raw_best = raw_best.max(raw_rate as u64);
        }
        if ippm_loss < 0.0001 {
            ippm_best = ippm_best.max(ippm_rate as u64);
        }
        // Stop once neither side keeps up any more.
        let raw_failed = raw_loss >= 0.01 || raw_rate < 0.9 * rate as f64;
        let ippm_failed = ippm_loss >= 0.01 || ippm_rate < 0.9 * rate as f64;
        if raw_failed && ippm_failed {
            break;
        }
    }
    println!(
        "\n(a) highest rate with < 0.01% loss: raw echo {raw_best}/s, ippm (authenticated) \
         {ippm_best}/s, ratio {:.2} (target >= 0.8)",
        ippm_best as f64 / raw_best.max(1) as f64
    );

    let n = (100.0 * secs.max(2.0)) as u64;
    let (_, raw_rtt, raw_proc, _) = raw_run(echo, 100, n, len);
    let r = rt.block_on(twping(&options(server, 100, n))).unwrap();
    let rtt: Vec<i64> = r
        .replies
        .iter()
        .map(|p| {
            let f = &p.reflector;
            ns_between(f.sender_timestamp, p.recv_time)
                - ns_between(f.receive_timestamp, f.timestamp)
        })
        .collect();
    let procs: Vec<i64> = r
        .replies
        .iter()
        .map(|p| ns_between(p.reflector.receive_timestamp, p.reflector.timestamp))
        .collect();
    let (mr, mi) = (median(raw_rtt), median(rtt));
    println!(
        "(b) median RTT at 100/s net of reflector time: raw echo {:.1} us, ippm {:.1} us, \
         ratio {:.2} (target <= 1.2)",
        mr / 1e3,
        mi / 1e3,
        mi / mr
    );
    let (pr, pi) = (median(raw_proc), median(procs));
    println!(
        "(c) T3 - T2 (kernel receive stamp to transmit stamp) at 100/s: raw echo {:.1} us, \
         ippm {:.1} us, ratio {:.2} (target <= 1.1)",
        pr / 1e3,
        pi / 1e3,
        pi / pr
    );

    // The same at 10k packets/s, where the reflector's code and keys stay in cache.
    let n = (10_000.0 * secs) as u64;
    let (_, _, raw_proc, _) = raw_run(echo, 10_000, n, len);
    let r = rt.block_on(twping(&options(server, 10_000, n))).unwrap();
    let procs: Vec<i64> = r
        .replies
        .iter()
        .map(|p| ns_between(p.reflector.receive_timestamp, p.reflector.timestamp))
        .collect();
    let (pr, pi) = (median(raw_proc), median(procs));
    println!(
        "(c) T3 - T2 at 10k/s: raw echo {:.1} us, ippm {:.1} us, ratio {:.2}",
        pr / 1e3,
        pi / 1e3,
        pi / pr
    );

    let keys = TestKeys {
        aes: [7; 16],
        hmac: [9; 32],
    };
    let prot = TestProtection::new(SecurityMode::Authenticated, Some(&keys)).unwrap();
    let mut sender = vec![0u8; len];
    SenderRepr {
        seq: 1,
        timestamp: Timestamp::new(5, 6),
        error_estimate: ErrorEstimate::new(true, 0, 1),
    }
    .emit(&mut sender, Layout::Protected)
    .unwrap();
    prot.protect(PacketKind::Sender, &mut sender);
    let mut pkt = sender.clone();
    let mut tx = vec![0u8; 2048];
    let iters = 200_000u32;
    let t = Instant::now();
    for i in 0..iters {
        pkt.copy_from_slice(&sender);
        let err = ErrorEstimate::new(true, 0, 1);
        let n = reflect_packet(
            &prot,
            false,
            i,
            &mut pkt,
            Timestamp::new(5, 7),
            Some(64),
            err,
            &mut tx,
        )
        .unwrap();
        std::hint::black_box(n);
    }
    let per = t.elapsed() / iters;
    println!(
        "(c) reflector user-space work per authenticated packet: {:.2} us (target <= 2 us)",
        per.as_nanos() as f64 / 1e3
    );

    let mut setups: Vec<i64> = (0..10)
        .map(|_| {
            rt.block_on(twping(&options(server, 1000, 1)))
                .unwrap()
                .setup_time
                .as_nanos() as i64
        })
        .collect();
    setups.sort_unstable();
    println!(
        "(d) control set-up (connect to Start-Ack), authenticated, PBKDF2 Count 1024: median {:.2} ms over 10",
        median(setups) / 1e6
    );
    stop.store(true, Ordering::Relaxed);
    drop(d);
}
