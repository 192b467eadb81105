//! INFORMATIONAL exchanges (RFC 7296 §1.4): our Delete and liveness checks, and the peer's.

use std::time::Instant;

use crate::codepoints::{ExchangeType, ProtocolId};
use crate::message::Payload;

use super::Engine;
use super::api::{DeleteReason, Event, Failure};
use super::sa::{Crypto, Established, Link, Reject, RequestKind};

impl Engine {
    pub(super) fn start_delete(
        &mut self,
        link: &mut Link,
        est: &mut Established,
        now: Instant,
    ) -> Result<(), Failure> {
        let data = self.informational(
            link,
            &est.crypto,
            vec![Payload::Delete {
                protocol: ProtocolId::IKE,
                spi_size: 0,
                spis: Vec::new(),
            }],
        )?;
        tracing::info!(spis = %link.spis, peer = %link.remote, "deleting IKE SA");
        est.deleting = true;
        link.queued.clear();
        self.send_request(link, now, data, RequestKind::Delete);
        Ok(())
    }

    /// An INFORMATIONAL request of ours with `inner` (empty: a liveness check).
    pub(super) fn informational(
        &mut self,
        link: &Link,
        crypto: &Crypto,
        inner: Vec<Payload>,
    ) -> Result<Vec<u8>, Failure> {
        self.seal(
            link,
            crypto,
            ExchangeType::INFORMATIONAL,
            false,
            link.next_request_id,
            &inner,
        )
    }

    /// The peer's INFORMATIONAL request. Returns false when the SA is to go.
    pub(super) fn informational_request(
        &mut self,
        link: &mut Link,
        est: &mut Established,
        now: Instant,
        p: &[Payload],
    ) -> Result<bool, Reject> {
        let delete_ike = p
            .iter()
            .any(|x| matches!(x, Payload::Delete { protocol, .. } if *protocol == ProtocolId::IKE));
        if delete_ike {
            self.respond(link, &est.crypto, ExchangeType::INFORMATIONAL, Vec::new())?;
            if let Some(c) = est.crossing.take() {
                // The peer rekeyed this SA while we did and deletes it without waiting for
                // our rekey: it did not see the crossing, and its new SA is the one (§2.8.2).
                // Ours, outstanding, goes with this SA.
                self.crossing_resolved(link, est, c, now);
            }
            tracing::info!(spis = %link.spis, peer = %link.remote, "IKE SA deleted by the peer");
            if est.announced {
                self.events.push_back(Event::Deleted {
                    spis: link.spis,
                    reason: DeleteReason::ByPeer,
                });
            }
            return Ok(false);
        }
        // Deletes of Child SAs we never had get an empty answer; so do liveness checks and
        // status notifications.
        for x in p {
            if let Payload::Notify { ty, .. } = x
                && ty.is_error()
            {
                tracing::warn!(spis = %link.spis, "peer reports {ty:?}");
            }
        }
        self.respond(link, &est.crypto, ExchangeType::INFORMATIONAL, Vec::new())?;
        Ok(true)
    }
}
