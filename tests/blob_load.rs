//! Blob Storage inputs and archiving against Azurite (real Blob service, on loopback) and the
//! mock ADT: a container of NDJSON shards listed page by page, every item landed, the fully
//! landed blobs moved to the archive, the one with a dead letter left in place, the summary and
//! dead letters uploaded, and no SAS signature in any output. A Blob ledger has one writer: a
//! run holds its lease, a second run is refused naming the holder.

mod azure_support;
mod load_support;

use std::path::Path;

use azure_support::{
    list, run_twinload, signature_of, test_ca, trust_ca, upload, Azurite, TestCa, TokenEndpoint, TokenPolicy,
};
use load_support::{assert_same_graph, dead_letters, exported, fleet, graph_of, mock, stats, writes_between};
use twinload::mock::auth::AuthConfig;
use twinload::mock::server::{start, MockConfig};

/// Splits an Import-Jobs NDJSON fleet into shards of at most `per_shard` items: models in one
/// blob, twins and relationships in several, each shard a complete file with the header.
fn shards(path: &Path, per_shard: usize) -> Vec<(String, Vec<u8>)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = format!("{}\n{}\n", lines.next().unwrap(), lines.next().unwrap());
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in lines {
        if line.contains("\"Section\"") {
            sections.push((line.to_string(), Vec::new()));
        } else if let Some(last) = sections.last_mut() {
            last.1.push(line.to_string());
        }
    }
    let mut blobs = Vec::new();
    for (i, (marker, items)) in sections.iter().enumerate() {
        for (j, chunk) in items.chunks(per_shard).enumerate() {
            let body = format!("{header}{marker}\n{}\n", chunk.join("\n"));
            blobs.push((format!("fleet/{i}-{j:03}.ndjson"), body.into_bytes()));
        }
    }
    blobs
}

#[test]
fn a_container_of_shards_lands_fully_landed_blobs_are_archived_and_a_bad_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let azurite = Azurite::start();
    let adt = mock();
    let input = fleet(dir.path(), 120, 7);
    let mut blobs = shards(&input, 40);
    assert!(blobs.len() >= 6, "enough blobs for several listing pages: {}", blobs.len());
    // One more shard with a twin line that is not JSON: its blob gets a dead letter.
    let bad = "{\"Section\": \"Header\"}\n{\"fileVersion\": \"1.0.0\", \"author\": \"t\", \"organization\": \"t\"}\n{\"Section\": \"Twins\"}\n{\"$dtId\": \"broken\", \n";
    blobs.push(("fleet/9-bad.ndjson".to_string(), bad.as_bytes().to_vec()));
    // A blob outside the prefix is neither read nor archived.
    blobs.push(("elsewhere/other.ndjson".to_string(), bad.as_bytes().to_vec()));
    let input_container = azurite.container_url("input", "");
    upload(&input_container, &blobs);
    let archive_container = azurite.container_url("archive", "");
    azure_support::create_container(&archive_container);

    // Two blobs a page: the listing must follow its continuation markers to see them all.
    let config = dir.path().join("twinload.toml");
    std::fs::write(&config, "blob_page_size = 2\n").unwrap();
    let input_url = azurite.container_url("input", "fleet/");
    let archive_url = azurite.container_url("archive", "done");
    let args: Vec<String> = [
        "load",
        "--endpoint",
        &adt.url,
        "--config",
        &config.display().to_string(),
        "--input",
        &input_url,
        "--archive",
        &archive_url,
        "--summary",
        "summary.json",
        "--dead-letter",
        "dead.ndjson",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (code, stdout, stderr) = run_twinload(&args, &[], dir.path());
    assert_eq!(code, 3, "dead letters, so exit code 3\nstdout: {stdout}\nstderr: {stderr}");

    // Every good item landed; the mock holds exactly the fleet.
    assert_same_graph(&graph_of(&input), &exported(&adt));

    // The bad blob's line is a dead letter naming the blob's URL, without the SAS.
    let letters = dead_letters(&dir.path().join("dead.ndjson"));
    let bad_url = format!("{}/input/fleet/9-bad.ndjson", azurite.account_url);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["file"], bad_url.as_str());

    // Fully landed blobs moved under archive/done/ with their names; the bad one stayed.
    let good: Vec<String> = blobs[..blobs.len() - 2].iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(list(&input_container), vec!["elsewhere/other.ndjson".to_string(), "fleet/9-bad.ndjson".to_string()]);
    let archived = list(&archive_container);
    for name in &good {
        assert!(archived.contains(&format!("done/{name}")), "{name} archived: {archived:?}");
    }
    let uploads: Vec<&String> = archived.iter().filter(|n| n.starts_with("done/twinload-")).collect();
    assert_eq!(uploads.len(), 2, "summary and dead letters uploaded: {archived:?}");
    let summary = azure_support::download(
        &archive_container,
        uploads.iter().find(|n| n.ends_with("-summary.json")).expect("summary uploaded"),
    );
    let summary: serde_json::Value = serde_json::from_slice(&summary).expect("uploaded summary is JSON");
    assert_eq!(summary["exit_code"], 3);

    // No SAS signature anywhere twinload wrote.
    let secret = signature_of(&input_url);
    let written = [
        stdout,
        stderr,
        std::fs::read_to_string(dir.path().join("summary.json")).unwrap(),
        std::fs::read_to_string(dir.path().join("dead.ndjson")).unwrap(),
    ];
    for text in &written {
        assert!(!text.contains(&secret), "the SAS signature leaked: {text}");
    }
}

#[test]
fn a_listing_that_fails_is_a_clear_error_without_the_signature() {
    let dir = tempfile::tempdir().unwrap();
    let azurite = Azurite::start();
    let adt = mock();
    // A container that does not exist: the listing fails; nothing may be archived.
    let input_url = azurite.container_url("missing", "");
    let args: Vec<String> =
        ["load", "--endpoint", &adt.url, "--input", &input_url, "--summary", "s.json", "--dead-letter", "d.ndjson"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let (code, stdout, stderr) = run_twinload(&args, &[], dir.path());
    assert_ne!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let letters = std::fs::read_to_string(dir.path().join("d.ndjson")).unwrap_or_default();
    assert!(
        letters.contains("cannot list") && letters.contains(&format!("{}/missing", azurite.account_url)),
        "the dead letters say which listing failed: {letters}\nstderr: {stderr}"
    );
    let secret = signature_of(&input_url);
    assert!(!stdout.contains(&secret) && !stderr.contains(&secret) && !letters.contains(&secret));
}

/// Azurite over HTTPS (its CA trusted), a fake managed-identity token endpoint whose first
/// `refused_storage_tokens` Storage tokens Azurite refuses, and a mock ADT that accepts only the
/// endpoint's ADT tokens.
struct ManagedIdentityStorage {
    dir: tempfile::TempDir,
    ca: TestCa,
    azurite: Azurite,
    endpoint: TokenEndpoint,
    adt: twinload::mock::server::MockHandle,
}

impl ManagedIdentityStorage {
    fn start(refused_storage_tokens: u64) -> ManagedIdentityStorage {
        let dir = tempfile::tempdir().unwrap();
        let ca = test_ca(dir.path());
        let azurite = Azurite::start_https(&ca);
        trust_ca(&ca.ca_pem);
        let tokens = dir.path().join("adt-tokens");
        let endpoint = TokenEndpoint::start(TokenPolicy {
            lifetime_s: 3600,
            accept_file: Some(tokens.clone()),
            withhold_first: 0,
            jwt_for_storage: true,
            refused_storage_tokens,
        });
        let adt = start(MockConfig { auth: AuthConfig::TokenFile(tokens), ..MockConfig::default() }).unwrap();
        ManagedIdentityStorage { dir, ca, azurite, endpoint, adt }
    }

    /// Runs `twinload <args>` in the fixture's directory as a managed identity.
    fn run(&self, args: &[String]) -> (i32, String, String) {
        let mut env = self.endpoint.env();
        env.push(("TWINLOAD_CREDENTIAL".into(), "managed-identity".into()));
        run_twinload(args, &env, self.dir.path())
    }
}

#[test]
fn blobs_over_https_are_read_and_archived_with_the_managed_identity_token() {
    let fixture = ManagedIdentityStorage::start(0);
    let ManagedIdentityStorage { dir, ca, azurite, endpoint, adt } = &fixture;
    let input = fleet(dir.path(), 40, 11);
    let blobs = shards(&input, 30);
    upload(&azurite.container_url("input", ""), &blobs);
    azure_support::create_container(&azurite.container_url("archive", ""));

    // No SAS: the Storage token of the managed identity, over HTTPS trusting --ca-cert.
    let input_url = format!("{}/input/fleet/", azurite.account_url);
    let archive_url = format!("{}/archive", azurite.account_url);
    let args: Vec<String> = [
        "load",
        "--endpoint",
        &adt.url,
        "--input",
        &input_url,
        "--archive",
        &archive_url,
        "--ca-cert",
        &ca.ca_pem.display().to_string(),
        "--summary",
        "summary.json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (code, stdout, stderr) = fixture.run(&args);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_same_graph(&graph_of(&input), &exported(adt));
    assert!(endpoint.requests_for("https://storage.azure.com") >= 1, "a Storage token was asked for");
    assert_eq!(endpoint.requests_for("https://digitaltwins.azure.net"), 1);
    let archived = list(&azurite.container_url("archive", ""));
    for (name, _) in &blobs {
        assert!(archived.contains(name), "{name} archived: {archived:?}");
    }
    assert!(list(&azurite.container_url("input", "")).is_empty());
    for text in [&stdout, &stderr] {
        assert!(!text.contains("fake-mi-token") && !text.contains("eyJ"), "a token leaked: {text}");
    }
}

#[test]
fn a_ledger_in_blob_storage_carries_a_load_to_the_next_sync_which_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let azurite = Azurite::start();
    let adt = mock();
    let input = fleet(dir.path(), 60, 3);
    let ledgers = azurite.container_url("ledgers", "");
    azure_support::create_container(&ledgers);
    // As a Batch task would: the ledger next to the input, not on the node's disk.
    let ledger_url = azurite.container_url("ledgers", "orders/ledger.ndjson");
    let run = |mode: &str| {
        let args: Vec<String> = ["load", "--endpoint", &adt.url, "--mode", mode, "--ledger", &ledger_url]
            .iter()
            .map(|s| s.to_string())
            .chain(["--input".to_string(), input.display().to_string()])
            .chain(["--summary", "summary.json", "--dead-letter", "dead.ndjson"].iter().map(|s| s.to_string()))
            .collect();
        run_twinload(&args, &[], dir.path())
    };

    let (code, stdout, stderr) = run("upsert");
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_same_graph(&graph_of(&input), &exported(&adt));
    // The blob holds the compacted ledger: its header and one line per item that landed.
    let graph = graph_of(&input);
    let ledger = String::from_utf8(azure_support::download(&ledgers, "orders/ledger.ndjson")).unwrap();
    assert_eq!(ledger.lines().count(), 1 + graph.models.len() + graph.twins.len() + graph.relationships.len());

    // The next scheduled run, on another node: everything is in the ledger, nothing is written.
    let before = stats(&adt);
    let (code, stdout, stderr) = run("sync");
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let after = stats(&adt);
    let writes = writes_between(&before, &after);
    assert_eq!(writes, 0, "{}", after["requests_by_operation"]);
    let secret = signature_of(&ledger_url);
    assert!(!stderr.contains(&secret) && !stdout.contains(&secret), "the SAS signature leaked: {stderr}");
}

/// A load of a fleet's shards from Azurite over HTTPS with the managed identity's Storage token,
/// when the token endpoint's first `refused` Storage tokens are ones Azurite refuses (401).
struct RefusedTokenRun {
    code: i32,
    stdout: String,
    stderr: String,
    /// The dead-letter file (where a blob or listing that cannot be read is reported).
    dead: String,
    input: std::path::PathBuf,
    fixture: ManagedIdentityStorage,
}

fn load_with_refused_storage_tokens(refused: u64) -> RefusedTokenRun {
    let fixture = ManagedIdentityStorage::start(refused);
    let ManagedIdentityStorage { dir, ca, azurite, adt, .. } = &fixture;
    let input = fleet(dir.path(), 30, 13);
    upload(&azurite.container_url("input", ""), &shards(&input, 20));
    let input_url = format!("{}/input/fleet/", azurite.account_url);
    let args: Vec<String> = ["load", "--endpoint", &adt.url, "--input", &input_url]
        .iter()
        .map(|s| s.to_string())
        .chain(["--ca-cert".to_string(), ca.ca_pem.display().to_string()])
        .chain(["--summary", "summary.json", "--dead-letter", "dead.ndjson"].iter().map(|s| s.to_string()))
        .collect();
    let (code, stdout, stderr) = fixture.run(&args);
    let dead = std::fs::read_to_string(dir.path().join("dead.ndjson")).unwrap_or_default();
    RefusedTokenRun { code, stdout, stderr, dead, input, fixture }
}

fn assert_no_storage_token_in(texts: &[&str]) {
    for text in texts {
        // The fake endpoint's Storage tokens are unsigned JWTs: base64 of `{"alg":...` is `eyJ`.
        assert!(!text.contains("eyJ") && !text.contains("fake-mi-token"), "a token leaked: {text}");
    }
}

#[test]
fn a_refused_storage_token_is_replaced_by_a_fresh_one_once_and_the_load_completes() {
    // Azurite refuses the first token (foreign audience) with 403 AuthenticationFailed, as it
    // does every token it refuses; Azure Storage answers an expired or revoked one with 401.
    // twinload treats both alike (crate::azure::reauth).
    let run = load_with_refused_storage_tokens(1);
    assert_eq!(run.code, 0, "stdout: {}\nstderr: {}\ndead letters: {}", run.stdout, run.stderr, run.dead);
    assert_same_graph(&graph_of(&run.input), &exported(&run.fixture.adt));
    assert_eq!(
        run.fixture.endpoint.requests_for("https://storage.azure.com"),
        2,
        "the first Storage token, refused, and exactly one fresh one (the cache bypassed)"
    );
    assert_no_storage_token_in(&[&run.stdout, &run.stderr, &run.dead]);
}

#[test]
fn a_storage_token_refused_twice_is_an_error_naming_account_container_and_role() {
    let run = load_with_refused_storage_tokens(u64::MAX);
    // A container that cannot be listed is a problem of that input, reported as a dead letter
    // (exit code 3), like any listing failure.
    assert_eq!(run.code, 3, "stdout: {}\nstderr: {}", run.stdout, run.stderr);
    let err = &run.dead;
    assert!(err.contains("`devstoreaccount1`") && err.contains("`input`"), "names account and container: {err}");
    assert!(err.contains("Storage Blob Data Reader"), "says which role to check: {err}");
    assert_eq!(
        run.fixture.endpoint.requests_for("https://storage.azure.com"),
        2,
        "one fresh token after the first 401, none after the second"
    );
    assert_eq!(stats(&run.fixture.adt)["twins"], 0);
    assert_no_storage_token_in(&[&run.stdout, &run.stderr, &run.dead]);
}

#[test]
fn a_blob_ledger_held_by_a_run_refuses_a_second_run_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let azurite = Azurite::start();
    let adt = mock();
    // Big enough that the first run is still loading (seconds at ADT's limits) when the second starts.
    let input = fleet(dir.path(), 1500, 5);
    let expected = graph_of(&input);
    let ledgers = azurite.container_url("ledgers", "");
    azure_support::create_container(&ledgers);
    let ledger_url = azurite.container_url("ledgers", "fleet/ledger.ndjson");
    let args = |run: &str| -> Vec<String> {
        ["load", "--endpoint", &adt.url, "--ledger", &ledger_url, "--input", &input.display().to_string()]
            .iter()
            .map(|s| s.to_string())
            .chain(["--dead-letter".to_string(), format!("{run}-dead.ndjson")])
            .collect()
    };
    let first = std::process::Command::new(env!("CARGO_BIN_EXE_twinload"))
        .args(args("first"))
        .current_dir(dir.path())
        .env_remove("IDENTITY_ENDPOINT")
        .env_remove("MSI_ENDPOINT")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("first.stderr")).unwrap())
        .spawn()
        .expect("twinload starts");
    let holder = first.id();
    // Bounded wait until the first run holds the lease, its record in the blob's metadata.
    let started = std::time::Instant::now();
    loop {
        let state = azure_support::lease_and_metadata(&ledgers, "fleet/ledger.ndjson");
        if let Some((lease, meta)) = &state {
            if lease == "Leased" && meta.get("twinload_pid") == Some(&holder.to_string()) {
                break;
            }
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the first run never leased the ledger: {state:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let (code, stdout, stderr) = run_twinload(&args("second"), &[], dir.path());
    assert_eq!(code, 4, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("held by another run") && stderr.contains(&format!("pid {holder}")), "{stderr}");
    assert!(stderr.contains("one per shard") && stderr.contains("lease"), "says what to do: {stderr}");
    assert!(!stderr.contains(&signature_of(&ledger_url)), "the SAS signature leaked: {stderr}");

    // The first run completes undisturbed; the blob holds its whole ledger and is free again.
    let output = wait_for(first);
    let said = std::fs::read_to_string(dir.path().join("first.stderr")).unwrap();
    assert_eq!(output, 0, "{said}");
    assert_same_graph(&expected, &exported(&adt));
    let ledger = String::from_utf8(azure_support::download(&ledgers, "fleet/ledger.ndjson")).unwrap();
    let items = expected.models.len() + expected.twins.len() + expected.relationships.len();
    assert_eq!(ledger.lines().count(), 1 + items);
    let (lease, _) = azure_support::lease_and_metadata(&ledgers, "fleet/ledger.ndjson").unwrap();
    assert_eq!(lease, "Available", "the lease is released when the run ends, for the next run");
}

/// Waits (bounded) for a started twinload; its exit code.
fn wait_for(mut child: std::process::Child) -> i32 {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if started.elapsed() > std::time::Duration::from_secs(180) {
            let _ = child.kill();
            panic!("twinload did not finish within 180 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
