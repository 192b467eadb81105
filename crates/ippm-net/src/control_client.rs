//! A control connection driven by a client state machine, shared by twping and owping.
//!
//! Every exchange with the server (the greeting and set-up, each request and its answer,
//! Start, Stop, Fetch) has one deadline for the whole exchange: a server that trickles its
//! answer a byte at a time does not get a fresh timer per read, so it cannot hold the client
//! longer than the deadline.

use std::net::SocketAddr;
use std::time::Duration;

use ippm_proto::Protocol;
use ippm_proto::session::{Client, ClientConfig, ClientEvent, ClientRandom};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use crate::rng::{self, SecureRandom};
use crate::twamp_client::TwpingError;

/// One control exchange, named in the error when the server does not complete it in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    /// Server-Greeting, Set-Up-Response, Server-Start.
    Setup,
    /// Request-Session (OWAMP) / Request-TW-Session (TWAMP) and its Accept-Session.
    Request,
    /// Start-Sessions / Start-N-Sessions and the Start-Ack.
    Start,
    /// Stop-Sessions / Stop-N-Sessions and what answers it.
    Stop,
    /// Fetch-Session and the records (OWAMP).
    Fetch,
}

impl std::fmt::Display for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Setup => "the greeting and set-up",
            Self::Request => "the session request",
            Self::Start => "the start of the sessions",
            Self::Stop => "the stop of the sessions",
            Self::Fetch => "the fetch of the session records",
        })
    }
}

/// One control connection with its state machine.
pub(crate) struct Control {
    pub(crate) stream: TcpStream,
    pub(crate) client: Client,
    buf: Vec<u8>,
    timeout: Duration,
}

impl Control {
    /// Draws the client's session keys from `rng`, then connects with TCP_NODELAY (perfSONAR's
    /// owping loses ~80 ms a test to Nagle and delayed ACKs; we do not) and starts the client;
    /// returns it with the local address. The keys come first so that a failing generator
    /// ends the run before any connection exists: nothing is ever keyed from zeros.
    pub(crate) async fn connect(
        server: SocketAddr,
        protocol: Protocol,
        cfg: ClientConfig,
        timeout: Duration,
        rng: &dyn SecureRandom,
    ) -> Result<(Self, SocketAddr), TwpingError> {
        let keys = ClientRandom {
            client_iv: rng::array(rng)?,
            aes_key: rng::array(rng)?,
            hmac_key: rng::array(rng)?,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(server))
            .await
            .map_err(|_| TwpingError::Timeout(timeout))??;
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        let client = Client::new(protocol, cfg, keys, std::time::Instant::now());
        Ok((
            Self {
                stream,
                client,
                buf: vec![0; 64 * 1024],
                timeout,
            },
            local,
        ))
    }

    /// Writes out what the state machine queued.
    pub(crate) async fn flush(&mut self) -> Result<(), TwpingError> {
        while let Some(out) = self.client.poll_transmit() {
            self.stream.write_all(&out).await?;
        }
        Ok(())
    }

    /// Completes one exchange: writes what is queued and reads until the state machine
    /// reports an event, all within one deadline (the control timeout from now), however
    /// the server spreads its octets over time.
    pub(crate) async fn event(&mut self, what: Exchange) -> Result<ClientEvent, TwpingError> {
        self.event_within(what, self.timeout).await
    }

    /// [`Control::event`] within `limit` instead of the control timeout (an answer whose size
    /// the client knows to be large).
    pub(crate) async fn event_within(
        &mut self,
        what: Exchange,
        limit: Duration,
    ) -> Result<ClientEvent, TwpingError> {
        let deadline = Instant::now() + limit;
        match timeout_at(deadline, self.event_inner()).await {
            Ok(r) => r,
            Err(_) => Err(TwpingError::Deadline { what, limit }),
        }
    }

    async fn event_inner(&mut self) -> Result<ClientEvent, TwpingError> {
        loop {
            self.flush().await?;
            if let Some(ev) = self.client.poll_event() {
                return Ok(ev);
            }
            let n = self.stream.read(&mut self.buf).await?;
            if n == 0 {
                self.client.handle_close()?;
                return Err(TwpingError::Closed);
            }
            let r = self
                .client
                .handle_input(std::time::Instant::now(), &self.buf[..n]);
            // A refusal may have queued a message (Set-Up-Response Mode 0).
            self.flush().await?;
            r?;
        }
    }
}

/// The slowest a Fetch-Session answer may arrive: 100 kB/s (4,000 records a second). A server
/// may take the control timeout plus this long for the records it can have, so a hostile one
/// holds a client in proportion to the session the client asked for, and an honest one on a
/// slow link is not cut off in the middle of a million-record answer.
const FETCH_RECORDS_PER_SECOND: f64 = 4_000.0;

/// How long a Fetch-Session answer of at most `records` records may take.
pub(crate) fn fetch_limit(timeout: Duration, records: u32) -> Duration {
    timeout + Duration::from_secs_f64(f64::from(records) / FETCH_RECORDS_PER_SECOND)
}

/// The port of an Accept-Session that said Accept = 0. Port 0 is no port a test packet can
/// go to or come from: a server that accepts with it is broken or hostile, and going on would
/// report a session of 100% loss where there was no session at all.
pub(crate) fn accepted_port(port: u16) -> Result<u16, TwpingError> {
    if port == 0 {
        return Err(TwpingError::AcceptedPortZero);
    }
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetch_may_take_longer_in_proportion_to_its_records() {
        let t = Duration::from_secs(10);
        assert_eq!(fetch_limit(t, 0), t);
        // A million records (25 MB) at 100 kB/s: 250 s beyond the control timeout.
        assert_eq!(fetch_limit(t, 1_000_000), Duration::from_secs(260));
        assert!(accepted_port(0).is_err());
        assert_eq!(accepted_port(862).unwrap(), 862);
    }
}
