//! A corpus of nasty inputs, each run through the real `twinload plan`: deep nesting, huge
//! numbers, invalid UTF-8, a BOM, CRLF, empty files, ids with `/ ? # % ..`, spaces, unicode and
//! control characters, duplicate keys, a 33 KB twin, 260 models, cyclic `extends`. No panic, no
//! hang (each run is bounded), and every rejection names its file and line.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One `twinload plan` must end within this.
const RUN_BOUND: Duration = Duration::from_secs(60);

const HEADER: &str =
    "{\"Section\": \"Header\"}\n{\"fileVersion\": \"1.0.0\", \"author\": \"t\", \"organization\": \"t\"}\n";

fn model(id: &str, extra: &str) -> String {
    format!(
        r#"{{"@id":"{id}","@type":"Interface","@context":"dtmi:dtdl:context;3","contents":[{{"@type":"Property","name":"p","schema":"double"}}]{extra}}}"#
    )
}

fn twin(id: &str, rest: &str) -> String {
    format!(r#"{{"$dtId":{},"$metadata":{{"$model":"dtmi:n:M;1"}}{rest}}}"#, serde_json::to_string(id).unwrap())
}

/// (file name, bytes) of every nasty input.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let models = format!("{{\"Section\": \"Models\"}}\n{}\n", model("dtmi:n:M;1", ""));
    let ndjson = |name: &str, twins: &[String]| {
        let mut text = format!("{HEADER}{models}{{\"Section\": \"Twins\"}}\n");
        for t in twins {
            text.push_str(t);
            text.push('\n');
        }
        (name.to_string(), text.into_bytes())
    };
    let deep = format!("{}1{}", "{\"a\":".repeat(5000), "}".repeat(5000));
    let mut files = vec![
        ndjson("deep.ndjson", &[twin("deep", &format!(",\"p\":{deep}"))]),
        ndjson(
            "numbers.ndjson",
            &[
                twin("big", ",\"p\":1e999999"),
                twin("long", ",\"p\":123456789012345678901234567890123456789"),
                twin("neg", ",\"p\":-0.0000000000000000000000000001e-400"),
            ],
        ),
        ndjson(
            "ids.ndjson",
            &[
                twin("a/b", ",\"p\":1"),
                twin("q?x", ",\"p\":1"),
                twin("h#x", ",\"p\":1"),
                twin("pc%20", ",\"p\":1"),
                twin("..", ",\"p\":1"),
                twin("with space", ",\"p\":1"),
                twin("ünïcødé-😀", ",\"p\":1"),
                twin("ctl\u{1}\u{7f}", ",\"p\":1"),
                twin("", ",\"p\":1"),
            ],
        ),
        ndjson("duplicates.ndjson", &[twin("dup", ",\"p\":1,\"p\":2"), twin("dup", ",\"p\":3")]),
        ndjson("big-twin.ndjson", &[twin("big", &format!(",\"s\":\"{}\"", "x".repeat(33 * 1024)))]),
        ("empty.ndjson".into(), Vec::new()),
        ("blank.ndjson".into(), b"\n\n  \r\n".to_vec()),
        ("empty.json".into(), Vec::new()),
        ("bom.json".into(), [b"\xEF\xBB\xBF".as_slice(), model("dtmi:n:Bom;1", "").as_bytes()].concat()),
        ("not-dtdl.json".into(), b"[1, \"x\", null, {}]".to_vec()),
        (
            "cyclic.json".into(),
            format!(
                "[{}, {}]",
                model("dtmi:n:A;1", r#","extends":"dtmi:n:B;1""#),
                model("dtmi:n:B;1", r#","extends":"dtmi:n:A;1""#)
            )
            .into_bytes(),
        ),
    ];
    let mut bytes = format!("{HEADER}{models}{{\"Section\": \"Twins\"}}\n").into_bytes();
    bytes.extend(b"{\"$dtId\":\"utf8-\xff\xfe\",\"$metadata\":{\"$model\":\"dtmi:n:M;1\"}}\n");
    bytes.extend(twin("after-bad-utf8", ",\"p\":1").as_bytes());
    bytes.push(b'\n');
    files.push(("invalid-utf8.ndjson".into(), bytes));
    let crlf = String::from_utf8(ndjson("x", &[twin("crlf", ",\"p\":1")]).1).unwrap().replace('\n', "\r\n");
    files.push(("crlf.ndjson".into(), [b"\xEF\xBB\xBF".as_slice(), crlf.as_bytes()].concat()));
    let mut many = format!("{HEADER}{{\"Section\": \"Models\"}}\n");
    for i in 0..260 {
        let extends = if i > 0 { format!(r#","extends":"dtmi:n:Many{};1""#, i - 1) } else { String::new() };
        many.push_str(
            &model(&format!("dtmi:n:Many{i};1"), &extends).replace("\"name\":\"p\"", &format!("\"name\":\"p{i}\"")),
        );
        many.push('\n');
    }
    files.push(("models-260.ndjson".into(), many.into_bytes()));
    files.push((
        "cyclic.ndjson".into(),
        format!(
            "{HEADER}{{\"Section\": \"Models\"}}\n{}\n{}\n",
            model("dtmi:n:C;1", r#","extends":"dtmi:n:D;1""#),
            model("dtmi:n:D;1", r#","extends":"dtmi:n:C;1""#)
        )
        .into_bytes(),
    ));
    files
}

fn plan(path: &Path) -> (i32, String) {
    bounded(twinload(&["plan", "--input"]).arg(path))
}

/// `twinload <args>`, stdout discarded, stderr captured.
fn twinload(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twinload"));
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd
}

/// Runs a command to its end, killing it (and failing) past [`RUN_BOUND`]: its exit code
/// and stderr (empty if stderr is not piped).
fn bounded(cmd: &mut Command) -> (i32, String) {
    let mut child = cmd.spawn().expect("twinload starts");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > RUN_BOUND {
            let _ = child.kill();
            panic!("{cmd:?} did not end within {RUN_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Two twins of model `dtmi:n:M;1`, as Import-Jobs NDJSON.
fn two_twins() -> String {
    let models = format!("{{\"Section\": \"Models\"}}\n{}\n", model("dtmi:n:M;1", ""));
    let twins = [twin("t1", ",\"p\":1"), twin("t2", ",\"p\":2")].join("\n");
    format!("{HEADER}{models}{{\"Section\": \"Twins\"}}\n{twins}\n")
}

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", path.display());
}

#[test]
fn a_fifo_in_a_folder_is_skipped_with_a_warning_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fleet.ndjson"), two_twins()).unwrap();
    // Nobody ever writes to it: opening it would wait for ever.
    let fifo = dir.path().join("pipe.ndjson");
    mkfifo(&fifo);
    let (code, stderr) = plan(dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(&format!("skipping {}: not a regular file", fifo.display())), "{stderr}");
    assert!(stderr.contains("twins") && stderr.contains('2'), "{stderr}");
}

#[test]
fn stdin_and_a_fifo_named_directly_are_read_as_streams() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.ndjson");
    std::fs::write(&file, two_twins()).unwrap();
    let json = dir.path().join("plan.json");
    let planned = |stderr: &str| {
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(doc["counts"]["twins"]["to_write"], 2, "{stderr}\n{doc}");
    };
    let (code, stderr) =
        bounded(twinload(&["plan", "--input", "-", "--json"]).arg(&json).stdin(std::fs::File::open(&file).unwrap()));
    assert_eq!(code, 0, "{stderr}");
    planned(&stderr);
    std::fs::remove_file(&json).unwrap();

    // A FIFO without a telling name: its format is recognised from its first bytes.
    let fifo = dir.path().join("feed");
    mkfifo(&fifo);
    let (fifo_path, text) = (fifo.clone(), two_twins());
    // Opening a FIFO to write waits for its reader: the writer thread ends once plan reads.
    let writer = std::thread::spawn(move || std::fs::write(fifo_path, text));
    let (code, stderr) = bounded(twinload(&["plan", "--input"]).arg(&fifo).arg("--json").arg(&json));
    assert_eq!(code, 0, "{stderr}");
    planned(&stderr);
    writer.join().unwrap().expect("the whole file went through the FIFO");
}

#[test]
fn plan_rejects_numbers_and_nesting_that_load_would_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limits.ndjson");
    let deep = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
    let models = format!("{{\"Section\": \"Models\"}}\n{}\n", model("dtmi:n:M;1", ""));
    let twins = [
        twin("huge", ",\"p\":1e400"),
        twin("deep", &format!(",\"q\":{}", deep(64))),
        twin("fine", &format!(",\"p\":1.5e300,\"q\":{}", deep(8))),
    ]
    .join("\n");
    std::fs::write(&path, format!("{HEADER}{models}{{\"Section\": \"Twins\"}}\n{twins}\n")).unwrap();
    let json = dir.path().join("plan.json");
    let (code, stderr) = bounded(twinload(&["plan", "--input"]).arg(&path).arg("--json").arg(&json));
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("limits.ndjson:6: twin huge: number out of range"), "{stderr}");
    assert!(stderr.contains("limits.ndjson:7: twin deep: its arrays or objects are nested more than 64"), "{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(doc["counts"]["twins"]["to_write"], 1, "{doc}");
}

#[test]
fn an_unclosed_csv_quote_is_reported_at_its_line_and_plan_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.csv");
    let mut text = String::from("$dtId,$model,Name\n");
    for i in 1..=500 {
        let name = if i == 7 { "\"unclosed".to_string() } else { format!("n{i}") };
        text.push_str(&format!("t{i},dtmi:n:M;1,{name}\n"));
    }
    std::fs::write(&path, text).unwrap();
    let (code, stderr) = plan(&path);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("rows.csv:8") && stderr.contains("never closed"), "{stderr}");
}

#[test]
fn a_closed_or_full_stderr_is_no_panic_and_a_plan_file_that_cannot_be_written_is_exit_6() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.ndjson");
    std::fs::write(&file, two_twins()).unwrap();
    let json = dir.path().join("plan.json");
    let dev_full = || std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let (code, _) = bounded(twinload(&["plan", "--input"]).arg(&file).arg("--json").arg(&json).stderr(dev_full()));
    assert_eq!(code, 0, "stderr on a full disk");
    assert!(json.exists(), "the plan file is written whatever happens to stderr");
    std::fs::remove_file(&json).unwrap();

    // stderr a pipe whose reader is gone before anything is written (`2>&1 | head -0`).
    let mut child = twinload(&["plan", "--input"]).arg(&file).arg("--json").arg(&json).spawn().unwrap();
    drop(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > RUN_BOUND {
            let _ = child.kill();
            panic!("plan did not end within {RUN_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "a closed stderr");
    assert!(json.exists());

    let (code, stderr) = bounded(twinload(&["plan", "--input"]).arg(&file).args(["--json", "/dev/full"]));
    assert_eq!(code, 6, "{stderr}");
    assert!(stderr.contains("cannot write the plan /dev/full"), "{stderr}");
    assert!(stderr.contains("twins"), "the plan is still printed: {stderr}");
}

#[test]
fn gen_refuses_a_hub_degree_beyond_adts_limit_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet.ndjson");
    let (code, stderr) =
        bounded(twinload(&["gen", "--twins", "100", "--hubs", "1", "--hub-degree", "10000000", "--out"]).arg(&out));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--hub-degree must be at most 50000"), "{stderr}");
    assert!(!out.exists(), "nothing written");
    // Within the per-twin limit, but more than the fleet's vehicles and parts can take in.
    let (code, stderr) =
        bounded(twinload(&["gen", "--twins", "100", "--hubs", "50", "--hub-degree", "50000", "--out"]).arg(&out));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("incoming relationships"), "{stderr}");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn nasty_inputs_never_panic_or_hang_and_every_rejection_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in corpus() {
        let path = dir.path().join(&name);
        std::fs::write(&path, &bytes).unwrap();
        let (code, stderr) = plan(&path);
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!([0, 3, 4].contains(&code), "{name}: exit code {code}\n{stderr}");
        // Every example listed under "Rejected" is "<file>:<line>: …".
        let mut in_rejected = false;
        for line in stderr.lines() {
            if line.starts_with("Rejected") {
                in_rejected = true;
                continue;
            }
            if in_rejected && !line.starts_with(' ') {
                in_rejected = false;
            }
            if in_rejected && line.starts_with("    ") && !line.trim_start().starts_with("…") {
                let at = line.find(&format!("{name}:")).unwrap_or_else(|| panic!("{name}: no file in {line:?}"));
                let after = &line[at + name.len() + 1..];
                assert!(after.starts_with(|c: char| c.is_ascii_digit()), "{name}: no line number in {line:?}");
            }
        }
        if code == 3 {
            assert!(stderr.contains("Rejected"), "{name}: exit 3 without rejections\n{stderr}");
        }
    }
}
