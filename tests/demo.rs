//! `twinload demo`, the README's first command, run as a user runs it: the built binary, its
//! exit code and what it prints.

use std::process::Command;
use std::time::{Duration, Instant};

/// The demo's fleet is kept small here (its default is 3,000 twins) so the test stays quick at
/// ADT's 500 creates/s; the code path is the same.
#[test]
fn demo_loads_a_fleet_into_the_embedded_mock_and_verifies_it_exactly() {
    let keep = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_twinload"))
        .args(["demo", "--twins", "1000", "--seed", "3", "--keep"])
        .arg(keep.path())
        .output()
        .expect("twinload demo runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(started.elapsed() < Duration::from_secs(120), "the demo took {:?}", started.elapsed());
    assert_eq!(output.status.code(), Some(0), "demo failed:\n{stderr}");
    assert!(stderr.contains("verified: the mock holds exactly the input graph"), "{stderr}");
    assert!(stderr.contains("no write came out of dependency order"), "{stderr}");

    // The kept summary agrees with what the user was told.
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(keep.path().join("summary.json")).expect("summary.json kept")).unwrap();
    assert_eq!(summary["items"]["twins"]["landed"], 1000, "{summary}");
    assert_eq!(summary["items"]["relationships"]["dead_lettered"], 0, "{summary}");
    assert!(summary["t_star_s"].as_f64().unwrap() > 0.0);
    let dead_letters = std::fs::read_to_string(keep.path().join("dead-letters.ndjson")).unwrap_or_default();
    assert!(dead_letters.trim().is_empty(), "unexpected dead letters: {dead_letters}");
}
