//! Our AUTH payload and the check of the peer's (RFC 7296 §2.15), for IKE_AUTH in either
//! role.

use std::time::SystemTime;

use crate::auth::{self, Identity};
use crate::codepoints::AuthMethod;
use crate::config::{Connection, LocalAuth, RemoteAuth};
use crate::message::Payload;

use super::api::Failure;
use super::payloads::{auth_payload, certs};
use super::sa::{Crypto, Reject, protocol};

pub(super) fn local_auth(
    conn: &Connection,
    octets: &[u8],
    crypto: &Crypto,
    peer_hashes: Option<&[u16]>,
) -> Result<(AuthMethod, Vec<u8>), Reject> {
    match &conn.local_auth {
        LocalAuth::Psk(psk) => Ok((
            AuthMethod::PSK,
            auth::psk_auth(crypto.proposal.prf, psk.octets(), octets).to_vec(),
        )),
        LocalAuth::Cert(cred) => cred
            .sign(octets, peer_hashes)
            .map_err(|e| Reject::Fail(Failure::Local(format!("signing AUTH: {e}")))),
    }
}

pub(super) fn verify_peer(
    conn: &Connection,
    crypto: &Crypto,
    id: &Identity,
    p: &[Payload],
    octets: &[u8],
    wall: SystemTime,
) -> Result<(), Reject> {
    let (method, data) = auth_payload(p).ok_or_else(|| protocol("no AUTH payload"))?;
    let authn = |s: String| Reject::Fail(Failure::Authentication(s));
    match &conn.remote_auth {
        RemoteAuth::Psk(psk) => {
            if method != AuthMethod::PSK {
                return Err(authn(format!(
                    "{method:?} where a pre-shared key is configured"
                )));
            }
            if !auth::psk_verify(crypto.proposal.prf, psk.octets(), octets, data) {
                return Err(authn("pre-shared key AUTH does not verify".into()));
            }
            Ok(())
        }
        RemoteAuth::Cert(store) => {
            let certs = certs(p);
            let (ee, rest) = certs
                .split_first()
                .ok_or_else(|| authn("no certificate".into()))?;
            store
                .verify_peer(ee, rest, id, method, data, octets, wall)
                .map_err(|e| authn(e.to_string()))
        }
    }
}
