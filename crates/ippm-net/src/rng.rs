//! The random octets every control connection needs (Challenge, Salt, Server-IV, the
//! client's session keys, SIDs), from one source that can fail.
//!
//! A random number generator that fails is an error that ends the connection or session,
//! never zeros: zeros as a Challenge or a session key would key a "protected" session with
//! octets an attacker knows. The source is an object the servers and clients are given (as
//! rustls' `CryptoProvider` carries its `SecureRandom`), so that the failure path is a
//! real code path with tests, not a branch nobody runs.

use std::fmt;
use std::sync::Arc;

/// The random source failed; nothing may be keyed from what it gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the random number generator failed")]
pub struct RandomError;

/// A source of cryptographically secure random octets.
pub trait SecureRandom: Send + Sync + fmt::Debug {
    /// Fills `buf` entirely, or fails (then `buf` must not be used).
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError>;
}

/// The operating system's generator (getrandom(2)).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl SecureRandom for OsRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        getrandom::fill(buf).map_err(|_| RandomError)
    }
}

/// The operating system's generator, shared.
pub fn os() -> Arc<dyn SecureRandom> {
    Arc::new(OsRandom)
}

/// `N` random octets from `rng`.
pub fn array<const N: usize>(rng: &dyn SecureRandom) -> Result<[u8; N], RandomError> {
    let mut b = [0u8; N];
    rng.fill(&mut b)?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Broken;
    impl SecureRandom for Broken {
        fn fill(&self, _: &mut [u8]) -> Result<(), RandomError> {
            Err(RandomError)
        }
    }

    #[test]
    fn os_fills_and_failure_is_an_error() {
        let a: [u8; 32] = array(&OsRandom).unwrap();
        let b: [u8; 32] = array(&OsRandom).unwrap();
        assert_ne!(
            a, b,
            "two draws of 256 bits agree: the source is not random"
        );
        assert_eq!(array::<16>(&Broken), Err(RandomError));
    }
}
