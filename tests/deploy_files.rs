//! The deployment files in config/adf and config/batch parse and fit together: every linked
//! service, dataset, activity and pipeline parameter a file names exists; datasets get the
//! parameters they declare; the Custom activities set only extended properties twinload accepts
//! (twinload's own list, `twinload::adf::activity::accepted_properties`) and, with their
//! expressions given sample values, activity.json parses as twinload reads it; the Batch linked
//! service names the pool that config/batch/pool.json defines (Ubuntu 22.04, a user-assigned
//! identity, autoscale on pending tasks).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use twinload::adf::activity;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// Every JSON file in a folder, by its `name`.
fn by_name(folder: &str) -> BTreeMap<String, Value> {
    let dir = root().join(folder);
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let name = doc["name"].as_str().unwrap_or_else(|| panic!("{} has no name", path.display())).to_string();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        assert_eq!(name, stem, "{}: the file is named after its `name`", path.display());
        out.insert(name, doc);
    }
    assert!(!out.is_empty(), "no files in {}", dir.display());
    out
}

/// Every object under `value` that has `key`, with the value of that key.
fn find_all<'a>(value: &'a Value, key: &str, out: &mut Vec<(&'a Value, &'a Value)>) {
    match value {
        Value::Object(map) => {
            if let Some(v) = map.get(key) {
                out.push((value, v));
            }
            for v in map.values() {
                find_all(v, key, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| find_all(v, key, out)),
        _ => {}
    }
}

/// Every string under `value`.
fn strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// Every activity of a pipeline, ForEach bodies included.
fn activities(list: &Value, out: &mut Vec<Value>) {
    for a in list.as_array().expect("activities is an array") {
        out.push(a.clone());
        if let Some(inner) = a.pointer("/typeProperties/activities") {
            activities(inner, out);
        }
    }
}

/// `@pipeline().parameters.<name>` references in an expression.
fn parameter_refs(text: &str) -> Vec<String> {
    let marker = "pipeline().parameters.";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        rest = &rest[at + marker.len()..];
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        out.push(rest[..end].to_string());
    }
    out
}

fn reference_names(doc: &Value, kind: &str) -> BTreeSet<String> {
    let mut refs = Vec::new();
    find_all(doc, "referenceName", &mut refs);
    refs.into_iter()
        .filter(|(obj, _)| obj["type"] == kind)
        .map(|(_, name)| name.as_str().expect("referenceName is a string").to_string())
        .collect()
}

#[test]
fn linked_services_and_datasets_reference_what_exists() {
    let linked = by_name("adf/linkedService");
    let datasets = by_name("adf/dataset");
    for (name, doc) in linked.iter().chain(datasets.iter()) {
        for r in reference_names(doc, "LinkedServiceReference") {
            assert!(
                linked.contains_key(&r),
                "{name} references linked service {r}, which is not in config/adf/linkedService"
            );
        }
    }
    // The storage connection string is a Key Vault reference, resolved by ADF.
    let storage = &linked["BatchStorage"]["properties"]["typeProperties"]["connectionString"];
    assert_eq!(storage["type"], "AzureKeyVaultSecret");
    let vault = storage["store"]["referenceName"].as_str().unwrap();
    assert_eq!(linked[vault]["properties"]["type"], "AzureKeyVault");
    // The Batch linked service runs on the pool config/batch/pool.json defines.
    let pool: Value = serde_json::from_slice(&std::fs::read(root().join("batch/pool.json")).unwrap()).unwrap();
    assert_eq!(linked["AzureBatch"]["properties"]["typeProperties"]["poolName"], pool["name"]);
}

#[test]
fn the_pool_is_ubuntu_22_04_with_a_user_assigned_identity_and_autoscale_on_pending_tasks() {
    let pool: Value = serde_json::from_slice(&std::fs::read(root().join("batch/pool.json")).unwrap()).unwrap();
    let vm = &pool["properties"]["deploymentConfiguration"]["virtualMachineConfiguration"];
    assert_eq!(vm["imageReference"]["offer"], "0001-com-ubuntu-server-jammy");
    assert_eq!(vm["imageReference"]["sku"], "22_04-lts");
    assert_eq!(vm["nodeAgentSkuId"], "batch.node.ubuntu 22.04");
    assert_eq!(pool["identity"]["type"], "UserAssigned");
    assert_eq!(pool["identity"]["userAssignedIdentities"].as_object().map(|m| m.len()), Some(1));
    let formula = pool["properties"]["scaleSettings"]["autoScale"]["formula"].as_str().unwrap();
    assert!(formula.contains("$PendingTasks") && formula.contains("$TargetDedicatedNodes"), "{formula}");
}

#[test]
fn pipelines_reference_existing_things_and_set_only_properties_twinload_accepts() {
    let linked = by_name("adf/linkedService");
    let datasets = by_name("adf/dataset");
    let pipelines = by_name("adf/pipeline");
    let accepted = activity::accepted_properties();
    let mut customs_seen = 0;
    let mut kinds = BTreeSet::new();
    for (name, doc) in &pipelines {
        let props = &doc["properties"];
        let params =
            props["parameters"].as_object().map(|m| m.keys().cloned().collect::<BTreeSet<_>>()).unwrap_or_default();
        for r in reference_names(doc, "LinkedServiceReference") {
            assert!(linked.contains_key(&r), "{name}: linked service {r} does not exist");
        }
        // Datasets exist and get exactly the parameters they declare (those without a default
        // are required).
        let mut refs = Vec::new();
        find_all(doc, "referenceName", &mut refs);
        for (obj, r) in refs.iter().filter(|(obj, _)| obj["type"] == "DatasetReference") {
            let r = r.as_str().unwrap();
            let dataset = datasets.get(r).unwrap_or_else(|| panic!("{name}: dataset {r} does not exist"));
            let declared = dataset["properties"]["parameters"].as_object().cloned().unwrap_or_default();
            let given = obj["parameters"].as_object().cloned().unwrap_or_default();
            for k in given.keys() {
                assert!(declared.contains_key(k), "{name}: dataset {r} has no parameter {k}");
            }
            for (k, spec) in &declared {
                assert!(given.contains_key(k) || spec.get("defaultValue").is_some(), "{name}: dataset {r} needs {k}");
            }
        }
        // Every parameter an expression names is declared.
        let mut texts = Vec::new();
        strings(props, &mut texts);
        for t in &texts {
            for p in parameter_refs(t) {
                assert!(params.contains(&p), "{name}: `{t}` names parameter {p}, which the pipeline does not declare");
            }
        }
        let mut all = Vec::new();
        activities(&props["activities"], &mut all);
        let activity_names: BTreeSet<String> = all.iter().map(|a| a["name"].as_str().unwrap().to_string()).collect();
        for a in &all {
            kinds.insert(a["type"].as_str().unwrap().to_string());
            for dep in a["dependsOn"].as_array().into_iter().flatten() {
                let d = dep["activity"].as_str().unwrap();
                assert!(activity_names.contains(d), "{name}: {} depends on {d}, which does not exist", a["name"]);
            }
            if a["type"] == "ForEach" {
                let batch = a["typeProperties"]["batchCount"].as_u64().expect("ForEach sets batchCount");
                assert!((1..=50).contains(&batch), "ADF allows batchCount 1..=50");
                assert_eq!(a["typeProperties"]["isSequential"], false);
            }
            if a["type"] != "Custom" {
                continue;
            }
            customs_seen += 1;
            let tp = &a["typeProperties"];
            assert!(tp["command"].as_str().unwrap().contains("twinload load"), "{name}: {}", tp["command"]);
            let ext = tp["extendedProperties"].as_object().expect("extendedProperties");
            for key in ext.keys() {
                assert!(
                    accepted.contains(key),
                    "{name}/{}: twinload does not accept extended property {key}",
                    a["name"]
                );
            }
            // As ADF would write it after evaluating the expressions, twinload reads it.
            let evaluated: serde_json::Map<String, Value> =
                ext.iter().map(|(k, v)| (k.clone(), sample_value(k, v))).collect();
            let activity_json =
                json!({"name": a["name"], "type": "Custom", "typeProperties": {"extendedProperties": evaluated}});
            let settings = activity::parse(activity_json.to_string().as_bytes(), "activity.json", Path::new("/wd"))
                .unwrap_or_else(|e| panic!("{name}/{}: {e}", a["name"]));
            assert!(!settings.inputs.is_empty(), "{name}/{}: no input", a["name"]);
            twinload::config::FileConfig::from_value(settings.config, "activity.json").unwrap();
        }
    }
    assert!(kinds.contains("GetMetadata") && kinds.contains("ForEach"), "{kinds:?}");
    assert!(customs_seen >= 5, "per-file, sharded and phased pipelines: {customs_seen} Custom activities");
    for name in ["LoadTwins", "LoadTwinsSharded", "LoadTwinsPhased"] {
        assert!(pipelines.contains_key(name), "{name}");
    }
}

/// What an expression evaluates to, for the extended property it sets.
fn sample_value(key: &str, value: &Value) -> Value {
    match value.as_str() {
        Some(s) if s.starts_with('@') => Value::String(
            match key {
                "endpoint" => "https://x.api.wcus.digitaltwins.azure.net",
                "input" => "https://acct.blob.core.windows.net/inputfiles/org1",
                "rateShare" => "0.25",
                "shard" => "1/4",
                "twinWaitS" => "300",
                "archive" => "",
                _ => "x",
            }
            .to_string(),
        ),
        _ => value.clone(),
    }
}
