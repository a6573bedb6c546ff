//! The mock's refusal of a request: an HTTP status plus ADT's error body. The store builds these
//! so the handlers only translate. Messages follow the live service's wording where it is known
//! (ADT-REFERENCE.md §2); where it is not, the message says what was wrong and what to do.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::adt::{codes, ErrorBody};

/// The Content-Type of every JSON answer, as the live service sends it.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// A refused request: status and `{"error":{"code","message","details"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdtFailure {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl fmt::Display for AdtFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.body.error.code, self.body.error.message)
    }
}

impl std::error::Error for AdtFailure {}

impl ResponseError for AdtFailure {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let body = serde_json::to_vec(&self.body).unwrap_or_default();
        HttpResponse::build(self.status).content_type(JSON_CONTENT_TYPE).body(body)
    }
}

fn fail(status: StatusCode, code: &str, message: impl Into<String>) -> AdtFailure {
    AdtFailure { status, body: ErrorBody::new(code, message) }
}

impl AdtFailure {
    /// The error code, for tests and logs.
    pub fn code(&self) -> &str {
        &self.body.error.code
    }

    pub fn invalid_argument(message: impl Into<String>) -> AdtFailure {
        fail(StatusCode::BAD_REQUEST, codes::INVALID_ARGUMENT, message)
    }

    pub fn twin_not_found(id: &str) -> AdtFailure {
        fail(
            StatusCode::NOT_FOUND,
            codes::DIGITAL_TWIN_NOT_FOUND,
            format!(
                "There is no digital twin instance that exists with the ID {id}. Please verify that the twin id is valid and ensure that the twin is not deleted. See section on querying the twins https://aka.ms/adtv2query."
            ),
        )
    }

    pub fn target_twin_not_found(target: &str) -> AdtFailure {
        fail(
            StatusCode::NOT_FOUND,
            codes::TARGET_DIGITAL_TWIN_NOT_FOUND,
            format!(
                "The target digital twin is invalid or does not exist Please validate that the target twin is valid and exists (target twin id: {target})."
            ),
        )
    }

    pub fn relationship_not_found(source: &str, relationship_id: &str) -> AdtFailure {
        fail(
            StatusCode::NOT_FOUND,
            codes::RELATIONSHIP_NOT_FOUND,
            format!(
                "Relationship {relationship_id} not found on twin {source}. Please verify that the relationship id is valid and ensure that the relationship is not deleted."
            ),
        )
    }

    pub fn model_not_found(id: &str) -> AdtFailure {
        fail(
            StatusCode::NOT_FOUND,
            codes::MODEL_NOT_FOUND,
            format!(
                "There is no Model(s) available that matches the provided id(s) {id}. Check that the Model ID provided is valid by doing a Model_List API call."
            ),
        )
    }

    /// 404 `ComponentNotFound`: the twin exists, its model declares no such component (the live
    /// message is not recorded).
    pub fn component_not_found(id: &str, name: &str) -> AdtFailure {
        fail(
            StatusCode::NOT_FOUND,
            codes::COMPONENT_NOT_FOUND,
            format!(
                "There is no component {name} on digital twin {id}. Check the component name against the twin's model."
            ),
        )
    }

    /// A model id in a path or `dependenciesFor` that is not a DTMI: 400 `InvalidArgument`, not
    /// 404 (live; the live message begins the same way).
    pub fn model_id_not_dtmi(id: &str, why: &str) -> AdtFailure {
        AdtFailure::invalid_argument(format!(
            "The format of the Model ID {id} provided is not supported: {why}. A model id is a DTMI such as dtmi:com:example:Room;1."
        ))
    }

    /// A twin validation failure in the live shape: a generic message and the specific detail.
    pub fn twin_invalid(detail: impl Into<String>) -> AdtFailure {
        let body = ErrorBody::new(codes::VALIDATION_FAILED, "Invalid twin specified")
            .with_detail(codes::VALIDATION_FAILED, detail);
        AdtFailure { status: StatusCode::BAD_REQUEST, body }
    }

    /// The live answer to a twin whose model is not uploaded (it is a 400, not a 404).
    pub fn twin_model_missing(model: &str) -> AdtFailure {
        AdtFailure::twin_invalid(format!("{model} or one of its dependencies does not exist."))
    }

    pub fn relationship_invalid_properties(detail: impl Into<String>) -> AdtFailure {
        let body = ErrorBody::new(codes::VALIDATION_FAILED, "Invalid relationship specified")
            .with_detail(codes::VALIDATION_FAILED, detail);
        AdtFailure { status: StatusCode::BAD_REQUEST, body }
    }

    pub fn model_decommissioned(model: &str) -> AdtFailure {
        fail(
            StatusCode::BAD_REQUEST,
            codes::MODEL_DECOMMISSIONED,
            format!("Model {model} is decommissioned. New twins cannot be created with a decommissioned model; use a model that is not decommissioned."),
        )
    }

    /// A model batch that does not parse or resolve. The whole batch is rejected.
    pub fn dtdl_parser_error(reason: impl fmt::Display) -> AdtFailure {
        fail(
            StatusCode::BAD_REQUEST,
            codes::DTDL_PARSER_ERROR,
            format!("None of the models in this request could be created due to a problem with one or more models: {reason}"),
        )
    }

    pub fn models_already_exist(ids: &[String]) -> AdtFailure {
        fail(
            StatusCode::CONFLICT,
            codes::MODEL_ID_ALREADY_EXISTS,
            format!(
                "Some of the model ids already exist: {}. Use Model_List API to view models that already exist. See the Swagger example. (http://aka.ms/ModelListSwSmpl)",
                ids.join(", ")
            ),
        )
    }

    pub fn empty_model_list() -> AdtFailure {
        AdtFailure::invalid_argument(
            "Operation failed as models provided was empty or of a type that is not supported. Provide a JSON array of one or more DTDL Interfaces.",
        )
    }

    pub fn limit_exceeded(message: impl Into<String>) -> AdtFailure {
        fail(StatusCode::BAD_REQUEST, codes::LIMIT_EXCEEDED, message)
    }

    pub fn model_references_not_deleted(referrers: &str) -> AdtFailure {
        fail(
            StatusCode::CONFLICT,
            codes::MODEL_REFERENCES_NOT_DELETED,
            format!(
                "This model is currently being referenced by {referrers}. You must delete these references before deleting the Model. See section on deleting models https://aka.ms/adtv2models."
            ),
        )
    }

    pub fn relationships_not_deleted(id: &str) -> AdtFailure {
        fail(
            StatusCode::BAD_REQUEST,
            codes::RELATIONSHIPS_NOT_DELETED,
            format!(
                "Twin {id} has active relationships. Cannot delete a twin unless all the relationships are deleted. Delete its incoming and outgoing relationships first."
            ),
        )
    }

    pub fn twin_already_exists(id: &str) -> AdtFailure {
        fail(
            StatusCode::PRECONDITION_FAILED,
            codes::PRECONDITION_FAILED,
            format!("If-None-Match: * header was specified but a twin with the id {id} was found. Please specify a different twin id."),
        )
    }

    pub fn relationship_already_exists(relationship_id: &str) -> AdtFailure {
        fail(
            StatusCode::PRECONDITION_FAILED,
            codes::PRECONDITION_FAILED,
            format!(
                "If-None-Match: * header was specified but a relationship with the id {relationship_id} was found. Please specify a different relationship id."
            ),
        )
    }

    /// A well-formed If-Match that no longer matches (the live message was not found).
    pub fn stale_etag(what: &str) -> AdtFailure {
        fail(
            StatusCode::PRECONDITION_FAILED,
            codes::PRECONDITION_FAILED,
            format!("The ETag in the If-Match header does not match the current ETag of {what}. Get the current version and retry."),
        )
    }

    pub fn invalid_if_match() -> AdtFailure {
        AdtFailure::invalid_argument("Invalid If-Match header value. Allowed value(s): If-Match: {etag} or If-Match: *")
    }

    pub fn invalid_if_none_match() -> AdtFailure {
        AdtFailure::invalid_argument("Invalid If-None-Match header value. Allowed value(s): If-None-Match: *")
    }

    pub fn json_patch_invalid(message: impl Into<String>) -> AdtFailure {
        fail(StatusCode::BAD_REQUEST, codes::JSON_PATCH_INVALID, message)
    }

    /// A patch path naming a property the model does not declare (doc/lab wording).
    pub fn patch_property_missing(name: &str) -> AdtFailure {
        AdtFailure::json_patch_invalid(format!(
            "{name} does not exist on component. Please provide a valid patch document. See section on update apis in the documentation https://aka.ms/adtv2twins."
        ))
    }

    /// A patch operation other than add/replace/remove (live wording).
    pub fn patch_operation_unsupported(op: &str) -> AdtFailure {
        AdtFailure::json_patch_invalid(format!(
            "Unsupported operation type {op}. Please provide a valid patch document. See section on update apis in the documentation https://aka.ms/adtv2twins."
        ))
    }

    pub fn sql_query_error(message: impl Into<String>) -> AdtFailure {
        fail(StatusCode::BAD_REQUEST, codes::SQL_QUERY_ERROR, message)
    }

    pub fn bad_request(message: impl Into<String>) -> AdtFailure {
        fail(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message)
    }

    /// Relationship name not on the source's model, or target of the wrong model. The live
    /// message is only community-reported ("Twin relationship does not align with the model").
    pub fn invalid_relationship(reason: impl fmt::Display) -> AdtFailure {
        fail(
            StatusCode::BAD_REQUEST,
            codes::INVALID_RELATIONSHIP,
            format!("Twin relationship does not align with the model: {reason}"),
        )
    }

    pub fn self_relationship(id: &str) -> AdtFailure {
        fail(
            StatusCode::BAD_REQUEST,
            codes::OPERATION_NOT_ALLOWED,
            format!("A relationship cannot have the same twin ({id}) as its source and its target."),
        )
    }

    /// A PUT naming an existing relationship with another target. ADT-REFERENCE §1.3: source
    /// and target cannot change, only delete and re-create. The status and code are the ones
    /// ADT uses for the other refused relationship shape (source = target); the live answer to
    /// this request is not recorded.
    pub fn relationship_target_change(source: &str, id: &str, old: &str, new: &str) -> AdtFailure {
        fail(
            StatusCode::BAD_REQUEST,
            codes::OPERATION_NOT_ALLOWED,
            format!(
                "Relationship {id} of twin {source} points at {old}; its target cannot be changed to {new}. Delete the relationship and create it again."
            ),
        )
    }

    pub fn twin_limit_reached(max: usize) -> AdtFailure {
        fail(
            StatusCode::BAD_REQUEST,
            codes::TWIN_LIMIT_REACHED,
            format!("The instance already holds the maximum of {max} twins. Delete twins or ask for a higher limit."),
        )
    }

    /// Over `max_payload_bytes`. The live status and code are unverified (ADT-REFERENCE.md §2
    /// caveats); the mock answers 413 `PayloadTooLarge`.
    pub fn payload_too_large(size: usize, max: usize) -> AdtFailure {
        fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::PAYLOAD_TOO_LARGE,
            format!(
                "The request body is {size} bytes; the maximum is {max} bytes. Make the twin or relationship smaller."
            ),
        )
    }

    /// A PATCH without `Content-Type: application/json-patch+json`. The live answer is
    /// unverified; the mock answers 415 as ASP.NET services do for a media type they do not consume.
    pub fn unsupported_media_type(found: &str) -> AdtFailure {
        fail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("Content-Type '{found}' is not supported here; send the patch as 'application/json-patch+json'."),
        )
    }
}
