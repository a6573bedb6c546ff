//! twinload as the Custom activity of an ADF pipeline, run as Batch runs it: the built binary,
//! an `activity.json` in the task's working directory (`AZ_BATCH_TASK_WORKING_DIR`), no shell,
//! against the mock ADT over loopback. The reference prototype's activity.json and mapping file
//! patch existing twins (local-file form of its blob); per-twin documents and CSV load through a
//! mapping; sharded and phased tasks together leave exactly the input graph; SecureStrings never
//! show up in anything twinload writes. The prototype's blob form reads its blob and mapping
//! from Azurite over HTTPS with the pool's managed identity (a fake token endpoint). Every
//! Custom activity of every pipeline in config/adf/pipeline runs the package config/batch/pack.sh
//! makes, laid out and started as Batch starts it (tests/adf_support).

mod adf_support;
mod azure_support;
mod load_support;

use std::path::Path;
use std::process::{Command, Output};

use load_support::*;
use serde_json::{json, Value};
use twinload::mock::auth::AuthConfig;
use twinload::mock::server::{start, MockConfig, MockHandle};

const TOKEN: &str = "tok-5ecret-Value-9f2c";

/// The prototype's mapping file, as in its repository.
const PROTOTYPE_MAPPING: &str = r#"{"mapping":[{"Source":"$FILENAME","Target":"/AssetId","TargetType":"string"},{"Source":"Division","Target":"/Name","TargetType":"string"}]}"#;

/// The prototype's models: enterprise extends iiotbase; properties Name and AssetId.
fn prototype_models_and_twins(twins: &[&str]) -> String {
    let mut lines = vec![
        json!({"Section":"Header"}),
        json!({"fileVersion":"1.0.0","author":"test","organization":"test"}),
        json!({"Section":"Models"}),
        json!({"@id":"dtmi:assetmodel:iiotbase;1","@type":"Interface","@context":"dtmi:dtdl:context;2",
               "contents":[{"@type":"Property","name":"AssetId","schema":"string"}]}),
        json!({"@id":"dtmi:assetmodel:enterprise;1","@type":"Interface","@context":"dtmi:dtdl:context;2",
               "extends":"dtmi:assetmodel:iiotbase;1",
               "contents":[{"@type":"Property","name":"Name","schema":"string"},
                           {"@type":"Property","name":"Floors","schema":"integer"},
                           {"@type":"Relationship","name":"feeds"}]}),
        json!({"Section":"Twins"}),
    ];
    for t in twins {
        lines.push(json!({"$dtId": t, "$metadata": {"$model": "dtmi:assetmodel:enterprise;1"}, "Name": "old"}));
    }
    lines.iter().map(|l| l.to_string() + "\n").collect()
}

fn mock_with_token() -> MockHandle {
    start(MockConfig { auth: AuthConfig::Token(TOKEN.into()), ..MockConfig::default() }).expect("mock starts")
}

/// `twinload load <args>` with a clean environment (no TWINLOAD_* or AZ_BATCH_* from the outer
/// shell), the given variables, in `cwd`.
fn twinload(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    load_command(cwd, args, env).output().expect("twinload runs")
}

/// The command [`twinload`] runs.
fn load_command(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twinload"));
    cmd.arg("load").args(args).current_dir(cwd);
    for (k, _) in std::env::vars() {
        if k.starts_with("TWINLOAD_") || k.starts_with("AZ_BATCH_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn get_twin(mock: &MockHandle, id: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = twinload::http::client_builder(None).unwrap().timeout(HTTP_TIMEOUT).build().unwrap();
        let url = format!("{}/digitaltwins/{id}?api-version=2023-10-31", mock.url);
        let resp = client.get(url).bearer_auth(TOKEN).send().await.unwrap();
        assert!(resp.status().is_success(), "GET twin {id}: {}", resp.status());
        resp.json().await.unwrap()
    })
}

fn activity(props: Value) -> String {
    json!({"name":"HandleTwinUpdates","type":"Custom",
           "typeProperties":{"command":"twinload load","extendedProperties":props}})
    .to_string()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn the_prototypes_activity_json_and_mapping_patch_existing_twins() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mock = mock_with_token();
    // The prototype's README: the models are uploaded and org1–org4 created beforehand.
    std::fs::write(root.join("setup.ndjson"), prototype_models_and_twins(&["org1", "org2", "org3", "org4"])).unwrap();
    let setup =
        twinload(root, &["--input", "setup.ndjson"], &[("TWINLOAD_ENDPOINT", &mock.url), ("TWINLOAD_TOKEN", TOKEN)]);
    assert_eq!(setup.status.code(), Some(0), "{}", stderr(&setup));

    // The data flow's blobs (one per row, named by OrgID, no extension), here in a local folder
    // that stands for the storage account.
    let storage = root.join("storage");
    std::fs::create_dir_all(storage.join("inputfiles")).unwrap();
    for (org, division) in [("org1", "Sales"), ("org9", "Ghosts")] {
        let row = json!({"OrgID": org, "Name": format!("{org} name"), "Division": division, "Location": "Oslo"});
        std::fs::write(storage.join("inputfiles").join(org), row.to_string()).unwrap();
    }
    // Each task's working directory holds activity.json and the mapping (ADF copies the resource
    // folder there); the properties are the prototype's, unchanged in name and meaning.
    let run_task = |file: &str| {
        let wd = root.join(format!("task-{file}/wd"));
        std::fs::create_dir_all(&wd).unwrap();
        std::fs::write(wd.join("organizationtwinsmapping.json"), format!("\u{feff}{PROTOTYPE_MAPPING}")).unwrap();
        let props = json!({"ADT": mock.url, "Storage": format!("file://{}", storage.display()),
                           "Container": "inputfiles", "File": file, "Mapping": "organizationtwinsmapping.json"});
        std::fs::write(wd.join("activity.json"), activity(props)).unwrap();
        let wd_text = wd.display().to_string();
        let out = twinload(&wd, &[], &[("AZ_BATCH_TASK_WORKING_DIR", &wd_text), ("TWINLOAD_TOKEN", TOKEN)]);
        (wd, out)
    };

    let (wd, out) = run_task("org1");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let twin = get_twin(&mock, "org1");
    assert_eq!(twin["Name"], "Sales", "the mapping's Division → /Name: {twin}");
    assert_eq!(twin["AssetId"], "org1", "$FILENAME → /AssetId: {twin}");
    assert_eq!(twin["$metadata"]["$model"], "dtmi:assetmodel:enterprise;1", "a patch keeps the model");
    assert_eq!(get_twin(&mock, "org2")["Name"], "old", "only the task's twin is touched");
    let outputs = read_json(&wd.join("outputs.json"));
    assert_eq!(outputs["outcome"], "completed");
    assert_eq!(outputs["items"]["twins"]["landed"], 1);
    assert_eq!(outputs["requests_by_class"]["patch"], 1, "{outputs}");
    assert_eq!(outputs["requests_total"], 2, "the PATCH and one connectivity probe, nothing that grows: {outputs}");

    // A blob whose twin was never created: dead-lettered with what to do, exit code 3.
    let (wd, out) = run_task("org9");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let letters = dead_letters(&wd.join("twinload-dead-letters.ndjson"));
    assert_eq!(letters.len(), 1, "{letters:?}");
    let reason = letters[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("twin org9 does not exist; create it first or give a `model`"), "{}", letters[0]);
    assert_eq!(read_json(&wd.join("outputs.json"))["items"]["twins"]["dead_lettered"], 1);
    mock.stop();
}

#[test]
fn the_prototypes_task_fails_setup_naming_adt_when_adt_is_unreachable() {
    // Nothing listens at ADT's port (9, on loopback). The start-up check retries a refused
    // connection (8 attempts, about 18 s by default); 2 attempts keep this test fast, and
    // what a user relies on is the outcome: a setup failure that names the instance.
    let dir = tempfile::tempdir().unwrap();
    let wd = dir.path();
    std::fs::write(wd.join("m.json"), PROTOTYPE_MAPPING).unwrap();
    let storage = wd.join("storage");
    std::fs::create_dir_all(storage.join("inputfiles")).unwrap();
    std::fs::write(storage.join("inputfiles/org1"), r#"{"OrgID":"org1","Division":"Sales"}"#).unwrap();
    let props = json!({"ADT": "http://127.0.0.1:9", "Storage": format!("file://{}", storage.display()),
                       "Container": "inputfiles", "File": "org1", "Mapping": "m.json"});
    std::fs::write(wd.join("activity.json"), activity(props)).unwrap();
    let wd_text = wd.display().to_string();
    let out = twinload(wd, &[], &[("AZ_BATCH_TASK_WORKING_DIR", &wd_text), ("TWINLOAD_MAX_ATTEMPTS", "2")]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("cannot reach the instance") && err.contains("http://127.0.0.1:9/models/"), "{err}");
    let outputs = read_json(&wd.join("outputs.json"));
    assert_eq!(outputs["outcome"], "setup_failed");
    assert!(outputs["error"].as_str().unwrap_or_default().contains("http://127.0.0.1:9"), "{outputs}");
}

#[test]
fn the_prototypes_blob_form_with_a_service_url_reads_its_blob_with_the_pool_identity_and_patches_the_twin() {
    use azure_support::{test_ca, trust_ca, upload, Azurite, TokenEndpoint, TokenPolicy};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The pool's managed identity (a fake token endpoint) reaches Storage (Azurite over HTTPS,
    // OAuth) and ADT (the mock, which accepts the tokens the endpoint issues and, for this
    // test's own setup and checks, TOKEN).
    let ca = test_ca(root);
    let azurite = Azurite::start_https(&ca);
    trust_ca(&ca.ca_pem);
    let accepted = root.join("accepted-tokens");
    std::fs::write(&accepted, format!("{TOKEN}\n")).unwrap();
    let identity = TokenEndpoint::start(TokenPolicy {
        lifetime_s: 3600,
        accept_file: Some(accepted.clone()),
        withhold_first: 0,
        jwt_for_storage: true,
        refused_storage_tokens: 0,
    });
    let mock = start(MockConfig { auth: AuthConfig::TokenFile(accepted), ..MockConfig::default() }).unwrap();
    std::fs::write(root.join("setup.ndjson"), prototype_models_and_twins(&["org1", "org2"])).unwrap();
    let setup =
        twinload(root, &["--input", "setup.ndjson"], &[("TWINLOAD_ENDPOINT", &mock.url), ("TWINLOAD_TOKEN", TOKEN)]);
    assert_eq!(setup.status.code(), Some(0), "{}", stderr(&setup));

    // The data flow's blobs, one per row, named by OrgID without extension; values as text.
    let rows = [("org1", "Sales", "12"), ("org10", "Ghosts", "1")];
    let blobs: Vec<(String, Vec<u8>)> = rows
        .iter()
        .map(|(org, division, floors)| {
            let row = json!({"OrgID": org, "Division": division, "Floors": floors, "Location": "Oslo"});
            (org.to_string(), row.to_string().into_bytes())
        })
        .collect();
    upload(&azurite.container_url("inputfiles", ""), &blobs);

    // The task: the prototype's five properties, Storage the (emulated) account's Blob URL.
    let wd = root.join("task-org1/wd");
    std::fs::create_dir_all(&wd).unwrap();
    let mapping = r#"{"mapping":[{"Source":"$FILENAME","Target":"/AssetId","TargetType":"string"},{"Source":"Division","Target":"/Name","TargetType":"string"},{"Source":"Floors","Target":"/Floors","TargetType":"int"}]}"#;
    std::fs::write(wd.join("organizationtwinsmapping.json"), mapping).unwrap();
    let props = json!({"ADT": mock.url, "Storage": azurite.account_url, "Container": "inputfiles", "File": "org1",
                       "Mapping": "organizationtwinsmapping.json"});
    std::fs::write(wd.join("activity.json"), activity(props)).unwrap();
    let wd_text = wd.display().to_string();
    let ca_text = ca.ca_pem.display().to_string();
    let mut env = vec![
        ("AZ_BATCH_TASK_WORKING_DIR", wd_text.as_str()),
        ("TWINLOAD_CREDENTIAL", "managed-identity"),
        ("TWINLOAD_CA_CERT", ca_text.as_str()),
    ];
    let identity_env = identity.env();
    env.extend(identity_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let out = twinload(&wd, &[], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let twin = get_twin(&mock, "org1");
    assert_eq!(twin["Name"], "Sales", "Division → /Name: {twin}");
    assert_eq!(twin["Floors"], 12, "Floors → /Floors as an integer, not the text \"12\": {twin}");
    assert_eq!(twin["AssetId"], "org1", "$FILENAME → /AssetId: {twin}");
    assert_eq!(twin["$metadata"]["$model"], "dtmi:assetmodel:enterprise;1", "a patch keeps the model");
    assert_eq!(get_twin(&mock, "org2")["Name"], "old", "only the task's twin is touched");
    let outputs = read_json(&wd.join("outputs.json"));
    assert_eq!(outputs["outcome"], "completed", "{outputs}");
    assert_eq!(outputs["items"]["twins"]["landed"], 1, "blob org10 is not blob org1: {outputs}");
    assert_eq!(outputs["requests_by_class"]["patch"], 1, "{outputs}");
    assert!(identity.requests_for("https://storage.azure.com") >= 1, "Storage was reached with the identity");
    for text in [stderr(&out), String::from_utf8_lossy(&out.stdout).into_owned(), outputs.to_string()] {
        assert!(!text.contains("eyJ") && !text.contains("fake-mi-token"), "a token leaked: {text}");
    }
    mock.stop();
}

#[test]
fn per_twin_documents_and_csv_load_through_a_mapping_and_bad_values_are_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mock = mock_with_token();
    std::fs::write(root.join("models.ndjson"), prototype_models_and_twins(&[])).unwrap();
    let base = [("TWINLOAD_ENDPOINT", mock.url.as_str()), ("TWINLOAD_TOKEN", TOKEN)];
    let out = twinload(root, &["--input", "models.ndjson"], &base);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let docs = root.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    // Without extension (named by twin id), with .json, with $dtId and $metadata of their own.
    std::fs::write(docs.join("b1"), r#"{"Division":"North","Floors":"3"}"#).unwrap();
    std::fs::write(docs.join("b2.json"), r#"{"Division":"South","Floors":7}"#).unwrap();
    std::fs::write(docs.join("b3"), r#"{"Division":"East","Floors":"three"}"#).unwrap();
    std::fs::write(
        docs.join("other-name"),
        r#"{"$dtId":"b4","$metadata":{"$model":"dtmi:assetmodel:enterprise;1"},"Division":"West","Floors":1}"#,
    )
    .unwrap();
    std::fs::write(
        root.join("rows.csv"),
        "\u{feff}$dtId,Division,Floors\r\nc1,\"Main, \"\"old\"\" wing\",2\r\nc2,Annex,x\r\n",
    )
    .unwrap();
    std::fs::write(root.join("edges.csv"), "$sourceId,$targetId,$relationshipName\nb1,c1,feeds\nb2,b1,feeds\n")
        .unwrap();
    std::fs::write(
        root.join("map.json"),
        r#"{"mapping":[{"Source":"$FILENAME","Target":"/AssetId","TargetType":"string"},{"Source":"Division","Target":"/Name"},{"Source":"Floors","Target":"/Floors","TargetType":"int"}]}"#,
    )
    .unwrap();
    let out = twinload(
        root,
        &[
            "--input",
            "docs",
            "rows.csv",
            "edges.csv",
            "--mapping",
            "map.json",
            "--model",
            "dtmi:assetmodel:enterprise;1",
        ],
        &base,
    );
    assert_eq!(out.status.code(), Some(3), "two bad values: {}", stderr(&out));
    let b1 = get_twin(&mock, "b1");
    assert_eq!(
        (b1["Name"].as_str(), b1["Floors"].as_i64(), b1["AssetId"].as_str()),
        (Some("North"), Some(3), Some("b1"))
    );
    assert_eq!(get_twin(&mock, "b2")["AssetId"], "b2", "b2.json is twin b2, $FILENAME without .json");
    let b4 = get_twin(&mock, "b4");
    assert_eq!(
        (b4["Name"].as_str(), b4["AssetId"].as_str()),
        (Some("West"), Some("other-name")),
        "$dtId wins over the name"
    );
    assert_eq!(get_twin(&mock, "c1")["Name"], "Main, \"old\" wing");
    let letters = dead_letters(&root.join("twinload-dead-letters.ndjson"));
    let reasons: Vec<String> = letters.iter().map(|l| format!("{}:{} {}", l["file"], l["line"], l["reason"])).collect();
    assert_eq!(letters.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("docs/b3") && r.contains("\\\"three\\\"") && r.contains("Floors")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("rows.csv\":3") && r.contains("Floors")), "{reasons:?}");
    let graph = exported(&mock);
    let (_, twins, relationships) = graph.counts();
    assert_eq!((twins, relationships), (4, 2), "b1 b2 b4 c1 and both edges landed");
    mock.stop();
}

#[test]
fn a_securestring_never_appears_in_anything_twinload_writes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mock = mock_with_token();
    std::fs::write(root.join("in.ndjson"), prototype_models_and_twins(&["s1", "s2"])).unwrap();
    // A twin line that ADT rejects, so there is a dead letter to look into.
    let mut text = std::fs::read_to_string(root.join("in.ndjson")).unwrap();
    text.push_str(
        &(json!({"$dtId":"s3","$metadata":{"$model":"dtmi:assetmodel:enterprise;1"},"Floors":"not a number"})
            .to_string()
            + "\n"),
    );
    std::fs::write(root.join("in.ndjson"), text).unwrap();
    let secure = |v: &str| json!({"type": "SecureString", "value": v});
    std::fs::write(
        root.join("activity.json"),
        activity(json!({"endpoint": mock.url, "input": "in.ndjson", "token": secure(TOKEN)})),
    )
    .unwrap();
    let out = twinload(root, &["--activity", "activity.json", "--summary", "summary.json"], &[("RUST_LOG", "debug")]);
    assert_eq!(out.status.code(), Some(3), "the token from the SecureString authenticates: {}", stderr(&out));
    assert_eq!(read_json(&root.join("outputs.json"))["items"]["twins"]["landed"], 2);
    let mut seen = vec![stderr(&out), String::from_utf8_lossy(&out.stdout).into_owned()];
    for f in ["summary.json", "outputs.json", "twinload-dead-letters.ndjson"] {
        seen.push(std::fs::read_to_string(root.join(f)).unwrap());
    }
    assert!(seen[4].contains("s3"), "the dead letter is there: {}", seen[4]);
    for s in &seen {
        assert!(!s.contains(TOKEN), "the SecureString leaked: {s}");
    }

    // A SecureString that ends up in an error message (a bad endpoint) is redacted there too.
    let bad = "not-a-url-SECRET-77";
    std::fs::write(root.join("bad.json"), activity(json!({"endpoint": secure(bad), "input": "in.ndjson"}))).unwrap();
    let out = twinload(root, &["--activity", "bad.json"], &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("endpoint") && err.contains("<redacted>"), "{err}");
    let outputs = std::fs::read_to_string(root.join("outputs.json")).unwrap();
    for s in [&err, &outputs] {
        assert!(!s.contains(bad), "{s}");
    }
    mock.stop();
}

#[test]
fn settings_from_activity_json_are_overridden_by_flags_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mock = mock_with_token();
    std::fs::write(root.join("in.ndjson"), prototype_models_and_twins(&["o1"])).unwrap();
    // activity.json names a dead endpoint and a bad phase for this input; the environment and a
    // flag put them right.
    std::fs::write(
        root.join("activity.json"),
        activity(
            json!({"endpoint": "http://127.0.0.1:9", "input": "in.ndjson", "phase": "relationships", "deadLetter": 1}),
        ),
    )
    .unwrap();
    let out = twinload(root, &["--activity", "activity.json"], &[("TWINLOAD_ENDPOINT", &mock.url)]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("extended property deadLetter: is not a twinload setting"), "{}", stderr(&out));
    std::fs::write(
        root.join("activity.json"),
        activity(json!({"endpoint": "http://127.0.0.1:9", "input": "in.ndjson", "phase": "relationships", "output": {"deadLetter": "dl.ndjson"}})),
    )
    .unwrap();
    let out = twinload(
        root,
        &["--activity", "activity.json", "--phase", "all"],
        &[("TWINLOAD_ENDPOINT", &mock.url), ("TWINLOAD_TOKEN", TOKEN)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(root.join("dl.ndjson").exists(), "output.deadLetter from activity.json is used");
    assert_eq!(get_twin(&mock, "o1")["Name"], "old");
    mock.stop();
}

/// Runs the tasks of one ForEach at once and returns their outputs.
fn foreach(root: &Path, tasks: Vec<Vec<String>>, env: &[(&str, &str)]) -> Vec<Output> {
    std::thread::scope(|s| {
        let handles: Vec<_> = tasks
            .into_iter()
            .enumerate()
            .map(|(i, args)| {
                let wd = root.join(format!("task-{i}-{}", args.join("-").replace(['/', '.'], "_")));
                std::fs::create_dir_all(&wd).unwrap();
                s.spawn(move || {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    twinload(&wd, &args, env)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn sharded_and_phased_tasks_together_load_exactly_the_input_graph() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let input = fleet(root, 300, 11);
    let expected = graph_of(&input);
    let input = input.display().to_string();
    let n = 3;

    // Phased: models once, then twins and relationships as successive ForEach loops of n shards.
    let mock = mock_with_token();
    let env = [("TWINLOAD_ENDPOINT", mock.url.as_str()), ("TWINLOAD_TOKEN", TOKEN)];
    let models = foreach(root, vec![vec!["--input".into(), input.clone(), "--phase".into(), "models".into()]], &env);
    assert_eq!(models[0].status.code(), Some(0), "{}", stderr(&models[0]));
    for phase in ["twins", "relationships"] {
        let tasks = (0..n)
            .map(|i| {
                ["--input", &input, "--phase", phase, "--shard", &format!("{i}/{n}"), "--twin-wait-s", "20"]
                    .map(String::from)
                    .to_vec()
            })
            .collect();
        for out in foreach(root, tasks, &env) {
            assert_eq!(out.status.code(), Some(0), "{phase}: {}", stderr(&out));
        }
    }
    assert_same_graph(&expected, &exported(&mock));
    assert_eq!(stats(&mock)["order_violations_total"], 0);
    mock.stop();

    // Sharded, all phases in each task at once: relationships to another shard's twins wait for
    // them; nothing is written twice or lost.
    let mock = mock_with_token();
    let env = [("TWINLOAD_ENDPOINT", mock.url.as_str()), ("TWINLOAD_TOKEN", TOKEN)];
    let tasks =
        (0..n).map(|i| ["--input", &input, "--shard", &format!("{i}/{n}")].map(String::from).to_vec()).collect();
    for out in foreach(root, tasks, &env) {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    // Relationships to another shard's twins may be tried before those twins exist (the mock
    // counts each such 404 as an order violation); they are retried until the twins land.
    assert_same_graph(&expected, &exported(&mock));
    mock.stop();
}

#[test]
fn a_one_twin_task_checks_its_model_with_one_get_and_lists_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mock = mock_with_token();
    std::fs::write(root.join("models.ndjson"), prototype_models_and_twins(&[])).unwrap();
    let env = [("TWINLOAD_ENDPOINT", mock.url.as_str()), ("TWINLOAD_TOKEN", TOKEN)];
    let out = twinload(root, &["--input", "models.ndjson"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::fs::write(root.join("t1"), r#"{"$metadata":{"$model":"dtmi:assetmodel:enterprise;1"},"Name":"x"}"#).unwrap();
    let out = twinload(root, &["--input", "t1", "--summary", "s.json"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = read_json(&root.join("s.json"));
    assert_eq!(summary["requests_total"], 2, "one GET /models/{{id}} and one PUT: {summary}");
    assert_eq!(summary["requests_by_class"]["models"], 1, "{summary}");
    mock.stop();
}

#[test]
fn outputs_json_stays_valid_and_small_with_many_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let wd = dir.path();
    let mock = mock_with_token();
    // 20,000 CSV rows that name no model: every one is dead-lettered before anything is sent.
    let mut csv = String::from("$dtId,Name\n");
    for i in 0..20_000 {
        csv.push_str(&format!("t{i},n{i}\n"));
    }
    std::fs::write(wd.join("rows.csv"), csv).unwrap();
    std::fs::write(wd.join("activity.json"), activity(json!({"endpoint": mock.url, "input": "rows.csv"}))).unwrap();
    let wd_text = wd.display().to_string();
    let out = twinload(wd, &[], &[("AZ_BATCH_TASK_WORKING_DIR", &wd_text), ("TWINLOAD_TOKEN", TOKEN)]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let bytes = std::fs::read(wd.join("outputs.json")).unwrap();
    assert!(bytes.len() <= 2_000_000, "{} bytes", bytes.len());
    let outputs: Value = serde_json::from_slice(&bytes).expect("outputs.json is JSON");
    assert_eq!(outputs["items"]["twins"]["dead_lettered"], 20_000);
    assert_eq!(outputs["exit_code"], 3);
    assert_eq!(dead_letters(&wd.join("twinload-dead-letters.ndjson")).len(), 20_000);
    mock.stop();
}

/// The shipped pipelines, run as Data Factory runs them, start the shipped package on Batch
/// and load from Blob Storage with the pool's identity: every Custom activity of every pipeline
/// exits 0 and the instance holds exactly the input; each task keeps its ledger in Blob Storage,
/// under the pipeline's source name, so a task that ADF retries (a new task with the same activity.json) writes nothing again;
/// the per-blob pipeline archives the blobs it loaded, the sharded ones leave them for each other.
#[test]
fn every_custom_activity_of_every_pipeline_runs_the_shipped_package_as_batch_runs_it() {
    use adf_support::batch::{Batch, Task};
    use adf_support::factory::{activities, by_name};
    use azure_support::{create_container, list, test_ca, trust_ca, upload, Azurite, TokenEndpoint, TokenPolicy};
    use std::collections::BTreeSet;

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The package, made by the script package.sh runs, from this build's binary.
    let package = root.join("package");
    let pack = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/batch/pack.sh"))
        .arg(env!("CARGO_BIN_EXE_twinload"))
        .arg(&package)
        .output()
        .expect("pack.sh runs");
    assert!(pack.status.success(), "pack.sh: {}", String::from_utf8_lossy(&pack.stderr));

    // Storage (Azurite over HTTPS, OAuth), the pool's managed identity (a fake token endpoint)
    // and ADT (a fresh mock per pipeline, accepting the identity's tokens and, for this test's
    // own setup, TOKEN).
    let ca = test_ca(root);
    let azurite = Azurite::start_https(&ca);
    trust_ca(&ca.ca_pem);
    let accepted = root.join("accepted-tokens");
    std::fs::write(&accepted, format!("{TOKEN}\n")).unwrap();
    let identity = TokenEndpoint::start(TokenPolicy {
        lifetime_s: 3600,
        accept_file: Some(accepted.clone()),
        withhold_first: 0,
        jwt_for_storage: true,
        refused_storage_tokens: 0,
    });
    let new_mock =
        || start(MockConfig { auth: AuthConfig::TokenFile(accepted.clone()), ..MockConfig::default() }).unwrap();

    // The resource folder as the README says to upload it: the package and the mapping file.
    let mut resources: Vec<(String, Vec<u8>)> = std::fs::read_dir(package.join("resource"))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            (format!("twinload/{}", path.file_name().unwrap().to_string_lossy()), std::fs::read(&path).unwrap())
        })
        .collect();
    let mapping = r#"{"mapping":[{"Source":"$FILENAME","Target":"/AssetId","TargetType":"string"},{"Source":"Division","Target":"/Name","TargetType":"string"},{"Source":"Floors","Target":"/Floors","TargetType":"int"}]}"#;
    // In a subfolder: Batch flattens the resource folder into the working directory.
    resources.push(("twinload/mappings/orgs-mapping.json".into(), mapping.as_bytes().to_vec()));
    upload(&azurite.container_url("customactivity", ""), &resources);
    for container in ["twinload-ledgers", "twinload-archive"] {
        create_container(&azurite.container_url(container, ""));
    }
    // Inputs: a generated fleet (Import-Jobs NDJSON) for the sharded and phased pipelines; one
    // document per twin, as a mapping data flow writes them, for the per-blob pipeline.
    let fleet_file = fleet(root, 100, 5);
    let expected = graph_of(&fleet_file);
    let orgs = [("org1", "Sales", "12"), ("org2", "Ghosts", "3"), ("org3", "Labs", "1")];
    let mut inputs = vec![("fleet/fleet.ndjson".to_string(), std::fs::read(&fleet_file).unwrap())];
    for (org, division, floors) in orgs {
        let row = json!({"OrgID": org, "Division": division, "Floors": floors});
        inputs.push((format!("orgs/{org}"), row.to_string().into_bytes()));
    }
    let inputs_url = azurite.container_url("inputfiles", "");
    upload(&inputs_url, &inputs);

    let datasets = by_name("adf/dataset");
    let pipelines = by_name("adf/pipeline");
    let mut node_env = identity.env();
    node_env.push(("TWINLOAD_CA_CERT".into(), ca.ca_pem.display().to_string()));
    let batch = Batch::new(&azurite, &datasets, root.join("node"), node_env, &ca.ca_pem);
    let arguments = |mock: &MockHandle, more: Value| {
        let mut args = json!({
            "adtEndpoint": mock.url,
            "blobEndpoint": format!("{}/", azurite.account_url),
            "identityClientId": "5b0f2d3e-0000-4000-8000-000000000001",
        });
        args.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
        args.as_object().unwrap().clone()
    };
    let mut ran: BTreeSet<(String, String)> = BTreeSet::new();
    let mut check = |pipeline: &str, tasks: &[Task], count: usize| {
        assert_eq!(tasks.len(), count, "{pipeline}: tasks started");
        for task in tasks {
            assert_eq!(task.exit_code, 0, "{pipeline}/{}: {}", task.activity, task.stderr);
            assert_eq!(task.outputs()["outcome"], "completed", "{pipeline}/{}", task.activity);
            ran.insert((pipeline.to_string(), task.activity.clone()));
        }
    };
    let ledgers = || list(&azurite.container_url("twinload-ledgers", ""));

    // Sharded: three tasks over one folder; each keeps its ledger.
    let mock = new_mock();
    let args = arguments(&mock, json!({"inputFolder": "fleet", "shards": 3, "source": "fleet-sharded"}));
    let tasks = batch.run_pipeline(&pipelines["LoadTwinsSharded"], &args, "run-sharded");
    check("LoadTwinsSharded", &tasks, 3);
    assert_same_graph(&expected, &exported(&mock));
    for i in 0..3 {
        let blob = format!("fleet-sharded/shard-{i}-of-3.ndjson");
        assert!(ledgers().contains(&blob), "{blob} in {:?}", ledgers());
    }
    // The ledger belongs to the pipeline's source name, so a dated input folder keeps it.
    let ledger =
        azure_support::download(&azurite.container_url("twinload-ledgers", ""), "fleet-sharded/shard-0-of-3.ndjson");
    let header: Value = serde_json::from_slice(ledger.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(header["source"], "fleet-sharded", "{header}");
    assert!(list(&inputs_url).contains(&"fleet/fleet.ndjson".to_string()), "a shard moves no input blob away");
    // ADF retries an activity as a new task with the same activity.json: it resumes from its
    // ledger and writes no twin or relationship again.
    let before = stats(&mock);
    let retry = batch.run_task(&tasks[0].activity_json);
    assert_eq!(retry.exit_code, 0, "{}", retry.stderr);
    let after = stats(&mock);
    for operation in ["PUT create_delete", "DELETE create_delete", "PATCH patch"] {
        let count = |s: &Value| s["requests_by_operation"][operation].as_u64().unwrap_or(0);
        assert_eq!(count(&after), count(&before), "{operation}: the retried task resumed from its ledger");
    }
    mock.stop();

    // Phased: models, then twin shards, then relationship shards.
    let mock = new_mock();
    let args = arguments(&mock, json!({"inputFolder": "fleet", "shards": 2, "source": "fleet-phased"}));
    let tasks = batch.run_pipeline(&pipelines["LoadTwinsPhased"], &args, "run-phased");
    check("LoadTwinsPhased", &tasks, 5);
    assert_same_graph(&expected, &exported(&mock));
    assert_eq!(stats(&mock)["order_violations_total"], 0);
    for blob in
        ["fleet-phased/models.ndjson", "fleet-phased/twins-1-of-2.ndjson", "fleet-phased/relationships-0-of-2.ndjson"]
    {
        assert!(ledgers().contains(&blob.to_string()), "{blob} in {:?}", ledgers());
    }
    mock.stop();

    // Per blob: one task per document, through the mapping file of the resource folder; each
    // loaded blob moves to the run's archive folder.
    let mock = new_mock();
    std::fs::write(root.join("models.ndjson"), prototype_models_and_twins(&[])).unwrap();
    let setup =
        twinload(root, &["--input", "models.ndjson"], &[("TWINLOAD_ENDPOINT", &mock.url), ("TWINLOAD_TOKEN", TOKEN)]);
    assert_eq!(setup.status.code(), Some(0), "{}", stderr(&setup));
    let args = arguments(
        &mock,
        json!({"inputFolder": "orgs", "source": "orgs", "mappingFile": "orgs-mapping.json",
               "model": "dtmi:assetmodel:enterprise;1"}),
    );
    let tasks = batch.run_pipeline(&pipelines["LoadTwins"], &args, "run-blobs");
    check("LoadTwins", &tasks, orgs.len());
    let archived = list(&azurite.container_url("twinload-archive", ""));
    for (org, division, floors) in orgs {
        let twin = get_twin(&mock, org);
        assert_eq!(
            (twin["Name"].as_str(), twin["Floors"].as_i64(), twin["AssetId"].as_str()),
            (Some(division), floors.parse().ok(), Some(org)),
            "{twin}"
        );
        assert!(archived.contains(&format!("run-blobs/orgs/{org}")), "{org} archived: {archived:?}");
        assert!(ledgers().contains(&format!("orgs/blobs/{org}.ndjson")), "{:?}", ledgers());
    }
    assert!(!list(&inputs_url).iter().any(|b| b.starts_with("orgs/")), "loaded blobs left the input folder");
    mock.stop();

    // Every Custom activity of every shipped pipeline ran.
    let mut shipped = BTreeSet::new();
    for (name, doc) in &pipelines {
        let mut all = Vec::new();
        activities(&doc["properties"]["activities"], &mut all);
        for a in all.iter().filter(|a| a["type"] == "Custom") {
            shipped.insert((name.clone(), a["name"].as_str().unwrap().to_string()));
        }
    }
    assert_eq!(ran, shipped, "activities run vs shipped");
}

#[test]
fn a_server_that_echoes_the_authorization_header_leaks_the_token_into_nothing_twinload_writes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mock = mock_with_token();
    // Twin writes get a 400 whose body repeats the request's `Authorization: Bearer <token>`.
    let proxy = hostile::Hostile::start(Some(&mock.url), |seen, _| {
        if seen.method == "PUT" && seen.target.starts_with("/digitaltwins/") {
            hostile::Act::EchoAuthorization
        } else {
            hostile::Act::Forward
        }
    });
    std::fs::write(root.join("in.ndjson"), prototype_models_and_twins(&["e1", "e2", "e3"])).unwrap();
    let secure = |v: &str| json!({"type": "SecureString", "value": v});
    std::fs::write(
        root.join("activity.json"),
        activity(json!({"endpoint": proxy.url, "input": "in.ndjson", "token": secure(TOKEN)})),
    )
    .unwrap();
    let out = twinload(root, &["--activity", "activity.json", "--summary", "summary.json"], &[("RUST_LOG", "debug")]);
    assert_eq!(out.status.code(), Some(3), "the twins are dead-lettered: {}", stderr(&out));
    let echoed =
        proxy.requests().iter().filter(|s| s.header("authorization") == Some(&format!("Bearer {TOKEN}"))).count();
    assert!(echoed >= 3, "the server echoed the token back {echoed} times");
    let letters = std::fs::read_to_string(root.join("twinload-dead-letters.ndjson")).unwrap();
    assert!(letters.contains("e1") && letters.contains("Bearer <redacted>"), "{letters}");
    let mut seen = vec![
        ("stderr".to_string(), stderr(&out)),
        ("stdout".into(), String::from_utf8_lossy(&out.stdout).into_owned()),
    ];
    // Every file the run wrote (activity.json holds the token: the pipeline put it there).
    seen.extend(hostile::files_under(root).into_iter().filter(|(path, _)| !path.ends_with("activity.json")));
    assert!(seen.iter().any(|(path, _)| path.ends_with("outputs.json")), "outputs.json was written");
    for (what, text) in &seen {
        assert!(!text.contains(TOKEN), "the token leaked into {what}: {text}");
    }
    mock.stop();
}

#[test]
fn a_securestring_in_a_setting_that_fails_to_parse_is_not_echoed_by_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("in.ndjson"), prototype_models_and_twins(&["p1"])).unwrap();
    let secret = "S3CR3T-mode-7d1e";
    let secure = |v: &str| json!({"type": "SecureString", "value": v});
    std::fs::write(
        root.join("activity.json"),
        activity(json!({"endpoint": "http://127.0.0.1:9", "input": "in.ndjson", "mode": secure(secret)})),
    )
    .unwrap();
    let out = twinload(root, &["--activity", "activity.json"], &[]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("mode") && err.contains("<redacted>"), "the error still says which setting: {err}");
    let outputs = std::fs::read_to_string(root.join("outputs.json")).unwrap();
    for text in [&err, &outputs, &String::from_utf8_lossy(&out.stdout).into_owned()] {
        assert!(!text.contains(secret), "the SecureString leaked: {text}");
    }
}

#[test]
fn a_closed_stderr_still_leaves_outputs_json_and_the_summary() {
    let mock = mock_with_token();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("in.ndjson"), prototype_models_and_twins(&["c1", "c2"])).unwrap();
    std::fs::write(root.join("activity.json"), activity(json!({"endpoint": mock.url, "input": "in.ndjson"}))).unwrap();
    // stderr a pipe whose reader left before anything was written (`2>&1 | head -0`).
    let mut child =
        load_command(root, &["--activity", "activity.json", "--summary", "summary.json"], &[("TWINLOAD_TOKEN", TOKEN)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("twinload starts");
    drop(child.stderr.take());
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            panic!("twinload did not end");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "not a panic (101)");
    let outputs = read_json(&root.join("outputs.json"));
    assert_eq!((outputs["exit_code"].as_u64(), outputs["items"]["twins"]["landed"].as_u64()), (Some(0), Some(2)));
    assert_eq!(read_json(&root.join("summary.json"))["items"]["twins"]["landed"], 2);
    mock.stop();
}
