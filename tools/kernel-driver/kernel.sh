#!/bin/sh
# kernel.sh: build (or find in the cache) the one Linux 7.3.4 kernel shared by
# the VM e2e (tools/vm/) and the in-kernel driver's e2e (tools/kernel-driver/):
# the VM e2e's 7.3 fragments plus Rust, compiled with LLVM 19, from a copy of
# the source carrying the vendoring hook (kernel-patch.sh). Prints its KDIR
# (kbuild.sh's last line); progress on stderr.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
KVER=7.3 LLVM=1 KSRC_PATCH="$HERE/kernel-patch.sh" exec sh "$ROOT/tools/kernel-oracle/kbuild.sh" \
  "$ROOT/tools/kernel-oracle/kernel.config" "$ROOT/tools/vm/kernel-vm.config" \
  "$ROOT/tools/vm/kernel-vm-7.3.config" "$HERE/kernel-rust.config"
