//! The HTTP server of `run`/`soak` `--metrics-addr`: `/metrics` (Prometheus text), `/` (the live
//! page) and `/samples.json` (the samples the page draws), from a [`Watch`].
//!
//! A small HTTP/1.1 responder on tokio's `TcpListener`, on one thread of its own with a
//! current-thread runtime, so it never competes with the run's threads for a runtime: each
//! connection gets one response to a GET and is closed. Everything is bounded: the request head
//! ([`REQUEST_HEAD_MAX_BYTES`], and the time to send it, [`REQUEST_HEAD_TIMEOUT`], so idle or
//! slow clients cannot hold the slots scrapers need), the connections served at once
//! ([`CONNECTIONS_MAX`]; more are closed at once) and each connection's time
//! ([`CONNECTION_TIMEOUT`]). Header lines may end in CRLF or a bare LF (RFC 9112, 2.2).
//!
//! The address is bound by [`MetricsServer::bind`] before the run opens its data directory, so a
//! port in use stops the command before anything is touched.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::metrics::Watch;

/// The live page: one HTML file with inline script and styles, nothing fetched from elsewhere.
const LIVE_PAGE_HTML: &str = include_str!("live_page.html");

/// Largest request head read (request line and headers); a longer one gets 431.
pub const REQUEST_HEAD_MAX_BYTES: usize = 8 << 10;
/// Connections served at once; one more is closed without a response. Each holds a descriptor
/// the run's journals share (one per open fragment), so this stays well under the usual limits.
pub const CONNECTIONS_MAX: usize = 128;
/// Longest a client may take to send its request head; then it gets 408 and is closed.
pub const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a connection may take, from accept to the last byte of its response.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The Prometheus text format's content type (version 0.0.4).
const METRICS_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A bound, not yet serving, metrics address.
pub struct MetricsServer {
    listener: std::net::TcpListener,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` (port 0: any free port; see [`MetricsServer::addr`]).
    pub fn bind(addr: SocketAddr) -> std::io::Result<MetricsServer> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        Ok(MetricsServer { listener, addr })
    }

    /// Serves the figures of a run over `journals` on a thread of its own until the process
    /// exits, and says where on stderr; the run publishes its samples to the [`Watch`] returned.
    pub fn start(self, journals: Vec<ss_log::Journal>) -> std::io::Result<Arc<Watch>> {
        let watch = Arc::new(Watch::new(journals));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let MetricsServer { listener, addr } = self;
        let served = watch.clone();
        std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => serve(listener, served).await,
                        Err(e) => {
                            crate::exit::errln!(
                                "stream-sum: warning: serving metrics on {addr}: {e}; not serving"
                            )
                        }
                    }
                })
            })?;
        crate::exit::errln!("stream-sum: metrics at http://{addr}/metrics, live page at http://{addr}/");
        Ok(watch)
    }
}

async fn serve(listener: tokio::net::TcpListener, watch: Arc<Watch>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors or a connection reset before accept: try again soon.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue; // Dropping the stream closes it.
        };
        let watch = watch.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection(stream, &watch)).await;
            drop(permit);
        });
    }
}

/// Reads one request head, writes one response, closes.
async fn connection(mut stream: tokio::net::TcpStream, watch: &Arc<Watch>) -> std::io::Result<()> {
    let response = match tokio::time::timeout(REQUEST_HEAD_TIMEOUT, read_head(&mut stream)).await {
        Err(_) => Response::text(408, "Request Timeout", "request head not sent in time\n"),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Head::Closed)) => return Ok(()),
        Ok(Ok(Head::TooLarge)) => {
            Response::text(431, "Request Header Fields Too Large", "request head too large\n")
        }
        Ok(Ok(Head::Complete(head))) => respond(&head, watch),
    };
    stream.write_all(&response.to_bytes()).await?;
    stream.shutdown().await
}

/// What a client sent before its request head ended.
enum Head {
    Complete(Vec<u8>),
    /// Closed before a whole request head.
    Closed,
    /// Longer than [`REQUEST_HEAD_MAX_BYTES`].
    TooLarge,
}

async fn read_head(stream: &mut tokio::net::TcpStream) -> std::io::Result<Head> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head_end(&head) {
            head.truncate(end);
            return Ok(Head::Complete(head));
        }
        if head.len() > REQUEST_HEAD_MAX_BYTES {
            return Ok(Head::TooLarge);
        }
    }
}

/// Where the request head ends: after the first empty line, its lines ending in CRLF or LF.
fn head_end(head: &[u8]) -> Option<usize> {
    (0..head.len()).find_map(|i| {
        if head[i] != b'\n' {
            return None;
        }
        match &head[i + 1..] {
            [b'\n', ..] => Some(i + 2),
            [b'\r', b'\n', ..] => Some(i + 3),
            _ => None,
        }
    })
}

/// One response: status, content type, body.
#[derive(Debug)]
struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    /// HEAD: the headers of the GET response, no body.
    head_only: bool,
}

impl Response {
    fn text(status: u16, reason: &'static str, body: &str) -> Response {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
            head_only: false,
        }
    }

    fn ok(content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status: 200,
            reason: "OK",
            content_type,
            body,
            head_only: false,
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !self.head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// Routes a request head (`GET /path?query HTTP/1.1` and headers, which are ignored).
fn respond(head: &[u8], watch: &Arc<Watch>) -> Response {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line));
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Response::text(400, "Bad Request", "bad request line\n");
    };
    if !version.starts_with("HTTP/1.") {
        return Response::text(505, "HTTP Version Not Supported", "HTTP/1.x only\n");
    }
    if method != "GET" && method != "HEAD" {
        return Response::text(405, "Method Not Allowed", "GET or HEAD only\n");
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut response = match path {
        "/metrics" => Response::ok(METRICS_CONTENT_TYPE, watch.encode().into_bytes()),
        "/" | "/index.html" => Response::ok("text/html; charset=utf-8", LIVE_PAGE_HTML.as_bytes().to_vec()),
        "/samples.json" => samples_json(query, watch),
        _ => Response::text(404, "Not Found", "not found: try /, /metrics or /samples.json\n"),
    };
    response.head_only = method == "HEAD";
    response
}

/// `/samples.json?after=SEQ`: `{"samples":[...]}`, the kept samples numbered above SEQ (all
/// kept samples without it), each with its `seq`.
fn samples_json(query: &str, watch: &Watch) -> Response {
    let after = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("after="))
        .map(str::parse::<u64>);
    let after = match after {
        None => 0,
        Some(Ok(after)) => after,
        Some(Err(_)) => return Response::text(400, "Bad Request", "after= must be a sample number\n"),
    };
    let body = serde_json::json!({ "samples": watch.samples_after(after) });
    Response::ok("application/json", body.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(target: &str) -> Response {
        let watch = Arc::new(Watch::new(Vec::new()));
        respond(
            format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
            &watch,
        )
    }

    #[test]
    fn routes_and_refusals() {
        assert_eq!(get("/").status, 200);
        assert_eq!(get("/").body, LIVE_PAGE_HTML.as_bytes());
        let metrics = get("/metrics");
        assert_eq!(
            (metrics.status, metrics.content_type),
            (200, METRICS_CONTENT_TYPE)
        );
        assert_eq!(get("/samples.json?after=3").status, 200);
        assert_eq!(
            String::from_utf8(get("/samples.json").body).unwrap(),
            r#"{"samples":[]}"#
        );
        assert_eq!(get("/samples.json?after=x").status, 400);
        assert_eq!(get("/nope").status, 404);
        let watch = Arc::new(Watch::new(Vec::new()));
        assert_eq!(respond(b"POST /metrics HTTP/1.1\r\n\r\n", &watch).status, 405);
        assert_eq!(respond(b"GET /metrics\r\n\r\n", &watch).status, 400);
        assert_eq!(respond(b"GET /metrics HTTP/1.1\nHost: x\n\n", &watch).status, 200);
        let head = respond(b"HEAD /metrics HTTP/1.1\r\n\r\n", &watch);
        let bytes = String::from_utf8(head.to_bytes()).unwrap();
        assert!(
            bytes.starts_with("HTTP/1.1 200 OK\r\n") && bytes.ends_with("\r\n\r\n"),
            "{bytes}"
        );
    }

    #[test]
    fn the_head_ends_at_the_first_empty_line_whatever_the_line_endings() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: x\n\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: x\r\n\n"), Some(25));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r"), None);
    }
}
