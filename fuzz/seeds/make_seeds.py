#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target from the perfSONAR captures' golden bytes.

Run from the fuzz/ folder: python3 seeds/make_seeds.py. The seeds are committed; this script
documents where they come from."""
import json, os, pathlib

here = pathlib.Path(__file__).resolve().parent
vec = json.load(open(here.parent.parent / "crates/ippm-proto/tests/data/captures/vectors.json"))
out = {t: [] for t in ["setup_messages", "owamp_control", "twamp_control", "test_packets",
                       "control_server", "control_client"]}
for c in vec["captures"]:
    proto = c["protocol"]
    c2s = b""
    s2c = b""
    for m in c["control_messages"]:
        plain = bytes.fromhex(m.get("plaintext_hex") or m["raw_hex"])
        name = m["name"]
        if name in ("Server-Greeting", "Set-Up-Response", "Server-Start"):
            out["setup_messages"].append(plain)
        elif proto == "OWAMP":
            out["owamp_control"].append(plain)
        else:
            out["twamp_control"].append(plain)
        if c["mode_requested"] == "O":
            if m["direction"] == "C->S":
                c2s += bytes.fromhex(m["raw_hex"])
            else:
                s2c += bytes.fromhex(m["raw_hex"])
    sel = 0 if proto == "OWAMP" else 1
    if c2s:
        out["control_server"].append(bytes([sel]) + c2s)
        out["control_server"].append(bytes([sel | 2]) + c2s[164:])
        out["control_client"].append(bytes([sel]) + s2c)
    mode = {"O": 0, "A": 1, "E": 2, "M": 3}[c["mode_requested"]]
    for t in c["test_packets"]:
        kind = 4 if "Reflector" in t["name"] else 0
        out["test_packets"].append(bytes([mode | kind]) + bytes.fromhex(t["raw_hex"]))
for target, seeds in out.items():
    d = here / target
    d.mkdir(exist_ok=True)
    for i, s in enumerate(dict.fromkeys(seeds)):
        (d / f"seed-{i:03}").write_bytes(s)
    print(target, len(set(seeds)))
