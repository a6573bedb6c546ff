//! The final snapshot to a Prometheus Pushgateway (`--pushgateway <url>`): a short Batch task
//! can end between two scrapes, so its last counts would be lost without it. One `PUT` of the
//! text exposition to `<url>/metrics/job/twinload/instance/<instance>` replaces the group's
//! previous push. (The exporter crate's `push-gateway` feature pushes on an interval from a
//! runtime of its own, never "once, now, at the end", which is what is needed here.)

use std::time::Duration;

/// How long the push may take before the run gives up on it (the run's result does not
/// depend on it).
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("the Pushgateway URL '{0}' is not valid: give e.g. http://pushgateway:9091")]
    BadUrl(String),
    #[error("cannot push the metrics to the Pushgateway at {url}: {detail}")]
    Failed { url: String, detail: String },
}

/// The group URL for `instance` under `base`.
pub fn group_url(base: &str, instance: &str) -> Result<reqwest::Url, PushError> {
    let mut url = reqwest::Url::parse(base).map_err(|_| PushError::BadUrl(base.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(PushError::BadUrl(base.to_string()));
    }
    url.path_segments_mut()
        .map_err(|_| PushError::BadUrl(base.to_string()))?
        .pop_if_empty()
        .extend(["metrics", "job", "twinload", "instance", instance]);
    Ok(url)
}

/// The URL as it may be shown: without user and password.
fn shown(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// PUTs `body` (the text exposition) to the group URL.
pub async fn push(url: &reqwest::Url, body: String) -> Result<(), PushError> {
    let failed = |detail: String| PushError::Failed { url: shown(url), detail };
    let builder = crate::http::client_builder(None).map_err(|e| failed(e.to_string()))?.timeout(PUSH_TIMEOUT);
    let client = crate::http::build(builder).map_err(|e| failed(e.to_string()))?;
    let resp = client
        .put(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(body)
        .send()
        .await
        .map_err(|e| failed(e.without_url().to_string()))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(failed(format!("HTTP {status}: {}", text.trim())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_url_names_job_and_instance_and_hides_credentials() {
        let url = group_url("http://u:secret@pg.local:9091/", "task 7").unwrap();
        assert_eq!(url.path(), "/metrics/job/twinload/instance/task%207");
        assert!(!shown(&url).contains("secret"));
        assert!(matches!(group_url("ftp://x", "a"), Err(PushError::BadUrl(_))));
    }
}
