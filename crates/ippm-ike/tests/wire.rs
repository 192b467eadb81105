//! IKEv2 wire formats: golden bytes assembled by hand from RFC 7296 §3 (field by field below),
//! truncation at every prefix, RFC 7296 §2.5's unknown-payload rules, bounds, and property
//! round trips.

use ippm_ike::codepoints::{
    AuthMethod, ExchangeType, IdType, NotifyType, PayloadType, ProtocolId, TransformType, transform,
};
use ippm_ike::message::{Attribute, Flags, Header, Proposal, Transform, parse_chain};
use ippm_ike::{Message, Payload, WireError};
use proptest::prelude::*;

/// An IKE_SA_INIT request as strongSwan's first default proposal would have it: AES-CBC-128,
/// PRF-HMAC-SHA2-256, HMAC-SHA2-256-128, X25519; KE, Nonce, CHILDLESS_IKEV2_SUPPORTED and
/// SIGNATURE_HASH_ALGORITHMS.
fn golden() -> Vec<u8> {
    let mut h = String::new();
    // IKE header: SPIi, SPIr 0, Next Payload SA (33), version 2.0, IKE_SA_INIT (34),
    // flags I, Message ID 0, Length 174.
    h += "0102030405060708";
    h += "0000000000000000";
    h += "21";
    h += "20";
    h += "22";
    h += "08";
    h += "00000000";
    h += "000000ae";
    // SA payload: next KE (34), not critical, length 48.
    h += "22000030";
    //   Proposal: last (0), length 44, #1, IKE, SPI size 0, 4 transforms.
    h += "0000002c";
    h += "01010004";
    //   ENCR AES_CBC (12) with Key Length (AF=1, type 14) 128.
    h += "0300000c";
    h += "0100000c";
    h += "800e0080";
    //   PRF HMAC_SHA2_256 (5).
    h += "03000008";
    h += "02000005";
    //   INTEG HMAC_SHA2_256_128 (12).
    h += "03000008";
    h += "0300000c";
    //   DH 31 (X25519), last.
    h += "00000008";
    h += "0400001f";
    // KE: next Nonce (40), length 40, group 31, reserved, 32 octets.
    h += "28000028";
    h += "001f0000";
    h += &"aa".repeat(32);
    // Nonce: next Notify (41), length 36, 32 octets.
    h += "29000024";
    h += &"bb".repeat(32);
    // Notify: next Notify, length 8, protocol 0, SPI size 0, CHILDLESS_IKEV2_SUPPORTED 16418.
    h += "29000008";
    h += "00004022";
    // Notify: last, length 14, SIGNATURE_HASH_ALGORITHMS 16431, SHA-256/384/512 (2, 3, 4).
    h += "0000000e";
    h += "0000402f";
    h += "000200030004";
    hex::decode(h).unwrap()
}

#[test]
fn golden_ike_sa_init() {
    let b = golden();
    assert_eq!(b.len(), 174);
    let m = Message::parse(&b).unwrap();
    assert_eq!(m.header.spi_i, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(m.header.exchange, ExchangeType::IKE_SA_INIT);
    assert!(m.header.flags.initiator() && !m.header.flags.response());
    assert_eq!(m.payloads.len(), 5);
    let Payload::Sa(props) = &m.payloads[0] else {
        panic!("{:?}", m.payloads[0])
    };
    assert_eq!(props.len(), 1);
    assert_eq!(props[0].protocol, ProtocolId::IKE);
    let t = &props[0].transforms;
    assert_eq!(
        (t[0].ty, t[0].id, t[0].key_length()),
        (TransformType::ENCR, transform::ENCR_AES_CBC, Some(128))
    );
    assert_eq!(
        (t[1].ty, t[1].id),
        (TransformType::PRF, transform::PRF_HMAC_SHA2_256)
    );
    assert_eq!(
        (t[2].ty, t[2].id),
        (TransformType::INTEG, transform::AUTH_HMAC_SHA2_256_128)
    );
    assert_eq!(
        (t[3].ty, t[3].id),
        (TransformType::DH, transform::DH_X25519)
    );
    assert_eq!(
        m.payloads[1],
        Payload::Ke {
            group: 31,
            data: vec![0xaa; 32]
        }
    );
    assert_eq!(m.payloads[2], Payload::Nonce(vec![0xbb; 32]));
    assert!(
        matches!(&m.payloads[3], Payload::Notify { ty: NotifyType::CHILDLESS_IKEV2_SUPPORTED, data, .. } if data.is_empty())
    );
    assert!(
        matches!(&m.payloads[4], Payload::Notify { ty: NotifyType::SIGNATURE_HASH_ALGORITHMS, data, .. } if data == &[0, 2, 0, 3, 0, 4])
    );
    assert_eq!(m.emit().unwrap(), b);
}

#[test]
fn every_prefix_is_a_typed_error() {
    let b = golden();
    for n in 0..b.len() {
        let r = Message::parse(&b[..n]);
        assert!(
            matches!(
                r,
                Err(WireError::Truncated(_)) | Err(WireError::InvalidLength { .. })
            ),
            "{n}: {r:?}"
        );
    }
    // The chain alone, cut anywhere inside a payload: truncated, never a panic.
    for n in 0..b.len() - 28 {
        let r = parse_chain(PayloadType::SA, &b[28..28 + n]);
        assert!(r.is_err(), "{n}: {r:?}");
    }
}

#[test]
fn unknown_payloads_follow_rfc7296_2_5() {
    let mut b = golden();
    // Replace the last Notify's type slot in the chain: make the previous Notify point to an
    // unknown payload type 200, non-critical: kept and skipped.
    let notify_at = 28 + 48 + 40 + 36;
    b[notify_at] = 200;
    let m = Message::parse(&b).unwrap();
    assert!(matches!(
        &m.payloads[4],
        Payload::Other {
            ty: PayloadType(200),
            critical: false,
            ..
        }
    ));
    assert_eq!(m.emit().unwrap(), b, "unknown payloads round-trip");
    // Critical: refused with the type, so the caller answers UNSUPPORTED_CRITICAL_PAYLOAD.
    b[notify_at + 8 + 1] = 0x80;
    assert_eq!(
        Message::parse(&b),
        Err(WireError::UnsupportedCriticalPayload(PayloadType(200)))
    );
}

#[test]
fn header_checks() {
    let mut b = golden();
    b[17] = 0x30;
    assert_eq!(
        Message::parse(&b),
        Err(WireError::UnsupportedVersion { major: 3, minor: 0 })
    );
    let mut b = golden();
    b[27] = 0xaf;
    assert!(matches!(
        Message::parse(&b),
        Err(WireError::InvalidLength { .. })
    ));
    // A payload length below its own header.
    let mut b = golden();
    b[28 + 3] = 3;
    assert!(matches!(
        Message::parse(&b),
        Err(WireError::InvalidLength { .. })
    ));
    // A nonce outside 16..=256 octets.
    let m = Message {
        header: header(),
        payloads: vec![Payload::Nonce(vec![1; 8])],
    };
    assert!(matches!(
        Message::parse(&m.emit().unwrap()),
        Err(WireError::InvalidLength { what: "Nonce", .. })
    ));
}

#[test]
fn sk_is_last_and_opaque() {
    let m = Message {
        header: Header {
            exchange: ExchangeType::IKE_AUTH,
            ..header()
        },
        payloads: vec![Payload::Sk {
            first_inner: PayloadType::IDI,
            body: vec![7; 48],
        }],
    };
    let b = m.emit().unwrap();
    assert_eq!(b[16], 46, "the header names SK");
    assert_eq!(b[28], 35, "SK's Next Payload names the first inner payload");
    assert_eq!(Message::parse(&b).unwrap(), m);
    // Anything after SK is an error.
    let mut bad = b.clone();
    bad.extend_from_slice(&[0, 0, 0, 4]);
    let l = bad.len() as u32;
    bad[24..28].copy_from_slice(&l.to_be_bytes());
    assert!(matches!(
        Message::parse(&bad),
        Err(WireError::TrailingData(_))
    ));
}

#[test]
fn bounds() {
    let t = Transform {
        ty: TransformType::DH,
        id: 31,
        attributes: vec![],
    };
    let p = Proposal {
        num: 1,
        protocol: ProtocolId::IKE,
        spi: vec![],
        transforms: vec![t; 65],
    };
    let m = Message {
        header: header(),
        payloads: vec![Payload::Sa(vec![p])],
    };
    assert!(matches!(
        Message::parse(&m.emit().unwrap()),
        Err(WireError::TooMany {
            what: "transforms",
            ..
        })
    ));
    let m = Message {
        header: header(),
        payloads: vec![Payload::VendorId(vec![1]); 65],
    };
    assert!(matches!(
        Message::parse(&m.emit().unwrap()),
        Err(WireError::TooMany {
            what: "payloads",
            ..
        })
    ));
}

fn header() -> Header {
    Header {
        spi_i: [9; 8],
        spi_r: [0; 8],
        exchange: ExchangeType::IKE_SA_INIT,
        flags: Flags(Flags::INITIATOR),
        message_id: 0,
    }
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn payload() -> impl Strategy<Value = Payload> {
    let transform = (
        1u8..6,
        any::<u16>(),
        prop::collection::vec(
            prop_oneof![
                (0u16..0x7fff, any::<u16>()).prop_map(|(ty, value)| Attribute::Short { ty, value }),
                (0u16..0x7fff, bytes(8)).prop_map(|(ty, value)| Attribute::Long { ty, value }),
            ],
            0..3,
        ),
    )
        .prop_map(|(ty, id, attributes)| Transform {
            ty: TransformType(ty),
            id,
            attributes,
        });
    let proposal = (
        1u8..4,
        1u8..4,
        bytes(9),
        prop::collection::vec(transform, 0..5),
    )
        .prop_map(|(num, p, spi, transforms)| Proposal {
            num,
            protocol: ProtocolId(p),
            spi,
            transforms,
        });
    prop_oneof![
        prop::collection::vec(proposal, 1..3).prop_map(Payload::Sa),
        (any::<u16>(), bytes(64)).prop_map(|(group, data)| Payload::Ke { group, data }),
        (any::<bool>(), any::<u8>(), bytes(32)).prop_map(|(initiator, t, data)| Payload::Id {
            initiator,
            ty: IdType(t),
            data
        }),
        (any::<u8>(), bytes(64)).prop_map(|(encoding, data)| Payload::Cert { encoding, data }),
        (any::<u8>(), bytes(32)).prop_map(|(m, data)| Payload::Auth {
            method: AuthMethod(m),
            data
        }),
        prop::collection::vec(any::<u8>(), 16..64).prop_map(Payload::Nonce),
        (any::<u8>(), bytes(8), any::<u16>(), bytes(16)).prop_map(|(p, spi, t, data)| {
            Payload::Notify {
                protocol: ProtocolId(p),
                spi,
                ty: NotifyType(t),
                data,
            }
        }),
        (
            any::<u8>(),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 4), 0..4)
        )
            .prop_map(|(p, spis)| Payload::Delete {
                protocol: ProtocolId(p),
                spi_size: 4,
                spis
            }),
        bytes(20).prop_map(Payload::VendorId),
        (150u8..200, bytes(20)).prop_map(|(t, body)| Payload::Other {
            ty: PayloadType(t),
            critical: false,
            body
        }),
    ]
}

proptest! {
    #[test]
    fn round_trip(payloads in prop::collection::vec(payload(), 0..6), id: u32, spi: [u8; 8], sk in any::<bool>()) {
        let mut payloads = payloads;
        if sk {
            payloads.push(Payload::Sk { first_inner: PayloadType::NOTIFY, body: vec![1; 32] });
        }
        let m = Message { header: Header { spi_i: spi, message_id: id, ..header() }, payloads };
        let b = m.emit().unwrap();
        prop_assert_eq!(Message::parse(&b).unwrap(), m);
    }

    #[test]
    fn never_panics(b in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Message::parse(&b);
        let _ = parse_chain(PayloadType::SA, &b);
    }
}
