//! The values of the TLVs RFC 8972 defines (§4.2 to §4.7), each with `parse` (of the Value
//! field: the Length must be valid for the type) and `emit`.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::emit_header;
use super::{ReturnCode, SubTlvType, SyncSource, TLV_HEADER_LEN, TimestampMethod, TlvFlags, Tlvs};
use crate::WireError;
use crate::time::Timestamp;
use crate::wire::{array_at, u16_at, u32_at, u64_at};
/// Fails with `InvalidValue { field, value: len }` unless the value has exactly `n` octets.
pub(super) fn exact_len(value: &[u8], n: usize, field: &'static str) -> Result<(), WireError> {
    if value.len() == n {
        Ok(())
    } else {
        Err(WireError::InvalidValue {
            field,
            value: value.len() as u64,
        })
    }
}

/// Fails with `InvalidValue` unless the value has at least `n` octets.
fn min_len(value: &[u8], n: usize, field: &'static str) -> Result<(), WireError> {
    if value.len() >= n {
        Ok(())
    } else {
        Err(WireError::InvalidValue {
            field,
            value: value.len() as u64,
        })
    }
}

/// Fails with the reason of the first malformed sub-TLV, if any.
fn check_sub_tlvs(area: &[u8]) -> Result<(), WireError> {
    match Tlvs::new(area).find_map(Result::err) {
        Some(m) => Err(m.reason),
        None => Ok(()),
    }
}

/// Class of Service TLV value (RFC 8972 §4.4, Figure 12): 4 octets.
///
/// ```text
/// |   DSCP1   |   DSCP2   |ECN| RP|          Reserved             |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClassOfService {
    /// DSCP the sender asks the reflector to send its reply with (6 bits).
    pub dscp1: u8,
    /// DSCP the sender's packet arrived with at the reflector (6 bits).
    pub dscp2: u8,
    /// ECN the sender's packet arrived with at the reflector (2 bits).
    pub ecn: u8,
    /// Reverse Path (2 bits): 0 from the sender; 1 from a reflector whose policy refused DSCP1.
    pub rp: u8,
}

impl ClassOfService {
    /// Octets of the value.
    pub const LEN: usize = 4;

    /// Reads the value; Length must be 4.
    pub fn parse(value: &[u8]) -> Result<Self, WireError> {
        exact_len(value, Self::LEN, "Class of Service TLV.Length")?;
        Ok(Self {
            dscp1: value[0] >> 2,
            dscp2: ((value[0] & 0x03) << 4) | (value[1] >> 4),
            ecn: (value[1] >> 2) & 0x03,
            rp: value[1] & 0x03,
        })
    }

    /// Writes the value into `out[..4]`; each field is masked to its width.
    pub fn emit(&self, out: &mut [u8; 4]) {
        let (d1, d2) = (self.dscp1 & 0x3f, self.dscp2 & 0x3f);
        out[0] = (d1 << 2) | (d2 >> 4);
        out[1] = ((d2 & 0x0f) << 4) | ((self.ecn & 0x03) << 2) | (self.rp & 0x03);
        out[2] = 0;
        out[3] = 0;
    }
}

/// Direct Measurement TLV value (RFC 8972 §4.5, Figure 13): three 4-octet counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirectMeasurement {
    /// Session-Sender Tx counter (S_TxC).
    pub s_txc: u32,
    /// Session-Reflector Rx counter (R_RxC); zero from the sender.
    pub r_rxc: u32,
    /// Session-Reflector Tx counter (R_TxC); zero from the sender.
    pub r_txc: u32,
}

impl DirectMeasurement {
    /// Octets of the value.
    pub const LEN: usize = 12;

    /// Reads the value; Length must be 12.
    pub fn parse(value: &[u8]) -> Result<Self, WireError> {
        exact_len(value, Self::LEN, "Direct Measurement TLV.Length")?;
        Ok(Self {
            s_txc: u32_at(value, 0..4),
            r_rxc: u32_at(value, 4..8),
            r_txc: u32_at(value, 8..12),
        })
    }

    /// Writes the value.
    pub fn emit(&self, out: &mut [u8; 12]) {
        out[0..4].copy_from_slice(&self.s_txc.to_be_bytes());
        out[4..8].copy_from_slice(&self.r_rxc.to_be_bytes());
        out[8..12].copy_from_slice(&self.r_txc.to_be_bytes());
    }
}

/// The Access ID of an Access Report (RFC 8972 §4.6): a closed set; any other value makes
/// the TLV invalid ("MUST be discarded").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessId {
    /// 1: 3GPP network.
    ThreeGpp,
    /// 2: non-3GPP network.
    NonThreeGpp,
}

/// Access Report TLV value (RFC 8972 §4.6, Figure 14): 4 octets.
///
/// ```text
/// |   ID  |  Resv |  Return Code  |          Reserved             |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessReport {
    /// Access ID.
    pub id: AccessId,
    /// Return Code.
    pub return_code: ReturnCode,
}

impl AccessReport {
    /// Octets of the value.
    pub const LEN: usize = 4;

    /// Reads the value; Length must be 4 and ID 1 or 2.
    pub fn parse(value: &[u8]) -> Result<Self, WireError> {
        exact_len(value, Self::LEN, "Access Report TLV.Length")?;
        let id = match value[0] >> 4 {
            1 => AccessId::ThreeGpp,
            2 => AccessId::NonThreeGpp,
            v => {
                return Err(WireError::InvalidValue {
                    field: "Access Report TLV.ID",
                    value: u64::from(v),
                });
            }
        };
        Ok(Self {
            id,
            return_code: ReturnCode(value[1]),
        })
    }

    /// Writes the value.
    pub fn emit(&self, out: &mut [u8; 4]) {
        let id = match self.id {
            AccessId::ThreeGpp => 1,
            AccessId::NonThreeGpp => 2,
        };
        *out = [id << 4, self.return_code.0, 0, 0];
    }
}

/// Follow-Up Telemetry TLV value (RFC 8972 §4.7, Figure 15): 16 octets.
///
/// ```text
/// |                        Sequence Number                        |
/// |                      Follow-Up Timestamp (8)                  |
/// |  Timestamp M  |                     Reserved                  |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FollowUpTelemetry {
    /// The reflector's Sequence Number of the previous reflected packet of the session.
    pub seq: u32,
    /// When that packet was really sent.
    pub timestamp: Timestamp,
    /// How that time was taken.
    pub mode: TimestampMethod,
}

impl FollowUpTelemetry {
    /// Octets of the value.
    pub const LEN: usize = 16;

    /// Reads the value; Length must be 16.
    pub fn parse(value: &[u8]) -> Result<Self, WireError> {
        exact_len(value, Self::LEN, "Follow-Up Telemetry TLV.Length")?;
        Ok(Self {
            seq: u32_at(value, 0..4),
            timestamp: Timestamp::from_bits(u64_at(value, 4..12)),
            mode: TimestampMethod(value[12]),
        })
    }

    /// Writes the value.
    pub fn emit(&self, out: &mut [u8; 16]) {
        out[0..4].copy_from_slice(&self.seq.to_be_bytes());
        out[4..12].copy_from_slice(&self.timestamp.to_bytes());
        out[12..16].copy_from_slice(&[self.mode.0, 0, 0, 0]);
    }
}

/// The four octets of a Timestamp Information TLV before its sub-TLVs (RFC 8972 §4.3,
/// Figure 11): how the reflector's clock is synchronized and how it takes T2 and T3.
///
/// ```text
/// |  Sync Src In  | Timestamp In  | Sync Src Out  | Timestamp Out |
/// ~                    Optional sub-TLVs                          ~
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimestampInfo {
    /// Sync Src In.
    pub sync_in: SyncSource,
    /// Timestamp In: how T2 is taken.
    pub method_in: TimestampMethod,
    /// Sync Src Out.
    pub sync_out: SyncSource,
    /// Timestamp Out: how T3 is taken.
    pub method_out: TimestampMethod,
}

impl TimestampInfo {
    /// Octets of the fixed part of the value.
    pub const LEN: usize = 4;

    /// Reads the fixed part and checks that the rest is well-formed sub-TLVs, which are
    /// returned raw (RFC 8972 defines none for this TLV).
    pub fn parse(value: &[u8]) -> Result<(Self, &[u8]), WireError> {
        min_len(value, Self::LEN, "Timestamp Information TLV.Length")?;
        let (fixed, subs) = value.split_at(Self::LEN);
        check_sub_tlvs(subs)?;
        Ok((
            Self {
                sync_in: SyncSource(fixed[0]),
                method_in: TimestampMethod(fixed[1]),
                sync_out: SyncSource(fixed[2]),
                method_out: TimestampMethod(fixed[3]),
            },
            subs,
        ))
    }

    /// Writes the fixed part.
    pub fn emit(&self, out: &mut [u8; 4]) {
        *out = [
            self.sync_in.0,
            self.method_in.0,
            self.sync_out.0,
            self.method_out.0,
        ];
    }
}

/// A sub-TLV of the Location TLV (RFC 8972 §4.2.1). The requests (Source MAC, Destination IP,
/// Source IP) are what a sender sends; the reflector answers each with the specific kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationSub<'a> {
    /// Source MAC Address request (type 1, 8 octets MBZ).
    SourceMac,
    /// Source EUI-48 Address (type 2): the MAC, then 2 octets MBZ.
    SourceEui48([u8; 6]),
    /// Source EUI-64 Address (type 3).
    SourceEui64([u8; 8]),
    /// Destination IP Address request (type 4, 16 octets MBZ).
    DestinationIp,
    /// Destination IPv4 Address (type 5): the address, then 12 octets MBZ.
    DestinationIpv4(Ipv4Addr),
    /// Destination IPv6 Address (type 6).
    DestinationIpv6(Ipv6Addr),
    /// Source IP Address request (type 7, 16 octets MBZ).
    SourceIp,
    /// Source IPv4 Address (type 8): the address, then 12 octets MBZ.
    SourceIpv4(Ipv4Addr),
    /// Source IPv6 Address (type 9).
    SourceIpv6(Ipv6Addr),
    /// A sub-TLV type this implementation does not know, value as received.
    Unknown(SubTlvType, &'a [u8]),
}

impl<'a> LocationSub<'a> {
    /// Reads a sub-TLV's value; a known type's Length must be 8 (MAC kinds) or 16 (IP kinds).
    pub fn parse(typ: SubTlvType, value: &'a [u8]) -> Result<Self, WireError> {
        const MAC: &str = "Location sub-TLV (MAC).Length";
        const IP: &str = "Location sub-TLV (IP).Length";
        let v4 = |v: &[u8]| Ipv4Addr::from(array_at::<4>(v, 0..4));
        let v6 = |v: &[u8]| Ipv6Addr::from(array_at::<16>(v, 0..16));
        Ok(match typ {
            SubTlvType::SOURCE_MAC | SubTlvType::SOURCE_EUI48 | SubTlvType::SOURCE_EUI64 => {
                exact_len(value, 8, MAC)?;
                match typ {
                    SubTlvType::SOURCE_MAC => Self::SourceMac,
                    SubTlvType::SOURCE_EUI48 => Self::SourceEui48(array_at(value, 0..6)),
                    _ => Self::SourceEui64(array_at(value, 0..8)),
                }
            }
            SubTlvType(0x04..=0x09) => {
                exact_len(value, 16, IP)?;
                match typ {
                    SubTlvType::DESTINATION_IP => Self::DestinationIp,
                    SubTlvType::DESTINATION_IPV4 => Self::DestinationIpv4(v4(value)),
                    SubTlvType::DESTINATION_IPV6 => Self::DestinationIpv6(v6(value)),
                    SubTlvType::SOURCE_IP => Self::SourceIp,
                    SubTlvType::SOURCE_IPV4 => Self::SourceIpv4(v4(value)),
                    _ => Self::SourceIpv6(v6(value)),
                }
            }
            _ => Self::Unknown(typ, value),
        })
    }

    /// The sub-TLV's type.
    pub const fn sub_tlv_type(&self) -> SubTlvType {
        match self {
            Self::SourceMac => SubTlvType::SOURCE_MAC,
            Self::SourceEui48(_) => SubTlvType::SOURCE_EUI48,
            Self::SourceEui64(_) => SubTlvType::SOURCE_EUI64,
            Self::DestinationIp => SubTlvType::DESTINATION_IP,
            Self::DestinationIpv4(_) => SubTlvType::DESTINATION_IPV4,
            Self::DestinationIpv6(_) => SubTlvType::DESTINATION_IPV6,
            Self::SourceIp => SubTlvType::SOURCE_IP,
            Self::SourceIpv4(_) => SubTlvType::SOURCE_IPV4,
            Self::SourceIpv6(_) => SubTlvType::SOURCE_IPV6,
            Self::Unknown(t, _) => *t,
        }
    }

    /// Octets of the value.
    pub const fn value_len(&self) -> usize {
        match self {
            Self::SourceMac | Self::SourceEui48(_) | Self::SourceEui64(_) => 8,
            Self::Unknown(_, v) => v.len(),
            _ => 16,
        }
    }

    /// Writes the value into `out`, which must hold exactly [`Self::value_len`] octets.
    fn emit_value(&self, out: &mut [u8]) {
        out.fill(0);
        match self {
            Self::SourceEui48(m) => out[..6].copy_from_slice(m),
            Self::SourceEui64(m) => out.copy_from_slice(m),
            Self::DestinationIpv4(a) | Self::SourceIpv4(a) => out[..4].copy_from_slice(&a.octets()),
            Self::DestinationIpv6(a) | Self::SourceIpv6(a) => out.copy_from_slice(&a.octets()),
            Self::Unknown(_, v) => out.copy_from_slice(v),
            Self::SourceMac | Self::DestinationIp | Self::SourceIp => {}
        }
    }
}

/// A Location sub-TLV with its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocationSubTlv<'a> {
    /// Flags: U and M as for TLVs; I is zero on transmit and ignored (RFC 8972 §4.2.1).
    pub flags: TlvFlags,
    /// The sub-TLV.
    pub sub: LocationSub<'a>,
}

/// Location TLV value (RFC 8972 §4.2, Figure 8): ports, then sub-TLVs.
///
/// ```text
/// |        Destination Port       |          Source Port          |
/// ~                         Sub-TLVs                              ~
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location<'a> {
    /// UDP destination port of the received STAMP packet (zero from the sender).
    pub dst_port: u16,
    /// UDP source port of the received STAMP packet (zero from the sender).
    pub src_port: u16,
    /// Sub-TLVs in order.
    pub subs: Vec<LocationSubTlv<'a>>,
}

impl<'a> Location<'a> {
    /// Octets of the ports.
    pub const FIXED_LEN: usize = 4;

    /// Reads the value: at least the ports, then well-formed sub-TLVs of valid lengths.
    pub fn parse(value: &'a [u8]) -> Result<Self, WireError> {
        min_len(value, Self::FIXED_LEN, "Location TLV.Length")?;
        let mut subs = Vec::new();
        for t in Tlvs::new(&value[Self::FIXED_LEN..]) {
            let t = t.map_err(|m| m.reason)?;
            subs.push(LocationSubTlv {
                flags: t.flags,
                sub: LocationSub::parse(t.sub_tlv_type(), t.value)?,
            });
        }
        Ok(Self {
            dst_port: u16_at(value, 0..2),
            src_port: u16_at(value, 2..4),
            subs,
        })
    }

    /// Octets of the value.
    pub fn value_len(&self) -> usize {
        Self::FIXED_LEN
            + self
                .subs
                .iter()
                .map(|s| TLV_HEADER_LEN + s.sub.value_len())
                .sum::<usize>()
    }

    /// Writes the value into `out`, which must hold exactly [`Self::value_len`] octets.
    pub(super) fn emit_value(&self, out: &mut [u8]) -> Result<(), WireError> {
        out[0..2].copy_from_slice(&self.dst_port.to_be_bytes());
        out[2..4].copy_from_slice(&self.src_port.to_be_bytes());
        let mut pos = Self::FIXED_LEN;
        for s in &self.subs {
            let n = emit_header(
                &mut out[pos..],
                s.flags,
                s.sub.sub_tlv_type().0,
                s.sub.value_len(),
            )?;
            s.sub.emit_value(&mut out[pos + TLV_HEADER_LEN..pos + n]);
            pos += n;
        }
        Ok(())
    }
}
