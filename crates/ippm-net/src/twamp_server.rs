//! The TWAMP-Control server (RFC 5357 §3): accepts connections, drives one
//! [`ippm_proto::session::Server`] per connection, and runs a Session-Reflector per accepted
//! test session.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ippm_proto::session::{Error, Server, ServerConfig, ServerEvent, ServerRandom, make_sid};
use ippm_proto::wire::test::TestProtection;
use ippm_proto::wire::twamp::RequestTwSessionRepr;
use ippm_proto::{Accept, Modes, Protocol, time::bits_to_duration};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::clock;
use crate::engine::{Engine, SessionHandle};
use crate::reflector::{self, ReflectorSession, ReflectorStats};
use crate::udp::{bind_first, blocking_socket, set_dscp_blocking};

/// What the TWAMP server offers, and its limits.
#[derive(Debug, Clone)]
pub struct TwampServerOptions {
    /// The control-session configuration (modes, Count, secrets, timeouts).
    pub control: Arc<ServerConfig>,
    /// Per-identity session limits (`None`: only the control configuration's).
    pub policy: Option<Arc<crate::policy::Policy>>,
    /// UDP ports for reflectors (`None`: any free port).
    pub test_ports: Option<RangeInclusive<u16>>,
    /// Most control connections at once.
    pub max_connections: usize,
    /// Most test sessions at once, over all connections.
    pub max_sessions_total: usize,
    /// Longest Timeout a client may ask the reflector to wait after Stop-Sessions.
    pub max_timeout: Duration,
}

impl TwampServerOptions {
    /// Defaults around a control configuration.
    pub fn new(control: Arc<ServerConfig>) -> Self {
        Self {
            control,
            policy: None,
            test_ports: None,
            max_connections: 256,
            max_sessions_total: 1024,
            max_timeout: Duration::from_secs(60),
        }
    }
}

/// Shared state of a running server.
#[derive(Debug, Default)]
struct Shared {
    sessions: AtomicUsize,
}

/// Accepts TWAMP-Control connections on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    opts: Arc<TwampServerOptions>,
    shutdown: watch::Receiver<bool>,
) {
    let shared = Arc::new(Shared::default());
    if let Ok(a) = listener.local_addr() {
        info!(listen = %a, modes = ?opts.control.modes, "TWAMP server listening");
    }
    let max = opts.max_connections;
    crate::accept::accept_loop(listener, max, shutdown, move |stream, peer, shutdown| {
        let (opts, shared) = (opts.clone(), shared.clone());
        async move { connection(stream, peer, &opts, &shared, shutdown).await }
    })
    .await;
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS RNG failing is not something a server can work around.
    if getrandom::fill(&mut b).is_err() {
        b = [0u8; N];
        tracing::error!("the OS random number generator failed");
    }
    b
}

struct TestSession {
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
        match Engine::global().and_then(|e| s.start(e)) {
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

/// Errors that end a connection: the protocol's, or the socket's.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The peer broke the protocol (already answered where the protocol says to).
    #[error(transparent)]
    Protocol(#[from] Error),
    /// The TCP connection failed.
    #[error("control connection I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A write did not complete in this long: the peer does not read, and the connection is
    /// dropped rather than held with its queued reply.
    #[error("peer stopped reading: a write did not complete in {0:?}, connection dropped")]
    WriteTimeout(Duration),
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    opts: &TwampServerOptions,
    shared: &Shared,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?;
    let epoch = std::time::Instant::now();
    let random = ServerRandom {
        challenge: random(),
        salt: random(),
        server_iv: random(),
    };
    let mut server = Server::new(
        Protocol::Twamp,
        opts.control.clone(),
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
        &mut shutdown,
        last_activity,
        |ev, server| {
            handle_event(
                ev,
                server,
                &mut sessions,
                &mut identity_limit,
                peer,
                local,
                opts,
                shared,
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
        shared.sessions.fetch_sub(1, Ordering::Relaxed);
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn handle_event(
    ev: ServerEvent,
    server: &mut Server,
    sessions: &mut HashMap<[u8; 16], TestSession>,
    identity_limit: &mut Option<usize>,
    peer: SocketAddr,
    local: SocketAddr,
    opts: &TwampServerOptions,
    shared: &Shared,
    epoch: std::time::Instant,
    stats: &Arc<ReflectorStats>,
) -> Result<(), Error> {
    match ev {
        ServerEvent::Established {
            mode,
            extensions,
            identity,
        } => {
            *identity_limit = opts
                .policy
                .as_ref()
                .and_then(|p| p.limits(identity.as_ref()))
                .map(|l| l.max_sessions);
            info!(%peer, %mode, ?extensions, identity = ?identity.map(|i| display_identity(&i)), "TWAMP control connection established");
        }
        ServerEvent::RequestTwSession(req) => {
            let checked = if identity_limit.is_some_and(|max| sessions.len() >= max) {
                Err((
                    Accept::PermanentResourceLimitation,
                    "session limit of this identity",
                ))
            } else {
                new_session(server, &req, peer, local, opts, shared, stats, epoch)
            };
            match checked {
                Ok((sid, port, session)) => {
                    server.accept_session(sid, port)?;
                    sessions.insert(sid, session);
                    shared.sessions.fetch_add(1, Ordering::Relaxed);
                    info!(%peer, sid = %hex(&sid), port, padding = req.padding_length, "test session accepted");
                }
                Err((accept, why)) => {
                    warn!(%peer, %accept, why, "test session refused");
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
    shared: &Shared,
    stats: &Arc<ReflectorStats>,
    epoch: std::time::Instant,
) -> Result<([u8; 16], u16, TestSession), (Accept, &'static str)> {
    if shared.sessions.load(Ordering::Relaxed) >= opts.max_sessions_total {
        return Err((
            Accept::TemporaryResourceLimitation,
            "server-wide session limit",
        ));
    }
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
    // Try the port the client asked for when it is in our range, then the range.
    let want = (req.receiver_port != 0
        && opts
            .test_ports
            .as_ref()
            .is_none_or(|r| r.contains(&req.receiver_port)))
    .then_some(req.receiver_port);
    let socket = want
        .and_then(|p| blocking_socket(SocketAddr::new(rx_ip, p)).ok())
        .map(Ok)
        .unwrap_or_else(|| bind_first(rx_ip, opts.test_ports.clone(), blocking_socket))
        .map_err(|_| (Accept::TemporaryResourceLimitation, "no free test port"))?;
    if dscp != 0 {
        set_dscp_blocking(&socket, dscp).map_err(|_| (Accept::InternalError, "cannot set DSCP"))?;
    }
    let port = socket
        .local_addr()
        .map_err(|_| (Accept::InternalError, "socket"))?
        .port();
    let sid = make_sid(rx_ip, clock::now(), random());
    let keys = server.test_keys(&sid);
    let protection = TestProtection::new(mode, keys.as_ref())
        .map_err(|_| (Accept::InternalError, "test keys"))?;
    let timeout = bits_to_duration(req.timeout).min(opts.max_timeout);
    let symmetrical = server_extensions(server).contains(Modes::TWAMP_SYMMETRICAL_SIZE);
    Ok((
        sid,
        port,
        TestSession {
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

fn display_identity(id: &ippm_proto::session::KeyIdentity) -> String {
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
