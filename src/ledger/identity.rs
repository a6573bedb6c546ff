//! What a ledger belongs to: one ADT instance and one source. A ledger records what a source
//! loaded into an instance; read against another instance or another source it would make the
//! loader skip items that are not there, or prune items it never loaded, so it is refused with
//! an error naming both sides.
//!
//! A source is named by `--source <name>` (activity.json `source`, `TWINLOAD_SOURCE`): a
//! scheduled sync whose input is a new dated export every day (`exports/2026-12-02/fleet.ndjson`,
//! then `exports/2026-12-03/fleet.ndjson`) names its source once and keeps its ledger. Without
//! a name, the source is its inputs as given (files, folders, globs, blob URLs), not their
//! content: content changing between runs is what sync is for. Their fingerprint is a hash of
//! the sorted names, so the order they are given in does not matter. A ledger written without
//! a name takes one when a run names its source while reading the same inputs.

use super::record::{Header, FORMAT_VERSION};

/// How to name a source, for messages.
const NAME_THE_SOURCE: &str = "--source NAME (activity.json extendedProperties source, TWINLOAD_SOURCE)";

/// The instance and source of this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub endpoint: String,
    /// The source's name (`--source`); `None`: the source is its inputs.
    pub source: Option<String>,
    pub inputs: Vec<String>,
}

impl Identity {
    pub fn new(endpoint: &str, source: Option<&str>, inputs: &[String]) -> Identity {
        let mut inputs: Vec<String> = inputs.iter().map(|i| normalise_input(i)).collect();
        inputs.sort();
        inputs.dedup();
        let source = source.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
        Identity { endpoint: normalise_endpoint(endpoint), source, inputs }
    }

    pub fn fingerprint(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        for input in &self.inputs {
            hasher.update(input.as_bytes());
            hasher.update(b"\n");
        }
        hasher.finalize().to_hex()[..32].to_string()
    }

    pub fn header(&self) -> Header {
        Header {
            twinload_ledger: FORMAT_VERSION,
            endpoint: self.endpoint.clone(),
            source: self.source.clone(),
            inputs: self.inputs.clone(),
            fingerprint: self.fingerprint(),
        }
    }

    /// `Err` with what differs when `header` belongs to another instance or another source.
    pub fn check(&self, header: &Header, ledger: &str) -> Result<(), String> {
        if normalise_endpoint(&header.endpoint) != self.endpoint {
            return Err(format!(
                "the ledger {ledger} belongs to instance {} but this run writes to {}: give the ledger of this instance, or a new ledger path",
                header.endpoint, self.endpoint
            ));
        }
        let same_inputs = header.fingerprint == self.fingerprint();
        match (&header.source, &self.source) {
            (Some(theirs), Some(mine)) if theirs == mine => Ok(()),
            (Some(theirs), Some(mine)) => Err(format!(
                "the ledger {ledger} belongs to source {theirs} but this run is source {mine}: give --source {theirs}, or the ledger of source {mine}, or a new ledger path"
            )),
            (Some(theirs), None) => Err(format!(
                "the ledger {ledger} belongs to source {theirs}: give --source {theirs} (activity.json extendedProperties source, TWINLOAD_SOURCE) to use it"
            )),
            (None, _) if same_inputs => Ok(()),
            (None, Some(mine)) => Err(format!(
                "the ledger {ledger} belongs to inputs [{}] and has no source name, but this run reads [{}] as source {mine}: name it once by running with --source {mine} on its own inputs, or give a new ledger path",
                header.inputs.join(", "),
                self.inputs.join(", ")
            )),
            (None, None) => Err(format!(
                "the ledger {ledger} belongs to inputs [{}] but this run reads [{}]: if these are a new edition of the same source (a dated export), name the source with {NAME_THE_SOURCE} on every run; else give the ledger of these inputs, or a new ledger path",
                header.inputs.join(", "),
                self.inputs.join(", ")
            )),
        }
    }
}

fn normalise_endpoint(endpoint: &str) -> String {
    endpoint.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// `./in//a.ndjson` and `in/a.ndjson` name the same input; a URL's query (a SAS) is dropped so
/// no secret lands in the ledger and a renewed SAS is the same input.
fn normalise_input(input: &str) -> String {
    let input = input.trim();
    if input.contains("://") {
        return input.split(['?', '#']).next().unwrap_or(input).to_string();
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in input.split('/') {
        if part == "." || (part.is_empty() && !parts.is_empty()) {
            continue;
        }
        parts.push(part);
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_slashes_and_sas_do_not_change_the_identity() {
        let a = Identity::new(
            "https://X.api/",
            None,
            &["./in//a.ndjson".into(), "https://acc.blob/c/b?sv=1&sig=secret".into()],
        );
        let b = Identity::new("https://x.api", None, &["https://acc.blob/c/b?sig=other".into(), "in/a.ndjson".into()]);
        assert_eq!(a, b);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert!(!format!("{:?}", a.header()).contains("secret"));
        assert!(a.check(&b.header(), "l").is_ok());
    }

    #[test]
    fn another_instance_or_other_inputs_are_refused_naming_both_and_how_to_name_the_source() {
        let mine = Identity::new("https://one.api", None, &["a.ndjson".into()]);
        let other_instance = Identity::new("https://two.api", None, &["a.ndjson".into()]).header();
        let e = mine.check(&other_instance, "run.ledger").unwrap_err();
        assert!(e.contains("run.ledger") && e.contains("https://two.api") && e.contains("https://one.api"), "{e}");
        let other_inputs = Identity::new("https://one.api", None, &["b.ndjson".into()]).header();
        let e = mine.check(&other_inputs, "run.ledger").unwrap_err();
        assert!(e.contains("[b.ndjson]") && e.contains("[a.ndjson]") && e.contains("--source NAME"), "{e}");
    }

    #[test]
    fn a_named_source_keeps_its_ledger_across_input_names_and_no_other_source_uses_it() {
        let day = |date: &str, source: Option<&str>| {
            Identity::new("https://one.api", source, &[format!("exports/{date}/fleet.ndjson")])
        };
        let written = day("2026-12-02", Some("fleet")).header();
        assert_eq!(written.source.as_deref(), Some("fleet"));
        assert!(day("2026-12-03", Some("fleet")).check(&written, "l").is_ok());
        let e = day("2026-12-03", Some("orders")).check(&written, "l").unwrap_err();
        assert!(e.contains("source fleet") && e.contains("source orders") && e.contains("--source fleet"), "{e}");
        let e = day("2026-12-03", None).check(&written, "l").unwrap_err();
        assert!(e.contains("--source fleet"), "{e}");
        // A ledger written before sources had names takes one on its own inputs, not on others.
        let unnamed = day("2026-12-02", None).header();
        assert!(day("2026-12-02", Some("fleet")).check(&unnamed, "l").is_ok());
        let e = day("2026-12-03", Some("fleet")).check(&unnamed, "l").unwrap_err();
        assert!(e.contains("no source name") && e.contains("--source fleet"), "{e}");
        assert_eq!(Identity::new("https://one.api", Some("  "), &[]).source, None, "a blank name is no name");
    }
}
