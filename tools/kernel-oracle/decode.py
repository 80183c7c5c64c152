#!/usr/bin/env python3
"""Decode one oracle boot: console.log -> root/, oracle.txt, verdicts.json.

Usage: decode.py --name NAME --cpu QEMU_CPU FIXTURE_DIR

The initramfs prints a gzipped tar, base64-encoded, between
`ORACLE_TAR_BEGIN <size> <sha256>` and `ORACLE_TAR_END`. The tar holds
root/ (the sysfs copy), oracle.txt (the p2p_oracle module's report),
uname and cmdline. The report's P2P_DIST and P2P_MAP lines become
verdicts.json; the P2P_* lines echoed on the console must agree with it.
"""
import argparse
import base64
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile

RECORD = re.compile(r"(P2P_(?:ORACLE_BEGIN|ORACLE_END|DEV|DIST|MAP|NOMAP)\b.*)$")


def die(msg):
    sys.exit(f"decode: {msg}")


def kv(line):
    return dict(tok.split("=", 1) for tok in line.split()[1:] if "=" in tok)


def extract_tar(console):
    lines = console.splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith("ORACLE_TAR_BEGIN ")), None)
    if start is None:
        die("no ORACLE_TAR_BEGIN marker in console.log (did the boot fail?)")
    _, size, sha = lines[start].split()[:3]
    body = []
    for l in lines[start + 1:]:
        if l.startswith("ORACLE_TAR_END"):
            break
        body.append(l.strip())
    else:
        die("no ORACLE_TAR_END marker")
    blob = base64.b64decode("".join(body))
    if len(blob) != int(size) or hashlib.sha256(blob).hexdigest() != sha:
        die("tar size/sha256 mismatch: console output was corrupted")
    return blob


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--cpu", required=True)
    ap.add_argument("fixture")
    a = ap.parse_args()
    fix = a.fixture
    with open(os.path.join(fix, "console.log"), "rb") as f:
        console = f.read().decode("utf-8", "replace").replace("\r", "")

    blob = extract_tar(console)
    for p in ("root", "oracle.txt"):
        path = os.path.join(fix, p)
        if os.path.isdir(path):
            shutil.rmtree(path)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        meta = {}
        for m in tar.getmembers():
            name = os.path.normpath(m.name)
            if name in ("uname", "cmdline"):
                meta[name] = tar.extractfile(m).read().decode().strip()
                continue
            if name != "oracle.txt" and not (name == "root" or name.startswith("root/")):
                continue
            if m.issym():
                # Relative links must stay inside the fixture.
                target = os.path.normpath(os.path.join(os.path.dirname(name), m.linkname))
                if target.startswith(".."):
                    die(f"symlink {name} -> {m.linkname} leaves the tree")
            elif not (m.isdir() or m.isfile()):
                die(f"unexpected member {name}")
            m.name = name
            tar.extract(m, fix, set_attrs=False)
    report = open(os.path.join(fix, "oracle.txt")).read().splitlines()
    if not report or not report[0].startswith("P2P_ORACLE_BEGIN") or report[-1] != "P2P_ORACLE_END":
        die("oracle.txt is incomplete")

    # The console echo is the evidence: it must say the same thing.
    echoed = [m.group(1).strip() for l in console.splitlines() if (m := RECORD.search(l))]
    if echoed != [r.strip() for r in report]:
        die("P2P_* records on the console differ from /proc/p2p_oracle")

    cpuinfo = open(os.path.join(fix, "root/proc/cpuinfo")).read()

    def cpu_field(key):
        m = re.search(rf"^{key}\s*:\s*(.*)$", cpuinfo, re.M)
        return m.group(1).strip() if m else None

    pairs, index, maps = [], {}, {}
    for r in report:
        if r.startswith("P2P_DIST "):
            d = kv(r)
            index[(d["provider"], d["client"])] = len(pairs)
            pairs.append({"provider": d["provider"], "client": d["client"],
                          "distance": int(d["distance"]), "observed": False})
        elif r.startswith("P2P_MAP "):
            d = kv(r)
            maps[(d["provider"], d["client"])] = d
    for key, d in maps.items():
        if key not in index:
            die(f"P2P_MAP for a pair without P2P_DIST: {key}")
        p = pairs[index[key]]
        if d["result"] in ("bus_addr", "thru_host_bridge", "not_supported"):
            p["map_type"] = d["result"]
            p["observed"] = True
            if d.get("widened") == "1":
                p["dma_mask_widened"] = True
        else:
            p["map_error"] = int(d["ret"])

    out = {
        "kernel": meta.get("uname"),
        "topology": a.name,
        "cpu": a.cpu,
        "cpu_vendor": cpu_field("vendor_id"),
        "cpu_family": int(cpu_field("cpu family")),
        "cpu_model_name": cpu_field("model name"),
        "cmdline": meta.get("cmdline"),
        "functions": len([r for r in report if r.startswith("P2P_DEV ")]),
        "pairs": pairs,
    }
    # One pair per line: readable, and diffs stay small when a fixture is recaptured.
    head = json.dumps({k: v for k, v in out.items() if k != "pairs"}, indent=1)[:-2]
    body = ",\n".join("  " + json.dumps(p) for p in pairs)
    with open(os.path.join(fix, "verdicts.json"), "w") as f:
        f.write(f'{head},\n "pairs": [\n{body}\n ]\n}}\n')
    json.load(open(os.path.join(fix, "verdicts.json")))  # must still parse
    obs = sum(p["observed"] for p in pairs)
    print(f"decode: {a.name}: {out['functions']} functions, {len(pairs)} pairs, {obs} observed map types")


if __name__ == "__main__":
    main()
