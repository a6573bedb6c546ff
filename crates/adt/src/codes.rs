//! ADT `error.code` values (ADT-REFERENCE.md §2). The mock answers with the live names; the
//! client accepts the spec names too.

pub const DIGITAL_TWIN_NOT_FOUND: &str = "DigitalTwinNotFound";
pub const RELATIONSHIP_NOT_FOUND: &str = "RelationshipNotFound";
pub const MODEL_NOT_FOUND: &str = "ModelNotFound";
/// Live name; the spec says `TargetTwinNotFound`.
pub const TARGET_DIGITAL_TWIN_NOT_FOUND: &str = "TargetDigitalTwinNotFound";
pub const TARGET_TWIN_NOT_FOUND_SPEC: &str = "TargetTwinNotFound";
pub const VALIDATION_FAILED: &str = "ValidationFailed";
pub const DTDL_PARSER_ERROR: &str = "DTDLParserError";
/// Live name (2023); the spec and 2020 docs say `ModelAlreadyExists`.
pub const MODEL_ID_ALREADY_EXISTS: &str = "ModelIdAlreadyExists";
pub const MODEL_ALREADY_EXISTS_SPEC: &str = "ModelAlreadyExists";
pub const INVALID_ARGUMENT: &str = "InvalidArgument";
pub const MISSING_ARGUMENT: &str = "MissingArgument";
pub const LIMIT_EXCEEDED: &str = "LimitExceeded";
pub const MODEL_VERSION_NOT_SUPPORTED: &str = "ModelVersionNotSupported";
pub const MODEL_REFERENCES_NOT_DELETED: &str = "ModelReferencesNotDeleted";
pub const MODEL_REFERENCES_NOT_DECOMMISSIONED: &str = "ModelReferencesNotDecommissioned";
pub const MODEL_DECOMMISSIONED: &str = "ModelDecommissioned";
pub const RELATIONSHIPS_NOT_DELETED: &str = "RelationshipsNotDeleted";
pub const PRECONDITION_FAILED: &str = "PreconditionFailed";
pub const JSON_PATCH_INVALID: &str = "JsonPatchInvalid";
pub const SQL_QUERY_ERROR: &str = "SqlQueryError";
pub const BAD_REQUEST: &str = "BadRequest";
pub const INVALID_RELATIONSHIP: &str = "InvalidRelationship";
pub const OPERATION_NOT_ALLOWED: &str = "OperationNotAllowed";
pub const TWIN_LIMIT_REACHED: &str = "TwinLimitReached";
pub const RELATIONSHIP_ALREADY_EXISTS: &str = "RelationshipAlreadyExists";
/// Spec name for "another bulk job runs"; the live service answers 429 [`TOO_MANY_REQUESTS`].
pub const JOB_LIMIT_REACHED: &str = "JobLimitReached";
/// Live name for an unknown job id; the spec says `ImportJobNotFound`.
pub const JOB_NOT_FOUND: &str = "JobNotFound";
pub const IMPORT_JOB_NOT_FOUND_SPEC: &str = "ImportJobNotFound";
/// Live: a job id already used (409).
pub const JOB_ID_ALREADY_EXISTS: &str = "JobIdAlreadyExists";
/// Live: the 429 to a job create while another bulk job runs.
pub const TOO_MANY_REQUESTS: &str = "TooManyRequests";
pub const COMPONENT_NOT_FOUND: &str = "ComponentNotFound";
/// Query throttling (spec); other 429s use the same code in the mock.
pub const QUOTA_REACHED_ERROR: &str = "QuotaReachedError";
/// Seen without a Retry-After header (azure-sdk-for-js#25647).
pub const QUOTA_EXCEPTION_ERROR: &str = "QuotaExceptionError";
/// The mock's answer to an oversized body; the live status and code are unverified.
pub const PAYLOAD_TOO_LARGE: &str = "PayloadTooLarge";
/// A request without `?api-version=` (Azure REST API guidelines; ADT's own answer is unverified).
pub const MISSING_API_VERSION_PARAMETER: &str = "MissingApiVersionParameter";
/// A request with an api-version the service does not serve (Azure REST API guidelines).
pub const UNSUPPORTED_API_VERSION_VALUE: &str = "UnsupportedApiVersionValue";
pub const UNAUTHORIZED: &str = "Unauthorized";
pub const INTERNAL_SERVER_ERROR: &str = "InternalServerError";
pub const SERVICE_UNAVAILABLE: &str = "ServiceUnavailable";

/// True for the codes that mean "the relationship's target twin is not there (yet)".
pub fn is_target_missing(code: &str) -> bool {
    code == TARGET_DIGITAL_TWIN_NOT_FOUND || code == TARGET_TWIN_NOT_FOUND_SPEC
}

/// True for the codes that mean "these model ids are already uploaded".
pub fn is_model_exists(code: &str) -> bool {
    code == MODEL_ID_ALREADY_EXISTS || code == MODEL_ALREADY_EXISTS_SPEC
}

/// True when a job create was refused because another bulk job (import or delete) holds the
/// instance's one slot: the live 429 `TooManyRequests` "Cannot start another job…", or the
/// spec's 400 `JobLimitReached`. A wait for that job, not a failure; the class throttle's 429s
/// carry other codes.
pub fn is_bulk_job_running(status: u16, code: Option<&str>) -> bool {
    match code {
        Some(JOB_LIMIT_REACHED) => true,
        Some(TOO_MANY_REQUESTS) => status == 429,
        _ => false,
    }
}

/// True for codes that signal throttling even when the status is not 429.
pub fn is_throttle_code(code: &str) -> bool {
    code == QUOTA_REACHED_ERROR || code == QUOTA_EXCEPTION_ERROR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_bulk_slot_is_told_from_throttling() {
        assert!(is_bulk_job_running(429, Some(TOO_MANY_REQUESTS)));
        assert!(is_bulk_job_running(400, Some(JOB_LIMIT_REACHED)));
        assert!(!is_bulk_job_running(429, Some(QUOTA_REACHED_ERROR)));
        assert!(!is_bulk_job_running(429, None));
        assert!(!is_bulk_job_running(400, Some(TOO_MANY_REQUESTS)));
    }
}
