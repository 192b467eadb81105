//! OWAMP-Control commands and replies (RFC 4656 §3.4-3.9): Request-Session with its schedule
//! slots, Accept-Session (shared with TWAMP, with the RFC 6038 fields), Start-Sessions,
//! Start-Ack, Stop-Sessions with per-session skip ranges, Fetch-Session, Fetch-Ack, and the
//! skip-range list and packet records of a Fetch-Session answer.
//!
//! Every message is a whole number of 16-octet blocks and ends in an HMAC field (Request-Session
//! has a second one after its fixed part). `emit` leaves HMAC fields zero; the control channel
//! fills and checks them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::WireError;
use crate::codepoints::{Accept, Command};
use crate::schedule::Slot;
use crate::time::{ErrorEstimate, Timestamp};
use crate::wire::{HMAC_LEN, array_at, check_len, pad16, u32_at, u64_at};

/// Most schedule slots accepted in a Request-Session (64 KiB of slots). perfSONAR's clients
/// send one; a server that must hold a schedule bounds it.
pub const MAX_SCHEDULE_SLOTS: u32 = 4096;
/// Most session records accepted in a Stop-Sessions.
pub const MAX_STOP_SESSIONS: u32 = 1024;
/// Most skip ranges accepted per session (in Stop-Sessions and in a Fetch answer).
pub const MAX_SKIP_RANGES: u32 = 65_536;
/// Most packet records accepted in one Fetch answer (about 400 MiB of records).
pub const MAX_FETCH_RECORDS: u32 = 1 << 24;

/// Reads an IPVN-tagged 16-octet address field (RFC 4656 §3.5: IPv4 in the first 4 octets).
pub(crate) fn read_addr(
    ipvn: u8,
    field: &[u8; 16],
    name: &'static str,
) -> Result<IpAddr, WireError> {
    match ipvn {
        4 => Ok(IpAddr::V4(Ipv4Addr::new(
            field[0], field[1], field[2], field[3],
        ))),
        6 => Ok(IpAddr::V6(Ipv6Addr::from(*field))),
        v => Err(WireError::InvalidValue {
            field: name,
            value: u64::from(v),
        }),
    }
}

/// Writes an address into a 16-octet field, returning its IPVN.
pub(crate) fn write_addr(addr: IpAddr, field: &mut [u8]) -> u8 {
    field.fill(0);
    match addr {
        IpAddr::V4(a) => {
            field[..4].copy_from_slice(&a.octets());
            4
        }
        IpAddr::V6(a) => {
            field.copy_from_slice(&a.octets());
            6
        }
    }
}

/// The Type-P Descriptor of a Request-Session (RFC 4656 §3.5): a DSCP in the low 6 bits of
/// the first octet when the first two bits are 00 (perfSONAR sends DSCP 46 as `2e000000`);
/// bits 01 in the first two positions denote a PHB ID (RFC 2836) in the low 16 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TypeP(pub u32);

impl TypeP {
    /// A Type-P Descriptor carrying `dscp` (masked to 6 bits).
    pub const fn from_dscp(dscp: u8) -> Self {
        Self(((dscp & 0x3f) as u32) << 24)
    }

    /// The DSCP when the descriptor is in DSCP form (first two bits 00), else `None`.
    pub const fn dscp(self) -> Option<u8> {
        if self.0 >> 30 == 0 && self.0 & 0x00ff_ffff == 0 {
            Some((self.0 >> 24) as u8 & 0x3f)
        } else {
            None
        }
    }
}

mod field {
    use crate::wire::Field;

    pub(crate) const CMD: usize = 0;
    pub(crate) const IPVN: usize = 1;
    pub(crate) const CONF_SENDER: usize = 2;
    pub(crate) const CONF_RECEIVER: usize = 3;
    pub(crate) const NUM_SLOTS: Field = 4..8;
    pub(crate) const NUM_PACKETS: Field = 8..12;
    pub(crate) const SENDER_PORT: Field = 12..14;
    pub(crate) const RECEIVER_PORT: Field = 14..16;
    pub(crate) const SENDER_ADDR: Field = 16..32;
    pub(crate) const RECEIVER_ADDR: Field = 32..48;
    pub(crate) const SID: Field = 48..64;
    pub(crate) const PADDING: Field = 64..68;
    pub(crate) const START_TIME: Field = 68..76;
    pub(crate) const TIMEOUT: Field = 76..84;
    pub(crate) const TYPE_P: Field = 84..88;
    pub(crate) const HMAC1: Field = 96..112;
}

view! {
    /// A zero-copy view of the fixed part (112 octets) of a Request-Session; the slots and the
    /// second HMAC follow it.
    ///
    /// ```text
    ///  0                   1                   2                   3
    ///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |      1        |  MBZ  | IPVN  |  Conf-Sender  | Conf-Receiver |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                  Number of Schedule Slots                     |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                      Number of Packets                        |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |          Sender Port          |         Receiver Port         |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                        Sender Address                         |
    /// |           (cont.) or MBZ (12 octets)                          |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                        Receiver Address                       |
    /// |           (cont.) or MBZ (12 octets)                          |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                        SID (16 octets)                        |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                         Padding Length                        |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                           Start Time                          |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                       Timeout, (8 octets)                     |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                       Type-P Descriptor                       |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                         MBZ (8 octets)                        |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                       HMAC (16 octets)                        |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// ```
    ///
    /// RFC 4656 §3.5. The four MBZ bits before IPVN and the 8 MBZ octets are written as zero and
    /// ignored on receipt; IPVN must be 4 or 6. Each slot is 16 octets: Slot Type (0
    /// exponential, 1 fixed), 7 MBZ octets (ignored), Slot Parameter (32.32 seconds).
    RequestSession, 112, "Request-Session"
}

impl<T: AsRef<[u8]>> RequestSession<T> {
    /// The command octet (1).
    pub fn command(&self) -> Command {
        Command::from(self.b()[field::CMD])
    }

    /// IPVN (4 or 6).
    pub fn ipvn(&self) -> u8 {
        self.b()[field::IPVN] & 0x0f
    }

    /// Conf-Sender.
    pub fn conf_sender(&self) -> u8 {
        self.b()[field::CONF_SENDER]
    }

    /// Conf-Receiver.
    pub fn conf_receiver(&self) -> u8 {
        self.b()[field::CONF_RECEIVER]
    }

    /// Number of Schedule Slots.
    pub fn num_slots(&self) -> u32 {
        u32_at(self.b(), field::NUM_SLOTS)
    }

    /// Number of Packets.
    pub fn num_packets(&self) -> u32 {
        u32_at(self.b(), field::NUM_PACKETS)
    }

    /// Sender Port.
    pub fn sender_port(&self) -> u16 {
        crate::wire::u16_at(self.b(), field::SENDER_PORT)
    }

    /// Receiver Port.
    pub fn receiver_port(&self) -> u16 {
        crate::wire::u16_at(self.b(), field::RECEIVER_PORT)
    }

    /// Sender Address field, raw.
    pub fn sender_address_raw(&self) -> [u8; 16] {
        array_at(self.b(), field::SENDER_ADDR)
    }

    /// Receiver Address field, raw.
    pub fn receiver_address_raw(&self) -> [u8; 16] {
        array_at(self.b(), field::RECEIVER_ADDR)
    }

    /// SID.
    pub fn sid(&self) -> [u8; 16] {
        array_at(self.b(), field::SID)
    }

    /// Padding Length.
    pub fn padding_length(&self) -> u32 {
        u32_at(self.b(), field::PADDING)
    }

    /// Start Time.
    pub fn start_time(&self) -> Timestamp {
        Timestamp::from_bits(u64_at(self.b(), field::START_TIME))
    }

    /// Timeout (32.32 seconds).
    pub fn timeout(&self) -> u64 {
        u64_at(self.b(), field::TIMEOUT)
    }

    /// Type-P Descriptor.
    pub fn type_p(&self) -> TypeP {
        TypeP(u32_at(self.b(), field::TYPE_P))
    }

    /// The first HMAC field.
    pub fn hmac(&self) -> [u8; 16] {
        array_at(self.b(), field::HMAC1)
    }
}

/// A parsed Request-Session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSessionRepr {
    /// Conf-Sender: the server is to send (1) or not (0).
    pub conf_sender: bool,
    /// Conf-Receiver: the server is to receive.
    pub conf_receiver: bool,
    /// Number of Packets.
    pub num_packets: u32,
    /// Sender Port.
    pub sender_port: u16,
    /// Receiver Port (0: the receiver chooses, and says so in Accept-Session).
    pub receiver_port: u16,
    /// Sender Address.
    pub sender_address: IpAddr,
    /// Receiver Address (same family as the sender's: one IPVN covers both).
    pub receiver_address: IpAddr,
    /// SID: chosen by the client when the client is the receiver, else zero.
    pub sid: [u8; 16],
    /// Padding Length.
    pub padding_length: u32,
    /// Start Time.
    pub start_time: Timestamp,
    /// Timeout (32.32 seconds).
    pub timeout: u64,
    /// Type-P Descriptor.
    pub type_p: TypeP,
    /// The send schedule.
    pub slots: Vec<Slot>,
}

impl RequestSessionRepr {
    /// The length of the fixed part, including the first HMAC.
    pub const HEADER_LEN: usize = 112;
    /// Offset of the first HMAC field.
    pub const HMAC_OFFSET: usize = 96;

    /// The whole message's length as far as `prefix` tells: the header length until the slot
    /// count is known, then exact. Fails with `TooLarge` as soon as the count is visible and
    /// above [`MAX_SCHEDULE_SLOTS`].
    pub fn required_len(prefix: &[u8]) -> Result<usize, WireError> {
        if prefix.len() < 8 {
            return Ok(Self::HEADER_LEN);
        }
        let n = u32_at(prefix, field::NUM_SLOTS);
        if n > MAX_SCHEDULE_SLOTS {
            return Err(WireError::TooLarge {
                field: "Request-Session.Number of Schedule Slots",
                value: u64::from(n),
                max: u64::from(MAX_SCHEDULE_SLOTS),
            });
        }
        Ok(Self::HEADER_LEN + 16 * n as usize + HMAC_LEN)
    }

    /// Where the HMAC fields of a Request-Session of `len` octets are.
    pub fn hmac_offsets(len: usize) -> [usize; 2] {
        [Self::HMAC_OFFSET, len.saturating_sub(HMAC_LEN)]
    }

    /// Parses a whole Request-Session (plaintext).
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let v = RequestSession::new_checked(buf)?;
        if v.command() != Command::RequestSession {
            return Err(WireError::InvalidValue {
                field: "Request-Session.Command",
                value: u64::from(buf[0]),
            });
        }
        let len = Self::required_len(buf)?;
        check_len(buf, len, "Request-Session")?;
        if buf.len() > len {
            return Err(WireError::TrailingData("Request-Session"));
        }
        let ipvn = v.ipvn();
        let sender_address = read_addr(ipvn, &v.sender_address_raw(), "Request-Session.IPVN")?;
        let receiver_address = read_addr(ipvn, &v.receiver_address_raw(), "Request-Session.IPVN")?;
        let mut slots = Vec::with_capacity(v.num_slots() as usize);
        for chunk in buf[Self::HEADER_LEN..len - HMAC_LEN].chunks_exact(16) {
            let param = u64_at(chunk, 8..16);
            slots.push(match chunk[0] {
                0 => Slot::Exponential(param),
                1 => Slot::Fixed(param),
                t => {
                    return Err(WireError::InvalidValue {
                        field: "Request-Session.Slot Type",
                        value: u64::from(t),
                    });
                }
            });
        }
        Ok(Self {
            conf_sender: flag(v.conf_sender(), "Request-Session.Conf-Sender")?,
            conf_receiver: flag(v.conf_receiver(), "Request-Session.Conf-Receiver")?,
            num_packets: v.num_packets(),
            sender_port: v.sender_port(),
            receiver_port: v.receiver_port(),
            sender_address,
            receiver_address,
            sid: v.sid(),
            padding_length: v.padding_length(),
            start_time: v.start_time(),
            timeout: v.timeout(),
            type_p: v.type_p(),
            slots,
        })
    }

    /// Octets `emit` writes.
    pub fn buffer_len(&self) -> usize {
        Self::HEADER_LEN + 16 * self.slots.len() + HMAC_LEN
    }

    /// Writes the message; HMAC fields are left zero. The two addresses should be of one
    /// family (IPVN is taken from the sender's).
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let len = self.buffer_len();
        let buf = buf
            .get_mut(..len)
            .ok_or(WireError::BufferTooSmall("Request-Session"))?;
        buf.fill(0);
        buf[field::CMD] = Command::RequestSession.into();
        let ipvn = write_addr(self.sender_address, &mut buf[field::SENDER_ADDR]);
        write_addr(self.receiver_address, &mut buf[field::RECEIVER_ADDR]);
        buf[field::IPVN] = ipvn;
        buf[field::CONF_SENDER] = u8::from(self.conf_sender);
        buf[field::CONF_RECEIVER] = u8::from(self.conf_receiver);
        let n = u32::try_from(self.slots.len()).map_err(|_| WireError::TooLarge {
            field: "Request-Session.Number of Schedule Slots",
            value: self.slots.len() as u64,
            max: u64::from(u32::MAX),
        })?;
        buf[field::NUM_SLOTS].copy_from_slice(&n.to_be_bytes());
        buf[field::NUM_PACKETS].copy_from_slice(&self.num_packets.to_be_bytes());
        buf[field::SENDER_PORT].copy_from_slice(&self.sender_port.to_be_bytes());
        buf[field::RECEIVER_PORT].copy_from_slice(&self.receiver_port.to_be_bytes());
        buf[field::SID].copy_from_slice(&self.sid);
        buf[field::PADDING].copy_from_slice(&self.padding_length.to_be_bytes());
        buf[field::START_TIME].copy_from_slice(&self.start_time.to_bytes());
        buf[field::TIMEOUT].copy_from_slice(&self.timeout.to_be_bytes());
        buf[field::TYPE_P].copy_from_slice(&self.type_p.0.to_be_bytes());
        for (slot, chunk) in self
            .slots
            .iter()
            .zip(buf[Self::HEADER_LEN..].chunks_exact_mut(16))
        {
            let (t, p) = match *slot {
                Slot::Exponential(p) => (0, p),
                Slot::Fixed(p) => (1, p),
            };
            chunk[0] = t;
            chunk[8..16].copy_from_slice(&p.to_be_bytes());
        }
        Ok(())
    }

    /// The message's octets (HMAC fields zero).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut b = vec![0; self.buffer_len()];
        let _ = self.emit(&mut b);
        b
    }
}

fn flag(v: u8, name: &'static str) -> Result<bool, WireError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(WireError::InvalidValue {
            field: name,
            value: u64::from(v),
        }),
    }
}

view! {
    /// A zero-copy view of an Accept-Session (OWAMP and TWAMP).
    ///
    /// ```text
    ///  0                   1                   2                   3
    ///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |    Accept     |  MBZ          |            Port               |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-|
    /// |                        SID (16 octets)                        |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |       Reflected octets        |         Server octets         |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                         MBZ (8 octets)                        |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                       HMAC (16 octets)                        |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// ```
    ///
    /// RFC 4656 §3.5 (12 MBZ octets after the SID), RFC 6038 §4.3 (TWAMP Reflect Octets: the
    /// first 4 of them carry Reflected octets and Server octets). MBZ fields are written as
    /// zero and ignored on receipt.
    AcceptSession, 48, "Accept-Session"
}

/// A parsed Accept-Session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptSessionRepr {
    /// Accept.
    pub accept: Accept,
    /// The port to use (receiver or sender port, RFC 4656 §3.5; RFC 5357 §3.5).
    pub port: u16,
    /// SID.
    pub sid: [u8; 16],
    /// RFC 6038: the request's Octets to be reflected, echoed (0 otherwise).
    pub reflected_octets: u16,
    /// RFC 6038: octets the server wants at the start of the reflected padding (0: none).
    pub server_octets: u16,
}

impl AcceptSessionRepr {
    /// Octets on the wire.
    pub const LEN: usize = 48;
    /// Offset of the HMAC field.
    pub const HMAC_OFFSET: usize = 32;

    /// A plain Accept-Session (no RFC 6038 fields).
    pub const fn new(accept: Accept, port: u16, sid: [u8; 16]) -> Self {
        Self {
            accept,
            port,
            sid,
            reflected_octets: 0,
            server_octets: 0,
        }
    }

    /// Parses an Accept-Session.
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let v = AcceptSession::new_checked(buf)?;
        let b = v.b();
        Ok(Self {
            accept: Accept::from(b[0]),
            port: crate::wire::u16_at(b, 2..4),
            sid: array_at(b, 4..20),
            reflected_octets: crate::wire::u16_at(b, 20..22),
            server_octets: crate::wire::u16_at(b, 22..24),
        })
    }

    /// Octets `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        Self::LEN
    }

    /// Writes the message (HMAC zero).
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let b = buf
            .get_mut(..Self::LEN)
            .ok_or(WireError::BufferTooSmall("Accept-Session"))?;
        b.fill(0);
        b[0] = self.accept.into();
        b[2..4].copy_from_slice(&self.port.to_be_bytes());
        b[4..20].copy_from_slice(&self.sid);
        b[20..22].copy_from_slice(&self.reflected_octets.to_be_bytes());
        b[22..24].copy_from_slice(&self.server_octets.to_be_bytes());
        Ok(())
    }

    /// The message's octets.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut b = vec![0; Self::LEN];
        let _ = self.emit(&mut b);
        b
    }
}

view! {
    /// A zero-copy view of Start-Sessions (OWAMP and TWAMP).
    ///
    /// ```text
    ///  0                   1                   2                   3
    ///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |      2        |                                               |
    /// +-+-+-+-+-+-+-+-+                                               |
    /// |                         MBZ (15 octets)                       |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                       HMAC (16 octets)                        |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// ```
    ///
    /// RFC 4656 §3.7. MBZ is written as zero and ignored on receipt.
    StartSessions, 32, "Start-Sessions"
}

/// Start-Sessions has no fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StartSessionsRepr;

impl StartSessionsRepr {
    /// Octets on the wire.
    pub const LEN: usize = 32;
    /// Offset of the HMAC field.
    pub const HMAC_OFFSET: usize = 16;

    /// Parses Start-Sessions (checks the command octet).
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let v = StartSessions::new_checked(buf)?;
        match Command::from(v.b()[0]) {
            Command::StartSessions => Ok(Self),
            _ => Err(WireError::InvalidValue {
                field: "Start-Sessions.Command",
                value: u64::from(v.b()[0]),
            }),
        }
    }

    /// Octets `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        Self::LEN
    }

    /// Writes the message (HMAC zero).
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let b = buf
            .get_mut(..Self::LEN)
            .ok_or(WireError::BufferTooSmall("Start-Sessions"))?;
        b.fill(0);
        b[0] = Command::StartSessions.into();
        Ok(())
    }

    /// The message's octets.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut b = vec![0; Self::LEN];
        let _ = self.emit(&mut b);
        b
    }
}

view! {
    /// A zero-copy view of Start-Ack (OWAMP and TWAMP).
    ///
    /// ```text
    ///  0                   1                   2                   3
    ///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |     Accept    |                                               |
    /// +-+-+-+-+-+-+-+-+                                               |
    /// |                         MBZ (15 octets)                       |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                       HMAC (16 octets)                        |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// ```
    ///
    /// RFC 4656 §3.7. MBZ is written as zero and ignored on receipt.
    StartAck, 32, "Start-Ack"
}

/// A parsed Start-Ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartAckRepr {
    /// Accept.
    pub accept: Accept,
}

impl StartAckRepr {
    /// Octets on the wire.
    pub const LEN: usize = 32;
    /// Offset of the HMAC field.
    pub const HMAC_OFFSET: usize = 16;

    /// Parses Start-Ack.
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let v = StartAck::new_checked(buf)?;
        Ok(Self {
            accept: Accept::from(v.b()[0]),
        })
    }

    /// Octets `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        Self::LEN
    }

    /// Writes the message (HMAC zero).
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let b = buf
            .get_mut(..Self::LEN)
            .ok_or(WireError::BufferTooSmall("Start-Ack"))?;
        b.fill(0);
        b[0] = self.accept.into();
        Ok(())
    }

    /// The message's octets.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut b = vec![0; Self::LEN];
        let _ = self.emit(&mut b);
        b
    }
}

/// A range of sequence numbers a sender did not send (RFC 4656 §3.8), inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SkipRange {
    /// First Seqno Skipped.
    pub first: u32,
    /// Last Seqno Skipped.
    pub last: u32,
}

/// One session description record of Stop-Sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopSession {
    /// SID of the send session described.
    pub sid: [u8; 16],
    /// The sequence number the sender would have sent next.
    pub next_seqno: u32,
    /// Ranges not sent, in order.
    pub skip_ranges: Vec<SkipRange>,
}

view! {
    /// A zero-copy view of the Stop-Sessions header; session records follow.
    ///
    /// ```text
    ///  0                   1                   2                   3
    ///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |      3        |    Accept     |              MBZ              |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                      Number of Sessions                       |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                        MBZ (8 octets)                         |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    ///   then per session: SID (16), Next Seqno (4), Number of Skip
    ///   Ranges (4), skip ranges (First Seqno Skipped, Last Seqno
    ///   Skipped: 4 + 4 each), zero padding to a block boundary;
    ///   then HMAC (16 octets)
    /// ```
    ///
    /// RFC 4656 §3.8. TWAMP (RFC 5357 §3.8) uses the same message with no session records.
    /// MBZ fields are written as zero and ignored on receipt, as is the padding.
    StopSessions, 16, "Stop-Sessions"
}

/// A parsed Stop-Sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopSessionsRepr {
    /// Accept: 0 for a normal (possibly early) end.
    pub accept: Accept,
    /// The send sessions of the side that sends this message.
    pub sessions: Vec<StopSession>,
}

impl StopSessionsRepr {
    /// The whole message's length as far as `prefix` tells. Each session record's length is
    /// known only once its header is in, so this grows as octets arrive. Counts above
    /// [`MAX_STOP_SESSIONS`] or [`MAX_SKIP_RANGES`] fail as soon as they are visible.
    pub fn required_len(prefix: &[u8]) -> Result<usize, WireError> {
        if prefix.len() < 16 {
            return Ok(16 + HMAC_LEN);
        }
        let n = u32_at(prefix, 4..8);
        if n > MAX_STOP_SESSIONS {
            return Err(WireError::TooLarge {
                field: "Stop-Sessions.Number of Sessions",
                value: u64::from(n),
                max: u64::from(MAX_STOP_SESSIONS),
            });
        }
        let mut off = 16;
        for _ in 0..n {
            if prefix.len() < off + 24 {
                // At least this record's header, then the HMAC.
                return Ok(off + 32 + HMAC_LEN);
            }
            let k = u32_at(prefix, off + 20..off + 24);
            if k > MAX_SKIP_RANGES {
                return Err(WireError::TooLarge {
                    field: "Stop-Sessions.Number of Skip Ranges",
                    value: u64::from(k),
                    max: u64::from(MAX_SKIP_RANGES),
                });
            }
            off += pad16(24 + 8 * k as usize);
        }
        Ok(off + HMAC_LEN)
    }

    /// Parses a whole Stop-Sessions.
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let v = StopSessions::new_checked(buf)?;
        let b = v.b();
        if Command::from(b[0]) != Command::StopSessions {
            return Err(WireError::InvalidValue {
                field: "Stop-Sessions.Command",
                value: u64::from(b[0]),
            });
        }
        let len = Self::required_len(buf)?;
        check_len(buf, len, "Stop-Sessions")?;
        if buf.len() > len {
            return Err(WireError::TrailingData("Stop-Sessions"));
        }
        let n = u32_at(b, 4..8);
        let mut sessions = Vec::with_capacity(n as usize);
        let mut off = 16;
        for _ in 0..n {
            let k = u32_at(b, off + 20..off + 24) as usize;
            let skip_ranges = (0..k)
                .map(|i| {
                    let at = off + 24 + 8 * i;
                    SkipRange {
                        first: u32_at(b, at..at + 4),
                        last: u32_at(b, at + 4..at + 8),
                    }
                })
                .collect();
            sessions.push(StopSession {
                sid: array_at(b, off..off + 16),
                next_seqno: u32_at(b, off + 16..off + 20),
                skip_ranges,
            });
            off += pad16(24 + 8 * k);
        }
        Ok(Self {
            accept: Accept::from(b[1]),
            sessions,
        })
    }

    /// Octets `emit` writes.
    pub fn buffer_len(&self) -> usize {
        16 + self
            .sessions
            .iter()
            .map(|s| pad16(24 + 8 * s.skip_ranges.len()))
            .sum::<usize>()
            + HMAC_LEN
    }

    /// Writes the message (HMAC zero).
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let len = self.buffer_len();
        let b = buf
            .get_mut(..len)
            .ok_or(WireError::BufferTooSmall("Stop-Sessions"))?;
        b.fill(0);
        b[0] = Command::StopSessions.into();
        b[1] = self.accept.into();
        b[4..8].copy_from_slice(&(self.sessions.len() as u32).to_be_bytes());
        let mut off = 16;
        for s in &self.sessions {
            b[off..off + 16].copy_from_slice(&s.sid);
            b[off + 16..off + 20].copy_from_slice(&s.next_seqno.to_be_bytes());
            b[off + 20..off + 24].copy_from_slice(&(s.skip_ranges.len() as u32).to_be_bytes());
            for (i, r) in s.skip_ranges.iter().enumerate() {
                let at = off + 24 + 8 * i;
                b[at..at + 4].copy_from_slice(&r.first.to_be_bytes());
                b[at + 4..at + 8].copy_from_slice(&r.last.to_be_bytes());
            }
            off += pad16(24 + 8 * s.skip_ranges.len());
        }
        Ok(())
    }

    /// The message's octets.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut b = vec![0; self.buffer_len()];
        let _ = self.emit(&mut b);
        b
    }
}

view! {
    /// A zero-copy view of Fetch-Session.
    ///
    /// ```text
    ///  0                   1                   2                   3
    ///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |      4        |                                               |
    /// +-+-+-+-+-+-+-+-+                                               |
    /// |                         MBZ (7 octets)                        |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                         Begin Seq                             |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                          End Seq                              |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                        SID (16 octets)                        |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                       HMAC (16 octets)                        |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// ```
    ///
    /// RFC 4656 §3.9. MBZ is written as zero and ignored on receipt.
    FetchSession, 48, "Fetch-Session"
}

/// A parsed Fetch-Session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchSessionRepr {
    /// The session.
    pub sid: [u8; 16],
    /// First sequence number wanted.
    pub begin_seq: u32,
    /// Last sequence number wanted (0xffffffff: to the end).
    pub end_seq: u32,
}

impl FetchSessionRepr {
    /// Octets on the wire.
    pub const LEN: usize = 48;
    /// Offset of the HMAC field.
    pub const HMAC_OFFSET: usize = 32;

    /// Parses Fetch-Session.
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let v = FetchSession::new_checked(buf)?;
        let b = v.b();
        if Command::from(b[0]) != Command::FetchSession {
            return Err(WireError::InvalidValue {
                field: "Fetch-Session.Command",
                value: u64::from(b[0]),
            });
        }
        Ok(Self {
            begin_seq: u32_at(b, 8..12),
            end_seq: u32_at(b, 12..16),
            sid: array_at(b, 16..32),
        })
    }

    /// Octets `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        Self::LEN
    }

    /// Writes the message (HMAC zero).
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let b = buf
            .get_mut(..Self::LEN)
            .ok_or(WireError::BufferTooSmall("Fetch-Session"))?;
        b.fill(0);
        b[0] = Command::FetchSession.into();
        b[8..12].copy_from_slice(&self.begin_seq.to_be_bytes());
        b[12..16].copy_from_slice(&self.end_seq.to_be_bytes());
        b[16..32].copy_from_slice(&self.sid);
        Ok(())
    }

    /// The message's octets.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut b = vec![0; Self::LEN];
        let _ = self.emit(&mut b);
        b
    }
}

view! {
    /// A zero-copy view of Fetch-Ack.
    ///
    /// ```text
    ///  0                   1                   2                   3
    ///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |     Accept    |   Finished    |          MBZ (2 octets)       |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                           Next Seqno                          |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                     Number of Skip Ranges                     |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                       Number of Records                       |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                       HMAC (16 octets)                        |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// ```
    ///
    /// RFC 4656 §3.9. With Accept 0 it is followed by the session's Request-Session (with its
    /// own two HMACs), the skip ranges padded to a block with an HMAC, and the records padded
    /// to a block with an HMAC. MBZ is written as zero and ignored on receipt.
    FetchAck, 32, "Fetch-Ack"
}

/// A parsed Fetch-Ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchAckRepr {
    /// Accept.
    pub accept: Accept,
    /// Finished: the session has ended and the records are final.
    pub finished: bool,
    /// Next Seqno.
    pub next_seqno: u32,
    /// Number of Skip Ranges that follow.
    pub num_skip_ranges: u32,
    /// Number of Records that follow.
    pub num_records: u32,
}

impl FetchAckRepr {
    /// Octets on the wire.
    pub const LEN: usize = 32;
    /// Offset of the HMAC field.
    pub const HMAC_OFFSET: usize = 16;

    /// Parses Fetch-Ack; counts above [`MAX_SKIP_RANGES`] or [`MAX_FETCH_RECORDS`] fail.
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let v = FetchAck::new_checked(buf)?;
        let b = v.b();
        let r = Self {
            accept: Accept::from(b[0]),
            finished: flag(b[1], "Fetch-Ack.Finished")?,
            next_seqno: u32_at(b, 4..8),
            num_skip_ranges: u32_at(b, 8..12),
            num_records: u32_at(b, 12..16),
        };
        skip_ranges_len(r.num_skip_ranges)?;
        records_len(r.num_records)?;
        Ok(r)
    }

    /// Octets `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        Self::LEN
    }

    /// Writes the message (HMAC zero).
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let b = buf
            .get_mut(..Self::LEN)
            .ok_or(WireError::BufferTooSmall("Fetch-Ack"))?;
        b.fill(0);
        b[0] = self.accept.into();
        b[1] = u8::from(self.finished);
        b[4..8].copy_from_slice(&self.next_seqno.to_be_bytes());
        b[8..12].copy_from_slice(&self.num_skip_ranges.to_be_bytes());
        b[12..16].copy_from_slice(&self.num_records.to_be_bytes());
        Ok(())
    }

    /// The message's octets.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut b = vec![0; Self::LEN];
        let _ = self.emit(&mut b);
        b
    }
}

/// Length of the skip-range part of a Fetch answer: `n` ranges of 8 octets, zero-padded to a
/// block, then an HMAC (just the HMAC for none, as owampd sends).
pub fn skip_ranges_len(n: u32) -> Result<usize, WireError> {
    if n > MAX_SKIP_RANGES {
        return Err(WireError::TooLarge {
            field: "Fetch-Ack.Number of Skip Ranges",
            value: u64::from(n),
            max: u64::from(MAX_SKIP_RANGES),
        });
    }
    Ok(pad16(8 * n as usize) + HMAC_LEN)
}

/// Parses the skip-range part of a Fetch answer (`n` ranges).
pub fn parse_skip_ranges(buf: &[u8], n: u32) -> Result<Vec<SkipRange>, WireError> {
    let len = skip_ranges_len(n)?;
    check_len(buf, len, "Fetch skip ranges")?;
    if buf.len() > len {
        return Err(WireError::TrailingData("Fetch skip ranges"));
    }
    Ok(buf[..8 * n as usize]
        .chunks_exact(8)
        .map(|c| SkipRange {
            first: u32_at(c, 0..4),
            last: u32_at(c, 4..8),
        })
        .collect())
}

/// The skip-range part of a Fetch answer (HMAC zero).
pub fn emit_skip_ranges(ranges: &[SkipRange]) -> Vec<u8> {
    let mut b = vec![0; pad16(8 * ranges.len()) + HMAC_LEN];
    for (r, c) in ranges.iter().zip(b.chunks_exact_mut(8)) {
        c[..4].copy_from_slice(&r.first.to_be_bytes());
        c[4..].copy_from_slice(&r.last.to_be_bytes());
    }
    b
}

/// One packet record of a Fetch answer (RFC 4656 §3.9), 25 octets.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                           Seq Number                          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |      Send Error Estimate      |    Receive Error Estimate     |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         Send Timestamp                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                       Receive Timestamp                       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |    TTL        |
/// +-+-+-+-+-+-+-+-+
/// ```
///
/// A lost packet has Receive Timestamp 0 (RFC 4656 §3.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataRecord {
    /// Seq Number.
    pub seq: u32,
    /// Send Error Estimate.
    pub send_error: ErrorEstimate,
    /// Receive Error Estimate.
    pub recv_error: ErrorEstimate,
    /// Send Timestamp.
    pub send_time: Timestamp,
    /// Receive Timestamp (zero: lost).
    pub recv_time: Timestamp,
    /// TTL of the received packet (255 when the receiver cannot tell).
    pub ttl: u8,
}

impl DataRecord {
    /// Octets on the wire.
    pub const LEN: usize = 25;

    /// Parses one record from exactly 25 octets.
    pub fn parse(b: &[u8]) -> Result<Self, WireError> {
        check_len(b, Self::LEN, "Fetch record")?;
        Ok(Self {
            seq: u32_at(b, 0..4),
            send_error: ErrorEstimate::from_bytes(array_at(b, 4..6)),
            recv_error: ErrorEstimate::from_bytes(array_at(b, 6..8)),
            send_time: Timestamp::from_bits(u64_at(b, 8..16)),
            recv_time: Timestamp::from_bits(u64_at(b, 16..24)),
            ttl: b[24],
        })
    }

    /// Writes one record into 25 octets.
    pub fn emit(&self, b: &mut [u8]) -> Result<(), WireError> {
        let b = b
            .get_mut(..Self::LEN)
            .ok_or(WireError::BufferTooSmall("Fetch record"))?;
        b[0..4].copy_from_slice(&self.seq.to_be_bytes());
        b[4..6].copy_from_slice(&self.send_error.to_bytes());
        b[6..8].copy_from_slice(&self.recv_error.to_bytes());
        b[8..16].copy_from_slice(&self.send_time.to_bytes());
        b[16..24].copy_from_slice(&self.recv_time.to_bytes());
        b[24] = self.ttl;
        Ok(())
    }

    /// Whether the packet was lost (Receive Timestamp zero).
    pub fn is_lost(&self) -> bool {
        self.recv_time == Timestamp::ZERO
    }
}

/// Length of the record part of a Fetch answer: `n` records, zero-padded to a block, HMAC.
pub fn records_len(n: u32) -> Result<usize, WireError> {
    if n > MAX_FETCH_RECORDS {
        return Err(WireError::TooLarge {
            field: "Fetch-Ack.Number of Records",
            value: u64::from(n),
            max: u64::from(MAX_FETCH_RECORDS),
        });
    }
    Ok(pad16(DataRecord::LEN * n as usize) + HMAC_LEN)
}

/// Parses the record part of a Fetch answer (`n` records).
pub fn parse_records(buf: &[u8], n: u32) -> Result<Vec<DataRecord>, WireError> {
    let len = records_len(n)?;
    check_len(buf, len, "Fetch records")?;
    if buf.len() > len {
        return Err(WireError::TrailingData("Fetch records"));
    }
    buf[..DataRecord::LEN * n as usize]
        .chunks_exact(DataRecord::LEN)
        .map(DataRecord::parse)
        .collect()
}

/// The record part of a Fetch answer (HMAC zero).
pub fn emit_records(records: &[DataRecord]) -> Vec<u8> {
    let mut b = vec![0; pad16(DataRecord::LEN * records.len()) + HMAC_LEN];
    for (r, c) in records.iter().zip(b.chunks_exact_mut(DataRecord::LEN)) {
        // Each chunk is exactly 25 octets.
        let _ = r.emit(c);
    }
    b
}
