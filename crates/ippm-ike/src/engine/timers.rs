//! Timers: retransmission of our requests (§2.1), half-open expiry, rekeys, liveness checks
//! (§2.4), the deletion of SAs a peer's rekey replaced, and the window of one outstanding
//! request per direction (§2.3).

use std::time::{Duration, Instant};

use crate::config::Limits;

use super::Engine;
use super::api::{DeleteReason, Event, Failure, Transmit};
use super::sa::{IkeSa, Outstanding, QueuedRequest, RequestKind, State};

/// How long an SA replaced by a peer's rekey waits for the peer's Delete before we send one.
pub(super) const SUPERSEDED_GRACE: Duration = Duration::from_secs(30);

impl Engine {
    /// When [`Engine::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let l = &self.config.limits;
        self.sas
            .values()
            .flat_map(|s| {
                let link = &s.link;
                let retransmit = link.outstanding.as_ref().map(|o| o.next);
                let half_open = matches!(s.state, State::InitAnswered(_))
                    .then(|| link.created + l.half_open_timeout);
                let est = s.state.up();
                let rekey = est
                    .filter(|e| e.superseded.is_none())
                    .and_then(|e| e.next_rekey);
                let stale = est
                    .and_then(|e| e.superseded)
                    .filter(|_| !link.queued.contains(&QueuedRequest::Delete))
                    .map(|t| t + SUPERSEDED_GRACE);
                let idle = est.is_some() && link.outstanding.is_none() && link.queued.is_empty();
                let dpd = l.dpd_delay.filter(|_| idle).map(|d| link.last_heard + d);
                [retransmit, half_open, rekey, dpd, stale]
            })
            .flatten()
            .chain(self.retired.iter().map(|r| r.until))
            .min()
    }

    /// Runs the timers: retransmissions, dead peers, half-open expiry, rekeys, liveness.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.retired.retain(|r| r.until > now);
        self.half_open.flush_drops(now);
        let keys: Vec<[u8; 8]> = self.sas.keys().copied().collect();
        for key in keys {
            let Some(mut sa) = self.sas.remove(&key) else {
                continue;
            };
            if self.run_timers(&mut sa, now) {
                self.put_back(sa);
            } else {
                self.forget(sa.link.remote, sa.link.spis);
            }
        }
    }

    /// Returns false when the SA is to go.
    fn run_timers(&mut self, sa: &mut IkeSa, now: Instant) -> bool {
        let l = self.config.limits.clone();
        let link = &mut sa.link;
        if matches!(sa.state, State::InitAnswered(_)) && now >= link.created + l.half_open_timeout {
            tracing::debug!(spis = %link.spis, peer = %link.remote, "half-open IKE SA expired");
            return false;
        }
        if link
            .outstanding
            .as_ref()
            .is_some_and(|o| now >= o.next && o.sent >= l.retransmit_tries)
            && let Some(o) = link.outstanding.take()
        {
            self.request_timed_out(sa, o.kind, now);
            return false;
        }
        if let Some(o) = link.outstanding.as_mut()
            && now >= o.next
        {
            o.sent += 1;
            o.next = now + retransmit_delay(&l, o.sent);
            tracing::debug!(spis = %link.spis, id = o.message_id, n = o.sent, "retransmitting");
            self.transmits.push_back(Transmit {
                local: link.local,
                remote: link.remote,
                data: o.data.clone(),
            });
        }
        if let State::Established(est) = &mut sa.state
            && !est.deleting
        {
            // A peer that rekeyed should have deleted the old SA by now (§2.8); one that
            // does not (or a Delete that got lost) must not leave SAs piling up.
            if est.superseded.is_some_and(|t| now >= t + SUPERSEDED_GRACE)
                && !link.queued.contains(&QueuedRequest::Delete)
            {
                link.queued.push_back(QueuedRequest::Delete);
                // Should the Delete not go out (no randomness), try again a grace later.
                est.superseded = Some(now);
            }
            if est.next_rekey.is_some_and(|t| now >= t) && est.superseded.is_none() {
                est.next_rekey = None;
                if !link.queued.contains(&QueuedRequest::Rekey) {
                    link.queued.push_back(QueuedRequest::Rekey);
                }
            }
        }
        // After the queued requests: one that could not go out (no randomness for it) leaves
        // the window idle, and the liveness check must then be tried (and postponed if it
        // cannot go either), not left due for the next poll_timeout.
        self.pump(sa, now);
        let link = &mut sa.link;
        if let State::Established(est) = &sa.state
            && !est.deleting
            && let Some(d) = l.dpd_delay
            && now >= link.last_heard + d
            && link.outstanding.is_none()
            && link.queued.is_empty()
        {
            match self.informational(link, &est.crypto, Vec::new()) {
                Ok(data) => self.send_request(link, now, data, RequestKind::Liveness),
                Err(e) => {
                    tracing::warn!(spis = %link.spis, "liveness check: {e}");
                    // Try again a delay later rather than at once.
                    link.last_heard = now;
                }
            }
        }
        true
    }

    fn request_timed_out(&mut self, sa: &mut IkeSa, kind: RequestKind, now: Instant) {
        let (spis, peer) = (sa.link.spis, sa.link.remote);
        if let State::Established(est) = &mut sa.state
            && let Some(c) = est.crossing.take()
        {
            // The peer rekeyed this SA (we answered) and then fell silent on it: its new SA
            // is the only one there can be.
            self.crossing_resolved(&sa.link, est, c, now);
        }
        if !sa.state.announced() {
            tracing::debug!(%spis, %peer, "unannounced IKE SA gone (no answer)");
            return;
        }
        match kind {
            RequestKind::Setup => {
                tracing::warn!(%spis, %peer, "no answer to IKE SA set-up");
                self.events.push_back(Event::Failed {
                    spis,
                    peer,
                    failure: Failure::Timeout,
                });
            }
            RequestKind::Delete => {
                self.events.push_back(Event::Deleted {
                    spis,
                    reason: DeleteReason::ByUs,
                });
            }
            RequestKind::Liveness | RequestKind::Rekey(_) => {
                tracing::warn!(%spis, %peer, "peer stopped answering; IKE SA deleted");
                self.events.push_back(Event::Deleted {
                    spis,
                    reason: DeleteReason::PeerDead,
                });
            }
        }
    }

    /// Sends a request of ours (IKE_SA_INIT is always message 0) and keeps it for
    /// retransmission.
    pub(super) fn send_request(
        &mut self,
        link: &mut super::sa::Link,
        now: Instant,
        data: Vec<u8>,
        kind: RequestKind,
    ) {
        let message_id = link.next_request_id;
        link.next_request_id = link.next_request_id.wrapping_add(1);
        self.transmits.push_back(Transmit {
            local: link.local,
            remote: link.remote,
            data: data.clone(),
        });
        link.outstanding = Some(Outstanding {
            message_id,
            data,
            kind,
            sent: 1,
            next: now + retransmit_delay(&self.config.limits, 1),
        });
    }

    /// Sends the next queued request if the window is free.
    pub(super) fn pump(&mut self, sa: &mut IkeSa, now: Instant) {
        loop {
            let State::Established(est) = &mut sa.state else {
                return;
            };
            if sa.link.outstanding.is_some() || est.deleting {
                return;
            }
            let Some(req) = sa.link.queued.pop_front() else {
                return;
            };
            let res = match req {
                QueuedRequest::Delete => self.start_delete(&mut sa.link, est, now),
                QueuedRequest::Rekey => self.start_rekey(&mut sa.link, est, now),
            };
            if let Err(e) = res {
                tracing::warn!(spis = %sa.link.spis, "{req:?}: {e}");
                // A rekey that could not go out (no randomness) is tried again later, not
                // forgotten; a Delete is queued again by its own timer.
                if req == QueuedRequest::Rekey {
                    est.next_rekey = Some(now + super::rekey::REKEY_RETRY);
                }
            }
        }
    }
}

pub(super) fn retransmit_delay(l: &Limits, sent: u32) -> Duration {
    let f = l
        .retransmit_base
        .powi(i32::try_from(sent.saturating_sub(1)).unwrap_or(i32::MAX));
    l.retransmit_timeout.mul_f64(f.min(1e6))
}
