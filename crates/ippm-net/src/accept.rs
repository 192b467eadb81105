//! The accept loop shared by the OWAMP and TWAMP servers.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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
