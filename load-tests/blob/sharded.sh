#!/usr/bin/env bash
# Many sharded tasks over one container, as config/adf/pipeline/LoadTwinsSharded.json runs
# them: a generated fleet in Azurite as one JSON document per twin (named by its id, no
# extension, as a mapping data flow writes them) plus one models blob (models go to every task),
# and S twinload processes started at once, task i with `--shard i/S --rate-share 1/S`, each
# listing the whole container, against one mock ADT at default limits.
#
# Prints the wall time, makespan ÷ T* (all tasks together and per task), the share of 429s,
# per task: items landed and dead-lettered, ADT requests other than twin writes (model uploads
# and checks; the listing goes to Blob Storage); and checks that the shards' union covers every
# twin exactly once: the mock, empty before, holds all N twins and the tasks' landed counts add
# up to N, so no twin landed in two tasks (N sets whose sizes add up to the size of their union
# are disjoint).
#
#   load-tests/blob/sharded.sh [N=1000] [S=4]
#
# Needs: a full release build with the mock (`cargo build --release`) as $TWINLOAD (default
# $CARGO_TARGET_DIR/release/twinload; config/batch/package.sh overwrites that file with the
# lean loader, so give the full binary as $TWINLOAD_MOCK then), Azurite installed by
# tests/run.sh, curl, openssl, python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
. load-tests/lib.sh
n="${1:-1000}"
shards="${2:-4}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
loader="${TWINLOAD:-$target/release/twinload}"
mockbin="${TWINLOAD_MOCK:-$loader}"
azurite="${TWINLOAD_AZURITE:-$target/azurite/node_modules/.bin/azurite-blob}"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

start_azurite_and_mock
curl -sf -X PUT "$account/input?restype=container&$sas" -o /dev/null

# The fleet: twins only (a per-twin document carries no relationships), one blob per twin, and
# the models as one Import-Jobs NDJSON blob every task reads.
"$mockbin" gen --twins "$n" --seed 1 --relationships-per-twin 0 --out "$work/fleet.ndjson"
awk '/"Section": *"Twins"/{exit} {print}' "$work/fleet.ndjson" > "$work/models.ndjson"
mkdir -p "$work/blobs"
awk '/"Section": *"Twins"/{t=1; next} /"Section"/{t=0} t' "$work/fleet.ndjson" | head -n "$n" > "$work/twins.ndjson"
python3 - "$work/twins.ndjson" "$work/blobs" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    doc = json.loads(line)
    with open(f"{sys.argv[2]}/{doc['$dtId']}", "w") as f:
        f.write(line)
PY
curl -sf -X PUT -H 'x-ms-blob-type: BlockBlob' --data-binary "@$work/models.ndjson" "$account/input/models.ndjson?$sas" -o /dev/null
ls "$work/blobs" | xargs -P 8 -I{} curl -sf -X PUT -H 'x-ms-blob-type: BlockBlob' --data-binary "@$work/blobs/{}" "$account/input/{}?$sas" -o /dev/null
blobs=$(curl -sf "$account/input?restype=container&comp=list&maxresults=5000&$sas" | grep -o '<Name>' | wc -l)

# T* of the whole load (every twin at the instance's full rate), from the planner's plan of
# the same container.
"$loader" plan --input "$account/input?$sas" --json "$work/plan.json" > "$work/plan.out" 2> "$work/plan.err"

# S tasks at once, each over the whole container.
share=$(python3 -c "print(1 / $shards)")
started=$(date +%s.%N)
for i in $(seq 0 $((shards - 1))); do
    (
        s=$(date +%s.%N)
        code=0
        "$loader" load --endpoint "$adt" --credential none --input "$account/input?$sas" \
            --shard "$i/$shards" --rate-share "$share" \
            --summary "$work/shard-$i.summary.json" --dead-letter "$work/shard-$i.dl.ndjson" \
            > "$work/shard-$i.out" 2> "$work/shard-$i.err" || code=$?
        e=$(date +%s.%N)
        echo "$i $code $s $e" > "$work/shard-$i.time"
    ) &
    pids+=($!)
done
wait "${pids[@]:2}"
ended=$(date +%s.%N)
curl -sf "$adt/_mock/stats" > "$work/stats.json"

python3 - "$work" "$n" "$shards" "$blobs" "$started" "$ended" <<'PY'
import glob, json, os, sys
work, n, shards, blobs, started, ended = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
stats = json.load(open(f"{work}/stats.json"))
plan = json.load(open(f"{work}/plan.json"))
def find(v, key):
    if isinstance(v, dict):
        if key in v: return v[key]
        for x in v.values():
            r = find(x, key)
            if r is not None: return r
    return None
t_star = find(plan, "t_star_s")
wall = ended - started
print(f"{n} twins as {blobs} blobs (one per twin + models.ndjson), {shards} tasks at once, rate share 1/{shards} each")
print(f"wall time (first start to last exit): {wall:.2f} s; T* of the whole load: {t_star:.2f} s")
total_landed = total_dead = total_req = total_429 = 0
write_starts, ends = [], []
print("task  exit  wall_s  write_s  T*_s  makespan/T*  twins_landed  dead_lettered  requests  429s  other_than_twin_writes")
for i in range(shards):
    i_, code, s, e = open(f"{work}/shard-{i}.time").read().split()
    path = f"{work}/shard-{i}.summary.json"
    sm = json.load(open(path)) if os.path.exists(path) else {}
    items = sm.get("items", {})
    landed = items.get("twins", {}).get("landed", 0)
    dead = sum(v.get("dead_lettered", 0) for v in items.values())
    req = sm.get("requests_total", 0)
    r429 = sm.get("requests_by_status", {}).get("429", 0)
    other = {k: v for k, v in sm.get("requests_by_class", {}).items() if k != "create_delete" and v}
    total_landed += landed; total_dead += dead; total_req += req; total_429 += r429
    write_starts.append(float(e) - sm.get("write_elapsed_s", 0)); ends.append(float(e))
    ratio = sm.get("makespan_ratio")
    ratio = "n/a" if ratio is None else f"{ratio:.3f}"
    print(f"{i:>4}  {code:>4}  {float(e) - float(s):6.2f}  {sm.get('write_elapsed_s', 0):7.2f}  {sm.get('t_star_s', 0):5.2f}  "
          f"{ratio:>11}  {landed:>12}  {dead:>13}  {req:>8}  {r429:>4}  {other}")
    if code != "0":
        print(f"  task {i} failed: {open(f'{work}/shard-{i}.err').read()[-2000:]}")
writes = max(ends) - min(write_starts)
print(f"all tasks: makespan/T* = {writes / t_star:.3f} (writes: {writes:.2f} s from the first task's first write, "
      f"i.e. its exit minus its write_elapsed_s, to the last task's exit), wall/T* = {wall / t_star:.3f}; "
      f"429 share {total_429}/{total_req} = {total_429 / max(total_req, 1):.2%}")
puts = stats.get("requests_by_operation", {}).get("PUT create_delete", 0)
print(f"the mock's requests by operation: {stats.get('requests_by_operation')}, by status: {stats.get('requests_by_status')}")
print(f"union: twins landed by the tasks {total_landed} of {n}, dead-lettered {total_dead}; "
      f"the mock holds {stats.get('twins')} twins and answered {puts} twin PUTs ({stats.get('throttled_total', 0)} requests throttled in all)")
ok = total_landed == n and stats.get("twins") == n and total_dead == 0
print("every twin landed exactly once" if ok else "COVERAGE CHECK FAILED: not every twin landed exactly once")
sys.exit(0 if ok else 1)
PY
