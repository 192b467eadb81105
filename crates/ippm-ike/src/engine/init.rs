//! IKE_SA_INIT (RFC 7296 §1.2): as initiator (with the COOKIE and INVALID_KE_PAYLOAD
//! retries of §2.6 and §1.2) and as responder (once [`cookies`](super::cookies) admits the
//! request).

use std::net::SocketAddr;
use std::time::Instant;

use zeroize::Zeroizing;

use crate::auth;
use crate::codepoints::{ExchangeType, NotifyType};
use crate::config::{Connection, RemoteAuth};
use crate::dh::{DhGroup, DhPrivate};
use crate::message::{Flags, Header, Message, Payload};
use crate::proposal::{IkeProposal, Selection, select};

use super::api::{EngineError, Failure, Spis, Transmit};
use super::payloads::{
    CERT_X509_SIGNATURE, find_notify, first_error, ke, nonce, notify, numbered, sa_payload,
    wanted_group,
};
use super::sa::{
    ExpectInitResponse, Handshake, IkeSa, Link, Reject, RequestKind, State, derive, ignore,
};
use super::{Engine, NONCE_LEN};

/// IKE_SA_INIT retries after COOKIE or INVALID_KE_PAYLOAD before giving up.
pub(super) const MAX_INIT_RETRIES: u8 = 3;

/// What a responder contributes to a new IKE SA.
pub(super) struct ResponderPart {
    pub dh: DhPrivate,
    pub g_ir: Zeroizing<Vec<u8>>,
    pub spi_r: [u8; 8],
    pub nr: Vec<u8>,
}

fn violation(why: impl Into<String>) -> Failure {
    Failure::Protocol(why.into())
}

impl Engine {
    /// Starts an IKE SA for connection `name` to its configured address (or `remote`).
    pub fn initiate(
        &mut self,
        now: Instant,
        name: &str,
        local: SocketAddr,
        remote: Option<SocketAddr>,
    ) -> Result<Spis, EngineError> {
        let idx = self
            .config
            .connections
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| EngineError::UnknownConnection(name.to_owned()))?;
        let conn = &self.config.connections[idx];
        let remote = remote
            .or(conn.remote_addr)
            .ok_or_else(|| EngineError::NoRemoteAddress(name.to_owned()))?;
        let l = &self.config.limits;
        if self.sas.len() >= l.established_max + l.half_open_max {
            return Err(EngineError::Local(format!(
                "{} IKE SAs: the limit (established_max + half_open_max) is reached",
                self.sas.len()
            )));
        }
        let local_err = |e: &dyn std::fmt::Display| EngineError::Local(e.to_string());
        let first = *conn
            .proposals
            .first()
            .ok_or_else(|| EngineError::Local(format!("connection {name:?} has no proposals")))?;
        let spi_i = self.random_spi().map_err(|e| local_err(&e))?;
        let ni = self.random_vec(NONCE_LEN).map_err(|e| local_err(&e))?;
        let dh = self.dh(first.dh).map_err(|e| local_err(&e))?;
        let spis = Spis {
            i: spi_i,
            r: [0; 8],
        };
        let mut link = Link::new(spis, true, local, remote, now);
        let mut e = ExpectInitResponse {
            conn: idx,
            dh,
            ni,
            cookie: None,
            retries: 0,
            own_init: Vec::new(),
        };
        tracing::info!(connection = name, %remote, %spis, "initiating IKE SA");
        self.send_init(&mut link, &mut e, now)
            .map_err(|e| local_err(&e))?;
        self.sas.insert(
            spi_i,
            IkeSa {
                link,
                state: State::InitSent(Box::new(e)),
            },
        );
        Ok(spis)
    }

    /// Sends (or sends again, after a COOKIE or INVALID_KE_PAYLOAD) our IKE_SA_INIT request.
    fn send_init(
        &mut self,
        link: &mut Link,
        e: &mut ExpectInitResponse,
        now: Instant,
    ) -> Result<(), Failure> {
        let data = init_request(&self.config.connections[e.conn], e, link)?;
        e.own_init.clone_from(&data);
        // IKE_SA_INIT is message 0, however often it is sent (§2.2).
        link.next_request_id = 0;
        self.send_request(link, now, data, RequestKind::Setup);
        Ok(())
    }

    /// The responder's answer to our IKE_SA_INIT: a retry, or keys and our IKE_AUTH.
    pub(super) fn init_response(
        &mut self,
        link: &mut Link,
        mut e: ExpectInitResponse,
        now: Instant,
        data: &[u8],
        msg: &Message,
        p: &[Payload],
    ) -> Result<State, Failure> {
        if let Some(cookie) = find_notify(p, NotifyType::COOKIE) {
            if e.retries >= MAX_INIT_RETRIES || cookie.is_empty() || cookie.len() > 64 {
                return Err(violation("repeated or invalid COOKIE"));
            }
            e.retries += 1;
            e.cookie = Some(cookie.to_vec());
            self.send_init(link, &mut e, now)?;
            return Ok(State::InitSent(Box::new(e)));
        }
        let conn = &self.config.connections[e.conn];
        if let Some(d) = find_notify(p, NotifyType::INVALID_KE_PAYLOAD) {
            let group = wanted_group(d);
            let ours = group.is_some_and(|g| conn.proposals.iter().any(|p| p.dh == g));
            match group {
                Some(g) if ours && e.retries < MAX_INIT_RETRIES => {
                    tracing::debug!(spis = %link.spis, "peer asks for DH group {g:?}");
                    e.retries += 1;
                    e.dh = self.dh(g)?;
                    self.send_init(link, &mut e, now)?;
                    return Ok(State::InitSent(Box::new(e)));
                }
                _ => return Err(Failure::PeerError(NotifyType::INVALID_KE_PAYLOAD)),
            }
        }
        if let Some(err) = first_error(p) {
            return Err(Failure::PeerError(err));
        }
        if msg.header.spi_r == [0; 8] {
            return Err(violation("IKE_SA_INIT response without SPIr"));
        }
        let props = sa_payload(p).ok_or_else(|| violation("no SA payload"))?;
        let [chosen] = props else {
            return Err(violation("the responder must choose one proposal"));
        };
        let proposal = IkeProposal::from_selected(chosen)
            .ok_or_else(|| violation("the chosen proposal is not well formed or unsupported"))?;
        if !conn.proposals.contains(&proposal) {
            return Err(violation(format!(
                "the responder chose {proposal}, which we did not offer"
            )));
        }
        let (group, ke_data) = ke(p).ok_or_else(|| violation("no KE payload"))?;
        if group != proposal.dh.id() || e.dh.group() != proposal.dh {
            return Err(violation("KE payload of another group than the chosen one"));
        }
        let nr = nonce(p).ok_or_else(|| violation("no nonce"))?.to_vec();
        if find_notify(p, NotifyType::CHILDLESS_IKEV2_SUPPORTED).is_none() {
            return Err(violation(
                "the responder does not support childless IKE SAs (RFC 6023, CHILDLESS_IKEV2_SUPPORTED)",
            ));
        }
        let g_ir =
            e.dh.shared(ke_data)
                .map_err(|err| violation(format!("responder's KE payload: {err}")))?;
        link.spis.r = msg.header.spi_r;
        let crypto = derive(proposal, &e.ni, &nr, &g_ir, link.spis, true, None)?;
        let hs = Handshake {
            crypto,
            ni: e.ni,
            nr,
            own_init: e.own_init,
            // The octets as received are what the responder signed.
            peer_init: data.to_vec(),
            peer_hashes: find_notify(p, NotifyType::SIGNATURE_HASH_ALGORITHMS)
                .and_then(|d| auth::parse_hash_algorithms(d).ok()),
        };
        // Our Diffie-Hellman key goes with `e.dh` here: the state after this has none.
        self.send_auth(link, e.conn, hs, now)
    }

    /// An IKE_SA_INIT request: answered here once [`Engine::admit_init`] lets it through.
    pub(super) fn respond_init(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        msg: &Message,
    ) -> Result<(), Reject> {
        let h = msg.header;
        let p = &msg.payloads;
        if !self.admit_init(now, local, remote, data, msg)? {
            return Ok(());
        }
        let ni = nonce(p).ok_or_else(|| ignore("IKE_SA_INIT without a nonce"))?;
        let theirs = sa_payload(p).ok_or_else(|| ignore("IKE_SA_INIT without an SA payload"))?;
        let (group, ke_data) = ke(p).ok_or_else(|| ignore("IKE_SA_INIT without a KE payload"))?;
        let (num, proposal) = match select(&self.config.proposals, theirs, Some(group)) {
            Selection::Chosen { num, proposal } => (num, proposal),
            Selection::WrongGroup(g) => {
                tracing::debug!(%remote, "asking for DH group {g:?} (INVALID_KE_PAYLOAD)");
                let n = notify(
                    NotifyType::INVALID_KE_PAYLOAD,
                    g.id().to_be_bytes().to_vec(),
                );
                self.answer_unprotected(local, remote, h, n);
                return Ok(());
            }
            Selection::None => {
                tracing::warn!(%remote, "no acceptable IKE proposal");
                let n = notify(NotifyType::NO_PROPOSAL_CHOSEN, Vec::new());
                self.answer_unprotected(local, remote, h, n);
                return Ok(());
            }
        };
        let ResponderPart {
            dh,
            g_ir,
            spi_r,
            nr,
        } = self.responder_contribution(proposal.dh, ke_data)?;
        let spis = Spis {
            i: h.spi_i,
            r: spi_r,
        };
        let crypto = derive(proposal, ni, &nr, &g_ir, spis, false, None)?;
        let mut link = Link::new(spis, false, local, remote, now);
        let peer_hashes = find_notify(p, NotifyType::SIGNATURE_HASH_ALGORITHMS)
            .and_then(|d| auth::parse_hash_algorithms(d).ok());
        let mut out = vec![
            Payload::Sa(vec![proposal.to_wire(num, &[])]),
            Payload::Ke {
                group: proposal.dh.id(),
                data: dh.public(),
            },
            Payload::Nonce(nr.clone()),
        ];
        let certreq = self.certreq_data();
        if !certreq.is_empty() {
            out.push(Payload::CertReq {
                encoding: CERT_X509_SIGNATURE,
                data: certreq,
            });
        }
        out.push(notify(NotifyType::CHILDLESS_IKEV2_SUPPORTED, Vec::new()));
        if peer_hashes.is_some() {
            out.push(notify(
                NotifyType::SIGNATURE_HASH_ALGORITHMS,
                auth::hash_algorithms_notify_data(),
            ));
        }
        let resp = Message {
            header: link.header(ExchangeType::IKE_SA_INIT, true, 0),
            payloads: out,
        }
        .emit()
        .map_err(|e| Reject::Fail(Failure::Local(e.to_string())))?;
        link.last_response = Some((0, resp.clone()));
        link.peer_next_id = 1;
        self.transmits.push_back(Transmit {
            local,
            remote,
            data: resp.clone(),
        });
        tracing::debug!(%remote, %spis, %proposal, "IKE_SA_INIT answered");
        let hs = Handshake {
            crypto,
            ni: ni.to_vec(),
            nr,
            own_init: resp,
            peer_init: data.to_vec(),
            peer_hashes,
        };
        self.half_open.insert(remote, spis);
        self.sas.insert(
            spi_r,
            IkeSa {
                link,
                state: State::InitAnswered(Box::new(hs)),
            },
        );
        Ok(())
    }

    /// A responder's part of a new IKE SA (IKE_SA_INIT, or a rekey): its Diffie-Hellman key
    /// and the shared secret with the initiator's KE data, its SPI and its nonce.
    pub(super) fn responder_contribution(
        &mut self,
        group: DhGroup,
        ke_data: &[u8],
    ) -> Result<ResponderPart, Reject> {
        let dh = self.dh(group)?;
        let g_ir = dh
            .shared(ke_data)
            .map_err(|e| ignore(format!("the initiator's KE payload: {e}")))?;
        let spi_r = self.random_spi()?;
        let nr = self.random_vec(NONCE_LEN)?;
        Ok(ResponderPart {
            dh,
            g_ir,
            spi_r,
            nr,
        })
    }

    fn certreq_data(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for c in &self.config.connections {
            if let RemoteAuth::Cert(store) = &c.remote_auth {
                let d = store.certreq_data();
                // The same CA in several connections is asked for once.
                for h in d.chunks(20) {
                    if !out.chunks(20).any(|o| o == h) {
                        out.extend_from_slice(h);
                    }
                }
            }
        }
        out
    }

    /// An unprotected IKE_SA_INIT answer (COOKIE, INVALID_KE_PAYLOAD, NO_PROPOSAL_CHOSEN).
    pub(super) fn answer_unprotected(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        h: Header,
        n: Payload,
    ) {
        let header = Header {
            spi_i: h.spi_i,
            spi_r: [0; 8],
            exchange: ExchangeType::IKE_SA_INIT,
            flags: Flags(Flags::RESPONSE),
            message_id: 0,
        };
        if let Ok(data) = (Message {
            header,
            payloads: vec![n],
        })
        .emit()
        {
            self.transmits.push_back(Transmit {
                local,
                remote,
                data,
            });
        }
    }
}

/// Our IKE_SA_INIT request for `conn`, with the KE of `e`'s key and its COOKIE, if any.
fn init_request(
    conn: &Connection,
    e: &ExpectInitResponse,
    link: &Link,
) -> Result<Vec<u8>, Failure> {
    let group = e.dh.group();
    // The group of the KE payload goes first, so the responder need not retry.
    let mut proposals: Vec<IkeProposal> = conn
        .proposals
        .iter()
        .filter(|p| p.dh == group)
        .copied()
        .collect();
    proposals.extend(conn.proposals.iter().filter(|p| p.dh != group));
    let mut payloads = Vec::new();
    if let Some(c) = &e.cookie {
        payloads.push(notify(NotifyType::COOKIE, c.clone()));
    }
    payloads.extend([
        Payload::Sa(numbered(&proposals, &[])),
        Payload::Ke {
            group: group.id(),
            data: e.dh.public(),
        },
        Payload::Nonce(e.ni.clone()),
        notify(NotifyType::CHILDLESS_IKEV2_SUPPORTED, Vec::new()),
        notify(
            NotifyType::SIGNATURE_HASH_ALGORITHMS,
            auth::hash_algorithms_notify_data(),
        ),
    ]);
    Message {
        header: link.header(ExchangeType::IKE_SA_INIT, false, 0),
        payloads,
    }
    .emit()
    .map_err(|e| Failure::Local(e.to_string()))
}
