//! `cargo bench -p ippm --bench owamp`: OWAMP speed against a raw UDP send/receive loop, in one
//! run on loopback, with the same CPU placement: receiver side (the raw receiver thread, or the
//! `ippm serve` process) on CPU 1, sender side (the raw sender thread, or `ippm owping`'s work
//! on a one-thread runtime) on CPU 0. Figures are ratios to the raw loops in the same run:
//! the unbatched one (one `sendto` / `recvmsg` per packet) and the batched one
//! (`common::batch`: a `sendmmsg` whenever `rate * 250 us` packets are due, one at a time at
//! low rates; `recvmmsg` with MSG_WAITFORONE on the receiver).
//!
//! (a) Highest send rate actually achieved with < 0.01% loss, authenticated mode.
//! (b) Median one-way delay at 100 packets/s, all from kernel receive timestamps.
//! (c) Control set-up time of a two-way owping (connect to Start-Ack).
//!
//! IPPM_BENCH_SECONDS (default 1) sets the length of each rate step.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ippm_net::owamp_client::{OwpingOptions, owping};
use ippm_net::twamp_client::Interval;
use ippm_net::udp::{blocking_socket, recv_blocking};
use ippm_proto::SecurityMode;
use ippm_proto::session::Secret;

mod common;
use common::batch;
use common::{SENDER_CPU, SERVER_CPU, median, now_ns, pace, pin};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const RATES: [u64; 16] = [
    1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 75_000, 100_000, 150_000, 200_000, 250_000,
    300_000, 400_000, 500_000, 750_000, 1_000_000,
];
/// The batched sender's batching interval.
const TICK: Duration = Duration::from_micros(250);

/// Raw loop: returns (loss, one-way delays from the kernel receive stamp, achieved rate).
fn raw_run(rate: u64, n: u64, len: usize) -> (f64, Vec<i64>, f64) {
    let rx = blocking_socket(SocketAddr::new(LO, 0)).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let to = rx.local_addr().unwrap();
    let recv = std::thread::spawn(move || {
        pin(SERVER_CPU);
        let mut buf = [0u8; 2048];
        let (mut got, mut delay) = (0u64, Vec::new());
        while let Ok(m) = recv_blocking(&rx, &mut buf) {
            got += 1;
            let t = m
                .kernel_time
                .map(|d| d.as_nanos() as i64)
                .unwrap_or_else(now_ns);
            delay.push(t - i64::from_be_bytes(buf[..8].try_into().unwrap()));
            if got == n {
                break;
            }
        }
        (got, delay)
    });
    let tx = std::net::UdpSocket::bind(SocketAddr::new(LO, 0)).unwrap();
    let mut pkt = vec![0u8; len];
    let t0 = Instant::now();
    pace(rate, n, |_| {
        pkt[..8].copy_from_slice(&now_ns().to_be_bytes());
        let _ = tx.send_to(&pkt, to);
    });
    let achieved = n as f64 / t0.elapsed().as_secs_f64();
    let (got, delay) = recv.join().unwrap();
    (1.0 - got as f64 / n as f64, delay, achieved)
}

/// The same with the batched sender and receiver.
fn batched_run(rate: u64, n: u64, len: usize) -> (f64, Vec<i64>, f64) {
    let rx = blocking_socket(SocketAddr::new(LO, 0)).unwrap();
    let to = rx.local_addr().unwrap();
    let recv = std::thread::spawn(move || {
        pin(SERVER_CPU);
        let mut delay = Vec::new();
        let (got, _) = batch::receive(&rx, n, Duration::from_millis(300), |p, t| {
            if let Some(t1) = p.get(..8) {
                delay.push(t - i64::from_be_bytes(t1.try_into().unwrap()));
            }
        });
        (got, delay)
    });
    let tx = blocking_socket(SocketAddr::new(LO, 0)).unwrap();
    let achieved = batch::send_paced(&tx, to, rate, n, len, TICK);
    let (got, delay) = recv.join().unwrap();
    (1.0 - got as f64 / n as f64, delay, achieved)
}

fn options(server: SocketAddr, rate: u64, n: u64, both: bool) -> OwpingOptions {
    OwpingOptions {
        server,
        modes: vec![SecurityMode::Authenticated],
        identity: Some((b"bench".to_vec(), Secret::new(b"bench secret".to_vec()))),
        ike: None,
        progress: None,
        count: n as u32,
        interval: Interval::Fixed(Duration::from_nanos(1_000_000_000 / rate)),
        padding: 0,
        dscp: 0,
        loss_timeout: Duration::from_millis(300),
        local: None,
        ports: None,
        max_count: 1 << 16,
        control_timeout: Duration::from_secs(30),
        rng: ippm_net::rng::os(),
        to_server: true,
        from_server: both,
    }
}

fn main() {
    let secs: f64 = std::env::var("IPPM_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let d = common::Daemon::start("owamp");
    let server = d.addr;
    pin(SENDER_CPU);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let len = 48; // authenticated OWAMP-Test packets without padding
    println!("ippm OWAMP benchmark on loopback, {len}-octet packets, {secs} s per rate step");
    println!(
        "placement: receiver side (raw receivers / ippm serve) on CPU {SERVER_CPU}, sender side \
         (raw senders / owping on a one-thread runtime) on CPU {SENDER_CPU}\n"
    );
    println!(
        "{:>8}  {:>10} {:>10}  {:>10} {:>10}  {:>10} {:>10}",
        "rate/s",
        "raw sent/s",
        "raw loss",
        "batch sent/s",
        "batch loss",
        "ippm sent/s",
        "ippm loss"
    );
    let cell = |r: Option<(f64, f64)>| match r {
        Some((rate, loss)) => format!("{rate:>10.0} {:>9.4}%", loss * 100.0),
        None => format!("{:>10} {:>10}", "-", "-"),
    };
    // Best clean rates (unbatched raw, batched raw, ippm) and consecutive failed steps; a side
    // that failed twice in a row is not run again.
    let (mut best, mut failed) = ([0u64; 3], [0u32; 3]);
    let skip = |f: u32| f >= 2;
    for rate in RATES {
        let n = ((rate as f64) * secs) as u64;
        let raw = (!skip(failed[0])).then(|| {
            let (loss, _, sent) = raw_run(rate, n, len);
            (sent, loss)
        });
        let batched = (!skip(failed[1])).then(|| {
            let (loss, _, sent) = batched_run(rate, n, len);
            (sent, loss)
        });
        let ippm = (!skip(failed[2])).then(|| {
            let r = rt
                .block_on(owping(&options(server, rate, n, false)))
                .unwrap();
            let w = r.to_server.unwrap();
            let mut seqs: Vec<u32> = w.records.iter().map(|x| x.seq).collect();
            seqs.sort_unstable();
            seqs.dedup();
            let loss = 1.0 - seqs.len() as f64 / n as f64;
            let (first, last) = (
                w.records.iter().map(|x| x.send_time).min(),
                w.records.iter().map(|x| x.send_time).max(),
            );
            let sent = match (first, last) {
                (Some(a), Some(b)) if b > a => seqs.len() as f64 / (b.nanos_since(a) as f64 / 1e9),
                _ => 0.0,
            };
            (sent, loss)
        });
        println!(
            "{rate:>8}  {}  {}  {}",
            cell(raw),
            cell(batched),
            cell(ippm)
        );
        for (i, r) in [raw, batched, ippm].into_iter().enumerate() {
            let Some((sent, loss)) = r else { continue };
            // The best is the highest rate actually sent (not merely asked for) with < 0.01%
            // loss.
            if loss < 0.0001 {
                best[i] = best[i].max(sent as u64);
            }
            if loss >= 0.01 || sent < 0.9 * rate as f64 {
                failed[i] += 1;
            } else {
                failed[i] = 0;
            }
        }
        if failed.iter().all(|f| skip(*f)) {
            break;
        }
    }
    let [raw_best, batched_best, ippm_best] = best;
    println!(
        "\n(a) highest send rate with < 0.01% loss: raw loop {raw_best}/s, batched raw loop \
         {batched_best}/s, ippm (authenticated) {ippm_best}/s; ratio to the raw loop {:.2} \
         (target >= 0.8), to the batched one {:.2}{}",
        ippm_best as f64 / raw_best.max(1) as f64,
        ippm_best as f64 / batched_best.max(1) as f64,
        if batched_best as f64 >= 0.9 * *RATES.last().unwrap_or(&0) as f64 {
            " (the batched loop reached the last rate step: its best is a lower bound)"
        } else {
            ""
        }
    );
    let n = (100.0 * secs.max(2.0)) as u64;
    let (_, raw_delay, _) = raw_run(100, n, len);
    let (_, b_delay, _) = batched_run(100, n, len);
    let r = rt
        .block_on(owping(&options(server, 100, n, false)))
        .unwrap();
    let delays: Vec<i64> = r
        .to_server
        .unwrap()
        .records
        .iter()
        .map(|x| x.recv_time.nanos_since(x.send_time))
        .collect();
    let (mr, mb, mi) = (median(raw_delay), median(b_delay), median(delays));
    println!(
        "(b) median one-way delay at 100/s: raw loop {:.1} us, batched raw loop {:.1} us, ippm \
         {:.1} us; ratio to the raw loop {:.2}, to the batched one {:.2}",
        mr / 1e3,
        mb / 1e3,
        mi / 1e3,
        mi / mr,
        mi / mb
    );
    let mut setups: Vec<i64> = (0..10)
        .map(|_| {
            rt.block_on(owping(&options(server, 1000, 1, true)))
                .unwrap()
                .setup_time
                .as_nanos() as i64
        })
        .collect();
    setups.sort_unstable();
    println!(
        "(c) control set-up of a two-way owping (connect to Start-Ack), authenticated, PBKDF2 \
         Count 1024: median {:.2} ms over 10",
        median(setups) / 1e6
    );
    drop(d);
}
