//! Sync on a schedule: send only what changed, delete what left the source, resume after a
//! crash. A [`Stage`] wraps one load:
//!
//! 1. [`Stage::open`]: opens the ledger (`--ledger`, see [`crate::ledger`]) and, in sync mode
//!    without a ledger (or with an empty one) or with `--verify` (or for a prune scope stated by
//!    model or prefix), reads ADT's state through the query API ([`state`]).
//! 2. [`Stage::filter`] sits between the source and the plan: [`classify`] keeps out what is
//!    unchanged and what the sync writes itself (patches, replaces, checks); new items go on
//!    to the plan and are created (`If-None-Match: *`) by the usual writers.
//! 3. [`Stage::before_writes`]: the prune plan and its `--max-deletes` guard ([`prune`]; exit 4
//!    with nothing written when exceeded), the counts shown ([`report`]), then the deletes of
//!    relationships whose target changed (ADT cannot move one), before they are created again.
//! 4. The load runs; the journal records every landed item in the ledger as it lands.
//! 5. [`Stage::after_writes`]: patches (only the changed properties and components, [`diff`]),
//!    replaces (a twin whose model changed), then the prune: relationships, then twins
//!    ([`apply`]). The ledger is made durable and compacted.
//!
//! Outside sync mode a ledger still makes a re-run skip what it records as landed unchanged:
//! that is the crash-safe resume of any load.

pub mod apply;
pub mod classify;
pub mod diff;
pub mod prune;
pub mod report;
pub mod settings;
pub mod state;

use std::collections::HashSet;

use crate::client::AdtClient;
use crate::config::{LoadConfig, WriteMode};
use crate::item::{Item, ItemKey};
use crate::ledger::{Identity, Ledger};
use crate::run::journal::Journal;
use crate::run::messages::StopReason;
use crate::run::supervisor::retrier::{CallError, Retrier};
use crate::run::LoadError;
use crate::source::SourceError;

use classify::{Classifier, Verdict, Work};
use prune::PrunePlan;
use report::SyncReport;
use settings::PruneScope;
use state::AdtState;

/// The sync state of one load. Inert (passes everything on) without ledger, sync or prune.
pub struct Stage {
    sync: bool,
    active: bool,
    ledger: Option<Ledger>,
    adt: Option<AdtState>,
    models_in_adt: HashSet<String>,
    /// Whether to keep `seen`: only a prune reads it.
    prunes: bool,
    seen: HashSet<ItemKey>,
    before: Vec<Work>,
    after: Vec<Work>,
    prune: Option<PrunePlan>,
    report: SyncReport,
}

impl Stage {
    /// A stage that passes everything on (a plain load).
    pub fn inert() -> Stage {
        Stage {
            sync: false,
            active: false,
            ledger: None,
            adt: None,
            models_in_adt: HashSet::new(),
            prunes: false,
            seen: HashSet::new(),
            before: Vec::new(),
            after: Vec::new(),
            prune: None,
            report: SyncReport { state_from: "none", ..SyncReport::default() },
        }
    }

    /// A dry run's stage (`twinload plan --ledger`): what a sync would do, judged by the ledger
    /// alone, without contacting ADT.
    pub fn offline(ledger: Ledger) -> Stage {
        let mut stage = Stage::inert();
        stage.sync = true;
        stage.active = true;
        stage.ledger = Some(ledger);
        stage.report.state_from = "ledger";
        stage
    }

    /// Opens the ledger and reads ADT's state as the settings ask. Nothing is written. When the
    /// run is to stop while the state is read, the stage goes on without it (the run then
    /// writes nothing, and journals every item as not attempted).
    pub async fn open(
        config: &LoadConfig,
        inputs: &[String],
        client: &AdtClient,
        retrier: &Retrier,
    ) -> Result<Stage, LoadError> {
        let settings = &config.sync;
        let mut stage = Stage::inert();
        stage.sync = config.mode == WriteMode::Sync;
        stage.active = stage.sync || settings.ledger.is_some() || settings.prune;
        stage.prunes = settings.prune;
        if !stage.active {
            return Ok(stage);
        }
        if let Some(location) = &settings.ledger {
            let identity = Identity::new(&config.endpoint, settings.source.as_deref(), inputs);
            let ledger = Ledger::open(location, identity, &crate::azure::blob_url::BlobAccess::from_config(config))
                .map_err(|e| LoadError::Setup(e.to_string()))?;
            tracing::info!("ledger {}: {} items recorded", ledger.location(), ledger.len());
            stage.ledger = Some(ledger);
        }
        let stated_scope = settings.prune && settings.prune_scope != PruneScope::Ledger;
        // A new (empty) ledger knows nothing: what ADT holds is read, as without one, so an
        // item loaded before the ledger existed is compared, not assumed.
        let ledger_knows = stage.ledger.as_ref().is_some_and(|l| !l.is_empty());
        if (stage.sync && (!ledger_knows || settings.verify)) || stated_scope {
            match state::read(config, client, retrier).await {
                Ok(adt) => {
                    stage.report.query_pages = adt.pages;
                    stage.adt = Some(adt);
                }
                Err(CallError::Stopped(_)) => {}
                Err(e) => return Err(LoadError::Setup(format!("cannot read ADT's state through the query API: {e}"))),
            }
        }
        stage.report.state_from = match (&stage.ledger, &stage.adt) {
            (Some(_), Some(_)) => "ledger+query",
            (Some(_), None) => "ledger",
            (None, Some(_)) => "query",
            (None, None) => "none",
        };
        Ok(stage)
    }

    /// The source's items minus what is unchanged or written by the sync itself.
    pub fn filter<'a, I>(&'a mut self, items: I) -> impl Iterator<Item = Result<Item, SourceError>> + 'a
    where
        I: IntoIterator<Item = Result<Item, SourceError>> + 'a,
    {
        items.into_iter().filter(move |result| self.keep(result))
    }

    /// Whether an item read goes to the plan: not when it is unchanged or written by the sync
    /// itself. Read errors always do (the plan journals them).
    pub fn keep(&mut self, result: &Result<Item, SourceError>) -> bool {
        let Ok(item) = result else { return true };
        if !self.active {
            return true;
        }
        let Stage { sync, ledger, adt, models_in_adt, prunes, seen, before, after, report, .. } = self;
        let mut classifier = Classifier {
            sync: *sync,
            ledger: ledger.as_mut(),
            adt: adt.as_ref(),
            models_in_adt,
            report,
            seen: (*prunes).then_some(seen),
            before,
            after,
        };
        classifier.classify(item) == Verdict::Plan
    }

    /// Whether this is `--mode sync` (not a plain load, with or without a ledger).
    pub fn is_sync(&self) -> bool {
        self.sync
    }

    /// The models the instance holds (from the plan's model listing).
    pub fn set_models_in_adt(&mut self, models: &HashSet<String>) {
        if self.sync {
            self.models_in_adt = models.clone();
        }
    }

    /// True when the instance is known to hold the model (sync mode's listing).
    pub fn known_model(&self, id: &str) -> bool {
        self.models_in_adt.contains(id)
    }

    /// True when ADT is known to hold the twin (the plan need not ask).
    pub fn known_twin(&self, id: &str) -> bool {
        let key = ItemKey::Twin { id: id.to_string() };
        self.adt.as_ref().is_some_and(|a| a.twins.contains_key(id))
            || (self.adt.is_none() && self.ledger.as_ref().is_some_and(|l| l.get(&key).is_some()))
    }

    /// Before the first write: plans the prune (refusing one over `--max-deletes`), shows the
    /// counts, and deletes the relationships that are to be created again elsewhere.
    pub async fn before_writes(
        &mut self,
        config: &LoadConfig,
        client: &AdtClient,
        retrier: &Retrier,
        journal: &mut Journal,
    ) -> Result<(), LoadError> {
        if !self.active {
            return Ok(());
        }
        if config.sync.prune {
            let plan =
                prune::plan(&config.sync, &self.seen, self.ledger.as_ref(), self.adt.as_ref(), (client, retrier))
                    .await
                    .map_err(LoadError::Setup)?;
            self.report.twins.delete = plan.twins.len() as u64;
            self.report.relationships.delete = plan.relationships.len() as u64;
            self.report.reads += plan.reads;
            self.prune = Some(plan);
        }
        let line = self.report.plan_line();
        tracing::info!("{line}");
        crate::diag!("{line}");
        let before = std::mem::take(&mut self.before);
        let env = apply::Env { config, client, retrier, stopped: None };
        apply::run(before, &env, self.ledger.as_mut(), journal, &mut self.report).await;
        Ok(())
    }

    /// The ledger, for the journal to record what the plan's writers land.
    pub fn take_ledger(&mut self) -> Option<Ledger> {
        self.ledger.take()
    }

    pub fn put_ledger(&mut self, ledger: Option<Ledger>) {
        if ledger.is_some() {
            self.ledger = ledger;
        }
    }

    /// After the plan's writes: patches and replaces, then the prune (relationships before
    /// twins), then the ledger made durable. `stopped`: why the write phase stopped early, if
    /// it did; then none of them is sent, and each is journaled as not attempted (as is what
    /// is left when the run is to stop during them). Returns the stop that left work unsent.
    pub async fn after_writes(
        &mut self,
        config: &LoadConfig,
        client: &AdtClient,
        retrier: &Retrier,
        journal: &mut Journal,
        stopped: Option<StopReason>,
    ) -> Option<StopReason> {
        if !self.active {
            return None;
        }
        let env = apply::Env { config, client, retrier, stopped };
        let after = std::mem::take(&mut self.after);
        let mut left_by = apply::run(after, &env, self.ledger.as_mut(), journal, &mut self.report).await;
        if let Some(plan) = self.prune.take() {
            let relationships =
                plan.relationships.into_iter().map(|(source, id)| Work::DeleteRelationship { source, id }).collect();
            let twins = plan.twins.into_iter().map(|id| Work::DeleteTwin { id }).collect();
            for deletes in [relationships, twins] {
                let stop = apply::run(deletes, &env, self.ledger.as_mut(), journal, &mut self.report).await;
                left_by = left_by.or(stop);
            }
        }
        self.save_ledger();
        left_by
    }

    /// Makes the ledger durable (and compacts it).
    pub fn save_ledger(&mut self) {
        if let Some(ledger) = self.ledger.as_mut() {
            if let Err(e) = ledger.finish() {
                tracing::error!("{e}");
                self.report.failed += 1;
            }
        }
    }

    /// The counts and what they came to, for the summary (`None` for a plain load).
    pub fn report(&self) -> Option<&SyncReport> {
        self.active.then_some(&self.report)
    }
}
