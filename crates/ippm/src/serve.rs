//! `ippm serve`: the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use ippm_net::twamp_server::{TwampServerOptions, serve};
use ippm_proto::session::{PassphraseStore, ServerConfig};
use ippm_proto::{Modes, SecurityMode};
use tokio::net::TcpListener;
use tracing::info;

/// Options of `ippm serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// TWAMP-Control address to listen on (repeatable). Default: `0.0.0.0:862` and `[::]:862`.
    #[arg(long = "twamp-listen", value_name = "ADDR:PORT")]
    twamp_listen: Vec<SocketAddr>,
    /// Pass-phrase file (perfSONAR format: identity, whitespace, hex of the passphrase).
    #[arg(long, short = 'k', value_name = "FILE")]
    keys: Option<PathBuf>,
    /// Modes to offer, as letters: O (open), A (authenticated), E (encrypted), M (mixed).
    /// Default: O, plus A, E and M when a key file is given.
    #[arg(long, short = 'A', value_name = "LETTERS")]
    modes: Option<String>,
    /// UDP ports for test sessions, LOW-HIGH (default: any free port).
    #[arg(long = "test-ports", short = 'P', value_name = "LOW-HIGH")]
    test_ports: Option<String>,
    /// PBKDF2 iteration count sent to clients (a power of 2, at least 1024).
    #[arg(long, default_value_t = 2048)]
    count: u32,
    /// Most control connections at once.
    #[arg(long, default_value_t = 256)]
    max_connections: usize,
    /// Most test sessions per control connection.
    #[arg(long, default_value_t = 64)]
    max_sessions: usize,
    /// Most test sessions at once, over all connections.
    #[arg(long, default_value_t = 1024)]
    max_sessions_total: usize,
    /// Seconds a control connection may stay silent (RFC 5357 SERVWAIT).
    #[arg(long, default_value_t = 900)]
    idle_timeout: u64,
    /// Do not advertise the RFC 5938 and RFC 6038 extensions.
    #[arg(long)]
    no_extensions: bool,
}

pub(crate) fn parse_port_range(s: &str) -> anyhow::Result<std::ops::RangeInclusive<u16>> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let lo: u16 = a
        .trim()
        .parse()
        .with_context(|| format!("bad port range {s:?}: use LOW-HIGH"))?;
    let hi: u16 = b
        .trim()
        .parse()
        .with_context(|| format!("bad port range {s:?}: use LOW-HIGH"))?;
    if lo == 0 || hi < lo {
        bail!("bad port range {s:?}: need 1 <= LOW <= HIGH");
    }
    Ok(lo..=hi)
}

pub(crate) async fn run(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let store = match &a.keys {
        Some(p) => ippm_net::keyfile::load(p)?,
        None => PassphraseStore::new(),
    };
    let letters = a.modes.clone().unwrap_or_else(|| {
        if a.keys.is_some() {
            "OAEM".into()
        } else {
            "O".into()
        }
    });
    let Some(list) = ippm_net::twamp_client::modes_from_letters(&letters) else {
        bail!("--modes takes letters O, A, E, M (got {letters:?})");
    };
    let mut modes = Modes::NONE;
    for m in &list {
        if m.needs_secret() && store.is_empty() {
            bail!("mode {m} needs a key file (--keys FILE)");
        }
        modes |= m.bit();
    }
    if !a.no_extensions {
        modes |= Modes::TWAMP_INDIVIDUAL_SESSION_CONTROL
            | Modes::TWAMP_REFLECT_OCTETS
            | Modes::TWAMP_SYMMETRICAL_SIZE;
    }
    ippm_proto::crypto::check_count(a.count, u32::MAX).context("--count")?;
    let mut control = ServerConfig::new(modes, Arc::new(store), ippm_net::clock::now());
    control.count = a.count;
    control.max_sessions = a.max_sessions;
    control.idle_timeout = Duration::from_secs(a.idle_timeout);
    let mut opts = TwampServerOptions::new(Arc::new(control));
    opts.test_ports = a.test_ports.as_deref().map(parse_port_range).transpose()?;
    opts.max_connections = a.max_connections;
    opts.max_sessions_total = a.max_sessions_total;
    let opts = Arc::new(opts);

    let mut addrs = a.twamp_listen.clone();
    let defaults = addrs.is_empty();
    if defaults {
        addrs = vec!["0.0.0.0:862".parse()?, "[::]:862".parse()?];
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for addr in addrs {
        let listener = match bind(addr) {
            Ok(l) => l,
            Err(e) if defaults && addr.is_ipv6() => {
                tracing::warn!(%addr, error = %e, "IPv6 listener not available");
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot listen on {addr}")),
        };
        // Tests and scripts read the bound port from here.
        println!("listening twamp {}", listener.local_addr()?);
        tasks.push(tokio::spawn(serve(listener, opts.clone(), stop_rx.clone())));
    }
    let sec: Vec<SecurityMode> = list;
    info!(modes = ?sec, "ippm serve running");
    wait_for_signal().await;
    info!("shutting down");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(ExitCode::SUCCESS)
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = if addr.is_ipv6() {
        tokio::net::TcpSocket::new_v6()?
    } else {
        tokio::net::TcpSocket::new_v4()?
    };
    s.set_reuseaddr(true)?;
    if addr.is_ipv6() {
        // One listener per family, so peers are never v4-mapped.
        socket_v6only(&s)?;
    }
    s.bind(addr)?;
    s.listen(1024)
}

fn socket_v6only(s: &tokio::net::TcpSocket) -> std::io::Result<()> {
    let sock = socket2::SockRef::from(s);
    sock.set_only_v6(true)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::select! {
        _ = ctrl_c => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
