//! The options `ippm twping` and `ippm owping` share, as perfSONAR's clients spell them.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use ippm_net::twamp_client::{Interval, modes_from_letters};
use ippm_proto::SecurityMode;
use ippm_proto::session::{IkeCredential, Secret, SecretStore};

use crate::ike_args::{IkeKeeper, IkeUse};

/// Test-packet options of every client: twping, owping and stamp.
#[derive(Debug, Args)]
pub(crate) struct CommonArgs {
    /// Number of test packets (each way, for owping).
    #[arg(short = 'c', default_value_t = 100, value_parser = parse_count)]
    pub(crate) count: u32,
    /// Mean time between packets in seconds; append `f` for a fixed interval, `e` (default) for
    /// exponentially distributed gaps (RFC 4656 §5).
    #[arg(short = 'i', default_value = "0.1e")]
    interval: String,
    /// DSCP of the test packets.
    #[arg(short = 'D', default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..64))]
    pub(crate) dscp: u8,
    /// Seconds to wait for a packet before counting it lost.
    #[arg(
        short = 'L',
        default_value_t = 2.0,
        value_parser = parse_loss_timeout,
        allow_negative_numbers = true
    )]
    loss_timeout: f64,
    /// Use IPv4 only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    ipv4: bool,
    /// Use IPv6 only.
    #[arg(short = '6')]
    ipv6: bool,
    /// Local address for the test packets.
    #[arg(short = 'S')]
    pub(crate) source: Option<IpAddr>,
    /// Local UDP port range for the test packets, LOW-HIGH.
    #[arg(short = 'P')]
    ports: Option<String>,
    /// Print every packet's timestamps (with --json: a `records` array).
    #[arg(short = 'R')]
    pub(crate) raw: bool,
    /// Print the results as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Test options common to twping and owping: the common ones, and their control
/// protocols' (modes, identities, RFC 7717).
#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Acceptable modes, letters O, A, E (and M for twping) (default: AEO with -u, else O).
    #[arg(short = 'A')]
    modes: Option<String>,
    /// Identity for the authenticated and encrypted modes.
    #[arg(short = 'u')]
    user: Option<String>,
    /// Pass-phrase file holding the identity's passphrase.
    #[arg(short = 'k')]
    keyfile: Option<PathBuf>,
    /// Highest PBKDF2 Count to accept from the server.
    #[arg(long, default_value_t = ippm_proto::crypto::DEFAULT_MAX_COUNT)]
    pub(crate) max_count: u32,
    #[command(flatten)]
    pub(crate) ike: crate::ike_args::IkeArgs,
}

impl std::ops::Deref for TestArgs {
    type Target = CommonArgs;

    fn deref(&self) -> &CommonArgs {
        &self.common
    }
}

impl CommonArgs {
    /// The server's address from HOST or HOST:PORT.
    pub(crate) fn server(&self, host: &str, default_port: u16) -> anyhow::Result<SocketAddr> {
        resolve(host, self.ipv4, self.ipv6, default_port)
    }

    /// The gaps between packets.
    pub(crate) fn interval(&self) -> anyhow::Result<Interval> {
        parse_interval(&self.interval)
    }

    /// The loss timeout (checked by clap: positive, at most an hour).
    pub(crate) fn loss_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.loss_timeout)
    }

    /// The local port range.
    pub(crate) fn ports(&self) -> anyhow::Result<Option<std::ops::RangeInclusive<u16>>> {
        self.ports
            .as_deref()
            .map(crate::serve::parse_port_range)
            .transpose()
    }
}

impl TestArgs {
    /// The acceptable modes (`keyed`: an RFC 7717 credential is at hand).
    pub(crate) fn modes(&self, keyed: bool) -> anyhow::Result<Vec<SecurityMode>> {
        let required = self.ike_required();
        let letters = self.modes.clone().unwrap_or_else(|| {
            if required {
                "AE".into()
            } else if self.user.is_some() || keyed {
                "AEO".into()
            } else {
                "O".into()
            }
        });
        let modes = modes_from_letters(&letters)
            .with_context(|| format!("-A takes letters O, A, E, M (got {letters:?})"))?;
        if required && modes.contains(&SecurityMode::Open) {
            bail!(
                "{} keys the session from an IKE SA: open mode (O) does not fit",
                self.ike.flag(IkeUse::Fallback)
            );
        }
        Ok(modes)
    }

    /// The end of a test: the status line finished, an inline IKE SA deleted, and the error
    /// (if any) said with what was tried.
    pub(crate) async fn finish<T, E>(
        &self,
        result: Result<T, E>,
        status: Option<tokio::task::JoinHandle<()>>,
        keeper: IkeKeeper,
        what: &str,
        server: SocketAddr,
    ) -> anyhow::Result<T>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        if let Some(s) = status {
            let _ = s.await;
        }
        keeper.finish().await;
        let result = result.map_err(|e| self.explain_no_common_mode(e));
        result.with_context(|| {
            if self.ike_required() {
                format!("{what} {server} (keyed from an IKE SA: the server must offer RFC 7717)")
            } else {
                format!("{what} {server}")
            }
        })
    }

    /// "No common mode" with the reason when the server offers a protected mode the client
    /// asked for but cannot use: A, E and M need a secret (-u and -k, or an IKE SA).
    fn explain_no_common_mode<E>(&self, e: E) -> anyhow::Error
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        use ippm_net::twamp_client::TwpingError;
        use ippm_proto::session::Error as ControlError;
        let (offered, protocol) = match (&e as &dyn std::error::Error).downcast_ref() {
            Some(TwpingError::Control(ControlError::NoCommonMode { offered, protocol })) => {
                (*offered, *protocol)
            }
            _ => return e.into(),
        };
        // What the server offers that only a secret opens (whatever -A asked for: without
        // -u the client can use none of them).
        let unkeyed: Vec<String> = offered
            .security_modes(protocol)
            .filter(|m| m.needs_secret())
            .map(|m| format!("{} ({})", m, m.letter()))
            .collect();
        let offers = offered.named(protocol);
        // The whole message is said anew: the protocol error's own text would repeat it.
        if self.user.is_some() || unkeyed.is_empty() {
            anyhow::anyhow!(
                "no common mode: the server offers {offers}; ask with -A for one of those"
            )
        } else {
            anyhow::anyhow!(
                "no common mode: the server offers {offers}, and {} need an identity and its \
                 pass-phrase: give -u USER -k FILE (or --ike to key it from an IKE SA)",
                unkeyed.join(", ")
            )
        }
    }

    /// The largest test packet header of the modes -A allows (`reflector`: the packet the
    /// sender builds is the reflector's size, as RFC 6038's symmetrical format is).
    pub(crate) fn largest_header(&self, modes: &[SecurityMode], reflector: bool) -> usize {
        use ippm_proto::wire::test::Layout;
        modes
            .iter()
            .map(|m| {
                let l = Layout::of(*m);
                if reflector {
                    l.reflector_header_len()
                } else {
                    l.sender_header_len()
                }
            })
            .max()
            .unwrap_or(0)
    }

    /// Whether the session must be keyed from an IKE SA.
    pub(crate) fn ike_required(&self) -> bool {
        self.ike.required(IkeUse::Fallback)
    }

    /// RFC 7717: the credential for a session with `server`, as --ike says (default
    /// fallback), and what keeps an inline IKE SA up until the test ends.
    pub(crate) async fn ike_credential(
        &self,
        server: IpAddr,
    ) -> anyhow::Result<(Option<IkeCredential>, IkeKeeper)> {
        self.ike.credential(server, IkeUse::Fallback).await
    }

    /// The identity and its passphrase from `-u` and `-k`.
    pub(crate) fn identity(&self) -> anyhow::Result<Option<(Vec<u8>, Secret)>> {
        Ok(match (&self.user, &self.keyfile) {
            (Some(u), Some(k)) => {
                let store = ippm_net::keyfile::load(k)?;
                let secret = store
                    .passphrase(u.as_bytes())
                    .with_context(|| format!("identity {u:?} is not in {}", k.display()))?;
                Some((u.as_bytes().to_vec(), secret))
            }
            (Some(_), None) => bail!("-u needs a key file (-k FILE)"),
            (None, Some(_)) => bail!("-k needs an identity (-u USER)"),
            (None, None) => None,
        })
    }
}

/// `-c`: at least one packet. The count sizes nothing in memory (records are kept only for
/// -R and --plot, and grow as packets come), so any larger count may start.
fn parse_count(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(0) => Err("a test needs at least one packet: give -c 1 or more".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "{s:?} is not a packet count: give a whole number from 1 to {}",
            u32::MAX
        )),
    }
}

/// `-L`: a positive number of seconds; 0, negative or NaN would count every packet lost
/// before it could come back.
fn parse_loss_timeout(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x <= 3600.0 => Ok(x),
        Ok(_) => Err(format!(
            "-L {s}: the time to wait for a packet must be more than 0 and at most 3600 \
             seconds (longer than any round trip; the default is 2)"
        )),
        Err(_) => Err(format!("{s:?} is not a number of seconds (e.g. 2 or 0.5)")),
    }
}

/// The most padding a UDP datagram to `server` holds after a `header` of that many octets:
/// 65,507 octets of payload over IPv4, 65,527 over IPv6 (RFC 768; the length field less the
/// IP and UDP headers). Checked before any connection: the server cannot send what no
/// datagram carries.
pub(crate) fn check_padding(padding: u32, header: usize, server: SocketAddr) -> anyhow::Result<()> {
    let payload: usize = if server.is_ipv6() { 65_527 } else { 65_507 };
    let max = payload - header;
    if usize::try_from(padding).map_or(true, |p| p > max) {
        bail!(
            "-s {padding}: a UDP datagram to {} has room for at most {max} octets of padding \
             after the {header}-octet test packet header of this mode",
            server.ip()
        );
    }
    Ok(())
}

pub(crate) fn parse_interval(s: &str) -> anyhow::Result<Interval> {
    let (num, kind) = match s.strip_suffix(['f', 'F']) {
        Some(n) => (n, 'f'),
        None => (s.strip_suffix(['e', 'E']).unwrap_or(s), 'e'),
    };
    let secs: f64 = num
        .parse()
        .with_context(|| format!("-i {s:?}: seconds, with f or e"))?;
    if !(0.0..3600.0).contains(&secs) {
        bail!("-i {s:?}: between 0 and 3600 seconds");
    }
    let d = Duration::from_secs_f64(secs);
    Ok(if kind == 'f' {
        Interval::Fixed(d)
    } else {
        Interval::Exponential(d)
    })
}

/// HOST or HOST:PORT as `host:port` (IPv6 literals bracketed), for the resolver.
pub(crate) fn with_port(host: &str, default_port: u16) -> String {
    if host.parse::<IpAddr>().is_ok() && host.contains(':') {
        format!("[{host}]:{default_port}")
    } else if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_owned()
    } else {
        format!("{host}:{default_port}")
    }
}

pub(crate) fn resolve(
    host: &str,
    v4: bool,
    v6: bool,
    default_port: u16,
) -> anyhow::Result<SocketAddr> {
    let addrs = with_port(host, default_port)
        .to_socket_addrs()
        .with_context(|| {
            format!("cannot resolve {host} (check the name, or give an IP address)")
        })?;
    addrs
        .into_iter()
        .find(|a| (!v4 || a.is_ipv4()) && (!v6 || a.is_ipv6()))
        .with_context(|| format!("{host} has no address of the requested family"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(
            parse_interval("0.1").unwrap(),
            Interval::Exponential(Duration::from_millis(100))
        );
        assert_eq!(
            parse_interval("0.001f").unwrap(),
            Interval::Fixed(Duration::from_millis(1))
        );
        assert!(parse_interval("x").is_err());
        assert!(parse_interval("-1").is_err());
    }

    #[test]
    fn hosts() {
        assert_eq!(resolve("127.0.0.1", false, false, 862).unwrap().port(), 862);
        assert_eq!(
            resolve("127.0.0.1:9000", false, false, 862).unwrap().port(),
            9000
        );
        assert_eq!(
            resolve("::1", false, false, 861).unwrap(),
            "[::1]:861".parse().unwrap()
        );
        assert_eq!(
            resolve("[::1]:9", false, false, 862).unwrap(),
            "[::1]:9".parse().unwrap()
        );
        assert!(resolve("127.0.0.1", false, true, 862).is_err());
    }
}
