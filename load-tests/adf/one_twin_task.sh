#!/usr/bin/env bash
# Start-up of a one-twin ADF task: the time from start to exit of `twinload load` reading its
# activity.json (one per-twin document, model already in the instance) against the mock ADT on
# loopback, and the requests it sends besides the twin write. Median of RUNS runs (hyperfine).
#
#   CARGO_TARGET_DIR=/work/targets/issue-7a load-tests/adf/one_twin_task.sh
#   knobs: RUNS (20), LOADER (the lean release binary), MOCK (a full binary for mock-adt)
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET=${CARGO_TARGET_DIR:-target}
RUNS=${RUNS:-20}
LOADER=${LOADER:-$TARGET/release/twinload}
MOCK=${MOCK:-$TARGET/debug/twinload}
[ -x "$LOADER" ] || cargo build --release -p twinload --no-default-features
[ -x "$MOCK" ] || cargo build
command -v hyperfine >/dev/null || { echo "hyperfine is needed (apt-get install hyperfine)"; exit 1; }

WORK=$(mktemp -d)
trap 'kill $MOCK_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
TOKEN=bench-token
"$MOCK" mock-adt --listen 127.0.0.1:0 --token "$TOKEN" > "$WORK/mock.out" 2>/dev/null &
MOCK_PID=$!
for _ in $(seq 1 100); do grep -q listening "$WORK/mock.out" 2>/dev/null && break; sleep 0.1; done
URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/mock.out" | head -1)

# The model, once (a setup task would have uploaded it).
cat > "$WORK/model.json" <<'JSON'
{"@id":"dtmi:bench:Org;1","@type":"Interface","@context":"dtmi:dtdl:context;3",
 "contents":[{"@type":"Property","name":"Name","schema":"string"}]}
JSON
TWINLOAD_TOKEN=$TOKEN "$LOADER" load --endpoint "$URL" --input "$WORK/model.json" 2>/dev/null

# A Batch task's working directory: activity.json and one blob-like document without extension.
WD="$WORK/wd"
mkdir -p "$WD"
echo '{"$metadata":{"$model":"dtmi:bench:Org;1"},"Name":"Contoso"}' > "$WD/org1"
cat > "$WD/activity.json" <<JSON
{"typeProperties":{"extendedProperties":{"endpoint":"$URL","input":"org1","token":{"type":"SecureString","value":"$TOKEN"}}}}
JSON
cd "$WD"
AZ_BATCH_TASK_WORKING_DIR=$WD hyperfine --warmup 2 --runs "$RUNS" --export-json "$WORK/hyperfine.json" \
    "env AZ_BATCH_TASK_WORKING_DIR=$WD $LOADER load"
python3 - "$WORK/hyperfine.json" "$WD/outputs.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
times = sorted(r["times"])
p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
print(f"runs {len(times)}  median {r['median']*1000:.1f} ms  p95 {p95*1000:.1f} ms  min {times[0]*1000:.1f} ms")
o = json.load(open(sys.argv[2]))
by_class = o["requests_by_class"]
print(f"last run: outcome {o['outcome']}, requests {o['requests_total']} by class {by_class}, elapsed_s {o['elapsed_s']:.3f}")
PY
