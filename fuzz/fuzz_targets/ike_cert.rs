//! Arbitrary bytes as IKEv2 identities, SIGNATURE_HASH_ALGORITHMS data, private keys and a
//! CA + end-entity certificate pair run through the whole peer verification path (chain,
//! identity, AUTH signature): no panic, and identities that parse re-encode to themselves.
//!
//! Layout: method (1) | ID type (1) | CA length (2, big endian) | CA | EE length (2) | EE |
//! AUTH data. Shorter inputs still reach the identity, notify and key parsers.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use ippm_ike::auth::{Identity, PrivateKey, TrustStore, parse_hash_algorithms};
use ippm_ike::codepoints::{AuthMethod, IdType};
use libfuzzer_sys::fuzz_target;

fn take_u16_prefixed(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = data.split_first_chunk::<2>()?;
    rest.split_at_checked(usize::from(u16::from_be_bytes(*len)))
}

fuzz_target!(|data: &[u8]| {
    let Some((&[method, id_type], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    // Identities: payload form round-trips, configuration syntax re-reads.
    let ty = IdType(id_type);
    if let Ok(id) = Identity::from_payload(ty, rest) {
        assert_eq!(id.to_payload(), (ty, rest.to_vec()));
        let _ = id.to_string();
    }
    if let Ok(text) = std::str::from_utf8(rest) {
        if let Ok(id) = Identity::parse(text) {
            let (t, d) = id.to_payload();
            assert_eq!(Identity::from_payload(t, &d).expect("re-reads"), id);
            let _ = id.to_string();
        }
    }
    let _ = Identity::from_cert_subject(rest);
    let _ = parse_hash_algorithms(rest);
    let _ = PrivateKey::from_bytes(rest);

    // The verification path.
    let Some((ca, rest)) = take_u16_prefixed(rest) else {
        return;
    };
    let Some((ee, auth_data)) = take_u16_prefixed(rest) else {
        return;
    };
    let Ok(store) = TrustStore::from_der(vec![ca.to_vec()]) else {
        return;
    };
    let _ = store.certreq_data();
    let id = Identity::from_cert_subject(ee).unwrap_or(Identity::Fqdn("fuzz.example".into()));
    // 2025-06-01.
    let now = UNIX_EPOCH + Duration::from_secs(1_748_736_000);
    let octets = b"fuzzed AUTH octets";
    let _ = store.verify_peer(ee, &[], &id, AuthMethod(method), auth_data, octets, now);
    let _ = store.verify_peer(
        ee,
        &[ca.to_vec()],
        &id,
        AuthMethod(method),
        auth_data,
        octets,
        now,
    );
});
