//! Helpers for the `--metrics-addr` tests: a `run` serving metrics, a plain HTTP GET, reading the
//! Prometheus text, and finding the outside tools (Prometheus, Chromium) the tests drive.

#![allow(dead_code)] // Each test file uses a different subset.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{bin, KillOnDrop};

/// A `run` serving metrics on a port it picked; killed when dropped.
pub struct MetricsRun {
    pub child: KillOnDrop,
    pub addr: SocketAddr,
    /// Everything the run has written on stderr so far.
    pub stderr: Arc<Mutex<String>>,
}

/// Starts `run` for a minute, throttled to 20 MB/s with retention so it stays light on a shared
/// machine, serving metrics on a free port (`--metrics-addr 127.0.0.1:0`); returns once it has
/// printed the address it serves.
pub fn start_metrics_run(data: &Path) -> MetricsRun {
    let child = bin()
        .args(["run", "--data", data.to_str().expect("utf-8 path")])
        .args(["--duration", "60s", "--max-mb-per-s", "20", "--retention"])
        .args(["--partitions", "2", "--progress-interval", "60s"])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stream-sum run");
    let mut child = KillOnDrop(child);
    let stderr = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel();
    let pipe = child.0.stderr.take().expect("piped stderr");
    let all = stderr.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if let Some(rest) = line.strip_prefix("stream-sum: metrics at http://") {
                let addr = rest.split('/').next().unwrap_or_default().to_string();
                let _ = tx.send(addr);
            }
            let mut all = all.lock().unwrap();
            all.push_str(&line);
            all.push('\n');
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => addr.parse().expect("a socket address"),
        Err(_) => panic!(
            "run did not say where it serves metrics within 30 s; stderr:\n{}",
            stderr.lock().unwrap()
        ),
    };
    MetricsRun { child, addr, stderr }
}

impl MetricsRun {
    /// GET `path` from the run; panics (with the run's stderr) unless the answer is 200.
    pub fn get(&self, path: &str) -> String {
        let (status, body) = http_get(self.addr, path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}; run stderr:\n{}", self.stderr.lock().unwrap()));
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// One unlabelled sample of `/metrics` now.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics");
        metric_value(&text, name).unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
    }

    /// Waits until the run has published at least `count` samples (one a second).
    pub fn wait_for_samples(&self, count: usize, deadline: Duration) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let v: serde_json::Value =
                serde_json::from_str(&self.get("/samples.json")).expect("samples.json is JSON");
            if v["samples"].as_array().expect("samples array").len() >= count {
                return v;
            }
            assert!(
                started.elapsed() < deadline,
                "fewer than {count} samples after {deadline:?}: {v}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// A plain HTTP/1.1 GET (the server closes the connection after its answer): (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end in {text:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    Ok((status, body.to_string()))
}

/// The value of the sample `series` (a metric name with its labels exactly as written, e.g.
/// `stream_sum_journal_appends_total{journal="chunks-000"}`) in Prometheus text.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a number"))
}

/// A port free on 127.0.0.1 right now (for a server that takes its port as a flag).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Finds `name` on PATH. Missing: `None` after saying why the test is skipped, unless `CI` is
/// set, where a missing tool fails the test (`.ci/run` installs it).
pub fn tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not installed (CI must have it: .ci/run installs the Debian package {package})"
        );
        eprintln!("skipping: {name} is not installed (apt-get install {package}); CI fails instead");
    }
    found
}

/// Percent-encodes a URL query value.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Starts `command` with stdout and stderr to `log` (a file, so a chatty tool never blocks on a
/// pipe nobody reads), killed when dropped.
pub fn spawn_logged(mut command: std::process::Command, log: &Path) -> KillOnDrop {
    let file = std::fs::File::create(log).expect("create log file");
    let child: Child = command
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("clone log file"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    KillOnDrop(child)
}
