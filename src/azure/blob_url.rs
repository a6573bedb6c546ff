//! Blob Storage locations as users give them, and the container clients for them.
//!
//! An input or archive URL is `https://<account>.blob.core.windows.net/<container>[/<prefix>][?<sas>]`
//! (virtual-hosted style) or, on an IP address or `localhost` as Azurite serves it,
//! `http://127.0.0.1:10000/<account>/<container>[/<prefix>][?<sas>]` (path style). With a SAS the
//! client signs nothing; without one it sends the configured credential's Storage token (the SDK
//! then requires https). A SAS signature is a secret: [`BlobLocation::shown`] and
//! [`redact_sas`] keep it out of every message.

use std::path::PathBuf;
use std::sync::Arc;

use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use reqwest::Url;

use super::identity::{CredentialKind, IdentitySettings};
use super::reauth::{RefreshableCredential, StorageAuthorization};
use super::transport;

#[derive(Debug, thiserror::Error)]
pub enum BlobUrlError {
    #[error("'{shown}' is not a Blob Storage URL: {reason}. Give https://<account>.blob.core.windows.net/<container>[/<prefix>][?<sas>]")]
    Invalid { shown: String, reason: String },
    #[error("cannot reach {shown}: {detail}")]
    Client { shown: String, detail: String },
}

/// A container, a prefix in it, and the SAS (if any) that grants access.
#[derive(Clone, PartialEq, Eq)]
pub struct BlobLocation {
    /// The container's URL, without query.
    pub container_url: Url,
    /// The blob-name prefix (no leading slash; empty for the whole container).
    pub prefix: String,
    /// The SAS query string, without `?`.
    sas: Option<String>,
}

impl std::fmt::Debug for BlobLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

impl BlobLocation {
    /// Whether an input string names Blob Storage rather than a local path.
    pub fn is_blob_url(input: &str) -> bool {
        let lower = input.get(..8).unwrap_or(input).to_ascii_lowercase();
        lower.starts_with("https://") || lower.starts_with("http://")
    }

    pub fn parse(input: &str) -> Result<BlobLocation, BlobUrlError> {
        let invalid = |reason: &str| BlobUrlError::Invalid { shown: redact_sas(input), reason: reason.to_string() };
        let url = Url::parse(input).map_err(|e| invalid(&e.to_string()))?;
        if url.scheme() != "https" && url.scheme() != "http" {
            return Err(invalid("the scheme must be https (or http for a local emulator)"));
        }
        let host = url.host_str().ok_or_else(|| invalid("it has no host"))?;
        let path_style = url.host().is_some_and(|h| !matches!(h, url::Host::Domain(_))) || host == "localhost";
        let segments: Vec<String> =
            url.path_segments().map(|s| s.filter(|p| !p.is_empty()).map(decode).collect()).unwrap_or_default();
        let skip = usize::from(path_style);
        segments.get(skip).ok_or_else(|| {
            invalid(if path_style { "it names no account and container" } else { "it names no container" })
        })?;
        let mut container_url = url.clone();
        container_url.set_query(None);
        container_url.set_fragment(None);
        {
            let mut path = container_url.path_segments_mut().map_err(|_| invalid("it cannot be a base URL"))?;
            path.clear();
            for segment in &segments[..=skip] {
                path.push(segment);
            }
        }
        let prefix = segments[skip + 1..].join("/");
        let prefix = if url.path().ends_with('/') && !prefix.is_empty() { format!("{prefix}/") } else { prefix };
        let sas = url.query().filter(|q| !q.is_empty()).map(str::to_string);
        Ok(BlobLocation { container_url, prefix, sas })
    }

    /// Whether a listed blob is one this location names: everything under a prefix ending in
    /// `/` (or the whole container); for a prefix without it, the blob of exactly that name or
    /// those under it as a folder (`.../c/org1` is blob `org1` and `org1/...`, not `org10`).
    pub fn names(&self, blob: &str) -> bool {
        if self.prefix.is_empty() || self.prefix.ends_with('/') {
            return blob.starts_with(&self.prefix);
        }
        blob == self.prefix || blob.strip_prefix(&self.prefix).is_some_and(|rest| rest.starts_with('/'))
    }

    /// The container URL with the SAS (if any): what the SDK client is built on.
    fn client_url(&self) -> Url {
        let mut url = self.container_url.clone();
        url.set_query(self.sas.as_deref());
        url
    }

    pub fn has_sas(&self) -> bool {
        self.sas.is_some()
    }

    /// `container[/prefix]` as a URL, without the SAS: safe to print.
    pub fn shown(&self) -> String {
        let base = self.container_url.as_str().trim_end_matches('/');
        if self.prefix.is_empty() {
            base.to_string()
        } else {
            format!("{base}/{}", self.prefix)
        }
    }

    /// A blob's URL without the SAS: how errors, dead letters and the summary name it.
    pub fn blob_shown(&self, name: &str) -> String {
        format!("{}/{}", self.container_url.as_str().trim_end_matches('/'), name)
    }

    /// The storage account: the host's first label (virtual-hosted style) or the path's first
    /// segment (path style, as Azurite serves it).
    pub fn account(&self) -> String {
        let host = self.container_url.host_str().unwrap_or_default();
        let path_style =
            self.container_url.host().is_some_and(|h| !matches!(h, url::Host::Domain(_))) || host == "localhost";
        if path_style {
            self.container_url.path_segments().and_then(|mut s| s.next()).map(decode).unwrap_or_default()
        } else {
            host.split('.').next().unwrap_or_default().to_string()
        }
    }

    /// The container's name.
    pub fn container(&self) -> String {
        self.container_url.path_segments().and_then(|mut s| s.rfind(|p| !p.is_empty())).map(decode).unwrap_or_default()
    }

    /// The SDK's container client: SAS in the URL, or the credential, or anonymous. With a
    /// credential, the client's per-try [`StorageAuthorization`] policy sends its token and
    /// retries once with a fresh one after a 401 (the SDK's own token policy is not used).
    pub fn container_client(&self, access: &BlobAccess) -> Result<BlobContainerClient, BlobUrlError> {
        let client_error = |detail: String| BlobUrlError::Client { shown: self.shown(), detail: redact_sas(&detail) };
        let mut options = BlobContainerClientOptions {
            client_options: transport::client_options(access.ca_cert.as_deref())
                .map_err(|e| client_error(e.to_string()))?,
            ..Default::default()
        };
        let credential = if self.has_sas() { None } else { access.credential().map_err(client_error)? };
        if let Some(credential) = credential {
            if self.container_url.scheme() != "https" {
                return Err(client_error(
                    "a token is only sent over https: give an https:// URL, or a SAS in the URL".into(),
                ));
            }
            let policy = StorageAuthorization::new(credential, self.account(), self.container());
            options.client_options.per_try_policies.push(Arc::new(policy));
        }
        BlobContainerClient::new(self.client_url(), None, Some(options)).map_err(|e| client_error(e.to_string()))
    }
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

/// Replaces the value of every `sig=` (a SAS signature) in a text with `REDACTED`.
pub fn redact_sas(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_sig(rest) {
        let value_start = at + 4;
        out.push_str(&rest[..value_start]);
        out.push_str("REDACTED");
        let value_len = rest[value_start..]
            .find(|c: char| c == '&' || c == '"' || c == '\'' || c.is_whitespace())
            .unwrap_or(rest.len() - value_start);
        rest = &rest[value_start + value_len..];
    }
    out.push_str(rest);
    out
}

/// The next `sig=` that starts a query parameter (after `?` or `&`), case-insensitively.
fn find_sig(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("sig=") {
        let at = from + i;
        if at > 0 && matches!(lower.as_bytes()[at - 1], b'?' | b'&') {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

/// How Blob Storage is reached when a URL carries no SAS: the configured identity (built on
/// first use) and the CA bundle.
#[derive(Clone, Default)]
pub struct BlobAccess {
    identity: Option<IdentitySettings>,
    pub ca_cert: Option<PathBuf>,
    built: Arc<parking_lot::Mutex<Option<Arc<RefreshableCredential>>>>,
}

impl std::fmt::Debug for BlobAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobAccess").field("identity", &self.identity).finish_non_exhaustive()
    }
}

impl BlobAccess {
    /// For a configured credential kind (`auto` already resolved). A static ADT token or
    /// `none` gives no Storage credential: such blobs need a SAS.
    pub fn new(kind: CredentialKind, settings: IdentitySettings) -> BlobAccess {
        let ca_cert = settings.ca_cert.clone();
        let identity = match kind {
            CredentialKind::Auto | CredentialKind::Token | CredentialKind::None => None,
            _ => Some(settings),
        };
        BlobAccess { identity, ca_cert, built: Default::default() }
    }

    /// From a load's configuration.
    pub fn from_config(config: &crate::config::LoadConfig) -> BlobAccess {
        let kind = config.credential_kind();
        BlobAccess::new(kind, config.identity_settings(kind))
    }

    /// The credential, shared by every container client made from this access (and its clones),
    /// so a refresh after a 401 serves them all.
    fn credential(&self) -> Result<Option<Arc<RefreshableCredential>>, String> {
        let Some(settings) = &self.identity else { return Ok(None) };
        let mut built = self.built.lock();
        if built.is_none() {
            *built = Some(Arc::new(RefreshableCredential::new(settings.clone()).map_err(|e| e.to_string())?));
        }
        Ok(built.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_hosted_and_path_style_urls_split_into_container_prefix_and_sas() {
        let l = BlobLocation::parse("https://acct.blob.core.windows.net/input/2026/12?sv=2022&sig=abc%2Bdef").unwrap();
        assert_eq!(l.container_url.as_str(), "https://acct.blob.core.windows.net/input");
        assert_eq!(l.prefix, "2026/12");
        assert!(l.has_sas());
        assert_eq!(l.shown(), "https://acct.blob.core.windows.net/input/2026/12");
        assert_eq!(l.blob_shown("2026/12/a.ndjson"), "https://acct.blob.core.windows.net/input/2026/12/a.ndjson");
        assert_eq!(l.client_url().as_str(), "https://acct.blob.core.windows.net/input?sv=2022&sig=abc%2Bdef");

        let l = BlobLocation::parse("http://127.0.0.1:10000/devstoreaccount1/twins/").unwrap();
        assert_eq!(l.container_url.as_str(), "http://127.0.0.1:10000/devstoreaccount1/twins");
        assert_eq!(l.prefix, "");
        assert!(!l.has_sas());
        let l = BlobLocation::parse("http://localhost:10000/devstoreaccount1/twins/run%201/").unwrap();
        assert_eq!(l.prefix, "run 1/");

        for bad in ["https://acct.blob.core.windows.net", "http://127.0.0.1:10000/devstoreaccount1", "ftp://x/y"] {
            let err = BlobLocation::parse(bad).unwrap_err().to_string();
            assert!(err.contains("is not a Blob Storage URL"), "{err}");
        }
        assert!(BlobLocation::is_blob_url("HTTPS://a/b") && !BlobLocation::is_blob_url("data/fleet.ndjson"));
        assert_eq!((l.account(), l.container()), ("devstoreaccount1".to_string(), "twins".to_string()));
        let l = BlobLocation::parse("https://acct.blob.core.windows.net/input/2026/12?sig=x").unwrap();
        assert_eq!((l.account(), l.container()), ("acct".to_string(), "input".to_string()));
        let one = BlobLocation::parse("https://acct.blob.core.windows.net/inputfiles/org1").unwrap();
        assert!(one.names("org1") && one.names("org1/a.json") && !one.names("org10") && !one.names("org"));
        let folder = BlobLocation::parse("https://acct.blob.core.windows.net/inputfiles/org1/").unwrap();
        assert!(folder.names("org1/a.json") && !folder.names("org1"));
    }

    #[test]
    fn sas_signatures_are_redacted_wherever_they_appear() {
        let text = "GET https://a.blob.core.windows.net/c?sv=1&sig=S3cr%2Ft&se=2 failed; see \"http://x/y?sig=Other\"";
        let shown = redact_sas(text);
        assert!(!shown.contains("S3cr") && !shown.contains("Other"), "{shown}");
        assert!(shown.contains("sig=REDACTED&se=2") && shown.contains("?sig=REDACTED\""), "{shown}");
        assert_eq!(redact_sas("no signature; design=x"), "no signature; design=x");
        let err = BlobLocation::parse("https://acct.blob.core.windows.net?sig=topsecret").unwrap_err().to_string();
        assert!(!err.contains("topsecret"), "{err}");
    }
}
