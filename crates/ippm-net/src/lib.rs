//! The tokio runtime of ippm: control TCP servers and clients, the UDP test engine
//! (sender, reflector, receiver), the IKE UDP driver and the local key service.
#![warn(missing_docs)]
