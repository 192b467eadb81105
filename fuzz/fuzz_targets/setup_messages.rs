//! Server Greeting, Set-Up-Response and Server-Start parsers on arbitrary bytes: no panic, and
//! whatever parses re-emits to the same bytes (these layouts have no ignored fields except
//! MBZ, which is compared masked).
#![no_main]

use ippm_proto::wire::setup::{ServerGreetingRepr, ServerStartRepr, SetUpResponseRepr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = ServerGreetingRepr::parse(data) {
        let out = g.to_vec();
        assert_eq!(ServerGreetingRepr::parse(&out).unwrap(), g);
        assert_eq!(out[12..52], data[12..52]);
    }
    if let Ok(s) = SetUpResponseRepr::parse(data) {
        let out = s.to_vec();
        assert_eq!(out[..], data[..SetUpResponseRepr::LEN]);
        let _ = (s.key_id.identity(), s.key_id.spis());
    }
    if let Ok(s) = ServerStartRepr::parse(data) {
        let out = s.to_vec();
        assert_eq!(ServerStartRepr::parse(&out).unwrap(), s);
        assert_eq!(out[15..40], data[15..40]);
    }
});
