#!/bin/sh
# Build the oracle kernel: Linux 6.12 (Debian linux-source-6.12), or with
# KVER=7.3 Linux 7.3.4 (trixie-backports' linux-source-7.3), from tinyconfig +
# kernel.config (via the shared kbuild.sh, which caches the kernel outside the
# clone, keyed by its source and config), then the p2p_oracle module, then the
# initramfs, into out/ (6.12) or out-7.3/. Idempotent: every step is skipped
# when its output is current.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
KVER=${KVER:-6.12}
export KVER
if [ "$KVER" = 6.12 ]; then OUT="$HERE/out"; else OUT="$HERE/out-$KVER"; fi
export ORACLE_OUT="$OUT"
mkdir -p "$OUT"

command -v qemu-system-x86_64 >/dev/null && [ -x /bin/busybox ] || {
  echo "build-kernel: apt-get install qemu-system-x86 busybox-static"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends qemu-system-x86 busybox-static
}

KDIR=$("$HERE/kbuild.sh" "$HERE/kernel.config" | tail -n 1)
grep -qx "CONFIG_PCI_IOV=y" "$KDIR/config" || echo "build-kernel: note: CONFIG_PCI_IOV not set"
cp "$KDIR/bzImage" "$OUT/bzImage"
cp "$KDIR/kernelrelease" "$OUT/kernelrelease"
cp "$KDIR/gen_init_cpio" "$OUT/gen_init_cpio"
"$HERE/build-module.sh" "$KDIR" "$OUT/p2p_oracle.ko"
"$HERE/make-initramfs.sh"
echo "build-kernel: OK: $(cat "$OUT/kernelrelease") -> $OUT/bzImage, $OUT/p2p_oracle.ko (kernel cached in $KDIR)"
