//! Faults on switches, as a real client sees them: reproducible with a seed, at the configured
//! rates, added latency, dropped connections (before and after the write landed), and the
//! eventual-consistency switches reaching the store.

mod mock_ops_common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use mock_ops_common::*;
use serde_json::Value;
use twinload::mock::faults::{FaultAction, FaultConfig};
use twinload::mock::server::{start, MockConfig, MockHandle};
use twinload::mock::tls::TlsMode;

fn start_faulty(faults: FaultConfig) -> MockHandle {
    start(MockConfig::default().without_auth().without_limits().with_faults(faults)).expect("mock starts")
}

fn models_url(base: &str) -> String {
    format!("{base}/models?{API}")
}

/// What the N-th request got: its status, or 0 when the connection was dropped.
async fn outcomes(faults: FaultConfig, requests: u64) -> Vec<u16> {
    let mock = start_faulty(faults);
    let client = client();
    let mut out = Vec::new();
    for _ in 0..requests {
        // One request at a time, so request numbers are arrival order.
        out.push(client.get(models_url(&mock.url)).send().await.map_or(0, |r| r.status().as_u16()));
    }
    out
}

/// The status the decision for request `n` predicts (0 for a drop).
fn predicted(config: &FaultConfig, n: u64) -> u16 {
    match config.decide(n).action {
        FaultAction::Pass => 200,
        FaultAction::Throttle => 429,
        FaultAction::ServerError(status) => status,
        FaultAction::Drop { .. } => 0,
    }
}

fn errors(seed: u64) -> FaultConfig {
    FaultConfig { seed, rate_429: 0.2, rate_5xx: 0.1, ..FaultConfig::default() }
}

#[tokio::test]
async fn the_same_seed_faults_the_same_request_numbers_and_another_seed_others() {
    const REQUESTS: u64 = 200;
    let a = outcomes(errors(7), REQUESTS).await;
    let b = outcomes(errors(7), REQUESTS).await;
    let c = outcomes(errors(8), REQUESTS).await;
    assert_eq!(a, b, "two mocks with seed 7 fault the same requests");
    assert_ne!(a, c, "seed 8 faults other requests");
    let expected: Vec<u16> = (0..REQUESTS).map(|n| predicted(&errors(7), n)).collect();
    assert_eq!(a, expected, "request N gets FaultConfig::decide(N)");
}

#[tokio::test]
async fn fault_rates_are_roughly_as_configured_and_counted() {
    const REQUESTS: u64 = 1000;
    let config = FaultConfig { seed: 1, rate_429: 0.2, rate_5xx: 0.1, ..FaultConfig::default() };
    let mock = start_faulty(config);
    let client = client();
    let (mut throttled, mut failed) = (0u64, 0u64);
    for _ in 0..REQUESTS {
        let res = client.get(models_url(&mock.url)).send().await.unwrap();
        match res.status().as_u16() {
            429 => {
                throttled += 1;
                assert_proper_429(res).await;
            }
            500 | 503 => {
                failed += 1;
                let body: Value = res.json().await.unwrap();
                let code = body["error"]["code"].as_str().unwrap_or_default().to_string();
                assert!(code == "InternalServerError" || code == "ServiceUnavailable", "{body}");
            }
            200 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    // Expected: 429 for 20%; 5xx for 10% of the rest (8%). Five standard deviations of a
    // binomial over 1000 requests: ±6.3 points for 429, ±4.3 points for 5xx.
    let share = |n: u64| n as f64 / REQUESTS as f64;
    assert!((share(throttled) - 0.20).abs() < 0.063, "429 share {}", share(throttled));
    assert!((share(failed) - 0.08).abs() < 0.043, "5xx share {}", share(failed));
    let stats = stats(&mock.url).await;
    assert_eq!(stats["faults_injected"]["throttled"], throttled, "{stats}");
    assert_eq!(stats["faults_injected"]["server_errors"], failed, "{stats}");
    assert_eq!(stats["throttled_total"], throttled, "{stats}");
}

#[tokio::test]
async fn latency_and_spikes_add_time() {
    const REQUESTS: u64 = 12;
    let config = FaultConfig {
        seed: 3,
        latency: Duration::from_millis(50),
        latency_spike: Duration::from_millis(300),
        latency_spike_rate: 0.3,
        ..FaultConfig::default()
    };
    let spikes = (0..REQUESTS).filter(|n| config.decide(*n).delay > config.latency).count();
    assert!(spikes > 0, "seed 3 must put a spike in the first {REQUESTS} requests for this test to mean anything");
    let mock = start_faulty(config.clone());
    let client = client();
    for n in 0..REQUESTS {
        let started = Instant::now();
        let res = client.get(models_url(&mock.url)).send().await.unwrap();
        let took = started.elapsed();
        assert_eq!(res.status(), 200);
        let delay = config.decide(n).delay;
        assert!(took >= delay, "request {n} took {took:?}, less than its injected {delay:?}");
    }
}

/// Sends `requests` GETs, each on a fresh connection, and checks that exactly the predicted ones
/// are dropped, seen by the client as a failed request with no answer.
async fn check_drops(
    mock: &MockHandle,
    config: &FaultConfig,
    requests: u64,
    make_client: impl Fn() -> reqwest::Client,
) {
    let mut dropped = 0;
    for n in 0..requests {
        let result = make_client().get(models_url(&mock.url)).send().await;
        match (config.decide(n).action, result) {
            (FaultAction::Drop { .. }, Err(e)) => {
                assert!(!e.is_timeout() && e.status().is_none(), "request {n}: {e}");
                dropped += 1;
            }
            (FaultAction::Drop { .. }, Ok(res)) => panic!("request {n} should have been dropped, got {}", res.status()),
            (_, Ok(res)) => assert_eq!(res.status(), 200, "request {n}"),
            (_, Err(e)) => panic!("request {n} should have been answered: {e}"),
        }
    }
    assert!(dropped > 0, "the seed must drop some of the first {requests} requests");
}

#[tokio::test]
async fn dropped_connections_are_connection_errors_over_http1() {
    let config = FaultConfig { seed: 5, drop_rate: 0.4, ..FaultConfig::default() };
    let mock = start_faulty(config.clone());
    check_drops(&mock, &config, 30, client).await;
}

#[tokio::test]
async fn dropped_connections_are_connection_errors_over_https() {
    let config = FaultConfig { seed: 6, drop_rate: 0.4, ..FaultConfig::default() };
    let mock = start(
        MockConfig::default()
            .without_auth()
            .without_limits()
            .with_faults(config.clone())
            .with_tls(TlsMode::SelfSigned { ca_out: None }),
    )
    .unwrap();
    let ca = mock.ca_cert_pem.clone().unwrap();
    check_drops(&mock, &config, 30, || tls_client(&ca)).await;
}

/// Twin ids in an Import-Jobs NDJSON export.
fn exported_twins(ndjson: &str) -> BTreeSet<String> {
    ndjson
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v.get("$metadata").is_some())
        .filter_map(|v| v["$dtId"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn a_drop_after_handling_loses_the_answer_but_not_the_write() {
    const WRITES: u64 = 30;
    let config = FaultConfig { seed: 11, drop_rate: 0.5, ..FaultConfig::default() };
    assert_eq!(config.decide(0).action, FaultAction::Pass, "request 0 (the model upload) must pass with this seed");
    let kinds: Vec<_> = (1..=WRITES).map(|n| config.decide(n).action).collect();
    assert!(
        kinds.contains(&FaultAction::Drop { after_handling: true })
            && kinds.contains(&FaultAction::Drop { after_handling: false })
    );
    let mock = start_faulty(config.clone());
    upload_model(&client(), &mock.url).await;
    let mut should_exist = BTreeSet::new();
    for n in 1..=WRITES {
        let id = format!("d{n}");
        let result = client().put(twin_url(&mock.url, &id)).json(&twin(1)).send().await;
        match config.decide(n).action {
            FaultAction::Drop { after_handling } => {
                assert!(result.is_err(), "write {n} should have lost its answer");
                if after_handling {
                    should_exist.insert(id);
                }
            }
            _ => {
                assert_eq!(result.unwrap().status(), 200);
                should_exist.insert(id);
            }
        }
    }
    let export = client().get(format!("{}/_mock/export", mock.url)).send().await.unwrap().text().await.unwrap();
    assert_eq!(exported_twins(&export), should_exist, "exactly the writes handled before the drop landed");
}

#[tokio::test]
async fn inspection_is_never_faulted() {
    let mock = start_faulty(FaultConfig { rate_429: 1.0, drop_rate: 1.0, ..FaultConfig::default() });
    let client = client();
    for path in ["/_mock/stats", "/_mock/ping", "/metrics", "/_mock/export"] {
        let res = client.get(format!("{}{path}", mock.url)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn new_twins_stay_invisible_to_relationship_writes_for_the_configured_time() {
    const INVISIBLE: Duration = Duration::from_millis(1500);
    let mock = start_faulty(FaultConfig { new_twin_invisible_for: INVISIBLE, ..FaultConfig::default() });
    let client = client();
    upload_model(&client, &mock.url).await;
    // The source is older than the window; only the target is new.
    create_twin(&client, &mock.url, "a").await;
    tokio::time::sleep(INVISIBLE).await;
    create_twin(&client, &mock.url, "b").await;
    let created = Instant::now();
    let res = client.put(relationship_url(&mock.url, "a", "r1")).json(&relationship("b")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TargetDigitalTwinNotFound", "{body}");
    // Bounded retry, as a loader would.
    let deadline = created + INVISIBLE * 4;
    loop {
        let res = client.put(relationship_url(&mock.url, "a", "r1")).json(&relationship("b")).send().await.unwrap();
        if res.status() == 200 {
            break;
        }
        assert_eq!(res.status(), 404);
        assert!(Instant::now() < deadline, "the twin never became visible");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(created.elapsed() >= INVISIBLE - Duration::from_millis(100), "visible after {:?}", created.elapsed());
    // The eventual-consistency window is not an order violation.
    let stats = stats(&mock.url).await;
    assert_eq!(stats["order_violations_total"], 0, "{stats}");
}

#[tokio::test]
async fn queries_lag_writes_by_the_configured_time() {
    const LAG: Duration = Duration::from_millis(1000);
    let mock = start_faulty(FaultConfig { query_index_lag: LAG, ..FaultConfig::default() });
    let client = client();
    upload_model(&client, &mock.url).await;
    create_twin(&client, &mock.url, "q1").await;
    let written = Instant::now();
    let query = serde_json::json!({"query": "SELECT * FROM DIGITALTWINS WHERE $dtId = 'q1'"});
    let count = |v: &Value| v["value"].as_array().map_or(0, Vec::len);
    let first: Value =
        client.post(format!("{}/query?{API}", mock.url)).json(&query).send().await.unwrap().json().await.unwrap();
    if written.elapsed() < LAG {
        assert_eq!(count(&first), 0, "the index lags: {first}");
    }
    // GET does not lag.
    assert_eq!(client.get(twin_url(&mock.url, "q1")).send().await.unwrap().status(), 200);
    let deadline = written + LAG * 4;
    loop {
        let v: Value =
            client.post(format!("{}/query?{API}", mock.url)).json(&query).send().await.unwrap().json().await.unwrap();
        if count(&v) == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the query never caught up: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(written.elapsed() >= LAG - Duration::from_millis(100));
}
