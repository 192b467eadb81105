//! Who may use the server, in which modes, and for how many sessions.

use std::collections::HashMap;

use ippm_proto::session::{KeyIdentity, PassphraseStore, Secret, SecretStore};
use ippm_proto::{Modes, SecurityMode};

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

    fn ike_secret(&self, spi_i: [u8; 8], spi_r: [u8; 8]) -> Option<Secret> {
        let handle = self.ike.as_ref()?.get()?;
        let spis = ippm_ike::engine::Spis { i: spi_i, r: spi_r };
        match handle.ippm_secret_by_spis(spis) {
            Some(s) => Some(Secret::new(s.to_vec())),
            None => {
                tracing::warn!(%spis, "RFC 7717: a client names an IKE SA we do not have (Accept = 6)");
                None
            }
        }
    }

    fn permits(&self, identity: Option<&KeyIdentity>, mode: SecurityMode) -> bool {
        self.limits(identity)
            .is_some_and(|l| l.modes.contains(mode.bit()))
    }
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
}
