//! Where the STAMP reflector's HMAC keys come from: a static key (a key file), or the IKEv2
//! SAs with the sender (ippm's extension of RFC 7717 to STAMP, docs/stamp.md).
//!
//! The rule both ends follow across rekeys: the sender keys its packets from its newest IKE
//! SA with the reflector; the reflector accepts the key of any SA with the packet's source
//! address that is established or was retired within the IKE grace period, newest first,
//! and answers with the key that verified. Nothing in the packet names the SA (STAMP has no
//! field for it), so the reflector tries the few candidates, the last one that verified
//! first: one HMAC per packet in the steady state, two during a rekey.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ippm_proto::stamp::StampKey;

use crate::ike::IkeHandle;

/// How a range of sources is keyed.
#[derive(Clone, Default)]
pub enum StampKeys {
    /// No key: unauthenticated mode without TLV integrity.
    #[default]
    None,
    /// One key (from a key file).
    Static(Arc<StampKey>),
    /// From the IKE SAs with the source ([`StampKey::from_ike`]).
    Ike(IkeHandle),
}

impl std::fmt::Debug for StampKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "None",
            Self::Static(_) => "Static([redacted])",
            Self::Ike(_) => "Ike",
        })
    }
}

impl StampKeys {
    /// Whether packets can be checked (a key, or keys to come from IKE).
    pub fn is_some(&self) -> bool {
        !matches!(self, Self::None)
    }
}

/// How long a source's IKE-derived keys are used before they are looked up again, and how
/// soon after a miss (no key verified) they may be.
const FRESH: Duration = Duration::from_secs(1);
const AFTER_MISS: Duration = Duration::from_millis(100);
/// Sources whose keys are cached at most (a flood of forged sources is rate-limited before
/// this, and a lookup for an address without an SA costs one lock and finds nothing).
const MAX_CACHED: usize = 4096;
/// Candidates tried per packet at most: the newest SAs.
const MAX_CANDIDATES: usize = 4;

struct Entry {
    fetched: Instant,
    keys: Vec<Arc<StampKey>>,
}

/// One reflector socket's cache of IKE-derived keys per source address.
#[derive(Default)]
pub(crate) struct KeyCache {
    by_source: HashMap<IpAddr, Entry>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("sources", &self.by_source.len())
            .finish()
    }
}

impl KeyCache {
    /// The keys to try for a packet from `ip`, in order, into `out` (cleared first).
    pub(crate) fn candidates(
        &mut self,
        keys: &StampKeys,
        ip: IpAddr,
        now: Instant,
        out: &mut Vec<Arc<StampKey>>,
    ) {
        out.clear();
        match keys {
            StampKeys::None => {}
            StampKeys::Static(k) => out.push(k.clone()),
            StampKeys::Ike(ike) => {
                let stale = self
                    .by_source
                    .get(&ip)
                    .is_none_or(|e| now.saturating_duration_since(e.fetched) >= FRESH);
                if stale {
                    self.fetch(ike, ip, now);
                }
                if let Some(e) = self.by_source.get(&ip) {
                    out.extend(e.keys.iter().cloned());
                }
            }
        }
    }

    /// No candidate verified a packet from `ip`: look again soon (an SA may have come up).
    pub(crate) fn missed(&mut self, keys: &StampKeys, ip: IpAddr, now: Instant) {
        let StampKeys::Ike(ike) = keys else { return };
        let recent = self
            .by_source
            .get(&ip)
            .is_some_and(|e| now.saturating_duration_since(e.fetched) < AFTER_MISS);
        if !recent {
            self.fetch(ike, ip, now);
        }
    }

    /// Candidate `i` verified: tried first next time.
    pub(crate) fn verified(&mut self, ip: IpAddr, i: usize) {
        if i == 0 {
            return;
        }
        if let Some(e) = self.by_source.get_mut(&ip) {
            if i < e.keys.len() {
                let k = e.keys.remove(i);
                e.keys.insert(0, k);
            }
        }
    }

    fn fetch(&mut self, ike: &IkeHandle, ip: IpAddr, now: Instant) {
        let keys: Vec<Arc<StampKey>> = ike
            .ippm_secrets_with_peer(ip)
            .into_iter()
            .take(MAX_CANDIDATES)
            .filter_map(|(spis, secret)| StampKey::from_ike(&secret, spis.i, spis.r).ok())
            .map(Arc::new)
            .collect();
        if self.by_source.len() >= MAX_CACHED && !self.by_source.contains_key(&ip) {
            self.by_source
                .retain(|_, e| now.saturating_duration_since(e.fetched) < FRESH);
            if self.by_source.len() >= MAX_CACHED {
                self.by_source.clear();
            }
        }
        self.by_source.insert(ip, Entry { fetched: now, keys });
    }
}
