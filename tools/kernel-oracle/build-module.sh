#!/bin/sh
# build-module.sh KDIR DEST: build p2p_oracle.ko against the kernel in KDIR (a
# kernel-<hash> directory printed by kbuild.sh) and copy it to DEST. The build
# runs in a scratch copy so that no build products land next to the sources.
# Shared by the oracle kit and the VM kit (tools/vm/), whose scenarios ask the
# guest kernel for its P2PDMA verdicts.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
KDIR=${1:?usage: build-module.sh KDIR DEST}
DEST=${2:?usage: build-module.sh KDIR DEST}
if [ -f "$DEST" ] && [ "$DEST" -nt "$KDIR/bzImage" ] && [ "$DEST" -nt "$HERE/module/p2p_oracle.c" ]; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$HERE/module/p2p_oracle.c" "$HERE/module/Kbuild" "$tmp/"
# The kernel's own make variables (LLVM=-19 for a Rust-enabled kernel): a
# module must be built with the compiler the kernel was.
MAKEFLAGS_K=$(cat "$KDIR/makeflags" 2>/dev/null || echo ARCH=x86_64)
# shellcheck disable=SC2086
make -s -C "$KDIR/build" $MAKEFLAGS_K M="$tmp" modules >&2
cp "$tmp/p2p_oracle.ko" "$DEST"
echo "build-module: $DEST" >&2
