//! CREATE_CHILD_SA rekeying the IKE SA (RFC 7296 §1.3.2, §2.18), either side's. Child SAs
//! there are none (RFC 6023): requests for them are refused.

use std::time::{Duration, Instant};

use crate::codepoints::{ExchangeType, NotifyType};
use crate::dh::DhPrivate;
use crate::message::Payload;
use crate::proposal::{IkeProposal, Selection, select};

use super::api::{Event, Failure, Spis};
use super::init::{MAX_INIT_RETRIES, ResponderPart};
use super::payloads::{
    find_notify, first_error, ke, nonce, notify, numbered, sa_payload, sa_payload_ike, wanted_group,
};
use super::sa::{
    Crossing, Crypto, Established, IkeSa, Link, Outstanding, QueuedRequest, Reject, RekeyRequest,
    RequestKind, State, derive, ignore,
};
use super::{Engine, NONCE_LEN};

/// After a refused rekey, the next attempt.
pub(super) const REKEY_RETRY: Duration = Duration::from_secs(60);

impl Engine {
    pub(super) fn start_rekey(
        &mut self,
        link: &mut Link,
        est: &mut Established,
        now: Instant,
    ) -> Result<(), Failure> {
        // Replaced, or a crossing rekey is still being decided: nothing to rekey.
        if est.superseded.is_some() || est.crossing.is_some() {
            return Ok(());
        }
        let current = est.crypto.proposal;
        // Offer the current proposal first, then the connection's (or the responder list).
        let mut proposals = vec![current];
        proposals.extend(self.pool(est.conn).into_iter().filter(|p| *p != current));
        let dh = self.dh(current.dh)?;
        let local = |e: super::api::RandomError| Failure::Local(e.to_string());
        let new_spi_i = self.random_spi().map_err(local)?;
        let ni = self.random_vec(NONCE_LEN).map_err(local)?;
        let data = self.rekey_request(link, &est.crypto, &proposals, new_spi_i, &ni, &dh)?;
        tracing::info!(spis = %link.spis, "rekeying IKE SA");
        self.send_request(
            link,
            now,
            data,
            RequestKind::Rekey(Box::new(RekeyRequest {
                new_spi_i,
                ni,
                dh,
                proposals,
                retries: 0,
            })),
        );
        Ok(())
    }

    fn rekey_request(
        &mut self,
        link: &Link,
        crypto: &Crypto,
        proposals: &[IkeProposal],
        new_spi_i: [u8; 8],
        ni: &[u8],
        dh: &DhPrivate,
    ) -> Result<Vec<u8>, Failure> {
        let props = numbered(proposals, &new_spi_i);
        let inner = vec![
            Payload::Sa(props),
            Payload::Nonce(ni.to_vec()),
            Payload::Ke {
                group: dh.group().id(),
                data: dh.public(),
            },
        ];
        self.seal(
            link,
            crypto,
            ExchangeType::CREATE_CHILD_SA,
            false,
            link.next_request_id,
            &inner,
        )
    }

    /// The answer to our rekey of the SA (`link`, `est`).
    pub(super) fn rekey_response(
        &mut self,
        link: &mut Link,
        est: &mut Established,
        now: Instant,
        mut r: RekeyRequest,
        p: &[Payload],
    ) -> Result<(), Reject> {
        if let Some(d) = find_notify(p, NotifyType::INVALID_KE_PAYLOAD)
            && let Some(g) = wanted_group(d)
            && r.retries < MAX_INIT_RETRIES
            && r.proposals.iter().any(|p| p.dh == g)
        {
            r.retries += 1;
            r.dh = self.dh(g)?;
            let data =
                self.rekey_request(link, &est.crypto, &r.proposals, r.new_spi_i, &r.ni, &r.dh)?;
            self.send_request(link, now, data, RequestKind::Rekey(Box::new(r)));
            return Ok(());
        }
        if let Some(e) = first_error(p) {
            if let Some(c) = est.crossing.take() {
                // The peer refused ours (TEMPORARY_FAILURE: it had rekeyed already, §2.8.2);
                // its rekey, which we answered, stands alone.
                tracing::info!(spis = %link.spis, "our crossing rekey refused ({e:?}); the peer's stands");
                self.crossing_resolved(link, est, c, now);
                return Ok(());
            }
            // The old SA stands; try again later.
            tracing::warn!(spis = %link.spis, "rekey refused by the peer: {e:?}");
            est.next_rekey = Some(now + REKEY_RETRY);
            return Ok(());
        }
        let props = sa_payload(p).ok_or_else(|| ignore("rekey response without SA"))?;
        let [chosen] = props else {
            return Err(ignore("rekey response must choose one proposal"));
        };
        let proposal = IkeProposal::from_selected(chosen)
            .filter(|c| r.proposals.contains(c))
            .ok_or_else(|| ignore("rekey response chose what we did not offer"))?;
        let spi_r: [u8; 8] = chosen
            .spi
            .as_slice()
            .try_into()
            .map_err(|_| ignore("rekey response SPI is not 8 octets"))?;
        let (group, ke_data) = ke(p).ok_or_else(|| ignore("rekey response without KE"))?;
        if group != proposal.dh.id() || r.dh.group() != proposal.dh {
            return Err(ignore("rekey KE of another group"));
        }
        let nr = nonce(p).ok_or_else(|| ignore("rekey response without nonce"))?;
        let g_ir =
            r.dh.shared(ke_data)
                .map_err(|e| ignore(format!("rekey KE: {e}")))?;
        let new_spis = Spis {
            i: r.new_spi_i,
            r: spi_r,
        };
        let crypto = derive(
            proposal,
            &r.ni,
            nr,
            &g_ir,
            new_spis,
            true,
            Some(&est.crypto.keys),
        )?;
        let new_link = Link::new(new_spis, true, link.local, link.remote, now);
        let new = Established::new(est.conn, crypto, est.peer_id.clone(), now);
        // §2.8.1/§2.8.2: when both rekeyed at once, the new SA whose exchange has the lowest
        // of the four nonces is redundant, and its creator (the rekey's initiator) deletes
        // it. An SA already replaced otherwise leaves ours redundant too: never two SAs.
        let crossing = est.crossing.take();
        let ours_redundant = match &crossing {
            Some(c) => lowest(&r.ni, nr) < lowest(&c.ni, &c.nr),
            None => est.superseded.is_some(),
        };
        if ours_redundant {
            tracing::info!(old = %link.spis, redundant = %new_spis, "crossing rekeys: ours is redundant; deleting it");
            let new = self.with_rekey_timer(new, now);
            let mut sa = IkeSa {
                link: new_link,
                state: State::Established(new),
            };
            sa.link.queued.push_back(QueuedRequest::Delete);
            self.pump(&mut sa, now);
            self.put_back(sa);
            // The peer initiated the survivor; it deletes the old SA (and we do after a
            // grace if it does not).
            if let Some(c) = crossing {
                self.crossing_resolved(link, est, c, now);
            }
            return Ok(());
        }
        if let Some(c) = crossing {
            tracing::info!(old = %link.spis, survivor = %new_spis, "crossing rekeys: ours survives; the peer deletes its own");
            // Should the peer not delete its redundant SA, it goes like any replaced SA.
            if let Some(State::Established(theirs)) = self.sas.get_mut(&c.key).map(|s| &mut s.state)
            {
                theirs.superseded = Some(now);
            }
        }
        self.rekeyed(link, est, new_link, new, now);
        // We initiated the surviving rekey: we delete the old SA (§2.8).
        link.queued.clear();
        link.queued.push_back(QueuedRequest::Delete);
        Ok(())
    }

    /// A crossing rekey is decided for the peer's new SA: it is announced as replacing the
    /// old SA (`old_link`, `old`), which its initiator, the peer, deletes.
    pub(super) fn crossing_resolved(
        &mut self,
        old_link: &Link,
        old: &mut Established,
        c: Crossing,
        now: Instant,
    ) {
        old.superseded = Some(now);
        self.retire(old_link.spis, old_link.remote.ip(), &old.ippm_secret, now);
        let Some(mut sa) = self.sas.remove(&c.key) else {
            return;
        };
        if let State::Established(new) = &mut sa.state {
            self.announce(&sa.link, new);
            tracing::info!(old = %old_link.spis, new = %sa.link.spis, "IKE SA rekeyed");
            self.events.push_back(Event::Rekeyed {
                old: old_link.spis,
                new: sa.link.spis,
            });
        }
        self.put_back(sa);
    }

    /// `new` replaces the SA (`old_link`, `old`).
    fn rekeyed(
        &mut self,
        old_link: &Link,
        old: &mut Established,
        new_link: Link,
        new: Established,
        now: Instant,
    ) {
        old.superseded = Some(now);
        self.retire(old_link.spis, old_link.remote.ip(), &old.ippm_secret, now);
        let new = self.established(&new_link, new, now);
        tracing::info!(old = %old_link.spis, new = %new_link.spis, "IKE SA rekeyed");
        self.events.push_back(Event::Rekeyed {
            old: old_link.spis,
            new: new_link.spis,
        });
        self.sas.insert(
            new_link.key(),
            IkeSa {
                link: new_link,
                state: State::Established(new),
            },
        );
    }

    /// The peer's CREATE_CHILD_SA request on an established SA.
    pub(super) fn create_child_request(
        &mut self,
        link: &mut Link,
        est: &mut Established,
        now: Instant,
        p: &[Payload],
    ) -> Result<bool, Reject> {
        let ex = ExchangeType::CREATE_CHILD_SA;
        let Some(props) = sa_payload_ike(p) else {
            // A new Child SA, or a Child SA rekey: there are none here.
            let n = if find_notify(p, NotifyType::REKEY_SA).is_some() {
                NotifyType::CHILD_SA_NOT_FOUND
            } else {
                NotifyType::NO_ADDITIONAL_SAS
            };
            tracing::info!(spis = %link.spis, "refusing a Child SA (childless IKE SA)");
            self.respond(link, &est.crypto, ex, vec![notify(n, Vec::new())])?;
            return Ok(true);
        };
        if est.superseded.is_some() || est.crossing.is_some() {
            // Rekeyed already (§2.8.2: an SA we are closing).
            let n = notify(NotifyType::TEMPORARY_FAILURE, Vec::new());
            self.respond(link, &est.crypto, ex, vec![n])?;
            return Ok(true);
        }
        let (group, ke_data) = ke(p).ok_or_else(|| ignore("rekey without KE"))?;
        let ni = nonce(p)
            .ok_or_else(|| ignore("rekey without nonce"))?
            .to_vec();
        let pool = self.pool(est.conn);
        let (num, proposal) = match select(&pool, props, Some(group)) {
            Selection::Chosen { num, proposal } => (num, proposal),
            Selection::WrongGroup(g) => {
                let n = notify(
                    NotifyType::INVALID_KE_PAYLOAD,
                    g.id().to_be_bytes().to_vec(),
                );
                self.respond(link, &est.crypto, ex, vec![n])?;
                return Ok(true);
            }
            Selection::None => {
                let n = notify(NotifyType::NO_PROPOSAL_CHOSEN, Vec::new());
                self.respond(link, &est.crypto, ex, vec![n])?;
                return Ok(true);
            }
        };
        let chosen = props
            .iter()
            .find(|x| x.num == num)
            .ok_or_else(|| ignore("chosen proposal vanished"))?;
        let spi_i: [u8; 8] = chosen
            .spi
            .as_slice()
            .try_into()
            .map_err(|_| ignore("rekey SPI is not 8 octets"))?;
        let ResponderPart {
            dh,
            g_ir,
            spi_r,
            nr,
        } = self.responder_contribution(proposal.dh, ke_data)?;
        let new_spis = Spis { i: spi_i, r: spi_r };
        let crypto = derive(
            proposal,
            &ni,
            &nr,
            &g_ir,
            new_spis,
            false,
            Some(&est.crypto.keys),
        )?;
        let inner = vec![
            Payload::Sa(vec![proposal.to_wire(num, &spi_r)]),
            Payload::Nonce(nr.clone()),
            Payload::Ke {
                group: proposal.dh.id(),
                data: dh.public(),
            },
        ];
        self.respond(link, &est.crypto, ex, inner)?;
        let new_link = Link::new(new_spis, false, link.local, link.remote, now);
        let new = Established::new(est.conn, crypto, est.peer_id.clone(), now);
        let ours_outstanding = matches!(
            link.outstanding,
            Some(Outstanding {
                kind: RequestKind::Rekey(_),
                ..
            })
        );
        if ours_outstanding {
            // Both rekey at once (§2.8.2): answered as usual, the choice waits for the
            // answer to ours, which brings the fourth nonce.
            tracing::info!(spis = %link.spis, "the peer's rekey crosses ours");
            est.crossing = Some(Crossing {
                key: new_link.key(),
                ni,
                nr,
            });
            let new = self.with_rekey_timer(new, now);
            self.put_back(IkeSa {
                link: new_link,
                state: State::Established(new),
            });
            return Ok(true);
        }
        self.rekeyed(link, est, new_link, new, now);
        // The peer deletes the old SA; a rekey of ours not yet sent is moot.
        link.queued.retain(|q| *q != QueuedRequest::Rekey);
        Ok(true)
    }
}

/// The lower of an exchange's two nonces, octet by octet, a prefix being the lower
/// (§2.8.1; the order of slices).
fn lowest<'a>(a: &'a [u8], b: &'a [u8]) -> &'a [u8] {
    a.min(b)
}
