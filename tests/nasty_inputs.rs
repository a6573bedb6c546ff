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
    let mut child = Command::new(env!("CARGO_BIN_EXE_twinload"))
        .args(["plan", "--input"])
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("twinload plan starts");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > RUN_BOUND {
            let _ = child.kill();
            panic!("twinload plan {} did not end within {RUN_BOUND:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
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
