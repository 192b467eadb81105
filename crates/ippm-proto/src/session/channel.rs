//! One control connection's byte stream in both directions, with the mode's protection.
//!
//! Incoming octets are buffered; once the receiving direction is protected, whole 16-octet
//! blocks are decrypted as they arrive (the CBC chain runs across message boundaries, RFC 4656
//! §3.4), so the state machines can look at a message's first block to learn its length before
//! the rest has arrived. Outgoing messages are sealed (HMACs filled in, then encrypted) as they
//! are queued.

use crate::crypto::{ControlOpener, ControlSealer, SessionKeys};
use crate::wire::{BLOCK, HMAC_LEN};

use super::Error;

/// Largest amount of unread input a connection buffers. The biggest message a peer can make
/// us wait for is bounded by the wire layer's count limits; this is a backstop against a peer
/// that streams garbage faster than we parse it.
pub(crate) const DEFAULT_MAX_BUFFERED: usize = 1 << 20;

pub(crate) struct Channel {
    /// Received octets not yet consumed; `[..plain]` is plaintext (decrypted or clear).
    inbuf: Vec<u8>,
    plain: usize,
    opener: Option<ControlOpener>,
    sealer: Option<ControlSealer>,
    /// Octets ready to be written to the TCP connection.
    out: Vec<u8>,
    max_buffered: usize,
}

impl Channel {
    pub(crate) fn new() -> Self {
        Self::with_limit(DEFAULT_MAX_BUFFERED)
    }

    /// A channel that buffers at most `max_buffered` unread octets.
    pub(crate) fn with_limit(max_buffered: usize) -> Self {
        Self {
            inbuf: Vec::new(),
            plain: 0,
            opener: None,
            sealer: None,
            out: Vec::new(),
            max_buffered,
        }
    }

    /// Appends received octets; decrypts what whole blocks it can.
    pub(crate) fn receive(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.inbuf.len() + data.len() > self.max_buffered {
            return Err(Error::InputOverflow);
        }
        self.inbuf.extend_from_slice(data);
        self.decrypt_available();
        Ok(())
    }

    fn decrypt_available(&mut self) {
        match &mut self.opener {
            Some(opener) => {
                let whole = (self.inbuf.len() - self.plain) / BLOCK * BLOCK;
                if whole > 0 {
                    opener.decrypt(&mut self.inbuf[self.plain..self.plain + whole]);
                    self.plain += whole;
                }
            }
            None => self.plain = self.inbuf.len(),
        }
    }

    /// Plaintext received and not yet consumed. Before a receive key is installed, this is
    /// everything received.
    pub(crate) fn available(&self) -> &[u8] {
        &self.inbuf[..self.plain]
    }

    /// The peer closed the connection: fine at a message boundary, a truncated message if
    /// octets of an incomplete one are buffered.
    pub(crate) fn check_clean_close(&self) -> Result<(), Error> {
        if self.inbuf.is_empty() {
            Ok(())
        } else {
            Err(Error::Wire(crate::WireError::Truncated(
                super::PEER_CLOSED_MID_MESSAGE,
            )))
        }
    }

    /// Removes the first `len` plaintext octets, verifying the HMAC fields at `hmac_offsets`
    /// (each covers everything since the previous one; with no receive key the fields are
    /// ignored, as open mode has them zero).
    pub(crate) fn consume(&mut self, len: usize, hmac_offsets: &[usize]) -> Result<Vec<u8>, Error> {
        debug_assert!(len <= self.plain);
        let msg: Vec<u8> = self.inbuf.drain(..len).collect();
        self.plain -= len;
        if let Some(opener) = &mut self.opener {
            let mut from = 0;
            for &at in hmac_offsets {
                let (Some(covered), Some(field)) = (msg.get(from..at), msg.get(at..at + HMAC_LEN))
                else {
                    return Err(Error::Internal("HMAC offset outside message"));
                };
                opener.absorb(covered);
                opener.verify_hmac(field).map_err(|_| Error::BadHmac)?;
                from = at + HMAC_LEN;
            }
            if let Some(rest) = msg.get(from..) {
                opener.absorb(rest);
            }
        }
        Ok(msg)
    }

    /// Removes `len` clear octets that precede the protected stream (the Set-Up-Response on
    /// the server, the Server Greeting and the first 32 octets of Server-Start on the client).
    pub(crate) fn consume_clear(&mut self, len: usize) -> Vec<u8> {
        debug_assert!(self.opener.is_none() && len <= self.plain);
        let msg: Vec<u8> = self.inbuf.drain(..len).collect();
        self.plain -= len;
        msg
    }

    /// Installs the receive key; octets buffered from here on are ciphertext.
    pub(crate) fn install_opener(&mut self, keys: &SessionKeys, iv: [u8; 16]) {
        self.plain = 0;
        self.opener = Some(ControlOpener::new(keys, iv));
        self.decrypt_available();
    }

    /// Installs the send key.
    pub(crate) fn install_sealer(&mut self, keys: &SessionKeys, iv: [u8; 16]) {
        self.sealer = Some(ControlSealer::new(keys, iv));
    }

    /// Queues octets that go out in clear whatever the mode (greeting, Set-Up-Response, the
    /// clear part of Server-Start).
    pub(crate) fn send_clear(&mut self, msg: &[u8]) {
        self.out.extend_from_slice(msg);
    }

    /// Queues a message: with a send key, fills its HMAC fields and encrypts it; without
    /// (open mode), sends it as it is, HMAC fields zero.
    pub(crate) fn send(&mut self, mut msg: Vec<u8>, hmac_offsets: &[usize]) {
        if let Some(sealer) = &mut self.sealer {
            sealer.seal(&mut msg, hmac_offsets);
        }
        self.out.extend_from_slice(&msg);
    }

    /// Queues octets that are covered by the next HMAC and encrypted, but carry no HMAC of
    /// their own (the protected tail of Server-Start).
    pub(crate) fn send_covered(&mut self, mut msg: Vec<u8>) {
        if let Some(sealer) = &mut self.sealer {
            sealer.absorb(&msg);
            sealer.encrypt(&mut msg);
        }
        self.out.extend_from_slice(&msg);
    }

    /// Octets queued and not yet taken.
    pub(crate) fn queued_len(&self) -> usize {
        self.out.len()
    }

    /// Takes what is ready to send.
    pub(crate) fn take_output(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.out))
        }
    }
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("buffered", &self.inbuf.len())
            .field("plain", &self.plain)
            .field("protected", &self.opener.is_some())
            .field("pending_out", &self.out.len())
            .finish()
    }
}
