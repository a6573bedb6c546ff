//! `/digitaltwins/{id}/relationships[/{relationship_id}]` and `/incomingrelationships`. A
//! relationship write spends the per-twin budget of its source and of its target.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::adt::paths;
use crate::store::{AdtFailure, Store};
use crate::throttle::Throttle;

use super::{
    admit_writes, if_match, if_none_match_any, json_response, list_body, next_link, page_size, patch_request, path_id,
    query_value, ApiVersion,
};

/// `PUT …/relationships/{relationship_id}` [`If-None-Match: *`] → 200 with the relationship and its `ETag`.
pub(super) async fn put(
    _: ApiVersion,
    req: HttpRequest,
    store: web::Data<Store>,
    throttle: web::Data<Throttle>,
    body: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let source = path_id(&req, "id");
    let id = path_id(&req, "relationship_id");
    let prepared = store.prepare_relationship_put(&source, &id, &body, if_none_match_any(&req)?)?;
    let target = prepared.target().to_string();
    let _permit = admit_writes(&throttle, &[&source, &target])?;
    let relationship = store.commit_relationship_put(prepared)?;
    Ok(json_response(StatusCode::OK, relationship.json.clone(), Some(&relationship.etag)))
}

/// `GET …/relationships/{relationship_id}` → 200 with the relationship and its `ETag`.
pub(super) async fn get(_: ApiVersion, req: HttpRequest, store: web::Data<Store>) -> Result<HttpResponse, AdtFailure> {
    let relationship = store.get_relationship(&path_id(&req, "id"), &path_id(&req, "relationship_id"))?;
    Ok(json_response(StatusCode::OK, relationship.json.clone(), Some(&relationship.etag)))
}

/// `PATCH …/relationships/{relationship_id}` (`application/json-patch+json`) [`If-Match`] → 204 and the new `ETag`.
pub(super) async fn update(
    _: ApiVersion,
    req: HttpRequest,
    store: web::Data<Store>,
    throttle: web::Data<Throttle>,
    body: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let source = path_id(&req, "id");
    let id = path_id(&req, "relationship_id");
    let (ops, condition) = patch_request(&req, &store, &body)?;
    let prepared = store.prepare_relationship_update(&source, &id, ops, condition)?;
    let target = prepared.target().to_string();
    let _permit = admit_writes(&throttle, &[&source, &target])?;
    let relationship = store.commit_relationship_update(prepared)?;
    Ok(HttpResponse::NoContent().insert_header(("ETag", relationship.etag.as_str())).finish())
}

/// `DELETE …/relationships/{relationship_id}` [`If-Match`] → 204.
pub(super) async fn delete(
    _: ApiVersion,
    req: HttpRequest,
    store: web::Data<Store>,
    throttle: web::Data<Throttle>,
) -> actix_web::Result<HttpResponse> {
    let source = path_id(&req, "id");
    let id = path_id(&req, "relationship_id");
    let condition = if_match(&req)?;
    let target = store.get_relationship(&source, &id)?.target.clone();
    let _permit = admit_writes(&throttle, &[&source, &target])?;
    store.delete_relationship(&source, &id, condition.as_ref())?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /digitaltwins/{id}/relationships[?relationshipName=…]`, one page of full relationships.
pub(super) async fn list(_: ApiVersion, req: HttpRequest, store: web::Data<Store>) -> Result<HttpResponse, AdtFailure> {
    let source = path_id(&req, "id");
    let size = page_size(&req, store.options().relationships_page_size)?;
    let name = query_value(&req, "relationshipName");
    let after = query_value(&req, "continuationToken");
    let (page, next) = store.list_relationships(&source, name.as_deref(), after.as_deref(), size)?;
    let next = next.map(|after| next_link(&req, &after));
    Ok(json_response(StatusCode::OK, list_body(page.iter().map(|r| r.json.clone()), next), None))
}

/// `GET /digitaltwins/{id}/incomingrelationships`, one page of
/// `{$relationshipId, $sourceId, $relationshipName, $relationshipLink}`. The link is the path
/// that GETs the relationship (the live shape is unverified).
pub(super) async fn list_incoming(
    _: ApiVersion,
    req: HttpRequest,
    store: web::Data<Store>,
) -> Result<HttpResponse, AdtFailure> {
    let target = path_id(&req, "id");
    let size = page_size(&req, store.options().relationships_page_size)?;
    let after = match query_value(&req, "continuationToken") {
        None => None,
        Some(token) => Some(serde_json::from_str::<(String, String)>(&token).map_err(|_| {
            AdtFailure::invalid_argument("The continuationToken is not valid; follow the nextLink as given.")
        })?),
    };
    let (page, next) = store.list_incoming(&target, after, size)?;
    let next = next.map(|key| next_link(&req, &serde_json::to_string(&key).unwrap_or_default()));
    let rows = page.iter().map(|item| {
        serde_json::to_vec(&json!({
            "$relationshipId": item.relationship_id,
            "$sourceId": item.source_id,
            "$relationshipName": item.name,
            "$relationshipLink": paths::relationship(&item.source_id, &item.relationship_id),
        }))
        .unwrap_or_default()
    });
    Ok(json_response(StatusCode::OK, list_body(rows, next), None))
}
