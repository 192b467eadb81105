//! TWAMP-Control messages of their own (RFC 5357 §3.5, RFC 6038 §4.2, RFC 5938 §3):
//! Request-TW-Session and the individual session control commands Start-N-Sessions,
//! Start-N-Ack, Stop-N-Sessions and Stop-N-Ack. Accept-Session, Start-Sessions, Start-Ack and
//! Stop-Sessions are shared with OWAMP ([`crate::wire::owamp`]).

use std::net::IpAddr;

use crate::WireError;
use crate::codepoints::{Accept, Command};
use crate::time::Timestamp;
use crate::wire::owamp::{TypeP, read_addr, write_addr};
use crate::wire::{HMAC_LEN, array_at, check_len, u16_at, u32_at, u64_at};

/// Most SIDs accepted in one RFC 5938 message.
pub const MAX_N_SESSIONS: u32 = 1024;

view! {
    /// A zero-copy view of Request-TW-Session.
    ///
    /// ```text
    ///  0                   1                   2                   3
    ///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |      5        |  MBZ  | IPVN  |  Conf-Sender  | Conf-Receiver |
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
    /// |     Octets to be reflected    |  Length of padding to reflect |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                       MBZ (4 octets)                          |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                       HMAC (16 octets)                        |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// ```
    ///
    /// RFC 5357 §3.5 with RFC 6038 §4.2. Conf-Sender, Conf-Receiver, Number of Schedule Slots,
    /// Number of Packets and SID are unused in TWAMP: written as zero, ignored on receipt (as
    /// twampd does). The MBZ bits and octets are written as zero and ignored on receipt.
    RequestTwSession, 112, "Request-TW-Session"
}

/// A parsed Request-TW-Session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTwSessionRepr {
    /// Sender Port.
    pub sender_port: u16,
    /// Receiver Port (the server may answer with another).
    pub receiver_port: u16,
    /// Sender Address (all zero: use the control connection's address, RFC 5357 §3.5).
    pub sender_address: IpAddr,
    /// Receiver Address (all zero: likewise).
    pub receiver_address: IpAddr,
    /// Padding Length of the sender's test packets.
    pub padding_length: u32,
    /// Start Time.
    pub start_time: Timestamp,
    /// Timeout (32.32 seconds): how long the reflector waits after Stop-Sessions.
    pub timeout: u64,
    /// Type-P Descriptor.
    pub type_p: TypeP,
    /// RFC 6038: Octets to be reflected (echoed in Accept-Session).
    pub octets_to_reflect: u16,
    /// RFC 6038: Length of padding to reflect.
    pub padding_to_reflect: u16,
}

impl RequestTwSessionRepr {
    /// Octets on the wire.
    pub const LEN: usize = 112;
    /// Offset of the HMAC field.
    pub const HMAC_OFFSET: usize = 96;

    /// Parses Request-TW-Session (plaintext).
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let v = RequestTwSession::new_checked(buf)?;
        let b = v.b();
        if Command::from(b[0]) != Command::RequestTwSession {
            return Err(WireError::InvalidValue {
                field: "Request-TW-Session.Command",
                value: u64::from(b[0]),
            });
        }
        let ipvn = b[1] & 0x0f;
        Ok(Self {
            sender_port: u16_at(b, 12..14),
            receiver_port: u16_at(b, 14..16),
            sender_address: read_addr(ipvn, &array_at(b, 16..32), "Request-TW-Session.IPVN")?,
            receiver_address: read_addr(ipvn, &array_at(b, 32..48), "Request-TW-Session.IPVN")?,
            padding_length: u32_at(b, 64..68),
            start_time: Timestamp::from_bits(u64_at(b, 68..76)),
            timeout: u64_at(b, 76..84),
            type_p: TypeP(u32_at(b, 84..88)),
            octets_to_reflect: u16_at(b, 88..90),
            padding_to_reflect: u16_at(b, 90..92),
        })
    }

    /// Octets `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        Self::LEN
    }

    /// Writes the message (HMAC zero). IPVN is taken from the sender address.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let b = buf
            .get_mut(..Self::LEN)
            .ok_or(WireError::BufferTooSmall("Request-TW-Session"))?;
        b.fill(0);
        b[0] = Command::RequestTwSession.into();
        b[1] = write_addr(self.sender_address, &mut b[16..32]);
        write_addr(self.receiver_address, &mut b[32..48]);
        b[12..14].copy_from_slice(&self.sender_port.to_be_bytes());
        b[14..16].copy_from_slice(&self.receiver_port.to_be_bytes());
        b[64..68].copy_from_slice(&self.padding_length.to_be_bytes());
        b[68..76].copy_from_slice(&self.start_time.to_bytes());
        b[76..84].copy_from_slice(&self.timeout.to_be_bytes());
        b[84..88].copy_from_slice(&self.type_p.0.to_be_bytes());
        b[88..90].copy_from_slice(&self.octets_to_reflect.to_be_bytes());
        b[90..92].copy_from_slice(&self.padding_to_reflect.to_be_bytes());
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
    /// A zero-copy view of the header shared by the four RFC 5938 messages.
    ///
    /// ```text
    ///  0                   1                   2                   3
    ///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |  7, 8, 9, 10  |  MBZ / Accept |            MBZ                |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                        MBZ (8 octets)                         |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                      Number of Sessions                       |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                    First SID (16 octets)                      |
    /// .                remaining SIDs (16 octets each)                .
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                       HMAC (16 octets)                        |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// ```
    ///
    /// RFC 5938 §3.2-3.5: octet 1 is Accept in the acks (8, 10) and MBZ in the commands (7,
    /// 9). Number of Sessions must be at least 1. MBZ is written as zero, ignored on receipt.
    NSessions, 16, "RFC 5938 message"
}

impl<T: AsRef<[u8]>> NSessions<T> {
    /// The command octet.
    pub fn command(&self) -> Command {
        Command::from(self.b()[0])
    }

    /// Octet 1: Accept in the acks.
    pub fn accept(&self) -> Accept {
        Accept::from(self.b()[1])
    }

    /// Number of Sessions.
    pub fn num_sessions(&self) -> u32 {
        u32_at(self.b(), 12..16)
    }
}

fn n_required_len(prefix: &[u8], name: &'static str) -> Result<usize, WireError> {
    if prefix.len() < 16 {
        return Ok(16 + 16 + HMAC_LEN);
    }
    let n = u32_at(prefix, 12..16);
    if n == 0 {
        return Err(WireError::InvalidValue {
            field: name,
            value: 0,
        });
    }
    if n > MAX_N_SESSIONS {
        return Err(WireError::TooLarge {
            field: name,
            value: u64::from(n),
            max: u64::from(MAX_N_SESSIONS),
        });
    }
    Ok(16 + 16 * n as usize + HMAC_LEN)
}

fn n_parse(
    buf: &[u8],
    want: Command,
    name: &'static str,
    count_field: &'static str,
) -> Result<(Accept, Vec<[u8; 16]>), WireError> {
    let v = NSessions::new_checked(buf)?;
    if v.command() != want {
        return Err(WireError::InvalidValue {
            field: name,
            value: u64::from(buf[0]),
        });
    }
    let len = n_required_len(buf, count_field)?;
    check_len(buf, len, name)?;
    if buf.len() > len {
        return Err(WireError::TrailingData(name));
    }
    let sids = buf[16..len - HMAC_LEN]
        .chunks_exact(16)
        .map(|c| array_at(c, 0..16))
        .collect();
    Ok((v.accept(), sids))
}

fn n_emit(command: Command, accept: u8, sids: &[[u8; 16]]) -> Vec<u8> {
    let mut b = vec![0; 16 + 16 * sids.len() + HMAC_LEN];
    b[0] = command.into();
    b[1] = accept;
    b[12..16].copy_from_slice(&(sids.len() as u32).to_be_bytes());
    for (sid, c) in sids.iter().zip(b[16..].chunks_exact_mut(16)) {
        c.copy_from_slice(sid);
    }
    b
}

macro_rules! n_message {
    ($(#[$m:meta])* $name:ident, $cmd:expr, $what:literal, with_accept) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            /// Accept for these SIDs.
            pub accept: Accept,
            /// The sessions (at least one).
            pub sids: Vec<[u8; 16]>,
        }

        impl $name {
            /// The whole message's length as far as `prefix` tells; fails on a Number of
            /// Sessions of 0 or above [`MAX_N_SESSIONS`].
            pub fn required_len(prefix: &[u8]) -> Result<usize, WireError> {
                n_required_len(prefix, concat!($what, ".Number of Sessions"))
            }

            /// Parses the message.
            pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
                let (accept, sids) =
                    n_parse(buf, $cmd, concat!($what, ".Command"), concat!($what, ".Number of Sessions"))?;
                Ok(Self { accept, sids })
            }

            /// Octets `emit` writes.
            pub fn buffer_len(&self) -> usize {
                16 + 16 * self.sids.len() + HMAC_LEN
            }

            /// The message's octets (HMAC zero).
            pub fn to_vec(&self) -> Vec<u8> {
                n_emit($cmd, self.accept.into(), &self.sids)
            }
        }
    };
    ($(#[$m:meta])* $name:ident, $cmd:expr, $what:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            /// The sessions (at least one).
            pub sids: Vec<[u8; 16]>,
        }

        impl $name {
            /// The whole message's length as far as `prefix` tells; fails on a Number of
            /// Sessions of 0 or above [`MAX_N_SESSIONS`].
            pub fn required_len(prefix: &[u8]) -> Result<usize, WireError> {
                n_required_len(prefix, concat!($what, ".Number of Sessions"))
            }

            /// Parses the message.
            pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
                let (_, sids) =
                    n_parse(buf, $cmd, concat!($what, ".Command"), concat!($what, ".Number of Sessions"))?;
                Ok(Self { sids })
            }

            /// Octets `emit` writes.
            pub fn buffer_len(&self) -> usize {
                16 + 16 * self.sids.len() + HMAC_LEN
            }

            /// The message's octets (HMAC zero).
            pub fn to_vec(&self) -> Vec<u8> {
                n_emit($cmd, 0, &self.sids)
            }
        }
    };
}

n_message! {
    /// Start-N-Sessions (command 7, RFC 5938 §3.2).
    StartNSessionsRepr, Command::StartNSessions, "Start-N-Sessions"
}
n_message! {
    /// Start-N-Ack (command 8, RFC 5938 §3.3).
    StartNAckRepr, Command::StartNAck, "Start-N-Ack", with_accept
}
n_message! {
    /// Stop-N-Sessions (command 9, RFC 5938 §3.4).
    StopNSessionsRepr, Command::StopNSessions, "Stop-N-Sessions"
}
n_message! {
    /// Stop-N-Ack (command 10, RFC 5938 §3.5).
    StopNAckRepr, Command::StopNAck, "Stop-N-Ack", with_accept
}

view! {
    /// A zero-copy view of TWAMP's Stop-Sessions.
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
    /// |                       HMAC (16 octets)                        |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// ```
    ///
    /// RFC 5357 §3.8: unlike OWAMP's, it carries no session records; Number of Sessions is
    /// the number of sessions it stops (twping sends 1 with no record, captures item 8).
    /// MBZ is written as zero and ignored on receipt.
    TwStopSessions, 32, "Stop-Sessions"
}

/// A parsed TWAMP Stop-Sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwStopSessionsRepr {
    /// Accept: 0 for a normal end.
    pub accept: Accept,
    /// Number of Sessions stopped.
    pub num_sessions: u32,
}

impl TwStopSessionsRepr {
    /// Octets on the wire.
    pub const LEN: usize = 32;
    /// Offset of the HMAC field.
    pub const HMAC_OFFSET: usize = 16;

    /// Parses TWAMP Stop-Sessions.
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let v = TwStopSessions::new_checked(buf)?;
        let b = v.b();
        if Command::from(b[0]) != Command::StopSessions {
            return Err(WireError::InvalidValue {
                field: "Stop-Sessions.Command",
                value: u64::from(b[0]),
            });
        }
        Ok(Self {
            accept: Accept::from(b[1]),
            num_sessions: u32_at(b, 4..8),
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
            .ok_or(WireError::BufferTooSmall("Stop-Sessions"))?;
        b.fill(0);
        b[0] = Command::StopSessions.into();
        b[1] = self.accept.into();
        b[4..8].copy_from_slice(&self.num_sessions.to_be_bytes());
        Ok(())
    }

    /// The message's octets.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut b = vec![0; Self::LEN];
        let _ = self.emit(&mut b);
        b
    }
}
