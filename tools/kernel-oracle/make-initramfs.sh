#!/bin/sh
# Pack out/initramfs.cpio.gz: busybox (static, from busybox-static), /init and
# p2p_oracle.ko. Uses the kernel's own gen_init_cpio, so no root is needed.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${ORACLE_OUT:-$HERE/out}
BUSYBOX=${BUSYBOX:-/bin/busybox}
[ -x "$BUSYBOX" ] || { echo "make-initramfs: $BUSYBOX missing (apt-get install busybox-static)" >&2; exit 1; }
[ -f "$OUT/p2p_oracle.ko" ] || { echo "make-initramfs: build the module first" >&2; exit 1; }
[ -x "$OUT/gen_init_cpio" ] || { echo "make-initramfs: run build-kernel.sh first (it copies gen_init_cpio)" >&2; exit 1; }
cat > "$OUT/initramfs.list" <<LIST
dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1
dir /bin 0755 0 0
file /bin/busybox $BUSYBOX 0755 0 0
slink /bin/sh busybox 0777 0 0
dir /proc 0755 0 0
dir /sys 0755 0 0
dir /tmp 0755 0 0
dir /capture 0755 0 0
file /init $HERE/initramfs/init 0755 0 0
file /p2p_oracle.ko $OUT/p2p_oracle.ko 0644 0 0
LIST
"$OUT/gen_init_cpio" "$OUT/initramfs.list" | gzip -9 > "$OUT/initramfs.cpio.gz"
echo "make-initramfs: $OUT/initramfs.cpio.gz"
