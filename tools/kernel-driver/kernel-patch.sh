#!/bin/sh
# kernel-patch.sh KSRC: the hook that lets crates be vendored into a Linux 7.3
# source tree the way the kernel vendors zerocopy (rust/Makefile builds them as
# kernel crates, rust/exports.c exports their symbols to modules). Run once by
# kbuild.sh (KSRC_PATCH=) on a hard-linked copy of the unpacked source, so the
# shared clean tree and every gcc build of it stay as they were.
#
# The hook is inert until tools/kernel-driver/vendor.sh has copied the crates
# and their rules into KSRC/rust/vendor/: the cached kernel is built without
# them, and the crates are (re)built into its object tree incrementally, so an
# edit of the crate never rebuilds the kernel.
#
# Files are replaced (written new, then renamed), never edited in place: in
# the hard-linked copy an in-place edit would change the shared clean tree.
set -eu
KSRC=${1:?usage: kernel-patch.sh KSRC}
grep -q '^obj-$(CONFIG_RUST) += zerocopy.o$' "$KSRC/rust/Makefile" || {
  echo "kernel-patch: $KSRC/rust/Makefile does not vendor zerocopy: not the 7.3 this hook is for" >&2; exit 1; }
{
  cat "$KSRC/rust/Makefile"
  printf '\n%s\n%s\n%s\n' \
    '# dmaspace: crates vendored by tools/kernel-driver/vendor.sh (none until it ran).' \
    '-include $(src)/vendor/Makefile' ''
} > "$KSRC/rust/Makefile.new"
mv "$KSRC/rust/Makefile.new" "$KSRC/rust/Makefile"
{
  cat "$KSRC/rust/exports.c"
  printf '\n%s\n%s\n%s\n' \
    '#if __has_include("vendor/exports.h") /* dmaspace: vendored crates, see rust/vendor/ */' \
    '#include "vendor/exports.h"' '#endif'
} > "$KSRC/rust/exports.c.new"
mv "$KSRC/rust/exports.c.new" "$KSRC/rust/exports.c"
echo "kernel-patch: rust/Makefile and rust/exports.c hooked in $KSRC" >&2
