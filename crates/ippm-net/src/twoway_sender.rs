//! The two-way Session-Sender on the engine, written once for TWAMP (twping) and STAMP
//! (`ippm stamp`): packets go out on the [`SendPlan`]'s schedule, finished by its
//! [`PacketFormat`]; each datagram from the reflector is checked and read by a
//! [`ReplyFormat`], then counted (one bit per sequence number, for the finish rule), fed to
//! the [`Collector`] with the kernel's T4 and TX stamps, and reported as progress. The test
//! ends when every packet has a reply, or the loss timeout has passed since the last packet
//! was sent.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fixedbitset::FixedBitSet;
use ippm_proto::Timestamp;
use ippm_proto::wire::test::ReflectorRepr;

use crate::clock;
use crate::engine::{End, Engine, Out, RecvMeta, Role, Wake};
use crate::packets::{Reply, Sent};
use crate::sender::{PacketFormat, SendPlan};
use crate::twamp_client::Progress;
use crate::twoway::Collector;

/// How a two-way session reads its replies.
pub(crate) trait ReplyFormat: Send + 'static {
    /// Checks and reads one datagram from the reflector, which arrived at `recv_time` (T4):
    /// the reflector's fields as the statistics take them, or `None` for a bad reply (failed
    /// its check, malformed), which is counted and dropped. `pkt` is writable for in-place
    /// decryption.
    fn open(
        &mut self,
        pkt: &mut [u8],
        meta: &RecvMeta,
        recv_time: Timestamp,
    ) -> Option<ReflectorRepr>;
}

/// What the session's owner asked for, besides the packets.
#[derive(Debug, Clone)]
pub(crate) struct Watch {
    /// Packets in the session.
    pub(crate) count: u32,
    /// How long to wait for replies after the last packet is sent.
    pub(crate) loss_timeout: Duration,
    /// Keep every packet sent and every reply.
    pub(crate) keep_records: bool,
    /// Where to report packets sent and replies as they happen.
    pub(crate) progress: Option<tokio::sync::mpsc::UnboundedSender<Progress>>,
}

/// What one test brought back.
#[derive(Debug)]
pub(crate) struct Run<R> {
    pub(crate) report: ippm_stats::TwoWayReport,
    pub(crate) first: Option<Timestamp>,
    pub(crate) last: Option<Timestamp>,
    pub(crate) sent: Vec<Sent>,
    pub(crate) replies: Vec<Reply>,
    pub(crate) kernel_stamps: u32,
    /// Datagrams from the reflector that failed their check or were malformed.
    pub(crate) bad: u64,
    /// The reply format, with whatever it gathered.
    pub(crate) format: R,
}

/// Runs the test session on the engine (sending on schedule while receiving, with kernel
/// transmit stamps) and collects what it reports until it ends. Dropping this future stops
/// the session.
pub(crate) async fn run<F: PacketFormat, R: ReplyFormat>(
    socket: std::net::UdpSocket,
    plan: SendPlan<F>,
    format: R,
    watch: &Watch,
) -> std::io::Result<Run<R>> {
    let (done, outcome) = tokio::sync::oneshot::channel();
    let role = TwoWaySender {
        reflector: plan.to(),
        plan,
        format: Some(format),
        progress: watch.progress.clone(),
        collect: Collector::new(watch.keep_records, u64::from(watch.count)),
        bad: 0,
        done: Some(done),
        loss_timeout: watch.loss_timeout,
        seen: FixedBitSet::new(),
        unique: 0,
        count: watch.count,
    };
    // Dropping the handle (this future cancelled) stops the session.
    let _session = Engine::global()?.add(socket, Box::new(role), true)?;
    outcome
        .await
        .map_err(|_| std::io::Error::other("the test session ended without its results"))
}

/// A two-way test session on the engine: sends on schedule, takes the replies.
struct TwoWaySender<F: PacketFormat, R: ReplyFormat> {
    plan: SendPlan<F>,
    /// Taken when the session ends, to go back with the results.
    format: Option<R>,
    reflector: SocketAddr,
    /// The owner's live view, if it wants one.
    progress: Option<tokio::sync::mpsc::UnboundedSender<Progress>>,
    /// The statistics, fed here on the engine thread: nothing crosses threads per packet
    /// unless the owner asked for progress.
    collect: Collector,
    bad: u64,
    /// Where the run's results go when the session ends.
    done: Option<tokio::sync::oneshot::Sender<Run<R>>>,
    loss_timeout: Duration,
    /// Sender sequence numbers replied to (grows to the highest seq sent, one bit each).
    seen: FixedBitSet,
    unique: u32,
    count: u32,
}

impl<F: PacketFormat, R: ReplyFormat> Role for TwoWaySender<F, R> {
    fn receive(&mut self, pkt: &mut [u8], meta: &RecvMeta, out: &mut Out<'_>) {
        if meta.from != self.reflector {
            return;
        }
        let Some(format) = &mut self.format else {
            return;
        };
        let recv_time = meta
            .kernel_time
            .map(Timestamp::from_unix)
            .unwrap_or_else(clock::now);
        let Some(r) = format.open(pkt, meta, recv_time) else {
            self.bad += 1;
            return;
        };
        let reply = Reply {
            reflector: r,
            recv_time,
            recv_error: self.plan.error_estimate(),
            ttl: meta.ttl,
        };
        if let Some(p) = &self.progress {
            let _ = p.send(Progress::Reply(reply));
        }
        self.collect.reply(reply);
        let seq = r.sender_seq;
        if seq < self.plan.next_seq() {
            let i = seq as usize;
            if i >= self.seen.len() {
                self.seen.grow(i + 1);
            }
            if !self.seen.put(i) {
                self.unique += 1;
            }
        }
        if self.unique >= self.count && self.plan.done() {
            out.finish();
        }
    }

    fn due(&mut self, now: Instant, out: &mut Out<'_>) -> Wake {
        if let Some(t) = self.plan.due(now, out) {
            return Wake::At(t);
        }
        let end = self.plan.last_sent().unwrap_or(now) + self.loss_timeout;
        if now >= end || self.unique >= self.count {
            out.finish();
        }
        Wake::At(end)
    }

    fn seal(&mut self, pkt: &mut [u8]) {
        if let Some(s) = self.plan.seal(pkt) {
            let s = Sent {
                seq: s.seq,
                time: s.time,
                error: s.error,
                kernel_time: None,
            };
            if let Some(p) = &self.progress {
                let _ = p.send(Progress::Sent(s));
            }
            self.collect.sent(s);
        }
    }

    fn unsent(&mut self, sent: usize, queued: usize) {
        self.plan.unsent(sent, queued);
    }

    fn tx_stamp(&mut self, id: u32, time: Duration) {
        if let Some(seq) = self.plan.seq_of(id) {
            self.collect.tx_stamp(seq, Timestamp::from_unix(time));
        }
    }

    fn end(&mut self, _why: End) {
        let (Some(d), Some(format)) = (self.done.take(), self.format.take()) else {
            return;
        };
        let c = &mut self.collect;
        let _ = d.send(Run {
            report: c.finish(),
            kernel_stamps: c.kernel_stamps,
            first: c.first,
            last: c.last,
            sent: std::mem::take(&mut c.sent),
            replies: std::mem::take(&mut c.replies),
            bad: self.bad,
            format,
        });
    }
}
