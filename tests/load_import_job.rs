//! `twinload load --mode import-job` and `--mode auto` end to end: the loader, Azurite as the
//! staging container, and the mock ADT running the import job.

mod azure_support;
mod load_support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use twinload::exit::ExitStatus;

use azure_support::Azurite;
use load_support::{assert_same_graph, config_for, dead_letters, exported, fleet, graph_of, stats, writes_between};
use serde_json::Value;
use twinload::config::{LoadConfig, SecretUrl, WriteMode};
use twinload::limits::Limits;
use twinload::mock::jobs::JobsConfig;
use twinload::mock::server::{start, MockConfig, MockHandle};

/// A mock ADT whose import jobs reach the staging container with `storage_sas`, as real ADT does
/// with its managed identity: the loader gives it blob URLs without a SAS.
fn mock(import_rate_per_s: f64, storage_sas: &str) -> MockHandle {
    let storage_sas = Some(storage_sas.to_string());
    let jobs = JobsConfig { import_rate_per_s, log_flush_interval: Duration::from_millis(200), storage_sas };
    start(MockConfig { jobs, ..MockConfig::default().without_auth() }).expect("mock starts")
}

/// Azurite with a `staging` container; returns it and the container URL with its SAS.
fn staging() -> (Azurite, String) {
    let azurite = Azurite::start();
    let url = azurite.container_url("staging", "");
    azure_support::create_container(&url);
    (azurite, url)
}

fn import_job_config(mock: &MockHandle, dir: &Path, staging: &str) -> LoadConfig {
    let mut config = config_for(mock, dir);
    config.mode = WriteMode::ImportJob;
    config.import_job.staging = Some(SecretUrl::new(staging));
    config.import_job.poll_interval = Duration::from_secs(1);
    config
}

/// Twin and relationship lines that pass the planner but that ADT refuses: a property the
/// model does not declare, and a relationship name the model does not declare.
fn bad_input(dir: &Path, fleet_path: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(fleet_path).unwrap();
    let twins: Vec<Value> = text
        .lines()
        .filter(|l| l.contains("\"$metadata\""))
        .take(2)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let model = twins[0]["$metadata"]["$model"].as_str().unwrap();
    let (a, b) = (twins[0]["$dtId"].as_str().unwrap(), twins[1]["$dtId"].as_str().unwrap());
    let path = dir.join("bad.ndjson");
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(file, r#"{{"Section": "Header"}}"#).unwrap();
    writeln!(file, r#"{{"fileVersion": "1.0.0"}}"#).unwrap();
    writeln!(file, r#"{{"Section": "Twins"}}"#).unwrap();
    writeln!(file, r#"{{"$dtId":"bad-twin","$metadata":{{"$model":"{model}"}},"noSuchProperty":1}}"#).unwrap();
    writeln!(file, r#"{{"Section": "Relationships"}}"#).unwrap();
    writeln!(
        file,
        r#"{{"$dtId":"{a}","$relationshipId":"bad-rel","$targetId":"{b}","$relationshipName":"noSuchName"}}"#
    )
    .unwrap();
    path
}

#[test]
fn an_import_job_load_lands_the_graph_and_brings_bad_lines_back_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let (azurite, staging_url) = staging();
    let mock = mock(0.0, &azurite.sas());
    let fleet_path = fleet(dir.path(), 200, 7);
    let bad_path = bad_input(dir.path(), &fleet_path);
    let mut config = import_job_config(&mock, dir.path(), &staging_url);
    let ledger = dir.path().join("ledger.ndjson");
    config.sync.ledger = Some(ledger.display().to_string());
    let inputs = vec![fleet_path.display().to_string(), bad_path.display().to_string()];
    let summary = load_support::load(config.clone(), inputs.clone()).expect("the load runs");

    assert_same_graph(&graph_of(&fleet_path), &exported(&mock));
    assert_eq!(summary.exit_code, ExitStatus::DeadLetters, "{}", summary.human());
    let mode = &summary.plan["load_mode"];
    assert_eq!(mode["mode"], "import-job", "{mode}");
    assert!(mode["import_job_id"].as_str().unwrap().starts_with("twinload-"), "{mode}");
    // Only the two bad lines are dead letters, each named by its own file and line.
    let letters = dead_letters(&config.dead_letter_path);
    assert_eq!(letters.len(), 2, "{letters:?}");
    let bad_file = bad_path.display().to_string();
    assert_eq!((letters[0]["file"].as_str(), letters[0]["line"].as_u64()), (Some(bad_file.as_str()), Some(4)));
    assert_eq!(letters[0]["id"], "bad-twin");
    assert_eq!(letters[0]["error_code"], "ValidationFailed");
    assert_eq!(letters[0]["reason_code"], "import_rejected");
    assert_eq!((letters[1]["file"].as_str(), letters[1]["line"].as_u64()), (Some(bad_file.as_str()), Some(6)));
    assert_eq!(letters[1]["id"], "bad-rel");
    assert_eq!(letters[1]["error_code"], "InvalidRelationship");
    let twins = &summary.items["twins"];
    assert_eq!((twins.landed, twins.dead_lettered), (graph_of(&fleet_path).twins.len() as u64, 1));
    // The staging SAS is in no output.
    let summary_json = std::fs::read_to_string(config.summary_path.clone().unwrap()).unwrap();
    let letters_text = std::fs::read_to_string(&config.dead_letter_path).unwrap();
    assert!(!summary_json.contains("sig=") && !letters_text.contains("sig="));
    // Nor in the job ADT keeps (and shows to anyone allowed to read jobs): its blob URLs are plain,
    // ADT reaches them with its own identity.
    let job_url = format!(
        "{}/jobs/imports/{}?api-version={}",
        mock.url,
        mode["import_job_id"].as_str().unwrap(),
        twinload::adt::API_VERSION
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let http = twinload::http::build(twinload::http::client_builder(None).unwrap()).unwrap();
    let (status, job) = rt.block_on(load_support::jobs_call(&http, reqwest::Method::GET, &job_url, None));
    assert_eq!(status, 200, "{job}");
    let (input, output) =
        (job["inputBlobUri"].as_str().unwrap_or_default(), job["outputBlobUri"].as_str().unwrap_or_default());
    assert!(input.ends_with("/input.ndjson") && output.ends_with("/log.ndjson"), "{job}");
    assert!(!input.contains('?') && !output.contains('?'), "a SAS went into the job: {input} {output}");

    // The ledger records what the job landed (and not the refused lines), so a sync of the same
    // input right after writes nothing but the two items the job refused.
    let ledger_text = std::fs::read_to_string(&ledger).unwrap();
    let graph = graph_of(&fleet_path);
    assert_eq!(
        ledger_text.lines().count(),
        1 + graph.models.len() + graph.twins.len() + graph.relationships.len(),
        "header, models, twins, relationships"
    );
    assert!(!ledger_text.contains("bad-twin") && !ledger_text.contains("bad-rel"));
    let before = stats(&mock);
    let mut sync = config.clone();
    sync.mode = WriteMode::Sync;
    // The same inputs (a ledger belongs to its inputs): the two refused lines are tried again.
    let synced = load_support::load(sync, inputs).expect("the sync runs");
    assert_eq!(synced.exit_code, ExitStatus::DeadLetters, "{}", synced.human());
    let after = stats(&mock);
    let writes = writes_between(&before, &after);
    assert_eq!(writes, 2, "{}", after["requests_by_operation"]);
}

#[test]
fn auto_writes_per_item_for_a_small_load_and_uses_a_job_for_a_large_first_load() {
    let dir = tempfile::tempdir().unwrap();
    let (azurite, staging_url) = staging();
    let fleet_path = fleet(dir.path(), 100, 3);

    // Small: below the (default) threshold, per item.
    let mock_small = mock(0.0, &azurite.sas());
    let mut config = import_job_config(&mock_small, dir.path(), &staging_url);
    config.mode = WriteMode::Auto;
    let summary = load_support::load(config, vec![fleet_path.display().to_string()]).unwrap();
    let mode = &summary.plan["load_mode"];
    assert_eq!(mode["mode"], "per-item", "{mode}");
    assert!(mode["reason"].as_str().unwrap().contains("below import_job.auto_min_items"), "{mode}");
    assert!(
        summary.requests_by_class.get("create_delete").copied().unwrap_or(0) > 0,
        "{:?}",
        summary.requests_by_class
    );
    assert_same_graph(&graph_of(&fleet_path), &exported(&mock_small));

    // Large (threshold lowered so the test stays small) into an empty instance at the 2021
    // limits (50 creates/s): T* (~24 s) is well over the job's expected time (~11 s), so a job.
    // (Auto's other reasons for per-item are unit tests of import_job::choice.)
    let fleet_path = fleet(dir.path(), 400, 5);
    let mock_large = mock(0.0, &azurite.sas());
    let mut config = import_job_config(&mock_large, dir.path(), &staging_url);
    config.mode = WriteMode::Auto;
    config.limits = Limits::from_spec("adt-2021").unwrap();
    config.import_job.auto_min_items = 100;
    let summary = load_support::load(config, vec![fleet_path.display().to_string()]).unwrap();
    let mode = &summary.plan["load_mode"];
    assert_eq!(mode["mode"], "import-job", "{mode}");
    let reason = mode["reason"].as_str().unwrap();
    assert!(reason.contains("empty instance") && reason.contains("per-item T*"), "{reason}");
    assert!(mode["per_item_t_star_s"].as_f64().unwrap() > mode["import_job_expected_s"].as_f64().unwrap(), "{mode}");
    assert_eq!(
        summary.requests_by_class.get("create_delete").copied().unwrap_or(0),
        0,
        "{:?}",
        summary.requests_by_class
    );
    assert_same_graph(&graph_of(&fleet_path), &exported(&mock_large));
}

/// `twinload load --mode import-job` as a process of its own (signals can reach it), its
/// summary next to its dead letters (`<dead>.summary.json`), stderr piped.
fn import_job_process(mock: &MockHandle, input: &Path, staging: &str, dead: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_twinload"))
        .args(["load", "--mode", "import-job", "--endpoint", &mock.url])
        .arg("--input")
        .arg(input)
        .arg("--dead-letter")
        .arg(dead)
        .arg("--summary")
        .arg(dead.with_extension("summary.json"))
        .env("TWINLOAD_STAGING", staging)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (at most a minute) until the mock's import job has written a twin.
fn wait_for_first_twin(mock: &MockHandle) {
    let started = Instant::now();
    while mock.store().twin_count() == 0 {
        assert!(started.elapsed() < Duration::from_secs(60), "the import job did not start writing twins");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(unix)]
#[test]
fn sigterm_cancels_the_import_job() {
    let dir = tempfile::tempdir().unwrap();
    let (azurite, staging_url) = staging();
    // ~1,000 items at 40/s: the job runs for about 25 s unless cancelled.
    let mock = mock(40.0, &azurite.sas());
    let fleet_path = fleet(dir.path(), 300, 11);
    let dead = dir.path().join("dead.ndjson");
    let summary_path = dead.with_extension("summary.json");
    let mut child = import_job_process(&mock, &fleet_path, &staging_url, &dead);
    let started = Instant::now();
    wait_for_first_twin(&mock);
    let landed_at_signal = mock.store().twin_count() + mock.store().relationship_count();
    // SIGTERM, as Batch sends it.
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(killed.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "the loader did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert_eq!(status.code(), Some(i32::from(ExitStatus::StoppedEarly.code())), "{stderr}");
    assert!(!stderr.contains("sig="), "the SAS leaked: {stderr}");
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    assert!(summary["stop_reason"].as_str().unwrap().contains("SIGTERM"), "{summary}");
    // The job ended cancelled, well short of the whole input.
    let total = graph_of(&fleet_path).twins.len() + graph_of(&fleet_path).relationships.len();
    let landed = mock.store().twin_count() + mock.store().relationship_count();
    assert!(landed < total, "the job ran to the end ({landed} of {total}) despite the cancel (at {landed_at_signal})");
    let letters = dead_letters(&dead);
    assert!(!letters.is_empty() && letters.iter().all(|l| l["reason_code"] == "not_attempted"), "{letters:?}");
    let twins = &summary["items"]["twins"];
    let accounted = twins["landed"].as_u64().unwrap() + twins["not_attempted"].as_u64().unwrap();
    assert_eq!(accounted, graph_of(&fleet_path).twins.len() as u64, "{summary}");
}

#[cfg(unix)]
#[test]
fn sigterm_while_waiting_for_another_bulk_job_stops_early_with_every_item_not_attempted() {
    let dir = tempfile::tempdir().unwrap();
    let (azurite, staging_url) = staging();
    // A slow job (about 1,000 items at 20/s) that holds the instance's one bulk-job slot.
    let mock = mock(20.0, &azurite.sas());
    let fleet_path = fleet(dir.path(), 300, 12);
    let loader = |name: &str| {
        import_job_process(&mock, &fleet_path, &staging_url, &dir.path().join(format!("{name}.dead.ndjson")))
    };
    let mut first = loader("first");
    let started = Instant::now();
    wait_for_first_twin(&mock);
    // The second finds the slot taken (JobLimitReached) and waits for it; give it time to ask.
    let mut second = loader("second");
    std::thread::sleep(Duration::from_secs(3));
    assert!(second.try_wait().unwrap().is_none(), "the second loader should be waiting");
    assert!(Command::new("kill").args(["-TERM", &second.id().to_string()]).status().unwrap().success());
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the waiting loader did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::io::read_to_string(second.stderr.take().unwrap()).unwrap();
    // Stopped early (exit 5), like any stopped run: every item listed as not attempted.
    assert_eq!(status.code(), Some(i32::from(ExitStatus::StoppedEarly.code())), "{stderr}");
    assert!(stderr.contains("SIGTERM received while waiting for another bulk job to end"), "{stderr}");
    assert!(!stderr.contains("sig="), "the SAS leaked: {stderr}");
    let dead = dir.path().join("second.dead.ndjson");
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(dead.with_extension("summary.json")).unwrap())
        .expect("the stopped loader writes its summary");
    assert!(summary["stop_reason"].as_str().unwrap().contains("SIGTERM"), "{summary}");
    let expected = graph_of(&fleet_path);
    let letters = dead_letters(&dead);
    assert!(letters.iter().all(|l| l["reason_code"] == "not_attempted"), "{letters:?}");
    let of_kind = |kind: &str| letters.iter().filter(|l| l["kind"] == kind).count();
    assert_eq!(
        (of_kind("twin"), of_kind("relationship")),
        (expected.twins.len(), expected.relationships.len()),
        "every twin and relationship is listed as not attempted"
    );
    assert_eq!(summary["items"]["twins"]["not_attempted"].as_u64(), Some(expected.twins.len() as u64), "{summary}");
    let _ = first.kill();
    let _ = first.wait();
}
