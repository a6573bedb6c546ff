//! `POST /query`: `{"query": "…"}` for a first page, `{"continuationToken": "…"}` for the next
//! (the query is ignored when a token is present). Answers `{"value":[…],"continuationToken":…}`
//! with the `query-charge` header.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::query;
use crate::store::{AdtFailure, QueryPage, Store};

use super::{json_response, page_body, page_size, ApiVersion};

#[derive(Debug, Deserialize)]
struct QueryRequest {
    query: Option<String>,
    #[serde(rename = "continuationToken")]
    continuation_token: Option<String>,
}

pub(super) async fn run(
    _: ApiVersion,
    req: HttpRequest,
    store: web::Data<Store>,
    body: web::Bytes,
) -> Result<HttpResponse, AdtFailure> {
    let request: QueryRequest = serde_json::from_slice(&body).map_err(|e| {
        AdtFailure::invalid_argument(format!(
            "The query request is not valid: {e}. Send {{\"query\":\"SELECT …\"}} or {{\"continuationToken\":\"…\"}}."
        ))
    })?;
    let size = page_size(&req, store.limits().query_page_size)?;
    let page = match (request.continuation_token, request.query) {
        (Some(token), _) => store.continue_query(&token, size)?,
        (None, Some(text)) => {
            let parsed = query::parse(&text).map_err(|e| AdtFailure::sql_query_error(e.to_string()))?;
            store.run_query(&parsed, size)
        }
        (None, None) => {
            return Err(AdtFailure::invalid_argument("The query request has neither a query nor a continuationToken."))
        }
    };
    Ok(page_response(page))
}

fn page_response(page: QueryPage) -> HttpResponse {
    let charge = format!("{:.2}", page.charge);
    let body = page_body(page.rows, "continuationToken", page.continuation_token);
    let mut response = json_response(StatusCode::OK, body, None);
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&charge) {
        response.headers_mut().insert(actix_web::http::header::HeaderName::from_static("query-charge"), value);
    }
    response
}
