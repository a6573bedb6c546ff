//! The mock's Import Jobs and Delete Jobs API against Azurite: the job reads its NDJSON input
//! blob through a SAS, applies it with the per-item API's validation, writes its log to an
//! append blob, and keeps to one bulk job at a time and 1 jobs request per second.

mod azure_support;
mod load_support;

use std::time::{Duration, Instant};

use azure_support::Azurite;
use load_support::jobs_call;
use serde_json::{json, Value};
use twinload::mock::jobs::JobsConfig;
use twinload::mock::server::{start, MockConfig, MockHandle};

const API: &str = "api-version=2023-10-31";
/// Bounds every wait for a job.
const JOB_TIMEOUT: Duration = Duration::from_secs(60);

fn mock(import_rate_per_s: f64) -> MockHandle {
    let config = MockConfig {
        jobs: JobsConfig { import_rate_per_s, log_flush_interval: Duration::from_millis(200), storage_sas: None },
        ..MockConfig::default().without_auth()
    };
    start(config).expect("mock starts")
}

fn http() -> reqwest::Client {
    twinload::http::client_builder(None).unwrap().no_proxy().timeout(Duration::from_secs(30)).build().unwrap()
}

async fn wait_until_done(http: &reqwest::Client, url: &str) -> Value {
    let started = Instant::now();
    loop {
        let (status, job) = jobs_call(http, reqwest::Method::GET, url, None).await;
        assert_eq!(status, 200, "{job}");
        if !["notstarted", "running", "cancelling"].contains(&job["status"].as_str().unwrap_or_default()) {
            return job;
        }
        assert!(started.elapsed() < JOB_TIMEOUT, "the job did not end within {JOB_TIMEOUT:?}: {job}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

const ROOM: &str = r#"{"@id":"dtmi:t:Room;1","@type":"Interface","@context":"dtmi:dtdl:context;2","contents":[{"@type":"Property","name":"n","schema":"integer"},{"@type":"Relationship","name":"next"}]}"#;

/// An input with `twins` good twins in a ring of relationships, plus (when `bad`) a twin with a
/// wrong property type and a relationship to a twin that does not exist. Returns the text and
/// the line numbers of the bad lines.
fn input(twins: usize, bad: bool) -> (String, Vec<u64>) {
    let mut lines = vec![
        r#"{"Section": "Header"}"#.to_string(),
        r#"{"fileVersion": "1.0.0", "author": "twinload tests", "organization": "contoso"}"#.to_string(),
        r#"{"Section": "Models"}"#.to_string(),
        ROOM.to_string(),
        r#"{"Section": "Twins"}"#.to_string(),
    ];
    let mut bad_lines = Vec::new();
    for i in 0..twins {
        lines.push(json!({"$dtId": format!("t{i}"), "$metadata": {"$model": "dtmi:t:Room;1"}, "n": i}).to_string());
    }
    if bad {
        lines.push(r#"{"$dtId":"bad","$metadata":{"$model":"dtmi:t:Room;1"},"n":"not a number"}"#.into());
        bad_lines.push(lines.len() as u64);
    }
    lines.push(r#"{"Section": "Relationships"}"#.into());
    for i in 0..twins {
        let target = format!("t{}", (i + 1) % twins);
        lines.push(
            json!({"$dtId": format!("t{i}"), "$relationshipId": "r", "$targetId": target, "$relationshipName": "next"})
                .to_string(),
        );
    }
    if bad {
        lines.push(r#"{"$dtId":"t0","$relationshipId":"r2","$targetId":"nowhere","$relationshipName":"next"}"#.into());
        bad_lines.push(lines.len() as u64);
    }
    (lines.join("\n") + "\n", bad_lines)
}

fn log_lines(log: &str) -> Vec<Value> {
    log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line {l}: {e}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_job_applies_the_blob_logs_errors_by_line_and_holds_the_bulk_slot() {
    let azurite = Azurite::start();
    let http = http();
    azurite.create_container_async(&http, "jobs").await;
    let (text, bad_lines) = input(10, true);
    azurite.put_blob(&http, "jobs", "in.ndjson", text.into_bytes()).await;
    // 23 items at 5/s: the job runs for over 4 s, long enough to meet a second import and a
    // delete job, each sent past the jobs class's 1 request/s.
    let mock = mock(5.0);
    let job_url = format!("{}/jobs/imports/first?{API}", mock.url);
    let request = json!({
        "inputBlobUri": azurite.blob_url_with_sas("jobs", "in.ndjson"),
        "outputBlobUri": azurite.blob_url_with_sas("jobs", "out/first.ndjson"),
    });
    let (status, job) = jobs_call(&http, reqwest::Method::PUT, &job_url, Some(request.clone())).await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["id"], "first");
    assert!(job["purgeDateTime"].is_string() && job["createdDateTime"].is_string(), "{job}");

    // A second bulk job while this one runs: the live 429 `TooManyRequests`, with Retry-After.
    let second = format!("{}/jobs/imports/second?{API}", mock.url);
    let deletion = format!("{}/jobs/deletions?{API}", mock.url);
    for (method, url, body) in
        [(reqwest::Method::PUT, &second, Some(request.clone())), (reqwest::Method::POST, &deletion, None)]
    {
        let (retry_after, refused) = bulk_slot_refusal(&http, method, url, body).await;
        assert_eq!(refused.code, "TooManyRequests");
        assert!(refused.message.starts_with("Cannot start another job while one is in progress"), "{refused:?}");
        assert!(retry_after >= 1, "Retry-After: {retry_after}");
    }
    // The id already used: 409 `JobIdAlreadyExists`, whatever the slot.
    let (status, taken) = jobs_call(&http, reqwest::Method::PUT, &job_url, Some(request.clone())).await;
    assert_eq!((status, taken["error"]["code"].as_str()), (409, Some("JobIdAlreadyExists")), "{taken}");

    let done = wait_until_done(&http, &job_url).await;
    assert_eq!(done["status"], "failed", "two lines were bad: {done}");
    assert!(done["finishedDateTime"].is_string(), "{done}");
    assert_eq!(mock.store().twin_count(), 10);
    assert_eq!(mock.store().relationship_count(), 10);
    assert_eq!(mock.store().get_relationship("t9", "r").unwrap().target, "t0");

    let log = azurite.get_blob(&http, "jobs", "out/first.ndjson").await.expect("the job wrote its log");
    let lines = log_lines(&log);
    assert!(lines.iter().all(|l| l["jobId"] == "first" && l["jobType"] == "Import" && l["timestamp"].is_string()));
    let info = |details: Value| lines.iter().any(|l| l["logType"] == "Info" && l["details"] == details);
    assert!(info(json!({"status": "Started"})), "{log}");
    for section in ["Models", "Twins", "Relationships"] {
        assert!(info(json!({"section": section, "status": "Started"})), "{section}: {log}");
    }
    assert!(info(json!({"section": "Models", "status": "Succeeded"})), "{log}");
    let errors: Vec<&Value> = lines.iter().filter(|l| l["logType"] == "Error").collect();
    let error_lines: Vec<u64> = errors.iter().map(|l| l["details"]["lineNumber"].as_u64().unwrap()).collect();
    assert_eq!(error_lines, bad_lines, "{log}");
    assert_eq!(errors[0]["details"]["id"], "bad");
    assert_eq!(errors[0]["details"]["code"], "ValidationFailed");
    assert_eq!(errors[1]["details"]["id"], "t0/r2");
    assert_eq!(errors[1]["details"]["code"], "TargetDigitalTwinNotFound");
    assert!(!log.contains("sig="), "no SAS in the log");

    // List, delete, not found.
    let (status, list) =
        jobs_call(&http, reqwest::Method::GET, &format!("{}/jobs/imports?{API}", mock.url), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["value"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["value"][0]["status"], "failed");
    let (status, _) = jobs_call(&http, reqwest::Method::DELETE, &job_url, None).await;
    assert_eq!(status, 204);
    let (status, gone) = jobs_call(&http, reqwest::Method::GET, &job_url, None).await;
    assert_eq!((status, gone["error"]["code"].as_str()), (404, Some("JobNotFound")), "{gone}");
    let (status, gone) = jobs_call(&http, reqwest::Method::DELETE, &job_url, None).await;
    assert_eq!((status, gone["error"]["code"].as_str()), (404, Some("JobNotFound")), "{gone}");
}

/// Sends a job create that must meet a busy bulk-job slot; the jobs class's own 429s (1 request
/// per second, another code) are waited out. Returns `Retry-After` in seconds and the error,
/// which the service sends inside a JSON string.
async fn bulk_slot_refusal(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> (u64, twinload::adt::AdtError) {
    for _ in 0..10 {
        let mut request = http.request(method.clone(), url);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.expect("jobs request");
        assert_eq!(response.status(), 429, "a second bulk job is refused");
        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes = response.bytes().await.unwrap();
        let text: Value = serde_json::from_slice(&bytes).expect("a JSON body");
        let error = twinload::adt::ErrorBody::parse(&bytes).expect("an ADT error").error;
        if error.code == "TooManyRequests" {
            assert!(text.is_string(), "the error object comes inside a JSON string, as live: {text}");
            return (retry_after.and_then(|v| v.parse().ok()).expect("a Retry-After in seconds"), error);
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    panic!("{method} {url}: only the jobs class's 429s, 10 times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_import_stops_and_a_delete_job_empties_the_instance() {
    let azurite = Azurite::start();
    let http = http();
    azurite.create_container_async(&http, "jobs").await;
    let (text, _) = input(200, false);
    azurite.put_blob(&http, "jobs", "in.ndjson", text.into_bytes()).await;
    let mock = mock(20.0);
    let job_url = format!("{}/jobs/imports/slow?{API}", mock.url);
    let request = json!({
        "inputBlobUri": azurite.blob_url_with_sas("jobs", "in.ndjson"),
        "outputBlobUri": azurite.blob_url_with_sas("jobs", "out/slow.ndjson"),
    });
    let (status, _) = jobs_call(&http, reqwest::Method::PUT, &job_url, Some(request)).await;
    assert_eq!(status, 201);
    let (status, cancelling) =
        jobs_call(&http, reqwest::Method::POST, &format!("{}/jobs/imports/slow/cancel?{API}", mock.url), None).await;
    assert_eq!((status, cancelling["status"].as_str()), (200, Some("cancelling")), "{cancelling}");
    let done = wait_until_done(&http, &job_url).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    let landed = mock.store().twin_count() + mock.store().relationship_count();
    assert!(landed < 400, "a cancelled job stops early ({landed} of 400 items landed)");
    let log = azurite.get_blob(&http, "jobs", "out/slow.ndjson").await.unwrap();
    assert!(log_lines(&log).iter().any(|l| l["details"] == json!({"status": "Cancelled"})), "{log}");

    let response =
        http.post(format!("{}/jobs/deletions?{API}", mock.url)).header("operation-id", "wipe").send().await.unwrap();
    let response = if response.status() == 429 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        http.post(format!("{}/jobs/deletions?{API}", mock.url)).header("operation-id", "wipe").send().await.unwrap()
    } else {
        response
    };
    assert_eq!(response.status(), 202);
    let location = response.headers()["operation-location"].to_str().unwrap().to_string();
    assert!(location.contains("/jobs/deletions/wipe?api-version=2023-10-31"), "{location}");
    let done = wait_until_done(&http, &location).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!((mock.store().twin_count(), mock.store().model_count()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_unreadable_blobs_fail_clearly() {
    let azurite = Azurite::start();
    let http = http();
    azurite.create_container_async(&http, "jobs").await;
    let mock = mock(0.0);
    let (status, refused) = jobs_call(
        &http,
        reqwest::Method::PUT,
        &format!("{}/jobs/imports/x?{API}", mock.url),
        Some(json!({"inputBlobUri": "http://127.0.0.1:1/a"})),
    )
    .await;
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("ValidationFailed")), "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("outputBlobUri"), "{refused}");
    let (status, refused) = jobs_call(
        &http,
        reqwest::Method::PUT,
        &format!("{}/jobs/imports/x?{API}", mock.url),
        Some(json!({"inputBlobUri": "invalidUri", "outputBlobUri": "http://127.0.0.1:1/out"})),
    )
    .await;
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("InvalidArgument")), "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("'invalidUri' failed validation"), "{refused}");
    let (status, unknown) =
        jobs_call(&http, reqwest::Method::GET, &format!("{}/jobs/imports/x?{API}", mock.url), None).await;
    assert_eq!((status, unknown["error"]["code"].as_str()), (404, Some("JobNotFound")), "{unknown}");

    // A blob that is not there: the job fails, names the blob, and shows no SAS.
    let job_url = format!("{}/jobs/imports/missing?{API}", mock.url);
    let request = json!({
        "inputBlobUri": azurite.blob_url_with_sas("jobs", "nothing.ndjson"),
        "outputBlobUri": azurite.blob_url_with_sas("jobs", "out/missing.ndjson"),
    });
    let (status, _) = jobs_call(&http, reqwest::Method::PUT, &job_url, Some(request)).await;
    assert_eq!(status, 201);
    let done = wait_until_done(&http, &job_url).await;
    assert_eq!(done["status"], "failed");
    let message = done["error"]["message"].as_str().unwrap();
    assert!(message.contains("nothing.ndjson") && message.contains("404") && !message.contains("sig="), "{message}");

    // A SAS signed with another key is refused by Azurite: the SAS is what authorises the job.
    let forged = azure_support::account_sas_signed_with("c2VjcmV0", "2099-01-01T00:00:00Z");
    let response = http
        .get(format!("{}/jobs/x.ndjson?{forged}", azurite.account_url))
        .header("x-ms-version", "2021-12-02")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_forgets_every_job_and_frees_the_bulk_slot() {
    let http = http();
    let mock = mock(0.0);
    // Blobs nobody serves: the job fails at once, and stays listed until a reset.
    let request =
        json!({"inputBlobUri": "http://127.0.0.1:1/in.ndjson", "outputBlobUri": "http://127.0.0.1:1/out.ndjson"});
    let job_url = format!("{}/jobs/imports/j?{API}", mock.url);
    let (status, _) = jobs_call(&http, reqwest::Method::PUT, &job_url, Some(request.clone())).await;
    assert_eq!(status, 201);
    assert_eq!(wait_until_done(&http, &job_url).await["status"], "failed");
    let reset = http.post(format!("{}/_mock/reset", mock.url)).send().await.unwrap();
    assert_eq!(reset.status(), 204);
    let (status, gone) = jobs_call(&http, reqwest::Method::GET, &job_url, None).await;
    assert_eq!((status, gone["error"]["code"].as_str()), (404, Some("JobNotFound")), "{gone}");
    let (status, list) =
        jobs_call(&http, reqwest::Method::GET, &format!("{}/jobs/imports?{API}", mock.url), None).await;
    assert_eq!((status, list["value"].as_array().map(Vec::len)), (200, Some(0)), "{list}");
    let (status, again) = jobs_call(&http, reqwest::Method::PUT, &job_url, Some(request)).await;
    assert_eq!(status, 201, "the id is free again: {again}");
}
