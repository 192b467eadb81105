//! `ippm serve`'s STAMP Session-Reflector settings: the `[stamp]` section and its flags.
//!
//! ```toml
//! [stamp]
//! listen = ["0.0.0.0:862", "[::]:862"] # UDP; the default when [stamp] is given
//! key_file = "/etc/ippm/stamp.key"      # the HMAC key in hex, mode 600
//! mode = "authenticated"                # default: authenticated with a key, else unauthenticated
//! stateful = true                       # RFC 8762 §4.2: own sequence numbers per session
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
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ipnet::IpNet;
use ippm_net::stamp_reflector::{StampPeer, StampReflectorOptions};
use ippm_proto::stamp::StampKey;
use ippm_proto::wire::stamp::StampMode;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StampSection {
    listen: Option<Vec<SocketAddr>>,
    mode: Option<String>,
    key_file: Option<PathBuf>,
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
    let key = match (flag_key, &f.key_file) {
        (Some(p), _) => Some(read_key(p, "--stamp-key-file")?),
        (None, Some(p)) => Some(read_key(p, "[stamp] key_file")?),
        (None, None) => None,
    };
    let mode = mode_of(f.mode.as_deref(), key.is_some(), "[stamp]")?;
    let peers = f
        .peer
        .iter()
        .map(|p| {
            let what = format!("[[stamp.peer]] prefix = \"{}\"", p.prefix);
            let k = p
                .key_file
                .as_deref()
                .map(|path| read_key(path, &format!("{what}: key_file")))
                .transpose()?;
            Ok(StampPeer {
                prefix: p.prefix.trunc(),
                mode: mode_of(p.mode.as_deref(), k.is_some(), &what)?,
                key: k,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
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
            key,
            peers,
            stateful: f.stateful.unwrap_or(d.stateful),
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
        assert!(settings(&[], None, None).unwrap().is_none());
        // [stamp] alone: UDP 862 on every address, unauthenticated, stateful.
        let s = settings(&[], None, Some(&section("[stamp]\n")))
            .unwrap()
            .unwrap();
        assert!(s.defaults);
        assert_eq!(s.listen.len(), 2);
        assert_eq!(s.options.mode, StampMode::Unauthenticated);
        assert!(s.options.stateful && s.options.extensions);
        // A key makes it authenticated unless the mode says otherwise.
        let s = settings(&["127.0.0.1:8620".parse().unwrap()], Some(&k), None)
            .unwrap()
            .unwrap();
        assert!(!s.defaults);
        assert_eq!(s.options.mode, StampMode::Authenticated);
        let text = format!(
            "[stamp]\nmode = \"unauthenticated\"\nkey_file = {k:?}\nallow = [\"192.0.2.7/24\"]\n\
             permitted_dscp = [0, 46]\n[[stamp.peer]]\nprefix = \"198.51.100.0/24\"\nkey_file = {k:?}\n"
        );
        let s = settings(&[], None, Some(&section(&text))).unwrap().unwrap();
        assert_eq!(s.options.mode, StampMode::Unauthenticated);
        assert!(s.options.key.is_some());
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
                settings(&[], None, Some(&section(text))).unwrap_err()
            )
        };
        assert!(e("[stamp]\nmode = \"authenticated\"\n").contains("needs a key"));
        assert!(e("[stamp]\nmode = \"hmac\"\n").contains("use \"authenticated\""));
        assert!(e("[stamp]\npermitted_dscp = [64]\n").contains("not a DSCP"));
        assert!(e("[stamp]\nsession_timeout = 0\n").contains("between 1"));
        assert!(e("[stamp]\nmax_sessions = 0\n").contains("at least 1"));
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("k");
        std::fs::write(&k, "0011").unwrap();
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = format!("{:#}", settings(&[], Some(&k), None).unwrap_err());
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&k, "xyz").unwrap();
        let err = format!("{:#}", settings(&[], Some(&k), None).unwrap_err());
        assert!(err.contains("hex"), "{err}");
    }
}
