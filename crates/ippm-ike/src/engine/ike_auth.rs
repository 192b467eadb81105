//! IKE_AUTH (RFC 7296 §1.2, §2.15): as initiator and as responder, childless (RFC 6023),
//! ending in an established IKE SA.

use std::time::{Duration, Instant, SystemTime};

use crate::codepoints::{ExchangeType, NotifyType};
use crate::config::{LocalAuth, RemoteAuth};
use crate::message::Payload;

use super::Engine;
use super::api::{Event, Failure};
use super::authenticate::{local_auth, verify_peer};
use super::payloads::{
    CERT_X509_SIGNATURE, first_error, id_payload, id_to_payload, notify, sa_payload,
};
use super::sa::{
    Established, ExpectAuthResponse, Handshake, IkeSa, Link, Reject, RequestKind, State,
};

/// A rejection where only a failure can be: the exchange cannot go on either way.
fn fatal(r: Reject) -> Failure {
    match r {
        Reject::Fail(f) => f,
        Reject::Ignore(why) => Failure::Protocol(why),
    }
}

impl Engine {
    /// Our IKE_AUTH request (message 1), once IKE_SA_INIT gave us `hs`.
    pub(super) fn send_auth(
        &mut self,
        link: &mut Link,
        conn: usize,
        hs: Handshake,
        now: Instant,
    ) -> Result<State, Failure> {
        let c = self.config.connections[conn].clone();
        let octets = hs.signed_octets(true, true, &c.local_id);
        let mut inner = vec![id_to_payload(&c.local_id, true)];
        let (method, auth_data) =
            local_auth(&c, &octets, &hs.crypto, hs.peer_hashes.as_deref()).map_err(fatal)?;
        if let LocalAuth::Cert(cred) = &c.local_auth {
            // Our chain goes with every signature: the peer holds no certificates of ours.
            for cert in &cred.chain {
                inner.push(Payload::Cert {
                    encoding: CERT_X509_SIGNATURE,
                    data: cert.clone(),
                });
            }
        }
        if let RemoteAuth::Cert(store) = &c.remote_auth {
            inner.push(Payload::CertReq {
                encoding: CERT_X509_SIGNATURE,
                data: store.certreq_data(),
            });
        }
        if let Some(r) = &c.remote_id {
            inner.push(id_to_payload(r, false));
        }
        inner.push(Payload::Auth {
            method,
            data: auth_data,
        });
        inner.push(notify(NotifyType::INITIAL_CONTACT, Vec::new()));
        link.next_request_id = 1;
        let data = self.seal(link, &hs.crypto, ExchangeType::IKE_AUTH, false, 1, &inner)?;
        self.send_request(link, now, data, RequestKind::Setup);
        Ok(State::AuthSent(Box::new(ExpectAuthResponse { conn, hs })))
    }

    /// The responder's IKE_AUTH answer: its identity and proof, or an error.
    pub(super) fn auth_response(
        &mut self,
        link: &mut Link,
        a: ExpectAuthResponse,
        now: Instant,
        wall: SystemTime,
        p: &[Payload],
    ) -> Result<Box<Established>, Failure> {
        if let Some(e) = first_error(p) {
            // A Child SA error with an IKE SA that stands is not ours to see (we propose
            // none); any error here means no IKE SA.
            return Err(Failure::PeerError(e));
        }
        let conn = &self.config.connections[a.conn];
        let idr = id_payload(p, false)
            .ok_or_else(|| Failure::Protocol("no IDr".into()))?
            .map_err(|e| Failure::Protocol(format!("IDr: {e}")))?;
        if let Some(want) = &conn.remote_id
            && *want != idr
        {
            return Err(Failure::Authentication(format!(
                "responder is {idr}, not {want}"
            )));
        }
        let octets = a.hs.signed_octets(true, false, &idr);
        verify_peer(conn, &a.hs.crypto, &idr, p, &octets, wall).map_err(fatal)?;
        link.last_heard = now;
        let est = Established::new(a.conn, a.hs.crypto, idr, now);
        Ok(self.established(link, est, now))
    }

    /// The initiator's IKE_AUTH request to our half-open SA: it ends established or gone.
    pub(super) fn auth_request(
        &mut self,
        mut link: Link,
        hs: Handshake,
        now: Instant,
        wall: SystemTime,
        p: &[Payload],
    ) -> Option<IkeSa> {
        let remote = link.remote;
        let fail = |this: &mut Self, link: &mut Link, failure: Failure| -> Option<IkeSa> {
            tracing::warn!(%remote, spis = %link.spis, "IKE_AUTH refused: {failure}");
            let n = notify(NotifyType::AUTHENTICATION_FAILED, Vec::new());
            if let Err(e) = this.respond(link, &hs.crypto, ExchangeType::IKE_AUTH, vec![n]) {
                tracing::warn!(%remote, "IKE_AUTH: {e:?}");
            }
            this.events.push_back(Event::Failed {
                spis: link.spis,
                peer: remote,
                failure,
            });
            None
        };
        let idi = match id_payload(p, true) {
            Some(Ok(id)) => id,
            Some(Err(e)) => return fail(self, &mut link, Failure::Protocol(format!("IDi: {e}"))),
            None => return fail(self, &mut link, Failure::Protocol("no IDi".into())),
        };
        let wanted_idr = match id_payload(p, false) {
            Some(Ok(id)) => Some(id),
            Some(Err(e)) => return fail(self, &mut link, Failure::Protocol(format!("IDr: {e}"))),
            None => None,
        };
        let Some(idx) = self.config.connections.iter().position(|c| {
            let remote_ok = match (&c.remote_id, &c.remote_auth) {
                (Some(r), _) => *r == idi,
                (None, RemoteAuth::Cert(_)) => true,
                (None, RemoteAuth::Psk(_)) => false,
            };
            remote_ok && wanted_idr.as_ref().is_none_or(|w| *w == c.local_id)
        }) else {
            return fail(self, &mut link, Failure::NoConnection(idi.to_string()));
        };
        let conn = self.config.connections[idx].clone();
        let theirs = hs.signed_octets(false, true, &idi);
        let ours = hs.signed_octets(false, false, &conn.local_id);
        let proof = verify_peer(&conn, &hs.crypto, &idi, p, &theirs, wall)
            .and_then(|()| local_auth(&conn, &ours, &hs.crypto, hs.peer_hashes.as_deref()));
        let (method, auth_data) = match proof {
            Ok(a) => a,
            Err(Reject::Fail(f)) => return fail(self, &mut link, f),
            Err(d) => return fail(self, &mut link, Failure::Protocol(format!("{d:?}"))),
        };
        let mut inner = vec![id_to_payload(&conn.local_id, false)];
        if let LocalAuth::Cert(cred) = &conn.local_auth {
            for c in &cred.chain {
                inner.push(Payload::Cert {
                    encoding: CERT_X509_SIGNATURE,
                    data: c.clone(),
                });
            }
        }
        inner.push(Payload::Auth {
            method,
            data: auth_data,
        });
        // RFC 6023: a Child SA is not set up; the IKE SA stands (RFC 7296 §1.2).
        if sa_payload(p).is_some() {
            tracing::info!(%remote, "refusing the Child SA proposed in IKE_AUTH (childless)");
            inner.push(notify(NotifyType::NO_PROPOSAL_CHOSEN, Vec::new()));
        }
        if let Err(e) = self.respond(&mut link, &hs.crypto, ExchangeType::IKE_AUTH, inner) {
            self.log_drop(remote, Some(&link), e);
            return None;
        }
        self.half_open.remove(link.remote, link.spis);
        link.last_heard = now;
        link.next_request_id = 0;
        let est = Established::new(idx, hs.crypto, idi, now);
        let est = self.established(&link, est, now);
        Some(IkeSa {
            link,
            state: State::Established(est),
        })
    }

    /// An SA is up after IKE_AUTH: its rekey timer starts, and it is announced.
    pub(super) fn established(
        &mut self,
        link: &Link,
        est: Established,
        now: Instant,
    ) -> Box<Established> {
        let mut est = self.with_rekey_timer(est, now);
        self.announce(link, &mut est);
        est
    }

    /// Starts the rekey timer of a new SA: `rekey_time` less a random part of
    /// `rekey_rand_time` (RFC 7296 §2.8.1: jitter, so that two peers with the same lifetime
    /// do not rekey at once; strongSwan's rekey_time and rand_time).
    pub(super) fn with_rekey_timer(
        &mut self,
        mut est: Established,
        now: Instant,
    ) -> Box<Established> {
        // A rekey_time too far off for the clock means never.
        est.next_rekey = self
            .config
            .limits
            .rekey_time
            .and_then(|t| now.checked_add(t - self.rekey_jitter(t)));
        Box::new(est)
    }

    /// A uniform draw from [0, rand_time] (rand_time: a tenth of `t` unless configured,
    /// never more than `t`).
    fn rekey_jitter(&mut self, t: Duration) -> Duration {
        let window = self.config.limits.rekey_rand_time.unwrap_or(t / 10).min(t);
        let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        let mut b = [0u8; 8];
        if let Err(e) = self.rng.fill(&mut b) {
            // Without randomness the rekey comes at rekey_time: late jitter is no worse
            // than none, and the SA must not fail for it.
            tracing::debug!("rekey jitter: {e}");
            return Duration::ZERO;
        }
        // The bias of the modulo is below 2^-30 for any window under 17 years.
        Duration::from_nanos(u64::from_be_bytes(b) % nanos.saturating_add(1))
    }

    /// Tells the driver (and the log) that the SA is up.
    pub(super) fn announce(&mut self, link: &Link, est: &mut Established) {
        est.announced = true;
        let connection = self.config.connections[est.conn].name.clone();
        let peer_id = est.peer_id.to_string();
        tracing::info!(
            spis = %link.spis, peer = %link.remote, %peer_id, connection,
            proposal = %est.crypto.proposal, initiator = link.initiator,
            "IKE SA established"
        );
        self.events.push_back(Event::Established {
            spis: link.spis,
            connection,
            peer: link.remote,
            peer_id,
            initiator: link.initiator,
            proposal: est.crypto.proposal,
        });
    }
}
