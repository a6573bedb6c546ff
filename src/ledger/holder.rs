//! Who holds a ledger: a ledger has one writer at a time (two runs appending to one ledger
//! lose each other's records, and one's compaction replaces the other's file), so a run takes
//! it for itself before reading it and leaves this record where a second run finds it: in the
//! lock file beside a local ledger, in the metadata of a Blob ledger. The second run is refused
//! with the holder named (Batch task, host, process, since when) and what to do.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Blob metadata names (C# identifiers, as Blob Storage asks).
const META_TASK: &str = "twinload_task";
const META_HOST: &str = "twinload_host";
const META_PID: &str = "twinload_pid";
const META_SINCE: &str = "twinload_since";

/// The run holding a ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The Azure Batch job and task (`AZ_BATCH_JOB_ID/AZ_BATCH_TASK_ID`), when run by Batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    pub host: String,
    pub pid: u32,
    /// When it took the ledger (RFC 3339, UTC).
    pub since: String,
}

impl Holder {
    /// This process, now.
    pub fn this_process() -> Holder {
        let batch = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let task = match (batch("AZ_BATCH_JOB_ID"), batch("AZ_BATCH_TASK_ID")) {
            (Some(job), Some(task)) => Some(format!("{job}/{task}")),
            (None, Some(task)) => Some(task),
            _ => None,
        };
        let since =
            time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        Holder { task, host: host_name(), pid: std::process::id(), since }
    }

    /// The record as Blob metadata.
    pub fn to_metadata(&self) -> HashMap<String, String> {
        let mut meta = HashMap::from([
            (META_HOST.to_string(), self.host.clone()),
            (META_PID.to_string(), self.pid.to_string()),
            (META_SINCE.to_string(), self.since.clone()),
        ]);
        if let Some(task) = &self.task {
            meta.insert(META_TASK.to_string(), task.clone());
        }
        meta
    }

    /// The record in Blob metadata, if a run left one.
    pub fn from_metadata(meta: &HashMap<String, String>) -> Option<Holder> {
        Some(Holder {
            task: meta.get(META_TASK).cloned(),
            host: meta.get(META_HOST)?.clone(),
            pid: meta.get(META_PID)?.parse().ok()?,
            since: meta.get(META_SINCE)?.clone(),
        })
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(task) = &self.task {
            write!(f, "Batch task {task}, ")?;
        }
        write!(f, "host {}, pid {}, since {}", self.host, self.pid, self.since)
    }
}

/// The machine's name: Batch nodes and containers have one in the kernel; else what the
/// environment says.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .or_else(|| std::env::var("COMPUTERNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "an unknown host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_survives_blob_metadata_and_names_itself() {
        let me = Holder {
            task: Some("job-1/shard-2".into()),
            host: "node-7".into(),
            pid: 42,
            since: "2026-12-02T18:00:00Z".into(),
        };
        assert_eq!(Holder::from_metadata(&me.to_metadata()), Some(me.clone()));
        assert_eq!(me.to_string(), "Batch task job-1/shard-2, host node-7, pid 42, since 2026-12-02T18:00:00Z");
        assert_eq!(Holder::from_metadata(&HashMap::new()), None, "a blob no run holds names nobody");
        let now = Holder::this_process();
        assert_eq!(now.pid, std::process::id());
        assert!(!now.host.is_empty() && now.since.starts_with("20"), "{now}");
    }
}
