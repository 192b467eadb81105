//! `ippm serve`: the daemon.
//!
//! Settings come from the command line, from a TOML file (`--config`), and from defaults, in
//! that order of precedence. The file:
//!
//! ```toml
//! keys = "/etc/ippm/keys.pfs"        # pass-phrase file (perfSONAR format, mode 600)
//!
//! [owamp]
//! listen = ["0.0.0.0:861", "[::]:861"]   # or one: listen = "192.0.2.1" (every listen key:
//!                                    # one address or a list; no port: the protocol's)
//! results_sessions = 4096            # sessions kept for Fetch-Session, finished or running
//! results_records = 8388608          # records kept in all (about 32 octets each)
//! results_records_per_session = 1048576  # larger requests get Accept = 4
//! results_keep = 600                 # seconds a finished session stays fetchable
//!
//! [twamp]
//! listen = ["0.0.0.0:862", "[::]:862"]
//! modes = "OAEM"                     # offered: O open, A authenticated, E encrypted, M mixed
//! test_ports = "19000-19999"
//! count = 2048                       # PBKDF2 iterations sent to clients
//! extensions = true                  # RFC 5938 and RFC 6038
//!
//! [limits]                           # over every listener; sessions over both protocols
//! max_connections = 256              # per protocol
//! max_connections_per_source = 32    # per protocol, per IPv4 address or IPv6 /64
//! max_sessions = 64                  # per control connection
//! max_sessions_total = 1024
//! max_sessions_per_source = 256
//! setup_timeout = 30                 # seconds from the greeting to Start-Sessions
//! idle_timeout = 900                 # seconds without a complete command (SERVWAIT)
//! max_timeout = 60                   # longest post-Stop-Sessions Timeout honoured
//!
//! [engine]
//! threads = 2                        # test-packet threads (default: one per core)
//!
//! [stamp]                            # the STAMP reflector: see serve/stamp.rs
//! listen = ["0.0.0.0:862", "[::]:862"]
//!
//! [open]                             # unauthenticated clients (needs O in modes)
//! max_sessions = 4
//!
//! [[identity]]                       # per identity; others get [limits]
//! name = "alice"
//! modes = "AE"
//! max_sessions = 16
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use ippm_net::twamp_server::{TwampServerOptions, serve};
use tokio::net::TcpListener;
use tracing::info;

pub(crate) mod config_error;
pub(crate) mod listen;
mod settings;
mod stamp;

pub(crate) use settings::parse_port_range;
use settings::settings;

/// Options of `ippm serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// TOML configuration file (see the documentation of `ippm serve`); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// TWAMP-Control address to listen on (repeatable; port 862 when only ADDR is given).
    /// Default, when no address is given for either protocol: `0.0.0.0:862` and `[::]:862`.
    #[arg(long = "twamp-listen", value_name = "ADDR[:PORT]", value_parser = listen::twamp)]
    twamp_listen: Vec<SocketAddr>,
    /// OWAMP-Control address to listen on (repeatable; port 861 when only ADDR is given).
    /// Default, when no address is given for either protocol: `0.0.0.0:861` and `[::]:861`.
    #[arg(long = "owamp-listen", value_name = "ADDR[:PORT]", value_parser = listen::owamp)]
    owamp_listen: Vec<SocketAddr>,
    /// STAMP Session-Reflector UDP address (repeatable, port 862 when only ADDR is given;
    /// overrides `[stamp] listen`). Default
    /// with `[stamp]` or --stamp-key-file: `0.0.0.0:862` and `[::]:862`. Naming only STAMP
    /// addresses runs no TWAMP or OWAMP listener.
    #[arg(long = "stamp-listen", value_name = "ADDR[:PORT]", value_parser = listen::twamp)]
    stamp_listen: Vec<SocketAddr>,
    /// The STAMP HMAC key: a file (mode 600) holding it in hex. Makes the reflector
    /// authenticated (RFC 8762 §4.4) unless `[stamp] mode` says otherwise.
    #[arg(long = "stamp-key-file", value_name = "FILE")]
    stamp_key_file: Option<PathBuf>,
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
    /// PBKDF2 iteration count sent to clients (a power of 2, at least 1024; default 2048).
    #[arg(long)]
    count: Option<u32>,
    /// Most control connections of each protocol at once, over all its listeners (default
    /// 256). When full, the oldest connection still setting up makes room.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Most control connections of each protocol from one IPv4 address or IPv6 /64
    /// (default 32).
    #[arg(long)]
    max_connections_per_source: Option<usize>,
    /// Most test sessions per control connection (default 64).
    #[arg(long)]
    max_sessions: Option<usize>,
    /// Most test sessions at once, OWAMP and TWAMP together (default 1024, lowered to fit
    /// the file descriptors the process may open).
    #[arg(long)]
    max_sessions_total: Option<usize>,
    /// Most test sessions at once from one IPv4 address or IPv6 /64 (default 256).
    #[arg(long)]
    max_sessions_per_source: Option<usize>,
    /// Seconds a client has from the greeting to its first Start-Sessions (default 30);
    /// octets that do not complete a message do not extend it.
    #[arg(long)]
    setup_timeout: Option<u64>,
    /// Seconds a set-up control connection may go without a complete command or test
    /// traffic (RFC 5357 SERVWAIT; default 900).
    #[arg(long)]
    idle_timeout: Option<u64>,
    /// Do not advertise the RFC 5938 and RFC 6038 extensions.
    #[arg(long)]
    no_extensions: bool,
    /// IKEv2 UDP address to listen on (repeatable, port 500 when only ADDR is given;
    /// overrides `[ike] listen`). IKE runs when
    /// this or an `[ike]` section is given.
    #[arg(long = "ike-listen", value_name = "ADDR[:PORT]", value_parser = listen::ike)]
    ike_listen: Vec<SocketAddr>,
    /// The IKE control socket for `ippm ike` (default /run/ippm/ike.sock).
    #[arg(long = "ike-control", value_name = "PATH")]
    ike_control: Option<PathBuf>,
    /// After binding every socket (ports below 1024 need root), run as this user (and its
    /// groups); the archive directory must be writable by it.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Serve Prometheus metrics at `http://ADDR:PORT/metrics` (port 9862 when only ADDR is
    /// given; overrides `[metrics] listen`).
    #[arg(long = "metrics-listen", value_name = "ADDR[:PORT]", value_parser = listen::metrics)]
    metrics_listen: Option<SocketAddr>,
    /// Threads of the test-packet engine, which runs every test session (default: one per
    /// core; overrides `[engine] threads`).
    #[arg(long = "engine-threads", value_name = "N")]
    engine_threads: Option<usize>,
}

pub(crate) async fn run(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut s = settings(&a)?;
    // Every session and connection is a descriptor: take what the hard limit allows.
    match ippm_net::engine::raise_fd_limit() {
        Ok(fds) => s.fit_descriptors(fds),
        Err(e) => tracing::warn!(error = %e, "cannot read the file descriptor limit"),
    }
    ippm_net::engine::Engine::configure(s.engine_threads);
    let engine = ippm_net::engine::Engine::global()?;
    info!(threads = engine.threads(), "test-packet engine started");
    let a_user = a.user.clone();
    // One admission table for every listener of both protocols.
    let admission = ippm_net::admission::Admission::new(s.limits);
    s.options.rules.admission = admission.clone();
    s.owamp.rules.admission = admission;
    let opts = Arc::new(s.options);
    let owamp_opts = Arc::new(s.owamp);
    let store = Arc::new(ippm_net::owamp_server::Store::new(s.store));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    // IKE first: the O/TWAMP servers look RFC 7717 secrets up in it.
    if let Some((ike, slot)) = s.ike {
        let (handle, task) = ippm_net::ike::start(ike.options, stop_rx.clone()).await?;
        let _ = slot.set(handle.clone());
        for a in handle.local_addrs() {
            announce(format_args!("listening ike {a}"));
        }
        let listener = ippm_net::ike_control::bind(&ike.control).with_context(|| {
            format!(
                "cannot create the IKE control socket {}",
                ike.control.display()
            )
        })?;
        announce(format_args!("ike control {}", ike.control.display()));
        tasks.push(task);
        tasks.push(tokio::spawn(ippm_net::ike_control::serve(
            listener,
            ike.control,
            handle,
            stop_rx.clone(),
        )));
    }
    let metrics = ippm_net::metrics::Metrics::new();
    let ike_handle = ike_handle_of(&opts);
    if let Some(addr) = s.metrics {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for metrics"))?;
        announce(format_args!("metrics http://{}/metrics", l.local_addr()?));
        tasks.push(tokio::spawn(ippm_net::metrics::serve(
            l,
            metrics.clone(),
            ike_handle.clone(),
            stop_rx.clone(),
        )));
    }
    for addr in s.owamp_listen {
        let Some(listener) = listen(addr, s.listen_defaults)? else {
            continue;
        };
        announce(format_args!("listening owamp {}", listener.local_addr()?));
        tasks.push(tokio::spawn(ippm_net::owamp_server::serve(
            listener,
            owamp_opts.clone(),
            store.clone(),
            stop_rx.clone(),
        )));
    }
    for addr in s.listen {
        let Some(listener) = listen(addr, s.listen_defaults)? else {
            continue;
        };
        // Tests and scripts read the bound port from here.
        announce(format_args!("listening twamp {}", listener.local_addr()?));
        tasks.push(tokio::spawn(serve(listener, opts.clone(), stop_rx.clone())));
    }
    // Held until shutdown: dropping them stops the reflectors.
    let mut reflectors = Vec::new();
    if let Some(mut st) = s.stamp {
        st.use_ike(ike_handle.as_ref())?;
        let mut o = st.options;
        o.stats = metrics.stamp_stats();
        for addr in st.listen {
            match ippm_net::stamp_reflector::StampReflector::start(engine, addr, &o) {
                Ok(r) => {
                    announce(format_args!("listening stamp {}", r.local_addr()));
                    reflectors.push(r);
                }
                Err(e) if st.defaults && addr.is_ipv6() => {
                    tracing::warn!(%addr, error = %e, "IPv6 STAMP reflector not available");
                }
                Err(e) => return Err(e).with_context(|| format!("cannot listen on UDP {addr}")),
            }
        }
        info!(
            mode = ?o.mode,
            stateful = ?o.stateful,
            allow = o.allow.len(),
            rate_per_source = o.rate_per_source,
            "STAMP reflector running"
        );
    }
    if let Some(user) = &a_user {
        drop_privileges(user)?;
    }
    // The archive after the drop, so that its files belong to the user that writes them.
    // One that cannot be opened (a full disk) is no reason to stop serving or measuring:
    // the sink says so, counts what it could not archive and keeps trying.
    // Kept to end the sessions a stop cuts short (below, after the measurements stopped).
    let mut shutdown_archive = None;
    if let Some((path, keep)) = s.archive {
        let sink = {
            let m = metrics.clone();
            let p = path.clone();
            tokio::task::spawn_blocking(move || crate::archiving::ArchiveSink::open(&p, m))
                .await
                .context("opening the archive")?
        };
        if sink.is_open() {
            announce(format_args!("archive {}", path.display()));
        } else {
            announce(format_args!(
                "archive {} not open (degraded)",
                path.display()
            ));
        }
        tasks.push(tokio::spawn(sink.clone().maintain(keep, stop_rx.clone())));
        shutdown_archive = Some(sink.clone());
        let archive = sink;
        let sinks = crate::measure::Sinks {
            archive,
            metrics: metrics.clone(),
            ike: ike_handle.clone(),
        };
        for spec in s.measure {
            tasks.push(tokio::spawn(crate::measure::run(
                spec,
                sinks.clone(),
                stop_rx.clone(),
            )));
        }
    }
    info!(modes = %opts.control.modes, "ippm serve running");
    wait_for_signal().await;
    info!("shutting down");
    let _ = stop_tx.send(true);
    drop(reflectors);
    for t in tasks {
        let _ = t.await;
    }
    // The measurements stopped mid-session: their sessions end now as interrupted, not left
    // `running` until the next start finds them.
    if let Some(sink) = shutdown_archive {
        let now = crate::results::now_ns();
        if let Some(n) = sink
            .write("the interrupted sessions", move |a| a.mark_interrupted(now))
            .await
            && n > 0
        {
            info!(sessions = n, "sessions interrupted by the stop");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Becomes `name` (its uid, gid and supplementary groups) for good.
fn drop_privileges(name: &str) -> anyhow::Result<()> {
    use nix::unistd::{Uid, User, initgroups, setgid, setuid};
    let u = User::from_name(name)
        .with_context(|| format!("--user {name}"))?
        .with_context(|| format!("--user {name}: no such user"))?;
    let cname = std::ffi::CString::new(name).context("--user: a NUL in the name")?;
    initgroups(&cname, u.gid).context("initgroups")?;
    setgid(u.gid).context("setgid")?;
    setuid(u.uid).context("setuid")?;
    if setuid(Uid::from_raw(0)).is_ok() && u.uid.as_raw() != 0 {
        bail!("could regain root after dropping to {name}");
    }
    info!(user = name, uid = u.uid.as_raw(), "privileges dropped");
    Ok(())
}

/// The IKE service's handle, once it runs (from the policy's slot).
fn ike_handle_of(opts: &TwampServerOptions) -> Option<ippm_net::ike::IkeHandle> {
    opts.rules
        .policy
        .as_ref()
        .and_then(|p| p.ike.as_ref())
        .and_then(|slot| slot.get().cloned())
}

/// Tells scripts and tests what the daemon listens on (stdout, one line each). A closed
/// stdout is no reason for a daemon to stop.
fn announce(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out
        .write_fmt(line)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
}

/// A control listener on `addr`; `None` for a default IPv6 address this host cannot bind
/// (an IPv4-only host still serves IPv4), an error for any address the operator gave.
fn listen(addr: SocketAddr, defaults: bool) -> anyhow::Result<Option<TcpListener>> {
    match bind(addr) {
        Ok(l) => Ok(Some(l)),
        Err(e) if defaults && addr.is_ipv6() => {
            tracing::warn!(%addr, error = %e, "IPv6 listener not available");
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("cannot listen on {addr}")),
    }
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
        socket2::SockRef::from(&s).set_only_v6(true)?;
    }
    s.bind(addr)?;
    s.listen(1024)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        } => {}
    }
}
