#!/usr/bin/env bash
# tools/vm/vm.sh PROFILE SCENARIO ARGS VFIO ORACLE LOG: boot one e2e VM and
# write its serial console to LOG. Needs tools/vm/out/ (build.sh).
#   E2E_KERNEL  the guest kernel, 6.12 (default) or 7.3: tools/vm/out/k-E2E_KERNEL/
#   PROFILE  iommu-qemu64 | iommu-epyc | noiommu-switch | virtio-blk (the machines below)
#   ARGS     comma-separated BDFs for the scenario
#   VFIO     comma-separated BDFs handed to vfio-pci
#   ORACLE   1: load the oracle module (the guest kernel's P2PDMA verdicts)
# Every NVMe has a fresh 16 MiB raw image, a 4 MiB CMB and MDTS 4 MiB.
# virtio-blk: a seeded 4 MiB image (virtio-image.py), checked after the VM:
# a difference appends `SCENARIO: FAILED host image check: ...` to LOG.
# The VM is killed after E2E_VM_TIMEOUT seconds (default 300): a hang cannot block CI.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT="$HERE/out"
PROFILE=$1 SCEN=$2 ARGS=$3 VFIO=$4 ORACLE=$5 LOG=$6
IMG=$(mktemp -d)
trap 'rm -rf "$IMG"' EXIT
nvme() { # nvme NAME [extra device properties]
  truncate -s 16M "$IMG/$1.img"
  echo "-drive file=$IMG/$1.img,if=none,id=d$1,format=raw -device nvme,serial=$1,drive=d$1,cmb_size_mb=4,mdts=10${2:+,$2}"
}
case $PROFILE in
  iommu-qemu64|iommu-epyc)
    # Root bus: A 00:03.0, B 00:04.0, C 00:05.0 (left on nvme), D 00:06.0/00:06.1
    # (one multifunction device, one IOMMU group: D1 stays on nvme, so D0's group
    # is not viable). Each single-function NVMe on the root bus has its own group.
    [ "$PROFILE" = iommu-epyc ] && CPU=EPYC || CPU=qemu64
    MACHINE="-device intel-iommu,intremap=on,aw-bits=48"
    DEVICES="$(nvme A bus=pcie.0,addr=0x3) $(nvme B bus=pcie.0,addr=0x4) $(nvme C bus=pcie.0,addr=0x5)
      $(nvme D0 bus=pcie.0,addr=0x6.0,multifunction=on) $(nvme D1 bus=pcie.0,addr=0x6.1)"
    CMDLINE="intel_iommu=on iommu=nopt"
    ;;
  noiommu-switch)
    # 00:02.0 root port -> 01:00.0 x3130 upstream -> 02:00.0 / 02:01.0 downstream
    # -> A 03:00.0, B 04:00.0. No IOMMU: VFIO no-IOMMU mode.
    CPU=qemu64
    MACHINE=""
    DEVICES="-device pcie-root-port,id=rp1,bus=pcie.0,addr=0x2,chassis=1,slot=1
      -device x3130-upstream,id=usp,bus=rp1
      -device xio3130-downstream,id=dsp1,bus=usp,addr=0x0,chassis=2,slot=0
      -device xio3130-downstream,id=dsp2,bus=usp,addr=0x1,chassis=3,slot=0
      $(nvme A bus=dsp1) $(nvme B bus=dsp2)"
    CMDLINE="vfio.enable_unsafe_noiommu_mode=1"
    ;;
  virtio-blk)
    # virtio-blk-pci 00:03.0, modern only, behind the IOMMU (ACCESS_PLATFORM),
    # on a 4 MiB raw image seeded from each sector's LBA. The guest kernel
    # has no virtio-pci driver: the function stays unbound for vfio-pci.
    CPU=qemu64
    MACHINE="-device intel-iommu,intremap=on,aw-bits=48"
    python3 "$HERE/virtio-image.py" seed "$IMG/vb.img"
    DEVICES="-drive file=$IMG/vb.img,if=none,id=vb,format=raw
      -device virtio-blk-pci,disable-legacy=on,iommu_platform=on,drive=vb,bus=pcie.0,addr=0x3"
    CMDLINE="intel_iommu=on iommu=nopt"
    ;;
  *) echo "vm.sh: unknown profile $PROFILE" >&2; exit 2 ;;
esac
rc=0
# shellcheck disable=SC2086 # word lists by design
timeout --kill-after=10 "${E2E_VM_TIMEOUT:-300}" qemu-system-x86_64 \
  -M q35 -accel tcg -cpu "$CPU" -smp 1 -m 512M \
  -nographic -nodefaults -no-reboot -monitor none \
  -serial "file:$LOG" \
  -kernel "$OUT/k-${E2E_KERNEL:-6.12}/bzImage" -initrd "$OUT/k-${E2E_KERNEL:-6.12}/initramfs.cpio.gz" \
  -append "console=ttyS0 panic=-1 quiet $CMDLINE e2e.scenario=$SCEN e2e.args=$ARGS e2e.vfio=$VFIO e2e.oracle=$ORACLE e2e.timeout=${E2E_GUEST_TIMEOUT:-240}" \
  $MACHINE $DEVICES ${E2E_QEMU_EXTRA:-} </dev/null || rc=$?
if [ "$PROFILE" = virtio-blk ] && [ $rc = 0 ]; then
  # The guest's verdict stands unless it said ok and the image disagrees.
  if verdict=$(python3 "$HERE/virtio-image.py" check "$IMG/vb.img" "$SCEN"); then
    echo "# $SCEN: host image check: $verdict" >> "$LOG"
  elif tr -d '\r' < "$LOG" | grep -q -a -x "$SCEN: ok"; then
    echo "$SCEN: FAILED host image check: $verdict" >> "$LOG"
  else
    echo "# $SCEN: host image check: $verdict" >> "$LOG"
  fi
fi
exit $rc
