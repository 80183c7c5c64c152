#!/usr/bin/env bash
# tools/vm/kernel.sh KVER: builds (or finds in the cache) the e2e guest kernel
# for KVER and prints its kernel-<hash> directory (tools/kernel-oracle/kbuild.sh).
#   6.12  the oracle's fragment + kernel-vm.config
#   7.3   the same + kernel-vm-7.3.config (VFIO's dma-buf export for iommufd),
#         built by tools/kernel-driver/kernel.sh: the one 7.3 kernel, shared
#         with the in-kernel driver's e2e (+ Rust, LLVM 19, the vendoring hook)
# The one place that says which kernel each guest runs.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ORACLE="$HERE/../kernel-oracle"
case ${1:?usage: kernel.sh 6.12|7.3} in
  6.12) "$ORACLE/kbuild.sh" "$ORACLE/kernel.config" "$HERE/kernel-vm.config" | tail -n 1 ;;
  7.3) sh "$HERE/../kernel-driver/kernel.sh" | tail -n 1 ;;
  *) echo "kernel.sh: no e2e kernel $1 (6.12 or 7.3)" >&2; exit 2 ;;
esac
