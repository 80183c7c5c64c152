#!/bin/sh
# Build the oracle kernel: Linux 6.12 (Debian linux-source-6.12) from
# tinyconfig + kernel.config, then the p2p_oracle module, then busybox.
# Idempotent: every step is skipped when its output already exists.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
OUT="$HERE/out"
SRC_TAR=/usr/src/linux-source-6.12.tar.xz
KSRC="$OUT/linux-source-6.12"
JOBS=${JOBS:-2}
mkdir -p "$OUT"

need_pkgs=""
[ -f "$SRC_TAR" ] || need_pkgs="$need_pkgs linux-source-6.12"
command -v qemu-system-x86_64 >/dev/null || need_pkgs="$need_pkgs qemu-system-x86"
[ -x /bin/busybox ] || need_pkgs="$need_pkgs busybox-static"
for t in gcc make flex bison bc cpio python3; do
  command -v $t >/dev/null || need_pkgs="$need_pkgs build-essential flex bison bc cpio python3"
done
dpkg -s libelf-dev >/dev/null 2>&1 || need_pkgs="$need_pkgs libelf-dev"
dpkg -s libssl-dev >/dev/null 2>&1 || need_pkgs="$need_pkgs libssl-dev"
if [ -n "$need_pkgs" ]; then
  echo "build-kernel: apt-get install $need_pkgs"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need_pkgs
fi

if [ ! -f "$KSRC/Makefile" ]; then
  echo "build-kernel: unpacking $SRC_TAR"
  tar -C "$OUT" -xf "$SRC_TAR"
fi

cd "$KSRC"
if [ ! -f .config ] || [ "$HERE/kernel.config" -nt .config ]; then
  make ARCH=x86_64 tinyconfig
  ./scripts/kconfig/merge_config.sh -m .config "$HERE/kernel.config"
  make ARCH=x86_64 olddefconfig
fi

fail=0
for sym in 64BIT PCI PCI_MSI PCI_MMCONFIG PCIEPORTBUS ACPI PCI_P2PDMA ZONE_DEVICE MODULES \
           MODULE_UNLOAD BLK_DEV_NVME DEVTMPFS SERIAL_8250_CONSOLE PRINTK \
           BLK_DEV_INITRD BINFMT_ELF BINFMT_SCRIPT PROC_FS SYSFS CPU_SUP_AMD \
           SPARSEMEM_VMEMMAP MEMORY_HOTPLUG DEVTMPFS_MOUNT; do
  if ! grep -qx "CONFIG_$sym=y" .config; then
    echo "build-kernel: ERROR: CONFIG_$sym=y is not in .config" >&2
    fail=1
  fi
done
grep -qx "CONFIG_PCI_IOV=y" .config || echo "build-kernel: note: CONFIG_PCI_IOV not set"
[ $fail = 0 ] || { echo "build-kernel: FAILED: required options missing (see above)" >&2; exit 1; }

if [ ! -f arch/x86/boot/bzImage ] || [ .config -nt arch/x86/boot/bzImage ]; then
  nice -n 10 make ARCH=x86_64 -j"$JOBS" bzImage modules_prepare
  # Module.symvers is produced by a full vmlinux build; make sure it exists.
  [ -f Module.symvers ] || nice -n 10 make ARCH=x86_64 -j"$JOBS" modules
fi
cp arch/x86/boot/bzImage "$OUT/bzImage"
make -s ARCH=x86_64 kernelrelease > "$OUT/kernelrelease"

echo "build-kernel: building module"
# Build a copy under out/ so that no build products land next to the sources.
rm -rf "$OUT/module-build"
mkdir -p "$OUT/module-build"
cp "$HERE/module/p2p_oracle.c" "$HERE/module/Kbuild" "$OUT/module-build/"
make -C "$KSRC" ARCH=x86_64 M="$OUT/module-build" modules
cp "$OUT/module-build/p2p_oracle.ko" "$OUT/p2p_oracle.ko"

"$HERE/make-initramfs.sh"
echo "build-kernel: OK: $(cat "$OUT/kernelrelease") -> $OUT/bzImage, $OUT/p2p_oracle.ko"
