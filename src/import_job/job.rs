//! One import job's life, from the loader's side: start it (waiting, or not, while another bulk
//! job runs), poll it and follow its log within the Jobs API's 1 request/s, cancel it when the
//! run is to stop (SIGTERM/SIGINT) or at the deadline, and account for every item it was given.
//! Every Jobs API call goes through the run's [`Retrier`] (the supervisor's retry policy: a 429
//! is back-pressure, never an attempt).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::adt::codes;
use crate::client::{AdtClient, ClientError, ImportJobInfo};
use crate::config::LoadConfig;
use crate::item::ItemKind;
use crate::limits::LimitClass;
use crate::plan::{ItemId, Scheduler};
use crate::reason::ReasonCode;
use crate::run::journal::{DeadLetter, Journal};
use crate::run::messages::StopReason;
use crate::run::shutdown::Shutdown;
use crate::run::supervisor::retrier::{CallError, Retrier};
use crate::run::supervisor::RetryStats;
use crate::run::RunEnd;

use super::input::LineMap;
use super::log::{LogEvent, LogFollower};
use super::staging::Staging;

/// How a job start ended.
pub enum Started {
    Running,
    /// Another bulk job holds the instance's one slot (`JobLimitReached`).
    Busy(String),
    /// SIGTERM/SIGINT came while waiting for that slot: no job was started.
    Stopped(StopReason),
}

fn is_job_limit(e: &CallError) -> bool {
    matches!(e, CallError::Failed(ClientError::Status(s)) if s.code.as_deref() == Some(codes::JOB_LIMIT_REACHED))
}

/// The job to start: its id, its input and log blobs (URLs without a SAS), and how long to
/// wait when another bulk job holds the instance (`None`: do not wait).
pub struct JobRequest<'a> {
    pub job_id: &'a str,
    pub input_url: &'a str,
    pub log_url: &'a str,
    pub wait_if_busy: Option<Duration>,
}

/// Creates the job. While another bulk job runs: waits up to `wait_if_busy` (polling every
/// `poll_interval`), or reports `Busy` at once when there is no wait.
pub async fn start(
    config: &LoadConfig,
    client: &AdtClient,
    retrier: &Retrier,
    job: JobRequest<'_>,
) -> Result<Started, String> {
    let JobRequest { job_id, input_url, log_url, wait_if_busy } = job;
    let began = Instant::now();
    loop {
        match retrier.call_ok(LimitClass::Jobs, || client.create_import_job(job_id, input_url, log_url)).await {
            Ok(_) => return Ok(Started::Running),
            // The create may have reached ADT: follow the job (its cancel comes first).
            Err(CallError::Stopped(stop)) if stop.may_have_written() => return Ok(Started::Running),
            // Stopped while the Jobs API throttled the create (the instance's one bulk-job slot
            // taken, or the jobs class's 1 request/s).
            Err(CallError::Stopped(stop)) => return Ok(stopped_waiting(stop.reason)),
            Err(e) if is_job_limit(&e) => {
                let busy = "another bulk job (import or delete) is running on the instance (JobLimitReached); ADT runs one at a time";
                match wait_if_busy {
                    None => return Ok(Started::Busy(busy.into())),
                    Some(limit) if began.elapsed() < limit => {
                        tracing::warn!("{busy}: waiting for it to end ({:.0} s so far)", began.elapsed().as_secs_f64());
                        let poll = tokio::time::sleep(config.import_job.poll_interval);
                        if let Err(stop) = retrier.shutdown().unless_stopped(poll).await {
                            return Ok(stopped_waiting(stop));
                        }
                    }
                    Some(limit) => {
                        return Err(format!(
                            "{busy}, and it did not end within {:.0} s (import_job.busy_wait_s). Wait for it (GET /jobs/imports), cancel it, or load with --mode upsert",
                            limit.as_secs_f64()
                        ))
                    }
                }
            }
            Err(e) => return Err(format!("cannot start import job {job_id}: {e}")),
        }
    }
}

/// The run is to stop while the job waits for its start: none is started.
fn stopped_waiting(stop: StopReason) -> Started {
    let what = match &stop {
        StopReason::Signal(name) => format!("{name} received"),
        other => other.to_string(),
    };
    tracing::warn!("{what} while waiting for another bulk job to end: no job was started and nothing was written");
    Started::Stopped(stop)
}

/// What the log and the job said by the end.
#[derive(Default)]
struct Findings {
    rejected: HashMap<ItemId, (u64, String, String)>,
    started: HashSet<String>,
    ended: HashSet<String>,
    job_errors: Vec<String>,
}

impl Findings {
    fn take(&mut self, events: Vec<LogEvent>, lines: &LineMap) {
        for event in events {
            match event {
                LogEvent::SectionStarted(s) => {
                    self.started.insert(s);
                }
                LogEvent::SectionEnded(s) => {
                    self.ended.insert(s);
                }
                LogEvent::LineError { line, code, message } => match lines.item_at(line) {
                    Some(id) => {
                        self.rejected.insert(id, (line, code, message));
                    }
                    None => self.job_errors.push(format!("line {line}: {code}: {message}")),
                },
                LogEvent::JobError { code, message } => self.job_errors.push(format!("{code}: {message}")),
                LogEvent::Other => {}
            }
        }
    }
}

/// Everything `follow` needs.
pub struct Following<'a> {
    pub config: &'a LoadConfig,
    pub client: &'a AdtClient,
    pub retrier: &'a Retrier,
    pub staging: &'a Staging,
    pub job_id: &'a str,
    pub log_blob: &'a str,
    pub lines: &'a LineMap,
    /// The file the job was given (the dead letters show each refused line as sent).
    pub ndjson: &'a [u8],
    pub scheduler: &'a Scheduler,
}

/// Polls the job until it ends (or, after a cancel, until it ends or the shutdown grace is
/// over), reading the log as it grows; then journals every item. `deadline` counts from now.
/// The run's stop ends a wait or a call at once; the cancel and the polls after it are bounded
/// by the shutdown grace.
pub async fn follow(f: Following<'_>, mut journal: Journal, deadline: Option<Duration>) -> RunEnd {
    let began = Instant::now();
    let mut findings = Findings::default();
    let mut follower = LogFollower::default();
    let mut stop: Option<StopReason> = None;
    let mut cancelled_at: Option<Instant> = None;
    // After the stop: the calls that cancel and watch the job, ending with the shutdown grace.
    let mut after_stop: Option<Retrier> = None;
    let mut last: Option<ImportJobInfo> = None;
    let mut lost: Option<String> = None;
    let deadline_sleep = tokio::time::sleep(deadline.unwrap_or(Duration::from_secs(u64::from(u32::MAX))));
    tokio::pin!(deadline_sleep);
    loop {
        tokio::select! {
            reason = f.retrier.shutdown().stopped(), if stop.is_none() => stop = Some(reason),
            _ = &mut deadline_sleep, if stop.is_none() && deadline.is_some() => stop = Some(StopReason::Deadline),
            _ = tokio::time::sleep(f.config.import_job.poll_interval) => {}
        }
        if stop.is_some() && cancelled_at.is_none() {
            tracing::warn!(
                "{}: cancelling import job {}",
                stop.as_ref().map(ToString::to_string).unwrap_or_default(),
                f.job_id
            );
            cancelled_at = Some(Instant::now());
            let grace = f.config.shutdown_grace;
            let calls = after_stop.insert(f.retrier.until(Shutdown::listen(async move {
                tokio::time::sleep(grace).await;
                StopReason::Deadline
            })));
            if let Err(e) = calls.call_ok(LimitClass::Jobs, || f.client.cancel_import_job(f.job_id)).await {
                tracing::error!("cannot cancel import job {}: {e}", f.job_id);
            }
        }
        let calls = after_stop.as_ref().unwrap_or(f.retrier);
        read_log(&f, calls.shutdown(), &mut follower, &mut findings).await;
        match calls.call_ok(LimitClass::Jobs, || f.client.import_job(f.job_id)).await {
            Ok(job) => {
                let done = job.is_finished();
                last = Some(job);
                if done {
                    break;
                }
            }
            // The run's stop came during the poll: cancel on the next round.
            Err(CallError::Stopped(_)) if cancelled_at.is_none() => {}
            Err(CallError::Failed(e)) => {
                lost =
                    Some(format!("lost track of import job {}: {e}; check GET /jobs/imports/{}", f.job_id, f.job_id));
                break;
            }
            Err(CallError::Stopped(_)) => {}
        }
        if cancelled_at.is_some_and(|at| at.elapsed() > f.config.shutdown_grace) {
            lost = Some(format!(
                "import job {} was still cancelling {:.0} s after the cancel; check GET /jobs/imports/{}",
                f.job_id,
                f.config.shutdown_grace.as_secs_f64(),
                f.job_id
            ));
            break;
        }
    }
    let calls = after_stop.as_ref().unwrap_or(f.retrier);
    read_log(&f, calls.shutdown(), &mut follower, &mut findings).await;
    let status = last.as_ref().map_or("unknown", |j| j.status.as_str()).to_string();
    if let Some(error) = last.as_ref().and_then(|j| j.error.as_ref()) {
        tracing::info!("import job {} ended {status}: {}: {}", f.job_id, error.code, error.message);
    }
    let journal_error = account(&f, &findings, &status, lost.as_deref(), &mut journal).err();
    RunEnd { journal, retries: RetryStats::default(), stop, write_elapsed: began.elapsed(), journal_error }
}

/// Reads what the job's log gained, unless `shutdown` ends the read first.
async fn read_log(f: &Following<'_>, shutdown: &Shutdown, follower: &mut LogFollower, findings: &mut Findings) {
    match shutdown.unless_stopped(f.staging.read_from(f.log_blob, follower.offset)).await {
        Ok(Ok(bytes)) => findings.take(follower.feed(&bytes), f.lines),
        Ok(Err(e)) => tracing::warn!("{e}"),
        Err(_) => {}
    }
}
fn section_of(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::Model => "Models",
        ItemKind::Twin => "Twins",
        ItemKind::Relationship => "Relationships",
    }
}

/// The dead letter of the item on an import-file line, as that line was sent.
fn dead_letter(
    f: &Following<'_>,
    id: ItemId,
    text: &str,
    reason_code: ReasonCode,
    error_code: Option<String>,
    reason: String,
) -> DeadLetter {
    DeadLetter {
        key: f.scheduler.key(id),
        origin: f.scheduler.origin(id),
        item_json: Some(text.to_string()),
        status: None,
        error_code,
        reason_code,
        reason,
    }
}

/// The job was never started (stopped while waiting for the instance's one bulk-job slot): every
/// item it was to carry is dead-lettered as not attempted, and the run ends stopped early.
pub fn never_started(f: Following<'_>, mut journal: Journal, stop: StopReason) -> RunEnd {
    let reason = format!("{stop} while it waited for another bulk job to end; no import job was started");
    let journal_error = f
        .lines
        .items(f.ndjson)
        .try_for_each(|line| {
            let letter = dead_letter(&f, line.id, line.text, ReasonCode::NotAttempted, None, reason.clone());
            journal.dead_letter(&letter)
        })
        .err()
        .map(|e| e.to_string());
    RunEnd { journal, retries: RetryStats::default(), stop: Some(stop), write_elapsed: Duration::ZERO, journal_error }
}

/// Every item the job was given ends landed, rejected (its error line), or not landed with why.
fn account(
    f: &Following<'_>,
    findings: &Findings,
    status: &str,
    lost: Option<&str>,
    journal: &mut Journal,
) -> Result<(), String> {
    let job_problem =
        if findings.job_errors.is_empty() { String::new() } else { format!(" ({})", findings.job_errors.join("; ")) };
    for line in f.lines.items(f.ndjson) {
        let (id, kind, text) = (line.id, line.kind, line.text);
        let section = section_of(kind);
        let letter = |reason_code, error_code, reason| dead_letter(f, id, text, reason_code, error_code, reason);
        let outcome = if let Some((line, code, message)) = findings.rejected.get(&id) {
            Some(letter(
                ReasonCode::ImportRejected,
                Some(code.clone()),
                format!("import job {} refused it (line {line} of its input): {message}", f.job_id),
            ))
        } else if findings.ended.contains(section) {
            None
        } else if let Some(lost) = lost {
            Some(letter(ReasonCode::NotAttempted, None, format!("{lost}; whether it landed is unknown")))
        } else if status == "cancelled" {
            let reason = if findings.started.contains(section) {
                "the import job was cancelled while loading this section; it may or may not have landed (import jobs do not roll back): load again with --mode upsert to make sure"
            } else {
                "the import job was cancelled before this section"
            };
            Some(letter(ReasonCode::NotAttempted, None, reason.into()))
        } else {
            Some(letter(
                ReasonCode::ImportJobFailed,
                None,
                format!("import job {} ended {status} before this section{job_problem}", f.job_id),
            ))
        };
        match outcome {
            None => {
                let target = f.scheduler.target_of(id);
                let entry = crate::ledger::Entry { hash: line.hash.into(), etag: None, target };
                journal.landed_as(kind, f.scheduler.key(id), entry);
            }
            Some(letter) => journal.dead_letter(&letter).map_err(|e| e.to_string())?,
        }
    }
    Ok(())
}
