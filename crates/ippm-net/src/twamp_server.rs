//! The TWAMP-Control server (RFC 5357 §3): accepts connections, drives one
//! [`ippm_proto::session::Server`] per connection, and runs a Session-Reflector per accepted
//! test session.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ippm_proto::session::{Error, Server, ServerConfig, ServerEvent, ServerRandom, make_sid};
use ippm_proto::wire::test::TestProtection;
use ippm_proto::wire::twamp::RequestTwSessionRepr;
use ippm_proto::{Accept, Modes, Protocol, time::bits_to_duration};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::admission::{SessionPermit, Ticket};
use crate::clock;
use crate::counters::SESSION_REFUSED;
use crate::engine::{Engine, SessionHandle};
use crate::policy::Rules;
use crate::reflector::{self, ReflectorSession, ReflectorStats};
use crate::rng::{self, RandomError};
use crate::udp::set_dscp_blocking;

pub use crate::accept::ConnectionError;

/// What the TWAMP server offers, and its limits.
#[derive(Debug, Clone)]
pub struct TwampServerOptions {
    /// The control-session configuration (modes, Count, secrets, timeouts).
    pub control: Arc<ServerConfig>,
    /// Limits, policy, test ports and randomness, shared with the OWAMP server.
    pub rules: Rules,
}

impl TwampServerOptions {
    /// Defaults around a control configuration (limits of its own).
    pub fn new(control: Arc<ServerConfig>) -> Self {
        Self {
            control,
            rules: Rules::default(),
        }
    }
}

/// Accepts TWAMP-Control connections on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    opts: Arc<TwampServerOptions>,
    shutdown: watch::Receiver<bool>,
) {
    if let Ok(a) = listener.local_addr() {
        info!(listen = %a, modes = %opts.control.modes.named(Protocol::Twamp), "TWAMP server listening");
    }
    let admission = opts.rules.admission.clone();
    crate::accept::accept_loop(
        listener,
        Protocol::Twamp,
        admission,
        shutdown,
        move |stream, peer, ticket, shutdown| {
            let opts = opts.clone();
            async move { connection(stream, peer, ticket, &opts, shutdown).await }
        },
    )
    .await;
}

struct TestSession {
    /// The session's place in the daemon's limits, until it has started: then the
    /// reflector holds it until it ends.
    permit: Option<SessionPermit>,
    /// Until Start-Sessions: the reflector, not yet running.
    pending: Option<ReflectorSession>,
    /// Once started: the engine session.
    running: Option<SessionHandle>,
    /// The session's Timeout: how long it reflects after Stop-Sessions (RFC 5357 §4.2).
    timeout: Duration,
    /// Stop-Sessions (or Stop-N-Sessions) named it.
    stopped: bool,
}

impl TestSession {
    fn start(&mut self) {
        let Some(s) = self.pending.take() else {
            return;
        };
        match Engine::global().and_then(|e| s.start(e, self.permit.take())) {
            Ok(h) => self.running = Some(h),
            Err(e) => warn!(error = %e, "cannot start a reflector"),
        }
    }

    fn stop(&mut self) {
        self.stopped = true;
        if let Some(h) = &self.running {
            h.stop(self.timeout);
        }
    }

    /// The control connection is gone: a stopped session still reflects for the rest of its
    /// Timeout, any other ends now.
    fn close(self) {
        if let (true, Some(h)) = (self.stopped, self.running) {
            h.detach();
        }
    }
}

/// The random octets of a connection's greeting and Server-Start, or the error that ends it
/// before anything is sent.
pub(crate) fn server_random(rules: &Rules) -> Result<ServerRandom, ConnectionError> {
    let r = &*rules.random;
    let drawn = (|| {
        Ok::<_, RandomError>(ServerRandom {
            challenge: rng::array(r)?,
            salt: rng::array(r)?,
            server_iv: rng::array(r)?,
        })
    })();
    drawn.map_err(|e| {
        tracing::error!(error = %e, "closing a control connection: no random octets for its greeting");
        ConnectionError::Random(e)
    })
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    mut ticket: Ticket,
    opts: &TwampServerOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?;
    let epoch = std::time::Instant::now();
    let random = server_random(&opts.rules)?;
    let mut server = Server::new(
        Protocol::Twamp,
        opts.control.clone(),
        peer.ip(),
        random,
        std::time::Instant::now(),
    );
    let mut sessions: HashMap<[u8; 16], TestSession> = HashMap::new();
    // Sessions this connection's identity may have (from the policy, once established).
    let mut identity_limit: Option<usize> = None;
    // Every reflector of this connection stamps its activity here.
    let stats = Arc::new(ReflectorStats::default());
    let last_activity = || {
        let last = stats.last_activity_ms.load(Ordering::Relaxed);
        (last > 0).then(|| epoch + Duration::from_millis(last))
    };
    let result = crate::accept::drive(
        &mut stream,
        &mut server,
        &mut ticket,
        &mut shutdown,
        last_activity,
        opts.rules.write_timeout,
        |ev, server, ticket| {
            handle_event(
                ev,
                server,
                ticket,
                &mut sessions,
                &mut identity_limit,
                peer,
                local,
                opts,
                epoch,
                &stats,
            )
        },
    )
    .await;
    // The control connection is gone: its sessions end (after their Timeout if they were
    // stopped, at once otherwise).
    for (_, s) in sessions.drain() {
        s.close();
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn handle_event(
    ev: ServerEvent,
    server: &mut Server,
    ticket: &mut Ticket,
    sessions: &mut HashMap<[u8; 16], TestSession>,
    identity_limit: &mut Option<usize>,
    peer: SocketAddr,
    local: SocketAddr,
    opts: &TwampServerOptions,
    epoch: std::time::Instant,
    stats: &Arc<ReflectorStats>,
) -> Result<(), Error> {
    match ev {
        ServerEvent::Established {
            mode,
            extensions,
            identity,
        } => {
            *identity_limit = opts.rules.session_limit(identity.as_ref());
            info!(%peer, %mode, extensions = %extensions.named(Protocol::Twamp), identity = ?identity.map(|i| display_identity(&i)), "TWAMP control connection established");
        }
        ServerEvent::RequestTwSession(req) => {
            let checked = ticket.session(*identity_limit).and_then(|permit| {
                new_session(server, &req, peer, local, opts, permit, stats, epoch)
            });
            match checked {
                Ok((sid, port, session)) => {
                    server.accept_session(sid, port)?;
                    sessions.insert(sid, session);
                    info!(%peer, sid = %hex(&sid), port, padding = req.padding_length, "test session accepted");
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
            for s in sessions.values_mut() {
                s.start();
            }
            server.start_ack(Accept::Ok)?;
        }
        ServerEvent::StartNSessions(sids) => {
            let (known, unknown): (Vec<_>, Vec<_>) =
                sids.into_iter().partition(|s| sessions.contains_key(s));
            for sid in &known {
                if let Some(s) = sessions.get_mut(sid) {
                    s.start();
                }
            }
            if !known.is_empty() {
                server.start_n_ack(Accept::Ok, known)?;
            }
            if !unknown.is_empty() {
                server.start_n_ack(Accept::Failure, unknown)?;
            }
        }
        ServerEvent::StopTwSessions(stop) => {
            info!(%peer, accept = %stop.accept, sessions = stop.num_sessions, "Stop-Sessions");
            for s in sessions.values_mut() {
                s.stop();
            }
        }
        ServerEvent::StopNSessions(sids) => {
            let (known, unknown): (Vec<_>, Vec<_>) =
                sids.into_iter().partition(|s| sessions.contains_key(s));
            for sid in &known {
                if let Some(s) = sessions.get_mut(sid) {
                    s.stop();
                }
            }
            if !known.is_empty() {
                server.stop_n_ack(Accept::Ok, known)?;
            }
            if !unknown.is_empty() {
                server.stop_n_ack(Accept::Failure, unknown)?;
            }
        }
        other => debug!(%peer, event = ?other, "ignored event"),
    }
    Ok(())
}

/// Checks a Request-TW-Session and sets up its socket, or says why not.
#[allow(clippy::too_many_arguments)]
fn new_session(
    server: &Server,
    req: &RequestTwSessionRepr,
    peer: SocketAddr,
    local: SocketAddr,
    opts: &TwampServerOptions,
    permit: SessionPermit,
    stats: &Arc<ReflectorStats>,
    epoch: std::time::Instant,
) -> Result<([u8; 16], u16, TestSession), (Accept, &'static str)> {
    let unspecified = |a: IpAddr| a.is_unspecified();
    // The sender must be the client (or unspecified: the control connection's address).
    if !unspecified(req.sender_address) && req.sender_address != peer.ip() {
        return Err((
            Accept::NotSupported,
            "sender address is not the control client's",
        ));
    }
    let rx_ip = if unspecified(req.receiver_address) {
        local.ip()
    } else {
        req.receiver_address
    };
    if rx_ip.is_ipv6() != local.ip().is_ipv6() {
        return Err((
            Accept::NotSupported,
            "receiver address family differs from the control connection's",
        ));
    }
    let Some(dscp) = req.type_p.dscp() else {
        return Err((Accept::NotSupported, "Type-P descriptor is not a DSCP"));
    };
    let mode = server.mode().ok_or((Accept::InternalError, "no mode"))?;
    let layout = ippm_proto::wire::test::Layout::of(mode);
    if req.padding_length as usize > reflector::MAX_PACKET - layout.reflector_header_len() - 28 {
        return Err((Accept::NotSupported, "padding too long for a UDP datagram"));
    }
    let extensions = opts.control.modes;
    if (req.octets_to_reflect != 0 || req.padding_to_reflect != 0)
        && !extensions.contains(Modes::TWAMP_REFLECT_OCTETS)
    {
        return Err((Accept::NotSupported, "reflect octets not offered"));
    }
    if u32::from(req.padding_to_reflect) > req.padding_length {
        return Err((
            Accept::NotSupported,
            "padding to reflect longer than the padding",
        ));
    }
    let socket = opts.rules.test_socket(rx_ip, req.receiver_port)?;
    if dscp != 0 {
        set_dscp_blocking(&socket, dscp).map_err(|_| (Accept::InternalError, "cannot set DSCP"))?;
    }
    let port = socket
        .local_addr()
        .map_err(|_| (Accept::InternalError, "socket"))?
        .port();
    let sid = make_sid(
        rx_ip,
        clock::now(),
        rng::array(&*opts.rules.random).map_err(|_| (Accept::InternalError, "no random octets"))?,
    );
    let keys = server.test_keys(&sid);
    let protection = TestProtection::new(mode, keys.as_ref())
        .map_err(|_| (Accept::InternalError, "test keys"))?;
    let timeout = bits_to_duration(req.timeout).min(opts.rules.max_timeout);
    let symmetrical = server_extensions(server).contains(Modes::TWAMP_SYMMETRICAL_SIZE);
    Ok((
        sid,
        port,
        TestSession {
            permit: Some(permit),
            pending: Some(ReflectorSession {
                socket,
                protection,
                peer: peer.ip(),
                symmetrical,
                stats: stats.clone(),
                epoch,
            }),
            running: None,
            timeout,
            stopped: false,
        },
    ))
}

fn server_extensions(server: &Server) -> Modes {
    server.extensions()
}

pub(crate) fn display_identity(id: &ippm_proto::session::KeyIdentity) -> String {
    match id {
        ippm_proto::session::KeyIdentity::Name(n) => String::from_utf8_lossy(n).into_owned(),
        ippm_proto::session::KeyIdentity::Ike { spi_i, spi_r } => {
            format!("IKE SA {}:{}", hex(spi_i), hex(spi_r))
        }
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
