//! STAMP TLVs (RFC 8972 §4): the TLV header and flags, a TLV iterator that never panics, and
//! the value formats of every TLV RFC 8972 defines.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |STAMP TLV Flags|     Type      |           Length              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ~                            Value                              ~
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//!  0 1 2 3 4 5 6 7
//! +-+-+-+-+-+-+-+-+
//! |U|M|I|R|R|R|R|R|      STAMP TLV Flags (RFC 8972 Figure 6)
//! +-+-+-+-+-+-+-+-+
//! ```
//!
//! Sub-TLVs (inside Location and Timestamp Information) have the same format.
//!
//! Two levels, as elsewhere in [`crate::wire`]: [`Tlvs`] walks a TLV area and yields each TLV
//! as a borrowed [`Tlv`] (flags, type, value), or one [`MalformedTlv`] where the area stops
//! making sense (a header cut short, a Length past the end of the packet) and nothing after
//! it; [`TlvRepr::parse`] then reads a known TLV's value and fails with a typed error when its
//! Length is not valid for its type, which is RFC 8972's other meaning of "malformed". What a
//! reflector or sender does with the flags is in [`crate::stamp`].
//!
//! Receive policy of reserved fields: the R flags, CoS Reserved, Access Report Resv and
//! Reserved, Follow-Up Telemetry Reserved and the MBZ of sub-TLVs are ignored on receipt and
//! written as zero (RFC 8972 §4, §4.2.1, §4.4, §4.6, §4.7 say "ignored on receipt").

use std::fmt;

use crate::WireError;
use crate::wire::{HMAC_LEN, array_at, u16_at};

/// Octets of a TLV header: Flags, Type, Length.
pub const TLV_HEADER_LEN: usize = 4;

/// The STAMP TLV Flags octet (RFC 8972 §4, Figure 6). Reserved bits are kept as received (so
/// a TLV copied unchanged stays unchanged) but mean nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TlvFlags(pub u8);

impl TlvFlags {
    /// No flag set.
    pub const NONE: Self = Self(0);
    /// U, Unrecognized: set by a sender on every TLV it sends; set by a reflector on a TLV it
    /// did not understand, cleared on the others.
    pub const U: Self = Self(0x80);
    /// M, Malformed: set by a reflector on the TLV where the TLVs stopped making sense.
    pub const M: Self = Self(0x40);
    /// I, Integrity: set by a reflector on every TLV when the HMAC TLV did not verify.
    pub const I: Self = Self(0x20);
    /// The flags RFC 8972 defines; the other five bits are reserved.
    pub const DEFINED: Self = Self(0xe0);

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags and `other`'s.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// These flags without `other`'s.
    pub const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }
}

impl fmt::Debug for TlvFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlvFlags(")?;
        for (flag, name) in [(Self::U, "U"), (Self::M, "M"), (Self::I, "I")] {
            if self.contains(flag) {
                f.write_str(name)?;
            }
        }
        write!(f, "|{:#04x})", self.0)
    }
}

/// Declares a newtype over an open IANA registry's octet, with named constants, so unknown
/// values round-trip (the house style for open registries).
macro_rules! open_codepoint {
    ($(#[$m:meta])* $name:ident { $($(#[$cm:meta])* $c:ident = $v:expr),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
        pub struct $name(pub u8);

        impl $name {
            $($(#[$cm])* pub const $c: Self = Self($v);)+

            /// The registry's name for the value, if this implementation knows it.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($v => Some(stringify!($c)),)+
                    _ => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => write!(f, "{}::{}", stringify!($name), n),
                    None => write!(f, "{}({:#04x})", stringify!($name), self.0),
                }
            }
        }
    };
}

open_codepoint! {
    /// STAMP TLV Types (RFC 8972 §5.1, Table 2). 252..=254 are Private Use: their value must
    /// start with a 4-octet Private Enterprise Code (RFC 8972 §4).
    TlvType {
        /// Extra Padding (§4.1).
        EXTRA_PADDING = 0x01,
        /// Location (§4.2).
        LOCATION = 0x02,
        /// Timestamp Information (§4.3).
        TIMESTAMP_INFO = 0x03,
        /// Class of Service (§4.4).
        CLASS_OF_SERVICE = 0x04,
        /// Direct Measurement (§4.5).
        DIRECT_MEASUREMENT = 0x05,
        /// Access Report (§4.6).
        ACCESS_REPORT = 0x06,
        /// Follow-Up Telemetry (§4.7).
        FOLLOW_UP_TELEMETRY = 0x07,
        /// HMAC (§4.8).
        HMAC = 0x08,
    }
}

open_codepoint! {
    /// STAMP Sub-TLV Types (RFC 8972 §5.3, Table 5), all of the Location TLV.
    SubTlvType {
        /// Source MAC Address (a request: 8 octets MBZ).
        SOURCE_MAC = 0x01,
        /// Source EUI-48 Address (the answer to a Source MAC request).
        SOURCE_EUI48 = 0x02,
        /// Source EUI-64 Address (the answer to a Source MAC request).
        SOURCE_EUI64 = 0x03,
        /// Destination IP Address (a request: 16 octets MBZ).
        DESTINATION_IP = 0x04,
        /// Destination IPv4 Address.
        DESTINATION_IPV4 = 0x05,
        /// Destination IPv6 Address.
        DESTINATION_IPV6 = 0x06,
        /// Source IP Address (a request: 16 octets MBZ).
        SOURCE_IP = 0x07,
        /// Source IPv4 Address.
        SOURCE_IPV4 = 0x08,
        /// Source IPv6 Address.
        SOURCE_IPV6 = 0x09,
    }
}

open_codepoint! {
    /// STAMP Synchronization Sources (RFC 8972 §5.4, Table 7).
    SyncSource {
        /// NTP.
        NTP = 0x01,
        /// PTP.
        PTP = 0x02,
        /// SSU/BITS.
        SSU_BITS = 0x03,
        /// GPS/GLONASS/LORAN-C/BDS/Galileo.
        GNSS = 0x04,
        /// Local free-running.
        LOCAL_FREE_RUNNING = 0x05,
    }
}

open_codepoint! {
    /// STAMP Timestamping Methods (RFC 8972 §5.5, Table 9).
    TimestampMethod {
        /// HW Assist.
        HW_ASSIST = 0x01,
        /// SW Local.
        SW_LOCAL = 0x02,
        /// Control Plane.
        CONTROL_PLANE = 0x03,
    }
}

open_codepoint! {
    /// STAMP Return Codes (RFC 8972 §5.6, Table 11).
    ReturnCode {
        /// Network available.
        NETWORK_AVAILABLE = 0x01,
        /// Network unavailable.
        NETWORK_UNAVAILABLE = 0x02,
    }
}

/// One TLV (or sub-TLV) as found in a TLV area; the value is borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// Where the TLV starts, from the start of the area it was read from.
    pub offset: usize,
    /// STAMP TLV Flags.
    pub flags: TlvFlags,
    /// Type: a [`TlvType`] for a TLV, a [`SubTlvType`] for a sub-TLV.
    pub typ: u8,
    /// Value: Length octets.
    pub value: &'a [u8],
}

impl Tlv<'_> {
    /// The type, read as a TLV's.
    pub const fn tlv_type(&self) -> TlvType {
        TlvType(self.typ)
    }

    /// The type, read as a sub-TLV's.
    pub const fn sub_tlv_type(&self) -> SubTlvType {
        SubTlvType(self.typ)
    }

    /// Octets of the whole TLV, header included.
    pub const fn len(&self) -> usize {
        TLV_HEADER_LEN + self.value.len()
    }

    /// Never true: a TLV has at least its header (clippy wants the pair).
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// Where the TLV ends in its area.
    pub const fn end(&self) -> usize {
        self.offset + self.len()
    }
}

/// Where a TLV area stops making sense: the rest of the area from `offset` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedTlv<'a> {
    /// Offset of the bad TLV in its area.
    pub offset: usize,
    /// Everything from the bad TLV to the end of the area.
    pub rest: &'a [u8],
    /// Why: `Truncated("STAMP TLV header")` when fewer than 4 octets are left,
    /// `Truncated("STAMP TLV value")` when Length runs past the end.
    pub reason: WireError,
}

/// An iterator over the TLVs of a TLV area (or the sub-TLVs of a value). It yields each TLV,
/// then at most one [`MalformedTlv`], after which it yields nothing: RFC 8972 §4 stops TLV
/// processing at a malformed TLV, and after one the boundaries of the rest are unknown.
#[derive(Debug, Clone)]
pub struct Tlvs<'a> {
    area: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Tlvs<'a> {
    /// Walks `area` from its first octet.
    pub const fn new(area: &'a [u8]) -> Self {
        Self {
            area,
            pos: 0,
            done: false,
        }
    }

    /// Whether the whole area is a sequence of well-formed TLV headers and lengths.
    pub fn is_well_formed(&self) -> bool {
        self.clone().all(|t| t.is_ok())
    }
}

impl<'a> Iterator for Tlvs<'a> {
    type Item = Result<Tlv<'a>, MalformedTlv<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.area.get(self.pos..).unwrap_or(&[]);
        if rest.is_empty() {
            self.done = true;
            return None;
        }
        let offset = self.pos;
        let malformed = |reason| MalformedTlv {
            offset,
            rest,
            reason,
        };
        if rest.len() < TLV_HEADER_LEN {
            self.done = true;
            return Some(Err(malformed(WireError::Truncated("STAMP TLV header"))));
        }
        let len = usize::from(u16_at(rest, 2..4));
        let Some(value) = rest.get(TLV_HEADER_LEN..TLV_HEADER_LEN + len) else {
            self.done = true;
            return Some(Err(malformed(WireError::Truncated("STAMP TLV value"))));
        };
        self.pos += TLV_HEADER_LEN + len;
        Some(Ok(Tlv {
            offset,
            flags: TlvFlags(rest[0]),
            typ: rest[1],
            value,
        }))
    }
}

impl std::iter::FusedIterator for Tlvs<'_> {}

mod values;
use values::exact_len;
pub use values::{
    AccessId, AccessReport, ClassOfService, DirectMeasurement, FollowUpTelemetry, Location,
    LocationSub, LocationSubTlv, TimestampInfo,
};

/// Writes a TLV header for a value of `value_len` octets at the start of `buf` and returns
/// the whole TLV's length; fails when the value does not fit the 16-bit Length or `buf`.
pub fn emit_header(
    buf: &mut [u8],
    flags: TlvFlags,
    typ: u8,
    value_len: usize,
) -> Result<usize, WireError> {
    let len = u16::try_from(value_len).map_err(|_| WireError::TooLarge {
        field: "STAMP TLV.Length",
        value: value_len as u64,
        max: u64::from(u16::MAX),
    })?;
    let total = TLV_HEADER_LEN + value_len;
    if buf.len() < total {
        return Err(WireError::BufferTooSmall("STAMP TLV"));
    }
    buf[0] = flags.0;
    buf[1] = typ;
    buf[2..4].copy_from_slice(&len.to_be_bytes());
    Ok(total)
}

/// A TLV read by type, or one to emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlvRepr<'a> {
    /// Extra Padding (§4.1): its content, which the sender controls.
    ExtraPadding(&'a [u8]),
    /// Location (§4.2).
    Location(Location<'a>),
    /// Timestamp Information (§4.3) and its raw, well-formed sub-TLVs.
    TimestampInfo(TimestampInfo, &'a [u8]),
    /// Class of Service (§4.4).
    ClassOfService(ClassOfService),
    /// Direct Measurement (§4.5).
    DirectMeasurement(DirectMeasurement),
    /// Access Report (§4.6).
    AccessReport(AccessReport),
    /// Follow-Up Telemetry (§4.7).
    FollowUpTelemetry(FollowUpTelemetry),
    /// HMAC (§4.8): the truncated HMAC-SHA-256 of the Sequence Number and the TLVs before it.
    Hmac([u8; HMAC_LEN]),
    /// A type this implementation does not know (including Private Use), value as received.
    Unknown(TlvType, &'a [u8]),
}

impl<'a> TlvRepr<'a> {
    /// Reads a TLV's value by its type; a known type with a Length not valid for it (or an
    /// invalid Access ID, or malformed sub-TLVs) is an error: RFC 8972's "malformed".
    pub fn parse(tlv: &Tlv<'a>) -> Result<Self, WireError> {
        let v = tlv.value;
        Ok(match tlv.tlv_type() {
            TlvType::EXTRA_PADDING => Self::ExtraPadding(v),
            TlvType::LOCATION => Self::Location(Location::parse(v)?),
            TlvType::TIMESTAMP_INFO => {
                let (info, subs) = TimestampInfo::parse(v)?;
                Self::TimestampInfo(info, subs)
            }
            TlvType::CLASS_OF_SERVICE => Self::ClassOfService(ClassOfService::parse(v)?),
            TlvType::DIRECT_MEASUREMENT => Self::DirectMeasurement(DirectMeasurement::parse(v)?),
            TlvType::ACCESS_REPORT => Self::AccessReport(AccessReport::parse(v)?),
            TlvType::FOLLOW_UP_TELEMETRY => Self::FollowUpTelemetry(FollowUpTelemetry::parse(v)?),
            TlvType::HMAC => {
                exact_len(v, HMAC_LEN, "HMAC TLV.Length")?;
                Self::Hmac(array_at(v, 0..HMAC_LEN))
            }
            t => Self::Unknown(t, v),
        })
    }

    /// The TLV's type.
    pub const fn tlv_type(&self) -> TlvType {
        match self {
            Self::ExtraPadding(_) => TlvType::EXTRA_PADDING,
            Self::Location(_) => TlvType::LOCATION,
            Self::TimestampInfo(..) => TlvType::TIMESTAMP_INFO,
            Self::ClassOfService(_) => TlvType::CLASS_OF_SERVICE,
            Self::DirectMeasurement(_) => TlvType::DIRECT_MEASUREMENT,
            Self::AccessReport(_) => TlvType::ACCESS_REPORT,
            Self::FollowUpTelemetry(_) => TlvType::FOLLOW_UP_TELEMETRY,
            Self::Hmac(_) => TlvType::HMAC,
            Self::Unknown(t, _) => *t,
        }
    }

    /// Octets of the value.
    pub fn value_len(&self) -> usize {
        match self {
            Self::ExtraPadding(v) | Self::Unknown(_, v) => v.len(),
            Self::Location(l) => l.value_len(),
            Self::TimestampInfo(_, subs) => TimestampInfo::LEN + subs.len(),
            Self::ClassOfService(_) => ClassOfService::LEN,
            Self::DirectMeasurement(_) => DirectMeasurement::LEN,
            Self::AccessReport(_) => AccessReport::LEN,
            Self::FollowUpTelemetry(_) => FollowUpTelemetry::LEN,
            Self::Hmac(_) => HMAC_LEN,
        }
    }

    /// Octets of the whole TLV.
    pub fn buffer_len(&self) -> usize {
        TLV_HEADER_LEN + self.value_len()
    }

    /// Writes the TLV with `flags` at the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8], flags: TlvFlags) -> Result<usize, WireError> {
        let n = emit_header(buf, flags, self.tlv_type().0, self.value_len())?;
        let out = &mut buf[TLV_HEADER_LEN..n];
        match self {
            Self::ExtraPadding(v) | Self::Unknown(_, v) => out.copy_from_slice(v),
            Self::Location(l) => l.emit_value(out)?,
            Self::TimestampInfo(info, subs) => {
                let (fixed, rest) = out.split_at_mut(TimestampInfo::LEN);
                let mut a = [0u8; 4];
                info.emit(&mut a);
                fixed.copy_from_slice(&a);
                rest.copy_from_slice(subs);
            }
            Self::ClassOfService(c) => {
                let mut a = [0u8; 4];
                c.emit(&mut a);
                out.copy_from_slice(&a);
            }
            Self::DirectMeasurement(d) => {
                let mut a = [0u8; 12];
                d.emit(&mut a);
                out.copy_from_slice(&a);
            }
            Self::AccessReport(r) => {
                let mut a = [0u8; 4];
                r.emit(&mut a);
                out.copy_from_slice(&a);
            }
            Self::FollowUpTelemetry(f) => {
                let mut a = [0u8; 16];
                f.emit(&mut a);
                out.copy_from_slice(&a);
            }
            Self::Hmac(h) => out.copy_from_slice(h),
        }
        Ok(n)
    }
}
