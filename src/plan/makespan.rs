//! The ideal makespan T*: the least time ADT's limits allow for a load, whatever the loader
//! does. It is the largest of
//! - for each limit class, the writes in that class ÷ the class's rate (twin and relationship
//!   PUTs spend create/delete; a patch of an existing twin, as the reference prototype's mapping
//!   makes, spends the patch class; each model upload batch is one models request), and
//! - the busiest twin's writes ÷ `per_twin_writes_per_s` (a twin's own PUT, and every
//!   relationship out of it or into it).
//!
//! A run's achieved makespan ÷ T* says how close the loader came to the limits.

use serde::Serialize;

use super::arena::Record;
use super::Plan;
use crate::limits::LimitClass;

/// One limit class's share of T*.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMakespan {
    pub class: LimitClass,
    /// Requests in the class (model batches for `models`).
    pub writes: u64,
    /// Requests per second the class allows.
    pub rate: u32,
    pub seconds: f64,
}

/// The twin that takes the most writes. Its id belongs in reports, never in a metric label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BusiestTwin {
    pub id: String,
    pub writes: u64,
    pub seconds: f64,
}

/// T* and what binds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Makespan {
    pub t_star_s: f64,
    /// What sets T*: a class name (`create_delete`, `models`) or `busiest_twin`.
    pub bound_by: String,
    pub classes: Vec<ClassMakespan>,
    pub busiest_twin: Option<BusiestTwin>,
}

/// Seconds for `writes` at `rate` per second (a rate of 0 is taken as 1, never a division by 0).
fn seconds(writes: u64, rate: u32) -> f64 {
    writes as f64 / f64::from(rate.max(1))
}

/// Writes each twin takes (by twin index): its own PUT if it is to be written, plus each
/// relationship to write out of it or into it.
pub(crate) fn twin_writes(plan: &Plan) -> Vec<u32> {
    let mut writes = vec![0u32; plan.arena.twins.len()];
    for (i, record) in plan.arena.records.iter().enumerate() {
        if plan.is_rejected(i as u32) {
            continue;
        }
        match *record {
            Record::Twin { id, .. } => writes[id as usize] += 1,
            Record::Relationship { source, target, .. } => {
                writes[source as usize] += 1;
                if target != source {
                    writes[target as usize] += 1;
                }
            }
            Record::Model { .. } => {}
        }
    }
    writes
}

/// Twin patches to write (a twin record without a model patches an existing twin).
fn twin_patches(plan: &Plan) -> u64 {
    let patches = plan
        .arena
        .records
        .iter()
        .enumerate()
        .filter(|(i, record)| matches!(record, Record::Twin { model: None, .. }) && !plan.is_rejected(*i as u32));
    patches.count() as u64
}

pub(crate) fn compute(plan: &Plan) -> Makespan {
    let limits = &plan.opts.limits;
    let counts = plan.counts();
    let patches = twin_patches(plan);
    let create_delete = counts.twins.to_write - patches + counts.relationships.to_write;
    let model_requests = plan.batches.len() as u64;
    let class = |class: LimitClass, writes: u64, rate: u32| ClassMakespan {
        class,
        writes,
        rate,
        seconds: seconds(writes, rate),
    };
    let mut classes = vec![
        class(LimitClass::CreateDelete, create_delete, limits.create_delete_per_s),
        class(LimitClass::Models, model_requests, limits.models_per_s),
    ];
    if patches > 0 {
        classes.push(class(LimitClass::Patch, patches, limits.patch_per_s));
    }
    let writes = twin_writes(plan);
    let busiest =
        writes.iter().enumerate().filter(|(_, w)| **w > 0).max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0))).map(
            |(twin, &w)| BusiestTwin {
                id: plan.twin_name(twin as u32).to_string(),
                writes: u64::from(w),
                seconds: seconds(u64::from(w), limits.per_twin_writes_per_s),
            },
        );
    let mut t_star_s = 0.0;
    let mut bound_by = String::from("nothing to write");
    for c in &classes {
        if c.seconds > t_star_s {
            t_star_s = c.seconds;
            bound_by = c.class.as_str().to_string();
        }
    }
    if let Some(b) = &busiest {
        if b.seconds > t_star_s {
            t_star_s = b.seconds;
            bound_by = "busiest_twin".to_string();
        }
    }
    Makespan { t_star_s, bound_by, classes, busiest_twin: busiest }
}
