//! What the OWAMP and TWAMP servers share: the accept loop and the loop that drives one
//! control connection's state machine.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ippm_proto::Protocol;
use ippm_proto::session::{Error, Server, ServerEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::admission::{Admission, Ticket};
use crate::counters::{ACCEPT_FAILED, CONNECTION_EVICTED, CONNECTION_FAILED, CONNECTION_REFUSED};
use crate::rng::RandomError;

/// Errors that end a connection: the protocol's, or the socket's.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The peer broke the protocol (already answered where the protocol says to).
    #[error(transparent)]
    Protocol(#[from] Error),
    /// The TCP connection failed.
    #[error("control connection I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A write did not complete in this long: the peer does not read, and the connection is
    /// dropped rather than held with its queued reply.
    #[error("peer stopped reading: a write did not complete in {0:?}, connection dropped")]
    WriteTimeout(Duration),
    /// Closed to make room: the connection table was full and this one had not finished its
    /// set-up.
    #[error("closed to make room for a new connection (set-up not finished)")]
    Evicted,
    /// No random octets for the greeting: nothing was sent.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// Accepts connections until `shutdown` turns true, each admitted by `admission` (which
/// may close one still setting up to make room; a refused one is closed at once) and run
/// as a task made by `on_accept` with its ticket.
///
/// Out of file descriptors, accept(2) fails while the connection waits in the backlog, and
/// a loop that only retries spins on it: a descriptor kept in reserve is given up to accept
/// and close that connection, so the backlog drains and the client hears at once.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    protocol: Protocol,
    admission: Arc<Admission>,
    mut shutdown: watch::Receiver<bool>,
    mut on_accept: F,
) where
    F: FnMut(TcpStream, SocketAddr, Ticket, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = Result<(), ConnectionError>> + Send + 'static,
{
    let mut reserve = std::fs::File::open("/dev/null").ok();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    if let Some(more) = ACCEPT_FAILED.note() {
                        warn!(error = %e, suppressed = more, "accept failed");
                    }
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                        drop(reserve.take());
                        if let Ok(Ok((s, _))) =
                            tokio::time::timeout(Duration::from_millis(10), listener.accept()).await
                        {
                            drop(s);
                        }
                        reserve = std::fs::File::open("/dev/null").ok();
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let ticket = match admission.admit(protocol, peer.ip(), std::time::Instant::now()) {
            Ok((ticket, evicted)) => {
                if evicted {
                    if let Some(more) = CONNECTION_EVICTED.note() {
                        info!(%peer, suppressed = more, "connection table full: closed the oldest \
                            connection still setting up (from the source holding the most)");
                    }
                }
                ticket
            }
            Err(why) => {
                if let Some(more) = CONNECTION_REFUSED.note() {
                    warn!(%peer, %why, suppressed = more, "control connection refused");
                }
                continue;
            }
        };
        let task = on_accept(stream, peer, ticket, shutdown.clone());
        tokio::spawn(async move {
            match task.await {
                Ok(()) => debug!(%peer, "control connection closed"),
                Err(e) => {
                    if let Some(more) = CONNECTION_FAILED.note() {
                        warn!(%peer, error = %e, suppressed = more, "control connection ended with an error");
                    } else {
                        debug!(%peer, error = %e, "control connection ended with an error");
                    }
                }
            }
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
/// and hands each event to `on_event`; the connection ends when `ticket` is evicted, and
/// tells the ticket once the set-up is over. `last_activity` says when test traffic last flowed
/// for this connection, which keeps an otherwise quiet control connection alive. A write
/// that takes longer than `write_timeout` ends the connection.
pub(crate) async fn drive(
    stream: &mut TcpStream,
    server: &mut Server,
    ticket: &mut Ticket,
    shutdown: &mut watch::Receiver<bool>,
    last_activity: impl Fn() -> Option<std::time::Instant>,
    write_timeout: Duration,
    mut on_event: impl FnMut(ServerEvent, &mut Server, &mut Ticket) -> Result<(), Error>,
) -> Result<(), ConnectionError> {
    drive_streams(
        stream,
        server,
        ticket,
        shutdown,
        last_activity,
        write_timeout,
        |ev, server, ticket| on_event(ev, server, ticket).map(|()| None),
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
    ticket: &mut Ticket,
    shutdown: &mut watch::Receiver<bool>,
    last_activity: impl Fn() -> Option<std::time::Instant>,
    write_timeout: Duration,
    mut on_event: impl FnMut(
        ServerEvent,
        &mut Server,
        &mut Ticket,
    ) -> Result<Option<Box<dyn ReplyStream>>, Error>,
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
                () = ticket.evicted() => return Err(ConnectionError::Evicted),
            }
        };
        if server.is_set_up() {
            ticket.set_up();
        }
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
            if let Some(rs) = on_event(ev, server, ticket)? {
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
