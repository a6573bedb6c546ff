//! The labels every twinload series carries when it runs as an Azure Batch task: the pool, job
//! and task ids Batch sets in the task's environment. Read here directly (the rest of the Batch
//! contract lives elsewhere) so that many tasks of one load can be told apart on a dashboard.

/// Batch's variables and the label each becomes.
pub const BATCH_LABELS: [(&str, &str); 3] =
    [("AZ_BATCH_POOL_ID", "batch_pool"), ("AZ_BATCH_JOB_ID", "batch_job"), ("AZ_BATCH_TASK_ID", "batch_task")];

/// `(label, value)` for each Batch variable that is set and not empty.
pub fn batch_labels() -> Vec<(&'static str, String)> {
    batch_labels_from(|name| std::env::var(name).ok())
}

fn batch_labels_from(get: impl Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
    BATCH_LABELS
        .iter()
        .filter_map(|(var, label)| {
            get(var).filter(|v| !v.is_empty()).map(|v| (*label, crate::redact::redact(&v).into_owned()))
        })
        .collect()
}

/// The Pushgateway grouping key's instance: the task id when Batch set one, else the host name
/// and process id, so two laptops' runs do not overwrite each other's group.
pub fn instance() -> String {
    instance_from(|name| std::env::var(name).ok(), std::process::id())
}

fn instance_from(get: impl Fn(&str) -> Option<String>, pid: u32) -> String {
    match get("AZ_BATCH_TASK_ID").filter(|v| !v.is_empty()) {
        Some(task) => task,
        None => format!("{}-{pid}", get("HOSTNAME").filter(|h| !h.is_empty()).unwrap_or_else(|| "local".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_batch_variables_that_are_set_become_labels() {
        let env = |name: &str| match name {
            "AZ_BATCH_POOL_ID" => Some("pool-a".to_string()),
            "AZ_BATCH_JOB_ID" => Some(String::new()),
            "AZ_BATCH_TASK_ID" => Some("task-7".to_string()),
            _ => None,
        };
        assert_eq!(
            batch_labels_from(env),
            vec![("batch_pool", "pool-a".to_string()), ("batch_task", "task-7".to_string())]
        );
        assert_eq!(instance_from(env, 1), "task-7");
        assert_eq!(instance_from(|_| None, 42), "local-42");
    }
}
