#!/usr/bin/env python3
"""Print a Markdown table of every fixture in pci/tests/fixtures/kernel/ (for docs/kernel-parity.md)."""
import json
import os
from collections import Counter

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "pci", "tests", "fixtures", "kernel")
print("| fixture | kernel | cpu (family) | functions | pairs | distance -1 | observed maps | bus_addr | thru_host_bridge | not_supported |")
print("|---|---|---|---|---|---|---|---|---|---|")
tot = Counter()
for name in sorted(os.listdir(FIX)):
    path = os.path.join(FIX, name, "verdicts.json")
    if not os.path.exists(path):
        continue
    v = json.load(open(path))
    pairs = v["pairs"]
    c = Counter(p["map_type"] for p in pairs if p["observed"])
    row = dict(pairs=len(pairs), neg=sum(p["distance"] == -1 for p in pairs),
               obs=sum(p["observed"] for p in pairs), **c)
    tot.update(row)
    tot["fixtures"] += 1
    print(f"| `{name}` | {v['kernel']} | {v['cpu']} ({v['cpu_family']:#x}) | {v['functions']} | {len(pairs)} | {row['neg']} | {row['obs']} "
          f"| {c['bus_addr']} | {c['thru_host_bridge']} | {c['not_supported']} |")
print(f"| **total: {tot['fixtures']} fixtures** | | | | {tot['pairs']} | {tot['neg']} | {tot['obs']} | {tot['bus_addr']} | {tot['thru_host_bridge']} | {tot['not_supported']} |")
