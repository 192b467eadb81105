//! The SK payload (RFC 7296 §3.14, RFC 5282) under arbitrary input: no panic in `open`, and
//! what opens or seals comes back the same.
//!
//! The first octet selects the suite (bits 0-2: the eight suites; suite 0 uses the keys
//! charon logged for the captured "psk" IKE SA, so the seeds, cut from
//! crates/ippm-ike/tests/data, pass the ICV; bit 3: the responder's SK_er/SK_ar instead of
//! SK_ei/SK_ai) and the mode (bit 4):
//! * 0: the rest is a datagram to `open`; if it opens, sealing the opened payloads again
//!   with the same IV opens to the same result.
//! * 1: the rest is a first payload type and an inner chain; if it parses, `seal` then
//!   `open` gives it back.
#![no_main]

use ippm_ike::Message;
use ippm_ike::codepoints::{ExchangeType, PayloadType};
use ippm_ike::message::{Flags, Header, Payload, parse_chain};
use ippm_ike::sk::{Encr, Integ, SkKeys, Suite, open, seal};
use libfuzzer_sys::fuzz_target;

const SUITES: [Suite; 8] = [
    Suite {
        encr: Encr::AesCbc128,
        integ: Some(Integ::HmacSha2_256_128),
    },
    Suite {
        encr: Encr::AesCbc128,
        integ: Some(Integ::HmacSha2_384_192),
    },
    Suite {
        encr: Encr::AesCbc128,
        integ: Some(Integ::HmacSha2_512_256),
    },
    Suite {
        encr: Encr::AesCbc256,
        integ: Some(Integ::HmacSha2_256_128),
    },
    Suite {
        encr: Encr::AesCbc256,
        integ: Some(Integ::HmacSha2_384_192),
    },
    Suite {
        encr: Encr::AesCbc256,
        integ: Some(Integ::HmacSha2_512_256),
    },
    Suite {
        encr: Encr::AesGcm16_128,
        integ: None,
    },
    Suite {
        encr: Encr::AesGcm16_256,
        integ: None,
    },
];

/// tests/data/ike_sa_keys.txt, ike_sa=1 (a throw-away test SA): SK_ei, SK_ai, SK_er, SK_ar.
const SS_EI: &str = "6ebe50b897ae411bfcd83420df0193a9";
const SS_AI: &str = "a28c70d13f64af6df886cde426d7ce40f9eb052ee4afb775edfa2c17fd17a392";
const SS_ER: &str = "7daeaeb80884c35845d06a5613a3db6e";
const SS_AR: &str = "6f37dcbb02592778f3e1026f1c886c6fbe0ed464357132473d2c43d5d7521e62";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn keys(sel: u8) -> SkKeys {
    let suite = SUITES[usize::from(sel & 7)];
    let responder = sel & 8 != 0;
    let (e, a) = if sel & 7 == 0 {
        if responder {
            (unhex(SS_ER), unhex(SS_AR))
        } else {
            (unhex(SS_EI), unhex(SS_AI))
        }
    } else {
        let l = suite.key_lengths();
        let seed = if responder { 0x80 } else { 0 };
        (
            (0..l.encr).map(|i| seed ^ i as u8).collect(),
            (0..l.integ).map(|i| seed ^ 0x40 ^ i as u8).collect(),
        )
    };
    SkKeys::new(suite, &e, &a).expect("key lengths fit the suite")
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let keys = keys(sel);
    if sel & 0x10 == 0 {
        if let Ok(o) = open(&keys, rest) {
            let m = Message::parse(rest).expect("an opened message parses");
            let Some(Payload::Sk { body, .. }) = m.payloads.last() else {
                panic!("an opened message ends with SK");
            };
            let iv = &body[..keys.iv_len()];
            let again = seal(&keys, &o.header, &o.clear, &o.inner, iv).expect("re-seals");
            assert_eq!(open(&keys, &again).expect("re-opens"), o);
        }
    } else if let Some((&first, chain)) = rest.split_first() {
        if let Ok(inner) = parse_chain(PayloadType(first), chain) {
            let header = Header {
                spi_i: [1; 8],
                spi_r: [2; 8],
                exchange: ExchangeType::IKE_AUTH,
                flags: Flags(Flags::INITIATOR),
                message_id: 1,
            };
            let iv = vec![0x5a; keys.iv_len()];
            if let Ok(b) = seal(&keys, &header, &[], &inner, &iv) {
                let o = open(&keys, &b).expect("a sealed message opens");
                assert_eq!(o.header, header);
                assert_eq!(o.inner, inner);
                assert!(o.clear.is_empty());
            }
        }
    }
});
