//! `/digitaltwins/{id}/components/{name}`: get and update (JSON Patch relative to the
//! component). A read spends the read class; an update the patch class (both in the class
//! throttle) and the twin's per-twin budget, like a twin PATCH.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::store::patch::parse_patch;
use crate::store::Store;
use crate::throttle::Throttle;

use super::{admit_writes, if_match, json_response, path_id, require_json_patch, ApiVersion};

/// `GET /digitaltwins/{id}/components/{name}` → 200, the component's properties and
/// `$metadata`, with the twin's `ETag`.
pub(super) async fn get(_: ApiVersion, req: HttpRequest, store: web::Data<Store>) -> actix_web::Result<HttpResponse> {
    let (body, etag) = store.get_component(&path_id(&req, "id"), &path_id(&req, "name"))?;
    Ok(json_response(StatusCode::OK, body, Some(&etag)))
}

/// `PATCH /digitaltwins/{id}/components/{name}` (`application/json-patch+json`) [`If-Match`] →
/// 204 and the twin's new `ETag`. A body that is not a JSON array never reaches ADT's own
/// checks: ASP.NET's model binding refuses it (400 without `error.code`).
pub(super) async fn update(
    _: ApiVersion,
    req: HttpRequest,
    store: web::Data<Store>,
    throttle: web::Data<Throttle>,
    body: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let (id, name) = (path_id(&req, "id"), path_id(&req, "name"));
    require_json_patch(&req)?;
    let condition = if_match(&req)?;
    store.check_payload(&body)?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(_)) => {}
        Ok(_) => {
            return Ok(model_binding_refused(
                "The JSON value could not be converted to a JSON Patch document: send an array of operations such as [{\"op\":\"add\",\"path\":\"/prop\",\"value\":1}]. Path: $",
            ))
        }
        Err(e) => return Ok(model_binding_refused(&format!("The body is not valid JSON ({e}). Path: $"))),
    }
    let ops = parse_patch(&body)?;
    let prepared = store.prepare_component_update(&id, &name, ops, condition)?;
    let _permit = admit_writes(&throttle, &[&id])?;
    let twin = store.commit_twin_update(prepared)?;
    Ok(HttpResponse::NoContent().insert_header(("ETag", twin.etag.as_str())).finish())
}

/// ASP.NET Core's answer to a body its model binding cannot read (RFC 7807 problem details
/// with `errors`, no `error.code`), as the live service gives it for a component patch that is
/// not an array.
fn model_binding_refused(detail: &str) -> HttpResponse {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let body = json!({
        "type": "https://tools.ietf.org/html/rfc7231#section-6.5.1",
        "title": "One or more validation errors occurred.",
        "status": 400,
        "traceId": format!("00-{trace}-{}-00", &trace[..16]),
        "errors": { "$": [detail] },
    });
    HttpResponse::BadRequest()
        .content_type("application/problem+json; charset=utf-8")
        .body(serde_json::to_vec(&body).unwrap_or_default())
}
