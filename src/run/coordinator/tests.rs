//! The coordinator and the supervisor on their own: fake writers that answer from a script,
//! on tokio's paused clock (backoffs, `Retry-After`, the deadline and the watchdog pass at
//! once, in order), with no network and no sleeps.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::client::{Outcome, Reply, RequestStats};
use crate::config::{AdaptiveRate, RetryPolicy};
use crate::item::ItemKind;
use crate::limiter::Limiter;
use crate::limits::Limits;
use crate::plan::{Plan, PlanOptions};
use crate::run::journal::Journal;
use crate::run::messages::{Assign, Finished, ModelReport, Report, Request, StopReason, WriterRestarted};
use crate::run::supervisor::{RetryReason, RetryStats, RetryTally, Supervisor, SupervisorSetup};

use super::{Coordinator, CoordinatorSetup, SupervisorLink, WriteEnd};

/// What a fake writer does with an attempt.
#[derive(Debug, Clone)]
enum Answer {
    Reply(Reply),
    /// The writer dies with the request sent and unreported (as `actix::Supervisor` would
    /// restart it, the restarted writer tells the supervisor).
    Crash,
}

/// The script: (what is written, which attempt of it, from 1) → answer. What is written is a
/// twin id, `source/relationship id`, or `models`.
type Script = Arc<dyn Fn(&str, u32) -> Answer + Send + Sync>;

fn landed() -> Answer {
    Answer::Reply(Reply { outcome: Outcome::Landed, status: Some(200), code: None, etag: Some("W/\"1\"".into()) })
}

fn throttled(retry_after_s: u64) -> Answer {
    Answer::Reply(Reply {
        outcome: Outcome::Throttled { retry_after: Some(Duration::from_secs(retry_after_s)) },
        status: Some(429),
        code: Some("TooManyRequests".into()),
        etag: None,
    })
}

fn unavailable() -> Answer {
    Answer::Reply(Reply {
        outcome: Outcome::Transient { detail: "HTTP 503".into() },
        status: Some(503),
        code: Some("ServiceUnavailable".into()),
        etag: None,
    })
}

fn already_there() -> Answer {
    Answer::Reply(Reply { outcome: Outcome::AlreadyExists { ids: vec![] }, status: Some(412), code: None, etag: None })
}

fn refused() -> Answer {
    Answer::Reply(Reply {
        outcome: Outcome::AuthFailed { message: "HTTP 401 Unauthorized".into() },
        status: Some(401),
        code: None,
        etag: None,
    })
}

/// Every attempt the fake writers saw: what, and when on the paused clock.
type Log = Arc<Mutex<Vec<(String, Instant)>>>;

struct FakeWriter {
    slot: usize,
    finished: Recipient<Finished>,
    restarted: Recipient<WriterRestarted>,
    script: Script,
    log: Log,
}

impl Actor for FakeWriter {
    type Context = Context<Self>;
}

impl Handler<Assign> for FakeWriter {
    type Result = ();

    fn handle(&mut self, msg: Assign, _: &mut Context<Self>) {
        let what = match &msg.request {
            Request::Models(_) => "models".to_string(),
            Request::Twin { twin_id, .. } | Request::TwinPatch { twin_id, .. } => twin_id.clone(),
            Request::Relationship { source, relationship_id, .. } => format!("{source}/{relationship_id}"),
        };
        let attempt = {
            let mut log = self.log.lock().unwrap();
            log.push((what.clone(), Instant::now()));
            log.iter().filter(|(w, _)| *w == what).count() as u32
        };
        let reply = match (self.script)(&what, attempt) {
            Answer::Crash => {
                self.restarted.do_send(WriterRestarted { writer: self.slot });
                return;
            }
            Answer::Reply(reply) => reply,
        };
        let report = match msg.request {
            Request::Models(models) if matches!(reply.outcome, Outcome::Landed) => {
                Report::Models(ModelReport { landed: models.iter().map(|m| m.item).collect(), ..Default::default() })
            }
            Request::Models(models) => {
                Report::Models(ModelReport { unsettled: models, unsettled_reply: Some(reply), ..Default::default() })
            }
            _ => Report::Single(reply),
        };
        self.finished.do_send(Finished {
            writer: self.slot,
            task: msg.task,
            report,
            requests: 1,
            sent_at: Some(std::time::Instant::now()),
        });
    }
}

struct Setup {
    writers: usize,
    policy: RetryPolicy,
    deadline: Option<Duration>,
    no_progress_timeout: Duration,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            writers: 4,
            policy: RetryPolicy { max_attempts: 3, ..RetryPolicy::default() },
            deadline: None,
            no_progress_timeout: Duration::from_secs(900),
        }
    }
}

struct Outcomes {
    end: WriteEnd,
    retries: RetryStats,
    dead_letters: Vec<serde_json::Value>,
    log: Vec<(String, Instant)>,
}

impl Outcomes {
    fn counts(&self, kind: ItemKind) -> crate::run::journal::OutcomeCounts {
        self.end.journal.counts().get(&kind).copied().unwrap_or_default()
    }

    fn attempts(&self, what: &str) -> Vec<Instant> {
        self.log.iter().filter(|(w, _)| w == what).map(|(_, at)| *at).collect()
    }

    fn reasons(&self) -> BTreeMap<String, usize> {
        let mut by = BTreeMap::new();
        for l in &self.dead_letters {
            *by.entry(l["reason_code"].as_str().unwrap_or("?").to_string()).or_default() += 1;
        }
        by
    }

    fn letter(&self, id: &str) -> &serde_json::Value {
        self.dead_letters.iter().find(|l| l["id"] == id).unwrap_or_else(|| panic!("no dead letter for {id}"))
    }
}

/// One model, `twins` twins (t0, t1, …) and a relationship from each twin to the next.
fn fleet(twins: usize) -> String {
    let mut out = String::from("{\"Section\": \"Header\"}\n{\"fileVersion\": \"1.0.0\"}\n{\"Section\": \"Models\"}\n");
    out.push_str(r#"{"@id":"dtmi:test:M;1","@type":"Interface","@context":"dtmi:dtdl:context;2"}"#);
    out.push_str("\n{\"Section\": \"Twins\"}\n");
    for i in 0..twins {
        out.push_str(&format!("{{\"$dtId\":\"t{i}\",\"$metadata\":{{\"$model\":\"dtmi:test:M;1\"}}}}\n"));
    }
    out.push_str("{\"Section\": \"Relationships\"}\n");
    for i in 0..twins.saturating_sub(1) {
        let next = i + 1;
        out.push_str(&format!(
            "{{\"$dtId\":\"t{i}\",\"$relationshipId\":\"r{i}\",\"$targetId\":\"t{next}\",\"$relationshipName\":\"next\"}}\n"
        ));
    }
    out
}

/// Plans `input`, runs the coordinator and the supervisor with fake writers answering from
/// `script`, on a paused clock, and returns what the run came to.
fn run(input: &str, setup: Setup, script: impl Fn(&str, u32) -> Answer + Send + Sync + 'static) -> Outcomes {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.ndjson");
    std::fs::write(&path, input).unwrap();
    // A generous per-twin budget: the per-twin limiter keeps real time, the tests do not.
    let limits = Limits { per_twin_writes_per_s: 10_000, per_twin_in_flight: 100, ..Limits::adt_default() };
    let sources = crate::source::open_inputs(&[path.display().to_string()]).unwrap();
    let plan = Plan::build(crate::source::read_all(sources), &PlanOptions::new(limits.clone()));
    assert!(plan.rejected().is_empty(), "{:?}", plan.rejected());
    let scheduler = plan.into_scheduler();
    let journal = Journal::create(&dir.path().join("dead-letters.ndjson")).unwrap();
    let limiter = Arc::new(Limiter::new(&limits, &AdaptiveRate::default()));
    let script: Script = Arc::new(script);
    let log: Log = Arc::default();

    let system = actix::System::new();
    let (end, retries) = system.block_on({
        let log = Arc::clone(&log);
        async move {
            tokio::time::pause();
            let coordinator_ctx = Context::<Coordinator>::new();
            let coordinator = coordinator_ctx.address();
            let supervisor = Supervisor::new(SupervisorSetup {
                policy: setup.policy,
                limiter: Arc::clone(&limiter),
                orders: coordinator.clone().recipient(),
                stop: coordinator.clone().recipient(),
                deadline: setup.deadline,
                no_progress_timeout: setup.no_progress_timeout,
            })
            .start();
            let writers = (0..setup.writers)
                .map(|slot| {
                    FakeWriter {
                        slot,
                        finished: coordinator.clone().recipient(),
                        restarted: supervisor.clone().recipient(),
                        script: Arc::clone(&script),
                        log: Arc::clone(&log),
                    }
                    .start()
                    .recipient()
                })
                .collect();
            let (done, finished) = oneshot::channel();
            coordinator_ctx.run(Coordinator::new(CoordinatorSetup {
                scheduler,
                journal,
                limiter,
                request_stats: Arc::new(RequestStats::default()),
                writers,
                supervisor: SupervisorLink {
                    failed: supervisor.clone().recipient(),
                    progress: supervisor.clone().recipient(),
                    stopping: supervisor.clone().recipient(),
                },
                shutdown_grace: Duration::from_secs(30),
                done,
            }));
            // Bounded on the paused clock too: a run that hangs fails here instead.
            let end = tokio::time::timeout(Duration::from_secs(24 * 3600), finished)
                .await
                .expect("the run ends")
                .expect("the coordinator reports");
            let retries = supervisor.send(RetryTally).await.unwrap();
            (end, retries)
        }
    });
    let text = std::fs::read_to_string(dir.path().join("dead-letters.ndjson")).unwrap();
    let dead_letters = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let log = log.lock().unwrap().clone();
    Outcomes { end, retries, dead_letters, log }
}

#[test]
fn a_throttled_item_waits_out_retry_after_and_lands_without_spending_attempts() {
    // Every twin is throttled 5 times (more than max_attempts = 3) with Retry-After 10 s.
    let out = run(&fleet(6), Setup::default(), |what, n| {
        if what.starts_with('t') && !what.contains('/') && n <= 5 {
            throttled(10)
        } else {
            landed()
        }
    });
    assert_eq!(out.end.stop, None);
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
    assert_eq!(out.counts(ItemKind::Twin).landed, 6);
    assert_eq!(out.counts(ItemKind::Relationship).landed, 5);
    assert_eq!(out.retries.retries_by_reason[&RetryReason::Throttled], 30);
    for i in 0..6 {
        let at = out.attempts(&format!("t{i}"));
        assert_eq!(at.len(), 6, "t{i}: 5 throttles, then it lands");
        for pair in at.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_secs(10), "t{i} went again before its Retry-After");
        }
    }
    // Relationships wait for both their twins.
    let twin1_landed = *out.attempts("t1").last().unwrap();
    assert!(out.attempts("t0/r0")[0] >= twin1_landed);
}

#[test]
fn a_failing_item_is_dead_lettered_after_max_attempts_and_its_dependents_with_it() {
    let out = run(&fleet(4), Setup::default(), |what, _| if what == "t2" { unavailable() } else { landed() });
    assert_eq!(out.end.stop, None);
    assert_eq!(out.attempts("t2").len(), 3, "max_attempts = 3");
    let t2 = out.letter("t2");
    assert_eq!(t2["reason_code"], "retries_exhausted");
    assert_eq!(t2["status"], 503);
    assert_eq!(t2["error_code"], "ServiceUnavailable");
    // r1 (t1 → t2) and r2 (t2 → t3) need t2; r0 does not.
    assert_eq!(out.reasons(), BTreeMap::from([("dependency_failed".into(), 2), ("retries_exhausted".into(), 1)]));
    assert_eq!(out.counts(ItemKind::Twin).landed, 3);
    assert_eq!(out.counts(ItemKind::Relationship).landed, 1);
    assert_eq!(out.retries.retries_by_reason[&RetryReason::Transient], 2);
}

#[test]
fn the_retry_budget_makes_retries_wait_and_loses_nothing() {
    // Every twin fails twice, with a budget of one token and almost no refill from traffic:
    // retries wait for the budget's trickle instead of being dropped.
    let policy = RetryPolicy { max_attempts: 5, budget_min: 1, budget_share: 0.001, ..RetryPolicy::default() };
    let setup = Setup { policy, ..Setup::default() };
    let out = run(&fleet(20), setup, |what, n| {
        if !what.contains('/') && what != "models" && n <= 2 {
            unavailable()
        } else {
            landed()
        }
    });
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
    assert_eq!(out.counts(ItemKind::Twin).landed, 20);
    assert_eq!(out.retries.retries_by_reason[&RetryReason::Transient], 40);
    assert!(out.retries.budget_waits > 0, "{:?}", out.retries);
}

#[test]
fn a_writer_that_dies_mid_request_is_replaced_and_its_item_counts_as_landed_once() {
    // t1's writer dies after sending; the re-send finds it there (412): our own write.
    let out = run(&fleet(3), Setup::default(), |what, n| match (what, n) {
        ("t1", 1) => Answer::Crash,
        ("t1", _) => already_there(),
        _ => landed(),
    });
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
    assert_eq!(out.attempts("t1").len(), 2);
    let twins = out.counts(ItemKind::Twin);
    assert_eq!((twins.landed, twins.already_existed), (3, 0));
    assert_eq!(out.retries.writer_restarts, 1);
    assert_eq!(out.counts(ItemKind::Relationship).landed, 2);
}

#[test]
fn an_item_already_there_on_its_first_attempt_counts_as_already_existed() {
    let out = run(&fleet(2), Setup::default(), |what, _| if what == "t0" { already_there() } else { landed() });
    let twins = out.counts(ItemKind::Twin);
    assert_eq!((twins.landed, twins.already_existed), (1, 1));
}

#[test]
fn the_deadline_stops_the_run_and_every_item_is_accounted_for() {
    // The instance throttles every twin for ever; the run's deadline is 60 s.
    let setup = Setup { deadline: Some(Duration::from_secs(60)), ..Setup::default() };
    let out = run(&fleet(10), setup, |what, _| if what == "models" { landed() } else { throttled(5) });
    assert_eq!(out.end.stop, Some(StopReason::Deadline));
    let twins = out.counts(ItemKind::Twin);
    let rels = out.counts(ItemKind::Relationship);
    assert_eq!(out.counts(ItemKind::Model).landed, 1);
    // Only ever throttled: never written, so not attempted; relationships were never sent.
    assert_eq!((twins.not_attempted, twins.dead_lettered), (10, 0));
    assert_eq!((rels.not_attempted, rels.dead_lettered), (9, 0));
    assert_eq!(out.reasons(), BTreeMap::from([("not_attempted".into(), 19)]));
    let last = out.log.iter().map(|(_, at)| *at).max().unwrap();
    let first = out.log.iter().map(|(_, at)| *at).min().unwrap();
    assert!(last - first <= Duration::from_secs(60), "nothing is sent after the deadline");
}

#[test]
fn the_watchdog_stops_a_run_that_lands_nothing() {
    let setup = Setup { no_progress_timeout: Duration::from_secs(120), ..Setup::default() };
    let out = run(&fleet(3), setup, |_, _| throttled(1));
    assert_eq!(out.end.stop, Some(StopReason::NoProgress(Duration::from_secs(120))));
    assert_eq!(out.dead_letters.len(), 1 + 3 + 2);
    assert!(out.dead_letters.iter().all(|l| l["reason_code"] == "not_attempted"), "{:?}", out.dead_letters);
}

#[test]
fn refused_credentials_stop_the_run_with_that_item_dead_lettered_for_it() {
    let out = run(
        &fleet(5),
        Setup { writers: 1, ..Setup::default() },
        |what, _| {
            if what == "t0" {
                refused()
            } else {
                landed()
            }
        },
    );
    assert!(matches!(out.end.stop, Some(StopReason::AuthFailed(_))), "{:?}", out.end.stop);
    assert_eq!(out.letter("t0")["reason_code"], "auth_failed");
    let reasons = out.reasons();
    assert_eq!(reasons["auth_failed"], 1);
    // Nothing is lost: every item landed or has its line.
    let total: u64 = [ItemKind::Model, ItemKind::Twin, ItemKind::Relationship]
        .iter()
        .map(|k| {
            let c = out.counts(*k);
            c.landed + c.already_existed + c.dead_lettered + c.not_attempted
        })
        .sum();
    assert_eq!(total, 1 + 5 + 4);
}
