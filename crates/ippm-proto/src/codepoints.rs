//! Code points: Modes (RFC 7718 OWAMP-Modes, RFC 7717 §7 TWAMP-Modes), Accept values
//! (RFC 4656 §3.3, RFC 7717 §5.3) and control command numbers (RFC 7718 §3.1, RFC 5938).

use std::fmt;

/// Which of the two protocols a control connection speaks. The Modes registries and command
/// numbers differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// OWAMP, RFC 4656.
    Owamp,
    /// TWAMP, RFC 5357.
    Twamp,
}

/// The 32-bit Modes field of the Server Greeting and the Set-Up-Response: a set of bit
/// positions, each registered separately for OWAMP and TWAMP.
///
/// Bits 0-2 are the same in both registries. In OWAMP bit 3 is reserved and bit 4 is the
/// IKEv2-derived shared secret (RFC 7718 §3.2.4 with RFC 7717); in TWAMP bits 3-7 are mixed
/// mode (RFC 5618), individual session control (RFC 5938), reflect octets and symmetrical size
/// (RFC 6038) and the IKEv2-derived shared secret (RFC 7717 §7). Unknown bits round-trip.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Modes(pub u32);

impl Modes {
    /// No mode: a Server Greeting with Modes 0 means the server will not talk to this client
    /// (RFC 4656 §3.1); a Set-Up-Response with Mode 0 means the client gives up.
    pub const NONE: Self = Self(0);
    /// Unauthenticated (bit 0, both registries).
    pub const OPEN: Self = Self(0x01);
    /// Authenticated (bit 1, both registries).
    pub const AUTHENTICATED: Self = Self(0x02);
    /// Encrypted (bit 2, both registries).
    pub const ENCRYPTED: Self = Self(0x04);
    /// TWAMP bit 3: unauthenticated TEST, encrypted CONTROL (mixed mode, RFC 5618).
    pub const TWAMP_MIXED: Self = Self(0x08);
    /// TWAMP bit 4: individual session control (RFC 5938).
    pub const TWAMP_INDIVIDUAL_SESSION_CONTROL: Self = Self(0x10);
    /// TWAMP bit 5: reflect octets capability (RFC 6038).
    pub const TWAMP_REFLECT_OCTETS: Self = Self(0x20);
    /// TWAMP bit 6: symmetrical size sender test packet format (RFC 6038).
    pub const TWAMP_SYMMETRICAL_SIZE: Self = Self(0x40);
    /// TWAMP bit 7: IKEv2-derived shared secret key (RFC 7717 §7).
    pub const TWAMP_IKEV2_DERIVED: Self = Self(0x80);
    /// OWAMP bit 4: IKEv2-derived shared secret key (RFC 7718 §3.2.4, RFC 7717).
    pub const OWAMP_IKEV2_DERIVED: Self = Self(0x10);

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// True when every bit of `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when any bit of `other` is set in `self`.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// True when no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The IKEv2-derived bit of `protocol`'s registry.
    pub const fn ikev2_derived(protocol: Protocol) -> Self {
        match protocol {
            Protocol::Owamp => Self::OWAMP_IKEV2_DERIVED,
            Protocol::Twamp => Self::TWAMP_IKEV2_DERIVED,
        }
    }

    /// The security-mode bits defined for `protocol` (open, authenticated, encrypted, and for
    /// TWAMP mixed).
    pub const fn security_bits(protocol: Protocol) -> Self {
        match protocol {
            Protocol::Owamp => Self(0x07),
            Protocol::Twamp => Self(0x0f),
        }
    }

    /// Every bit `protocol`'s registry defines; the rest are unknown to this implementation.
    pub const fn known_bits(protocol: Protocol) -> Self {
        match protocol {
            Protocol::Owamp => Self(0x17),
            Protocol::Twamp => Self(0xff),
        }
    }

    /// The security modes present in `self`, in the order of preference of a client that
    /// wants the most protection: encrypted, authenticated, mixed, open.
    pub fn security_modes(self, protocol: Protocol) -> impl Iterator<Item = SecurityMode> {
        SecurityMode::all()
            .into_iter()
            .filter(move |m| m.available(protocol) && self.contains(m.bit()))
    }
}

impl std::ops::BitOr for Modes {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Modes {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl std::ops::BitAnd for Modes {
    type Output = Self;
    fn bitand(self, rhs: Self) -> Self {
        Self(self.0 & rhs.0)
    }
}

impl std::ops::Not for Modes {
    type Output = Self;
    fn not(self) -> Self {
        Self(!self.0)
    }
}

impl fmt::Debug for Modes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Modes({:#010x})", self.0)
    }
}

/// The Modes field for people: the security modes as names with perfSONAR's `-A` letters
/// ("open (O), encrypted (E)"), then the other bits by name. Bit 4 means one thing in OWAMP
/// and another in TWAMP: [`Modes::named`] reads it right when the protocol is known; this
/// `Display` names both readings.
impl fmt::Display for Modes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_modes(f, *self, None)
    }
}

impl Modes {
    /// The modes as `protocol`'s registry names them, for logs and errors.
    pub fn named(self, protocol: Protocol) -> impl fmt::Display {
        struct Named(Modes, Protocol);
        impl fmt::Display for Named {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_modes(f, self.0, Some(self.1))
            }
        }
        Named(self, protocol)
    }
}

/// `{:#}`: the -A letters and the extensions by RFC, e.g. `OAE+5938+6038`, for lines a peer
/// can make the server log often (kept short, as the log budget counts octets).
fn write_compact(
    f: &mut fmt::Formatter<'_>,
    modes: Modes,
    protocol: Option<Protocol>,
) -> fmt::Result {
    let owamp = protocol == Some(Protocol::Owamp);
    let mut known = if owamp { Modes(0x07) } else { Modes(0x0f) };
    for m in [
        SecurityMode::Open,
        SecurityMode::Authenticated,
        SecurityMode::Encrypted,
        SecurityMode::Mixed,
    ] {
        if modes.contains(m.bit()) && (!owamp || m.available(Protocol::Owamp)) {
            write!(f, "{}", m.letter())?;
        }
    }
    let bit4 = match protocol {
        Some(Protocol::Owamp) => "+7717",
        Some(Protocol::Twamp) => "+5938",
        None => "+5938/7717",
    };
    for (bit, tag) in [
        (Modes(0x10), bit4),
        (Modes::TWAMP_REFLECT_OCTETS, "+6038r"),
        (Modes::TWAMP_SYMMETRICAL_SIZE, "+6038s"),
        (Modes::TWAMP_IKEV2_DERIVED, "+7717"),
    ] {
        known |= bit;
        if modes.contains(bit) {
            f.write_str(tag)?;
        }
    }
    let unknown = modes & !known;
    if !unknown.is_empty() {
        write!(f, "+{:#x}", unknown.0)?;
    }
    Ok(())
}

/// Writes `modes` as words (`{:#}`: compact); `protocol` `None` when the registry is not
/// known.
fn write_modes(
    f: &mut fmt::Formatter<'_>,
    modes: Modes,
    protocol: Option<Protocol>,
) -> fmt::Result {
    if modes.is_empty() {
        return f.write_str("no mode");
    }
    if f.alternate() {
        return write_compact(f, modes, protocol);
    }
    let mut names: Vec<String> = Vec::new();
    // Open first, as perfSONAR lists them (O, A, E, M), each with its -A letter.
    for (m, word) in [
        (SecurityMode::Open, "open"),
        (SecurityMode::Authenticated, "authenticated"),
        (SecurityMode::Encrypted, "encrypted"),
        (SecurityMode::Mixed, "mixed"),
    ] {
        if modes.contains(m.bit())
            && (protocol != Some(Protocol::Owamp) || m.available(Protocol::Owamp))
        {
            names.push(format!("{word} ({})", m.letter()));
        }
    }
    let mut known = Modes(0x07);
    let extensions: &[(Modes, &str)] = match protocol {
        Some(Protocol::Owamp) => &[(Modes::OWAMP_IKEV2_DERIVED, "IKEv2-derived keys (RFC 7717)")],
        Some(Protocol::Twamp) => &[
            (
                Modes::TWAMP_INDIVIDUAL_SESSION_CONTROL,
                "individual session control (RFC 5938)",
            ),
            (Modes::TWAMP_REFLECT_OCTETS, "reflect octets (RFC 6038)"),
            (Modes::TWAMP_SYMMETRICAL_SIZE, "symmetrical size (RFC 6038)"),
            (Modes::TWAMP_IKEV2_DERIVED, "IKEv2-derived keys (RFC 7717)"),
        ],
        None => &[
            (
                Modes(0x10),
                "individual session control (TWAMP) or IKEv2-derived keys (OWAMP)",
            ),
            (Modes::TWAMP_REFLECT_OCTETS, "reflect octets (RFC 6038)"),
            (Modes::TWAMP_SYMMETRICAL_SIZE, "symmetrical size (RFC 6038)"),
            (
                Modes::TWAMP_IKEV2_DERIVED,
                "IKEv2-derived keys (TWAMP, RFC 7717)",
            ),
        ],
    };
    if protocol != Some(Protocol::Owamp) {
        known |= Modes::TWAMP_MIXED;
    }
    for &(bit, name) in extensions {
        known |= bit;
        if modes.contains(bit) {
            names.push(name.to_owned());
        }
    }
    let unknown = modes & !known;
    if !unknown.is_empty() {
        names.push(format!("unknown bits {:#x}", unknown.0));
    }
    f.write_str(&names.join(", "))
}

/// The protection a control connection and its test sessions run with: the one security bit
/// that a Set-Up-Response selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityMode {
    /// Unauthenticated: nothing is encrypted, HMAC fields are zero.
    Open,
    /// Authenticated: control encrypted and HMAC'd; test packets authenticated.
    Authenticated,
    /// Encrypted: control encrypted and HMAC'd; test packets encrypted.
    Encrypted,
    /// TWAMP only (RFC 5618): control as in authenticated mode, test packets open.
    Mixed,
}

impl SecurityMode {
    /// Every security mode, most protective first.
    pub const fn all() -> [Self; 4] {
        [
            Self::Encrypted,
            Self::Authenticated,
            Self::Mixed,
            Self::Open,
        ]
    }

    /// The mode's bit.
    pub const fn bit(self) -> Modes {
        match self {
            Self::Open => Modes::OPEN,
            Self::Authenticated => Modes::AUTHENTICATED,
            Self::Encrypted => Modes::ENCRYPTED,
            Self::Mixed => Modes::TWAMP_MIXED,
        }
    }

    /// Whether `protocol` has this mode (mixed is TWAMP only).
    pub const fn available(self, protocol: Protocol) -> bool {
        !matches!((self, protocol), (Self::Mixed, Protocol::Owamp))
    }

    /// Whether the control connection is encrypted and HMAC'd after the Set-Up-Response.
    pub const fn protects_control(self) -> bool {
        !matches!(self, Self::Open)
    }

    /// Whether a shared secret (passphrase or IKEv2-derived) is needed.
    pub const fn needs_secret(self) -> bool {
        self.protects_control()
    }

    /// The one security mode set in a Set-Up-Response's Mode field. Other known bits (the
    /// TWAMP extension bits, IKEv2-derived) may accompany it; two security bits or none is
    /// an error.
    pub fn from_selected(protocol: Protocol, mode: Modes) -> Option<Self> {
        let sec = mode & Modes::security_bits(protocol);
        match sec.0 {
            0x01 => Some(Self::Open),
            0x02 => Some(Self::Authenticated),
            0x04 => Some(Self::Encrypted),
            0x08 if protocol == Protocol::Twamp => Some(Self::Mixed),
            _ => None,
        }
    }

    /// The letter perfSONAR's `-A` option uses for this mode.
    pub const fn letter(self) -> char {
        match self {
            Self::Open => 'O',
            Self::Authenticated => 'A',
            Self::Encrypted => 'E',
            Self::Mixed => 'M',
        }
    }
}

impl fmt::Display for SecurityMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "unauthenticated",
            Self::Authenticated => "authenticated",
            Self::Encrypted => "encrypted",
            Self::Mixed => "mixed",
        })
    }
}

macro_rules! enum_with_unknown {
    (
        $(#[$attr:meta])* pub enum $name:ident($ty:ty) {
            $( $(#[$vattr:meta])* $variant:ident = $value:expr ),+ $(,)?
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vattr])* $variant, )+
            /// A value this implementation does not know.
            Unknown($ty),
        }

        impl From<$ty> for $name {
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => Self::$variant, )+
                    other => Self::Unknown(other),
                }
            }
        }

        impl From<$name> for $ty {
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}

enum_with_unknown! {
    /// The Accept field of Server-Start, Accept-Session, Start-Ack, Stop-Sessions and the
    /// RFC 5938 acks (RFC 4656 §3.3, RFC 7717 §5.3 for 6).
    ///
    /// RFC 4656 §3.3: a receiver must interpret every value it does not know as 1 (Failure);
    /// [`Accept::is_ok`] does exactly that.
    pub enum Accept(u8) {
        /// 0: OK.
        Ok = 0,
        /// 1: Failure, reason unspecified (catch-all).
        Failure = 1,
        /// 2: Internal error.
        InternalError = 2,
        /// 3: Some aspect of the request is not supported.
        NotSupported = 3,
        /// 4: Cannot perform the request due to permanent resource limitations.
        PermanentResourceLimitation = 4,
        /// 5: Cannot perform the request due to temporary resource limitations.
        TemporaryResourceLimitation = 5,
        /// 6: No IKEv2 SA found for the SPIs in KeyID (RFC 7717 §5.3; the value ippm uses).
        NoIkeSa = 6,
    }
}

impl Accept {
    /// Only 0 means success.
    pub fn is_ok(self) -> bool {
        self == Self::Ok
    }
}

impl fmt::Display for Accept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok => f.write_str("0 (OK)"),
            Self::Failure => f.write_str("1 (failure)"),
            Self::InternalError => f.write_str("2 (internal error)"),
            Self::NotSupported => f.write_str("3 (not supported)"),
            Self::PermanentResourceLimitation => f.write_str("4 (permanent resource limitation)"),
            Self::TemporaryResourceLimitation => f.write_str("5 (temporary resource limitation)"),
            Self::NoIkeSa => f.write_str("6 (no IKEv2 SA for the KeyID)"),
            Self::Unknown(v) => write!(f, "{v} (unknown, treated as failure)"),
        }
    }
}

enum_with_unknown! {
    /// Control command numbers, the first octet of every client command and of the RFC 5938
    /// acks (OWAMP-Control-Command-Number and TWAMP-Control-Command-Number registries).
    pub enum Command(u8) {
        /// 0: reserved.
        Reserved = 0,
        /// 1: Request-Session (OWAMP only; "Forbidden" in TWAMP).
        RequestSession = 1,
        /// 2: Start-Sessions.
        StartSessions = 2,
        /// 3: Stop-Sessions.
        StopSessions = 3,
        /// 4: Fetch-Session (OWAMP only).
        FetchSession = 4,
        /// 5: Request-TW-Session (TWAMP only).
        RequestTwSession = 5,
        /// 6: Experimentation (TWAMP).
        Experimentation = 6,
        /// 7: Start-N-Sessions (TWAMP, RFC 5938).
        StartNSessions = 7,
        /// 8: Start-N-Ack (TWAMP, RFC 5938).
        StartNAck = 8,
        /// 9: Stop-N-Sessions (TWAMP, RFC 5938).
        StopNSessions = 9,
        /// 10: Stop-N-Ack (TWAMP, RFC 5938).
        StopNAck = 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_round_trip_and_unknown_is_failure() {
        for v in 0..=255u8 {
            let a = Accept::from(v);
            assert_eq!(u8::from(a), v);
            assert_eq!(a.is_ok(), v == 0);
        }
        assert_eq!(Accept::from(6), Accept::NoIkeSa);
        assert_eq!(Accept::from(7), Accept::Unknown(7));
    }

    #[test]
    fn command_numbers() {
        assert_eq!(Command::from(1), Command::RequestSession);
        assert_eq!(Command::from(5), Command::RequestTwSession);
        assert_eq!(u8::from(Command::StopNAck), 10);
        assert_eq!(Command::from(11), Command::Unknown(11));
    }

    #[test]
    fn selected_mode() {
        use Protocol::*;
        assert_eq!(
            SecurityMode::from_selected(Twamp, Modes(0x82)),
            Some(SecurityMode::Authenticated)
        );
        assert_eq!(
            SecurityMode::from_selected(Owamp, Modes(0x14)),
            Some(SecurityMode::Encrypted)
        );
        assert_eq!(
            SecurityMode::from_selected(Twamp, Modes(0x08)),
            Some(SecurityMode::Mixed)
        );
        assert_eq!(SecurityMode::from_selected(Owamp, Modes(0x08)), None);
        assert_eq!(SecurityMode::from_selected(Twamp, Modes(0x03)), None);
        assert_eq!(SecurityMode::from_selected(Twamp, Modes(0)), None);
    }

    #[test]
    fn modes_in_words() {
        use Protocol::*;
        assert_eq!(
            Modes(0x71).named(Twamp).to_string(),
            "open (O), individual session control (RFC 5938), reflect octets (RFC 6038), symmetrical size (RFC 6038)"
        );
        assert_eq!(
            Modes(0x15).named(Owamp).to_string(),
            "open (O), encrypted (E), IKEv2-derived keys (RFC 7717)"
        );
        assert_eq!(
            Modes(0x0e).to_string(),
            "authenticated (A), encrypted (E), mixed (M)"
        );
        assert_eq!(
            Modes(0x09).named(Owamp).to_string(),
            "open (O), unknown bits 0x8"
        );
        assert_eq!(Modes(0x100).named(Twamp).to_string(), "unknown bits 0x100");
        assert_eq!(Modes::NONE.to_string(), "no mode");
        // Compact, for lines a peer can make frequent.
        assert_eq!(
            format!("{:#}", Modes(0x71).named(Twamp)),
            "O+5938+6038r+6038s"
        );
        assert_eq!(format!("{:#}", Modes(0x1d).named(Owamp)), "OE+7717+0x8");
        assert_eq!(
            format!("{:#}", Modes(0xffff_ffff)),
            "OAEM+5938/7717+6038r+6038s+7717+0xffffff00"
        );
    }

    #[test]
    fn preference_order() {
        let got: Vec<_> = Modes(0x0f).security_modes(Protocol::Twamp).collect();
        assert_eq!(
            got,
            [
                SecurityMode::Encrypted,
                SecurityMode::Authenticated,
                SecurityMode::Mixed,
                SecurityMode::Open
            ]
        );
        let got: Vec<_> = Modes(0x0f).security_modes(Protocol::Owamp).collect();
        assert_eq!(got.len(), 3);
    }
}
