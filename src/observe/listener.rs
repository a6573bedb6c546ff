//! The `/metrics` HTTP listener (`--metrics-listen`). It runs on a thread of its own with a
//! one-thread tokio runtime, so it answers scrapes whatever the load's actors are doing and
//! outlives the load's actix System for the linger time.
//!
//! Why not the exporter crate's own listener: it cannot report the port it bound when asked
//! for port 0, which is how tests and several loaders on one machine run. The protocol needed
//! is one request per connection (`Connection: close`), which is what Prometheus sends.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bytes of a request read at most (a scrape's request is a few hundred).
const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// A client that does not finish its request within this is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A running listener; it stops when dropped.
pub struct Listener {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    /// Binds `addr` (port 0: any free port) and serves `handle`'s rendering at `/metrics`.
    pub fn start(addr: SocketAddr, handle: PrometheusHandle) -> std::io::Result<Listener> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("twinload-metrics".into()).spawn(move || {
            runtime.block_on(async move {
                let listener = match TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!("metrics listener: {e}");
                        return;
                    }
                };
                tokio::select! {
                    _ = stopped => {}
                    _ = serve(listener, handle) => {}
                }
            })
        })?;
        Ok(Listener { addr, stop: Some(stop), thread: Some(thread) })
    }

    /// The address bound (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: TcpListener, handle: PrometheusHandle) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let handle = handle.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &handle)).await;
        });
    }
}

/// Reads one request's head and answers it: `GET /metrics` with the exposition, else 404/405.
async fn answer(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST_BYTES {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = target.split('?').next().unwrap_or_default();
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", handle.render()),
        ("GET", _) => ("404 Not Found", "text/plain; charset=utf-8", "not found: the metrics are at /metrics\n".into()),
        _ => ("405 Method Not Allowed", "text/plain; charset=utf-8", "only GET /metrics\n".into()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
