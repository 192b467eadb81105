//! The key schedule, control-stream protection and test-packet protection against
//! perfSONAR's captures (the judge), plus the standard vectors of the primitives.

use ippm_proto::SecurityMode;
use ippm_proto::crypto::{
    self, ControlOpener, ControlSealer, CryptoError, SessionKeys, TestKeys, check_count,
};
use ippm_proto::wire::test::{Layout, PacketKind, ReflectorRepr, SenderRepr, TestProtection};
use serde_json::Value;

mod common;
use common::{arr, hex, vectors};

fn mode(c: &Value) -> SecurityMode {
    match c["mode_requested"].as_str().unwrap() {
        "O" => SecurityMode::Open,
        "A" => SecurityMode::Authenticated,
        "E" => SecurityMode::Encrypted,
        _ => SecurityMode::Mixed,
    }
}

#[test]
fn key_and_token_from_every_capture() {
    let v = vectors();
    let mut n = 0;
    for c in v["captures"].as_array().unwrap() {
        if mode(c) == SecurityMode::Open {
            continue;
        }
        let file = c["file"].as_str().unwrap();
        let g = &c["greeting"];
        let salt: [u8; 16] = arr(&g["salt_hex"]);
        let count = g["count"].as_u64().unwrap() as u32;
        let k = &c["keys"];
        let key = crypto::derive_key(&hex(&k["passphrase_hex"]), &salt, count, 1 << 16).unwrap();
        assert_eq!(key.expose().to_vec(), hex(&k["pbkdf2_key_hex"]), "{file}");
        let token: [u8; 64] = arr(&c["setup_response"]["token_hex"]);
        let (challenge, keys) = crypto::decrypt_token(&key, &token);
        assert_eq!(challenge.to_vec(), hex(&k["token_challenge_hex"]), "{file}");
        assert_eq!(keys.aes.to_vec(), hex(&k["aes_session_key_hex"]), "{file}");
        assert_eq!(
            keys.hmac.to_vec(),
            hex(&k["hmac_session_key_hex"]),
            "{file}"
        );
        assert_eq!(
            crypto::encrypt_token(&key, &challenge, &keys),
            token,
            "{file}"
        );
        // The server's view: with its passphrase, the Token decrypts to its Challenge unless the
        // client used another passphrase.
        let server_key =
            crypto::derive_key(b"correct horse battery staple", &salt, count, 1 << 16).unwrap();
        let (c2, _) = crypto::decrypt_token(&server_key, &token);
        let greeting_challenge = hex(&g["challenge_hex"]);
        assert_eq!(
            crypto::ct_eq(&c2, &greeting_challenge),
            !file.contains("wrong"),
            "{file}"
        );
        n += 1;
    }
    assert_eq!(n, 8);
}

#[test]
fn every_control_message_decrypts_and_every_hmac_verifies() {
    let v = vectors();
    let mut hmacs = 0;
    for c in v["captures"].as_array().unwrap() {
        let file = c["file"].as_str().unwrap();
        if mode(c) == SecurityMode::Open || file.contains("wrong") {
            continue;
        }
        let k = &c["keys"];
        let keys = SessionKeys {
            aes: arr(&k["aes_session_key_hex"]),
            hmac: arr(&k["hmac_session_key_hex"]),
        };
        let client_iv: [u8; 16] = arr(&c["setup_response"]["client_iv_hex"]);
        let server_iv: [u8; 16] = arr(&c["server_start"]["server_iv_hex"]);
        let mut c_open = ControlOpener::new(&keys, client_iv);
        let mut s_open = ControlOpener::new(&keys, server_iv);
        let mut c_seal = ControlSealer::new(&keys, client_iv);
        let mut s_seal = ControlSealer::new(&keys, server_iv);
        for m in c["control_messages"].as_array().unwrap() {
            let Some(plain) = m.get("plaintext_hex").map(hex) else {
                continue;
            };
            let raw = hex(&m["raw_hex"]);
            let from = m["encrypted_from_offset_in_msg"].as_u64().unwrap() as usize;
            let offsets: Vec<usize> = m["hmac"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|h| h["hmac_offset_in_msg"].as_u64().unwrap() as usize)
                        .collect()
                })
                .unwrap_or_default();
            let c2s = m["direction"] == "C->S";
            let (opener, sealer) = if c2s {
                (&mut c_open, &mut c_seal)
            } else {
                (&mut s_open, &mut s_seal)
            };
            let mut buf = raw[from..].to_vec();
            let rel: Vec<usize> = offsets.iter().map(|o| o - from).collect();
            opener
                .open(&mut buf, &rel)
                .unwrap_or_else(|e| panic!("{file} {}: {e}", m["name"]));
            assert_eq!(buf, plain[from..], "{file} {}", m["name"]);
            hmacs += rel.len();
            // Sealing the plaintext (HMAC fields zeroed) gives the captured ciphertext back.
            let mut again = plain[from..].to_vec();
            for &o in &rel {
                again[o..o + 16].fill(0);
            }
            sealer.seal(&mut again, &rel);
            assert_eq!(again, raw[from..], "{file} {} re-sealed", m["name"]);
        }
    }
    // 5 TWAMP captures x 3 + the mixed one's 3 ... as INDEX.md counts: 57 control HMACs.
    assert_eq!(hmacs, 57);
}

#[test]
fn tampered_control_message_fails() {
    let keys = SessionKeys {
        aes: [1; 16],
        hmac: [2; 32],
    };
    let mut s = ControlSealer::new(&keys, [3; 16]);
    let mut msg = vec![0u8; 48];
    msg[0] = 5;
    s.seal(&mut msg, &[32]);
    for bit in [0, 7, 8 * 20, 8 * 40 + 3] {
        let mut m = msg.clone();
        m[bit / 8] ^= 1 << (bit % 8);
        let mut o = ControlOpener::new(&keys, [3; 16]);
        assert_eq!(
            o.open(&mut m, &[32]),
            Err(CryptoError::BadHmac),
            "bit {bit}"
        );
    }
    let mut o = ControlOpener::new(&keys, [3; 16]);
    let mut m = msg.clone();
    assert_eq!(o.open(&mut m, &[32]), Ok(()));
    // Wrong IV or wrong key.
    let mut o = ControlOpener::new(&keys, [4; 16]);
    assert_eq!(o.open(&mut msg.clone(), &[32]), Err(CryptoError::BadHmac));
    let other = SessionKeys {
        aes: [1; 16],
        hmac: [9; 32],
    };
    let mut o = ControlOpener::new(&other, [3; 16]);
    assert_eq!(o.open(&mut msg.clone(), &[32]), Err(CryptoError::BadHmac));
}

#[test]
fn every_test_packet_unprotects_verifies_and_reprotects() {
    let v = vectors();
    let (mut checked, mut hmacs) = (0, 0);
    for c in v["captures"].as_array().unwrap() {
        let file = c["file"].as_str().unwrap();
        let mode = mode(c);
        let layout = Layout::of(mode);
        let session_keys = (mode != SecurityMode::Open).then(|| SessionKeys {
            aes: arr(&c["keys"]["aes_session_key_hex"]),
            hmac: arr(&c["keys"]["hmac_session_key_hex"]),
        });
        for t in c["test_packets"].as_array().unwrap() {
            let sid: [u8; 16] = arr(&t["session_sid_hex"]);
            let keys = session_keys.as_ref().map(|k| TestKeys::derive(k, &sid));
            if let Some(k) = &keys {
                let s = c["sessions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["sid_hex"] == t["session_sid_hex"])
                    .unwrap();
                if let Some(aes) = s.get("test_aes_key_hex").filter(|v| v.is_string()) {
                    assert_eq!(k.aes.to_vec(), hex(aes), "{file}");
                    assert_eq!(k.hmac.to_vec(), hex(&s["test_hmac_key_hex"]), "{file}");
                } else {
                    assert_eq!(mode, SecurityMode::Mixed, "{file}: no test keys recorded");
                }
            }
            let prot = TestProtection::new(mode, keys.as_ref()).unwrap();
            let name = t["name"].as_str().unwrap();
            let kind = if name.contains("Reflector") {
                PacketKind::Reflector
            } else {
                PacketKind::Sender
            };
            let raw = hex(&t["raw_hex"]);
            let mut pkt = raw.clone();
            prot.unprotect(kind, &mut pkt)
                .unwrap_or_else(|e| panic!("{file} frame {}: {e}", t["frame"]));
            if let Some(plain) = t.get("plain_packet_hex").filter(|v| v.is_string()).map(hex) {
                assert_eq!(pkt[..plain.len()], plain[..], "{file} frame {}", t["frame"]);
                assert!(t["hmac_ok"].as_bool().unwrap());
                hmacs += 1;
            }
            let f = &t["fields"];
            let ts = |v: &Value| u64::from_str_radix(v["hex"].as_str().unwrap(), 16).unwrap();
            let err = |v: &Value| u16::from_str_radix(v["hex"].as_str().unwrap(), 16).unwrap();
            match kind {
                PacketKind::Sender => {
                    let r = SenderRepr::parse(&pkt, layout).unwrap();
                    assert_eq!(r.seq as u64, f["seq"].as_u64().unwrap());
                    assert_eq!(r.timestamp.to_bits(), ts(&f["timestamp"]));
                    assert_eq!(r.error_estimate.to_bits(), err(&f["err_est"]));
                    // Re-emit over the decrypted packet (padding untouched), re-protect.
                    let mut again = pkt.clone();
                    r.emit(&mut again, layout).unwrap();
                    prot.protect(kind, &mut again);
                    assert_eq!(again, raw, "{file} frame {}", t["frame"]);
                }
                PacketKind::Reflector => {
                    let r = ReflectorRepr::parse(&pkt, layout).unwrap();
                    assert_eq!(r.seq as u64, f["seq"].as_u64().unwrap());
                    assert_eq!(r.timestamp.to_bits(), ts(&f["timestamp"]));
                    assert_eq!(r.receive_timestamp.to_bits(), ts(&f["receive_timestamp"]));
                    assert_eq!(r.sender_seq as u64, f["sender_seq"].as_u64().unwrap());
                    assert_eq!(r.sender_timestamp.to_bits(), ts(&f["sender_timestamp"]));
                    assert_eq!(r.sender_error_estimate.to_bits(), err(&f["sender_err_est"]));
                    assert_eq!(r.sender_ttl as u64, f["sender_ttl"].as_u64().unwrap());
                    let mut again = pkt.clone();
                    r.emit(&mut again, layout).unwrap();
                    prot.protect(kind, &mut again);
                    assert_eq!(again, raw, "{file} frame {}", t["frame"]);
                }
            }
            // Tampering with the protected part is caught.
            if layout == Layout::Protected {
                let mut bad = raw.clone();
                bad[2] ^= 0x10;
                assert_eq!(prot.unprotect(kind, &mut bad), Err(CryptoError::BadHmac));
            }
            checked += 1;
        }
    }
    assert_eq!(hmacs, 60, "INDEX.md: 60 test-packet HMACs");
    assert_eq!(checked, 90, "9 captures x 10 test packets");
}

#[test]
fn test_packet_truncation_is_typed() {
    for layout in [Layout::Open, Layout::Protected] {
        let full = vec![0u8; layout.reflector_header_len()];
        for n in 0..layout.sender_header_len() {
            assert!(SenderRepr::parse(&full[..n], layout).is_err());
        }
        for n in 0..layout.reflector_header_len() {
            assert!(ReflectorRepr::parse(&full[..n], layout).is_err());
        }
    }
    let p = TestProtection::new(
        SecurityMode::Encrypted,
        Some(&TestKeys {
            aes: [0; 16],
            hmac: [0; 32],
        }),
    )
    .unwrap();
    assert_eq!(
        p.unprotect(PacketKind::Reflector, &mut [0u8; 100]),
        Err(CryptoError::BadLength("test packet"))
    );
    assert!(TestProtection::new(SecurityMode::Authenticated, None).is_err());
}

// ---- standard vectors ---------------------------------------------------------------------

#[test]
fn pbkdf2_rfc6070() {
    // RFC 6070 §2, truncated to our 16-octet output (PBKDF2 output is a prefix of the longer).
    let cases: [(&[u8], &[u8], u32, &str); 3] = [
        (b"password", b"salt", 1, "0c60c80f961f0e71f3a9b524af601206"),
        (b"password", b"salt", 2, "ea6c014dc72d6f8ccd1ed92ace1d41f0"),
        (
            b"password",
            b"salt",
            4096,
            "4b007901b765489abead49d926f721d0",
        ),
    ];
    for (p, s, c, want) in cases {
        let mut out = [0u8; 16];
        pbkdf2::pbkdf2_hmac::<sha1::Sha1>(p, s, c, &mut out);
        assert_eq!(::hex::encode(out), want);
    }
    // Through our API (salt is 16 octets there), RFC 6070's 4096-round "passwordPASSWORD..."
    // case has a 36-octet salt and so cannot be expressed; the 4096-round check above covers
    // the iteration count; here our wrapper must agree with the crate.
    let salt = *b"saltSALTsaltSALT";
    let k = crypto::derive_key(b"pass", &salt, 4096, 4096).unwrap();
    let mut out = [0u8; 16];
    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(b"pass", &salt, 4096, &mut out);
    assert_eq!(*k.expose(), out);
}

#[test]
fn hmac_sha1_rfc2202_truncated() {
    use hmac::{Hmac, KeyInit, Mac};
    // RFC 2202 test cases 1, 2 and 6.
    let cases: [(&[u8], &[u8], &str); 3] = [
        (
            &[0x0b; 20],
            b"Hi There",
            "b617318655057264e28bc0b6fb378c8ef146be00",
        ),
        (
            b"Jefe",
            b"what do ya want for nothing?",
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
        ),
        (
            &[0xaa; 80],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "aa4ae5e15272d00e95705637ce8a3b55ed402112",
        ),
    ];
    for (key, data, want) in cases {
        let mut m = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key).unwrap();
        m.update(data);
        assert_eq!(::hex::encode(m.finalize().into_bytes()), want);
    }
}

#[test]
fn aes128_sp800_38a() {
    // NIST SP 800-38A F.2.1 (CBC-AES128.Encrypt), through our control sealer: the chain across
    // two calls must equal one four-block encryption.
    let key: [u8; 16] = ::hex::decode("2b7e151628aed2a6abf7158809cf4f3c")
        .unwrap()
        .try_into()
        .unwrap();
    let iv: [u8; 16] = ::hex::decode("000102030405060708090a0b0c0d0e0f")
        .unwrap()
        .try_into()
        .unwrap();
    let pt = ::hex::decode(
        "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51\
         30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
    )
    .unwrap();
    let ct = "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2\
              73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7";
    let keys = SessionKeys {
        aes: key,
        hmac: [0; 32],
    };
    let mut s = ControlSealer::new(&keys, iv);
    let mut buf = pt.clone();
    let (a, b) = buf.split_at_mut(32);
    s.encrypt(a);
    s.encrypt(b);
    assert_eq!(::hex::encode(&buf), ct);
    let mut o = ControlOpener::new(&keys, iv);
    o.decrypt(&mut buf[..16]);
    o.decrypt(&mut buf[16..]);
    assert_eq!(buf, pt);
    // F.1.1 (ECB-AES128.Encrypt), block 1, through the test-key derivation's primitive:
    // TestKeys::derive encrypts the AES Session-key with the SID as key.
    let session = SessionKeys {
        aes: pt[..16].try_into().unwrap(),
        hmac: [0; 32],
    };
    let tk = TestKeys::derive(&session, &key);
    assert_eq!(::hex::encode(tk.aes), "3ad77bb40d7a3660a89ecaf32466ef97");
}

#[test]
fn count_rules() {
    assert_eq!(check_count(1024, 1 << 16), Ok(()));
    assert_eq!(check_count(2048, 1 << 16), Ok(()));
    assert_eq!(
        check_count(512, 1 << 16),
        Err(CryptoError::CountTooSmall(512))
    );
    assert_eq!(
        check_count(3000, 1 << 16),
        Err(CryptoError::CountNotPowerOfTwo(3000))
    );
    assert_eq!(
        check_count(0, 1 << 16),
        Err(CryptoError::CountNotPowerOfTwo(0))
    );
    assert_eq!(
        check_count(1 << 20, 1 << 16),
        Err(CryptoError::CountTooLarge {
            count: 1 << 20,
            max: 1 << 16
        })
    );
    assert!(crypto::derive_key(b"x", &[0; 16], 1 << 31, 1 << 16).is_err());
}

#[test]
fn secrets_are_not_printed() {
    let keys = SessionKeys {
        aes: [0x41; 16],
        hmac: [0x42; 32],
    };
    let dbg = format!("{keys:?} {:?}", TestKeys::derive(&keys, &[0; 16]));
    assert!(!dbg.contains("65") && !dbg.contains("41"), "{dbg}");
    let k = crypto::derive_key(b"secret", &[0; 16], 1024, 1024).unwrap();
    assert_eq!(format!("{k:?}"), "DerivedKey([redacted])");
    let s = ippm_proto::session::Secret::new(b"hunter2".to_vec());
    assert!(!format!("{s:?}").contains("hunter2"));
}
