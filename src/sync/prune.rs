//! Planning a prune: what left the source within the scope, and every relationship that must
//! go before a twin can (ADT refuses to delete a twin that has relationships, incoming ones
//! from outside the scope included). The guard runs here, before any write: a prune that would
//! delete more than `--max-deletes` stops the run with nothing written.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::client::AdtClient;
use crate::item::ItemKey;
use crate::ledger::Ledger;
use crate::limits::LimitClass;
use crate::run::supervisor::retrier::{CallError, Retrier};

use super::settings::{PruneScope, SyncSettings};
use super::state::AdtState;

/// What a prune deletes, in order: relationships, then twins.
#[derive(Debug, Default)]
pub struct PrunePlan {
    pub relationships: BTreeSet<(String, String)>,
    pub twins: BTreeSet<String>,
    /// Items in the scope (the base of a percentage `--max-deletes`).
    pub scope_size: u64,
    /// GETs spent listing the relationships of twins to delete.
    pub reads: u64,
}

impl PrunePlan {
    pub fn total(&self) -> u64 {
        (self.relationships.len() + self.twins.len()) as u64
    }
}

/// Works out the prune and checks it against `--max-deletes`. `Err` is the message of a
/// refused prune (or of a failed listing). When the run is to stop while the relationships of
/// the twins to delete are listed, the plan is what was found so far (the caller deletes
/// nothing then, and journals each planned delete as not attempted).
pub async fn plan(
    settings: &SyncSettings,
    seen: &HashSet<ItemKey>,
    ledger: Option<&Ledger>,
    adt: Option<&AdtState>,
    (client, retrier): (&AdtClient, &Retrier),
) -> Result<PrunePlan, String> {
    let mut plan = PrunePlan::default();
    match (&settings.prune_scope, ledger, adt) {
        (PruneScope::Ledger, Some(ledger), _) => {
            for key in ledger.keys() {
                match &key {
                    ItemKey::Twin { id } => {
                        plan.scope_size += 1;
                        if !seen.contains(&key) {
                            plan.twins.insert(id.clone());
                        }
                    }
                    ItemKey::Relationship { source, id } => {
                        plan.scope_size += 1;
                        if !seen.contains(&key) {
                            plan.relationships.insert((source.clone(), id.clone()));
                        }
                    }
                    ItemKey::Model { .. } => {}
                }
            }
        }
        (scope @ (PruneScope::Model(_) | PruneScope::Prefix(_)), _, Some(adt)) => {
            let in_scope = |id: &str| scope.holds_twin(id, adt.model_of(id));
            for id in adt.twins.keys().filter(|id| in_scope(id)) {
                plan.scope_size += 1;
                if !seen.contains(&ItemKey::Twin { id: id.clone() }) {
                    plan.twins.insert(id.clone());
                }
            }
            for (source, id) in adt.relationships.keys().filter(|(s, _)| in_scope(s)) {
                plan.scope_size += 1;
                if !seen.contains(&ItemKey::Relationship { source: source.clone(), id: id.clone() }) {
                    plan.relationships.insert((source.clone(), id.clone()));
                }
            }
        }
        (scope, _, _) => {
            return Err(format!("internal: the prune scope {scope} has no state to read. Please report this"))
        }
    }
    add_relationships_of_deleted_twins(&mut plan, adt, client, retrier).await?;
    let allowed = settings.max_deletes.allowed(plan.scope_size);
    if plan.total() > allowed {
        return Err(format!(
            "--prune would delete {} items ({} twins, {} relationships) of the {} in scope {}, more than --max-deletes {} allows ({allowed}). Nothing was written. Check that the inputs are complete, or raise --max-deletes",
            plan.total(),
            plan.twins.len(),
            plan.relationships.len(),
            plan.scope_size,
            settings.prune_scope,
            settings.max_deletes,
        ));
    }
    Ok(plan)
}

/// Every relationship leaving or reaching a twin to delete: from the state read by query when
/// there is one, otherwise listed from ADT (two GETs per twin).
async fn add_relationships_of_deleted_twins(
    plan: &mut PrunePlan,
    adt: Option<&AdtState>,
    client: &AdtClient,
    retrier: &Retrier,
) -> Result<(), String> {
    if plan.twins.is_empty() {
        return Ok(());
    }
    if let Some(adt) = adt {
        let mut touching: HashMap<&str, Vec<&(String, String)>> = HashMap::new();
        for (key, rel) in &adt.relationships {
            touching.entry(key.0.as_str()).or_default().push(key);
            if let Some(target) = rel.about.as_deref() {
                touching.entry(target).or_default().push(key);
            }
        }
        for twin in &plan.twins {
            for key in touching.get(twin.as_str()).into_iter().flatten() {
                plan.relationships.insert((*key).clone());
            }
        }
        return Ok(());
    }
    for twin in plan.twins.clone() {
        for incoming in [false, true] {
            let found = match retrier.call_ok(LimitClass::Read, || client.list_relationships(&twin, incoming)).await {
                Ok(found) => found,
                Err(CallError::Stopped(_)) => return Ok(()),
                Err(e) => return Err(format!("cannot list the relationships of twin {twin} to prune it: {e}")),
            };
            plan.reads += 1;
            plan.relationships.extend(found);
        }
    }
    Ok(())
}
