//! Helpers shared by the CLI integration tests: run the real `stream-sum` binary with a deadline,
//! capture its exit code and output, and parse its JSON.

#![allow(dead_code)] // Each test file uses a different subset.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest any single command may take before the test fails instead of hanging.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(60);

/// The binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stream-sum"))
}

/// What a finished command left behind.
#[derive(Debug)]
pub struct Out {
    /// Exit code; None if a signal ended the process.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Parses stdout as one JSON object.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON object ({e}):\n{}\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts the exit code, printing both streams if it differs.
    pub fn expect_code(&self, code: i32, what: &str) -> &Out {
        assert_eq!(
            self.code,
            Some(code),
            "{what}: exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs the binary with `args` to completion (or fails the test after [`COMMAND_DEADLINE`]).
pub fn cli<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Out {
    finish(spawn_with_stdout(args, Stdio::piped()), COMMAND_DEADLINE)
}

/// Starts the binary with `args`, stdin empty, stderr piped and stdout to `stdout`; hand it to
/// [`finish`].
pub fn spawn_with_stdout<S: AsRef<std::ffi::OsStr>>(args: &[S], stdout: impl Into<Stdio>) -> Child {
    bin()
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stream-sum")
}

/// Waits for `child` (whose stdout and stderr are piped), draining both pipes so it cannot block
/// on a full pipe; kills it and fails the test if it outlives `deadline`.
pub fn finish(mut child: Child, deadline: Duration) -> Out {
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let mut bytes = Vec::new();
                r.read_to_end(&mut bytes).expect("read child output");
                s = String::from_utf8_lossy(&bytes).into_owned();
            }
            s
        })
    };
    let stdout = drain(child.stdout.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let status = wait_deadline(&mut child, deadline);
    Out {
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Waits for `child`, killing it and failing the test if it outlives `deadline`.
pub fn wait_deadline(child: &mut Child, deadline: Duration) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("stream-sum did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the child on drop, so a failing assertion never leaves a `run` behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh temporary directory; the data directory is `data` inside it, not yet created, so
/// `run` also exercises "created if missing".
pub struct TempData {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
}

pub fn temp_data() -> TempData {
    let dir = tempfile::Builder::new()
        .prefix("stream-sum-cli-")
        .tempdir()
        .expect("tempdir");
    let data = dir.path().join("data");
    TempData { dir, data }
}

/// `run` arguments for a short, small run: 2 chunkers x 4 streams over 2 partitions, chunks of at
/// most 1 KiB, so a few seconds of it stay light on disk and CPU.
pub fn small_run_args(data: &Path, duration: &str) -> Vec<String> {
    [
        "run",
        "--data",
        data.to_str().expect("utf-8 path"),
        "--duration",
        duration,
        "--chunkers",
        "2",
        "--streams",
        "4",
        "--partitions",
        "2",
        "--max-chunk-bytes",
        "1024",
        "--max-chunks-per-stream",
        "8",
        "--progress-interval",
        "60s",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs a small run to completion and returns its JSON summary, asserting exit 0.
pub fn small_run(data: &Path, duration: &str) -> Value {
    let out = cli(&small_run_args(data, duration));
    out.expect_code(0, "run");
    out.json()
}

/// `verify --json`, asserting the exit code.
pub fn verify_json(data: &Path, code: i32) -> Value {
    let out = cli(&["verify", "--data", data.to_str().unwrap(), "--json"]);
    out.expect_code(code, "verify --json");
    out.json()
}

/// `journal ls --json`, asserting exit 0.
pub fn journal_ls(data: &Path) -> Value {
    let out = cli(&["journal", "ls", "--data", data.to_str().unwrap(), "--json"]);
    out.expect_code(0, "journal ls --json");
    out.json()
}

/// `journal read` of one journal (from `from` if given), each line parsed; asserts exit 0.
pub fn journal_read(data: &Path, journal: &str, from: Option<u64>) -> Vec<Value> {
    let mut args = vec![
        "journal".to_string(),
        "read".into(),
        "--data".into(),
        data.to_str().unwrap().into(),
        journal.into(),
    ];
    if let Some(from) = from {
        args.extend(["--from".to_string(), from.to_string()]);
    }
    let out = cli(&args);
    out.expect_code(0, &format!("journal read {journal}"));
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line is not JSON ({e}): {l}")))
        .collect()
}

/// Names of the journals `journal ls --json` lists that start with `prefix`.
pub fn journal_names(ls: &Value, prefix: &str) -> Vec<String> {
    ls["journals"]
        .as_array()
        .expect("journals array")
        .iter()
        .map(|j| j["name"].as_str().expect("name").to_string())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// The entry `journal ls --json` gives for `name`.
pub fn journal_entry<'a>(ls: &'a Value, name: &str) -> &'a Value {
    ls["journals"]
        .as_array()
        .expect("journals array")
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("journal {name} not listed"))
}

/// The `end` offset `journal ls --json` gives for `name`.
pub fn journal_end(ls: &Value, name: &str) -> u64 {
    journal_entry(ls, name)["end"].as_u64().expect("end")
}

/// The fragments `journal ls --json` lists for `name` (each with `begin`, `end`, `path`).
pub fn journal_fragments(ls: &Value, name: &str) -> Vec<Value> {
    journal_entry(ls, name)["fragments"]
        .as_array()
        .expect("fragments array")
        .clone()
}

pub fn u64_field(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("field {field:?} missing or not a u64 in {v}"))
}

pub fn f64_field(v: &Value, field: &str) -> f64 {
    v[field]
        .as_f64()
        .unwrap_or_else(|| panic!("field {field:?} missing or not a number in {v}"))
}

pub fn str_field<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("field {field:?} missing or not a string in {v}"))
}

/// Sends `signal` (a name for `kill`, e.g. "TERM") to `child`.
pub fn send_signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {} failed", child.id());
}

/// `/dev/full` open for writing: every write fails with ENOSPC (a stdout that cannot take output).
pub fn dev_full() -> std::fs::File {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full")
}
