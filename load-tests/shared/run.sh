#!/usr/bin/env bash
# Issue 6: N loader processes at once on one `twinload mock-adt`, as N Batch tasks share one ADT
# instance. Release build. Each loader gets the same generated fleet with its own twin-id prefix
# (disjoint twins and relationships, shared models).
#
#   load-tests/shared/run.sh [loaders] [twins] [seed]      # defaults: 4 loaders, 2,000 twins each, seed 1
#
# Knobs (environment): GEN_FLAGS (e.g. "--hubs 10 --hub-degree 500"), MOCK_FLAGS (default: ADT's default limits, e.g. "--limits adt-2021" or
# "--fault-429-rate 0.15"), LOAD_FLAGS (extra flags for every loader), OUT (default
# /tmp/twinload-shared-<loaders>). Prints per loader and aggregate figures: dead letters, the
# aggregate create/delete rate (sum of the loaders' T* × configured rate ÷ wall time from the
# first start to the last end), 429 share. Every process it starts is stopped when it ends.
set -euo pipefail
cd "$(dirname "$0")/../.."
. load-tests/lib.sh

loaders="${1:-4}"
twins="${2:-2000}"
seed="${3:-1}"
out="${OUT:-/tmp/twinload-shared-$loaders}"
rm -rf "$out"
mkdir -p "$out"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
bin="$target_dir/release/twinload"

cargo build --release --quiet
base="$out/fleet.ndjson"
# shellcheck disable=SC2086
"$bin" gen --twins "$twins" --seed "$seed" ${GEN_FLAGS:-} --out "$base" >/dev/null
for i in $(seq 1 "$loaders"); do
    sed -e "s/\"\\\$dtId\":\"/\"\$dtId\":\"l$i-/" -e "s/\"\\\$targetId\":\"/\"\$targetId\":\"l$i-/" "$base" >"$out/fleet-$i.ndjson"
done

# shellcheck disable=SC2086
"$bin" mock-adt --listen 127.0.0.1:0 --no-auth ${MOCK_FLAGS:-} >"$out/mock.stdout" 2>"$out/mock.stderr" &
mock_pid=$!
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    kill "$mock_pid" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT
url="$(mock_url "$out/mock.stdout" "$out/mock.stderr")"

start_ns=$(date +%s%N)
for i in $(seq 1 "$loaders"); do
    # shellcheck disable=SC2086
    ( /usr/bin/time -v "$bin" load --endpoint "$url" --input "$out/fleet-$i.ndjson" ${LOAD_FLAGS:-} \
        --summary "$out/summary-$i.json" --dead-letter "$out/dead-letters-$i.ndjson" 2>"$out/load-$i.stderr"
      echo $? >"$out/exit-$i"; date +%s%N >"$out/end-$i" ) &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done
pids=()
curl -s "$url/_mock/stats" >"$out/mock-stats.json"
python3 - "$out" "$loaders" "$start_ns" <<'PY'
import json, sys
out, n, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ends, t_star, req, thr, dead, landed, codes = [], 0.0, 0, 0, 0, 0, []
for i in range(1, n + 1):
    s = json.load(open(f"{out}/summary-{i}.json"))
    code = int(open(f"{out}/exit-{i}").read())
    codes.append(code)
    ends.append(int(open(f"{out}/end-{i}").read()))
    t_star += s["t_star_s"]
    req += s["requests_total"]
    thr += s["throttled_total"]
    d = sum(v["dead_lettered"] + v["not_attempted"] for v in s["items"].values())
    l = sum(v["landed"] + v["already_existed"] for v in s["items"].values())
    dead += d
    landed += l
    print(f"loader {i}: exit {code}, landed {l}, dead letters {d}, requests {s['requests_total']}, "
          f"429 {s['throttled_total']} ({100 * s['throttled_share']:.2f}%), write {s['write_elapsed_s']:.1f} s, "
          f"T* {s['t_star_s']:.1f} s, throttled_wait_s {s.get('throttled_wait_s')}")
wall = (max(ends) - start) / 1e9
stats = json.load(open(f"{out}/mock-stats.json"))
print(f"aggregate: {n} loaders, exit codes {codes}, landed {landed}, dead letters {dead}, wall {wall:.1f} s, "
      f"sum of T* {t_star:.1f} s -> {t_star / wall:.3f} of the configured rate; "
      f"429 {thr} of {req} requests = {100 * thr / max(req, 1):.2f}%; "
      f"mock order_violations_total {stats.get('order_violations_total')}")
PY
