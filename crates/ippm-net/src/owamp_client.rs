//! The OWAMP Control-Client behind `ippm owping` (RFC 4656): a session each way (by default),
//! our packets sent on the schedule while the server's are received with kernel timestamps,
//! Stop-Sessions both ways, then Fetch-Session for what the server received.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fixedbitset::FixedBitSet;

use ippm_proto::schedule::{Schedule, Slot};
use ippm_proto::session::{ClientConfig, ClientEvent, Error, IkeCredential, Secret, make_sid};
use ippm_proto::time::{bits_to_duration, duration_to_bits};
use ippm_proto::wire::owamp::{
    DataRecord, FetchSessionRepr, RequestSessionRepr, SkipRange, StopSession, StopSessionsRepr,
    TypeP,
};
use ippm_proto::wire::test::{Layout, TestProtection};
use ippm_proto::{Accept, Protocol, SecurityMode, Timestamp};
use tokio::io::AsyncWriteExt;

use crate::clock;
use crate::control_client::{Control, Exchange as Step, accepted_port};
use crate::engine::{End, Engine, Out, RecvMeta, Role, Wake};
use crate::packets::{Events, TestEvent};
use crate::receiver::{From, OneWayReceiver, Refused};
use crate::rng::{self, SecureRandom};
use crate::sender::{SendPlan, schedule_offsets};
use crate::twamp_client::{Interval, TwpingError};
use crate::udp::{bind_first, blocking_socket, set_dscp_blocking};

/// What an owping run does.
#[derive(Debug, Clone)]
pub struct OwpingOptions {
    /// The server's OWAMP-Control address.
    pub server: SocketAddr,
    /// Acceptable modes, preferred first (mixed mode does not exist in OWAMP).
    pub modes: Vec<SecurityMode>,
    /// Identity and passphrase for the protected modes.
    pub identity: Option<(Vec<u8>, Secret)>,
    /// RFC 7717: an IKE SA's SPIs and derived secret, used when the server offers it.
    pub ike: Option<IkeCredential>,
    /// Where to report the packets received from the server as they arrive (the records of
    /// the other direction come with Fetch-Session at the end).
    pub progress: Option<tokio::sync::mpsc::UnboundedSender<DataRecord>>,
    /// Packets per direction.
    pub count: u32,
    /// Gaps between packets.
    pub interval: Interval,
    /// Padding octets per packet.
    pub padding: u32,
    /// DSCP of the test packets.
    pub dscp: u8,
    /// How long after the last scheduled packet a packet still counts.
    pub loss_timeout: Duration,
    /// Local address for the test packets (`None`: the control connection's).
    pub local: Option<IpAddr>,
    /// Local UDP ports.
    pub ports: Option<RangeInclusive<u16>>,
    /// Largest PBKDF2 Count accepted.
    pub max_count: u32,
    /// How long the server has for each control exchange (greeting and set-up, each
    /// request, start, stop, fetch), the whole exchange however its octets are spread.
    pub control_timeout: Duration,
    /// Where the session keys, the SID of the session from the server and the padding come
    /// from (normally [`rng::os`]). A failure ends the run with [`TwpingError::Random`]
    /// before anything is keyed.
    pub rng: Arc<dyn SecureRandom>,
    /// Measure client to server.
    pub to_server: bool,
    /// Measure server to client.
    pub from_server: bool,
}

/// One direction's outcome.
#[derive(Debug, Clone)]
pub struct OneWay {
    /// The session's SID.
    pub sid: [u8; 16],
    /// The sender's Next Seqno, as the protocol reported it: the server's Stop-Sessions for
    /// the packets it sent, its Fetch-Session reply for those it received (RFC 4656 §3.8).
    pub next_seqno: u32,
    /// Sequence numbers the sender skipped.
    pub skip_ranges: Vec<SkipRange>,
    /// The receiver's records, in arrival order.
    pub records: Vec<DataRecord>,
    /// Whether the records are final: the Fetch-Session reply's Finished for the packets the
    /// server received; always for those we received, after our wait past its Stop-Sessions.
    pub finished: bool,
    /// For the direction we send: the kernel's transmit stamp of each packet, by seq, where it
    /// gave one (empty the other way). The records keep the packet's own timestamp.
    pub kernel_tx: Vec<Option<Timestamp>>,
    /// The session's start time and schedule (both directions use the same): when each
    /// packet was due, the send time of one that never arrived.
    pub start_time: Timestamp,
    /// The schedule's slots.
    pub slots: Vec<Slot>,
}

impl OneWay {
    /// A record's best send time: our kernel's transmit stamp when we sent it and the kernel
    /// said, else the timestamp the packet carried.
    pub fn send_time(&self, r: &DataRecord) -> Timestamp {
        self.kernel_tx
            .get(r.seq as usize)
            .copied()
            .flatten()
            .unwrap_or(r.send_time)
    }

    /// When packet `seq` was due by the schedule: the send time of a packet no record has
    /// (lost), which the sender stamps only on what it sends.
    pub fn scheduled_send_time(&self, seq: u32) -> Option<Timestamp> {
        Schedule::new(self.slots.clone(), &self.sid)
            .and_then(|mut s| s.nth(seq as usize))
            .map(|o| self.start_time + bits_to_duration(o))
    }

    /// The scheduled send times of packets `0..n`, in order (one pass over the schedule).
    pub fn scheduled_send_times(&self, n: u32) -> Vec<Timestamp> {
        Schedule::new(self.slots.clone(), &self.sid)
            .map(|s| {
                s.take(n as usize)
                    .map(|o| self.start_time + bits_to_duration(o))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Packets whose send time is the kernel's transmit stamp.
    pub fn kernel_stamped(&self) -> usize {
        self.kernel_tx.iter().filter(|t| t.is_some()).count()
    }
}

/// The outcome of an owping run.
#[derive(Debug, Clone)]
pub struct OwpingResult {
    /// The mode used.
    pub mode: SecurityMode,
    /// Client to server.
    pub to_server: Option<OneWay>,
    /// Server to client.
    pub from_server: Option<OneWay>,
    /// Time from connecting to the Start-Ack.
    pub setup_time: Duration,
}

fn slot(i: Interval) -> Slot {
    match i {
        Interval::Fixed(d) => Slot::Fixed(duration_to_bits(d)),
        Interval::Exponential(d) => Slot::Exponential(duration_to_bits(d)),
    }
}

/// Runs one OWAMP test.
pub async fn owping(opts: &OwpingOptions) -> Result<OwpingResult, TwpingError> {
    let t0 = tokio::time::Instant::now();
    let mut cfg = ClientConfig::open();
    cfg.modes = opts
        .modes
        .iter()
        .copied()
        .filter(|m| *m != SecurityMode::Mixed)
        .collect();
    cfg.identity = opts.identity.clone();
    cfg.ike = opts.ike.clone();
    cfg.max_count = opts.max_count;
    cfg.response_timeout = opts.control_timeout;
    let (mut ctl, local_ctrl) = Control::connect(
        opts.server,
        Protocol::Owamp,
        cfg,
        opts.control_timeout,
        opts.rng.as_ref(),
    )
    .await?;
    let ClientEvent::Established { mode, .. } = ctl.event(Step::Setup).await? else {
        return Err(Error::Internal("unexpected control event").into());
    };
    let layout = Layout::of(mode);
    let ip = opts.local.unwrap_or_else(|| local_ctrl.ip());
    let socket = bind_first(ip, opts.ports.clone(), blocking_socket)?;
    if opts.dscp != 0 {
        set_dscp_blocking(&socket, opts.dscp)?;
    }
    let local = socket.local_addr()?;
    let slots = vec![slot(opts.interval)];
    // Both directions start together, a little ahead so the requests are answered first.
    let start_time = clock::now() + Duration::from_millis(200);
    let timeout = duration_to_bits(opts.loss_timeout);
    let base = RequestSessionRepr {
        conf_sender: false,
        conf_receiver: true,
        num_packets: opts.count,
        sender_port: local.port(),
        receiver_port: 0,
        sender_address: local.ip(),
        receiver_address: opts.server.ip(),
        sid: [0; 16],
        padding_length: opts.padding,
        start_time,
        timeout,
        type_p: TypeP::from_dscp(opts.dscp),
        slots,
    };
    let mut to_sid = None;
    if opts.to_server {
        ctl.client.request_session(Instant::now(), &base)?;
        match ctl.event(Step::Request).await? {
            ClientEvent::SessionAccepted { sid, port, .. } => {
                to_sid = Some((sid, accepted_port(port)?));
            }
            ClientEvent::SessionRejected(a) => return Err(TwpingError::SessionRefused(a)),
            _ => return Err(Error::Internal("unexpected control event").into()),
        }
    }
    let mut from_sid = None;
    if opts.from_server {
        let sid = make_sid(local.ip(), clock::now(), rng::array(opts.rng.as_ref())?);
        let req = RequestSessionRepr {
            conf_sender: true,
            conf_receiver: false,
            sender_port: 0,
            receiver_port: local.port(),
            sender_address: opts.server.ip(),
            receiver_address: local.ip(),
            sid,
            ..base.clone()
        };
        ctl.client.request_session(Instant::now(), &req)?;
        match ctl.event(Step::Request).await? {
            ClientEvent::SessionAccepted { sid, port, .. } => {
                from_sid = Some((sid, accepted_port(port)?));
            }
            ClientEvent::SessionRejected(a) => return Err(TwpingError::SessionRefused(a)),
            _ => return Err(Error::Internal("unexpected control event").into()),
        }
    }
    ctl.client.start_sessions(Instant::now())?;
    match ctl.event(Step::Start).await? {
        ClientEvent::StartAck(Accept::Ok) => {}
        ClientEvent::StartAck(a) => return Err(TwpingError::SessionRefused(a)),
        _ => return Err(Error::Internal("unexpected control event").into()),
    }
    let setup_time = t0.elapsed();

    let send_prot = match to_sid {
        Some((sid, _)) => Some(
            TestProtection::new(mode, ctl.client.test_keys(&sid).as_ref())
                .map_err(|_| Error::Internal("test keys"))?,
        ),
        None => None,
    };
    let recv_prot = match from_sid {
        Some((sid, _)) => Some(
            TestProtection::new(mode, ctl.client.test_keys(&sid).as_ref())
                .map_err(|_| Error::Internal("test keys"))?,
        ),
        None => None,
    };
    let lead =
        Duration::from_nanos(u64::try_from(start_time.nanos_since(clock::now())).unwrap_or(0));
    let start = Instant::now() + lead;
    // The last packet either way is due at about the end of the longest schedule.
    let last_offset = |sid: &[u8; 16]| {
        Schedule::new(base.slots.clone(), sid)
            .and_then(|s| s.take(opts.count as usize).last())
            .map(bits_to_duration)
            .unwrap_or_default()
    };
    let end = [to_sid, from_sid]
        .into_iter()
        .flatten()
        .map(|(sid, _)| last_offset(&sid))
        .max()
        .unwrap_or_default();
    let deadline = start + end + opts.loss_timeout;

    let plan = match (to_sid, send_prot) {
        (Some((sid, port)), Some(prot)) => {
            let Some(schedule) = Schedule::new(base.slots.clone(), &sid) else {
                return Err(Error::Internal("schedule").into());
            };
            let len = layout.sender_header_len() + opts.padding as usize;
            let mut template = vec![0u8; len];
            // RFC 4656 §4.1.2 recommends pseudo-random padding.
            opts.rng.fill(&mut template[layout.sender_header_len()..])?;
            Some(SendPlan::new(
                schedule_offsets(schedule),
                start,
                opts.count,
                template,
                prot,
                SocketAddr::new(opts.server.ip(), port),
            ))
        }
        _ => None,
    };
    let receiver = match (from_sid, recv_prot) {
        (Some((_, port)), Some(prot)) => Some(OneWayReceiver::new(
            prot,
            From::Addr(SocketAddr::new(opts.server.ip(), port)),
        )),
        _ => None,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel();
    let after = Arc::new(Mutex::new(None));
    let role = OwampTest {
        plan,
        receiver,
        events: tx,
        deadline,
        // Past this, a control exchange that has not answered will fail: stop receiving.
        give_up: deadline + opts.control_timeout * 2,
        at_deadline: Some(stop_tx),
        after: after.clone(),
        seen: FixedBitSet::new(),
        unique: 0,
        count: opts.count,
    };
    let stamps = role.plan.is_some();
    let session = Engine::global()?.add(socket, Box::new(role), stamps)?;
    let mut from_records = Vec::new();
    let mut kernel_tx: Vec<Option<Timestamp>> = Vec::new();
    let mut take = |ev: TestEvent| match ev {
        TestEvent::Record(r) => {
            if let Some(p) = &opts.progress {
                let _ = p.send(r);
            }
            from_records.push(r);
            None
        }
        TestEvent::TxStamp { seq, time } => {
            // Only for packets sent (seq below what the plan queued), so bounded by them.
            let i = seq as usize;
            if i >= kernel_tx.len() {
                kernel_tx.resize(i + 1, None);
            }
            kernel_tx[i] = Some(time);
            None
        }
        TestEvent::Ended { sent } => Some(sent),
    };
    // Until the test ends, or its deadline passes while we still receive (below).
    let mut ended = None;
    let sent = loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => if let Some(n) = take(ev) {
                    ended = Some(n);
                    break n;
                },
                None => break 0,
            },
            n = &mut stop_rx => break n.unwrap_or(0),
        }
    };

    // Stop-Sessions for our send session; a server that sent answers with its own.
    let ours: Vec<StopSession> = to_sid
        .map(|(sid, _)| StopSession {
            sid,
            // What the sender really sent (RFC 4656 §3.8), not what was asked.
            next_seqno: sent,
            skip_ranges: vec![],
        })
        .into_iter()
        .collect();
    ctl.client.stop_sessions(
        Instant::now(),
        &StopSessionsRepr {
            accept: Accept::Ok,
            sessions: ours,
        },
    )?;
    ctl.flush().await?;
    let mut from_server = None;
    if let Some((sid, _)) = from_sid {
        // The server's count of what it sent is the only one there is (RFC 4656 §3.8): a
        // Stop-Sessions that does not name the session leaves the loss unknown, an error.
        let (next_seqno, skip_ranges) = match ctl.event(Step::Stop).await? {
            ClientEvent::StopSessions(s) => s
                .sessions
                .iter()
                .find(|x| x.sid == sid)
                .map(|x| (x.next_seqno, x.skip_ranges.clone()))
                .ok_or(TwpingError::Unreported("Stop-Sessions"))?,
            _ => return Err(Error::Internal("unexpected control event").into()),
        };
        // The packets it sent up to its Stop-Sessions may still be on their way, later than
        // our deadline on a loaded machine: receive them until each is in or the loss
        // timeout has passed since (RFC 4656 §3.8), so the records and the count agree.
        if let Ok(mut a) = after.lock() {
            *a = Some((next_seqno, Instant::now() + opts.loss_timeout));
        }
        from_server = Some((sid, next_seqno, skip_ranges));
    }
    // The rest of the test's events: the last records and transmit stamps.
    if ended.is_none() {
        while let Some(ev) = rx.recv().await {
            if take(ev).is_some() {
                break;
            }
        }
    }
    drop(session);
    let from_server = from_server.map(|(sid, next_seqno, skip_ranges)| OneWay {
        sid,
        next_seqno,
        skip_ranges,
        records: std::mem::take(&mut from_records),
        // Ours: nothing more is taken after this.
        finished: true,
        kernel_tx: Vec::new(),
        start_time,
        slots: base.slots.clone(),
    });
    let mut to_server = None;
    if let Some((sid, _)) = to_sid {
        ctl.client.fetch_session(
            Instant::now(),
            &FetchSessionRepr {
                sid,
                begin_seq: 0,
                end_seq: u32::MAX,
            },
        )?;
        // Duplicates are records too: at most twice what was sent is plenty.
        let most = opts.count.saturating_mul(2);
        let limit = crate::control_client::fetch_limit(opts.control_timeout, most);
        match ctl.event_within(Step::Fetch, limit).await? {
            ClientEvent::FetchReply(r) => {
                // The server's figures as it sent them (RFC 4656 §3.9): its Next Seqno is the
                // one our Stop-Sessions gave it, which it knows best.
                to_server = Some(OneWay {
                    sid,
                    next_seqno: r.next_seqno,
                    skip_ranges: r.skip_ranges,
                    records: r.records,
                    finished: r.finished,
                    kernel_tx: std::mem::take(&mut kernel_tx),
                    start_time,
                    slots: base.slots.clone(),
                })
            }
            ClientEvent::FetchRejected(a) => return Err(TwpingError::SessionRefused(a)),
            _ => return Err(Error::Internal("unexpected control event").into()),
        }
    }
    let _ = ctl.stream.shutdown().await;
    Ok(OwpingResult {
        mode,
        to_server,
        from_server,
        setup_time,
    })
}

/// owping's test session on the engine: our packets to the server on the schedule, the
/// server's packets to us recorded, until the last is due plus the loss timeout.
struct OwampTest {
    plan: Option<SendPlan>,
    receiver: Option<OneWayReceiver>,
    events: Events,
    deadline: Instant,
    /// The end of waiting for the server's Stop-Sessions (a control exchange that failed).
    give_up: Instant,
    /// Fired once at `deadline` with the packets sent: sending ends, and receiving goes on
    /// until the control side has the server's Next Seqno.
    at_deadline: Option<tokio::sync::oneshot::Sender<u32>>,
    /// The server's Next Seqno and how long to wait for its packets, once its Stop-Sessions
    /// came.
    after: Arc<Mutex<Option<(u32, Instant)>>>,
    /// Sequence numbers received (one bit each, up to the highest seen below `count`).
    seen: FixedBitSet,
    unique: u32,
    count: u32,
}

impl Role for OwampTest {
    fn receive(&mut self, pkt: &mut [u8], meta: &RecvMeta, out: &mut Out<'_>) {
        let Some(rx) = &mut self.receiver else {
            return;
        };
        let rec = match rx.record(pkt, meta) {
            Ok(r) => r,
            Err(Refused::Stranger | Refused::Bad) => return,
        };
        let _ = self.events.send(TestEvent::Record(rec));
        if rec.seq < self.count {
            let i = rec.seq as usize;
            if i >= self.seen.len() {
                self.seen.grow(i + 1);
            }
            if !self.seen.put(i) {
                self.unique += 1;
            }
        }
        // Receiving only, and everything is in: no need to wait for the loss timeout.
        if self.plan.is_none() && self.unique >= self.count {
            out.finish();
        }
        if self.at_deadline.is_none() && self.expected().is_some_and(|(n, _)| self.unique >= n) {
            out.finish();
        }
    }

    fn due(&mut self, now: Instant, out: &mut Out<'_>) -> Wake {
        if self.at_deadline.is_some() && now >= self.deadline {
            // Sending ends: what was queued is the Next Seqno of our Stop-Sessions.
            let sent = self.plan.as_ref().map_or(0, SendPlan::next_seq);
            if let Some(tx) = self.at_deadline.take() {
                let _ = tx.send(sent);
            }
            if self.receiver.is_none() {
                out.finish();
                return Wake::Idle;
            }
        }
        if self.at_deadline.is_none() {
            // Past the deadline, receiving what the server's Stop-Sessions counted.
            return match self.expected() {
                Some((n, until)) if self.unique >= n || now >= until => {
                    out.finish();
                    Wake::Idle
                }
                Some((_, until)) => Wake::At(until),
                None if now >= self.give_up => {
                    out.finish();
                    Wake::Idle
                }
                // Its Stop-Sessions is a round trip away: look again shortly.
                None => Wake::At((now + Duration::from_millis(5)).min(self.give_up)),
            };
        }
        match self.plan.as_mut().and_then(|p| p.due(now, out)) {
            Some(t) => Wake::At(t.min(self.deadline)),
            None => Wake::At(self.deadline),
        }
    }

    fn seal(&mut self, pkt: &mut [u8]) {
        if let Some(p) = &mut self.plan {
            p.seal(pkt);
        }
    }

    fn unsent(&mut self, sent: usize, queued: usize) {
        if let Some(p) = &mut self.plan {
            p.unsent(sent, queued);
        }
    }

    fn tx_stamp(&mut self, id: u32, time: Duration) {
        if let Some(seq) = self.plan.as_ref().and_then(|p| p.seq_of(id)) {
            let _ = self.events.send(TestEvent::TxStamp {
                seq,
                time: Timestamp::from_unix(time),
            });
        }
    }

    fn end(&mut self, _why: End) {
        let sent = self.plan.as_ref().map_or(0, SendPlan::next_seq);
        let _ = self.events.send(TestEvent::Ended { sent });
    }
}

impl OwampTest {
    /// The server's Next Seqno of the packets it sent us, and until when to wait for them,
    /// once its Stop-Sessions has come.
    fn expected(&self) -> Option<(u32, Instant)> {
        self.after.lock().ok().and_then(|a| *a)
    }
}
