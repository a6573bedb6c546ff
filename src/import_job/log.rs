//! Reading an import job's log (ADT-REFERENCE.md §1.5) as it grows: one JSON object per line,
//! `{"timestamp","jobId","jobType","logType","details":{…}}`. Info lines mark a section
//! Started and ended (`"status":"Succeeded"|"Failed"`); Error lines name the input line
//! (`details.lineNumber`), the error `code` and `message`.
//!
//! The service's error-line format is unverified (ADT-REFERENCE.md §7); this reader follows the
//! mock's (`crates/mock/src/jobs/runner.rs`) and keeps any error line it cannot place as a
//! job-level problem, so nothing it says is lost.

use serde::Deserialize;

/// What one log line says.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEvent {
    /// A section started (`Models`, `Twins`, `Relationships`).
    SectionStarted(String),
    /// A section ended, whether or not some of its lines failed.
    SectionEnded(String),
    /// An input line the job could not apply.
    LineError { line: u64, code: String, message: String },
    /// An error not tied to a line (e.g. the input could not be read).
    JobError { code: String, message: String },
    /// Anything else (job Started/Succeeded, warnings, lines of unknown shape).
    Other,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line {
    #[serde(default)]
    log_type: String,
    #[serde(default)]
    details: Details,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Details {
    section: Option<String>,
    status: Option<String>,
    line_number: Option<u64>,
    code: Option<String>,
    message: Option<String>,
}

pub fn parse_line(text: &str) -> LogEvent {
    let Ok(line) = serde_json::from_str::<Line>(text) else {
        return LogEvent::Other;
    };
    let d = line.details;
    if line.log_type.eq_ignore_ascii_case("error") {
        let code = d.code.unwrap_or_else(|| "ImportError".into());
        let message = d.message.unwrap_or_else(|| text.to_string());
        return match d.line_number {
            Some(line) => LogEvent::LineError { line, code, message },
            None => LogEvent::JobError { code, message },
        };
    }
    match (d.section, d.status.as_deref()) {
        (Some(section), Some("Started")) => LogEvent::SectionStarted(section),
        (Some(section), Some("Succeeded" | "Failed")) => LogEvent::SectionEnded(section),
        _ => LogEvent::Other,
    }
}

/// Splits what arrived into whole lines, keeping a partial last line for the next read.
#[derive(Debug, Default)]
pub struct LogFollower {
    /// Bytes of the log read so far (the next read starts here).
    pub offset: u64,
    partial: Vec<u8>,
}

impl LogFollower {
    /// Takes the next bytes of the log; returns the events of the whole lines among them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<LogEvent> {
        self.offset += bytes.len() as u64;
        self.partial.extend_from_slice(bytes);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else { return Vec::new() };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        String::from_utf8_lossy(&complete).lines().filter(|l| !l.trim().is_empty()).map(parse_line).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_events_and_partial_lines_wait() {
        let mut f = LogFollower::default();
        let started = r#"{"timestamp":"t","jobId":"j","jobType":"Import","logType":"Info","details":{"section":"Twins","status":"Started"}}"#;
        let error = r#"{"logType":"Error","details":{"section":"Twins","lineNumber":7,"id":"x","code":"ValidationFailed","message":"bad"}}"#;
        let text = format!("{started}\n{error}\n{{\"logType\":\"Info\"");
        let events = f.feed(text.as_bytes());
        assert_eq!(events[0], LogEvent::SectionStarted("Twins".into()));
        assert_eq!(events[1], LogEvent::LineError { line: 7, code: "ValidationFailed".into(), message: "bad".into() });
        assert_eq!(events.len(), 2);
        assert_eq!(f.offset, text.len() as u64);
        let rest = r#","details":{"section":"Twins","status":"Failed"}}"#.to_string() + "\n";
        assert_eq!(f.feed(rest.as_bytes()), vec![LogEvent::SectionEnded("Twins".into())]);
        assert_eq!(
            parse_line(r#"{"logType":"Error","details":{"message":"no blob"}}"#),
            LogEvent::JobError { code: "ImportError".into(), message: "no blob".into() }
        );
    }
}
