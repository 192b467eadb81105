//! Arbitrary bytes as an IKEv2 message and as a payload chain: no panic, and whatever parses
//! re-emits and parses back to the same message.
#![no_main]

use ippm_ike::Message;
use ippm_ike::codepoints::PayloadType;
use ippm_ike::message::parse_chain;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        let out = m.emit().expect("a parsed message re-emits");
        assert_eq!(Message::parse(&out).expect("re-parses"), m);
    }
    if let Some((&first, rest)) = data.split_first() {
        let _ = parse_chain(PayloadType(first), rest);
    }
});
