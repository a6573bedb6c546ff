//! A two-minute soak: one `twinload load --ledger` process against the mock ADT at ADT's default
//! limits with every fault on (429s, 5xx, dropped connections, latency and its spikes, new twins
//! invisible for a while). Nothing may be lost, and the loader's memory must level off once it
//! is warm: the resident set of the last third of the run stays within a margin of the middle
//! third's (bodies wait in a temporary file, not in memory).

mod load_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use load_support::{assert_same_graph, exported, fleet, graph_of};
use twinload::mock::faults::FaultConfig;
use twinload::mock::server::{start, MockConfig};

/// 18,000 twins and 36,000 relationships: about two minutes at 500 creates/s with the faults.
const TWINS: u64 = 18_000;
/// Bounds the run: a soak that has not ended by then fails.
const LIMIT: Duration = Duration::from_secs(600);
/// How often the loader's resident set is read.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The resident set of a process in KiB (`VmRSS` of /proc/<pid>/status), if it still runs.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(target_os = "linux")]
#[test]
fn two_minutes_with_every_fault_lose_nothing_and_memory_levels_off() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), TWINS, 5);
    let faults = FaultConfig {
        seed: 9,
        rate_429: 0.10,
        rate_5xx: 0.02,
        drop_rate: 0.01,
        latency: Duration::from_millis(2),
        latency_spike: Duration::from_millis(300),
        latency_spike_rate: 0.01,
        new_twin_invisible_for: Duration::from_millis(500),
        injected_retry_after: Duration::from_millis(500),
        ..FaultConfig::default()
    };
    let mock = start(MockConfig::default().without_auth().with_faults(faults)).expect("mock starts");
    let mut child = Command::new(env!("CARGO_BIN_EXE_twinload"))
        .args(["load", "--endpoint", &mock.url, "--input"])
        .arg(&input)
        .arg("--ledger")
        .arg(dir.path().join("ledger.ndjson"))
        .arg("--dead-letter")
        .arg(dir.path().join("dead.ndjson"))
        .arg("--summary")
        .arg(dir.path().join("summary.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("twinload starts");
    let started = Instant::now();
    let mut samples = Vec::new();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("the soak did not end within {LIMIT:?}");
        }
        if let Some(kib) = rss_kib(child.id()) {
            samples.push(kib);
        }
        std::thread::sleep(SAMPLE_EVERY);
    };
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(status.code(), Some(0), "{summary}");
    assert!(summary["throttled_total"].as_u64().unwrap() > 0 && summary["retries_total"].as_u64().unwrap() > 0);
    assert_same_graph(&graph_of(&input), &exported(&mock));

    assert!(samples.len() >= 30, "a soak of at least 30 s: {} samples", samples.len());
    let third = samples.len() / 3;
    let middle = samples[third..2 * third].iter().max().copied().unwrap_or(0);
    let last = samples[2 * third..].iter().max().copied().unwrap_or(0);
    // Flat: the last third may not grow past the middle third by more than a quarter (and a
    // few MiB of allocator slack).
    assert!(last <= middle + middle / 4 + 8 * 1024, "RSS grew: middle third {middle} KiB, last third {last} KiB");
}
