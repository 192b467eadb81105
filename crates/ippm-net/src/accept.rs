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

/// Drives `server` over `stream` until the connection ends: writes what it queues (including
/// a refusal before an error ends the connection), feeds it what arrives, fires its timer,
/// and hands each event to `on_event`. `last_activity` says when test traffic last flowed
/// for this connection, which keeps an otherwise quiet control connection alive.
pub(crate) async fn drive(
    stream: &mut TcpStream,
    server: &mut Server,
    shutdown: &mut watch::Receiver<bool>,
    last_activity: impl Fn() -> Option<std::time::Instant>,
    mut on_event: impl FnMut(ServerEvent, &mut Server) -> Result<(), Error>,
) -> Result<(), ConnectionError> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Some(out) = server.poll_transmit() {
            stream.write_all(&out).await?;
        }
        if server.is_closed() {
            return Ok(());
        }
        let deadline = server
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        let r = tokio::select! {
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
        };
        if let Err(e) = r {
            while let Some(out) = server.poll_transmit() {
                let _ = stream.write_all(&out).await;
            }
            return Err(e.into());
        }
        while let Some(ev) = server.poll_event() {
            on_event(ev, server)?;
        }
    }
}
