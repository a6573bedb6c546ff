#!/usr/bin/env bash
# Task-per-file, as the seed's ADF pipeline runs it: N single-twin blobs in Azurite, one
# twinload process per blob, P at a time, against one mock ADT at default limits (plus archive).
# Prints the wall time of a one-twin task (median, p95) and checks that every twin landed.
#
#   load-tests/blob/task_per_file.sh [N=1000] [P=8]
#
# Needs: the lean release binary (config/batch/package.sh or
# `cargo build --release -p twinload --no-default-features`) as $TWINLOAD (default
# $CARGO_TARGET_DIR/package/twinload), a full binary with the mock as $TWINLOAD_MOCK (default
# $CARGO_TARGET_DIR/debug/twinload), Azurite installed by tests/run.sh, curl, openssl.
set -euo pipefail
cd "$(dirname "$0")/../.."
. load-tests/lib.sh
n="${1:-1000}"
par="${2:-8}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
loader="${TWINLOAD:-$target/package/twinload}"
mockbin="${TWINLOAD_MOCK:-$target/debug/twinload}"
azurite="${TWINLOAD_AZURITE:-$target/azurite/node_modules/.bin/azurite-blob}"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

start_azurite_and_mock
curl -sf -X PUT "$account/input?restype=container&$sas" -o /dev/null
curl -sf -X PUT "$account/archive?restype=container&$sas" -o /dev/null

# The fleet: models loaded once (as the pipeline's first step would), then one blob per twin.
"$mockbin" gen --twins "$n" --seed 1 --relationships-per-twin 0 --out "$work/fleet.ndjson"
awk '/"Section": *"Twins"/{exit} {print}' "$work/fleet.ndjson" > "$work/models.ndjson"
"$loader" load --endpoint "$adt" --credential none --input "$work/models.ndjson" --dead-letter "$work/m-dl.ndjson" 2>/dev/null
header=$(head -n2 "$work/fleet.ndjson")
mkdir -p "$work/blobs"
awk '/"Section": *"Twins"/{t=1; next} /"Section"/{t=0} t' "$work/fleet.ndjson" | head -n "$n" \
    | awk -v dir="$work/blobs" -v header="$header" '{f=sprintf("%s/t%05d.ndjson", dir, NR); print header > f; print "{\"Section\": \"Twins\"}" > f; print > f; close(f)}'
ls "$work/blobs" | xargs -P 8 -I{} curl -sf -X PUT -H 'x-ms-blob-type: BlockBlob' --data-binary "@$work/blobs/{}" "$account/input/{}?$sas" -o /dev/null

# One process per blob, $par at a time; each prints its wall time in seconds.
export loader adt account sas work
started=$(date +%s.%N)
ls "$work/blobs" | xargs -P "$par" -I{} sh -c '
    s=$(date +%s.%N)
    "$loader" load --endpoint "$adt" --credential none --input "$account/input/{}?$sas" \
        --archive "$account/archive?$sas" --summary "$work/{}.summary.json" --dead-letter "$work/{}.dl.ndjson" \
        >/dev/null 2>"$work/{}.err" || echo "task {} failed: $(cat "$work/{}.err")" >&2
    e=$(date +%s.%N)
    echo "$e - $s" | bc' > "$work/times.txt"
ended=$(date +%s.%N)

twins=$(curl -sf "$adt/_mock/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["twins"])')
archived=$(curl -sf "$account/archive?restype=container&comp=list&maxresults=5000&$sas" | grep -o '<Name>t[0-9]*\.ndjson</Name>' | wc -l)
sort -n "$work/times.txt" > "$work/sorted.txt"
count=$(wc -l < "$work/sorted.txt")
median=$(sed -n "$(( (count + 1) / 2 ))p" "$work/sorted.txt")
p95=$(sed -n "$(( (count * 95 + 99) / 100 ))p" "$work/sorted.txt")
echo "tasks: $count, $par at a time; twins in the mock: $twins of $n; blobs archived: $archived"
echo "one-twin task wall time: median ${median}s, p95 ${p95}s; all tasks: $(echo "$ended - $started" | bc)s"
# What a task spends its time on: the same one-twin load from a local file, no Blob, no archive.
head -n2 "$work/fleet.ndjson" > "$work/local.ndjson"; cat "$work/blobs/t00001.ndjson" | tail -n2 >> "$work/local.ndjson"
s=$(date +%s.%N); "$loader" load --endpoint "$adt" --credential none --input "$work/local.ndjson" --dead-letter "$work/l.dl" 2>/dev/null; e=$(date +%s.%N)
echo "the same twin from a local file (no Blob listing/download/archive): $(echo "$e - $s" | bc)s"
