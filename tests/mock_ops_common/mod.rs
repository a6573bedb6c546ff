//! Helpers shared by the mock's limit and fault tests: a client, a tiny model, twin bodies.
#![allow(dead_code)] // each test file uses a different part

use std::time::Duration;

use serde_json::{json, Value};

pub const API: &str = "api-version=2023-10-31";
pub const MODEL: &str = "dtmi:twinload:test:Thing;1";
/// Every request of these tests is answered well within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A client with its own connection pool (one per simulated loader process).
pub fn client() -> reqwest::Client {
    twinload::http::client_builder(None).unwrap().timeout(REQUEST_TIMEOUT).build().expect("client builds")
}

/// A client that trusts the mock's generated CA.
pub fn tls_client(ca_pem: &str) -> reqwest::Client {
    twinload::http::client_builder(None)
        .unwrap()
        .timeout(REQUEST_TIMEOUT)
        .tls_certs_merge([reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM parses")])
        .build()
        .expect("client builds")
}

/// A model with one integer property and one relationship that may target any twin.
pub fn model() -> Value {
    json!([{
        "@id": MODEL, "@type": "Interface", "@context": "dtmi:dtdl:context;2",
        "contents": [
            {"@type": "Property", "name": "n", "schema": "integer"},
            {"@type": "Relationship", "name": "rel"}
        ]
    }])
}

pub fn twin(n: i64) -> Value {
    json!({"$metadata": {"$model": MODEL}, "n": n})
}

pub fn relationship(target: &str) -> Value {
    json!({"$relationshipName": "rel", "$targetId": target})
}

pub fn twin_url(base: &str, id: &str) -> String {
    format!("{base}/digitaltwins/{id}?{API}")
}

pub fn relationship_url(base: &str, source: &str, rel: &str) -> String {
    format!("{base}/digitaltwins/{source}/relationships/{rel}?{API}")
}

/// The mock's `/_mock/stats`.
pub async fn stats(base: &str) -> Value {
    client().get(format!("{base}/_mock/stats")).send().await.unwrap().json().await.unwrap()
}

/// Uploads [`model`] (a bearer token is sent in case auth is on).
pub async fn upload_model(client: &reqwest::Client, base: &str) {
    let res = client.post(format!("{base}/models?{API}")).bearer_auth("t").json(&model()).send().await.unwrap();
    assert_eq!(res.status(), 201, "model upload: {}", res.text().await.unwrap_or_default());
}

/// Creates a twin, retrying while throttled (setup must not depend on the limits under test).
pub async fn create_twin(client: &reqwest::Client, base: &str, id: &str) {
    for _ in 0..100 {
        let res = client.put(twin_url(base, id)).bearer_auth("t").json(&twin(0)).send().await.unwrap();
        match res.status().as_u16() {
            200 => return,
            429 => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("creating twin {id}: {other} {}", res.text().await.unwrap_or_default()),
        }
    }
    panic!("twin {id} stayed throttled");
}

/// Checks what every 429 of the mock must carry: Retry-After in whole seconds (≥ 1), the exact
/// milliseconds, and ADT's error body with `QuotaReachedError`.
pub async fn assert_proper_429(res: reqwest::Response) {
    assert_eq!(res.status(), 429);
    let retry_after = res.headers().get("Retry-After").expect("every 429 carries Retry-After");
    let seconds: u64 = retry_after.to_str().unwrap().parse().expect("Retry-After is whole seconds");
    assert!(seconds >= 1, "Retry-After is at least 1");
    let millis: u64 =
        res.headers().get("x-ms-retry-after-ms").expect("x-ms-retry-after-ms").to_str().unwrap().parse().unwrap();
    assert!(millis >= 1 && millis <= seconds * 1000, "{millis} ms vs {seconds} s");
    let body: Value = res.json().await.expect("429 body is JSON");
    assert_eq!(body["error"]["code"], "QuotaReachedError", "{body}");
}

/// What concurrent clients got during a measured window.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Answers that were not 429 (the request got past every limit).
    pub admitted: u64,
    pub throttled: u64,
    /// Seconds from the first request sent to the last answer received.
    pub elapsed_s: f64,
}

/// Runs `clients` concurrent clients (each with its own connections, like separate loader
/// processes) that send requests back to back for `window`, and tallies the answers. Every 429
/// is checked with [`assert_proper_429`]; any other answer must be `expect_status`.
pub async fn hammer<F>(clients: usize, window: Duration, expect_status: u16, request: F) -> Tally
where
    F: Fn(&reqwest::Client, usize, u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let request = std::sync::Arc::new(request);
    let started = std::time::Instant::now();
    let deadline = started + window;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let client = client();
            let mut tally = Tally::default();
            let mut i = 0u64;
            while std::time::Instant::now() < deadline {
                let res = request(&client, c, i).send().await.expect("the mock answers");
                i += 1;
                if res.status() == 429 {
                    tally.throttled += 1;
                    assert_proper_429(res).await;
                } else {
                    let status = res.status().as_u16();
                    assert_eq!(status, expect_status, "{}", res.text().await.unwrap_or_default());
                    tally.admitted += 1;
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for task in tasks {
        let t = task.await.expect("client task");
        total.admitted += t.admitted;
        total.throttled += t.throttled;
    }
    total.elapsed_s = started.elapsed().as_secs_f64();
    total
}

/// The most a token bucket of `rate`/s with a one-second burst may admit over `elapsed_s`,
/// with 5% slack for timer granularity: burst + rate × window × 1.05.
pub fn rate_bound(rate: u32, elapsed_s: f64) -> f64 {
    f64::from(rate) + f64::from(rate) * elapsed_s * 1.05
}
