//! What a ledger belongs to: one ADT instance and one set of inputs. A ledger records what a
//! source loaded into an instance; read against another instance or another source it would
//! make the loader skip items that are not there, or prune items it never loaded, so it is
//! refused with an error naming both sides.
//!
//! The inputs are identified by their names as given (files, folders, globs, blob URLs), not
//! by their content: content changing between runs is what sync is for. The fingerprint is a
//! hash of the sorted names, so the order they are given in does not matter.

use super::record::{Header, FORMAT_VERSION};

/// The instance and inputs of this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub endpoint: String,
    pub inputs: Vec<String>,
}

impl Identity {
    pub fn new(endpoint: &str, inputs: &[String]) -> Identity {
        let mut inputs: Vec<String> = inputs.iter().map(|i| normalise_input(i)).collect();
        inputs.sort();
        inputs.dedup();
        Identity { endpoint: normalise_endpoint(endpoint), inputs }
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
            inputs: self.inputs.clone(),
            fingerprint: self.fingerprint(),
        }
    }

    /// `Err` with what differs when `header` belongs to another instance or other inputs.
    pub fn check(&self, header: &Header, ledger: &str) -> Result<(), String> {
        if normalise_endpoint(&header.endpoint) != self.endpoint {
            return Err(format!(
                "the ledger {ledger} belongs to instance {} but this run writes to {}: give the ledger of this instance, or a new ledger path",
                header.endpoint, self.endpoint
            ));
        }
        if header.fingerprint != self.fingerprint() {
            return Err(format!(
                "the ledger {ledger} belongs to inputs [{}] but this run reads [{}]: give the ledger of these inputs, or a new ledger path",
                header.inputs.join(", "),
                self.inputs.join(", ")
            ));
        }
        Ok(())
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
        let a =
            Identity::new("https://X.api/", &["./in//a.ndjson".into(), "https://acc.blob/c/b?sv=1&sig=secret".into()]);
        let b = Identity::new("https://x.api", &["https://acc.blob/c/b?sig=other".into(), "in/a.ndjson".into()]);
        assert_eq!(a, b);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert!(!format!("{:?}", a.header()).contains("secret"));
        assert!(a.check(&b.header(), "l").is_ok());
    }

    #[test]
    fn another_instance_or_other_inputs_are_refused_naming_both() {
        let mine = Identity::new("https://one.api", &["a.ndjson".into()]);
        let other_instance = Identity::new("https://two.api", &["a.ndjson".into()]).header();
        let e = mine.check(&other_instance, "run.ledger").unwrap_err();
        assert!(e.contains("run.ledger") && e.contains("https://two.api") && e.contains("https://one.api"), "{e}");
        let other_inputs = Identity::new("https://one.api", &["b.ndjson".into()]).header();
        let e = mine.check(&other_inputs, "run.ledger").unwrap_err();
        assert!(e.contains("[b.ndjson]") && e.contains("[a.ndjson]"), "{e}");
    }
}
