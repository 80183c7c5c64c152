#!/bin/sh
# capture.sh NAME: boot the oracle kernel in QEMU (q35, TCG) with the topology
# described by topologies/NAME and write pci/tests/fixtures/kernel/NAME/
# (KVER=7.3: the 7.3.4 kernel of out-7.3/, into pci/tests/fixtures/kernel-7.3/NAME/)
#   console.log    raw serial console of the boot (the evidence)
#   root/...       the captured sysfs tree (sys/devices/pci*, sys/bus/pci/devices, proc/cpuinfo)
#   oracle.txt     the module's report as read from /proc/p2p_oracle
#   verdicts.json  every ordered pair: distance, and map type where observed
# Needs out/bzImage and out/initramfs.cpio.gz (run build-kernel.sh first).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
KVER=${KVER:-6.12}
if [ "$KVER" = 6.12 ]; then OUT="$HERE/out"; FIXDIR=kernel; else OUT="$HERE/out-$KVER"; FIXDIR="kernel-$KVER"; fi
export ORACLE_OUT="$OUT"
NAME=${1:?usage: capture.sh NAME (a file in tools/kernel-oracle/topologies/)}
TOPO="$HERE/topologies/$NAME"
[ -f "$TOPO" ] || { echo "capture: no topology $TOPO" >&2; exit 1; }
for f in bzImage initramfs.cpio.gz; do
  [ -f "$OUT/$f" ] || { echo "capture: $OUT/$f missing: run KVER=$KVER build-kernel.sh" >&2; exit 1; }
done

# The initramfs is cheap: rebuild it when /init or the module changed.
if [ "$HERE/initramfs/init" -nt "$OUT/initramfs.cpio.gz" ] || [ "$OUT/p2p_oracle.ko" -nt "$OUT/initramfs.cpio.gz" ]; then
  "$HERE/make-initramfs.sh"
fi

# Defaults; the topology file overrides them.
CPU=qemu64
MEM=512M
QEMU_DEVICES=""
CMDLINE_EXTRA=""
TOPOLOGIES="$HERE/topologies"
. "$TOPO"

# How many functions should publish P2P memory (the initramfs waits for them).
P2PMEM=$(printf '%s\n' $QEMU_DEVICES | grep -c 'cmb_size_mb=' || true)

FIX="$REPO/pci/tests/fixtures/$FIXDIR/$NAME"
rm -rf "$FIX"
mkdir -p "$FIX"
echo "capture: $NAME (cpu $CPU)"
# shellcheck disable=SC2086 # QEMU_DEVICES is a word list by design
timeout "${CAPTURE_TIMEOUT:-900}" qemu-system-x86_64 \
  -M q35 -accel tcg -cpu "$CPU" -smp 1 -m "$MEM" \
  -nographic -nodefaults -no-reboot -monitor none \
  -serial "file:$FIX/console.log" \
  -kernel "$OUT/bzImage" -initrd "$OUT/initramfs.cpio.gz" \
  -append "console=ttyS0 panic=-1 oracle_p2pmem=$P2PMEM $CMDLINE_EXTRA" \
  $QEMU_DEVICES </dev/null
python3 "$HERE/decode.py" --name "$NAME" --cpu "$CPU" "$FIX"
