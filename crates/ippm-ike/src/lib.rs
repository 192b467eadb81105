//! IKEv2 (RFC 7296) without I/O: the key source for RFC 7717.
//!
//! Wire formats, crypto suites, initiator and responder state machines and the SA database.
//! The only secret that leaves this crate is RFC 7717's `prf(SK_d, "IPPM")` for a given SA.
//!
//! Built so far: the message and payload wire formats ([`message`]), with bounded parsing and
//! RFC 7296 §2.5's rule for unknown payloads (skipped, unless critical).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod auth;
pub mod codec;
pub mod codepoints;
pub mod config;
pub mod dh;
pub mod engine;
pub mod keys;
pub mod message;
pub mod proposal;
pub mod sk;

pub use message::{Message, Payload};

/// Why octets could not be read as an IKEv2 message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The data ended inside a structure.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A length field is impossible.
    #[error("invalid {what}: {value}")]
    InvalidLength {
        /// The field.
        what: &'static str,
        /// Its value.
        value: usize,
    },
    /// More entries than this implementation accepts.
    #[error("too many {what} (at most {max})")]
    TooMany {
        /// What.
        what: &'static str,
        /// The bound.
        max: usize,
    },
    /// Octets left over after a structure that should fill its space.
    #[error("trailing data after {0}")]
    TrailingData(&'static str),
    /// A payload with the Critical bit set that this implementation does not know (§2.5):
    /// answer UNSUPPORTED_CRITICAL_PAYLOAD.
    #[error("unsupported critical payload {0:?}")]
    UnsupportedCriticalPayload(codepoints::PayloadType),
    /// A major version other than 2: answer INVALID_MAJOR_VERSION.
    #[error("unsupported IKE version {major}.{minor}")]
    UnsupportedVersion {
        /// MjVer.
        major: u8,
        /// MnVer.
        minor: u8,
    },
    /// A value too long for its length field (emit).
    #[error("{0} too long to encode")]
    TooLong(&'static str),
}
