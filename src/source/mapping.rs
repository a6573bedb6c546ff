//! The reference prototype's mapping file (FIELD.md §1): which source column or document key
//! becomes which twin property, and of what type.
//!
//! ```json
//! {"mapping":[{"Source":"$FILENAME","Target":"/AssetId","TargetType":"string"},
//!             {"Source":"Division","Target":"/Name","TargetType":"string"}]}
//! ```
//!
//! `Source` is a key of the document (or a CSV column); `$FILENAME` is the input unit's short
//! name (a file or blob name without folders). `Target` is a JSON Patch path. `TargetType` is
//! converted as the prototype does (`bool/int/double/float.Parse`, `DateTime.Parse`, `date` is the
//! date part, `duration` is `int.Parse`, which is odd but what users' files rely on); anything else
//! is a string. Two deliberate differences: `date` is written as `YYYY-MM-DD` (the DTDL `date`
//! form ADT accepts; .NET wrote a midnight DateTime), and `datetime` as RFC 3339.
//!
//! A mapped row becomes either a JSON Patch of an existing twin (`add` operations, the
//! prototype's behaviour) or, when a model is known, the body of a full twin.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

/// The pseudo-source that stands for the input unit's short name.
pub const FILENAME_SOURCE: &str = "$FILENAME";

/// A mapping file, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// Where it was read from, for errors.
    pub name: String,
    pub rules: Vec<Rule>,
}

/// One `{"Source","Target","TargetType"}` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub source: String,
    /// The JSON Patch path, e.g. `/Name` or `/Location/City`.
    pub target: String,
    pub target_type: TargetType,
}

/// The types the prototype converts to; anything else in the file is a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetType {
    String,
    Bool,
    Int,
    Double,
    DateTime,
    Date,
    Duration,
}

impl TargetType {
    fn from_name(name: &str) -> TargetType {
        match name.to_ascii_lowercase().as_str() {
            "bool" | "boolean" => TargetType::Bool,
            "int" | "integer" | "long" => TargetType::Int,
            "double" | "float" => TargetType::Double,
            "datetime" => TargetType::DateTime,
            "date" => TargetType::Date,
            "duration" => TargetType::Duration,
            _ => TargetType::String,
        }
    }

    fn name(self) -> &'static str {
        match self {
            TargetType::String => "string",
            TargetType::Bool => "bool",
            TargetType::Int => "int",
            TargetType::Double => "double",
            TargetType::DateTime => "datetime",
            TargetType::Date => "date",
            TargetType::Duration => "duration",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    mapping: Vec<RuleFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(rename = "Source")]
    source: String,
    #[serde(rename = "Target")]
    target: String,
    #[serde(rename = "TargetType", default)]
    target_type: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("cannot read the mapping file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the mapping file {path} is not valid: {message}. Expected {{\"mapping\":[{{\"Source\":\"Division\",\"Target\":\"/Name\",\"TargetType\":\"string\"}}]}}")]
    Invalid { path: String, message: String },
}

impl Mapping {
    pub fn load(path: &Path) -> Result<Mapping, MappingError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| MappingError::Read { path: name.clone(), source })?;
        Mapping::parse(&name, &bytes)
    }

    /// Parses a mapping file's bytes (a UTF-8 BOM is allowed; the prototype's files have one).
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Mapping, MappingError> {
        let invalid = |message: String| MappingError::Invalid { path: name.to_string(), message };
        let text = std::str::from_utf8(bytes).map_err(|_| invalid("it is not UTF-8 text".into()))?;
        let file: MappingFile =
            serde_json::from_str(text.trim_start_matches('\u{feff}')).map_err(|e| invalid(e.to_string()))?;
        if file.mapping.is_empty() {
            return Err(invalid("\"mapping\" is empty; add at least one rule".into()));
        }
        let mut rules = Vec::with_capacity(file.mapping.len());
        for (i, r) in file.mapping.into_iter().enumerate() {
            if r.source.is_empty() {
                return Err(invalid(format!("rule {} has an empty \"Source\"", i + 1)));
            }
            if !r.target.starts_with('/') || r.target.len() < 2 {
                return Err(invalid(format!(
                    "rule {} (Source {}) has Target \"{}\"; a Target is a JSON Patch path such as \"/Name\"",
                    i + 1,
                    r.source,
                    r.target
                )));
            }
            let target_type = TargetType::from_name(r.target_type.as_deref().unwrap_or("string"));
            rules.push(Rule { source: r.source, target: r.target, target_type });
        }
        Ok(Mapping { name: name.to_string(), rules })
    }

    /// Applies the rules to one record. `lookup` gives a source's value (`None` when the record
    /// has no such key or column); `unit_name` answers `$FILENAME`. Each `(path, value)` is one
    /// `add`. A JSON `null` (or an empty CSV cell for a non-string type) sets nothing. The error
    /// names the source, the value and what to fix.
    pub fn apply<'v>(
        &self,
        unit_name: &str,
        lookup: impl Fn(&str) -> Option<Cell<'v>>,
    ) -> Result<Vec<(String, Value)>, String> {
        let mut ops = Vec::with_capacity(self.rules.len());
        for rule in &self.rules {
            let cell = if rule.source == FILENAME_SOURCE {
                Cell::Text(unit_name.to_string().into())
            } else {
                lookup(&rule.source).ok_or_else(|| {
                    format!(
                        "\"{}\" is missing (the mapping rule for {} needs it); add it or fix the mapping's Source",
                        rule.source, rule.target
                    )
                })?
            };
            if let Some(value) = convert(&cell, rule.target_type)
                .map_err(|why| format!("\"{}\" (for {}): {why}", rule.source, rule.target))?
            {
                ops.push((rule.target.clone(), value));
            }
        }
        Ok(ops)
    }
}

/// A source value: text (a CSV cell) or a JSON value (a document's key).
#[derive(Debug, Clone)]
pub enum Cell<'v> {
    Text(std::borrow::Cow<'v, str>),
    Json(&'v Value),
}

/// Converts one value to the target type; `Ok(None)` means "nothing to set".
pub fn convert(cell: &Cell, to: TargetType) -> Result<Option<Value>, String> {
    let text: std::borrow::Cow<str> = match cell {
        Cell::Json(Value::Null) => return Ok(None),
        Cell::Json(Value::String(s)) => s.as_str().into(),
        Cell::Json(v @ (Value::Bool(_) | Value::Number(_))) => v.to_string().into(),
        Cell::Json(v) if to == TargetType::String => return Ok(Some(Value::String(v.to_string()))),
        Cell::Json(v) => return Err(format!("{} is not a valid {}", short(&v.to_string()), to.name())),
        Cell::Text(t) => t.clone(),
    };
    if to == TargetType::String {
        return Ok(Some(Value::String(text.into_owned())));
    }
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let bad = || format!("\"{}\" is not a valid {}{}", short(t), to.name(), hint(to));
    Ok(Some(match to {
        TargetType::String => unreachable!("handled above"),
        TargetType::Bool => match t.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(bad()),
        },
        // .NET int.Parse: a 32-bit integer, optional sign, surrounding spaces.
        TargetType::Int | TargetType::Duration => Value::from(t.parse::<i32>().map_err(|_| bad())?),
        TargetType::Double => {
            let v = t.parse::<f64>().map_err(|_| bad())?;
            // JSON has no NaN or infinity; ADT would reject them.
            serde_json::Number::from_f64(v).map(Value::Number).ok_or_else(bad)?
        }
        TargetType::DateTime => Value::String(parse_datetime(t).ok_or_else(bad)?),
        TargetType::Date => Value::String(parse_date(t).ok_or_else(bad)?),
    }))
}

fn hint(to: TargetType) -> &'static str {
    match to {
        TargetType::Bool => " (use true or false)",
        TargetType::Int | TargetType::Duration => " (use a whole number between -2147483648 and 2147483647)",
        TargetType::Double => " (use a number such as 21.5)",
        TargetType::DateTime => " (use e.g. 2024-05-01T12:00:00Z or 2024-05-01 12:00:00)",
        TargetType::Date => " (use e.g. 2024-05-01)",
        TargetType::String => "",
    }
}

fn short(text: &str) -> String {
    let mut s: String = text.chars().take(60).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

/// RFC 3339, or a date and time without offset (taken as UTC, as a Batch node runs), or a date.
fn parse_datetime(t: &str) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(dt) = time::OffsetDateTime::parse(t, &Rfc3339) {
        return dt.format(&Rfc3339).ok();
    }
    let formats = [
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]"),
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]"),
    ];
    for f in formats {
        if let Ok(dt) = time::PrimitiveDateTime::parse(t, &f) {
            return dt.assume_utc().format(&Rfc3339).ok();
        }
    }
    let date = time::Date::parse(t, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    date.midnight().assume_utc().format(&Rfc3339).ok()
}

/// The date part of anything [`parse_datetime`] reads.
fn parse_date(t: &str) -> Option<String> {
    let full = parse_datetime(t)?;
    Some(full[..10].to_string())
}

/// The `add` operations as a JSON Patch body.
pub fn patch_body(ops: &[(String, Value)]) -> Value {
    Value::Array(
        ops.iter().map(|(path, value)| serde_json::json!({"op": "add", "path": path, "value": value})).collect(),
    )
}

/// The operations applied to an empty twin of `model`: the body of a full twin. A nested path
/// (`/Location/City`) builds nested objects.
pub fn twin_body(model: &str, ops: &[(String, Value)]) -> Result<Value, String> {
    let mut root = Map::new();
    root.insert("$metadata".into(), serde_json::json!({ "$model": model }));
    for (path, value) in ops {
        let parts: Vec<String> = path[1..].split('/').map(|p| p.replace("~1", "/").replace("~0", "~")).collect();
        let mut at = &mut root;
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() || part.starts_with('$') {
                return Err(format!("Target {path} is not a twin property path; use e.g. /Name"));
            }
            if i + 1 == parts.len() {
                at.insert(part.clone(), value.clone());
            } else {
                let next = at.entry(part.clone()).or_insert_with(|| Value::Object(Map::new()));
                at = next
                    .as_object_mut()
                    .ok_or_else(|| format!("Target {path} goes inside {part}, which another rule set to a value"))?;
            }
        }
    }
    Ok(Value::Object(root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(s: &str) -> Cell<'_> {
        Cell::Text(s.into())
    }

    #[test]
    fn the_prototypes_mapping_file_parses_with_a_bom() {
        let bytes = "\u{feff}{\"mapping\":[{\"Source\":\"$FILENAME\",\"Target\":\"/AssetId\",\"TargetType\":\"string\"},{\"Source\":\"Division\",\"Target\":\"/Name\",\"TargetType\":\"string\"}]}";
        let m = Mapping::parse("organizationtwinsmapping.json", bytes.as_bytes()).unwrap();
        assert_eq!(m.rules.len(), 2);
        assert_eq!(m.rules[0].source, "$FILENAME");
        let doc = json!({"OrgID": "org1", "Division": "Sales"});
        let ops = m.apply("org1", |k| doc.get(k).map(Cell::Json)).unwrap();
        assert_eq!(ops, vec![("/AssetId".to_string(), json!("org1")), ("/Name".to_string(), json!("Sales"))]);
        assert_eq!(
            patch_body(&ops),
            json!([{"op":"add","path":"/AssetId","value":"org1"},{"op":"add","path":"/Name","value":"Sales"}])
        );
    }

    #[test]
    fn every_type_converts_as_the_prototype_does() {
        let c = |v: &str, t| convert(&text(v), t).unwrap().unwrap();
        assert_eq!(c("True", TargetType::Bool), json!(true));
        assert_eq!(c(" false ", TargetType::Bool), json!(false));
        assert_eq!(c("-42", TargetType::Int), json!(-42));
        assert_eq!(c("90", TargetType::Duration), json!(90), "duration is int.Parse in the prototype");
        assert_eq!(c("21.5", TargetType::Double), json!(21.5));
        assert_eq!(c("2024-05-01 12:30:00", TargetType::DateTime), json!("2024-05-01T12:30:00Z"));
        assert_eq!(c("2024-05-01T12:30:00+02:00", TargetType::DateTime), json!("2024-05-01T12:30:00+02:00"));
        assert_eq!(c("2024-05-01T23:10:00Z", TargetType::Date), json!("2024-05-01"));
        assert_eq!(c("0042", TargetType::String), json!("0042"), "strings stay as written");
        assert_eq!(convert(&Cell::Json(&json!(7)), TargetType::Int).unwrap(), Some(json!(7)));
        assert_eq!(convert(&Cell::Json(&json!(null)), TargetType::Int).unwrap(), None);
        assert_eq!(convert(&text(""), TargetType::Double).unwrap(), None, "an empty cell sets nothing");
        assert_eq!(TargetType::from_name("Float"), TargetType::Double);
        assert_eq!(TargetType::from_name("whatever"), TargetType::String);
    }

    #[test]
    fn bad_values_say_which_source_and_what_to_use() {
        let m = Mapping::parse("m.json", br#"{"mapping":[{"Source":"Floors","Target":"/Floors","TargetType":"int"}]}"#)
            .unwrap();
        let err = m.apply("b1", |_| Some(text("three"))).unwrap_err();
        assert!(err.contains("Floors") && err.contains("three") && err.contains("whole number"), "{err}");
        let err = m.apply("b1", |_| None).unwrap_err();
        assert!(err.contains("\"Floors\" is missing"), "{err}");
        for bad in ["1e400", "NaN"] {
            assert!(convert(&text(bad), TargetType::Double).is_err(), "{bad}");
        }
        assert!(convert(&text("3000000000"), TargetType::Int).is_err(), "int is 32-bit, as int.Parse");
        assert!(convert(&text("yes"), TargetType::Bool).is_err());
        assert!(convert(&text("May 1st"), TargetType::DateTime).is_err());
    }

    #[test]
    fn bad_mapping_files_name_the_file_and_rule() {
        let err = Mapping::parse("m.json", br#"{"mapping":[{"Source":"A","Target":"Name"}]}"#).unwrap_err().to_string();
        assert!(err.contains("m.json") && err.contains("rule 1") && err.contains("JSON Patch path"), "{err}");
        let err = Mapping::parse("m.json", br#"{"maping":[]}"#).unwrap_err().to_string();
        assert!(err.contains("m.json") && err.contains("maping"), "{err}");
    }

    #[test]
    fn full_twin_bodies_nest_paths() {
        let ops = vec![("/Name".to_string(), json!("a")), ("/Location/City".to_string(), json!("Oslo"))];
        let body = twin_body("dtmi:x:A;1", &ops).unwrap();
        assert_eq!(body, json!({"$metadata":{"$model":"dtmi:x:A;1"},"Name":"a","Location":{"City":"Oslo"}}));
        assert!(twin_body("dtmi:x:A;1", &[("/$dtId".to_string(), json!("x"))]).is_err());
    }
}
