//! `stream-sum crash-test`: SIGKILL cycles of a child `stream-sum run`, with a history the
//! journals cannot vouch for themselves.
//!
//! Each child runs with `--report` and prints, as they happen, every final chunk acknowledged
//! durable (`F stream journal offset sha1`) and every Sum it saw (`S ...`). The parent keeps
//! these lines (a write to a pipe survives the writer's SIGKILL). After the last cycle a
//! graceful run lets open streams finish, `verify` checks the journals against themselves, and
//! the parent checks its history against the journals: an acknowledged final chunk whose stream
//! has no Sum, or is missing from its chunk journal, is **lost**; a stream with two Sums is
//! **duplicated**; a Sum whose SHA-1 differs from the chunker's is **mismatched**; a Sum seen
//! durable that is no longer in its shard log is lost too. Appends in flight at a kill are
//! indeterminate: they may land or not, and neither is a violation.
//!
//! With `--retention` the children remove (and recycle) fragments, so by the end most of the
//! history is gone from the journals. The parent then also checks its history after every
//! cycle, at rest (the child is dead): an acknowledged final chunk whose shard checkpointed past
//! it must have its Sum by then (one append holds both), and the checks add up.

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use ss_consumer::audit::{self, At, ChunkIndex, History, Settled, SumIndex};
use ss_consumer::message::{StreamId, Sum};
use ss_log::Log;

use crate::cli::CrashTestArgs;
use crate::exit::{EXIT_OK, EXIT_VIOLATION};

fn parse_sha1(s: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    if s.len() != 40 {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Adds one report line of a child (`F stream journal offset sha1`: a final chunk acknowledged
/// durable; `S ...`: a Sum seen durable) to the history.
fn record(history: &mut History, line: &str) -> anyhow::Result<()> {
    let f: Vec<&str> = line.split(' ').collect();
    let parsed = (|| {
        let [kind, stream, journal, offset, sha] = f.as_slice() else {
            return None;
        };
        let at = At {
            journal: journal.to_string(),
            offset: offset.parse::<u64>().ok()?,
        };
        Some((*kind, stream.parse::<StreamId>().ok()?, at, parse_sha1(sha)?))
    })();
    match parsed {
        Some(("F", stream, at, sha1)) => history.final_acknowledged(stream, sha1, at),
        Some(("S", stream, at, sha1)) => {
            // The report line carries no seq; the audit compares the SHA-1 and the place only.
            let sum = Sum {
                stream,
                last_seq: 0,
                sha1,
            };
            history.sum_seen(sum, at);
        }
        _ => bail!("unexpected report line from child: {line:?}"),
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Phase {
    Startup,
    Steady,
    Shutdown,
}

#[derive(Debug, Serialize)]
struct CycleReport {
    cycle: usize,
    phase: Phase,
    kill_after_ms: u64,
    /// The child exited by itself before the kill (possible in the shutdown phase).
    exited_first: bool,
    finals_acknowledged: usize,
    sums_seen: usize,
}

#[derive(Debug, Serialize)]
struct CrashTestReport {
    cycles: usize,
    kills: usize,
    streams_finished: usize,
    sums_verified: usize,
    /// Acknowledged final chunks that no check could decide (`--retention` removed their chunks
    /// or Sums before any check looked).
    unverifiable: usize,
    lost: usize,
    duplicated: usize,
    mismatched: usize,
    verify_violations: u64,
    violation_messages: Vec<String>,
    elapsed_s: f64,
    per_cycle: Vec<CycleReport>,
}

/// Runs one child to completion or until `kill_after`, feeding its report lines to `history`.
/// Returns (exited by itself, exit status if it did).
fn run_child(
    args: &CrashTestArgs,
    history: &Arc<Mutex<History>>,
    duration: &str,
    seed: u64,
    kill_after: Option<Duration>,
) -> anyhow::Result<(bool, Option<std::process::ExitStatus>, String)> {
    let exe = std::env::current_exe().context("finding the stream-sum executable")?;
    let mut command = Command::new(exe);
    command.arg("run");
    if args.unsafe_split_commit {
        command.arg("--unsafe-split-commit");
    }
    if args.retention {
        command.arg("--retention");
    }
    let mut child = command
        .arg("--data")
        .arg(&args.data)
        .args(["--duration", duration, "--report", "--progress-interval", "1h"])
        .args(["--seed", &seed.to_string()])
        .args(["--partitions", &args.partitions.to_string()])
        .args(["--chunkers", &args.chunkers.to_string()])
        .args(["--streams", &args.streams.to_string()])
        .args(["--max-chunk-bytes", "8192", "--max-chunks-per-stream", "32"])
        .args(["--max-mb-per-s", &args.max_mb_per_s.to_string()])
        .args(["--fragment-max-bytes", &args.fragment_max_bytes.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning stream-sum run")?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let h = history.clone();
    let out_thread = std::thread::spawn(move || -> anyhow::Result<()> {
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            record(&mut h.lock(), &line)?;
        }
        Ok(())
    });
    let err_thread = std::thread::spawn(move || {
        let lines: Vec<String> = BufReader::new(stderr).lines().map_while(Result::ok).collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    });
    let started = Instant::now();
    let mut exited = None;
    loop {
        if let Some(status) = child.try_wait()? {
            exited = Some(status);
            break;
        }
        if kill_after.is_some_and(|k| started.elapsed() >= k) {
            child.kill().context("sending SIGKILL")?;
            child.wait()?;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    out_thread.join().expect("report reader")?;
    let stderr_tail = err_thread.join().expect("stderr reader");
    Ok((exited.is_some(), exited, stderr_tail))
}

pub fn crash_test(args: CrashTestArgs) -> anyhow::Result<u8> {
    // The children get the switch; a build without fault injection refuses it up front.
    if let Err(e) =
        ss_consumer::shard::ShardConfig::default().with_unsafe_split_commit(args.unsafe_split_commit)
    {
        crate::exit::errln!("stream-sum: error: {e}");
        return Ok(crate::exit::EXIT_USAGE);
    }
    let started = Instant::now();
    let history = Arc::new(Mutex::new(History::default()));
    let mut rng = SmallRng::seed_from_u64(args.seed);
    let mut per_cycle = Vec::new();
    let mut kills = 0;
    crate::exit::errln!(
        "crash-test: {} SIGKILL cycles over {} (seed {})",
        args.cycles,
        args.data.display(),
        args.seed
    );
    let mut checks = HistoryChecks::default();
    for cycle in 1..=args.cycles {
        let report = match kill_cycle(&args, &history, &mut rng, cycle) {
            Ok(report) => report,
            // The child refused its command line (the directory needs other run flags, say):
            // that is this command's usage error too, not an operational failure.
            Err(e) if e.is::<ChildUsageError>() => {
                crate::exit::errln!("stream-sum: error: {e}");
                return Ok(crate::exit::EXIT_USAGE);
            }
            Err(e) => return Err(e),
        };
        if !report.exited_first {
            kills += 1;
        }
        per_cycle.push(report);
        if args.retention {
            checks.add(check_history(&args, &history.lock(), Settled::No)?);
        }
    }
    crate::exit::errln!("crash-test: final graceful run");
    let (_, status, stderr_tail) = run_child(&args, &history, "2s", args.seed ^ 0x5eed, None)?;
    let status = status.expect("ran to completion");
    if !status.success() {
        bail!("final graceful run exited with {status}:\n{stderr_tail}");
    }
    let (verify_violations, mut violation_messages) = run_verify(&args)?;
    checks.add(check_history(&args, &history.lock(), Settled::Yes)?);
    checks.messages_into(&mut violation_messages);
    let h = history.lock();
    // Acknowledged finals that no check could decide: retention removed their chunks or Sums
    // before any check looked.
    let decided =
        checks.verified.len() + checks.lost.len() + checks.duplicated.len() + checks.mismatched.len();
    let unverifiable = h.finals.len().saturating_sub(decided);
    let report = CrashTestReport {
        cycles: args.cycles,
        kills,
        streams_finished: h.finals.len(),
        sums_verified: checks.verified.len(),
        unverifiable,
        lost: checks.lost.len(),
        duplicated: checks.duplicated.len(),
        mismatched: checks.mismatched.len(),
        verify_violations,
        violation_messages,
        elapsed_s: started.elapsed().as_secs_f64(),
        per_cycle,
    };
    print_report(&args, &report)?;
    let bad = report.lost + report.duplicated + report.mismatched > 0 || report.verify_violations != 0;
    Ok(if bad { EXIT_VIOLATION } else { EXIT_OK })
}

/// A child `run` exited 2: its command line, built from this command's flags, was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ChildUsageError(String);

/// One cycle: a child `run` killed at a seeded moment of a seeded phase (or exiting first, in
/// the shutdown phase), its report lines added to `history`.
fn kill_cycle(
    args: &CrashTestArgs,
    history: &Arc<Mutex<History>>,
    rng: &mut SmallRng,
    cycle: usize,
) -> anyhow::Result<CycleReport> {
    let max_ms = args.max_kill_after.as_millis().max(600) as u64;
    let phase = match rng.random_range(0..3) {
        0 => Phase::Startup,
        1 => Phase::Steady,
        _ => Phase::Shutdown,
    };
    let (duration, kill_after_ms) = match phase {
        Phase::Startup => ("forever".to_string(), rng.random_range(0..400)),
        Phase::Steady => ("forever".to_string(), rng.random_range(500..max_ms)),
        Phase::Shutdown => ("1s".to_string(), 1000 + rng.random_range(0..300)),
    };
    let seed = args.seed.wrapping_mul(1_000_003).wrapping_add(cycle as u64);
    let (exited, status, stderr_tail) = run_child(
        args,
        history,
        &duration,
        seed,
        Some(Duration::from_millis(kill_after_ms)),
    )?;
    if let Some(status) = status {
        if status.code() == Some(crate::exit::EXIT_USAGE.into()) {
            return Err(ChildUsageError(format!(
                "cycle {cycle}: the child run refused its arguments (exit 2):\n{stderr_tail}"
            ))
            .into());
        }
        if !status.success() {
            bail!("cycle {cycle}: child exited with {status} before being killed:\n{stderr_tail}");
        }
    }
    let h = history.lock();
    let report = CycleReport {
        cycle,
        phase,
        kill_after_ms,
        exited_first: exited,
        finals_acknowledged: h.finals.len(),
        sums_seen: h.sums_seen.len(),
    };
    drop(h);
    crate::exit::errln!(
        "cycle {cycle}/{}: {:?}, {} at {:.3} s | finals acknowledged {} | Sums seen {}",
        args.cycles,
        phase,
        if exited { "exited before kill" } else { "SIGKILL" },
        kill_after_ms as f64 / 1000.0,
        report.finals_acknowledged,
        report.sums_seen
    );
    Ok(report)
}

/// Runs `verify --json` on the directory: its violation count and messages.
fn run_verify(args: &CrashTestArgs) -> anyhow::Result<(u64, Vec<String>)> {
    crate::exit::errln!("crash-test: verify");
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .arg("verify")
        .arg("--data")
        .arg(&args.data)
        .arg("--json")
        .output()?;
    let verify: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("verify printed no JSON: {}", String::from_utf8_lossy(&out.stderr)))?;
    let verify_violations = verify["violations"].as_u64().unwrap_or(u64::MAX);
    let violation_messages: Vec<String> = verify["violation_messages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(|s| format!("verify: {s}")))
                .collect()
        })
        .unwrap_or_default();

    Ok((verify_violations, violation_messages))
}

fn print_report(args: &CrashTestArgs, report: &CrashTestReport) -> anyhow::Result<()> {
    if args.json {
        crate::exit::outln!("{}", serde_json::to_string(report)?);
    } else {
        crate::exit::outln!(
            "crash-test: {} cycles, {} SIGKILLs, {:.1} s\n\
             streams finished (final chunk acknowledged): {}\n\
             Sums verified against the parent's history: {} (undecided, removed by retention first: {})\n\
             lost: {}, duplicated: {}, mismatched: {}, verify violations: {}",
            report.cycles,
            report.kills,
            report.elapsed_s,
            report.streams_finished,
            report.sums_verified,
            report.unverifiable,
            report.lost,
            report.duplicated,
            report.mismatched,
            report.verify_violations
        );
        for v in report.violation_messages.iter().take(50) {
            crate::exit::outln!("  VIOLATION: {v}");
        }
    }
    Ok(())
}

/// What the history checks found, added up over the checks after each cycle (`--retention`) and
/// the final one: a stream verified once counts once, a violation found twice is listed once.
#[derive(Default)]
struct HistoryChecks {
    verified: HashSet<StreamId>,
    lost: BTreeSet<String>,
    duplicated: BTreeSet<String>,
    mismatched: BTreeSet<String>,
    other: BTreeSet<String>,
}

impl HistoryChecks {
    fn add(&mut self, findings: audit::Findings) {
        self.verified.extend(findings.verified_streams);
        self.lost.extend(findings.lost);
        self.duplicated.extend(findings.duplicated);
        self.mismatched.extend(findings.mismatched);
        self.other.extend(findings.other);
    }

    fn messages_into(&self, messages: &mut Vec<String>) {
        for (kind, list) in [
            ("lost", &self.lost),
            ("duplicated", &self.duplicated),
            ("mismatched", &self.mismatched),
            ("other", &self.other),
        ] {
            messages.extend(list.iter().map(|m| format!("{kind}: {m}")));
        }
    }
}

/// Checks the parent's history against the journals at rest (the audit's history check;
/// `verify` checks the journals against themselves). `settled`: whether every input was applied
/// (after the graceful run), else finals past their shard's checkpoint are pending.
fn check_history(
    args: &CrashTestArgs,
    history: &History,
    settled: Settled,
) -> anyhow::Result<audit::Findings> {
    let log = Log::open_read_only(&args.data, crate::config::log_options())?;
    let mut chunks = ChunkIndex::default();
    let mut sums = SumIndex::default();
    for name in log.journal_names()? {
        let j = log.existing_journal(&name)?;
        if name.starts_with("chunks-") {
            chunks.merge(ChunkIndex::scan(&j)?);
        } else if let Some(partition) = name.strip_prefix("sums-") {
            sums.merge(SumIndex::scan(&j, &format!("chunks-{partition}"))?);
        }
    }
    Ok(audit::check_history(history, Some(&chunks), &sums, settled))
}
