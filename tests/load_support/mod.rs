//! Helpers shared by the `load_*` tests: a generated fleet on disk, a mock ADT over loopback,
//! its `/_mock/stats` and `/_mock/export`, and the canonical graph comparison.

#![allow(dead_code)] // each test binary uses its own subset

pub mod hostile;

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use twinload::config::LoadConfig;
use twinload::gen::{generate, GenOptions};
use twinload::mock::server::{start, MockConfig, MockHandle};
use twinload::run::{LoadError, Summary};
use twinload::verify::{diff, Graph};

/// Bounds every HTTP call a test makes itself.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a load on an actix System of its own, stopped only by its own end.
pub fn load(config: LoadConfig, inputs: Vec<String>) -> Result<Summary, LoadError> {
    actix::System::new().block_on(twinload::run::load(config, inputs, std::future::pending()))
}

/// Writes a generated fleet and returns its path.
pub fn fleet(dir: &Path, twins: u64, seed: u64) -> PathBuf {
    let path = dir.join(format!("fleet-{twins}-{seed}.ndjson"));
    let file = std::fs::File::create(&path).expect("create fleet file");
    generate(&GenOptions::new(twins, seed), file).expect("generate fleet");
    path
}

/// A mock ADT with ADT's default limits, no auth, on a free loopback port.
pub fn mock() -> MockHandle {
    start(MockConfig::default().without_auth()).expect("mock starts")
}

/// A load config for the mock, writing its dead letters and summary into `dir`.
pub fn config_for(mock: &MockHandle, dir: &Path) -> LoadConfig {
    let mut config = LoadConfig::new(mock.url.clone());
    config.dead_letter_path = dir.join("dead-letters.ndjson");
    config.summary_path = Some(dir.join("summary.json"));
    config
}

fn get(url: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let client = twinload::http::client_builder(None).unwrap().timeout(HTTP_TIMEOUT).build().expect("client");
        let resp = client.get(url).send().await.expect("mock answers");
        assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
        resp.text().await.expect("body")
    })
}

/// The mock's `/_mock/stats`.
pub fn stats(mock: &MockHandle) -> serde_json::Value {
    serde_json::from_str(&get(&format!("{}/_mock/stats", mock.url))).expect("stats are JSON")
}

/// Write requests (creates, deletes, patches, model uploads) the mock answered between two
/// `stats` snapshots.
pub fn writes_between(before: &serde_json::Value, after: &serde_json::Value) -> u64 {
    ["PUT create_delete", "DELETE create_delete", "PATCH patch", "POST models"]
        .iter()
        .map(|op| {
            let count = |stats: &serde_json::Value| stats["requests_by_operation"][op].as_u64().unwrap_or(0);
            count(after) - count(before)
        })
        .sum()
}

/// The mock's graph, from `/_mock/export`.
pub fn exported(mock: &MockHandle) -> Graph {
    let text = get(&format!("{}/_mock/export", mock.url));
    Graph::from_ndjson(BufReader::new(text.as_bytes())).expect("export is Import-Jobs NDJSON")
}

/// The graph an input file describes.
pub fn graph_of(path: &Path) -> Graph {
    Graph::from_ndjson(BufReader::new(std::fs::File::open(path).expect("open input"))).expect("input parses")
}

/// Asserts the mock holds exactly `expected`, listing the differences if not.
pub fn assert_same_graph(expected: &Graph, actual: &Graph) {
    let d = diff(expected, actual);
    assert!(d.is_empty(), "the mock's graph differs from the input:\n{}", d.describe());
}

/// The dead-letter file, one JSON value per line.
pub fn dead_letters(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("dead-letter file exists")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each dead letter is JSON"))
        .collect()
}

/// A jobs call, waiting out the jobs class's 429s (1 request/s) within a bounded number of tries.
pub async fn jobs_call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    for _ in 0..20 {
        let mut request = http.request(method.clone(), url);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.expect("jobs request");
        let status = response.status().as_u16();
        if status == 429 {
            let wait: f64 = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(1.0);
            tokio::time::sleep(Duration::from_secs_f64(wait.clamp(0.05, 2.0))).await;
            continue;
        }
        let text = response.text().await.unwrap_or_default();
        return (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null));
    }
    panic!("{method} {url} was throttled 20 times in a row");
}
