//! Our IKE service in-process, in one side of a [`NetPair`] (a thread that enters the
//! namespace and runs its own runtime), and connections to a charon or ippm peer: for the
//! interop tests and the IKE benchmark.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use ippm_ike::auth::{Identity, LocalCredential, TrustStore};
use ippm_ike::config::{Config, Connection, LocalAuth, Psk, RemoteAuth};
use ippm_ike::proposal::IkeProposal;
use ippm_net::ike::{IkeHandle, IkeServiceOptions};

use super::charon::{
    CERT_ID_INITIATOR, CERT_ID_RESPONDER, NetPair, PSK, PSK_ID_INITIATOR, PSK_ID_RESPONDER, Pki,
    Side,
};

/// Our IKE service, stopped (and its thread joined) when dropped.
pub(crate) struct Ours {
    /// Its handle.
    pub(crate) handle: IkeHandle,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ours {
    /// Starts the service for `config` in `side`, listening on `listen`; `setup` runs first on
    /// its thread (e.g. to pin it to a CPU).
    pub(crate) fn start(
        net: &NetPair,
        side: Side,
        listen: &str,
        setup: impl FnOnce() + Send + 'static,
        config: Config,
    ) -> Self {
        let ns = std::fs::File::open(format!("/run/netns/{}", net.ns(side))).unwrap();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (tx, rx) = std::sync::mpsc::channel();
        let opts = IkeServiceOptions {
            config,
            listen: vec![listen.parse().unwrap()],
            start: Vec::new(),
            retry: Duration::from_secs(1),
        };
        let thread = std::thread::spawn(move || {
            setup();
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (h, task) = ippm_net::ike::start(opts, stop_rx).await.unwrap();
                tx.send(h).unwrap();
                task.await.unwrap();
            });
        });
        Self {
            handle: rx
                .recv_timeout(Duration::from_secs(15))
                .expect("our IKE service starts"),
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Our connection `name` with the harness's identities (the initiator's when `initiator`):
/// PSK without a PKI, else that PKI's certificates; to `remote` if given.
pub(crate) fn connection(
    name: &str,
    pki: Option<&Pki>,
    initiator: bool,
    proposal: &str,
    remote: Option<&str>,
) -> Connection {
    let (local, peer) = match (pki.is_some(), initiator) {
        (false, true) => (PSK_ID_INITIATOR, PSK_ID_RESPONDER),
        (false, false) => (PSK_ID_RESPONDER, PSK_ID_INITIATOR),
        (true, true) => (CERT_ID_INITIATOR, CERT_ID_RESPONDER),
        (true, false) => (CERT_ID_RESPONDER, CERT_ID_INITIATOR),
    };
    let (local_auth, remote_auth) = match pki {
        None => {
            let k = Psk::new(PSK.as_bytes().to_vec());
            (LocalAuth::Psk(k.clone()), RemoteAuth::Psk(k))
        }
        Some(pki) => {
            let me = if initiator {
                &pki.initiator
            } else {
                &pki.responder
            };
            let cred = LocalCredential::load(&[me.cert.as_path()], &me.key).unwrap();
            let store = TrustStore::load(&[pki.ca_cert.as_path()]).unwrap();
            (
                LocalAuth::Cert(Arc::new(cred)),
                RemoteAuth::Cert(Arc::new(store)),
            )
        }
    };
    Connection {
        name: name.into(),
        local_id: Identity::parse(local).unwrap(),
        remote_id: Some(Identity::parse(peer).unwrap()),
        local_auth,
        remote_auth,
        remote_addr: remote.map(|r| r.parse().unwrap()),
        proposals: vec![IkeProposal::parse(proposal).unwrap()],
    }
}
