#!/usr/bin/env bash
# Prints a kernel's P2PDMA host-bridge allowlist (`pci_p2pdma_whitelist[]` of
# drivers/pci/p2pdma.c), one entry per line in match order:
#   VENDOR DEVICE FLAGS      (hex; DEVICE "any" for PCI_ANY_ID; FLAGS 0 or 1)
# with every PCI_*_ID_* name resolved through include/linux/pci_ids.h.
#
# Usage: allowlist-from-source.sh KERNEL_SOURCE_DIR > list.txt
# The lists in pci/tests/fixtures/allowlists/ were made with it, and
# pci/tests/allowlist_source.rs checks the crate's named lists against them.
set -euo pipefail
src=${1:?usage: allowlist-from-source.sh KERNEL_SOURCE_DIR}
c="$src/drivers/pci/p2pdma.c"
ids="$src/include/linux/pci_ids.h"
[ -f "$c" ] && [ -f "$ids" ] || { echo "error: $src has no drivers/pci/p2pdma.c or include/linux/pci_ids.h" >&2; exit 2; }
awk -v idsfile="$ids" '
  BEGIN {
    while ((getline line < idsfile) > 0) {
      if (line ~ /^#define[ \t]+PCI_(VENDOR|DEVICE)_ID_[A-Z0-9_]+[ \t]+0x[0-9a-fA-F]+/) {
        split(line, f, /[ \t]+/); def[f[2]] = f[3]
      }
    }
  }
  function val(x) {
    if (x == "PCI_ANY_ID") return "any"
    if (x in def) x = def[x]
    if (x !~ /^0x[0-9a-fA-F]+$/) { print "error: cannot resolve " x > "/dev/stderr"; exit 3 }
    h = tolower(substr(x, 3)); while (length(h) < 4) h = "0" h
    return "0x" h
  }
  /pci_p2pdma_whitelist\[\] = \{/ { on = 1; next }
  on && /^\};/ { exit }
  on && /\{PCI_VENDOR_ID/ {
    line = $0; gsub(/[{},]/, " ", line); n = split(line, f, /[ \t]+/)
    k = 0; for (i = 1; i <= n; i++) if (f[i] != "") v[++k] = f[i]
    flags = (v[3] == "REQ_SAME_HOST_BRIDGE") ? 1 : 0
    print val(v[1]), val(v[2]), flags
  }
' "$c"
