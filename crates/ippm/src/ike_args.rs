//! The RFC 7717 options every client shares (twping, owping, and stamp for ippm's IKE-derived
//! STAMP keys): where the IKE SA comes from, and the credential it gives.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use ippm_net::ike_control::{Answer, Request, request};
use ippm_proto::session::{IkeCredential, Secret};

/// Where a client's IKE SA comes from.
#[derive(Debug, Args)]
pub(crate) struct IkeArgs {
    /// RFC 7717: key the session from an IKEv2 SA with the server. fallback: use the local
    /// daemon's SA if there is one, else log it and use the passphrase (or open) modes;
    /// initiate: have the daemon set one up if there is none; require: fail without one (or
    /// against a server that does not offer RFC 7717); inline: run an IKE initiator in this
    /// process (--ike-config); off: never.
    ///
    /// Default: fallback for twping and owping; off for stamp (a STAMP reflector has no way
    /// to say it takes IKE keys: ask for them).
    #[arg(long, value_enum)]
    ike: Option<IkeUse>,
    /// The local daemon's IKE control socket.
    #[arg(long, value_name = "PATH", default_value = crate::ike::DEFAULT_CONTROL)]
    ike_control: PathBuf,
    /// With --ike inline: a TOML file with an `[ike]` section (as for `ippm serve`) whose
    /// connection to the server's address to use.
    #[arg(long, value_name = "FILE")]
    ike_config: Option<PathBuf>,
    /// An IKE SA kept by another IKE daemon (e.g. strongSwan): its SPIs, SPIi:SPIr in hex ...
    #[arg(long, value_name = "SPIi:SPIr", requires = "ike_secret_file")]
    ike_spi: Option<String>,
    /// ... and a file (mode 600) holding prf(SK_d, "IPPM") of that SA in hex.
    #[arg(long, value_name = "FILE", requires = "ike_spi")]
    ike_secret_file: Option<PathBuf>,
}

/// How a client uses RFC 7717.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum IkeUse {
    /// An SA if the daemon has one, else the passphrase or open modes.
    Fallback,
    /// An SA, set up by the daemon if needed.
    Initiate,
    /// An SA the daemon has, or fail.
    Require,
    /// An IKE initiator in this process.
    Inline,
    /// Never.
    Off,
}

/// What keeps an RFC 7717 credential's IKE SA up while a test runs (--ike inline).
pub(crate) struct IkeKeeper {
    stop: Option<tokio::sync::watch::Sender<bool>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl IkeKeeper {
    pub(crate) fn none() -> Self {
        Self {
            stop: None,
            task: None,
        }
    }

    /// Deletes the inline IKE SA and stops its service.
    pub(crate) async fn finish(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }
}

impl IkeArgs {
    /// --ike, or the command's default.
    pub(crate) fn use_(&self, default: IkeUse) -> IkeUse {
        self.ike.unwrap_or(default)
    }

    pub(crate) fn flag(&self, default: IkeUse) -> String {
        if self.ike_spi.is_some() {
            return "--ike-spi".into();
        }
        let name = match self.use_(default) {
            IkeUse::Fallback => "fallback",
            IkeUse::Initiate => "initiate",
            IkeUse::Require => "require",
            IkeUse::Inline => "inline",
            IkeUse::Off => "off",
        };
        format!("--ike {name}")
    }

    /// Whether the session must be keyed from an IKE SA.
    pub(crate) fn required(&self, default: IkeUse) -> bool {
        matches!(
            self.use_(default),
            IkeUse::Require | IkeUse::Initiate | IkeUse::Inline
        ) || self.ike_spi.is_some()
    }

    /// RFC 7717: the credential for a session with `server`, as --ike says, and what keeps
    /// an inline IKE SA up until the test ends.
    pub(crate) async fn credential(
        &self,
        server: IpAddr,
        default: IkeUse,
    ) -> anyhow::Result<(Option<IkeCredential>, IkeKeeper)> {
        if let (Some(spis), Some(file)) = (&self.ike_spi, &self.ike_secret_file) {
            let spis = ippm_net::ike::parse_spis(spis)
                .with_context(|| format!("--ike-spi {spis:?}: SPIi:SPIr, 16 hex digits each"))?;
            let secret = crate::ike::secret_file(file).context("--ike-secret-file")?;
            let text = std::str::from_utf8(&secret).context("--ike-secret-file: hex")?;
            let octets = hex::decode(text.trim()).context("--ike-secret-file: hex digits")?;
            return Ok((
                Some(IkeCredential {
                    spi_i: spis.i,
                    spi_r: spis.r,
                    secret: Secret::new(octets),
                }),
                IkeKeeper::none(),
            ));
        }
        let req = |initiate| Request::Secret {
            peer: server,
            initiate,
        };
        let cred = |a: Answer| -> anyhow::Result<IkeCredential> {
            let spis = a
                .spis
                .first()
                .and_then(|s| ippm_net::ike::parse_spis(s))
                .context("the daemon's answer has no SPIs")?;
            let secret = a
                .secret
                .and_then(|s| s.octets())
                .context("the daemon's answer has no secret")?;
            tracing::info!(%spis, %server, "RFC 7717: keyed from IKE SA");
            Ok(IkeCredential {
                spi_i: spis.i,
                spi_r: spis.r,
                secret: Secret::new(secret.to_vec()),
            })
        };
        match self.use_(default) {
            IkeUse::Off => Ok((None, IkeKeeper::none())),
            IkeUse::Fallback => match request(&self.ike_control, &req(false)).await {
                Ok(a) if a.ok => Ok((Some(cred(a)?), IkeKeeper::none())),
                Ok(a) => {
                    tracing::warn!(
                        %server,
                        "RFC 7717: {}; using the passphrase or open modes",
                        a.error.unwrap_or_default()
                    );
                    Ok((None, IkeKeeper::none()))
                }
                Err(e) => {
                    tracing::debug!("RFC 7717 not used: {e}");
                    Ok((None, IkeKeeper::none()))
                }
            },
            IkeUse::Initiate | IkeUse::Require => {
                let a = request(
                    &self.ike_control,
                    &req(self.use_(default) == IkeUse::Initiate),
                )
                .await
                .with_context(|| self.flag(default))?;
                if !a.ok {
                    bail!(
                        "{}: {}",
                        self.flag(default),
                        a.error.unwrap_or_else(|| "no IKE SA".into())
                    );
                }
                Ok((Some(cred(a)?), IkeKeeper::none()))
            }
            IkeUse::Inline => {
                let path = self
                    .ike_config
                    .as_deref()
                    .context("--ike inline needs --ike-config FILE")?;
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                #[derive(serde::Deserialize)]
                struct File {
                    ike: crate::ike::IkeSection,
                }
                let file: File = crate::serve::config_error::parse(path, &text)
                    .context("--ike-config needs an [ike] section")?;
                let unspecified = if server.is_ipv4() {
                    SocketAddr::from(([0, 0, 0, 0], 0))
                } else {
                    SocketAddr::from(([0u16; 8], 0))
                };
                let mut s = crate::ike::settings(&file.ike, &[unspecified], None)?;
                s.options.start.clear();
                let (stop, stop_rx) = tokio::sync::watch::channel(false);
                let (h, task) = ippm_net::ike::start(s.options, stop_rx).await?;
                let keeper = IkeKeeper {
                    stop: Some(stop),
                    task: Some(task),
                };
                match h
                    .ippm_secret_initiate(server, Duration::from_secs(20))
                    .await
                {
                    Ok((spis, secret)) => {
                        tracing::info!(%spis, %server, "RFC 7717: keyed from an inline IKE SA");
                        Ok((
                            Some(IkeCredential {
                                spi_i: spis.i,
                                spi_r: spis.r,
                                secret: Secret::new(secret.to_vec()),
                            }),
                            keeper,
                        ))
                    }
                    Err(e) => {
                        keeper.finish().await;
                        bail!("--ike inline: {e}")
                    }
                }
            }
        }
    }
}
