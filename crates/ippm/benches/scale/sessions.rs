//! The sessions: N `twping` or `owping` library calls, staggered, and what they came to
//! ([`Outcome`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ippm_net::owamp_client::{OwpingOptions, OwpingResult, owping};
use ippm_net::twamp_client::{Interval, Progress, TwpingOptions, TwpingResult, twping};
use ippm_proto::session::Secret;
use ippm_proto::{SecurityMode, Timestamp};
use tokio::task::JoinSet;

use crate::common::SECRET;
use crate::config::{Config, Proto};
use crate::{CONTROL_TIMEOUT, LOSS_TIMEOUT};

/// What the sessions of a case came to.
#[derive(Default)]
pub(crate) struct Outcome {
    pub(crate) started: usize,
    pub(crate) failed: usize,
    pub(crate) errors: HashMap<String, usize>,
    pub(crate) sent: u64,
    pub(crate) received: u64,
    /// Per session: the first and the last send time.
    pub(crate) firsts: Vec<Timestamp>,
    pub(crate) lasts: Vec<Timestamp>,
    /// When the daemon received each packet (T2, or the OWAMP receive time).
    pub(crate) daemon_times: Vec<Timestamp>,
    /// When the client sent each packet (T1).
    pub(crate) client_times: Vec<Timestamp>,
    pub(crate) setups: Vec<Duration>,
    /// Packets per session (each gets its count when it starts).
    pub(crate) counts: Vec<u32>,
    /// Lost packets by where in their session: the first tenth, between, the last tenth.
    pub(crate) lost_where: [u64; 3],
}

impl Outcome {
    fn note_lost(&mut self, seen: &[bool]) {
        for (i, _) in seen.iter().enumerate().filter(|(_, s)| !**s) {
            let tenth = i * 10 / seen.len();
            self.lost_where[match tenth {
                0 => 0,
                9 => 2,
                _ => 1,
            }] += 1;
        }
    }

    fn fail(&mut self, why: String) {
        self.failed += 1;
        *self.errors.entry(why).or_default() += 1;
    }

    fn twamp(&mut self, r: &TwpingResult) {
        self.started += 1;
        self.counts.push(r.sent.len() as u32);
        self.sent += r.sent.len() as u64;
        let mut seen = vec![false; r.sent.len()];
        for p in &r.replies {
            if let Some(s) = seen.get_mut(p.reflector.sender_seq as usize) {
                if !*s {
                    *s = true;
                    self.received += 1;
                }
            }
            self.daemon_times.push(p.reflector.receive_timestamp);
        }
        self.note_lost(&seen);
        self.client_times.extend(r.sent.iter().map(|s| s.time));
        if let (Some(a), Some(b)) = (r.sent.first(), r.sent.last()) {
            self.firsts.push(a.time);
            self.lasts.push(b.time);
        }
        self.setups.push(r.setup_time);
    }

    fn owamp(&mut self, r: &OwpingResult, count: u32) {
        let Some(w) = &r.to_server else {
            self.fail("no client-to-server session in the result".into());
            return;
        };
        self.started += 1;
        self.counts.push(count);
        self.sent += u64::from(count);
        let mut seen = vec![false; count as usize];
        let (mut first, mut last) = (None::<Timestamp>, None::<Timestamp>);
        for rec in &w.records {
            if rec.recv_time == Timestamp::default() {
                continue;
            }
            if let Some(s) = seen.get_mut(rec.seq as usize) {
                if !*s {
                    *s = true;
                    self.received += 1;
                }
            }
            self.daemon_times.push(rec.recv_time);
            self.client_times.push(rec.send_time);
            first = Some(first.map_or(rec.send_time, |f| f.min(rec.send_time)));
            last = Some(last.map_or(rec.send_time, |l| l.max(rec.send_time)));
        }
        self.note_lost(&seen);
        if let (Some(a), Some(b)) = (first, last) {
            self.firsts.push(a);
            self.lasts.push(b);
        }
        self.setups.push(r.setup_time);
    }
}

fn twping_options(server: SocketAddr, rate: u32, count: u32, mode: SecurityMode) -> TwpingOptions {
    TwpingOptions {
        server,
        modes: vec![mode],
        identity: Some((b"bench".to_vec(), Secret::new(SECRET.to_vec()))),
        ike: None,
        progress: None,
        count,
        interval: Interval::Fixed(Duration::from_secs(1) / rate),
        padding: None,
        dscp: 0,
        loss_timeout: LOSS_TIMEOUT,
        local: None,
        ports: None,
        max_count: 1 << 16,
        control_timeout: CONTROL_TIMEOUT,
        rng: ippm_net::rng::os(),
        session_control: false,
        reflect: None,
        symmetrical: false,
        // The per-packet times place each packet in or out of the measuring window.
        keep_records: true,
    }
}

fn owping_options(server: SocketAddr, rate: u32, count: u32, mode: SecurityMode) -> OwpingOptions {
    OwpingOptions {
        server,
        modes: vec![mode],
        identity: Some((b"bench".to_vec(), Secret::new(SECRET.to_vec()))),
        ike: None,
        progress: None,
        count,
        interval: Interval::Fixed(Duration::from_secs(1) / rate),
        padding: 0,
        dscp: 0,
        loss_timeout: LOSS_TIMEOUT,
        local: None,
        ports: None,
        max_count: 1 << 16,
        control_timeout: CONTROL_TIMEOUT,
        rng: ippm_net::rng::os(),
        to_server: true,
        from_server: false,
    }
}

/// Runs N sessions staggered at the set-up rate, each within its limit, the lot within the
/// case's limit (what is left then is aborted and counted as failed).
pub(crate) fn run_sessions(
    rt: &tokio::runtime::Runtime,
    proto: Proto,
    server: SocketAddr,
    cfg: &Config,
    n: usize,
    rate: u32,
) -> Outcome {
    let mode = cfg.mode;
    let setup_rate = cfg.setup_rate;
    let plan = Arc::new(cfg.clone());
    rt.block_on(async move {
        enum Done {
            Twamp(Box<TwpingResult>),
            Owamp(Box<OwpingResult>, u32),
        }
        let mut set: JoinSet<Result<Done, String>> = JoinSet::new();
        let in_flight = Arc::new(tokio::sync::Semaphore::new(cfg.in_flight));
        let begun = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let t0 = tokio::time::Instant::now() + Duration::from_millis(100);
        let ramp_end = t0 + cfg.ramp_limit(n);
        for i in 0..n {
            let at = t0 + Duration::from_secs_f64(i as f64 / setup_rate);
            let (begun, plan) = (begun.clone(), plan.clone());
            // The k-th session to begin gets its count then.
            let count_now = move || {
                let k = begun.fetch_add(1, Ordering::Relaxed) + 1;
                let c = plan.count(n, rate, k, t0.elapsed());
                (c, Config::session_limit(c, rate))
            };
            match proto {
                Proto::Twamp => {
                    let sem = in_flight.clone();
                    set.spawn(async move {
                        tokio::time::sleep_until(at).await;
                        // Held until the session is started (Progress::Started) or has failed.
                        let Ok(Ok(permit)) =
                            tokio::time::timeout_at(ramp_end, sem.acquire_owned()).await
                        else {
                            return Err("not set up within the ramp's time limit".into());
                        };
                        let mut permit = Some(permit);
                        let (count, limit) = count_now();
                        let mut o = twping_options(server, rate, count, mode);
                        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                        o.progress = Some(tx);
                        let run = tokio::time::timeout(limit, twping(&o));
                        tokio::pin!(run);
                        let r = loop {
                            tokio::select! {
                                r = &mut run => break r,
                                m = rx.recv(), if permit.is_some() => {
                                    if matches!(m, Some(Progress::Started { .. }) | None) {
                                        permit = None;
                                        // Packets are not wanted: twping's reports fail at once.
                                        rx.close();
                                    }
                                }
                            }
                        };
                        drop(permit);
                        match r {
                            Ok(Ok(r)) => Ok(Done::Twamp(Box::new(r))),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err("no result within the session's time limit".into()),
                        }
                    });
                }
                Proto::Owamp => {
                    set.spawn(async move {
                        tokio::time::sleep_until(at).await;
                        let (count, limit) = count_now();
                        let o = owping_options(server, rate, count, mode);
                        match tokio::time::timeout(limit, owping(&o)).await {
                            Ok(Ok(r)) => Ok(Done::Owamp(Box::new(r), count)),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err("no result within the session's time limit".into()),
                        }
                    });
                }
            }
        }
        let deadline = t0 + cfg.sessions_limit(n, rate);
        let mut out = Outcome::default();
        loop {
            match tokio::time::timeout_at(deadline, set.join_next()).await {
                Ok(Some(Ok(Ok(Done::Twamp(r))))) => out.twamp(&r),
                Ok(Some(Ok(Ok(Done::Owamp(r, count))))) => out.owamp(&r, count),
                Ok(Some(Ok(Err(e)))) => out.fail(e),
                Ok(Some(Err(e))) => out.fail(format!("task: {e}")),
                Ok(None) => break,
                Err(_) => {
                    for _ in 0..set.len() {
                        out.fail("the case's time limit".into());
                    }
                    // Aborted, their sockets close before the next case.
                    set.abort_all();
                    while set.join_next().await.is_some() {}
                    break;
                }
            }
        }
        out
    })
}
