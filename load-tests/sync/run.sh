#!/usr/bin/env bash
# Measures `twinload load --mode sync` (issue 9, "Measure and report") against `twinload
# mock-adt` as a separate process on loopback, release build:
#
#   1. a full load with a ledger (the baseline);
#   2. 1% of the twins change ("name"): a sync with the ledger; its write requests and all its
#      requests against the full load's, and its wall time;
#   3. the same source again: an unchanged sync (0 writes), its reads and wall time;
#   4. 1% more change: a sync without a ledger (ADT's state read by query);
#   5. on a fresh mock, the full load killed with SIGKILL once half its twins and relationships
#      were written, then run again: its extra requests over a clean run.
#
#   load-tests/sync/run.sh [twins] [seed]    # default 100,000 twins, seed 1
#
# MODE=limited keeps ADT's limits on both sides (500 creates/s: a 100,000-twin fleet takes
# ~10 minutes per full load); the default, unlimited, turns the mock's limits off and gives the
# loader load-tests/loader/limits-unlimited.toml, so ratios of request counts are the same and
# the wall times show the loader's own cost. Figures go to $OUT (default /tmp/twinload-sync).
set -euo pipefail
cd "$(dirname "$0")/../.."
. load-tests/lib.sh

twins="${1:-100000}"
seed="${2:-1}"
mode="${MODE:-unlimited}"
out="${OUT:-/tmp/twinload-sync}"
mkdir -p "$out"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
# BIN=<path> uses a binary already built (e.g. target/debug/twinload) instead of building one.
if [ -n "${BIN:-}" ]; then bin="$BIN"; else bin="$target_dir/release/twinload"; cargo build --release --quiet -p twinload; fi

gen="$out/gen-$twins-$seed.ndjson"
[ -f "$gen" ] || "$bin" gen --twins "$twins" --seed "$seed" --out "$gen" >/dev/null
fleet="$out/fleet.ndjson"   # one input name for every run, as a scheduled sync sees it

case "$mode" in
    limited)   mock_flags=(--no-auth);              load_flags=() ;;
    unlimited) mock_flags=(--no-auth --limits-off); load_flags=(--limits "$PWD/load-tests/loader/limits-unlimited.toml" --writers "${WRITERS:-64}") ;;
    *) echo "MODE must be limited or unlimited" >&2; exit 2 ;;
esac

mock_pid=""
start_mock() {
    [ -n "$mock_pid" ] && { kill "$mock_pid" 2>/dev/null || true; wait "$mock_pid" 2>/dev/null || true; }
    "$bin" mock-adt --listen 127.0.0.1:0 "${mock_flags[@]}" >"$out/mock.stdout" 2>"$out/mock.stderr" &
    mock_pid=$!
    url="$(mock_url "$out/mock.stdout" "$out/mock.stderr")"
}
trap '[ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null; wait 2>/dev/null || true' EXIT

# run <name> <load args…>: one load, its mock stats before/after and `time -v`.
run() {
    local name="$1"; shift
    curl -s "$url/_mock/stats" >"$out/$name.before.json"
    set +e
    /usr/bin/time -v "$bin" load --endpoint "$url" --input "$fleet" "${load_flags[@]}" \
        --summary "$out/$name.summary.json" --dead-letter "$out/$name.dead.ndjson" "$@" 2>"$out/$name.stderr"
    echo "$name: exit code $?"
    set -e
    curl -s "$url/_mock/stats" >"$out/$name.after.json"
}

start_mock
cp "$gen" "$fleet"
rm -f "$out/ledger.ndjson" "$out/ledger-kill.ndjson"
run full --ledger "$out/ledger.ndjson"
echo "changed twins: $(python3 load-tests/sync/change.py "$gen" "$fleet" 0.01 "$seed")"
run sync1 --mode sync --ledger "$out/ledger.ndjson"
run unchanged --mode sync --ledger "$out/ledger.ndjson"
cp "$fleet" "$out/fleet-1.ndjson"
echo "changed twins: $(python3 load-tests/sync/change.py "$out/fleet-1.ndjson" "$fleet" 0.01 "$((seed + 1))")"
run query --mode sync

# Kill at 50%: a fresh mock, the original fleet, SIGKILL once half the full load's PUTs landed.
start_mock
cp "$gen" "$fleet"
half=$(python3 -c "import json;a=json.load(open('$out/full.after.json'));b=json.load(open('$out/full.before.json'));print((a['requests_by_operation'].get('PUT create_delete',0)-b['requests_by_operation'].get('PUT create_delete',0))//2)")
"$bin" load --endpoint "$url" --input "$fleet" "${load_flags[@]}" --ledger "$out/ledger-kill.ndjson" \
    --dead-letter "$out/killed.dead.ndjson" 2>"$out/killed.stderr" &
loader=$!
for _ in $(seq 1 6000); do
    puts=$(curl -s "$url/_mock/stats" | python3 -c "import json,sys;print(json.load(sys.stdin)['requests_by_operation'].get('PUT create_delete',0))")
    [ "$puts" -ge "$half" ] && break
    kill -0 "$loader" 2>/dev/null || break
    sleep 0.05
done
kill -9 "$loader" 2>/dev/null || true
wait "$loader" 2>/dev/null || true
curl -s "$url/_mock/stats" >"$out/killed.after.json"
echo "killed after $puts PUTs (half of the full load's: $half)"
echo '{"requests_by_operation":{},"requests_total":0}' >"$out/resumed.before.json"
run resumed --ledger "$out/ledger-kill.ndjson"
cp "$out/resumed.before.json" "$out/killed.before.json"

python3 - "$out" <<'PY'
import json, re, sys
out = sys.argv[1]
WRITES = ["PUT create_delete", "DELETE create_delete", "PATCH patch", "POST models"]
def load(name, when):
    return json.load(open(f"{out}/{name}.{when}.json"))
def delta(name):
    a, b = load(name, "after"), load(name, "before")
    ops = {k: v - b["requests_by_operation"].get(k, 0) for k, v in a["requests_by_operation"].items()}
    return {k: v for k, v in ops.items() if v}, a["requests_total"] - b["requests_total"]
def timing(name):
    t = open(f"{out}/{name}.stderr").read()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", t).group(1)
    parts = [float(p) for p in wall.split(":")]
    secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
    return secs, rss
full_ops, full_total = delta("full")
full_writes = sum(full_ops.get(k, 0) for k in WRITES)
print(f"full load: {full_total} requests, {full_writes} writes, {timing('full')[0]:.1f} s, max RSS {timing('full')[1]/1024:.0f} MiB")
for name in ["sync1", "unchanged", "query"]:
    ops, total = delta(name)
    writes = sum(ops.get(k, 0) for k in WRITES)
    secs, rss = timing(name)
    print(f"{name}: writes {writes} ({100*writes/full_writes:.3f}% of the full load's), all requests {total} "
          f"({100*total/full_total:.3f}%), {secs:.1f} s, max RSS {rss/1024:.0f} MiB; by operation {ops}")
killed = load("killed", "after")["requests_total"]
resumed_ops, resumed = delta("resumed")
total = killed + resumed
print(f"kill -9 at 50%: {killed} requests before the kill + {resumed} after = {total}; "
      f"extra over the clean full load: {total - full_total} ({100*(total-full_total)/full_total:.2f}%)")
PY
