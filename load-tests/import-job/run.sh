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
# Needs Azurite 3.35.0 (tests/run.sh installs it into $CARGO_TARGET_DIR/azurite) and python3
# (only its standard library: it signs the SAS). Leaves the summary JSON, `time -v` output and
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

blob_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
(cd "$out" && exec "$azurite" --blobHost 127.0.0.1 --blobPort "$blob_port" --inMemoryPersistence \
    --disableTelemetry --skipApiVersionCheck --loose >"$out/azurite.log" 2>&1) &
pids+=($!)

for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$blob_port") 2>/dev/null && break
    sleep 0.1
done

# An account SAS (sv 2020-02-10) for Azurite's well-known development key.
sas="$(python3 - <<'PY'
import base64, hashlib, hmac, urllib.parse
account = "devstoreaccount1"
key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
fields = dict(sv="2020-02-10", ss="b", srt="sco", sp="rwdlac", se="2099-01-01T00:00:00Z", spr="https,http")
to_sign = "\n".join([account, fields["sp"], fields["ss"], fields["srt"], "", fields["se"], "", fields["spr"], fields["sv"], ""])
sig = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
print(urllib.parse.urlencode({**fields, "sig": sig}))
PY
)"
# The mock's import jobs reach the staging container with the SAS, as ADT does with its managed
# identity: the loader gives ADT plain blob URLs.
rate_flags=()
[ -n "${IMPORT_RATE:-}" ] && rate_flags=(--import-rate "$IMPORT_RATE")
TWINLOAD_MOCK_STORAGE_SAS="$sas" "$bin" mock-adt --listen 127.0.0.1:0 --no-auth "${rate_flags[@]}" \
    >"$out/mock.stdout" 2>"$out/mock.stderr" &
pids+=($!)
mock_pid=$!
url="$(mock_url "$out/mock.stdout" "$out/mock.stderr")"
container="http://127.0.0.1:$blob_port/devstoreaccount1/staging"
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
