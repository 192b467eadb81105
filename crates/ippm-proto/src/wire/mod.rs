//! Wire formats, one module per message family (smoltcp's `wire` layout).
//!
//! Each message has a zero-copy view `Foo<T: AsRef<[u8]>>` with `new_checked` (after which no
//! accessor panics) and a parsed `FooRepr` with `parse`, `emit` and `buffer_len` (`emit` never
//! panics on a buffer of `buffer_len()` octets and writes every MBZ field as zero). HMAC fields
//! are part of the layouts but are computed and checked by [`crate::crypto`] and
//! [`crate::session`]: `emit` leaves them zero and `parse` does not look at them.
//!
//! - [`setup`]: Server Greeting, Set-Up-Response, Server-Start (shared by OWAMP and TWAMP).
//! - [`owamp`]: OWAMP-Control commands and replies (RFC 4656 §3.5-3.9), Accept-Session,
//!   Start-Ack and the Fetch data records.
//! - [`twamp`]: Request-TW-Session (RFC 5357 §3.5 with RFC 6038) and the RFC 5938 messages.
//! - [`test`]: OWAMP-Test and TWAMP-Test packets in every mode.

pub mod owamp;
pub mod setup;
pub mod test;
pub mod twamp;

use crate::WireError;

/// A fixed field's octet range inside a message.
pub(crate) type Field = core::ops::Range<usize>;
/// A field running to the end of the message.
#[allow(dead_code)]
pub(crate) type Rest = core::ops::RangeFrom<usize>;

/// The control channel moves in 16-octet blocks (the AES block size); every control message
/// is a whole number of blocks.
pub const BLOCK: usize = 16;

/// Length of every HMAC field (HMAC-SHA1 truncated to 128 bits).
pub const HMAC_LEN: usize = 16;

#[inline]
pub(crate) fn u16_at(b: &[u8], f: Field) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[f]);
    u16::from_be_bytes(a)
}

#[inline]
pub(crate) fn u32_at(b: &[u8], f: Field) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[f]);
    u32::from_be_bytes(a)
}

#[inline]
pub(crate) fn u64_at(b: &[u8], f: Field) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[f]);
    u64::from_be_bytes(a)
}

#[inline]
pub(crate) fn array_at<const N: usize>(b: &[u8], f: Field) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[f]);
    a
}

#[inline]
pub(crate) fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// Fails with `Truncated(name)` when `buf` is shorter than `len`.
#[inline]
pub(crate) fn check_len(buf: &[u8], len: usize, name: &'static str) -> Result<(), WireError> {
    if buf.len() < len { Err(WireError::Truncated(name)) } else { Ok(()) }
}
