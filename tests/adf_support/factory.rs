//! The factory's files as committed in config/adf (ADF's git layout: one JSON file per linked
//! service, dataset, credential or pipeline, named after its `name`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

pub fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// Every JSON file in a folder of config/, by its `name` (which must be the file's name).
pub fn by_name(folder: &str) -> BTreeMap<String, Value> {
    let dir = config_dir().join(folder);
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

/// Every activity of a pipeline, ForEach bodies included.
pub fn activities(list: &Value, out: &mut Vec<Value>) {
    for a in list.as_array().expect("activities is an array") {
        out.push(a.clone());
        if let Some(inner) = a.pointer("/typeProperties/activities") {
            activities(inner, out);
        }
    }
}
