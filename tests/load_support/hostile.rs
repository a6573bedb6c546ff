//! A hostile HTTP server for the tests: a small HTTP/1.1 proxy on a free loopback port that
//! forwards requests to an upstream server (the mock ADT) or misbehaves the way real networks
//! and pipelines do, chosen per request: a redirect, an endless body, a `Content-Length` of
//! gigabytes, an error body that echoes the request's `Authorization` header, a connection that
//! never answers. It records every request it saw.
//!
//! One request per connection (`Connection: close`), so a test sees each request's fate alone.
//! Every loop is bounded: a body is streamed until the client goes away or [`STREAM_BUDGET`]
//! bytes were sent, a hang lasts at most [`HANG_MAX`] (or until the server is dropped).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Most bytes one endless or oversized answer sends (a loader without a cap stops there, so a
/// test against it fails without taking the machine down).
pub const STREAM_BUDGET: u64 = 64 * 1024 * 1024;
/// Longest a [`Act::Hang`] holds its connection.
pub const HANG_MAX: Duration = Duration::from_secs(300);
/// What [`Act::HugeContentLength`] declares: 8 GB.
pub const HUGE_CONTENT_LENGTH: u64 = 8_000_000_000;

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The request target (path and query).
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Act {
    /// Passes it to the upstream server and its answer back.
    Forward,
    /// Answers `status` (a 3xx) with `Location: location`.
    Redirect { status: u16, location: String },
    /// Answers `status` with this body (JSON).
    Answer { status: u16, body: String },
    /// 200 with a chunked body that never ends.
    EndlessBody,
    /// 200 declaring `Content-Length: 8000000000`, then streaming zeros.
    HugeContentLength,
    /// 400 whose body repeats the request's `Authorization` header, as text and inside ADT's
    /// error JSON on alternate requests.
    EchoAuthorization,
    /// Reads the request and never answers.
    Hang,
}

type Decide = dyn Fn(&Seen, u64) -> Act + Send + Sync;

/// A running hostile server; dropping it stops it.
pub struct Hostile {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Hostile {
    /// Starts the server; `decide(request, n)` chooses what to do with the n-th request (from 0).
    /// `upstream` (a base URL, `http://127.0.0.1:port`) is where [`Act::Forward`] goes.
    pub fn start(upstream: Option<&str>, decide: impl Fn(&Seen, u64) -> Act + Send + Sync + 'static) -> Hostile {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("hostile server runtime");
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let upstream = upstream.map(|u| u.trim_start_matches("http://").trim_end_matches('/').to_string());
        let decide: Arc<Decide> = Arc::new(decide);
        let (s, count) = (seen.clone(), Arc::new(std::sync::atomic::AtomicU64::new(0)));
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (s, decide, upstream, count) = (s.clone(), decide.clone(), upstream.clone(), count.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &s, &*decide, upstream.as_deref(), &count).await;
                });
            }
        });
        Hostile { url, seen, runtime: Some(runtime) }
    }

    /// The requests seen so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }
}

async fn serve(
    stream: TcpStream,
    seen: &Mutex<Vec<Seen>>,
    decide: &Decide,
    upstream: Option<&str>,
    count: &std::sync::atomic::AtomicU64,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await?;
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut headers = Vec::new();
    for _ in 0..200 {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let request = Seen { method, target, headers };
    let length: usize = request.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length.min(64 * 1024 * 1024)];
    reader.read_exact(&mut body).await?;
    let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    seen.lock().push(request.clone());
    let mut stream = reader.into_inner();
    match decide(&request, n) {
        Act::Forward => {
            let upstream = upstream.expect("Act::Forward needs an upstream");
            let mut up = TcpStream::connect(upstream).await?;
            let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
            for (k, v) in &request.headers {
                if !k.eq_ignore_ascii_case("connection") && !k.eq_ignore_ascii_case("host") {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
            }
            head.push_str(&format!("Host: {upstream}\r\nConnection: close\r\n\r\n"));
            up.write_all(head.as_bytes()).await?;
            up.write_all(&body).await?;
            tokio::io::copy(&mut up, &mut stream).await?;
        }
        Act::Redirect { status, location } => {
            let head = format!(
                "HTTP/1.1 {status} Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await?;
        }
        Act::Answer { status, body } => respond(&mut stream, status, &body).await?,
        Act::EchoAuthorization => {
            let auth = request.header("authorization").unwrap_or("(none)");
            let body = if n.is_multiple_of(2) {
                format!("bad request; you sent Authorization: {auth}")
            } else {
                serde_json::json!({"error": {"code": "BadRequest", "message": format!("Authorization: {auth} is not valid here")}})
                    .to_string()
            };
            respond(&mut stream, 400, &body).await?;
        }
        Act::EndlessBody => {
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").await?;
            let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
            stream_until(&mut stream, chunk.as_bytes()).await?;
        }
        Act::HugeContentLength => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {HUGE_CONTENT_LENGTH}\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await?;
            stream_until(&mut stream, &[b' '; 64 * 1024]).await?;
        }
        Act::Hang => {
            tokio::time::sleep(HANG_MAX).await;
        }
    }
    stream.shutdown().await
}

async fn respond(stream: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} Hostile\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await
}

/// Writes `chunk` again and again until the client goes away or the budget is spent.
async fn stream_until(stream: &mut TcpStream, chunk: &[u8]) -> std::io::Result<()> {
    let mut sent = 0u64;
    while sent < STREAM_BUDGET {
        stream.write_all(chunk).await?;
        sent += chunk.len() as u64;
    }
    Ok(())
}

/// How a child `twinload` run ended, and the most memory it held.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The child's peak resident set (`VmHWM` of /proc/<pid>/status), in KiB, as last read
    /// while it ran (the peak only grows, so the last reading is the run's peak so far).
    pub peak_rss_kib: u64,
}

/// Runs the twinload binary with `args` in `cwd` (no TWINLOAD_*/AZ_BATCH_* of the outer
/// shell), watching its peak memory; killed after `limit`.
pub fn run_watched(args: &[&str], cwd: &Path, limit: Duration) -> Finished {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twinload"));
    cmd.args(args).current_dir(cwd).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("TWINLOAD_") || k.starts_with("AZ_BATCH_") || k.starts_with("IDENTITY_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().expect("twinload starts");
    let pid = child.id();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let mut peak_rss_kib = 0;
    let status = loop {
        if let Some(hwm) = vm_hwm_kib(pid) {
            peak_rss_kib = peak_rss_kib.max(hwm);
        }
        if let Some(status) = child.try_wait().expect("wait for twinload") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            break child.wait().expect("wait for twinload");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Finished {
        code: status.code(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        peak_rss_kib,
    }
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Every file under `dir` as text (lossy), with its path: what a run wrote, to scan for secrets.
pub fn files_under(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    for _ in 0..10_000 {
        let Some(next) = stack.pop() else { break };
        let Ok(entries) = std::fs::read_dir(&next) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                found.push((path.display().to_string(), String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    found
}
