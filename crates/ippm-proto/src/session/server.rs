//! The server side of an OWAMP-Control or TWAMP-Control connection.
//!
//! Call order (see the [module docs](super)): [`Server::new`], then `poll_transmit` (the
//! Server Greeting is ready at once), `handle_input` for every read, `poll_event` after each
//! call. Requests that need a decision (a session request, Start-Sessions, Fetch-Session, the
//! RFC 5938 commands) surface as events and hold further input until the application answers
//! with [`Server::accept_session`], [`Server::reject_session`], [`Server::start_ack`],
//! [`Server::fetch_reply`], [`Server::start_n_ack`] or [`Server::stop_n_ack`].
//!
//! A Fetch-Session answer can be large (25 octets per record, millions of records), so it can
//! also be streamed: [`Server::fetch_reply_begin`] with the header, then
//! [`Server::fetch_reply_records`] for each part of the records (drain `poll_transmit`
//! between parts to hold one part at a time), then [`Server::fetch_reply_end`]. The octets
//! are the same as [`Server::fetch_reply`] would send for the same reply.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::codepoints::{Accept, Command, Modes, Protocol, SecurityMode};
use crate::crypto::{self, SessionKeys, TestKeys};
use crate::time::Timestamp;
use crate::wire::BLOCK;
use crate::wire::owamp::{
    AcceptSessionRepr, DataRecord, FetchAckRepr, FetchSessionRepr, MAX_FETCH_RECORDS,
    MAX_SKIP_RANGES, RequestSessionRepr, SkipRange, StartAckRepr, StopSessionsRepr,
};
use crate::wire::setup::{ServerGreetingRepr, ServerStartRepr, SetUpResponseRepr};
use crate::wire::twamp::{
    RequestTwSessionRepr, StartNAckRepr, StartNSessionsRepr, StopNAckRepr, StopNSessionsRepr,
    TwStopSessionsRepr,
};

use super::channel::Channel;
use super::{Error, KeyIdentity, SecretStore};

/// What a server offers and how long it waits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Modes advertised in the greeting: security modes and, for TWAMP, the extension bits
    /// (individual session control, reflect octets, symmetrical size) and the IKEv2-derived
    /// bit. A Set-Up-Response may choose only from these.
    pub modes: Modes,
    /// PBKDF2 iteration count sent in the greeting (a power of 2, at least 1024).
    pub count: u32,
    /// Where passphrases and IKEv2-derived secrets are looked up.
    pub secrets: Arc<dyn SecretStore>,
    /// When this server instance started (Server-Start's Start-Time).
    pub start_time: Timestamp,
    /// How long a client may take from connecting to its first Start-Sessions (TWAMP's
    /// Start-N-Sessions and OWAMP's Fetch-Session count too): the whole set-up, which octets
    /// trickled one by one do not extend.
    pub setup_timeout: Duration,
    /// How long the connection may stay without a complete command once set up (RFC 5357
    /// SERVWAIT, default 900 s): partial messages do not count. The caller extends it with
    /// [`Server::note_activity`] while test packets flow.
    pub idle_timeout: Duration,
    /// The most sessions one control connection may request.
    pub max_sessions: usize,
}

impl ServerConfig {
    /// A configuration advertising `modes`, with the RFC's defaults elsewhere.
    pub fn new(modes: Modes, secrets: Arc<dyn SecretStore>, start_time: Timestamp) -> Self {
        Self {
            modes,
            count: 2048,
            secrets,
            start_time,
            setup_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(900),
            max_sessions: 64,
        }
    }
}

/// The randomness one server connection needs (from a CSPRNG, supplied by the caller).
#[derive(Debug, Clone)]
pub struct ServerRandom {
    /// The greeting's Challenge.
    pub challenge: [u8; 16],
    /// The greeting's Salt.
    pub salt: [u8; 16],
    /// The Server-IV of Server-Start.
    pub server_iv: [u8; 16],
}

/// What a server connection reports to the application.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// The Set-Up-Response was accepted and Server-Start sent.
    Established {
        /// The security mode chosen.
        mode: SecurityMode,
        /// Other bits the client set (TWAMP extensions, IKEv2-derived).
        extensions: Modes,
        /// Who the client is, in the protected modes.
        identity: Option<KeyIdentity>,
    },
    /// OWAMP Request-Session: answer with `accept_session` or `reject_session`.
    RequestSession(RequestSessionRepr),
    /// TWAMP Request-TW-Session: answer with `accept_session` or `reject_session`.
    RequestTwSession(RequestTwSessionRepr),
    /// Start-Sessions: answer with `start_ack`.
    StartSessions,
    /// OWAMP Stop-Sessions from the client (its send sessions, with skip ranges).
    StopSessions(StopSessionsRepr),
    /// TWAMP Stop-Sessions from the client.
    StopTwSessions(TwStopSessionsRepr),
    /// OWAMP Fetch-Session: answer with `fetch_reply`, or stream the answer with
    /// `fetch_reply_begin`, `fetch_reply_records` and `fetch_reply_end`.
    FetchSession(FetchSessionRepr),
    /// RFC 5938 Start-N-Sessions: answer with `start_n_ack`.
    StartNSessions(Vec<[u8; 16]>),
    /// RFC 5938 Stop-N-Sessions: answer with `stop_n_ack`.
    StopNSessions(Vec<[u8; 16]>),
}

/// The data of a positive Fetch-Session answer (RFC 4656 §3.9).
#[derive(Debug, Clone, PartialEq)]
pub struct FetchReply {
    /// Whether the session has ended (Finished = 1) and the records are final.
    pub finished: bool,
    /// The next sequence number the sender would have sent (meaningful when finished).
    pub next_seqno: u32,
    /// The session's Request-Session, as it was accepted (with the receiver port filled in).
    pub request: RequestSessionRepr,
    /// Ranges the sender skipped (from its Stop-Sessions).
    pub skip_ranges: Vec<SkipRange>,
    /// The records asked for.
    pub records: Vec<DataRecord>,
}

/// What comes before the records in a positive Fetch-Session answer (RFC 4656 §3.9), for a
/// streamed reply: Fetch-Ack says how many records follow, so the count is fixed here, before
/// the first record goes out.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchReplyHeader {
    /// Whether the session has ended (Finished = 1) and the records are final.
    pub finished: bool,
    /// The next sequence number the sender would have sent (meaningful when finished).
    pub next_seqno: u32,
    /// The session's Request-Session, as it was accepted (with the receiver port filled in).
    pub request: RequestSessionRepr,
    /// Ranges the sender skipped (from its Stop-Sessions).
    pub skip_ranges: Vec<SkipRange>,
    /// Number of Records: exactly this many must be given to
    /// [`Server::fetch_reply_records`] before [`Server::fetch_reply_end`].
    pub num_records: u32,
}

/// Where a streamed Fetch-Session answer is in its records.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FetchStream {
    announced: u32,
    /// Records still to come.
    remaining: u32,
    /// Plaintext octets of the record part not yet queued: the CBC chain of the protected
    /// modes takes whole blocks, and 25-octet records rarely end on one. Fewer than 16.
    carry: [u8; BLOCK],
    carry_len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    ExpectSetUpResponse,
    ExpectCommand,
    AwaitSessionDecision,
    AwaitStartAck,
    AwaitFetchReply,
    /// A positive Fetch-Session answer is being streamed; no other message may go out until
    /// it ends (its octets are one run of the CBC chain and of the last HMAC).
    SendFetchRecords(FetchStream),
    /// Start-N-Sessions is being answered; these SIDs still need an ack.
    AwaitStartNAck(Vec<[u8; 16]>),
    /// Stop-N-Sessions is being answered; these SIDs still need an ack.
    AwaitStopNAck(Vec<[u8; 16]>),
    Closed,
}

/// One server control connection. See the [module docs](self) for the call order.
#[derive(Debug)]
pub struct Server {
    protocol: Protocol,
    config: Arc<ServerConfig>,
    random: ServerRandom,
    state: State,
    chan: Channel,
    events: VecDeque<ServerEvent>,
    mode: Option<SecurityMode>,
    extensions: Modes,
    keys: Option<SessionKeys>,
    sessions: Vec<[u8; 16]>,
    /// OWAMP: the accepted sessions each side sends and has not yet described in a
    /// Stop-Sessions (RFC 4656 §3.8 makes each Stop-Sessions account for exactly these).
    client_sends: Vec<[u8; 16]>,
    server_sends: Vec<[u8; 16]>,
    /// OWAMP: whether the request awaiting a decision has the server send (Conf-Sender).
    pending_server_sends: bool,
    /// RFC 6038 Octets to be reflected of the TWAMP request awaiting a decision.
    pending_reflect: Option<u16>,
    /// The control connection's peer: an RFC 7717 secret is only that of an SA with it.
    peer: IpAddr,
    /// Set-up is over (the first Start-Sessions, Start-N-Sessions or Fetch-Session): from
    /// then on the deadline is the idle timeout, renewed by each complete command.
    set_up: bool,
    /// The latest time a caller gave (commands completed while resuming after an
    /// application's answer are timed with it).
    now: Instant,
    deadline: Instant,
}

impl Server {
    /// A new connection from `peer`; the Server Greeting is queued at once.
    pub fn new(
        protocol: Protocol,
        config: Arc<ServerConfig>,
        peer: IpAddr,
        random: ServerRandom,
        now: Instant,
    ) -> Self {
        let mut chan = Channel::new();
        let greeting = ServerGreetingRepr {
            modes: config.modes,
            challenge: random.challenge,
            salt: random.salt,
            count: config.count,
        };
        chan.send_clear(&greeting.to_vec());
        let deadline = now + config.setup_timeout;
        Self {
            protocol,
            config,
            random,
            state: State::ExpectSetUpResponse,
            chan,
            events: VecDeque::new(),
            mode: None,
            extensions: Modes::NONE,
            keys: None,
            sessions: Vec::new(),
            client_sends: Vec::new(),
            server_sends: Vec::new(),
            pending_server_sends: false,
            pending_reflect: None,
            peer,
            set_up: false,
            now,
            deadline,
        }
    }

    /// Feeds octets read from the connection.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) -> Result<(), Error> {
        if self.state == State::Closed {
            return Err(Error::Closed);
        }
        // Octets alone extend nothing: a command completed in `process` does (see
        // `command_done`), so a peer that trickles a byte at a time is held to its deadline.
        self.now = self.now.max(now);
        let r = self.chan.receive(data).and_then(|()| self.process());
        self.fail_on_err(r)
    }

    /// Octets to write to the connection, in order.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.chan.take_output()
    }

    /// How many octets are queued for `poll_transmit` (a driver streaming a Fetch-Session
    /// answer checks that one part at a time is held).
    pub fn queued_octets(&self) -> usize {
        self.chan.queued_len()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called, unless input comes first.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.state != State::Closed).then_some(self.deadline)
    }

    /// Closes the connection with [`Error::Timeout`] once the deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        self.now = self.now.max(now);
        if self.state == State::Closed || now < self.deadline {
            return Ok(());
        }
        let what = if self.state == State::ExpectSetUpResponse {
            "Set-Up-Response"
        } else if !self.set_up {
            "the set-up to finish with Start-Sessions"
        } else {
            "a complete command or test traffic (SERVWAIT)"
        };
        self.state = State::Closed;
        Err(Error::Timeout(what))
    }

    /// Pushes the idle deadline out: test packets are flowing for this connection's sessions.
    pub fn note_activity(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.set_up && self.state != State::Closed {
            self.deadline = self.deadline.max(now + self.config.idle_timeout);
        }
    }

    /// Reports that the peer closed its side of the connection. A close in the middle of a
    /// message is [`WireError::Truncated`](crate::WireError::Truncated).
    pub fn handle_close(&mut self) -> Result<(), Error> {
        let was_closed = self.is_closed();
        self.close();
        if was_closed {
            Ok(())
        } else {
            self.chan.check_clean_close()
        }
    }

    /// Whether the set-up is over: the client has sent its first Start-Sessions (or, OWAMP,
    /// Fetch-Session). A server short of connection slots closes connections still setting
    /// up first.
    pub fn is_set_up(&self) -> bool {
        self.set_up
    }

    /// Whether the connection is finished (after an error or a refusal).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The security mode, once established.
    pub fn mode(&self) -> Option<SecurityMode> {
        self.mode
    }

    /// The extension bits the client chose (TWAMP RFC 5938 / RFC 6038 bits, IKEv2-derived).
    pub fn extensions(&self) -> Modes {
        self.extensions
    }

    /// The test-session keys for `sid` (RFC 4656 §4.1.2), in the protected modes.
    pub fn test_keys(&self, sid: &[u8; 16]) -> Option<TestKeys> {
        self.keys.as_ref().map(|k| TestKeys::derive(k, sid))
    }

    /// The SIDs accepted on this connection so far.
    pub fn sessions(&self) -> &[[u8; 16]] {
        &self.sessions
    }

    /// Accepts the pending session request with this SID and port (the receiver port for
    /// OWAMP sessions where the server receives and TWAMP, the sender port for OWAMP sessions
    /// where the server sends).
    pub fn accept_session(&mut self, sid: [u8; 16], port: u16) -> Result<(), Error> {
        self.expect_state(State::AwaitSessionDecision, "accept_session")?;
        self.send_accept_session(Accept::Ok, port, sid);
        self.sessions.push(sid);
        if self.protocol == Protocol::Owamp {
            if self.pending_server_sends {
                self.server_sends.push(sid);
            } else {
                self.client_sends.push(sid);
            }
        }
        self.resume()
    }

    /// Refuses the pending session request.
    pub fn reject_session(&mut self, accept: Accept) -> Result<(), Error> {
        self.expect_state(State::AwaitSessionDecision, "reject_session")?;
        if accept.is_ok() {
            return Err(Error::InvalidCommand("reject_session with Accept = 0"));
        }
        self.send_accept_session(accept, 0, [0; 16]);
        self.resume()
    }

    /// Answers Start-Sessions.
    pub fn start_ack(&mut self, accept: Accept) -> Result<(), Error> {
        self.expect_state(State::AwaitStartAck, "start_ack")?;
        let msg = StartAckRepr { accept }.to_vec();
        self.chan.send(msg, &[StartAckRepr::HMAC_OFFSET]);
        self.resume()
    }

    /// OWAMP: sends Stop-Sessions describing exactly the sessions this server sends that no
    /// Stop-Sessions has described yet (RFC 4656 §3.8).
    pub fn stop_sessions(&mut self, stop: &StopSessionsRepr) -> Result<(), Error> {
        if self.protocol != Protocol::Owamp
            || matches!(
                self.state,
                State::ExpectSetUpResponse | State::Closed | State::SendFetchRecords(_)
            )
        {
            return Err(Error::InvalidCommand("stop_sessions"));
        }
        if !super::describes_exactly(stop, &self.server_sends) {
            return Err(Error::InvalidCommand(
                "stop_sessions must describe exactly the server's unstopped send sessions",
            ));
        }
        self.server_sends.clear();
        let msg = stop.to_vec();
        let at = msg.len() - crate::wire::HMAC_LEN;
        self.chan.send(msg, &[at]);
        Ok(())
    }

    /// Answers Fetch-Session: `Ok(reply)` sends Fetch-Ack with Accept 0 and the data,
    /// `Err(accept)` a refusal. The whole reply at once; [`Server::fetch_reply_begin`] streams
    /// the same octets in parts.
    pub fn fetch_reply(&mut self, reply: Result<FetchReply, Accept>) -> Result<(), Error> {
        match reply {
            Err(accept) => {
                self.expect_state(State::AwaitFetchReply, "fetch_reply")?;
                let ack = FetchAckRepr {
                    accept: if accept.is_ok() {
                        Accept::Failure
                    } else {
                        accept
                    },
                    finished: false,
                    next_seqno: 0,
                    num_skip_ranges: 0,
                    num_records: 0,
                };
                self.chan.send(ack.to_vec(), &[FetchAckRepr::HMAC_OFFSET]);
                self.resume()
            }
            Ok(r) => {
                let num_records =
                    u32::try_from(r.records.len()).map_err(|_| Error::Limit("records"))?;
                self.fetch_reply_begin(FetchReplyHeader {
                    finished: r.finished,
                    next_seqno: r.next_seqno,
                    request: r.request,
                    skip_ranges: r.skip_ranges,
                    num_records,
                })?;
                self.fetch_reply_records(&r.records)?;
                self.fetch_reply_end()
            }
        }
    }

    /// Starts a positive Fetch-Session answer: queues Fetch-Ack (Accept 0), the session's
    /// Request-Session and the skip ranges. Then exactly `header.num_records` records follow
    /// through [`Server::fetch_reply_records`], then [`Server::fetch_reply_end`]; nothing else
    /// can be sent in between, and input is held until the end.
    ///
    /// Counts the client would refuse to parse (above [`MAX_FETCH_RECORDS`] records or
    /// [`MAX_SKIP_RANGES`] skip ranges) are [`Error::Limit`], before anything is queued.
    pub fn fetch_reply_begin(&mut self, header: FetchReplyHeader) -> Result<(), Error> {
        self.expect_state(State::AwaitFetchReply, "fetch_reply_begin")?;
        if header.num_records > MAX_FETCH_RECORDS {
            return Err(Error::Limit("records in a Fetch-Session answer"));
        }
        let num_skip_ranges = u32::try_from(header.skip_ranges.len())
            .ok()
            .filter(|n| *n <= MAX_SKIP_RANGES)
            .ok_or(Error::Limit("skip ranges in a Fetch-Session answer"))?;
        let ack = FetchAckRepr {
            accept: Accept::Ok,
            finished: header.finished,
            next_seqno: header.next_seqno,
            num_skip_ranges,
            num_records: header.num_records,
        };
        self.chan.send(ack.to_vec(), &[FetchAckRepr::HMAC_OFFSET]);
        let req = header.request.to_vec();
        let offsets = RequestSessionRepr::hmac_offsets(req.len());
        self.chan.send(req, &offsets);
        let skips = crate::wire::owamp::emit_skip_ranges(&header.skip_ranges);
        let at = skips.len() - crate::wire::HMAC_LEN;
        self.chan.send(skips, &[at]);
        self.state = State::SendFetchRecords(FetchStream {
            announced: header.num_records,
            remaining: header.num_records,
            carry: [0; BLOCK],
            carry_len: 0,
        });
        Ok(())
    }

    /// Queues the next records of a streamed Fetch-Session answer (any number per call, in
    /// the order they go out). More records than Fetch-Ack announced is
    /// [`Error::FetchRecordCount`] and closes the connection, as the answer can no longer be
    /// completed.
    pub fn fetch_reply_records(&mut self, records: &[DataRecord]) -> Result<(), Error> {
        let State::SendFetchRecords(st) = &mut self.state else {
            return Err(Error::InvalidCommand("fetch_reply_records"));
        };
        let fits = u32::try_from(records.len())
            .ok()
            .filter(|n| *n <= st.remaining);
        let Some(n) = fits else {
            let err = Error::FetchRecordCount {
                announced: st.announced,
                given: u64::from(st.announced - st.remaining) + records.len() as u64,
            };
            self.close();
            return Err(err);
        };
        st.remaining -= n;
        let mut plain = Vec::with_capacity(st.carry_len + DataRecord::LEN * records.len());
        plain.extend_from_slice(&st.carry[..st.carry_len]);
        let mut rec = [0u8; DataRecord::LEN];
        for r in records {
            // `rec` is exactly one record long, so emit cannot fail.
            let _ = r.emit(&mut rec);
            plain.extend_from_slice(&rec);
        }
        let whole = plain.len() / BLOCK * BLOCK;
        st.carry_len = plain.len() - whole;
        st.carry[..st.carry_len].copy_from_slice(&plain[whole..]);
        plain.truncate(whole);
        if !plain.is_empty() {
            self.chan.send_covered(plain);
        }
        Ok(())
    }

    /// Ends a streamed Fetch-Session answer: pads the records to a block and queues their
    /// HMAC, then takes commands again. Fewer records than Fetch-Ack announced is
    /// [`Error::FetchRecordCount`] and closes the connection (the client is still waiting for
    /// the rest and would take the next message as records).
    pub fn fetch_reply_end(&mut self) -> Result<(), Error> {
        let State::SendFetchRecords(st) = &self.state else {
            return Err(Error::InvalidCommand("fetch_reply_end"));
        };
        if st.remaining != 0 {
            let err = Error::FetchRecordCount {
                announced: st.announced,
                given: u64::from(st.announced - st.remaining),
            };
            self.close();
            return Err(err);
        }
        if st.carry_len > 0 {
            // The zero padding is part of what the HMAC covers, as in the whole reply.
            let mut last = vec![0u8; BLOCK];
            last[..st.carry_len].copy_from_slice(&st.carry[..st.carry_len]);
            self.chan.send_covered(last);
        }
        // An HMAC field right after what it covers: offset 0 of a message of its own.
        self.chan.send(vec![0; crate::wire::HMAC_LEN], &[0]);
        self.resume()
    }

    /// Answers RFC 5938 Start-N-Sessions for some or all of its SIDs (one call per Accept
    /// value, RFC 5938 §3.3); input is held until every SID has been answered.
    pub fn start_n_ack(&mut self, accept: Accept, sids: Vec<[u8; 16]>) -> Result<(), Error> {
        let State::AwaitStartNAck(pending) = &mut self.state else {
            return Err(Error::InvalidCommand("start_n_ack"));
        };
        if sids.is_empty() || !super::remove_acked(pending, &sids) {
            return Err(Error::InvalidCommand(
                "ack for a SID that was not requested",
            ));
        }
        let done = pending.is_empty();
        let msg = StartNAckRepr { accept, sids }.to_vec();
        let at = msg.len() - crate::wire::HMAC_LEN;
        self.chan.send(msg, &[at]);
        if done { self.resume() } else { Ok(()) }
    }

    /// Answers RFC 5938 Stop-N-Sessions, like [`Server::start_n_ack`].
    pub fn stop_n_ack(&mut self, accept: Accept, sids: Vec<[u8; 16]>) -> Result<(), Error> {
        let State::AwaitStopNAck(pending) = &mut self.state else {
            return Err(Error::InvalidCommand("stop_n_ack"));
        };
        if sids.is_empty() || !super::remove_acked(pending, &sids) {
            return Err(Error::InvalidCommand(
                "ack for a SID that was not requested",
            ));
        }
        let done = pending.is_empty();
        let msg = StopNAckRepr { accept, sids }.to_vec();
        let at = msg.len() - crate::wire::HMAC_LEN;
        self.chan.send(msg, &[at]);
        if done { self.resume() } else { Ok(()) }
    }

    fn expect_state(&self, want: State, what: &'static str) -> Result<(), Error> {
        if self.state == want {
            Ok(())
        } else {
            Err(Error::InvalidCommand(what))
        }
    }

    fn resume(&mut self) -> Result<(), Error> {
        self.state = State::ExpectCommand;
        let r = self.process();
        self.fail_on_err(r)
    }

    fn close(&mut self) {
        self.state = State::Closed;
    }

    fn fail_on_err(&mut self, r: Result<(), Error>) -> Result<(), Error> {
        if r.is_err() {
            self.state = State::Closed;
        }
        r
    }

    fn send_accept_session(&mut self, accept: Accept, port: u16, sid: [u8; 16]) {
        let mut repr = AcceptSessionRepr::new(accept, port, sid);
        // RFC 6038 §4.3: echo the request's Octets to be reflected.
        if accept.is_ok() {
            repr.reflected_octets = self.pending_reflect.take().unwrap_or(0);
        }
        self.pending_reflect = None;
        let msg = repr.to_vec();
        self.chan.send(msg, &[AcceptSessionRepr::HMAC_OFFSET]);
    }

    /// Refuses the connection: Server-Start with a non-zero Accept, in clear with zero IV and
    /// Start-Time (RFC 4656 §3.1; perfSONAR does the same), then close.
    fn refuse<T>(&mut self, accept: Accept, err: Error) -> Result<T, Error> {
        let start = ServerStartRepr {
            accept,
            server_iv: [0; 16],
            start_time: Timestamp::ZERO,
        };
        self.chan.send_clear(&start.to_vec());
        Err(err)
    }

    fn process(&mut self) -> Result<(), Error> {
        loop {
            let progressed = match self.state {
                State::ExpectSetUpResponse => self.read_set_up_response()?,
                State::ExpectCommand => self.read_command()?,
                _ => false,
            };
            if !progressed {
                return Ok(());
            }
        }
    }

    fn read_set_up_response(&mut self) -> Result<bool, Error> {
        if self.chan.available().len() < SetUpResponseRepr::LEN {
            return Ok(false);
        }
        let msg = self.chan.consume_clear(SetUpResponseRepr::LEN);
        let resp = SetUpResponseRepr::parse(&msg)?;
        let chosen = resp.mode;
        if chosen.is_empty() {
            return Err(Error::ClientDeclined);
        }
        let advertised = self.config.modes;
        let Some(mode) = SecurityMode::from_selected(self.protocol, chosen) else {
            return self.refuse(
                Accept::NotSupported,
                Error::UnsupportedMode { chosen, advertised },
            );
        };
        if !advertised.contains(chosen) {
            return self.refuse(
                Accept::NotSupported,
                Error::UnsupportedMode { chosen, advertised },
            );
        }
        let ike_bit = Modes::ikev2_derived(self.protocol);
        let extensions = chosen & !Modes::security_bits(self.protocol);
        let mut identity = None;
        let mut server_iv = [0u8; 16];
        if mode.needs_secret() {
            let id = if chosen.contains(ike_bit) {
                let (spi_i, spi_r) = resp.key_id.spis();
                KeyIdentity::Ike { spi_i, spi_r }
            } else {
                KeyIdentity::Name(resp.key_id.identity().to_vec())
            };
            let secret = match &id {
                KeyIdentity::Ike { spi_i, spi_r } => {
                    match self.config.secrets.ike_secret(*spi_i, *spi_r, self.peer) {
                        Some(s) => s,
                        None => {
                            let err = Error::UnknownIkeSa {
                                spi_i: *spi_i,
                                spi_r: *spi_r,
                            };
                            return self.refuse(Accept::NoIkeSa, err);
                        }
                    }
                }
                KeyIdentity::Name(name) => match self.config.secrets.passphrase(name) {
                    Some(s) => s,
                    None => return self.refuse(Accept::Failure, Error::AuthenticationFailed),
                },
            };
            let Ok(key) = crypto::derive_key(
                secret.expose(),
                &self.random.salt,
                self.config.count,
                u32::MAX,
            ) else {
                return self.refuse(Accept::InternalError, Error::Internal("PBKDF2 Count"));
            };
            let (challenge, keys) = crypto::decrypt_token(&key, &resp.token);
            if !crypto::ct_eq(&challenge, &self.random.challenge) {
                return self.refuse(Accept::Failure, Error::AuthenticationFailed);
            }
            server_iv = self.random.server_iv;
            self.chan.install_opener(&keys, resp.client_iv);
            self.chan.install_sealer(&keys, server_iv);
            self.keys = Some(keys);
            identity = Some(id);
        }
        if !self.config.secrets.permits(identity.as_ref(), mode) {
            return self.refuse(Accept::Failure, Error::NotPermitted(mode));
        }
        let start = ServerStartRepr {
            accept: Accept::Ok,
            server_iv,
            start_time: self.config.start_time,
        }
        .to_vec();
        // Octets 0..32 are clear; 32..48 are the first block of the server's CBC stream and
        // are covered by the first HMAC of the next message (RFC 4656 §3.4; captures item 1).
        self.chan.send_clear(&start[..32]);
        self.chan.send_covered(start[32..].to_vec());
        self.mode = Some(mode);
        self.extensions = extensions;
        self.state = State::ExpectCommand;
        self.events.push_back(ServerEvent::Established {
            mode,
            extensions,
            identity,
        });
        Ok(true)
    }

    fn read_command(&mut self) -> Result<bool, Error> {
        let avail = self.chan.available();
        let Some(&first) = avail.first() else {
            return Ok(false);
        };
        let cmd = Command::from(first);
        let expected = match self.protocol {
            Protocol::Owamp => "Request-Session, Start-Sessions, Stop-Sessions or Fetch-Session",
            Protocol::Twamp => {
                "Request-TW-Session, Start-Sessions, Stop-Sessions, Start-N-Sessions or \
                 Stop-N-Sessions"
            }
        };
        let individual = self
            .config
            .modes
            .contains(Modes::TWAMP_INDIVIDUAL_SESSION_CONTROL);
        match (self.protocol, cmd) {
            (Protocol::Owamp, Command::RequestSession) => {
                let need = match RequestSessionRepr::required_len(avail) {
                    Ok(n) => n,
                    Err(e) => {
                        // Too many slots (or a broken header): answer with an Accept code so
                        // the client knows why, then close; the rest of the message is not
                        // worth reading.
                        self.send_accept_session(Accept::PermanentResourceLimitation, 0, [0; 16]);
                        return Err(e.into());
                    }
                };
                if avail.len() < need {
                    return Ok(false);
                }
                let offsets = RequestSessionRepr::hmac_offsets(need);
                let msg = self.chan.consume(need, &offsets)?;
                let req = RequestSessionRepr::parse(&msg)?;
                if req.conf_sender == req.conf_receiver {
                    // RFC 4656 §3.5: exactly one of the two; the server is one end.
                    self.send_accept_session(Accept::NotSupported, 0, [0; 16]);
                    return Ok(true);
                }
                self.pending_server_sends = req.conf_sender;
                self.state = State::AwaitSessionDecision;
                if self.sessions.len() >= self.config.max_sessions {
                    self.command_done(cmd);
                    return self.reject_for_limit();
                }
                self.events.push_back(ServerEvent::RequestSession(req));
            }
            (Protocol::Twamp, Command::RequestTwSession) => {
                if avail.len() < RequestTwSessionRepr::LEN {
                    return Ok(false);
                }
                let msg = self.chan.consume(
                    RequestTwSessionRepr::LEN,
                    &[RequestTwSessionRepr::HMAC_OFFSET],
                )?;
                let req = RequestTwSessionRepr::parse(&msg)?;
                self.state = State::AwaitSessionDecision;
                self.pending_reflect = Some(req.octets_to_reflect);
                if self.sessions.len() >= self.config.max_sessions {
                    self.command_done(cmd);
                    return self.reject_for_limit();
                }
                self.events.push_back(ServerEvent::RequestTwSession(req));
            }
            (_, Command::StartSessions) => {
                use crate::wire::owamp::StartSessionsRepr;
                if avail.len() < StartSessionsRepr::LEN {
                    return Ok(false);
                }
                let msg = self
                    .chan
                    .consume(StartSessionsRepr::LEN, &[StartSessionsRepr::HMAC_OFFSET])?;
                StartSessionsRepr::parse(&msg)?;
                self.state = State::AwaitStartAck;
                self.events.push_back(ServerEvent::StartSessions);
            }
            (Protocol::Twamp, Command::StopSessions) => {
                let Some(msg) =
                    self.take_fixed(TwStopSessionsRepr::LEN, TwStopSessionsRepr::HMAC_OFFSET)?
                else {
                    return Ok(false);
                };
                let stop = TwStopSessionsRepr::parse(&msg)?;
                self.events.push_back(ServerEvent::StopTwSessions(stop));
            }
            (Protocol::Owamp, Command::StopSessions) => {
                let need = StopSessionsRepr::required_len(avail)?;
                if avail.len() < need {
                    return Ok(false);
                }
                let msg = self.chan.consume(need, &[need - crate::wire::HMAC_LEN])?;
                let stop = StopSessionsRepr::parse(&msg)?;
                if !super::describes_exactly(&stop, &self.client_sends) {
                    return Err(Error::ProtocolViolation(
                        "Stop-Sessions does not describe exactly the client's send sessions",
                    ));
                }
                self.client_sends.clear();
                self.events.push_back(ServerEvent::StopSessions(stop));
            }
            (Protocol::Owamp, Command::FetchSession) => {
                if avail.len() < FetchSessionRepr::LEN {
                    return Ok(false);
                }
                let msg = self
                    .chan
                    .consume(FetchSessionRepr::LEN, &[FetchSessionRepr::HMAC_OFFSET])?;
                let fetch = FetchSessionRepr::parse(&msg)?;
                self.state = State::AwaitFetchReply;
                self.events.push_back(ServerEvent::FetchSession(fetch));
            }
            (Protocol::Twamp, Command::StartNSessions) if individual => {
                let need = StartNSessionsRepr::required_len(avail)?;
                if avail.len() < need {
                    return Ok(false);
                }
                let msg = self.chan.consume(need, &[need - crate::wire::HMAC_LEN])?;
                let start = StartNSessionsRepr::parse(&msg)?;
                self.state = State::AwaitStartNAck(start.sids.clone());
                self.events
                    .push_back(ServerEvent::StartNSessions(start.sids));
            }
            (Protocol::Twamp, Command::StopNSessions) if individual => {
                let need = StopNSessionsRepr::required_len(avail)?;
                if avail.len() < need {
                    return Ok(false);
                }
                let msg = self.chan.consume(need, &[need - crate::wire::HMAC_LEN])?;
                let stop = StopNSessionsRepr::parse(&msg)?;
                self.state = State::AwaitStopNAck(stop.sids.clone());
                self.events.push_back(ServerEvent::StopNSessions(stop.sids));
            }
            (_, got) => return Err(Error::UnexpectedMessage { expected, got }),
        }
        self.command_done(cmd);
        Ok(true)
    }

    /// A complete command arrived: the set-up ends with the first that starts sessions or
    /// fetches results, and once set up every command renews the idle deadline.
    fn command_done(&mut self, cmd: Command) {
        if matches!(
            cmd,
            Command::StartSessions | Command::StartNSessions | Command::FetchSession
        ) {
            self.set_up = true;
        }
        if self.set_up {
            self.deadline = self.now + self.config.idle_timeout;
        }
    }

    fn take_fixed(&mut self, len: usize, hmac_at: usize) -> Result<Option<Vec<u8>>, Error> {
        if self.chan.available().len() < len {
            return Ok(None);
        }
        self.chan.consume(len, &[hmac_at]).map(Some)
    }

    fn reject_for_limit(&mut self) -> Result<bool, Error> {
        self.send_accept_session(Accept::TemporaryResourceLimitation, 0, [0; 16]);
        self.state = State::ExpectCommand;
        Ok(true)
    }
}
