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
//! - [`test`](mod@test): OWAMP-Test and TWAMP-Test packets in every mode.
//! - [`stamp`]: STAMP Session-Sender and Session-Reflector packets (RFC 8762 §4.2, §4.3, with
//!   the RFC 8972 §3 SSID), unauthenticated and authenticated.
//! - [`stamp_tlv`]: STAMP TLVs (RFC 8972 §4): flags, a never-panicking iterator, every
//!   RFC 8972 TLV's value. Their HMACs and the reflector's rules are in [`crate::stamp`].

/// Declares a zero-copy view over a message buffer: `new_unchecked`, `new_checked` (after which
/// no accessor panics), `check_len` against the message's minimum length, and `into_inner`.
macro_rules! view {
    ($(#[$m:meta])* $name:ident, $min:expr, $what:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// Wraps a buffer without checking its length.
            pub const fn new_unchecked(buffer: T) -> Self {
                Self { buffer }
            }

            /// Wraps a buffer, checking that it is long enough for every accessor.
            pub fn new_checked(buffer: T) -> Result<Self, $crate::WireError> {
                let v = Self::new_unchecked(buffer);
                v.check_len()?;
                Ok(v)
            }

            /// Fails with `Truncated` when the buffer is shorter than the fixed part.
            pub fn check_len(&self) -> Result<(), $crate::WireError> {
                $crate::wire::check_len(self.buffer.as_ref(), $min, $what)
            }

            /// The buffer.
            pub fn into_inner(self) -> T {
                self.buffer
            }

            #[allow(dead_code)]
            fn b(&self) -> &[u8] {
                self.buffer.as_ref()
            }
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $name<T> {
            #[allow(dead_code)]
            fn bm(&mut self) -> &mut [u8] {
                self.buffer.as_mut()
            }
        }
    };
}

pub mod owamp;
pub mod setup;
pub mod stamp;
pub mod stamp_tlv;
pub mod test;
pub mod twamp;

use crate::WireError;

/// Rounds `n` up to a whole number of blocks.
pub const fn pad16(n: usize) -> usize {
    n.div_ceil(BLOCK) * BLOCK
}

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

/// Fails with `Truncated(name)` when `buf` is shorter than `len`.
#[inline]
pub(crate) fn check_len(buf: &[u8], len: usize, name: &'static str) -> Result<(), WireError> {
    if buf.len() < len {
        Err(WireError::Truncated(name))
    } else {
        Ok(())
    }
}
