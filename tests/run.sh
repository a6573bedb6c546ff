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

# Fuzzing (fuzz/): every target for FUZZ_SECONDS (default 10; 0 skips), after the tests and
# only for a whole-suite run. cargo-fuzz is installed into the target dir once; its nightly
# flags are accepted by the stable toolchain under RUSTC_BOOTSTRAP=1. `-s none`: no
# AddressSanitizer (the parsers are safe Rust, and an instrumented build would double the build
# time); libFuzzer still finds panics, hangs and runaway memory.
fuzz_seconds="${FUZZ_SECONDS:-10}"
if [ $# -eq 0 ] && [ "$fuzz_seconds" != 0 ]; then
    tools="$target_dir/tools"
    [ -x "$tools/bin/cargo-fuzz" ] || cargo install --quiet --locked cargo-fuzz --root "$tools"
    for target in ndjson dtdl_file twin_doc csv_mapping activity_json config_toml retry_after ledger twin_diff; do
        echo "tests/run.sh: fuzzing $target for ${fuzz_seconds} s" >&2
        (cd fuzz && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$target_dir/fuzz" \
            "$tools/bin/cargo-fuzz" run -s none "$target" -- -max_total_time="$fuzz_seconds" -rss_limit_mb=1024 -timeout=10)
    done
fi
