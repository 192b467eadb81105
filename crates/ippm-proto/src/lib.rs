//! OWAMP (RFC 4656), TWAMP (RFC 5357) and STAMP (RFC 8762, RFC 8972) without I/O.
//!
//! This crate holds everything of the two protocols that does not touch a socket, a clock or a
//! random number generator: the wire formats of every control message and test packet, NTP
//! timestamps and error estimates, the key schedule and control-stream protection, test-packet
//! protection, the RFC 4656 §5 send schedule, and the control-session state machines for
//! clients and servers. Time and randomness are passed in by the caller (`ippm-net` in the
//! daemon, plain values in tests), so every exchange can be driven in memory.
//!
//! Layout:
//! - [`time`]: NTP 32.32 timestamps and the Error Estimate field.
//! - [`codepoints`]: Modes (OWAMP and TWAMP registries), Accept values, command numbers.
//! - [`wire`]: one module per message family, each a zero-copy view plus a parsed `Repr`.
//! - [`crypto`]: PBKDF2 key, Token, control-stream AES-CBC + HMAC, test-session keys.
//! - [`schedule`]: the exponential/fixed send schedule of RFC 4656 §5.
//! - [`session`]: client and server control-session state machines.
//! - [`stamp`]: STAMP test-packet processing: the HMAC key, the pure per-packet reflector
//!   (lay out, then seal just before the send) and the sender's build and verify; the formats
//!   are [`wire::stamp`] and [`wire::stamp_tlv`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod codepoints;
pub mod crypto;
pub mod error;
pub mod schedule;
pub mod session;
pub mod stamp;
pub mod time;
pub mod wire;

pub use codepoints::{Accept, Command, Modes, Protocol, SecurityMode};
pub use error::WireError;
pub use time::{ErrorEstimate, Timestamp};
