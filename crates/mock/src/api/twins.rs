//! `/digitaltwins/{id}`: get, create or replace (PUT), update (JSON Patch), delete. Writes spend
//! the twin's per-twin budget (`Throttle::admit_twin_writes`) after the request is checked and
//! before anything changes.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::store::{AdtFailure, Store};
use crate::throttle::Throttle;

use super::{admit_writes, if_match, if_none_match_any, json_response, patch_request, path_id, ApiVersion};

/// `GET /digitaltwins/{id}` → 200, the twin and its `ETag`. The hot path: one map lookup and
/// bytes serialized at write time.
pub(super) async fn get(_: ApiVersion, req: HttpRequest, store: web::Data<Store>) -> Result<HttpResponse, AdtFailure> {
    let twin = store.get_twin(&path_id(&req, "id"))?;
    Ok(json_response(StatusCode::OK, twin.json.clone(), Some(&twin.etag)))
}

/// `PUT /digitaltwins/{id}` [`If-None-Match: *`] → 200 with the full twin and its `ETag`, for a
/// create and a replace alike.
pub(super) async fn put(
    _: ApiVersion,
    req: HttpRequest,
    store: web::Data<Store>,
    throttle: web::Data<Throttle>,
    body: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let id = path_id(&req, "id");
    let prepared = store.prepare_twin_put(&id, &body, if_none_match_any(&req)?)?;
    let _permit = admit_writes(&throttle, &[&id])?;
    let twin = store.commit_twin_put(prepared)?;
    Ok(json_response(StatusCode::OK, twin.json.clone(), Some(&twin.etag)))
}

/// `PATCH /digitaltwins/{id}` (`application/json-patch+json`) [`If-Match`] → 204 and the new `ETag`.
pub(super) async fn update(
    _: ApiVersion,
    req: HttpRequest,
    store: web::Data<Store>,
    throttle: web::Data<Throttle>,
    body: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let id = path_id(&req, "id");
    let (ops, condition) = patch_request(&req, &store, &body)?;
    let prepared = store.prepare_twin_update(&id, ops, condition)?;
    let _permit = admit_writes(&throttle, &[&id])?;
    let twin = store.commit_twin_update(prepared)?;
    Ok(HttpResponse::NoContent().insert_header(("ETag", twin.etag.as_str())).finish())
}

/// `DELETE /digitaltwins/{id}` [`If-Match`] → 204; 400 `RelationshipsNotDeleted` while it has
/// relationships.
pub(super) async fn delete(
    _: ApiVersion,
    req: HttpRequest,
    store: web::Data<Store>,
    throttle: web::Data<Throttle>,
) -> actix_web::Result<HttpResponse> {
    let id = path_id(&req, "id");
    let condition = if_match(&req)?;
    let _permit = admit_writes(&throttle, &[&id])?;
    store.delete_twin(&id, condition.as_ref())?;
    Ok(HttpResponse::NoContent().finish())
}
