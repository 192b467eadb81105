//! Message builders shared by the integration tests.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use ippm_proto::schedule::Slot;
use ippm_proto::session::FetchReply;
use ippm_proto::wire::owamp::{
    DataRecord, FetchSessionRepr, RequestSessionRepr, SkipRange, StopSession, StopSessionsRepr,
    TypeP,
};
use ippm_proto::wire::twamp::RequestTwSessionRepr;
use ippm_proto::{Accept, ErrorEstimate, Timestamp};
use serde_json::Value;

/// The decoded perfSONAR captures.
pub(crate) fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/captures/vectors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A hex string field as octets.
pub(crate) fn hex(v: &Value) -> Vec<u8> {
    ::hex::decode(v.as_str().unwrap()).unwrap()
}

/// A hex string field as a fixed-size array.
pub(crate) fn arr<const N: usize>(v: &Value) -> [u8; N] {
    hex(v).try_into().unwrap()
}

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub(crate) fn twamp_request(port: u16, padding: u32) -> RequestTwSessionRepr {
    RequestTwSessionRepr {
        sender_port: port,
        receiver_port: port,
        sender_address: LOCAL,
        receiver_address: LOCAL,
        padding_length: padding,
        start_time: Timestamp::new(0xeeae_1680, 0x9161_9115),
        timeout: 0x0000_0002_0056_81ed,
        type_p: TypeP::from_dscp(46),
        octets_to_reflect: 0,
        padding_to_reflect: 0,
    }
}

pub(crate) fn twamp_request_bytes() -> Vec<u8> {
    twamp_request(7000, 64).to_vec()
}

/// An OWAMP Request-Session; `server_sends` sets Conf-Sender, else Conf-Receiver.
pub(crate) fn owamp_request(
    server_sends: bool,
    port: u16,
    packets: u32,
    slots: usize,
) -> RequestSessionRepr {
    RequestSessionRepr {
        conf_sender: server_sends,
        conf_receiver: !server_sends,
        num_packets: packets,
        sender_port: if server_sends { 0 } else { port },
        receiver_port: if server_sends { port } else { 0 },
        sender_address: LOCAL,
        receiver_address: LOCAL,
        sid: if server_sends { [0x5a; 16] } else { [0; 16] },
        padding_length: 0,
        start_time: Timestamp::new(0xeeae_16a1, 0x19c1_5096),
        timeout: 0x0000_0002_0053_6d65,
        type_p: TypeP(0),
        slots: (0..slots)
            .map(|i| {
                if i % 2 == 0 {
                    Slot::Exponential(0x1999_99a0)
                } else {
                    Slot::Fixed(0x0100_0000)
                }
            })
            .collect(),
    }
}

pub(crate) fn client_stop(sid: [u8; 16], next_seqno: u32) -> StopSessionsRepr {
    StopSessionsRepr {
        accept: Accept::Ok,
        sessions: vec![StopSession {
            sid,
            next_seqno,
            skip_ranges: vec![SkipRange { first: 2, last: 3 }],
        }],
    }
}

pub(crate) fn fetch_repr(sid: [u8; 16], begin: u32, end: u32) -> FetchSessionRepr {
    FetchSessionRepr {
        sid,
        begin_seq: begin,
        end_seq: end,
    }
}

pub(crate) fn fetch_bytes(sid: [u8; 16]) -> Vec<u8> {
    fetch_repr(sid, 0, u32::MAX).to_vec()
}

pub(crate) fn fetch_reply(req: &RequestSessionRepr, n: u32) -> FetchReply {
    let base = Timestamp::new(0xeeae_16a1, 0);
    FetchReply {
        finished: true,
        next_seqno: n,
        request: req.clone(),
        skip_ranges: vec![SkipRange { first: 2, last: 3 }],
        records: (0..n)
            .filter(|s| !(2..=3).contains(s))
            .map(|seq| DataRecord {
                seq,
                send_error: ErrorEstimate::new(false, 0, 1),
                recv_error: ErrorEstimate::new(true, 3, 7),
                send_time: base + std::time::Duration::from_millis(u64::from(seq) * 10),
                recv_time: base + std::time::Duration::from_millis(u64::from(seq) * 10 + 1),
                ttl: 255 - seq as u8,
            })
            .collect(),
    }
}
