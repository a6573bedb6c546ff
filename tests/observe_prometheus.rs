//! The metrics as an operator sees them: a real Prometheus (Debian's `prometheus`, installed by
//! tests/run.sh) scrapes a loader (`--metrics-listen`) and the mock ADT every second during a
//! small load with throttles, server errors and bad items; afterwards every PromQL expression
//! of every panel of every dashboard in dashboards/ must return data. A second, short loader
//! reports only through a real Pushgateway (`prometheus-pushgateway`), and its final counts
//! must reach Prometheus. `promtool check metrics` passes on both sides' /metrics text, and no
//! series carries a twin id.
//!
//! Nothing here is skipped: without Prometheus, the Pushgateway or promtool the test fails and
//! says how to install them.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use twinload::exit::ExitStatus;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_twinload");
/// Bounds every wait of this test (a server coming up, a line on stderr, a series appearing).
const WAIT: Duration = Duration::from_secs(60);
/// Twins in the scraped load; at the adt-2021 limits (50 creates/s) it writes for ~8 s, so
/// Prometheus scrapes it several times.
const TWINS: u64 = 120;
/// Twins of the pushing task: it ends in well under one scrape interval of the test.
const PUSH_TWINS: u64 = 10;

/// Kills a child process when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn require(binary: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/bin", "/usr/sbin"]) {
        let path = Path::new(dir).join(binary);
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "{binary} is not installed: this test needs a real Prometheus and Pushgateway. Run tests/run.sh (it installs \
         them), or `apt-get install -y prometheus prometheus-pushgateway`"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn http_get(url: &str) -> Result<String, String> {
    runtime().block_on(async {
        let client = twinload::http::client_builder(None).unwrap().timeout(Duration::from_secs(10)).build().unwrap();
        let resp = client.get(url).send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(format!("HTTP {status}: {text}"))
        }
    })
}

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stderr lines of a child, as they come.
fn lines_of(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for_line(rx: &mpsc::Receiver<String>, what: &str, mut matches: impl FnMut(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if matches(&line) => return line,
            Ok(_) => continue,
            Err(_) => panic!("no line {what} within {WAIT:?}"),
        }
    }
}

fn now_s() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn promtool_check(promtool: &Path, text: &str, side: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics on the {side}'s /metrics: {said}");
}

/// A fleet with a twin whose model does not exist (dead-lettered by the plan), so the dead
/// letter panels have something to show.
fn fleet_with_a_bad_twin(dir: &Path, twins: u64, seed: u64) -> PathBuf {
    let path = dir.join(format!("fleet-{twins}.ndjson"));
    let status = Command::new(BIN)
        .args(["gen", "--twins", &twins.to_string(), "--seed", &seed.to_string(), "--out"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if line.contains("\"Section\": \"Twins\"") {
            out.push_str(r#"{"$dtId":"orphan","$metadata":{"$model":"dtmi:bad:Nowhere;1"}}"#);
            out.push('\n');
        }
    }
    std::fs::write(&path, out).unwrap();
    path
}

fn twin_ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"$dtId\"") && !l.contains("$relationshipId"))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["$dtId"].as_str().map(String::from))
        .collect()
}

/// The range query's series with at least one non-NaN value.
fn series_with_data(prom: &str, expr: &str, start: f64, end: f64) -> Result<usize, String> {
    let url = reqwest::Url::parse_with_params(
        &format!("{prom}/api/v1/query_range"),
        &[("query", expr), ("start", &format!("{start:.3}")), ("end", &format!("{end:.3}")), ("step", "1")],
    )
    .unwrap();
    let body: Value = serde_json::from_str(&http_get(url.as_str())?).map_err(|e| e.to_string())?;
    if body["status"] != "success" {
        return Err(body.to_string());
    }
    let result = body["data"]["result"].as_array().cloned().unwrap_or_default();
    Ok(result
        .iter()
        .filter(|s| {
            s["values"].as_array().is_some_and(|vs| {
                vs.iter().any(|v| v[1].as_str().and_then(|x| x.parse::<f64>().ok()).is_some_and(|x| x.is_finite()))
            })
        })
        .count())
}

fn instant(prom: &str, expr: &str) -> Vec<Value> {
    let url = reqwest::Url::parse_with_params(&format!("{prom}/api/v1/query"), &[("query", expr)]).unwrap();
    let body: Value = serde_json::from_str(&http_get(url.as_str()).unwrap()).unwrap();
    body["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// A dashboard expression as Grafana would send it: the task variable at "All", the rate
/// interval at 4 scrape intervals (Grafana's floor for `$__rate_interval`).
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "5s").replace("${task}", ".*").replace("$task", ".*")
}

#[test]
fn prometheus_scrapes_a_load_and_every_dashboard_panel_has_data() {
    let prometheus = require("prometheus");
    let pushgateway = require("prometheus-pushgateway");
    let promtool = require("promtool");
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));

    // The mock: ADT's 2021 limits (50 creates/s) so the load lasts; 5% 429s and 2% 5xx so
    // throttling and retries show.
    let mut mock = Command::new(BIN)
        .args(["mock-adt", "--no-auth", "--limits", "adt-2021", "--fault-429-rate", "0.05", "--fault-5xx-rate", "0.02"])
        .args(["--seed", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mock_out = lines_of(mock.stdout.take().unwrap());
    let mock = Killed(mock);
    let mock_url = wait_for_line(&mock_out, "with the mock's address", |l| l.contains("http://"));
    let mock_url = mock_url[mock_url.find("http://").unwrap()..].trim().to_string();
    let mock_addr = mock_url.trim_start_matches("http://").to_string();

    // The Pushgateway and Prometheus, on free loopback ports, with a fresh TSDB.
    let pg_port = free_port();
    let pg_dir = dir.path().join("pushgateway");
    std::fs::create_dir_all(&pg_dir).unwrap();
    let _pg = Killed(
        Command::new(&pushgateway)
            .arg(format!("--web.listen-address=127.0.0.1:{pg_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let targets = dir.path().join("loader-targets.json");
    std::fs::write(&targets, "[]").unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: twinload\n    \
             file_sd_configs:\n      - files: ['{}']\n        refresh_interval: 1s\n  - job_name: mock-adt\n    \
             static_configs:\n      - targets: ['{mock_addr}']\n  - job_name: pushgateway\n    honor_labels: true\n    \
             static_configs:\n      - targets: ['127.0.0.1:{pg_port}']\n",
            targets.display()
        ),
    )
    .unwrap();
    let prom_port = free_port();
    let _prom = Killed(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prom = format!("http://127.0.0.1:{prom_port}");
    wait_until("Prometheus to be ready", || http_get(&format!("{prom}/-/ready")).ok());
    wait_until("the Pushgateway to be ready", || http_get(&format!("http://127.0.0.1:{pg_port}/-/ready")).ok());
    let started = now_s();

    // The scraped loader, as Batch task "task-scraped".
    let input = fleet_with_a_bad_twin(dir.path(), TWINS, 5);
    let mut loader = Command::new(BIN)
        .args(["load", "--endpoint", &mock_url, "--limits", "adt-2021", "--metrics-listen", "127.0.0.1:0"])
        .args(["--metrics-linger-s", "4", "--input"])
        .arg(&input)
        .arg("--summary")
        .arg(dir.path().join("scraped-summary.json"))
        .arg("--dead-letter")
        .arg(dir.path().join("scraped-dead.ndjson"))
        .env("AZ_BATCH_POOL_ID", "pool-test")
        .env("AZ_BATCH_JOB_ID", "job-test")
        .env("AZ_BATCH_TASK_ID", "task-scraped")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let loader_err = lines_of(loader.stderr.take().unwrap());
    let mut loader = Killed(loader);
    let serving = wait_for_line(&loader_err, "with the metrics address", |l| l.starts_with("metrics: serving "));
    let metrics_url = serving.trim_start_matches("metrics: serving ").trim().to_string();
    let loader_addr = metrics_url.trim_start_matches("http://").trim_end_matches("/metrics").to_string();
    assert_ne!(loader_addr, "127.0.0.1:0", "the bound port is reported, not the one asked for");
    std::fs::write(&targets, format!(r#"[{{"targets":["{loader_addr}"]}}]"#)).unwrap();

    // The final exposition, taken while the loader lingers.
    wait_for_line(&loader_err, "saying the loader lingers", |l| l.starts_with("metrics: lingering"));
    let loader_text = http_get(&metrics_url).expect("the listener answers while lingering");
    assert!(
        loader.0.wait().unwrap().code() == Some(i32::from(ExitStatus::DeadLetters.code())),
        "one twin is dead-lettered"
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("scraped-summary.json")).unwrap()).unwrap();

    // Conventions: promtool is satisfied, names carry the prefix, the Batch labels are there,
    // and no twin id is a label value.
    promtool_check(&promtool, &loader_text, "loader");
    for line in loader_text.lines().filter(|l| l.starts_with("# TYPE")) {
        assert!(line.split_whitespace().nth(2).unwrap().starts_with("twinload_"), "{line}");
    }
    assert!(loader_text.contains(r#"batch_task="task-scraped""#) && loader_text.contains(r#"batch_pool="pool-test""#));
    for id in twin_ids(&input) {
        assert!(!loader_text.contains(&format!("\"{id}\"")), "a series carries the twin id {id}");
    }
    let landed_twins = summary["items"]["twins"]["landed"].as_u64().unwrap();
    assert!(
        loader_text.contains(&format!(
            r#"twinload_items_total{{batch_pool="pool-test",batch_job="job-test",batch_task="task-scraped",kind="twin",outcome="landed"}} {landed_twins}"#
        )),
        "the landed twins match the summary ({landed_twins}):\n{loader_text}"
    );
    let mock_text = http_get(&format!("{mock_url}/metrics")).unwrap();
    promtool_check(&promtool, &mock_text, "mock");

    // A short task that reports only through the Pushgateway: no listener, done between scrapes.
    let push_input = fleet_with_a_bad_twin(dir.path(), PUSH_TWINS, 9);
    let out = Command::new(BIN)
        .args(["load", "--endpoint", &mock_url, "--pushgateway", &format!("http://127.0.0.1:{pg_port}"), "--input"])
        .arg(&push_input)
        .arg("--summary")
        .arg(dir.path().join("pushed-summary.json"))
        .arg("--dead-letter")
        .arg(dir.path().join("pushed-dead.ndjson"))
        .env("AZ_BATCH_TASK_ID", "task-pushed")
        .env_remove("AZ_BATCH_POOL_ID")
        .env_remove("AZ_BATCH_JOB_ID")
        .output()
        .unwrap();
    let pushed: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("pushed-summary.json")).unwrap())
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let pushed_rels = pushed["items"]["relationships"]["landed"].as_u64().unwrap();
    assert!(pushed_rels > 0);
    let expr = r#"twinload_items_total{job="twinload",instance="task-pushed",batch_task="task-pushed",kind="relationship",outcome="landed"}"#;
    let got = wait_until("the pushed counts in Prometheus", || {
        instant(&prom, expr).first().and_then(|s| s["value"][1].as_str().map(String::from))
    });
    assert_eq!(got, pushed_rels.to_string(), "the pushed final count is the summary's");

    // Let one more scrape land, then every panel of every dashboard must show data.
    std::thread::sleep(Duration::from_secs(2));
    let end = now_s();
    let tasks = http_get(&format!("{prom}/api/v1/label/batch_task/values")).unwrap();
    assert!(tasks.contains("task-scraped") && tasks.contains("task-pushed"), "the $task variable's values: {tasks}");
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut dashboards: Vec<PathBuf> = std::fs::read_dir(root.join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    dashboards.sort();
    assert!(dashboards.len() >= 2, "the loader's and the mock's dashboards");
    for path in &dashboards {
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(dashboard["id"].is_null() && dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()), "{path:?}");
        let variables = dashboard["templating"]["list"].as_array().unwrap();
        assert!(variables.iter().any(|v| v["type"] == "datasource" && v["name"] == "datasource"), "{path:?}");
        for panel in dashboard["panels"].as_array().unwrap() {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{path:?} {}", panel["title"]);
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{path:?}: panel {} has no query", panel["title"]);
            for target in targets {
                let expr = substitute(target["expr"].as_str().unwrap());
                checked += 1;
                match series_with_data(&prom, &expr, started, end) {
                    Ok(n) if n > 0 => {}
                    Ok(_) => failures.push(format!("{}: \"{}\": no data from {expr}", path.display(), panel["title"])),
                    Err(e) => failures.push(format!("{}: \"{}\": {expr}: {e}", path.display(), panel["title"])),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} panel queries failed:\n{}", failures.len(), failures.join("\n"));
    drop(mock);
}
