#!/usr/bin/env bash
# tools/kernel-driver/e2e.sh: the in-kernel dmaspace driver, end to end.
#   1. the shared Linux 7.3.4 kernel with Rust (kernel.sh: cached, ~16 min cold on 2 cores)
#   2. vendor.sh copies the crate and the seam into its source, `make` rebuilds
#      the vendored crates into vmlinux (seconds after an edit)      -> crate-in-kernel
#   3. the edu driver (edu/) built as a module against it
#   4. two QEMU q35 VMs (TCG, 256 MiB: edu's engine has 28 address bits) with
#      -device edu: one behind intel-iommu (IOVAs; iommu.strict=1), one
#      without (physical addresses)                                  -> edu-*-iommu, edu-*-direct
#      and, behind the IOMMU, the engine aimed at a freed buffer      -> edu-iommu-contains
# Prints `name: ok|FAILED why` per scenario, then `N passed, M failed`;
# exits non-zero on any failure. Logs in tools/kernel-driver/out/.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT="$HERE/out"
mkdir -p "$OUT"
JOBS=${JOBS:-2}
pass=0 fail=0
ok() { # ok NAME [DETAIL]: DETAIL in parentheses (unless it has them)
  case "${2:-}" in "") echo "$1: ok" ;; "("*) echo "$1: ok $2" ;; *) echo "$1: ok ($2)" ;; esac
  pass=$((pass + 1))
}
bad() { echo "$1: FAILED $2"; fail=$((fail + 1)); }
finish() { echo "$pass passed, $fail failed"; [ "$fail" = 0 ]; exit $?; }
all_failed() { # all_failed WHY: every scenario fails for one reason
  for s in crate-in-kernel edu-coherent-iommu edu-streaming-iommu edu-coherent-direct \
    edu-streaming-direct edu-iommu-contains; do bad "$s" "$1"; done
  finish
}
t0=$(date +%s)

command -v qemu-system-x86_64 >/dev/null && [ -x /bin/busybox ] || {
  echo "kernel-driver: apt-get install qemu-system-x86 busybox-static" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends qemu-system-x86 busybox-static >&2
}

# 1. the kernel (KDRV_KDIR=DIR: a kernel-<hash> directory kernel.sh built before)
if [ -n "${KDRV_KDIR:-}" ]; then
  KDIR=$KDRV_KDIR
else
  KDIR=$(sh "$HERE/kernel.sh" 2> "$OUT/kbuild.log" | tail -n 1)
fi
if [ -z "$KDIR" ] || [ ! -f "$KDIR/bzImage" ]; then
  all_failed "kernel build: $(tail -n 3 "$OUT/kbuild.log" | tr '\n' ' ')"
fi
KSRC=$(cat "$KDIR/source")
read -r -a KMAKE < "$KDIR/makeflags"
export LIBCLANG_PATH=${LIBCLANG_PATH:-/usr/lib/llvm-19/lib}
t1=$(date +%s)

# 2. the crate in the kernel tree (rebuilt incrementally into the cached build)
if ! sh "$HERE/vendor.sh" "$KSRC" > "$OUT/vendor.log" 2>&1; then
  all_failed "vendor.sh: $(tail -n 2 "$OUT/vendor.log" | tr '\n' ' ')"
fi
if nice -n 10 make -s -C "$KSRC" O="$KDIR/build" "${KMAKE[@]}" -j"$JOBS" bzImage modules > "$OUT/crate.log" 2>&1 &&
  [ -f "$KDIR/build/rust/libdmaspace.rmeta" ] && [ -f "$KDIR/build/rust/libdmaspace_kernel.rmeta" ]; then
  nexp=$(grep -c 'dmaspace' "$KDIR/build/Module.symvers" || true)
  t2=$(date +%s)
  ok crate-in-kernel "dmaspace, dmaspace_pci, bitflags, dmaspace_kernel in vmlinux, $nexp symbols exported, $((t2 - t1)) s"
else
  if [ ! -s "$OUT/crate.log" ]; then
    bad crate-in-kernel "make built no vendored crate (does rust/Makefile include rust/vendor/Makefile?)"
  else
    bad crate-in-kernel "$(grep -m 3 -E 'error|Error' "$OUT/crate.log" | tr '\n' ' ') (see $OUT/crate.log)"
  fi
  for s in edu-coherent-iommu edu-streaming-iommu edu-coherent-direct edu-streaming-direct edu-iommu-contains; do
    bad "$s" "no kernel with the crate"
  done
  finish
fi
cp "$KDIR/build/arch/x86/boot/bzImage" "$OUT/bzImage"

# 3. the driver module
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$HERE/edu/dmaspace_edu.rs" "$HERE/edu/Kbuild" "$tmp/"
if ! make -s -C "$KDIR/build" "${KMAKE[@]}" M="$tmp" modules > "$OUT/module.log" 2>&1; then
  why="driver build: $(grep -m 3 -E 'error' "$OUT/module.log" | tr '\n' ' ') (see $OUT/module.log)"
  for s in edu-coherent-iommu edu-streaming-iommu edu-coherent-direct edu-streaming-direct edu-iommu-contains; do
    bad "$s" "$why"
  done
  finish
fi
cp "$tmp/dmaspace_edu.ko" "$OUT/"
cat > "$OUT/initramfs.list" <<LIST
dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1
dir /bin 0755 0 0
file /bin/busybox /bin/busybox 0755 0 0
slink /bin/sh busybox 0777 0 0
dir /proc 0755 0 0
dir /sys 0755 0 0
file /init $HERE/initramfs/init 0755 0 0
file /dmaspace_edu.ko $OUT/dmaspace_edu.ko 0644 0 0
LIST
"$KDIR/gen_init_cpio" "$OUT/initramfs.list" | gzip -1 > "$OUT/initramfs.cpio.gz"

# 4. the VMs
vm() { # vm NAME QEMU-MACHINE-ARGS CMDLINE
  local log="$OUT/vm-$1.log"
  # shellcheck disable=SC2086 # word lists by design
  timeout --kill-after=10 "${KDRV_VM_TIMEOUT:-240}" qemu-system-x86_64 \
    -M q35 -accel tcg -cpu qemu64 -smp 1 -m 256M \
    -nographic -nodefaults -no-reboot -monitor none -serial "file:$log" \
    -kernel "$OUT/bzImage" -initrd "$OUT/initramfs.cpio.gz" \
    -append "console=ttyS0 panic=-1 quiet $3" \
    $2 -device edu,addr=0x4 </dev/null 2> "$OUT/qemu-$1.log"
  tr -d '\r' < "$log" > "$log.txt"
}
line() { grep -a -m 1 "dmaspace-edu: $2:" "$OUT/vm-$1.log.txt" | sed 's/.*dmaspace-edu: //'; }
check() { # check SCENARIO VM CHECK: the driver's line for CHECK in VM's log
  local l
  l=$(line "$2" "$3")
  case "$l" in
    "$3: ok"*) ok "$1" "${l#"$3": ok }" ;;
    "") bad "$1" "no '$3' line from the driver (see $OUT/vm-$2.log.txt)" ;;
    *) bad "$1" "${l#"$3": FAILED }" ;;
  esac
}
vm iommu "-device intel-iommu,intremap=on,aw-bits=48" "intel_iommu=on iommu.strict=1 kdrv.contains=1"
vm direct "" "kdrv.contains=0"
grp_i=$(sed -n 's/^KDRV iommu_group=//p' "$OUT/vm-iommu.log.txt")
grp_d=$(sed -n 's/^KDRV iommu_group=//p' "$OUT/vm-direct.log.txt")
for c in coherent streaming; do
  if [ -z "$grp_i" ] || [ "$grp_i" = none ]; then
    bad "edu-$c-iommu" "edu is in no IOMMU group in the IOMMU VM (see $OUT/vm-iommu.log.txt)"
  else
    check "edu-$c-iommu" iommu "$c"
  fi
done
for c in coherent streaming; do
  if [ "$grp_d" != none ]; then
    bad "edu-$c-direct" "edu is in IOMMU group '${grp_d}' in the direct VM"
  else
    check "edu-$c-direct" direct "$c"
  fi
done
# Containment: the driver says no byte of a live buffer changed, and the
# guest's IOMMU logged a fault for exactly the stale address.
l=$(line iommu contains)
case "$l" in
  "contains: ok"*)
    stale=${l##*stale=}
    page=$(printf '0x%x' $(( stale & ~0xfff )))
    if grep -a -q -E "DMAR:.*fault addr $page( |$)" "$OUT/vm-iommu.log.txt"; then
      ok edu-iommu-contains "no byte changed; DMAR fault logged for $page"
    else
      bad edu-iommu-contains "no DMAR fault logged for $page (see $OUT/vm-iommu.log.txt)"
    fi ;;
  "") bad edu-iommu-contains "no 'contains' line from the driver (see $OUT/vm-iommu.log.txt)" ;;
  *) bad edu-iommu-contains "${l#contains: FAILED }" ;;
esac
echo "# kernel $(cat "$KDIR/kernelrelease") ($KDIR), e2e $(( $(date +%s) - t0 )) s" >&2
finish
