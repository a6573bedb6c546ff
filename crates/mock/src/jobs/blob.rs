//! Blob Storage as an import job uses it, over the Blob REST API (plain HTTP, a SAS in the URL,
//! the instance's own `storage_sas` added by the runner, or anonymous): Get Blob for the input, Put
//! Blob (`x-ms-blob-type: AppendBlob`) and Append Block for the output log. The real service does
//! the same with its managed identity.
//!
//! URLs can carry a SAS signature: errors name the blob without its query string.

use std::time::Duration;

use reqwest::{StatusCode, Url};

/// The Blob REST version the mock sends (`x-ms-version`).
pub const BLOB_API_VERSION: &str = "2021-12-02";

/// How long one blob request may take.
const BLOB_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A blob call that failed, described without the SAS.
#[derive(Debug, thiserror::Error)]
#[error("{what} {blob}: {reason}")]
pub struct BlobError {
    what: &'static str,
    blob: String,
    reason: String,
}

/// The client the runner uses (no proxy from the environment: the blobs are where the URL says).
pub fn http_client() -> reqwest::Client {
    crate::tls::install_client_crypto_provider();
    reqwest::Client::builder().no_proxy().timeout(BLOB_REQUEST_TIMEOUT).build().unwrap_or_default()
}

/// The blob's URL without its query string (no SAS), for messages.
pub fn redacted(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_query(None);
            parsed.to_string()
        }
        Err(_) => url.split('?').next().unwrap_or_default().to_string(),
    }
}

fn parse(url: &str, what: &'static str) -> Result<Url, BlobError> {
    let parsed = Url::parse(url).map_err(|e| BlobError { what, blob: redacted(url), reason: e.to_string() })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(BlobError { what, blob: redacted(url), reason: "not an http(s) URL".into() });
    }
    Ok(parsed)
}

async fn expect(
    response: Result<reqwest::Response, reqwest::Error>,
    ok: StatusCode,
    what: &'static str,
    url: &str,
) -> Result<reqwest::Response, BlobError> {
    let blob = || redacted(url);
    let response = response.map_err(|e| BlobError { what, blob: blob(), reason: e.without_url().to_string() })?;
    if response.status() == ok {
        return Ok(response);
    }
    let status = response.status();
    let code = response
        .headers()
        .get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    Err(BlobError { what, blob: blob(), reason: format!("HTTP {}{code}", status.as_u16()) })
}

/// Get Blob: the whole blob.
pub async fn get(http: &reqwest::Client, url: &str) -> Result<bytes::Bytes, BlobError> {
    let what = "cannot read the input blob";
    let parsed = parse(url, what)?;
    let response = http.get(parsed).header("x-ms-version", BLOB_API_VERSION).send().await;
    let response = expect(response, StatusCode::OK, what, url).await?;
    response.bytes().await.map_err(|e| BlobError { what, blob: redacted(url), reason: e.without_url().to_string() })
}

/// Put Blob of an empty append blob (replacing what was there).
pub async fn create_append_blob(http: &reqwest::Client, url: &str) -> Result<(), BlobError> {
    let what = "cannot create the output log blob";
    let parsed = parse(url, what)?;
    let response = http
        .put(parsed)
        .header("x-ms-version", BLOB_API_VERSION)
        .header("x-ms-blob-type", "AppendBlob")
        .header("content-length", "0")
        .send()
        .await;
    expect(response, StatusCode::CREATED, what, url).await.map(drop)
}

/// Append Block: adds `data` at the end of the append blob.
pub async fn append_block(http: &reqwest::Client, url: &str, data: Vec<u8>) -> Result<(), BlobError> {
    let what = "cannot append to the output log blob";
    let mut parsed = parse(url, what)?;
    parsed.query_pairs_mut().append_pair("comp", "appendblock");
    let response = http.put(parsed).header("x-ms-version", BLOB_API_VERSION).body(data).send().await;
    expect(response, StatusCode::CREATED, what, url).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_drops_the_sas() {
        assert_eq!(
            redacted("http://127.0.0.1:1/acct/c/in.ndjson?sv=2021&sig=SECRET"),
            "http://127.0.0.1:1/acct/c/in.ndjson"
        );
        assert!(!redacted("not a url?sig=SECRET").contains("SECRET"));
    }
}
