//! Routing a received message to its SA and to the handler of the SA's state, and the SK
//! payload (§3.14) both ways.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use crate::codepoints::{ExchangeType, NotifyType};
use crate::message::{Message, Payload};
use crate::sk;

use super::Engine;
use super::api::{DeleteReason, Event, Failure, Transmit};
use super::payloads::notify;
use super::sa::{Crypto, IkeSa, Link, Reject, RequestKind, State};

impl Engine {
    pub(super) fn route(
        &mut self,
        now: Instant,
        wall: SystemTime,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        msg: &Message,
    ) {
        let h = msg.header;
        if h.exchange == ExchangeType::IKE_SA_INIT && !h.flags.response() {
            if !h.flags.initiator() || h.spi_r != [0; 8] || h.message_id != 0 {
                tracing::debug!(%remote, "dropped a malformed IKE_SA_INIT request");
                return;
            }
            if let Err(e) = self.respond_init(now, local, remote, data, msg) {
                self.log_drop(remote, None, e);
            }
            return;
        }
        let key = if h.flags.initiator() {
            h.spi_r
        } else {
            h.spi_i
        };
        let Some(sa) = self.sas.remove(&key) else {
            tracing::debug!(%remote, exchange = ?h.exchange, "dropped an IKE message for an unknown SA");
            return;
        };
        let (peer, spis) = (sa.link.remote, sa.link.spis);
        let kept = if peer != remote || (h.flags.initiator() == sa.link.initiator) {
            tracing::debug!(%remote, %spis, "dropped an IKE message from the wrong peer or role");
            Some(sa)
        } else if h.flags.response() {
            self.handle_response(sa, now, wall, data, msg)
        } else {
            self.handle_request(sa, now, wall, data, msg)
        };
        match kept {
            Some(mut sa) => {
                self.pump(&mut sa, now);
                self.put_back(sa);
            }
            None => self.forget(peer, spis),
        }
    }

    pub(super) fn log_drop(&mut self, remote: SocketAddr, link: Option<&Link>, d: Reject) {
        match d {
            Reject::Ignore(why) => tracing::debug!(%remote, "dropped an IKE message: {why}"),
            Reject::Fail(failure) => {
                tracing::warn!(%remote, "IKE: {failure}");
                if let Some(link) = link {
                    self.events.push_back(Event::Failed {
                        spis: link.spis,
                        peer: remote,
                        failure,
                    });
                }
            }
        }
    }

    /// A setup that cannot go on: the SA goes.
    fn setup_failed(&mut self, link: &Link, failure: Failure) {
        tracing::warn!(spis = %link.spis, peer = %link.remote, "IKE SA failed: {failure}");
        self.events.push_back(Event::Failed {
            spis: link.spis,
            peer: link.remote,
            failure,
        });
    }

    /// A response to one of our requests. Returns the SA unless it is to go.
    fn handle_response(
        &mut self,
        mut sa: IkeSa,
        now: Instant,
        wall: SystemTime,
        data: &[u8],
        msg: &Message,
    ) -> Option<IkeSa> {
        let matches = sa
            .link
            .outstanding
            .as_ref()
            .is_some_and(|o| o.message_id == msg.header.message_id);
        if !matches {
            tracing::debug!(spis = %sa.link.spis, id = msg.header.message_id, "dropped a response to no outstanding request");
            return Some(sa);
        }
        // IKE_SA_INIT responses are in the clear, and only they come before the keys.
        let plain = msg.header.exchange == ExchangeType::IKE_SA_INIT;
        let payloads = match (&sa.state, sa.state.crypto()) {
            (State::InitSent(_), _) if plain => msg.payloads.clone(),
            (_, Some(crypto)) if !plain => match open(crypto, data) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(spis = %sa.link.spis, "dropped a response: {e}");
                    return Some(sa);
                }
            },
            _ => {
                tracing::debug!(spis = %sa.link.spis, exchange = ?msg.header.exchange, "dropped a response of the wrong kind for the state");
                return Some(sa);
            }
        };
        sa.link.last_heard = now;
        let IkeSa { mut link, state } = sa;
        let Some(o) = link.outstanding.take() else {
            return Some(IkeSa { link, state });
        };
        match (o.kind, state) {
            (RequestKind::Setup, State::InitSent(e)) => {
                match self.init_response(&mut link, *e, now, data, msg, &payloads) {
                    Ok(state) => Some(IkeSa { link, state }),
                    Err(f) => {
                        self.setup_failed(&link, f);
                        None
                    }
                }
            }
            (RequestKind::Setup, State::AuthSent(a)) => {
                match self.auth_response(&mut link, *a, now, wall, &payloads) {
                    Ok(est) => Some(IkeSa {
                        link,
                        state: State::Established(est),
                    }),
                    Err(f) => {
                        self.setup_failed(&link, f);
                        None
                    }
                }
            }
            (RequestKind::Delete, state) => {
                tracing::info!(spis = %link.spis, "IKE SA deleted");
                if state.announced() {
                    self.events.push_back(Event::Deleted {
                        spis: link.spis,
                        reason: DeleteReason::ByUs,
                    });
                }
                None
            }
            (RequestKind::Rekey(r), State::Established(mut est)) => {
                match self.rekey_response(&mut link, &mut est, now, *r, &payloads) {
                    Ok(()) => {}
                    Err(Reject::Ignore(why)) => {
                        tracing::debug!(spis = %link.spis, "dropped: {why}")
                    }
                    Err(Reject::Fail(f)) => {
                        // A local failure (randomness, key derivation): the old SA stands.
                        tracing::warn!(spis = %link.spis, "rekey failed: {f}");
                        est.next_rekey = Some(now + super::rekey::REKEY_RETRY);
                    }
                }
                Some(IkeSa {
                    link,
                    state: State::Established(est),
                })
            }
            // Liveness, and combinations that cannot occur (a setup request is only ever
            // outstanding in a setup state, a rekey only in an established one).
            (_, state) => Some(IkeSa { link, state }),
        }
    }

    /// A request of the peer's. Returns the SA unless it is to go.
    fn handle_request(
        &mut self,
        mut sa: IkeSa,
        now: Instant,
        wall: SystemTime,
        data: &[u8],
        msg: &Message,
    ) -> Option<IkeSa> {
        let id = msg.header.message_id;
        let Some(crypto) = sa.state.crypto() else {
            tracing::debug!(spis = %sa.link.spis, "dropped a request before IKE_SA_INIT completed");
            return Some(sa);
        };
        if id != sa.link.peer_next_id {
            if let Some((last, resp)) = &sa.link.last_response
                && *last == id
            {
                // Our response was lost: send it again, unprocessed (§2.1). Only once the
                // message proves authentic, so nobody can make us send at will.
                if open(crypto, data).is_ok() {
                    self.transmits.push_back(Transmit {
                        local: sa.link.local,
                        remote: sa.link.remote,
                        data: resp.clone(),
                    });
                }
            } else {
                tracing::debug!(spis = %sa.link.spis, id, "dropped a request outside the window");
            }
            return Some(sa);
        }
        let p = match open(crypto, data) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(spis = %sa.link.spis, "dropped a request: {e}");
                return Some(sa);
            }
        };
        sa.link.last_heard = now;
        let IkeSa { mut link, state } = sa;
        let (res, state) = match (msg.header.exchange, state) {
            (ExchangeType::IKE_AUTH, State::InitAnswered(hs)) => {
                return self.auth_request(link, *hs, now, wall, &p);
            }
            (ExchangeType::INFORMATIONAL, State::Established(mut est)) => (
                self.informational_request(&mut link, &mut est, now, &p),
                est,
            ),
            (ExchangeType::CREATE_CHILD_SA, State::Established(mut est)) if !est.deleting => {
                (self.create_child_request(&mut link, &mut est, now, &p), est)
            }
            (ExchangeType::CREATE_CHILD_SA, State::Established(est)) => {
                // Being deleted: no rekey of it (§2.8.2).
                let n = notify(NotifyType::TEMPORARY_FAILURE, Vec::new());
                let r = self.respond(
                    &mut link,
                    &est.crypto,
                    ExchangeType::CREATE_CHILD_SA,
                    vec![n],
                );
                (r.map(|()| true), est)
            }
            (ex, state) => {
                let why = format!("{ex:?} request in state {}", state.name());
                self.log_drop(link.remote, Some(&link), Reject::Ignore(why));
                return Some(IkeSa { link, state });
            }
        };
        match res {
            Ok(true) => Some(IkeSa {
                link,
                state: State::Established(state),
            }),
            Ok(false) => None,
            Err(d) => {
                let gone = matches!(d, Reject::Fail(_)) && state.deleting;
                self.log_drop(link.remote, Some(&link), d);
                (!gone).then(|| IkeSa {
                    link,
                    state: State::Established(state),
                })
            }
        }
    }

    /// Seals `inner` into an SK payload of a message of this SA.
    pub(super) fn seal(
        &mut self,
        link: &Link,
        crypto: &Crypto,
        exchange: ExchangeType,
        response: bool,
        message_id: u32,
        inner: &[Payload],
    ) -> Result<Vec<u8>, Failure> {
        let mut iv = vec![0u8; crypto.out.iv_len()];
        self.rng
            .fill(&mut iv)
            .map_err(|e| Failure::Local(e.to_string()))?;
        let header = link.header(exchange, response, message_id);
        sk::seal(&crypto.out, &header, &[], inner, &iv).map_err(|e| Failure::Local(e.to_string()))
    }

    /// Sends a response to the peer's current request and caches it for retransmissions.
    pub(super) fn respond(
        &mut self,
        link: &mut Link,
        crypto: &Crypto,
        exchange: ExchangeType,
        inner: Vec<Payload>,
    ) -> Result<(), Reject> {
        let id = link.peer_next_id;
        let data = self.seal(link, crypto, exchange, true, id, &inner)?;
        link.last_response = Some((id, data.clone()));
        link.peer_next_id = id.wrapping_add(1);
        self.transmits.push_back(Transmit {
            local: link.local,
            remote: link.remote,
            data,
        });
        Ok(())
    }
}

/// The inner payloads of a protected message.
fn open(crypto: &Crypto, data: &[u8]) -> Result<Vec<Payload>, String> {
    sk::open(&crypto.inb, data)
        .map(|o| o.inner)
        .map_err(|e| e.to_string())
}
