//! A control connection driven by a client state machine, shared by twping and owping.

use std::net::SocketAddr;
use std::time::Duration;

use ippm_proto::Protocol;
use ippm_proto::session::{Client, ClientConfig, ClientEvent, ClientRandom};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::twamp_client::TwpingError;

/// Octets from the OS random number generator.
pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if getrandom::fill(&mut b).is_err() {
        tracing::error!("the OS random number generator failed");
    }
    b
}

/// One control connection with its state machine.
pub(crate) struct Control {
    pub(crate) stream: TcpStream,
    pub(crate) client: Client,
    buf: Vec<u8>,
    timeout: Duration,
}

impl Control {
    /// Connects with TCP_NODELAY (perfSONAR's owping loses ~80 ms a test to Nagle and delayed
    /// ACKs; we do not) and starts the client; returns it with the local address.
    pub(crate) async fn connect(
        server: SocketAddr,
        protocol: Protocol,
        cfg: ClientConfig,
        timeout: Duration,
    ) -> Result<(Self, SocketAddr), TwpingError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(server))
            .await
            .map_err(|_| TwpingError::Timeout(timeout))??;
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        let keys = ClientRandom {
            client_iv: random(),
            aes_key: random(),
            hmac_key: random(),
        };
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

    /// Reads until the state machine reports an event.
    pub(crate) async fn event(&mut self) -> Result<ClientEvent, TwpingError> {
        loop {
            self.flush().await?;
            if let Some(ev) = self.client.poll_event() {
                return Ok(ev);
            }
            let n = tokio::time::timeout(self.timeout, self.stream.read(&mut self.buf))
                .await
                .map_err(|_| TwpingError::Timeout(self.timeout))??;
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
