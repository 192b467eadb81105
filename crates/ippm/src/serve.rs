//! `ippm serve`: the daemon.
//!
//! Settings come from the command line, from a TOML file (`--config`), and from defaults, in
//! that order of precedence. The file:
//!
//! ```toml
//! keys = "/etc/ippm/keys.pfs"        # pass-phrase file (perfSONAR format, mode 600)
//!
//! [owamp]
//! listen = ["0.0.0.0:861", "[::]:861"]
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
//! [open]                             # unauthenticated clients (needs O in modes)
//! max_sessions = 4
//!
//! [[identity]]                       # per identity; others get [limits]
//! name = "alice"
//! modes = "AE"
//! max_sessions = 16
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use ippm_net::admission::AdmissionLimits;
use ippm_net::owamp_server::OwampServerOptions;
use ippm_net::owamp_store::StoreLimits;
use ippm_net::policy::{Limits, Policy};
use ippm_net::twamp_server::{TwampServerOptions, serve};
use ippm_proto::session::{PassphraseStore, ServerConfig};
use ippm_proto::{Modes, SecurityMode};
use serde::Deserialize;
use tokio::net::TcpListener;
use tracing::info;

/// Options of `ippm serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// TOML configuration file (see the documentation of `ippm serve`); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// TWAMP-Control address to listen on (repeatable). Default, when no address is given
    /// for either protocol: `0.0.0.0:862` and `[::]:862`.
    #[arg(long = "twamp-listen", value_name = "ADDR:PORT")]
    twamp_listen: Vec<SocketAddr>,
    /// OWAMP-Control address to listen on (repeatable). Default, when no address is given
    /// for either protocol: `0.0.0.0:861` and `[::]:861`.
    #[arg(long = "owamp-listen", value_name = "ADDR:PORT")]
    owamp_listen: Vec<SocketAddr>,
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
    /// IKEv2 UDP address to listen on (repeatable; overrides `[ike] listen`). IKE runs when
    /// this or an `[ike]` section is given.
    #[arg(long = "ike-listen", value_name = "ADDR:PORT")]
    ike_listen: Vec<SocketAddr>,
    /// The IKE control socket for `ippm ike` (default /run/ippm/ike.sock).
    #[arg(long = "ike-control", value_name = "PATH")]
    ike_control: Option<PathBuf>,
    /// After binding every socket (ports below 1024 need root), run as this user (and its
    /// groups); the archive directory must be writable by it.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Serve Prometheus metrics at `http://ADDR:PORT/metrics` (overrides `[metrics] listen`).
    #[arg(long = "metrics-listen", value_name = "ADDR:PORT")]
    metrics_listen: Option<SocketAddr>,
    /// Threads of the test-packet engine, which runs every test session (default: one per
    /// core; overrides `[engine] threads`).
    #[arg(long = "engine-threads", value_name = "N")]
    engine_threads: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    keys: Option<PathBuf>,
    #[serde(default)]
    twamp: TwampSection,
    #[serde(default)]
    owamp: OwampSection,
    #[serde(default)]
    limits: LimitsSection,
    open: Option<OpenSection>,
    #[serde(default)]
    identity: Vec<IdentitySection>,
    ike: Option<crate::ike::IkeSection>,
    archive: Option<crate::measure::ArchiveSection>,
    metrics: Option<crate::measure::MetricsSection>,
    #[serde(default)]
    measure: Vec<crate::measure::MeasureSection>,
    #[serde(default)]
    engine: EngineSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineSection {
    threads: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TwampSection {
    listen: Option<Vec<SocketAddr>>,
    modes: Option<String>,
    test_ports: Option<String>,
    count: Option<u32>,
    extensions: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OwampSection {
    listen: Option<Vec<SocketAddr>>,
    results_sessions: Option<usize>,
    results_records: Option<usize>,
    results_records_per_session: Option<usize>,
    results_keep: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    max_connections: Option<usize>,
    max_connections_per_source: Option<usize>,
    max_sessions: Option<usize>,
    max_sessions_total: Option<usize>,
    max_sessions_per_source: Option<usize>,
    setup_timeout: Option<u64>,
    idle_timeout: Option<u64>,
    max_timeout: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenSection {
    max_sessions: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentitySection {
    name: String,
    modes: Option<String>,
    max_sessions: Option<usize>,
}

fn load_config(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    // toml's errors name the line and the offending key.
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
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

fn modes_of(letters: &str, what: &str) -> anyhow::Result<Modes> {
    let Some(list) = ippm_net::twamp_client::modes_from_letters(letters) else {
        bail!("{what} takes letters O, A, E, M (got {letters:?})");
    };
    Ok(list.iter().fold(Modes::NONE, |m, s| m | s.bit()))
}

/// Everything `serve` needs, merged from flags, file and defaults.
#[derive(Debug)]
struct Settings {
    listen: Vec<SocketAddr>,
    owamp_listen: Vec<SocketAddr>,
    listen_defaults: bool,
    options: TwampServerOptions,
    owamp: OwampServerOptions,
    /// Connection and session limits, for every listener of both protocols.
    limits: AdmissionLimits,
    /// What the OWAMP record store keeps for Fetch-Session.
    store: StoreLimits,
    ike: Option<(crate::ike::IkeSettings, ippm_net::ike::IkeSlot)>,
    /// The archive's file and how long per-packet records stay.
    archive: Option<(PathBuf, Option<Duration>)>,
    metrics: Option<SocketAddr>,
    measure: Vec<crate::measure::Spec>,
    /// Engine threads (0: one per core).
    engine_threads: usize,
    /// The session limit was given (not the default, which is fitted to the descriptors).
    sessions_given: bool,
}

/// Descriptors kept for everything that is not a control connection or a test session:
/// listeners, IKE, the metrics server, the archive, logs, the engine's epoll sets.
const FD_RESERVE: u64 = 64;

impl Settings {
    /// Fits the session limit to the file descriptors the process may open (a connection
    /// and a test session take one each), unless it was given; says what the limits allow.
    fn fit_descriptors(&mut self, fds: u64) {
        // The connection limit is per protocol, over all of its listeners.
        let protocols =
            u64::from(!self.listen.is_empty()) + u64::from(!self.owamp_listen.is_empty());
        let conns = self.limits.max_connections as u64 * protocols.max(1);
        let budget = fds.saturating_sub(FD_RESERVE);
        let sessions = self.limits.max_sessions_total as u64;
        if conns + sessions > budget {
            if self.sessions_given {
                tracing::warn!(
                    fds,
                    connections = conns,
                    sessions,
                    "the limits allow more connections and sessions than the process has file \
                     descriptors for (raise LimitNOFILE / ulimit -n, or lower the limits)"
                );
            } else {
                let fit = budget.saturating_sub(conns).max(16);
                self.limits.max_sessions_total = usize::try_from(fit).unwrap_or(usize::MAX);
            }
        }
        info!(
            fds,
            connections_per_protocol = self.limits.max_connections,
            connections_per_source = self.limits.max_connections_per_source,
            sessions_total = self.limits.max_sessions_total,
            sessions_per_source = self.limits.max_sessions_per_source,
            "limits: at most this many control connections per protocol and test sessions in \
             all (one file descriptor each), over every listener"
        );
    }
}

fn settings(a: &ServeArgs) -> anyhow::Result<Settings> {
    let file = match &a.config {
        Some(p) => load_config(p)?,
        None => ConfigFile::default(),
    };
    let keys_path = a.keys.clone().or_else(|| file.keys.clone());
    let passphrases = match &keys_path {
        Some(p) => ippm_net::keyfile::load(p)?,
        None => PassphraseStore::new(),
    };
    let ike = if file.ike.is_none() && a.ike_listen.is_empty() {
        None
    } else {
        let empty = crate::ike::IkeSection::default();
        Some(crate::ike::settings(
            file.ike.as_ref().unwrap_or(&empty),
            &a.ike_listen,
            a.ike_control.as_deref(),
        )?)
    };
    // RFC 7717: with IKE, the protected modes can be keyed from IKE SAs alone.
    let ike_slot: Option<ippm_net::ike::IkeSlot> = ike.as_ref().map(|_| Default::default());
    let letters = a
        .modes
        .clone()
        .or_else(|| file.twamp.modes.clone())
        .unwrap_or_else(|| {
            if keys_path.is_some() || ike.is_some() {
                "OAEM".into()
            } else {
                "O".into()
            }
        });
    let offered = modes_of(&letters, "modes")?;
    for m in SecurityMode::all() {
        if offered.contains(m.bit()) && m.needs_secret() && passphrases.is_empty() && ike.is_none()
        {
            bail!(
                "mode {m} needs a key file (--keys FILE, or keys = \"FILE\" in the config) or IKE \
                 ([ike] or --ike-listen) for RFC 7717 keys"
            );
        }
    }
    let mut modes = offered;
    if ike.is_some() {
        modes |= Modes::TWAMP_IKEV2_DERIVED;
    }
    if !a.no_extensions && file.twamp.extensions.unwrap_or(true) {
        modes |= Modes::TWAMP_INDIVIDUAL_SESSION_CONTROL
            | Modes::TWAMP_REFLECT_OCTETS
            | Modes::TWAMP_SYMMETRICAL_SIZE;
    }
    let l = &file.limits;
    let max_sessions = a.max_sessions.or(l.max_sessions).unwrap_or(64);
    let mut identities = HashMap::new();
    for id in &file.identity {
        let m = match &id.modes {
            Some(s) => modes_of(s, &format!("identity {:?}: modes", id.name))?,
            None => offered,
        };
        if !passphrases.passphrase_known(id.name.as_bytes()) {
            bail!("config: identity {:?} is not in the key file", id.name);
        }
        let limits = Limits {
            modes: m & offered,
            max_sessions: id.max_sessions.unwrap_or(max_sessions),
        };
        identities.insert(id.name.as_bytes().to_vec(), limits);
    }
    let open = offered.contains(Modes::OPEN).then(|| Limits {
        modes: Modes::OPEN,
        max_sessions: file
            .open
            .as_ref()
            .and_then(|o| o.max_sessions)
            .unwrap_or(max_sessions),
    });
    if file.open.is_some() && open.is_none() {
        bail!("config: [open] is set but open mode (O) is not offered");
    }
    let policy = Arc::new(Policy {
        passphrases,
        identities,
        default: Some(Limits {
            modes: offered,
            max_sessions,
        }),
        open,
        ike: ike_slot.clone(),
    });
    let measure_keys = policy.passphrases.clone();
    let count = a.count.or(file.twamp.count).unwrap_or(2048);
    ippm_proto::crypto::check_count(count, u32::MAX).context("PBKDF2 count")?;
    let mut control = ServerConfig::new(modes, policy.clone(), ippm_net::clock::now());
    control.count = count;
    // The state machine's cap is the largest any identity may have; the policy applies each
    // identity's own (an [[identity]] above [limits] max_sessions is not cut to it).
    control.max_sessions = policy
        .identities
        .values()
        .chain(policy.open.iter())
        .map(|l| l.max_sessions)
        .fold(max_sessions, usize::max);
    control.setup_timeout = Duration::from_secs(a.setup_timeout.or(l.setup_timeout).unwrap_or(30));
    control.idle_timeout = Duration::from_secs(a.idle_timeout.or(l.idle_timeout).unwrap_or(900));
    let d = AdmissionLimits::default();
    // Flag, else file, else default.
    let pick = |flag: Option<usize>, file: Option<usize>, default| flag.or(file).unwrap_or(default);
    let limits = AdmissionLimits {
        max_connections: pick(a.max_connections, l.max_connections, d.max_connections),
        max_connections_per_source: pick(
            a.max_connections_per_source,
            l.max_connections_per_source,
            d.max_connections_per_source,
        ),
        max_sessions_total: pick(
            a.max_sessions_total,
            l.max_sessions_total,
            d.max_sessions_total,
        ),
        max_sessions_per_source: pick(
            a.max_sessions_per_source,
            l.max_sessions_per_source,
            d.max_sessions_per_source,
        ),
    };
    for (name, v) in [
        ("max_connections", limits.max_connections),
        (
            "max_connections_per_source",
            limits.max_connections_per_source,
        ),
        ("max_sessions_total", limits.max_sessions_total),
        ("max_sessions_per_source", limits.max_sessions_per_source),
    ] {
        if v == 0 {
            bail!("[limits] {name} = 0 would refuse every client; give at least 1");
        }
    }
    let mut options = TwampServerOptions::new(Arc::new(control));
    // The admission table is made in `run`, once the session limit is fitted to the
    // descriptors; these are the rest of the rules both protocols share.
    options.rules.policy = Some(policy);
    options.rules.test_ports = a
        .test_ports
        .as_deref()
        .or(file.twamp.test_ports.as_deref())
        .map(parse_port_range)
        .transpose()?;
    options.rules.max_timeout = Duration::from_secs(l.max_timeout.unwrap_or(60));
    // OWAMP: the same modes without mixed and the TWAMP extension bits.
    let mut owamp_control = (*options.control).clone();
    owamp_control.modes = offered & Modes::security_bits(ippm_proto::Protocol::Owamp);
    if ike.is_some() {
        owamp_control.modes |= Modes::OWAMP_IKEV2_DERIVED;
    }
    let mut owamp = OwampServerOptions::new(Arc::new(owamp_control));
    owamp.rules = options.rules.clone();
    let o = &file.owamp;
    let sd = StoreLimits::default();
    let store = StoreLimits {
        sessions: o.results_sessions.unwrap_or(sd.sessions),
        total: o.results_records.unwrap_or(sd.total),
        per_session: o.results_records_per_session.unwrap_or(sd.per_session),
        keep: o.results_keep.map_or(sd.keep, Duration::from_secs),
    };
    if store.sessions == 0 || store.total == 0 || store.per_session == 0 {
        bail!(
            "config: [owamp] results_sessions, results_records and results_records_per_session must be at least 1"
        );
    }

    let given = |cli: &Vec<SocketAddr>, file: &Option<Vec<SocketAddr>>| {
        if cli.is_empty() {
            file.clone().unwrap_or_default()
        } else {
            cli.clone()
        }
    };
    let mut listen = given(&a.twamp_listen, &file.twamp.listen);
    let mut owamp_listen = given(&a.owamp_listen, &file.owamp.listen);
    let listen_defaults = listen.is_empty() && owamp_listen.is_empty();
    if listen_defaults {
        listen = vec!["0.0.0.0:862".parse()?, "[::]:862".parse()?];
        owamp_listen = vec!["0.0.0.0:861".parse()?, "[::]:861".parse()?];
    }
    let measure = file
        .measure
        .iter()
        .enumerate()
        .map(|(n, m)| crate::measure::Spec::parse(m, n, &measure_keys))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let archive = match (&file.archive, measure.is_empty()) {
        (None, true) => None,
        (a, _) => {
            let a = a.as_ref();
            let keep = a.and_then(|a| a.keep_records_days).unwrap_or(7.0);
            if !(0.0..=36_500.0).contains(&keep) {
                bail!("config: [archive] keep_records_days = {keep}: between 0 and 36500");
            }
            Some((
                a.and_then(|a| a.path.clone())
                    .unwrap_or_else(|| crate::results::DEFAULT_ARCHIVE.into()),
                (keep > 0.0).then(|| Duration::from_secs_f64(keep * 86_400.0)),
            ))
        }
    };
    let metrics = a
        .metrics_listen
        .or_else(|| file.metrics.as_ref().and_then(|m| m.listen));
    let sessions_given = a.max_sessions_total.or(l.max_sessions_total).is_some();
    let engine_threads = a.engine_threads.or(file.engine.threads).unwrap_or(0);
    Ok(Settings {
        engine_threads,
        sessions_given,
        archive,
        metrics,
        measure,
        ike: ike.map(|i| (i, ike_slot.unwrap_or_default())),
        owamp_listen,
        owamp,
        limits,
        store,
        listen,
        listen_defaults,
        options,
    })
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
        let listener = match bind(addr) {
            Ok(l) => l,
            Err(e) if s.listen_defaults && addr.is_ipv6() => {
                tracing::warn!(%addr, error = %e, "IPv6 listener not available");
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot listen on {addr}")),
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
        let listener = match bind(addr) {
            Ok(l) => l,
            Err(e) if s.listen_defaults && addr.is_ipv6() => {
                tracing::warn!(%addr, error = %e, "IPv6 listener not available");
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot listen on {addr}")),
        };
        // Tests and scripts read the bound port from here.
        announce(format_args!("listening twamp {}", listener.local_addr()?));
        tasks.push(tokio::spawn(serve(listener, opts.clone(), stop_rx.clone())));
    }
    if let Some(user) = &a_user {
        drop_privileges(user)?;
    }
    // The archive after the drop, so that its files belong to the user that writes them.
    // One that cannot be opened (a full disk) is no reason to stop serving or measuring:
    // the sink says so, counts what it could not archive and keeps trying.
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
    info!(modes = ?opts.control.modes, "ippm serve running");
    wait_for_signal().await;
    info!("shutting down");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> ServeArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            a: ServeArgs,
        }
        T::parse_from(std::iter::once("serve").chain(extra.iter().copied())).a
    }

    #[test]
    fn config_file_and_flag_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("k.pfs");
        std::fs::write(&keys, "alice 6162\nbob 6364\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        let cfg = dir.path().join("ippm.toml");
        std::fs::write(
            &cfg,
            format!(
                "keys = {:?}\n[twamp]\nlisten = [\"127.0.0.1:8620\"]\nmodes = \"AE\"\ncount = 4096\n\
                 [limits]\nmax_sessions = 3\n[[identity]]\nname = \"bob\"\nmodes = \"E\"\nmax_sessions = 1\n",
                keys.to_str().unwrap()
            ),
        )
        .unwrap();
        let c = cfg.to_str().unwrap();
        let s = settings(&args(&["--config", c])).unwrap();
        assert_eq!(s.listen, vec!["127.0.0.1:8620".parse().unwrap()]);
        assert_eq!(s.options.control.count, 4096);
        assert_eq!(s.options.control.modes & Modes(0x0f), Modes(0x06));
        let p = s.options.rules.policy.unwrap();
        assert!(p.open.is_none());
        assert_eq!(
            p.identities[&b"bob".to_vec()],
            Limits {
                modes: Modes::ENCRYPTED,
                max_sessions: 1
            }
        );
        assert_eq!(p.default.unwrap().max_sessions, 3);
        // Flags win.
        let s = settings(&args(&[
            "--config",
            c,
            "--count",
            "1024",
            "--max-sessions",
            "9",
        ]))
        .unwrap();
        assert_eq!(s.options.control.count, 1024);
        assert_eq!(s.options.control.max_sessions, 9);
    }

    #[test]
    fn owamp_results_store_from_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("ippm.toml");
        std::fs::write(
            &cfg,
            "[owamp]\nresults_sessions = 20000\nresults_records = 5000000\nresults_keep = 60\n",
        )
        .unwrap();
        let s = settings(&args(&["--config", cfg.to_str().unwrap()])).unwrap();
        assert_eq!(s.store.sessions, 20_000);
        assert_eq!(s.store.total, 5_000_000);
        assert_eq!(s.store.per_session, StoreLimits::default().per_session);
        assert_eq!(s.store.keep, Duration::from_secs(60));
        std::fs::write(&cfg, "[owamp]\nresults_sessions = 0\n").unwrap();
        let e = format!(
            "{:#}",
            settings(&args(&["--config", cfg.to_str().unwrap()])).unwrap_err()
        );
        assert!(e.contains("results_sessions"), "{e}");
    }

    #[test]
    fn config_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("bad.toml");
        std::fs::write(&cfg, "[twamp]\nmodez = \"O\"\n").unwrap();
        let e = format!(
            "{:#}",
            settings(&args(&["--config", cfg.to_str().unwrap()])).unwrap_err()
        );
        assert!(e.contains("modez"), "{e}");
        std::fs::write(&cfg, "[limits]\nmax_sessions = \"many\"\n").unwrap();
        let e = format!(
            "{:#}",
            settings(&args(&["--config", cfg.to_str().unwrap()])).unwrap_err()
        );
        assert!(e.contains("max_sessions"), "{e}");
        let e = format!("{:#}", settings(&args(&["--modes", "AE"])).unwrap_err());
        assert!(e.contains("needs a key file"), "{e}");
        std::fs::write(&cfg, "[[identity]]\nname = \"carol\"\n").unwrap();
        let e = format!(
            "{:#}",
            settings(&args(&["--config", cfg.to_str().unwrap()])).unwrap_err()
        );
        assert!(e.contains("carol"), "{e}");
    }
}
