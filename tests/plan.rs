//! The planner on crafted inputs, through the library and the real `twinload plan` binary:
//! every kind of bad input is reported with its reason and place while good items stay in the
//! plan; batches respect dependencies and sizes; T* on a hand-checkable case; the scheduler
//! releases in dependency order and rejects dependents of a failure; a generated fleet plans
//! cleanly.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;

use twinload::gen::{generate, GenOptions};
use twinload::item::{Item, ItemKey};
use twinload::limits::{LimitClass, Limits};
use twinload::plan::{ItemId, Plan, PlanOptions, Rejected, Scheduler, Work};
use twinload::source::{open_inputs, read_all};

const CTX: &str = r#""@context":"dtmi:dtdl:context;2""#;

fn model(id: &str, extra: &str) -> String {
    format!(r#"{{"@id":"{id}","@type":"Interface",{CTX}{extra}}}"#)
}

fn twin(id: &str, model: &str) -> String {
    format!(r#"{{"$dtId":"{id}","$metadata":{{"$model":"{model}"}}}}"#)
}

fn rel(source: &str, id: &str, target: &str) -> String {
    format!(r#"{{"$dtId":"{source}","$relationshipId":"{id}","$targetId":"{target}","$relationshipName":"near"}}"#)
}

fn ndjson(models: &[String], twins: &[String], rels: &[String]) -> String {
    let mut out = String::from("{\"Section\": \"Header\"}\n{\"fileVersion\": \"1.0.0\"}\n{\"Section\": \"Models\"}\n");
    for l in models {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str("{\"Section\": \"Twins\"}\n");
    for l in twins {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str("{\"Section\": \"Relationships\"}\n");
    for l in rels {
        out.push_str(l);
        out.push('\n');
    }
    out
}

fn plan_files(dir: &Path, files: &[(&str, &str)], opts: &PlanOptions) -> Plan {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let sources = open_inputs(&[dir.display().to_string()]).unwrap();
    Plan::build(read_all(sources), opts)
}

fn find<'a>(plan: &'a Plan, code: &str) -> Vec<&'a Rejected> {
    plan.rejected().iter().filter(|r| r.code == code).collect()
}

fn line_of(r: &Rejected) -> (String, u64) {
    let file = Path::new(&*r.origin.file).file_name().unwrap().to_string_lossy().into_owned();
    (file, r.origin.line)
}

/// One file with every kind of bad input issue 3 point 3 names, next to good items.
#[test]
fn each_kind_of_bad_input_is_reported_with_reason_and_place_and_good_items_stay() {
    let dir = tempfile::tempdir().unwrap();
    let big = format!(r#"{{"$dtId":"big","$metadata":{{"$model":"dtmi:ex:Room;1"}},"blob":"{}"}}"#, "x".repeat(40_000));
    let models = vec![
        model("dtmi:ex:Room;1", ""),                                                      // 4
        model("dtmi:ex:Room;1", ""),                                                      // 5 duplicate
        model("dtmi:ex:bad-name;1", ""),                                                  // 6 bad DTMI
        model("dtmi:ex:Robot;1", r#","contents":[{"@type":"Command","name":"reboot"}]"#), // 7 invalid
        model("dtmi:ex:A;1", r#","extends":"dtmi:ex:B;1""#),                              // 8 cycle
        model("dtmi:ex:B;1", r#","extends":"dtmi:ex:A;1""#),                              // 9 cycle
        model("dtmi:ex:C;1", r#","extends":"dtmi:ex:A;1""#),                              // 10 needs the cycle
    ];
    let twins = vec![
        twin("r1", "dtmi:ex:Room;1"),                  // 12
        twin("r2", "dtmi:ex:Room;1"),                  // 13
        twin("r1", "dtmi:ex:Room;1"),                  // 14 duplicate
        r#"{"$dtId":"nomodel","temp":3}"#.to_string(), // 15 no $metadata.$model
        "{\"$dtId\": \"broken\",".to_string(),         // 16 invalid JSON
        big,                                           // 17 too large
        twin("robo", "dtmi:ex:Robot;1"),               // 18 model invalid
        twin("c1", "dtmi:ex:C;1"),                     // 19 model needs a cycle
        rel("r1", "wrong", "r2"),                      // 20 relationship in the Twins section
        twin("ext1", "dtmi:ex:Elsewhere;1"),           // 21 external model
        twin("bad", "dtmi:ex:x-y;1"),                  // 22 bad DTMI in $model
    ];
    let rels = vec![
        rel("r1", "a", "r2"),                                                             // 24
        rel("r1", "a", "r2"),                                                             // 25 duplicate
        r#"{"$dtId":"r1","$relationshipId":"b","$relationshipName":"near"}"#.to_string(), // 26 no $targetId
        rel("big", "c", "r1"),                                                            // 27 source too large
        rel("r2", "self", "r2"),                                                          // 28 self
        rel("r2", "d", "outside"),                                                        // 29 external twin
        rel("r2", "e", "r1"),                                                             // 30
        twin("late", "dtmi:ex:Room;1"),                                                   // 31 twin in Relationships
    ];
    let mut text = ndjson(&models, &twins, &rels);
    text.push_str("{\"Section\": \"Deletions\"}\n"); // 32
    text.push_str(&twin("gone", "dtmi:ex:Room;1")); // 33
    text.push('\n');
    let no_header = format!("{{\"Section\": \"Twins\"}}\n{}\n", twin("r3", "dtmi:ex:Room;1"));
    let plan = plan_files(dir.path(), &[("a.ndjson", &text), ("b.ndjson", &no_header)], &PlanOptions::default());

    let expect = |code: &str, lines: &[u64]| {
        let found: Vec<u64> =
            find(&plan, code).iter().filter(|r| line_of(r).0 == "a.ndjson").map(|r| r.origin.line).collect();
        let mut sorted = found.clone();
        sorted.sort();
        assert_eq!(sorted, lines, "{code}: {:#?}", find(&plan, code));
    };
    expect("duplicate", &[5, 14, 25]);
    expect("bad_dtmi", &[6, 22]);
    expect("invalid_model", &[7]);
    expect("cycle", &[8, 9]);
    expect("too_large", &[17]);
    expect("self_relationship", &[28]);
    expect("parse_error", &[15, 16, 20, 26, 31, 32, 33]);
    expect("dependency_failed", &[10, 18, 19, 27]);

    // Reasons say what is wrong and where.
    let dup = find(&plan, "duplicate").into_iter().find(|r| r.origin.line == 14).unwrap();
    assert!(dup.reason.contains("a.ndjson:12") && dup.reason.contains("twin r1"), "{}", dup.reason);
    let cycle = &find(&plan, "cycle")[0].reason;
    assert!(cycle.contains("dtmi:ex:A;1 → dtmi:ex:B;1 → dtmi:ex:A;1"), "{cycle}");
    let dep = find(&plan, "dependency_failed").into_iter().find(|r| r.origin.line == 19).unwrap();
    assert!(
        dep.reason.contains("dependency model dtmi:ex:C;1 failed") && dep.reason.contains("cycle"),
        "{}",
        dep.reason
    );
    let large = &find(&plan, "too_large")[0];
    assert!(large.reason.contains("32768") && large.key == ItemKey::Twin { id: "big".into() }, "{}", large.reason);
    let parse: Vec<&Rejected> = find(&plan, "parse_error");
    let at = |line: u64| parse.iter().find(|r| r.origin.line == line && line_of(r).0 == "a.ndjson").unwrap();
    assert!(at(15).reason.contains("$model") && at(15).key == ItemKey::Twin { id: "nomodel".into() });
    assert!(at(16).reason.contains("invalid JSON") && at(16).item_json.as_deref() == Some("{\"$dtId\": \"broken\","));
    assert!(at(20).reason.contains("Twins section"));
    assert!(at(26).reason.contains("$targetId"));
    assert!(at(31).reason.contains("Relationships section"));
    assert!(at(32).reason.contains("unknown section") && !at(32).is_item());
    let header = parse.iter().find(|r| line_of(r) == ("b.ndjson".into(), 1)).expect("missing header reported");
    assert!(header.reason.contains("no header"), "{}", header.reason);

    // External references are reported, not rejected, until ADT is asked.
    assert_eq!(plan.external_models(), vec!["dtmi:ex:Elsewhere;1"]);
    assert_eq!(plan.external_twins(), vec!["outside"]);

    // The good items stay: models Room; twins r1 r2 ext1 r3 (b.ndjson); relationships a, d, e.
    let counts = plan.counts();
    assert_eq!(counts.models.to_write, 1, "{counts:?}");
    assert_eq!(counts.twins.to_write, 4, "{counts:?}");
    assert_eq!(counts.relationships.to_write, 3, "{counts:?}");
    assert!(plan.holds_twin("r3"), "the file without a header is still read");
    assert_eq!(counts.file_errors, 1 + 1, "the unknown section marker and the missing header");
    let rejected_items = plan.rejected().iter().filter(|r| r.is_item()).count() as u64;
    assert_eq!(counts.models.rejected + counts.twins.rejected + counts.relationships.rejected, rejected_items);
}

#[test]
fn what_adt_lacks_is_rejected_with_its_dependents_once_adt_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let text = ndjson(
        &[
            model("dtmi:ex:Room;1", r#","extends":"dtmi:ex:Base;1""#),
            model("dtmi:ex:Door;1", r#","extends":"dtmi:ex:Known;1""#),
        ],
        &[twin("r1", "dtmi:ex:Room;1"), twin("d1", "dtmi:ex:Door;1"), twin("x1", "dtmi:ex:Ghost;1")],
        &[rel("d1", "a", "r1"), rel("d1", "b", "there"), rel("d1", "c", "nowhere"), rel("x1", "d", "d1")],
    );
    let mut plan = plan_files(dir.path(), &[("in.ndjson", &text)], &PlanOptions::default());
    assert!(plan.rejected().is_empty(), "{:#?}", plan.rejected());
    assert_eq!(plan.external_models(), vec!["dtmi:ex:Base;1", "dtmi:ex:Ghost;1", "dtmi:ex:Known;1"]);
    assert_eq!(plan.external_twins(), vec!["nowhere", "there"]);

    let models: HashSet<String> = ["dtmi:ex:Known;1".to_string()].into();
    let twins: HashSet<String> = ["there".to_string()].into();
    plan.resolve_external(&models, &twins);
    let by_key: HashMap<String, &Rejected> = plan.rejected().iter().map(|r| (r.key.to_string(), r)).collect();
    assert_eq!(by_key["model dtmi:ex:Room;1"].code, "missing_model");
    assert!(by_key["model dtmi:ex:Room;1"].reason.contains("dtmi:ex:Base;1"));
    assert_eq!(by_key["twin x1"].code, "missing_model");
    assert_eq!(by_key["twin r1"].code, "dependency_failed");
    assert_eq!(by_key["relationship d1/a"].code, "dependency_failed");
    assert_eq!(by_key["relationship d1/c"].code, "missing_twin");
    assert!(by_key["relationship d1/c"].reason.contains("target twin nowhere"));
    assert_eq!(by_key["relationship x1/d"].code, "dependency_failed");
    assert_eq!(plan.rejected().len(), 6);
    let counts = plan.counts();
    assert_eq!((counts.models.to_write, counts.twins.to_write, counts.relationships.to_write), (1, 1, 1));
}

#[test]
fn relationships_past_the_per_twin_limit_are_rejected_not_the_twin() {
    let dir = tempfile::tempdir().unwrap();
    let twins: Vec<String> = (0..6).map(|i| twin(&format!("t{i}"), "dtmi:ex:Room;1")).collect();
    let mut rels: Vec<String> = (1..6).map(|i| rel("t0", &format!("out{i}"), &format!("t{i}"))).collect();
    rels.extend((2..6).map(|i| rel(&format!("t{i}"), "in", "t1")));
    let text = ndjson(&[model("dtmi:ex:Room;1", "")], &twins, &rels);
    let opts = PlanOptions {
        limits: Limits { max_relationships_per_twin: 3, ..Limits::adt_default() },
        ..PlanOptions::default()
    };
    let plan = plan_files(dir.path(), &[("in.ndjson", &text)], &opts);
    let excess: Vec<String> = find(&plan, "too_many_relationships").iter().map(|r| r.key.to_string()).collect();
    // t0 → out4, out5 exceed 3 outgoing; into t1: out1 from t0, then t2, t3 fill it, t4 and t5 exceed.
    assert_eq!(
        excess,
        vec!["relationship t0/out4", "relationship t0/out5", "relationship t4/in", "relationship t5/in"]
    );
    assert!(find(&plan, "too_many_relationships")[0].reason.contains("twin t0 already has 3 outgoing"));
    assert_eq!(plan.counts().twins.to_write, 6);
    assert_eq!(plan.rejected().len(), 4);
}

#[test]
fn dtdl_model_files_plan_with_ndjson_twins() {
    let dir = tempfile::tempdir().unwrap();
    let models = format!(
        "[\n{},\n{}\n]\n",
        model("dtmi:ex:Base;1", ""),
        model("dtmi:ex:Room;1", r#","extends":"dtmi:ex:Base;1""#)
    );
    let twins = ndjson(&[], &[twin("r1", "dtmi:ex:Room;1")], &[]);
    let plan = plan_files(dir.path(), &[("models.json", &models), ("twins.ndjson", &twins)], &PlanOptions::default());
    assert!(plan.rejected().is_empty(), "{:#?}", plan.rejected());
    assert!(plan.external_models().is_empty());
    assert_eq!(plan.model_batches(), vec![vec!["dtmi:ex:Base;1".to_string(), "dtmi:ex:Room;1".to_string()]]);
}

/// Models m0 … m11: m_i extends m_{i-1} for i not a multiple of 4 (chains of four), given in
/// reverse order; each model also uses the component of the previous chain's head.
#[test]
fn batches_respect_dependencies_count_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let id = |i: usize| format!("dtmi:ex:M{i};1");
    let mut deps: HashMap<String, Vec<String>> = HashMap::new();
    let mut models = Vec::new();
    for i in (0..12).rev() {
        let mut extra = String::new();
        let mut d = Vec::new();
        if i % 4 != 0 {
            extra.push_str(&format!(r#","extends":"{}""#, id(i - 1)));
            d.push(id(i - 1));
        }
        if i >= 4 {
            extra.push_str(&format!(
                r#","contents":[{{"@type":"Component","name":"c","schema":"dtmi:ex:Comp{};1"}}]"#,
                i / 4 - 1
            ));
            d.push(format!("dtmi:ex:Comp{};1", i / 4 - 1));
        }
        deps.insert(id(i), d);
        models.push(model(&id(i), &extra));
    }
    for c in 0..2 {
        models.push(model(&format!("dtmi:ex:Comp{c};1"), ""));
    }
    let text = ndjson(&models, &[], &[]);
    let opts = PlanOptions { model_batch_size: 3, ..PlanOptions::default() };
    let plan = plan_files(dir.path(), &[("m.ndjson", &text)], &opts);
    assert!(plan.rejected().is_empty(), "{:#?}", plan.rejected());
    let batches = plan.model_batches();
    assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 14);
    assert!(batches.iter().all(|b| b.len() <= 3), "{batches:?}");
    let mut uploaded: HashSet<String> = HashSet::new();
    for batch in &batches {
        let here: HashSet<String> = batch.iter().cloned().collect();
        for m in &here {
            for dep in deps.get(m).into_iter().flatten() {
                assert!(
                    uploaded.contains(dep) || here.contains(dep),
                    "{m} needs {dep} earlier or alongside: {batches:?}"
                );
            }
        }
        uploaded.extend(here);
    }

    // The byte limit cuts batches too: each model here is 80 bytes, so 200 bytes hold two.
    let small = PlanOptions {
        model_batch_size: 100,
        limits: Limits { max_payload_bytes: 200, ..Limits::adt_default() },
        ..PlanOptions::default()
    };
    let dir2 = tempfile::tempdir().unwrap();
    let five: Vec<String> = (0..5).map(|i| model(&format!("dtmi:ex:Solo{i};1"), "")).collect();
    let plan = plan_files(dir2.path(), &[("m.ndjson", &ndjson(&five, &[], &[]))], &small);
    assert_eq!(plan.model_batches().iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 1]);
}

/// 2 models (1 batch); 10 twins; hub h0 with 15 relationships out, 5 other relationships.
/// With create/delete 20/s, models 1/s, 10 writes/s per twin:
/// Patches of existing twins (the reference prototype's mapping without a model) spend the patch
/// class, not create/delete: 30 patches at 10/s bind T* at 3 s, the 10 creates take 0.5 s.
#[test]
fn t_star_counts_twin_patches_in_the_patch_class() {
    let dir = tempfile::tempdir().unwrap();
    let twins: Vec<String> = (0..10).map(|i| twin(&format!("t{i}"), "dtmi:ex:Room;1")).collect();
    let text = ndjson(&[model("dtmi:ex:Room;1", "")], &twins, &[]);
    std::fs::write(dir.path().join("in.ndjson"), text).unwrap();
    let file: std::sync::Arc<str> = "patches.csv".into();
    let patches = (0..30).map(|i| {
        let body = r#"[{"op":"replace","path":"/name","value":"x"}]"#;
        Ok(Item::Twin(twinload::item::TwinItem {
            id: format!("existing-{i}"),
            model: String::new(),
            body: serde_json::value::RawValue::from_string(body.to_string()).unwrap(),
            patch: true,
            origin: twinload::item::Origin { file: file.clone(), line: i + 2 },
        }))
    });
    let items = read_all(open_inputs(&[dir.path().display().to_string()]).unwrap()).chain(patches);
    let limits = Limits { create_delete_per_s: 20, patch_per_s: 10, ..Limits::adt_default() };
    let plan = Plan::build(items, &PlanOptions { limits, ..PlanOptions::default() });
    assert!(plan.rejected().is_empty(), "{:?}", plan.rejected());
    let m = plan.makespan();
    let class = |c: LimitClass| m.classes.iter().find(|x| x.class == c).unwrap();
    assert_eq!((class(LimitClass::CreateDelete).writes, class(LimitClass::CreateDelete).seconds), (10, 0.5));
    assert_eq!((class(LimitClass::Patch).writes, class(LimitClass::Patch).seconds), (30, 3.0));
    assert_eq!((m.t_star_s, m.bound_by.as_str()), (3.0, "patch"));
}

/// create/delete: 10 twins + 20 relationships = 30 writes / 20 = 1.5 s; models: 1 batch / 1 = 1 s;
/// h0: its PUT + 15 = 16 writes / 10 = 1.6 s  →  T* = 1.6 s, bound by the busiest twin.
#[test]
fn t_star_on_a_hand_checkable_case() {
    let dir = tempfile::tempdir().unwrap();
    let twins: Vec<String> = (0..10).map(|i| twin(&format!("h{i}"), "dtmi:ex:Room;1")).collect();
    let mut rels: Vec<String> = (0..15).map(|i| rel("h0", &format!("r{i}"), &format!("h{}", 1 + i % 9))).collect();
    rels.extend((0..5).map(|i| rel(&format!("h{}", 5 + i), "x", &format!("h{}", 1 + i))));
    let text = ndjson(
        &[model("dtmi:ex:Base;1", ""), model("dtmi:ex:Room;1", r#","extends":"dtmi:ex:Base;1""#)],
        &twins,
        &rels,
    );
    let limits =
        Limits { create_delete_per_s: 20, models_per_s: 1, per_twin_writes_per_s: 10, ..Limits::adt_default() };
    let plan = plan_files(dir.path(), &[("in.ndjson", &text)], &PlanOptions { limits, ..PlanOptions::default() });
    let m = plan.makespan();
    let class = |c: LimitClass| m.classes.iter().find(|x| x.class == c).unwrap();
    assert_eq!((class(LimitClass::CreateDelete).writes, class(LimitClass::CreateDelete).seconds), (30, 1.5));
    assert_eq!((class(LimitClass::Models).writes, class(LimitClass::Models).seconds), (1, 1.0));
    let busiest = m.busiest_twin.as_ref().unwrap();
    assert_eq!((busiest.id.as_str(), busiest.writes, busiest.seconds), ("h0", 16, 1.6));
    assert_eq!((m.t_star_s, m.bound_by.as_str()), (1.6, "busiest_twin"));

    // At 2 creates/s the class binds instead: 30 / 2 = 15 s.
    let slow = Limits { create_delete_per_s: 2, ..plan.options().limits.clone() };
    let plan = plan_files(dir.path(), &[], &PlanOptions { limits: slow, ..PlanOptions::default() });
    let m = plan.makespan();
    assert_eq!((m.t_star_s, m.bound_by.as_str()), (15.0, "create_delete"));
}

/// Runs a scheduler to the end, landing everything it hands out (or failing the ids in `fail`),
/// and checks that nothing is handed out before all it depends on landed.
fn drive(mut s: Scheduler, fail: &HashSet<String>) -> (Vec<ItemKey>, Vec<Rejected>) {
    let mut landed: HashSet<ItemKey> = HashSet::new();
    let mut order = Vec::new();
    let mut rejected = Vec::new();
    for _ in 0..100_000 {
        let Some(work) = s.next() else { break };
        let ids: Vec<ItemId> = match work {
            Work::Models(ids) => ids,
            Work::Twin(id) | Work::Relationship(id) => vec![id],
        };
        let batch: HashSet<ItemKey> = ids.iter().map(|&id| s.key(id)).collect();
        for &id in &ids {
            let needs: Vec<ItemKey> = match s.item(id).unwrap() {
                Item::Model(m) => m.depends_on.iter().map(|d| ItemKey::Model { id: d.clone() }).collect(),
                Item::Twin(t) => vec![ItemKey::Model { id: t.model.clone() }],
                Item::Relationship(r) => {
                    vec![ItemKey::Twin { id: r.source.clone() }, ItemKey::Twin { id: r.target.clone() }]
                }
            };
            for need in needs {
                assert!(
                    landed.contains(&need) || batch.contains(&need),
                    "{} handed out before {need} landed",
                    s.key(id)
                );
            }
        }
        for id in ids {
            let key = s.key(id);
            order.push(key.clone());
            if fail.contains(&key.to_string()) {
                rejected.extend(s.failed(id, "ADT said no"));
            } else {
                s.landed(id);
                landed.insert(key);
            }
        }
    }
    assert!(s.is_finished(), "pending {} outstanding {}", s.pending(), s.outstanding());
    (order, rejected)
}

fn fleet_plan(opts: &GenOptions, plan_opts: &PlanOptions) -> Plan {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.ndjson");
    generate(opts, std::fs::File::create(&path).unwrap()).unwrap();
    Plan::build(read_all(open_inputs(&[path.display().to_string()]).unwrap()), plan_opts)
}

#[test]
fn scheduler_releases_in_dependency_order_and_hands_out_everything_once() {
    let plan =
        fleet_plan(&GenOptions { hubs: 1, hub_degree: 200, ..GenOptions::new(1_500, 2) }, &PlanOptions::default());
    let counts = plan.counts();
    let total = counts.models.to_write + counts.twins.to_write + counts.relationships.to_write;
    let (order, rejected) = drive(plan.into_scheduler(), &HashSet::new());
    assert!(rejected.is_empty());
    assert_eq!(order.len() as u64, total);
    assert_eq!(order.iter().collect::<HashSet<_>>().len() as u64, total, "each item exactly once");
    assert!(matches!(order[0], ItemKey::Model { .. }), "models first");
}

#[test]
fn a_failure_rejects_its_dependents_transitively_and_they_never_come_out() {
    let plan = fleet_plan(&GenOptions::new(1_000, 4), &PlanOptions::default());
    let counts = plan.counts();
    let total = counts.models.to_write + counts.twins.to_write + counts.relationships.to_write;
    let fail: HashSet<String> = ["model dtmi:twinload:fleet:Depot;1".to_string(), "twin vehicle-3".to_string()].into();
    let (order, rejected) = drive(plan.into_scheduler(), &fail);
    let handed: HashSet<String> = order.iter().map(ToString::to_string).collect();
    assert_eq!(order.len() + rejected.len(), total as usize, "every item handed out or rejected");
    for r in &rejected {
        assert_eq!(r.code, "dependency_failed");
        assert!(!handed.contains(&r.key.to_string()), "{} was rejected yet handed out", r.key);
    }
    let find = |k: &str| rejected.iter().find(|r| r.key.to_string() == k).unwrap_or_else(|| panic!("{k} rejected"));
    assert_eq!(find("twin depot-0").reason, "dependency model dtmi:twinload:fleet:Depot;1 failed: ADT said no");
    // Transitive: a relationship out of a depot names the depot twin, which names the model.
    let hosts = rejected
        .iter()
        .find(|r| r.key.to_string().starts_with("relationship depot-0/hosts"))
        .expect("depot relationships rejected");
    assert!(
        hosts.reason.starts_with("dependency twin depot-0 failed: dependency model dtmi:twinload:fleet:Depot;1 failed"),
        "{}",
        hosts.reason
    );
    assert!(rejected.iter().any(|r| r.key.to_string().starts_with("relationship vehicle-3/hasPart")));
    assert!(
        !rejected.iter().any(|r| matches!(&r.key, ItemKey::Twin { id } if id.starts_with("vehicle"))),
        "vehicles do not depend on depots"
    );
}

/// Models `dtmi:ex:C0;1` … each extending the one before: an `extends` chain `depth` deep.
/// `root_extra` goes into the first.
fn extends_chain(depth: usize, root_extra: &str) -> Vec<String> {
    (0..depth)
        .map(|i| match i {
            0 => model("dtmi:ex:C0;1", root_extra),
            _ => model(&format!("dtmi:ex:C{i};1"), &format!(r#","extends":"dtmi:ex:C{};1""#, i - 1)),
        })
        .collect()
}

/// Each dependent in a chain names the model it extends and the root failure, once: the
/// reasons stay short however deep the chain (nested reasons made 489 MB for 5,000 models).
fn assert_chain_reasons(rejected: &[&Rejected], depth: usize, root_reason: &str) {
    assert_eq!(rejected.len(), depth - 1, "every model past the root");
    let mut total = 0;
    for r in rejected {
        let ItemKey::Model { id } = &r.key else { panic!("{} is not a model", r.key) };
        let i: usize = id.trim_start_matches("dtmi:ex:C").trim_end_matches(";1").parse().unwrap();
        let direct = format!("dependency model dtmi:ex:C{};1 failed", i - 1);
        assert!(r.reason.starts_with(&direct), "{id}: {}", r.reason);
        assert!(r.reason.contains("model dtmi:ex:C0;1") && r.reason.contains(root_reason), "{id}: {}", r.reason);
        assert!(r.reason.len() < 200 + root_reason.len(), "{id}: a reason of {} bytes", r.reason.len());
        total += r.reason.len();
    }
    assert!(total < depth * (200 + root_reason.len()), "{total} bytes of reasons");
}

#[test]
fn a_failure_at_the_root_of_a_deep_chain_gives_each_dependent_one_short_reason() {
    const DEPTH: usize = 5_000;
    let dir = tempfile::tempdir().unwrap();
    // At run time: the root fails when written, and the scheduler rejects the rest.
    let text = ndjson(&extends_chain(DEPTH, ""), &[], &[]);
    let one_per_batch = PlanOptions { model_batch_size: 1, ..PlanOptions::default() };
    let plan = plan_files(dir.path(), &[("chain.ndjson", &text)], &one_per_batch);
    assert!(plan.rejected().is_empty());
    let (_, rejected) = drive(plan.into_scheduler(), &["model dtmi:ex:C0;1".to_string()].into());
    assert_chain_reasons(&rejected.iter().collect::<Vec<_>>(), DEPTH, "ADT said no");

    // In the plan: the root is refused before the run, and the planner rejects the rest.
    let text = ndjson(&extends_chain(DEPTH, r#","extends":"not a dtmi""#), &[], &[]);
    let plan = plan_files(dir.path(), &[("chain.ndjson", &text)], &PlanOptions::default());
    let root = &find(&plan, "bad_dtmi")[0].reason;
    assert_chain_reasons(&find(&plan, "dependency_failed"), DEPTH, root);
}

/// The plan keeps bodies in a temporary file and ids in its arena: every item it gives back is
/// the item as read, and a rejection carries the body as read.
#[test]
fn the_scheduler_gives_back_every_item_as_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.ndjson");
    generate(&GenOptions::new(300, 2), std::fs::File::create(&path).unwrap()).unwrap();
    let read: Vec<Item> = read_all(open_inputs(&[path.display().to_string()]).unwrap()).map(Result::unwrap).collect();
    let plan = Plan::build(read_all(open_inputs(&[path.display().to_string()]).unwrap()), &PlanOptions::default());
    let s = plan.into_scheduler();
    assert!(read.iter().any(|i| matches!(i, Item::Model(m) if !m.depends_on.is_empty())));
    for (id, item) in read.iter().enumerate() {
        let again = s.item(id as ItemId).unwrap();
        assert_eq!(format!("{again:?}"), format!("{item:?}"), "item {id}");
        assert_eq!(s.body_json(id as ItemId).as_deref(), Some(item.body().get()));
    }
    let rel = read.iter().position(|i| matches!(i, Item::Relationship(_))).unwrap();
    let mut s = s;
    let Item::Relationship(r) = &read[rel] else { unreachable!() };
    let source = read.iter().position(|i| matches!(i, Item::Twin(t) if t.id == r.source)).unwrap();
    let rejected = s.failed(source as ItemId, "ADT said no");
    let letter = rejected.iter().find(|x| x.key == read[rel].key()).expect("the relationship is rejected");
    assert_eq!(letter.item_json.as_deref(), Some(r.body.get()), "its dead letter carries the item as read");
}

#[test]
fn defer_parks_a_busy_twin_while_other_work_goes_out_and_drain_accounts_for_the_rest() {
    // One hub with 300 relationships and 299 other twins with 1 relationship each.
    let dir = tempfile::tempdir().unwrap();
    let twins: Vec<String> = (0..300).map(|i| twin(&format!("t{i}"), "dtmi:ex:Room;1")).collect();
    let mut rels: Vec<String> = (1..300).map(|i| rel("t0", &format!("h{i}"), &format!("t{i}"))).collect();
    rels.push(rel("t0", "h300", "t1"));
    rels.extend((2..300).map(|i| rel(&format!("t{i}"), "x", &format!("t{}", (i % 298) + 2))));
    let text = ndjson(&[model("dtmi:ex:Room;1", "")], &twins, &rels);
    let plan = plan_files(dir.path(), &[("in.ndjson", &text)], &PlanOptions::default());
    assert!(plan.rejected().is_empty(), "{:#?}", plan.rejected());
    let mut s = plan.into_scheduler();
    // Item ids are input order: the model is 0, the twins 1..=300. Land them all.
    for id in 0..=300 {
        s.landed(id);
    }
    let first_rel = match s.next() {
        Some(Work::Relationship(id)) => Some(id),
        other => panic!("a relationship expected, got {other:?}"),
    };
    // The hub is hot (300 writes at 10/s = 30 s against ~600 writes at 500/s), so it comes first.
    let first = first_rel.expect("relationships are ready");
    assert_eq!(s.twins_written(first)[0], "t0");
    s.defer(Work::Relationship(first));
    // Parked for 500/10 = 50 hand-outs: the next 50 come from other twins.
    let mut next_50 = Vec::new();
    for _ in 0..50 {
        let Some(Work::Relationship(id)) = s.next() else { panic!("relationship expected") };
        next_50.push(id);
    }
    assert!(next_50.iter().all(|&id| s.twins_written(id)[0] != "t0"), "the parked hub stays out");
    let Some(Work::Relationship(back)) = s.next() else { panic!("relationship expected") };
    assert_eq!(back, first, "the deferred relationship comes back first once its twin is due");
    for id in next_50 {
        s.landed(id);
    }
    let pending = s.pending();
    let drained = s.drain_unattempted("deadline reached");
    assert_eq!(drained.len(), pending);
    assert!(drained.iter().all(|r| r.code == "not_attempted" && r.reason == "deadline reached"));
    assert_eq!((s.pending(), s.outstanding()), (0, 1));
    s.landed(back);
    assert!(s.is_finished());
    assert!(s.next().is_none());
}

#[test]
fn a_generated_fleet_with_hubs_plans_without_rejections() {
    let opts = GenOptions { hubs: 2, hub_degree: 5_000, ..GenOptions::new(20_000, 11) };
    let plan = fleet_plan(&opts, &PlanOptions { keep_bodies: false, ..PlanOptions::default() });
    assert!(plan.rejected().is_empty(), "{:#?}", &plan.rejected()[..plan.rejected().len().min(5)]);
    assert!(plan.external_models().is_empty() && plan.external_twins().is_empty());
    let counts = plan.counts();
    assert_eq!(counts.models.to_write, 8);
    assert_eq!(counts.twins.to_write, 20_000);
    assert_eq!(counts.relationships.to_write, 40_000 + 10_000);
    let m = plan.makespan();
    // 70,000 creates at 500/s = 140 s; a hub: 1 + 5,000 writes at 10/s = 500.1 s.
    assert_eq!(m.bound_by, "busiest_twin");
    assert!((m.t_star_s - 500.1).abs() < 1e-9, "{m:?}");
}

fn twinload() -> Command {
    Command::new(env!("CARGO_BIN_EXE_twinload"))
}

#[test]
fn the_binary_reports_and_exits_by_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.ndjson");
    let bad = dir.path().join("bad.ndjson");
    std::fs::write(
        &good,
        ndjson(
            &[model("dtmi:ex:Room;1", "")],
            &[twin("r1", "dtmi:ex:Room;1"), twin("r2", "dtmi:ex:Room;1")],
            &[rel("r1", "a", "r2")],
        ),
    )
    .unwrap();
    std::fs::write(
        &bad,
        ndjson(&[], &[twin("r1", "dtmi:ex:Room;1"), twin("r1", "dtmi:ex:Room;1")], &[rel("r1", "a", "gone")]),
    )
    .unwrap();

    let out = twinload().args(["plan", "--input"]).arg(&good).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("Ideal makespan T*") && stderr.contains("twins"), "{stderr}");
    // How `load --mode auto` would write it, and why.
    assert!(
        stderr.contains(
            "Load mode (load --mode auto, the default): per item: 4 items is below import_job.auto_min_items"
        ),
        "{stderr}"
    );

    let json = dir.path().join("plan.json");
    let out = twinload().args(["plan", "--input"]).arg(&bad).arg("--json").arg(&json).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "dead letters expected: {stderr}");
    assert!(stderr.contains("duplicate (1)") && stderr.contains("bad.ndjson:6"), "{stderr}");
    assert!(
        stderr.contains("Must already exist in ADT") && stderr.contains("gone") && stderr.contains("dtmi:ex:Room;1"),
        "{stderr}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(doc["counts"]["twins"]["rejected"], 1);
    assert_eq!(doc["rejected"][0]["code"], "duplicate");
    assert_eq!(doc["external_twins"][0], "gone");

    let out = twinload().args(["plan", "--input", "/no/such/input.ndjson"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/input.ndjson"));
}

#[test]
fn gen_from_the_binary_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.ndjson"), dir.path().join("b.ndjson"));
    for path in [&a, &b] {
        let out = twinload().args(["gen", "--twins", "1000", "--seed", "42", "--out"]).arg(path).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

/// A discrete-time stand-in for the run: each step is one create/delete slot (1/rate s); a
/// write goes out if every twin it touches has had 1/per_twin_rate s since its last write, else
/// it is deferred, as the runner's coordinator does. Writes land at once. Returns the simulated
/// makespan in seconds.
fn simulate(plan: Plan) -> (f64, f64) {
    let limits = plan.options().limits.clone();
    let t_star = plan.makespan().t_star_s;
    let step = 1.0 / f64::from(limits.create_delete_per_s);
    let gap = 1.0 / f64::from(limits.per_twin_writes_per_s);
    let mut s = plan.into_scheduler();
    let mut last_write: HashMap<String, f64> = HashMap::new();
    let max_steps = (20.0 * t_star / step) as u64 + 1_000;
    let mut steps = 0u64;
    while !s.is_finished() {
        assert!(steps < max_steps, "the simulated run does not finish");
        let now = steps as f64 * step;
        let mut deferred_now = HashSet::new();
        // Up to one write per step; models do not spend a create/delete slot.
        while let Some(work) = s.next() {
            let id = match &work {
                Work::Models(ids) => {
                    ids.iter().for_each(|&id| s.landed(id));
                    continue;
                }
                Work::Twin(id) | Work::Relationship(id) => *id,
            };
            let twins: Vec<String> = s.twins_written(id).into_iter().map(str::to_string).collect();
            if twins.iter().all(|t| last_write.get(t).is_none_or(|&at| now - at >= gap - 1e-9)) {
                for t in twins {
                    last_write.insert(t, now);
                }
                s.landed(id);
                break;
            }
            // Deferred for what is left of the busiest twin's interval, as the coordinator does.
            let wait =
                twins.iter().filter_map(|t| last_write.get(t).map(|&at| gap - (now - at))).fold(0.0f64, f64::max);
            s.defer_for_wait(work, std::time::Duration::from_secs_f64(wait.max(0.0)));
            if !deferred_now.insert(id) {
                break; // only deferred work is left this step
            }
        }
        steps += 1;
    }
    (steps as f64 * step, t_star)
}

#[test]
fn the_scheduling_order_approaches_t_star_in_a_simulated_run() {
    // Bound by the class: 3,000 twins and 6,000 relationships at 500/s = 18 s.
    let (achieved, t_star) = simulate(fleet_plan(&GenOptions::new(3_000, 9), &PlanOptions::default()));
    eprintln!("class-bound: achieved {achieved:.2} s, T* {t_star:.2} s");
    assert!((t_star - 18.0).abs() < 1e-9, "{t_star}");
    assert!(achieved / t_star <= 1.05, "achieved {achieved:.2} s against T* {t_star:.2} s");

    // Bound by a hub: 1,000 relationships out of one twin at 10/s = 100.1 s, while the other
    // 6,000 writes need 12 s: the hub must start at once and never wait.
    let (achieved, t_star) = simulate(fleet_plan(
        &GenOptions { hubs: 1, hub_degree: 1_000, ..GenOptions::new(2_000, 9) },
        &PlanOptions::default(),
    ));
    eprintln!("hub-bound: achieved {achieved:.2} s, T* {t_star:.2} s");
    assert!((t_star - 100.1).abs() < 1e-9, "{t_star}");
    assert!(achieved / t_star <= 1.05, "achieved {achieved:.2} s against T* {t_star:.2} s");
}

/// Ids ADT cannot take in a URL path are rejected with file:line before anything is sent (a
/// `..` twin id would otherwise be PUT to another path).
#[test]
fn ids_that_cannot_be_url_path_segments_are_rejected_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let m = "dtmi:ex:Room;1";
    let text = ndjson(
        &[model(m, "")],
        &[twin("ok", m), twin(".", m), twin("..", m), twin("tab\\tin", m), twin("ok2", m)],
        &[rel("ok", "..", "ok2"), rel("ok", "r1", "."), rel("ok", "r2", "ok2"), rel("ok", "nul\\u0000", "ok2")],
    );
    let plan = plan_files(dir.path(), &[("ids.ndjson", &text)], &PlanOptions::default());
    let bad: Vec<(String, u64)> = find(&plan, "bad_id").iter().map(|r| line_of(r)).collect();
    // Header 1-2, Models 3-4, Twins 5-10, Relationships 11-15.
    let expected: Vec<(String, u64)> = [7, 8, 9, 12, 13, 15].iter().map(|l| ("ids.ndjson".to_string(), *l)).collect();
    assert_eq!(bad, expected, "{:#?}", plan.rejected());
    let reasons: Vec<&str> = find(&plan, "bad_id").iter().map(|r| r.reason.as_str()).collect();
    assert!(reasons[0].contains("\"..\"") || reasons[0].contains("\".\""), "{reasons:?}");
    assert!(reasons.iter().all(|r| r.contains("URL path")), "{reasons:?}");
    // The relationship to the twin "." is rejected for its own id, not sent.
    assert!(find(&plan, "bad_id")
        .iter()
        .any(|r| r.key == ItemKey::Relationship { source: "ok".into(), id: "r1".into() }));
    // The good items stay.
    let kept = plan.counts();
    let kept = serde_json::to_value(kept).unwrap();
    assert_eq!(kept["twins"]["to_write"], 2, "{kept}");
    assert_eq!(kept["relationships"]["to_write"], 1, "{kept}");
}
