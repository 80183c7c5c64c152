#!/bin/sh
# Capture every topology in tools/kernel-oracle/topologies/ (files only; the
# devices/ folder holds the shared device lists they source).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
for t in "$HERE"/topologies/*; do
  [ -f "$t" ] || continue
  "$HERE/capture.sh" "$(basename "$t")"
done
