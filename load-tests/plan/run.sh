#!/usr/bin/env bash
# Plan at scale: generate a synthetic fleet (default 1,000,000 twins, 2,000,000 relationships)
# and time `twinload plan` on it with /usr/bin/time -v (wall time and peak RSS).
#   TWINS=1000000 OUT=/tmp/twinload-plan-at-scale load-tests/plan/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
TWINS=${TWINS:-1000000}
OUT=${OUT:-${TMPDIR:-/tmp}/twinload-plan-at-scale}
mkdir -p "$OUT"
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release/twinload
"$BIN" gen --twins "$TWINS" --relationships-per-twin 2 --seed 1 --out "$OUT/fleet.ndjson"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
set +e
/usr/bin/time -v "$BIN" plan --input "$OUT/fleet.ndjson" --json "$OUT/plan.json" 2> "$OUT/plan.stderr"
code=$?
set -e
grep -E "twinload plan:|relationships |T\* =|Elapsed|Maximum resident|User time|System time" "$OUT/plan.stderr"
echo "exit code: $code (0 = nothing rejected)"
exit "$code"
