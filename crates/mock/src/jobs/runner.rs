//! Runs one bulk job on a thread of its own (so a long import never holds an HTTP worker).
//!
//! An import job reads its input blob, splits it into sections ([`super::input`]) and applies
//! every line through the same store calls as `POST /models`, `PUT /digitaltwins/{id}` and
//! `PUT …/relationships/{id}` (so the same validation and error codes), paced at
//! `JobsConfig::import_rate_per_s` items per second. Models go in as one batch (the service
//! reorders them itself; up to [`MAX_MODELS_PER_IMPORT_JOB`]); models already in the instance
//! are skipped with a Warning line.
//!
//! The log is an append blob at `outputBlobUri`, one JSON object per line, as the service
//! writes it: `{"timestamp","jobId","jobType":"Import","logType":"Info","details":{"section":"Models","status":"Started"}}`,
//! a Started and an end line for the job and for each section. The service's error-line format
//! is unverified (ADT-REFERENCE.md §7); the mock writes
//! `"logType":"Error","details":{"section","lineNumber","id","code","message"}`, where
//! `lineNumber` is the 1-based line of the input blob and `code`/`message` are what the
//! per-item API would have answered. A job with any error line ends `failed` (as the service
//! does when part of the input could not be imported; nothing is rolled back), a cancelled
//! job ends `cancelled` after the item in progress.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::input::{self, Line, Section};
use super::{blob, Job, JobStatus, Jobs};
use crate::adt::{codes, AdtError};
use crate::limits::Limits;
use crate::store::{AdtFailure, Store};

/// Models one import job may carry (ADT's functional limit, not adjustable).
pub const MAX_MODELS_PER_IMPORT_JOB: usize = 10_000;

/// An append block stays under the 4 MiB that every Blob API version accepts.
const MAX_APPEND_BLOCK_BYTES: usize = 4 * 1024 * 1024 - 64 * 1024;

/// Starts an import job on its own thread.
pub fn start_import(jobs: Jobs, job: Arc<Job>, input_url: String, output_url: String) {
    let (input_url, output_url) =
        (jobs.config().with_storage_access(&input_url), jobs.config().with_storage_access(&output_url));
    spawn(job.clone(), async move { run_import(&jobs, &job, &input_url, &output_url).await });
}

/// Starts a delete job on its own thread.
pub fn start_delete(jobs: Jobs, job: Arc<Job>) {
    spawn(job.clone(), async move {
        job.set_status(JobStatus::Running, None);
        jobs.store().reset();
        job.set_status(JobStatus::Succeeded, None);
    });
}

fn spawn(job: Arc<Job>, work: impl std::future::Future<Output = ()> + Send + 'static) {
    let started = std::thread::Builder::new().name("mock-adt-job".into()).spawn(move || {
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(work),
            Err(e) => job.set_status(JobStatus::Failed, Some(internal(format!("cannot start the job: {e}")))),
        }
    });
    if let Err(e) = started {
        tracing::error!("cannot start a job thread: {e}");
    }
}

fn internal(message: String) -> AdtError {
    AdtError { code: codes::INTERNAL_SERVER_ERROR.into(), message, details: Vec::new() }
}

async fn run_import(jobs: &Jobs, job: &Job, input_url: &str, output_url: &str) {
    job.set_status(JobStatus::Running, None);
    let http = &jobs.inner.http;
    let job_id = job.view().id;
    let mut log = JobLog::new(http.clone(), output_url, &job_id, jobs.config().log_flush_interval);
    if let Err(e) = blob::create_append_blob(http, output_url).await {
        let error = AdtError { code: codes::VALIDATION_FAILED.into(), message: e.to_string(), details: Vec::new() };
        job.set_status(JobStatus::Failed, Some(error));
        return;
    }
    log.info(json!({"status": "Started"}));
    let (status, error) = match blob::get(http, input_url).await {
        Err(e) => {
            log.error(json!({"code": codes::VALIDATION_FAILED, "message": e.to_string()}));
            (JobStatus::Failed, Some(validation_failed(e.to_string())))
        }
        Ok(bytes) => match std::str::from_utf8(&bytes) {
            Err(e) => {
                let message = format!("the input blob is not UTF-8 text: {e}");
                log.error(json!({"code": codes::VALIDATION_FAILED, "message": message}));
                (JobStatus::Failed, Some(validation_failed(message)))
            }
            Ok(text) => apply(jobs, job, text, &mut log).await,
        },
    };
    let end = match status {
        JobStatus::Succeeded => "Succeeded",
        JobStatus::Cancelled => "Cancelled",
        _ => "Failed",
    };
    log.info(json!({"status": end}));
    if let Err(e) = log.flush().await {
        tracing::warn!("import job {job_id}: {e}");
    }
    job.set_status(status, error);
}

fn validation_failed(message: String) -> AdtError {
    AdtError { code: codes::VALIDATION_FAILED.into(), message, details: Vec::new() }
}

/// Applies the input; returns the job's end status and error.
async fn apply(jobs: &Jobs, job: &Job, text: &str, log: &mut JobLog) -> (JobStatus, Option<AdtError>) {
    let input = match input::split(text) {
        Ok(input) => input,
        Err(e) => {
            log.error(json!({"lineNumber": e.line, "code": codes::VALIDATION_FAILED, "message": e.message}));
            return (JobStatus::Failed, Some(validation_failed(format!("the input is not an import file: {e}"))));
        }
    };
    let total = input.item_count();
    let mut pacer = Pacer::new(jobs.config().import_rate_per_s);
    let mut failed = 0usize;
    let store = jobs.store();
    let sections: [(Section, &[Line]); 3] = [
        (Section::Models, &input.models),
        (Section::Twins, &input.twins),
        (Section::Relationships, &input.relationships),
    ];
    for (section, lines) in sections {
        if lines.is_empty() {
            continue;
        }
        log.info(json!({"section": section.name(), "status": "Started"}));
        let mut section_failed = 0;
        if section == Section::Models {
            section_failed += import_models(store, lines, log);
            for _ in lines {
                pacer.pace().await;
            }
        } else {
            for line in lines {
                if job.cancel_requested() {
                    return (JobStatus::Cancelled, None);
                }
                let result = match section {
                    Section::Twins => import_twin(store, line.text),
                    _ => import_relationship(store, line.text),
                };
                if let Err((id, failure)) = result {
                    section_failed += 1;
                    log.line_error(section, line.number, &id, failure.code(), &failure.body.error.message);
                }
                pacer.pace().await;
                log.flush_if_due().await;
            }
        }
        failed += section_failed;
        let status = if section_failed == 0 { "Succeeded" } else { "Failed" };
        log.info(json!({"section": section.name(), "status": status}));
        if job.cancel_requested() {
            return (JobStatus::Cancelled, None);
        }
    }
    if failed == 0 {
        (JobStatus::Succeeded, None)
    } else {
        let message = format!("{failed} of {total} items could not be imported; the output log names each line.");
        (JobStatus::Failed, Some(validation_failed(message)))
    }
}

/// The Models section as one batch. Returns how many lines failed.
fn import_models(store: &Store, lines: &[Line], log: &mut JobLog) -> usize {
    let mut docs = Vec::new();
    let mut doc_lines = Vec::new();
    let mut failed = 0;
    for line in lines {
        match serde_json::from_str::<Value>(line.text) {
            Ok(doc) => {
                let id = doc.get("@id").and_then(Value::as_str).unwrap_or_default().to_string();
                if !id.is_empty() && store.models().get(&id).is_some() {
                    log.warning(Section::Models, line.number, &id, "the model is already in the instance; skipped");
                    continue;
                }
                docs.push(doc);
                doc_lines.push((line.number, id));
            }
            Err(e) => {
                failed += 1;
                let message = format!("the line is not valid JSON: {e}");
                log.line_error(Section::Models, line.number, "", codes::DTDL_PARSER_ERROR, &message);
            }
        }
    }
    if docs.is_empty() {
        return failed;
    }
    let limits = Limits { max_models_per_call: MAX_MODELS_PER_IMPORT_JOB, ..store.limits().clone() };
    if let Err(failure) = store.import_models(&docs, &limits) {
        // All or nothing, as POST /models: every model line carries the batch's error.
        for (number, id) in &doc_lines {
            log.line_error(Section::Models, *number, id, failure.code(), &failure.body.error.message);
        }
        failed += doc_lines.len();
    }
    failed
}

type LineFailure = (String, AdtFailure);

fn object(text: &str, what: &str) -> Result<Map<String, Value>, LineFailure> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err((String::new(), AdtFailure::invalid_argument(format!("the {what} line is not a JSON object")))),
        Err(e) => Err((String::new(), AdtFailure::invalid_argument(format!("the {what} line is not valid JSON: {e}")))),
    }
}

fn required(object: &Map<String, Value>, key: &str, what: &str, id: &str) -> Result<String, LineFailure> {
    match object.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err((
            id.to_string(),
            AdtFailure::invalid_argument(format!("the {what} line needs {key} (a non-empty string)")),
        )),
    }
}

/// A Twins line: `{"$dtId", "$metadata":{"$model"}, props…}`, applied as `PUT /digitaltwins/{$dtId}`.
fn import_twin(store: &Store, text: &str) -> Result<(), LineFailure> {
    let doc = object(text, "twin")?;
    let id = required(&doc, "$dtId", "twin", "")?;
    let put = store.prepare_twin_put(&id, text.as_bytes(), false).map_err(|f| (id.clone(), f))?;
    store.commit_twin_put(put).map(drop).map_err(|f| (id, f))
}

/// A Relationships line: `{"$dtId" (the source), "$relationshipId", "$targetId",
/// "$relationshipName", props…}`, applied as `PUT /digitaltwins/{$dtId}/relationships/{$relationshipId}`.
fn import_relationship(store: &Store, text: &str) -> Result<(), LineFailure> {
    let mut doc = object(text, "relationship")?;
    let source = required(&doc, "$dtId", "relationship", "")?;
    let id = required(&doc, "$relationshipId", "relationship", &source)?;
    let name = format!("{source}/{id}");
    doc.remove("$dtId");
    let body = serde_json::to_vec(&doc).unwrap_or_default();
    let put = store.prepare_relationship_put(&source, &id, &body, false).map_err(|f| (name.clone(), f))?;
    store.commit_relationship_put(put).map(drop).map_err(|f| (name, f))
}

/// Holds the job to its server-side rate: item k is due at start + k / rate.
struct Pacer {
    started: Instant,
    per_item: Option<Duration>,
    done: u32,
}

impl Pacer {
    fn new(rate_per_s: f64) -> Pacer {
        let per_item = (rate_per_s.is_finite() && rate_per_s > 0.0).then(|| Duration::from_secs_f64(1.0 / rate_per_s));
        Pacer { started: Instant::now(), per_item, done: 0 }
    }

    async fn pace(&mut self) {
        self.done = self.done.saturating_add(1);
        if let Some(per_item) = self.per_item {
            let due = self.started + per_item * self.done;
            let now = Instant::now();
            // Sleeping for less than a couple of milliseconds costs more than it paces.
            if due > now + Duration::from_millis(2) {
                tokio::time::sleep(due - now).await;
            }
        }
    }
}

/// The job's log: lines buffered and appended to the output blob at least every
/// `flush_interval` (and at the end). A failed append is retried with the next flush; the
/// lines stay buffered.
struct JobLog {
    http: reqwest::Client,
    url: String,
    job_id: String,
    buffer: Vec<u8>,
    last_flush: Instant,
    flush_interval: Duration,
}

impl JobLog {
    fn new(http: reqwest::Client, url: &str, job_id: &str, flush_interval: Duration) -> JobLog {
        JobLog {
            http,
            url: url.to_string(),
            job_id: job_id.to_string(),
            buffer: Vec::new(),
            last_flush: Instant::now(),
            flush_interval,
        }
    }

    fn push(&mut self, log_type: &str, details: Value) {
        let line = json!({
            "timestamp": crate::store::timestamp(),
            "jobId": self.job_id,
            "jobType": "Import",
            "logType": log_type,
            "details": details,
        });
        if let Ok(text) = serde_json::to_vec(&line) {
            self.buffer.extend_from_slice(&text);
            self.buffer.push(b'\n');
        }
    }

    fn info(&mut self, details: Value) {
        self.push("Info", details);
    }

    fn error(&mut self, details: Value) {
        self.push("Error", details);
    }

    fn warning(&mut self, section: Section, line: u64, id: &str, message: &str) {
        self.push("Warning", json!({"section": section.name(), "lineNumber": line, "id": id, "message": message}));
    }

    fn line_error(&mut self, section: Section, line: u64, id: &str, code: &str, message: &str) {
        self.error(json!({"section": section.name(), "lineNumber": line, "id": id, "code": code, "message": message}));
    }

    async fn flush_if_due(&mut self) {
        if self.last_flush.elapsed() >= self.flush_interval || self.buffer.len() >= MAX_APPEND_BLOCK_BYTES {
            if let Err(e) = self.flush().await {
                tracing::warn!("import job {}: {e}", self.job_id);
            }
        }
    }

    async fn flush(&mut self) -> Result<(), blob::BlobError> {
        self.last_flush = Instant::now();
        while !self.buffer.is_empty() {
            // Whole lines only, so a reader never sees half a line.
            let mut end = self.buffer.len().min(MAX_APPEND_BLOCK_BYTES);
            if end < self.buffer.len() {
                end = self.buffer[..end].iter().rposition(|&b| b == b'\n').map_or(end, |i| i + 1);
            }
            let block = self.buffer[..end].to_vec();
            blob::append_block(&self.http, &self.url, block).await?;
            self.buffer.drain(..end);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    fn store_with_model() -> Store {
        let store = Store::new(Limits::adt_default(), StoreOptions::default());
        let model = json!({"@id":"dtmi:t:Room;1","@type":"Interface","@context":"dtmi:dtdl:context;2",
            "contents":[{"@type":"Property","name":"n","schema":"integer"},{"@type":"Relationship","name":"next"}]});
        store.add_models(&[model]).unwrap();
        store
    }

    #[test]
    fn twin_and_relationship_lines_go_through_the_store_validation() {
        let store = store_with_model();
        import_twin(&store, r#"{"$dtId":"a","$metadata":{"$model":"dtmi:t:Room;1"},"n":1}"#).unwrap();
        import_twin(&store, r#"{"$dtId":"b","$metadata":{"$model":"dtmi:t:Room;1"}}"#).unwrap();
        let (id, failure) =
            import_twin(&store, r#"{"$dtId":"c","$metadata":{"$model":"dtmi:t:Room;1"},"n":"x"}"#).unwrap_err();
        assert_eq!((id.as_str(), failure.code()), ("c", codes::VALIDATION_FAILED));
        import_relationship(
            &store,
            r#"{"$dtId":"a","$relationshipId":"r","$targetId":"b","$relationshipName":"next"}"#,
        )
        .unwrap();
        assert_eq!(store.get_relationship("a", "r").unwrap().target, "b");
        let (id, failure) = import_relationship(
            &store,
            r#"{"$dtId":"a","$relationshipId":"r2","$targetId":"zz","$relationshipName":"next"}"#,
        )
        .unwrap_err();
        assert_eq!((id.as_str(), failure.code()), ("a/r2", codes::TARGET_DIGITAL_TWIN_NOT_FOUND));
        assert_eq!(import_twin(&store, "not json").unwrap_err().1.code(), codes::INVALID_ARGUMENT);
    }

    #[tokio::test]
    async fn the_pacer_holds_the_rate() {
        let mut pacer = Pacer::new(200.0);
        let started = Instant::now();
        for _ in 0..40 {
            pacer.pace().await;
        }
        // 40 items at 200/s are due over 200 ms; the last sleep may end a little early or late.
        assert!(started.elapsed() >= Duration::from_millis(190), "{:?}", started.elapsed());
    }
}
