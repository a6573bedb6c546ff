//! The deployment files fit together. config/adf and config/batch parse: every linked service,
//! credential, dataset, activity and pipeline parameter a file names exists; datasets get the
//! parameters they declare; the Custom activities set only extended properties twinload accepts
//! (twinload's own list, `twinload::adf::activity::accepted_properties`) and, with their
//! expressions evaluated for sample parameters, activity.json parses as twinload reads it, each
//! task with a ledger of its own; the Batch linked service signs in with a managed identity and
//! names the pool that config/batch/pool.json defines (Ubuntu 22.04, a user-assigned identity,
//! autoscale on pending tasks). config/arm/twinload.json is what config/arm/generate.py makes of
//! them, and every parameter, variable and resource it references resolves. The GitHub workflow
//! runs the README's test command and deploy command and the project's own scripts.

mod adf_support;
mod azure_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use adf_support::arm::{type_of, Deployment, EXPECTED_TO_EXIST};
use adf_support::expression::{evaluate, Scope};
use adf_support::factory::{activities, by_name, config_dir};
use serde_json::{json, Map, Value};
use twinload::adf::activity;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
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
    // The Batch account and the vault are reached with the user-assigned managed identity of a
    // factory credential, never with an account key.
    let credentials = by_name("adf/credential");
    for (name, doc) in &linked {
        for r in reference_names(doc, "CredentialReference") {
            let credential = credentials.get(&r).unwrap_or_else(|| panic!("{name}: credential {r} does not exist"));
            assert_eq!(credential["properties"]["type"], "ManagedIdentity", "{r}");
            let id = credential["properties"]["typeProperties"]["resourceId"].as_str().unwrap();
            assert!(id.contains("/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"), "{id}");
        }
    }
    for name in ["AzureBatch", "KeyVault"] {
        let type_properties = &linked[name]["properties"]["typeProperties"];
        assert_eq!(type_properties["credential"]["type"], "CredentialReference", "{name}");
        assert!(type_properties.get("accessKey").is_none(), "{name}: no access key");
    }
    // The storage connection string is a Key Vault reference, resolved by ADF.
    let storage = &linked["BatchStorage"]["properties"]["typeProperties"]["connectionString"];
    assert_eq!(storage["type"], "AzureKeyVaultSecret");
    let vault = storage["store"]["referenceName"].as_str().unwrap();
    assert_eq!(linked[vault]["properties"]["type"], "AzureKeyVault");
    // The Batch linked service runs on the pool config/batch/pool.json defines.
    let pool: Value = serde_json::from_slice(&std::fs::read(config_dir().join("batch/pool.json")).unwrap()).unwrap();
    assert_eq!(linked["AzureBatch"]["properties"]["typeProperties"]["poolName"], pool["name"]);
}

#[test]
fn the_pool_is_ubuntu_22_04_with_a_user_assigned_identity_and_autoscale_on_pending_tasks() {
    let pool: Value = serde_json::from_slice(&std::fs::read(config_dir().join("batch/pool.json")).unwrap()).unwrap();
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
            assert_eq!(
                tp["command"], "/bin/sh run-twinload.sh load",
                "{name}: the command starts the package's script (config/batch/pack.sh)"
            );
            for key in tp["extendedProperties"].as_object().expect("extendedProperties").keys() {
                assert!(
                    accepted.contains(key),
                    "{name}/{}: twinload does not accept extended property {key}",
                    a["name"]
                );
            }
        }
        // As ADF writes it after evaluating the expressions, for every ForEach item, twinload
        // reads it; each task keeps a ledger of its own in Blob Storage and archives.
        let mut ledgers = BTreeSet::new();
        for (activity_name, type_properties) in evaluated_customs(doc, &json!({})) {
            let config = settings_of(&activity_name, type_properties, name);
            let ledger = config["ledger"].as_str().unwrap_or_default().to_string();
            assert!(ledger.starts_with(SAMPLE_BLOB_ENDPOINT), "{name}/{activity_name}: ledger {ledger}");
            assert!(ledgers.insert(ledger.clone()), "{name}/{activity_name}: {ledger} is another task's ledger");
            let archive = config["archive"].as_str().unwrap_or_default();
            assert!(archive.starts_with(SAMPLE_BLOB_ENDPOINT), "{name}/{activity_name}: archive {archive}");
        }
        // Empty container parameters turn the ledger and the archive off.
        let off = json!({"ledgerContainer": "", "archiveContainer": ""});
        for (activity_name, type_properties) in evaluated_customs(doc, &off) {
            let config = settings_of(&activity_name, type_properties, name);
            assert!(
                config.get("ledger").is_none() && config.get("archive").is_none(),
                "{name}/{activity_name}: {config}"
            );
        }
    }
    assert!(kinds.contains("GetMetadata") && kinds.contains("ForEach"), "{kinds:?}");
    assert!(customs_seen >= 5, "per-file, sharded and phased pipelines: {customs_seen} Custom activities");
    for name in ["LoadTwins", "LoadTwinsSharded", "LoadTwinsPhased"] {
        assert!(pipelines.contains_key(name), "{name}");
    }
}

const SAMPLE_BLOB_ENDPOINT: &str = "https://acct.blob.core.windows.net/";

/// The settings twinload reads from the activity.json ADF writes for these typeProperties.
fn settings_of(activity_name: &str, type_properties: Value, pipeline: &str) -> Value {
    let activity_json = json!({"name": activity_name, "type": "Custom", "typeProperties": type_properties});
    let settings = activity::parse(activity_json.to_string().as_bytes(), "activity.json", Path::new("/wd"))
        .unwrap_or_else(|e| panic!("{pipeline}/{activity_name}: {e}"));
    assert!(!settings.inputs.is_empty(), "{pipeline}/{activity_name}: no input");
    let config = settings.config.clone();
    twinload::config::FileConfig::from_value(settings.config, "activity.json").unwrap();
    config
}

/// Each Custom activity's typeProperties as ADF evaluates them for sample parameters (and
/// `arguments` over them), once per item of its ForEach (Get Metadata listing two blobs).
fn evaluated_customs(pipeline: &Value, arguments: &Value) -> Vec<(String, Value)> {
    let mut parameters = Map::new();
    for (k, spec) in pipeline["properties"]["parameters"].as_object().into_iter().flatten() {
        parameters.insert(k.clone(), spec["defaultValue"].clone());
    }
    let samples = json!({
        "adtEndpoint": "https://x.api.wcus.digitaltwins.azure.net",
        "blobEndpoint": SAMPLE_BLOB_ENDPOINT,
        "identityClientId": "5b0f2d3e-0000-4000-8000-000000000001",
        "inputFolder": "exports/2026-12-02",
    });
    parameters.extend(samples.as_object().unwrap().clone());
    parameters.extend(arguments.as_object().unwrap().clone());
    let mut outputs = Map::new();
    let mut all = Vec::new();
    activities(&pipeline["properties"]["activities"], &mut all);
    for a in all.iter().filter(|a| a["type"] == "GetMetadata") {
        let listed =
            json!({"exists": true, "childItems": [{"name": "org1", "type": "File"}, {"name": "org2", "type": "File"}]});
        outputs.insert(a["name"].as_str().unwrap().to_string(), listed);
    }
    let scope = Scope {
        parameters: &parameters,
        pipeline_name: pipeline["name"].as_str().unwrap(),
        run_id: "9a1c7b52-0000-4000-8000-000000000042",
        item: None,
        outputs: &outputs,
        dataset: None,
    };
    let mut out = Vec::new();
    evaluate_customs(&pipeline["properties"]["activities"], &scope, &mut out);
    out
}

fn evaluate_customs(list: &Value, scope: &Scope, out: &mut Vec<(String, Value)>) {
    for a in list.as_array().unwrap() {
        match a["type"].as_str().unwrap() {
            "ForEach" => {
                let items = evaluate(&a["typeProperties"]["items"], scope);
                for item in items.as_array().expect("ForEach items are an array") {
                    let inner = Scope { item: Some(item), ..*scope };
                    evaluate_customs(&a["typeProperties"]["activities"], &inner, out);
                }
            }
            "Custom" => out.push((a["name"].as_str().unwrap().to_string(), evaluate(&a["typeProperties"], scope))),
            _ => {}
        }
    }
}

fn arm_template() -> Value {
    read_json(&config_dir().join("arm/twinload.json"))
}

/// A placeholder of config/adf and config/batch/pool.json (`<storage-account>`), which the
/// ARM template replaces with an expression.
fn has_placeholder(text: &str) -> bool {
    let mut rest = text;
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        let end = rest.find(|c: char| !(c.is_ascii_lowercase() || c == '-')).unwrap_or(rest.len());
        if end > 0 && rest[end..].starts_with('>') {
            return true;
        }
    }
    false
}

/// `arm` says what `config` says, with each placeholder an ARM expression and each literal `[`
/// escaped as `[[`.
fn assert_same_apart_from_placeholders(config: &Value, arm: &Value, at: &str) {
    let is_expression = |s: &str| s.starts_with('[') && !s.starts_with("[[");
    match (config, arm) {
        (Value::String(c), Value::String(a)) if has_placeholder(c) => {
            assert!(is_expression(a), "{at}: {c:?} becomes an expression, not {a:?}")
        }
        (Value::String(c), Value::String(a)) => {
            let unescaped = a.strip_prefix('[').filter(|rest| rest.starts_with('[')).unwrap_or(a);
            assert_eq!(c, unescaped, "{at}");
        }
        (Value::Object(c), Value::Object(a)) => {
            assert_eq!(c.len(), a.len(), "{at}: keys {:?} vs {:?}", c.keys(), a.keys());
            for (k, v) in c {
                if has_placeholder(k) {
                    let expressions: Vec<&Value> =
                        a.iter().filter(|(ak, _)| is_expression(ak)).map(|(_, v)| v).collect();
                    assert_eq!(expressions.len(), 1, "{at}: the key {k} becomes one expression");
                    assert_same_apart_from_placeholders(v, expressions[0], &format!("{at}.{k}"));
                } else {
                    let av = a.get(k).unwrap_or_else(|| panic!("{at}: {k} is missing from the template"));
                    assert_same_apart_from_placeholders(v, av, &format!("{at}.{k}"));
                }
            }
        }
        (Value::Array(c), Value::Array(a)) => {
            assert_eq!(c.len(), a.len(), "{at}");
            for (i, (cv, av)) in c.iter().zip(a).enumerate() {
                assert_same_apart_from_placeholders(cv, av, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(config, arm, "{at}"),
    }
}

#[test]
fn the_arm_template_is_what_generate_py_makes_of_config_adf_and_the_pool() {
    // The committed template is the script's output for the committed files.
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("twinload.json");
    let out = std::process::Command::new("python3")
        .arg(config_dir().join("arm/generate.py"))
        .arg(&fresh)
        .output()
        .expect("python3 runs config/arm/generate.py");
    assert!(out.status.success(), "generate.py: {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        std::fs::read(&fresh).unwrap() == std::fs::read(config_dir().join("arm/twinload.json")).unwrap(),
        "config/arm/twinload.json is out of date: run python3 config/arm/generate.py"
    );

    // And it says what config/adf and the pool say: the same credentials, linked services,
    // datasets and pipelines, placeholders aside.
    let template = arm_template();
    let parameters = read_json(&config_dir().join("arm/twinload.parameters.json"));
    let deployment = Deployment::new(&template, &parameters);
    let resources = template["resources"].as_array().unwrap();
    let named = |kind: &str, name: &str| -> &Value {
        let found: Vec<&Value> = resources
            .iter()
            .filter(|r| r["type"] == kind)
            .filter(|r| deployment.evaluate(&r["name"]).as_str().unwrap().rsplit('/').next() == Some(name))
            .collect();
        assert_eq!(found.len(), 1, "one {kind} named {name} in the template");
        found[0]
    };
    for (folder, kind) in [
        ("credential", "credentials"),
        ("linkedService", "linkedservices"),
        ("dataset", "datasets"),
        ("pipeline", "pipelines"),
    ] {
        let files = by_name(&format!("adf/{folder}"));
        let kind = format!("Microsoft.DataFactory/factories/{kind}");
        assert_eq!(resources.iter().filter(|r| r["type"] == kind.as_str()).count(), files.len(), "{kind}");
        for (name, doc) in &files {
            let resource = named(&kind, name);
            assert_same_apart_from_placeholders(
                &doc["properties"],
                &resource["properties"],
                &format!("{folder}/{name}"),
            );
        }
    }
    let pool = read_json(&config_dir().join("batch/pool.json"));
    let resource = named("Microsoft.Batch/batchAccounts/pools", pool["name"].as_str().unwrap());
    for part in ["identity", "properties"] {
        assert_same_apart_from_placeholders(&pool[part], &resource[part], &format!("pool.json {part}"));
    }
}

#[test]
fn every_parameter_variable_and_resource_the_arm_template_references_resolves() {
    let template = arm_template();
    let parameters = read_json(&config_dir().join("arm/twinload.parameters.json"));
    let deployment = Deployment::new(&template, &parameters);
    let declared = template["parameters"].as_object().unwrap();
    for (name, given) in parameters["parameters"].as_object().unwrap() {
        assert!(declared.contains_key(name), "the parameters file sets {name}, which the template does not declare");
        assert!(given.get("value").is_some(), "{name}: a value");
    }
    for (name, spec) in declared {
        assert!(
            spec.get("defaultValue").is_some() || parameters["parameters"].get(name).is_some(),
            "parameter {name} has neither a default nor a value in the parameters file"
        );
    }

    // Every expression evaluates (resources, variables, outputs); dependsOn names deployed
    // resources; ADF references inside a factory resource name deployed resources it depends on.
    let kinds = [
        ("CredentialReference", "credentials"),
        ("LinkedServiceReference", "linkedservices"),
        ("DatasetReference", "datasets"),
    ];
    for resource in template["resources"].as_array().unwrap() {
        let id = deployment.id_of(resource);
        let evaluated = deployment.evaluate(resource);
        let depends: BTreeSet<String> = evaluated["dependsOn"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| d.as_str().expect("a dependsOn entry is a string").to_string())
            .collect();
        for d in &depends {
            assert!(deployment.deployed.contains(d), "{id} depends on {d}, which the template does not deploy");
        }
        if let Some(factory) = id.split("/providers/Microsoft.DataFactory/factories/").nth(1) {
            let factory = factory.split('/').next().unwrap();
            for (reference, kind) in kinds {
                for name in reference_names(&evaluated["properties"], reference) {
                    let target = adf_support::arm::resource_id(
                        &format!("Microsoft.DataFactory/factories/{kind}"),
                        &[Value::from(factory), Value::from(name.as_str())],
                    );
                    assert!(deployment.deployed.contains(&target), "{id} references {target}, not deployed");
                    assert!(depends.contains(&target), "{id} references {target} but does not depend on it");
                }
            }
        }
        let mut texts = Vec::new();
        strings(&resource["properties"], &mut texts);
        for t in texts {
            assert!(!has_placeholder(t), "{id}: a placeholder is left: {t}");
        }
    }
    deployment.evaluate(&template["variables"]);
    deployment.evaluate(&template["outputs"]);
    for id in deployment.named.borrow().iter() {
        assert!(
            deployment.deployed.contains(id) || EXPECTED_TO_EXIST.contains(&type_of(id).as_str()),
            "{id} is neither deployed by the template nor one it expects to exist"
        );
    }
    for name in declared.keys() {
        assert!(deployment.used.borrow().contains(&format!("parameters.{name}")), "parameter {name} is never used");
    }
    for name in template["variables"].as_object().unwrap().keys() {
        assert!(deployment.used.borrow().contains(&format!("variables.{name}")), "variable {name} is never used");
    }

    // The pool runs as the identity the template deploys, and the factory signs in with it.
    let identity = deployment.evaluate(&json!("[variables('identityId')]"));
    assert!(deployment.deployed.contains(identity.as_str().unwrap()), "{identity}");
    for kind in ["Microsoft.Batch/batchAccounts/pools", "Microsoft.DataFactory/factories"] {
        let resource = template["resources"].as_array().unwrap().iter().find(|r| r["type"] == kind).unwrap();
        let evaluated = deployment.evaluate(&resource["identity"]);
        let ids: Vec<&String> = evaluated["userAssignedIdentities"].as_object().unwrap().keys().collect();
        assert_eq!(ids, vec![identity.as_str().unwrap()], "{kind}");
    }
}

/// The `run:` commands of a GitHub workflow, one per line (block scalars `run: |` unfolded).
fn workflow_commands(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut commands = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start().trim_start_matches("- ");
        let indent = line.len() - line.trim_start().len();
        if let Some(value) = trimmed.strip_prefix("run:") {
            let value = value.trim();
            if value == "|" {
                i += 1;
                while i < lines.len()
                    && (lines[i].trim().is_empty() || lines[i].len() - lines[i].trim_start().len() > indent)
                {
                    if !lines[i].trim().is_empty() {
                        commands.push(lines[i].trim().to_string());
                    }
                    i += 1;
                }
                continue;
            }
            commands.push(value.to_string());
        }
        i += 1;
    }
    commands
}

/// The README's command line that starts with `prefix`, in a code block.
fn readme_command(prefix: &str) -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let found: Vec<&str> = readme.lines().map(str::trim).filter(|l| l.starts_with(prefix)).collect();
    assert_eq!(found.len(), 1, "one README line starting with {prefix}: {found:?}");
    found[0].split(" #").next().unwrap().trim().to_string()
}

#[test]
fn the_workflow_tests_packages_and_deploys_with_the_projects_own_scripts_and_template() {
    let path = repo().join(".github/workflows/deploy.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let commands = workflow_commands(&text);
    // The README's test command, the package script, the README's deployment command.
    let test_command = readme_command("tests/run.sh ");
    let deploy_command = readme_command("az deployment group create ");
    for expected in [test_command.as_str(), "config/batch/package.sh", deploy_command.as_str()] {
        assert!(commands.iter().any(|c| c == expected), "the workflow runs `{expected}`: {commands:#?}");
    }
    // Every file of this repository a command names exists.
    let mut named = 0;
    for word in commands.iter().flat_map(|c| c.split_whitespace()) {
        let word = word.trim_start_matches('@').trim_matches(['"', '(', ')']);
        if ["config/", "tests/", ".ci/", ".github/"].iter().any(|p| word.starts_with(p)) {
            assert!(repo().join(word).is_file(), "the workflow names {word}, which does not exist");
            named += 1;
        }
    }
    assert!(named >= 4, "{commands:#?}");
    // The resource folder goes where the pipelines' resourceFolder says, from where package.sh
    // (through pack.sh) writes it.
    let pipelines = by_name("adf/pipeline");
    for (name, doc) in &pipelines {
        let folder = doc["properties"]["parameters"]["resourceFolder"]["defaultValue"].as_str().unwrap();
        let (container, path) = folder.split_once('/').unwrap();
        let upload = commands.iter().find(|c| c.starts_with("az storage blob upload-batch")).expect("an upload");
        assert!(
            upload.contains(&format!("--destination {container} --destination-path {path} ")),
            "{name}: resourceFolder {folder} vs `{upload}`"
        );
        assert!(upload.contains("--source target/package/resource "), "{upload}");
    }
    let package = std::fs::read_to_string(config_dir().join("batch/package.sh")).unwrap();
    assert!(
        package.contains(r#"out="$target_dir/package""#) && package.contains(r#"config/batch/pack.sh "$lean" "$out""#)
    );
    assert!(text.contains("CARGO_TARGET_DIR: ${{ github.workspace }}/target"), "package.sh writes under target/");

    // Ubuntu 22.04; OIDC workload identity federation, no stored secret.
    let runs_on: Vec<&str> = text.lines().filter_map(|l| l.trim().strip_prefix("runs-on:")).map(str::trim).collect();
    assert!(!runs_on.is_empty() && runs_on.iter().all(|r| *r == "ubuntu-22.04"), "{runs_on:?}");
    assert!(text.lines().any(|l| l.trim() == "id-token: write"), "permissions: id-token: write");
    assert!(!text.contains("secrets."), "no stored secret");
    let login = text.split("uses: azure/login@").nth(1).expect("azure/login");
    let with: Vec<&str> = login.lines().skip(2).take_while(|l| !l.trim_start().starts_with("- ")).collect();
    for key in ["client-id:", "tenant-id:", "subscription-id:"] {
        assert!(with.iter().any(|l| l.trim().starts_with(key)), "azure/login {key} {with:?}");
    }
    assert!(!login.contains("creds:"), "OIDC, not a service principal secret");
}
