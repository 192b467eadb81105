//! Test packets: OWAMP-Test (RFC 4656 §4.1.2), TWAMP-Test Session-Sender (RFC 5357 §4.1.2,
//! the same layouts) and Session-Reflector (RFC 5357 §4.2.1) packets, in the open layout
//! (unauthenticated and RFC 5618 mixed mode) and the protected layout (authenticated and
//! encrypted), with RFC 6038 symmetrical size and reflect octets; and their protection.
//!
//! Sender / OWAMP-Test packet, open (14 octets + padding) and protected (48 + padding):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        Sequence Number                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                          Timestamp                            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |        Error Estimate         |                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               |
//! .                         Packet Padding                        .
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        Sequence Number                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        MBZ (12 octets)                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                          Timestamp                            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |        Error Estimate         |         MBZ (6 octets)        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       HMAC (16 octets)                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! .                         Packet Padding                        .
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Reflector packet, open (41 octets + padding): Sequence Number, Timestamp, Error Estimate,
//! MBZ (2), Receive Timestamp, Sender Sequence Number, Sender Timestamp, Sender Error
//! Estimate, MBZ (2), Sender TTL, Packet Padding. Protected (112 + padding): Sequence Number,
//! MBZ (12), Timestamp, Error Estimate, MBZ (6), Receive Timestamp, MBZ (8), Sender Sequence
//! Number, MBZ (12), Sender Timestamp, Sender Error Estimate, MBZ (6), Sender TTL, MBZ (15),
//! HMAC (16), Packet Padding. RFC 5357 §4.2.1's text says 104 octets, its figure adds up to
//! 112; perfSONAR and ippm follow the figure (captures, "RFC vs perfSONAR" item 2).
//!
//! MBZ fields are written as zero and ignored on receipt. Protection (checked on every
//! captured packet): authenticated mode encrypts the first block (AES-ECB) and the HMAC covers
//! that block's plaintext; encrypted mode encrypts the first 32 octets (sender) or 96
//! (reflector) with AES-CBC, IV 0, and the HMAC covers the same plaintext. The HMAC field and
//! the padding are never encrypted, and the padding is not covered.

use crate::WireError;
use crate::codepoints::SecurityMode;
use crate::crypto::{CryptoError, TestCipher, TestKeys};
use crate::time::{ErrorEstimate, Timestamp};
use crate::wire::{HMAC_LEN, array_at, check_len, u32_at, u64_at};

/// Which of the two layouts a session's packets use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Unauthenticated and mixed mode.
    Open,
    /// Authenticated and encrypted mode.
    Protected,
}

impl Layout {
    /// The test-packet layout of a security mode.
    pub const fn of(mode: SecurityMode) -> Self {
        match mode {
            SecurityMode::Open | SecurityMode::Mixed => Self::Open,
            SecurityMode::Authenticated | SecurityMode::Encrypted => Self::Protected,
        }
    }

    /// Octets of a sender (and OWAMP-Test) packet before the padding.
    pub const fn sender_header_len(self) -> usize {
        match self {
            Self::Open => 14,
            Self::Protected => 48,
        }
    }

    /// Octets of a reflector packet before the padding.
    pub const fn reflector_header_len(self) -> usize {
        match self {
            Self::Open => 41,
            Self::Protected => 112,
        }
    }

    /// Padding a sender adds so that the reflector can answer with a packet of the same size
    /// (RFC 5357 §4.2.1's truncation, RFC 6038 §5.1.3): 27 open, 64 protected (the figure's
    /// 112 less 48; RFC 6038 says 56, from the text's 104). Also the MBZ run of the RFC 6038
    /// symmetrical-size sender format.
    pub const fn symmetric_padding(self) -> usize {
        self.reflector_header_len() - self.sender_header_len()
    }
}

mod field {
    use crate::wire::Field;

    pub(crate) const SEQ: Field = 0..4;
    // Open layout.
    pub(crate) const O_TS: Field = 4..12;
    pub(crate) const O_ERR: Field = 12..14;
    pub(crate) const O_R_RECV_TS: Field = 16..24;
    pub(crate) const O_R_SEQ: Field = 24..28;
    pub(crate) const O_R_TS: Field = 28..36;
    pub(crate) const O_R_ERR: Field = 36..38;
    pub(crate) const O_R_TTL: usize = 40;
    // Protected layout.
    pub(crate) const P_TS: Field = 16..24;
    pub(crate) const P_ERR: Field = 24..26;
    pub(crate) const P_S_HMAC: Field = 32..48;
    pub(crate) const P_R_RECV_TS: Field = 32..40;
    pub(crate) const P_R_SEQ: Field = 48..52;
    pub(crate) const P_R_TS: Field = 64..72;
    pub(crate) const P_R_ERR: Field = 72..74;
    pub(crate) const P_R_TTL: usize = 80;
    pub(crate) const P_R_HMAC: Field = 96..112;
}

/// A zero-copy view of a Session-Sender or OWAMP-Test packet (layouts in the
/// [module docs](self)).
#[derive(Debug, Clone)]
pub struct SenderPacket<T: AsRef<[u8]>> {
    buffer: T,
    layout: Layout,
}

/// OWAMP-Test packets have the Session-Sender layouts.
pub type OwampTestPacket<T> = SenderPacket<T>;

impl<T: AsRef<[u8]>> SenderPacket<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T, layout: Layout) -> Self {
        Self { buffer, layout }
    }

    /// Wraps a buffer, checking that it holds at least the header.
    pub fn new_checked(buffer: T, layout: Layout) -> Result<Self, WireError> {
        let v = Self::new_unchecked(buffer, layout);
        check_len(v.buffer.as_ref(), layout.sender_header_len(), "test packet")?;
        Ok(v)
    }

    /// The buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Sequence Number.
    pub fn seq(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::SEQ)
    }

    /// Timestamp.
    pub fn timestamp(&self) -> Timestamp {
        let f = match self.layout {
            Layout::Open => field::O_TS,
            Layout::Protected => field::P_TS,
        };
        Timestamp::from_bits(u64_at(self.buffer.as_ref(), f))
    }

    /// Error Estimate.
    pub fn error_estimate(&self) -> ErrorEstimate {
        let f = match self.layout {
            Layout::Open => field::O_ERR,
            Layout::Protected => field::P_ERR,
        };
        ErrorEstimate::from_bytes(array_at(self.buffer.as_ref(), f))
    }

    /// The HMAC field (protected layout only).
    pub fn hmac(&self) -> Option<[u8; 16]> {
        match self.layout {
            Layout::Open => None,
            Layout::Protected => Some(array_at(self.buffer.as_ref(), field::P_S_HMAC)),
        }
    }

    /// Packet Padding: everything after the header.
    pub fn padding(&self) -> &[u8] {
        &self.buffer.as_ref()[self.layout.sender_header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> SenderPacket<T> {
    /// Sets the Timestamp: done as late as possible before protecting and sending.
    pub fn set_timestamp(&mut self, t: Timestamp) {
        let f = match self.layout {
            Layout::Open => field::O_TS,
            Layout::Protected => field::P_TS,
        };
        self.buffer.as_mut()[f].copy_from_slice(&t.to_bytes());
    }

    /// Sets the Error Estimate.
    pub fn set_error_estimate(&mut self, e: ErrorEstimate) {
        let f = match self.layout {
            Layout::Open => field::O_ERR,
            Layout::Protected => field::P_ERR,
        };
        self.buffer.as_mut()[f].copy_from_slice(&e.to_bytes());
    }

    /// Sets the Sequence Number.
    pub fn set_seq(&mut self, seq: u32) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    }

    /// Packet Padding, writable.
    pub fn padding_mut(&mut self) -> &mut [u8] {
        let h = self.layout.sender_header_len();
        &mut self.buffer.as_mut()[h..]
    }
}

/// The fields of a Session-Sender or OWAMP-Test packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderRepr {
    /// Sequence Number.
    pub seq: u32,
    /// Timestamp.
    pub timestamp: Timestamp,
    /// Error Estimate.
    pub error_estimate: ErrorEstimate,
}

impl SenderRepr {
    /// Reads the fields of a (plaintext) packet.
    pub fn parse(buf: &[u8], layout: Layout) -> Result<Self, WireError> {
        let v = SenderPacket::new_checked(buf, layout)?;
        Ok(Self {
            seq: v.seq(),
            timestamp: v.timestamp(),
            error_estimate: v.error_estimate(),
        })
    }

    /// Writes the header into `buf` (at least the header length): MBZ and HMAC zero, padding
    /// left as it is (the caller fills it once per session, e.g. with random octets).
    pub fn emit(&self, buf: &mut [u8], layout: Layout) -> Result<(), WireError> {
        let h = layout.sender_header_len();
        let head = buf
            .get_mut(..h)
            .ok_or(WireError::BufferTooSmall("test packet"))?;
        head.fill(0);
        let mut v = SenderPacket::new_unchecked(head, layout);
        v.set_seq(self.seq);
        v.set_timestamp(self.timestamp);
        v.set_error_estimate(self.error_estimate);
        Ok(())
    }
}

/// A zero-copy view of a Session-Reflector packet (layouts in the [module docs](self)).
#[derive(Debug, Clone)]
pub struct ReflectorPacket<T: AsRef<[u8]>> {
    buffer: T,
    layout: Layout,
}

impl<T: AsRef<[u8]>> ReflectorPacket<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T, layout: Layout) -> Self {
        Self { buffer, layout }
    }

    /// Wraps a buffer, checking that it holds at least the header.
    pub fn new_checked(buffer: T, layout: Layout) -> Result<Self, WireError> {
        let v = Self::new_unchecked(buffer, layout);
        check_len(
            v.buffer.as_ref(),
            layout.reflector_header_len(),
            "reflector packet",
        )?;
        Ok(v)
    }

    fn pick<F>(&self, open: F, protected: F) -> F {
        match self.layout {
            Layout::Open => open,
            Layout::Protected => protected,
        }
    }

    /// Sequence Number (the reflector's own).
    pub fn seq(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::SEQ)
    }

    /// Timestamp (when the reflector sent it).
    pub fn timestamp(&self) -> Timestamp {
        Timestamp::from_bits(u64_at(
            self.buffer.as_ref(),
            self.pick(field::O_TS, field::P_TS),
        ))
    }

    /// Error Estimate of the reflector's clock.
    pub fn error_estimate(&self) -> ErrorEstimate {
        ErrorEstimate::from_bytes(array_at(
            self.buffer.as_ref(),
            self.pick(field::O_ERR, field::P_ERR),
        ))
    }

    /// Receive Timestamp.
    pub fn receive_timestamp(&self) -> Timestamp {
        let f = self.pick(field::O_R_RECV_TS, field::P_R_RECV_TS);
        Timestamp::from_bits(u64_at(self.buffer.as_ref(), f))
    }

    /// Sender Sequence Number.
    pub fn sender_seq(&self) -> u32 {
        u32_at(
            self.buffer.as_ref(),
            self.pick(field::O_R_SEQ, field::P_R_SEQ),
        )
    }

    /// Sender Timestamp.
    pub fn sender_timestamp(&self) -> Timestamp {
        Timestamp::from_bits(u64_at(
            self.buffer.as_ref(),
            self.pick(field::O_R_TS, field::P_R_TS),
        ))
    }

    /// Sender Error Estimate.
    pub fn sender_error_estimate(&self) -> ErrorEstimate {
        ErrorEstimate::from_bytes(array_at(
            self.buffer.as_ref(),
            self.pick(field::O_R_ERR, field::P_R_ERR),
        ))
    }

    /// Sender TTL (IP TTL / hop limit of the sender's packet as it arrived).
    pub fn sender_ttl(&self) -> u8 {
        self.buffer.as_ref()[self.pick(field::O_R_TTL, field::P_R_TTL)]
    }

    /// The HMAC field (protected layout only).
    pub fn hmac(&self) -> Option<[u8; 16]> {
        match self.layout {
            Layout::Open => None,
            Layout::Protected => Some(array_at(self.buffer.as_ref(), field::P_R_HMAC)),
        }
    }

    /// Packet Padding.
    pub fn padding(&self) -> &[u8] {
        &self.buffer.as_ref()[self.layout.reflector_header_len()..]
    }
}

/// The fields of a Session-Reflector packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReflectorRepr {
    /// The reflector's own sequence number.
    pub seq: u32,
    /// When the reflector sent the packet.
    pub timestamp: Timestamp,
    /// The reflector clock's error estimate.
    pub error_estimate: ErrorEstimate,
    /// When the reflector received the sender's packet.
    pub receive_timestamp: Timestamp,
    /// The sender's sequence number.
    pub sender_seq: u32,
    /// The sender's timestamp.
    pub sender_timestamp: Timestamp,
    /// The sender's error estimate.
    pub sender_error_estimate: ErrorEstimate,
    /// TTL of the sender's packet as it arrived.
    pub sender_ttl: u8,
}

impl ReflectorRepr {
    /// Reads the fields of a (plaintext) reflector packet.
    pub fn parse(buf: &[u8], layout: Layout) -> Result<Self, WireError> {
        let v = ReflectorPacket::new_checked(buf, layout)?;
        Ok(Self {
            seq: v.seq(),
            timestamp: v.timestamp(),
            error_estimate: v.error_estimate(),
            receive_timestamp: v.receive_timestamp(),
            sender_seq: v.sender_seq(),
            sender_timestamp: v.sender_timestamp(),
            sender_error_estimate: v.sender_error_estimate(),
            sender_ttl: v.sender_ttl(),
        })
    }

    /// Writes the header (MBZ and HMAC zero); the padding is the caller's.
    pub fn emit(&self, buf: &mut [u8], layout: Layout) -> Result<(), WireError> {
        let h = layout.reflector_header_len();
        let b = buf
            .get_mut(..h)
            .ok_or(WireError::BufferTooSmall("reflector packet"))?;
        b.fill(0);
        let (ts, err, rts, rseq, rts2, rerr, ttl) = match layout {
            Layout::Open => (
                field::O_TS,
                field::O_ERR,
                field::O_R_RECV_TS,
                field::O_R_SEQ,
                field::O_R_TS,
                field::O_R_ERR,
                field::O_R_TTL,
            ),
            Layout::Protected => (
                field::P_TS,
                field::P_ERR,
                field::P_R_RECV_TS,
                field::P_R_SEQ,
                field::P_R_TS,
                field::P_R_ERR,
                field::P_R_TTL,
            ),
        };
        b[field::SEQ].copy_from_slice(&self.seq.to_be_bytes());
        b[ts].copy_from_slice(&self.timestamp.to_bytes());
        b[err].copy_from_slice(&self.error_estimate.to_bytes());
        b[rts].copy_from_slice(&self.receive_timestamp.to_bytes());
        b[rseq].copy_from_slice(&self.sender_seq.to_be_bytes());
        b[rts2].copy_from_slice(&self.sender_timestamp.to_bytes());
        b[rerr].copy_from_slice(&self.sender_error_estimate.to_bytes());
        b[ttl] = self.sender_ttl;
        Ok(())
    }

    /// Sets the Timestamp of an emitted packet: done as late as possible before sending.
    pub fn stamp(buf: &mut [u8], layout: Layout, t: Timestamp) {
        let f = match layout {
            Layout::Open => field::O_TS,
            Layout::Protected => field::P_TS,
        };
        if let Some(b) = buf.get_mut(f) {
            b.copy_from_slice(&t.to_bytes());
        }
    }
}

/// Sender or reflector packet: they differ in how much is encrypted and where the HMAC sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketKind {
    /// OWAMP-Test and TWAMP Session-Sender packets.
    Sender,
    /// TWAMP Session-Reflector packets.
    Reflector,
}

impl PacketKind {
    /// Octets encrypted in encrypted mode, and where the HMAC field starts.
    const fn protected_len(self) -> usize {
        match self {
            Self::Sender => 32,
            Self::Reflector => 96,
        }
    }
}

/// A session's test-packet protection, built once per session: the mode, and for the
/// protected modes the key schedules. Per packet it costs one or six AES block operations and
/// one HMAC, and never allocates.
#[derive(Debug, Clone)]
pub struct TestProtection {
    mode: SecurityMode,
    cipher: Option<TestCipher>,
}

impl TestProtection {
    /// Protection for `mode`; the authenticated and encrypted modes need the session's keys.
    pub fn new(mode: SecurityMode, keys: Option<&TestKeys>) -> Result<Self, CryptoError> {
        let cipher = match Layout::of(mode) {
            Layout::Open => None,
            Layout::Protected => Some(TestCipher::new(
                keys.ok_or(CryptoError::BadLength("test keys"))?,
            )),
        };
        Ok(Self { mode, cipher })
    }

    /// The packet layout.
    pub fn layout(&self) -> Layout {
        Layout::of(self.mode)
    }

    /// Fills the HMAC and encrypts, in place. Call after the last field (the timestamp) is
    /// written. A packet shorter than its header is left alone (the caller sized it).
    pub fn protect(&self, kind: PacketKind, pkt: &mut [u8]) {
        let Some(c) = &self.cipher else { return };
        let n = kind.protected_len();
        if pkt.len() < n + HMAC_LEN {
            return;
        }
        let (body, rest) = pkt.split_at_mut(n);
        match self.mode {
            SecurityMode::Authenticated => {
                let mut first = array_at::<16>(body, 0..16);
                rest[..HMAC_LEN].copy_from_slice(&c.hmac(&first));
                c.ecb_encrypt(&mut first);
                body[..16].copy_from_slice(&first);
            }
            _ => {
                rest[..HMAC_LEN].copy_from_slice(&c.hmac(body));
                c.cbc_encrypt(body);
            }
        }
    }

    /// Decrypts in place and checks the HMAC (constant time).
    pub fn unprotect(&self, kind: PacketKind, pkt: &mut [u8]) -> Result<(), CryptoError> {
        let Some(c) = &self.cipher else { return Ok(()) };
        let n = kind.protected_len();
        if pkt.len() < n + HMAC_LEN {
            return Err(CryptoError::BadLength("test packet"));
        }
        let (body, rest) = pkt.split_at_mut(n);
        match self.mode {
            SecurityMode::Authenticated => {
                let mut first = array_at::<16>(body, 0..16);
                c.ecb_decrypt(&mut first);
                body[..16].copy_from_slice(&first);
                c.verify(&first, &rest[..HMAC_LEN])
            }
            _ => {
                c.cbc_decrypt(body);
                c.verify(body, &rest[..HMAC_LEN])
            }
        }
    }
}
