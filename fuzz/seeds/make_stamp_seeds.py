#!/usr/bin/env python3
"""Writes seeds/stamp_packets: STAMP packets written out from the RFC 8762 / RFC 8972 figures
(the golden vectors of crates/ippm-proto/tests/stamp_wire.rs), in each mode and selector.

Run from the fuzz/ folder: python3 seeds/make_stamp_seeds.py. The seeds are committed; this
script documents where they come from. The first octet is the target's selector: bit 0
authenticated, bit 1 key, bit 2 TLV extensions, bit 3 TTL known, bit 4 stateful."""
import hashlib, hmac, pathlib

here = pathlib.Path(__file__).resolve().parent
key = b"ippm fuzz STAMP key"

def mac(data):
    return hmac.new(key, data, hashlib.sha256).digest()[:16]

h = bytes.fromhex
sender_unauth = h("00000007 e3a1b2c3 80000000 8101 beef".replace(" ", "")) + bytes(28)
sender_auth = (h("00000007") + bytes(12) + h("e3a1b2c380000000 8101 beef".replace(" ", ""))
               + bytes(68))
sender_auth += mac(sender_auth)
tlvs = h("".join("""
80020038 00000000 80010008 0000000000000000
80040010 00000000000000000000000000000000 80070010 00000000000000000000000000000000
80030004 00000000  80040004 b8000000  8005000c 00000005 00000000 00000000
80060004 10010000  80070010 00000000 0000000000000000 00000000
80f00002 abcd  80010003 010203""".split()))
cos = h("80040004b8000000")
hmac_tlv = h("80080010") + mac(sender_unauth[:4] + cos)
seeds = [
    bytes([0x04]) + sender_unauth,
    bytes([0x1c]) + sender_unauth + tlvs,
    bytes([0x04]) + sender_unauth + tlvs,
    bytes([0x06]) + sender_unauth + cos + hmac_tlv + h("80010002 0000".replace(" ", "")),
    bytes([0x07]) + sender_auth + cos + h("80080010") + mac(sender_auth[:4] + cos),
    bytes([0x03]) + sender_auth,
    bytes([0x00]) + sender_unauth[:14],
    bytes([0x04]) + sender_unauth + h("40040003 b80000 8004".replace(" ", "")),
]
d = here / "stamp_packets"
d.mkdir(exist_ok=True)
for i, s in enumerate(seeds):
    (d / f"seed-{i:03}").write_bytes(s)
print("stamp_packets", len(seeds))
