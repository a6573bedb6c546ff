//! The official Python SDK (`azure-digitaltwins-core`) against the mock over verified HTTPS,
//! with auth on: `tests/python/sdk_check.py` decides, by its exit status.
//!
//! The Python interpreter is `$TWINLOAD_PYTHON` when set (tests/run.sh sets it), else a venv at
//! `<target dir>/pyenv`, created here with the pinned `tests/python/requirements.txt` when it
//! is missing (the same place tests/run.sh uses, so it is built once).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use twinload::mock::auth::AuthConfig;
use twinload::mock::server::{start, MockConfig};
use twinload::mock::tls::TlsMode;

/// The whole SDK script, including its pip-free start-up, finishes well within this.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's interpreter, creating the venv when needed (idempotent).
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("TWINLOAD_PYTHON") {
        return PathBuf::from(python);
    }
    let target_dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("the target tmp dir has a parent").to_path_buf();
    let venv = target_dir.join("pyenv");
    let python = venv.join("bin/python");
    let has_sdk = |python: &Path| {
        Command::new(python)
            .args(["-c", "import azure.digitaltwins.core"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_sdk(&python) {
        let created = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().expect("python3 runs");
        assert!(created.success(), "python3 -m venv {} failed", venv.display());
        let installed = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(crate_dir().join("tests/python/requirements.txt"))
            .status()
            .expect("pip runs");
        assert!(installed.success(), "pip install -r tests/python/requirements.txt failed");
        assert!(has_sdk(&python), "azure-digitaltwins-core is not importable after pip install");
    }
    python
}

#[test]
fn the_official_python_sdk_works_against_the_mock_over_verified_https() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("mock-ca.pem");
    let token = "sdk-test-token";
    let mock = start(MockConfig {
        auth: AuthConfig::Token(token.to_string()),
        tls: TlsMode::SelfSigned { ca_out: Some(ca_path.clone()) },
        ..MockConfig::default()
    })
    .expect("the mock starts");
    // The SDK is given `localhost` (a name, as a real endpoint has); the certificate covers it.
    let url = mock.url.replace("127.0.0.1", "localhost");

    // Output goes to files, so a chatty script can never block on a full pipe.
    let stdout_path = dir.path().join("stdout.txt");
    let stderr_path = dir.path().join("stderr.txt");
    let mut child = Command::new(&python)
        .arg(crate_dir().join("tests/python/sdk_check.py"))
        .arg(&url)
        .arg(&ca_path)
        .arg(token)
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("the SDK script starts");
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the SDK script did not finish within {SCRIPT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(status.success(), "the SDK script failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("0 failure(s)"), "{stdout}");
    // Nothing was left behind but the models the script did not delete.
    assert_eq!(mock.store().twin_count(), 0);
}
