#!/usr/bin/env bash
# Packs a built twinload binary as the resource folder of the Data Factory Custom activity:
#
#   config/batch/pack.sh <twinload binary> <out dir>   # -> <out dir>/resource/, <out dir>/twinload-resource.zip
#
# ADF copies every file of the activity's resource folder (folderPath, flattened, without
# execute permissions) into each task's working directory, so what it holds is paid per task.
# The folder is therefore two files:
#   twinload.gz       the binary, stripped, gzipped
#   run-twinload.sh   unpacks it, marks it executable and execs it with the task's arguments
# and the activity's command is `/bin/sh run-twinload.sh load` (Batch runs commands without a
# shell; gzip is part of every Ubuntu image, unzip is not). twinload-resource.zip holds the
# same two files for one upload (`az storage blob upload-batch` of the folder works as well).
# package.sh calls this for the lean release build; tests/adf_e2e.rs for the test build, so the
# pipelines are tested against exactly this layout.
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: $0 <twinload binary> <out dir>" >&2
    exit 2
fi
binary="$1"
out="$2"

rm -rf "$out/resource" "$out/twinload-resource.zip"
mkdir -p "$out/resource"
stripped="$out/twinload"
cp "$binary" "$stripped"
strip "$stripped"

gzip -9 -c "$stripped" > "$out/resource/twinload.gz"
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
(cd "$out/resource" && zip -q -9 "$(cd .. && pwd)/twinload-resource.zip" twinload.gz run-twinload.sh)
