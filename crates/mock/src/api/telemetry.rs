//! `POST /digitaltwins/{id}/telemetry` and `POST /digitaltwins/{id}/components/{name}/telemetry`:
//! the mock has no event routes, so telemetry is checked and dropped (as ADT drops it when no
//! route listens). Telemetry writes nothing, so it spends no create/delete or per-twin budget;
//! the class throttle meters it as a read (`adt::request_class`).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use crate::store::{AdtFailure, Store};

use super::{header, path_id, ApiVersion};

/// `POST /digitaltwins/{id}/telemetry` (`Message-Id` required) → 204.
pub(super) async fn send(
    _: ApiVersion,
    req: HttpRequest,
    store: web::Data<Store>,
    body: web::Bytes,
) -> Result<HttpResponse, AdtFailure> {
    check_telemetry(&req, &store, &body)?;
    store.get_twin(&path_id(&req, "id"))?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /digitaltwins/{id}/components/{name}/telemetry` (`Message-Id` required) → 204.
pub(super) async fn send_from_component(
    _: ApiVersion,
    req: HttpRequest,
    store: web::Data<Store>,
    body: web::Bytes,
) -> Result<HttpResponse, AdtFailure> {
    check_telemetry(&req, &store, &body)?;
    store.component_model(&path_id(&req, "id"), &path_id(&req, "name"))?;
    Ok(HttpResponse::NoContent().finish())
}

/// The request itself: a `Message-Id` (400 `InvalidArgument` without one, as the spec words it:
/// "the digital twin id or message id is invalid"), a body within the payload limit that is JSON.
fn check_telemetry(req: &HttpRequest, store: &Store, body: &[u8]) -> Result<(), AdtFailure> {
    if header(req, "message-id")?.is_none_or(|id| id.trim().is_empty()) {
        return Err(AdtFailure::invalid_argument(
            "The Message-Id header is required: send a unique id per telemetry message (the SDKs send a UUID).",
        ));
    }
    store.check_payload(body)?;
    serde_json::from_slice::<Value>(body).map_err(|e| {
        AdtFailure::invalid_argument(format!("The telemetry is not valid JSON: {e}. Send a JSON object."))
    })?;
    Ok(())
}
