//! The IKE UDP driver: runs an [`ippm_ike::engine::Engine`] on tokio, with its sockets, its
//! timers, the connections it keeps up as initiator, and a handle for the rest of the daemon
//! (the local control socket, and RFC 7717's key lookups).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use ippm_ike::engine::{Engine, OsRandom};
use ippm_ike::engine::{EngineError, Event, SaInfo, Spis};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, watch};
use zeroize::Zeroizing;

/// Where the daemon puts its [`IkeHandle`] once the IKE service runs, for the O/TWAMP servers
/// that look up RFC 7717 secrets.
pub type IkeSlot = Arc<std::sync::OnceLock<IkeHandle>>;

/// Largest IKE datagram accepted (an IKE_AUTH with a certificate chain, unfragmented).
const MAX_DATAGRAM: usize = 65_535;

/// Why the IKE service could not start.
#[derive(Debug, thiserror::Error)]
pub enum IkeServiceError {
    /// A listen address could not be bound.
    #[error("cannot bind IKE socket {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The random generator failed.
    #[error("{0}")]
    Random(#[from] ippm_ike::engine::RandomError),
}

/// How the driver keeps connections up.
#[derive(Debug, Clone)]
pub struct IkeServiceOptions {
    /// The engine's configuration.
    pub config: ippm_ike::config::Config,
    /// Addresses to listen on (UDP; port 500 by default).
    pub listen: Vec<SocketAddr>,
    /// Connections (by name) to bring up at start and keep up.
    pub start: Vec<String>,
    /// First delay before a failed kept-up connection is tried again (doubling to 16x).
    pub retry: Duration,
}

struct Shared {
    engine: Mutex<Engine>,
    wake: Notify,
    locals: Vec<SocketAddr>,
}

/// A handle on the running IKE service.
#[derive(Clone)]
pub struct IkeHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for IkeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IkeHandle")
            .field("locals", &self.shared.locals)
            .finish_non_exhaustive()
    }
}

fn lock(s: &Shared) -> MutexGuard<'_, Engine> {
    // A panic while the lock was held leaves the engine as it was between calls: go on.
    s.engine.lock().unwrap_or_else(|p| p.into_inner())
}

impl IkeHandle {
    /// The addresses the service listens on.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.shared.locals
    }

    /// The IKE SAs, without keys.
    pub fn list(&self) -> Vec<SaInfo> {
        lock(&self.shared).list(Instant::now())
    }

    /// The configured connections that name the peer's address (those that can be started
    /// as initiator): name and address.
    pub fn peer_connections(&self) -> Vec<(String, SocketAddr)> {
        lock(&self.shared)
            .config()
            .connections
            .iter()
            .filter_map(|c| c.remote_addr.map(|a| (c.name.clone(), a)))
            .collect()
    }

    /// Starts an IKE SA for a connection.
    pub fn up(&self, name: &str) -> Result<Spis, EngineError> {
        let mut e = lock(&self.shared);
        let remote = e
            .config()
            .connections
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.remote_addr);
        let local = remote.and_then(|r| pick_local(&self.shared.locals, r.ip()));
        let local = local
            .or_else(|| self.shared.locals.first().copied())
            .ok_or_else(|| EngineError::Local("no IKE socket".into()))?;
        let spis = e.initiate(Instant::now(), name, local, None)?;
        drop(e);
        self.shared.wake.notify_one();
        Ok(spis)
    }

    /// The IKE SAs a target names: a connection name, a peer address or SPIs
    /// (`SPIi_i SPIr_r` or `SPIi:SPIr`, hex).
    pub fn resolve(&self, target: &str) -> Vec<Spis> {
        if let Some(spis) = parse_spis(target) {
            return vec![spis];
        }
        lock(&self.shared).find(target)
    }

    /// Deletes the IKE SAs `target` names; returns them.
    pub fn down(&self, target: &str) -> Result<Vec<Spis>, EngineError> {
        self.each(target, |e, s| e.delete(Instant::now(), s))
    }

    /// Rekeys the IKE SAs `target` names; returns them.
    pub fn rekey(&self, target: &str) -> Result<Vec<Spis>, EngineError> {
        self.each(target, |e, s| e.rekey(Instant::now(), s))
    }

    fn each(
        &self,
        target: &str,
        f: impl Fn(&mut Engine, Spis) -> Result<(), EngineError>,
    ) -> Result<Vec<Spis>, EngineError> {
        let all = self.resolve(target);
        if all.is_empty() {
            return Err(EngineError::Local(format!("no IKE SA matches {target:?}")));
        }
        let mut e = lock(&self.shared);
        for s in &all {
            f(&mut e, *s)?;
        }
        drop(e);
        self.shared.wake.notify_one();
        Ok(all)
    }

    /// RFC 7717 (server side): the secret of the IKE SA a KeyID names, if it is with `peer`.
    pub fn ippm_secret(&self, spis: Spis, peer: IpAddr) -> Option<Zeroizing<Vec<u8>>> {
        lock(&self.shared).ippm_secret(spis, Some(peer), Instant::now())
    }

    /// RFC 7717 (server side, by the KeyID alone): the secret of the IKE SA with these SPIs.
    pub fn ippm_secret_by_spis(&self, spis: Spis) -> Option<Zeroizing<Vec<u8>>> {
        lock(&self.shared).ippm_secret(spis, None, Instant::now())
    }

    /// Brings up an IKE SA to `peer` with the connection configured for that address and
    /// waits (up to `timeout`) until it is established: the newest SA and its secret.
    pub async fn ippm_secret_initiate(
        &self,
        peer: IpAddr,
        timeout: Duration,
    ) -> Result<(Spis, Zeroizing<Vec<u8>>), EngineError> {
        if let Some(found) = self.ippm_secret_for_peer(peer) {
            return Ok(found);
        }
        let name = lock(&self.shared)
            .config()
            .connections
            .iter()
            .find(|c| c.remote_addr.is_some_and(|a| a.ip() == peer))
            .map(|c| c.name.clone())
            .ok_or_else(|| {
                EngineError::Local(format!("no IKE connection configured for {peer}"))
            })?;
        tracing::info!(connection = %name, %peer, "RFC 7717: no IKE SA with the server; initiating one");
        let spis = self.up(&name)?;
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(found) = self.ippm_secret_for_peer(peer) {
                return Ok(found);
            }
            if !self.list().iter().any(|s| s.spis.i == spis.i) {
                return Err(EngineError::Local(format!(
                    "IKE SA with {peer} failed (see the daemon's log)"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(EngineError::Local(format!(
            "no IKE SA with {peer} after {timeout:?}"
        )))
    }

    /// Every IKE SA with `peer` whose secret may still key a test packet, newest first
    /// (established, then retired within the grace period).
    pub fn ippm_secrets_with_peer(&self, peer: IpAddr) -> Vec<(Spis, Zeroizing<Vec<u8>>)> {
        lock(&self.shared).ippm_secrets_with_peer(peer, Instant::now())
    }

    /// RFC 7717 (client side): the newest IKE SA with `peer` and its secret.
    pub fn ippm_secret_for_peer(&self, peer: IpAddr) -> Option<(Spis, Zeroizing<Vec<u8>>)> {
        lock(&self.shared).ippm_secret_for_peer(peer)
    }
}

/// Reads `0123456789abcdef_i fedcba9876543210_r` (as `ippm ike list` prints) or `SPIi:SPIr`.
pub fn parse_spis(s: &str) -> Option<Spis> {
    let s = s.trim();
    let (a, b) = s
        .split_once(':')
        .or_else(|| s.split_once(' '))
        .map(|(a, b)| (a.trim_end_matches("_i"), b.trim().trim_end_matches("_r")))?;
    let hex8 = |x: &str| -> Option<[u8; 8]> {
        if x.len() != 16 {
            return None;
        }
        let mut out = [0u8; 8];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(x.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(out)
    };
    Some(Spis {
        i: hex8(a)?,
        r: hex8(b)?,
    })
}

fn pick_local(locals: &[SocketAddr], remote: IpAddr) -> Option<SocketAddr> {
    locals
        .iter()
        .find(|l| l.is_ipv4() == remote.is_ipv4() && !l.ip().is_unspecified())
        .or_else(|| locals.iter().find(|l| l.is_ipv4() == remote.is_ipv4()))
        .copied()
}

/// Binds the sockets and starts the service; it runs until `stop` turns true.
pub async fn start(
    opts: IkeServiceOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<(IkeHandle, tokio::task::JoinHandle<()>), IkeServiceError> {
    let mut sockets = Vec::new();
    for addr in &opts.listen {
        let s = UdpSocket::bind(addr)
            .await
            .map_err(|source| IkeServiceError::Bind {
                addr: *addr,
                source,
            })?;
        let local = s.local_addr().map_err(|source| IkeServiceError::Bind {
            addr: *addr,
            source,
        })?;
        sockets.push((local, Arc::new(s)));
    }
    let engine = Engine::new(opts.config.clone(), Box::new(OsRandom))?;
    let shared = Arc::new(Shared {
        engine: Mutex::new(engine),
        wake: Notify::new(),
        locals: sockets.iter().map(|(a, _)| *a).collect(),
    });
    let handle = IkeHandle {
        shared: shared.clone(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(SocketAddr, SocketAddr, Vec<u8>)>(1024);
    let mut readers = Vec::new();
    for (local, sock) in &sockets {
        let (local, sock, tx) = (*local, sock.clone(), tx.clone());
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                match sock.recv_from(&mut buf).await {
                    Ok((n, from)) => {
                        if tx.send((local, from, buf[..n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::debug!(%local, "IKE socket: {e}"),
                }
            }
        }));
    }
    let keep = KeepUp::new(&opts);
    let task = tokio::spawn(async move {
        let mut keep = keep;
        for name in keep.names() {
            keep.attempt(&handle_of(&shared), &name);
        }
        loop {
            flush(&shared, &sockets, &mut keep).await;
            let next = {
                let e = lock(&shared);
                [e.poll_timeout(), keep.next()].into_iter().flatten().min()
            };
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.changed() => break,
                () = shared.wake.notified() => {}
                () = sleep => {
                    lock(&shared).handle_timeout(Instant::now());
                    keep.retry_due(&handle_of(&shared));
                }
                got = rx.recv() => {
                    let Some((local, from, data)) = got else { break };
                    lock(&shared).handle_datagram(Instant::now(), SystemTime::now(), local, from, &data);
                }
            }
        }
        for r in readers {
            r.abort();
        }
        // Tell the peers: delete what is established.
        let all: Vec<Spis> = lock(&shared)
            .list(Instant::now())
            .into_iter()
            .filter(|s| s.state == "established")
            .map(|s| s.spis)
            .collect();
        if !all.is_empty() {
            {
                let mut e = lock(&shared);
                for s in all {
                    let _ = e.delete(Instant::now(), s);
                }
            }
            flush(&shared, &sockets, &mut keep).await;
        }
    });
    Ok((handle, task))
}

fn handle_of(shared: &Arc<Shared>) -> IkeHandle {
    IkeHandle {
        shared: shared.clone(),
    }
}

/// Sends what the engine wants sent and logs its events.
async fn flush(shared: &Arc<Shared>, sockets: &[(SocketAddr, Arc<UdpSocket>)], keep: &mut KeepUp) {
    let (out, events) = {
        let mut e = lock(shared);
        let mut out = Vec::new();
        while let Some(t) = e.poll_transmit() {
            out.push(t);
        }
        let mut ev = Vec::new();
        while let Some(x) = e.poll_event() {
            ev.push(x);
        }
        (out, ev)
    };
    for t in out {
        let sock = sockets.iter().find(|(a, _)| *a == t.local).or_else(|| {
            sockets
                .iter()
                .find(|(a, _)| a.is_ipv4() == t.remote.is_ipv4())
        });
        if let Some((_, s)) = sock
            && let Err(e) = s.send_to(&t.data, t.remote).await
        {
            tracing::warn!(remote = %t.remote, "IKE send: {e}");
        }
    }
    for ev in events {
        keep.on_event(&ev);
        if let Event::Failed { failure, peer, .. } = &ev {
            tracing::warn!(%peer, "IKE SA set-up failed: {failure}");
        }
    }
}

/// (name, SPIi of its current attempt or SA, next retry, current delay)
type KeptUp = (String, Option<[u8; 8]>, Option<Instant>, Duration);

/// Connections kept up: tried again after a failure or a delete, with a growing delay.
struct KeepUp {
    names: Vec<String>,
    retry: Duration,
    state: Vec<KeptUp>,
}

impl KeepUp {
    fn new(o: &IkeServiceOptions) -> Self {
        Self {
            names: o.start.clone(),
            retry: o.retry,
            state: o
                .start
                .iter()
                .map(|n| (n.clone(), None, None, o.retry))
                .collect(),
        }
    }

    fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    fn attempt(&mut self, h: &IkeHandle, name: &str) {
        let Some(st) = self.state.iter_mut().find(|s| s.0 == name) else {
            return;
        };
        match h.up(name) {
            Ok(spis) => {
                st.1 = Some(spis.i);
                st.2 = None;
            }
            Err(e) => {
                tracing::warn!(connection = name, "cannot initiate: {e}");
                st.2 = Some(Instant::now() + st.3);
                st.3 = (st.3 * 2).min(self.retry * 16);
            }
        }
    }

    fn next(&self) -> Option<Instant> {
        self.state.iter().filter_map(|s| s.2).min()
    }

    fn retry_due(&mut self, h: &IkeHandle) {
        let now = Instant::now();
        let due: Vec<String> = self
            .state
            .iter()
            .filter(|s| s.2.is_some_and(|t| t <= now))
            .map(|s| s.0.clone())
            .collect();
        for n in due {
            self.attempt(h, &n);
        }
    }

    fn on_event(&mut self, ev: &Event) {
        let now = Instant::now();
        match ev {
            Event::Established {
                spis,
                connection,
                initiator: true,
                ..
            } => {
                if let Some(s) = self.state.iter_mut().find(|s| s.0 == *connection) {
                    s.1 = Some(spis.i);
                    s.3 = self.retry;
                }
            }
            Event::Rekeyed { old, new } => {
                for s in &mut self.state {
                    if s.1 == Some(old.i) || s.1 == Some(old.r) {
                        s.1 = Some(new.i);
                    }
                }
            }
            // The operator's `down` (or our shutdown) is not undone.
            Event::Deleted {
                reason: ippm_ike::engine::DeleteReason::ByUs,
                ..
            } => {}
            Event::Failed { spis, .. } | Event::Deleted { spis, .. } => {
                for s in &mut self.state {
                    if s.1 == Some(spis.i) || s.1 == Some(spis.r) {
                        s.1 = None;
                        s.2 = Some(now + s.3);
                        s.3 = (s.3 * 2).min(self.retry * 16);
                    }
                }
            }
            Event::Established { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spis_as_printed_are_read_back() {
        let s = Spis {
            i: [1, 2, 3, 4, 5, 6, 7, 8],
            r: [0xa, 0xb, 0xc, 0xd, 0xe, 0xf, 0x10, 0x11],
        };
        assert_eq!(parse_spis(&s.to_string()), Some(s));
        assert_eq!(parse_spis("0102030405060708:0a0b0c0d0e0f1011"), Some(s));
        assert_eq!(parse_spis("0102030405060708"), None);
        assert_eq!(parse_spis("zz02030405060708:0a0b0c0d0e0f1011"), None);
    }
}
