//! Reading and writing the big-endian, length-prefixed structures of IKEv2 (rustls
//! `msgs/codec.rs` is the model): a borrowing [`Reader`] that never reads past its end, and
//! length back-patching on write.

use crate::WireError;

/// A cursor over received octets; every read is bounds-checked.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// The next `n` octets, or `Truncated(what)`.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated(what))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(WireError::Truncated(what))?;
        self.pos = end;
        Ok(s)
    }

    /// One octet.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }

    /// A big-endian u16.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian u32.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A sub-reader over the next `n` octets.
    pub fn sub(&mut self, n: usize, what: &'static str) -> Result<Self, WireError> {
        Ok(Self::new(self.take(n, what)?))
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    /// Octets not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails with `TrailingData(what)` unless everything was read.
    pub fn expect_empty(&self, what: &'static str) -> Result<(), WireError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(WireError::TrailingData(what))
        }
    }
}

/// Reserves a big-endian u16 length at the end of `out`; [`patch_u16`] fills it in.
pub(crate) fn place_u16(out: &mut Vec<u8>) -> usize {
    out.extend_from_slice(&[0, 0]);
    out.len() - 2
}

/// Writes the length of everything from `start` to the end into the u16 at `at`.
pub(crate) fn patch_u16(out: &mut [u8], at: usize, start: usize) -> Result<(), WireError> {
    let len = u16::try_from(out.len() - start).map_err(|_| WireError::TooLong("length field"))?;
    out[at..at + 2].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16("x"), Ok(0x0102));
        assert_eq!(r.u16("y"), Err(WireError::Truncated("y")));
        assert_eq!(r.u8("z"), Ok(3));
        assert_eq!(r.expect_empty("w"), Ok(()));
        let mut r = Reader::new(&[0; 4]);
        assert!(r.take(usize::MAX, "huge").is_err());
        let mut s = r.sub(2, "s").unwrap();
        assert_eq!(s.remaining(), 2);
        assert_eq!(r.expect_empty("tail"), Err(WireError::TrailingData("tail")));
        assert_eq!(s.rest().len(), 2);
    }

    #[test]
    fn back_patch() {
        let mut v = vec![9];
        let at = place_u16(&mut v);
        v.extend_from_slice(&[0; 5]);
        patch_u16(&mut v, at, 0).unwrap();
        assert_eq!(&v[1..3], &[0, 8]);
    }
}
