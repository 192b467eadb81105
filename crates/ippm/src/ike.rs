//! `ippm ike ...` (talks to the daemon's IKE control socket) and the `[ike]` section of the
//! `ippm serve` configuration.
//!
//! ```toml
//! [ike]
//! listen = ["0.0.0.0:500"]            # UDP; default 0.0.0.0:500 when [ike] is present
//! control = "/run/ippm/ike.sock"      # local control socket (mode 600)
//! proposals = ["aes128-sha256-x25519", "aes256gcm16-prfsha384-ecp384"]  # accepted as responder
//! rekey_time = 14400                  # seconds; 0: never rekey on our own
//! dpd_delay = 60                      # seconds of silence before a liveness check; 0: never
//! cookie_threshold = 32               # half-open SAs before COOKIEs are demanded
//! half_open_max = 4096                # half-open SAs in all
//! half_open_per_source_max = 64       # half-open SAs of one IPv4 address or IPv6 /64
//! rekey_rand_time = 1440              # seconds: rekey up to this much before rekey_time
//!
//! [[ike.connection]]
//! name = "core1"
//! remote = "192.0.2.1"                # peer address[:port]; omit to only accept
//! start = true                        # bring up at start and keep up
//! auth = "psk"                        # or "pubkey" (X.509 certificates)
//! local_id = "probe7.example.net"     # FQDN, IP address, user@fqdn, or a DN
//! remote_id = "core1.example.net"     # optional with pubkey: any identity the CA vouches for
//! psk_file = "/etc/ippm/core1.psk"    # psk: the key, mode 600 (or psk = "..." inline)
//! cert = ["/etc/ippm/probe7.crt"]     # pubkey: our chain (PEM or DER), end entity first
//! key = "/etc/ippm/probe7.key"        # pubkey: our private key (PEM or DER, mode 600)
//! ca = ["/etc/ippm/ca.crt"]           # pubkey: CAs the peer's certificate must chain to
//! rsa_signature = "pss"               # pubkey, RSA key: "pss" (default) or "pkcs1"
//! proposals = ["aes128-sha256-x25519"]  # offered as initiator (default: the built-in list)
//! ```
//!
//! `rsa_signature` is how an RSA key signs AUTH when the peer supports RFC 7427 (it sent
//! SIGNATURE_HASH_ALGORITHMS): RSASSA-PSS by default, which RFC 8247 prefers, libreswan
//! signs with and strongSwan verifies; `"pkcs1"` (RSASSA-PKCS1-v1_5) for peers that verify
//! no PSS, since the notify names hashes only and leaves the padding unnegotiated. Either
//! way ippm verifies both from its peers. ECDSA keys ignore it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ippm_ike::auth::{Identity, LocalCredential, RsaSignature, TrustStore};
use ippm_ike::config::{Config, Connection, Limits, LocalAuth, Psk, RemoteAuth};
use ippm_ike::proposal::IkeProposal;
use ippm_net::ike::IkeServiceOptions;
use ippm_net::ike_control::{Answer, Request, request};
use serde::Deserialize;

/// Where the daemon's IKE control socket is unless told otherwise.
pub(crate) const DEFAULT_CONTROL: &str = "/run/ippm/ike.sock";

/// The `[ike]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IkeSection {
    #[serde(default, deserialize_with = "crate::serve::listen::list::<_, 500>")]
    listen: Option<Vec<SocketAddr>>,
    control: Option<PathBuf>,
    proposals: Option<Vec<String>>,
    rekey_time: Option<u64>,
    dpd_delay: Option<u64>,
    cookie_threshold: Option<usize>,
    half_open_max: Option<usize>,
    half_open_per_source_max: Option<usize>,
    rekey_rand_time: Option<u64>,
    retransmit_timeout: Option<f64>,
    retransmit_tries: Option<u32>,
    #[serde(default)]
    connection: Vec<ConnectionSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionSection {
    name: String,
    remote: Option<String>,
    #[serde(default)]
    start: bool,
    auth: String,
    local_id: String,
    remote_id: Option<String>,
    psk: Option<String>,
    psk_file: Option<PathBuf>,
    #[serde(default)]
    cert: Vec<PathBuf>,
    key: Option<PathBuf>,
    #[serde(default)]
    ca: Vec<PathBuf>,
    rsa_signature: Option<String>,
    proposals: Option<Vec<String>>,
}

/// What `serve` runs for IKE.
#[derive(Debug)]
pub(crate) struct IkeSettings {
    pub(crate) options: IkeServiceOptions,
    pub(crate) control: PathBuf,
}

fn proposals(list: &Option<Vec<String>>, what: &str) -> anyhow::Result<Vec<IkeProposal>> {
    match list {
        None => Ok(IkeProposal::defaults()),
        Some(l) if l.is_empty() => bail!("{what}: empty proposal list"),
        Some(l) => l
            .iter()
            .map(|s| IkeProposal::parse(s).with_context(|| what.to_owned()))
            .collect(),
    }
}

fn remote_addr(s: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let ip: std::net::IpAddr = s
        .parse()
        .with_context(|| format!("remote {s:?}: an IP address, optionally with :port"))?;
    Ok(SocketAddr::new(ip, 500))
}

pub(crate) fn secret_file(path: &Path) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    let v = ippm_net::keyfile::read_secret(path)?;
    if v.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(v)
}

/// The `rsa_signature` key.
fn rsa_signature(value: &str, what: &str) -> anyhow::Result<RsaSignature> {
    match value {
        "pss" => Ok(RsaSignature::Pss),
        "pkcs1" => Ok(RsaSignature::Pkcs1),
        other => bail!("{what}: rsa_signature = {other:?}: use \"pss\" or \"pkcs1\""),
    }
}

fn connection(c: &ConnectionSection) -> anyhow::Result<Connection> {
    let what = format!("[[ike.connection]] {:?}", c.name);
    let local_id = Identity::parse(&c.local_id).with_context(|| format!("{what}: local_id"))?;
    let remote_id = c
        .remote_id
        .as_deref()
        .map(Identity::parse)
        .transpose()
        .with_context(|| format!("{what}: remote_id"))?;
    let (local_auth, remote_auth) = match c.auth.as_str() {
        "psk" => {
            let key = match (&c.psk, &c.psk_file) {
                (Some(k), None) => k.as_bytes().to_vec(),
                (None, Some(p)) => secret_file(p)
                    .with_context(|| format!("{what}: psk_file"))?
                    .to_vec(),
                _ => bail!("{what}: auth = \"psk\" needs exactly one of psk, psk_file"),
            };
            if remote_id.is_none() {
                bail!("{what}: auth = \"psk\" needs remote_id");
            }
            if c.rsa_signature.is_some() {
                bail!("{what}: rsa_signature needs auth = \"pubkey\"");
            }
            let psk = Psk::new(key);
            (LocalAuth::Psk(psk.clone()), RemoteAuth::Psk(psk))
        }
        "pubkey" | "cert" => {
            let Some(key) = &c.key else {
                bail!("{what}: auth = \"pubkey\" needs key");
            };
            if c.cert.is_empty() || c.ca.is_empty() {
                bail!("{what}: auth = \"pubkey\" needs cert and ca");
            }
            let certs: Vec<&Path> = c.cert.iter().map(PathBuf::as_path).collect();
            let scheme = c
                .rsa_signature
                .as_deref()
                .map_or(Ok(RsaSignature::default()), |v| rsa_signature(v, &what))?;
            let cred = LocalCredential::load(&certs, key)
                .with_context(|| format!("{what}: cert/key"))?
                .with_rsa_signature(scheme);
            let cas: Vec<&Path> = c.ca.iter().map(PathBuf::as_path).collect();
            let store = TrustStore::load(&cas).with_context(|| format!("{what}: ca"))?;
            (
                LocalAuth::Cert(Arc::new(cred)),
                RemoteAuth::Cert(Arc::new(store)),
            )
        }
        other => bail!("{what}: auth = {other:?}: use \"psk\" or \"pubkey\""),
    };
    let remote_addr = c
        .remote
        .as_deref()
        .map(remote_addr)
        .transpose()
        .with_context(|| what.clone())?;
    if c.start && remote_addr.is_none() {
        bail!("{what}: start = true needs remote");
    }
    Ok(Connection {
        name: c.name.clone(),
        local_id,
        remote_id,
        local_auth,
        remote_auth,
        remote_addr,
        proposals: proposals(&c.proposals, &format!("{what}: proposals"))?,
    })
}

/// Reads the `[ike]` section; `listen` from the command line overrides the file's.
pub(crate) fn settings(
    s: &IkeSection,
    listen: &[SocketAddr],
    control: Option<&Path>,
) -> anyhow::Result<IkeSettings> {
    let mut connections = Vec::new();
    for c in &s.connection {
        if connections.iter().any(|x: &Connection| x.name == c.name) {
            bail!("[[ike.connection]] {:?} is defined twice", c.name);
        }
        connections.push(connection(c)?);
    }
    let d = Limits::default();
    // The engine adds these to the clock: a value past any sensible lifetime would overflow
    // an Instant, so it is refused here with the key's name instead.
    const YEAR: u64 = 366 * 86_400;
    for (key, v) in [
        ("rekey_time", s.rekey_time),
        ("dpd_delay", s.dpd_delay),
        ("rekey_rand_time", s.rekey_rand_time),
    ] {
        if v.is_some_and(|v| v > YEAR) {
            bail!(
                "[ike] {key} = {}: at most {YEAR} seconds (a year)",
                v.unwrap_or(0)
            );
        }
    }
    if let Some(t) = s.retransmit_timeout {
        if !(t.is_finite() && t > 0.0 && t <= 3600.0) {
            bail!("[ike] retransmit_timeout = {t}: seconds, more than 0 and at most 3600");
        }
    }
    let secs = |v: Option<u64>, dflt: Option<Duration>| match v {
        Some(0) => None,
        Some(n) => Some(Duration::from_secs(n)),
        None => dflt,
    };
    let limits = Limits {
        rekey_time: secs(s.rekey_time, d.rekey_time),
        dpd_delay: secs(s.dpd_delay, d.dpd_delay),
        cookie_threshold: s.cookie_threshold.unwrap_or(d.cookie_threshold),
        half_open_max: s.half_open_max.unwrap_or(d.half_open_max),
        half_open_per_source_max: s
            .half_open_per_source_max
            .unwrap_or(d.half_open_per_source_max),
        rekey_rand_time: s.rekey_rand_time.map(Duration::from_secs),
        retransmit_timeout: s
            .retransmit_timeout
            .map(Duration::from_secs_f64)
            .unwrap_or(d.retransmit_timeout),
        retransmit_tries: s.retransmit_tries.unwrap_or(d.retransmit_tries),
        ..d
    };
    let start = s
        .connection
        .iter()
        .filter(|c| c.start)
        .map(|c| c.name.clone())
        .collect();
    let listen = if listen.is_empty() {
        s.listen
            .clone()
            .unwrap_or_else(|| vec![SocketAddr::from(([0, 0, 0, 0], 500))])
    } else {
        listen.to_vec()
    };
    Ok(IkeSettings {
        options: IkeServiceOptions {
            config: Config {
                connections,
                proposals: proposals(&s.proposals, "[ike] proposals")?,
                limits,
            },
            listen,
            start,
            retry: Duration::from_secs(5),
        },
        control: control
            .map(Path::to_path_buf)
            .or_else(|| s.control.clone())
            .unwrap_or_else(|| DEFAULT_CONTROL.into()),
    })
}

/// Options of `ippm ike`.
#[derive(Debug, Args)]
pub(crate) struct IkeArgs {
    /// The daemon's IKE control socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONTROL, global = true)]
    control: PathBuf,
    /// Print the daemon's answer as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: IkeCommand,
}

#[derive(Debug, Subcommand)]
enum IkeCommand {
    /// List the IKE SAs: SPIs, peer, proposal, age (never keys).
    List,
    /// Bring up an IKE SA for a configured connection and wait until it is established.
    Up {
        /// The connection's name.
        name: String,
        /// Seconds to wait.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Delete IKE SAs: by connection name, peer address or SPIs (`SPIi:SPIr`).
    Down {
        /// What to delete.
        target: String,
    },
    /// Rekey IKE SAs: by connection name, peer address or SPIs.
    Rekey {
        /// What to rekey.
        target: String,
    },
}

async fn ask(control: &Path, req: &Request) -> anyhow::Result<Answer> {
    let a = request(control, req).await?;
    if !a.ok {
        bail!("{}", a.error.unwrap_or_else(|| "the daemon refused".into()));
    }
    Ok(a)
}

fn print_list(a: &Answer) -> std::io::Result<()> {
    if a.sas.is_empty() {
        return crate::out::outln!("no IKE SAs");
    }
    for s in &a.sas {
        crate::out::outln!(
            "{}: {} {} {} peer {} ({}) local {} {} age {:.0}s",
            s.connection.as_deref().unwrap_or("-"),
            s.spis,
            s.state,
            if s.initiator {
                "initiator"
            } else {
                "responder"
            },
            s.peer,
            s.peer_id.as_deref().unwrap_or("-"),
            s.local,
            s.proposal.as_deref().unwrap_or("-"),
            s.age_secs,
        )?;
    }
    Ok(())
}

pub(crate) async fn run(a: IkeArgs) -> anyhow::Result<ExitCode> {
    let show = |ans: &Answer| -> anyhow::Result<()> {
        if a.json {
            crate::out::outln!("{}", serde_json::to_string_pretty(ans)?)?;
        }
        Ok(())
    };
    match &a.command {
        IkeCommand::List => {
            let ans = ask(&a.control, &Request::List).await?;
            show(&ans)?;
            if !a.json {
                print_list(&ans)?;
            }
        }
        IkeCommand::Up { name, timeout } => {
            let ans = ask(&a.control, &Request::Up { name: name.clone() }).await?;
            let spis = ans.spis.first().cloned().unwrap_or_default();
            let spi_i = spis.split('_').next().unwrap_or_default().to_owned();
            let deadline = Instant::now() + Duration::from_secs(*timeout);
            loop {
                let l = ask(&a.control, &Request::List).await?;
                let mine = l.sas.iter().find(|s| s.spis.starts_with(&spi_i));
                match mine {
                    Some(s) if s.state == "established" => {
                        show(&l)?;
                        if !a.json {
                            crate::out::outln!(
                                "IKE SA {} established with {} ({}), {}",
                                s.spis,
                                s.peer,
                                s.peer_id.as_deref().unwrap_or("-"),
                                s.proposal.as_deref().unwrap_or("-")
                            )?;
                        }
                        return Ok(ExitCode::SUCCESS);
                    }
                    None => bail!("IKE SA for {name:?} failed (see the daemon's log)"),
                    Some(_) if Instant::now() >= deadline => {
                        bail!("IKE SA for {name:?} not established after {timeout} s")
                    }
                    Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        IkeCommand::Down { target } => {
            let ans = ask(
                &a.control,
                &Request::Down {
                    target: target.clone(),
                },
            )
            .await?;
            show(&ans)?;
            if !a.json {
                for s in &ans.spis {
                    crate::out::outln!("deleting IKE SA {s}")?;
                }
            }
        }
        IkeCommand::Rekey { target } => {
            let ans = ask(
                &a.control,
                &Request::Rekey {
                    target: target.clone(),
                },
            )
            .await?;
            show(&ans)?;
            if !a.json {
                for s in &ans.spis {
                    crate::out::outln!("rekeying IKE SA {s}")?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(extra: &str) -> ConnectionSection {
        toml::from_str(&format!(
            "name = \"c\"\nauth = \"psk\"\nlocal_id = \"a.example\"\n\
             remote_id = \"b.example\"\npsk = \"k\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn rsa_signature_values() {
        assert_eq!(rsa_signature("pss", "c").unwrap(), RsaSignature::Pss);
        assert_eq!(rsa_signature("pkcs1", "c").unwrap(), RsaSignature::Pkcs1);
        let e = rsa_signature("rsa/pss", "c").unwrap_err().to_string();
        assert!(e.contains("\"pss\" or \"pkcs1\""), "{e}");
        assert!(connection(&section("")).is_ok());
        let e = connection(&section("rsa_signature = \"pss\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("rsa_signature needs auth = \"pubkey\""), "{e}");
    }

    #[test]
    fn absurd_timers_are_refused_not_a_panic() {
        for (text, key) in [
            ("rekey_time = 18446744073709551615", "rekey_time"),
            ("dpd_delay = 99999999999", "dpd_delay"),
            ("rekey_rand_time = 99999999999", "rekey_rand_time"),
            ("retransmit_timeout = -1.0", "retransmit_timeout"),
            ("retransmit_timeout = nan", "retransmit_timeout"),
            ("retransmit_timeout = 1e300", "retransmit_timeout"),
        ] {
            let sec: IkeSection = toml::from_str(text).unwrap();
            let e = match settings(&sec, &[], None) {
                Ok(_) => panic!("{text} accepted"),
                Err(e) => e.to_string(),
            };
            assert!(e.contains(key), "{text}: {e}");
        }
        let sec: IkeSection =
            toml::from_str("rekey_time = 3600\nretransmit_timeout = 0.5").unwrap();
        assert!(settings(&sec, &[], None).is_ok());
    }
}
