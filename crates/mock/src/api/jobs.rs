//! `/jobs/imports[/{id}[/cancel]]` and `/jobs/deletions[/{id}]` (ADT-REFERENCE.md §1.5): the
//! HTTP side of [`crate::jobs`]. Every request here spends the jobs class budget (1/s) in the
//! class throttle before it arrives.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::adt::{codes, ErrorBody};
use crate::jobs::{runner, Admission, JobKind, JobStatus, JobView, Jobs};
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

fn job_limit_reached(max: usize) -> AdtFailure {
    AdtFailure {
        status: StatusCode::BAD_REQUEST,
        body: ErrorBody::new(
            codes::JOB_LIMIT_REACHED,
            format!(
                "The maximum number of bulk jobs running at once ({max}) has been reached. Wait for the running import or delete job to finish, or cancel it."
            ),
        ),
    }
}

fn not_found(kind: JobKind, id: &str) -> AdtFailure {
    let (code, what) = match kind {
        JobKind::Import => (codes::IMPORT_JOB_NOT_FOUND, "import"),
        JobKind::Delete => (codes::DELETE_JOB_NOT_FOUND, "delete"),
    };
    AdtFailure {
        status: StatusCode::NOT_FOUND,
        body: ErrorBody::new(code, format!("There is no {what} job with the id {id}. List the jobs to find it.")),
    }
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

/// `PUT /jobs/imports/{id}` → 201 with the job; 400 `ValidationFailed` for a bad body or an id in
/// use, 400 `JobLimitReached` while another bulk job runs.
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
    let job = jobs.admit(JobKind::Import, new_view(id.clone(), Some(input.clone()), Some(output.clone()))).map_err(
        |refused| match refused {
            Admission::IdTaken => validation_failed(format!(
                "An import job with the id {id} already exists. Use another id, or delete the old job first."
            )),
            Admission::LimitReached(max) => job_limit_reached(max),
        },
    )?;
    let view = job.view();
    runner::start_import(jobs.get_ref().clone(), job, input, output);
    Ok(json_response(StatusCode::CREATED, job_json(&view), None))
}

/// `GET /jobs/imports/{id}` and `GET /jobs/deletions/{id}`.
async fn get(kind: JobKind, req: &HttpRequest, jobs: &Jobs) -> Result<HttpResponse, AdtFailure> {
    let id = path_id(req, "id");
    let job = jobs.get(kind, &id).ok_or_else(|| not_found(kind, &id))?;
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
    let job = jobs.get(JobKind::Import, &id).ok_or_else(|| not_found(JobKind::Import, &id))?;
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
        return Err(not_found(JobKind::Import, &id));
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
    let job = jobs.admit(JobKind::Delete, new_view(id.clone(), None, None)).map_err(|refused| match refused {
        Admission::IdTaken => validation_failed(format!("A delete job with the id {id} already exists.")),
        Admission::LimitReached(max) => job_limit_reached(max),
    })?;
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
