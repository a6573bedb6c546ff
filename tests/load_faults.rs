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

/// A hostile proxy in front of `mock` that answers what `act` picks and forwards the rest, and
/// a second server (where redirects point) that answers 200 to anything and records it.
fn proxy_and_elsewhere(
    mock: &twinload::mock::server::MockHandle,
    act: impl Fn(&hostile::Seen, &str) -> Option<hostile::Act> + Send + Sync + 'static,
) -> (hostile::Hostile, hostile::Hostile) {
    let elsewhere = hostile::Hostile::start(None, |_, _| hostile::Act::Answer { status: 200, body: "{}".into() });
    let target = elsewhere.url.clone();
    let proxy =
        hostile::Hostile::start(Some(&mock.url), move |seen, _| act(seen, &target).unwrap_or(hostile::Act::Forward));
    (proxy, elsewhere)
}

fn is_write_of_digitaltwins(seen: &hostile::Seen) -> bool {
    seen.method == "PUT" && seen.target.starts_with("/digitaltwins/")
}

#[test]
fn a_redirected_write_is_dead_lettered_as_redirected_and_never_counted_landed() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 40, 31);
    let mock = mock();
    let (proxy, elsewhere) = proxy_and_elsewhere(&mock, |seen, target| {
        is_write_of_digitaltwins(seen)
            .then(|| hostile::Act::Redirect { status: 307, location: format!("{target}{}", seen.target) })
    });
    let mut config = config_for(&mock, dir.path());
    config.endpoint = proxy.url.clone();
    let summary = load(config, vec![input.display().to_string()]).expect("load runs");

    assert_eq!(summary.exit_code, ExitStatus::DeadLetters, "{}", summary.human());
    let held = stats(&mock);
    // What the summary counts as landed is what the instance holds: no twin, no relationship.
    assert_eq!(summary.items["twins"].landed, held["twins"].as_u64().unwrap(), "{}", summary.human());
    assert_eq!(summary.items["twins"].landed, 0);
    assert_eq!(summary.items["relationships"].landed, 0);
    assert!(summary.items["models"].landed > 0, "models were not redirected: {}", summary.human());
    assert!(elsewhere.requests().is_empty(), "the redirect was followed: {:?}", elsewhere.requests());
    let letters = dead_letters(&dir.path().join("dead-letters.ndjson"));
    let twins: Vec<_> = letters.iter().filter(|l| l["kind"] == "twin").collect();
    assert_eq!(twins.len() as u64, summary.items["twins"].dead_lettered);
    assert!(!twins.is_empty());
    for letter in twins {
        assert_eq!(letter["reason_code"], "redirected", "{letter}");
        let reason = letter["reason"].as_str().unwrap();
        assert!(reason.contains(&elsewhere.url) && reason.contains("redirects to"), "{reason}");
    }
    assert_eq!(
        summary.dead_letters_by_reason[&twinload::reason::ReasonCode::Redirected],
        summary.items["twins"].dead_lettered
    );
    mock.stop();
}

#[test]
fn a_302_to_post_models_is_not_followed_as_a_get_and_nothing_lands() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 20, 32);
    let mock = mock();
    let (proxy, elsewhere) = proxy_and_elsewhere(&mock, |seen, target| {
        (seen.method == "POST" && seen.target.starts_with("/models"))
            .then(|| hostile::Act::Redirect { status: 302, location: format!("{target}/models") })
    });
    let mut config = config_for(&mock, dir.path());
    config.endpoint = proxy.url.clone();
    let summary = load(config, vec![input.display().to_string()]).expect("load runs");

    assert_eq!(summary.exit_code, ExitStatus::DeadLetters, "{}", summary.human());
    for kind in ["models", "twins", "relationships"] {
        assert_eq!(summary.items[kind].landed, 0, "{kind}: {}", summary.human());
    }
    assert!(summary.dead_letters_by_reason[&twinload::reason::ReasonCode::Redirected] > 0, "{}", summary.human());
    let held = stats(&mock);
    assert_eq!((held["models"].as_u64(), held["twins"].as_u64()), (Some(0), Some(0)), "{held}");
    assert!(elsewhere.requests().is_empty(), "the POST was followed: {:?}", elsewhere.requests());
    mock.stop();
}

#[test]
fn an_endpoint_that_redirects_at_start_up_is_a_setup_error_naming_the_location() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 5, 33);
    let mock = mock();
    let (proxy, elsewhere) = proxy_and_elsewhere(&mock, |seen, target| {
        Some(hostile::Act::Redirect { status: 307, location: format!("{target}{}", seen.target) })
    });
    let input = input.display().to_string();
    let args =
        ["load", "--endpoint", &proxy.url, "--credential", "none", "--input", &input, "--summary", "summary.json"];
    let run = hostile::run_watched(&args, dir.path(), std::time::Duration::from_secs(120));
    assert_eq!(run.code, Some(4), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("the endpoint redirects to {}", elsewhere.url))
            && run.stderr.contains("is this the instance URL?"),
        "{}",
        run.stderr
    );
    assert!(elsewhere.requests().is_empty());
    assert_eq!(stats(&mock)["twins"], 0);
    mock.stop();
}

#[test]
fn endless_and_gigabyte_answers_to_32_writers_fail_as_transient_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 120, 34);
    let mock = mock();
    // Twin writes alternately get a body without end and a Content-Length of 8 GB.
    let proxy = hostile::Hostile::start(Some(&mock.url), |seen, n| {
        if is_write_of_digitaltwins(seen) && !seen.target.contains("/relationships/") {
            if n % 2 == 0 {
                hostile::Act::EndlessBody
            } else {
                hostile::Act::HugeContentLength
            }
        } else {
            hostile::Act::Forward
        }
    });
    let input = input.display().to_string();
    let cap = 1024 * 1024;
    let args = [
        "load",
        "--endpoint",
        &proxy.url,
        "--credential",
        "none",
        "--input",
        &input,
        "--summary",
        "summary.json",
        "--dead-letter",
        "dead-letters.ndjson",
        "--writers",
        "32",
        "--max-attempts",
        "2",
        "--max-response-bytes",
        &cap.to_string(),
    ];
    let run = hostile::run_watched(&args, dir.path(), std::time::Duration::from_secs(170));
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["items"]["twins"]["landed"], 0, "{summary}");
    assert_eq!(summary["dead_letters_by_reason"]["retries_exhausted"], summary["items"]["twins"]["dead_lettered"]);
    let letters = dead_letters(&dir.path().join("dead-letters.ndjson"));
    let reason = letters.iter().find(|l| l["reason_code"] == "retries_exhausted").unwrap()["reason"].to_string();
    assert!(reason.contains("max_response_bytes"), "{reason}");
    let served = proxy.requests().iter().filter(|s| is_write_of_digitaltwins(s)).count();
    assert!(served >= 64, "the writers met many oversized answers: {served}");
    // 32 writers may each hold one capped answer (1 MiB, twice that while the buffer grows);
    // without the cap, one answer alone would reach the server's 64 MiB streaming budget.
    let bound_kib = 160 * 1024;
    eprintln!("twinload's peak RSS against oversized answers: {} KiB", run.peak_rss_kib);
    assert!(
        run.peak_rss_kib > 0 && run.peak_rss_kib < bound_kib,
        "peak RSS {} KiB (bound {bound_kib} KiB)",
        run.peak_rss_kib
    );
    mock.stop();
}
