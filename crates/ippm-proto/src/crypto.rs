//! The O/TWAMP key schedule and control-stream protection (RFC 4656 §3.1, §3.2, §3.4, §4.1.2;
//! RFC 5357 §3.1, §4.1.2; RFC 5618), checked against perfSONAR's captures.
//!
//! 1. The shared secret (a passphrase, or RFC 7717's `prf(SK_d, "IPPM")`) gives a 16-octet key
//!    by PBKDF2-HMAC-SHA1 with the greeting's Salt and Count ([`derive_key`]).
//! 2. The client encrypts Challenge || AES Session-key || HMAC Session-key with that key in
//!    AES-128-CBC, IV 0: the Token ([`encrypt_token`], [`decrypt_token`]).
//! 3. After the Set-Up-Response each direction is one AES-128-CBC stream under the AES
//!    Session-key whose chain runs across message boundaries ([`ControlSealer`],
//!    [`ControlOpener`]): the client's starts with IV = Client-IV at the first octet after the
//!    Set-Up-Response; the server's starts with IV = Server-IV at octet 32 of Server-Start
//!    (octets 0..32 are clear). HMAC fields hold HMAC-SHA1 under the whole 32-octet HMAC
//!    Session-key, truncated to 16 octets, over the plaintext sent in that direction since the
//!    previous HMAC field; the first server HMAC therefore covers the encrypted 16 octets of
//!    Server-Start, and nothing of the Set-Up-Response is covered (captures, "RFC vs
//!    perfSONAR" item 1). HMACs are computed on plaintext and encrypted with the stream.
//! 4. Each test session's keys come from the session keys and its SID, the SID being the AES
//!    key ([`TestKeys::derive`]); the same keys serve both directions of a TWAMP session.

use aes::Aes128;
use aes::cipher::common::InnerIvInit;
use aes::cipher::common::array::Array;
use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, BlockModeDecrypt, BlockModeEncrypt};
use aes::cipher::{KeyInit, KeyIvInit};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

type HmacSha1 = Hmac<Sha1>;

const ZERO_IV: Array<u8, aes::cipher::typenum::U16> = Array([0; 16]);

/// Why a key could not be made or a message not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Count is not a power of 2 (RFC 4656 §3.1).
    #[error("PBKDF2 Count {0} is not a power of 2")]
    CountNotPowerOfTwo(u32),
    /// Count is below 1024 (RFC 4656 §3.1).
    #[error("PBKDF2 Count {0} is below 1024")]
    CountTooSmall(u32),
    /// Count is above what this side accepts (a server can burn a client's CPU with it).
    #[error("PBKDF2 Count {count} is above the configured limit {max}")]
    CountTooLarge {
        /// The Count received.
        count: u32,
        /// The limit.
        max: u32,
    },
    /// An HMAC did not verify.
    #[error("HMAC mismatch")]
    BadHmac,
    /// A buffer does not have the length the operation needs.
    #[error("bad length for {0}")]
    BadLength(&'static str),
}

/// The smallest Count RFC 4656 §3.1 allows.
pub const MIN_COUNT: u32 = 1024;
/// The largest Count a client accepts unless configured otherwise.
pub const DEFAULT_MAX_COUNT: u32 = 1 << 16;

/// Checks a greeting's Count: a power of 2, at least 1024, at most `max`.
pub fn check_count(count: u32, max: u32) -> Result<(), CryptoError> {
    if !count.is_power_of_two() {
        return Err(CryptoError::CountNotPowerOfTwo(count));
    }
    if count < MIN_COUNT {
        return Err(CryptoError::CountTooSmall(count));
    }
    if count > max {
        return Err(CryptoError::CountTooLarge { count, max });
    }
    Ok(())
}

/// The 16-octet key PBKDF2 gives from a shared secret; it protects the Token only.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DerivedKey([u8; 16]);

impl DerivedKey {
    /// The key octets.
    pub fn expose(&self) -> &[u8; 16] {
        &self.0
    }
}

impl std::fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DerivedKey([redacted])")
    }
}

/// PBKDF2-HMAC-SHA1(secret, salt, count, 16) after [`check_count`].
pub fn derive_key(
    secret: &[u8],
    salt: &[u8; 16],
    count: u32,
    max_count: u32,
) -> Result<DerivedKey, CryptoError> {
    check_count(count, max_count)?;
    let mut key = DerivedKey([0; 16]);
    pbkdf2::pbkdf2_hmac::<Sha1>(secret, salt, count, &mut key.0);
    Ok(key)
}

/// The AES and HMAC Session-keys a client chooses for one control connection.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SessionKeys {
    /// AES Session-key.
    pub aes: [u8; 16],
    /// HMAC Session-key.
    pub hmac: [u8; 32],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys([redacted])")
    }
}

/// Builds the Token: AES-128-CBC(key, IV 0, Challenge || AES Session-key || HMAC Session-key).
pub fn encrypt_token(key: &DerivedKey, challenge: &[u8; 16], keys: &SessionKeys) -> [u8; 64] {
    let mut t = [0u8; 64];
    t[..16].copy_from_slice(challenge);
    t[16..32].copy_from_slice(&keys.aes);
    t[32..].copy_from_slice(&keys.hmac);
    let mut enc = cbc::Encryptor::<Aes128>::new(&Array::from(key.0), &Array::from([0u8; 16]));
    cbc_encrypt(&mut enc, &mut t);
    t
}

/// Opens a Token: the Challenge it carries and the session keys. Whether the Challenge is
/// the greeting's (i.e. the passphrase was right) is for the caller to check, with [`ct_eq`].
pub fn decrypt_token(key: &DerivedKey, token: &[u8; 64]) -> ([u8; 16], SessionKeys) {
    let mut t = *token;
    let mut dec = cbc::Decryptor::<Aes128>::new(&Array::from(key.0), &Array::from([0u8; 16]));
    cbc_decrypt(&mut dec, &mut t);
    let mut challenge = [0u8; 16];
    challenge.copy_from_slice(&t[..16]);
    let mut keys = SessionKeys {
        aes: [0; 16],
        hmac: [0; 32],
    };
    keys.aes.copy_from_slice(&t[16..32]);
    keys.hmac.copy_from_slice(&t[32..]);
    t.zeroize();
    (challenge, keys)
}

/// Constant-time equality of two octet strings (false for different lengths).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn cbc_encrypt(enc: &mut cbc::Encryptor<Aes128>, buf: &mut [u8]) {
    debug_assert!(buf.len() % 16 == 0, "CBC on a partial block");
    let (blocks, _tail) = Array::slice_as_chunks_mut(buf);
    enc.encrypt_blocks(blocks);
}

fn cbc_decrypt(dec: &mut cbc::Decryptor<Aes128>, buf: &mut [u8]) {
    debug_assert!(buf.len() % 16 == 0, "CBC on a partial block");
    let (blocks, _tail) = Array::slice_as_chunks_mut(buf);
    dec.decrypt_blocks(blocks);
}

/// The sending half of one direction of a protected control connection.
pub struct ControlSealer {
    enc: cbc::Encryptor<Aes128>,
    mac: HmacSha1,
    fresh: HmacSha1,
}

impl ControlSealer {
    /// A stream under `keys` starting with `iv` (Client-IV for the client, Server-IV for
    /// the server).
    pub fn new(keys: &SessionKeys, iv: [u8; 16]) -> Self {
        let fresh = new_hmac(&keys.hmac);
        Self {
            enc: cbc::Encryptor::<Aes128>::new(&Array::from(keys.aes), &Array::from(iv)),
            mac: fresh.clone(),
            fresh,
        }
    }

    /// Adds plaintext that the next HMAC covers.
    pub fn absorb(&mut self, plaintext: &[u8]) {
        self.mac.update(plaintext);
    }

    /// The HMAC over everything absorbed since the last one, truncated to 16 octets; the next
    /// HMAC starts afresh.
    pub fn take_hmac(&mut self) -> [u8; 16] {
        let mac = std::mem::replace(&mut self.mac, self.fresh.clone());
        truncate(mac)
    }

    /// Encrypts whole blocks in place, continuing the chain. A partial trailing block is a bug
    /// in the caller and is left as it is.
    pub fn encrypt(&mut self, blocks: &mut [u8]) {
        cbc_encrypt(&mut self.enc, blocks);
    }

    /// Fills the HMAC fields of a plaintext message at `hmac_offsets` (each covering what was
    /// absorbed before it), absorbs whatever follows the last one, then encrypts the message.
    pub fn seal(&mut self, msg: &mut [u8], hmac_offsets: &[usize]) {
        let mut from = 0;
        for &at in hmac_offsets {
            let Some(covered) = msg.get(from..at) else {
                continue;
            };
            self.mac.update(covered);
            let h = self.take_hmac();
            if let Some(field) = msg.get_mut(at..at + 16) {
                field.copy_from_slice(&h);
            }
            from = at + 16;
        }
        if let Some(rest) = msg.get(from..) {
            self.mac.update(rest);
        }
        self.encrypt(msg);
    }
}

impl std::fmt::Debug for ControlSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlSealer([redacted])")
    }
}

/// The receiving half of one direction of a protected control connection.
pub struct ControlOpener {
    dec: cbc::Decryptor<Aes128>,
    mac: HmacSha1,
    fresh: HmacSha1,
}

impl ControlOpener {
    /// A stream under `keys` starting with `iv`.
    pub fn new(keys: &SessionKeys, iv: [u8; 16]) -> Self {
        let fresh = new_hmac(&keys.hmac);
        Self {
            dec: cbc::Decryptor::<Aes128>::new(&Array::from(keys.aes), &Array::from(iv)),
            mac: fresh.clone(),
            fresh,
        }
    }

    /// Decrypts whole blocks in place, continuing the chain.
    pub fn decrypt(&mut self, blocks: &mut [u8]) {
        cbc_decrypt(&mut self.dec, blocks);
    }

    /// Adds plaintext that the next HMAC covers.
    pub fn absorb(&mut self, plaintext: &[u8]) {
        self.mac.update(plaintext);
    }

    /// Checks a received HMAC field against everything absorbed since the last one (in
    /// constant time); the next HMAC starts afresh either way.
    pub fn verify_hmac(&mut self, received: &[u8]) -> Result<(), CryptoError> {
        let mac = std::mem::replace(&mut self.mac, self.fresh.clone());
        if ct_eq(&truncate(mac), received) {
            Ok(())
        } else {
            Err(CryptoError::BadHmac)
        }
    }

    /// Decrypts a whole message and verifies its HMAC fields at `hmac_offsets`.
    pub fn open(&mut self, msg: &mut [u8], hmac_offsets: &[usize]) -> Result<(), CryptoError> {
        self.decrypt(msg);
        let mut from = 0;
        for &at in hmac_offsets {
            let (Some(covered), Some(field)) = (msg.get(from..at), msg.get(at..at + 16)) else {
                return Err(CryptoError::BadLength("HMAC offset"));
            };
            self.mac.update(covered);
            self.verify_hmac(field)?;
            from = at + 16;
        }
        if let Some(rest) = msg.get(from..) {
            self.mac.update(rest);
        }
        Ok(())
    }
}

impl std::fmt::Debug for ControlOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlOpener([redacted])")
    }
}

fn new_hmac(key: &[u8; 32]) -> HmacSha1 {
    match <HmacSha1 as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC accepts keys of every length; this arm cannot be taken.
        Err(_) => unreachable_hmac(),
    }
}

#[cold]
fn unreachable_hmac() -> HmacSha1 {
    <HmacSha1 as KeyInit>::new(&Default::default())
}

fn truncate(mac: HmacSha1) -> [u8; 16] {
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// The keys of one test session.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct TestKeys {
    /// AES key for the test packets.
    pub aes: [u8; 16],
    /// HMAC key for the test packets.
    pub hmac: [u8; 32],
}

impl TestKeys {
    /// RFC 4656 §4.1.2 / RFC 5357 §4.1.2, as perfSONAR reads them: the AES key is the AES
    /// Session-key encrypted with AES-128-ECB under the SID; the HMAC key is the HMAC
    /// Session-key encrypted with AES-128-CBC, IV 0, under the SID.
    pub fn derive(session: &SessionKeys, sid: &[u8; 16]) -> Self {
        let cipher = Aes128::new(&Array::from(*sid));
        let mut aes = Array::from(session.aes);
        cipher.encrypt_block(&mut aes);
        let mut hmac = session.hmac;
        let mut enc = cbc::Encryptor::<Aes128>::new(&Array::from(*sid), &Array::from([0u8; 16]));
        cbc_encrypt(&mut enc, &mut hmac);
        Self {
            aes: aes.into(),
            hmac,
        }
    }
}

impl std::fmt::Debug for TestKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestKeys([redacted])")
    }
}

/// AES-128 and HMAC-SHA1 state for one test session's packets, set up once so the per-packet
/// work is two block operations and one HMAC (no allocation).
#[derive(Clone)]
pub struct TestCipher {
    aes: Aes128,
    mac: HmacSha1,
}

impl TestCipher {
    /// Key schedules for `keys`.
    pub fn new(keys: &TestKeys) -> Self {
        Self {
            aes: Aes128::new(&Array::from(keys.aes)),
            mac: new_hmac(&keys.hmac),
        }
    }

    /// AES-ECB encryption of one block in place (authenticated mode's first block).
    pub fn ecb_encrypt(&self, block: &mut [u8; 16]) {
        let mut b = Array::from(*block);
        self.aes.encrypt_block(&mut b);
        *block = b.into();
    }

    /// AES-ECB decryption of one block in place.
    pub fn ecb_decrypt(&self, block: &mut [u8; 16]) {
        let mut b = Array::from(*block);
        self.aes.decrypt_block(&mut b);
        *block = b.into();
    }

    /// AES-CBC encryption with IV 0 of whole blocks in place (encrypted mode). The key
    /// schedule is reused, not recomputed.
    pub fn cbc_encrypt(&self, blocks: &mut [u8]) {
        let mut enc = cbc::Encryptor::<Aes128>::inner_iv_init(self.aes.clone(), &ZERO_IV);
        cbc_encrypt(&mut enc, blocks);
    }

    /// AES-CBC decryption with IV 0 of whole blocks in place.
    pub fn cbc_decrypt(&self, blocks: &mut [u8]) {
        let mut dec = cbc::Decryptor::<Aes128>::inner_iv_init(self.aes.clone(), &ZERO_IV);
        cbc_decrypt(&mut dec, blocks);
    }

    /// HMAC-SHA1 truncated to 16 octets.
    pub fn hmac(&self, data: &[u8]) -> [u8; 16] {
        let mut m = self.mac.clone();
        m.update(data);
        truncate(m)
    }

    /// Checks an HMAC field in constant time.
    pub fn verify(&self, data: &[u8], received: &[u8]) -> Result<(), CryptoError> {
        if ct_eq(&self.hmac(data), received) {
            Ok(())
        } else {
            Err(CryptoError::BadHmac)
        }
    }
}

impl std::fmt::Debug for TestCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestCipher([redacted])")
    }
}
