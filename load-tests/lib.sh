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

# azurite_sas: prints an account SAS (blob service; service, container and object resources;
# read, write, delete, list, add, create; valid until 2099) signed with Azurite's well-known
# development key (public: it is in Microsoft's docs), as the sv=2019-12-12 string-to-sign
# defines it. Needs openssl and python3.
azurite_sas() {
    local key='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
    local se='2099-01-01T00:00:00Z' sig
    sig=$(printf 'devstoreaccount1\nrwdlac\nb\nsco\n\n%s\n\n\n2019-12-12\n' "$se" \
        | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$(printf %s "$key" | base64 -d | od -An -tx1 | tr -d ' \n')" -binary | base64)
    python3 -c 'import sys, urllib.parse as u; q = lambda s: u.quote(s, safe=""); print(f"sv=2019-12-12&ss=b&srt=sco&sp=rwdlac&se={q(sys.argv[1])}&sig={q(sys.argv[2])}")' "$se" "$sig"
}

# free_port: prints a free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts Azurite (Blob only, in memory, loopback) and a mock ADT with auth off, each in the
# background with its pid added to the caller's `pids` array (the caller's EXIT trap stops
# them), and waits until both answer. Reads the caller's $azurite and $mockbin, and its optional
# `mock_flags` array (extra mock-adt flags); writes logs into $work; sets `port` (Azurite's),
# `account` (its URL for devstoreaccount1), `sas`, `adt` (the mock's URL) and `mock_pid`. The
# mock's import jobs reach Azurite with the SAS, as ADT does with its managed identity.
start_azurite_and_mock() {
    port=$(free_port)
    (cd "$work" && exec "$azurite" --blobHost 127.0.0.1 --blobPort "$port" --inMemoryPersistence --disableTelemetry \
        --skipApiVersionCheck --loose --silent > azurite.log 2>&1) &
    pids+=($!)
    sas=$(azurite_sas)
    account="http://127.0.0.1:$port/devstoreaccount1"
    TWINLOAD_MOCK_STORAGE_SAS="$sas" "$mockbin" mock-adt --no-auth --listen 127.0.0.1:0 \
        ${mock_flags[@]+"${mock_flags[@]}"} > "$work/mock.out" 2> "$work/mock.err" &
    mock_pid=$!
    pids+=($mock_pid)
    adt=$(mock_url "$work/mock.out" "$work/mock.err")
    local _
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "Azurite did not start: see $work/azurite.log" >&2; return 1; }
}
