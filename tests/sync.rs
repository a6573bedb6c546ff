//! `--mode sync`, `--prune` and the ledger against the real mock ADT over loopback: after a
//! 1% change (properties changed, a property renamed by a new model version, relationships
//! retargeted, twins removed) the next sync sends exactly the expected requests, counted by the
//! mock by operation, and the mock's graph equals the new source; untouched twins keep their
//! `$lastUpdateTime`; an unchanged re-run writes nothing; `--max-deletes` stops a prune before
//! any write; the same works without a ledger, from ADT's state read by query. A source named
//! with `--source` keeps its ledger when its input is a new dated export every day.

mod load_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use load_support::*;
use serde_json::{json, Value};
use twinload::config::{LoadConfig, WriteMode};
use twinload::exit::ExitStatus;
use twinload::mock::server::MockHandle;
use twinload::run::messages::StopReason;
use twinload::run::LoadError;
use twinload::sync::settings::MaxDeletes;

const VEHICLE: &str = "dtmi:twinload:fleet:Vehicle;1";
const VEHICLE_2: &str = "dtmi:twinload:fleet:Vehicle;2";

/// An Import-Jobs NDJSON file as its sections' lines.
#[derive(Clone)]
struct Fleet {
    models: Vec<Value>,
    twins: Vec<Value>,
    relationships: Vec<Value>,
}

impl Fleet {
    fn read(path: &Path) -> Fleet {
        let mut fleet = Fleet { models: vec![], twins: vec![], relationships: vec![] };
        let mut section = String::new();
        for line in std::fs::read_to_string(path).unwrap().lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).unwrap();
            if let Some(s) = v.get("Section").and_then(Value::as_str) {
                section = s.to_string();
                continue;
            }
            match section.as_str() {
                "Models" => fleet.models.push(v),
                "Twins" => fleet.twins.push(v),
                "Relationships" => fleet.relationships.push(v),
                _ => {}
            }
        }
        fleet
    }

    fn write(&self, path: &Path) {
        let mut out = String::from("{\"Section\": \"Header\"}\n{\"fileVersion\": \"1.0.0\", \"author\": \"test\", \"organization\": \"twinload\"}\n");
        for (name, lines) in [("Models", &self.models), ("Twins", &self.twins), ("Relationships", &self.relationships)]
        {
            out.push_str(&format!("{{\"Section\": \"{name}\"}}\n"));
            for l in lines {
                out.push_str(&l.to_string());
                out.push('\n');
            }
        }
        std::fs::write(path, out).unwrap();
    }

    fn twin_mut(&mut self, id: &str) -> &mut Value {
        self.twins.iter_mut().find(|t| t["$dtId"] == id).unwrap_or_else(|| panic!("no twin {id}"))
    }

    fn ids_of_model(&self, model: &str) -> Vec<String> {
        self.twins
            .iter()
            .filter(|t| t["$metadata"]["$model"] == model)
            .map(|t| t["$dtId"].as_str().unwrap().to_string())
            .collect()
    }
}

/// What the sync changed and the requests it must take.
struct Change {
    fleet: Fleet,
    patched: Vec<String>,
    replaced: Vec<String>,
    retargeted: usize,
    removed_twins: Vec<String>,
    removed_relationships: usize,
}

/// 1% of the twins change a property; 2 vehicles move to Vehicle;2, whose `fuel` is renamed
/// `fuelType`; 2 relationships get another target; 2 parts leave with their relationships.
fn change(old: &Fleet) -> Change {
    let mut fleet = old.clone();
    let vehicles = fleet.ids_of_model(VEHICLE);
    let patch_count = (fleet.twins.len() / 100).max(2);
    let patched: Vec<String> = vehicles[..patch_count].to_vec();
    for id in &patched {
        fleet.twin_mut(id)["name"] = json!(format!("renamed {id}"));
    }
    let replaced: Vec<String> = vehicles[patch_count..patch_count + 2].to_vec();
    let base = fleet.models.iter().find(|m| m["@id"] == VEHICLE).unwrap().clone();
    fleet.models.push(json!({
        "@id": VEHICLE_2, "@type": "Interface", "@context": base["@context"].clone(),
        "extends": VEHICLE,
        "contents": [{"@type": "Property", "name": "fuelType", "schema": "string"}]
    }));
    for id in &replaced {
        let twin = fleet.twin_mut(id);
        twin["$metadata"]["$model"] = json!(VEHICLE_2);
        let fuel = twin.as_object_mut().unwrap().remove("fuel").unwrap_or(json!("petrol"));
        twin["fuelType"] = fuel;
    }
    // Two parts leave, with every relationship touching them.
    let parts = fleet.ids_of_model("dtmi:twinload:fleet:Part;1");
    let removed_twins: Vec<String> = parts[parts.len() - 2..].to_vec();
    let before = fleet.relationships.len();
    fleet.twins.retain(|t| !removed_twins.iter().any(|r| t["$dtId"] == r.as_str()));
    fleet
        .relationships
        .retain(|r| !removed_twins.iter().any(|p| r["$dtId"] == p.as_str() || r["$targetId"] == p.as_str()));
    let removed_relationships = before - fleet.relationships.len();
    // Two hasPart relationships point at another (remaining) part.
    let mut retargeted = 0;
    let spare = parts[0].clone();
    for r in fleet.relationships.iter_mut() {
        if retargeted < 2 && r["$relationshipName"] == "hasPart" && r["$targetId"] != spare.as_str() {
            r["$targetId"] = json!(spare);
            retargeted += 1;
        }
    }
    Change { fleet, patched, replaced, retargeted, removed_twins, removed_relationships }
}

fn sync_config(mock: &MockHandle, dir: &Path, ledger: Option<&Path>) -> LoadConfig {
    let mut config = config_for(mock, dir);
    config.mode = WriteMode::Sync;
    config.sync.ledger = ledger.map(|l| l.display().to_string());
    config
}

fn op(stats: &Value, name: &str) -> u64 {
    stats["requests_by_operation"][name].as_u64().unwrap_or(0)
}

/// Requests by operation between two stats snapshots.
fn delta(before: &Value, after: &Value, name: &str) -> u64 {
    op(after, name) - op(before, name)
}

fn twin_doc(mock: &MockHandle, id: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let url = format!("{}/digitaltwins/{id}?api-version=2023-10-31", mock.url);
        let client = twinload::http::client_builder(None).unwrap().timeout(HTTP_TIMEOUT).build().unwrap();
        client.get(url).send().await.unwrap().json().await.unwrap()
    })
}

fn input_of(path: &Path) -> Vec<String> {
    vec![path.display().to_string()]
}

/// Writes the original fleet and its changed version under the same input name (`fleet.ndjson`),
/// as a scheduled sync sees one file change between runs.
fn setup(dir: &Path, twins: u64) -> (PathBuf, Fleet, Change) {
    let generated = fleet(dir, twins, 11);
    let old = Fleet::read(&generated);
    let input = dir.join("fleet.ndjson");
    old.write(&input);
    let changed = change(&old);
    (input, old, changed)
}

#[test]
fn a_sync_with_a_ledger_sends_exactly_the_differences_and_prunes_what_left() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _old, change) = setup(dir.path(), 300);
    let ledger = dir.path().join("ledger.ndjson");
    let mock = mock();

    // First sync: everything is new.
    let first = load(sync_config(&mock, dir.path(), Some(&ledger)), input_of(&input)).expect("first sync runs");
    assert_eq!(first.exit_code, ExitStatus::Ok, "{}", first.human());
    assert_same_graph(&graph_of(&input), &exported(&mock));
    let untouched = change.fleet.ids_of_model("dtmi:twinload:fleet:Depot;1")[0].clone();
    let untouched_time = twin_doc(&mock, &untouched)["$metadata"]["$lastUpdateTime"].clone();
    assert!(untouched_time.is_string());
    // The ledger keeps each item's ETag as ADT answered the write.
    let ledger_text = std::fs::read_to_string(&ledger).unwrap();
    let line = ledger_text
        .lines()
        .find(|l| l.contains(&format!("\"id\":\"{untouched}\"")) && l.contains("\"kind\":\"twin\""))
        .expect("the twin is in the ledger");
    let recorded: Value = serde_json::from_str(line).unwrap();
    assert_eq!(recorded["etag"], twin_doc(&mock, &untouched)["$etag"], "{line}");
    let written = ledger_text.lines().filter(|l| !l.contains("\"kind\":\"model\"")).skip(1);
    assert!(written.clone().count() > 0 && written.clone().all(|l| l.contains("\"etag\":")), "{ledger_text}");

    // The source changes; the next sync prunes too.
    change.fleet.write(&input);
    // `twinload plan --ledger` shows what the sync will send, offline, leaving the ledger as it is.
    let ledger_bytes = std::fs::read(&ledger).unwrap();
    let plan = std::process::Command::new(env!("CARGO_BIN_EXE_twinload"))
        .args([
            "plan",
            "--input",
            input.to_str().unwrap(),
            "--ledger",
            ledger.to_str().unwrap(),
            "--endpoint",
            &mock.url,
        ])
        .output()
        .expect("twinload plan runs");
    let text = String::from_utf8_lossy(&plan.stderr);
    let changed = change.patched.len() + change.replaced.len();
    let unchanged = change.fleet.twins.len() - changed;
    assert!(
        text.contains(&format!("twins 0 create / {changed} patch / 0 replace / 0 delete / {unchanged} unchanged")),
        "{text}"
    );
    assert!(text.contains(&format!("relationships 0 create / 0 patch / {} replace", change.retargeted)), "{text}");
    assert_eq!(std::fs::read(&ledger).unwrap(), ledger_bytes, "plan never writes the ledger");
    let mut config = sync_config(&mock, dir.path(), Some(&ledger));
    config.sync.prune = true;
    let before = stats(&mock);
    let second = load(config, input_of(&input)).expect("second sync runs");
    let after = stats(&mock);
    assert_eq!(second.exit_code, ExitStatus::Ok, "{}", second.human());
    assert_same_graph(&graph_of(&input), &exported(&mock));

    let report = second.sync.as_ref().expect("a sync report");
    assert_eq!(report.state_from, "ledger");
    let removed_rels = change.removed_relationships as u64;
    // Twins whose hash changed are read, then patched (or replaced: their model changed).
    assert_eq!(
        delta(&before, &after, "PATCH patch"),
        change.patched.len() as u64,
        "{}",
        after["requests_by_operation"]
    );
    assert_eq!(
        delta(&before, &after, "PUT create_delete"),
        (change.replaced.len() + change.retargeted) as u64,
        "replaces + re-created relationships: {}",
        after["requests_by_operation"]
    );
    assert_eq!(
        delta(&before, &after, "DELETE create_delete"),
        change.retargeted as u64 + removed_rels + change.removed_twins.len() as u64,
        "retargeted + pruned relationships + pruned twins: {}",
        after["requests_by_operation"]
    );
    assert_eq!(delta(&before, &after, "POST models"), 1, "only the new model is uploaded");
    // Reads: one GET per changed twin, and the two listings of each pruned twin.
    assert_eq!(
        delta(&before, &after, "GET read"),
        (change.patched.len() + change.replaced.len() + 2 * change.removed_twins.len()) as u64,
        "{}",
        after["requests_by_operation"]
    );
    assert_eq!(delta(&before, &after, "POST query"), 0, "the ledger spares the query");
    assert_eq!(report.twins.delete, change.removed_twins.len() as u64);
    assert_eq!(report.relationships.recreate, change.retargeted as u64);

    // Untouched twins were not written; the patched one was.
    assert_eq!(twin_doc(&mock, &untouched)["$metadata"]["$lastUpdateTime"], untouched_time);
    assert_eq!(twin_doc(&mock, &change.patched[0])["name"], json!(format!("renamed {}", change.patched[0])));
    let moved = twin_doc(&mock, &change.replaced[0]);
    assert_eq!(moved["$metadata"]["$model"], VEHICLE_2);
    assert!(moved.get("fuel").is_none() && moved.get("fuelType").is_some(), "{moved}");

    // Unchanged: no write at all.
    let before = stats(&mock);
    let mut config = sync_config(&mock, dir.path(), Some(&ledger));
    config.sync.prune = true;
    let third = load(config, input_of(&input)).expect("third sync runs");
    let after = stats(&mock);
    assert_eq!(third.exit_code, ExitStatus::Ok, "{}", third.human());
    assert_eq!(
        writes_between(&before, &after),
        0,
        "an unchanged sync writes nothing: {}",
        after["requests_by_operation"]
    );
    assert_eq!(delta(&before, &after, "GET read"), 0);
    assert_same_graph(&graph_of(&input), &exported(&mock));
    mock.stop();
}

#[test]
fn max_deletes_stops_a_prune_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let (input, old, _) = setup(dir.path(), 200);
    let ledger = dir.path().join("ledger.ndjson");
    let mock = mock();
    let first = load(sync_config(&mock, dir.path(), Some(&ledger)), input_of(&input)).expect("first sync runs");
    assert_eq!(first.exit_code, ExitStatus::Ok, "{}", first.human());

    // Half the parts vanish from the source (a truncated export, say), and one twin changes.
    let mut shrunk = old.clone();
    let parts: BTreeSet<String> = old.ids_of_model("dtmi:twinload:fleet:Part;1").into_iter().step_by(2).collect();
    shrunk.twins.retain(|t| !parts.contains(t["$dtId"].as_str().unwrap()));
    shrunk
        .relationships
        .retain(|r| !parts.contains(r["$dtId"].as_str().unwrap()) && !parts.contains(r["$targetId"].as_str().unwrap()));
    let vehicle = shrunk.ids_of_model(VEHICLE)[0].clone();
    shrunk.twin_mut(&vehicle)["name"] = json!("changed");
    shrunk.write(&input);

    let mut config = sync_config(&mock, dir.path(), Some(&ledger));
    config.sync.prune = true;
    config.sync.max_deletes = MaxDeletes::Count(5);
    let before = stats(&mock);
    let err = load(config, input_of(&input)).expect_err("the prune is refused");
    let after = stats(&mock);
    let LoadError::Setup(message) = err else { panic!("a setup failure (exit 4), got {err:?}") };
    assert!(message.contains("--max-deletes") && message.contains("Nothing was written"), "{message}");
    assert_eq!(writes_between(&before, &after), 0, "nothing written: {}", after["requests_by_operation"]);
    assert_same_graph(&graph_of(&dir.path().join("fleet-200-11.ndjson")), &exported(&mock));

    // With room for them, exactly those deletions happen.
    let mut config = sync_config(&mock, dir.path(), Some(&ledger));
    config.sync.prune = true;
    config.sync.max_deletes = MaxDeletes::Percent(100.0);
    let done = load(config, input_of(&input)).expect("the prune runs");
    assert_eq!(done.exit_code, ExitStatus::Ok, "{}", done.human());
    assert_same_graph(&graph_of(&input), &exported(&mock));
    mock.stop();
}

#[test]
fn without_a_ledger_the_sync_reads_adt_by_query_and_sends_the_same_differences() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _old, change) = setup(dir.path(), 300);
    let mock = mock();
    let first = load(config_for(&mock, dir.path()), input_of(&input)).expect("a plain load runs");
    assert_eq!(first.exit_code, ExitStatus::Ok, "{}", first.human());

    change.fleet.write(&input);
    let mut config = sync_config(&mock, dir.path(), None);
    config.sync.prune = true;
    config.sync.prune_scope = "model:dtmi:twinload:fleet:Part;1".parse().unwrap();
    let before = stats(&mock);
    let second = load(config, input_of(&input)).expect("the sync runs");
    let after = stats(&mock);
    assert_eq!(second.exit_code, ExitStatus::Ok, "{}", second.human());
    assert_same_graph(&graph_of(&input), &exported(&mock));
    assert_eq!(second.sync.as_ref().unwrap().state_from, "query");
    assert!(delta(&before, &after, "POST query") >= 2, "twins and relationships are read by query");
    assert_eq!(delta(&before, &after, "GET read"), 0, "the query state needs no GET");
    assert_eq!(delta(&before, &after, "PATCH patch"), change.patched.len() as u64);
    assert_eq!(delta(&before, &after, "PUT create_delete"), (change.replaced.len() + change.retargeted) as u64);
    assert_eq!(
        delta(&before, &after, "DELETE create_delete"),
        (change.retargeted + change.removed_relationships + change.removed_twins.len()) as u64
    );

    let before = stats(&mock);
    let third = load(sync_config(&mock, dir.path(), None), input_of(&input)).expect("the re-run runs");
    let after = stats(&mock);
    assert_eq!(third.exit_code, ExitStatus::Ok, "{}", third.human());
    assert_eq!(writes_between(&before, &after), 0, "{}", after["requests_by_operation"]);
    mock.stop();
}

/// The query reads carry the run's token like every other request: against a mock that
/// demands one, a sync without a ledger reads ADT's state and sends only the differences.
#[test]
fn the_query_reads_of_a_sync_carry_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _old, change) = setup(dir.path(), 100);
    use twinload::mock::{auth::AuthConfig, server::MockConfig};
    let mock = twinload::mock::server::start(MockConfig {
        auth: AuthConfig::Token("sync-token".into()),
        ..MockConfig::default()
    })
    .expect("mock starts");
    let with_token = |mut config: LoadConfig| {
        config.auth = twinload::config::Auth::BearerToken { token: twinload::config::SecretToken::new("sync-token") };
        config
    };
    let first = load(with_token(config_for(&mock, dir.path())), input_of(&input)).expect("a plain load runs");
    assert_eq!(first.exit_code, ExitStatus::Ok, "{}", first.human());

    change.fleet.write(&input);
    let before = stats(&mock);
    let second = load(with_token(sync_config(&mock, dir.path(), None)), input_of(&input)).expect("the sync runs");
    let after = stats(&mock);
    assert_eq!(second.exit_code, ExitStatus::Ok, "{}", second.human());
    assert_eq!(second.sync.as_ref().unwrap().state_from, "query");
    assert!(delta(&before, &after, "POST query") >= 2, "twins and relationships are read by query");
    assert_eq!(after["requests_by_status"]["401"].as_u64().unwrap_or(0), 0, "no request went without the token");
    assert_eq!(delta(&before, &after, "PATCH patch"), change.patched.len() as u64);
    mock.stop();
}

/// A scheduled sync over a dated export (ADF's date-partitioned folders): each day's file has
/// another name, the source keeps its name, and the ledger follows the source.
#[test]
fn a_dated_export_under_one_source_name_syncs_and_prunes_against_its_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let (_, old, change) = setup(dir.path(), 200);
    let day = |date: &str| {
        let path = dir.path().join("exports").join(date).join("fleet.ndjson");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        path
    };
    let (monday, tuesday) = (day("2026-12-02"), day("2026-12-03"));
    old.write(&monday);
    change.fleet.write(&tuesday);
    let ledger = dir.path().join("fleet.ledger.ndjson");
    let mock = mock();
    let named = |source: Option<&str>| {
        let mut config = sync_config(&mock, dir.path(), Some(&ledger));
        config.sync.source = source.map(str::to_string);
        config
    };

    let first = load(named(Some("fleet")), input_of(&monday)).expect("Monday's sync runs");
    assert_eq!(first.exit_code, ExitStatus::Ok, "{}", first.human());
    assert_same_graph(&graph_of(&monday), &exported(&mock));

    // Without the name, Tuesday's file is another source: refused before any write, saying how
    // to name it.
    let before = stats(&mock);
    let err = load(named(None), input_of(&tuesday)).expect_err("an unnamed source is its inputs");
    let LoadError::Setup(message) = err else { panic!("a setup failure (exit 4), got {err:?}") };
    assert!(message.contains("--source fleet"), "{message}");
    assert_eq!(writes_between(&before, &stats(&mock)), 0);

    // Named, Tuesday's export syncs against Monday's ledger: only the differences, and the
    // prune removes what left the source.
    let mut config = named(Some("fleet"));
    config.sync.prune = true;
    let before = stats(&mock);
    let second = load(config, input_of(&tuesday)).expect("Tuesday's sync runs");
    let after = stats(&mock);
    assert_eq!(second.exit_code, ExitStatus::Ok, "{}", second.human());
    assert_same_graph(&graph_of(&tuesday), &exported(&mock));
    let report = second.sync.as_ref().expect("a sync report");
    assert_eq!(report.state_from, "ledger", "the ledger was kept, not started afresh");
    assert_eq!(delta(&before, &after, "POST query"), 0, "the ledger spares the query");
    assert_eq!(delta(&before, &after, "PATCH patch"), change.patched.len() as u64);
    assert_eq!(
        delta(&before, &after, "DELETE create_delete"),
        (change.retargeted + change.removed_relationships + change.removed_twins.len()) as u64,
        "retargeted + pruned relationships + pruned twins: {}",
        after["requests_by_operation"]
    );
    assert_eq!(report.twins.delete, change.removed_twins.len() as u64);

    // Wednesday's export, unchanged, through the command line's --source: nothing is written.
    let wednesday = day("2026-12-04");
    change.fleet.write(&wednesday);
    let before = stats(&mock);
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_twinload"))
        .args(["load", "--mode", "sync", "--prune", "--source", "fleet", "--endpoint", &mock.url, "--input"])
        .arg(&wednesday)
        .arg("--ledger")
        .arg(&ledger)
        .arg("--dead-letter")
        .arg(dir.path().join("wednesday-dead.ndjson"))
        .output()
        .expect("twinload runs");
    assert_eq!(run.status.code(), Some(0), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(writes_between(&before, &stats(&mock)), 0, "an unchanged export writes nothing");
    mock.stop();
}

/// The test's SIGTERM, without a signal: resolves once the mock has counted `count` requests of
/// `operation` (polled every 20 ms, for at most two minutes).
fn stop_after(mock: &MockHandle, operation: &'static str, count: u64) -> impl std::future::Future<Output = StopReason> {
    let url = format!("{}/_mock/stats", mock.url);
    async move {
        let client = twinload::http::client_builder(None).unwrap().timeout(HTTP_TIMEOUT).build().unwrap();
        for _ in 0..6000 {
            let stats = match client.get(&url).send().await {
                Ok(resp) => resp.json::<Value>().await.unwrap_or_default(),
                Err(_) => Value::Null,
            };
            if op(&stats, operation) >= count {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        StopReason::Signal("SIGTERM")
    }
}

/// A load that stops when `shutdown` resolves.
fn load_until(
    config: LoadConfig,
    inputs: Vec<String>,
    shutdown: impl std::future::Future<Output = StopReason> + 'static,
) -> twinload::run::Summary {
    actix::System::new().block_on(twinload::run::load(config, inputs, shutdown)).expect("the sync runs")
}

/// The dead letters of the run that stopped, for the stop (not attempted, or in flight at it).
fn stopped_letters(path: &Path) -> Vec<Value> {
    let letters = dead_letters(path);
    for l in &letters {
        assert!(
            ["not_attempted", "in_flight_at_stop", "stopped_early"].contains(&l["reason_code"].as_str().unwrap_or("")),
            "a dead letter for another reason than the stop: {l}"
        );
    }
    letters
}

#[test]
fn a_stop_during_the_prune_ends_the_sync_with_every_delete_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let old = Fleet::read(&fleet(dir.path(), 200, 11));
    let input = dir.path().join("fleet.ndjson");
    old.write(&input);
    let ledger = dir.path().join("ledger.ndjson");
    let mock = mock();
    let first = load(sync_config(&mock, dir.path(), Some(&ledger)), input_of(&input)).expect("first sync runs");
    assert_eq!(first.exit_code, ExitStatus::Ok, "{}", first.human());

    // Ten parts leave the source, with every relationship touching them.
    let mut fleet = old.clone();
    let removed: BTreeSet<String> = fleet.ids_of_model("dtmi:twinload:fleet:Part;1").into_iter().take(10).collect();
    let touches = |r: &Value| {
        removed.contains(r["$dtId"].as_str().unwrap()) || removed.contains(r["$targetId"].as_str().unwrap())
    };
    let removed_relationships: BTreeSet<(String, String)> = fleet
        .relationships
        .iter()
        .filter(|r| touches(r))
        .map(|r| (r["$dtId"].as_str().unwrap().to_string(), r["$relationshipId"].as_str().unwrap().to_string()))
        .collect();
    fleet.twins.retain(|t| !removed.contains(t["$dtId"].as_str().unwrap()));
    fleet.relationships.retain(|r| !touches(r));
    fleet.write(&input);

    // Deletes at 2/s: the stop comes after the first one, with the rest still to send.
    let mut config = sync_config(&mock, dir.path(), Some(&ledger));
    config.sync.prune = true;
    config.limits.create_delete_per_s = 2;
    let letters_path = config.dead_letter_path.clone();
    let deletes_before = op(&stats(&mock), "DELETE create_delete");
    let stop = stop_after(&mock, "DELETE create_delete", deletes_before + 1);
    let summary = load_until(config, input_of(&input), stop);
    assert_eq!(summary.exit_code, ExitStatus::StoppedEarly, "{}", summary.human());
    assert!(summary.stop_reason.as_deref().unwrap_or_default().contains("SIGTERM"), "{}", summary.human());

    // Every planned delete was carried out or is a dead letter that says the stop left it.
    let report = summary.sync.as_ref().expect("a sync report");
    let planned = report.twins.delete + report.relationships.delete;
    assert_eq!(planned, (removed.len() + removed_relationships.len()) as u64, "{}", summary.human());
    let held = exported(&mock);
    let letters = stopped_letters(&letters_path);
    let letter_of = |kind: &str, source: Option<&str>, id: &str| {
        let mut found =
            letters.iter().filter(|l| l["kind"] == kind && l["id"] == id && source.is_none_or(|s| l["source"] == s));
        let letter = found.next();
        assert!(found.next().is_none(), "{kind} {id} has two dead letters");
        letter.map(|l| l["reason_code"].as_str().unwrap_or_default().to_string())
    };
    let mut accounted = 0;
    let mut check = |what: String, still_held: bool, letter: Option<String>| {
        match (still_held, letter.as_deref()) {
            (true, None) => panic!("{what} is still in ADT and has no dead letter"),
            // Deleted, yet dead-lettered: only a request in flight at the stop may be both.
            (false, Some(code)) => assert_eq!(code, "in_flight_at_stop", "{what} was deleted"),
            _ => {}
        }
        accounted += 1;
    };
    for id in &removed {
        check(format!("twin {id}"), held.twins.contains_key(id), letter_of("twin", None, id));
    }
    for key in &removed_relationships {
        let letter = letter_of("relationship", Some(&key.0), &key.1);
        check(format!("relationship {key:?}"), held.relationships.contains_key(key), letter);
    }
    assert_eq!(accounted, planned);
    assert!(!letters.is_empty(), "the stop came before the prune ended: {}", summary.human());
    assert!(letters.len() as u64 <= planned, "only the planned deletes are dead-lettered");
    mock.stop();
}

#[test]
fn a_stop_during_the_patches_ends_the_sync_with_every_patch_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let old = Fleet::read(&fleet(dir.path(), 200, 12));
    let input = dir.path().join("fleet.ndjson");
    old.write(&input);
    let mock = mock();
    // No ledger: the sync compares with ADT's state read by query, and patches the differences.
    let first = load(sync_config(&mock, dir.path(), None), input_of(&input)).expect("first sync runs");
    assert_eq!(first.exit_code, ExitStatus::Ok, "{}", first.human());

    let mut fleet = old.clone();
    let patched: Vec<String> = fleet.ids_of_model(VEHICLE).into_iter().take(20).collect();
    for id in &patched {
        fleet.twin_mut(id)["name"] = json!(format!("renamed {id}"));
    }
    fleet.write(&input);

    // Patches at 2/s: the stop comes after the first one, with the rest still to send.
    let mut config = sync_config(&mock, dir.path(), None);
    config.limits.patch_per_s = 2;
    let letters_path = config.dead_letter_path.clone();
    let patches_before = op(&stats(&mock), "PATCH patch");
    let stop = stop_after(&mock, "PATCH patch", patches_before + 1);
    let summary = load_until(config, input_of(&input), stop);
    assert_eq!(summary.exit_code, ExitStatus::StoppedEarly, "{}", summary.human());
    assert!(summary.stop_reason.as_deref().unwrap_or_default().contains("SIGTERM"), "{}", summary.human());

    let letters = stopped_letters(&letters_path);
    assert!(!letters.is_empty(), "the stop came before the patches ended: {}", summary.human());
    assert!(letters.len() <= patched.len(), "only the patches are dead-lettered");
    let mut landed = 0;
    for id in &patched {
        let mut found = letters.iter().filter(|l| l["kind"] == "twin" && l["id"] == id.as_str());
        let letter = found.next().map(|l| l["reason_code"].as_str().unwrap_or_default().to_string());
        assert!(found.next().is_none(), "twin {id} has two dead letters");
        let renamed = twin_doc(&mock, id)["name"] == json!(format!("renamed {id}"));
        match (renamed, letter.as_deref()) {
            (true, None) => landed += 1,
            (false, None) => panic!("twin {id} was not patched and has no dead letter"),
            // Patched, yet dead-lettered: only a request in flight at the stop may be both.
            (true, Some(code)) => assert_eq!(code, "in_flight_at_stop", "twin {id} was patched"),
            (false, Some(_)) => {}
        }
    }
    assert_eq!(summary.items["twins"].landed, landed, "{}", summary.human());
    mock.stop();
}
