//! Against strongSwan 5.9.8 (recorded with the reference harness; see tests/data/README.md):
//! every captured IKE message parses and re-emits byte for byte, and RFC 7717's
//! prf(SK_d, "IPPM") derived from charon's logged nonces, SPIs and g^ir equals the value
//! computed from the SK_d charon logged. (The unit tests in src/keys.rs compare all seven
//! keys; SK_d itself is not visible outside the crate.)

use ippm_ike::Message;
use ippm_ike::keys::{Contributions, IkeKeys, KeyLengths, Prf};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.trim()).unwrap()
}

#[test]
fn every_captured_message_round_trips() {
    let mut n = 0;
    let mut files: Vec<_> = std::fs::read_dir(DATA)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for p in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "hex"))
    {
        // "# comment" lines, then hex that may be wrapped.
        let text = std::fs::read_to_string(p).unwrap();
        let hexdigits: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .flat_map(|l| l.chars().filter(|c| c.is_ascii_hexdigit()))
            .collect();
        let b = h(&hexdigits);
        let m = Message::parse(&b).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(m.emit().unwrap(), b, "{}", p.display());
        n += 1;
    }
    assert_eq!(n, 20);
}

#[test]
fn keys_match_charons() {
    let text = std::fs::read_to_string(format!("{DATA}/ike_sa_keys.txt")).unwrap();
    let mut n = 0;
    for line in text.lines().filter(|l| l.starts_with("ike_sa=")) {
        let f = |k: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("{k} missing in {line}"))
                .to_owned()
        };
        assert_eq!(f("prf"), "sha256");
        let (ni, nr, g_ir) = (h(&f("ni")), h(&f("nr")), h(&f("g_ir")));
        let spi_i: [u8; 8] = h(&f("spi_i")).try_into().unwrap();
        let spi_r: [u8; 8] = h(&f("spi_r")).try_into().unwrap();
        let c = Contributions {
            ni: &ni,
            nr: &nr,
            g_ir: &g_ir,
            spi_i: &spi_i,
            spi_r: &spi_r,
        };
        // AES_CBC_128 / HMAC_SHA2_256_128 / PRF_HMAC_SHA2_256.
        let k = IkeKeys::derive(
            Prf::HmacSha256,
            c,
            KeyLengths {
                encr: 16,
                integ: 32,
            },
        )
        .unwrap();
        assert_eq!(k.ippm_secret().as_slice(), h(&f("ippm_secret")), "{line}");
        n += 1;
    }
    assert!(n >= 3, "{n} SAs");
}
