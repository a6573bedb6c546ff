//! Which way a load writes: the per-item API or one import job, and why. `--mode upsert` /
//! `create-only` / `import-job` decide themselves; `--mode auto` weighs the plan's T* (the
//! per-item API's ideal makespan at the configured limits) against the job's expected time
//! (items ÷ the service's import rate, plus a fixed cost), and uses a job only for a first load
//! (an empty instance) above `import_job.auto_min_items` with a staging container to put it in.

use serde::Serialize;

use crate::config::{LoadConfig, WriteMode};

/// The job's cost beyond its items, in seconds: the upload, the job's start, and polls at most
/// once per `poll_interval` (a small constant against the minutes a big load takes).
pub const JOB_FIXED_COST_S: f64 = 10.0;

/// The decision, as the summary's `plan.load_mode` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModeChoice {
    /// "import-job" or "per-item".
    pub mode: &'static str,
    pub reason: String,
    /// Items the load writes (models, twins, relationships).
    pub items: u64,
    /// The per-item API's ideal makespan.
    pub per_item_t_star_s: f64,
    /// items ÷ the expected import rate + the fixed cost.
    pub import_job_expected_s: f64,
}

impl ModeChoice {
    pub fn uses_job(&self) -> bool {
        self.mode == "import-job"
    }
}

/// What `auto` needs to know about the instance; asked only when the rest says "job".
pub enum Instance {
    Empty,
    Holds(u64),
    Unknown(String),
}

/// Decides. `instance` is asked only in auto mode, after the cheaper checks passed.
pub async fn choose<F, Fut>(config: &LoadConfig, items: u64, t_star_s: f64, instance: F) -> ModeChoice
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Instance>,
{
    let job = match choose_offline(config, items, t_star_s) {
        Ok(decided) => return decided,
        Err(job_if_empty) => job_if_empty,
    };
    let compare = job.reason.clone();
    match instance().await {
        Instance::Empty => ModeChoice { reason: format!("first load into an empty instance; {compare}"), ..job },
        Instance::Holds(n) => ModeChoice {
            mode: "per-item",
            reason: format!(
                "the instance already holds {n} twins: import jobs are for first loads (no resume, no patch); {compare}"
            ),
            ..job
        },
        Instance::Unknown(why) => {
            ModeChoice { mode: "per-item", reason: format!("cannot tell whether the instance is empty ({why})"), ..job }
        }
    }
}

/// The choice as far as it can be made without asking the instance: `Ok` when made, `Err`
/// with the job (its reason the time comparison) when it only waits on the instance being
/// empty. `twinload plan`, which never contacts ADT, shows this.
pub fn choose_offline(config: &LoadConfig, items: u64, t_star_s: f64) -> Result<ModeChoice, ModeChoice> {
    let j = &config.import_job;
    let job_s = items as f64 / j.expected_rate_per_s + JOB_FIXED_COST_S;
    let choice = |mode, reason: String| ModeChoice {
        mode,
        reason,
        items,
        per_item_t_star_s: t_star_s,
        import_job_expected_s: job_s,
    };
    let per_item = |reason| choice("per-item", reason);
    let compare = format!(
        "import job ≈{job_s:.0} s ({items} items at {:.0} items/s, Microsoft's published Import Jobs rate, + {JOB_FIXED_COST_S:.0} s) against per-item T* {t_star_s:.0} s",
        j.expected_rate_per_s
    );
    match config.mode {
        WriteMode::Upsert | WriteMode::CreateOnly | WriteMode::Sync => {
            return Ok(per_item("--mode chose the per-item API".into()))
        }
        WriteMode::ImportJob => return Ok(choice("import-job", format!("--mode import-job; {compare}"))),
        WriteMode::Auto => {}
    }
    if j.staging.is_none() {
        return Ok(per_item("no staging container (--staging), which an import job needs".into()));
    }
    if items < j.auto_min_items {
        return Ok(per_item(format!(
            "{items} items is below import_job.auto_min_items ({}); per-item T* {t_star_s:.0} s",
            j.auto_min_items
        )));
    }
    if job_s >= t_star_s {
        return Ok(per_item(format!("the job would not be faster: {compare}")));
    }
    Err(choice("import-job", compare))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretUrl;

    fn auto(staging: bool, min_items: u64) -> LoadConfig {
        let mut c = LoadConfig::new("http://127.0.0.1:1");
        c.mode = WriteMode::Auto;
        c.import_job.staging = staging.then(|| SecretUrl::new("http://127.0.0.1:2/acct/stage?sig=x"));
        c.import_job.auto_min_items = min_items;
        c
    }

    fn empty() -> impl std::future::Future<Output = Instance> {
        std::future::ready(Instance::Empty)
    }

    #[tokio::test]
    async fn auto_picks_the_job_only_for_a_big_first_load_with_staging() {
        // 300,000 items: T* 600 s at 500/s against a job of 190 s.
        let big = choose(&auto(true, 50_000), 300_000, 600.0, empty).await;
        assert!(big.uses_job(), "{big:?}");
        assert!(big.reason.contains("empty instance") && big.reason.contains("T* 600 s"), "{}", big.reason);
        let small = choose(&auto(true, 50_000), 1_000, 2.0, empty).await;
        assert!(!small.uses_job() && small.reason.contains("below import_job.auto_min_items"), "{}", small.reason);
        let no_staging = choose(&auto(false, 0), 300_000, 600.0, empty).await;
        assert!(!no_staging.uses_job() && no_staging.reason.contains("--staging"), "{}", no_staging.reason);
        let not_empty = choose(&auto(true, 0), 300_000, 600.0, || std::future::ready(Instance::Holds(5))).await;
        assert!(!not_empty.uses_job() && not_empty.reason.contains("already holds 5 twins"), "{}", not_empty.reason);
        let slower = choose(&auto(true, 0), 100, 0.2, empty).await;
        assert!(!slower.uses_job() && slower.reason.contains("not be faster"), "{}", slower.reason);
    }

    #[tokio::test]
    async fn explicit_modes_decide_without_asking_the_instance() {
        let mut c = auto(true, 0);
        c.mode = WriteMode::Upsert;
        let asked = || async { panic!("the instance must not be asked") };
        assert!(!choose(&c, 10, 1.0, asked).await.uses_job());
        c.mode = WriteMode::ImportJob;
        assert!(choose(&c, 10, 1.0, asked).await.uses_job());
    }
}
