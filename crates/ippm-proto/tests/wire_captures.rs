//! Golden bytes from perfSONAR: every control message of every capture (plaintext for the
//! protected modes) parses to the decoded field values in `vectors.json`, re-emits to the same
//! octets with the HMAC fields masked (they are the crypto layer's), and every prefix of it
//! fails with `Truncated`.

use ippm_proto::schedule::Slot;
use ippm_proto::wire::owamp::{
    self, AcceptSessionRepr, FetchAckRepr, FetchSessionRepr, RequestSessionRepr, StartAckRepr,
    StartSessionsRepr, StopSessionsRepr,
};
use ippm_proto::wire::setup::{ServerGreetingRepr, ServerStartRepr, SetUpResponseRepr};
use ippm_proto::wire::twamp::{RequestTwSessionRepr, TwStopSessionsRepr};
use ippm_proto::{Accept, Modes, WireError};
use serde_json::Value;

mod common;
use common::{hex, vectors};

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

/// Zeroes the HMAC fields of a message, as `emit` leaves them.
fn mask(mut b: Vec<u8>, offsets: &[usize]) -> Vec<u8> {
    for &o in offsets {
        b[o..o + 16].fill(0);
    }
    b
}

/// Parses and re-emits one message; returns how many fields were checked.
fn check(protocol: &str, name: &str, b: &[u8], f: &Value, ctx: &str) -> usize {
    let ts = |v: &Value| u64::from_str_radix(v["hex"].as_str().unwrap(), 16).unwrap();
    let last = b.len().saturating_sub(16);
    let (emitted, offsets): (Vec<u8>, Vec<usize>) = match name {
        "Server-Greeting" => {
            let r = ServerGreetingRepr::parse(b).unwrap();
            assert_eq!(r.modes, Modes(u(&f["modes"]) as u32), "{ctx}");
            assert_eq!(r.count as u64, u(&f["count"]), "{ctx}");
            assert_eq!(r.salt.to_vec(), hex(&f["salt_hex"]), "{ctx}");
            assert_eq!(r.challenge.to_vec(), hex(&f["challenge_hex"]), "{ctx}");
            (r.to_vec(), vec![])
        }
        "Set-Up-Response" => {
            let r = SetUpResponseRepr::parse(b).unwrap();
            assert_eq!(r.mode, Modes(u(&f["mode"]) as u32), "{ctx}");
            assert_eq!(r.key_id.0.to_vec(), hex(&f["keyid_hex"]), "{ctx}");
            assert_eq!(r.client_iv.to_vec(), hex(&f["client_iv_hex"]), "{ctx}");
            (r.to_vec(), vec![])
        }
        "Server-Start" => {
            let r = ServerStartRepr::parse(b).unwrap();
            assert_eq!(r.accept, Accept::from(u(&f["accept"]) as u8), "{ctx}");
            assert_eq!(r.server_iv.to_vec(), hex(&f["server_iv_hex"]), "{ctx}");
            assert_eq!(r.start_time.to_bits(), ts(&f["start_time"]), "{ctx}");
            (r.to_vec(), vec![])
        }
        "Request-TW-Session" => {
            let r = RequestTwSessionRepr::parse(b).unwrap();
            assert_eq!(r.sender_port as u64, u(&f["sender_port"]), "{ctx}");
            assert_eq!(r.receiver_port as u64, u(&f["receiver_port"]), "{ctx}");
            assert_eq!(
                r.sender_address.to_string(),
                f["sender_address"].as_str().unwrap()
            );
            assert_eq!(
                r.receiver_address.to_string(),
                f["receiver_address"].as_str().unwrap()
            );
            assert_eq!(r.padding_length as u64, u(&f["padding_length"]), "{ctx}");
            assert_eq!(r.start_time.to_bits(), ts(&f["start_time"]), "{ctx}");
            assert_eq!(r.timeout, ts(&f["timeout"]), "{ctx}");
            assert_eq!(
                r.type_p.0.to_be_bytes().to_vec(),
                hex(&f["type_p_hex"]),
                "{ctx}"
            );
            (r.to_vec(), vec![RequestTwSessionRepr::HMAC_OFFSET])
        }
        n if n.contains("Request-Session") => {
            let r = RequestSessionRepr::parse(b).unwrap();
            assert_eq!(RequestSessionRepr::required_len(&b[..8]).unwrap(), b.len());
            assert_eq!(r.conf_sender as u64, u(&f["conf_sender"]), "{ctx}");
            assert_eq!(r.conf_receiver as u64, u(&f["conf_receiver"]), "{ctx}");
            assert_eq!(r.num_packets as u64, u(&f["num_packets"]), "{ctx}");
            assert_eq!(r.sender_port as u64, u(&f["sender_port"]), "{ctx}");
            assert_eq!(r.receiver_port as u64, u(&f["receiver_port"]), "{ctx}");
            assert_eq!(r.sid.to_vec(), hex(&f["sid_hex"]), "{ctx}");
            assert_eq!(r.start_time.to_bits(), ts(&f["start_time"]), "{ctx}");
            assert_eq!(r.timeout, ts(&f["timeout"]), "{ctx}");
            let slots = f["slots"].as_array().unwrap();
            assert_eq!(r.slots.len(), slots.len());
            for (s, j) in r.slots.iter().zip(slots) {
                let p = ts(&j["parameter"]);
                match u(&j["slot_type"]) {
                    0 => assert_eq!(*s, Slot::Exponential(p)),
                    _ => assert_eq!(*s, Slot::Fixed(p)),
                }
            }
            (
                r.to_vec(),
                RequestSessionRepr::hmac_offsets(b.len()).to_vec(),
            )
        }
        "Accept-Session" => {
            let r = AcceptSessionRepr::parse(b).unwrap();
            assert_eq!(r.accept, Accept::from(u(&f["accept"]) as u8), "{ctx}");
            assert_eq!(r.port as u64, u(&f["port"]), "{ctx}");
            assert_eq!(r.sid.to_vec(), hex(&f["sid_hex"]), "{ctx}");
            (r.to_vec(), vec![AcceptSessionRepr::HMAC_OFFSET])
        }
        "Start-Sessions" => {
            let r = StartSessionsRepr::parse(b).unwrap();
            (r.to_vec(), vec![StartSessionsRepr::HMAC_OFFSET])
        }
        "Start-Ack" => {
            let r = StartAckRepr::parse(b).unwrap();
            assert_eq!(r.accept, Accept::from(u(&f["accept"]) as u8), "{ctx}");
            (r.to_vec(), vec![StartAckRepr::HMAC_OFFSET])
        }
        "Stop-Sessions" if protocol == "TWAMP" => {
            let r = TwStopSessionsRepr::parse(b).unwrap();
            assert_eq!(r.num_sessions as u64, u(&f["num_sessions"]), "{ctx}");
            (r.to_vec(), vec![TwStopSessionsRepr::HMAC_OFFSET])
        }
        "Stop-Sessions" => {
            let r = StopSessionsRepr::parse(b).unwrap();
            assert_eq!(StopSessionsRepr::required_len(b).unwrap(), b.len());
            let sessions = f["sessions"].as_array().unwrap();
            assert_eq!(r.sessions.len() as u64, u(&f["num_sessions"]), "{ctx}");
            for (s, j) in r.sessions.iter().zip(sessions) {
                assert_eq!(s.sid.to_vec(), hex(&j["sid_hex"]), "{ctx}");
                assert_eq!(s.next_seqno as u64, u(&j["next_seqno"]), "{ctx}");
                assert_eq!(
                    s.skip_ranges.len() as u64,
                    u(&j["num_skip_ranges"]),
                    "{ctx}"
                );
            }
            (r.to_vec(), vec![last])
        }
        "Fetch-Session" => {
            let r = FetchSessionRepr::parse(b).unwrap();
            assert_eq!(r.begin_seq as u64, u(&f["begin_seq"]), "{ctx}");
            assert_eq!(r.end_seq as u64, u(&f["end_seq"]), "{ctx}");
            assert_eq!(r.sid.to_vec(), hex(&f["sid_hex"]), "{ctx}");
            (r.to_vec(), vec![FetchSessionRepr::HMAC_OFFSET])
        }
        "Fetch-Ack" => {
            let r = FetchAckRepr::parse(b).unwrap();
            assert_eq!(r.finished as u64, u(&f["finished"]), "{ctx}");
            assert_eq!(r.next_seqno as u64, u(&f["next_seqno"]), "{ctx}");
            assert_eq!(r.num_records as u64, u(&f["num_records"]), "{ctx}");
            (r.to_vec(), vec![FetchAckRepr::HMAC_OFFSET])
        }
        n if n.contains("skip ranges") => {
            let n_ranges = f["skip_ranges"].as_array().unwrap().len() as u32;
            let r = owamp::parse_skip_ranges(b, n_ranges).unwrap();
            (owamp::emit_skip_ranges(&r), vec![last])
        }
        n if n.contains("packet records") => {
            let recs = f["records"].as_array().unwrap();
            let r = owamp::parse_records(b, recs.len() as u32).unwrap();
            for (rec, j) in r.iter().zip(recs) {
                assert_eq!(rec.seq as u64, u(&j["seq"]), "{ctx}");
                assert_eq!(rec.send_time.to_bits(), ts(&j["send_ts"]), "{ctx}");
                assert_eq!(rec.recv_time.to_bits(), ts(&j["recv_ts"]), "{ctx}");
                assert_eq!(
                    rec.send_error.to_bits() as u64,
                    u64::from_str_radix(j["send_err"]["hex"].as_str().unwrap(), 16).unwrap()
                );
                assert_eq!(rec.ttl as u64, u(&j["ttl"]), "{ctx}");
                assert!(!rec.is_lost());
            }
            (owamp::emit_records(&r), vec![last])
        }
        other => panic!("{ctx}: no parser for {other}"),
    };
    assert_eq!(
        ::hex::encode(&emitted),
        ::hex::encode(mask(b.to_vec(), &offsets)),
        "{ctx}: re-emit"
    );
    // Every shorter prefix is a typed truncation, never a panic or a wrong parse.
    for n in 0..b.len() {
        let r: Result<(), WireError> = match name {
            "Server-Greeting" => ServerGreetingRepr::parse(&b[..n]).map(drop),
            "Set-Up-Response" => SetUpResponseRepr::parse(&b[..n]).map(drop),
            "Server-Start" => ServerStartRepr::parse(&b[..n]).map(drop),
            "Request-TW-Session" => RequestTwSessionRepr::parse(&b[..n]).map(drop),
            n2 if n2.contains("Request-Session") => RequestSessionRepr::parse(&b[..n]).map(drop),
            "Accept-Session" => AcceptSessionRepr::parse(&b[..n]).map(drop),
            "Start-Sessions" => StartSessionsRepr::parse(&b[..n]).map(drop),
            "Start-Ack" => StartAckRepr::parse(&b[..n]).map(drop),
            "Stop-Sessions" if protocol == "TWAMP" => TwStopSessionsRepr::parse(&b[..n]).map(drop),
            "Stop-Sessions" => StopSessionsRepr::parse(&b[..n]).map(drop),
            "Fetch-Session" => FetchSessionRepr::parse(&b[..n]).map(drop),
            "Fetch-Ack" => FetchAckRepr::parse(&b[..n]).map(drop),
            n2 if n2.contains("skip ranges") => owamp::parse_skip_ranges(&b[..n], 0).map(drop),
            _ => owamp::parse_records(&b[..n], 5).map(drop),
        };
        assert!(
            matches!(r, Err(WireError::Truncated(_))),
            "{ctx}: prefix {n}: {r:?}"
        );
    }
    1
}

#[test]
fn every_captured_control_message() {
    let v = vectors();
    let mut checked = 0;
    for c in v["captures"].as_array().unwrap() {
        let file = c["file"].as_str().unwrap();
        let protocol = c["protocol"].as_str().unwrap();
        for m in c["control_messages"].as_array().unwrap() {
            let name = m["name"].as_str().unwrap();
            let plain = hex(m.get("plaintext_hex").unwrap_or_else(|| &m["raw_hex"]));
            let ctx = format!("{file} {} {name}", m["direction"]);
            checked += check(protocol, name, &plain, &m["fields"], &ctx);
            // Open mode: the wire bytes are the plaintext, HMAC fields all zero.
            if m.get("plaintext_hex").is_none() {
                assert_eq!(plain, hex(&m["raw_hex"]));
            }
        }
    }
    // 10 captures: 7 TWAMP x 8 (less 5 for the refused one) + 3 OWAMP x 16.
    assert_eq!(checked, 7 * 8 - 5 + 3 * 16);
}

#[test]
fn type_p_dscp_as_perfsonar_sends_it() {
    // twamp-auth-pad100-dscp46.pcap: -D 46 is sent as 2e000000.
    let v = vectors();
    let c = v["captures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["file"] == "twamp-auth-pad100-dscp46.pcap")
        .unwrap();
    let m = c["control_messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "Request-TW-Session")
        .unwrap();
    let r = RequestTwSessionRepr::parse(&hex(&m["plaintext_hex"])).unwrap();
    assert_eq!(r.type_p.0, 0x2e00_0000);
    assert_eq!(r.type_p.dscp(), Some(46));
    assert_eq!(r.padding_length, 100);
}
