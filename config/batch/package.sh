#!/usr/bin/env bash
# Builds the resource folder of the Data Factory Custom activity for Linux Azure Batch pools.
#
#   config/batch/package.sh            # -> $CARGO_TARGET_DIR/package/ (or target/package/)
#
# ADF copies every file of the activity's resource folder (folderPath, flattened, without
# execute permissions) into each task's working directory, so what it holds is paid per task.
# The package is therefore two files:
#   twinload.gz       the lean loader (no mock server: --no-default-features), stripped, gzipped
#   run-twinload.sh   unpacks it, marks it executable and execs it with the task's arguments
# and the activity's command is `/bin/sh run-twinload.sh load` (Batch runs commands without a
# shell; gzip is part of every Ubuntu image, unzip is not). twinload-resource.zip holds the
# same two files for one upload (`az storage blob upload-batch` of the folder works as well).
#
# It also checks that the binary needs no GLIBC symbol version above 2.35 (Ubuntu 22.04, the
# oldest supported Batch image) and prints the sizes next to the full (mock-carrying) binary.
set -euo pipefail
cd "$(dirname "$0")/../.."

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
out="$target_dir/package"
max_glibc="${TWINLOAD_MAX_GLIBC:-2.35}"

cargo build --release -p twinload --no-default-features
lean="$target_dir/release/twinload"

rm -rf "$out"
mkdir -p "$out/resource"
cp "$lean" "$out/twinload"
strip "$out/twinload"

needed=$(config/batch/glibc-needed.sh "$out/twinload")
if [ "$(printf '%s\n%s\n' "$needed" "$max_glibc" | sort -V | tail -n1)" != "$max_glibc" ]; then
    echo "package.sh: the binary needs GLIBC_$needed, newer than $max_glibc (Ubuntu 22.04)" >&2
    exit 1
fi

gzip -9 -c "$out/twinload" > "$out/resource/twinload.gz"
cat > "$out/resource/run-twinload.sh" <<'SCRIPT'
#!/bin/sh
# Start command of the twinload Custom activity: `/bin/sh run-twinload.sh load [flags]`.
# The resource files arrive without execute permission; unpack next to them and run.
set -e
here=$(dirname "$0")
gzip -dc "$here/twinload.gz" > "$here/twinload"
chmod +x "$here/twinload"
exec "$here/twinload" "$@"
SCRIPT
(cd "$out/resource" && zip -q -9 "$out/twinload-resource.zip" twinload.gz run-twinload.sh)

size() { stat -c %s "$1"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1000000 }'; }
echo "lean binary (stripped):      $(mb "$(size "$out/twinload")")  $out/twinload"
echo "resource folder (gzipped):   $(mb "$(( $(size "$out/resource/twinload.gz") + $(size "$out/resource/run-twinload.sh") ))")  $out/resource/"
echo "resource zip:                $(mb "$(size "$out/twinload-resource.zip")")  $out/twinload-resource.zip"
echo "highest GLIBC version needed: $needed (limit $max_glibc)"
if [ -x "$target_dir/release/twinload-full" ]; then
    echo "full binary (with mock):     $(mb "$(size "$target_dir/release/twinload-full")")"
fi
