//! Crash-safe resume: `twinload load --ledger` killed with SIGKILL at 10 seeded random moments,
//! started again each time, ends with the mock holding exactly the input, and the requests of
//! all the runs together exceed a clean run's by at most 5%: each restart re-sends only what
//! was in flight (plus its setup calls), never what the ledger recorded.
//!
//! One ledger, one writer: a second run given a ledger that a run holds is refused at start
//! (exit 4, naming the holder), the holder completes its ledger, and a killed holder's lock is
//! freed by the OS.

mod load_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use load_support::*;
use rand::{Rng, SeedableRng};
use twinload::mock::server::MockHandle;

const KILLS: usize = 10;
/// A run that is not killed must end within this.
const RUN_BOUND: Duration = Duration::from_secs(180);

fn loader(mock: &MockHandle, input: &Path, dir: &Path) -> Command {
    loader_with(mock, input, &dir.join("ledger.ndjson"), &dir.join("dead.ndjson"))
}

fn loader_with(mock: &MockHandle, input: &Path, ledger: &Path, dead_letters: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twinload"));
    cmd.args(["load", "--endpoint", &mock.url, "--input"])
        .arg(input)
        .arg("--ledger")
        .arg(ledger)
        .arg("--dead-letter")
        .arg(dead_letters)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Runs the loader to its end; returns its exit code.
fn run_to_end(mut cmd: Command) -> i32 {
    wait_to_end(cmd.spawn().expect("loader starts"))
}

/// Waits for a started loader to end; returns its exit code.
fn wait_to_end(mut child: std::process::Child) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        assert!(started.elapsed() < RUN_BOUND, "the loader did not finish within {RUN_BOUND:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn requests_total(mock: &MockHandle) -> u64 {
    stats(mock)["requests_total"].as_u64().expect("requests_total")
}

#[test]
fn a_load_killed_ten_times_resumes_from_its_ledger_to_the_exact_graph() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 1500, 5);
    let expected = graph_of(&input);

    // The clean run, on its own mock.
    let clean_dir = dir.path().join("clean");
    std::fs::create_dir_all(&clean_dir).unwrap();
    let clean_mock = mock();
    assert_eq!(run_to_end(loader(&clean_mock, &input, &clean_dir)), 0);
    assert_same_graph(&expected, &exported(&clean_mock));
    let clean = requests_total(&clean_mock);
    clean_mock.stop();

    // The same load, killed at 10 seeded moments.
    let killed_dir = dir.path().join("killed");
    std::fs::create_dir_all(&killed_dir).unwrap();
    let mock = mock();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(9);
    for kill in 0..KILLS {
        let mut child = loader(&mock, &input, &killed_dir).spawn().expect("loader starts");
        let after = Duration::from_millis(rng.gen_range(300..1200));
        std::thread::sleep(after);
        if child.try_wait().expect("wait").is_some() {
            // It finished before its moment came: the rest of the kills have nothing to hit.
            eprintln!("run {kill} finished before its kill at {after:?}");
            break;
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }
    assert_eq!(run_to_end(loader(&mock, &input, &killed_dir)), 0, "the resumed run completes");
    assert_same_graph(&expected, &exported(&mock));
    let resumed = requests_total(&mock);
    let extra = resumed.saturating_sub(clean) as f64 / clean as f64;
    eprintln!("clean run {clean} requests; killed {KILLS} times and resumed: {resumed} ({:.2}% extra)", extra * 100.0);
    assert!(
        extra <= 0.05,
        "resuming cost {resumed} requests against {clean} for a clean run ({:.2}% extra)",
        extra * 100.0
    );

    // A last run finds everything in the ledger: nothing to write.
    let before = stats(&mock);
    assert_eq!(run_to_end(loader(&mock, &input, &killed_dir)), 0);
    let after = stats(&mock);
    let put = |s: &serde_json::Value| s["requests_by_operation"]["PUT create_delete"].as_u64().unwrap_or(0);
    assert_eq!(put(&after) - put(&before), 0, "a finished load re-run with its ledger writes no twin or relationship");
    mock.stop();
}

/// Waits (bounded) until the run with `pid` holds the ledger: its record is in the lock file.
fn wait_until_held(ledger: &Path, pid: u32) {
    let lock = ledger.with_file_name(format!("{}.lock", ledger.file_name().unwrap().to_string_lossy()));
    let started = Instant::now();
    while !std::fs::read_to_string(&lock).unwrap_or_default().contains(&format!("\"pid\":{pid}")) {
        assert!(started.elapsed() < Duration::from_secs(30), "run {pid} never took the ledger");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_run_on_a_held_ledger_is_refused_naming_the_holder_and_a_killed_holder_frees_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 1500, 5);
    let expected = graph_of(&input);
    let ledger = dir.path().join("ledger.ndjson");
    let mock = mock();

    // The first shard's task holds the ledger while it loads (several seconds at ADT's limits)...
    let first = loader(&mock, &input, dir.path()).spawn().expect("loader starts");
    let holder = first.id();
    wait_until_held(&ledger, holder);
    // ...so the second, given the same ledger by mistake, is refused before it writes anything.
    let said_path = dir.path().join("second.stderr");
    let mut second = loader_with(&mock, &input, &ledger, &dir.path().join("second-dead.ndjson"));
    second.stderr(std::fs::File::create(&said_path).unwrap());
    let code = run_to_end(second);
    let said = std::fs::read_to_string(&said_path).unwrap();
    assert_eq!(code, 4, "{said}");
    assert!(said.contains("held by another run") && said.contains(&format!("pid {holder}")), "{said}");
    assert!(said.contains("since 20") && said.contains("one per shard"), "names when and what to do: {said}");
    // The holder ran on undisturbed: everything landed, and its ledger records every item.
    assert_eq!(wait_to_end(first), 0);
    assert_same_graph(&expected, &exported(&mock));
    let recorded = std::fs::read_to_string(&ledger).unwrap().lines().count();
    assert_eq!(recorded, 1 + expected.models.len() + expected.twins.len() + expected.relationships.len());
    mock.stop();

    // A holder killed midway (SIGKILL: nothing of its own runs) leaves the ledger free.
    let killed_dir = dir.path().join("killed");
    std::fs::create_dir_all(&killed_dir).unwrap();
    let mock = self::mock();
    let mut doomed = loader(&mock, &input, &killed_dir).spawn().expect("loader starts");
    wait_until_held(&killed_dir.join("ledger.ndjson"), doomed.id());
    doomed.kill().expect("SIGKILL");
    doomed.wait().expect("reaped");
    assert_eq!(run_to_end(loader(&mock, &input, &killed_dir)), 0, "the next run takes the ledger and completes");
    assert_same_graph(&expected, &exported(&mock));
    mock.stop();
}
