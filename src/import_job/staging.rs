//! The staging container: Put Blob of the job's input, and reads of the job's log as it grows
//! (Get Blob with a `Range` from what was already read). Plain Blob REST with the SAS of
//! `--staging`, over twinload's one HTTP stack ([`crate::http`]). Staging takes a SAS only; moving
//! it onto `azure_storage_blob` (as Blob inputs are, see [`crate::azure`]) would let it use the
//! task's identity too, and this one module is all that would change.
//!
//! Errors name the blob without the SAS.

use std::path::Path;
use std::time::Duration;

use reqwest::{StatusCode, Url};

use crate::config::SecretUrl;

/// The Blob REST version sent (`x-ms-version`).
const BLOB_API_VERSION: &str = "2021-12-02";

#[derive(Debug, thiserror::Error)]
#[error("{what} {blob}: {reason}. Check that the --staging container exists and its SAS allows create, write and read")]
pub struct StagingError {
    what: &'static str,
    blob: String,
    reason: String,
}

/// The container, and the client that talks to it.
#[derive(Clone)]
pub struct Staging {
    http: reqwest::Client,
    container: SecretUrl,
}

impl Staging {
    /// Trusts the system's roots and the `--ca-cert` bundle, as every client of twinload does.
    pub fn new(
        container: SecretUrl,
        timeout: Duration,
        ca_cert: Option<&Path>,
    ) -> Result<Staging, crate::http::HttpSetupError> {
        let http = crate::http::build(crate::http::client_builder(ca_cert)?.timeout(timeout))?;
        Ok(Staging { http, container })
    }

    /// The URL of a blob in the container, with the container's SAS: what twinload itself reads
    /// and writes with.
    pub fn blob_url(&self, name: &str) -> String {
        let full = self.container.expose();
        let (path, query) = full.split_once('?').unwrap_or((full, ""));
        let path = path.trim_end_matches('/');
        if query.is_empty() {
            format!("{path}/{name}")
        } else {
            format!("{path}/{name}?{query}")
        }
    }

    /// The blob's URL without the SAS: what the ADT instance gets (it reaches the blob with its
    /// own managed identity, and a SAS in a job would show to everyone allowed to read jobs), and
    /// what messages show.
    pub fn shown(&self, name: &str) -> String {
        format!("{}/{name}", self.container.redacted().trim_end_matches('/'))
    }

    fn error(&self, what: &'static str, name: &str, reason: impl Into<String>) -> StagingError {
        StagingError { what, blob: self.shown(name), reason: reason.into() }
    }

    fn url(&self, name: &str, what: &'static str) -> Result<Url, StagingError> {
        Url::parse(&self.blob_url(name)).map_err(|e| self.error(what, name, e.to_string()))
    }

    /// Put Blob (a block blob), replacing what is there.
    pub async fn put(&self, name: &str, data: bytes::Bytes) -> Result<(), StagingError> {
        let what = "cannot upload";
        let response = self
            .http
            .put(self.url(name, what)?)
            .header("x-ms-version", BLOB_API_VERSION)
            .header("x-ms-blob-type", "BlockBlob")
            .header("content-type", "application/x-ndjson")
            .body(data)
            .send()
            .await
            .map_err(|e| self.error(what, name, e.without_url().to_string()))?;
        match response.status() {
            StatusCode::CREATED => Ok(()),
            status => Err(self.error(what, name, describe(status, &response))),
        }
    }

    /// The blob's bytes from `offset` on: empty when nothing new (or the blob does not exist yet).
    pub async fn read_from(&self, name: &str, offset: u64) -> Result<bytes::Bytes, StagingError> {
        let what = "cannot read";
        let response = self
            .http
            .get(self.url(name, what)?)
            .header("x-ms-version", BLOB_API_VERSION)
            .header("x-ms-range", format!("bytes={offset}-"))
            .send()
            .await
            .map_err(|e| self.error(what, name, e.without_url().to_string()))?;
        match response.status() {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => {
                response.bytes().await.map_err(|e| self.error(what, name, e.without_url().to_string()))
            }
            // Not written yet, or nothing past `offset`.
            StatusCode::NOT_FOUND | StatusCode::RANGE_NOT_SATISFIABLE => Ok(bytes::Bytes::new()),
            status => Err(self.error(what, name, describe(status, &response))),
        }
    }
}

fn describe(status: StatusCode, response: &reqwest::Response) -> String {
    let code = response.headers().get("x-ms-error-code").and_then(|v| v.to_str().ok());
    match code {
        Some(code) => format!("HTTP {} ({code})", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_urls_keep_the_sas_and_messages_drop_it() {
        let staging = Staging::new(
            SecretUrl::new("http://127.0.0.1:1/acct/stage/?sv=1&sig=SECRET"),
            Duration::from_secs(1),
            None,
        )
        .unwrap();
        assert_eq!(staging.blob_url("j/in.ndjson"), "http://127.0.0.1:1/acct/stage/j/in.ndjson?sv=1&sig=SECRET");
        assert_eq!(staging.shown("j/in.ndjson"), "http://127.0.0.1:1/acct/stage/j/in.ndjson");
        assert!(!staging.error("cannot read", "x", "HTTP 403").to_string().contains("SECRET"));
    }
}
