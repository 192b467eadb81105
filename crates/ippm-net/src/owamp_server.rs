//! The OWAMP-Control server (RFC 4656 §3) with its test endpoints: a receiver per session the
//! client sends (RFC 4656 §4.2: every packet recorded with the kernel's receive timestamp, the
//! error estimates and the TTL, duplicates kept), a sender per session the server sends (on
//! the client's schedule, RFC 4656 §4.1 and §5), Stop-Sessions both ways and Fetch-Session
//! from a store that outlives the control connection (bounded in size, sessions expire).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ippm_proto::schedule::Schedule;
use ippm_proto::session::{Error, Server, ServerConfig, ServerEvent, make_sid};
use ippm_proto::time::bits_to_duration;
use ippm_proto::wire::owamp::{
    FetchSessionRepr, RequestSessionRepr, StopSession, StopSessionsRepr,
};
use ippm_proto::wire::test::{Layout, TestProtection};
use ippm_proto::{Accept, Protocol};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::accept::{ConnectionError, ReplyStream};
use crate::admission::{SessionPermit, Ticket};
use crate::clock;
use crate::counters::{
    SESSION_REFUSED, TEST_PACKET_BAD, TEST_PACKET_STRANGER, TEST_RECORD_NO_ROOM,
};
use crate::engine::{End, Engine, Out, RecvMeta, Role, SessionHandle, Wake};
use crate::owamp_store::{Dropped, Recorder, SessionHandle as StoreHandle};
use crate::policy::Rules;
use crate::receiver::{From, OneWayReceiver, Refused};
use crate::rng;
use crate::sender::{SendPlan, schedule_offsets};

/// What the OWAMP server offers, and its limits.
#[derive(Debug, Clone)]
pub struct OwampServerOptions {
    /// The control-session configuration (modes, Count, secrets, timeouts).
    pub control: Arc<ServerConfig>,
    /// Limits, policy, test ports and randomness, shared with the TWAMP server. A
    /// Fetch-Session client that stops reading is dropped after `rules.write_timeout`.
    pub rules: Rules,
    /// Most packets one session may ask for (a larger request gets Accept = 4). The record
    /// store has its own limits ([`StoreLimits`](crate::owamp_store::StoreLimits)).
    pub max_packets: u32,
}

impl OwampServerOptions {
    /// Defaults around a control configuration (limits of its own).
    pub fn new(control: Arc<ServerConfig>) -> Self {
        Self {
            control,
            rules: Rules::default(),
            max_packets: 10_000_000,
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
        info!(listen = %a, modes = %opts.control.modes.named(Protocol::Owamp), "OWAMP server listening");
    }
    let admission = opts.rules.admission.clone();
    crate::accept::accept_loop(
        listener,
        Protocol::Owamp,
        admission,
        shutdown,
        move |stream, peer, ticket, shutdown| {
            let (opts, store) = (opts.clone(), store.clone());
            async move { connection(stream, peer, ticket, &opts, &store, shutdown).await }
        },
    )
    .await;
}

/// A session of this connection.
enum Session {
    /// The server receives (Conf-Receiver).
    Receive {
        /// Until Start-Sessions: its socket, protection, recorder and place in the limits;
        /// then the engine session (whose role holds the place until it ends).
        pending: Option<(UdpSocket, TestProtection, Recorder, SessionPermit)>,
        running: Option<SessionHandle>,
        /// The stored session, for Stop-Sessions.
        stored: StoreHandle,
        timeout: Duration,
        stopped: bool,
    },
    /// The server sends (Conf-Sender).
    Send {
        pending: Option<(UdpSocket, TestProtection, SessionPermit)>,
        running: Option<SessionHandle>,
        request: RequestSessionRepr,
        to: SocketAddr,
        state: Arc<Mutex<SendState>>,
    },
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    mut ticket: Ticket,
    opts: &OwampServerOptions,
    store: &Arc<Store>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?;
    let random = crate::twamp_server::server_random(&opts.rules)?;
    let mut server = Server::new(
        Protocol::Owamp,
        opts.control.clone(),
        peer.ip(),
        random,
        Instant::now(),
    );
    let mut sessions: Vec<([u8; 16], Session)> = Vec::new();
    // Sessions this connection's identity may have (from the policy, once established).
    let mut identity_limit: Option<usize> = None;
    let result = crate::accept::drive_streams(
        &mut stream,
        &mut server,
        &mut ticket,
        &mut shutdown,
        || None,
        opts.rules.write_timeout,
        |ev, server, ticket| match ev {
            ServerEvent::FetchSession(f) => fetch(server, &f, peer, store),
            ServerEvent::Established { mode, identity, .. } => {
                identity_limit = opts.rules.session_limit(identity.as_ref());
                info!(%peer, %mode, identity = ?identity.map(|i| crate::twamp_server::display_identity(&i)),
                    "OWAMP control connection established");
                Ok(None)
            }
            ev => handle_event(ev, server, ticket, identity_limit, &mut sessions, peer, local, opts, store)
                .map(|()| None),
        },
    )
    .await;
    for (_, s) in sessions {
        match s {
            Session::Receive {
                running, stopped, ..
            } => match (stopped, running) {
                // Stop-Sessions came: it keeps receiving for its Timeout (RFC 4656 §3.8).
                (true, Some(h)) => h.detach(),
                // No Stop-Sessions: RFC 4656 §3.8 lets the results stand only up to the last
                // packet received. The session finishes (and can still be fetched) when its
                // recorder goes: here if it never started, else when the engine ends it.
                (_, running) => drop(running),
            },
            // Dropping the handle stops the sender.
            Session::Send { .. } => {}
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn handle_event(
    ev: ServerEvent,
    server: &mut Server,
    ticket: &mut Ticket,
    identity_limit: Option<usize>,
    sessions: &mut Vec<([u8; 16], Session)>,
    peer: SocketAddr,
    local: SocketAddr,
    opts: &OwampServerOptions,
    store: &Arc<Store>,
) -> Result<(), Error> {
    match ev {
        ServerEvent::RequestSession(req) => {
            let checked = ticket
                .session(identity_limit)
                .and_then(|permit| new_session(server, &req, peer, local, opts, store, permit));
            match checked {
                Ok((sid, port, s)) => {
                    server.accept_session(sid, port)?;
                    info!(%peer, sid = %crate::twamp_server::hex(&sid), port, packets = req.num_packets,
                      server_sends = req.conf_sender, "test session accepted");
                    sessions.push((sid, s));
                }
                Err((accept, why)) => {
                    if let Some(more) = SESSION_REFUSED.note() {
                        warn!(%peer, %accept, why, suppressed = more, "test session refused");
                    }
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
                        stored,
                        timeout,
                        running,
                        stopped,
                        ..
                    },
                )) = sessions.iter_mut().find(|(sid, _)| *sid == d.sid)
                {
                    stored.stop(d.next_seqno, d.skip_ranges.clone());
                    *stopped = true;
                    if let Some(h) = running {
                        h.stop(*timeout);
                    }
                }
            }
            // Ours end too, answered with our own Stop-Sessions.
            let mut ours = Vec::new();
            for (sid, s) in sessions.iter_mut() {
                if let Session::Send { running, state, .. } = s {
                    // Stopped under the sender's lock, so the Next Seqno is exactly what it
                    // queued: nothing more goes out after it.
                    let next_seqno = match state.lock() {
                        Ok(mut st) => {
                            st.stopped = true;
                            st.next
                        }
                        Err(_) => 0,
                    };
                    *running = None;
                    ours.push(StopSession {
                        sid: *sid,
                        next_seqno,
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
    let engine = match Engine::global() {
        Ok(e) => e,
        Err(e) => {
            warn!(error = %e, "cannot start a test session");
            return;
        }
    };
    let started = match s {
        Session::Receive {
            pending, running, ..
        } => {
            let Some((socket, protection, recorder, permit)) = pending.take() else {
                return;
            };
            let role = Receive {
                rx: OneWayReceiver::new(protection, From::Ip(peer)),
                recorder: Some(recorder),
                _permit: permit,
            };
            engine
                .add(socket, Box::new(role), false)
                .map(|h| *running = Some(h))
        }
        Session::Send {
            pending,
            running,
            request,
            to,
            state,
        } => {
            let Some((socket, protection, permit)) = pending.take() else {
                return;
            };
            let Some(schedule) = Schedule::new(request.slots.clone(), sid) else {
                return;
            };
            let layout = protection.layout();
            let mut template =
                vec![0u8; layout.sender_header_len() + request.padding_length as usize];
            // RFC 4656 §4.1.2 recommends pseudo-random padding.
            let _ = getrandom::fill(&mut template[layout.sender_header_len()..]);
            // The session's Start Time, or now if that has passed.
            let now_ts = clock::now();
            let lead = if request.start_time > now_ts {
                Duration::from_nanos(
                    u64::try_from(request.start_time.nanos_since(now_ts)).unwrap_or(0),
                )
            } else {
                Duration::ZERO
            };
            let plan = SendPlan::new(
                schedule_offsets(schedule),
                Instant::now() + lead,
                request.num_packets,
                template,
                protection,
                *to,
            );
            let role = Send {
                plan,
                state: state.clone(),
                _permit: permit,
            };
            engine
                .add(socket, Box::new(role), false)
                .map(|h| *running = Some(h))
        }
    };
    if let Err(e) = started {
        warn!(error = %e, "cannot start a test session");
    }
}

/// The receiving side of a session the client sends: every packet that passes its check is
/// recorded for Fetch-Session.
struct Receive {
    rx: OneWayReceiver,
    /// Given back (the session finished) when the engine ends the session.
    recorder: Option<Recorder>,
    /// The session's place in the daemon's limits, released when the engine drops the role.
    _permit: SessionPermit,
}

impl Role for Receive {
    fn receive(&mut self, pkt: &mut [u8], meta: &RecvMeta, _out: &mut Out<'_>) {
        let rec = match self.rx.record(pkt, meta) {
            Ok(r) => r,
            Err(Refused::Stranger) => {
                if let Some(more) = TEST_PACKET_STRANGER.note() {
                    debug!(from = %meta.from, suppressed = more, "test packet from an address other than the client's, dropped");
                }
                return;
            }
            Err(Refused::Bad) => {
                if let Some(more) = TEST_PACKET_BAD.note() {
                    warn!(from = %meta.from, len = meta.len, suppressed = more, "test packet failed its check, dropped");
                }
                return;
            }
        };
        let Some(recorder) = &mut self.recorder else {
            return;
        };
        match recorder.push(rec) {
            Ok(()) => {}
            // The bounds: counted always, said at most once per interval.
            Err(e @ (Dropped::SessionFull(_) | Dropped::StoreFull(_))) => {
                if let Some(more) = TEST_RECORD_NO_ROOM.note() {
                    warn!(from = %meta.from, reason = %e, suppressed = more, "dropping test records");
                }
            }
            Err(e) => debug!(from = %meta.from, reason = %e, "test record dropped"),
        }
    }

    fn end(&mut self, _why: End) {
        if let Some(r) = self.recorder.take() {
            if r.dropped() > 0 {
                info!(
                    dropped = r.dropped(),
                    kept = r.records(),
                    "receive session ended"
                );
            }
            r.finish();
        }
    }
}

/// The sending side of a session the server sends, on the client's schedule.
struct Send {
    plan: SendPlan,
    state: Arc<Mutex<SendState>>,
    /// The session's place in the daemon's limits, released when the engine drops the role.
    _permit: SessionPermit,
}

/// What a sending session and its control connection share: Stop-Sessions sets `stopped`
/// and reads `next` under the lock that the sender holds while it queues packets.
#[derive(Debug, Default)]
struct SendState {
    stopped: bool,
    /// Packets queued (they go out in the same turn): the Next Seqno of RFC 4656 §3.8.
    next: u32,
}

impl Role for Send {
    fn receive(&mut self, _pkt: &mut [u8], _meta: &RecvMeta, _out: &mut Out<'_>) {}

    fn due(&mut self, now: Instant, out: &mut Out<'_>) -> Wake {
        let Ok(mut st) = self.state.lock() else {
            out.finish();
            return Wake::Idle;
        };
        if st.stopped {
            out.finish();
            return Wake::Idle;
        }
        let next = self.plan.due(now, out);
        st.next = self.plan.next_seq();
        match next {
            Some(t) => Wake::At(t),
            None => {
                out.finish();
                Wake::Idle
            }
        }
    }

    fn seal(&mut self, pkt: &mut [u8]) {
        self.plan.seal(pkt);
    }

    fn unsent(&mut self, sent: usize, queued: usize) {
        self.plan.unsent(sent, queued);
    }

    fn end(&mut self, _why: End) {}
}

type Refusal = (Accept, &'static str);

fn new_session(
    server: &Server,
    req: &RequestSessionRepr,
    peer: SocketAddr,
    local: SocketAddr,
    opts: &OwampServerOptions,
    store: &Store,
    permit: SessionPermit,
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
    let timeout = bits_to_duration(req.timeout).min(opts.rules.max_timeout);
    let random =
        || rng::array(&*opts.rules.random).map_err(|_| (Accept::InternalError, "no random octets"));
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
        let socket = opts.rules.test_socket(ip, req.receiver_port)?;
        let port = socket
            .local_addr()
            .map_err(|_| (Accept::InternalError, "socket"))?
            .port();
        let sid = make_sid(ip, clock::now(), random()?);
        let protection = TestProtection::new(mode, server.test_keys(&sid).as_ref())
            .map_err(|_| (Accept::InternalError, "test keys"))?;
        // Fetch-Session returns the request with the port we chose.
        let mut stored_req = req.clone();
        stored_req.receiver_port = port;
        stored_req.sid = sid;
        let recorder = store
            .insert(sid, stored_req)
            .map_err(|e| (e.accept(), e.reason()))?;
        let stored = recorder.handle();
        Ok((
            sid,
            port,
            Session::Receive {
                pending: Some((socket, protection, recorder, permit)),
                running: None,
                stored,
                timeout,
                stopped: false,
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
        let socket = opts.rules.test_socket(ip, 0)?;
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
        Ok((
            sid,
            port,
            Session::Send {
                pending: Some((socket, protection, permit)),
                running: None,
                request: req.clone(),
                to: SocketAddr::new(to_ip, req.receiver_port),
                state: Arc::default(),
            },
        ))
    }
}
