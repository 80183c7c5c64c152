#!/usr/bin/env bash
# bash tools/vm/e2e.sh [SCENARIO...]: the end-to-end proof of issues 10 and 19,
# on Linux 6.12 and Linux 7.3.4 guests (the kernel column below).
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
# name | guest kernel | machine | driver scenario | its args | handed to vfio-pci | oracle module
SCENARIOS="
host-iova-type1         6.12 iommu-qemu64   host-iova-type1     $A              $A        0
host-iova-iommufd       6.12 iommu-qemu64   host-iova-iommufd   $A              $A        0
own-cmb                 6.12 iommu-qemu64   own-cmb             $A              $A        0
iommu-contains          6.12 iommu-qemu64   iommu-contains      $A              $A        0
bad-input               6.12 iommu-qemu64   bad-input           0000:42:00.0,$C,$D0  $A,$D0  0
p2p-refused             6.12 iommu-qemu64   p2p-refused         $A,$B           $A,$B     1
p2p-iommufd-refused     6.12 iommu-epyc     p2p-iommufd-refused $A,$B           $A,$B     1
p2p-host-bridge         6.12 iommu-epyc     p2p-host-bridge     $A,$B           $A,$B     1
p2p-bus-addr            6.12 noiommu-switch p2p-bus-addr        $SA,$SB         $SA,$SB   1
virtio-blk-type1        6.12 virtio-blk     virtio-blk-type1    $A              $A        0
virtio-blk-iommufd      6.12 virtio-blk     virtio-blk-iommufd  $A              $A        0
virtio-blk-contains     6.12 virtio-blk     virtio-blk-contains $A              $A        0
host-iova-type1-7.3     7.3  iommu-qemu64   host-iova-type1     $A              $A        0
host-iova-iommufd-7.3   7.3  iommu-qemu64   host-iova-iommufd   $A              $A        0
own-cmb-7.3             7.3  iommu-qemu64   own-cmb             $A              $A        0
p2p-host-bridge-7.3     7.3  iommu-epyc     p2p-host-bridge     $A,$B           $A,$B     1
p2p-iommufd-dmabuf      7.3  iommu-epyc     p2p-iommufd-dmabuf  $A,$B           $A,$B     1
p2p-dmabuf-refused      7.3  iommu-qemu64   p2p-dmabuf-refused  $A,$B           $A,$B     1
p2p-dmabuf-revoked      7.3  iommu-epyc     p2p-dmabuf-revoked  $A,$B           $A,$B     1
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
while read -r name kernel machine scen args vfio oracle; do
  [ -n "$name" ] || continue
  if [ $# -gt 0 ]; then
    want=0; for s in "$@"; do [ "$s" = "$name" ] && want=1; done
    [ $want = 1 ] || continue
  fi
  log="$LOGS/$name.log"
  s0=$(date +%s)
  E2E_KERNEL=$kernel bash "$HERE/vm.sh" "$machine" "$scen" "$args" "$vfio" "$oracle" "$log" 2> "$LOGS/$name.qemu.err"
  rc=$?
  secs=$(( $(date +%s) - s0 ))
  # The driver names its scenario; the line is reported under this row's name.
  line=$(tr -d '\r' < "$log" | grep -a -E "^$scen: (ok|FAILED)" | tail -n 1 | sed "s/^$scen:/$name:/")
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
    tr -d '\r' < "$log" | grep -a -E "^(# $scen:|E2E_WARN)" | sed 's/^/    /'
  fi
  echo "# $name: $secs s ($machine, Linux $kernel)"
  case $line in "$name: ok") pass=$((pass + 1)) ;; *) fail=$((fail + 1)) ;; esac
done <<< "$SCENARIOS"

echo "# e2e wall time: $(( $(date +%s) - t0 )) s"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ] && [ "$pass" -gt 0 ]
