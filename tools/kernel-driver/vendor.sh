#!/bin/sh
# vendor.sh KSRC: vendor dmaspace into the Linux 7.3 source tree KSRC (one that
# kernel-patch.sh hooked), the way Linux vendors zerocopy: the crate and its
# dependencies are copied to KSRC/rust/vendor/ and built by rust/Makefile as
# kernel crates (linked into vmlinux, their symbols exported to modules), so a
# module's Kbuild is `obj-m` plus `rustflags-y += --extern dmaspace`.
#
#   rust/vendor/bitflags/      bitflags (the version Cargo.lock resolves), crate `bitflags`
#   rust/vendor/dmaspace-pci/  this repository's pci/ (no features), crate `dmaspace_pci`
#   rust/vendor/dmaspace/      this repository's core (no features: no alloc, no std), crate `dmaspace`
#   rust/vendor/dmaspace-kernel/  this repository's kernel/lib.rs: the typed seam over
#                              kernel::dma, crate `dmaspace_kernel`
#   rust/vendor/Makefile       their rules (included by rust/Makefile)
#   rust/vendor/exports.h      their exports (included by rust/exports.c)
#
# zerocopy and zerocopy_derive are the kernel's own (0.8.54, without the
# `derive` feature: the crate takes its derives from zerocopy_derive).
# Only files whose bytes changed are rewritten, so that a rebuild
# (`make -C KDIR/build`) recompiles only what an edit touched.
set -eu
KSRC=${1:?usage: vendor.sh KSRC}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
grep -q 'rust/vendor\|vendor/Makefile' "$KSRC/rust/Makefile" || {
  echo "vendor: $KSRC/rust/Makefile has no vendoring hook (build the kernel with tools/kernel-driver/kernel.sh)" >&2; exit 1; }
bitflags=$(cd "$ROOT" && { cargo metadata --format-version 1 --locked --offline 2>/dev/null ||
  cargo metadata --format-version 1 --locked; } | python3 -c '
import json, sys, os
m = json.load(sys.stdin)
pk = {p["id"]: p for p in m["packages"]}
node = {n["id"]: n for n in m["resolve"]["nodes"]}
root = next(p for p in m["packages"] if p["name"] == "dmaspace")
for d in node[root["id"]]["deps"]:
    p = pk[d["pkg"]]
    if p["name"] == "bitflags" and any(k["kind"] is None for k in d["dep_kinds"]):
        print(os.path.dirname(p["manifest_path"]))
')
[ -f "$bitflags/src/lib.rs" ] || { echo "vendor: bitflags' source not found (run cargo fetch)" >&2; exit 1; }
python3 - "$KSRC/rust/vendor" "$bitflags" "$ROOT/pci" "$ROOT" "$HERE/vendor.mk" "$HERE/vendor-exports.h" <<'PY'
import os, sys, filecmp, shutil
dest, bitflags, pci, core, mk, exports = sys.argv[1:]
want = {}
for name, root in (("bitflags", bitflags), ("dmaspace-pci", pci), ("dmaspace", core)):
    for base, _, files in os.walk(os.path.join(root, "src")):
        for f in files:
            if f.endswith(".rs"):
                p = os.path.join(base, f)
                want[os.path.join(name, os.path.relpath(p, root))] = p
    if os.path.exists(os.path.join(root, "README.md")):
        want[os.path.join(name, "README.md")] = os.path.join(root, "README.md")
want[os.path.join("dmaspace-kernel", "lib.rs")] = os.path.join(core, "kernel", "lib.rs")
want["Makefile"] = mk
want["exports.h"] = exports
changed = 0
for rel, src in want.items():
    d = os.path.join(dest, rel)
    if not (os.path.exists(d) and filecmp.cmp(src, d, shallow=False)):
        os.makedirs(os.path.dirname(d), exist_ok=True)
        shutil.copyfile(src, d + ".tmp")
        os.replace(d + ".tmp", d)
        changed += 1
removed = 0
for base, _, files in os.walk(dest):
    for f in files:
        p = os.path.join(base, f)
        if os.path.relpath(p, dest) not in want:
            os.remove(p)
            removed += 1
print(f"vendor: {len(want)} files in {dest} ({changed} updated, {removed} removed)", file=sys.stderr)
PY
