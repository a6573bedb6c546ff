//! Managed identity through azure_identity's real code path: a fake token endpoint on loopback
//! (App Service protocol: IDENTITY_ENDPOINT / IDENTITY_HEADER) issues the tokens, and the mock
//! ADT accepts only the tokens it issued (a token file). twinload runs as a process, as Batch
//! runs it, so its stdout and stderr can be checked for secrets.

mod azure_support;
mod load_support;

use std::time::{Duration, Instant};

use azure_support::{run_twinload, TokenEndpoint, TokenPolicy};
use load_support::{assert_same_graph, exported, fleet, graph_of, stats};
use twinload::mock::auth::AuthConfig;
use twinload::mock::server::{start, MockConfig};

const ADT_RESOURCE: &str = "https://digitaltwins.azure.net";

fn load_args(endpoint: &str, input: &str) -> Vec<String> {
    // adt-2021 writes at 50/s: a few hundred items take seconds, long enough to act mid-run.
    ["load", "--endpoint", endpoint, "--input", input, "--limits", "adt-2021", "--summary", "summary.json"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn assert_no_token_in(texts: &[&str]) {
    for text in texts {
        assert!(!text.contains("fake-mi-token"), "a token leaked: {text}");
    }
}

#[test]
fn a_401_mid_run_causes_exactly_one_refresh_and_every_item_lands() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("accepted-tokens");
    let endpoint = TokenEndpoint::start(TokenPolicy {
        lifetime_s: 3600,
        accept_file: Some(tokens.clone()),
        withhold_first: 0,
        jwt_for_storage: false,
        refused_storage_tokens: 0,
    });
    let adt = start(MockConfig { auth: AuthConfig::TokenFile(tokens.clone()), ..MockConfig::default() }).unwrap();
    let input = fleet(dir.path(), 150, 3);
    let mut env = endpoint.env();
    env.push(("TWINLOAD_CREDENTIAL".into(), "managed-identity".into()));

    let args = load_args(&adt.url, &input.display().to_string());
    let cwd = dir.path().to_path_buf();
    let run = std::thread::spawn(move || run_twinload(&args, &env, &cwd));

    // Once writes are flowing, revoke the first token: every request in flight gets a 401.
    let started = Instant::now();
    while stats(&adt)["twins"].as_u64().unwrap_or(0) < 20 {
        assert!(started.elapsed() < Duration::from_secs(60), "no twins landed within 60 s");
        assert!(!run.is_finished(), "the run ended before the token could be revoked");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(&tokens, "").unwrap();

    let (code, stdout, stderr) = run.join().unwrap();
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_same_graph(&graph_of(&input), &exported(&adt));
    assert_eq!(
        endpoint.requests_for(ADT_RESOURCE),
        2,
        "one token at the start and exactly one forced refresh after the 401s"
    );
    let summary = std::fs::read_to_string(dir.path().join("summary.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert!(parsed["requests_by_status"]["401"].as_u64().unwrap_or(0) >= 1, "the revocation caused 401s: {summary}");
    assert_no_token_in(&[&stdout, &stderr, &summary]);
}

#[test]
fn a_token_near_expiry_is_refreshed_before_it_expires_without_any_401() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("accepted-tokens");
    // azure_identity refreshes a token within 300 s of its expiry: 302 s of life means a new
    // one is fetched about every 2 s of the run.
    let endpoint = TokenEndpoint::start(TokenPolicy {
        lifetime_s: 302,
        accept_file: Some(tokens.clone()),
        withhold_first: 0,
        jwt_for_storage: false,
        refused_storage_tokens: 0,
    });
    let adt = start(MockConfig { auth: AuthConfig::TokenFile(tokens), ..MockConfig::default() }).unwrap();
    let input = fleet(dir.path(), 150, 4);
    let mut env = endpoint.env();
    env.push(("TWINLOAD_CREDENTIAL".into(), "managed-identity".into()));
    let (code, stdout, stderr) = run_twinload(&load_args(&adt.url, &input.display().to_string()), &env, dir.path());
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_same_graph(&graph_of(&input), &exported(&adt));
    assert!(endpoint.requests_for(ADT_RESOURCE) >= 2, "the token was refreshed during the run");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap()).unwrap();
    assert!(!summary.to_string().contains("\"401\""), "no request was refused: {summary}");
    assert_no_token_in(&[&stdout, &stderr, &summary.to_string()]);
}

#[test]
fn a_token_endpoint_that_refuses_is_a_setup_error_naming_the_scope() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = TokenEndpoint::start(TokenPolicy {
        lifetime_s: 3600,
        accept_file: None,
        withhold_first: 0,
        jwt_for_storage: false,
        refused_storage_tokens: 0,
    });
    let adt = start(MockConfig::default()).unwrap();
    let input = fleet(dir.path(), 10, 5);
    // The wrong identity header: the endpoint answers 401 to every token request.
    let mut env = endpoint.env();
    env[1].1 = "wrong-header".into();
    env.push(("TWINLOAD_CREDENTIAL".into(), "managed-identity".into()));
    let (code, stdout, stderr) = run_twinload(&load_args(&adt.url, &input.display().to_string()), &env, dir.path());
    assert_eq!(code, 4, "setup failed\nstdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("https://digitaltwins.azure.net/.default"), "{stderr}");
    assert_eq!(stats(&adt)["twins"], 0);
}

#[test]
fn a_401_storm_refreshes_once_then_stops_naming_the_identity_and_its_role() {
    let dir = tempfile::tempdir().unwrap();
    // The endpoint records every token it issues in `issued`; the mock accepts the tokens in
    // `accepted`, a link to `issued` until the test revokes them all: from then on no token,
    // old or freshly issued, is accepted (the identity lost its role on the instance).
    let issued = dir.path().join("issued-tokens");
    let accepted = dir.path().join("accepted-tokens");
    std::fs::write(&issued, "").unwrap();
    std::os::unix::fs::symlink(&issued, &accepted).unwrap();
    let endpoint = TokenEndpoint::start(TokenPolicy {
        lifetime_s: 3600,
        accept_file: Some(issued.clone()),
        withhold_first: 0,
        jwt_for_storage: false,
        refused_storage_tokens: 0,
    });
    let adt = start(MockConfig { auth: AuthConfig::TokenFile(accepted.clone()), ..MockConfig::default() }).unwrap();
    let input = fleet(dir.path(), 300, 6);
    let mut env = endpoint.env();
    env.push(("TWINLOAD_CREDENTIAL".into(), "managed-identity".into()));
    env.push(("TWINLOAD_WRITERS".into(), "32".into()));

    let args = load_args(&adt.url, &input.display().to_string());
    let cwd = dir.path().to_path_buf();
    let run = std::thread::spawn(move || run_twinload(&args, &env, &cwd));
    let started = Instant::now();
    while stats(&adt)["twins"].as_u64().unwrap_or(0) < 20 {
        assert!(started.elapsed() < Duration::from_secs(60), "no twins landed within 60 s");
        assert!(!run.is_finished(), "the run ended before the tokens could be revoked");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_file(&accepted).unwrap();
    std::fs::write(&accepted, "").unwrap();

    let (code, stdout, stderr) = run.join().unwrap();
    assert_eq!(code, 5, "stopped early, after writing\nstdout: {stdout}\nstderr: {stderr}");
    assert_eq!(
        endpoint.requests_for(ADT_RESOURCE),
        2,
        "one token at the start and one refresh for the whole 401 episode, however many writes were refused"
    );
    for part in ["managed-identity", "Azure Digital Twins Data Owner"] {
        assert!(stderr.contains(part), "the stop names {part}: {stderr}");
    }
    let summary = std::fs::read_to_string(dir.path().join("summary.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert!(parsed["stop_reason"].as_str().is_some_and(|r| r.contains("Azure Digital Twins Data Owner")), "{summary}");
    assert_no_token_in(&[&stdout, &stderr, &summary]);
}
