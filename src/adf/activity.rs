//! ADF's `activity.json`: the Custom activity's `typeProperties.extendedProperties`, read as
//! twinload settings (FIELD.md §2). Expressions arrive evaluated, usually as strings.
//!
//! Accepted properties ([`accepted_properties`] is the list a deployment test checks against):
//! - `input`: a path or Blob URL, or an array of them (relative paths are relative to the
//!   activity.json's folder, the task's working directory);
//! - `token` (a static bearer token; send it as a SecureString);
//! - every config key of `config/twinload.example.toml` in camelCase: `endpoint`, `mapping`,
//!   `archive`, `mode`, `limits`, `shard`, `phase`, `rateShare`, `identityClientId`, `model`,
//!   `writers`, `retry` (`{"maxAttempts": 4}`), …;
//! - the reference prototype's `ADT`, `Storage`, `Container`, `File`, `Mapping`: "patch twin
//!   `File` from blob `File` in `Storage`/`Container` with mapping file `Mapping`".
//!
//! A `{"type":"SecureString","value":"…"}` is accepted for any property; its value is kept out
//! of every message twinload writes ([`super::Redactor`]). Numbers and booleans given as strings
//! ("8", "true") are read as such when the setting wants them.

use std::path::Path;

use serde_json::{Map, Value};

use crate::config::{FileConfig, SecretToken};

/// The top-level config keys (`FileConfig`'s fields) an extended property may set, in
/// snake_case. A unit test checks each against `FileConfig`, so this list cannot drift.
pub const CONFIG_KEYS: &[&str] = &[
    "endpoint",
    "auth",
    "ca_cert",
    "limits",
    "writers",
    "model_batch_size",
    "mode",
    "request_timeout_s",
    "max_response_bytes",
    "deadline_s",
    "no_progress_timeout_s",
    "max_server_wait_s",
    "shutdown_grace_s",
    "retry",
    "adaptive",
    "output",
    "chaos",
    "metrics",
    "ledger",
    "source",
    "verify",
    "prune",
    "prune_scope",
    "max_deletes",
    "import_job",
    "mapping",
    "model",
    "shard",
    "phase",
    "twin_wait_s",
    "model_check_max",
    "rate_share",
    "archive",
    "identity_client_id",
    "credential",
    "blob_page_size",
];

/// Extended properties that are not config keys.
pub const INPUT_PROPERTY: &str = "input";
pub const TOKEN_PROPERTY: &str = "token";
/// The reference prototype's properties (Azure-Samples/azuredigitaltwins-batchupdate).
pub const PROTOTYPE_PROPERTIES: [&str; 5] = ["ADT", "Storage", "Container", "File", "Mapping"];

/// Every extended property name twinload accepts: what a pipeline may set.
pub fn accepted_properties() -> Vec<String> {
    let mut names: Vec<String> = vec![INPUT_PROPERTY.into(), TOKEN_PROPERTY.into()];
    names.extend(CONFIG_KEYS.iter().map(|k| snake_to_camel(k)));
    names.extend(PROTOTYPE_PROPERTIES.iter().map(|p| p.to_string()));
    names
}

/// What activity.json asks of twinload.
#[derive(Debug, Default)]
pub struct ActivitySettings {
    /// Config keys in snake_case, to merge over the config file.
    pub config: Value,
    /// Inputs (paths made absolute against the activity's folder; URLs as given).
    pub inputs: Vec<String>,
    pub token: Option<SecretToken>,
    /// The values of SecureString properties (never to be printed).
    pub secrets: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ActivityError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not valid JSON: {message}")]
    Json { path: String, message: String },
    #[error("{path}: {message}")]
    Shape { path: String, message: String },
    #[error("{path}: extended property {property}: {message}")]
    Property { path: String, property: String, message: String },
}

pub fn read(path: &Path) -> Result<ActivitySettings, ActivityError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ActivityError::Read { path: shown.clone(), source })?;
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    parse(&bytes, &shown, folder)
}

/// Parses activity.json's bytes; `folder` is where relative paths are taken from.
pub fn parse(bytes: &[u8], path: &str, folder: &Path) -> Result<ActivitySettings, ActivityError> {
    let text = String::from_utf8_lossy(bytes);
    let doc: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| ActivityError::Json { path: path.to_string(), message: e.to_string() })?;
    let shape = |message: &str| ActivityError::Shape { path: path.to_string(), message: message.to_string() };
    let props = match doc.pointer("/typeProperties/extendedProperties") {
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err(shape("typeProperties.extendedProperties must be an object")),
        None => Map::new(),
    };
    let bad = |property: &str, message: String| ActivityError::Property {
        path: path.to_string(),
        property: property.to_string(),
        message,
    };
    let mut settings = ActivitySettings { config: Value::Object(Map::new()), ..Default::default() };
    let mut config = Map::new();
    let mut prototype = Map::new();
    for (name, value) in props {
        let value = unwrap_secure(&name, value, &mut settings.secrets).map_err(|m| bad(&name, m))?;
        if PROTOTYPE_PROPERTIES.contains(&name.as_str()) {
            prototype.insert(name, value);
            continue;
        }
        match name.as_str() {
            INPUT_PROPERTY => settings.inputs = input_list(&value, folder).map_err(|m| bad(&name, m))?,
            TOKEN_PROPERTY => match value {
                Value::String(t) if !t.is_empty() => settings.token = Some(SecretToken::new(t)),
                _ => return Err(bad(&name, "must be a string (send it as a SecureString)".into())),
            },
            // ADF evaluates an unset optional parameter to "": the setting is not given.
            _ if value.as_str() == Some("") => continue,
            _ => {
                let key = camel_to_snake(&name);
                if !CONFIG_KEYS.contains(&key.as_str()) {
                    return Err(bad(
                        &name,
                        format!("is not a twinload setting; accepted: {}", accepted_properties().join(", ")),
                    ));
                }
                let mut value = snake_keys(value);
                if key == "mapping" || key == "ca_cert" {
                    if let Value::String(p) = &value {
                        value = Value::String(absolute(p, folder));
                    }
                }
                let value = typed_for(&key, value).map_err(|m| bad(&name, m))?;
                config.insert(key, value);
            }
        }
    }
    if !prototype.is_empty() {
        prototype_settings(&prototype, folder, &mut config, &mut settings.inputs)
            .map_err(|(property, message)| bad(property, message))?;
    }
    settings.config = Value::Object(config);
    Ok(settings)
}

/// A SecureString's value (remembered as a secret), or the value as it is.
fn unwrap_secure(name: &str, value: Value, secrets: &mut Vec<String>) -> Result<Value, String> {
    let Value::Object(map) = &value else { return Ok(value) };
    if map.get("type").and_then(Value::as_str) != Some("SecureString") {
        return Ok(value);
    }
    match map.get("value") {
        Some(Value::String(secret)) => {
            if !secret.is_empty() {
                // At once: an error about this very setting (a bad value) must not echo it.
                crate::redact::register(secret);
                secrets.push(secret.clone());
            }
            Ok(Value::String(secret.clone()))
        }
        _ => Err(format!("{name} is a SecureString without a string \"value\"")),
    }
}

/// The value as the setting wants it: as given if `FileConfig` reads it, else with strings that
/// hold numbers or booleans ("8", "0.25", "true") read as such (ADF evaluates expressions to
/// strings). The error is `FileConfig`'s, which says what type was expected.
fn typed_for(key: &str, value: Value) -> Result<Value, String> {
    let attempt = |v: &Value| {
        let mut one = Map::new();
        one.insert(key.to_string(), v.clone());
        FileConfig::from_value(Value::Object(one), "activity.json").map(|_| ()).map_err(|e| match e {
            crate::config::ConfigError::Parse { message, .. } => message,
            other => other.to_string(),
        })
    };
    let first = match attempt(&value) {
        Ok(()) => return Ok(value),
        Err(e) => e,
    };
    let coerced = coerce_strings(value);
    attempt(&coerced).map(|()| coerced).map_err(|_| first)
}

fn coerce_strings(value: Value) -> Value {
    match value {
        Value::String(s) => match serde_json::from_str::<Value>(s.trim()) {
            Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
            _ => Value::String(s),
        },
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, coerce_strings(v))).collect()),
        other => other,
    }
}

/// `input`: a string or an array of strings.
fn input_list(value: &Value, folder: &Path) -> Result<Vec<String>, String> {
    let one = |v: &Value| match v {
        Value::String(s) if !s.trim().is_empty() => Ok(absolute(s.trim(), folder)),
        _ => Err("must be a path or Blob URL, or an array of them".to_string()),
    };
    match value {
        Value::Array(items) if !items.is_empty() => items.iter().map(one).collect(),
        Value::Array(_) => Err("is an empty array; give at least one path or Blob URL".into()),
        other => Ok(vec![one(other)?]),
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("https://") || s.starts_with("http://")
}

/// A local path relative to the activity's folder made absolute; URLs and absolute paths as given.
fn absolute(s: &str, folder: &Path) -> String {
    if is_url(s) || Path::new(s).is_absolute() {
        return s.to_string();
    }
    folder.join(s).display().to_string()
}

/// The prototype's properties: `ADT` is the endpoint; `Storage` an account name, a Blob
/// service URL, or (the local debug form) a `file://` URL or absolute path of a folder standing
/// for the account; `Container`/`File` name the blob, which is both the input and the twin id;
/// `Mapping` is the mapping file. Without a `model` the mapping patches the existing twin.
fn prototype_settings(
    props: &Map<String, Value>,
    folder: &Path,
    config: &mut Map<String, Value>,
    inputs: &mut Vec<String>,
) -> Result<(), (&'static str, String)> {
    let text = |name: &'static str| -> Result<Option<String>, (&'static str, String)> {
        match props.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
            Some(_) => Err((name, "must be a non-empty string".into())),
        }
    };
    if let Some(adt) = text("ADT")? {
        config.entry("endpoint").or_insert(Value::String(adt));
    }
    if let Some(mapping) = text("Mapping")? {
        config.entry("mapping").or_insert(Value::String(absolute(&mapping, folder)));
    }
    let (storage, container, file) = (text("Storage")?, text("Container")?, text("File")?);
    if inputs.is_empty() {
        match (storage, container, file) {
            (Some(storage), Some(container), Some(file)) => inputs.push(prototype_blob(&storage, &container, &file)),
            (None, _, _) => {
                return Err((
                    "Storage",
                    "is missing; the prototype's properties need Storage, Container and File (or give `input`)".into(),
                ))
            }
            (_, None, _) => {
                return Err((
                    "Container",
                    "is missing; the prototype's properties need Storage, Container and File (or give `input`)".into(),
                ))
            }
            (_, _, None) => {
                return Err((
                    "File",
                    "is missing; the prototype's properties need Storage, Container and File (or give `input`)".into(),
                ))
            }
        }
    }
    Ok(())
}

/// Where the prototype's blob is: `https://{account}.blob.core.windows.net/{container}/{file}`,
/// or under a Blob service URL, or under a local folder.
pub fn prototype_blob(storage: &str, container: &str, file: &str) -> String {
    let container = container.trim_matches('/');
    let file = file.trim_start_matches('/');
    if let Some(local) = storage.strip_prefix("file://") {
        return Path::new(local).join(container).join(file).display().to_string();
    }
    if Path::new(storage).is_absolute() {
        return Path::new(storage).join(container).join(file).display().to_string();
    }
    if is_url(storage) {
        return format!("{}/{container}/{file}", storage.trim_end_matches('/'));
    }
    format!("https://{storage}.blob.core.windows.net/{container}/{file}")
}

pub fn camel_to_snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if !out.is_empty() {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

pub fn snake_to_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A nested settings object (`retry`, `adaptive`, …) with its keys in snake_case.
fn snake_keys(value: Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (camel_to_snake(&k), snake_keys(v))).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn activity(props: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"name":"Load","type":"Custom","typeProperties":{"command":"twinload load","extendedProperties":props}}))
            .unwrap()
    }

    fn parse_props(props: Value) -> Result<ActivitySettings, ActivityError> {
        parse(&activity(props), "wd/activity.json", Path::new("/task/wd"))
    }

    #[test]
    fn every_named_property_is_read() {
        let s = parse_props(json!({
            "endpoint": "https://x.api.wcus.digitaltwins.azure.net",
            "input": ["fleet.ndjson", "https://acct.blob.core.windows.net/in/part-1.ndjson"],
            "mapping": "map.json",
            "archive": "https://acct.blob.core.windows.net/done",
            "mode": "create-only",
            "limits": "adt-2021",
            "shard": "1/4",
            "phase": "twins",
            "rateShare": "0.25",
            "identityClientId": "00000000-0000-0000-0000-000000000001",
            "model": "dtmi:x:A;1",
            "writers": "8",
            "retry": {"maxAttempts": 4, "targetGraceS": "12"},
            "twinWaitS": 30
        }))
        .unwrap();
        assert_eq!(s.inputs, vec!["/task/wd/fleet.ndjson", "https://acct.blob.core.windows.net/in/part-1.ndjson"]);
        let c = &s.config;
        assert_eq!(c["endpoint"], "https://x.api.wcus.digitaltwins.azure.net");
        assert_eq!(c["mapping"], "/task/wd/map.json");
        assert_eq!(c["archive"], "https://acct.blob.core.windows.net/done");
        assert_eq!(c["mode"], "create-only");
        assert_eq!(c["limits"], "adt-2021");
        assert_eq!(c["shard"], "1/4");
        assert_eq!(c["phase"], "twins");
        assert_eq!(c["rate_share"], 0.25, "a number given as a string is read as a number");
        assert_eq!(c["identity_client_id"], "00000000-0000-0000-0000-000000000001");
        assert_eq!(c["model"], "dtmi:x:A;1");
        assert_eq!(c["writers"], 8);
        assert_eq!(c["retry"], json!({"max_attempts": 4, "target_grace_s": 12}));
        assert_eq!(c["twin_wait_s"], 30);
        FileConfig::from_value(s.config.clone(), "t").expect("a FileConfig reads it");
    }

    #[test]
    fn input_may_be_one_string() {
        let s = parse_props(json!({"input": "/data/twins", "archive": "", "model": ""})).unwrap();
        assert_eq!(s.inputs, vec!["/data/twins"]);
        assert_eq!(s.config, json!({}), "an empty string (an unset ADF parameter) sets nothing");
    }

    #[test]
    fn secure_strings_are_unwrapped_and_remembered() {
        let s = parse_props(json!({"token": {"type":"SecureString","value":"tok-123"}, "endpoint": {"type":"SecureString","value":"https://e"}})).unwrap();
        assert_eq!(s.token.as_ref().map(SecretToken::expose), Some("tok-123"));
        assert_eq!(s.config["endpoint"], "https://e");
        assert_eq!(s.secrets, vec!["tok-123", "https://e"]);
        let err = parse_props(json!({"token": {"type":"SecureString"}})).unwrap_err().to_string();
        assert!(err.contains("token") && err.contains("SecureString"), "{err}");
    }

    #[test]
    fn errors_name_the_property() {
        for (props, property, words) in [
            (json!({"writers": "many"}), "writers", "invalid"),
            (json!({"retry": {"maxAtempts": 3}}), "retry", "max_atempts"),
            (json!({"colour": "red"}), "colour", "not a twinload setting"),
            (json!({"input": []}), "input", "empty"),
            (json!({"input": 5}), "input", "path or Blob URL"),
            (json!({"phase": "edges"}), "phase", "unknown variant"),
            (json!({"ADT": "https://x", "Container": "c", "File": "f"}), "Storage", "missing"),
        ] {
            let err = parse_props(props.clone()).unwrap_err().to_string();
            assert!(
                err.contains("wd/activity.json")
                    && err.contains(&format!("extended property {property}"))
                    && err.contains(words),
                "{props}: {err}"
            );
        }
        let err = parse(b"{not json", "a.json", Path::new(".")).unwrap_err().to_string();
        assert!(err.contains("a.json") && err.contains("not valid JSON"), "{err}");
    }

    #[test]
    fn the_prototypes_properties_mean_patch_file_from_its_blob() {
        let s = parse_props(json!({
            "ADT": "https://dthack.api.wcus.digitaltwins.azure.net",
            "Storage": "dthackstorage",
            "Container": "inputfiles",
            "File": "org1",
            "Mapping": "organizationtwinsmapping.json"
        }))
        .unwrap();
        assert_eq!(s.inputs, vec!["https://dthackstorage.blob.core.windows.net/inputfiles/org1"]);
        assert_eq!(s.config["endpoint"], "https://dthack.api.wcus.digitaltwins.azure.net");
        assert_eq!(s.config["mapping"], "/task/wd/organizationtwinsmapping.json");
        assert!(s.config.get("model").is_none(), "no model: the mapping patches the existing twin");
        assert_eq!(
            prototype_blob("https://acct.blob.core.windows.net/", "c", "f"),
            "https://acct.blob.core.windows.net/c/f"
        );
        assert_eq!(
            prototype_blob("http://127.0.0.1:10000/devstoreaccount1", "c", "f"),
            "http://127.0.0.1:10000/devstoreaccount1/c/f"
        );
        assert_eq!(prototype_blob("file:///data/acct", "c", "f"), "/data/acct/c/f");
    }

    #[test]
    fn every_config_key_is_a_file_config_key_and_others_are_not() {
        for key in CONFIG_KEYS {
            let mut one = Map::new();
            one.insert(key.to_string(), json!(null));
            let result = FileConfig::from_value(Value::Object(one), "t");
            if let Err(e) = result {
                assert!(!e.to_string().contains("unknown field"), "{key}: {e}");
            }
        }
        let err = FileConfig::from_value(json!({"colour": 1}), "t").unwrap_err().to_string();
        assert!(err.contains("unknown field"), "the check above can fail: {err}");
        assert_eq!(camel_to_snake("identityClientId"), "identity_client_id");
        assert_eq!(snake_to_camel("identity_client_id"), "identityClientId");
    }

    #[test]
    fn the_example_config_lists_no_key_the_activity_cannot_set() {
        // Every top-level key of config/twinload.example.toml, set or commented out.
        let text = include_str!("../../config/twinload.example.toml");
        let mut section: Option<String> = None;
        let mut top_level_keys = 0;
        for line in text.lines() {
            let line = line.trim_start_matches('#').trim();
            if line.starts_with('[') && line.ends_with(']') {
                let name = line.trim_matches(|c| c == '[' || c == ']').to_string();
                assert!(CONFIG_KEYS.contains(&name.as_str()), "[{name}]");
                section = Some(name);
                continue;
            }
            let Some((key, _)) = line.split_once(" = ") else { continue };
            if section.is_none() && !key.contains(' ') {
                assert!(CONFIG_KEYS.contains(&key), "{key}");
                top_level_keys += 1;
            }
        }
        assert!(top_level_keys >= 10, "the scan found the keys ({top_level_keys})");
        for key in CONFIG_KEYS {
            assert!(
                text.contains(&format!("{key} = ")) || text.contains(&format!("[{key}]")),
                "{key} is not in the example"
            );
        }
    }
}
