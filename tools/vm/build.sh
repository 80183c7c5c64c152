#!/usr/bin/env bash
# tools/vm/build.sh [KVER...]: everything the e2e VMs need, into tools/vm/out/:
#   nvme-e2e         the driver, a static binary (musl; static glibc if musl is unavailable)
#   virtio-e2e       virtio-drivers' VirtIOBlk on dmaspace-virtio, built the same way
# and for each guest kernel KVER (default: 6.12 7.3), in tools/vm/out/k-KVER/:
#   bzImage          the kernel (kernel.sh KVER: cached outside the clone by
#                    tools/kernel-oracle/kbuild.sh)
#   p2p_oracle.ko    the oracle module, built against it (the guest kernel's verdicts)
#   initramfs.cpio.gz  busybox + /init + the module and the two drivers
# Idempotent; a second run takes seconds.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ORACLE="$REPO/tools/kernel-oracle"
OUT="$HERE/out"
mkdir -p "$OUT"
log() { echo "vm-build: $*" >&2; }

command -v qemu-system-x86_64 >/dev/null && [ -x /bin/busybox ] || {
  log "apt-get install qemu-system-x86 busybox-static"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends qemu-system-x86 busybox-static >&2
}

KVERS=${*:-6.12 7.3}
t0=$(date +%s)
for k in $KVERS; do
  KDIR=$(bash "$HERE/kernel.sh" "$k")
  mkdir -p "$OUT/k-$k"
  cp "$KDIR/bzImage" "$OUT/k-$k/bzImage"
  "$ORACLE/build-module.sh" "$KDIR" "$OUT/k-$k/p2p_oracle.ko"
  echo "$KDIR" > "$OUT/k-$k/kdir"
done
t1=$(date +%s)

# The driver: static, so the initramfs needs no libc.
TARGET=x86_64-unknown-linux-musl
if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  rustup target add "$TARGET" >&2 || TARGET=""
fi
if [ -n "$TARGET" ]; then
  nice -n 10 cargo build --quiet --release --manifest-path "$REPO/Cargo.toml" -p dmaspace-vm-nvme -p dmaspace-vm-virtio --target "$TARGET" >&2
  BIN="$REPO/target/$TARGET/release"
else
  log "musl target unavailable: static glibc"
  RUSTFLAGS="-C target-feature=+crt-static" nice -n 10 cargo build --quiet --release \
    --manifest-path "$REPO/Cargo.toml" -p dmaspace-vm-nvme -p dmaspace-vm-virtio --target x86_64-unknown-linux-gnu >&2
  BIN="$REPO/target/x86_64-unknown-linux-gnu/release"
fi
cp "$BIN/nvme-e2e" "$BIN/virtio-e2e" "$OUT/"
t2=$(date +%s)

info=""
for k in $KVERS; do
  KDIR=$(cat "$OUT/k-$k/kdir")
  cat > "$OUT/k-$k/initramfs.list" <<LIST
dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1
dir /bin 0755 0 0
file /bin/busybox /bin/busybox 0755 0 0
slink /bin/sh busybox 0777 0 0
file /bin/nvme-e2e $OUT/nvme-e2e 0755 0 0
file /bin/virtio-e2e $OUT/virtio-e2e 0755 0 0
dir /proc 0755 0 0
dir /sys 0755 0 0
dir /tmp 0755 0 0
file /init $HERE/initramfs/init 0755 0 0
file /p2p_oracle.ko $OUT/k-$k/p2p_oracle.ko 0644 0 0
LIST
  "$KDIR/gen_init_cpio" "$OUT/k-$k/initramfs.list" | gzip -1 > "$OUT/k-$k/initramfs.cpio.gz"
  info="$info${info:+, }kernel $(cat "$KDIR/kernelrelease") (compile $(cat "$KDIR/build-seconds") s when built)"
done
echo "$info; kernels and modules $((t1 - t0)) s this run, driver $((t2 - t1)) s" > "$OUT/build-info"
log "OK: $(cat "$OUT/build-info")"
