//! `twinload load` end to end against the real mock ADT over loopback, with ADT's default
//! limits: a generated fleet lands completely and exactly, in order; a re-run changes nothing
//! and accounts for every item; bad input is dead-lettered with its reason while the rest
//! lands; setup failures and a deadline end the run with the documented exit codes.

mod load_support;

use std::io::Write;
use std::time::Duration;

use load_support::*;
use twinload::config::WriteMode;
use twinload::exit::ExitStatus;
use twinload::item::ItemKind;
use twinload::run::LoadError;

#[test]
fn a_generated_fleet_lands_exactly_in_order_and_a_rerun_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 600, 7);
    let expected = graph_of(&input);
    let (models, twins, relationships) = expected.counts();
    let mock = mock();
    let inputs = vec![input.display().to_string()];

    let first = load(config_for(&mock, dir.path()), inputs.clone()).expect("load runs");
    assert_eq!(first.exit_code, ExitStatus::Ok, "{}", first.human());
    assert_eq!(first.items["models"].landed, models as u64);
    assert_eq!(first.items["twins"].landed, twins as u64);
    assert_eq!(first.items["relationships"].landed, relationships as u64);
    assert_same_graph(&expected, &exported(&mock));
    assert_eq!(stats(&mock)["order_violations_total"], 0, "the mock saw a write out of dependency order");
    // The JSON summary on disk says the same.
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(on_disk["items"]["twins"]["landed"], twins as u64);
    assert!(on_disk["t_star_s"].as_f64().unwrap() > 0.0);
    assert!(on_disk["requests_by_status"]["200"].as_u64().unwrap() >= (twins + relationships) as u64);

    // Again: models exist (409 → already there), twins and relationships are upserted.
    let second = load(config_for(&mock, dir.path()), inputs.clone()).expect("re-run runs");
    assert_eq!(second.exit_code, ExitStatus::Ok, "{}", second.human());
    assert_eq!(second.items["models"].already_existed, models as u64);
    for kind in ItemKind::ALL {
        assert_eq!(second.items_total(kind), first.items_total(kind), "every {} accounted for", kind.plural());
    }
    assert_same_graph(&expected, &exported(&mock));

    // Create-only: nothing is replaced; everything is reported as already there.
    let mut create_only = config_for(&mock, dir.path());
    create_only.mode = WriteMode::CreateOnly;
    let third = load(create_only, inputs).expect("create-only re-run runs");
    assert_eq!(third.exit_code, ExitStatus::Ok, "{}", third.human());
    assert_eq!(third.items["twins"].already_existed, twins as u64);
    assert_eq!(third.items["relationships"].already_existed, relationships as u64);
    assert_eq!(third.items["twins"].landed, 0);
    assert_same_graph(&expected, &exported(&mock));
    assert_eq!(stats(&mock)["order_violations_total"], 0);
    mock.stop();
}

/// Appends lines to the generated fleet's sections by rewriting the file: bad models after the
/// Models marker, bad twins after Twins, bad relationships at the end.
fn with_bad_items(input: &std::path::Path, models: &[String], twins: &[String], relationships: &[String]) {
    let text = std::fs::read_to_string(input).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        let extra = match line {
            l if l.contains("\"Section\": \"Models\"") => models,
            l if l.contains("\"Section\": \"Twins\"") => twins,
            l if l.contains("\"Section\": \"Relationships\"") => relationships,
            _ => &[],
        };
        for e in extra {
            out.push_str(e);
            out.push('\n');
        }
    }
    std::fs::File::create(input).unwrap().write_all(out.as_bytes()).unwrap();
}

#[test]
fn each_kind_of_bad_input_is_dead_lettered_with_its_reason_and_the_rest_lands() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 200, 3);
    let good = graph_of(&input);
    let some_twin = good.twins.keys().next().unwrap().clone();
    // Another twin, for the relationships whose fate must not depend on the duplicate's.
    let other_twin = good.twins.keys().nth(1).unwrap().clone();
    let (_, (some_model, _)) = good.twins.iter().next().unwrap();
    let some_model = some_model.clone();
    let big = "x".repeat(40 * 1024);
    // A generated model with a property, for a child that redeclares it: the local checks do
    // not resolve inheritance, ADT does and refuses the child (400 DTDLParserError), which
    // makes the writer fall back from the batch to one model at a time.
    let (parent, property) = good
        .models
        .iter()
        .find_map(|(id, m)| {
            let contents = m["contents"].as_array()?;
            let p = contents.iter().find(|c| c["@type"] == "Property")?;
            Some((id.clone(), p["name"].as_str()?.to_string()))
        })
        .expect("the fleet has a model with a property");
    let models = vec![
        // A cycle: each extends the other.
        r#"{"@id":"dtmi:bad:CycleA;1","@type":"Interface","@context":"dtmi:dtdl:context;2","extends":"dtmi:bad:CycleB;1"}"#.to_string(),
        r#"{"@id":"dtmi:bad:CycleB;1","@type":"Interface","@context":"dtmi:dtdl:context;2","extends":"dtmi:bad:CycleA;1"}"#.to_string(),
        // Not a DTMI.
        r#"{"@id":"not-a-dtmi","@type":"Interface","@context":"dtmi:dtdl:context;2"}"#.to_string(),
        format!(
            r#"{{"@id":"dtmi:bad:Redeclares;1","@type":"Interface","@context":"dtmi:dtdl:context;2","extends":"{parent}","contents":[{{"@type":"Property","name":"{property}","schema":"string"}}]}}"#
        ),
    ];
    let twins = vec![
        // Not JSON.
        "{\"$dtId\": \"broken\", ".to_string(),
        // Its model is neither in the input nor in ADT.
        r#"{"$dtId":"orphan","$metadata":{"$model":"dtmi:bad:Nowhere;1"}}"#.to_string(),
        // A duplicate of a generated twin (the same line again: whichever copy the planner
        // keeps, the graph is the same).
        std::fs::read_to_string(&input)
            .unwrap()
            .lines()
            .find(|l| l.starts_with(&format!(r#"{{"$dtId":"{some_twin}""#)) && !l.contains("$relationshipId"))
            .expect("the twin's line")
            .to_string(),
        // Over 32 KB.
        format!(r#"{{"$dtId":"huge","$metadata":{{"$model":"{some_model}"}},"note":"{big}"}}"#),
        // Its model is refused by ADT.
        r#"{"$dtId":"child-of-refused-model","$metadata":{"$model":"dtmi:bad:Redeclares;1"}}"#.to_string(),
        // Passes the local checks, but ADT refuses it: a property its model does not declare.
        format!(r#"{{"$dtId":"refused","$metadata":{{"$model":"{some_model}"}},"noSuchProperty":1}}"#),
    ];
    let relationships = vec![
        // Its target is neither in the input nor in ADT.
        format!(
            r#"{{"$dtId":"{other_twin}","$relationshipId":"to-nowhere","$targetId":"ghost","$relationshipName":"contains"}}"#
        ),
        // Depends on the twin ADT refuses.
        format!(
            r#"{{"$dtId":"refused","$relationshipId":"from-refused","$targetId":"{other_twin}","$relationshipName":"contains"}}"#
        ),
    ];
    with_bad_items(&input, &models, &twins, &relationships);
    let mock = mock();
    let config = config_for(&mock, dir.path());
    let dead_letter_path = config.dead_letter_path.clone();
    let summary = load(config, vec![input.display().to_string()]).expect("load runs");
    assert_eq!(summary.exit_code, ExitStatus::DeadLetters, "{}", summary.human());

    let letters = dead_letters(&dead_letter_path);
    let reason_of = |id: &str| -> String {
        letters.iter().find(|l| l["id"] == id).unwrap_or_else(|| panic!("no dead letter for {id} in {letters:#?}"))
            ["reason_code"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(reason_of("dtmi:bad:CycleA;1"), "cycle");
    assert_eq!(reason_of("not-a-dtmi"), "bad_dtmi");
    assert_eq!(reason_of("orphan"), "missing_model");
    assert_eq!(reason_of("huge"), "too_large");
    assert_eq!(reason_of("to-nowhere"), "missing_twin");
    assert_eq!(reason_of("refused"), "write_failed");
    assert_eq!(reason_of("dtmi:bad:Redeclares;1"), "write_failed");
    assert_eq!(reason_of("child-of-refused-model"), "dependency_failed");
    assert_eq!(reason_of("from-refused"), "dependency_failed");
    assert!(letters.iter().any(|l| l["reason_code"] == "parse_error"), "{letters:#?}");
    assert!(letters.iter().any(|l| l["reason_code"] == "duplicate"), "{letters:#?}");
    // Every dead letter names its file and line, and the refused twin carries ADT's answer.
    for l in &letters {
        assert!(l["file"].as_str().unwrap().ends_with(".ndjson") && l["line"].as_u64().unwrap() > 0, "{l}");
        assert!(!l["reason"].as_str().unwrap().is_empty());
    }
    let refused = letters.iter().find(|l| l["id"] == "refused").unwrap();
    assert_eq!(refused["status"], 400);
    assert!(refused["error_code"].is_string(), "{refused}");

    // Everything else landed, exactly: the mock holds the generated fleet and nothing more.
    // (Should the planner refuse both copies of the duplicate, that twin and its
    // relationships stay out too.)
    let mut expected = good.clone();
    let dup_landed = exported(&mock).twins.contains_key(&some_twin);
    if !dup_landed {
        expected.twins.remove(&some_twin);
        expected.relationships.retain(|(s, _), (t, _, _)| s != &some_twin && t != &some_twin);
    }
    assert_same_graph(&expected, &exported(&mock));
    assert_eq!(stats(&mock)["order_violations_total"], 0);
    mock.stop();
}

#[test]
fn setup_failures_say_what_to_check_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 20, 1);
    // Nothing listens: connectivity fails on the first GET /models.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", free.local_addr().unwrap().port());
    drop(free);
    let mut config = twinload::config::LoadConfig::new(url.clone());
    config.dead_letter_path = dir.path().join("dl.ndjson");
    config.retry.max_attempts = 1;
    match load(config, vec![input.display().to_string()]) {
        Err(LoadError::Setup(message)) => assert!(message.contains(&url) && message.contains("/models"), "{message}"),
        other => panic!("expected a setup failure, got {:?}", other.map(|s| s.exit_code)),
    }

    // The mock wants a token: a 401 names the status and what to check.
    let mock = twinload::mock::server::start(twinload::mock::server::MockConfig::default()).expect("mock starts");
    let mut config = twinload::config::LoadConfig::new(mock.url.clone());
    config.dead_letter_path = dir.path().join("dl.ndjson");
    match load(config, vec![input.display().to_string()]) {
        Err(LoadError::Setup(message)) => assert!(message.contains("401") && message.contains("token"), "{message}"),
        other => panic!("expected a setup failure, got {:?}", other.map(|s| s.exit_code)),
    }
    // A missing input is a setup failure too, naming the path.
    let mut config = twinload::config::LoadConfig::new(mock.url.clone());
    config.dead_letter_path = dir.path().join("dl.ndjson");
    match load(config, vec![dir.path().join("nope.ndjson").display().to_string()]) {
        Err(LoadError::Setup(message)) => assert!(message.contains("nope.ndjson"), "{message}"),
        other => panic!("expected a setup failure, got {:?}", other.map(|s| s.exit_code)),
    }
    assert_eq!(exported(&mock).counts(), (0, 0, 0), "nothing was written");
    mock.stop();
}

#[test]
fn a_token_and_a_self_signed_ca_in_a_bundle_reach_an_https_mock() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 30, 5);
    let ca = dir.path().join("ca.pem");
    let mock = twinload::mock::server::start(
        twinload::mock::server::MockConfig::default()
            .with_tls(twinload::mock::tls::TlsMode::SelfSigned { ca_out: Some(ca.clone()) }),
    )
    .expect("mock starts");
    assert!(mock.url.starts_with("https://"));
    // --ca-cert is a bundle: the mock's CA second, after one that has nothing to do with it.
    let other = rcgen::CertificateParams::new(vec!["other.example".to_string()])
        .unwrap()
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(&bundle, other.pem() + &std::fs::read_to_string(&ca).unwrap()).unwrap();
    let mut config = twinload::config::LoadConfig::new(mock.url.clone());
    config.dead_letter_path = dir.path().join("dl.ndjson");
    config.ca_cert = Some(bundle);
    config.auth = twinload::config::Auth::BearerToken { token: twinload::config::SecretToken::new("test-token") };
    let summary = load(config, vec![input.display().to_string()]).expect("load runs");
    assert_eq!(summary.exit_code, ExitStatus::Ok, "{}", summary.human());
    mock.stop();
}

#[test]
fn a_node_without_a_ca_store_is_told_what_to_install_and_exits_4() {
    // rustls-platform-verifier reads the system's CA store (which SSL_CERT_FILE/SSL_CERT_DIR
    // override) when the HTTP client is built; with none, the run cannot start.
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 5, 1);
    let missing = dir.path().join("no-such-ca-store");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_twinload"))
        .args(["load", "--endpoint", "http://127.0.0.1:9", "--input"])
        .arg(&input)
        .arg("--dead-letter")
        .arg(dir.path().join("dl.ndjson"))
        .env("SSL_CERT_FILE", &missing)
        .env("SSL_CERT_DIR", &missing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("No CA certificates") && stderr.contains("ca-certificates"), "{stderr}");
    assert!(stderr.contains("--ca-cert"), "{stderr}");
}

#[test]
fn a_deadline_stops_the_run_cleanly_and_accounts_for_every_item() {
    let dir = tempfile::tempdir().unwrap();
    // ~4,500 creates at 500/s need ~9 s; the deadline cuts the run at 2 s.
    let input = fleet(dir.path(), 1500, 11);
    let expected = graph_of(&input);
    let (models, twins, relationships) = expected.counts();
    let mock = mock();
    let mut config = config_for(&mock, dir.path());
    config.deadline = Some(Duration::from_secs(2));
    let dead_letter_path = config.dead_letter_path.clone();
    let summary = load(config, vec![input.display().to_string()]).expect("load runs");
    assert_eq!(summary.exit_code, ExitStatus::StoppedEarly, "{}", summary.human());
    assert!(summary.stop_reason.as_deref().unwrap_or_default().contains("deadline"));
    assert_eq!(summary.items_total(ItemKind::Model), models as u64);
    assert_eq!(summary.items_total(ItemKind::Twin), twins as u64);
    assert_eq!(summary.items_total(ItemKind::Relationship), relationships as u64);
    let not_attempted: u64 = summary.items.values().map(|c| c.not_attempted).sum();
    assert!(not_attempted > 0, "{}", summary.human());
    let letters = dead_letters(&dead_letter_path);
    assert_eq!(letters.iter().filter(|l| l["reason_code"] == "not_attempted").count() as u64, not_attempted);
    // What the summary says landed is what the mock holds.
    let held = exported(&mock);
    assert_eq!(held.twins.len() as u64, summary.items["twins"].landed);
    assert_eq!(held.relationships.len() as u64, summary.items["relationships"].landed);
    mock.stop();
}

#[test]
fn sigterm_ends_the_run_cleanly_with_its_exit_code_and_summary() {
    use std::process::{Command, Stdio};
    use std::time::Instant;

    let dir = tempfile::tempdir().unwrap();
    // ~9 s of writes at ADT's default limits: the signal comes well before the end.
    let input = fleet(dir.path(), 1500, 13);
    let (models, twins, relationships) = graph_of(&input).counts();
    let mock = mock();
    let summary_path = dir.path().join("summary.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_twinload"))
        .args(["load", "--endpoint", &mock.url, "--input"])
        .arg(&input)
        .arg("--summary")
        .arg(&summary_path)
        .arg("--dead-letter")
        .arg(dir.path().join("dead-letters.ndjson"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("twinload starts");
    // Wait (bounded) until writing has begun, then send SIGTERM as Batch does.
    let begun = Instant::now();
    while stats(&mock)["requests_by_class"]["create_delete"].as_u64().unwrap_or(0) < 100 {
        assert!(begun.elapsed() < Duration::from_secs(60), "the load never started writing");
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(killed.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if begun.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("twinload did not end after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(i32::from(ExitStatus::StoppedEarly.code())), "{status:?}");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    assert_eq!(summary["outcome"], "stopped_early");
    assert!(summary["stop_reason"].as_str().unwrap().contains("SIGTERM"), "{summary}");
    let total = |kind: &str| {
        let c = &summary["items"][kind];
        ["landed", "already_existed", "dead_lettered", "not_attempted"]
            .iter()
            .map(|k| c[k].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(
        (total("models"), total("twins"), total("relationships")),
        (models as u64, twins as u64, relationships as u64)
    );
    assert!(summary["items"]["relationships"]["not_attempted"].as_u64().unwrap() > 0, "{summary}");
    // What the summary says landed is what the mock holds: in-flight writes finished and counted.
    let held = exported(&mock);
    assert_eq!(held.twins.len() as u64, summary["items"]["twins"]["landed"].as_u64().unwrap());
    assert_eq!(held.relationships.len() as u64, summary["items"]["relationships"]["landed"].as_u64().unwrap());
    mock.stop();
}

/// A finished `twinload load` child: exit code, stderr, and its peak resident memory.
struct Finished {
    code: Option<i32>,
    stderr: String,
    peak_rss_kb: u64,
}

/// The child's peak resident set so far (`VmHWM`), 0 once it has exited.
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: 0 kB");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Runs `twinload load <args>` to its end (killed, and the test failed, after `bound`), its
/// stderr into `dir/stderr.txt`, watching its peak memory.
fn load_child(dir: &std::path::Path, args: &[&str], stdin: std::process::Stdio, bound: Duration) -> Finished {
    let stderr_path = dir.join("stderr.txt");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_twinload"))
        .arg("load")
        .args(args)
        .stdin(stdin)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("twinload starts");
    let started = std::time::Instant::now();
    let mut peak = 0;
    let status = loop {
        peak = peak.max(peak_rss_kb(child.id()));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            panic!("twinload load {args:?} did not end within {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Finished { code: status.code(), stderr: std::fs::read_to_string(stderr_path).unwrap(), peak_rss_kb: peak }
}

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn a_fleet_piped_to_stdin_lands_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 300, 17);
    let expected = graph_of(&input);
    let mock = mock();
    let summary_path = dir.path().join("summary.json");
    let summary_arg = summary_path.display().to_string();
    let dead = dir.path().join("dead.ndjson").display().to_string();
    let stdin = std::fs::File::open(&input).unwrap().into();
    let args = ["--endpoint", &mock.url, "--input", "-", "--summary", &summary_arg, "--dead-letter", &dead];
    let run = load_child(dir.path(), &args, stdin, Duration::from_secs(120));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let held = exported(&mock);
    assert_same_graph(&expected, &held);
    let summary = read_json(&summary_path);
    let (models, twins, relationships) = held.counts();
    assert_eq!(summary["items"]["models"]["landed"], models as u64);
    assert_eq!(summary["items"]["twins"]["landed"], twins as u64);
    assert_eq!(summary["items"]["relationships"]["landed"], relationships as u64);
    mock.stop();
}

#[test]
fn a_deep_extends_chain_dead_letters_in_proportion_to_its_length() {
    const DEPTH: usize = 5_000;
    let dir = tempfile::tempdir().unwrap();
    // C0 … C4999, each extending the one before; ADT (and the mock) refuse chains past 10.
    let mut text = String::from("{\"Section\": \"Header\"}\n{\"fileVersion\": \"1.0.0\"}\n{\"Section\": \"Models\"}\n");
    for i in 0..DEPTH {
        let extends = if i > 0 { format!(",\"extends\":\"dtmi:ex:C{};1\"", i - 1) } else { String::new() };
        text.push_str(&format!(
            "{{\"@id\":\"dtmi:ex:C{i};1\",\"@type\":\"Interface\",\"@context\":\"dtmi:dtdl:context;2\"{extends}}}\n"
        ));
    }
    let input = dir.path().join("chain.ndjson");
    std::fs::write(&input, text).unwrap();
    let mock = mock();
    let dead = dir.path().join("dead.ndjson");
    let args = [
        "--endpoint",
        &mock.url,
        "--input",
        &input.display().to_string(),
        "--dead-letter",
        &dead.display().to_string(),
    ]
    .map(|s| s.to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = load_child(dir.path(), &args, std::process::Stdio::null(), Duration::from_secs(300));
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    // Nested reasons made 489 MB of dead letters and 910 MB of memory for this chain.
    let size = std::fs::metadata(&dead).unwrap().len();
    assert!(size < (DEPTH as u64) * 2_000, "{size} bytes of dead letters for {DEPTH} models");
    assert!(run.peak_rss_kb > 0 && run.peak_rss_kb < 300 * 1024, "peak RSS {} kB", run.peak_rss_kb);
    let letters = dead_letters(&dead);
    let root = letters.iter().find(|l| l["reason_code"] == "write_failed").expect("the model ADT refused");
    let root_id = root["id"].as_str().unwrap().to_string();
    let dependents: Vec<_> = letters.iter().filter(|l| l["reason_code"] == "dependency_failed").collect();
    assert_eq!(dependents.len() + 1 + 10, DEPTH, "the ten models within the limit land, the rest are dead letters");
    for letter in dependents {
        let id = letter["id"].as_str().unwrap();
        let i: usize = id.trim_start_matches("dtmi:ex:C").trim_end_matches(";1").parse().unwrap();
        let reason = letter["reason"].as_str().unwrap();
        assert!(reason.contains(&format!("model dtmi:ex:C{};1 failed", i - 1)), "{id}: {reason}");
        // Past the upload batch the root failed in, the scheduler names the root too (inside
        // it, the batch's one-by-one upload names the model before).
        if i >= 100 {
            assert!(reason.contains(&format!("{root_id} failed (the root cause)")), "{id}: {reason}");
        }
    }
    mock.stop();
}

#[test]
fn a_closed_stderr_is_no_panic_and_unwritable_summary_or_dead_letters_exit_6() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 20, 3);
    let mock = mock();
    let summary_path = dir.path().join("summary.json");
    let dead = dir.path().join("dead.ndjson").display().to_string();
    let base = ["--endpoint", &mock.url, "--input", &input.display().to_string(), "--dead-letter", &dead]
        .map(|s| s.to_string());

    // stderr a pipe whose reader left before anything was written (`2>&1 | head -0`).
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_twinload"))
        .arg("load")
        .args(&base)
        .arg("--summary")
        .arg(&summary_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("twinload did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "not a panic (101)");
    assert_eq!(read_json(&summary_path)["exit_code"], 0, "the summary file is written");

    // The summary file cannot be written: exit 6, said so, and the summary printed anyway.
    let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
    args.extend(["--summary", "/dev/full"]);
    let run = load_child(dir.path(), &args, std::process::Stdio::null(), Duration::from_secs(120));
    assert_eq!(run.code, Some(i32::from(ExitStatus::OutputFailed.code())), "{}", run.stderr);
    assert!(run.stderr.contains("cannot write the summary /dev/full"), "{}", run.stderr);
    assert!(run.stderr.contains("twinload load: ") && run.stderr.contains("landed"), "{}", run.stderr);

    // A dead letter that cannot be written: exit 6, and the summary file says why.
    let bad = dir.path().join("bad.ndjson");
    let model = r#"{"@id":"dtmi:ex:P;1","@type":"Interface","@context":"dtmi:dtdl:context;2","contents":[{"@type":"Property","name":"p","schema":"double"}]}"#;
    let twin = r#"{"$dtId":"bad","$metadata":{"$model":"dtmi:ex:P;1"},"p":"not a number"}"#;
    let header = "{\"Section\": \"Header\"}\n{\"fileVersion\": \"1.0.0\"}\n";
    std::fs::write(&bad, format!("{header}{{\"Section\": \"Models\"}}\n{model}\n{{\"Section\": \"Twins\"}}\n{twin}\n"))
        .unwrap();
    let summary_arg = summary_path.display().to_string();
    let bad_arg = bad.display().to_string();
    let args = ["--endpoint", &mock.url, "--input", &bad_arg, "--dead-letter", "/dev/full", "--summary", &summary_arg];
    let run = load_child(dir.path(), &args, std::process::Stdio::null(), Duration::from_secs(120));
    assert_eq!(run.code, Some(6), "{}", run.stderr);
    let summary = read_json(&summary_path);
    assert_eq!(summary["exit_code"], 6);
    assert!(summary["journal_error"].as_str().unwrap().contains("/dev/full"), "{summary}");
    assert!(run.stderr.contains("error: cannot write the dead-letter file /dev/full"), "{}", run.stderr);
    mock.stop();
}

/// How a [`stalling`] server misbehaves.
#[derive(Clone, Copy)]
enum Stall {
    /// Accepts connections and never answers.
    Hang,
    /// Answers every request 429 with `Retry-After: 1`.
    Throttle,
    /// Answers every GET 404 (no such model) and never answers a model upload.
    HangModelUploads,
}

/// A loopback server that misbehaves as `stall` says, and counts the requests it read.
struct Stalling {
    url: String,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

fn stalling(stall: Stall) -> Stalling {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || serve_stalling(stream, stall, &seen));
        }
    });
    Stalling { url, requests }
}

/// One connection of a [`stalling`] server: request after request until the client leaves.
fn serve_stalling(mut stream: std::net::TcpStream, stall: Stall, seen: &std::sync::atomic::AtomicUsize) {
    use std::io::{BufRead, Read};
    let Ok(clone) = stream.try_clone() else { return };
    let mut reader = std::io::BufReader::new(clone);
    loop {
        let (mut head, mut content_length) = (String::new(), 0usize);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
            head.push_str(&line);
        }
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let hang = match stall {
            Stall::Hang => true,
            Stall::Throttle => false,
            Stall::HangModelUploads => head.starts_with("POST /models"),
        };
        if hang {
            // Hold the connection open, answering nothing, until the client goes away.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
            return;
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, body) = match stall {
            Stall::Throttle => {
                ("429 Too Many Requests", r#"{"error":{"code":"TooManyRequests","message":"Too many requests"}}"#)
            }
            _ => (
                "404 Not Found",
                r#"{"error":{"code":"ModelNotFound","message":"There is no Model(s) available that matches the provided id(s)."}}"#,
            ),
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nRetry-After: 1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Every item of the input is in the summary, and none landed: what was never written is a dead
/// letter that says the stop left it.
fn assert_nothing_written_and_all_accounted_for(
    summary: &serde_json::Value,
    letters: &[serde_json::Value],
    input: &std::path::Path,
) {
    let (models, twins, relationships) = graph_of(input).counts();
    let count = |kind: &str, what: &str| summary["items"][kind][what].as_u64().unwrap_or(0);
    for (kind, n) in [("models", models), ("twins", twins), ("relationships", relationships)] {
        let total: u64 =
            ["landed", "already_existed", "dead_lettered", "not_attempted"].iter().map(|w| count(kind, w)).sum();
        assert_eq!(total, n as u64, "{kind}: {summary}");
        assert_eq!(count(kind, "landed"), 0, "{kind}: {summary}");
    }
    assert_eq!(letters.len(), models + twins + relationships, "one dead letter per item");
    assert!(
        letters
            .iter()
            .all(|l| ["not_attempted", "in_flight_at_stop"].contains(&l["reason_code"].as_str().unwrap_or(""))),
        "{letters:?}"
    );
}

/// `twinload load` against `server`, SIGTERM once it has read `requests` requests; returns the
/// summary and the dead letters once the loader ended (exit 5, within a bound).
fn sigterm_after(
    server: &Stalling,
    requests: usize,
    dir: &std::path::Path,
    input: &std::path::Path,
) -> (serde_json::Value, Vec<serde_json::Value>) {
    use std::process::{Command, Stdio};
    use std::sync::atomic::Ordering;
    use std::time::Instant;
    let summary_path = dir.join("summary.json");
    let letters_path = dir.join("dead-letters.ndjson");
    let mut child = Command::new(env!("CARGO_BIN_EXE_twinload"))
        .args(["load", "--endpoint", &server.url, "--input"])
        .arg(input)
        .arg("--summary")
        .arg(&summary_path)
        .arg("--dead-letter")
        .arg(&letters_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("twinload starts");
    let begun = Instant::now();
    while server.requests.load(Ordering::SeqCst) < requests {
        if begun.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the loader never sent {requests} requests");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(killed.success());
    let signalled = Instant::now();
    // The stop must not wait for a request timeout (30 s) nor a throttle's patience (900 s).
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("twinload did not end within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(i32::from(ExitStatus::StoppedEarly.code())), "{status:?}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).expect("a summary")).unwrap();
    assert_eq!(summary["outcome"], "stopped_early", "{summary}");
    assert!(summary["stop_reason"].as_str().unwrap_or_default().contains("SIGTERM"), "{summary}");
    (summary, dead_letters(&letters_path))
}

#[test]
fn sigterm_at_start_up_against_an_instance_that_never_answers_ends_the_run_with_every_item_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 40, 5);
    let server = stalling(Stall::Hang);
    let (summary, letters) = sigterm_after(&server, 1, dir.path(), &input);
    assert_nothing_written_and_all_accounted_for(&summary, &letters, &input);
}

#[test]
fn sigterm_at_start_up_against_an_instance_that_only_throttles_ends_the_run_with_every_item_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 40, 6);
    let server = stalling(Stall::Throttle);
    // Two throttled start-up checks: the loader is waiting out a 429.
    let (summary, letters) = sigterm_after(&server, 2, dir.path(), &input);
    assert_nothing_written_and_all_accounted_for(&summary, &letters, &input);
    assert!(letters.iter().all(|l| l["reason_code"] == "not_attempted"), "nothing was sent: {letters:?}");
}

#[test]
fn a_stop_during_the_model_upload_ends_the_run_with_every_item_accounted_for() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 40, 7);
    let server = stalling(Stall::HangModelUploads);
    let mut config = twinload::config::LoadConfig::new(server.url.clone());
    config.dead_letter_path = dir.path().join("dead-letters.ndjson");
    config.summary_path = Some(dir.path().join("summary.json"));
    config.shutdown_grace = Duration::from_millis(500);
    // The connectivity check (a GET), then the upload (a POST that never gets an answer).
    let requests = std::sync::Arc::clone(&server.requests);
    let shutdown = async move {
        for _ in 0..3000 {
            if requests.load(Ordering::SeqCst) >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        twinload::run::messages::StopReason::Signal("SIGTERM")
    };
    let inputs = vec![input.display().to_string()];
    let summary = actix::System::new().block_on(twinload::run::load(config, inputs, shutdown)).expect("the load runs");
    assert_eq!(summary.exit_code, ExitStatus::StoppedEarly, "{}", summary.human());
    let value = serde_json::to_value(&summary).unwrap();
    let letters = dead_letters(&dir.path().join("dead-letters.ndjson"));
    assert_nothing_written_and_all_accounted_for(&value, &letters, &input);
    assert!(
        letters.iter().any(|l| l["kind"] == "model" && l["reason_code"] == "in_flight_at_stop"),
        "the upload in flight is said to be in doubt: {letters:?}"
    );
}

#[test]
fn the_deadline_stops_the_start_up_against_an_instance_that_never_answers() {
    let dir = tempfile::tempdir().unwrap();
    let input = fleet(dir.path(), 40, 8);
    let server = stalling(Stall::Hang);
    let mut config = twinload::config::LoadConfig::new(server.url.clone());
    config.dead_letter_path = dir.path().join("dead-letters.ndjson");
    config.summary_path = Some(dir.path().join("summary.json"));
    config.deadline = Some(Duration::from_secs(1));
    // Longer than the deadline: the stop must not wait for the request to time out.
    config.request_timeout = Duration::from_secs(600);
    let summary = load(config, vec![input.display().to_string()]).expect("the load runs");
    assert_eq!(summary.exit_code, ExitStatus::StoppedEarly, "{}", summary.human());
    assert!(summary.stop_reason.as_deref().unwrap_or_default().contains("deadline"), "{}", summary.human());
    let value = serde_json::to_value(&summary).unwrap();
    let letters = dead_letters(&dir.path().join("dead-letters.ndjson"));
    assert_nothing_written_and_all_accounted_for(&value, &letters, &input);
}
