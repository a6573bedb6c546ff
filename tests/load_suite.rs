//! Every load-test scenario (load-tests/suite/suite.py) at its tiny size, so the scripts cannot
//! rot: each writes its Markdown and JSON with a result row per tool, the report pages it names
//! exist, and nothing is lost where no faults are injected. The peers need the Python SDK and
//! aiohttp ($TWINLOAD_PYTHON, set up by tests/run.sh); without them the test fails saying so.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const SCENARIOS: [&str; 10] = [
    "fleet-10k",
    "fleet-100k",
    "hubs",
    "loaders-1",
    "loaders-2",
    "loaders-4",
    "loaders-8",
    "faults",
    "capacity",
    "peers",
];

#[test]
fn every_load_test_scenario_runs_at_its_tiny_size() {
    let python = std::env::var("TWINLOAD_PYTHON").unwrap_or_else(|_| {
        panic!("TWINLOAD_PYTHON is not set: run tests/run.sh, which makes a venv with the SDK the peers need")
    });
    let check = Command::new(&python).args(["-c", "import aiohttp, azure.digitaltwins.core.aio"]).status().unwrap();
    assert!(check.success(), "{python} lacks aiohttp or azure-digitaltwins-core: run tests/run.sh");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let results = out.path().join("RESULTS.md");
    let status = Command::new("python3")
        .arg(root.join("load-tests/suite/suite.py"))
        .args(["all", "--size", "tiny", "--scale", "2", "--out"])
        .arg(out.path())
        .arg("--results")
        .arg(&results)
        .env("TWINLOAD_BIN", env!("CARGO_BIN_EXE_twinload"))
        .env("TWINLOAD_PYTHON", &python)
        .status()
        .unwrap();
    assert!(status.success(), "the suite failed");
    let text = std::fs::read_to_string(&results).unwrap();
    assert!(text.contains("k = 2"), "the results state the scale");
    for scenario in SCENARIOS {
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join(format!("{scenario}.json"))).unwrap())
                .unwrap();
        assert!(out.path().join(format!("{scenario}.md")).is_file(), "{scenario}.md");
        assert!(text.contains(&format!("### {scenario}")), "RESULTS.md has {scenario}");
        let rows = json["rows"].as_array().unwrap();
        assert!(!rows.is_empty(), "{scenario}: no result");
        for row in rows {
            assert!(row["makespan_s"].as_f64().unwrap() > 0.0, "{scenario}: {row}");
            if scenario != "faults" {
                assert_eq!(row["items_lost"], 0, "{scenario}: {row}");
            }
        }
        for chart in json["charts"].as_array().unwrap() {
            let page = std::fs::read_to_string(out.path().join(chart.as_str().unwrap())).unwrap();
            assert!(page.contains("<polyline"), "{scenario}: {chart} has charts");
        }
    }
    let peers: Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("peers.json")).unwrap()).unwrap();
    assert_eq!(peers["rows"].as_array().unwrap().len(), 3, "twinload and both peers ran");
    let capacity: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("capacity.json")).unwrap()).unwrap();
    assert!(capacity["metrics_on_over_off"].as_f64().is_some_and(|r| r > 0.0));
}
