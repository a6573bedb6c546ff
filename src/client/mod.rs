//! The ADT REST client over `reqwest` (rustls): one attempt per call, no hidden retries (the
//! supervisor owns retrying), every id percent-encoded, `?api-version=2023-10-31` on every
//! call. Write calls return a classified [`Reply`]; the setup calls (`list_models`,
//! `twin_exists`) return a [`ClientError`] that says which URL failed and what to check.
//!
//! The bearer token goes into the `Authorization` header and nowhere else: no error or log
//! line carries it. It comes from a [`token::TokenProvider`] on every request (static, or an
//! Entra ID credential); a 401 forces one refresh and one retry of that request.

mod jobs;
pub mod outcome;
pub mod retry_after;
pub mod stats;
mod sync_calls;
pub mod token;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, IF_NONE_MATCH};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::adt::{paths, ErrorBody, API_VERSION};
use crate::azure::error_chain;
use crate::config::LoadConfig;
use crate::limits::LimitClass;

pub use jobs::ImportJobInfo;
pub use outcome::{Outcome, Reply, Sent};
pub use stats::{RequestCounts, RequestStats};
pub use sync_calls::QueryPage;
use token::Authorization;
pub use token::TokenProvider;

/// Most pages `list_models` follows (100 models a page: a million models), so a server that
/// hands out nextLinks forever cannot keep the loader looping.
pub const MAX_LIST_PAGES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("endpoint '{endpoint}' is not a valid URL: {detail}")]
    BadEndpoint { endpoint: String, detail: String },
    #[error(transparent)]
    Http(#[from] crate::http::HttpSetupError),
    #[error(transparent)]
    Token(#[from] token::TokenError),
    #[error("{method} {url} failed: {detail}. Check the endpoint URL, that the instance is reachable, and --ca-cert for a self-signed server{}", if cannot_heal(detail) { " (waiting cannot fix this, so it was not retried)" } else { "" })]
    Transport { method: String, url: String, detail: String },
    #[error(transparent)]
    Status(Box<StatusError>),
    #[error("{url} answered something that is not ADT's: {detail}")]
    Unexpected { url: String, detail: String },
}

/// A non-2xx answer to a setup call.
#[derive(Debug, thiserror::Error)]
#[error("{method} {url} answered {status}: {message}. {hint}")]
pub struct StatusError {
    pub method: String,
    pub url: String,
    pub status: u16,
    pub code: Option<String>,
    pub message: String,
    pub hint: String,
    pub retry_after: Option<Duration>,
}

impl ClientError {
    /// True when a retry may help (throttled, a server error, a connection that may come
    /// back). Not for what waiting cannot heal: a certificate the client does not trust, a
    /// host name that does not resolve.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport { detail, .. } => !cannot_heal(detail),
            ClientError::Status(e) => {
                e.status == 429 || e.status >= 500 || e.code.as_deref().is_some_and(crate::adt::codes::is_throttle_code)
            }
            _ => false,
        }
    }

    /// True when the server throttled the call (429 or a throttling code).
    pub fn is_throttle(&self) -> bool {
        match self {
            ClientError::Status(e) => {
                e.status == 429 || e.code.as_deref().is_some_and(crate::adt::codes::is_throttle_code)
            }
            _ => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Status(e) => e.retry_after,
            _ => None,
        }
    }
}

/// Whether a transport failure is one that waiting cannot heal, from its error chain (reqwest
/// and rustls expose these only as text): the server's certificate refused, or a host name
/// that does not resolve.
fn cannot_heal(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    d.contains("certificate") || d.contains("dns error") || d.contains("failed to lookup address")
}

/// What to check for a failing setup call, by status.
fn hint_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "Check the token (--token / TWINLOAD_TOKEN, or the identity of --credential): it is missing, expired or for another resource (scope https://digitaltwins.azure.net/.default)",
        403 => "Check that the identity has the 'Azure Digital Twins Data Owner' role on the instance",
        404 => "Check the endpoint URL: it should be the instance's host name, with no path",
        429 => "The instance is throttling; try again later or lower --writers",
        s if s >= 500 => "The instance has a server error; try again later",
        _ => "Check the endpoint URL and the api-version the instance supports",
    }
}

/// The ADT data-plane client. Cheap to clone (it shares one connection pool and one stats).
#[derive(Clone)]
pub struct AdtClient {
    http: reqwest::Client,
    base: Url,
    tokens: Arc<TokenProvider>,
    stats: Arc<RequestStats>,
}

impl std::fmt::Debug for AdtClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdtClient").field("base", &self.base.as_str()).finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ModelPage {
    value: Vec<ModelData>,
    #[serde(rename = "nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct ModelData {
    id: String,
}

impl AdtClient {
    pub fn new(config: &LoadConfig) -> Result<AdtClient, ClientError> {
        let base = Url::parse(&config.endpoint)
            .map_err(|e| ClientError::BadEndpoint { endpoint: config.endpoint.clone(), detail: e.to_string() })?;
        let builder = crate::http::client_builder(config.ca_cert.as_deref())?
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            .pool_max_idle_per_host(config.writers.max(1));
        let http = crate::http::build(builder)?;
        let tokens = Arc::new(config.token_provider()?);
        Ok(AdtClient { http, base, tokens, stats: Arc::new(RequestStats::default()) })
    }

    /// Where this client's tokens come from (shared by its clones).
    pub fn tokens(&self) -> &Arc<TokenProvider> {
        &self.tokens
    }

    /// The counts of every request this client (and its clones) sent.
    pub fn stats(&self) -> &Arc<RequestStats> {
        &self.stats
    }

    /// `base + path + ?api-version=…` (the path's ids already percent-encoded).
    fn url(&self, path_and_query: &str) -> Url {
        let mut url = self.base.clone();
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let base_path = self.base.path().trim_end_matches('/');
        url.set_path(&format!("{base_path}{path}"));
        url.set_query(Some(&format!("api-version={API_VERSION}{}{query}", if query.is_empty() { "" } else { "&" })));
        url
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        self.http.request(method, url)
    }

    /// Sends `req` with a token; after a 401, forces one token refresh and sends it once more.
    async fn send_authorized(
        &self,
        class: LimitClass,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Result<reqwest::Response>, token::TokenError> {
        let auth = self.tokens.authorization().await?;
        let again = req.try_clone();
        let first = with_auth(req, &auth).send().await;
        let unauthorized = matches!(&first, Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED);
        match again {
            Some(again) if unauthorized && self.tokens.refresh_after_unauthorized(&auth) => {
                // The refused request counts too: the stats show every request sent.
                self.stats.record(class, StatusCode::UNAUTHORIZED.as_str(), false);
                let fresh = self.tokens.authorization().await?;
                Ok(with_auth(again, &fresh).send().await)
            }
            _ => Ok(first),
        }
    }

    /// Sends one request and classifies what came back. Counts it in the stats.
    async fn send(&self, class: LimitClass, req: reqwest::RequestBuilder, sent: Sent) -> Reply {
        let _timer = crate::observe::catalog::RequestTimer::start(
            class,
            crate::observe::catalog::operation(class, sent.relationship),
        );
        let sent_result = match self.send_authorized(class, req).await {
            Ok(r) => r,
            Err(e) => {
                self.stats.record(class, "token", false);
                return Reply::transport(e.to_string());
            }
        };
        match sent_result {
            Ok(resp) => {
                let status = resp.status();
                let headers = resp.headers().clone();
                let body = match resp.bytes().await {
                    Ok(b) => b,
                    // The status is in; a body cut off after a 2xx still means it was written.
                    Err(_) if status.is_success() => Default::default(),
                    Err(e) => {
                        self.stats.record(class, "connection", false);
                        return Reply::transport(format!(
                            "HTTP {status}, then the body was cut off: {}",
                            error_chain(&e)
                        ));
                    }
                };
                let reply = outcome::classify(status, &headers, &body, sent);
                let throttled = matches!(reply.outcome, Outcome::Throttled { .. });
                self.stats.record(class, status.as_str(), throttled);
                reply
            }
            Err(e) => {
                let kind = if e.is_timeout() { "timeout" } else { "connection" };
                self.stats.record(class, kind, false);
                Reply::transport(format!("{kind}: {}", error_chain(&e)))
            }
        }
    }

    /// `POST /models` with the interfaces as one JSON array (all or nothing on ADT's side).
    pub async fn add_models(&self, interfaces: &[&RawValue]) -> Reply {
        let mut body = String::with_capacity(interfaces.iter().map(|m| m.get().len() + 1).sum::<usize>() + 2);
        body.push('[');
        for (i, m) in interfaces.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(m.get());
        }
        body.push(']');
        let req = self.request(Method::POST, self.url("/models")).header(CONTENT_TYPE, "application/json").body(body);
        self.send(LimitClass::Models, req, Sent::default()).await
    }

    /// `PUT /digitaltwins/{id}`; `create_only` adds `If-None-Match: *`.
    pub async fn put_twin(&self, id: &str, body: &RawValue, create_only: bool) -> Reply {
        self.put(&paths::twin(id), body, Sent { create_only, relationship: false }).await
    }

    /// `PATCH /digitaltwins/{id}` with a JSON Patch (`application/json-patch+json`). A missing
    /// twin (404 `DigitalTwinNotFound`) is rejected with what to do about it.
    pub async fn patch_twin(&self, id: &str, patch: &RawValue) -> Reply {
        let req = self
            .request(Method::PATCH, self.url(&paths::twin(id)))
            .header(CONTENT_TYPE, "application/json-patch+json")
            .body(patch.get().to_string());
        let mut reply = self.send(LimitClass::Patch, req, Sent::default()).await;
        if reply.status == Some(404) && reply.code.as_deref() == Some(crate::adt::codes::DIGITAL_TWIN_NOT_FOUND) {
            reply.outcome = Outcome::Rejected {
                message: format!(
                    "twin {id} does not exist; create it first or give a `model` so the mapping builds full twins"
                ),
            };
        }
        reply
    }

    /// `PUT /digitaltwins/{source}/relationships/{id}`; `create_only` adds `If-None-Match: *`.
    pub async fn put_relationship(&self, source: &str, id: &str, body: &RawValue, create_only: bool) -> Reply {
        self.put(&paths::relationship(source, id), body, Sent { create_only, relationship: true }).await
    }

    async fn put(&self, path: &str, body: &RawValue, sent: Sent) -> Reply {
        let mut req = self
            .request(Method::PUT, self.url(path))
            .header(CONTENT_TYPE, "application/json")
            .body(body.get().to_string());
        if sent.create_only {
            req = req.header(IF_NONE_MATCH, "*");
        }
        self.send(LimitClass::CreateDelete, req, sent).await
    }

    /// Every model id the instance holds (`GET /models`, following `nextLink`).
    pub async fn list_models(&self) -> Result<Vec<String>, ClientError> {
        let mut ids = Vec::new();
        let mut url = self.url("/models");
        for _ in 0..MAX_LIST_PAGES {
            let body = self.get_ok(LimitClass::Models, url.clone()).await?;
            let page: ModelPage = serde_json::from_slice(&body).map_err(|e| ClientError::Unexpected {
                url: url.to_string(),
                detail: format!("not a model list: {e}"),
            })?;
            ids.extend(page.value.into_iter().map(|m| m.id));
            match page.next_link {
                Some(link) if !link.is_empty() => url = self.next_link(&link)?,
                _ => return Ok(ids),
            }
        }
        Err(ClientError::Unexpected {
            url: url.to_string(),
            detail: format!("more than {MAX_LIST_PAGES} pages of models"),
        })
    }

    /// Whether `GET /models/{id}` finds the model (404 → false): checking the few models a small
    /// task needs costs what it needs, not what the instance holds.
    pub async fn model_exists(&self, id: &str) -> Result<bool, ClientError> {
        match self.get_ok(LimitClass::Models, self.url(&paths::model(id))).await {
            Ok(_) => Ok(true),
            Err(ClientError::Status(e)) if e.status == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether `GET /digitaltwins/{id}` finds the twin (404 → false).
    pub async fn twin_exists(&self, id: &str) -> Result<bool, ClientError> {
        match self.get_ok(LimitClass::Read, self.url(&paths::twin(id))).await {
            Ok(_) => Ok(true),
            Err(ClientError::Status(e)) if e.status == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A GET whose non-2xx answers become [`ClientError`]s.
    async fn get_ok(&self, class: LimitClass, url: Url) -> Result<bytes::Bytes, ClientError> {
        let shown = url.to_string();
        let _timer = crate::observe::catalog::RequestTimer::start(class, "get");
        self.send_ok(class, "GET", shown, self.request(Method::GET, url)).await
    }

    /// Sends a request that must succeed (GET, query, jobs) with a token (refreshed once on a
    /// 401) and returns its body; a failure or a throttle (429 or a throttling code) is an
    /// error that names the request and carries its `Retry-After`.
    async fn send_ok(
        &self,
        class: LimitClass,
        method: &str,
        shown: String,
        req: reqwest::RequestBuilder,
    ) -> Result<bytes::Bytes, ClientError> {
        let result = self.send_authorized(class, req).await?;
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                self.stats.record(class, if e.is_timeout() { "timeout" } else { "connection" }, false);
                return Err(ClientError::Transport { method: method.into(), url: shown, detail: error_chain(&e) });
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| ClientError::Transport {
            method: method.into(),
            url: shown.clone(),
            detail: error_chain(&e),
        })?;
        let error = ErrorBody::parse(&body).map(|b| b.error);
        let throttled = status == StatusCode::TOO_MANY_REQUESTS
            || error.as_ref().is_some_and(|e| crate::adt::codes::is_throttle_code(&e.code));
        self.stats.record(class, status.as_str(), throttled);
        if status.is_success() && !throttled {
            return Ok(body);
        }
        let message = match &error {
            Some(e) => format!("{}: {}", e.code, e.message),
            None => String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string(),
        };
        Err(ClientError::Status(Box::new(StatusError {
            method: method.into(),
            url: shown,
            status: status.as_u16(),
            code: error.map(|e| e.code),
            message,
            hint: hint_for(status).to_string(),
            retry_after: retry_after::parse(&headers, SystemTime::now()),
        })))
    }

    /// Resolves a `nextLink` (opaque, absolute or relative) against the endpoint. It must stay
    /// on the endpoint's origin: the token is never sent anywhere else.
    fn next_link(&self, link: &str) -> Result<Url, ClientError> {
        let mut url = self
            .base
            .join(link)
            .map_err(|e| ClientError::Unexpected { url: link.to_string(), detail: format!("bad nextLink: {e}") })?;
        if url.origin() != self.base.origin() {
            return Err(ClientError::Unexpected {
                url: self.base.to_string(),
                detail: format!(
                    "nextLink points at another host ({}); not following it",
                    url.origin().ascii_serialization()
                ),
            });
        }
        if !url.query_pairs().any(|(k, _)| k == "api-version") {
            url.query_pairs_mut().append_pair("api-version", API_VERSION);
        }
        Ok(url)
    }
}

/// `req` with the `Authorization` header of `auth`, if it has one.
fn with_auth(req: reqwest::RequestBuilder, auth: &Authorization) -> reqwest::RequestBuilder {
    match &auth.header {
        Some(value) => req.header(AUTHORIZATION, value.clone()),
        None => req,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Auth, SecretToken};

    fn client(endpoint: &str) -> AdtClient {
        AdtClient::new(&LoadConfig::new(endpoint)).unwrap()
    }

    #[test]
    fn urls_carry_the_api_version_and_encoded_ids() {
        let c = client("https://x.api.wcus.digitaltwins.azure.net");
        assert_eq!(
            c.url(&paths::model("dtmi:a;1")).as_str(),
            "https://x.api.wcus.digitaltwins.azure.net/models/dtmi%3Aa%3B1?api-version=2023-10-31"
        );
        assert_eq!(
            c.url(&paths::relationship("a b", "r/1")).as_str(),
            "https://x.api.wcus.digitaltwins.azure.net/digitaltwins/a%20b/relationships/r%2F1?api-version=2023-10-31"
        );
    }

    #[test]
    fn next_links_stay_on_the_endpoint_and_keep_the_api_version() {
        let c = client("http://127.0.0.1:8080");
        let u = c.next_link("/models?continuationToken=abc").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:8080/models?continuationToken=abc&api-version=2023-10-31");
        let u = c.next_link("http://127.0.0.1:8080/models?api-version=2023-10-31&page=2").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:8080/models?api-version=2023-10-31&page=2");
        assert!(c.next_link("http://elsewhere.example/models").is_err());
    }

    #[test]
    fn the_client_debug_and_errors_never_show_the_token() {
        let mut config = LoadConfig::new("http://127.0.0.1:9");
        config.auth = Auth::BearerToken { token: SecretToken::new("tok-very-secret") };
        let c = AdtClient::new(&config).unwrap();
        assert!(!format!("{c:?}").contains("tok-very-secret"));
    }

    #[tokio::test]
    async fn a_refused_connection_is_transient_and_names_the_url() {
        // A port that was free a moment ago: nothing listens there, so the connection is refused.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let c = client(&format!("http://127.0.0.1:{port}"));
        let err = c.list_models().await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("127.0.0.1:{port}/models")) && text.contains("Check the endpoint"), "{text}");
        assert!(err.is_retryable());
        let body = RawValue::from_string("{}".into()).unwrap();
        let reply = c.put_twin("t1", &body, false).await;
        assert!(matches!(reply.outcome, Outcome::Transient { .. }), "{reply:?}");
        assert_eq!(c.stats().snapshot().requests_by_status.get("connection"), Some(&2));
    }
}
