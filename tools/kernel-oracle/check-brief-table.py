#!/usr/bin/env python3
"""Compare the brief-table fixtures with the brief's "Real-kernel verdicts" table.

Reads pci/tests/fixtures/kernel/brief-table{,-acs}-{qemu64,epyc}/verdicts.json and
prints each row of the brief with what the kernel said; exits 1 on any
disagreement. Names: see topologies/devices/brief-table.sh.
"""
import json
import os
import sys

FIX = os.path.join(os.path.dirname(__file__), "..", "..", "pci", "tests", "fixtures", "kernel")
N = {"A": "0000:03:00.0", "B": "0000:04:00.0", "C": "0000:05:00.0",
     "D0": "0000:06:00.0", "D1": "0000:06:00.1", "E": "0000:00:05.0",
     "F": "0000:00:06.0", "RP1": "0000:00:02.0", "RP3": "0000:00:04.0"}
# (provider, client, acs?, plain (dist, map), zen (dist, map)); map None = brief gives none
ROWS = [
    ("A", "A", False, (0, "bus_addr"), (0, "bus_addr")),
    ("A", "B", False, (4, "bus_addr"), (4, "bus_addr")),
    ("D0", "D1", False, (2, "bus_addr"), (2, "bus_addr")),
    ("A", "C", False, (-1, "not_supported"), (6, "thru_host_bridge")),
    ("E", "F", False, (-1, None), (2, "thru_host_bridge")),
    ("A", "E", False, (-1, None), (5, "thru_host_bridge")),
    ("A", "RP1", False, (3, "bus_addr"), (3, "bus_addr")),
    ("A", "B", True, (4, "bus_addr"), (4, "bus_addr")),
    ("A", "RP1", True, (-1, None), (3, "thru_host_bridge")),
    ("D0", "D1", True, (-1, None), (2, "thru_host_bridge")),
    ("RP1", "RP1", True, (-1, None), (0, "thru_host_bridge")),
    ("D0", "D0", True, (0, "bus_addr"), (0, "bus_addr")),
]


def load(name):
    with open(os.path.join(FIX, name, "verdicts.json")) as f:
        v = json.load(f)
    return {(p["provider"], p["client"]): p for p in v["pairs"]}


def show(p):
    s = str(p["distance"])
    if p["observed"]:
        s += ", " + p["map_type"]
    else:
        s += " (map not observable)"
    return s


bad = 0
for prov, cli, acs, *want in ROWS:
    cells = []
    for cpu, w in zip(("qemu64", "epyc"), want):
        fx = f"brief-table{'-acs' if acs else ''}-{cpu}"
        p = load(fx)[(N[prov], N[cli])]
        ok = p["distance"] == w[0] and (w[1] is None or not p["observed"] or p["map_type"] == w[1])
        # A map type is observable only when the provider publishes P2P memory
        # (RP1 does not): then only the distance is compared.
        bad += not ok
        cells.append(f"{show(p):24} {'ok' if ok else 'DISAGREES (brief: %s)' % (w,)}")
    label = f"{prov}->{cli}" + (" [ACS redirect RP1+RP3]" if acs else "")
    print(f"{label:32} plain: {cells[0]:40} zen: {cells[1]}")
print("disagreements:", bad)
sys.exit(1 if bad else 0)
