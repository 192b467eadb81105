//! `cargo bench -p ippm --bench twamp`: TWAMP speed against a raw UDP echo, in one run on
//! loopback, with the same CPU placement for both:
//!
//! - reflector side on CPU 1: the raw echo thread, or the `ippm serve` process
//!   (`taskset -c 1`);
//! - sender side on CPU 0: the raw sender and receiver threads, or `ippm twping`'s work (a
//!   single-threaded tokio runtime pinned to CPU 0).
//!
//! Figures are ratios to the raw echoes measured in the same run, since these machines are
//! shared and noisy. There are two raw echoes, with the same placement:
//!
//! - unbatched: one `recvmsg` and one `sendto` per packet, and the same on the sender side;
//! - batched (`common::batch`): `recvmmsg` (MSG_WAITFORONE) and one `sendmmsg` of the batch
//!   back; the sender sends a `sendmmsg` batch whenever `rate * 250 us` packets are due (one at
//!   a time at low rates) and the receiver takes batches with `recvmmsg`.
//!
//! (a) Highest rate actually achieved with < 0.01% loss, authenticated mode, vs each raw
//!     echo's.
//! (b) Median RTT at 100 packets/s net of reflector time, vs the raw echoes' taken with kernel
//!     receive timestamps at both ends and send times taken right at the send.
//! (c) Reflector processing: user-space time per packet of the reflector's work (unprotect,
//!     reply, stamp, protect), and T3 - T2 vs the raw echoes'.
//! (d) Control set-up time (connect to Start-Ack), authenticated mode.
//! (e) The STAMP Session-Reflector of `ippm serve` (stateful, unauthenticated, 112-octet
//!     packets: the base packet and an Extra Padding TLV, which it reads and answers), driven
//!     by the batched raw sender and receiver, so that the reflector is the only difference
//!     from the batched raw echo: its highest clean rate and its T3 - T2, against the batched
//!     echo's.
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
use ippm_proto::stamp::{
    self, Received, ReflectorConfig, ReflectorTlvInputs, StampKey, build_sender,
};
use ippm_proto::wire::stamp::{ReflectorRepr as StampReply, SenderRepr as StampSender, StampMode};
use ippm_proto::wire::stamp_tlv::TlvRepr;
use ippm_proto::wire::test::{Layout, PacketKind, SenderRepr, TestProtection};
use ippm_proto::{ErrorEstimate, SecurityMode, Timestamp};

mod common;
use common::batch::{self, Echo};
use common::{SENDER_CPU, SERVER_CPU, median, now_ns, pace, pin};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Finer near the top, where the reflectors' limits lie on this machine (a step of 25,000 at
/// 175,000 would make a ratio of 0.9 unmeasurable).
const RATES: [u64; 23] = [
    1_000, 2_000, 5_000, 10_000, 20_000, 35_000, 50_000, 75_000, 100_000, 125_000, 150_000,
    165_000, 175_000, 185_000, 195_000, 210_000, 225_000, 250_000, 300_000, 400_000, 500_000,
    750_000, 1_000_000,
];
/// The batched sender's batching interval.
const TICK: Duration = Duration::from_micros(250);

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

/// The same through the batched echo, with the batched sender and receiver.
fn batched_run(echo: SocketAddr, rate: u64, n: u64, len: usize) -> (f64, Vec<i64>, Vec<i64>, f64) {
    let s = blocking_socket(SocketAddr::new(LO, 0)).unwrap();
    let s2 = s.try_clone().unwrap();
    let recv = std::thread::spawn(move || {
        pin(SENDER_CPU);
        let (mut rtt, mut proc_) = (Vec::new(), Vec::new());
        let (got, _) = batch::receive(&s2, n, Duration::from_millis(300), |p, t4| {
            let Some(f) = p.get(..24) else { return };
            let f = |o: usize| i64::from_be_bytes(f[o..o + 8].try_into().unwrap());
            let (t1, t2, t3) = (f(0), f(8), f(16));
            rtt.push((t4 - t1) - (t3 - t2));
            proc_.push(t3 - t2);
        });
        (got, rtt, proc_)
    });
    let achieved = batch::send_paced(&s, echo, rate, n, len, TICK);
    let (got, rtt, proc_) = recv.join().unwrap();
    (1.0 - got as f64 / n as f64, rtt, proc_, achieved)
}

/// Nanoseconds since the Unix epoch of an NTP timestamp.
fn unix_ns(t: Timestamp) -> i64 {
    t.to_unix().map_or(0, |d| d.as_nanos() as i64)
}

/// The batched sender and receiver against a STAMP reflector: `len`-octet packets (the base
/// packet and an Extra Padding TLV), T1 stamped in the packet right before each batch.
fn stamp_run(to: SocketAddr, rate: u64, n: u64, len: usize) -> (f64, Vec<i64>, Vec<i64>, f64) {
    let mode = StampMode::Unauthenticated;
    let mut template = vec![0u8; len];
    let pad = vec![0u8; len - mode.base_len() - 4];
    build_sender(
        &mut template,
        mode,
        &StampSender::default(),
        &[TlvRepr::ExtraPadding(&pad)],
        None,
    )
    .unwrap();
    let s = blocking_socket(SocketAddr::new(LO, 0)).unwrap();
    let s2 = s.try_clone().unwrap();
    let recv = std::thread::spawn(move || {
        pin(SENDER_CPU);
        // Kept as they came, read after the run: the receiver does no more per packet than
        // the batched echo's (a few loads), so the sender beside it on its CPU keeps up alike.
        let mut raw: Vec<(i64, [u8; 44])> = Vec::with_capacity(n as usize);
        let (got, _) = batch::receive(&s2, n, Duration::from_millis(300), |p, t4| {
            if let Some(b) = p.get(..44) {
                raw.push((t4, b.try_into().unwrap()));
            }
        });
        let (mut rtt, mut proc_) = (Vec::new(), Vec::new());
        for (t4, b) in &raw {
            let Ok(r) = StampReply::parse(b, mode) else {
                continue;
            };
            let (t1, t2, t3) = (
                unix_ns(r.sender_timestamp),
                unix_ns(r.receive_timestamp),
                unix_ns(r.timestamp),
            );
            rtt.push((t4 - t1) - (t3 - t2));
            proc_.push(t3 - t2);
        }
        (got, rtt, proc_)
    });
    let achieved = batch::send_paced_with(&s, to, rate, n, len, TICK, |buf, seq, t1| {
        buf.copy_from_slice(&template);
        StampSender {
            seq: seq as u32,
            timestamp: Timestamp::from_unix(Duration::from_nanos(t1 as u64)),
            error_estimate: ErrorEstimate::new(false, 0, 1),
            ssid: 1,
        }
        .emit(buf, mode)
        .unwrap();
    });
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
        rng: ippm_net::rng::os(),
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
    let stamp = common::Daemon::start("stamp");
    pin(SENDER_CPU);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (echo, stop) = raw_echo();
    let becho = Echo::start(
        blocking_socket(SocketAddr::new(LO, 0)).unwrap(),
        SERVER_CPU,
        true,
    );
    let len = 112; // authenticated TWAMP packets are 112 octets both ways
    println!("ippm TWAMP benchmark on loopback, {len}-octet packets, {secs} s per rate step");
    println!(
        "placement: reflector side (raw echo threads / ippm serve) on CPU {SERVER_CPU}, \
         sender side (raw senders+receivers / twping on a one-thread runtime) on CPU \
         {SENDER_CPU}; batched echo: recvmmsg/sendmmsg up to {} packets, batched sender: a \
         sendmmsg whenever rate * {} us packets are due\n",
        batch::BATCH,
        TICK.as_micros()
    );

    // Best clean rates: unbatched raw, batched raw, ippm, ippm's STAMP reflector.
    let mut best = [0u64; 4];
    // Consecutive failed steps of each; a side that failed twice in a row is not run again.
    let mut failed = [0u32; 4];
    let skip = |f: u32| f >= 2;
    println!(
        "{:>8}  {:>10} {:>10}  {:>10} {:>10}  {:>10} {:>10}  {:>10} {:>10}",
        "rate/s",
        "raw sent/s",
        "raw loss",
        "batch sent/s",
        "batch loss",
        "ippm sent/s",
        "ippm loss",
        "stamp sent/s",
        "stamp loss"
    );
    let cell = |r: Option<(f64, f64)>| match r {
        Some((rate, loss)) => format!("{rate:>10.0} {:>9.4}%", loss * 100.0),
        None => format!("{:>10} {:>10}", "-", "-"),
    };
    for rate in RATES {
        let n = ((rate as f64) * secs) as u64;
        let raw = (!skip(failed[0])).then(|| {
            let (loss, _, _, sent) = raw_run(echo, rate, n, len);
            (sent, loss)
        });
        let batched = (!skip(failed[1])).then(|| {
            let (loss, _, _, sent) = batched_run(becho.addr, rate, n, len);
            (sent, loss)
        });
        let ippm = (!skip(failed[2])).then(|| {
            let r = rt.block_on(twping(&options(server, rate, n))).unwrap();
            let got: std::collections::HashSet<u32> =
                r.replies.iter().map(|p| p.reflector.sender_seq).collect();
            let loss = 1.0 - got.len() as f64 / n as f64;
            let span = match (r.sent.first(), r.sent.last()) {
                (Some(a), Some(b)) => ns_between(a.time, b.time).max(1) as f64 / 1e9,
                _ => 1.0,
            };
            (r.sent.len() as f64 / span, loss)
        });
        let stamped = (!skip(failed[3])).then(|| {
            let (loss, _, _, sent) = stamp_run(stamp.addr, rate, n, len);
            (sent, loss)
        });
        println!(
            "{rate:>8}  {}  {}  {}  {}",
            cell(raw),
            cell(batched),
            cell(ippm),
            cell(stamped)
        );
        for (i, r) in [raw, batched, ippm, stamped].into_iter().enumerate() {
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
        // Stop once no side keeps up any more.
        if failed.iter().all(|f| skip(*f)) {
            break;
        }
    }
    let [raw_best, batched_best, ippm_best, stamp_best] = best;
    println!(
        "\n(a) highest rate with < 0.01% loss: raw echo {raw_best}/s, batched raw echo \
         {batched_best}/s, ippm (authenticated) {ippm_best}/s; ratio to the raw echo {:.2} \
         (target >= 0.8), to the batched one {:.2}{}",
        ippm_best as f64 / raw_best.max(1) as f64,
        ippm_best as f64 / batched_best.max(1) as f64,
        if batched_best as f64 >= 0.9 * *RATES.last().unwrap_or(&0) as f64 {
            " (the batched echo reached the last rate step: its best is a lower bound)"
        } else {
            ""
        }
    );

    let n = (100.0 * secs.max(2.0)) as u64;
    let (_, raw_rtt, raw_proc, _) = raw_run(echo, 100, n, len);
    let (_, b_rtt, b_proc, _) = batched_run(becho.addr, 100, n, len);
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
    let (mr, mb, mi) = (median(raw_rtt), median(b_rtt), median(rtt));
    println!(
        "(b) median RTT at 100/s net of reflector time: raw echo {:.1} us, batched raw echo \
         {:.1} us, ippm {:.1} us; ratio to the raw echo {:.2} (target <= 1.2), to the batched \
         one {:.2}",
        mr / 1e3,
        mb / 1e3,
        mi / 1e3,
        mi / mr,
        mi / mb
    );
    let (pr, pb, pi) = (median(raw_proc), median(b_proc), median(procs));
    println!(
        "(c) T3 - T2 (kernel receive stamp to transmit stamp) at 100/s: raw echo {:.1} us, \
         batched raw echo {:.1} us, ippm {:.1} us; ratio to the raw echo {:.2} (target <= \
         1.1), to the batched one {:.2}",
        pr / 1e3,
        pb / 1e3,
        pi / 1e3,
        pi / pr,
        pi / pb
    );

    // The same at 10k packets/s, where the reflector's code and keys stay in cache (and the
    // batched echo gets a few packets per call).
    let n = (10_000.0 * secs) as u64;
    let (_, _, raw_proc, _) = raw_run(echo, 10_000, n, len);
    let (_, _, b_proc, _) = batched_run(becho.addr, 10_000, n, len);
    let r = rt.block_on(twping(&options(server, 10_000, n))).unwrap();
    let procs: Vec<i64> = r
        .replies
        .iter()
        .map(|p| ns_between(p.reflector.receive_timestamp, p.reflector.timestamp))
        .collect();
    let (pr, pb, pi) = (median(raw_proc), median(b_proc), median(procs));
    println!(
        "(c) T3 - T2 at 10k/s: raw echo {:.1} us, batched raw echo {:.1} us, ippm {:.1} us; \
         ratio to the raw echo {:.2}, to the batched one {:.2}",
        pr / 1e3,
        pb / 1e3,
        pi / 1e3,
        pi / pr,
        pi / pb
    );

    // (e) The STAMP reflector against the batched echo, the same sender and receiver.
    println!(
        "(e) STAMP reflector, highest rate with < 0.01% loss: {stamp_best}/s, batched raw echo \
         {batched_best}/s; ratio {:.2} (target >= 0.9){}",
        stamp_best as f64 / batched_best.max(1) as f64,
        if stamp_best as f64 >= 0.9 * *RATES.last().unwrap_or(&0) as f64 {
            " (the STAMP reflector reached the last rate step: its best is a lower bound)"
        } else {
            ""
        }
    );
    for rate in [100u64, 10_000] {
        let n = (rate as f64 * secs.max(if rate == 100 { 2.0 } else { 1.0 })) as u64;
        let (_, b_rtt, b_proc, _) = batched_run(becho.addr, rate, n, len);
        let (_, s_rtt, s_proc, _) = stamp_run(stamp.addr, rate, n, len);
        let (pb, ps) = (median(b_proc), median(s_proc));
        let (rb, rs) = (median(b_rtt), median(s_rtt));
        println!(
            "(e) STAMP at {rate}/s: T3 - T2 {:.1} us against the batched echo's {:.1} us (ratio \
             {:.2}); RTT net of reflector time {:.1} us against {:.1} us (ratio {:.2})",
            ps / 1e3,
            pb / 1e3,
            ps / pb,
            rs / 1e3,
            rb / 1e3,
            rs / rb
        );
    }

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

    // The STAMP reflector's per-packet work: an authenticated 112-octet packet with an HMAC'd
    // Class of Service and Direct Measurement TLV, laid out and sealed (what the engine does
    // between the receive and the send).
    let key = StampKey::new(&[9; 32]).unwrap();
    let mode = StampMode::Authenticated;
    let mut sender = vec![0u8; 256];
    let tlvs = [
        TlvRepr::ClassOfService(Default::default()),
        TlvRepr::DirectMeasurement(Default::default()),
    ];
    let sealing = build_sender(
        &mut sender,
        mode,
        &StampSender::default(),
        &tlvs,
        Some(&key),
    )
    .unwrap();
    stamp::seal(&mut sender, &sealing, Some(&key), Timestamp::new(5, 6)).unwrap();
    sender.truncate(sealing.len);
    let cfg = ReflectorConfig {
        mode,
        key: Some(&key),
        extensions: true,
        error_estimate: ErrorEstimate::new(true, 0, 1),
    };
    let inputs = ReflectorTlvInputs {
        counters: Some((1, 0)),
        permitted_dscp: u64::MAX,
        ..Default::default()
    };
    let t = Instant::now();
    for i in 0..iters {
        let rx = Received {
            packet: &sender,
            receive_time: Timestamp::new(5, 7),
            ttl: Some(64),
            dscp: 0,
            ecn: 0,
        };
        let reply = stamp::reflect_layout(&cfg, &rx, Some(i), &inputs, &mut tx).unwrap();
        stamp::seal(&mut tx, &reply.sealing, Some(&key), Timestamp::new(5, 8)).unwrap();
        std::hint::black_box(&tx);
    }
    let per = t.elapsed() / iters;
    println!(
        "(e) STAMP reflector user-space work per authenticated packet with two TLVs and the HMAC \
         TLV: {:.2} us",
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
    let st = becho.finish();
    println!(
        "batched echo over the run: {} packets in {} recvmmsg calls ({:.1} per call)",
        st.received,
        st.batches,
        st.received as f64 / st.batches.max(1) as f64
    );
    drop(stamp);
    drop(d);
}
