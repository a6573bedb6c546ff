//! `/models`: add (a batch, all or nothing), list (paged, `dependenciesFor`,
//! `includeModelDefinition`), get, decommission, delete.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use crate::dtdl::validate_dtmi;
use crate::store::patch::{parse_patch, PatchKind};
use crate::store::{AdtFailure, ModelEntry, Store};

use super::{
    json_response, list_body, next_link, page_size, path_id, query_flag, query_value, query_values, require_json_patch,
    ApiVersion,
};

/// `POST /models` → 201 with the new models' `DigitalTwinsModelData`, in request order.
pub(super) async fn add(_: ApiVersion, store: web::Data<Store>, body: web::Bytes) -> Result<HttpResponse, AdtFailure> {
    let docs: Value = serde_json::from_slice(&body).map_err(|e| {
        AdtFailure::invalid_argument(format!(
            "The models are not valid JSON: {e}. Send a JSON array of DTDL Interfaces."
        ))
    })?;
    let Value::Array(docs) = docs else {
        return Err(AdtFailure::empty_model_list());
    };
    let added = store.add_models(&docs)?;
    let data: Vec<Value> = added.iter().map(|m| m.model_data(false)).collect();
    Ok(json_response(StatusCode::CREATED, serde_json::to_vec(&data).unwrap_or_default(), None))
}

/// `GET /models[?dependenciesFor=…][&includeModelDefinition=true]`, one page.
pub(super) async fn list(_: ApiVersion, req: HttpRequest, store: web::Data<Store>) -> Result<HttpResponse, AdtFailure> {
    let include_definition = query_flag(&req, "includeModelDefinition")?;
    let size = page_size(&req, store.limits().models_page_size)?;
    let after = query_value(&req, "continuationToken");
    let roots: Vec<String> =
        query_values(req.query_string(), "dependenciesFor").into_iter().map(|v| v.into_owned()).collect();
    for root in &roots {
        check_model_id(root)?;
    }
    let models = store.models();
    let candidates: Vec<Arc<ModelEntry>> = if roots.is_empty() {
        models.iter_after(after.as_deref()).take(size + 1).cloned().collect()
    } else {
        models
            .with_dependencies(&roots)?
            .into_iter()
            .filter(|m| after.as_deref().is_none_or(|a| m.id.as_str() > a))
            .take(size + 1)
            .collect()
    };
    let has_more = candidates.len() > size;
    let page = &candidates[..candidates.len().min(size)];
    let next = match (has_more, page.last()) {
        (true, Some(last)) => Some(next_link(&req, &last.id)),
        _ => None,
    };
    let rows = page.iter().map(|m| serde_json::to_vec(&m.model_data(include_definition)).unwrap_or_default());
    Ok(json_response(StatusCode::OK, list_body(rows, next), None))
}

/// `GET /models/{id}[?includeModelDefinition=true]`.
pub(super) async fn get(_: ApiVersion, req: HttpRequest, store: web::Data<Store>) -> Result<HttpResponse, AdtFailure> {
    let include_definition = query_flag(&req, "includeModelDefinition")?;
    let model = store.model(&model_path_id(&req)?)?;
    Ok(json_response(
        StatusCode::OK,
        serde_json::to_vec(&model.model_data(include_definition)).unwrap_or_default(),
        None,
    ))
}

/// `PATCH /models/{id}` with `[{"op":"replace","path":"/decommissioned","value":true}]` → 204,
/// again on a model already decommissioned.
pub(super) async fn decommission(
    _: ApiVersion,
    req: HttpRequest,
    store: web::Data<Store>,
    body: web::Bytes,
) -> Result<HttpResponse, AdtFailure> {
    let id = model_path_id(&req)?;
    require_json_patch(&req)?;
    let ops = parse_patch(&body)?;
    if ops.is_empty() {
        return Err(AdtFailure::json_patch_invalid(
            "The patch document is empty; send [{\"op\":\"replace\",\"path\":\"/decommissioned\",\"value\":true}].",
        ));
    }
    for op in &ops {
        let is_decommission =
            op.kind == PatchKind::Replace && op.path == ["decommissioned"] && op.value == Value::Bool(true);
        if !is_decommission {
            return Err(AdtFailure::json_patch_invalid(format!(
                "Only {{\"op\":\"replace\",\"path\":\"/decommissioned\",\"value\":true}} can be applied to a model; '{}' cannot.",
                op.path_text
            )));
        }
    }
    store.decommission_model(&id)?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE /models/{id}` → 204; 409 while another model references it (twins of it do not
/// hold it back, as in the live service).
pub(super) async fn delete(
    _: ApiVersion,
    req: HttpRequest,
    store: web::Data<Store>,
) -> Result<HttpResponse, AdtFailure> {
    store.delete_model(&model_path_id(&req)?)?;
    Ok(HttpResponse::NoContent().finish())
}

/// The `{id}` of a `/models/{id}` route, which must be a DTMI.
fn model_path_id(req: &HttpRequest) -> Result<String, AdtFailure> {
    let id = path_id(req, "id");
    check_model_id(&id)?;
    Ok(id)
}

/// A model id that is not a DTMI is 400 `InvalidArgument` on every model route (live), before
/// any lookup. DTDL v3's syntax is the wider one (the version may be absent or `major.minor`).
fn check_model_id(id: &str) -> Result<(), AdtFailure> {
    validate_dtmi(id, 3).map_err(|e| AdtFailure::model_id_not_dtmi(id, &e.reason))
}
