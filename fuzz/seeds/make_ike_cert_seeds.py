#!/usr/bin/env python3
"""Writes the ike_cert fuzz target's seeds: identities in payload and configuration form, keys,
and CA + end-entity pairs with AUTH data, made with strongSwan's pki and the openssl CLI.

Run from the fuzz/ folder: python3 seeds/make_ike_cert_seeds.py. The seeds are committed; this
script documents where they come from. Layout of the verification seeds (see
fuzz_targets/ike_cert.rs): method | ID type | CA length (2) | CA | EE length (2) | EE | AUTH."""
import pathlib, struct, subprocess, tempfile

here = pathlib.Path(__file__).resolve().parent
out = here / "ike_cert"
out.mkdir(exist_ok=True)
OCTETS = b"fuzzed AUTH octets"
# RFC 7427 Appendix A.
ALG = {
    ("rsa", "sha256"): bytes.fromhex("300d06092a864886f70d01010b0500"),
    ("ecdsa", "sha256"): bytes.fromhex("300a06082a8648ce3d040302"),
    ("ecdsa", "sha384"): bytes.fromhex("300a06082a8648ce3d040303"),
}

seeds = [
    bytes([0, 2]) + b"psk-responder.example",
    bytes([0, 1, 192, 0, 2, 1]),
    bytes([0, 5]) + bytes(range(16)),
    bytes([0, 3]) + b"user@example.org",
    bytes([0, 0]) + b"C=XX, O=Example Org, CN=name.example",
    bytes([0, 0]) + b"2001:db8::1",
    bytes([0, 0, 0, 2, 0, 3, 0, 4]),
]


def run(*args, cwd):
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True).stdout


with tempfile.TemporaryDirectory() as d:
    dates = ["--not-before", "01.01.24 00:00:00", "--not-after", "01.01.34 00:00:00"]
    for kind, size, hashes in [("ecdsa", "256", ["sha256"]), ("ecdsa", "384", ["sha384"]),
                               ("rsa", "2048", ["sha256"])]:
        ca_key = run("pki", "--gen", "--type", kind, "--size", size, "--outform", "pem", cwd=d)
        pathlib.Path(d, "ca.key").write_bytes(ca_key)
        ca = run("pki", "--self", "--ca", "--in", "ca.key", "--type", kind, *dates,
                 "--dn", "C=CH, O=strongSwan, CN=Fuzz CA", cwd=d)
        pathlib.Path(d, "ca.der").write_bytes(ca)
        ee_key = run("pki", "--gen", "--type", kind, "--size", size, "--outform", "pem", cwd=d)
        pathlib.Path(d, "ee.key").write_bytes(ee_key)
        ee = run("pki", "--issue", "--cacert", "ca.der", "--cakey", "ca.key", "--type", "priv",
                 "--in", "ee.key", *dates, "--dn", "C=CH, O=strongSwan, CN=moon.example",
                 "--san", "moon.example", "--san", "192.0.2.1", cwd=d)
        seeds.append(bytes([0, 0]) + ee_key)
        pathlib.Path(d, "octets").write_bytes(OCTETS)
        for h in hashes:
            sig = run("openssl", "dgst", "-" + h, "-sign", "ee.key", "octets", cwd=d)
            alg = ALG[(kind, h)]
            auth = bytes([len(alg)]) + alg + sig
            seeds.append(bytes([14, 9]) + struct.pack(">H", len(ca)) + ca
                         + struct.pack(">H", len(ee)) + ee + auth)
        if kind == "rsa":
            sig = run("openssl", "dgst", "-sha1", "-sign", "ee.key", "octets", cwd=d)
            seeds.append(bytes([1, 9]) + struct.pack(">H", len(ca)) + ca
                         + struct.pack(">H", len(ee)) + ee + sig)

for i, s in enumerate(seeds):
    (out / f"seed-{i:03}").write_bytes(s)
print("ike_cert", len(seeds))
