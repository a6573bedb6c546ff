#!/usr/bin/env bash
# Mock ADT throughput: wrk against GET /_mock/ping, GET /digitaltwins/{id} and
# PUT /digitaltwins/{id} of one `twinload mock-adt --limits-off` (release build).
#
#   load-tests/wrk/run.sh                 # defaults below
#   DURATION=20s CONNECTIONS=64 WRK_THREADS=1 MOCK_WORKERS=2 load-tests/wrk/run.sh
#
# Needs wrk (Debian: apt-get install wrk) and curl. Prints wrk's report for each endpoint.
set -euo pipefail
cd "$(dirname "$0")/../.."
. load-tests/lib.sh

DURATION="${DURATION:-15s}"
CONNECTIONS="${CONNECTIONS:-64}"
WRK_THREADS="${WRK_THREADS:-1}"
MOCK_WORKERS="${MOCK_WORKERS:-2}"
export TWINS="${TWINS:-1000}"
export MODEL="dtmi:twinload:load:Thing;1"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"

cargo build --release --quiet
bin="$target_dir/release/twinload"

out="$(mktemp)"
"$bin" mock-adt --limits-off --workers "$MOCK_WORKERS" >"$out" 2>/dev/null &
mock_pid=$!
trap 'kill "$mock_pid" 2>/dev/null || true; wait "$mock_pid" 2>/dev/null || true; rm -f "$out"' EXIT
url="$(mock_url "$out")"
echo "mock at $url (workers $MOCK_WORKERS); wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION; $TWINS twins"

auth=(-H "Authorization: Bearer load-test")
curl -sf "${auth[@]}" -H 'Content-Type: application/json' -X POST "$url/models?api-version=2023-10-31" \
    -d "[{\"@id\":\"$MODEL\",\"@type\":\"Interface\",\"@context\":\"dtmi:dtdl:context;2\",\"contents\":[{\"@type\":\"Property\",\"name\":\"name\",\"schema\":\"string\"},{\"@type\":\"Property\",\"name\":\"n\",\"schema\":\"integer\"}]}]" >/dev/null
# One curl process creates every twin (a `next`-separated config, one request per twin).
for ((i = 0; i < TWINS; i++)); do
    ((i > 0)) && printf 'next\n'
    printf 'url = "%s/digitaltwins/twin-%d?api-version=2023-10-31"\n' "$url" "$i"
    printf 'request = "PUT"\nheader = "Authorization: Bearer load-test"\nheader = "Content-Type: application/json"\n'
    printf 'data = "{\\"$metadata\\":{\\"$model\\":\\"%s\\"},\\"name\\":\\"twin %d\\",\\"n\\":%d}"\n' "$MODEL" "$i" "$i"
    printf 'output = "/dev/null"\nfail\nsilent\nshow-error\n'
done | curl --config -

for script in ping get_twin put_twin; do
    path="/"
    [ "$script" = ping ] && path="/_mock/ping"
    echo "== $script"
    wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "load-tests/wrk/$script.lua" "$url$path"
done
