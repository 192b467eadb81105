//! The TWAMP Control-Client and Session-Sender behind `ippm twping` (RFC 5357 §3, §4.1).
//!
//! Sending and receiving run concurrently on one socket: the sender paces packets on the
//! schedule (fixed or exponential gaps) and stamps each as late as possible; the receiver
//! takes the kernel's receive timestamp and TTL of every reply. The test ends when every reply
//! is in or the loss timeout has passed since the last packet was sent.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use ippm_proto::session::{ClientConfig, ClientEvent, Error, IkeCredential, Secret};
use ippm_proto::wire::owamp::TypeP;
use ippm_proto::wire::test::{Layout, PacketKind, ReflectorRepr, TestProtection};
use ippm_proto::wire::twamp::RequestTwSessionRepr;
use ippm_proto::{Accept, Modes, Protocol, SecurityMode, Timestamp};
use tokio::io::AsyncWriteExt;
use tracing::debug;

use crate::clock;
use crate::control_client::{Control, Exchange as Step, accepted_port};
use crate::engine::RecvMeta;
use crate::rng::{self, RandomError, SecureRandom};
use crate::sender::{SendPlan, gap_offsets};
use crate::twoway_sender::{self, ReplyFormat, Run, Watch};
use crate::udp::{bind_first, blocking_socket, set_dscp_blocking};

/// Gaps between test packets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Interval {
    /// The same gap every time.
    Fixed(Duration),
    /// Exponentially distributed gaps with this mean (RFC 4656 §5 generator).
    Exponential(Duration),
}

/// What a twping run does.
#[derive(Debug, Clone)]
pub struct TwpingOptions {
    /// The server's TWAMP-Control address.
    pub server: SocketAddr,
    /// Acceptable modes, preferred first.
    pub modes: Vec<SecurityMode>,
    /// Identity and passphrase for the protected modes.
    pub identity: Option<(Vec<u8>, Secret)>,
    /// RFC 7717: an IKE SA's SPIs and derived secret, used when the server offers it.
    pub ike: Option<IkeCredential>,
    /// Packets to send.
    pub count: u32,
    /// Gaps between packets.
    pub interval: Interval,
    /// Padding octets (`None`: enough for equal-size replies, as twping does).
    pub padding: Option<u32>,
    /// DSCP of the test packets.
    pub dscp: u8,
    /// How long to wait for replies after the last packet is sent.
    pub loss_timeout: Duration,
    /// Local address for the test packets (`None`: the control connection's).
    pub local: Option<IpAddr>,
    /// Local UDP ports to use.
    pub ports: Option<RangeInclusive<u16>>,
    /// Largest PBKDF2 Count accepted.
    pub max_count: u32,
    /// How long the server has for each control exchange (greeting and set-up, request,
    /// start, stop), the whole exchange however its octets are spread.
    pub control_timeout: Duration,
    /// Where the session keys, the schedule's seed, the reflected octets and the padding
    /// come from (normally [`rng::os`]). A failure ends the run with
    /// [`TwpingError::Random`] before anything is keyed.
    pub rng: std::sync::Arc<dyn SecureRandom>,
    /// RFC 5938: start and stop the session with Start-N-Sessions / Stop-N-Sessions.
    pub session_control: bool,
    /// RFC 6038 reflect octets: this many octets of padding must come back unchanged.
    pub reflect: Option<u16>,
    /// RFC 6038 symmetrical size sender packet format.
    pub symmetrical: bool,
    /// Where to report the session as it runs (packets sent and replies, as they happen).
    pub progress: Option<tokio::sync::mpsc::UnboundedSender<Progress>>,
    /// Keep every packet sent and every reply in the result (for per-packet output, plots,
    /// the archive). Without it the run's memory does not depend on its packet count: the
    /// statistics accumulate as the packets go and come.
    pub keep_records: bool,
}

/// What a running test reports as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The test session is accepted and about to start.
    Started {
        /// Its SID.
        sid: [u8; 16],
        /// The mode in use.
        mode: SecurityMode,
        /// Our test address.
        local: SocketAddr,
        /// The server's test address.
        reflector: SocketAddr,
        /// Time from connecting to the Start-Ack.
        setup_time: Duration,
    },
    /// A test packet left.
    Sent(Sent),
    /// A TWAMP reply arrived.
    Reply(Reply),
}

pub use crate::control_client::Exchange;
pub use crate::packets::{Reply, Sent};

/// The outcome of a twping run.
#[derive(Debug, Clone)]
pub struct TwpingResult {
    /// The mode used.
    pub mode: SecurityMode,
    /// The session's SID.
    pub sid: [u8; 16],
    /// Our test address.
    pub local: SocketAddr,
    /// The reflector's test address.
    pub reflector: SocketAddr,
    /// Padding length used.
    pub padding: u32,
    /// The statistics, accumulated as the packets went and came.
    pub report: ippm_stats::TwoWayReport,
    /// When the first and the last packet were sent (their timestamps).
    pub first_sent: Option<Timestamp>,
    /// See `first_sent`.
    pub last_sent: Option<Timestamp>,
    /// Every packet sent, in order (empty unless records were kept).
    pub sent: Vec<Sent>,
    /// Every reply, in arrival order, duplicates included (empty unless records were kept).
    pub replies: Vec<Reply>,
    /// Replies that failed their HMAC or were malformed.
    pub bad_replies: u64,
    /// Time from connecting to the Start-Ack.
    pub setup_time: Duration,
    /// The TWAMP extensions in use (RFC 5938, RFC 6038 bits).
    pub extensions: Modes,
    /// RFC 6038: replies whose reflected padding differed from what was sent.
    pub reflect_mismatches: u64,
    /// Packets sent whose send time is the kernel's transmit stamp (the rest: the user-space
    /// time stamped in the packet).
    pub kernel_tx_stamps: u32,
}

impl crate::twoway::TwoWayResult for TwpingResult {
    fn local(&self) -> SocketAddr {
        self.local
    }
    fn reflector(&self) -> SocketAddr {
        self.reflector
    }
    fn report(&self) -> &ippm_stats::TwoWayReport {
        &self.report
    }
    fn first_sent(&self) -> Option<Timestamp> {
        self.first_sent
    }
    fn last_sent(&self) -> Option<Timestamp> {
        self.last_sent
    }
    fn sent(&self) -> &[Sent] {
        &self.sent
    }
    fn replies(&self) -> &[Reply] {
        &self.replies
    }
    fn kernel_tx_stamps(&self) -> u32 {
        self.kernel_tx_stamps
    }
}

/// Why a twping run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TwpingError {
    /// The control protocol failed (refusal, bad HMAC, ...). Shared by twping and owping:
    /// the message names no protocol (the caller says which run failed), and the source is
    /// not repeated after it.
    #[error(transparent)]
    Control(#[from] Error),
    /// The server refused the test session.
    #[error("the server refused the test session: Accept = {0}")]
    SessionRefused(Accept),
    /// Socket trouble (transparent: printed once, not as message and again as source).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The server closed the control connection.
    #[error("the server closed the control connection")]
    Closed,
    /// The server did not accept the connection in time.
    #[error("no answer from the server within {0:?}")]
    Timeout(Duration),
    /// The server did not complete a control exchange within the control timeout (counted
    /// over the whole exchange: octets trickled one at a time do not extend it).
    #[error("the server did not complete {what} within {limit:?}")]
    Deadline {
        /// Which exchange.
        what: Exchange,
        /// The control timeout.
        limit: Duration,
    },
    /// The server accepted a test session (Accept = 0) with port 0, where no test packet
    /// can go or come from.
    #[error(
        "the server accepted the test session with port 0, which no test packet can use \
         (a broken or hostile server): refused"
    )]
    AcceptedPortZero,
    /// The random number generator failed: the run ends before anything is keyed.
    #[error("{0}: nothing was keyed and no test was run")]
    Random(#[from] RandomError),
    /// The server does not offer an extension that was asked for.
    #[error("the server does not offer {0}")]
    NotOffered(&'static str),
    /// The server's answer (OWAMP's Stop-Sessions) did not give the count of packets it sent
    /// in the session, without which loss is unknown: no figure is made up.
    #[error(
        "the server's {0} does not say how many packets it sent in the session, so its loss          is unknown"
    )]
    Unreported(&'static str),
    /// The control connection ended while the test ran.
    #[error("the server closed the control connection during the test: {0}")]
    ClosedDuringTest(String),
}

/// Runs one TWAMP test.
pub async fn twping(opts: &TwpingOptions) -> Result<TwpingResult, TwpingError> {
    let t0 = tokio::time::Instant::now();
    let mut cfg = ClientConfig::open();
    cfg.modes = opts.modes.clone();
    cfg.identity = opts.identity.clone();
    cfg.ike = opts.ike.clone();
    cfg.max_count = opts.max_count;
    cfg.response_timeout = opts.control_timeout;
    let mut wanted = Modes::NONE;
    if opts.session_control {
        wanted |= Modes::TWAMP_INDIVIDUAL_SESSION_CONTROL;
    }
    if opts.reflect.is_some() {
        wanted |= Modes::TWAMP_REFLECT_OCTETS;
    }
    if opts.symmetrical {
        wanted |= Modes::TWAMP_SYMMETRICAL_SIZE;
    }
    cfg.extensions = wanted;
    let (mut ctl, local_ctrl) = Control::connect(
        opts.server,
        Protocol::Twamp,
        cfg,
        opts.control_timeout,
        opts.rng.as_ref(),
    )
    .await?;

    let (mode, selected) = match ctl.event(Step::Setup).await? {
        ClientEvent::Established { mode, selected, .. } => (mode, selected),
        other => return Err(Error::Internal(unexpected(&other)).into()),
    };
    let extensions = selected & wanted;
    for (bit, name) in [
        (
            Modes::TWAMP_INDIVIDUAL_SESSION_CONTROL,
            "individual session control (RFC 5938)",
        ),
        (Modes::TWAMP_REFLECT_OCTETS, "reflect octets (RFC 6038)"),
        (Modes::TWAMP_SYMMETRICAL_SIZE, "symmetrical size (RFC 6038)"),
    ] {
        if wanted.contains(bit) && !extensions.contains(bit) {
            return Err(TwpingError::NotOffered(name));
        }
    }
    let layout = Layout::of(mode);
    let local_ip = opts.local.unwrap_or_else(|| local_ctrl.ip());
    let socket = bind_first(local_ip, opts.ports.clone(), blocking_socket)?;
    if opts.dscp != 0 {
        set_dscp_blocking(&socket, opts.dscp)?;
    }
    let local = socket.local_addr()?;
    let reflect = opts.reflect.unwrap_or(0);
    // Enough padding for equal-size replies that carry the reflected octets (RFC 6038 §5.1.3);
    // in the symmetrical format the MBZ run already does the evening out.
    let padding = opts.padding.unwrap_or_else(|| {
        let even = if opts.symmetrical {
            0
        } else {
            layout.symmetric_padding() as u32
        };
        even + u32::from(reflect)
    });
    let octets_to_reflect = if opts.reflect.is_some() {
        u16::from_be_bytes(rng::array(opts.rng.as_ref())?) | 1
    } else {
        0
    };
    let req = RequestTwSessionRepr {
        sender_port: local.port(),
        receiver_port: 0,
        sender_address: local.ip(),
        receiver_address: opts.server.ip(),
        padding_length: padding,
        start_time: clock::now(),
        timeout: ippm_proto::time::duration_to_bits(opts.loss_timeout.max(Duration::from_secs(1))),
        type_p: TypeP::from_dscp(opts.dscp),
        octets_to_reflect,
        padding_to_reflect: reflect,
    };
    ctl.client
        .request_tw_session(std::time::Instant::now(), &req)?;
    let (sid, port, server_octets) = match ctl.event(Step::Request).await? {
        ClientEvent::SessionAccepted {
            sid,
            port,
            reflected_octets,
            server_octets,
        } => {
            if reflected_octets != octets_to_reflect {
                return Err(Error::ProtocolViolation(
                    "Accept-Session did not echo the Octets to be reflected (RFC 6038 §4.3)",
                )
                .into());
            }
            (sid, accepted_port(port)?, server_octets)
        }
        ClientEvent::SessionRejected(a) => return Err(TwpingError::SessionRefused(a)),
        other => return Err(Error::Internal(unexpected(&other)).into()),
    };
    let reflector = SocketAddr::new(opts.server.ip(), port);
    let protection = TestProtection::new(mode, ctl.client.test_keys(&sid).as_ref())
        .map_err(|_| Error::Internal("test keys"))?;
    if opts.session_control {
        ctl.client
            .start_n_sessions(std::time::Instant::now(), vec![sid])?;
        match ctl.event(Step::Start).await? {
            ClientEvent::StartNAck {
                accept: Accept::Ok, ..
            } => {}
            ClientEvent::StartNAck { accept, .. } => {
                return Err(TwpingError::SessionRefused(accept));
            }
            other => return Err(Error::Internal(unexpected(&other)).into()),
        }
    } else {
        ctl.client.start_sessions(std::time::Instant::now())?;
        match ctl.event(Step::Start).await? {
            ClientEvent::StartAck(Accept::Ok) => {}
            ClientEvent::StartAck(a) => return Err(TwpingError::SessionRefused(a)),
            other => return Err(Error::Internal(unexpected(&other)).into()),
        }
    }
    let setup_time = t0.elapsed();
    debug!(%reflector, sid = %crate::twamp_server::hex(&sid), ?setup_time, "test session started");
    if let Some(p) = &opts.progress {
        let _ = p.send(Progress::Started {
            sid,
            mode,
            local,
            reflector,
            setup_time,
        });
    }

    let shape = Shape {
        layout,
        mbz: if opts.symmetrical {
            layout.symmetric_padding()
        } else {
            0
        },
        padding: padding as usize,
        reflect: usize::from(reflect),
        server_octets,
    };
    // The server has nothing to say during the test: the control connection ending (the
    // server closed it, or its daemon died) ends the test, said so, rather than sending on
    // and reporting what the server never reflected as loss.
    let test = run_test(socket, protection, &shape, reflector, opts);
    tokio::pin!(test);
    let run = tokio::select! {
        r = &mut test => r?,
        gone = control_gone(&ctl.stream) => match gone {
            Some(why) => return Err(TwpingError::ClosedDuringTest(why)),
            None => test.await?,
        },
    };

    if opts.session_control {
        ctl.client
            .stop_n_sessions(std::time::Instant::now(), vec![sid])?;
        match ctl.event(Step::Stop).await? {
            ClientEvent::StopNAck { .. } => {}
            other => return Err(Error::Internal(unexpected(&other)).into()),
        }
    } else {
        ctl.client
            .stop_tw_sessions(std::time::Instant::now(), Accept::Ok, 1)?;
    }
    ctl.flush().await?;
    let _ = ctl.stream.shutdown().await;
    Ok(TwpingResult {
        mode,
        sid,
        local,
        reflector,
        padding,
        kernel_tx_stamps: run.kernel_stamps,
        report: run.report,
        first_sent: run.first,
        last_sent: run.last,
        sent: run.sent,
        replies: run.replies,
        bad_replies: run.bad,
        setup_time,
        extensions,
        reflect_mismatches: run.format.mismatches,
    })
}

/// Waits for the control connection's end: `Some(why)` once it is closed or broken, `None` if
/// the server sent something (read after the test, with the exchange it belongs to).
async fn control_gone(stream: &tokio::net::TcpStream) -> Option<String> {
    let mut b = [0u8; 1];
    match stream.peek(&mut b).await {
        Ok(0) => Some("it closed the connection (is its daemon still running?)".into()),
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}

fn unexpected(ev: &ClientEvent) -> &'static str {
    match ev {
        ClientEvent::Established { .. } => "unexpected Established",
        ClientEvent::SessionAccepted { .. } => "unexpected Accept-Session",
        _ => "unexpected control event",
    }
}

/// The layout of this session's sender packets.
struct Shape {
    layout: Layout,
    /// RFC 6038 symmetrical size: MBZ octets after the header.
    mbz: usize,
    /// Padding octets after that.
    padding: usize,
    /// RFC 6038: octets of the padding that must come back.
    reflect: usize,
    /// RFC 6038: the server's octets, first in the reflected padding.
    server_octets: u16,
}

/// Runs the test session on the engine (sending on schedule while receiving) and collects
/// what it reports until it ends: every reply is in, or the loss timeout has passed since the
/// last packet was sent. Dropping this future stops the session.
async fn run_test(
    socket: std::net::UdpSocket,
    protection: TestProtection,
    shape: &Shape,
    reflector: SocketAddr,
    opts: &TwpingOptions,
) -> Result<Run<TwampReplies>, TwpingError> {
    let layout = shape.layout;
    let pad_at = layout.sender_header_len() + shape.mbz;
    let mut template = vec![0u8; pad_at + shape.padding];
    // Random padding, once per session (RFC 4656 §4.1.2 recommends pseudo-random padding).
    opts.rng.fill(&mut template[pad_at..])?;
    if shape.server_octets != 0 && shape.padding >= 2 {
        template[pad_at..pad_at + 2].copy_from_slice(&shape.server_octets.to_be_bytes());
    }
    let expect: Vec<u8> = template[pad_at..pad_at + shape.reflect.min(shape.padding)].to_vec();
    let (offsets, exponential) = match opts.interval {
        Interval::Fixed(d) => (d, false),
        Interval::Exponential(d) => (d, true),
    };
    let plan = SendPlan::new(
        gap_offsets(offsets, exponential, &rng::array(opts.rng.as_ref())?),
        std::time::Instant::now() + Duration::from_millis(1),
        opts.count,
        template,
        protection.clone(),
        reflector,
    );
    let replies = TwampReplies {
        protection,
        layout,
        expect,
        mismatches: 0,
    };
    let watch = Watch {
        count: opts.count,
        loss_timeout: opts.loss_timeout,
        keep_records: opts.keep_records,
        progress: opts.progress.clone(),
    };
    Ok(twoway_sender::run(socket, plan, replies, &watch).await?)
}

/// How twping reads a TWAMP reply: the mode's protection, the reflector layout, and the
/// RFC 6038 reflected octets.
struct TwampReplies {
    protection: TestProtection,
    layout: Layout,
    /// RFC 6038: the octets every reply must carry back.
    expect: Vec<u8>,
    /// Replies whose reflected octets differed.
    mismatches: u64,
}

impl ReplyFormat for TwampReplies {
    fn open(
        &mut self,
        pkt: &mut [u8],
        _meta: &RecvMeta,
        _recv_time: Timestamp,
    ) -> Option<ReflectorRepr> {
        self.protection.unprotect(PacketKind::Reflector, pkt).ok()?;
        let r = ReflectorRepr::parse(pkt, self.layout).ok()?;
        let h = self.layout.reflector_header_len();
        if pkt.get(h..h + self.expect.len()) != Some(&self.expect[..]) {
            self.mismatches += 1;
        }
        Some(r)
    }
}

/// The modes a client asks for, from perfSONAR's `-A` letters (O, A, E, M).
pub fn modes_from_letters(s: &str) -> Option<Vec<SecurityMode>> {
    let mut v = Vec::new();
    for c in s.chars() {
        v.push(match c.to_ascii_uppercase() {
            'O' => SecurityMode::Open,
            'A' => SecurityMode::Authenticated,
            'E' => SecurityMode::Encrypted,
            'M' => SecurityMode::Mixed,
            _ => return None,
        });
    }
    // Most protective first, as perfSONAR's clients choose.
    v.sort_by_key(|m| SecurityMode::all().iter().position(|x| x == m));
    v.dedup();
    (!v.is_empty()).then_some(v)
}
