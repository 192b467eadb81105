//! Every OWAMP-Control parser on arbitrary bytes, with the framing function the state
//! machines use: no panic; `required_len` never asks for less than what `parse` needs; what
//! parses re-emits and parses back to the same value.
#![no_main]

use ippm_proto::wire::owamp::{
    self, AcceptSessionRepr, DataRecord, FetchAckRepr, FetchSessionRepr, RequestSessionRepr,
    StartAckRepr, StartSessionsRepr, StopSessionsRepr,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(need) = RequestSessionRepr::required_len(data) {
        if let Ok(r) = RequestSessionRepr::parse(data) {
            assert_eq!(need, data.len());
            let out = r.to_vec();
            assert_eq!(out.len(), need);
            assert_eq!(RequestSessionRepr::parse(&out).unwrap(), r);
        }
        if data.len() >= need {
            let _ = RequestSessionRepr::parse(&data[..need]);
        }
    }
    if let Ok(need) = StopSessionsRepr::required_len(data) {
        if let Ok(r) = StopSessionsRepr::parse(data) {
            assert_eq!(need, data.len());
            let out = r.to_vec();
            assert_eq!(StopSessionsRepr::parse(&out).unwrap(), r);
        }
        if data.len() >= need {
            let _ = StopSessionsRepr::parse(&data[..need]);
        }
    }
    if let Ok(r) = AcceptSessionRepr::parse(data) {
        assert_eq!(AcceptSessionRepr::parse(&r.to_vec()).unwrap(), r);
    }
    if let Ok(r) = StartSessionsRepr::parse(data) {
        assert_eq!(StartSessionsRepr::parse(&r.to_vec()).unwrap(), r);
    }
    if let Ok(r) = StartAckRepr::parse(data) {
        assert_eq!(StartAckRepr::parse(&r.to_vec()).unwrap(), r);
    }
    if let Ok(r) = FetchSessionRepr::parse(data) {
        assert_eq!(FetchSessionRepr::parse(&r.to_vec()).unwrap(), r);
    }
    if let Ok(r) = FetchAckRepr::parse(data) {
        assert_eq!(FetchAckRepr::parse(&r.to_vec()).unwrap(), r);
    }
    if let Some((&n, rest)) = data.split_first() {
        let n = u32::from(n);
        if let Ok(ranges) = owamp::parse_skip_ranges(rest, n) {
            assert_eq!(owamp::emit_skip_ranges(&ranges).len(), rest.len());
        }
        if let Ok(records) = owamp::parse_records(rest, n) {
            let out = owamp::emit_records(&records);
            assert_eq!(owamp::parse_records(&out, n).unwrap(), records);
        }
    }
    if let Ok(r) = DataRecord::parse(data) {
        let mut out = [0u8; DataRecord::LEN];
        r.emit(&mut out).unwrap();
        assert_eq!(out[..], data[..DataRecord::LEN]);
    }
});
