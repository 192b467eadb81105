//! STAMP test packets (RFC 8762 §4.2, §4.3) with the SSID of RFC 8972 §3: Session-Sender and
//! Session-Reflector packets in unauthenticated mode (44-octet base) and authenticated mode
//! (112-octet base, HMAC-SHA-256 truncated to 16 octets over octets 0..96), each followed by
//! the TLV area ([`super::stamp_tlv`]).
//!
//! Session-Sender, unauthenticated (RFC 8762 Figure 2, RFC 8972 Figure 1):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        Sequence Number                        |  0
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                          Timestamp                            |  4
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Error Estimate        |             SSID              | 12
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         MBZ (28 octets)                       | 16
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ~                            TLVs                               ~ 44
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Session-Reflector, unauthenticated (RFC 8762 Figure 5, RFC 8972 Figure 2): Sequence Number
//! (0), Timestamp (4), Error Estimate (12), SSID (14), Receive Timestamp (16), Session-Sender
//! Sequence Number (24), Session-Sender Timestamp (28), Session-Sender Error Estimate (36),
//! MBZ (38, 2 octets), Session-Sender TTL (40), MBZ (41, 3 octets), TLVs (44).
//!
//! Session-Sender, authenticated (RFC 8762 Figure 4, RFC 8972 Figure 3): Sequence Number (0),
//! MBZ (4, 12 octets), Timestamp (16), Error Estimate (24), SSID (26), MBZ (28, 68 octets),
//! HMAC (96, 16 octets), TLVs (112).
//!
//! Session-Reflector, authenticated (RFC 8762 Figure 6, RFC 8972 Figure 4): Sequence Number
//! (0), MBZ (4, 12), Timestamp (16), Error Estimate (24), SSID (26), MBZ (28, 4), Receive
//! Timestamp (32), MBZ (40, 8), Session-Sender Sequence Number (48), MBZ (52, 12),
//! Session-Sender Timestamp (64), Session-Sender Error Estimate (72), MBZ (74, 6),
//! Session-Sender TTL (80), MBZ (81, 15), HMAC (96, 16), TLVs (112).
//!
//! Every MBZ field is written as zero and ignored on receipt (RFC 8762 §4.2.1, §4.2.2, §4.3.1,
//! §4.3.2 all say "MUST be ignored on receipt"). The HMAC field is laid out here but computed
//! and checked by [`crate::stamp`]: `emit` writes it as zero and `parse` does not look at it.
//!
//! A TWAMP-Light Session-Sender (RFC 5357 Appendix I) sends the 14-octet TWAMP-Test header and
//! padding; its first 14 octets are the STAMP unauthenticated sender's first 14, so
//! [`SenderRepr::parse_twamp_light`] reads them from any packet of at least 14 octets (RFC 8762
//! §4.6). The unauthenticated reflector layout is the TWAMP-Test reflector layout with the
//! SSID in the old MBZ, so a TWAMP-Light sender reads a STAMP reply unchanged.

use crate::WireError;
use crate::time::{ErrorEstimate, Timestamp};
use crate::wire::{HMAC_LEN, array_at, check_len, u16_at, u32_at, u64_at};

/// Base length of every unauthenticated STAMP packet, sender and reflector (RFC 8762 §4.2).
pub const UNAUTH_BASE_LEN: usize = 44;
/// Base length of every authenticated STAMP packet, sender and reflector (RFC 8762 §4.2).
pub const AUTH_BASE_LEN: usize = 112;
/// Octets the base-packet HMAC covers: the first six 16-octet blocks (RFC 8762 §4.4).
pub const AUTH_HMAC_COVERS: usize = 96;
/// The TWAMP-Test sender header a TWAMP-Light sender sends before its padding (RFC 5357
/// §4.1.2): Sequence Number, Timestamp, Error Estimate.
pub const TWAMP_LIGHT_HEADER_LEN: usize = 14;

/// The two STAMP modes (RFC 8762 §4): they differ in the base packet's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StampMode {
    /// RFC 8762 §4.2.1 and §4.3.1: no integrity protection; interoperates with TWAMP-Light.
    Unauthenticated,
    /// RFC 8762 §4.2.2 and §4.3.2: HMAC-SHA-256-128 over the first 96 octets.
    Authenticated,
}

impl StampMode {
    /// Octets of the base packet, before the TLVs; the same for sender and reflector, which is
    /// what lets a reflector answer with a packet of the sender's size.
    pub const fn base_len(self) -> usize {
        match self {
            Self::Unauthenticated => UNAUTH_BASE_LEN,
            Self::Authenticated => AUTH_BASE_LEN,
        }
    }

    /// Its name in reports, JSON, the archive and configuration files.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::Authenticated => "authenticated",
        }
    }
}

impl std::fmt::Display for StampMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

mod field {
    use crate::wire::Field;

    pub(crate) const SEQ: Field = 0..4;
    // Unauthenticated layouts.
    pub(crate) const U_TS: Field = 4..12;
    pub(crate) const U_ERR: Field = 12..14;
    pub(crate) const U_SSID: Field = 14..16;
    pub(crate) const U_R_RECV_TS: Field = 16..24;
    pub(crate) const U_R_SEQ: Field = 24..28;
    pub(crate) const U_R_TS: Field = 28..36;
    pub(crate) const U_R_ERR: Field = 36..38;
    pub(crate) const U_R_TTL: usize = 40;
    // Authenticated layouts.
    pub(crate) const A_TS: Field = 16..24;
    pub(crate) const A_ERR: Field = 24..26;
    pub(crate) const A_SSID: Field = 26..28;
    pub(crate) const A_R_RECV_TS: Field = 32..40;
    pub(crate) const A_R_SEQ: Field = 48..52;
    pub(crate) const A_R_TS: Field = 64..72;
    pub(crate) const A_R_ERR: Field = 72..74;
    pub(crate) const A_R_TTL: usize = 80;
    pub(crate) const A_HMAC: Field = 96..112;
}

/// The Timestamp field's range in `mode` (the same for sender and reflector).
pub(crate) const fn timestamp_field(mode: StampMode) -> core::ops::Range<usize> {
    match mode {
        StampMode::Unauthenticated => field::U_TS,
        StampMode::Authenticated => field::A_TS,
    }
}

/// The HMAC field's range (authenticated mode; the same for sender and reflector).
pub(crate) const HMAC_FIELD: core::ops::Range<usize> = field::A_HMAC;

macro_rules! common_accessors {
    () => {
        /// Wraps a buffer without checking its length.
        pub const fn new_unchecked(buffer: T, mode: StampMode) -> Self {
            Self { buffer, mode }
        }

        /// Wraps a buffer, checking that it holds at least the base packet of `mode`.
        pub fn new_checked(buffer: T, mode: StampMode) -> Result<Self, WireError> {
            let v = Self::new_unchecked(buffer, mode);
            check_len(v.buffer.as_ref(), mode.base_len(), Self::NAME)?;
            Ok(v)
        }

        /// The buffer.
        pub fn into_inner(self) -> T {
            self.buffer
        }

        /// The mode the view reads the buffer in.
        pub const fn mode(&self) -> StampMode {
            self.mode
        }

        fn pick<F>(&self, unauth: F, auth: F) -> F {
            match self.mode {
                StampMode::Unauthenticated => unauth,
                StampMode::Authenticated => auth,
            }
        }

        /// Sequence Number.
        pub fn seq(&self) -> u32 {
            u32_at(self.buffer.as_ref(), field::SEQ)
        }

        /// Timestamp (T1 for the sender, T3 for the reflector).
        pub fn timestamp(&self) -> Timestamp {
            let f = self.pick(field::U_TS, field::A_TS);
            Timestamp::from_bits(u64_at(self.buffer.as_ref(), f))
        }

        /// Error Estimate (its Z bit says NTP or PTP timestamps, RFC 8762 §4.2.1).
        pub fn error_estimate(&self) -> ErrorEstimate {
            let f = self.pick(field::U_ERR, field::A_ERR);
            ErrorEstimate::from_bytes(array_at(self.buffer.as_ref(), f))
        }

        /// SSID (RFC 8972 §3): non-zero when the sender uses one; zero from a sender or
        /// reflector that does not implement RFC 8972.
        pub fn ssid(&self) -> u16 {
            u16_at(
                self.buffer.as_ref(),
                self.pick(field::U_SSID, field::A_SSID),
            )
        }

        /// The HMAC field (authenticated mode only).
        pub fn hmac(&self) -> Option<[u8; HMAC_LEN]> {
            match self.mode {
                StampMode::Unauthenticated => None,
                StampMode::Authenticated => Some(array_at(self.buffer.as_ref(), field::A_HMAC)),
            }
        }

        /// The TLV area: everything after the base packet (RFC 8972 §4).
        pub fn tlvs(&self) -> &[u8] {
            &self.buffer.as_ref()[self.mode.base_len()..]
        }
    };
}

/// A zero-copy view of a STAMP Session-Sender packet (layouts in the [module docs](self)).
#[derive(Debug, Clone)]
pub struct SenderPacket<T: AsRef<[u8]>> {
    buffer: T,
    mode: StampMode,
}

impl<T: AsRef<[u8]>> SenderPacket<T> {
    const NAME: &'static str = "STAMP sender packet";
    common_accessors!();
}

/// A zero-copy view of a STAMP Session-Reflector packet (layouts in the [module docs](self)).
#[derive(Debug, Clone)]
pub struct ReflectorPacket<T: AsRef<[u8]>> {
    buffer: T,
    mode: StampMode,
}

impl<T: AsRef<[u8]>> ReflectorPacket<T> {
    const NAME: &'static str = "STAMP reflector packet";
    common_accessors!();

    /// Receive Timestamp (T2).
    pub fn receive_timestamp(&self) -> Timestamp {
        let f = self.pick(field::U_R_RECV_TS, field::A_R_RECV_TS);
        Timestamp::from_bits(u64_at(self.buffer.as_ref(), f))
    }

    /// Session-Sender Sequence Number.
    pub fn sender_seq(&self) -> u32 {
        u32_at(
            self.buffer.as_ref(),
            self.pick(field::U_R_SEQ, field::A_R_SEQ),
        )
    }

    /// Session-Sender Timestamp (T1, copied).
    pub fn sender_timestamp(&self) -> Timestamp {
        let f = self.pick(field::U_R_TS, field::A_R_TS);
        Timestamp::from_bits(u64_at(self.buffer.as_ref(), f))
    }

    /// Session-Sender Error Estimate (copied).
    pub fn sender_error_estimate(&self) -> ErrorEstimate {
        let f = self.pick(field::U_R_ERR, field::A_R_ERR);
        ErrorEstimate::from_bytes(array_at(self.buffer.as_ref(), f))
    }

    /// Session-Sender TTL: the IPv4 TTL or IPv6 Hop Limit of the sender's packet as it
    /// arrived.
    pub fn sender_ttl(&self) -> u8 {
        self.buffer.as_ref()[self.pick(field::U_R_TTL, field::A_R_TTL)]
    }
}

/// Writes a timestamp into a packet of either kind (the Timestamp field is at the same place
/// in the sender and reflector layouts of a mode). A buffer too short is left alone: the
/// caller sized it with `emit`, which checked the length.
pub fn stamp_timestamp(buf: &mut [u8], mode: StampMode, t: Timestamp) {
    if let Some(b) = buf.get_mut(timestamp_field(mode)) {
        b.copy_from_slice(&t.to_bytes());
    }
}

/// The fields of a STAMP Session-Sender base packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderRepr {
    /// Sequence Number: from zero, one more per packet (RFC 8762 §4.2.1).
    pub seq: u32,
    /// Timestamp (T1).
    pub timestamp: Timestamp,
    /// Error Estimate.
    pub error_estimate: ErrorEstimate,
    /// SSID (RFC 8972 §3); zero when the session uses none.
    pub ssid: u16,
}

impl SenderRepr {
    /// Reads the base packet of a sender packet of at least `mode.base_len()` octets; the
    /// TLVs are the view's [`SenderPacket::tlvs`].
    pub fn parse(buf: &[u8], mode: StampMode) -> Result<Self, WireError> {
        let v = SenderPacket::new_checked(buf, mode)?;
        Ok(Self {
            seq: v.seq(),
            timestamp: v.timestamp(),
            error_estimate: v.error_estimate(),
            ssid: v.ssid(),
        })
    }

    /// Reads an unauthenticated sender packet that may be shorter than the STAMP base packet,
    /// as a TWAMP-Light sender's is (RFC 8762 §4.6): the first 14 octets are required, the
    /// SSID is read when the packet holds it and is zero otherwise.
    pub fn parse_twamp_light(buf: &[u8]) -> Result<Self, WireError> {
        check_len(buf, TWAMP_LIGHT_HEADER_LEN, "TWAMP-Light sender packet")?;
        Ok(Self {
            seq: u32_at(buf, field::SEQ),
            timestamp: Timestamp::from_bits(u64_at(buf, field::U_TS)),
            error_estimate: ErrorEstimate::from_bytes(array_at(buf, field::U_ERR)),
            ssid: buf
                .get(field::U_SSID)
                .map_or(0, |_| u16_at(buf, field::U_SSID)),
        })
    }

    /// Octets of the base packet.
    pub const fn buffer_len(mode: StampMode) -> usize {
        mode.base_len()
    }

    /// Writes the base packet into the first `mode.base_len()` octets of `buf`: MBZ and HMAC
    /// zero; the octets after it (the TLV area) are left alone.
    pub fn emit(&self, buf: &mut [u8], mode: StampMode) -> Result<(), WireError> {
        let b = buf
            .get_mut(..mode.base_len())
            .ok_or(WireError::BufferTooSmall("STAMP sender packet"))?;
        b.fill(0);
        let (ts, err, ssid) = match mode {
            StampMode::Unauthenticated => (field::U_TS, field::U_ERR, field::U_SSID),
            StampMode::Authenticated => (field::A_TS, field::A_ERR, field::A_SSID),
        };
        b[field::SEQ].copy_from_slice(&self.seq.to_be_bytes());
        b[ts].copy_from_slice(&self.timestamp.to_bytes());
        b[err].copy_from_slice(&self.error_estimate.to_bytes());
        b[ssid].copy_from_slice(&self.ssid.to_be_bytes());
        Ok(())
    }
}

/// The fields of a STAMP Session-Reflector base packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReflectorRepr {
    /// Sequence Number: the reflector's own count when stateful, the sender's when stateless
    /// (RFC 8762 §4.3.1).
    pub seq: u32,
    /// Timestamp (T3).
    pub timestamp: Timestamp,
    /// Error Estimate of the reflector's clock, for both Timestamp and Receive Timestamp.
    pub error_estimate: ErrorEstimate,
    /// SSID, copied from the sender's packet (RFC 8972 §3).
    pub ssid: u16,
    /// Receive Timestamp (T2).
    pub receive_timestamp: Timestamp,
    /// Session-Sender Sequence Number.
    pub sender_seq: u32,
    /// Session-Sender Timestamp.
    pub sender_timestamp: Timestamp,
    /// Session-Sender Error Estimate.
    pub sender_error_estimate: ErrorEstimate,
    /// Session-Sender TTL.
    pub sender_ttl: u8,
}

impl ReflectorRepr {
    /// Reads the base packet of a reflector packet of at least `mode.base_len()` octets.
    pub fn parse(buf: &[u8], mode: StampMode) -> Result<Self, WireError> {
        let v = ReflectorPacket::new_checked(buf, mode)?;
        Ok(Self {
            seq: v.seq(),
            timestamp: v.timestamp(),
            error_estimate: v.error_estimate(),
            ssid: v.ssid(),
            receive_timestamp: v.receive_timestamp(),
            sender_seq: v.sender_seq(),
            sender_timestamp: v.sender_timestamp(),
            sender_error_estimate: v.sender_error_estimate(),
            sender_ttl: v.sender_ttl(),
        })
    }

    /// Octets of the base packet.
    pub const fn buffer_len(mode: StampMode) -> usize {
        mode.base_len()
    }

    /// Writes the base packet into the first `mode.base_len()` octets of `buf`: MBZ and HMAC
    /// zero; the TLV area after it is left alone.
    pub fn emit(&self, buf: &mut [u8], mode: StampMode) -> Result<(), WireError> {
        let b = buf
            .get_mut(..mode.base_len())
            .ok_or(WireError::BufferTooSmall("STAMP reflector packet"))?;
        b.fill(0);
        let (ts, err, ssid, rts, rseq, sts, serr, ttl) = match mode {
            StampMode::Unauthenticated => (
                field::U_TS,
                field::U_ERR,
                field::U_SSID,
                field::U_R_RECV_TS,
                field::U_R_SEQ,
                field::U_R_TS,
                field::U_R_ERR,
                field::U_R_TTL,
            ),
            StampMode::Authenticated => (
                field::A_TS,
                field::A_ERR,
                field::A_SSID,
                field::A_R_RECV_TS,
                field::A_R_SEQ,
                field::A_R_TS,
                field::A_R_ERR,
                field::A_R_TTL,
            ),
        };
        b[field::SEQ].copy_from_slice(&self.seq.to_be_bytes());
        b[ts].copy_from_slice(&self.timestamp.to_bytes());
        b[err].copy_from_slice(&self.error_estimate.to_bytes());
        b[ssid].copy_from_slice(&self.ssid.to_be_bytes());
        b[rts].copy_from_slice(&self.receive_timestamp.to_bytes());
        b[rseq].copy_from_slice(&self.sender_seq.to_be_bytes());
        b[sts].copy_from_slice(&self.sender_timestamp.to_bytes());
        b[serr].copy_from_slice(&self.sender_error_estimate.to_bytes());
        b[ttl] = self.sender_ttl;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    // RFC 8762 Figure 2 / RFC 8972 Figure 1, written out field by field:
    //   Sequence Number   0..4    00000007
    //   Timestamp         4..12   e3a1b2c3 80000000
    //   Error Estimate   12..14   8101        (S=1, Scale=1, Multiplier=1)
    //   SSID             14..16   beef
    //   MBZ              16..44   28 x 00
    const SENDER_UNAUTH: &str = "00000007 e3a1b2c3 80000000 8101 beef
        00000000 00000000 00000000 00000000 00000000 00000000 00000000";

    // RFC 8762 Figure 5 / RFC 8972 Figure 2:
    //   Sequence Number                 0..4    00000002
    //   Timestamp                       4..12   e3a1b2c4 00000001
    //   Error Estimate                 12..14   0001
    //   SSID                           14..16   beef
    //   Receive Timestamp              16..24   e3a1b2c3 c0000000
    //   Session-Sender Sequence Number 24..28   00000007
    //   Session-Sender Timestamp       28..36   e3a1b2c3 80000000
    //   Session-Sender Error Estimate  36..38   8101
    //   MBZ                            38..40   0000
    //   Session-Sender TTL             40       fe
    //   MBZ                            41..44   000000
    const REFLECTOR_UNAUTH: &str = "00000002 e3a1b2c4 00000001 0001 beef e3a1b2c3 c0000000
        00000007 e3a1b2c3 80000000 8101 0000 fe 000000";

    // RFC 8762 Figure 4 / RFC 8972 Figure 3:
    //   Sequence Number   0..4     00000007
    //   MBZ               4..16    12 x 00
    //   Timestamp        16..24    e3a1b2c3 80000000
    //   Error Estimate   24..26    8101
    //   SSID             26..28    beef
    //   MBZ              28..96    68 x 00
    //   HMAC             96..112   (not read by parse; zero from emit)
    const SENDER_AUTH_HEAD: &str = "00000007 000000000000000000000000 e3a1b2c3 80000000 8101 beef";

    // RFC 8762 Figure 6 / RFC 8972 Figure 4:
    //   Sequence Number                 0..4    00000002
    //   MBZ                             4..16   12 x 00
    //   Timestamp                      16..24   e3a1b2c4 00000001
    //   Error Estimate                 24..26   0001
    //   SSID                           26..28   beef
    //   MBZ                            28..32   4 x 00
    //   Receive Timestamp              32..40   e3a1b2c3 c0000000
    //   MBZ                            40..48   8 x 00
    //   Session-Sender Sequence Number 48..52   00000007
    //   MBZ                            52..64   12 x 00
    //   Session-Sender Timestamp       64..72   e3a1b2c3 80000000
    //   Session-Sender Error Estimate  72..74   8101
    //   MBZ                            74..80   6 x 00
    //   Session-Sender TTL             80       fe
    //   MBZ                            81..96   15 x 00
    //   HMAC                           96..112  16 x 00 here
    const REFLECTOR_AUTH: &str = "00000002 000000000000000000000000 e3a1b2c4 00000001 0001 beef
        00000000 e3a1b2c3 c0000000 0000000000000000 00000007 000000000000000000000000
        e3a1b2c3 80000000 8101 000000000000 fe 000000000000000000000000000000
        00000000000000000000000000000000";

    fn sender() -> SenderRepr {
        SenderRepr {
            seq: 7,
            timestamp: Timestamp::new(0xe3a1_b2c3, 0x8000_0000),
            error_estimate: ErrorEstimate::from_bits(0x8101),
            ssid: 0xbeef,
        }
    }

    fn reflector() -> ReflectorRepr {
        ReflectorRepr {
            seq: 2,
            timestamp: Timestamp::new(0xe3a1_b2c4, 1),
            error_estimate: ErrorEstimate::from_bits(0x0001),
            ssid: 0xbeef,
            receive_timestamp: Timestamp::new(0xe3a1_b2c3, 0xc000_0000),
            sender_seq: 7,
            sender_timestamp: Timestamp::new(0xe3a1_b2c3, 0x8000_0000),
            sender_error_estimate: ErrorEstimate::from_bits(0x8101),
            sender_ttl: 0xfe,
        }
    }

    #[test]
    fn sender_unauth_golden() {
        let b = h(SENDER_UNAUTH);
        assert_eq!(b.len(), UNAUTH_BASE_LEN);
        assert_eq!(
            SenderRepr::parse(&b, StampMode::Unauthenticated).unwrap(),
            sender()
        );
        let mut out = vec![0xa5; UNAUTH_BASE_LEN];
        sender().emit(&mut out, StampMode::Unauthenticated).unwrap();
        assert_eq!(out, b);
        let v = SenderPacket::new_checked(&b[..], StampMode::Unauthenticated).unwrap();
        assert!(v.tlvs().is_empty());
        assert_eq!(v.hmac(), None);
    }

    #[test]
    fn sender_auth_golden() {
        let mut b = h(SENDER_AUTH_HEAD);
        b.resize(AUTH_BASE_LEN, 0);
        assert_eq!(
            SenderRepr::parse(&b, StampMode::Authenticated).unwrap(),
            sender()
        );
        let mut out = vec![0xa5; AUTH_BASE_LEN + 3];
        sender().emit(&mut out, StampMode::Authenticated).unwrap();
        assert_eq!(out[..AUTH_BASE_LEN], b);
        // The TLV area is the caller's.
        assert_eq!(out[AUTH_BASE_LEN..], [0xa5; 3]);
    }

    #[test]
    fn reflector_golden() {
        for (hex, mode) in [
            (REFLECTOR_UNAUTH, StampMode::Unauthenticated),
            (REFLECTOR_AUTH, StampMode::Authenticated),
        ] {
            let b = h(hex);
            assert_eq!(b.len(), mode.base_len());
            assert_eq!(ReflectorRepr::parse(&b, mode).unwrap(), reflector());
            let mut out = vec![0xa5; mode.base_len()];
            reflector().emit(&mut out, mode).unwrap();
            assert_eq!(out, b);
        }
    }

    /// The unauthenticated STAMP reflector layout is the TWAMP-Test open reflector layout plus
    /// the SSID (RFC 8762 §4.6): a TWAMP parser reads the STAMP golden packet field for field.
    #[test]
    fn twamp_reads_stamp_reflector() {
        use crate::wire::test::{Layout, ReflectorRepr as TwampReflector};
        let t = TwampReflector::parse(&h(REFLECTOR_UNAUTH), Layout::Open).unwrap();
        let s = reflector();
        assert_eq!(t.seq, s.seq);
        assert_eq!(t.receive_timestamp, s.receive_timestamp);
        assert_eq!(t.sender_seq, s.sender_seq);
        assert_eq!(t.sender_timestamp, s.sender_timestamp);
        assert_eq!(t.sender_error_estimate, s.sender_error_estimate);
        assert_eq!(t.sender_ttl, s.sender_ttl);
    }

    #[test]
    fn twamp_light_sender() {
        let b = h(SENDER_UNAUTH);
        let mut want = sender();
        assert_eq!(SenderRepr::parse_twamp_light(&b[..16]).unwrap(), want);
        want.ssid = 0;
        assert_eq!(SenderRepr::parse_twamp_light(&b[..14]).unwrap(), want);
        assert_eq!(SenderRepr::parse_twamp_light(&b[..15]).unwrap(), want);
        for n in 0..TWAMP_LIGHT_HEADER_LEN {
            assert_eq!(
                SenderRepr::parse_twamp_light(&b[..n]),
                Err(WireError::Truncated("TWAMP-Light sender packet"))
            );
        }
    }

    #[test]
    fn truncated_everywhere() {
        for mode in [StampMode::Unauthenticated, StampMode::Authenticated] {
            let b = vec![0u8; mode.base_len()];
            for n in 0..mode.base_len() {
                assert_eq!(
                    SenderRepr::parse(&b[..n], mode),
                    Err(WireError::Truncated("STAMP sender packet"))
                );
                assert_eq!(
                    ReflectorRepr::parse(&b[..n], mode),
                    Err(WireError::Truncated("STAMP reflector packet"))
                );
                let mut small = vec![0u8; n];
                assert_eq!(
                    sender().emit(&mut small, mode),
                    Err(WireError::BufferTooSmall("STAMP sender packet"))
                );
                assert_eq!(
                    reflector().emit(&mut small, mode),
                    Err(WireError::BufferTooSmall("STAMP reflector packet"))
                );
                // Stamping a too-short buffer is a no-op, not a panic.
                stamp_timestamp(&mut small, mode, Timestamp::new(1, 2));
            }
            assert!(SenderRepr::parse(&b, mode).is_ok());
            assert!(ReflectorRepr::parse(&b, mode).is_ok());
        }
    }

    /// MBZ fields are ignored on receipt (RFC 8762 §4.2.1, §4.3.1).
    #[test]
    fn mbz_ignored() {
        let mut b = h(REFLECTOR_AUTH);
        for r in [4..16, 28..32, 40..48, 52..64, 74..80, 81..96] {
            b[r].fill(0xff);
        }
        assert_eq!(
            ReflectorRepr::parse(&b, StampMode::Authenticated).unwrap(),
            reflector()
        );
    }
}
