#!/usr/bin/env bash
# Every criterion bench of the crate in quick mode: short warm-up and measurement,
# few samples (ratios in one run stay meaningful; absolute times are rough).
# Under 3 minutes on the 2-core development machine once built.
#   bash benches/quick.sh            # all
#   bash benches/quick.sh topology   # benches whose id contains "topology"
set -euo pipefail
cd "$(dirname "$0")/.."
filter=${1:-}
args=(--warm-up-time 0.3 --measurement-time 1 --sample-size 10 --noplot)
[ -n "$filter" ] && args=("$filter" "${args[@]}")
for b in map io iova scale; do
    nice -n 10 cargo bench -q -p dmaspace --bench "$b" -- "${args[@]}"
done
nice -n 10 cargo bench -q -p dmaspace-pci --bench topology -- "${args[@]}"
