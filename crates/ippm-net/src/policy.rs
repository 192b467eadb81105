//! What both servers apply, in one place: who may use the server, in which modes, for how
//! many sessions ([`Policy`]), how many connections and sessions the daemon holds
//! ([`Admission`]), which UDP ports a test session may use
//! ([`test_socket`]) and where its random octets come from ([`Rules`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use ippm_proto::session::{KeyIdentity, PassphraseStore, Secret, SecretStore};
use ippm_proto::{Accept, Modes, SecurityMode};
use tracing::warn;

use crate::admission::{Admission, AdmissionLimits, SessionRefusal};
use crate::counters::IKE_SA_REFUSED;
use crate::rng::SecureRandom;
use crate::udp::{bind_first, blocking_socket};

/// What one identity (or the anonymous open-mode client) may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Security modes allowed (bits of [`Modes`]).
    pub modes: Modes,
    /// Most test sessions per control connection.
    pub max_sessions: usize,
}

/// Passphrases plus per-identity limits.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The passphrase file.
    pub passphrases: PassphraseStore,
    /// Limits of named identities; an identity not listed gets `default`.
    pub identities: HashMap<Vec<u8>, Limits>,
    /// Limits of identities not listed (and of IKEv2-keyed clients).
    pub default: Option<Limits>,
    /// Limits of unauthenticated (open mode) clients; `None` refuses them.
    pub open: Option<Limits>,
    /// RFC 7717: the IKE service whose SAs key clients that name them (filled once the
    /// service runs).
    pub ike: Option<crate::ike::IkeSlot>,
}

impl Policy {
    /// Limits for a connection's identity (`None`: open mode).
    pub fn limits(&self, identity: Option<&KeyIdentity>) -> Option<Limits> {
        match identity {
            None => self.open,
            Some(KeyIdentity::Name(n)) => self.identities.get(n).copied().or(self.default),
            Some(KeyIdentity::Ike { .. }) => self.default,
        }
    }
}

impl SecretStore for Policy {
    fn passphrase(&self, identity: &[u8]) -> Option<Secret> {
        self.passphrases.passphrase(identity)
    }

    fn ike_secret(&self, spi_i: [u8; 8], spi_r: [u8; 8], peer: IpAddr) -> Option<Secret> {
        let handle = self.ike.as_ref()?.get()?;
        let spis = ippm_ike::engine::Spis { i: spi_i, r: spi_r };
        if let Some(s) = handle.ippm_secret(spis, peer) {
            return Some(Secret::new(s.to_vec()));
        }
        // Refused either way (Accept = 6); the log says which, since an SA that exists but
        // with another host is someone replaying SPIs they saw.
        if let Some(more) = IKE_SA_REFUSED.note() {
            let sa_peer = handle
                .list()
                .into_iter()
                .find(|sa| sa.spis == spis)
                .map(|sa| sa.peer.ip());
            match sa_peer {
                Some(sa_peer) => warn!(%spis, %peer, %sa_peer, suppressed = more,
                    "RFC 7717: a client names an IKE SA that is with another host (Accept = 6)"),
                None => warn!(%spis, %peer, suppressed = more,
                    "RFC 7717: a client names an IKE SA we do not have (Accept = 6)"),
            }
        }
        None
    }

    fn permits(&self, identity: Option<&KeyIdentity>, mode: SecurityMode) -> bool {
        self.limits(identity)
            .is_some_and(|l| l.modes.contains(mode.bit()))
    }
}

/// The rules an OWAMP or a TWAMP server applies besides its control configuration; the
/// daemon gives both servers the same (one [`Admission`] for every listener of both).
#[derive(Debug, Clone)]
pub struct Rules {
    /// Per-identity modes and session limits (`None`: only the control configuration's).
    pub policy: Option<Arc<Policy>>,
    /// Connection and session limits, shared by every server given the same.
    pub admission: Arc<Admission>,
    /// UDP ports for test sessions (`None`: any free port).
    pub test_ports: Option<RangeInclusive<u16>>,
    /// Longest Timeout a client may ask for after Stop-Sessions.
    pub max_timeout: Duration,
    /// How long one write of a control connection may take before the peer counts as not
    /// reading and is dropped.
    pub write_timeout: Duration,
    /// Challenge, Salt, Server-IV and SIDs come from here; a failure ends the connection.
    pub random: Arc<dyn SecureRandom>,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            policy: None,
            admission: Admission::new(AdmissionLimits::default()),
            test_ports: None,
            max_timeout: Duration::from_secs(60),
            write_timeout: crate::accept::DEFAULT_WRITE_TIMEOUT,
            random: crate::rng::os(),
        }
    }
}

impl Rules {
    /// The per-connection session limit of an established connection's identity.
    pub fn session_limit(&self, identity: Option<&KeyIdentity>) -> Option<usize> {
        self.policy
            .as_ref()
            .and_then(|p| p.limits(identity))
            .map(|l| l.max_sessions)
    }

    /// A test socket on `ip`, for both protocols alike: the port the client asked for if it
    /// is free and allowed ([`test_socket`]), else the first free one allowed.
    pub fn test_socket(&self, ip: IpAddr, requested: u16) -> Result<UdpSocket, SessionRefusal> {
        test_socket(ip, requested, self.test_ports.as_ref())
    }
}

/// Lowest port a client may ask for when no test port range is configured: a client never
/// gets a privileged port bound for it.
const FIRST_UNPRIVILEGED: u16 = 1024;

/// A test socket on `ip`: `requested` (0: none) when it lies in `range` (without a range:
/// when it is unprivileged) and is free, otherwise the first free port of `range` (or any
/// free port). RFC 4656 §3.5 and RFC 5357 §3.5 let the server answer with another port.
pub fn test_socket(
    ip: IpAddr,
    requested: u16,
    range: Option<&RangeInclusive<u16>>,
) -> Result<UdpSocket, SessionRefusal> {
    let allowed = requested != 0
        && match range {
            Some(r) => r.contains(&requested),
            None => requested >= FIRST_UNPRIVILEGED,
        };
    allowed
        .then(|| blocking_socket(SocketAddr::new(ip, requested)).ok())
        .flatten()
        .map(Ok)
        .unwrap_or_else(|| bind_first(ip, range.cloned(), blocking_socket))
        .map_err(|_| (Accept::TemporaryResourceLimitation, "no free test port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_by_identity() {
        let all = Limits {
            modes: Modes(0x0f),
            max_sessions: 8,
        };
        let enc_only = Limits {
            modes: Modes::ENCRYPTED,
            max_sessions: 1,
        };
        let mut p = Policy {
            default: Some(all),
            open: None,
            ..Policy::default()
        };
        p.identities.insert(b"bob".to_vec(), enc_only);
        let bob = KeyIdentity::Name(b"bob".to_vec());
        let alice = KeyIdentity::Name(b"alice".to_vec());
        assert!(p.permits(Some(&bob), SecurityMode::Encrypted));
        assert!(!p.permits(Some(&bob), SecurityMode::Authenticated));
        assert!(p.permits(Some(&alice), SecurityMode::Authenticated));
        assert!(
            !p.permits(None, SecurityMode::Open),
            "open mode refused without an open policy"
        );
        assert_eq!(p.limits(Some(&bob)).unwrap().max_sessions, 1);
    }

    #[test]
    fn test_ports_stay_in_the_range_and_unprivileged() {
        let lo = "127.0.0.1".parse().unwrap();
        let port = |s: UdpSocket| s.local_addr().unwrap().port();
        // Find a free range of 4 ports above 20000.
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let base = port(probe).clamp(20_000, 60_000);
        let range = base..=base + 3;
        let s = test_socket(lo, 22, Some(&range)).unwrap();
        assert!(
            range.contains(&port(s)),
            "port 22 outside the range was not refused"
        );
        let s = test_socket(lo, base + 2, Some(&range)).unwrap();
        assert_eq!(port(s), base + 2, "a free port in the range is honoured");
        let s = test_socket(lo, 22, None).unwrap();
        assert!(
            port(s) >= FIRST_UNPRIVILEGED,
            "a privileged port was bound for a client"
        );
        // With every port of the range held, a session is refused, not given another port.
        let held: Vec<_> = (0..4)
            .filter_map(|_| test_socket(lo, 0, Some(&range)).ok())
            .collect();
        if held.len() == 4 {
            assert_eq!(
                test_socket(lo, 0, Some(&range)).err(),
                Some((Accept::TemporaryResourceLimitation, "no free test port"))
            );
        }
    }
}
