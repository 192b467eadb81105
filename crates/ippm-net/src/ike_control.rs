//! The daemon's local IKE control socket: a Unix stream socket, readable and writable by the
//! daemon's user only (mode 600), one JSON request per line and one JSON answer per line.
//! `ippm ike list|up|down|rekey` speak it. It never serves a key.
//!
//! Requests: `{"cmd":"list"}`, `{"cmd":"up","name":"CONN"}`, `{"cmd":"down","target":T}`,
//! `{"cmd":"rekey","target":T}` (T: a connection name, a peer address or SPIs), and for local
//! `ippm twping/owping`, `{"cmd":"secret","peer":"ADDR","initiate":BOOL}`: the SPIs of the
//! newest IKE SA with that peer and its RFC 7717 secret `prf(SK_d, "IPPM")` (hex) - the only
//! secret the socket serves; never SK_d or any other IKE key. Answers: `{"ok":true,...}` or
//! `{"ok":false,"error":"..."}`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::ike::IkeHandle;
use ippm_ike::engine::EngineError;

/// Longest request line accepted.
const MAX_LINE: usize = 4096;

/// A request on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// List the IKE SAs.
    List,
    /// Start an IKE SA for a connection.
    Up {
        /// The connection's name.
        name: String,
    },
    /// Delete IKE SAs.
    Down {
        /// A connection name, a peer address or SPIs.
        target: String,
    },
    /// Rekey IKE SAs.
    Rekey {
        /// A connection name, a peer address or SPIs.
        target: String,
    },
    /// RFC 7717, client side: the newest IKE SA with `peer` and its derived secret.
    Secret {
        /// The O/TWAMP server's address.
        peer: std::net::IpAddr,
        /// With no SA, bring one up (with the connection configured for that address).
        #[serde(default)]
        initiate: bool,
    },
}

/// An RFC 7717 secret in hex, zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretHex(zeroize::Zeroizing<String>);

impl SecretHex {
    /// The secret's octets (None if the hex is malformed).
    pub fn octets(&self) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        let s = self.0.as_bytes();
        if s.len() % 2 != 0 {
            return None;
        }
        let mut out = zeroize::Zeroizing::new(Vec::with_capacity(s.len() / 2));
        for pair in s.chunks(2) {
            let hex = std::str::from_utf8(pair).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
        }
        Some(out)
    }

    fn of(octets: &[u8]) -> Self {
        let mut s = zeroize::Zeroizing::new(String::with_capacity(octets.len() * 2));
        for b in octets {
            s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            s.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
        }
        Self(s)
    }
}

impl std::fmt::Debug for SecretHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHex([redacted])")
    }
}

/// One IKE SA as listed: never keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaEntry {
    /// `SPIi_i SPIr_r`, hex.
    pub spis: String,
    /// Connection name.
    pub connection: Option<String>,
    /// The peer's address.
    pub peer: String,
    /// Our address.
    pub local: String,
    /// Whether we initiated it.
    pub initiator: bool,
    /// State.
    pub state: String,
    /// Negotiated proposal (strongSwan-style name).
    pub proposal: Option<String>,
    /// The peer's proven identity.
    pub peer_id: Option<String>,
    /// Seconds since it was established (or created).
    pub age_secs: f64,
}

/// An answer on the control socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// Whether the request succeeded.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The SAs (list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sas: Vec<SaEntry>,
    /// The SAs acted on (up, down, rekey), or the one whose secret this is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spis: Vec<String>,
    /// The RFC 7717 secret (secret requests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretHex>,
}

impl Answer {
    fn error(e: impl ToString) -> Self {
        Self {
            ok: false,
            error: Some(e.to_string()),
            sas: Vec::new(),
            spis: Vec::new(),
            secret: None,
        }
    }

    fn spis(spis: impl IntoIterator<Item = ippm_ike::engine::Spis>) -> Self {
        Self {
            ok: true,
            error: None,
            sas: Vec::new(),
            spis: spis.into_iter().map(|s| s.to_string()).collect(),
            secret: None,
        }
    }
}

/// How long a secret request waits for an IKE SA it initiates.
const INITIATE_WAIT: Duration = Duration::from_secs(20);

/// Carries out one request.
pub async fn answer(h: &IkeHandle, req: Request) -> Answer {
    match req {
        Request::Secret { peer, initiate } => {
            let found = if initiate {
                h.ippm_secret_initiate(peer, INITIATE_WAIT).await
            } else {
                h.ippm_secret_for_peer(peer)
                    .ok_or_else(|| EngineError::Local(format!("no IKE SA with {peer}")))
            };
            match found {
                Ok((spis, secret)) => Answer {
                    secret: Some(SecretHex::of(&secret)),
                    ..Answer::spis([spis])
                },
                Err(e) => Answer::error(e),
            }
        }
        Request::List => Answer {
            ok: true,
            error: None,
            sas: h
                .list()
                .into_iter()
                .map(|s| SaEntry {
                    spis: s.spis.to_string(),
                    connection: s.connection,
                    peer: s.peer.to_string(),
                    local: s.local.to_string(),
                    initiator: s.initiator,
                    state: s.state.to_owned(),
                    proposal: s.proposal.map(|p| p.to_string()),
                    peer_id: s.peer_id,
                    age_secs: s.age.as_secs_f64(),
                })
                .collect(),
            spis: Vec::new(),
            secret: None,
        },
        Request::Up { name } => match h.up(&name) {
            Ok(s) => Answer::spis([s]),
            Err(e) => Answer::error(e),
        },
        Request::Down { target } => match h.down(&target) {
            Ok(s) => Answer::spis(s),
            Err(e) => Answer::error(e),
        },
        Request::Rekey { target } => match h.rekey(&target) {
            Ok(s) => Answer::spis(s),
            Err(e) => Answer::error(e),
        },
    }
}

/// Binds the control socket at `path` (replacing a stale one), mode 600.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by a running daemon", path.display()),
            ));
        }
        Err(_) if path.exists() => std::fs::remove_file(path)?,
        Err(_) => {}
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Serves the control socket until `stop`; removes the socket file at the end.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    h: IkeHandle,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            acc = listener.accept() => match acc {
                Ok((s, _)) => {
                    let h = h.clone();
                    tokio::spawn(async move {
                        if let Err(e) = conversation(s, &h).await {
                            tracing::debug!("IKE control connection: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("IKE control socket: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

async fn conversation(s: UnixStream, h: &IkeHandle) -> std::io::Result<()> {
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut r).take(MAX_LINE as u64).read_line(&mut line).await?;
        if n == 0 {
            return Ok(());
        }
        let a = match serde_json::from_str::<Request>(line.trim()) {
            Ok(req) => answer(h, req).await,
            Err(e) => Answer::error(format!("bad request: {e}")),
        };
        let mut out = serde_json::to_vec(&a).map_err(std::io::Error::other)?;
        out.push(b'\n');
        w.write_all(&out).await?;
    }
}

/// Client side: sends one request to the daemon at `path` and reads the answer.
pub async fn request(path: &Path, req: &Request) -> std::io::Result<Answer> {
    let s = UnixStream::connect(path).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot reach the daemon's IKE control socket {}: {e}",
                path.display()
            ),
        )
    })?;
    let (r, mut w) = s.into_split();
    let mut out = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    out.push(b'\n');
    w.write_all(&out).await?;
    let mut line = String::new();
    let mut r = BufReader::new(r);
    (&mut r).take(16 << 20).read_line(&mut line).await?;
    serde_json::from_str(line.trim()).map_err(std::io::Error::other)
}
