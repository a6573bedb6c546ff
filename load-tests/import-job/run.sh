#!/usr/bin/env bash
# Measures a first load through an ADT import job (`twinload load --mode import-job`) against
# `twinload mock-adt` (ADT's default limits, the default server-side import rate) with Azurite
# as the staging container, all on loopback. Release build. Compare with
# `load-tests/loader/run.sh limited <twins>` (the same fleet through the per-item API).
#
#   load-tests/import-job/run.sh [twins] [seed]     # default 100,000 twins (~200,000 relationships)
#
# PROFILE=dev uses the debug build instead of the release one (both sides are rate-bound here).
# IMPORT_RATE (items/s, default: the mock's default, 1,667/s) sets the mock's --import-rate.
# Needs Azurite 3.35.0 (tests/run.sh installs it into $CARGO_TARGET_DIR/azurite), openssl and
# python3 (load-tests/lib.sh signs the SAS). Leaves the summary JSON, `time -v` output and
# the mock's stats in $OUT (default /tmp/twinload-import-job). Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/../.."
. load-tests/lib.sh

twins="${1:-100000}"
seed="${2:-1}"
out="${OUT:-/tmp/twinload-import-job}"
mkdir -p "$out"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
if [ "${PROFILE:-release}" = dev ]; then
    bin="$target_dir/debug/twinload"
    cargo build --quiet
else
    bin="$target_dir/release/twinload"
    cargo build --release --quiet
fi
azurite="${TWINLOAD_AZURITE:-$target_dir/azurite/node_modules/.bin/azurite-blob}"

fleet="$out/fleet-$twins-$seed.ndjson"
[ -f "$fleet" ] || "$bin" gen --twins "$twins" --seed "$seed" --out "$fleet"

pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done' EXIT

# Azurite as the staging container and the mock (lib.sh): the mock's import jobs reach the
# container with the SAS, as ADT does with its managed identity, and the loader gives ADT plain
# blob URLs.
work="$out"
mockbin="$bin"
mock_flags=()
[ -n "${IMPORT_RATE:-}" ] && mock_flags=(--import-rate "$IMPORT_RATE")
start_azurite_and_mock
url="$adt"
container="$account/staging"
curl -sf -X PUT -H 'x-ms-version: 2021-12-02' -H 'content-length: 0' "$container?restype=container&$sas" >/dev/null

set +e
TWINLOAD_STAGING="$container?$sas" /usr/bin/time -v "$bin" load --endpoint "$url" --input "$fleet" \
    --mode import-job --summary "$out/summary.json" --dead-letter "$out/dead-letters.ndjson" 2>"$out/load.stderr"
code=$?
set -e
curl -s "$url/_mock/stats" >"$out/mock-stats.json"
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
mode = s["plan"]["load_mode"]
print("items: " + ", ".join(f"{k} {v}" for k, v in s["items"].items()))
print(f"mode {mode['mode']}: {mode['reason']}")
print(f"ADT requests {s['requests_total']}, by class {s['requests_by_class']}, by status {s['requests_by_status']}")
print(f"whole run {s['elapsed_s']:.1f} s (job phase {s['write_elapsed_s']:.1f} s); per-item T* {s['t_star_s']:.1f} s")
print(f"loader CPU user {user:.2f} s + sys {system:.2f} s; peak RSS {rss / 1024:.0f} MiB")
print(f"mock: twins {stats.get('twins')}, relationships {stats.get('relationships')}, CPU {float(open(f'{out}/mock-cpu-seconds').read()):.1f} s")
PY
