//! The ADT REST client over `reqwest` (rustls): one attempt per call, no hidden retries (the
//! supervisor owns retrying), every id percent-encoded, `?api-version=2023-10-31` on every
//! call. Every reply passes through one classifier ([`outcome::classify`]); write calls return
//! the classified [`Reply`], the setup calls (`list_models`, `twin_exists`, queries, import
//! jobs) a [`ClientError`] built from it that says which URL failed and what to check.
//!
//! No redirect is followed (ADT never sends one: a 3xx means the endpoint is not the instance,
//! and a followed 302 would turn a POST into a GET that "succeeds"), and no answer is read past
//! `max_response_bytes` ([`body`]).
//!
//! The bearer token goes into the `Authorization` header and nowhere else: no error or log
//! line carries it. It comes from a [`token::TokenProvider`] on every request (static, or an
//! Entra ID credential); a 401 forces one refresh per episode and one retry of that request.

mod body;
mod jobs;
pub mod outcome;
pub mod retry_after;
pub mod stats;
mod sync_calls;
pub mod token;
pub mod transport;

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
use outcome::{Answer, Body};
pub use outcome::{Outcome, Reply, Sent};
pub use stats::{RequestCounts, RequestStats};
pub use sync_calls::QueryPage;
use token::Authorization;
pub use token::TokenProvider;
pub use transport::TransportFailure;

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
    #[error("{method} {url} failed: {detail}. Check the endpoint URL, that the instance is reachable, and --ca-cert for a self-signed server{}", if failure.may_heal() { "" } else { " (waiting cannot fix this, so it was not retried)" })]
    Transport { method: String, url: String, detail: String, failure: TransportFailure },
    #[error(transparent)]
    Status(Box<StatusError>),
    #[error("{method} {url} answered {status}: the endpoint redirects to {location}: is this the instance URL? ADT never redirects, so twinload does not follow it (the token would go elsewhere). Give --endpoint the instance's host name (https://<instance>.api.<region>.digitaltwins.azure.net)")]
    Redirected { method: String, url: String, status: u16, location: String },
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
    /// What the classifier made of the reply.
    pub outcome: Outcome,
}

impl ClientError {
    /// True when a retry may help (throttled, a server error, an oversized answer, a
    /// connection that may come back). Not for what waiting cannot heal: a certificate the
    /// client does not trust, a host name that does not resolve, a redirect.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport { failure, .. } => failure.may_heal(),
            ClientError::Status(e) => e.outcome.may_succeed_later(),
            _ => false,
        }
    }

    /// True when the server throttled the call (429 or a throttling code).
    pub fn is_throttle(&self) -> bool {
        matches!(self, ClientError::Status(e) if matches!(e.outcome, Outcome::Throttled { .. }))
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Status(e) => e.retry_after,
            _ => None,
        }
    }

    /// The classified outcome of the reply this error stands for (`None`: no reply, or not ADT's).
    pub fn outcome(&self) -> Option<&Outcome> {
        match self {
            ClientError::Status(e) => Some(&e.outcome),
            _ => None,
        }
    }
}

/// What to check for a failing setup call, by status and outcome.
fn hint_for(status: StatusCode, outcome: &Outcome) -> &'static str {
    if matches!(outcome, Outcome::TooLarge { .. }) {
        return "A proxy or server other than ADT may be answering; if the instance really answers this much, raise --max-response-bytes";
    }
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
    /// See [`crate::config::DEFAULT_MAX_RESPONSE_BYTES`].
    max_response_bytes: u64,
}

/// What one request came to: the classified reply and, when the body was read whole, the body
/// and the wait the server asked for.
struct Exchange {
    reply: Reply,
    body: Option<bytes::Bytes>,
    retry_after: Option<Duration>,
    /// Why no response came, if none did.
    failure: Option<(TransportFailure, String)>,
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
            .pool_max_idle_per_host(config.writers.max(1))
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(transport::HostResolver));
        let http = crate::http::build(builder)?;
        let tokens = Arc::new(config.token_provider()?);
        Ok(AdtClient {
            http,
            base,
            tokens,
            stats: Arc::new(RequestStats::default()),
            max_response_bytes: config.max_response_bytes,
        })
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

    /// Sends `req` with a token; after a 401, forces one token refresh (once per episode, see
    /// [`TokenProvider::refresh_after_unauthorized`]) and sends it once more.
    async fn send_authorized(
        &self,
        class: LimitClass,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Result<reqwest::Response>, token::TokenError> {
        let auth = self.tokens.authorization().await?;
        let again = req.try_clone();
        let first = with_auth(req, &auth).send().await;
        let unauthorized = matches!(&first, Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED);
        if !unauthorized {
            self.tokens.accepted_if_answered(&auth, &first);
            return Ok(first);
        }
        match again {
            Some(again) if self.tokens.refresh_after_unauthorized(&auth) => {
                // The refused request counts too: the stats show every request sent.
                self.stats.record(class, StatusCode::UNAUTHORIZED.as_str(), false);
                let fresh = self.tokens.authorization().await?;
                let second = with_auth(again, &fresh).send().await;
                self.tokens.accepted_if_answered(&fresh, &second);
                Ok(second)
            }
            _ => Ok(first),
        }
    }

    /// Sends one request, reads its body up to the cap, classifies what came back (the one
    /// classifier) and counts it in the stats.
    async fn exchange(
        &self,
        class: LimitClass,
        req: reqwest::RequestBuilder,
        sent: Sent,
    ) -> Result<Exchange, token::TokenError> {
        let response = match self.send_authorized(class, req).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                let failure = TransportFailure::of(&e);
                self.stats.record(class, failure.stats_key(), false);
                let detail = error_chain(&e);
                let reply = outcome::classify(Answer::NoResponse { failure, detail: detail.clone() }, sent);
                return Ok(Exchange { reply, body: None, retry_after: None, failure: Some((failure, detail)) });
            }
            Err(e) => {
                self.stats.record(class, "token", false);
                return Err(e);
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let read = body::read_bounded(response, self.max_response_bytes).await;
        let body = match &read {
            Ok(bytes) => Body::Read(bytes),
            Err(body::BodyError::TooLarge { limit }) => Body::TooLarge { limit: *limit },
            Err(body::BodyError::Cut(e)) => Body::Cut { detail: error_chain(e) },
        };
        let cut = matches!(body, Body::Cut { .. });
        let mut reply = outcome::classify(Answer::Response { status, headers: &headers, body }, sent);
        if let Outcome::AuthFailed { message } = &mut reply.outcome {
            *message = format!("{message}; {}", self.tokens.refused_hint());
        }
        let throttled = matches!(reply.outcome, Outcome::Throttled { .. });
        self.stats.record(class, if cut && !status.is_success() { "connection" } else { status.as_str() }, throttled);
        Ok(Exchange {
            reply,
            body: read.ok(),
            retry_after: retry_after::parse(&headers, SystemTime::now()),
            failure: None,
        })
    }

    /// Sends one request and classifies what came back. Counts it in the stats.
    async fn send(&self, class: LimitClass, req: reqwest::RequestBuilder, sent: Sent) -> Reply {
        let _timer = crate::observe::catalog::RequestTimer::start(
            class,
            crate::observe::catalog::operation(class, sent.relationship),
        );
        match self.exchange(class, req, sent).await {
            Ok(exchange) => exchange.reply,
            Err(e) => Reply::transport(e.to_string()),
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
    /// 401) and returns its body; anything but a success read whole is an error that names the
    /// request, built from the classifier's outcome (a throttle carries its `Retry-After`).
    async fn send_ok(
        &self,
        class: LimitClass,
        method: &str,
        shown: String,
        req: reqwest::RequestBuilder,
    ) -> Result<bytes::Bytes, ClientError> {
        let exchange = self.exchange(class, req, Sent::default()).await?;
        let Reply { outcome, status, code, .. } = exchange.reply;
        let transport = |detail: String, failure| ClientError::Transport {
            method: method.into(),
            url: shown.clone(),
            detail,
            failure,
        };
        if let Some((failure, detail)) = exchange.failure {
            return Err(transport(detail, failure));
        }
        let status = StatusCode::from_u16(status.unwrap_or(0)).unwrap_or(StatusCode::BAD_GATEWAY);
        match (outcome, exchange.body) {
            (Outcome::Landed, Some(body)) => Ok(body),
            (Outcome::Redirected { location }, _) => {
                Err(ClientError::Redirected { method: method.into(), url: shown, status: status.as_u16(), location })
            }
            (Outcome::Landed, None) => {
                Err(transport(format!("HTTP {status}, then the body was cut off"), TransportFailure::Connection))
            }
            (outcome, body) => {
                let error = body.as_deref().and_then(ErrorBody::parse).map(|b| b.error);
                let message = match (&error, body.as_deref()) {
                    (Some(e), _) => format!("{}: {}", e.code, e.message),
                    (None, Some(body)) => String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string(),
                    (None, None) => outcome.detail(),
                };
                Err(ClientError::Status(Box::new(StatusError {
                    method: method.into(),
                    url: shown,
                    status: status.as_u16(),
                    code,
                    message: crate::redact::redact(&message).into_owned(),
                    hint: hint_for(status, &outcome).to_string(),
                    retry_after: exchange.retry_after,
                    outcome,
                })))
            }
        }
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
