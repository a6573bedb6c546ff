//! ADF's `outputs.json`: the run summary as the activity's `customOutput`. ADF takes at most
//! 2 MB, so the summary is trimmed to stay under [`MAX_OUTPUTS_BYTES`]: the plan's detail goes
//! first, then the largest maps keep their biggest entries, and as a last resort only the
//! outcome and counts remain. `trimmed` says what was cut.

use std::path::Path;

use serde_json::{Map, Value};

/// ADF's limit for outputs.json is 2 MB; keep a margin for the file system and ADF's wrapper.
pub const MAX_OUTPUTS_BYTES: usize = 2_000_000 - 64 * 1024;
/// Entries a trimmed map keeps (the largest counts first).
pub const TRIMMED_MAP_ENTRIES: usize = 100;

/// The summary, trimmed under `max_bytes` of compact JSON.
pub fn trimmed(summary: Value, max_bytes: usize) -> Value {
    let size = |v: &Value| serde_json::to_vec(v).map_or(usize::MAX, |b| b.len());
    if size(&summary) <= max_bytes {
        return summary;
    }
    let Value::Object(mut map) = summary else {
        return serde_json::json!({"trimmed": "the summary was not an object"});
    };
    let mut cut: Vec<String> = Vec::new();
    if map.remove("plan").is_some() {
        cut.push("plan".into());
    }
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        if size(&Value::Object(map.clone())) <= max_bytes {
            break;
        }
        if let Some(Value::Object(inner)) = map.get(&key) {
            if inner.len() > TRIMMED_MAP_ENTRIES {
                let total = inner.len();
                map.insert(key.clone(), Value::Object(largest(inner, TRIMMED_MAP_ENTRIES)));
                cut.push(format!("{key}: kept the {TRIMMED_MAP_ENTRIES} largest of {total} entries"));
            }
        }
    }
    map.insert("trimmed".into(), Value::from(cut.clone()));
    let value = Value::Object(map.clone());
    if size(&value) <= max_bytes {
        return value;
    }
    // Last resort: the scalars (outcome, exit code, totals) and the per-kind counts.
    let mut core: Map<String, Value> = map.into_iter().filter(|(k, v)| !v.is_object() || k == "items").collect();
    core.retain(|_, v| size(v) < max_bytes / 4);
    cut.push("everything but the outcome, exit code, totals and item counts".into());
    core.insert("trimmed".into(), Value::from(cut));
    Value::Object(core)
}

/// The entries with the largest numbers (ties by key), then anything not numeric.
fn largest(map: &Map<String, Value>, keep: usize) -> Map<String, Value> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| {
        let n = |v: &Value| v.as_f64().unwrap_or(f64::NEG_INFINITY);
        n(b.1).total_cmp(&n(a.1)).then_with(|| a.0.cmp(b.0))
    });
    entries.into_iter().take(keep).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Writes outputs.json (compact JSON) with the secrets redacted.
pub fn write(path: &Path, summary: Value, redactor: &super::Redactor) -> std::io::Result<()> {
    let value = trimmed(summary, MAX_OUTPUTS_BYTES);
    let text = serde_json::to_string(&value).map_err(std::io::Error::other)?;
    let text = redactor.redact(&text);
    // A redaction can only shorten or keep secrets' length small; check the real size anyway.
    if text.len() > MAX_OUTPUTS_BYTES {
        return std::fs::write(path, "{\"trimmed\":\"the summary did not fit in 2 MB\"}");
    }
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn small_summaries_are_kept_whole() {
        let s = json!({"outcome":"completed","exit_code":0,"plan":{"counts":{}}});
        assert_eq!(trimmed(s.clone(), MAX_OUTPUTS_BYTES), s);
    }

    #[test]
    fn huge_dead_letter_maps_are_trimmed_under_two_megabytes() {
        let reasons: Map<String, Value> =
            (0..200_000u64).map(|i| (format!("reason_{i:06}_{}", "x".repeat(20)), Value::from(i))).collect();
        let s = json!({
            "outcome": "completed_with_dead_letters",
            "exit_code": 3,
            "items": {"twins": {"landed": 1, "dead_lettered": 18_446_744_073_709_551_615u64}},
            "dead_letters_by_reason": reasons,
            "plan": {"detail": "y".repeat(100_000)}
        });
        assert!(serde_json::to_vec(&s).unwrap().len() > 2_000_000, "the test input is over the limit");
        let t = trimmed(s, MAX_OUTPUTS_BYTES);
        let bytes = serde_json::to_vec(&t).unwrap();
        assert!(bytes.len() <= 2_000_000, "{}", bytes.len());
        assert_eq!(t["outcome"], "completed_with_dead_letters");
        assert_eq!(t["items"]["twins"]["dead_lettered"], 18_446_744_073_709_551_615u64);
        let kept = t["dead_letters_by_reason"].as_object().unwrap();
        assert_eq!(kept.len(), TRIMMED_MAP_ENTRIES);
        assert!(kept.contains_key(&format!("reason_199999_{}", "x".repeat(20))), "the largest count is kept");
        assert!(t.get("plan").is_none());
        assert!(t["trimmed"].to_string().contains("dead_letters_by_reason"));
    }

    #[test]
    fn a_summary_of_huge_scalars_falls_back_to_the_core() {
        let s = json!({"outcome":"completed","exit_code":0,"stop_reason":"z".repeat(3_000_000),"items":{"twins":{"landed":5}}});
        let t = trimmed(s, MAX_OUTPUTS_BYTES);
        assert!(serde_json::to_vec(&t).unwrap().len() <= MAX_OUTPUTS_BYTES);
        assert_eq!(t["items"]["twins"]["landed"], 5);
        assert_eq!(t["outcome"], "completed");
    }
}
