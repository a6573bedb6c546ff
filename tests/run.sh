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
