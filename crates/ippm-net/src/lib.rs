//! The runtime of ippm: control TCP servers and clients (tokio), the test-packet engine that
//! runs every test session's packets on a few epoll threads (`engine`, with the roles
//! `reflector`, `sender`, `receiver`), the IKE UDP driver and the local key service.
//!
//! All kernel interfaces below the standard library (socket options, control messages,
//! batched I/O, timers, the NTP clock state) are in one module, `sys`.
#![warn(missing_docs)]

mod accept;
pub mod admission;
pub mod clock;
mod control_client;
mod counters;
pub mod engine;
pub mod ike;
pub mod ike_control;
pub mod keyfile;
pub mod metrics;
pub mod owamp_client;
pub mod owamp_server;
pub mod owamp_store;
pub mod packets;
pub mod policy;
mod receiver;
pub mod reflector;
pub mod rng;
mod sender;
pub mod stamp_reflector;
mod sys;
pub mod twamp_client;
pub mod twamp_server;
pub mod twoway;
pub mod udp;
