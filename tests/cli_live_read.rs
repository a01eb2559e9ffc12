//! `verify`, `journal ls` and `journal read` against a data directory that a real `stream-sum run`
//! child is writing (issue 11). Read-only commands must never crash, report corruption or report a
//! violation that is not there: each journal is read up to a head captured when it is opened,
//! shard logs before chunk journals (so every Sum seen has its input), and fragments that
//! retention removes under a reader are stepped over. The runs write 40 MB/s (200 MB/s with
//! retention), so the 32 MiB fragments roll several times while the commands run.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Rate of the retention run: fast enough that a 32 MiB fragment is removed about every 0.3 s
/// per journal, often between a read-only open listing it and a reader reaching it.
const RETENTION_MB_PER_S: u32 = 200;

/// The `run` child; killed on drop, so a failing assertion never leaves it behind.
struct RunChild(Option<Child>);

impl RunChild {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("run child")
    }

    /// Waits for the run, asserts it succeeded with no violations and returns its summary.
    fn finish(mut self) -> Value {
        let out = finish(self.0.take().expect("run child"), COMMAND_DEADLINE);
        out.expect_code(0, "run");
        let summary = out.json();
        assert_eq!(u64_field(&summary, "violations"), 0, "{summary}");
        summary
    }
}

impl Drop for RunChild {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `run` as a child writing `data` for `duration`, at `mb_per_s` over 2 partitions.
fn spawn_run(data: &Path, duration: &str, mb_per_s: u32, retention: bool) -> RunChild {
    let mut args = vec![
        "run".to_string(),
        "--data".into(),
        data.to_str().expect("utf-8 path").into(),
        "--duration".into(),
        duration.into(),
        "--partitions".into(),
        "2".into(),
        "--chunkers".into(),
        "2".into(),
        "--streams".into(),
        "8".into(),
        "--max-mb-per-s".into(),
        mb_per_s.to_string(),
        "--progress-interval".into(),
        "60s".into(),
        "--json".into(),
    ];
    if retention {
        args.push("--retention".into());
    }
    let child = bin()
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn run");
    RunChild(Some(child))
}

fn running(child: &mut Child) -> bool {
    child.try_wait().expect("try_wait").is_none()
}

/// One `verify --json` against the live directory: exit 0, no violation, and `live` whenever
/// the run was writing for the whole call.
fn verify_live(data: &Path, run: &mut Child) -> Value {
    let before = running(run);
    let out = cli(&["verify", "--data", data.to_str().unwrap(), "--json"]);
    out.expect_code(0, "verify on a live directory");
    let v = out.json();
    assert_eq!(u64_field(&v, "violations"), 0, "verify on a live directory: {v}");
    // A run takes the lock before it creates journals/ (which verify needs), and journals after;
    // it may release the lock a moment before it exits.
    let journals = u64_field(&v, "chunk_journals") + u64_field(&v, "shard_logs");
    if before && running(run) && journals > 0 {
        assert_eq!(v["live"], true, "verify while a run holds the directory: {v}");
    }
    v
}

/// `journal ls` and `journal read` of every journal but the chunk journals' early history: exit 0,
/// whole JSON lines, offsets strictly increasing and below the head `ls` captured just after.
fn read_live(data: &Path) -> usize {
    let ls = journal_ls(data);
    let mut lines = 0;
    for j in ls["journals"].as_array().expect("journals") {
        let name = str_field(j, "name");
        // Chunk journals from their last listed fragment only: their whole history is large.
        let from = j["fragments"]
            .as_array()
            .and_then(|f| f.last())
            .filter(|_| name.starts_with("chunks-"))
            .map(|f| u64_field(f, "begin"));
        let read = journal_read(data, name, from);
        let after = journal_ls(data);
        let end = journal_end(&after, name);
        let mut last = None;
        for line in &read {
            let offset = u64_field(line, "offset");
            assert!(
                offset < end,
                "{name}: frame at {offset} past the head {end} listed after"
            );
            assert!(
                last <= Some(offset),
                "{name}: offsets go back: {last:?} then {offset}"
            );
            last = Some(offset);
        }
        lines += read.len();
    }
    lines
}

/// Keeps calling `verify`, `journal ls` and `journal read` while the run writes; returns how many
/// verify calls ran while it was running.
fn poll_while_running(data: &Path, run: &mut Child, deadline: Duration) -> usize {
    let started = Instant::now();
    let mut live_verifies = 0;
    while running(run) {
        assert!(started.elapsed() < deadline, "run outlived {deadline:?}");
        if !data.join("journals").is_dir() {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        verify_live(data, run);
        live_verifies += usize::from(running(run));
        read_live(data);
    }
    live_verifies
}

/// After the run: a plain offline verify, with nothing in flight.
fn verify_after(data: &Path) -> Value {
    let v = verify_json(data, 0);
    assert_eq!(u64_field(&v, "violations"), 0, "{v}");
    assert_eq!(u64_field(&v, "pending"), 0, "verify after the run ended: {v}");
    assert_eq!(u64_field(&v, "streams_unfinished"), 0, "{v}");
    assert_eq!(v["live"], false, "{v}");
    v
}

/// A run writes while verify and journal ls/read run over and over from its first moments
/// (journal directories being created) to its end, across fragment rolls: verify sees a
/// consistent cut each time (exit 0, no violation: no "Sum for an unfinished stream", no
/// "missing Sum"), the readers see whole frames below the head. Afterwards verify passes with
/// nothing in flight.
#[test]
fn verify_during_live_run_reports_no_false_violations() {
    let t = temp_data();
    let mut run = spawn_run(&t.data, "8s", 40, false);
    let live = poll_while_running(&t.data, run.child(), COMMAND_DEADLINE);
    let _ = run.finish();
    eprintln!("{live} verify calls overlapped the run");
    assert!(live >= 1, "only {live} verify calls overlapped the run");
    let v = verify_after(&t.data);
    assert!(u64_field(&v, "sums_verified") > 0, "{v}");
    assert_eq!(
        u64_field(&v, "sums_verified"),
        u64_field(&v, "streams_finished"),
        "{v}"
    );
    let ls = journal_ls(&t.data);
    let rolled = ls["journals"]
        .as_array()
        .expect("journals")
        .iter()
        .any(|j| j["fragments"].as_array().is_some_and(|f| f.len() > 1));
    assert!(
        rolled,
        "no fragment rolled, so the reads never raced a roll: {ls}"
    );
}

/// With retention, the run removes fragments that verify and journal read listed when they
/// opened the journals: they step over them (the streams become unverifiable, the reads go on),
/// never failing with "No such file" or a false violation.
#[test]
fn verify_and_journal_read_during_live_run_with_retention_step_over_removed_fragments() {
    let t = temp_data();
    let mut run = spawn_run(&t.data, "8s", RETENTION_MB_PER_S, true);
    let live = poll_while_running(&t.data, run.child(), COMMAND_DEADLINE);
    let summary = run.finish();
    eprintln!("{live} verify calls overlapped the run");
    assert!(live >= 1, "only {live} verify calls overlapped the run");
    assert!(
        u64_field(&summary, "fragments_removed") > 0,
        "retention removed nothing, so no read raced it: {summary}"
    );
    verify_after(&t.data);
}

/// A `run` that starts while `verify` reads the directory is not refused: read-only commands
/// never take the directory's lock.
#[test]
fn run_starts_while_verify_reads_the_directory() {
    let t = temp_data();
    small_run(&t.data, "1s");
    let verify = bin()
        .args(["verify", "--data", t.data.to_str().unwrap(), "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn verify");
    let run = small_run(&t.data, "1s");
    assert_eq!(u64_field(&run, "violations"), 0, "{run}");
    let out = finish(verify, COMMAND_DEADLINE);
    out.expect_code(0, "verify while a run started");
    assert_eq!(u64_field(&out.json(), "violations"), 0, "{}", out.stdout);
    verify_after(&t.data);
}

/// Regression: a journal directory whose first fragment a starting `run` has not created yet read
/// as "corrupt: journal directory holds no fragment files"; it is an empty journal.
#[test]
fn journal_directory_without_fragments_reads_as_empty() {
    let t = temp_data();
    std::fs::create_dir_all(t.data.join("journals").join("chunks-000")).unwrap();
    std::fs::create_dir_all(t.data.join("journals").join("sums-000")).unwrap();
    let ls = journal_ls(&t.data);
    assert_eq!(journal_end(&ls, "chunks-000"), 0, "{ls}");
    assert!(journal_read(&t.data, "sums-000", None).is_empty());
    let v = verify_json(&t.data, 0);
    assert_eq!(u64_field(&v, "violations"), 0, "{v}");
}
