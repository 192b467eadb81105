//! Reading and building payloads: the small look-ups every exchange needs.

use crate::auth::Identity;
use crate::codepoints::{AuthMethod, NotifyType, ProtocolId};
use crate::dh::DhGroup;
use crate::message::{Payload, Proposal};
use crate::proposal::IkeProposal;

/// CERT encoding: X.509 Certificate - Signature (RFC 7296 §3.6).
pub(super) const CERT_X509_SIGNATURE: u8 = 4;

pub(super) fn notify(ty: NotifyType, data: Vec<u8>) -> Payload {
    Payload::Notify {
        protocol: ProtocolId(0),
        spi: Vec::new(),
        ty,
        data,
    }
}

pub(super) fn find_notify(payloads: &[Payload], ty: NotifyType) -> Option<&[u8]> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify { ty: t, data, .. } if *t == ty => Some(data.as_slice()),
        _ => None,
    })
}

pub(super) fn first_error(payloads: &[Payload]) -> Option<NotifyType> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify { ty, .. } if ty.is_error() => Some(*ty),
        _ => None,
    })
}

pub(super) fn nonce(payloads: &[Payload]) -> Option<&[u8]> {
    payloads.iter().find_map(|p| match p {
        Payload::Nonce(n) => Some(n.as_slice()),
        _ => None,
    })
}

pub(super) fn ke(payloads: &[Payload]) -> Option<(u16, &[u8])> {
    payloads.iter().find_map(|p| match p {
        Payload::Ke { group, data } => Some((*group, data.as_slice())),
        _ => None,
    })
}

pub(super) fn sa_payload(payloads: &[Payload]) -> Option<&[Proposal]> {
    payloads.iter().find_map(|p| match p {
        Payload::Sa(props) => Some(props.as_slice()),
        _ => None,
    })
}

pub(super) fn id_payload(
    payloads: &[Payload],
    initiator: bool,
) -> Option<Result<Identity, String>> {
    payloads.iter().find_map(|p| match p {
        Payload::Id {
            initiator: i,
            ty,
            data,
        } if *i == initiator => Some(Identity::from_payload(*ty, data).map_err(|e| e.to_string())),
        _ => None,
    })
}

pub(super) fn certs(payloads: &[Payload]) -> Vec<Vec<u8>> {
    payloads
        .iter()
        .filter_map(|p| match p {
            Payload::Cert { encoding, data } if *encoding == CERT_X509_SIGNATURE => {
                Some(data.clone())
            }
            _ => None,
        })
        .collect()
}

pub(super) fn auth_payload(payloads: &[Payload]) -> Option<(AuthMethod, &[u8])> {
    payloads.iter().find_map(|p| match p {
        Payload::Auth { method, data } => Some((*method, data.as_slice())),
        _ => None,
    })
}

pub(super) fn id_to_payload(id: &Identity, initiator: bool) -> Payload {
    let (ty, data) = id.to_payload();
    Payload::Id {
        initiator,
        ty,
        data,
    }
}

/// The group an INVALID_KE_PAYLOAD notification asks for, if it is one we know.
pub(super) fn wanted_group(data: &[u8]) -> Option<DhGroup> {
    let id: [u8; 2] = data.try_into().ok()?;
    DhGroup::from_id(u16::from_be_bytes(id))
}

pub(super) fn sa_payload_ike(p: &[Payload]) -> Option<&[Proposal]> {
    sa_payload(p).filter(|props| props.iter().any(|x| x.protocol == ProtocolId::IKE))
}

pub(super) fn numbered(proposals: &[IkeProposal], spi: &[u8]) -> Vec<Proposal> {
    proposals
        .iter()
        .zip(1u8..)
        .map(|(p, n)| p.to_wire(n, spi))
        .collect()
}
