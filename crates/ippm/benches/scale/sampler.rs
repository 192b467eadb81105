//! Sampling: the daemon and this process, every [`crate::SAMPLE_EVERY`], while the sessions
//! run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use ippm_proto::Timestamp;

use crate::SAMPLE_EVERY;
use crate::common::{SENDER_CPU, pin};
use crate::procfs::{machine_busy_ns, proc_cpu_ns, proc_status, self_cpu_ns, udp_drops};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) at: Instant,
    pub(crate) wall: Timestamp,
    pub(crate) daemon_cpu_ns: i64,
    pub(crate) daemon_threads: u64,
    pub(crate) daemon_rss_kib: u64,
    pub(crate) client_cpu_ns: i64,
    pub(crate) client_rss_kib: u64,
    /// The whole machine's busy CPU time.
    pub(crate) machine_busy_ns: i64,
    pub(crate) udp: (u64, u64),
}

fn sample(pid: i32) -> Option<Sample> {
    let p = pid.to_string();
    let (daemon_threads, daemon_rss_kib) = proc_status(&p)?;
    let (_, client_rss_kib) = proc_status("self")?;
    Some(Sample {
        at: Instant::now(),
        wall: ippm_net::clock::now(),
        daemon_cpu_ns: proc_cpu_ns(&p)?,
        daemon_threads,
        daemon_rss_kib,
        client_cpu_ns: self_cpu_ns(),
        client_rss_kib,
        machine_busy_ns: machine_busy_ns(),
        udp: udp_drops(),
    })
}

/// Samples the daemon and this process every [`SAMPLE_EVERY`] on the sender CPU.
pub(crate) struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    pub(crate) fn start(pid: i32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            pin(SENDER_CPU);
            let mut v = Vec::new();
            let t0 = Instant::now();
            let mut k = 0u32;
            loop {
                if let Some(s) = sample(pid) {
                    v.push(s);
                }
                if stop2.load(Ordering::Relaxed) {
                    return v;
                }
                k += 1;
                let next = t0 + SAMPLE_EVERY * k;
                if let Some(d) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
        });
        Self { stop, thread }
    }

    pub(crate) fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}
