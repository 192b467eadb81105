//! `ippm serve`'s settings: the configuration file's sections, and the merge of flags, file and
//! defaults into what the daemon runs with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ippm_net::admission::AdmissionLimits;
use ippm_net::owamp_server::OwampServerOptions;
use ippm_net::owamp_store::StoreLimits;
use ippm_net::policy::{Limits, Policy};
use ippm_net::twamp_server::TwampServerOptions;
use ippm_proto::session::{PassphraseStore, ServerConfig};
use ippm_proto::{Modes, SecurityMode};
use serde::Deserialize;
use tracing::info;

use super::ServeArgs;

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
    stamp: Option<super::stamp::StampSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineSection {
    threads: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TwampSection {
    #[serde(default, deserialize_with = "super::listen::list::<_, 862>")]
    listen: Option<Vec<SocketAddr>>,
    modes: Option<String>,
    test_ports: Option<String>,
    count: Option<u32>,
    extensions: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OwampSection {
    #[serde(default, deserialize_with = "super::listen::list::<_, 861>")]
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
    super::config_error::parse(path, &text)
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
pub(super) struct Settings {
    pub(super) listen: Vec<SocketAddr>,
    pub(super) owamp_listen: Vec<SocketAddr>,
    pub(super) listen_defaults: bool,
    pub(super) options: TwampServerOptions,
    pub(super) owamp: OwampServerOptions,
    /// Connection and session limits, for every listener of both protocols.
    pub(super) limits: AdmissionLimits,
    /// What the OWAMP record store keeps for Fetch-Session.
    pub(super) store: StoreLimits,
    pub(super) ike: Option<(crate::ike::IkeSettings, ippm_net::ike::IkeSlot)>,
    /// The archive's file and how long per-packet records stay.
    pub(super) archive: Option<(PathBuf, Option<Duration>)>,
    pub(super) metrics: Option<SocketAddr>,
    pub(super) measure: Vec<crate::measure::Spec>,
    /// Engine threads (0: one per core).
    pub(super) engine_threads: usize,
    /// The session limit was given (not the default, which is fitted to the descriptors).
    pub(super) sessions_given: bool,
    /// The STAMP Session-Reflector, when asked for.
    pub(super) stamp: Option<super::stamp::StampSettings>,
}

/// Descriptors kept for everything that is not a control connection or a test session:
/// listeners, IKE, the metrics server, the archive, logs, the engine's epoll sets.
const FD_RESERVE: u64 = 64;

impl Settings {
    /// Fits the session limit to the file descriptors the process may open (a connection
    /// and a test session take one each), unless it was given; says what the limits allow.
    pub(super) fn fit_descriptors(&mut self, fds: u64) {
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

pub(super) fn settings(a: &ServeArgs) -> anyhow::Result<Settings> {
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
    // The TWAMP and OWAMP defaults apply when no listener of any protocol is named: naming
    // only STAMP ones (`--stamp-listen`, `[stamp] listen`) runs a STAMP-only reflector.
    let stamp_named =
        !a.stamp_listen.is_empty() || file.stamp.as_ref().is_some_and(|s| s.listen_given());
    let listen_defaults = listen.is_empty() && owamp_listen.is_empty() && !stamp_named;
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
            let path = match a.and_then(|a| a.path.clone()) {
                Some(p) => p,
                None => {
                    // Said at start: otherwise results land in a file nobody asked for.
                    let p = PathBuf::from(crate::results::DEFAULT_ARCHIVE);
                    info!(
                        path = %p.display(),
                        "[[measure]] results go to the default archive; set [archive] path = \"FILE\" to change it"
                    );
                    p
                }
            };
            Some((
                path,
                (keep > 0.0).then(|| Duration::from_secs_f64(keep * 86_400.0)),
            ))
        }
    };
    let metrics = a
        .metrics_listen
        .or_else(|| file.metrics.as_ref().and_then(|m| m.listen));
    let sessions_given = a.max_sessions_total.or(l.max_sessions_total).is_some();
    let engine_threads = a.engine_threads.or(file.engine.threads).unwrap_or(0);
    let stamp = super::stamp::settings(
        &a.stamp_listen,
        a.stamp_key_file.as_deref(),
        file.stamp.as_ref(),
        ike.is_some(),
    )?;
    Ok(Settings {
        stamp,
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
