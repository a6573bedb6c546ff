//! A pipeline run as Data Factory and Azure Batch carry it out, on loopback
//! (https://learn.microsoft.com/azure/data-factory/transform-data-using-custom-activity):
//! activities in `dependsOn` order; Get Metadata lists the dataset's folder in Blob Storage
//! (Azurite); ForEach runs its body for each item, `batchCount` at a time; a Custom activity
//! becomes a Batch task whose working directory holds the activity's resource folder (every blob
//! under `folderPath`, flattened, mode 0644: Batch resource files carry no execute bit), the
//! evaluated `activity.json`, `linkedServices.json` and `datasets.json`; the task runs the
//! activity's `command` line as Batch does, without a shell, with the node's `AZ_BATCH_*`
//! environment and nothing of the test's own.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use super::expression::{evaluate, Scope};
use crate::azure_support::{download, list, trust_ca, wait_bounded, Azurite};

/// The pool ADF's Batch linked service names; ADF runs every task in one job per pool.
pub const POOL: &str = "twinload-pool";
/// Longest one task may run before the test fails.
const TASK_LIMIT: Duration = Duration::from_secs(240);

/// Files of a resource folder, flattened: (file name, bytes).
type ResourceFiles = Vec<(String, Vec<u8>)>;

/// One Custom activity's task, after it ran.
pub struct Task {
    pub activity: String,
    /// The activity.json ADF wrote (expressions evaluated).
    pub activity_json: Value,
    pub working_dir: PathBuf,
    pub exit_code: i32,
    pub stderr: String,
}

impl Task {
    /// The activity's customOutput (outputs.json in the working directory).
    pub fn outputs(&self) -> Value {
        let path = self.working_dir.join("outputs.json");
        serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
    }

    pub fn extended(&self, property: &str) -> &Value {
        &self.activity_json["typeProperties"]["extendedProperties"][property]
    }
}

/// The storage account (Azurite), the node's environment and the factory's datasets.
pub struct Batch<'a> {
    pub azurite: &'a Azurite,
    pub datasets: &'a BTreeMap<String, Value>,
    /// Where task folders go.
    pub root: PathBuf,
    /// What the node provides beyond `AZ_BATCH_*`: its managed-identity endpoint and the CA
    /// store that trusts Storage.
    pub node_env: Vec<(String, String)>,
    /// The CA Azurite's certificate chains to (trusted by the listing and download helpers).
    ca_pem: PathBuf,
    tasks_started: AtomicUsize,
    resource_cache: Mutex<HashMap<String, ResourceFiles>>,
}

impl<'a> Batch<'a> {
    pub fn new(
        azurite: &'a Azurite,
        datasets: &'a BTreeMap<String, Value>,
        root: PathBuf,
        node_env: Vec<(String, String)>,
        ca_pem: &Path,
    ) -> Batch<'a> {
        Batch {
            azurite,
            datasets,
            root,
            node_env,
            ca_pem: ca_pem.to_path_buf(),
            tasks_started: AtomicUsize::new(0),
            resource_cache: Mutex::default(),
        }
    }

    /// Runs a pipeline with `arguments` over its parameters' defaults; returns its Custom tasks.
    pub fn run_pipeline(&self, pipeline: &Value, arguments: &Map<String, Value>, run_id: &str) -> Vec<Task> {
        let name = pipeline["name"].as_str().expect("a pipeline has a name");
        let mut parameters = Map::new();
        for (k, spec) in pipeline["properties"]["parameters"].as_object().into_iter().flatten() {
            if let Some(default) = spec.get("defaultValue") {
                parameters.insert(k.clone(), default.clone());
            }
        }
        for (k, v) in arguments {
            assert!(parameters.contains_key(k), "{name} has no parameter {k}");
            parameters.insert(k.clone(), v.clone());
        }
        let mut outputs = Map::new();
        let mut tasks = Vec::new();
        for activity in in_dependency_order(&pipeline["properties"]["activities"]) {
            let scope = Scope {
                parameters: &parameters,
                pipeline_name: name,
                run_id,
                item: None,
                outputs: &outputs,
                dataset: None,
            };
            let output = self.run_activity(&activity, &scope, &mut tasks);
            outputs.insert(activity["name"].as_str().unwrap().to_string(), output);
        }
        tasks
    }

    fn run_activity(&self, activity: &Value, scope: &Scope, tasks: &mut Vec<Task>) -> Value {
        match activity["type"].as_str().unwrap() {
            "GetMetadata" => self.get_metadata(activity, scope),
            "ForEach" => {
                let items = evaluate(&activity["typeProperties"]["items"], scope);
                let items = items.as_array().expect("ForEach items evaluate to an array").clone();
                let batch = activity["typeProperties"]["batchCount"].as_u64().unwrap_or(20) as usize;
                let body = activity["typeProperties"]["activities"].as_array().unwrap();
                for chunk in items.chunks(batch.max(1)) {
                    let done: Vec<Vec<Task>> = std::thread::scope(|s| {
                        let handles: Vec<_> = chunk
                            .iter()
                            .map(|item| {
                                s.spawn(move || {
                                    let scope = Scope { item: Some(item), ..*scope };
                                    let mut inner = Vec::new();
                                    for a in body {
                                        self.run_activity(a, &scope, &mut inner);
                                    }
                                    inner
                                })
                            })
                            .collect();
                        handles.into_iter().map(|h| h.join().unwrap()).collect()
                    });
                    tasks.extend(done.into_iter().flatten());
                }
                json!({})
            }
            "Custom" => {
                let type_properties = evaluate(&activity["typeProperties"], scope);
                let activity_json = json!({
                    "name": activity["name"],
                    "type": "Custom",
                    "typeProperties": type_properties,
                });
                let task = self.run_task(&activity_json);
                let output = json!({"exitcode": task.exit_code});
                tasks.push(task);
                output
            }
            other => panic!("activity type {other} is outside what the simulator runs"),
        }
    }

    /// `childItems` (the folder's direct children) and `exists`, as Get Metadata returns them.
    fn get_metadata(&self, activity: &Value, scope: &Scope) -> Value {
        let reference = &activity["typeProperties"]["dataset"];
        let dataset_name = reference["referenceName"].as_str().unwrap();
        let dataset = &self.datasets[dataset_name];
        let mut dataset_parameters = Map::new();
        for (k, spec) in dataset["properties"]["parameters"].as_object().into_iter().flatten() {
            if let Some(default) = spec.get("defaultValue") {
                dataset_parameters.insert(k.clone(), default.clone());
            }
        }
        for (k, v) in reference["parameters"].as_object().into_iter().flatten() {
            dataset_parameters.insert(k.clone(), evaluate(v, scope));
        }
        let dataset_scope = Scope { dataset: Some(&dataset_parameters), ..*scope };
        let location = evaluate(&dataset["properties"]["typeProperties"]["location"], &dataset_scope);
        let container = location["container"].as_str().unwrap();
        let folder = location["folderPath"].as_str().unwrap_or("").trim_matches('/');
        let prefix = if folder.is_empty() { String::new() } else { format!("{folder}/") };
        trust_ca(&self.ca_pem);
        let mut children: Vec<Value> = Vec::new();
        for blob in list(&self.azurite.container_url(container, "")) {
            let Some(rest) = blob.strip_prefix(&prefix) else { continue };
            let child = match rest.split_once('/') {
                Some((dir, _)) => json!({"name": dir, "type": "Folder"}),
                None => json!({"name": rest, "type": "File"}),
            };
            if !children.contains(&child) {
                children.push(child);
            }
        }
        json!({"exists": !children.is_empty(), "childItems": children})
    }

    /// Lays out and runs one task for an evaluated activity, as Batch would.
    pub fn run_task(&self, activity_json: &Value) -> Task {
        let name = activity_json["name"].as_str().unwrap().to_string();
        let n = self.tasks_started.fetch_add(1, Ordering::SeqCst);
        let job = format!("adfv2-{POOL}");
        let task_id = format!("{}-{n}", name.to_ascii_lowercase());
        let task_dir = self.root.join("batch/tasks").join(&job).join(&task_id);
        let wd = task_dir.join("wd");
        std::fs::create_dir_all(&wd).unwrap();

        let type_properties = &activity_json["typeProperties"];
        let folder_path = type_properties["folderPath"].as_str().expect("a Custom activity names its resource folder");
        for (file, bytes) in self.resource_files(folder_path) {
            let path = wd.join(&file);
            std::fs::write(&path, bytes).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::write(wd.join("activity.json"), serde_json::to_vec_pretty(activity_json).unwrap()).unwrap();
        let references = &type_properties["referenceObjects"];
        for (file, key) in [("linkedServices.json", "linkedServices"), ("datasets.json", "datasets")] {
            let list = references.get(key).cloned().unwrap_or_else(|| json!([]));
            std::fs::write(wd.join(file), list.to_string()).unwrap();
        }

        let command = type_properties["command"].as_str().expect("a Custom activity has a command");
        // Batch starts the command line itself, not through a shell: no quoting, no operators.
        assert!(!command.contains(['"', '\'', '&', '|', ';', '$']), "{name}: Batch runs `{command}` without a shell");
        let argv: Vec<&str> = command.split_whitespace().collect();
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..]).current_dir(&wd).env_clear().stdin(Stdio::null());
        cmd.env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        let node_root = self.root.join("batch");
        let batch_env = [
            ("AZ_BATCH_ACCOUNT_NAME", "twinloadbatch".to_string()),
            ("AZ_BATCH_POOL_ID", POOL.to_string()),
            ("AZ_BATCH_NODE_ID", "tvmps_0001".to_string()),
            ("AZ_BATCH_JOB_ID", job),
            ("AZ_BATCH_TASK_ID", task_id),
            ("AZ_BATCH_NODE_ROOT_DIR", node_root.display().to_string()),
            ("AZ_BATCH_NODE_SHARED_DIR", node_root.join("shared").display().to_string()),
            ("AZ_BATCH_TASK_DIR", task_dir.display().to_string()),
            ("AZ_BATCH_TASK_WORKING_DIR", wd.display().to_string()),
        ];
        cmd.envs(batch_env.iter().map(|(k, v)| (*k, v.as_str())));
        cmd.envs(self.node_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the task's command starts");
        let out = wait_bounded(child, TASK_LIMIT);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        std::fs::write(task_dir.join("stderr.txt"), &stderr).unwrap();
        Task {
            activity: name,
            activity_json: activity_json.clone(),
            working_dir: wd,
            exit_code: out.status.code().unwrap_or(-1),
            stderr,
        }
    }

    /// The blobs under `folderPath` (`container/path`), flattened to their file names.
    fn resource_files(&self, folder_path: &str) -> ResourceFiles {
        let mut cache = self.resource_cache.lock();
        if let Some(files) = cache.get(folder_path) {
            return files.clone();
        }
        let (container, folder) = folder_path.split_once('/').unwrap_or((folder_path, ""));
        let container_url = self.azurite.container_url(container, "");
        let prefix = if folder.is_empty() { String::new() } else { format!("{}/", folder.trim_end_matches('/')) };
        trust_ca(&self.ca_pem); // this may be a ForEach's thread
        let files: ResourceFiles = list(&container_url)
            .into_iter()
            .filter(|blob| blob.starts_with(&prefix))
            .map(|blob| {
                let file = blob.rsplit('/').next().unwrap().to_string();
                let bytes = download(&container_url, &blob);
                (file, bytes)
            })
            .collect();
        assert!(!files.is_empty(), "the resource folder {folder_path} is empty");
        cache.insert(folder_path.to_string(), files.clone());
        files
    }
}

/// Top-level activities, each after those it depends on.
fn in_dependency_order(list: &Value) -> Vec<Value> {
    let mut pending: Vec<Value> = list.as_array().expect("activities").clone();
    let mut done: Vec<String> = Vec::new();
    let mut ordered = Vec::new();
    for _ in 0..=pending.len() {
        let (ready, rest): (Vec<Value>, Vec<Value>) = pending.into_iter().partition(|a| {
            a["dependsOn"]
                .as_array()
                .into_iter()
                .flatten()
                .all(|d| done.iter().any(|n| d["activity"].as_str() == Some(n.as_str())))
        });
        done.extend(ready.iter().map(|a| a["name"].as_str().unwrap().to_string()));
        ordered.extend(ready);
        pending = rest;
    }
    assert!(pending.is_empty(), "activities that depend on each other in a cycle: {pending:?}");
    ordered
}
