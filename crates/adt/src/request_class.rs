//! Which ADT limit class a request falls in, and which twin it writes. Shared by the loader's
//! limiter and the mock's throttle so both meter the same way (ADT-REFERENCE.md §3).

use crate::limits::LimitClass;

use super::paths::decode_segment;

/// What the rate limits need to know of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestShape {
    pub class: LimitClass,
    /// The twin whose 10 writes/s this request spends: the twin itself for a twin write, the
    /// source for a relationship write (whose target is in the body or the stored relationship,
    /// so the caller adds it). `None` for reads and non-twin APIs.
    pub written_twin: Option<String>,
}

/// Classifies a request by method and path (the path without its query string, still
/// percent-encoded). `None` when the path is not an ADT data-plane path.
pub fn classify(method: &str, path: &str) -> Option<RequestShape> {
    // The first few segments decide (no request shape looks deeper); kept on the stack because
    // the mock classifies every request it serves.
    let mut first = [""; 5];
    let mut count = 0;
    for segment in path.trim_start_matches('/').split('/').take(first.len()) {
        first[count] = segment;
        count += 1;
    }
    let segments = &first[..count];
    let write_class = |m: &str| match m {
        "PUT" | "DELETE" => Some(LimitClass::CreateDelete),
        "PATCH" => Some(LimitClass::Patch),
        _ => None,
    };
    match segments {
        ["models", ..] => Some(RequestShape { class: LimitClass::Models, written_twin: None }),
        ["query"] => Some(RequestShape { class: LimitClass::Query, written_twin: None }),
        ["jobs", ..] => Some(RequestShape { class: LimitClass::Jobs, written_twin: None }),
        ["digitaltwins", twin, rest @ ..] if !twin.is_empty() => {
            // Telemetry is a POST that spends no create/delete budget; listing is a read.
            let is_twin_or_relationship_write = match rest {
                [] => true,
                ["relationships", rel] if !rel.is_empty() => true,
                ["components", ..] => method == "PATCH",
                _ => false,
            };
            match write_class(method) {
                Some(class) if is_twin_or_relationship_write => {
                    Some(RequestShape { class, written_twin: Some(decode_segment(twin)) })
                }
                _ => Some(RequestShape { class: LimitClass::Read, written_twin: None }),
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twin_and_relationship_writes_spend_create_delete_and_name_the_source() {
        let s = classify("PUT", "/digitaltwins/a%20b").unwrap();
        assert_eq!(s.class, LimitClass::CreateDelete);
        assert_eq!(s.written_twin.as_deref(), Some("a b"));
        let s = classify("DELETE", "/digitaltwins/src/relationships/r1").unwrap();
        assert_eq!((s.class, s.written_twin.as_deref()), (LimitClass::CreateDelete, Some("src")));
        let s = classify("PATCH", "/digitaltwins/t").unwrap();
        assert_eq!(s.class, LimitClass::Patch);
    }

    #[test]
    fn reads_lists_and_other_apis() {
        assert_eq!(classify("GET", "/digitaltwins/t").unwrap().class, LimitClass::Read);
        let list = classify("GET", "/digitaltwins/t/relationships").unwrap();
        assert_eq!((list.class, list.written_twin), (LimitClass::Read, None));
        assert_eq!(classify("POST", "/models").unwrap().class, LimitClass::Models);
        assert_eq!(classify("POST", "/query").unwrap().class, LimitClass::Query);
        assert_eq!(classify("PUT", "/jobs/imports/j1").unwrap().class, LimitClass::Jobs);
        assert_eq!(classify("GET", "/_mock/stats"), None);
    }

    #[test]
    fn deep_paths_are_not_mistaken_for_writes() {
        let deep = classify("PUT", "/digitaltwins/t/relationships/r/x/y/z").unwrap();
        assert_eq!((deep.class, deep.written_twin), (LimitClass::Read, None));
        assert_eq!(classify("PATCH", "/digitaltwins/t/components/a/b/c/d").unwrap().class, LimitClass::Patch);
    }
}
