//! Issue 6: many loaders on one instance, and throttling as pure back-pressure. Against the real
//! mock over loopback, at small sizes: several loader processes at once on one mock; a mock at
//! lower limits than the loader believes; sustained injected 429s; 5xx and dropped connections
//! with a small retry budget; a writer whose request panics; the no-progress watchdog. Every
//! item lands (or, for the watchdog, is accounted for); no timing thresholds.

mod load_support;

use std::process::{Command, Stdio};
use std::time::Duration;

use load_support::*;
use twinload::exit::ExitStatus;
use twinload::limits::Limits;
use twinload::mock::faults::FaultConfig;
use twinload::mock::server::{start, MockConfig};

/// Rewrites a generated fleet so its twin ids start with `prefix` (models stay shared), as the
/// disjoint inputs of several Batch tasks would.
fn prefixed(input: &std::path::Path, prefix: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(input).unwrap();
    let text = text
        .replace("\"$dtId\":\"", &format!("\"$dtId\":\"{prefix}"))
        .replace("\"$targetId\":\"", &format!("\"$targetId\":\"{prefix}"));
    let out = input.with_file_name(format!("{prefix}fleet.ndjson"));
    std::fs::write(&out, text).unwrap();
    out
}

#[test]
fn several_loader_processes_on_one_mock_each_land_everything() {
    let dir = tempfile::tempdir().unwrap();
    let base = fleet(dir.path(), 150, 3);
    let mock = mock();
    let loaders = ["a-", "b-", "c-"];
    let inputs: Vec<_> = loaders.iter().map(|p| prefixed(&base, p)).collect();
    let children: Vec<_> = loaders
        .iter()
        .zip(&inputs)
        .map(|(p, input)| {
            let child = Command::new(env!("CARGO_BIN_EXE_twinload"))
                .args(["load", "--endpoint", &mock.url, "--input"])
                .arg(input)
                .arg("--summary")
                .arg(dir.path().join(format!("{p}summary.json")))
                .arg("--dead-letter")
                .arg(dir.path().join(format!("{p}dl.ndjson")))
                // Bounds a broken run; a healthy one takes a few seconds.
                .args(["--deadline-s", "300"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("loader starts");
            (p, child)
        })
        .collect();
    let mut expected_twins = 0;
    let mut expected_rels = 0;
    for ((p, child), input) in children.into_iter().zip(&inputs) {
        let out = child.wait_with_output().expect("loader ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(i32::from(ExitStatus::Ok.code())), "loader {p}: {stderr}");
        let (_, twins, rels) = graph_of(input).counts();
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(format!("{p}summary.json"))).unwrap()).unwrap();
        assert_eq!(summary["items"]["twins"]["landed"], twins as u64, "{p}: {summary}");
        assert_eq!(summary["items"]["relationships"]["landed"], rels as u64, "{p}: {summary}");
        assert!(summary["throttled_wait_s"].is_object(), "{summary}");
        expected_twins += twins;
        expected_rels += rels;
    }
    let (_, twins, rels) = exported(&mock).counts();
    assert_eq!((twins, rels), (expected_twins, expected_rels));
    assert_eq!(stats(&mock)["order_violations_total"], 0);
    mock.stop();
}

#[test]
fn a_mock_at_lower_limits_than_the_loader_believes_still_gets_everything() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 60, 4);
    let expected = graph_of(&input);
    // The mock enforces 2021's 50 creates/s; the loader believes today's 500/s.
    let older = Limits::from_spec("adt-2021").expect("profile");
    let mock = start(MockConfig { limits: Some(older), ..MockConfig::default().without_auth() }).expect("mock starts");
    let summary = load(config_for(&mock, dir.path()), vec![input.display().to_string()]).expect("load runs");
    assert_eq!(summary.exit_code, ExitStatus::Ok, "{}", summary.human());
    assert!(summary.throttled_total > 0, "the mock throttled: {}", summary.human());
    assert_same_graph(&expected, &exported(&mock));
    mock.stop();
}

#[test]
fn sustained_429s_never_cost_an_item_its_attempts_or_the_retry_budget() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 60, 5);
    let expected = graph_of(&input);
    let faults = FaultConfig {
        seed: 7,
        rate_429: 0.3,
        injected_retry_after: Duration::from_millis(20),
        ..FaultConfig::default()
    };
    let mock = start(MockConfig::default().without_auth().with_faults(faults)).expect("mock starts");
    let mut config = config_for(&mock, dir.path());
    // One attempt and no retry budget at all: only throttles come back, and they must not
    // need either.
    config.retry.max_attempts = 1;
    config.retry.budget_min = 0;
    config.retry.budget_share = 0.0;
    let summary = load(config, vec![input.display().to_string()]).expect("load runs");
    assert_eq!(summary.exit_code, ExitStatus::Ok, "{}", summary.human());
    assert!(summary.throttled_total > 10, "{}", summary.human());
    assert!(summary.throttled_wait_s.get("create_delete").copied().unwrap_or(0.0) > 0.0, "{}", summary.human());
    assert_same_graph(&expected, &exported(&mock));
    mock.stop();
}

#[test]
fn with_10_percent_5xx_and_2_percent_drops_a_small_retry_budget_slows_the_load_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 60, 6);
    let expected = graph_of(&input);
    let faults = FaultConfig { seed: 11, rate_5xx: 0.10, drop_rate: 0.02, ..FaultConfig::default() };
    let mock = start(MockConfig::default().without_auth().with_faults(faults)).expect("mock starts");
    let mut config = config_for(&mock, dir.path());
    // A budget that the failures outrun: retries must wait for it, not be dropped.
    config.retry.budget_min = 3;
    config.retry.budget_share = 0.05;
    let summary = load(config, vec![input.display().to_string()]).expect("load runs");
    assert_eq!(summary.exit_code, ExitStatus::Ok, "{}", summary.human());
    assert!(
        summary.retries_by_reason.get(&twinload::run::supervisor::RetryReason::Transient).copied().unwrap_or(0) > 3,
        "{}",
        summary.human()
    );
    assert_same_graph(&expected, &exported(&mock));
    assert_eq!(stats(&mock)["order_violations_total"], 0);
    mock.stop();
}

#[test]
fn a_writer_whose_request_panics_is_replaced_and_its_item_lands() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 80, 8);
    let expected = graph_of(&input);
    let mock = mock();
    let mut config = config_for(&mock, dir.path());
    config.writers = 4;
    config.chaos.writer_panic_every = Some(15);
    let summary = load(config, vec![input.display().to_string()]).expect("load runs");
    assert_eq!(summary.exit_code, ExitStatus::Ok, "{}", summary.human());
    assert!(summary.writer_restarts > 0, "{}", summary.human());
    assert_same_graph(&expected, &exported(&mock));
    mock.stop();
}

#[test]
fn the_no_progress_watchdog_stops_a_run_that_lands_nothing_and_accounts_for_every_item() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 40, 9);
    let (_, twins, rels) = graph_of(&input).counts();
    // Relationship writes never see the new twins: after the twins land, nothing does.
    let faults = FaultConfig { new_twin_invisible_for: Duration::from_secs(3600), ..FaultConfig::default() };
    let mock = start(MockConfig::default().without_auth().with_faults(faults)).expect("mock starts");
    let mut config = config_for(&mock, dir.path());
    config.retry.target_grace = Duration::from_secs(3600);
    config.retry.max_attempts = 1000;
    config.no_progress_timeout = Duration::from_secs(2);
    let dead_letter_path = config.dead_letter_path.clone();
    let summary = load(config, vec![input.display().to_string()]).expect("load runs");
    assert_eq!(summary.exit_code, ExitStatus::StoppedEarly, "{}", summary.human());
    assert!(summary.stop_reason.as_deref().unwrap_or_default().contains("no-progress"), "{}", summary.human());
    assert_eq!(summary.items["twins"].landed, twins as u64);
    let r = summary.items["relationships"];
    assert_eq!(r.landed, 0, "{}", summary.human());
    assert_eq!(r.not_attempted + r.dead_lettered, rels as u64, "{}", summary.human());
    assert!(r.not_attempted > 0, "{}", summary.human());
    let letters = dead_letters(&dead_letter_path);
    assert_eq!(letters.len() as u64, r.not_attempted + r.dead_lettered);
    mock.stop();
}

#[test]
fn a_412_counts_as_landed_only_when_an_earlier_attempt_of_ours_may_have_written() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 30, 10);
    let (_, twins, rels) = graph_of(&input).counts();
    let inputs = vec![input.display().to_string()];
    let create_only = |mock: &twinload::mock::server::MockHandle| {
        let mut config = config_for(mock, dir.path());
        config.mode = twinload::config::WriteMode::CreateOnly;
        config
    };

    // Dropped connections (some after the mock wrote): the retry's 412 is our own write.
    let drops = FaultConfig { seed: 3, drop_rate: 0.15, ..FaultConfig::default() };
    let mock = start(MockConfig::default().without_auth().with_faults(drops)).expect("mock starts");
    let first = load(create_only(&mock), inputs.clone()).expect("load runs");
    assert_eq!(first.exit_code, ExitStatus::Ok, "{}", first.human());
    assert!(first.requests_by_status.contains_key("connection"), "{}", first.human());
    assert_eq!(first.items["twins"].landed, twins as u64, "{}", first.human());
    assert_eq!(first.items["relationships"].landed, rels as u64, "{}", first.human());
    mock.stop();

    // Throttled first attempts wrote nothing: on a re-run, a 412 after them means the item
    // was there before the run.
    let throttles = FaultConfig {
        seed: 4,
        rate_429: 0.3,
        injected_retry_after: Duration::from_millis(20),
        ..FaultConfig::default()
    };
    let mock = start(MockConfig::default().without_auth().with_faults(throttles)).expect("mock starts");
    let first = load(create_only(&mock), inputs.clone()).expect("load runs");
    assert_eq!(first.exit_code, ExitStatus::Ok, "{}", first.human());
    let again = load(create_only(&mock), inputs).expect("re-run runs");
    assert_eq!(again.exit_code, ExitStatus::Ok, "{}", again.human());
    assert!(again.throttled_total > 0, "{}", again.human());
    assert_eq!(again.items["twins"].already_existed, twins as u64, "{}", again.human());
    assert_eq!(again.items["relationships"].already_existed, rels as u64, "{}", again.human());
    assert_eq!(again.items["twins"].landed + again.items["relationships"].landed, 0, "{}", again.human());
    mock.stop();
}
