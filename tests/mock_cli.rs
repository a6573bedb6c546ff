//! `twinload mock-adt` as scripts use it: the built binary, the `listening on <url>` line, HTTPS
//! with the CA it wrote, auth required, and SIGTERM → exit 0.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the test waits for the mock to print its line and, later, to exit.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Kills the child if the test fails half-way, so no mock outlives the test.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts the binary and returns it with the URL of its first stdout line.
fn spawn_mock(args: &[&str]) -> (KillOnDrop, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_twinload"))
        .arg("mock-adt")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the twinload binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let child = KillOnDrop(child);
    // Read the first line on a helper thread so a mock that never prints cannot hang the test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(STARTUP_TIMEOUT).expect("the mock prints its first line in time");
    let url = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first stdout line is not 'listening on <url>': {line:?}"))
        .to_string();
    (child, url)
}

fn sigterm(child: &Child) {
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill runs");
    assert!(status.success());
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + EXIT_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "the mock did not exit within {EXIT_TIMEOUT:?} of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn https_with_the_written_ca_auth_required_and_sigterm_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    let (mut child, url) =
        spawn_mock(&["--listen", "127.0.0.1:0", "--tls-self-signed", "--ca-out", ca_path.to_str().unwrap()]);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let port: u16 = url.rsplit(':').next().unwrap().parse().expect("the URL ends with the port");
    assert_ne!(port, 0, "the printed URL has the real port");

    // The CA was written before the line was printed; trusting it (and nothing else) works.
    let ca = std::fs::read(&ca_path).expect("the CA PEM exists when the listening line is printed");
    let client = twinload::http::client_builder(None)
        .unwrap()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let models = format!("{url}/models?api-version=2023-10-31");
    let refused = client.get(&models).send().await.expect("HTTPS works with the written CA");
    assert_eq!(refused.status(), 401);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Unauthorized", "{body}");
    let allowed = client.get(&models).bearer_auth("any-token").send().await.unwrap();
    assert_eq!(allowed.status(), 200, "with a bearer token the data plane answers");

    // A client that does not trust the CA is refused by TLS.
    let untrusting = twinload::http::client_builder(None).unwrap().timeout(Duration::from_secs(10)).build().unwrap();
    assert!(untrusting.get(&models).send().await.is_err(), "the certificate is not publicly trusted");

    sigterm(&child.0);
    let status = wait_exit(&mut child.0);
    assert_eq!(status.code(), Some(0), "SIGTERM ends the mock with exit 0");
}

#[tokio::test]
async fn no_auth_plain_http_and_sigint_exits_zero() {
    let (mut child, url) = spawn_mock(&["--no-auth", "--limits-off"]);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let client = twinload::http::client_builder(None).unwrap().timeout(Duration::from_secs(10)).build().unwrap();
    let res = client.get(format!("{url}/models?api-version=2023-10-31")).send().await.unwrap();
    assert_eq!(res.status(), 200, "--no-auth accepts requests without a token");
    let status = Command::new("kill").arg("-INT").arg(child.0.id().to_string()).status().unwrap();
    assert!(status.success());
    assert_eq!(wait_exit(&mut child.0).code(), Some(0));
}

#[test]
fn a_bad_flag_is_a_usage_error_not_a_hang() {
    let out = Command::new(env!("CARGO_BIN_EXE_twinload")).args(["mock-adt", "--drop-rate", "1.5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "clap's usage-error exit code");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--drop-rate"));
}
