//! The loader under trouble, against the real mock over loopback: injected 429s, 5xx and
//! dropped connections lose nothing and never push the request rate of a class over its configured rate; a writer
//! actor that dies mid-request is restarted and its item still lands.

mod load_support;

use load_support::*;
use twinload::exit::ExitStatus;
use twinload::limits::{LimitClass, Limits};
use twinload::mock::faults::FaultConfig;
use twinload::mock::server::{start, MockConfig};

/// How far arrival at the mock may lag sending by the loader, in seconds of the rate.
const ARRIVAL_JITTER_S: f64 = 0.01;

#[test]
fn with_429_5xx_and_dropped_connections_nothing_is_lost_and_no_class_exceeds_its_rate() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 400, 21);
    let expected = graph_of(&input);
    let faults = FaultConfig {
        seed: 42,
        rate_429: 0.03,
        rate_5xx: 0.02,
        drop_rate: 0.01,
        injected_retry_after: std::time::Duration::from_millis(200),
        ..FaultConfig::default()
    };
    let limits = Limits::adt_default();
    let mock = start(MockConfig::default().without_auth().with_faults(faults)).expect("mock starts");
    let config = config_for(&mock, dir.path());
    let burst_seconds = config.adaptive.burst_seconds;
    let summary = load(config, vec![input.display().to_string()]).expect("load runs");
    assert_eq!(summary.exit_code, ExitStatus::Ok, "{}", summary.human());
    assert!(summary.throttled_total > 0 && summary.retries_total > 0, "faults were injected: {}", summary.human());
    assert!(summary.requests_by_status.contains_key("connection"), "connections were dropped: {}", summary.human());
    assert_same_graph(&expected, &exported(&mock));

    let stats = stats(&mock);
    assert_eq!(stats["order_violations_total"], 0);
    // Every completed one-second window the mock counted: at most the configured rate, plus
    // the loader's burst (burst_seconds of the rate), which a window boundary can catch whole,
    // plus 10 ms of the rate for arrival jitter: the loader meters when it sends, the mock
    // counts when a request arrives, and loopback scheduling can carry a request sent at the
    // end of one second into the next (a standalone run once counted 526 against 525).
    let windows = stats["requests_per_second_by_class"].as_array().expect("per-second windows");
    assert!(!windows.is_empty());
    for class in [LimitClass::CreateDelete, LimitClass::Models, LimitClass::Read] {
        let rate = f64::from(limits.rate_of(class));
        let allowed = (rate * (1.0 + burst_seconds + ARRIVAL_JITTER_S)).ceil() as u64;
        for w in windows {
            let n = w[class.as_str()].as_u64().unwrap_or(0);
            assert!(n <= allowed, "{} requests of {class} in one second, configured {rate}/s: {w}", n);
        }
    }
    mock.stop();
}

#[test]
fn a_writer_that_dies_mid_request_is_restarted_and_its_item_still_lands() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 300, 9);
    let expected = graph_of(&input);
    let mock = mock();
    let mut config = config_for(&mock, dir.path());
    config.writers = 4;
    config.chaos.writer_crash_every = Some(25);
    let summary = load(config, vec![input.display().to_string()]).expect("load runs");
    assert_eq!(summary.exit_code, ExitStatus::Ok, "{}", summary.human());
    assert!(summary.writer_restarts > 0, "{}", summary.human());
    assert_same_graph(&expected, &exported(&mock));
    assert_eq!(stats(&mock)["order_violations_total"], 0);
    mock.stop();
}

#[test]
fn relationships_to_twins_adt_does_not_see_yet_are_retried_until_they_land() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 200, 17);
    let expected = graph_of(&input);
    // ADT's eventual consistency: a new twin is invisible to relationship writes for a while.
    let faults =
        FaultConfig { new_twin_invisible_for: std::time::Duration::from_millis(700), ..FaultConfig::default() };
    let mock = start(MockConfig::default().without_auth().with_faults(faults)).expect("mock starts");
    let summary = load(config_for(&mock, dir.path()), vec![input.display().to_string()]).expect("load runs");
    assert_eq!(summary.exit_code, ExitStatus::Ok, "{}", summary.human());
    assert!(
        summary.retries_by_reason.get(&twinload::run::supervisor::RetryReason::TwinNotVisible).copied().unwrap_or(0)
            > 0,
        "{}",
        summary.human()
    );
    assert_same_graph(&expected, &exported(&mock));
    assert_eq!(stats(&mock)["order_violations_total"], 0);
    mock.stop();
}
