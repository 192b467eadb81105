//! The OWAMP-Control server (RFC 4656 §3) with its test endpoints: a receiver per session the
//! client sends (RFC 4656 §4.2: every packet recorded with the kernel's receive timestamp, the
//! error estimates and the TTL, duplicates kept), a sender per session the server sends (on
//! the client's schedule, RFC 4656 §4.1 and §5), Stop-Sessions both ways and Fetch-Session
//! from a store that outlives the control connection (bounded in size, sessions expire).

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ippm_proto::schedule::Schedule;
use ippm_proto::session::{Error, Server, ServerConfig, ServerEvent, ServerRandom, make_sid};
use ippm_proto::time::bits_to_duration;
use ippm_proto::wire::owamp::{
    DataRecord, FetchSessionRepr, RequestSessionRepr, StopSession, StopSessionsRepr,
};
use ippm_proto::wire::test::{Layout, PacketKind, SenderRepr, TestProtection};
use ippm_proto::{Accept, Protocol, Timestamp};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::accept::ReplyStream;
use crate::clock::{self, ClockState};
use crate::owamp_store::{Dropped, Recorder, SessionHandle};
use crate::twamp_server::ConnectionError;
use crate::udp::{bind_first, blocking_socket, recv_blocking};

/// What the OWAMP server offers, and its limits.
#[derive(Debug, Clone)]
pub struct OwampServerOptions {
    /// The control-session configuration (modes, Count, secrets, timeouts).
    pub control: Arc<ServerConfig>,
    /// UDP ports for test sessions (`None`: any free port).
    pub test_ports: Option<RangeInclusive<u16>>,
    /// Most control connections at once.
    pub max_connections: usize,
    /// Most packets one session may ask for (a larger request gets Accept = 4). The record
    /// store has its own limits ([`StoreLimits`](crate::owamp_store::StoreLimits)).
    pub max_packets: u32,
    /// Longest Timeout honoured after Stop-Sessions.
    pub max_timeout: Duration,
    /// How long one write of a control connection may take: a Fetch-Session client that
    /// stops reading is dropped after this, with a log line.
    pub write_timeout: Duration,
}

impl OwampServerOptions {
    /// Defaults around a control configuration.
    pub fn new(control: Arc<ServerConfig>) -> Self {
        Self {
            control,
            test_ports: None,
            max_connections: 256,
            max_packets: 10_000_000,
            max_timeout: Duration::from_secs(60),
            write_timeout: crate::accept::DEFAULT_WRITE_TIMEOUT,
        }
    }
}

pub use crate::owamp_store::Store;

/// Accepts OWAMP-Control connections on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    opts: Arc<OwampServerOptions>,
    store: Arc<Store>,
    shutdown: watch::Receiver<bool>,
) {
    if let Ok(a) = listener.local_addr() {
        info!(listen = %a, modes = ?opts.control.modes, "OWAMP server listening");
    }
    let max = opts.max_connections;
    crate::accept::accept_loop(listener, max, shutdown, move |stream, peer, shutdown| {
        let (opts, store) = (opts.clone(), store.clone());
        async move { connection(stream, peer, &opts, &store, shutdown).await }
    })
    .await;
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if getrandom::fill(&mut b).is_err() {
        tracing::error!("the OS random number generator failed");
    }
    b
}

/// A session of this connection.
enum Session {
    /// The server receives (Conf-Receiver).
    Receive {
        socket: Option<std::net::UdpSocket>,
        protection: TestProtection,
        /// Moves to the receiver thread at Start-Sessions.
        recorder: Option<Recorder>,
        handle: SessionHandle,
        timeout: Duration,
        stop: watch::Sender<Option<Duration>>,
    },
    /// The server sends (Conf-Sender).
    Send {
        socket: Option<Arc<std::net::UdpSocket>>,
        protection: TestProtection,
        request: RequestSessionRepr,
        to: SocketAddr,
        next_seqno: Arc<AtomicU32>,
        stop: watch::Sender<bool>,
    },
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    opts: &OwampServerOptions,
    store: &Arc<Store>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?;
    let random = ServerRandom {
        challenge: random(),
        salt: random(),
        server_iv: random(),
    };
    let mut server = Server::new(
        Protocol::Owamp,
        opts.control.clone(),
        random,
        Instant::now(),
    );
    let mut sessions: Vec<([u8; 16], Session)> = Vec::new();
    let result = crate::accept::drive_streams(
        &mut stream,
        &mut server,
        &mut shutdown,
        || None,
        opts.write_timeout,
        |ev, server| match ev {
            ServerEvent::FetchSession(f) => fetch(server, &f, peer, store),
            ev => handle_event(ev, server, &mut sessions, peer, local, opts, store).map(|()| None),
        },
    )
    .await;
    for (_, s) in sessions {
        match s {
            // No Stop-Sessions: RFC 4656 §3.8 lets the results stand only up to the last
            // packet received. The session finishes (and can still be fetched) when its
            // recorder goes: here if it never started, else when the receiver thread ends.
            Session::Receive { stop, .. } => {
                if stop.borrow().is_none() {
                    let _ = stop.send(None);
                }
            }
            Session::Send { stop, .. } => {
                let _ = stop.send(true);
            }
        }
    }
    result
}

fn handle_event(
    ev: ServerEvent,
    server: &mut Server,
    sessions: &mut Vec<([u8; 16], Session)>,
    peer: SocketAddr,
    local: SocketAddr,
    opts: &OwampServerOptions,
    store: &Arc<Store>,
) -> Result<(), Error> {
    match ev {
        ServerEvent::Established { mode, identity, .. } => {
            info!(%peer, %mode, identity = ?identity.is_some(), "OWAMP control connection established");
        }
        ServerEvent::RequestSession(req) => {
            match new_session(server, &req, peer, local, opts, store) {
                Ok((sid, port, s)) => {
                    server.accept_session(sid, port)?;
                    info!(%peer, sid = %crate::twamp_server::hex(&sid), port, packets = req.num_packets,
                      server_sends = req.conf_sender, "test session accepted");
                    sessions.push((sid, s));
                }
                Err((accept, why)) => {
                    warn!(%peer, %accept, why, "test session refused");
                    server.reject_session(accept)?;
                }
            }
        }
        ServerEvent::StartSessions => {
            for (sid, s) in sessions.iter_mut() {
                start(sid, s, peer.ip());
            }
            server.start_ack(Accept::Ok)?;
        }
        ServerEvent::StopSessions(stop) => {
            // The client's send sessions end: record Next Seqno and skips, keep receiving for
            // the session's Timeout (RFC 4656 §3.8), then finish.
            for d in &stop.sessions {
                if let Some((
                    _,
                    Session::Receive {
                        handle,
                        timeout,
                        stop: tx,
                        ..
                    },
                )) = sessions.iter().find(|(sid, _)| *sid == d.sid)
                {
                    handle.stop(d.next_seqno, d.skip_ranges.clone());
                    let _ = tx.send(Some(*timeout));
                }
            }
            // Ours end too, answered with our own Stop-Sessions.
            let mut ours = Vec::new();
            for (sid, s) in sessions.iter() {
                if let Session::Send {
                    stop, next_seqno, ..
                } = s
                {
                    let _ = stop.send(true);
                    ours.push(StopSession {
                        sid: *sid,
                        next_seqno: next_seqno.load(Ordering::Relaxed),
                        skip_ranges: vec![],
                    });
                }
            }
            if !ours.is_empty() {
                server.stop_sessions(&StopSessionsRepr {
                    accept: Accept::Ok,
                    sessions: ours,
                })?;
            }
        }
        other => debug!(%peer, event = ?other, "ignored event"),
    }
    Ok(())
}

/// Fetch-Session: the answer streams from the store through a cursor, one part at a time
/// (the driver asks for the next part once the last is written).
fn fetch(
    server: &mut Server,
    f: &FetchSessionRepr,
    peer: SocketAddr,
    store: &Store,
) -> Result<Option<Box<dyn ReplyStream>>, Error> {
    match store.fetch(&f.sid, f.begin_seq, f.end_seq) {
        Some(cursor) => {
            debug!(%peer, sid = %crate::twamp_server::hex(&f.sid),
                records = cursor.header().num_records, "Fetch-Session");
            server.fetch_reply_begin(cursor.header().clone())?;
            Ok(Some(Box::new(cursor)))
        }
        None => {
            warn!(%peer, sid = %crate::twamp_server::hex(&f.sid), "Fetch-Session for an unknown session");
            server.fetch_reply(Err(Accept::Failure))?;
            Ok(None)
        }
    }
}

fn start(sid: &[u8; 16], s: &mut Session, peer: IpAddr) {
    match s {
        Session::Receive {
            socket,
            protection,
            recorder,
            stop,
            ..
        } => {
            let Some(sock) = socket.take() else { return };
            let Some(recorder) = recorder.take() else {
                return;
            };
            let (prot, rx) = (protection.clone(), stop.subscribe());
            let spawn = std::thread::Builder::new()
                .name("owamp-receiver".into())
                .spawn(move || receive(sock, prot, peer, recorder, rx));
            if let Err(e) = spawn {
                warn!(error = %e, "cannot start a receiver thread");
            }
        }
        Session::Send {
            socket,
            protection,
            request,
            to,
            next_seqno,
            stop,
        } => {
            let Some(sock) = socket.take() else { return };
            let Some(schedule) = Schedule::new(request.slots.clone(), sid) else {
                return;
            };
            let (prot, req, to, next, rx) = (
                protection.clone(),
                request.clone(),
                *to,
                next_seqno.clone(),
                stop.subscribe(),
            );
            tokio::spawn(send(sock, prot, req, schedule, to, next, rx));
        }
    }
}

/// The receiver thread: records every packet until stopped.
fn receive(
    sock: std::net::UdpSocket,
    prot: TestProtection,
    peer: IpAddr,
    mut recorder: Recorder,
    stop: watch::Receiver<Option<Duration>>,
) {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(50)));
    let mut full_logged = false;
    let layout = prot.layout();
    let mut buf = vec![0u8; crate::reflector::MAX_PACKET];
    let mut clock_state = ClockState::read();
    let mut clock_read = Instant::now();
    let mut deadline: Option<Instant> = None;
    loop {
        if deadline.is_none() {
            match (*stop.borrow(), stop.has_changed()) {
                (Some(grace), _) => deadline = Some(Instant::now() + grace),
                (None, Err(_)) => break,
                (None, Ok(_)) => {}
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let Ok(m) = recv_blocking(&sock, &mut buf) else {
            continue;
        };
        if m.from.ip() != peer {
            debug!(from = %m.from, "test packet from an address other than the client's, dropped");
            continue;
        }
        let recv_time = m
            .kernel_time
            .map(Timestamp::from_unix)
            .unwrap_or_else(clock::now);
        let pkt = &mut buf[..m.len];
        if prot.unprotect(PacketKind::Sender, pkt).is_err() {
            warn!(from = %m.from, "test packet failed its check, dropped");
            continue;
        }
        let Ok(p) = SenderRepr::parse(pkt, layout) else {
            debug!(from = %m.from, len = m.len, "test packet too short, dropped");
            continue;
        };
        if clock_read.elapsed() > Duration::from_secs(1) {
            clock_state = ClockState::read();
            clock_read = Instant::now();
        }
        let r = recorder.push(DataRecord {
            seq: p.seq,
            send_error: p.error_estimate,
            recv_error: clock_state.error_estimate(),
            send_time: p.timestamp,
            recv_time,
            ttl: m.ttl.unwrap_or(255),
        });
        match r {
            Ok(()) => {}
            // The bounds: said once per session, counted always.
            Err(e @ (Dropped::SessionFull(_) | Dropped::StoreFull(_))) if !full_logged => {
                warn!(from = %m.from, reason = %e, "dropping test records");
                full_logged = true;
            }
            Err(e) => debug!(from = %m.from, reason = %e, "test record dropped"),
        }
    }
    if recorder.dropped() > 0 {
        info!(
            dropped = recorder.dropped(),
            kept = recorder.records(),
            "receive session ended"
        );
    }
    recorder.finish();
}

/// The sender task: packets on the schedule from the session's Start Time (or now, if that
/// has passed) until all are sent or the session is stopped.
async fn send(
    sock: Arc<std::net::UdpSocket>,
    prot: TestProtection,
    req: RequestSessionRepr,
    schedule: Schedule,
    to: SocketAddr,
    next: Arc<AtomicU32>,
    mut stop: watch::Receiver<bool>,
) {
    let layout = prot.layout();
    let len = layout.sender_header_len() + req.padding_length as usize;
    let mut pkt = vec![0u8; len];
    let _ = getrandom::fill(&mut pkt[layout.sender_header_len()..]);
    let mut wire = vec![0u8; len];
    let now_ts = clock::now();
    let lead = if req.start_time > now_ts {
        Duration::from_nanos(u64::try_from(req.start_time.nanos_since(now_ts)).unwrap_or(0))
    } else {
        Duration::ZERO
    };
    let start = tokio::time::Instant::now() + lead;
    let mut clock_state = ClockState::read();
    for (seq, off) in schedule.take(req.num_packets as usize).enumerate() {
        let at = start + bits_to_duration(off);
        tokio::select! {
            () = crate::twamp_client::pace_until(at) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        if seq % 64 == 0 {
            clock_state = ClockState::read();
        }
        let repr = SenderRepr {
            seq: seq as u32,
            timestamp: clock::now(),
            error_estimate: clock_state.error_estimate(),
        };
        let _ = repr.emit(&mut pkt, layout);
        wire.copy_from_slice(&pkt);
        prot.protect(PacketKind::Sender, &mut wire);
        let _ = sock.send_to(&wire, to);
        next.store(seq as u32 + 1, Ordering::Relaxed);
    }
}

type Refusal = (Accept, &'static str);

fn new_session(
    server: &Server,
    req: &RequestSessionRepr,
    peer: SocketAddr,
    local: SocketAddr,
    opts: &OwampServerOptions,
    store: &Store,
) -> Result<([u8; 16], u16, Session), Refusal> {
    if req.num_packets > opts.max_packets {
        return Err((Accept::PermanentResourceLimitation, "too many packets"));
    }
    if req.slots.is_empty() {
        return Err((Accept::NotSupported, "no schedule slots"));
    }
    let mode = server.mode().ok_or((Accept::InternalError, "no mode"))?;
    let layout = Layout::of(mode);
    if req.padding_length as usize > crate::reflector::MAX_PACKET - layout.sender_header_len() - 28
    {
        return Err((Accept::NotSupported, "padding too long for a UDP datagram"));
    }
    let dscp = req
        .type_p
        .dscp()
        .ok_or((Accept::NotSupported, "Type-P descriptor is not a DSCP"))?;
    let timeout = bits_to_duration(req.timeout).min(opts.max_timeout);
    if req.conf_receiver {
        // We receive: the sender must be the client.
        if !req.sender_address.is_unspecified() && req.sender_address != peer.ip() {
            return Err((
                Accept::NotSupported,
                "sender address is not the control client's",
            ));
        }
        let ip = if req.receiver_address.is_unspecified() {
            local.ip()
        } else {
            req.receiver_address
        };
        let want = (req.receiver_port != 0).then_some(req.receiver_port);
        let socket = want
            .and_then(|p| blocking_socket(SocketAddr::new(ip, p)).ok())
            .map(Ok)
            .unwrap_or_else(|| bind_first(ip, opts.test_ports.clone(), blocking_socket))
            .map_err(|_| (Accept::TemporaryResourceLimitation, "no free test port"))?;
        let port = socket
            .local_addr()
            .map_err(|_| (Accept::InternalError, "socket"))?
            .port();
        let sid = make_sid(ip, clock::now(), random());
        let protection = TestProtection::new(mode, server.test_keys(&sid).as_ref())
            .map_err(|_| (Accept::InternalError, "test keys"))?;
        // Fetch-Session returns the request with the port we chose.
        let mut stored_req = req.clone();
        stored_req.receiver_port = port;
        stored_req.sid = sid;
        let recorder = store
            .insert(sid, stored_req)
            .map_err(|e| (e.accept(), e.reason()))?;
        let handle = recorder.handle();
        let (stop, _) = watch::channel(None);
        Ok((
            sid,
            port,
            Session::Receive {
                socket: Some(socket),
                protection,
                recorder: Some(recorder),
                handle,
                timeout,
                stop,
            },
        ))
    } else {
        // We send, to the client's receiver (which must be the client).
        let to_ip = if req.receiver_address.is_unspecified() {
            peer.ip()
        } else {
            req.receiver_address
        };
        if to_ip != peer.ip() || req.receiver_port == 0 {
            return Err((Accept::NotSupported, "receiver is not the control client"));
        }
        let ip = if req.sender_address.is_unspecified() {
            local.ip()
        } else {
            req.sender_address
        };
        let socket = bind_first(ip, opts.test_ports.clone(), blocking_socket)
            .map_err(|_| (Accept::TemporaryResourceLimitation, "no free test port"))?;
        socket
            .set_nonblocking(true)
            .map_err(|_| (Accept::InternalError, "socket"))?;
        if dscp != 0 {
            crate::udp::set_dscp_blocking(&socket, dscp)
                .map_err(|_| (Accept::InternalError, "cannot set DSCP"))?;
        }
        let port = socket
            .local_addr()
            .map_err(|_| (Accept::InternalError, "socket"))?
            .port();
        let sid = req.sid;
        let protection = TestProtection::new(mode, server.test_keys(&sid).as_ref())
            .map_err(|_| (Accept::InternalError, "test keys"))?;
        let (stop, _) = watch::channel(false);
        Ok((
            sid,
            port,
            Session::Send {
                socket: Some(Arc::new(socket)),
                protection,
                request: req.clone(),
                to: SocketAddr::new(to_ip, req.receiver_port),
                next_seqno: Arc::new(AtomicU32::new(0)),
                stop,
            },
        ))
    }
}
