//! STAMP (RFC 8762, RFC 8972) on arbitrary bytes: the base-packet parsers, the TLV iterator
//! and every TLV parser, the reflector (`reflect_layout` then `seal`) and the sender's
//! `open_reflected`, in both modes, with and without a key, stateful and stateless. No panic;
//! what parses re-emits to the same fields; an accepted packet's reply has the sender's size
//! (or the base size), parses as a reflector packet and, once sealed, opens.
#![no_main]

use ippm_proto::stamp::{self, ReflectorConfig, ReflectorTlvInputs, Received, StampKey};
use ippm_proto::wire::stamp::{ReflectorRepr, SenderRepr, StampMode};
use ippm_proto::wire::stamp_tlv::{TlvFlags, TlvRepr, Tlvs};
use ippm_proto::{ErrorEstimate, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, pkt)) = data.split_first() else {
        return;
    };
    let mode = if sel & 1 == 0 {
        StampMode::Unauthenticated
    } else {
        StampMode::Authenticated
    };
    let key = StampKey::new(b"ippm fuzz STAMP key").unwrap();
    let key = (sel & 2 != 0).then_some(&key);

    if let Ok(r) = SenderRepr::parse(pkt, mode) {
        let mut out = pkt.to_vec();
        r.emit(&mut out, mode).unwrap();
        assert_eq!(SenderRepr::parse(&out, mode).unwrap(), r);
    }
    if let Ok(r) = ReflectorRepr::parse(pkt, mode) {
        let mut out = pkt.to_vec();
        r.emit(&mut out, mode).unwrap();
        assert_eq!(ReflectorRepr::parse(&out, mode).unwrap(), r);
    }
    let _ = SenderRepr::parse_twamp_light(pkt);

    // The whole input as a TLV area too, so TLV contents are reached without a base packet.
    for t in Tlvs::new(pkt).flatten() {
        if let Ok(r) = TlvRepr::parse(&t) {
            let mut out = vec![0u8; r.buffer_len()];
            assert_eq!(r.emit(&mut out, t.flags).unwrap(), t.len());
            let again = Tlvs::new(&out).next().unwrap().unwrap();
            assert_eq!(TlvRepr::parse(&again).unwrap(), r);
            assert_eq!(again.flags, TlvFlags(t.flags.0));
        }
    }

    let cfg = ReflectorConfig {
        mode,
        key,
        extensions: sel & 4 != 0,
        error_estimate: ErrorEstimate::from_bits(0x0001),
    };
    let rx = Received {
        packet: pkt,
        receive_time: Timestamp::from_bits(0xe3a1_b2c3_0000_0000),
        ttl: (sel & 8 != 0).then_some(sel),
        dscp: sel >> 2,
        ecn: sel & 3,
    };
    let inputs = ReflectorTlvInputs {
        counters: Some((1, 2)),
        permitted_dscp: u64::from(sel).wrapping_mul(0x0101_0101_0101_0101),
        ..Default::default()
    };
    let seq = (sel & 16 != 0).then_some(u32::from(sel));
    let mut tx = vec![0u8; pkt.len().max(mode.base_len())];
    if let Ok(r) = stamp::reflect_layout(&cfg, &rx, seq, &inputs, &mut tx) {
        assert_eq!(r.sealing.len, pkt.len().max(mode.base_len()));
        ReflectorRepr::parse(&tx, mode).unwrap();
        if stamp::seal(&mut tx, &r.sealing, key, Timestamp::from_bits(7)).is_ok() {
            let got = stamp::open_reflected(&tx, mode, key).unwrap();
            assert_eq!(got.repr.timestamp, Timestamp::from_bits(7));
            let _ = got.usable_tlvs().count();
        }
    }
    if let Ok(got) = stamp::open_reflected(pkt, mode, key) {
        for t in got.usable_tlvs() {
            let _ = TlvRepr::parse(&t);
        }
    }
});
