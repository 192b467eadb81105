//! The client side of an OWAMP-Control or TWAMP-Control connection (the Control-Client).
//!
//! Call order (see the [module docs](super)): [`Client::new`], `handle_input` with what the
//! server sends, `poll_transmit` / `poll_event` after every call. Once
//! [`ClientEvent::Established`] has been reported, issue commands one at a time and wait for
//! the event that answers each: `request_session` / `request_tw_session` →
//! `SessionAccepted` or `SessionRejected`; `start_sessions` → `StartAck`; `fetch_session` →
//! `FetchReply` or `FetchRejected`; `start_n_sessions` → `StartNAck`; `stop_n_sessions` →
//! `StopNAck`. `stop_sessions` needs no answer; an OWAMP server sends its own Stop-Sessions
//! for the sessions it sends, reported as `StopSessions`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::codepoints::{Accept, Modes, Protocol, SecurityMode};
use crate::crypto::{self, SessionKeys, TestKeys};
use crate::time::Timestamp;
use crate::wire::owamp::{
    AcceptSessionRepr, DataRecord, FetchAckRepr, FetchSessionRepr, RequestSessionRepr, SkipRange,
    StartAckRepr, StartSessionsRepr, StopSessionsRepr,
};
use crate::wire::setup::{KeyId, ServerGreetingRepr, ServerStartRepr, SetUpResponseRepr};
use crate::wire::twamp::{
    RequestTwSessionRepr, StartNAckRepr, StartNSessionsRepr, StopNAckRepr, StopNSessionsRepr,
    TwStopSessionsRepr,
};
use crate::wire::{self, HMAC_LEN};

use super::channel::Channel;
use super::{Error, Secret};

/// An RFC 7717 key: the SPIs of an IKEv2 SA and the secret derived from it.
#[derive(Debug, Clone)]
pub struct IkeCredential {
    /// SPIi of the IKE SA.
    pub spi_i: [u8; 8],
    /// SPIr of the IKE SA.
    pub spi_r: [u8; 8],
    /// `prf(SK_d, "IPPM")`.
    pub secret: Secret,
}

/// What a client is willing to use.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Acceptable security modes, most preferred first.
    pub modes: Vec<SecurityMode>,
    /// Identity and passphrase for the protected modes.
    pub identity: Option<(Vec<u8>, Secret)>,
    /// An IKEv2-derived key, used when the server advertises the IKEv2-derived bit.
    pub ike: Option<IkeCredential>,
    /// TWAMP extension bits to set when the server advertises them (individual session
    /// control, reflect octets, symmetrical size). Against a server that advertises none,
    /// the Set-Up-Response carries exactly one mode bit (perfSONAR's twampd insists).
    pub extensions: Modes,
    /// Highest PBKDF2 Count accepted from a server.
    pub max_count: u32,
    /// How long to wait for each answer.
    pub response_timeout: Duration,
    /// Largest single message accepted (bounds a Fetch-Session answer).
    pub max_message: usize,
}

impl ClientConfig {
    /// Open mode only.
    pub fn open() -> Self {
        Self {
            modes: vec![SecurityMode::Open],
            identity: None,
            ike: None,
            extensions: Modes::NONE,
            max_count: crypto::DEFAULT_MAX_COUNT,
            response_timeout: Duration::from_secs(30),
            max_message: 64 << 20,
        }
    }

    /// The given modes with a passphrase identity.
    pub fn with_passphrase(modes: Vec<SecurityMode>, identity: &[u8], secret: Secret) -> Self {
        Self {
            modes,
            identity: Some((identity.to_vec(), secret)),
            ..Self::open()
        }
    }
}

/// The randomness one client connection needs (from a CSPRNG, supplied by the caller).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ClientRandom {
    /// Client-IV of the Set-Up-Response.
    pub client_iv: [u8; 16],
    /// The AES Session-key the client chooses.
    pub aes_key: [u8; 16],
    /// The HMAC Session-key the client chooses.
    pub hmac_key: [u8; 32],
}

impl std::fmt::Debug for ClientRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientRandom([redacted])")
    }
}

/// The data of a positive Fetch-Session answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchResult {
    /// Finished: the session is over and the records are complete.
    pub finished: bool,
    /// Next Seqno the sender would have used.
    pub next_seqno: u32,
    /// The session's Request-Session as the server holds it.
    pub request: RequestSessionRepr,
    /// Ranges the sender skipped.
    pub skip_ranges: Vec<SkipRange>,
    /// The records.
    pub records: Vec<DataRecord>,
}

/// What a client connection reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// Server-Start accepted the connection.
    Established {
        /// The security mode in use.
        mode: SecurityMode,
        /// The full Mode field sent (security mode plus extension / IKEv2 bits).
        selected: Modes,
        /// What the server advertised.
        server_modes: Modes,
        /// The server's Start-Time.
        start_time: Timestamp,
    },
    /// Accept-Session with Accept 0.
    SessionAccepted {
        /// The SID.
        sid: [u8; 16],
        /// The port to use (receiver port, or the server's sender port).
        port: u16,
        /// RFC 6038: the Octets to be reflected the server echoed (0 without the feature).
        reflected_octets: u16,
        /// RFC 6038: octets the server wants at the start of the reflected padding (0: none).
        server_octets: u16,
    },
    /// Accept-Session with a non-zero Accept: this session was refused; the connection goes on.
    SessionRejected(Accept),
    /// Start-Ack.
    StartAck(Accept),
    /// Stop-Sessions sent by the server.
    StopSessions(StopSessionsRepr),
    /// A positive Fetch-Session answer.
    FetchReply(FetchResult),
    /// Fetch-Ack with a non-zero Accept.
    FetchRejected(Accept),
    /// RFC 5938 Start-N-Ack.
    StartNAck {
        /// Accept.
        accept: Accept,
        /// The SIDs acknowledged.
        sids: Vec<[u8; 16]>,
    },
    /// RFC 5938 Stop-N-Ack.
    StopNAck {
        /// Accept.
        accept: Accept,
        /// The SIDs acknowledged.
        sids: Vec<[u8; 16]>,
    },
}

#[derive(Debug)]
enum State {
    ExpectGreeting,
    ExpectServerStart {
        selected: Modes,
        mode: SecurityMode,
        server_modes: Modes,
    },
    Ready,
    /// Waiting for Accept-Session; for OWAMP, whether the server is to send and the SID the
    /// client chose for that case.
    ExpectAcceptSession {
        server_sends: bool,
        sid: [u8; 16],
    },
    ExpectStartAck,
    ExpectFetchAck,
    ExpectFetchRequest {
        ack: FetchAckRepr,
    },
    ExpectFetchSkips {
        ack: FetchAckRepr,
        request: RequestSessionRepr,
    },
    ExpectFetchRecords {
        ack: FetchAckRepr,
        request: RequestSessionRepr,
        skips: Vec<SkipRange>,
    },
    /// Waiting for Start-N-Ack for these SIDs (a server may ack them in several messages).
    ExpectStartNAck(Vec<[u8; 16]>),
    /// Waiting for Stop-N-Ack for these SIDs.
    ExpectStopNAck(Vec<[u8; 16]>),
    Closed,
}

impl State {
    fn awaits_reply(&self) -> bool {
        !matches!(self, Self::Ready | Self::Closed)
    }
}

/// One client control connection. See the [module docs](self) for the call order.
#[derive(Debug)]
pub struct Client {
    protocol: Protocol,
    config: ClientConfig,
    random: ClientRandom,
    state: State,
    chan: Channel,
    events: VecDeque<ClientEvent>,
    mode: Option<SecurityMode>,
    keys: Option<SessionKeys>,
    deadline: Option<Instant>,
    /// OWAMP: accepted sessions each side sends, not yet described by a Stop-Sessions.
    client_sends: Vec<[u8; 16]>,
    server_sends: Vec<[u8; 16]>,
}

impl Client {
    /// A new connection; it waits for the Server Greeting.
    pub fn new(
        protocol: Protocol,
        config: ClientConfig,
        random: ClientRandom,
        now: Instant,
    ) -> Self {
        let deadline = Some(now + config.response_timeout);
        // The largest message (a Fetch answer) plus what may follow it in the same read.
        let chan = Channel::with_limit(config.max_message.saturating_add(1 << 16));
        Self {
            protocol,
            config,
            random,
            state: State::ExpectGreeting,
            chan,
            events: VecDeque::new(),
            mode: None,
            keys: None,
            deadline,
            client_sends: Vec::new(),
            server_sends: Vec::new(),
        }
    }

    /// Feeds octets read from the connection.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) -> Result<(), Error> {
        if matches!(self.state, State::Closed) {
            return Err(Error::Closed);
        }
        let r = self.chan.receive(data).and_then(|()| self.process(now));
        self.fail_on_err(r)
    }

    /// Octets to write to the connection, in order.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.chan.take_output()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called: set while an answer is awaited.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state.awaits_reply() {
            self.deadline
        } else {
            None
        }
    }

    /// Fails with [`Error::Timeout`] when an answer is overdue.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        match self.poll_timeout() {
            Some(d) if now >= d => {
                let what = self.awaited();
                self.state = State::Closed;
                Err(Error::Timeout(what))
            }
            _ => Ok(()),
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

    /// Whether the connection is finished.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The security mode, once established.
    pub fn mode(&self) -> Option<SecurityMode> {
        self.mode
    }

    /// The test-session keys for `sid`, in the protected modes.
    pub fn test_keys(&self, sid: &[u8; 16]) -> Option<TestKeys> {
        self.keys.as_ref().map(|k| TestKeys::derive(k, sid))
    }

    /// Whether a command may be issued now (established, no answer outstanding).
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready)
    }

    /// OWAMP: sends Request-Session.
    pub fn request_session(&mut self, now: Instant, req: &RequestSessionRepr) -> Result<(), Error> {
        self.command(now, Protocol::Owamp, "request_session")?;
        if req.conf_sender == req.conf_receiver {
            return Err(Error::InvalidCommand(
                "request_session needs exactly one of Conf-Sender and Conf-Receiver",
            ));
        }
        let msg = req.to_vec();
        let offsets = RequestSessionRepr::hmac_offsets(msg.len());
        self.chan.send(msg, &offsets);
        self.state = State::ExpectAcceptSession {
            server_sends: req.conf_sender,
            sid: req.sid,
        };
        Ok(())
    }

    /// TWAMP: sends Request-TW-Session.
    pub fn request_tw_session(
        &mut self,
        now: Instant,
        req: &RequestTwSessionRepr,
    ) -> Result<(), Error> {
        self.command(now, Protocol::Twamp, "request_tw_session")?;
        self.chan
            .send(req.to_vec(), &[RequestTwSessionRepr::HMAC_OFFSET]);
        self.state = State::ExpectAcceptSession {
            server_sends: false,
            sid: [0; 16],
        };
        Ok(())
    }

    /// Sends Start-Sessions.
    pub fn start_sessions(&mut self, now: Instant) -> Result<(), Error> {
        self.command(now, self.protocol, "start_sessions")?;
        self.chan.send(
            StartSessionsRepr.to_vec(),
            &[StartSessionsRepr::HMAC_OFFSET],
        );
        self.state = State::ExpectStartAck;
        Ok(())
    }

    /// TWAMP: sends Stop-Sessions for `num_sessions` sessions. No answer is awaited.
    pub fn stop_tw_sessions(
        &mut self,
        now: Instant,
        accept: Accept,
        num_sessions: u32,
    ) -> Result<(), Error> {
        self.command(now, Protocol::Twamp, "stop_tw_sessions")?;
        let msg = TwStopSessionsRepr {
            accept,
            num_sessions,
        }
        .to_vec();
        self.chan.send(msg, &[TwStopSessionsRepr::HMAC_OFFSET]);
        Ok(())
    }

    /// OWAMP: sends Stop-Sessions describing the client's send sessions. No answer is awaited;
    /// a server that sends test packets answers with its own Stop-Sessions, reported as
    /// [`ClientEvent::StopSessions`].
    pub fn stop_sessions(&mut self, now: Instant, stop: &StopSessionsRepr) -> Result<(), Error> {
        self.command(now, Protocol::Owamp, "stop_sessions")?;
        if !super::describes_exactly(stop, &self.client_sends) {
            return Err(Error::InvalidCommand(
                "stop_sessions must describe exactly the client's unstopped send sessions",
            ));
        }
        self.client_sends.clear();
        let msg = stop.to_vec();
        let at = msg.len() - HMAC_LEN;
        self.chan.send(msg, &[at]);
        Ok(())
    }

    /// OWAMP: sends Fetch-Session.
    pub fn fetch_session(&mut self, now: Instant, fetch: &FetchSessionRepr) -> Result<(), Error> {
        self.command(now, Protocol::Owamp, "fetch_session")?;
        self.chan
            .send(fetch.to_vec(), &[FetchSessionRepr::HMAC_OFFSET]);
        self.state = State::ExpectFetchAck;
        Ok(())
    }

    /// TWAMP (RFC 5938): sends Start-N-Sessions.
    pub fn start_n_sessions(&mut self, now: Instant, sids: Vec<[u8; 16]>) -> Result<(), Error> {
        self.command(now, Protocol::Twamp, "start_n_sessions")?;
        if sids.is_empty() {
            return Err(Error::InvalidCommand("start_n_sessions without SIDs"));
        }
        let msg = StartNSessionsRepr { sids: sids.clone() }.to_vec();
        let at = msg.len() - HMAC_LEN;
        self.chan.send(msg, &[at]);
        self.state = State::ExpectStartNAck(sids);
        Ok(())
    }

    /// TWAMP (RFC 5938): sends Stop-N-Sessions.
    pub fn stop_n_sessions(&mut self, now: Instant, sids: Vec<[u8; 16]>) -> Result<(), Error> {
        self.command(now, Protocol::Twamp, "stop_n_sessions")?;
        if sids.is_empty() {
            return Err(Error::InvalidCommand("stop_n_sessions without SIDs"));
        }
        let msg = StopNSessionsRepr { sids: sids.clone() }.to_vec();
        let at = msg.len() - HMAC_LEN;
        self.chan.send(msg, &[at]);
        self.state = State::ExpectStopNAck(sids);
        Ok(())
    }

    fn command(
        &mut self,
        now: Instant,
        for_protocol: Protocol,
        what: &'static str,
    ) -> Result<(), Error> {
        if !matches!(self.state, State::Ready) || for_protocol != self.protocol {
            return Err(Error::InvalidCommand(what));
        }
        self.deadline = Some(now + self.config.response_timeout);
        Ok(())
    }

    fn awaited(&self) -> &'static str {
        match self.state {
            State::ExpectGreeting => "Server Greeting",
            State::ExpectServerStart { .. } => "Server-Start",
            State::ExpectAcceptSession { .. } => "Accept-Session",
            State::ExpectStartAck => "Start-Ack",
            State::ExpectFetchAck
            | State::ExpectFetchRequest { .. }
            | State::ExpectFetchSkips { .. }
            | State::ExpectFetchRecords { .. } => "Fetch-Session answer",
            State::ExpectStartNAck(_) => "Start-N-Ack",
            State::ExpectStopNAck(_) => "Stop-N-Ack",
            State::Ready | State::Closed => "nothing",
        }
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

    fn process(&mut self, now: Instant) -> Result<(), Error> {
        loop {
            let state = std::mem::replace(&mut self.state, State::Closed);
            match self.step(state, now)? {
                (next, true) => self.state = next,
                (next, false) => {
                    self.state = next;
                    return Ok(());
                }
            }
        }
    }

    /// One message in `state`: returns the next state and whether a message was consumed.
    fn step(&mut self, state: State, now: Instant) -> Result<(State, bool), Error> {
        let avail = self.chan.available();
        match state {
            State::ExpectGreeting => {
                if avail.len() < ServerGreetingRepr::LEN {
                    return Ok((state, false));
                }
                let msg = self.chan.consume_clear(ServerGreetingRepr::LEN);
                let greeting = ServerGreetingRepr::parse(&msg)?;
                let next = self.answer_greeting(&greeting)?;
                self.deadline = Some(now + self.config.response_timeout);
                Ok((next, true))
            }
            State::ExpectServerStart {
                selected,
                mode,
                server_modes,
            } => {
                if avail.len() < ServerStartRepr::LEN {
                    return Ok((
                        State::ExpectServerStart {
                            selected,
                            mode,
                            server_modes,
                        },
                        false,
                    ));
                }
                // The first 32 octets are clear; a refusal is entirely clear (captures item 7).
                let head = self.chan.consume_clear(32);
                let accept = Accept::from(head[15]);
                if !accept.is_ok() {
                    return Err(Error::Rejected(accept));
                }
                let server_iv = wire::array_at::<16>(&head, 16..32);
                let mut start = head;
                if let Some(keys) = &self.keys {
                    self.chan.install_opener(keys, server_iv);
                }
                // Start-Time and MBZ: the first block of the server's stream, covered by its
                // first HMAC (which comes with the next message).
                start.extend(self.chan.consume(16, &[])?);
                let repr = ServerStartRepr::parse(&start)?;
                self.mode = Some(mode);
                self.events.push_back(ClientEvent::Established {
                    mode,
                    selected,
                    server_modes,
                    start_time: repr.start_time,
                });
                Ok((State::Ready, true))
            }
            State::Ready => {
                // Only an OWAMP server speaks unasked, with Stop-Sessions.
                let Some(&first) = avail.first() else {
                    return Ok((State::Ready, false));
                };
                if self.protocol != Protocol::Owamp || first != 3 {
                    return Err(Error::UnexpectedMessage {
                        expected: "nothing (no request outstanding)",
                        got: first.into(),
                    });
                }
                let need = StopSessionsRepr::required_len(avail)?;
                if avail.len() < need {
                    return Ok((State::Ready, false));
                }
                let msg = self.chan.consume(need, &[need - HMAC_LEN])?;
                let stop = StopSessionsRepr::parse(&msg)?;
                if !super::describes_exactly(&stop, &self.server_sends) {
                    return Err(Error::ProtocolViolation(
                        "Stop-Sessions does not describe exactly the server's send sessions",
                    ));
                }
                self.server_sends.clear();
                self.events.push_back(ClientEvent::StopSessions(stop));
                Ok((State::Ready, true))
            }
            State::ExpectAcceptSession { server_sends, sid } => {
                let Some(msg) =
                    self.take_fixed(AcceptSessionRepr::LEN, AcceptSessionRepr::HMAC_OFFSET)?
                else {
                    return Ok((state, false));
                };
                let a = AcceptSessionRepr::parse(&msg)?;
                if !a.accept.is_ok() {
                    self.events
                        .push_back(ClientEvent::SessionRejected(a.accept));
                    return Ok((State::Ready, true));
                }
                // OWAMP: when the server sends, the session has the SID the client chose
                // (owampd echoes it; RFC 4656 §3.5 leaves the field unused).
                let sid = if server_sends { sid } else { a.sid };
                if self.protocol == Protocol::Owamp {
                    if server_sends {
                        self.server_sends.push(sid);
                    } else {
                        self.client_sends.push(sid);
                    }
                }
                self.events.push_back(ClientEvent::SessionAccepted {
                    sid,
                    port: a.port,
                    reflected_octets: a.reflected_octets,
                    server_octets: a.server_octets,
                });
                Ok((State::Ready, true))
            }
            State::ExpectStartAck => {
                let Some(msg) = self.take_fixed(StartAckRepr::LEN, StartAckRepr::HMAC_OFFSET)?
                else {
                    return Ok((state, false));
                };
                let a = StartAckRepr::parse(&msg)?;
                self.events.push_back(ClientEvent::StartAck(a.accept));
                Ok((State::Ready, true))
            }
            State::ExpectFetchAck => {
                let Some(msg) = self.take_fixed(FetchAckRepr::LEN, FetchAckRepr::HMAC_OFFSET)?
                else {
                    return Ok((state, false));
                };
                let ack = FetchAckRepr::parse(&msg)?;
                if !ack.accept.is_ok() {
                    self.events
                        .push_back(ClientEvent::FetchRejected(ack.accept));
                    return Ok((State::Ready, true));
                }
                let skips = wire::owamp::skip_ranges_len(ack.num_skip_ranges)?;
                let recs = wire::owamp::records_len(ack.num_records)?;
                if skips > self.config.max_message || recs > self.config.max_message {
                    return Err(Error::Limit("Fetch-Session answer larger than max_message"));
                }
                Ok((State::ExpectFetchRequest { ack }, true))
            }
            State::ExpectFetchRequest { ack } => {
                let need = RequestSessionRepr::required_len(avail)?;
                if avail.len() < need {
                    return Ok((State::ExpectFetchRequest { ack }, false));
                }
                let offsets = RequestSessionRepr::hmac_offsets(need);
                let msg = self.chan.consume(need, &offsets)?;
                let request = RequestSessionRepr::parse(&msg)?;
                Ok((State::ExpectFetchSkips { ack, request }, true))
            }
            State::ExpectFetchSkips { ack, request } => {
                let need = wire::owamp::skip_ranges_len(ack.num_skip_ranges)?;
                if avail.len() < need {
                    return Ok((State::ExpectFetchSkips { ack, request }, false));
                }
                let msg = self.chan.consume(need, &[need - HMAC_LEN])?;
                let skips = wire::owamp::parse_skip_ranges(&msg, ack.num_skip_ranges)?;
                Ok((
                    State::ExpectFetchRecords {
                        ack,
                        request,
                        skips,
                    },
                    true,
                ))
            }
            State::ExpectFetchRecords {
                ack,
                request,
                skips,
            } => {
                let need = wire::owamp::records_len(ack.num_records)?;
                if avail.len() < need {
                    return Ok((
                        State::ExpectFetchRecords {
                            ack,
                            request,
                            skips,
                        },
                        false,
                    ));
                }
                let msg = self.chan.consume(need, &[need - HMAC_LEN])?;
                let records = wire::owamp::parse_records(&msg, ack.num_records)?;
                self.events.push_back(ClientEvent::FetchReply(FetchResult {
                    finished: ack.finished,
                    next_seqno: ack.next_seqno,
                    request,
                    skip_ranges: skips,
                    records,
                }));
                Ok((State::Ready, true))
            }
            State::ExpectStartNAck(mut pending) => {
                let need = StartNAckRepr::required_len(avail)?;
                if avail.len() < need {
                    return Ok((State::ExpectStartNAck(pending), false));
                }
                let msg = self.chan.consume(need, &[need - HMAC_LEN])?;
                let a = StartNAckRepr::parse(&msg)?;
                if !super::remove_acked(&mut pending, &a.sids) {
                    return Err(Error::ProtocolViolation(
                        "ack for a SID that was not requested",
                    ));
                }
                self.events.push_back(ClientEvent::StartNAck {
                    accept: a.accept,
                    sids: a.sids,
                });
                let next = if pending.is_empty() {
                    State::Ready
                } else {
                    State::ExpectStartNAck(pending)
                };
                Ok((next, true))
            }
            State::ExpectStopNAck(mut pending) => {
                let need = StopNAckRepr::required_len(avail)?;
                if avail.len() < need {
                    return Ok((State::ExpectStopNAck(pending), false));
                }
                let msg = self.chan.consume(need, &[need - HMAC_LEN])?;
                let a = StopNAckRepr::parse(&msg)?;
                if !super::remove_acked(&mut pending, &a.sids) {
                    return Err(Error::ProtocolViolation(
                        "ack for a SID that was not requested",
                    ));
                }
                self.events.push_back(ClientEvent::StopNAck {
                    accept: a.accept,
                    sids: a.sids,
                });
                let next = if pending.is_empty() {
                    State::Ready
                } else {
                    State::ExpectStopNAck(pending)
                };
                Ok((next, true))
            }
            State::Closed => Err(Error::Closed),
        }
    }

    fn take_fixed(&mut self, len: usize, hmac_at: usize) -> Result<Option<Vec<u8>>, Error> {
        if self.chan.available().len() < len {
            return Ok(None);
        }
        self.chan.consume(len, &[hmac_at]).map(Some)
    }

    /// Chooses a mode, derives the key and queues the Set-Up-Response.
    fn answer_greeting(&mut self, g: &ServerGreetingRepr) -> Result<State, Error> {
        let server_modes = g.modes;
        if server_modes.is_empty() {
            return Err(Error::NoModes);
        }
        let ike_bit = Modes::ikev2_derived(self.protocol);
        let use_ike = self.config.ike.is_some() && server_modes.contains(ike_bit);
        let have_secret = use_ike || self.config.identity.is_some();
        let chosen = self.config.modes.iter().copied().find(|m| {
            m.available(self.protocol)
                && server_modes.contains(m.bit())
                && (!m.needs_secret() || have_secret)
        });
        let Some(mode) = chosen else {
            // RFC 4656 §3.1: a client that accepts none of the modes answers with Mode 0.
            let decline = SetUpResponseRepr {
                mode: Modes::NONE,
                key_id: KeyId::zero(),
                token: [0; 64],
                client_iv: [0; 16],
            };
            self.chan.send_clear(&decline.to_vec());
            return Err(Error::NoCommonMode {
                offered: server_modes,
                protocol: self.protocol,
            });
        };
        let mut selected = mode.bit();
        if self.protocol == Protocol::Twamp {
            let ext = Modes::TWAMP_INDIVIDUAL_SESSION_CONTROL
                | Modes::TWAMP_REFLECT_OCTETS
                | Modes::TWAMP_SYMMETRICAL_SIZE;
            selected |= self.config.extensions & ext & server_modes;
        }
        let resp = if mode.needs_secret() {
            crypto::check_count(g.count, self.config.max_count).map_err(Error::BadCount)?;
            let (key_id, secret) = match (&self.config.ike, &self.config.identity) {
                (Some(ike), _) if use_ike => {
                    selected |= ike_bit;
                    (KeyId::from_spis(ike.spi_i, ike.spi_r), ike.secret.clone())
                }
                (_, Some((name, secret))) => (KeyId::from_identity(name), secret.clone()),
                _ => return Err(Error::Internal("protected mode without a secret")),
            };
            let key = crypto::derive_key(secret.expose(), &g.salt, g.count, self.config.max_count)
                .map_err(Error::BadCount)?;
            let keys = SessionKeys {
                aes: self.random.aes_key,
                hmac: self.random.hmac_key,
            };
            let token = crypto::encrypt_token(&key, &g.challenge, &keys);
            // Nothing of the Set-Up-Response is covered by an HMAC (captures item 1).
            self.chan.install_sealer(&keys, self.random.client_iv);
            self.keys = Some(keys);
            SetUpResponseRepr {
                mode: selected,
                key_id,
                token,
                client_iv: self.random.client_iv,
            }
        } else {
            SetUpResponseRepr {
                mode: selected,
                key_id: KeyId::zero(),
                token: [0; 64],
                client_iv: [0; 16],
            }
        };
        self.chan.send_clear(&resp.to_vec());
        Ok(State::ExpectServerStart {
            selected,
            mode,
            server_modes,
        })
    }
}
