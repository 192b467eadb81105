//! What the OWAMP and TWAMP servers share: the accept loop and the loop that drives one
//! control connection's state machine.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ippm_proto::session::{Error, Server, ServerEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::twamp_server::ConnectionError;

/// Accepts connections until `shutdown` turns true, at most `max_connections` at once (more
/// are closed at once with a log line), running each as a task made by `on_accept`.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    max_connections: usize,
    mut shutdown: watch::Receiver<bool>,
    mut on_accept: F,
) where
    F: FnMut(TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = Result<(), ConnectionError>> + Send + 'static,
{
    let live = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        if live.load(Ordering::Relaxed) >= max_connections {
            warn!(%peer, "connection limit reached, refusing control connection");
            continue;
        }
        live.fetch_add(1, Ordering::Relaxed);
        let task = on_accept(stream, peer, shutdown.clone());
        let live = live.clone();
        tokio::spawn(async move {
            match task.await {
                Ok(()) => debug!(%peer, "control connection closed"),
                Err(e) => warn!(%peer, error = %e, "control connection ended with an error"),
            }
            live.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// How long one write to a control connection may take before the peer counts as not
/// reading and the connection is dropped. Writes are at most one part of a Fetch-Session
/// answer (about 25 KiB), so a peer that reads at all is far faster than this.
pub(crate) const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A reply the application hands to the connection in parts (the records of an OWAMP
/// Fetch-Session answer), so that a connection holds one part at a time, not the reply.
pub(crate) trait ReplyStream: Send {
    /// Queues the next part in `server`; false once the reply is complete.
    fn pump(&mut self, server: &mut Server) -> Result<bool, Error>;
}

/// Drives `server` over `stream` until the connection ends: writes what it queues (including
/// a refusal before an error ends the connection), feeds it what arrives, fires its timer,
/// and hands each event to `on_event`. `last_activity` says when test traffic last flowed
/// for this connection, which keeps an otherwise quiet control connection alive. Writes
/// time out after [`DEFAULT_WRITE_TIMEOUT`].
pub(crate) async fn drive(
    stream: &mut TcpStream,
    server: &mut Server,
    shutdown: &mut watch::Receiver<bool>,
    last_activity: impl Fn() -> Option<std::time::Instant>,
    mut on_event: impl FnMut(ServerEvent, &mut Server) -> Result<(), Error>,
) -> Result<(), ConnectionError> {
    drive_streams(
        stream,
        server,
        shutdown,
        last_activity,
        DEFAULT_WRITE_TIMEOUT,
        |ev, server| on_event(ev, server).map(|()| None),
    )
    .await
}

/// [`drive`], where `on_event` may answer with a reply to stream. While a reply streams, the
/// next part is asked for only once the previous one has been written (backpressure: a
/// reader that reads slowly slows the reply, and the connection holds one part); input is
/// not read meanwhile (the state machine would hold it anyway, and TCP holds it for us). A
/// write that takes longer than `write_timeout` ends the connection with
/// [`ConnectionError::WriteTimeout`].
pub(crate) async fn drive_streams(
    stream: &mut TcpStream,
    server: &mut Server,
    shutdown: &mut watch::Receiver<bool>,
    last_activity: impl Fn() -> Option<std::time::Instant>,
    write_timeout: Duration,
    mut on_event: impl FnMut(ServerEvent, &mut Server) -> Result<Option<Box<dyn ReplyStream>>, Error>,
) -> Result<(), ConnectionError> {
    // Control messages are small (the largest common one, a Request-Session, is 112 octets
    // plus 16 per slot) and the state machine buffers a message that spans reads; a connection
    // holds this for its whole life, so it is kept small (10,000 sessions: 20 MiB at 2 KiB).
    let mut buf = vec![0u8; 2048];
    let mut reply: Option<Box<dyn ReplyStream>> = None;
    loop {
        if !flush(stream, server, shutdown, write_timeout).await? {
            return Ok(());
        }
        if server.is_closed() {
            return Ok(());
        }
        let r = if let Some(rs) = reply.as_mut() {
            match rs.pump(server) {
                Ok(true) => Ok(()),
                Ok(false) => {
                    reply = None;
                    // The peer has been reading all along; the idle clock restarts.
                    server.note_activity(std::time::Instant::now());
                    Ok(())
                }
                Err(e) => Err(e),
            }
        } else {
            let deadline = server
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                n = stream.read(&mut buf) => {
                    let n = n?;
                    if n == 0 {
                        server.handle_close()?;
                        return Ok(());
                    }
                    server.handle_input(std::time::Instant::now(), &buf[..n])
                }
                () = tokio::time::sleep_until(deadline) => {
                    if let Some(t) = last_activity() {
                        server.note_activity(t);
                    }
                    server.handle_timeout(std::time::Instant::now())
                }
                _ = shutdown.changed() => return Ok(()),
            }
        };
        if let Err(e) = r {
            while let Some(out) = server.poll_transmit() {
                let write = tokio::time::timeout(write_timeout, stream.write_all(&out));
                if !matches!(write.await, Ok(Ok(()))) {
                    break;
                }
            }
            return Err(e.into());
        }
        while let Some(ev) = server.poll_event() {
            if let Some(rs) = on_event(ev, server)? {
                // The state machine holds input until the reply ends, so no second reply
                // can start before this one is done.
                reply = Some(rs);
            }
        }
    }
}

/// Writes everything `server` has queued, each write within `write_timeout`. False when
/// shutdown came first.
async fn flush(
    stream: &mut TcpStream,
    server: &mut Server,
    shutdown: &mut watch::Receiver<bool>,
    write_timeout: Duration,
) -> Result<bool, ConnectionError> {
    while let Some(out) = server.poll_transmit() {
        tokio::select! {
            r = tokio::time::timeout(write_timeout, stream.write_all(&out)) => match r {
                Ok(r) => r?,
                Err(_) => return Err(ConnectionError::WriteTimeout(write_timeout)),
            },
            _ = shutdown.changed() => return Ok(false),
        }
    }
    Ok(true)
}
