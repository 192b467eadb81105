//! The OWAMP Control-Client behind `ippm owping` (RFC 4656): a session each way (by default),
//! our packets sent on the schedule while the server's are received with kernel timestamps,
//! Stop-Sessions both ways, then Fetch-Session for what the server received.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use ippm_proto::schedule::{Schedule, Slot};
use ippm_proto::session::{ClientConfig, ClientEvent, Error, IkeCredential, Secret, make_sid};
use ippm_proto::time::{bits_to_duration, duration_to_bits};
use ippm_proto::wire::owamp::{
    DataRecord, FetchSessionRepr, RequestSessionRepr, SkipRange, StopSession, StopSessionsRepr,
    TypeP,
};
use ippm_proto::wire::test::{Layout, PacketKind, SenderRepr, TestProtection};
use ippm_proto::{Accept, Protocol, SecurityMode, Timestamp};
use tokio::io::AsyncWriteExt;

use crate::clock::{self, ClockState};
use crate::control_client::{Control, random};
use crate::twamp_client::{Interval, TwpingError, pace_until};
use crate::udp::TestSocket;

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
    /// How long to wait for the server at each step.
    pub control_timeout: Duration,
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
    /// The sender's Next Seqno.
    pub next_seqno: u32,
    /// Sequence numbers the sender skipped.
    pub skip_ranges: Vec<SkipRange>,
    /// The receiver's records, in arrival order.
    pub records: Vec<DataRecord>,
    /// Whether the receiver said the records are final.
    pub finished: bool,
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
    let (mut ctl, local_ctrl) =
        Control::connect(opts.server, Protocol::Owamp, cfg, opts.control_timeout).await?;
    let ClientEvent::Established { mode, .. } = ctl.event().await? else {
        return Err(Error::Internal("unexpected control event").into());
    };
    let layout = Layout::of(mode);
    let ip = opts.local.unwrap_or_else(|| local_ctrl.ip());
    let socket = TestSocket::bind_in_range(ip, opts.ports.clone())?;
    if opts.dscp != 0 {
        socket.set_dscp(opts.dscp)?;
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
        ctl.client
            .request_session(std::time::Instant::now(), &base)?;
        match ctl.event().await? {
            ClientEvent::SessionAccepted { sid, port, .. } => to_sid = Some((sid, port)),
            ClientEvent::SessionRejected(a) => return Err(TwpingError::SessionRefused(a)),
            _ => return Err(Error::Internal("unexpected control event").into()),
        }
    }
    let mut from_sid = None;
    if opts.from_server {
        let sid = make_sid(local.ip(), clock::now(), random());
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
        ctl.client
            .request_session(std::time::Instant::now(), &req)?;
        match ctl.event().await? {
            ClientEvent::SessionAccepted { sid, port, .. } => from_sid = Some((sid, port)),
            ClientEvent::SessionRejected(a) => return Err(TwpingError::SessionRefused(a)),
            _ => return Err(Error::Internal("unexpected control event").into()),
        }
    }
    ctl.client.start_sessions(std::time::Instant::now())?;
    match ctl.event().await? {
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
    let start = tokio::time::Instant::now() + lead;
    let offsets: Vec<Duration> = match to_sid.or(from_sid) {
        Some((sid, _)) => Schedule::new(base.slots.clone(), &sid)
            .map(|s| s.take(opts.count as usize).map(bits_to_duration).collect())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    // The last packet either way is due at about the end of the longest schedule.
    let mut end = start + offsets.last().copied().unwrap_or_default();
    if let (Some((sid, _)), Some(_)) = (from_sid, to_sid) {
        if let Some(s) = Schedule::new(base.slots.clone(), &sid) {
            if let Some(last) = s.take(opts.count as usize).last() {
                end = end.max(start + bits_to_duration(last));
            }
        }
    }
    let deadline = end + opts.loss_timeout;

    let sender = async {
        let (Some((sid, port)), Some(prot)) = (to_sid, send_prot.as_ref()) else {
            return;
        };
        let to = SocketAddr::new(opts.server.ip(), port);
        let Some(schedule) = Schedule::new(base.slots.clone(), &sid) else {
            return;
        };
        let len = layout.sender_header_len() + opts.padding as usize;
        let mut pkt = vec![0u8; len];
        let _ = getrandom::fill(&mut pkt[layout.sender_header_len()..]);
        let mut wire = vec![0u8; len];
        let mut cs = ClockState::read();
        for (seq, off) in schedule.take(opts.count as usize).enumerate() {
            pace_until(start + bits_to_duration(off)).await;
            if seq % 64 == 0 {
                cs = ClockState::read();
            }
            let repr = SenderRepr {
                seq: seq as u32,
                timestamp: clock::now(),
                error_estimate: cs.error_estimate(),
            };
            let _ = repr.emit(&mut pkt, layout);
            wire.copy_from_slice(&pkt);
            prot.protect(PacketKind::Sender, &mut wire);
            let _ = socket.send_to(&wire, to).await;
        }
    };
    let receiver = async {
        let mut records = Vec::new();
        let (Some((_, port)), Some(prot)) = (from_sid, recv_prot.as_ref()) else {
            tokio::time::sleep_until(deadline).await;
            return records;
        };
        let from = SocketAddr::new(opts.server.ip(), port);
        let mut buf = vec![0u8; crate::reflector::MAX_PACKET];
        let mut cs = ClockState::read();
        let mut seen = std::collections::HashSet::new();
        loop {
            tokio::select! {
                r = socket.recv(&mut buf) => {
                    let Ok(m) = r else { continue };
                    if m.from != from {
                        continue;
                    }
                    let recv_time = m.kernel_time.map(Timestamp::from_unix).unwrap_or_else(clock::now);
                    let pkt = &mut buf[..m.len];
                    if prot.unprotect(PacketKind::Sender, pkt).is_err() {
                        continue;
                    }
                    let Ok(p) = SenderRepr::parse(pkt, layout) else { continue };
                    if records.len() % 64 == 0 {
                        cs = ClockState::read();
                    }
                    let record = DataRecord {
                        seq: p.seq,
                        send_error: p.error_estimate,
                        recv_error: cs.error_estimate(),
                        send_time: p.timestamp,
                        recv_time,
                        ttl: m.ttl.unwrap_or(255),
                    };
                    if let Some(tx) = &opts.progress {
                        let _ = tx.send(record);
                    }
                    records.push(record);
                    seen.insert(p.seq);
                    if seen.len() >= opts.count as usize && to_sid.is_none() {
                        return records;
                    }
                }
                () = tokio::time::sleep_until(deadline) => return records,
            }
        }
    };
    let ((), from_records) = tokio::join!(sender, receiver);

    // Stop-Sessions for our send session; a server that sent answers with its own.
    let ours: Vec<StopSession> = to_sid
        .map(|(sid, _)| StopSession {
            sid,
            next_seqno: opts.count,
            skip_ranges: vec![],
        })
        .into_iter()
        .collect();
    ctl.client.stop_sessions(
        std::time::Instant::now(),
        &StopSessionsRepr {
            accept: Accept::Ok,
            sessions: ours,
        },
    )?;
    ctl.flush().await?;
    let mut from_server = None;
    if let Some((sid, _)) = from_sid {
        let (next_seqno, skip_ranges) = match ctl.event().await? {
            ClientEvent::StopSessions(s) => s
                .sessions
                .iter()
                .find(|x| x.sid == sid)
                .map(|x| (x.next_seqno, x.skip_ranges.clone()))
                .unwrap_or((opts.count, vec![])),
            _ => return Err(Error::Internal("unexpected control event").into()),
        };
        from_server = Some(OneWay {
            sid,
            next_seqno,
            skip_ranges,
            records: from_records,
            finished: true,
        });
    }
    let mut to_server = None;
    if let Some((sid, _)) = to_sid {
        ctl.client.fetch_session(
            std::time::Instant::now(),
            &FetchSessionRepr {
                sid,
                begin_seq: 0,
                end_seq: u32::MAX,
            },
        )?;
        match ctl.event().await? {
            ClientEvent::FetchReply(r) => {
                to_server = Some(OneWay {
                    sid,
                    next_seqno: r.next_seqno.max(opts.count),
                    skip_ranges: r.skip_ranges,
                    records: r.records,
                    finished: r.finished,
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
