//! NTP timestamps and the Error Estimate field (RFC 4656 §4.1.2, RFC 5357 §4.1.2).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                   Integer part of seconds                     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Fractional part of seconds                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//!  0                   1
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |S|Z|   Scale   |   Multiplier  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::fmt;
use std::time::Duration;

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// An NTP timestamp in the 64-bit 32.32 fixed-point format the RFCs use on the wire.
///
/// The seconds field wraps in 2036 (NTP era 1). Conversions to Unix time take values whose
/// seconds are below `0x8000_0000` (before 1968 in era 0) to be in era 1, as RFC 5905 §6
/// suggests, so the conversions are correct until 2104.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The all-zero timestamp, which the RFCs use for "not set" (e.g. Start-Time in a refusal).
    pub const ZERO: Self = Self(0);
    /// Octets on the wire.
    pub const LEN: usize = 8;

    /// From the raw 32.32 value.
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// The raw 32.32 value.
    pub const fn to_bits(self) -> u64 {
        self.0
    }

    /// From seconds and fraction fields.
    pub const fn new(seconds: u32, fraction: u32) -> Self {
        Self(((seconds as u64) << 32) | fraction as u64)
    }

    /// The integer seconds field.
    pub const fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The fractional field, in units of 2^-32 s.
    pub const fn fraction(self) -> u32 {
        self.0 as u32
    }

    /// From the 8 wire octets.
    pub const fn from_bytes(b: [u8; 8]) -> Self {
        Self(u64::from_be_bytes(b))
    }

    /// The 8 wire octets.
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// From a time since the Unix epoch (as `SystemTime::duration_since(UNIX_EPOCH)` gives).
    pub fn from_unix(since_epoch: Duration) -> Self {
        let secs = since_epoch.as_secs().wrapping_add(NTP_UNIX_OFFSET) as u32;
        // Round to nearest: nanos * 2^32 / 1e9.
        let frac = ((u64::from(since_epoch.subsec_nanos()) << 32) + 500_000_000) / 1_000_000_000;
        // frac can round up to 2^32 for nanos close to 1e9.
        Self((u64::from(secs) << 32).wrapping_add(frac))
    }

    /// The time since the Unix epoch, or `None` for times before 1970.
    pub fn to_unix(self) -> Option<Duration> {
        let secs = u64::from(self.seconds());
        let secs = if secs < 0x8000_0000 {
            secs + (1 << 32)
        } else {
            secs
        };
        let unix = secs.checked_sub(NTP_UNIX_OFFSET)?;
        Some(Duration::new(unix, frac_to_nanos(self.fraction())))
    }

    /// `self - earlier` in nanoseconds, taking the shorter way round the era (so it is right
    /// across the 2036 wrap as long as the two are less than 68 years apart).
    pub fn nanos_since(self, earlier: Self) -> i64 {
        let diff = self.0.wrapping_sub(earlier.0) as i64;
        // diff is in units of 2^-32 s; convert to ns without overflow for |diff| < 2^63.
        let neg = diff < 0;
        let mag = diff.unsigned_abs();
        let ns = (u128::from(mag) * 1_000_000_000 + (1 << 31)) >> 32;
        let ns = i64::try_from(ns).unwrap_or(i64::MAX);
        if neg { -ns } else { ns }
    }

    /// As seconds (with fraction) since the NTP epoch, for display.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 4_294_967_296.0
    }
}

/// Converts a duration to a 32.32 value (saturating above 2^32 s).
pub fn duration_to_bits(d: Duration) -> u64 {
    let secs = d.as_secs().min(u64::from(u32::MAX));
    let frac = ((u64::from(d.subsec_nanos()) << 32) + 500_000_000) / 1_000_000_000;
    (secs << 32).saturating_add(frac)
}

/// Converts a 32.32 value to a duration.
pub fn bits_to_duration(bits: u64) -> Duration {
    Duration::new(bits >> 32, frac_to_nanos(bits as u32))
}

fn frac_to_nanos(frac: u32) -> u32 {
    // Round to nearest; the result is at most 999_999_999 + rounding, clamp to stay valid.
    let ns = ((u64::from(frac) * 1_000_000_000) + (1 << 31)) >> 32;
    ns.min(999_999_999) as u32
}

/// A timestamp `d` later, wrapping at the end of the era.
impl std::ops::Add<Duration> for Timestamp {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        Self(self.0.wrapping_add(duration_to_bits(d)))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Timestamp({:08x}.{:08x})",
            self.seconds(),
            self.fraction()
        )
    }
}

/// The 16-bit Error Estimate that accompanies every test-packet timestamp.
///
/// `S` says the clock is synchronized to UTC from an external source; `Z` is MBZ in OWAMP and
/// in TWAMP selects the timestamp format (0 NTP, 1 PTPv2 truncated, RFC 8186); the error is
/// `Multiplier * 2^(-32) * 2^Scale` seconds. A Multiplier of zero is invalid (RFC 4656 §4.1.2):
/// a receiver should treat the packet as corrupt.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ErrorEstimate(u16);

impl ErrorEstimate {
    /// Octets on the wire.
    pub const LEN: usize = 2;
    const S: u16 = 0x8000;
    const Z: u16 = 0x4000;

    /// From the raw 16 bits.
    pub const fn from_bits(bits: u16) -> Self {
        Self(bits)
    }

    /// The raw 16 bits.
    pub const fn to_bits(self) -> u16 {
        self.0
    }

    /// From its parts. `scale` is masked to 6 bits.
    pub const fn new(synchronized: bool, scale: u8, multiplier: u8) -> Self {
        let s = if synchronized { Self::S } else { 0 };
        Self(s | (((scale & 0x3f) as u16) << 8) | multiplier as u16)
    }

    /// The smallest estimate that covers `error` (rounded up), with the S bit as given.
    pub fn from_duration(synchronized: bool, error: Duration) -> Self {
        let units = duration_to_bits(error).max(1);
        let mut scale = 0u8;
        let mut mult = units;
        while mult > 0xff {
            // Round up so the estimate never claims more accuracy than we have.
            mult = mult.div_ceil(2);
            scale += 1;
        }
        if scale > 0x3f {
            return Self::new(synchronized, 0x3f, 0xff);
        }
        Self::new(synchronized, scale, mult as u8)
    }

    /// S: synchronized to UTC by an external source.
    pub const fn synchronized(self) -> bool {
        self.0 & Self::S != 0
    }

    /// Z: MBZ in OWAMP; in TWAMP 1 means the timestamp is PTPv2 truncated (RFC 8186).
    pub const fn z(self) -> bool {
        self.0 & Self::Z != 0
    }

    /// The 6-bit Scale.
    pub const fn scale(self) -> u8 {
        ((self.0 >> 8) & 0x3f) as u8
    }

    /// The 8-bit Multiplier.
    pub const fn multiplier(self) -> u8 {
        self.0 as u8
    }

    /// False when Multiplier is zero, which RFC 4656 §4.1.2 forbids.
    pub const fn is_valid(self) -> bool {
        self.multiplier() != 0
    }

    /// The error in seconds: `Multiplier * 2^(-32) * 2^Scale`.
    pub fn seconds(self) -> f64 {
        f64::from(self.multiplier()) * 2f64.powi(i32::from(self.scale()) - 32)
    }

    /// From the 2 wire octets.
    pub const fn from_bytes(b: [u8; 2]) -> Self {
        Self(u16::from_be_bytes(b))
    }

    /// The 2 wire octets.
    pub const fn to_bytes(self) -> [u8; 2] {
        self.0.to_be_bytes()
    }
}

impl fmt::Debug for ErrorEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ErrorEstimate(S={} Z={} scale={} mult={} = {:e}s)",
            u8::from(self.synchronized()),
            u8::from(self.z()),
            self.scale(),
            self.multiplier(),
            self.seconds()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_timestamp_to_unix() {
        // twamp-auth.pcap Server-Start Start-Time: eeae165ea17d6b65 = 2026-11-23T01:33:18.630820Z
        let t = Timestamp::from_bytes([0xee, 0xae, 0x16, 0x5e, 0xa1, 0x7d, 0x6b, 0x65]);
        assert_eq!(t.seconds(), 4_004_386_398);
        let unix = t.to_unix().unwrap();
        assert_eq!(unix.as_secs(), 4_004_386_398 - NTP_UNIX_OFFSET);
        assert_eq!(unix.subsec_micros(), 630_820);
        let back = Timestamp::from_unix(unix);
        assert!((back.to_bits() as i64 - t.to_bits() as i64).abs() <= 2);
    }

    #[test]
    fn era_one_round_trip() {
        // 2040-01-01T00:00:00Z is past the 2036 wrap.
        let unix = Duration::from_secs(2_208_988_800);
        let t = Timestamp::from_unix(unix);
        assert!(t.seconds() < 0x8000_0000);
        assert_eq!(t.to_unix(), Some(unix));
    }

    #[test]
    fn differences_across_wrap() {
        let a = Timestamp::new(u32::MAX, 0);
        let b = a + Duration::from_millis(1500);
        assert_eq!(b.seconds(), 0);
        assert_eq!(b.nanos_since(a), 1_500_000_000);
        assert_eq!(a.nanos_since(b), -1_500_000_000);
    }

    #[test]
    fn fraction_rounding_never_overflows_nanos() {
        let t = Timestamp::new(3_900_000_000, u32::MAX);
        let d = t.to_unix().unwrap();
        assert!(d.subsec_nanos() <= 999_999_999);
        assert_eq!(
            bits_to_duration(0x0000_0000_8000_0000),
            Duration::from_millis(500)
        );
        assert_eq!(duration_to_bits(Duration::from_millis(500)), 0x8000_0000);
    }

    #[test]
    fn error_estimate_fields() {
        // Captures: 0x0001 = S 0, Scale 0, Multiplier 1.
        let e = ErrorEstimate::from_bytes([0x00, 0x01]);
        assert!(!e.synchronized());
        assert!(!e.z());
        assert_eq!((e.scale(), e.multiplier()), (0, 1));
        assert!(e.is_valid());
        assert_eq!(e.seconds(), 2f64.powi(-32));
        let e = ErrorEstimate::new(true, 0x3f, 0xff);
        assert_eq!(e.to_bits(), 0xbfff);
        assert!(!ErrorEstimate::from_bits(0x8100).is_valid());
        assert!(ErrorEstimate::from_bits(0x4001).z());
    }

    #[test]
    fn error_estimate_from_duration_covers_error() {
        for us in [1u64, 7, 100, 999, 12_345, 1_000_000, 3_600_000_000] {
            let d = Duration::from_micros(us);
            let e = ErrorEstimate::from_duration(true, d);
            assert!(e.synchronized());
            assert!(e.seconds() >= d.as_secs_f64(), "{us}us -> {e:?}");
            assert!(
                e.seconds() <= d.as_secs_f64() * 1.01 + 2f64.powi(-32),
                "{us}us -> {e:?}"
            );
        }
    }
}
