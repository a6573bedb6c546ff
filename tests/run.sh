#!/usr/bin/env bash
# The whole test suite, from a fresh machine (Rust toolchain, Node.js/npm, Python 3):
# installs what the tests need, then runs every test. `.ci/run` calls this.
#
#   tests/run.sh            # everything
#   tests/run.sh mock_api   # extra arguments go to the test runner (a filter)
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
mkdir -p "$target_dir"

# The official Azure Python SDK, a real client of the mock ADT (tests/python_sdk.rs).
pyenv="$target_dir/pyenv"
if ! "$pyenv/bin/python" -c 'import azure.digitaltwins.core' >/dev/null 2>&1; then
    echo "tests/run.sh: installing the Python test client into $pyenv" >&2
    python3 -m venv "$pyenv"
    "$pyenv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi
export TWINLOAD_PYTHON="$pyenv/bin/python"

# Azurite, the Blob Storage emulator (tests/azure_support): 3.35.0 is the newest that runs on
# Node 20. Installed once into the target dir.
azurite_dir="$target_dir/azurite"
if [ ! -x "$azurite_dir/node_modules/.bin/azurite-blob" ]; then
    echo "tests/run.sh: installing azurite@3.35.0 into $azurite_dir" >&2
    mkdir -p "$azurite_dir"
    npm install --silent --no-audit --no-fund --prefix "$azurite_dir" azurite@3.35.0
fi
export TWINLOAD_AZURITE="$azurite_dir/node_modules/.bin/azurite-blob"

# Formatting and lints are part of the suite (settings in .rustfmt.toml).
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
    # Doc tests first (nextest does not run them), so the last lines are the runner's summary.
    cargo test --workspace --doc --quiet
    cargo nextest run --workspace --no-fail-fast "$@"
else
    cargo test --workspace --no-fail-fast "$@"
fi
