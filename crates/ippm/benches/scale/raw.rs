//! The raw baselines: a batched UDP echo (TWAMP) and a batched receiver (OWAMP), at the
//! sessions' aggregate rate.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ippm_net::udp::blocking_socket;

use crate::LO;
use crate::common::batch::{self, Echo};
use crate::common::{SENDER_CPU, SERVER_CPU, pin};
use crate::procfs::{Noise, self_cpu_ns};

/// The batched sender sends a batch every millisecond: what a tokio timer wheel does to the
/// sessions' packets too.
const RAW_TICK: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy)]
pub(crate) struct RawFigures {
    pub(crate) rate: u64,
    pub(crate) cpu_per_packet_ns: f64,
    pub(crate) cpu_share: f64,
    pub(crate) per_call: f64,
    pub(crate) loss: f64,
    pub(crate) achieved: f64,
}

/// TWAMP: the batched echo on the server CPU, the batched sender and receiver on the sender
/// CPU, at `rate` for RAW_SECONDS (or less).
pub(crate) fn raw_echo(rate: u64, secs: f64, len: usize) -> RawFigures {
    let n = ((rate as f64) * secs).max(1.0) as u64;
    let echo = Echo::start(
        blocking_socket(SocketAddr::new(LO, 0)).unwrap(),
        SERVER_CPU,
        false,
    );
    let s = blocking_socket(SocketAddr::new(LO, 0)).unwrap();
    let s2 = s.try_clone().unwrap();
    let recv = std::thread::spawn(move || {
        pin(SENDER_CPU);
        batch::receive(&s2, n, Duration::from_millis(500), |_, _| {}).0
    });
    let t0 = Instant::now();
    let achieved = batch::send_paced(&s, echo.addr, rate, n, len, RAW_TICK);
    let sending = t0.elapsed();
    let got = recv.join().unwrap_or(0);
    let st = echo.finish();
    RawFigures {
        rate,
        cpu_per_packet_ns: st.cpu_ns as f64 / st.echoed.max(1) as f64,
        cpu_share: st.cpu_ns as f64 / sending.as_nanos() as f64,
        per_call: st.received as f64 / st.batches.max(1) as f64,
        loss: 1.0 - got as f64 / n as f64,
        achieved,
    }
}

/// OWAMP: the batched receiver on the server CPU, the batched sender on the sender CPU.
pub(crate) fn raw_sink(rate: u64, secs: f64, len: usize) -> RawFigures {
    let n = ((rate as f64) * secs).max(1.0) as u64;
    let rx = blocking_socket(SocketAddr::new(LO, 0)).unwrap();
    let to = rx.local_addr().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let recv = std::thread::spawn(move || {
        pin(SERVER_CPU);
        let cpu0 = batch::thread_cpu_ns();
        let _ = ready_tx.send(());
        // The sender starts once this thread is ready, so the silence that ends the receive
        // can only come after the last packet.
        let (got, calls) = batch::receive(&rx, n, Duration::from_millis(500), |_, _| {});
        (got, calls, batch::thread_cpu_ns() - cpu0)
    });
    let _ = ready_rx.recv();
    let tx = blocking_socket(SocketAddr::new(LO, 0)).unwrap();
    let t0 = Instant::now();
    let achieved = batch::send_paced(&tx, to, rate, n, len, RAW_TICK);
    let sending = t0.elapsed();
    let (got, calls, cpu) = recv.join().unwrap_or((0, 0, 0));
    let per_call = got as f64 / calls.max(1) as f64;
    RawFigures {
        rate,
        cpu_per_packet_ns: cpu as f64 / got.max(1) as f64,
        cpu_share: cpu as f64 / sending.as_nanos() as f64,
        per_call,
        loss: 1.0 - got as f64 / n as f64,
        achieved,
    }
}

/// Runs a raw baseline, and once more if it lost more than 0.1% (a busy machine): the run
/// with the lower loss is kept, with what the rest of the machine did meanwhile.
pub(crate) fn raw_twice(f: impl Fn() -> RawFigures) -> (RawFigures, String) {
    let before = Noise::now(self_cpu_ns());
    let r = f();
    let noise = Noise::now(self_cpu_ns()).since(&before);
    if r.loss <= 0.001 {
        return (r, noise);
    }
    let before = Noise::now(self_cpu_ns());
    let again = f();
    let noise_again = Noise::now(self_cpu_ns()).since(&before);
    if again.loss < r.loss {
        (
            again,
            format!("{noise_again}; a first run lost {:.4}%", r.loss * 100.0),
        )
    } else {
        (
            r,
            format!("{noise}; a second run lost {:.4}%", again.loss * 100.0),
        )
    }
}
