//! `/jobs/imports[/{id}[/cancel]]` and `/jobs/deletions[/{id}]` (ADT-REFERENCE.md §1.5): the
//! HTTP side of [`crate::jobs`]. Every request here spends the jobs class budget (1/s) in the
//! class throttle before it arrives.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::adt::{codes, ErrorBody};
use crate::jobs::{runner, Admission, JobKind, JobStatus, JobView, Jobs};
use crate::store::error::JSON_CONTENT_TYPE;
use crate::store::AdtFailure;

use super::{header, json_response, list_body, next_link, page_size, path_id, query_value, ApiVersion};

/// Items per page of the job lists. ADT documents no value; like its model pages.
pub const JOBS_PAGE_SIZE: usize = 100;

/// Delete Jobs' `timeoutInMinutes`: default 12 h, allowed 15 min to 24 h (ADT-REFERENCE.md §1.5).
const DELETE_TIMEOUT_MINUTES: std::ops::RangeInclusive<u32> = 15..=1440;

/// The body of `PUT /jobs/imports/{id}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImportJobRequest {
    #[serde(default)]
    input_blob_uri: Option<String>,
    #[serde(default)]
    output_blob_uri: Option<String>,
}

fn validation_failed(message: impl Into<String>) -> AdtFailure {
    AdtFailure { status: StatusCode::BAD_REQUEST, body: ErrorBody::new(codes::VALIDATION_FAILED, message) }
}

/// How long a create refused for a busy bulk-job slot is told to wait. The live answer's
/// `Retry-After` is not recorded; a few seconds keeps a waiting client from spending the
/// instance's 1 jobs request/s that the running job's own poller needs.
pub const BULK_JOB_BUSY_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The live answer to a job create while another bulk job runs: 429 `TooManyRequests`, the
/// error object sent inside a JSON string (as recorded), and `Retry-After`.
fn bulk_job_in_progress() -> HttpResponse {
    let body = ErrorBody::new(
        codes::TOO_MANY_REQUESTS,
        "Cannot start another job while one is in progress. Please wait for it to complete before starting another one.",
    );
    let as_string = serde_json::to_string(&body).unwrap_or_default();
    HttpResponse::build(StatusCode::TOO_MANY_REQUESTS)
        .insert_header(("Retry-After", BULK_JOB_BUSY_RETRY_AFTER.as_secs().to_string()))
        .content_type(JSON_CONTENT_TYPE)
        .body(serde_json::to_vec(&as_string).unwrap_or_default())
}

/// 409 `JobIdAlreadyExists` (live wording).
fn job_id_taken(id: &str) -> AdtFailure {
    AdtFailure {
        status: StatusCode::CONFLICT,
        body: ErrorBody::new(
            codes::JOB_ID_ALREADY_EXISTS,
            format!("Provided Job ID already exists: {id}. Use Jobs_List API to view jobs that already exist."),
        ),
    }
}

/// 404 `JobNotFound` (live wording; the spec's `ImportJobNotFound` is not what ADT sends). Delete
/// jobs are answered alike.
fn not_found(id: &str) -> AdtFailure {
    AdtFailure {
        status: StatusCode::NOT_FOUND,
        body: ErrorBody::new(
            codes::JOB_NOT_FOUND,
            format!("There is no job available that matches the provided id {id}. Check that the Job ID provided is valid by doing a Jobs_List API call."),
        ),
    }
}

/// A blob URI must be an absolute http(s) URL; anything else is 400 `InvalidArgument` (live).
fn check_blob_uri(uri: &str) -> Result<(), AdtFailure> {
    let is_url = reqwest::Url::parse(uri).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if is_url {
        return Ok(());
    }
    Err(AdtFailure::invalid_argument(format!(
        "Azure Storage Blob URI '{uri}' failed validation. Provide the full URL of a blob, such as https://<account>.blob.core.windows.net/<container>/<blob>."
    )))
}

fn job_json(view: &JobView) -> Vec<u8> {
    serde_json::to_vec(view).unwrap_or_default()
}

fn new_view(id: String, input: Option<String>, output: Option<String>) -> JobView {
    let created = time::OffsetDateTime::now_utc();
    let now = created.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    JobView {
        id,
        input_blob_uri: input,
        output_blob_uri: output,
        status: JobStatus::NotStarted,
        created_date_time: now.clone(),
        last_action_date_time: Some(now),
        finished_date_time: None,
        purge_date_time: crate::jobs::purge_time(created),
        error: None,
    }
}

/// `PUT /jobs/imports/{id}` → 201 with the job; 400 `ValidationFailed` for a body without the
/// two URIs, 400 `InvalidArgument` for a URI that is not one, 409 `JobIdAlreadyExists` for an id
/// in use, 429 `TooManyRequests` while another bulk job runs.
pub(super) async fn create_import(
    _: ApiVersion,
    req: HttpRequest,
    jobs: web::Data<Jobs>,
    body: web::Bytes,
) -> Result<HttpResponse, AdtFailure> {
    let id = path_id(&req, "id");
    let request: ImportJobRequest = serde_json::from_slice(&body).map_err(|e| {
        validation_failed(format!(
            "The import job request is not valid JSON: {e}. Send {{\"inputBlobUri\":\"…\",\"outputBlobUri\":\"…\"}}."
        ))
    })?;
    let nonempty = |v: Option<String>, name: &str| match v {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(validation_failed(format!("The import job request needs {name} (the URL of a blob)."))),
    };
    let input = nonempty(request.input_blob_uri, "inputBlobUri")?;
    let output = nonempty(request.output_blob_uri, "outputBlobUri")?;
    check_blob_uri(&input)?;
    check_blob_uri(&output)?;
    let job = match jobs.admit(JobKind::Import, new_view(id.clone(), Some(input.clone()), Some(output.clone()))) {
        Ok(job) => job,
        Err(Admission::IdTaken) => return Err(job_id_taken(&id)),
        Err(Admission::LimitReached) => return Ok(bulk_job_in_progress()),
    };
    let view = job.view();
    runner::start_import(jobs.get_ref().clone(), job, input, output);
    Ok(json_response(StatusCode::CREATED, job_json(&view), None))
}

/// `GET /jobs/imports/{id}` and `GET /jobs/deletions/{id}`.
async fn get(kind: JobKind, req: &HttpRequest, jobs: &Jobs) -> Result<HttpResponse, AdtFailure> {
    let id = path_id(req, "id");
    let job = jobs.get(kind, &id).ok_or_else(|| not_found(&id))?;
    Ok(json_response(StatusCode::OK, job_json(&job.view()), None))
}

pub(super) async fn get_import(
    _: ApiVersion,
    req: HttpRequest,
    jobs: web::Data<Jobs>,
) -> Result<HttpResponse, AdtFailure> {
    get(JobKind::Import, &req, &jobs).await
}

pub(super) async fn get_deletion(
    _: ApiVersion,
    req: HttpRequest,
    jobs: web::Data<Jobs>,
) -> Result<HttpResponse, AdtFailure> {
    get(JobKind::Delete, &req, &jobs).await
}

/// One page of jobs, by id, with `nextLink` when more follow.
fn list(kind: JobKind, req: &HttpRequest, jobs: &Jobs) -> Result<HttpResponse, AdtFailure> {
    let size = page_size(req, JOBS_PAGE_SIZE)?;
    let after = query_value(req, "continuationToken");
    let (page, more) = jobs.list(kind, after.as_deref(), size);
    let next = match (more, page.last()) {
        (true, Some(last)) => Some(next_link(req, &last.id)),
        _ => None,
    };
    Ok(json_response(StatusCode::OK, list_body(page.iter().map(job_json), next), None))
}

pub(super) async fn list_imports(
    _: ApiVersion,
    req: HttpRequest,
    jobs: web::Data<Jobs>,
) -> Result<HttpResponse, AdtFailure> {
    list(JobKind::Import, &req, &jobs)
}

pub(super) async fn list_deletions(
    _: ApiVersion,
    req: HttpRequest,
    jobs: web::Data<Jobs>,
) -> Result<HttpResponse, AdtFailure> {
    list(JobKind::Delete, &req, &jobs)
}

/// `POST /jobs/imports/{id}/cancel` → 200 with the job, `cancelling` while it runs (a job that
/// already ended is returned as it is).
pub(super) async fn cancel_import(
    _: ApiVersion,
    req: HttpRequest,
    jobs: web::Data<Jobs>,
) -> Result<HttpResponse, AdtFailure> {
    let id = path_id(&req, "id");
    let job = jobs.get(JobKind::Import, &id).ok_or_else(|| not_found(&id))?;
    jobs.cancel(&job);
    Ok(json_response(StatusCode::OK, job_json(&job.view()), None))
}

/// `DELETE /jobs/imports/{id}` → 204. Only the id goes: a running import runs on.
pub(super) async fn delete_import(
    _: ApiVersion,
    req: HttpRequest,
    jobs: web::Data<Jobs>,
) -> Result<HttpResponse, AdtFailure> {
    let id = path_id(&req, "id");
    if !jobs.remove(JobKind::Import, &id) {
        return Err(not_found(&id));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /jobs/deletions[?timeoutInMinutes=N]` [`operation-id`] → 202 with the job and an
/// `Operation-Location` header. The job deletes every model, twin and relationship.
pub(super) async fn create_deletion(
    _: ApiVersion,
    req: HttpRequest,
    jobs: web::Data<Jobs>,
) -> Result<HttpResponse, AdtFailure> {
    if let Some(timeout) = query_value(&req, "timeoutInMinutes") {
        let ok = timeout.parse::<u32>().is_ok_and(|m| DELETE_TIMEOUT_MINUTES.contains(&m));
        if !ok {
            return Err(validation_failed(format!(
                "timeoutInMinutes must be a whole number from {} to {}, not '{timeout}'.",
                DELETE_TIMEOUT_MINUTES.start(),
                DELETE_TIMEOUT_MINUTES.end()
            )));
        }
    }
    let id = match header(&req, "operation-id")? {
        Some(id) if !id.trim().is_empty() => id.trim().to_string(),
        _ => uuid::Uuid::new_v4().to_string(),
    };
    let job = match jobs.admit(JobKind::Delete, new_view(id.clone(), None, None)) {
        Ok(job) => job,
        Err(Admission::IdTaken) => return Err(job_id_taken(&id)),
        Err(Admission::LimitReached) => return Ok(bulk_job_in_progress()),
    };
    let view = job.view();
    runner::start_delete(jobs.get_ref().clone(), job);
    let info = req.connection_info();
    let location = format!(
        "{}://{}/jobs/deletions/{}?api-version={}",
        info.scheme(),
        info.host(),
        crate::adt::paths::encode_segment(&id),
        super::SUPPORTED_API_VERSIONS[0]
    );
    let mut response = json_response(StatusCode::ACCEPTED, job_json(&view), None);
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(actix_web::http::header::HeaderName::from_static("operation-location"), value);
    }
    Ok(response)
}
