#!/usr/bin/env bash
# A soak of `twinload load --ledger` then `--mode sync` against `twinload mock-adt` with every
# fault on (429s, 5xx, latency and spikes, dropped connections, query lag, new twins invisible
# for a while), release build. Samples the loader's RSS every 5 s while the load runs (about
# 2 minutes at ADT's limits for the default 12,000 twins), then syncs a 1% change, and checks
# that the mock's graph equals the input: nothing lost.
#
#   load-tests/sync/soak.sh [twins] [seed]
#
# Not part of tests/run.sh (it takes minutes). Figures go to $OUT (default /tmp/twinload-soak).
set -euo pipefail
cd "$(dirname "$0")/../.."
. load-tests/lib.sh

twins="${1:-12000}"
seed="${2:-1}"
out="${OUT:-/tmp/twinload-soak}"
mkdir -p "$out"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
# BIN=<path> uses a binary already built (e.g. target/debug/twinload) instead of building one.
if [ -n "${BIN:-}" ]; then bin="$BIN"; else bin="$target_dir/release/twinload"; cargo build --release --quiet -p twinload; fi

gen="$out/gen-$twins-$seed.ndjson"
[ -f "$gen" ] || "$bin" gen --twins "$twins" --seed "$seed" --out "$gen" >/dev/null
fleet="$out/fleet.ndjson"
cp "$gen" "$fleet"
rm -f "$out/ledger.ndjson" "$out/rss.csv"

"$bin" mock-adt --listen 127.0.0.1:0 --no-auth --seed "$seed" \
    --fault-429-rate 0.05 --fault-5xx-rate 0.02 --latency-ms 2 --latency-spike-ms 300 --latency-spike-rate 0.01 \
    --drop-rate 0.01 --query-lag-ms 2000 --new-twin-invisible-ms 500 \
    >"$out/mock.stdout" 2>"$out/mock.stderr" &
mock_pid=$!
trap 'kill "$mock_pid" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
url="$(mock_url "$out/mock.stdout" "$out/mock.stderr")"

run() {
    local name="$1"; shift
    "$bin" load --endpoint "$url" --input "$fleet" --ledger "$out/ledger.ndjson" \
        --summary "$out/$name.summary.json" --dead-letter "$out/$name.dead.ndjson" "$@" 2>"$out/$name.stderr" &
    local pid=$! start=$SECONDS
    while kill -0 "$pid" 2>/dev/null; do
        rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        [ -n "$rss" ] && echo "$name,$((SECONDS - start)),$rss" >>"$out/rss.csv"
        sleep 5
    done
    set +e; wait "$pid"; echo "$name: exit code $? after $((SECONDS - start)) s"; set -e
}

run load
python3 load-tests/sync/change.py "$gen" "$fleet" 0.01 "$seed" >/dev/null
run sync --mode sync
curl -s "$url/_mock/export" >"$out/export.ndjson"
curl -s "$url/_mock/stats" >"$out/mock-stats.json"

python3 - "$out" "$fleet" <<'PY'
import json, sys
out, fleet = sys.argv[1], sys.argv[2]
def graph(path):
    twins, rels, section = {}, {}, ""
    for line in open(path):
        if not line.strip():
            continue
        d = json.loads(line)
        if "Section" in d:
            section = d["Section"]
        elif section == "Twins":
            twins[d["$dtId"]] = {k: v for k, v in d.items() if not k.startswith("$")} | {"model": d["$metadata"]["$model"]}
        elif section == "Relationships":
            rels[(d["$dtId"], d["$relationshipId"])] = {k: v for k, v in d.items() if not k.startswith("$") or k in ("$targetId", "$relationshipName")}
    return twins, rels
want, got = graph(fleet), graph(f"{out}/export.ndjson")
print(f"twins: input {len(want[0])}, mock {len(got[0])}, differing {sum(1 for k in want[0] if want[0][k] != got[0].get(k))}")
print(f"relationships: input {len(want[1])}, mock {len(got[1])}, differing {sum(1 for k in want[1] if want[1][k] != got[1].get(k))}")
print("graph equal:", want == got)
stats = json.load(open(f"{out}/mock-stats.json"))
print("mock requests", stats["requests_total"], "throttled", stats["throttled_total"], "by status", stats["requests_by_status"])
for name in ["load", "sync"]:
    s = json.load(open(f"{out}/{name}.summary.json"))
    print(name, s["outcome"], {k: v for k, v in s["items"].items()}, "retries", s["retries_total"])
rows = [l.strip().split(",") for l in open(f"{out}/rss.csv")]
print("RSS (MiB) every 5 s:", " ".join(f"{r[0]}@{r[1]}s={int(r[2])/1024:.0f}" for r in rows))
PY
