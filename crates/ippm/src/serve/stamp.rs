//! `ippm serve`'s STAMP Session-Reflector settings: the `[stamp]` section and its flags.
//!
//! ```toml
//! [stamp]
//! listen = ["0.0.0.0:862", "[::]:862"] # UDP; the default when [stamp] is given
//! key_file = "/etc/ippm/stamp.key"      # the HMAC key in hex, mode 600
//! # ike = true                          # or: keys from the IKE SAs with each sender (needs [ike])
//! mode = "authenticated"                # default: authenticated with a key, else unauthenticated
//! stateful = true                       # RFC 8762 §4.2: own sequence numbers per session
//!                                       # (default: for the peers below and the allow-list)
//! extensions = true                     # RFC 8972 TLVs
//! allow = ["192.0.2.0/24", "2001:db8::/32"]  # answered sources (default: all)
//! rate_per_source = 1000                # packets/s per IPv4 address or IPv6 /64 (0: no limit)
//! max_sessions = 10000                  # stateful sessions held
//! max_sessions_per_source = 256
//! session_timeout = 60                  # seconds before an idle session is forgotten
//! permitted_dscp = [0, 10, 46]          # what a Class of Service TLV may ask (default: all)
//!
//! [[stamp.peer]]                        # per prefix: mode and key (longest prefix wins)
//! prefix = "198.51.100.0/24"
//! mode = "authenticated"
//! key_file = "/etc/ippm/router7.key"
//!
//! [[stamp.peer]]
//! prefix = "203.0.113.0/24"             # ippm nodes with IKE SAs to this one
//! ike = true
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ipnet::IpNet;
use ippm_net::stamp_reflector::{StampKeys, StampPeer, StampReflectorOptions, Stateful};
use ippm_proto::stamp::StampKey;
use ippm_proto::wire::stamp::StampMode;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StampSection {
    #[serde(default, deserialize_with = "super::listen::list::<_, 862>")]
    listen: Option<Vec<SocketAddr>>,
    mode: Option<String>,
    key_file: Option<PathBuf>,
    ike: Option<bool>,
    stateful: Option<bool>,
    extensions: Option<bool>,
    allow: Option<Vec<IpNet>>,
    rate_per_source: Option<u32>,
    max_sessions: Option<usize>,
    max_sessions_per_source: Option<usize>,
    session_timeout: Option<u64>,
    permitted_dscp: Option<Vec<u8>>,
    #[serde(default)]
    peer: Vec<PeerSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerSection {
    prefix: IpNet,
    mode: Option<String>,
    key_file: Option<PathBuf>,
    ike: Option<bool>,
}

impl StampSection {
    /// Whether a listen address was given in the file.
    pub(super) fn listen_given(&self) -> bool {
        self.listen.is_some()
    }
}

/// The reflector to run: where, and how.
#[derive(Debug)]
pub(super) struct StampSettings {
    pub(super) listen: Vec<SocketAddr>,
    /// The addresses are the defaults (an IPv6 one this host cannot bind is skipped).
    pub(super) defaults: bool,
    pub(super) options: StampReflectorOptions,
    /// Keyed from IKE: the default rule, and these peers (by index); their keys are set
    /// once IKE runs ([`StampSettings::use_ike`]).
    ike_default: bool,
    ike_peers: Vec<usize>,
}

impl StampSettings {
    /// Gives the rules keyed from IKE the running IKE service.
    pub(super) fn use_ike(&mut self, ike: Option<&ippm_net::ike::IkeHandle>) -> anyhow::Result<()> {
        if !self.ike_default && self.ike_peers.is_empty() {
            return Ok(());
        }
        let Some(ike) = ike else {
            bail!("[stamp] ike = true needs IKE ([ike] or --ike-listen)");
        };
        if self.ike_default {
            self.options.keys = StampKeys::Ike(ike.clone());
        }
        for &i in &self.ike_peers {
            self.options.peers[i].keys = StampKeys::Ike(ike.clone());
        }
        Ok(())
    }
}

/// A rule's keys: a key file, IKE, or none; both is a mistake.
fn keys_of(
    file: Option<&Path>,
    ike: bool,
    ike_available: bool,
    what: &str,
) -> anyhow::Result<(StampKeys, bool)> {
    match (file, ike) {
        (Some(_), true) => bail!("{what}: give key_file or ike = true, not both"),
        (None, true) if !ike_available => {
            bail!("{what}: ike = true needs IKE ([ike] or --ike-listen)")
        }
        (None, true) => Ok((StampKeys::None, true)),
        (Some(p), false) => Ok((StampKeys::Static(read_key(p, what)?), false)),
        (None, false) => Ok((StampKeys::None, false)),
    }
}

fn read_key(path: &Path, what: &str) -> anyhow::Result<Arc<StampKey>> {
    Ok(Arc::new(
        ippm_net::keyfile::stamp_key(path).with_context(|| what.to_owned())?,
    ))
}

fn mode_of(text: Option<&str>, key: bool, what: &str) -> anyhow::Result<StampMode> {
    let m = match text {
        None if key => StampMode::Authenticated,
        None => StampMode::Unauthenticated,
        Some("authenticated") => StampMode::Authenticated,
        Some("unauthenticated" | "open") => StampMode::Unauthenticated,
        Some(other) => {
            bail!("{what}: mode = {other:?}: use \"authenticated\" or \"unauthenticated\"")
        }
    };
    if m == StampMode::Authenticated && !key {
        bail!("{what}: authenticated mode needs a key (key_file, or --stamp-key-file)");
    }
    Ok(m)
}

/// The reflector from the flags and the `[stamp]` section; `None` when neither asks for one.
pub(super) fn settings(
    flags_listen: &[SocketAddr],
    flag_key: Option<&Path>,
    file: Option<&StampSection>,
    ike_available: bool,
) -> anyhow::Result<Option<StampSettings>> {
    if file.is_none() && flags_listen.is_empty() && flag_key.is_none() {
        return Ok(None);
    }
    let empty = StampSection::default();
    let f = file.unwrap_or(&empty);
    let (listen, defaults) = if !flags_listen.is_empty() {
        (flags_listen.to_vec(), false)
    } else if let Some(l) = &f.listen {
        (l.clone(), false)
    } else {
        (vec!["0.0.0.0:862".parse()?, "[::]:862".parse()?], true)
    };
    let (keys, ike_default) = match flag_key {
        Some(p) => (StampKeys::Static(read_key(p, "--stamp-key-file")?), false),
        None => keys_of(
            f.key_file.as_deref(),
            f.ike.unwrap_or(false),
            ike_available,
            "[stamp]",
        )?,
    };
    let mode = mode_of(f.mode.as_deref(), keys.is_some() || ike_default, "[stamp]")?;
    let mut ike_peers = Vec::new();
    let mut peers = Vec::new();
    for (i, p) in f.peer.iter().enumerate() {
        let what = format!("[[stamp.peer]] prefix = \"{}\"", p.prefix);
        let (k, ike) = keys_of(
            p.key_file.as_deref(),
            p.ike.unwrap_or(false),
            ike_available,
            &what,
        )?;
        if ike {
            ike_peers.push(i);
        }
        peers.push(StampPeer {
            prefix: p.prefix.trunc(),
            mode: mode_of(p.mode.as_deref(), k.is_some() || ike, &what)?,
            keys: k,
        });
    }
    let d = StampReflectorOptions::default();
    let mut permitted_dscp = d.permitted_dscp;
    if let Some(list) = &f.permitted_dscp {
        permitted_dscp = 0;
        for &v in list {
            if v > 63 {
                bail!("[stamp] permitted_dscp: {v} is not a DSCP (0 to 63)");
            }
            permitted_dscp |= 1 << v;
        }
    }
    let max_sessions = f.max_sessions.unwrap_or(d.max_sessions);
    let max_sessions_per_source = f
        .max_sessions_per_source
        .unwrap_or(d.max_sessions_per_source);
    if max_sessions == 0 || max_sessions_per_source == 0 {
        bail!("[stamp] max_sessions and max_sessions_per_source must be at least 1");
    }
    let timeout = f.session_timeout.unwrap_or(60);
    if !(1..=86_400).contains(&timeout) {
        bail!("[stamp] session_timeout = {timeout}: between 1 and 86400 seconds");
    }
    Ok(Some(StampSettings {
        listen,
        defaults,
        options: StampReflectorOptions {
            mode,
            keys,
            peers,
            stateful: match f.stateful {
                Some(true) => Stateful::Always,
                Some(false) => Stateful::Never,
                None => d.stateful,
            },
            extensions: f.extensions.unwrap_or(d.extensions),
            allow: f
                .allow
                .as_ref()
                .map(|v| v.iter().map(IpNet::trunc).collect())
                .unwrap_or_default(),
            rate_per_source: f.rate_per_source.unwrap_or(d.rate_per_source),
            max_sessions,
            max_sessions_per_source,
            session_timeout: Duration::from_secs(timeout),
            permitted_dscp,
            ..d
        },
        ike_default,
        ike_peers,
    }))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn section(text: &str) -> StampSection {
        #[derive(Deserialize)]
        struct F {
            stamp: StampSection,
        }
        toml::from_str::<F>(text).unwrap().stamp
    }

    #[test]
    fn defaults_keys_modes_and_peers() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("k");
        std::fs::write(&k, "00112233445566778899aabbccddeeff\n").unwrap();
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(settings(&[], None, None, false).unwrap().is_none());
        // [stamp] alone: UDP 862 on every address, unauthenticated, stateful for known
        // peers only.
        let s = settings(&[], None, Some(&section("[stamp]\n")), false)
            .unwrap()
            .unwrap();
        assert!(s.defaults);
        assert_eq!(s.listen.len(), 2);
        assert_eq!(s.options.mode, StampMode::Unauthenticated);
        assert_eq!(s.options.stateful, Stateful::KnownPeers);
        assert!(s.options.extensions);
        // A key makes it authenticated unless the mode says otherwise.
        let s = settings(&["127.0.0.1:8620".parse().unwrap()], Some(&k), None, false)
            .unwrap()
            .unwrap();
        assert!(!s.defaults);
        assert_eq!(s.options.mode, StampMode::Authenticated);
        let text = format!(
            "[stamp]\nmode = \"unauthenticated\"\nkey_file = {k:?}\nallow = [\"192.0.2.7/24\"]\n\
             permitted_dscp = [0, 46]\n[[stamp.peer]]\nprefix = \"198.51.100.0/24\"\nkey_file = {k:?}\n"
        );
        let s = settings(&[], None, Some(&section(&text)), false)
            .unwrap()
            .unwrap();
        assert_eq!(s.options.mode, StampMode::Unauthenticated);
        assert!(s.options.keys.is_some());
        assert_eq!(
            s.options.allow,
            vec!["192.0.2.0/24".parse::<IpNet>().unwrap()]
        );
        assert_eq!(s.options.permitted_dscp, 1 | (1 << 46));
        assert_eq!(s.options.peers[0].mode, StampMode::Authenticated);
    }

    #[test]
    fn mistakes_are_refused_with_what_to_do() {
        let e = |text: &str| {
            format!(
                "{:#}",
                settings(&[], None, Some(&section(text)), false).unwrap_err()
            )
        };
        assert!(e("[stamp]\nmode = \"authenticated\"\n").contains("needs a key"));
        assert!(e("[stamp]\nmode = \"hmac\"\n").contains("use \"authenticated\""));
        assert!(e("[stamp]\npermitted_dscp = [64]\n").contains("not a DSCP"));
        assert!(e("[stamp]\nsession_timeout = 0\n").contains("between 1"));
        assert!(e("[stamp]\nmax_sessions = 0\n").contains("at least 1"));
        assert!(e("[stamp]\nike = true\n").contains("needs IKE"));
        assert!(
            e("[stamp]\n[[stamp.peer]]\nprefix = \"192.0.2.0/24\"\nike = true\nkey_file = \"k\"\n")
                .contains("not both")
        );
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("k");
        std::fs::write(&k, "0011").unwrap();
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = format!("{:#}", settings(&[], Some(&k), None, false).unwrap_err());
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&k, "xyz").unwrap();
        let err = format!("{:#}", settings(&[], Some(&k), None, false).unwrap_err());
        assert!(err.contains("hex"), "{err}");
    }
}
