# Shell functions the load-test scripts share (`. load-tests/lib.sh` from the repository root).

# mock_url <stdout file> [<stderr file>]: waits (at most 10 s) for `twinload mock-adt` to print
# "listening on <url>" into its stdout file and prints the URL. Fails, naming the stderr file,
# when the mock does not start.
mock_url() {
    local stdout="$1" stderr="${2:-}" url
    for _ in $(seq 1 100); do
        grep -q '^listening on ' "$stdout" 2>/dev/null && break
        sleep 0.1
    done
    url="$(sed -n 's/^listening on //p' "$stdout" 2>/dev/null | head -n1)"
    [ -n "$url" ] || { echo "the mock did not start${stderr:+; see $stderr}" >&2; return 1; }
    printf '%s\n' "$url"
}
