//! Two `ippm serve` hosts with IKE between them, one in each side of a [`NetPair`]: their
//! configuration (certificates or PSK), the daemons, and clients run in a side.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use super::charon::{
    CERT_ID_INITIATOR, CERT_ID_RESPONDER, NetPair, PSK, PSK_ID_INITIATOR, PSK_ID_RESPONDER, Pki,
    Side,
};
use super::{IPPM, IkeDaemon};

pub(crate) fn write_secret(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// An `ippm serve` configuration for `side`: IKE with one connection to (or from) the other
/// side, certificates or PSK, and no pass-phrase file unless `keys` is given.
pub(crate) fn config(
    dir: &Path,
    side: Side,
    pki: Option<&Pki>,
    start: bool,
    extra: &str,
) -> PathBuf {
    let name = if side == Side::A { "a" } else { "b" };
    let peer = side.peer().addr();
    let auth = match pki {
        Some(p) => {
            let (me, other) = if side == Side::A {
                (&p.initiator, CERT_ID_RESPONDER)
            } else {
                (&p.responder, CERT_ID_INITIATOR)
            };
            format!(
                "auth = \"pubkey\"\nlocal_id = \"{}\"\nremote_id = \"{other}\"\ncert = [\"{}\"]\n\
                 key = \"{}\"\nca = [\"{}\"]\n",
                me.id,
                me.cert.display(),
                me.key.display(),
                p.ca_cert.display()
            )
        }
        None => {
            let psk = dir.join(format!("{name}.psk"));
            write_secret(&psk, PSK);
            let (me, other) = if side == Side::A {
                (PSK_ID_INITIATOR, PSK_ID_RESPONDER)
            } else {
                (PSK_ID_RESPONDER, PSK_ID_INITIATOR)
            };
            format!(
                "auth = \"psk\"\nlocal_id = \"{me}\"\nremote_id = \"{other}\"\npsk_file = \"{}\"\n",
                psk.display()
            )
        }
    };
    let remote = if side == Side::A {
        format!("remote = \"{peer}\"\nstart = {start}\n")
    } else {
        String::new()
    };
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "{extra}\n[twamp]\nlisten = [\"{addr}:862\"]\n[owamp]\nlisten = [\"{addr}:861\"]\n\
             [ike]\nlisten = [\"{addr}:500\"]\ncontrol = \"{control}\"\nrekey_time = 0\n\
             dpd_delay = 0\n\n[[ike.connection]]\nname = \"peer\"\n{remote}{auth}",
            addr = side.addr(),
            control = dir.join(format!("{name}.sock")).display(),
        ),
    )
    .unwrap();
    path
}

pub(crate) struct Host {
    /// The daemon.
    pub(crate) daemon: IkeDaemon,
    /// Its IKE control socket.
    pub(crate) control: PathBuf,
    /// Its log.
    pub(crate) log: PathBuf,
}

pub(crate) fn host(net: &NetPair, dir: &Path, side: Side, config: &Path) -> Host {
    let name = if side == Side::A { "a" } else { "b" };
    let control = dir.join(format!("{name}.sock"));
    let log = dir.join(format!("{name}.log"));
    Host {
        daemon: IkeDaemon::start(net, side, config, &control, &log),
        control,
        log,
    }
}

impl Host {
    /// Its log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Runs `ippm ARGS` (split at spaces) in side A with `--json`.
pub(crate) fn ping(net: &NetPair, args: &str) -> (Output, serde_json::Value) {
    client(net, Side::A, &args.split_whitespace().collect::<Vec<_>>())
}

/// Runs `ippm ARGS` in `side` with `--json`; the output and the parsed JSON (Null if none).
pub(crate) fn client(net: &NetPair, side: Side, args: &[&str]) -> (Output, serde_json::Value) {
    let out = net
        .command(side, IPPM)
        .args(args)
        .arg("--json")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out, v)
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
