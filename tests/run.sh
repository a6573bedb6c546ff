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
# The load-test peers (load-tests/peers, run by tests/load_suite.rs) use the SDK's asyncio client.
if ! "$pyenv/bin/python" -c 'import aiohttp' >/dev/null 2>&1; then
    "$pyenv/bin/pip" install --quiet --disable-pip-version-check -r load-tests/peers/requirements.txt
fi
export TWINLOAD_PYTHON="$pyenv/bin/python"

# Azurite (Blob Storage) for the Blob-input and Import Jobs tests. 3.35.0 is the
# newest that runs on Node 20.
azurite_dir="$target_dir/azurite"
if [ ! -x "$azurite_dir/node_modules/.bin/azurite-blob" ]; then
    echo "tests/run.sh: installing Azurite 3.35.0 into $azurite_dir" >&2
    mkdir -p "$azurite_dir"
    (cd "$azurite_dir" && npm install --silent --no-audit --no-fund azurite@3.35.0)
fi
# The Blob Storage tests (tests/azure_support) and the load-test scripts read it here.
export TWINLOAD_AZURITE="$azurite_dir/node_modules/.bin/azurite-blob"


# A real Prometheus, Pushgateway and promtool (tests/observe_prometheus.rs), from Debian's
# packages. The packages' own services may start or not: the test runs its own instances on
# free loopback ports. No install, no pass: the test fails saying what is missing.
if ! command -v prometheus >/dev/null || ! command -v prometheus-pushgateway >/dev/null || ! command -v promtool >/dev/null; then
    echo "tests/run.sh: installing prometheus and prometheus-pushgateway (apt-get)" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        prometheus prometheus-pushgateway >/dev/null; }; then
        echo "tests/run.sh: cannot install prometheus and prometheus-pushgateway; the metrics tests will fail" >&2
    fi
fi

# Headless Chromium opens the run report and takes its screenshot (tests/report_chromium.rs).
if ! command -v chromium >/dev/null; then
    echo "tests/run.sh: installing chromium (apt-get)" >&2
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium >/dev/null; }; then
        echo "tests/run.sh: cannot install chromium; the report test will fail" >&2
    fi
fi


# Formatting and lints are part of the suite (settings in .rustfmt.toml).
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

# Fuzzing (fuzz/): every target for FUZZ_SECONDS (default 10; 0 skips), before the tests (so
# the test runner's summary is printed last) and only for a whole-suite run. The targets are
# built the way `cargo fuzz build -s none` builds them (libFuzzer with SanitizerCoverage, no
# AddressSanitizer: the parsers are safe Rust; libFuzzer still finds panics, hangs and runaway
# memory), but in one plain cargo build: no cargo-fuzz to compile first, and the release
# profile's usual codegen units instead of cargo-fuzz's one per crate, which made this build
# take minutes. Targets, corpora and artifacts are cargo-fuzz's layout, so `cargo fuzz run` works
# the same by hand.
fuzz_seconds="${FUZZ_SECONDS:-10}"
fuzz_targets=(ndjson dtdl_file twin_doc csv_mapping activity_json config_toml retry_after ledger twin_diff)
if [ $# -eq 0 ] && [ "$fuzz_seconds" != 0 ]; then
    triple="$(rustc -vV | sed -n 's/^host: //p')"
    fuzz_flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
    fuzz_flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table"
    fuzz_flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-simplifycfg-branch-fold-threshold=0"
    fuzz_flags+=" -Cllvm-args=-sanitizer-coverage-stack-depth -Cdebug-assertions --cfg fuzzing"
    echo "tests/run.sh: building the fuzz targets" >&2
    (cd fuzz && RUSTFLAGS="$fuzz_flags" CARGO_TARGET_DIR="$target_dir/fuzz" \
        cargo build --quiet --release --target "$triple" --bins)
    for target in "${fuzz_targets[@]}"; do
        echo "tests/run.sh: fuzzing $target for ${fuzz_seconds} s" >&2
        mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
        "$target_dir/fuzz/$triple/release/$target" -artifact_prefix="fuzz/artifacts/$target/" \
            -max_total_time="$fuzz_seconds" -rss_limit_mb=1024 -timeout=10 "fuzz/corpus/$target"
    done
fi

if cargo nextest --version >/dev/null 2>&1; then
    # Doc tests first (nextest does not run them), so the last lines are the runner's summary.
    cargo test --workspace --doc --quiet
    cargo nextest run --workspace --no-fail-fast "$@"
else
    cargo test --workspace --no-fail-fast "$@"
fi

