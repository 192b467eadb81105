//! The one OWAMP receiver (RFC 4656 §4.2), of the server's sessions and of owping's: every test
//! packet from the session's sender that passes its check becomes a record with the kernel's
//! receive timestamp, both error estimates and the TTL it arrived with.

use std::net::SocketAddr;

use ippm_proto::Timestamp;
use ippm_proto::wire::owamp::DataRecord;
use ippm_proto::wire::test::{Layout, PacketKind, SenderRepr, TestProtection};

use crate::clock::{self, ClockCache};
use crate::engine::RecvMeta;

/// Whose packets a receiver takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum From {
    /// Any port of this address (the server's side: the client's test port may differ from
    /// the one it announced, behind NAT).
    Ip(std::net::IpAddr),
    /// This address and port only (the client's side: the server's test port).
    Addr(SocketAddr),
}

/// Why a datagram is not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not from the session's sender: not counted as anything of the session's.
    Stranger,
    /// From the sender but failed its HMAC or is too short.
    Bad,
}

/// One session's receiving side.
#[derive(Debug)]
pub(crate) struct OneWayReceiver {
    protection: TestProtection,
    layout: Layout,
    from: From,
    clock: ClockCache,
}

impl OneWayReceiver {
    pub(crate) fn new(protection: TestProtection, from: From) -> Self {
        Self {
            layout: protection.layout(),
            protection,
            from,
            clock: ClockCache::new(),
        }
    }

    /// Checks one datagram (decrypting it in place) and makes its record.
    pub(crate) fn record(
        &mut self,
        pkt: &mut [u8],
        meta: &RecvMeta,
    ) -> Result<DataRecord, Refused> {
        let ours = match self.from {
            From::Ip(ip) => meta.from.ip() == ip,
            From::Addr(a) => meta.from == a,
        };
        if !ours {
            return Err(Refused::Stranger);
        }
        let recv_time = meta
            .kernel_time
            .map(Timestamp::from_unix)
            .unwrap_or_else(clock::now);
        self.protection
            .unprotect(PacketKind::Sender, pkt)
            .map_err(|_| Refused::Bad)?;
        let p = SenderRepr::parse(pkt, self.layout).map_err(|_| Refused::Bad)?;
        Ok(DataRecord {
            seq: p.seq,
            send_error: p.error_estimate,
            recv_error: self.clock.estimate(),
            send_time: p.timestamp,
            recv_time,
            // 255 when the kernel did not say (RFC 4656 §4.2).
            ttl: meta.ttl.unwrap_or(255),
        })
    }
}
