//! The ADT data plane over HTTP: actix-web handlers for models, twins (and their components and
//! telemetry), relationships and query, and the bulk Jobs API (ADT-REFERENCE.md §1), registered by [`configure`]. Handlers extract
//! `web::Data<Store>` and `web::Data<Throttle>`; the server (mock-ops' `server.rs`) provides both.
//!
//! Every route needs `?api-version=` with a version ADT serves ([`ApiVersion`]). Ids in paths
//! are percent-encoded; they are decoded with `crate::adt::paths::decode_segment`.

mod components;
mod jobs;
mod models;
mod query;
mod relationships;
mod telemetry;
mod twins;

use std::borrow::Cow;
use std::fmt;
use std::future::{ready, Ready};
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use crate::adt::{codes, paths::decode_segment, ErrorBody};
use crate::store::error::JSON_CONTENT_TYPE;
use crate::store::patch::{parse_patch, PatchOp};
use crate::store::{AdtFailure, IfMatch, Store};
use crate::throttle::{too_many_requests, Throttle, TwinWritePermit};

/// The api-versions the mock serves: ADT's stable data-plane versions, newest first. They
/// behave alike here; 2023-10-31 is the one twinload speaks, and the SDKs' older defaults
/// (e.g. the Python SDK's 2023-06-30) keep working as they do against the service.
pub const SUPPORTED_API_VERSIONS: [&str; 4] = ["2023-10-31", "2023-06-30", "2022-05-31", "2020-10-31"];

/// The largest request body read at all. Bodies of twins and relationships are held to
/// `limits.max_payload_bytes` (32 KB) separately; this bounds `POST /models`, whose 250 models
/// may be up to 1 MB each in ADT, to what a test machine holds comfortably.
pub const MAX_REQUEST_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The request header that asks for a smaller page.
pub const MAX_ITEMS_PER_PAGE_HEADER: &str = "max-items-per-page";

/// Registers every data-plane route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_REQUEST_BODY_BYTES))
        .service(web::resource("/models").route(web::post().to(models::add)).route(web::get().to(models::list)))
        .service(
            web::resource("/models/{id}")
                .route(web::get().to(models::get))
                .route(web::patch().to(models::decommission))
                .route(web::delete().to(models::delete)),
        )
        .service(
            web::resource("/digitaltwins/{id}")
                .route(web::get().to(twins::get))
                .route(web::put().to(twins::put))
                .route(web::patch().to(twins::update))
                .route(web::delete().to(twins::delete)),
        )
        .service(
            web::resource("/digitaltwins/{id}/components/{name}")
                .route(web::get().to(components::get))
                .route(web::patch().to(components::update)),
        )
        .service(web::resource("/digitaltwins/{id}/telemetry").route(web::post().to(telemetry::send)))
        .service(
            web::resource("/digitaltwins/{id}/components/{name}/telemetry")
                .route(web::post().to(telemetry::send_from_component)),
        )
        .service(web::resource("/digitaltwins/{id}/relationships").route(web::get().to(relationships::list)))
        .service(
            web::resource("/digitaltwins/{id}/relationships/{relationship_id}")
                .route(web::get().to(relationships::get))
                .route(web::put().to(relationships::put))
                .route(web::patch().to(relationships::update))
                .route(web::delete().to(relationships::delete)),
        )
        .service(
            web::resource("/digitaltwins/{id}/incomingrelationships")
                .route(web::get().to(relationships::list_incoming)),
        )
        .service(web::resource("/query").route(web::post().to(query::run)))
        .service(web::resource("/jobs/imports").route(web::get().to(jobs::list_imports)))
        .service(
            web::resource("/jobs/imports/{id}")
                .route(web::put().to(jobs::create_import))
                .route(web::get().to(jobs::get_import))
                .route(web::delete().to(jobs::delete_import)),
        )
        .service(web::resource("/jobs/imports/{id}/cancel").route(web::post().to(jobs::cancel_import)))
        .service(
            web::resource("/jobs/deletions")
                .route(web::post().to(jobs::create_deletion))
                .route(web::get().to(jobs::list_deletions)),
        )
        .service(web::resource("/jobs/deletions/{id}").route(web::get().to(jobs::get_deletion)));
}

/// A write refused by the per-twin limits; answered by the shared 429 builder
/// (`throttle::too_many_requests`, with `Retry-After`).
#[derive(Debug)]
struct Throttled {
    retry_after: Duration,
    twins: String,
}

impl fmt::Display for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "too many writes to {}; retry after {:?}", self.twins, self.retry_after)
    }
}

impl ResponseError for Throttled {
    fn status_code(&self) -> StatusCode {
        StatusCode::TOO_MANY_REQUESTS
    }

    fn error_response(&self) -> HttpResponse {
        too_many_requests(self.retry_after, &format!("writes to {}", self.twins))
    }
}

/// Spends the per-twin write budget of every twin a write touches (a relationship write: its
/// source and its target). Called after the request is checked and before anything changes;
/// the permit is held until the write is done.
fn admit_writes(throttle: &Throttle, twins: &[&str]) -> Result<TwinWritePermit, Throttled> {
    throttle.admit_twin_writes(twins).map_err(|retry_after| Throttled {
        retry_after,
        twins: format!("twin{} {}", if twins.len() == 1 { "" } else { "s" }, twins.join(" and ")),
    })
}

/// Proof that the request named a supported `api-version`; handlers take it first so a
/// missing or unknown version is refused before anything else.
#[derive(Debug, Clone, Copy)]
pub struct ApiVersion;

impl FromRequest for ApiVersion {
    type Error = AdtFailure;
    type Future = Ready<Result<ApiVersion, AdtFailure>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(check_api_version(req.query_string()).map(|()| ApiVersion))
    }
}

/// Missing → 400 `MissingApiVersionParameter`, unknown → 400 `UnsupportedApiVersionValue`, in
/// the wording of the Azure REST API guidelines (ADT's own answer is unverified).
fn check_api_version(query_string: &str) -> Result<(), AdtFailure> {
    let versions = query_values(query_string, "api-version");
    if versions.iter().all(|v| v.is_empty()) {
        return Err(AdtFailure {
            status: StatusCode::BAD_REQUEST,
            body: ErrorBody::new(
                codes::MISSING_API_VERSION_PARAMETER,
                format!("The api-version query parameter (?api-version=) is required for all requests. Use ?api-version={}.", SUPPORTED_API_VERSIONS[0]),
            ),
        });
    }
    if let Some(unknown) = versions.iter().find(|v| !SUPPORTED_API_VERSIONS.contains(&v.as_ref())) {
        return Err(AdtFailure {
            status: StatusCode::BAD_REQUEST,
            body: ErrorBody::new(
                codes::UNSUPPORTED_API_VERSION_VALUE,
                format!(
                    "Unsupported api-version '{unknown}'. The supported api-versions are '{}'.",
                    SUPPORTED_API_VERSIONS.join(", ")
                ),
            ),
        });
    }
    Ok(())
}

/// Every value of a query-string key, decoded as `application/x-www-form-urlencoded` (`+` is a
/// space). Keys repeat for `dependenciesFor`; a nextLink followed by an SDK may carry
/// `api-version` twice.
fn query_values<'a>(query_string: &'a str, key: &str) -> Vec<Cow<'a, str>> {
    form_urlencoded::parse(query_string.as_bytes()).filter(|(k, _)| k == key).map(|(_, v)| v).collect()
}

/// The single value of a query-string key, if present.
fn query_value(req: &HttpRequest, key: &str) -> Option<String> {
    query_values(req.query_string(), key).into_iter().next().map(Cow::into_owned)
}

/// A boolean query parameter (`true`/`false`, any case); absent is `false`.
fn query_flag(req: &HttpRequest, key: &str) -> Result<bool, AdtFailure> {
    match query_value(req, key) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => {
            Err(AdtFailure::invalid_argument(format!("The query parameter {key} must be true or false, not '{v}'.")))
        }
    }
}

/// A path segment, percent-decoded.
fn path_id(req: &HttpRequest, name: &str) -> String {
    decode_segment(req.match_info().get(name).unwrap_or_default())
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Result<Option<&'a str>, AdtFailure> {
    match req.headers().get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(Some)
            .map_err(|_| AdtFailure::invalid_argument(format!("The {name} header is not valid text."))),
    }
}

/// `If-Match`: `*` or an ETag; anything else is 400 `InvalidArgument` (live wording).
fn if_match(req: &HttpRequest) -> Result<Option<IfMatch>, AdtFailure> {
    match header(req, "if-match").map_err(|_| AdtFailure::invalid_if_match())? {
        None => Ok(None),
        Some(value) => IfMatch::parse(value).map(Some).ok_or_else(AdtFailure::invalid_if_match),
    }
}

/// `If-None-Match`: only `*` is allowed (live wording for anything else).
fn if_none_match_any(req: &HttpRequest) -> Result<bool, AdtFailure> {
    match header(req, "if-none-match").map_err(|_| AdtFailure::invalid_if_none_match())? {
        None => Ok(false),
        Some(value) if value.trim() == "*" => Ok(true),
        Some(_) => Err(AdtFailure::invalid_if_none_match()),
    }
}

/// JSON Patch bodies must say so; the live answer to anything else is unverified.
fn require_json_patch(req: &HttpRequest) -> Result<(), AdtFailure> {
    let content_type = header(req, "content-type")?.unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case("application/json-patch+json") {
        Ok(())
    } else {
        Err(AdtFailure::unsupported_media_type(if content_type.is_empty() { "(none)" } else { content_type }))
    }
}

/// The parts of a twin or relationship PATCH: `Content-Type: application/json-patch+json`, an
/// optional `If-Match`, a body within the payload limit that parses as JSON Patch.
fn patch_request(req: &HttpRequest, store: &Store, body: &[u8]) -> Result<(Vec<PatchOp>, Option<IfMatch>), AdtFailure> {
    require_json_patch(req)?;
    let condition = if_match(req)?;
    store.check_payload(body)?;
    Ok((parse_patch(body)?, condition))
}

/// The page size: the limit, or less when `max-items-per-page` asks for less.
fn page_size(req: &HttpRequest, limit: usize) -> Result<usize, AdtFailure> {
    let limit = limit.max(1);
    match header(req, MAX_ITEMS_PER_PAGE_HEADER)? {
        None => Ok(limit),
        Some(value) => match value.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n.min(limit)),
            _ => Err(AdtFailure::invalid_argument(format!(
                "The {MAX_ITEMS_PER_PAGE_HEADER} header must be a positive integer, not '{value}'."
            ))),
        },
    }
}

/// A page's `nextLink`: this request's absolute URL with `continuationToken` set. ADT's nextLink
/// shape is unverified; clients treat it as opaque.
fn next_link(req: &HttpRequest, token: &str) -> String {
    let info = req.connection_info();
    let mut query: Vec<&str> = req
        .query_string()
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("continuationToken="))
        .collect();
    let token = format!("continuationToken={}", utf8_percent_encode(token, NON_ALPHANUMERIC));
    query.push(&token);
    format!("{}://{}{}?{}", info.scheme(), info.host(), req.path(), query.join("&"))
}

/// A JSON answer with ADT's Content-Type and, for twins and relationships, the `ETag` header.
fn json_response(
    status: StatusCode,
    body: impl actix_web::body::MessageBody + 'static,
    etag: Option<&str>,
) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    response.content_type(JSON_CONTENT_TYPE);
    if let Some(etag) = etag {
        response.insert_header(("ETag", etag));
    }
    response.body(body)
}

/// `{"value":[rows…],"nextLink":…}` from rows already serialized.
fn list_body(rows: impl IntoIterator<Item = impl AsRef<[u8]>>, next_link: Option<String>) -> Vec<u8> {
    page_body(rows, "nextLink", next_link)
}

/// `{"value":[rows…],"<continuation_key>":"…"|null}`: list pages carry `nextLink`, query pages
/// `continuationToken`.
fn page_body(
    rows: impl IntoIterator<Item = impl AsRef<[u8]>>,
    continuation_key: &str,
    continuation: Option<String>,
) -> Vec<u8> {
    let mut body = b"{\"value\":[".to_vec();
    for (i, row) in rows.into_iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(row.as_ref());
    }
    body.extend_from_slice(b"],\"");
    body.extend_from_slice(continuation_key.as_bytes());
    body.extend_from_slice(b"\":");
    body.extend_from_slice(&serde_json::to_vec(&continuation).unwrap_or_else(|_| b"null".to_vec()));
    body.push(b'}');
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_is_required_and_checked() {
        assert_eq!(check_api_version("").unwrap_err().code(), codes::MISSING_API_VERSION_PARAMETER);
        assert_eq!(check_api_version("api-version=").unwrap_err().code(), codes::MISSING_API_VERSION_PARAMETER);
        let unknown = check_api_version("api-version=2019-01-01").unwrap_err();
        assert_eq!(unknown.code(), codes::UNSUPPORTED_API_VERSION_VALUE);
        assert!(unknown.body.error.message.contains("2023-10-31"));
        check_api_version("api-version=2023-10-31").unwrap();
        check_api_version("x=1&api-version=2023-10-31&api-version=2023-10-31").unwrap();
    }

    #[test]
    fn query_values_repeat_and_decode() {
        let qs = "dependenciesFor=dtmi%3Aa%3B1&dependenciesFor=dtmi:b;1&x=a+b";
        assert_eq!(query_values(qs, "dependenciesFor"), vec!["dtmi:a;1", "dtmi:b;1"]);
        assert_eq!(query_values(qs, "x"), vec!["a b"]);
        assert!(query_values(qs, "y").is_empty());
    }

    #[test]
    fn list_bodies_carry_rows_and_next_link() {
        let body = list_body([b"{\"a\":1}".as_slice(), b"{\"b\":2}".as_slice()], Some("http://h/x?t=1".into()));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v, serde_json::json!({"value":[{"a":1},{"b":2}],"nextLink":"http://h/x?t=1"}));
        let empty = list_body(Vec::<Vec<u8>>::new(), None);
        assert_eq!(empty, b"{\"value\":[],\"nextLink\":null}");
    }
}
