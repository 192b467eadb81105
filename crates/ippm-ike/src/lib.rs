//! IKEv2 (RFC 7296) without I/O: the key source for RFC 7717.
//!
//! Wire formats, crypto suites, initiator and responder state machines and the SA database.
//! The only secret that leaves this crate is RFC 7717's `prf(SK_d, "IPPM")` for a given SA.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
