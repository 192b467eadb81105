//! The messages that open every OWAMP-Control and TWAMP-Control connection (RFC 4656 §3.1,
//! RFC 5357 §3.1, RFC 7717 §5.2): Server Greeting, Set-Up-Response and Server-Start.

use crate::WireError;
use crate::codepoints::{Accept, Modes};
use crate::time::Timestamp;
use crate::wire::{Field, array_at, u32_at};

mod field {
    use crate::wire::Field;

    pub(crate) const GREETING_UNUSED: Field = 0..12;
    pub(crate) const GREETING_MODES: Field = 12..16;
    pub(crate) const GREETING_CHALLENGE: Field = 16..32;
    pub(crate) const GREETING_SALT: Field = 32..48;
    pub(crate) const GREETING_COUNT: Field = 48..52;
    pub(crate) const GREETING_MBZ: Field = 52..64;

    pub(crate) const SETUP_MODE: Field = 0..4;
    pub(crate) const SETUP_KEY_ID: Field = 4..84;
    pub(crate) const SETUP_TOKEN: Field = 84..148;
    pub(crate) const SETUP_CLIENT_IV: Field = 148..164;

    pub(crate) const START_MBZ: Field = 0..15;
    pub(crate) const START_ACCEPT: usize = 15;
    pub(crate) const START_SERVER_IV: Field = 16..32;
    pub(crate) const START_TIME: Field = 32..40;
    pub(crate) const START_MBZ2: Field = 40..48;
}

view! {
    /// A zero-copy view of a Server Greeting.
    ///
    /// ```text
    ///  0                   1                   2                   3
    ///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                                                               |
    /// |                      Unused (12 octets)                       |
    /// |                                                               |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                            Modes                              |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                                                               |
    /// |                     Challenge (16 octets)                     |
    /// |                                                               |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                                                               |
    /// |                        Salt (16 octets)                       |
    /// |                                                               |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                        Count (4 octets)                       |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                                                               |
    /// |                        MBZ (12 octets)                        |
    /// |                                                               |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// ```
    ///
    /// RFC 4656 §3.1. Unused and MBZ are written as zero and ignored on receipt (the RFC gives no
    /// receive rule; ignoring them costs nothing and follows the deployed base).
    ServerGreeting, ServerGreetingRepr::LEN, "Server Greeting"
}

impl<T: AsRef<[u8]>> ServerGreeting<T> {
    /// Modes.
    pub fn modes(&self) -> Modes {
        Modes(u32_at(self.b(), field::GREETING_MODES))
    }

    /// Challenge.
    pub fn challenge(&self) -> [u8; 16] {
        array_at(self.b(), field::GREETING_CHALLENGE)
    }

    /// Salt.
    pub fn salt(&self) -> [u8; 16] {
        array_at(self.b(), field::GREETING_SALT)
    }

    /// Count (PBKDF2 iterations).
    pub fn count(&self) -> u32 {
        u32_at(self.b(), field::GREETING_COUNT)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ServerGreeting<T> {
    fn zero(&mut self, f: Field) {
        self.bm()[f].fill(0);
    }

    /// Sets Modes.
    pub fn set_modes(&mut self, m: Modes) {
        self.bm()[field::GREETING_MODES].copy_from_slice(&m.0.to_be_bytes());
    }

    /// Sets Challenge.
    pub fn set_challenge(&mut self, c: &[u8; 16]) {
        self.bm()[field::GREETING_CHALLENGE].copy_from_slice(c);
    }

    /// Sets Salt.
    pub fn set_salt(&mut self, s: &[u8; 16]) {
        self.bm()[field::GREETING_SALT].copy_from_slice(s);
    }

    /// Sets Count.
    pub fn set_count(&mut self, c: u32) {
        self.bm()[field::GREETING_COUNT].copy_from_slice(&c.to_be_bytes());
    }

    /// Zeroes Unused and MBZ.
    pub fn clear_reserved(&mut self) {
        self.zero(field::GREETING_UNUSED);
        self.zero(field::GREETING_MBZ);
    }
}

/// A parsed Server Greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerGreetingRepr {
    /// Modes the server offers (0: it will not serve this client).
    pub modes: Modes,
    /// Challenge, returned encrypted in the Token.
    pub challenge: [u8; 16],
    /// Salt for PBKDF2.
    pub salt: [u8; 16],
    /// PBKDF2 iteration count.
    pub count: u32,
}

impl ServerGreetingRepr {
    /// Octets on the wire.
    pub const LEN: usize = 64;

    /// Parses a greeting (the buffer may be longer; the rest is not looked at).
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let v = ServerGreeting::new_checked(buf)?;
        Ok(Self {
            modes: v.modes(),
            challenge: v.challenge(),
            salt: v.salt(),
            count: v.count(),
        })
    }

    /// Octets `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        Self::LEN
    }

    /// Writes the greeting into the first [`Self::LEN`] octets of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let buf = buf
            .get_mut(..Self::LEN)
            .ok_or(WireError::BufferTooSmall("Server Greeting"))?;
        let mut v = ServerGreeting::new_unchecked(buf);
        v.clear_reserved();
        v.set_modes(self.modes);
        v.set_challenge(&self.challenge);
        v.set_salt(&self.salt);
        v.set_count(self.count);
        Ok(())
    }

    /// The greeting's octets.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut b = vec![0; Self::LEN];
        // Cannot fail: the buffer has LEN octets.
        let _ = self.emit(&mut b);
        b
    }
}

/// The 80-octet KeyID of a Set-Up-Response.
///
/// With a passphrase it holds the identity (RFC 4656 §3.1: "a UTF-8 string, up to 80 octets
/// in length ... padded with zeros"). With an IKEv2-derived key (RFC 7717 §5.2) octets 0-7
/// carry SPIi, 8-15 SPIr and the rest is zero; a reader takes the first 16 octets and ignores
/// the rest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 80]);

impl KeyId {
    /// Octets on the wire.
    pub const LEN: usize = 80;

    /// All zero (open mode, or a declined Set-Up-Response).
    pub const fn zero() -> Self {
        Self([0; 80])
    }

    /// An identity, zero-padded; identities longer than 80 octets are cut at 80.
    pub fn from_identity(identity: &[u8]) -> Self {
        let mut k = [0u8; 80];
        let n = identity.len().min(80);
        k[..n].copy_from_slice(&identity[..n]);
        Self(k)
    }

    /// RFC 7717: SPIi | SPIr | zeros.
    pub fn from_spis(spi_i: [u8; 8], spi_r: [u8; 8]) -> Self {
        let mut k = [0u8; 80];
        k[..8].copy_from_slice(&spi_i);
        k[8..16].copy_from_slice(&spi_r);
        Self(k)
    }

    /// The identity: the octets before the first zero.
    pub fn identity(&self) -> &[u8] {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(80);
        &self.0[..end]
    }

    /// RFC 7717: (SPIi, SPIr) from the first 16 octets.
    pub fn spis(&self) -> ([u8; 8], [u8; 8]) {
        (array_at(&self.0, 0..8), array_at(&self.0, 8..16))
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({:?})", String::from_utf8_lossy(self.identity()))
    }
}

view! {
    /// A zero-copy view of a Set-Up-Response.
    ///
    /// ```text
    ///  0                   1                   2                   3
    ///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                             Mode                              |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                                                               |
    /// |                       KeyID (80 octets)                       |
    /// |                                                               |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                                                               |
    /// |                       Token (64 octets)                       |
    /// |                                                               |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                                                               |
    /// |                     Client-IV (16 octets)                     |
    /// |                                                               |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// ```
    ///
    /// RFC 4656 §3.1. RFC 7717 §5.2's figure draws Token and Client-IV shorter; the figure is
    /// abbreviated and this layout (164 octets) stands (DESIGN.md, choice 2). In open mode KeyID,
    /// Token and Client-IV are unused: written as zero, ignored on receipt.
    SetUpResponse, SetUpResponseRepr::LEN, "Set-Up-Response"
}

impl<T: AsRef<[u8]>> SetUpResponse<T> {
    /// Mode.
    pub fn mode(&self) -> Modes {
        Modes(u32_at(self.b(), field::SETUP_MODE))
    }

    /// KeyID.
    pub fn key_id(&self) -> KeyId {
        KeyId(array_at(self.b(), field::SETUP_KEY_ID))
    }

    /// Token.
    pub fn token(&self) -> [u8; 64] {
        array_at(self.b(), field::SETUP_TOKEN)
    }

    /// Client-IV.
    pub fn client_iv(&self) -> [u8; 16] {
        array_at(self.b(), field::SETUP_CLIENT_IV)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> SetUpResponse<T> {
    /// Sets Mode.
    pub fn set_mode(&mut self, m: Modes) {
        self.bm()[field::SETUP_MODE].copy_from_slice(&m.0.to_be_bytes());
    }

    /// Sets KeyID.
    pub fn set_key_id(&mut self, k: &KeyId) {
        self.bm()[field::SETUP_KEY_ID].copy_from_slice(&k.0);
    }

    /// Sets Token.
    pub fn set_token(&mut self, t: &[u8; 64]) {
        self.bm()[field::SETUP_TOKEN].copy_from_slice(t);
    }

    /// Sets Client-IV.
    pub fn set_client_iv(&mut self, iv: &[u8; 16]) {
        self.bm()[field::SETUP_CLIENT_IV].copy_from_slice(iv);
    }
}

/// A parsed Set-Up-Response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetUpResponseRepr {
    /// The chosen mode: one security mode, plus extension / IKEv2-derived bits (0: declined).
    pub mode: Modes,
    /// KeyID.
    pub key_id: KeyId,
    /// Token: Challenge, AES Session-key and HMAC Session-key, AES-CBC encrypted.
    pub token: [u8; 64],
    /// Client-IV.
    pub client_iv: [u8; 16],
}

impl SetUpResponseRepr {
    /// Octets on the wire.
    pub const LEN: usize = 164;

    /// Parses a Set-Up-Response.
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let v = SetUpResponse::new_checked(buf)?;
        Ok(Self {
            mode: v.mode(),
            key_id: v.key_id(),
            token: v.token(),
            client_iv: v.client_iv(),
        })
    }

    /// Octets `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        Self::LEN
    }

    /// Writes the message into the first [`Self::LEN`] octets of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let buf = buf
            .get_mut(..Self::LEN)
            .ok_or(WireError::BufferTooSmall("Set-Up-Response"))?;
        let mut v = SetUpResponse::new_unchecked(buf);
        v.set_mode(self.mode);
        v.set_key_id(&self.key_id);
        v.set_token(&self.token);
        v.set_client_iv(&self.client_iv);
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
    /// A zero-copy view of a Server-Start.
    ///
    /// ```text
    ///  0                   1                   2                   3
    ///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                                                               |
    /// |                         MBZ (15 octets)                       |
    /// |                                               +-+-+-+-+-+-+-+-+
    /// |                                               |   Accept      |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                     Server-IV (16 octets)                     |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                      Start-Time (Timestamp)                   |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                         MBZ (8 octets)                        |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// ```
    ///
    /// RFC 4656 §3.1. In the protected modes octets 32..48 are the first block of the server's
    /// encrypted stream (this view sees plaintext). Both MBZ fields are written as zero and
    /// ignored on receipt.
    ServerStart, ServerStartRepr::LEN, "Server-Start"
}

impl<T: AsRef<[u8]>> ServerStart<T> {
    /// Accept.
    pub fn accept(&self) -> Accept {
        Accept::from(self.b()[field::START_ACCEPT])
    }

    /// Server-IV.
    pub fn server_iv(&self) -> [u8; 16] {
        array_at(self.b(), field::START_SERVER_IV)
    }

    /// Start-Time.
    pub fn start_time(&self) -> Timestamp {
        Timestamp::from_bytes(array_at(self.b(), field::START_TIME))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ServerStart<T> {
    /// Sets Accept and zeroes both MBZ fields.
    pub fn set_accept(&mut self, a: Accept) {
        let b = self.bm();
        b[field::START_MBZ].fill(0);
        b[field::START_MBZ2].fill(0);
        b[field::START_ACCEPT] = a.into();
    }

    /// Sets Server-IV.
    pub fn set_server_iv(&mut self, iv: &[u8; 16]) {
        self.bm()[field::START_SERVER_IV].copy_from_slice(iv);
    }

    /// Sets Start-Time.
    pub fn set_start_time(&mut self, t: Timestamp) {
        self.bm()[field::START_TIME].copy_from_slice(&t.to_bytes());
    }
}

/// A parsed Server-Start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerStartRepr {
    /// Accept: 0 lets the client go on; anything else ends the connection.
    pub accept: Accept,
    /// Server-IV (zero in open mode and in a refusal).
    pub server_iv: [u8; 16],
    /// When the server started (zero in a refusal).
    pub start_time: Timestamp,
}

impl ServerStartRepr {
    /// Octets on the wire.
    pub const LEN: usize = 48;

    /// Parses a Server-Start (plaintext).
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let v = ServerStart::new_checked(buf)?;
        Ok(Self {
            accept: v.accept(),
            server_iv: v.server_iv(),
            start_time: v.start_time(),
        })
    }

    /// Octets `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        Self::LEN
    }

    /// Writes the message into the first [`Self::LEN`] octets of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let buf = buf
            .get_mut(..Self::LEN)
            .ok_or(WireError::BufferTooSmall("Server-Start"))?;
        let mut v = ServerStart::new_unchecked(buf);
        v.set_accept(self.accept);
        v.set_server_iv(&self.server_iv);
        v.set_start_time(self.start_time);
        Ok(())
    }

    /// The message's octets.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut b = vec![0; Self::LEN];
        let _ = self.emit(&mut b);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // twamp-auth.pcap, frames 4, 6 and 8 (Server-Start as plaintext).
    const GREETING: &str = "0000000000000000000000000000000f06cdd429d083af15c780337e560832a8\
                            f6511da35918de89cada2fb91aabe1ae00000800000000000000000000000000";
    const SETUP: &str = "00000002616c6963650000000000000000000000000000000000000000000000\
                         0000000000000000000000000000000000000000000000000000000000000000\
                         0000000000000000000000000000000000000000970b004f385c638d54f2ff84\
                         aefa1a5bffb18fe817d53e94eb6606cd4b634ee4ba3b8712f82cef68e041e869\
                         ac394cf9ca4f73ca9d5625737ff737ab1076426cc6b44faeaab7a162415036bc\
                         f750016a";
    const START: &str = "00000000000000000000000000000000dec42051f15b0e84be111f57d1d68003\
                         eeae165ea17d6b650000000000000000";

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn greeting_golden() {
        let b = h(GREETING);
        let r = ServerGreetingRepr::parse(&b).unwrap();
        assert_eq!(r.modes, Modes(0x0f));
        assert_eq!(r.count, 2048);
        assert_eq!(r.challenge[..4], [0x06, 0xcd, 0xd4, 0x29]);
        assert_eq!(r.salt[..2], [0xf6, 0x51]);
        let mut out = vec![0xa5; ServerGreetingRepr::LEN];
        r.emit(&mut out).unwrap();
        assert_eq!(out, b);
    }

    #[test]
    fn setup_golden() {
        let b = h(SETUP);
        let r = SetUpResponseRepr::parse(&b).unwrap();
        assert_eq!(r.mode, Modes::AUTHENTICATED);
        assert_eq!(r.key_id.identity(), b"alice");
        assert_eq!(r.key_id, KeyId::from_identity(b"alice"));
        assert_eq!(r.client_iv[0], 0xc6);
        let mut out = vec![0xa5; SetUpResponseRepr::LEN];
        r.emit(&mut out).unwrap();
        assert_eq!(out, b);
    }

    #[test]
    fn server_start_golden() {
        let b = h(START);
        let r = ServerStartRepr::parse(&b).unwrap();
        assert_eq!(r.accept, Accept::Ok);
        assert_eq!(r.start_time, Timestamp::from_bits(0xeeae_165e_a17d_6b65));
        let mut out = vec![0xa5; ServerStartRepr::LEN];
        r.emit(&mut out).unwrap();
        assert_eq!(out, b);
    }

    #[test]
    fn truncation() {
        for (name, full, parse) in [
            (
                "greeting",
                h(GREETING),
                &(|b: &[u8]| ServerGreetingRepr::parse(b).map(drop))
                    as &dyn Fn(&[u8]) -> Result<(), WireError>,
            ),
            ("setup", h(SETUP), &|b: &[u8]| {
                SetUpResponseRepr::parse(b).map(drop)
            }),
            ("start", h(START), &|b: &[u8]| {
                ServerStartRepr::parse(b).map(drop)
            }),
        ] {
            for n in 0..full.len() {
                assert!(
                    matches!(parse(&full[..n]), Err(WireError::Truncated(_))),
                    "{name} {n}"
                );
            }
            assert_eq!(parse(&full), Ok(()));
        }
        assert!(
            ServerStartRepr {
                accept: Accept::Ok,
                server_iv: [0; 16],
                start_time: Timestamp::ZERO
            }
            .emit(&mut [0u8; 47])
            .is_err()
        );
    }

    #[test]
    fn key_id_spis() {
        let k = KeyId::from_spis([1; 8], [2; 8]);
        assert_eq!(k.spis(), ([1; 8], [2; 8]));
        assert!(k.0[16..].iter().all(|&b| b == 0));
        // A reader ignores octets 16..80.
        let mut k2 = k;
        k2.0[40] = 0xff;
        assert_eq!(k2.spis(), ([1; 8], [2; 8]));
        assert_eq!(KeyId::from_identity(&[b'x'; 100]).identity().len(), 80);
        assert_eq!(KeyId::zero().identity(), b"");
    }

    proptest::proptest! {
        #[test]
        fn round_trip(modes: u32, challenge: [u8; 16], salt: [u8; 16], count: u32,
                      key in proptest::collection::vec(proptest::num::u8::ANY, 80),
                      token in proptest::collection::vec(proptest::num::u8::ANY, 64),
                      iv: [u8; 16], accept: u8, ts: u64) {
            let g = ServerGreetingRepr { modes: Modes(modes), challenge, salt, count };
            proptest::prop_assert_eq!(ServerGreetingRepr::parse(&g.to_vec()).unwrap(), g);
            let s = SetUpResponseRepr {
                mode: Modes(modes),
                key_id: KeyId(key.try_into().unwrap()),
                token: token.try_into().unwrap(),
                client_iv: iv,
            };
            proptest::prop_assert_eq!(SetUpResponseRepr::parse(&s.to_vec()).unwrap(), s);
            let st = ServerStartRepr {
                accept: Accept::from(accept),
                server_iv: iv,
                start_time: Timestamp::from_bits(ts),
            };
            proptest::prop_assert_eq!(ServerStartRepr::parse(&st.to_vec()).unwrap(), st);
        }
    }
}
