#!/usr/bin/env bash
# Builds the resource folder of the Data Factory Custom activity for Linux Azure Batch pools.
#
#   config/batch/package.sh            # -> $CARGO_TARGET_DIR/package/ (or target/package/)
#
# The resource folder (twinload.gz and run-twinload.sh, see pack.sh) is what the Custom
# activity's command `/bin/sh run-twinload.sh load` expects; twinload-resource.zip holds the same
# two files for one upload.
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

mkdir -p "$out"
needed=$(config/batch/glibc-needed.sh "$lean")
if [ "$(printf '%s\n%s\n' "$needed" "$max_glibc" | sort -V | tail -n1)" != "$max_glibc" ]; then
    echo "package.sh: the binary needs GLIBC_$needed, newer than $max_glibc (Ubuntu 22.04)" >&2
    exit 1
fi
config/batch/pack.sh "$lean" "$out"

size() { stat -c %s "$1"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1000000 }'; }
echo "lean binary (stripped):      $(mb "$(size "$out/twinload")")  $out/twinload"
echo "resource folder (gzipped):   $(mb "$(( $(size "$out/resource/twinload.gz") + $(size "$out/resource/run-twinload.sh") ))")  $out/resource/"
echo "resource zip:                $(mb "$(size "$out/twinload-resource.zip")")  $out/twinload-resource.zip"
echo "highest GLIBC version needed: $needed (limit $max_glibc)"
if [ -x "$target_dir/release/twinload-full" ]; then
    echo "full binary (with mock):     $(mb "$(size "$target_dir/release/twinload-full")")"
fi
