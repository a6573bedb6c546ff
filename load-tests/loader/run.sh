#!/usr/bin/env bash
# Measures `twinload load` against `twinload mock-adt` running as a separate process on
# loopback (issue 3, "Measure and report"). Release build.
#
#   load-tests/loader/run.sh limited   [twins] [seed]  # ADT's default limits: makespan / T*, 429 share
#   load-tests/loader/run.sh unlimited [twins] [seed]  # limits off: requests/s, CPU per 1,000 requests
#
# Defaults: 20,000 twins (about 40,000 relationships), seed 1. LEDGER=1 adds a ledger
# (`--ledger $OUT/ledger.ndjson`, started afresh each run) to measure its memory; LOAD_FLAGS
# adds any other loader flags. Prints the figures and leaves
# the loader's summary JSON, `time -v` output and the mock's stats in $OUT (default
# /tmp/twinload-loader-<mode>). Every process it starts is stopped when it ends.
set -euo pipefail
cd "$(dirname "$0")/../.."
. load-tests/lib.sh

mode="${1:-limited}"
twins="${2:-20000}"
seed="${3:-1}"
out="${OUT:-/tmp/twinload-loader-$mode}"
mkdir -p "$out"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
bin="$target_dir/release/twinload"

cargo build --release --quiet
fleet="$out/fleet-$twins-$seed.ndjson"
[ -f "$fleet" ] || "$bin" gen --twins "$twins" --seed "$seed" --out "$fleet"

case "$mode" in
    limited)   mock_flags=(--no-auth);              load_flags=() ;;
    unlimited) mock_flags=(--no-auth --limits-off); load_flags=(--limits "$PWD/load-tests/loader/limits-unlimited.toml" --writers "${WRITERS:-64}") ;;
    *) echo "mode must be limited or unlimited" >&2; exit 2 ;;
esac

"$bin" mock-adt --listen 127.0.0.1:0 "${mock_flags[@]}" >"$out/mock.stdout" 2>"$out/mock.stderr" &
mock_pid=$!
trap 'kill "$mock_pid" 2>/dev/null || true; wait "$mock_pid" 2>/dev/null || true' EXIT
url="$(mock_url "$out/mock.stdout" "$out/mock.stderr")"

if [ -n "${LEDGER:-}" ]; then
    rm -f "$out/ledger.ndjson" "$out/ledger.ndjson.lock"
    load_flags+=(--ledger "$out/ledger.ndjson")
fi
set +e
/usr/bin/time -v "$bin" load --endpoint "$url" --input "$fleet" "${load_flags[@]}" ${LOAD_FLAGS:-} \
    --summary "$out/summary.json" --dead-letter "$out/dead-letters.ndjson" 2>"$out/load.stderr"
code=$?
set -e
curl -s "$url/_mock/stats" >"$out/mock-stats.json"
# The mock's own CPU time (user + system clock ticks), to see which side was busy.
awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$mock_pid/stat" >"$out/mock-cpu-seconds"
echo "exit code $code"
python3 - "$out" <<'PY'
import json, re, sys
out = sys.argv[1]
s = json.load(open(f"{out}/summary.json"))
t = open(f"{out}/load.stderr").read()
user = float(re.search(r"User time \(seconds\): ([\d.]+)", t).group(1))
system = float(re.search(r"System time \(seconds\): ([\d.]+)", t).group(1))
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
stats = json.load(open(f"{out}/mock-stats.json"))
items = s["items"]
print(f"items: " + ", ".join(f"{k} {v}" for k, v in items.items()))
print(f"requests {s['requests_total']}, by status {s['requests_by_status']}")
print(f"throttled {s['throttled_total']} = {100 * s['throttled_share']:.3f}% of requests")
print(f"write makespan {s['write_elapsed_s']:.2f} s, T* {s['t_star_s']:.2f} s, ratio {s['makespan_ratio']:.4f}; whole run {s['elapsed_s']:.2f} s")
print(f"requests/s over the write phase: {s['requests_total'] / s['write_elapsed_s']:.0f}")
print(f"loader CPU user {user:.2f} s + sys {system:.2f} s = {1000 * (user + system) / s['requests_total']:.3f} s per 1,000 requests; peak RSS {rss / 1024:.0f} MiB")
mock_cpu = float(open(f"{out}/mock-cpu-seconds").read())
print(f"mock: order_violations_total {stats.get('order_violations_total')}, throttled_total {stats.get('throttled_total')}, CPU {mock_cpu:.2f} s")
PY
