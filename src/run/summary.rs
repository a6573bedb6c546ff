//! The run summary: a few lines for a person on stderr, and the same as JSON for scripts
//! (`--summary <file.json>`). Every input item is in exactly one outcome of its kind.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::client::RequestCounts;
use crate::exit::ExitStatus;
use crate::item::ItemKind;
use crate::limiter::LimiterStats;

use super::journal::OutcomeCounts;
use super::messages::StopReason;
use super::supervisor::{RetryReason, RetryStats};
use super::RunEnd;
use crate::reason::ReasonCode;

/// How a run ended, as the summary's `outcome` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Every item landed or was already there.
    Completed,
    /// The run reached its end, with items in the dead-letter file.
    CompletedWithDeadLetters,
    /// The run stopped before its end (deadline, signal, watchdog, credentials refused).
    StoppedEarly,
}

impl RunOutcome {
    /// For a person: "completed with dead letters".
    pub fn as_words(self) -> &'static str {
        match self {
            RunOutcome::Completed => "completed",
            RunOutcome::CompletedWithDeadLetters => "completed with dead letters",
            RunOutcome::StoppedEarly => "stopped early",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub outcome: RunOutcome,
    pub exit_code: ExitStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// By kind ("models", "twins", "relationships"), then outcome.
    pub items: BTreeMap<&'static str, OutcomeCounts>,
    pub dead_letters_by_reason: BTreeMap<ReasonCode, u64>,
    /// Problems with an input file's structure rather than an item (also in the dead letters).
    pub file_problems: u64,
    pub dead_letter_file: String,
    pub requests_total: u64,
    pub requests_by_status: BTreeMap<String, u64>,
    pub requests_by_class: BTreeMap<String, u64>,
    pub throttled_total: u64,
    /// throttled_total ÷ requests_total.
    pub throttled_share: f64,
    /// Per limit class: wall time during which its work was held back by 429s (a class pause
    /// from `Retry-After`, or throttled items waiting to go again).
    pub throttled_wait_s: BTreeMap<String, f64>,
    pub retries_total: u64,
    pub retries_by_reason: BTreeMap<RetryReason, u64>,
    pub writer_restarts: u64,
    /// The whole run: reading, planning, checking ADT, writing.
    pub elapsed_s: f64,
    /// The achieved makespan: from the first write to the last answer.
    pub write_elapsed_s: f64,
    /// The ideal makespan from the plan: max over classes of writes ÷ rate, and the busiest
    /// twin's writes ÷ its per-twin rate.
    pub t_star_s: f64,
    /// write_elapsed_s ÷ t_star_s (`null` when T* is 0).
    pub makespan_ratio: Option<f64>,
    /// The planner's counts and makespan, as it reports them.
    pub plan: serde_json::Value,
    pub limiter: LimiterStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal_error: Option<String>,
    /// Why the summary file could not be written (the exit code is then `OutputFailed`); this
    /// summary still reaches stderr and outputs.json.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_error: Option<String>,
    /// What a sync or ledger run planned and did (`crate::sync`); absent for a plain load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<crate::sync::report::SyncReport>,
}

/// What the summary is built from besides the coordinator's [`RunEnd`].
pub struct SummaryInputs {
    pub requests: RequestCounts,
    pub limiter: LimiterStats,
    pub plan: serde_json::Value,
    pub t_star_s: f64,
    pub elapsed: Duration,
}

impl RunSummary {
    pub fn build(end: &RunEnd, inputs: SummaryInputs) -> RunSummary {
        let journal = &end.journal;
        let items: BTreeMap<&'static str, OutcomeCounts> =
            ItemKind::ALL.iter().map(|k| (k.plural(), journal.counts().get(k).copied().unwrap_or_default())).collect();
        let dead_letters = journal.dead_letters_total();
        let landed_any = journal.landed_total() > 0;
        let (outcome, exit_code) = match &end.stop {
            Some(StopReason::AuthFailed(_)) if !landed_any => (RunOutcome::StoppedEarly, ExitStatus::SetupFailed),
            Some(_) => (RunOutcome::StoppedEarly, ExitStatus::StoppedEarly),
            None if dead_letters > 0 => (RunOutcome::CompletedWithDeadLetters, ExitStatus::DeadLetters),
            None => (RunOutcome::Completed, ExitStatus::Ok),
        };
        let RetryStats { retries_total, retries_by_reason, writer_restarts, .. } = end.retries.clone();
        let requests = inputs.requests;
        let write_elapsed_s = end.write_elapsed.as_secs_f64();
        RunSummary {
            outcome,
            exit_code,
            stop_reason: end.stop.as_ref().map(|s| s.to_string()),
            items,
            dead_letters_by_reason: journal.by_reason().clone(),
            file_problems: journal.file_problems(),
            dead_letter_file: journal.path().display().to_string(),
            throttled_share: if requests.requests_total == 0 {
                0.0
            } else {
                requests.throttled_total as f64 / requests.requests_total as f64
            },
            requests_total: requests.requests_total,
            requests_by_status: requests.requests_by_status,
            requests_by_class: requests.requests_by_class,
            throttled_total: requests.throttled_total,
            throttled_wait_s: inputs
                .limiter
                .classes
                .iter()
                .map(|c| (c.class.as_str().to_string(), c.throttled_wait_s))
                .collect(),
            retries_total,
            retries_by_reason,
            writer_restarts,
            elapsed_s: inputs.elapsed.as_secs_f64(),
            write_elapsed_s,
            t_star_s: inputs.t_star_s,
            makespan_ratio: (inputs.t_star_s > 0.0).then(|| write_elapsed_s / inputs.t_star_s),
            plan: inputs.plan,
            limiter: inputs.limiter,
            journal_error: end.journal_error.clone(),
            output_error: None,
            sync: None,
        }
    }

    /// Every item of a kind, whatever its outcome.
    pub fn items_total(&self, kind: ItemKind) -> u64 {
        self.items.get(kind.plural()).map_or(0, |c| c.total())
    }

    /// The summary for a person (stderr).
    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "twinload load: {}", self.outcome.as_words());
        if let Some(reason) = &self.stop_reason {
            let _ = writeln!(s, "  stopped: {reason}");
        }
        for kind in ItemKind::ALL {
            let c = self.items.get(kind.plural()).copied().unwrap_or_default();
            let kind = kind.plural();
            let _ = writeln!(
                s,
                "  {kind:<14} {:>8} landed  {:>8} already there  {:>8} dead-lettered  {:>8} not attempted",
                c.landed, c.already_existed, c.dead_lettered, c.not_attempted
            );
        }
        if !self.dead_letters_by_reason.is_empty() {
            let reasons: Vec<String> = self.dead_letters_by_reason.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(s, "  dead letters in {}: {}", self.dead_letter_file, reasons.join(", "));
        }
        let statuses: Vec<String> = self.requests_by_status.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = writeln!(
            s,
            "  requests {} ({}), throttled {} ({:.2}%), retries {}, writer restarts {}",
            self.requests_total,
            statuses.join(", "),
            self.throttled_total,
            self.throttled_share * 100.0,
            self.retries_total,
            self.writer_restarts
        );
        let ratio = self.makespan_ratio.map_or_else(|| "n/a".to_string(), |r| format!("{r:.3}"));
        let _ = writeln!(
            s,
            "  writing took {:.1} s against an ideal T* of {:.1} s (ratio {ratio}); whole run {:.1} s",
            self.write_elapsed_s, self.t_star_s, self.elapsed_s
        );
        if let Some(e) = &self.journal_error {
            let _ = writeln!(s, "  WARNING: {e}");
        }
        if let Some(e) = &self.output_error {
            let _ = writeln!(s, "  ERROR: {e}");
        }
        s
    }

    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, crate::redact::redact(&text).into_owned() + "\n")
    }
}
