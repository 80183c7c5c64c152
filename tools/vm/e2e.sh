#!/usr/bin/env bash
# bash tools/vm/e2e.sh [SCENARIO...]: the end-to-end proof of issue 10.
# Builds what it needs (tools/vm/build.sh: the kernel is cached outside the
# clone, so only the first run compiles it), boots one VM per scenario (QEMU
# q35, TCG) with the userspace NVMe driver in its initramfs, and prints one line
# per scenario, `NAME: ok` or `NAME: FAILED why`, then `N passed, M failed`.
# Exits non-zero when any scenario fails. Console logs: tools/vm/out/logs/.
# Environment: E2E_VM_TIMEOUT (per VM, default 300 s), E2E_VERBOSE=1 (details).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT="$HERE/out"
LOGS="$OUT/logs"

A=0000:00:03.0 B=0000:00:04.0 C=0000:00:05.0 D0=0000:00:06.0
SA=0000:03:00.0 SB=0000:04:00.0
# name | machine | scenario args | handed to vfio-pci | oracle module
SCENARIOS="
host-iova-type1     iommu-qemu64   $A              $A        0
host-iova-iommufd   iommu-qemu64   $A              $A        0
own-cmb             iommu-qemu64   $A              $A        0
iommu-contains      iommu-qemu64   $A              $A        0
bad-input           iommu-qemu64   0000:42:00.0,$C,$D0  $A,$D0  0
p2p-refused         iommu-qemu64   $A,$B           $A,$B     1
p2p-iommufd-refused iommu-epyc     $A,$B           $A,$B     1
p2p-host-bridge     iommu-epyc     $A,$B           $A,$B     1
p2p-bus-addr        noiommu-switch $SA,$SB         $SA,$SB   1
virtio-blk-type1    virtio-blk     $A              $A        0
virtio-blk-iommufd  virtio-blk     $A              $A        0
virtio-blk-contains virtio-blk     $A              $A        0
"

t0=$(date +%s)
if ! bash "$HERE/build.sh"; then
  echo "e2e: build failed"
  echo "0 passed, 1 failed"
  exit 1
fi
echo "# build: $(cat "$OUT/build-info"), $(( $(date +%s) - t0 )) s in all"
mkdir -p "$LOGS"

pass=0 fail=0
while read -r name machine args vfio oracle; do
  [ -n "$name" ] || continue
  if [ $# -gt 0 ]; then
    want=0; for s in "$@"; do [ "$s" = "$name" ] && want=1; done
    [ $want = 1 ] || continue
  fi
  log="$LOGS/$name.log"
  s0=$(date +%s)
  bash "$HERE/vm.sh" "$machine" "$name" "$args" "$vfio" "$oracle" "$log" 2> "$LOGS/$name.qemu.err"
  rc=$?
  secs=$(( $(date +%s) - s0 ))
  line=$(tr -d '\r' < "$log" | grep -a -E "^$name: (ok|FAILED)" | tail -n 1)
  if [ -z "$line" ]; then
    case $rc in
      124|137) why="no result: the VM ran past ${E2E_VM_TIMEOUT:-300} s and was killed" ;;
      0) why="no result line (see $log)" ;;
      *) why="no result: QEMU exited $rc ($(head -c 200 "$LOGS/$name.qemu.err" | tr '\n' ' '))" ;;
    esac
    line="$name: FAILED $why"
  fi
  echo "$line"
  if [ "${E2E_VERBOSE:-0}" = 1 ]; then
    tr -d '\r' < "$log" | grep -a -E "^(# $name:|E2E_WARN)" | sed 's/^/    /'
  fi
  echo "# $name: $secs s ($machine)"
  case $line in "$name: ok") pass=$((pass + 1)) ;; *) fail=$((fail + 1)) ;; esac
done <<< "$SCENARIOS"

echo "# e2e wall time: $(( $(date +%s) - t0 )) s"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ] && [ "$pass" -gt 0 ]
