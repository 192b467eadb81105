//! Arbitrary bytes as the AlgorithmIdentifier of an RFC 7427 Digital Signature AUTH payload
//! (what a peer signing with RSASSA-PSS sends before its signature): no panic, and whatever
//! is accepted is one of the three SHA-2 hashes ippm verifies PSS with.
#![no_main]

use ippm_ike::auth::{HASH_SHA2_256, HASH_SHA2_384, HASH_SHA2_512, pss_algorithm};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(hash)) = pss_algorithm(data) {
        assert!([HASH_SHA2_256, HASH_SHA2_384, HASH_SHA2_512].contains(&hash));
    }
    // The AUTH data as a whole: a length octet, the identifier, the signature.
    if let Some((&len, rest)) = data.split_first() {
        if let Some((algid, _sig)) = rest.split_at_checked(usize::from(len)) {
            let _ = pss_algorithm(algid);
        }
    }
});
