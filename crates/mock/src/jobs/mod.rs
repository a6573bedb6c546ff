//! ADT's bulk Jobs API (ADT-REFERENCE.md §1.5, api-version 2023-10-31): Import Jobs
//! (`/jobs/imports/{id}`) and Delete Jobs (`/jobs/deletions/{id}`).
//!
//! The HTTP handlers (create, get, list, cancel, delete) are `crate::api::jobs`, with the rest of
//! the data plane; this module is the jobs' state and work:
//! - [`runner`]: runs one job on a thread of its own: reads the NDJSON input, applies it through
//!   the same [`Store`] calls (and so the same validation) as the per-item API, at the
//!   configured server-side rate, and writes the job's log.
//! - [`input`]: the Import-Jobs NDJSON input, split into sections with line numbers.
//! - [`blob`]: Blob Storage over plain HTTP: GET the input blob, create the output append blob,
//!   append blocks to it.
//!
//! The real service reads and writes the blobs with its system-assigned managed identity; the
//! mock has none, so it uses the URL as given: a SAS in `inputBlobUri`/`outputBlobUri` (or
//! anonymous access) is what authorises it.
//!
//! Only one bulk job (import or delete) runs at a time (`limits.max_concurrent_jobs`, ADT's
//! default 1); another create gets 429 `TooManyRequests`, as the live service answers. Every `/jobs` request spends the jobs
//! class budget (1 request/s) in the class throttle, like any other class.

pub mod blob;
pub mod input;
pub mod runner;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use crate::store::Store;

/// The server-side import rate the mock assumes when not told otherwise, in items (models,
/// twins, relationships) per second: Microsoft's published figure for Import Jobs, about
/// 1,000,000 twins in about 10 minutes (MS Learn, "Azure Digital Twins APIs and SDKs" →
/// "Bulk import with the Jobs API"; quoted in issue 10), i.e. 1,000,000 / 600 s ≈ 1,667/s.
pub const DEFAULT_IMPORT_RATE_PER_S: f64 = 1_000_000.0 / 600.0;

/// How long the service keeps a finished job before purging it: the spec's examples show
/// purgeDateTime = createdDateTime + 30 days.
pub const JOB_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// How the jobs behave. `JobsConfig::default()` is ADT's published speed.
#[derive(Debug, Clone, PartialEq)]
pub struct JobsConfig {
    /// Items applied per second by a running import job (0 = as fast as the store takes them).
    pub import_rate_per_s: f64,
    /// The runner appends its buffered log lines at least this often, so a client following
    /// the log sees progress while the job runs. Default 1 s.
    pub log_flush_interval: Duration,
    /// The instance's own access to Blob Storage, standing in for the system-assigned managed
    /// identity real ADT reads and writes job blobs with: a SAS query appended to a job's blob URL
    /// that carries none. So a client need not put a SAS in the job (where anyone allowed to read
    /// jobs would see it); never shown in a job's record.
    pub storage_sas: Option<String>,
}

impl Default for JobsConfig {
    fn default() -> JobsConfig {
        JobsConfig {
            import_rate_per_s: DEFAULT_IMPORT_RATE_PER_S,
            log_flush_interval: Duration::from_secs(1),
            storage_sas: None,
        }
    }
}

impl JobsConfig {
    /// `url` as the instance reaches it: with [`JobsConfig::storage_sas`] when it has no query.
    pub fn with_storage_access(&self, url: &str) -> String {
        match &self.storage_sas {
            Some(sas) if !url.contains('?') => format!("{url}?{}", sas.trim_start_matches('?')),
            _ => url.to_string(),
        }
    }
}

/// A job's status, as the service spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    NotStarted,
    Running,
    Failed,
    Succeeded,
    Cancelling,
    Cancelled,
}

impl JobStatus {
    /// True while the job holds the one bulk-job slot.
    pub fn is_active(self) -> bool {
        matches!(self, JobStatus::NotStarted | JobStatus::Running | JobStatus::Cancelling)
    }
}

/// What a job's JSON shows (`ImportJob` / `DeleteJob` of the spec).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_blob_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_blob_uri: Option<String>,
    pub status: JobStatus,
    pub created_date_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_action_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_date_time: Option<String>,
    pub purge_date_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::adt::AdtError>,
}

/// One job: its view (under a lock, the runner updates it) and the cancel switch.
#[derive(Debug)]
pub struct Job {
    view: Mutex<JobView>,
    cancel: AtomicBool,
}

impl Job {
    fn new(view: JobView) -> Arc<Job> {
        Arc::new(Job { view: Mutex::new(view), cancel: AtomicBool::new(false) })
    }

    pub fn view(&self) -> JobView {
        self.view.lock().clone()
    }

    pub fn status(&self) -> JobStatus {
        self.view.lock().status
    }

    fn cancel_requested(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Moves the job on: a new status, `lastActionDateTime` now, and on an end state
    /// `finishedDateTime` and the error (if any).
    fn set_status(&self, status: JobStatus, error: Option<crate::adt::AdtError>) {
        let now = crate::store::timestamp();
        let mut view = self.view.lock();
        view.status = status;
        view.last_action_date_time = Some(now.clone());
        if !status.is_active() {
            view.finished_date_time = Some(now);
            view.error = error;
        }
    }
}

/// Which collection a job belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Import,
    Delete,
}

/// Every job the instance knows, and the one bulk-job slot. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Jobs {
    inner: Arc<JobsInner>,
}

#[derive(Debug)]
struct JobsInner {
    store: Store,
    config: JobsConfig,
    imports: Mutex<BTreeMap<String, Arc<Job>>>,
    deletions: Mutex<BTreeMap<String, Arc<Job>>>,
    /// Jobs that hold the bulk slot (deleting a job's id does not free it: the job runs on).
    active: Mutex<Vec<Arc<Job>>>,
    http: reqwest::Client,
}

impl Jobs {
    pub fn new(store: Store, config: JobsConfig) -> Jobs {
        Jobs {
            inner: Arc::new(JobsInner {
                store,
                config,
                imports: Mutex::default(),
                deletions: Mutex::default(),
                active: Mutex::default(),
                http: blob::http_client(),
            }),
        }
    }

    pub fn config(&self) -> &JobsConfig {
        &self.inner.config
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    fn collection(&self, kind: JobKind) -> &Mutex<BTreeMap<String, Arc<Job>>> {
        match kind {
            JobKind::Import => &self.inner.imports,
            JobKind::Delete => &self.inner.deletions,
        }
    }

    pub fn get(&self, kind: JobKind, id: &str) -> Option<Arc<Job>> {
        self.collection(kind).lock().get(id).cloned()
    }

    /// Jobs after `after` (by id), at most `limit`, and whether more follow.
    pub fn list(&self, kind: JobKind, after: Option<&str>, limit: usize) -> (Vec<JobView>, bool) {
        let jobs = self.collection(kind).lock();
        let mut rows = jobs.iter().filter(|(id, _)| after.is_none_or(|a| id.as_str() > a)).map(|(_, job)| job.view());
        let page: Vec<JobView> = rows.by_ref().take(limit).collect();
        let more = rows.next().is_some();
        (page, more)
    }

    /// Removes a job's id (the job itself, if running, runs on). False when there was none.
    pub fn remove(&self, kind: JobKind, id: &str) -> bool {
        self.collection(kind).lock().remove(id).is_some()
    }

    /// Registers a new job if the id is free and a bulk slot is free; the caller starts it.
    pub(crate) fn admit(&self, kind: JobKind, view: JobView) -> Result<Arc<Job>, Admission> {
        let mut active = self.inner.active.lock();
        active.retain(|job| job.status().is_active());
        let mut jobs = self.collection(kind).lock();
        if jobs.contains_key(&view.id) {
            return Err(Admission::IdTaken);
        }
        let max = self.inner.store.limits().max_concurrent_jobs.max(1);
        if active.len() >= max {
            return Err(Admission::LimitReached);
        }
        let job = Job::new(view);
        jobs.insert(job.view.lock().id.clone(), job.clone());
        active.push(job.clone());
        Ok(job)
    }

    /// Forgets every job (`POST /_mock/reset`): running jobs are asked to stop and given up to
    /// `grace` to do so, so none writes into the store after the caller empties it; then the
    /// lists and the bulk-job slot are cleared. Returns how many jobs were still running after
    /// the grace (0 unless a job is stuck reading its blob).
    pub fn reset(&self, grace: Duration) -> usize {
        let running: Vec<Arc<Job>> = self.inner.active.lock().clone();
        for job in &running {
            self.cancel(job);
        }
        let began = std::time::Instant::now();
        while running.iter().any(|job| job.status().is_active()) && began.elapsed() < grace {
            std::thread::sleep(Duration::from_millis(10));
        }
        let stuck = running.iter().filter(|job| job.status().is_active()).count();
        self.inner.imports.lock().clear();
        self.inner.deletions.lock().clear();
        self.inner.active.lock().clear();
        stuck
    }

    /// Asks a running job to stop; it ends `cancelled` at its next item.
    pub fn cancel(&self, job: &Job) {
        let mut view = job.view.lock();
        if view.status.is_active() {
            job.cancel.store(true, Ordering::Relaxed);
            view.status = JobStatus::Cancelling;
            view.last_action_date_time = Some(crate::store::timestamp());
        }
    }
}

/// Why a job was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    IdTaken,
    /// Every bulk-job slot (`limits.max_concurrent_jobs`) is held by a running job.
    LimitReached,
}

/// `created + JOB_RETENTION`, as RFC 3339.
pub(crate) fn purge_time(created: time::OffsetDateTime) -> String {
    (created + JOB_RETENTION).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use crate::store::StoreOptions;

    fn view(id: &str) -> JobView {
        JobView {
            id: id.into(),
            input_blob_uri: None,
            output_blob_uri: None,
            status: JobStatus::NotStarted,
            created_date_time: String::new(),
            last_action_date_time: None,
            finished_date_time: None,
            purge_date_time: String::new(),
            error: None,
        }
    }

    #[test]
    fn the_instance_s_storage_access_goes_only_on_blob_urls_without_one() {
        let blob = "http://127.0.0.1:10000/devstoreaccount1/staging/j/input.ndjson";
        let with = JobsConfig { storage_sas: Some("?sv=1&sig=S".into()), ..JobsConfig::default() };
        assert_eq!(with.with_storage_access(blob), format!("{blob}?sv=1&sig=S"));
        assert_eq!(with.with_storage_access(&format!("{blob}?sig=OWN")), format!("{blob}?sig=OWN"));
        assert_eq!(JobsConfig::default().with_storage_access(blob), blob);
    }

    #[test]
    fn one_bulk_job_at_a_time_and_ids_are_unique() {
        let jobs = Jobs::new(Store::new(Limits::adt_default(), StoreOptions::default()), JobsConfig::default());
        let first = jobs.admit(JobKind::Import, view("a")).unwrap();
        assert_eq!(jobs.admit(JobKind::Delete, view("b")).unwrap_err(), Admission::LimitReached);
        first.set_status(JobStatus::Succeeded, None);
        assert_eq!(jobs.admit(JobKind::Import, view("a")).unwrap_err(), Admission::IdTaken);
        // A deleted id may be reused; the slot is free once the job ended.
        assert!(jobs.remove(JobKind::Import, "a"));
        jobs.admit(JobKind::Import, view("a")).unwrap();
    }

    #[test]
    fn a_deleted_running_job_keeps_the_slot() {
        let jobs = Jobs::new(Store::new(Limits::adt_default(), StoreOptions::default()), JobsConfig::default());
        let running = jobs.admit(JobKind::Import, view("a")).unwrap();
        assert!(jobs.remove(JobKind::Import, "a"));
        assert!(matches!(jobs.admit(JobKind::Import, view("b")), Err(Admission::LimitReached)));
        jobs.cancel(&running);
        assert_eq!(running.status(), JobStatus::Cancelling);
        running.set_status(JobStatus::Cancelled, None);
        jobs.admit(JobKind::Import, view("b")).unwrap();
    }

    #[test]
    fn reset_forgets_every_job_and_frees_the_slot() {
        let jobs = Jobs::new(Store::new(Limits::adt_default(), StoreOptions::default()), JobsConfig::default());
        let running = jobs.admit(JobKind::Import, view("a")).unwrap();
        // Not started by a runner, so it never ends on its own: reset waits out the grace.
        assert_eq!(jobs.reset(Duration::from_millis(20)), 1);
        assert_eq!(running.status(), JobStatus::Cancelling, "the running job was asked to stop");
        assert!(jobs.get(JobKind::Import, "a").is_none());
        assert_eq!(jobs.list(JobKind::Import, None, 10).0.len(), 0);
        jobs.admit(JobKind::Import, view("a")).unwrap();
    }

    #[test]
    fn status_serialises_as_the_service_spells_it() {
        assert_eq!(serde_json::to_value(JobStatus::NotStarted).unwrap(), "notstarted");
        assert_eq!(serde_json::to_value(JobStatus::Cancelling).unwrap(), "cancelling");
    }
}
