//! The responder's half-open IKE SAs (IKE_SA_INIT answered, IKE_AUTH not yet) and the
//! COOKIEs that guard them (RFC 7296 §2.6): which IKE_SA_INIT requests are admitted.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::codepoints::NotifyType;
use crate::message::{Message, Payload};

use super::Engine;
use super::api::{Random, RandomError, Spis, Transmit};
use super::payloads::{find_notify, nonce, notify};
use super::sa::{Reject, ignore};

/// How long a COOKIE secret lives at least (§2.6: change it now and then, never while one
/// is still fresh).
const COOKIE_SECRET_LIFE: Duration = Duration::from_secs(60);

/// The half-open table and the COOKIE secret.
pub(super) struct HalfOpen {
    /// By (peer, SPIi), to recognise retransmitted IKE_SA_INITs: our SPIr.
    index: HashMap<(SocketAddr, [u8; 8]), [u8; 8]>,
    secret: Zeroizing<[u8; 32]>,
    version: u32,
    rotated: Option<Instant>,
}

impl HalfOpen {
    pub(super) fn new(rng: &mut dyn Random) -> Result<Self, RandomError> {
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.fill(secret.as_mut())?;
        Ok(Self {
            index: HashMap::new(),
            secret,
            version: 0,
            rotated: None,
        })
    }

    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    pub(super) fn insert(&mut self, remote: SocketAddr, spis: Spis, _now: Instant) {
        self.index.insert((remote, spis.i), spis.r);
    }

    /// The SA is no longer half-open (established, failed, expired); a no-op for others.
    pub(super) fn remove(&mut self, remote: SocketAddr, spis: Spis) {
        if self.index.get(&(remote, spis.i)) == Some(&spis.r) {
            self.index.remove(&(remote, spis.i));
        }
    }

    fn cookie_for(&self, version: u32, ni: &[u8], ip: IpAddr, spi_i: &[u8; 8]) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(ni);
        match ip {
            IpAddr::V4(a) => h.update(a.octets()),
            IpAddr::V6(a) => h.update(a.octets()),
        }
        h.update(spi_i);
        h.update(version.to_be_bytes());
        h.update(self.secret.as_ref());
        let mut c = version.to_be_bytes().to_vec();
        c.extend_from_slice(&h.finalize());
        c
    }

    fn cookie_ok(&self, cookie: &[u8], ni: &[u8], ip: IpAddr, spi_i: &[u8; 8]) -> bool {
        let (Some(v), 36) = (cookie.first_chunk::<4>(), cookie.len()) else {
            return false;
        };
        let version = u32::from_be_bytes(*v);
        // The current secret only (a rotation invalidates cookies in flight; the initiator
        // gets a fresh one).
        version == self.version && bool::from(self.cookie_for(version, ni, ip, spi_i).ct_eq(cookie))
    }
}

impl Engine {
    /// Whether a new IKE_SA_INIT request is to be answered with a new SA. Answers
    /// retransmissions and COOKIE demands itself (returning false).
    pub(super) fn admit_init(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        msg: &Message,
    ) -> Result<bool, Reject> {
        let h = msg.header;
        // A retransmitted request gets the same answer.
        if let Some(k) = self.half_open.index.get(&(remote, h.spi_i))
            && let Some(sa) = self.sas.get(k)
        {
            let same =
                matches!(&sa.state, super::sa::State::InitAnswered(hs) if hs.peer_init == data);
            if same {
                if let Some((_, resp)) = &sa.link.last_response {
                    self.transmits.push_back(Transmit {
                        local,
                        remote,
                        data: resp.clone(),
                    });
                }
                return Ok(false);
            }
            return Err(ignore("a second IKE_SA_INIT for a half-open SA"));
        }
        let p = &msg.payloads;
        let ni = nonce(p).ok_or_else(|| ignore("IKE_SA_INIT without a nonce"))?;
        let limits = &self.config.limits;
        if self.half_open.len() >= limits.half_open_max {
            return Err(ignore("half-open IKE SA limit reached"));
        }
        if self.sas.len() >= limits.established_max + limits.half_open_max {
            return Err(ignore("IKE SA limit reached"));
        }
        if self.half_open.len() >= limits.cookie_threshold {
            let ho = &mut self.half_open;
            if ho
                .rotated
                .is_none_or(|t| now.duration_since(t) > COOKIE_SECRET_LIFE)
            {
                self.rng.fill(ho.secret.as_mut())?;
                ho.version = ho.version.wrapping_add(1);
                ho.rotated = Some(now);
            }
            let first_is_cookie =
                matches!(p.first(), Some(Payload::Notify { ty, .. }) if *ty == NotifyType::COOKIE);
            let presented = find_notify(p, NotifyType::COOKIE).filter(|_| first_is_cookie);
            if !presented.is_some_and(|c| ho.cookie_ok(c, ni, remote.ip(), &h.spi_i)) {
                let cookie = ho.cookie_for(ho.version, ni, remote.ip(), &h.spi_i);
                self.answer_unprotected(local, remote, h, notify(NotifyType::COOKIE, cookie));
                return Ok(false);
            }
        }
        Ok(true)
    }
}
