//! The scheduler: hands out work whose dependencies have all landed, and keeps account of every
//! item until it has landed, failed, or been rejected.
//!
//! Each item keeps a counter of the dependencies it still waits for; `landed` decrements its
//! dependents' counters and releases those that reach zero. `failed` rejects the dependents,
//! transitively, so they never come out of `next`.
//!
//! Order of work from `next`:
//! 1. model batches, in batch order, once every model they need from earlier batches landed;
//! 2. relationships of "hot" twins: a twin whose remaining relationships, at its own
//!    `per_twin_writes_per_s`, would take at least [`HOT_SHARE`] of the time all remaining writes
//!    take at `create_delete_per_s`. Such a twin bounds the makespan (T*), so it must start
//!    early and stay busy; it spends only its own small share of the class rate;
//! 3. twins, those whose relationships belong to the busiest twins first (so hot relationships
//!    become ready early);
//! 4. the other relationships, from the twin with the most remaining work first, one at a time
//!    per twin so consecutive writes spread over many twins;
//! 5. work put back with `defer`, then twins parked by `defer` before their time (see below).
//!
//! Relationships queue per "lane": the busier of their two twins (by total writes), because a
//! relationship write spends both twins' 10 writes/s and the busier one is what binds. When the
//! run defers a relationship (its twin's budget is spent), that lane is parked for
//! `create_delete_per_s ÷ per_twin_writes_per_s` hand-outs, the time the twin needs to earn
//! its next write at full speed, so a hot twin does not come straight back.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use rustc_hash::FxHashMap;

use super::arena::{Record, TwinIdx, NONE};
use super::makespan::twin_writes;
use super::{dependency_failed, BodyError, ItemId, Plan, ReasonCode, Rejected};
use crate::item::{Item, ItemKey, Origin};

/// A twin is hot when its remaining relationships need at least this share of the time that all
/// remaining writes need at the class rate.
pub const HOT_SHARE: f64 = 0.5;

/// One unit of work for a writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// One `POST /models` batch, dependency-ordered.
    Models(Vec<ItemId>),
    Twin(ItemId),
    Relationship(ItemId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waits for dependencies to land.
    Waiting,
    /// May be handed out.
    Ready,
    /// Handed out by `next`, no outcome yet.
    Outstanding,
    Landed,
    Failed,
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// No ready relationship queued, or not in the heap.
    Idle,
    /// Has ready relationships and one live entry in the lane heap.
    Queued,
    /// Deferred: waits in `parked` until enough other work went out.
    Parked,
}

/// Releases work in dependency order. See the module doc.
pub struct Scheduler {
    plan: Plan,
    state: Vec<State>,
    /// Dependencies not yet landed (for models: those outside the model's own batch).
    waiting: Vec<u32>,
    batch_of: FxHashMap<ItemId, u32>,
    /// Per batch: members still waiting for a dependency.
    batch_waiting: Vec<u32>,
    batch_released: Vec<bool>,
    ready_batches: VecDeque<u32>,
    /// Ready twins by priority (the most writes among the twin and its neighbours), then the
    /// twin's own writes (the busy twin before its neighbours), then input order.
    ready_twins: BinaryHeap<(u32, u32, Reverse<ItemId>)>,
    twin_priority: Vec<u32>,
    /// Total writes per twin (by twin index), to pick each relationship's lane.
    twin_writes: Vec<u32>,
    /// Per lane (twin index): an intrusive list of ready relationships.
    lane_head: Vec<u32>,
    lane_tail: Vec<u32>,
    next_in_lane: Vec<u32>,
    /// Per lane: relationships not yet handed out (ready or waiting).
    lane_remaining: Vec<u32>,
    lane_state: Vec<Lane>,
    lane_heap: BinaryHeap<(u32, Reverse<TwinIdx>)>,
    /// Parked lanes by the hand-out count at which they may come back (earliest first).
    parked: BinaryHeap<Reverse<(u64, TwinIdx)>>,
    park_span: u64,
    /// Hand-outs per second at the configured create/delete rate (to turn a wait into hand-outs).
    handouts_per_s: f64,
    handouts: u64,
    deferred: VecDeque<Work>,
    /// Per item failed at run time: the failure at the root of its chain (itself, or the root
    /// of a dependency that failed before it).
    failure_root: FxHashMap<ItemId, ItemId>,
    /// The reasons of the root failures, named once in each dependent's reason.
    root_reasons: FxHashMap<ItemId, String>,
    pending: usize,
    /// Twins and relationships not yet handed out (create/delete writes still to come).
    pending_writes: u64,
    outstanding: usize,
}

impl Scheduler {
    pub(crate) fn new(plan: Plan) -> Scheduler {
        let n = plan.item_count();
        let twins = plan.arena.twins.len();
        let limits = &plan.opts.limits;
        let park_span = u64::from((limits.create_delete_per_s / limits.per_twin_writes_per_s.max(1)).max(1));
        let twin_writes = twin_writes(&plan);
        let mut s = Scheduler {
            state: vec![State::Waiting; n],
            waiting: vec![0; n],
            batch_of: FxHashMap::default(),
            batch_waiting: vec![0; plan.batches.len()],
            batch_released: vec![false; plan.batches.len()],
            ready_batches: VecDeque::new(),
            ready_twins: BinaryHeap::new(),
            twin_priority: twin_writes.clone(),
            twin_writes,
            lane_head: vec![NONE; twins],
            lane_tail: vec![NONE; twins],
            next_in_lane: vec![NONE; n],
            lane_remaining: vec![0; twins],
            lane_state: vec![Lane::Idle; twins],
            lane_heap: BinaryHeap::new(),
            parked: BinaryHeap::new(),
            park_span,
            handouts_per_s: f64::from(limits.create_delete_per_s.max(1)),
            handouts: 0,
            deferred: VecDeque::new(),
            failure_root: FxHashMap::default(),
            root_reasons: FxHashMap::default(),
            pending: 0,
            pending_writes: 0,
            outstanding: 0,
            plan,
        };
        for (b, batch) in s.plan.batches.iter().enumerate() {
            for &m in batch {
                s.batch_of.insert(m, b as u32);
            }
        }
        for id in 0..n as ItemId {
            if s.plan.is_rejected(id) {
                s.state[id as usize] = State::Rejected;
                continue;
            }
            s.pending += 1;
            match s.plan.arena.record(id) {
                Record::Model { .. } => {}
                Record::Twin { .. } => s.pending_writes += 1,
                Record::Relationship { source, target, .. } => {
                    s.pending_writes += 1;
                    let lane = s.lane_of(id);
                    s.lane_remaining[lane as usize] += 1;
                    let (ws, wt) = (s.twin_writes[source as usize], s.twin_writes[target as usize]);
                    let p = &mut s.twin_priority;
                    p[source as usize] = p[source as usize].max(wt);
                    p[target as usize] = p[target as usize].max(ws);
                }
            }
            let own_batch = s.batch_of.get(&id).copied();
            let waiting = s
                .plan
                .graph
                .dependencies(id)
                .filter(|d| own_batch.is_none() || s.batch_of.get(d).copied() != own_batch)
                .count();
            s.waiting[id as usize] = waiting as u32;
        }
        for b in 0..s.plan.batches.len() {
            let members_waiting = s.plan.batches[b].iter().filter(|&&m| s.waiting[m as usize] > 0).count();
            s.batch_waiting[b] = members_waiting as u32;
            if members_waiting == 0 {
                s.batch_released[b] = true;
                s.ready_batches.push_back(b as u32);
            }
        }
        for id in 0..n as ItemId {
            if s.state[id as usize] == State::Waiting && s.waiting[id as usize] == 0 {
                s.make_ready(id);
            }
        }
        s
    }

    /// The item behind an id from [`next`](Scheduler::next), its body read back from where the
    /// plan keeps it (an I/O error there is the only error).
    ///
    /// # Panics
    /// If the plan was built with `keep_bodies: false` (as `twinload plan` does): a load must
    /// keep bodies. Use [`key`](Scheduler::key) and [`origin`](Scheduler::origin) otherwise.
    pub fn item(&self, id: ItemId) -> Result<Item, BodyError> {
        self.plan.item(id)
    }

    /// An item's body as text, for its dead letter (`None` if the plan keeps no bodies or it
    /// cannot be read back).
    pub fn body_json(&self, id: ItemId) -> Option<String> {
        self.plan.body_json(id)
    }

    /// A relationship's target twin (`None` for another item).
    pub fn target_of(&self, id: ItemId) -> Option<String> {
        match self.plan.arena.records.get(id as usize) {
            Some(Record::Relationship { target, .. }) => Some(self.plan.twin_name(*target).to_string()),
            _ => None,
        }
    }

    /// Whether the item is a twin written as a JSON Patch (a twin without a model).
    pub fn is_patch(&self, id: ItemId) -> bool {
        matches!(self.plan.arena.records.get(id as usize), Some(Record::Twin { model: None, .. }))
    }

    /// The kind of an item (no allocation, no body read).
    pub fn kind(&self, id: ItemId) -> crate::item::ItemKind {
        self.plan.arena.record(id).kind()
    }

    /// The identity of an item (available with or without bodies).
    pub fn key(&self, id: ItemId) -> ItemKey {
        self.plan.arena.key(id)
    }

    /// Where an item was read.
    pub fn origin(&self, id: ItemId) -> Origin {
        self.plan.arena.origin(id)
    }

    /// Ready work: everything it depends on has landed. Models first, then twins, then
    /// relationships interleaved across twins so one twin's 10 writes/s binds only that twin's
    /// relationships (see the module doc for the exact order). None = nothing ready right now.
    // Not an Iterator: None means "nothing ready now", not "finished" (see is_finished).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Work> {
        self.release_due_lanes();
        if let Some(work) = self.next_batch() {
            return Some(work);
        }
        if let Some(lane) = self.top_lane() {
            if self.is_hot(lane) {
                return self.hand_out_from(lane);
            }
        }
        if let Some(work) = self.next_twin() {
            return Some(work);
        }
        if let Some(lane) = self.top_lane() {
            return self.hand_out_from(lane);
        }
        if let Some(work) = self.next_deferred() {
            return Some(work);
        }
        while let Some(Reverse((_, lane))) = self.parked.pop() {
            if self.lane_state[lane as usize] == Lane::Parked && self.requeue(lane) {
                if let Some(top) = self.top_lane() {
                    return self.hand_out_from(top);
                }
            }
        }
        None
    }

    /// Puts work back (e.g. its twin's per-twin budget is spent); it comes out again from
    /// next() after other ready work. A relationship's lane is parked for the time its twin
    /// needs to earn its next write at full speed.
    pub fn defer(&mut self, work: Work) {
        let span = self.park_span;
        self.defer_for(work, span);
    }

    /// As [`defer`](Scheduler::defer), when the twin's budget frees in `wait`: the lane comes
    /// back after about that long (counted in hand-outs at the configured rate), not a whole
    /// write interval later. Parking a hub's lane for a full interval whatever was left of it
    /// cost hubs up to half their 10 writes/s.
    pub fn defer_for_wait(&mut self, work: Work, wait: std::time::Duration) {
        // One hand-out more than the wait, so the lane does not come straight back into the
        // same pass still a moment short of its time.
        let span = (wait.as_secs_f64() * self.handouts_per_s).ceil() as u64 + 1;
        self.defer_for(work, span.min(self.park_span));
    }

    fn defer_for(&mut self, work: Work, span: u64) {
        match work {
            Work::Relationship(id) => {
                if !self.take_back(id) {
                    return;
                }
                let lane = self.lane_of(id);
                let l = lane as usize;
                self.lane_remaining[l] += 1;
                self.next_in_lane[id as usize] = self.lane_head[l];
                self.lane_head[l] = id;
                if self.lane_tail[l] == NONE {
                    self.lane_tail[l] = id;
                }
                if self.lane_state[l] != Lane::Parked {
                    self.lane_state[l] = Lane::Parked;
                    self.parked.push(Reverse((self.handouts + span, lane)));
                }
            }
            Work::Twin(id) => {
                if self.take_back(id) {
                    self.deferred.push_back(Work::Twin(id));
                }
            }
            Work::Models(ids) => {
                let back: Vec<ItemId> = ids.into_iter().filter(|&id| self.take_back(id)).collect();
                if !back.is_empty() {
                    self.deferred.push_back(Work::Models(back));
                }
            }
        }
    }

    /// Marks an item landed (or already there, unchanged) and releases its dependents.
    pub fn landed(&mut self, id: ItemId) {
        let Some(state) = self.state.get(id as usize).copied() else { return };
        match state {
            State::Outstanding => self.outstanding -= 1,
            State::Waiting | State::Ready => self.retire_pending(id),
            State::Landed | State::Failed | State::Rejected => return,
        }
        self.state[id as usize] = State::Landed;
        let own_batch = self.batch_of.get(&id).copied();
        let dependents: Vec<ItemId> = self.plan.graph.dependents(id).collect();
        for d in dependents {
            if self.state[d as usize] != State::Waiting {
                continue;
            }
            if own_batch.is_some() && self.batch_of.get(&d).copied() == own_batch {
                continue; // same-batch dependencies were never counted
            }
            let w = &mut self.waiting[d as usize];
            *w = w.saturating_sub(1);
            if *w == 0 {
                if let Some(&b) = self.batch_of.get(&d) {
                    self.batch_member_unblocked(b);
                }
                self.make_ready(d);
            }
        }
    }

    /// Marks an item failed for good; returns its dependents, transitively, each Rejected with
    /// a reason naming the item it depends on and the failure at the root of the chain
    /// ([`dependency_failed`]), which will never come out of next(). Dependents already handed
    /// out are left to their own outcome. An item that failed because a dependency failed
    /// before it (a model of the same upload batch) passes that dependency's root on.
    pub fn failed(&mut self, id: ItemId, reason: &str) -> Vec<Rejected> {
        let Some(state) = self.state.get(id as usize).copied() else { return Vec::new() };
        match state {
            State::Outstanding => self.outstanding -= 1,
            State::Waiting | State::Ready => self.retire_pending(id),
            State::Landed | State::Failed | State::Rejected => return Vec::new(),
        }
        self.state[id as usize] = State::Failed;
        let root = self.plan.graph.dependencies(id).find_map(|d| self.failure_root.get(&d).copied()).unwrap_or(id);
        self.failure_root.insert(id, root);
        if root == id {
            self.root_reasons.insert(id, reason.to_string());
        }
        let root_key = self.plan.arena.key(root);
        let root_reason = self.root_reasons.get(&root).map_or(reason, String::as_str).to_string();
        let mut rejected = Vec::new();
        let mut stack: Vec<ItemId> = vec![id];
        while let Some(failed) = stack.pop() {
            let dependents: Vec<ItemId> = self.plan.graph.dependents(failed).collect();
            let failed_key = self.plan.arena.key(failed);
            for d in dependents {
                if !matches!(self.state[d as usize], State::Waiting | State::Ready) {
                    continue;
                }
                self.retire_pending(d);
                self.state[d as usize] = State::Rejected;
                let reason = dependency_failed(&failed_key, &root_key, &root_reason);
                rejected.push(self.rejection(d, ReasonCode::DependencyFailed, reason));
                stack.push(d);
            }
        }
        rejected
    }

    /// The twins a write of this item spends per-twin budget on (twin: itself; relationship:
    /// source and target).
    pub fn twins_written(&self, id: ItemId) -> Vec<&str> {
        let names = &self.plan.arena.twins;
        match self.plan.arena.records.get(id as usize) {
            Some(Record::Twin { id, .. }) => vec![names.name(*id)],
            Some(Record::Relationship { source, target, .. }) if source == target => vec![names.name(*source)],
            Some(Record::Relationship { source, target, .. }) => vec![names.name(*source), names.name(*target)],
            _ => Vec::new(),
        }
    }

    /// Handed out by next() and not yet landed/failed.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Not yet handed out (ready or waiting).
    pub fn pending(&self) -> usize {
        self.pending
    }

    pub fn is_finished(&self) -> bool {
        self.pending == 0 && self.outstanding == 0
    }

    /// Every item never handed out, as Rejected "not_attempted" (for a stop at the deadline or
    /// on SIGTERM). Items handed out keep their own outcome.
    pub fn drain_unattempted(&mut self, reason: &str) -> Vec<Rejected> {
        let mut rejected = Vec::new();
        self.drain_unattempted_into(reason, |r| rejected.push(r));
        rejected
    }

    /// [`drain_unattempted`](Scheduler::drain_unattempted), one item at a time into `each` (a
    /// stop early in a large load streams them to the dead-letter file instead of copying them
    /// all at once).
    pub fn drain_unattempted_into(&mut self, reason: &str, mut each: impl FnMut(Rejected)) {
        for id in 0..self.state.len() as ItemId {
            if matches!(self.state[id as usize], State::Waiting | State::Ready) {
                self.retire_pending(id);
                self.state[id as usize] = State::Rejected;
                each(self.rejection(id, ReasonCode::NotAttempted, reason.to_string()));
            }
        }
        self.ready_batches.clear();
        self.ready_twins.clear();
        self.lane_heap.clear();
        self.parked.clear();
        self.deferred.clear();
    }

    /// The plan this scheduler runs (counts, makespan, rejections found before the run).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    fn rejection(&self, id: ItemId, code: ReasonCode, reason: String) -> Rejected {
        Rejected {
            key: self.plan.arena.key(id),
            origin: self.plan.arena.origin(id),
            code,
            reason,
            item_json: self.plan.body_json(id),
        }
    }

    /// The lane of a relationship: the busier of its twins (the source on a tie).
    fn lane_of(&self, id: ItemId) -> TwinIdx {
        match self.plan.arena.record(id) {
            Record::Relationship { source, target, .. } => {
                if self.twin_writes[target as usize] > self.twin_writes[source as usize] {
                    target
                } else {
                    source
                }
            }
            _ => NONE,
        }
    }

    fn make_ready(&mut self, id: ItemId) {
        self.state[id as usize] = State::Ready;
        match self.plan.arena.record(id) {
            Record::Model { .. } => {} // released with its batch
            Record::Twin { id: twin, .. } => {
                let t = twin as usize;
                self.ready_twins.push((self.twin_priority[t], self.twin_writes[t], Reverse(id)));
            }
            Record::Relationship { .. } => {
                let lane = self.lane_of(id);
                let l = lane as usize;
                self.next_in_lane[id as usize] = NONE;
                if self.lane_tail[l] == NONE {
                    self.lane_head[l] = id;
                } else {
                    self.next_in_lane[self.lane_tail[l] as usize] = id;
                }
                self.lane_tail[l] = id;
                if self.lane_state[l] == Lane::Idle {
                    self.lane_state[l] = Lane::Queued;
                    self.lane_heap.push((self.lane_remaining[l], Reverse(lane)));
                }
            }
        }
    }

    fn batch_member_unblocked(&mut self, b: u32) {
        let w = &mut self.batch_waiting[b as usize];
        *w = w.saturating_sub(1);
        if *w == 0 && !self.batch_released[b as usize] {
            self.batch_released[b as usize] = true;
            self.ready_batches.push_back(b);
        }
    }

    /// Bookkeeping for an item leaving the pending set without being handed out.
    fn retire_pending(&mut self, id: ItemId) {
        self.pending = self.pending.saturating_sub(1);
        match self.plan.arena.record(id) {
            Record::Model { .. } => {
                if self.state[id as usize] == State::Waiting && self.waiting[id as usize] > 0 {
                    if let Some(&b) = self.batch_of.get(&id) {
                        self.batch_member_unblocked(b);
                    }
                }
            }
            Record::Twin { .. } => self.pending_writes = self.pending_writes.saturating_sub(1),
            Record::Relationship { .. } => {
                self.pending_writes = self.pending_writes.saturating_sub(1);
                let lane = self.lane_of(id) as usize;
                self.lane_remaining[lane] = self.lane_remaining[lane].saturating_sub(1);
            }
        }
    }

    /// An item handed out returns to the ready set. False if it was not outstanding.
    fn take_back(&mut self, id: ItemId) -> bool {
        if self.state.get(id as usize) != Some(&State::Outstanding) {
            return false;
        }
        self.state[id as usize] = State::Ready;
        self.outstanding -= 1;
        self.pending += 1;
        // Hand-outs count writes that went out (the scheduler's clock for parked lanes): one
        // that came back did not.
        self.handouts = self.handouts.saturating_sub(1);
        if !matches!(self.plan.arena.record(id), Record::Model { .. }) {
            self.pending_writes += 1;
        }
        true
    }

    fn hand_out(&mut self, id: ItemId) {
        self.state[id as usize] = State::Outstanding;
        self.pending = self.pending.saturating_sub(1);
        self.outstanding += 1;
        if !matches!(self.plan.arena.record(id), Record::Model { .. }) {
            self.pending_writes = self.pending_writes.saturating_sub(1);
        }
    }

    fn next_batch(&mut self) -> Option<Work> {
        while let Some(b) = self.ready_batches.pop_front() {
            let members = self.plan.batches[b as usize].clone();
            if let Some(work) = self.hand_out_models(members) {
                return Some(work);
            }
        }
        None
    }

    /// Hands out the models of a batch that are still ready, as one upload (None if none is).
    fn hand_out_models(&mut self, ids: Vec<ItemId>) -> Option<Work> {
        let members: Vec<ItemId> = ids.into_iter().filter(|&m| self.state[m as usize] == State::Ready).collect();
        if members.is_empty() {
            return None;
        }
        for &m in &members {
            self.hand_out(m);
        }
        self.handouts += 1;
        Some(Work::Models(members))
    }

    fn next_twin(&mut self) -> Option<Work> {
        while let Some((_, _, Reverse(id))) = self.ready_twins.pop() {
            if let Some(work) = self.hand_out_twin(id) {
                return Some(work);
            }
        }
        None
    }

    fn hand_out_twin(&mut self, id: ItemId) -> Option<Work> {
        if self.state[id as usize] != State::Ready {
            return None;
        }
        self.hand_out(id);
        self.handouts += 1;
        Some(Work::Twin(id))
    }

    fn next_deferred(&mut self) -> Option<Work> {
        while let Some(work) = self.deferred.pop_front() {
            let handed = match work {
                Work::Twin(id) => self.hand_out_twin(id),
                Work::Models(ids) => self.hand_out_models(ids),
                Work::Relationship(_) => None, // relationships go back to their lane, never here
            };
            if handed.is_some() {
                return handed;
            }
        }
        None
    }

    /// Whether a lane's twin bounds the makespan (see [`HOT_SHARE`]).
    fn is_hot(&self, lane: TwinIdx) -> bool {
        let limits = &self.plan.opts.limits;
        let lane_seconds =
            f64::from(self.lane_remaining[lane as usize]) / f64::from(limits.per_twin_writes_per_s.max(1));
        let all_seconds = self.pending_writes as f64 / f64::from(limits.create_delete_per_s.max(1));
        lane_seconds >= HOT_SHARE * all_seconds
    }

    /// The queued lane with the most remaining work, after dropping stale heap entries.
    fn top_lane(&mut self) -> Option<TwinIdx> {
        loop {
            let &(remaining, Reverse(lane)) = self.lane_heap.peek()?;
            let l = lane as usize;
            if self.lane_state[l] != Lane::Queued {
                self.lane_heap.pop();
                continue;
            }
            if !self.skip_to_ready(lane) {
                self.lane_heap.pop();
                self.lane_state[l] = Lane::Idle;
                continue;
            }
            if remaining != self.lane_remaining[l] {
                self.lane_heap.pop();
                self.lane_heap.push((self.lane_remaining[l], Reverse(lane)));
                continue;
            }
            return Some(lane);
        }
    }

    /// Drops rejected relationships from the front of a lane; true if a ready one is left.
    fn skip_to_ready(&mut self, lane: TwinIdx) -> bool {
        let l = lane as usize;
        while self.lane_head[l] != NONE {
            let head = self.lane_head[l];
            if self.state[head as usize] == State::Ready {
                return true;
            }
            self.pop_lane_front(lane);
        }
        false
    }

    fn pop_lane_front(&mut self, lane: TwinIdx) -> Option<ItemId> {
        let l = lane as usize;
        let head = self.lane_head[l];
        if head == NONE {
            return None;
        }
        self.lane_head[l] = self.next_in_lane[head as usize];
        if self.lane_head[l] == NONE {
            self.lane_tail[l] = NONE;
        }
        Some(head)
    }

    /// Hands out the first relationship of the lane at the top of the heap.
    fn hand_out_from(&mut self, lane: TwinIdx) -> Option<Work> {
        self.lane_heap.pop();
        let id = self.pop_lane_front(lane)?;
        let l = lane as usize;
        self.lane_remaining[l] = self.lane_remaining[l].saturating_sub(1);
        self.hand_out(id);
        self.handouts += 1;
        if self.skip_to_ready(lane) {
            self.lane_heap.push((self.lane_remaining[l], Reverse(lane)));
        } else {
            self.lane_state[l] = Lane::Idle;
        }
        Some(Work::Relationship(id))
    }

    /// Parked lanes whose time has come go back in the heap.
    fn release_due_lanes(&mut self) {
        while let Some(&Reverse((until, lane))) = self.parked.peek() {
            if until > self.handouts {
                break;
            }
            self.parked.pop();
            if self.lane_state[lane as usize] == Lane::Parked {
                self.requeue(lane);
            }
        }
    }

    /// A parked lane goes back in the heap if it has ready work. True if it did.
    fn requeue(&mut self, lane: TwinIdx) -> bool {
        let l = lane as usize;
        if self.skip_to_ready(lane) {
            self.lane_state[l] = Lane::Queued;
            self.lane_heap.push((self.lane_remaining[l], Reverse(lane)));
            true
        } else {
            self.lane_state[l] = Lane::Idle;
            false
        }
    }
}
