//! Storage faults under a small stream-sum workload: nothing acknowledged is lost, nothing is
//! summed twice, no Sum is wrong.
//!
//! Per seed, a "process" (a chunker on its own thread, two summer shards and their Sum tailers,
//! see `support`) runs over simulated storage while ONE fault, chosen by the seed, hits it:
//!
//! - **power loss**: the storage dies after a random number of mutating operations (startup,
//!   steady state or shutdown) or at a random moment from the test thread, and every unsynced
//!   byte is lost;
//! - **torn write**: the same, but unsynced writes survive in part, the last one torn at a random
//!   byte, as written or as zeros;
//! - **failed fsync**: the n-th fsync fails; its journal is poisoned and refuses appends, the
//!   process stops, and the process alone restarts (its unsynced writes still there) or the
//!   machine loses power too (any crash mode); the restart recovers;
//! - **ENOSPC**: the disk fills up mid-run; the append fails with an error naming the journal,
//!   readers still see only valid frames, and once space is back a plain restart (no crash)
//!   recovers with nothing to cut and continues.
//!
//! After the fault a new process (a new run id, so stream ids are never reused) recovers the
//! shards from their logs, publishes more streams and ends gracefully (the chunker finishes its
//! streams, the shards apply all input). Then the journals are checked against the test's own
//! history of what the verifiers acknowledged: every final chunk acknowledged durable has exactly
//! one Sum, equal to the chunker's SHA-1; every Sum seen durable is still there; every stream
//! whose final chunk is in the chunk journals has exactly one Sum, equal to the SHA-1 of its
//! chunks; no Sum names a stream that was never finished. The check runs after one more power
//! loss at rest, so anything a reader saw but that was not durable shows up as lost.
//!
//! Under ENOSPC the chunker waits for each batch before submitting the next (`in_flight_max` 0):
//! a chunker with batches in flight can leave a gap in a stream after a failed append, a known
//! bug kept as the ignored `no_space_under_a_pipelined_chunker_leaves_no_gap_in_a_stream`.
//!
//! `SS_STORAGE_FAULT_SEEDS=N` runs more seeds; `SS_STORAGE_FAULT_SEED=S` runs only seed S (the
//! fault and sizes follow from the seed; where it lands also depends on thread timing);
//! `SS_STORAGE_FAULT_TRACE=1` prints each seed's fault and where it took effect. Run with
//! `--nocapture` for the counts per fault kind.

mod support;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ss_chunker::verifier::VerifierEvent;
use ss_consumer::shard::{ShardConfig, ShardError};
use ss_log::sim::{CrashMode, SimStorage};
use ss_log::{AppendError, Log};
use support::{check, CheckReport, DrainEvents, History, Process, ProcessError, Workload};

/// Seeds run by default (the acceptance asks for at least 200 in CI).
const SEEDS_DEFAULT: u64 = 700;
/// Seeds of the deliberately broken shard (each has a chance to crash between its two appends).
const SPLIT_COMMIT_SEEDS: u64 = 60;
/// ENOSPC seeds of the pipelined-chunker regression test.
const NO_SPACE_PIPELINED_SEEDS: u64 = 400;
/// Longest the faulty first run may take before it is reported as a hang.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FaultKind {
    /// Every unsynced byte and name lost.
    PowerLoss,
    /// Unsynced writes torn at a byte, or zeroed where the file grew.
    TornWrite,
    FailedFsync,
    NoSpace,
    /// SIGKILL: the page cache and every name survive (then a power loss once idle).
    ProcessCrash,
    /// Any subset of dirty pages and of unsynced directory operations survives.
    KernelPowerLoss,
    /// One call fails (open, create, rename, unlink, mkdir, ftruncate, a short write, fsync of a
    /// file or directory) with EIO, ENOSPC or EMFILE; the process restarts.
    FailingCall,
}

/// How many fault kinds seeds cycle through.
const FAULT_KINDS: u64 = 7;

impl FaultKind {
    fn for_seed(seed: u64) -> FaultKind {
        match seed % FAULT_KINDS {
            0 => FaultKind::PowerLoss,
            1 => FaultKind::TornWrite,
            2 => FaultKind::FailedFsync,
            3 => FaultKind::NoSpace,
            4 => FaultKind::ProcessCrash,
            5 => FaultKind::KernelPowerLoss,
            _ => FaultKind::FailingCall,
        }
    }
}

const ERRNOS: [i32; 3] = [ss_log::sim::EIO, ss_log::sim::ENOSPC, ss_log::sim::EMFILE];

/// Where in the first run the fault took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FaultPhase {
    /// While opening the log and recovering the shards.
    Startup,
    /// While the chunker published.
    Steady,
    /// After the chunker was told to stop (it was finishing its streams), or after it ended.
    Shutdown,
    /// The fault was armed but the first run ended before it fired (power-loss kinds crash at
    /// the end anyway).
    NotFired,
}

/// The fault a seed injects, drawn from the seed.
#[derive(Debug, Clone, Copy)]
struct FaultPlan {
    kind: FaultKind,
    /// Crash mode for the power loss that follows (power-loss kinds, failed fsync).
    mode: CrashMode,
    /// The storage dies after this many mutating operations...
    crash_after_ops: Option<u64>,
    /// ...or the test thread crashes it after this many workload steps.
    crash_at_step: Option<u64>,
    /// The n-th fsync fails.
    fail_sync: Option<u64>,
    /// The n-th fallible call fails with this errno.
    fail_op: Option<(u64, i32)>,
    /// After a failed fsync stops the process, the machine loses power too (otherwise only the
    /// process restarts, on storage that kept its unsynced writes).
    power_loss_after_stop: bool,
    /// The disk fills up, leaving this much room, once this many streams are finished (or, if
    /// `None`, once the chunker has ended and only the shards still append).
    no_space: Option<(Option<u64>, u64)>,
}

impl FaultPlan {
    fn draw(kind: FaultKind, rng: &mut StdRng) -> FaultPlan {
        let mut plan = FaultPlan {
            kind,
            mode: CrashMode::LoseUnsynced,
            crash_after_ops: None,
            crash_at_step: None,
            fail_sync: None,
            fail_op: None,
            power_loss_after_stop: true,
            no_space: None,
        };
        match kind {
            FaultKind::PowerLoss
            | FaultKind::TornWrite
            | FaultKind::ProcessCrash
            | FaultKind::KernelPowerLoss => {
                plan.mode = match kind {
                    FaultKind::TornWrite if rng.random_bool(0.5) => CrashMode::TearUnsynced,
                    FaultKind::TornWrite => CrashMode::ZeroUnsynced,
                    FaultKind::ProcessCrash => CrashMode::Process,
                    FaultKind::KernelPowerLoss => CrashMode::PowerLoss,
                    _ => CrashMode::LoseUnsynced,
                };
                if rng.random_bool(0.75) {
                    plan.crash_after_ops = Some(rng.random_range(0..160));
                } else {
                    plan.crash_at_step = Some(rng.random_range(1..12));
                }
            }
            FaultKind::FailedFsync => {
                plan.mode = CrashMode::ALL[rng.random_range(0..CrashMode::ALL.len())];
                plan.fail_sync = Some(rng.random_range(1..60));
                plan.power_loss_after_stop = rng.random_bool(0.5);
            }
            FaultKind::FailingCall => {
                plan.fail_op = Some((
                    rng.random_range(1..200),
                    ERRNOS[rng.random_range(0..ERRNOS.len())],
                ));
                plan.mode = if rng.random_bool(0.5) {
                    CrashMode::Process
                } else {
                    CrashMode::PowerLoss
                };
            }
            FaultKind::NoSpace => {
                plan.no_space = if rng.random_bool(0.7) {
                    Some((Some(rng.random_range(0..12)), rng.random_range(0..6 << 10)))
                } else {
                    Some((None, rng.random_range(0..256)))
                };
            }
        }
        plan
    }

    fn fired(&self, sim: &SimStorage) -> bool {
        match self.kind {
            FaultKind::PowerLoss
            | FaultKind::TornWrite
            | FaultKind::ProcessCrash
            | FaultKind::KernelPowerLoss => sim.is_dead(),
            FaultKind::FailingCall => {
                let c = sim.counters();
                c.failed_ops + c.failed_syncs > 0
            }
            FaultKind::FailedFsync => sim.counters().failed_syncs > 0,
            FaultKind::NoSpace => sim.counters().enospc > 0,
        }
    }
}

fn workload(seed: u64, rng: &mut StdRng, unsafe_split_commit: bool) -> Workload {
    Workload {
        seed,
        streams: rng.random_range(2..=6),
        max_chunk_bytes: 2 << 10,
        max_chunks_per_stream: 8,
        flush_bytes: rng.random_range(1 << 10..=6 << 10),
        in_flight_max: rng.random_range(1..=4),
        fragment_max_bytes: rng.random_range(12 << 10..=40 << 10),
        // Odd seeds zero-fill spare fragments (no draw, so the other sizes stay as they were).
        preallocate: seed % 2 == 1,
        shard: ShardConfig {
            txn_max_messages: rng.random_range(1..=16),
            txn_max_input_bytes: rng.random_range(2 << 10..=32 << 10),
            txn_max_duration: Duration::from_millis(5),
            snapshot_min_delta_bytes: rng.random_range(256..=4096),
            pipelined: rng.random_bool(0.5),
            unsafe_split_commit,
            ..ShardConfig::default()
        },
    }
}

/// What one seed did and found.
#[derive(Debug)]
struct SeedOutcome {
    seed: u64,
    kind: FaultKind,
    phase: FaultPhase,
    report: CheckReport,
    /// Violations seen while running: unexpected errors, failed restarts, verifier violations,
    /// unclear ENOSPC errors.
    run_violations: Vec<String>,
}

impl SeedOutcome {
    fn violations(&self) -> Vec<String> {
        self.run_violations
            .iter()
            .chain(self.report.violations())
            .map(|v| format!("seed {} ({:?}, {:?}): {v}", self.seed, self.kind, self.phase))
            .collect()
    }
}

/// An ENOSPC error must say what is full: the journal (and, for a shard, the shard).
fn check_no_space_message(message: &str, journal: &str, violations: &mut Vec<String>) {
    if !(message.contains(journal) && message.contains("no space")) {
        violations.push(format!(
            "unclear ENOSPC error (should name {journal:?}): {message}"
        ));
    }
}

/// Records an error of the first run: expected only once the fault fired, and only of the kinds
/// a storage fault causes. ENOSPC errors must be clear.
fn first_run_error(e: &ProcessError, fired: bool, violations: &mut Vec<String>) {
    if !(fired && e.is_storage_failure()) {
        violations.push(format!("first run: {e}"));
    }
    if let ProcessError::Shard(ShardError::Append {
        shard,
        error: AppendError::NoSpace { journal, .. },
    }) = e
    {
        let message = e.to_string();
        check_no_space_message(&message, journal, violations);
        if !message.contains(shard) {
            violations.push(format!("ENOSPC error does not name the shard {shard}: {message}"));
        }
    }
}

/// Every frame below each journal's durable head reads back valid (checksums verified).
fn check_readable(process: &Process, violations: &mut Vec<String>) {
    for journal in process.inputs.iter().chain(&process.shard_logs) {
        let head = journal.durable_head();
        let mut frames = journal.frames(journal.first_offset());
        while frames.offset() < head {
            match frames.next() {
                Some(Ok(_)) => {}
                None => {
                    violations.push(format!(
                        "{}: reader stops at {} below the durable head {head}",
                        journal.name(),
                        frames.offset()
                    ));
                    break;
                }
                Some(Err(e)) => {
                    violations.push(format!("{} after ENOSPC: {e}", journal.name()));
                    break;
                }
            }
        }
    }
}

/// Variants of the harness.
#[derive(Debug, Clone, Copy)]
struct Harness {
    /// Shards write Sums and checkpoint in two appends (deliberately broken).
    unsafe_split_commit: bool,
    /// Under ENOSPC, let the chunker keep batches in flight (see
    /// `no_space_under_a_pipelined_chunker_leaves_no_gap_in_a_stream`: it can leave a gap).
    pipelined_chunker_under_no_space: bool,
}

const HARNESS: Harness = Harness {
    unsafe_split_commit: false,
    pipelined_chunker_under_no_space: false,
};

/// Runs one seed: a first run hit by the seed's fault, a restart, a graceful second run, checks.
fn run_seed(seed: u64, harness: Harness) -> SeedOutcome {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5107_a6e5);
    let kind = FaultKind::for_seed(seed);
    let plan = FaultPlan::draw(kind, &mut rng);
    let mut workload = workload(seed, &mut rng, harness.unsafe_split_commit);
    if kind == FaultKind::NoSpace && !harness.pipelined_chunker_under_no_space {
        workload.in_flight_max = 0;
    }
    let first_run_streams = rng.random_range(10..=60);
    let second_run_streams = rng.random_range(4..=12);
    let mut violations = Vec::new();
    let (events_tx, events) = mpsc::channel();
    let mut history = History::default();

    let sim = SimStorage::new(seed);
    if let Some(n) = plan.crash_after_ops {
        sim.crash_after_ops(n);
    }
    if let Some(n) = plan.fail_sync {
        sim.fail_sync_after(n);
    }
    if let Some((n, errno)) = plan.fail_op {
        sim.fail_op_after(n, errno);
    }
    let first = first_run(
        &sim,
        &plan,
        &workload,
        first_run_streams,
        events_tx.clone(),
        &mut violations,
    );
    let mut phase = first.phase;
    if phase == FaultPhase::NotFired && plan.fired(&sim) {
        phase = FaultPhase::Shutdown;
    }
    if std::env::var_os("SS_STORAGE_FAULT_TRACE").is_some() {
        eprintln!(
            "seed {seed}: {kind:?} {plan:?} took effect {phase:?} after {} steps; chunker {:?}; {:?}",
            first.steps,
            first.chunker_result,
            sim.counters()
        );
    }
    let survivor = match kind {
        FaultKind::NoSpace => {
            sim.set_capacity(None);
            sim.clone()
        }
        // Only the process restarts: the page cache keeps what the failed fsync left, clean.
        FaultKind::FailedFsync if !plan.power_loss_after_stop && plan.fired(&sim) => {
            sim.crash(CrashMode::Process)
        }
        _ => first.survivor.unwrap_or_else(|| sim.crash(plan.mode)),
    };
    history.drain(&events);
    let report = second_run(
        &survivor,
        kind,
        &workload,
        second_run_streams,
        events_tx,
        &events,
        &mut history,
        &mut violations,
    );
    SeedOutcome {
        seed,
        kind,
        phase,
        report,
        run_violations: violations,
    }
}

/// What the faulty first run left behind.
struct FirstRun {
    phase: FaultPhase,
    steps: u64,
    /// The storage as it came back from a power loss injected by the test thread.
    survivor: Option<SimStorage>,
    chunker_result: Option<Result<(), AppendError>>,
}

/// The first run: publishes and sums until the fault stops it (or, if the fault never fires,
/// until the chunker has finished `streams` streams and the shards have applied everything).
fn first_run(
    sim: &SimStorage,
    plan: &FaultPlan,
    workload: &Workload,
    streams: u64,
    events: mpsc::Sender<VerifierEvent>,
    violations: &mut Vec<String>,
) -> FirstRun {
    let mut run = FirstRun {
        phase: FaultPhase::NotFired,
        steps: 0,
        survivor: None,
        chunker_result: None,
    };
    let mut process = match Process::start(sim, workload, 1, events) {
        Ok(process) => process,
        Err(e) => {
            run.phase = FaultPhase::Startup;
            first_run_error(&e, plan.fired(sim), violations);
            return run;
        }
    };
    let started = Instant::now();
    let mut stopping = false;
    let mut space_limited = false;
    let mut chunker_ended = false;
    let note_phase = |phase: &mut FaultPhase, stopping: bool| {
        if *phase == FaultPhase::NotFired && plan.fired(sim) {
            *phase = if stopping {
                FaultPhase::Shutdown
            } else {
                FaultPhase::Steady
            };
        }
    };
    loop {
        let stepped = process.step();
        note_phase(&mut run.phase, stopping);
        if let Err(e) = stepped {
            first_run_error(&e, plan.fired(sim), violations);
            break;
        }
        run.steps += 1;
        if plan.crash_at_step == Some(run.steps) {
            // Power fails now, while the chunker may be publishing on its own thread.
            run.survivor = Some(sim.crash(plan.mode));
            note_phase(&mut run.phase, stopping);
        }
        if let Some((at_streams, room_bytes)) = plan.no_space {
            let due = at_streams.map_or(chunker_ended, |n| process.streams_finished() >= n);
            if !space_limited && due {
                sim.set_capacity(Some(sim.used_bytes() + room_bytes));
                space_limited = true;
            }
        }
        if sim.is_dead() {
            break;
        }
        if !chunker_ended && process.chunker_ended() {
            chunker_ended = true;
            note_phase(&mut run.phase, stopping);
            if let Err(e) = process.chunker_result.clone().expect("ended") {
                if !(plan.fired(sim) && support::is_storage_append_error(&e)) {
                    violations.push(format!("first run: chunker: {e}"));
                }
                if let AppendError::NoSpace { journal, .. } = &e {
                    check_no_space_message(&e.to_string(), journal, violations);
                }
                break;
            }
        }
        if chunker_ended && process.shards_caught_up() {
            break; // A graceful end: the fault did not fire.
        }
        if !stopping && process.streams_finished() >= streams {
            process.stop_chunker();
            stopping = true;
        }
        if started.elapsed() > RUN_TIMEOUT {
            violations.push(format!("first run hangs after {} steps", run.steps));
            break;
        }
    }
    if plan.kind == FaultKind::NoSpace && plan.fired(sim) && !sim.is_dead() {
        check_readable(&process, violations);
    }
    // The process stops: whatever it still had in flight lands or fails.
    let verifier = process.verifier.clone();
    run.chunker_result = process.kill();
    violations.extend(
        verifier
            .lock()
            .violations()
            .iter()
            .map(|v| format!("first run: {v}")),
    );
    run
}

/// The second run, after a restart on what survived: recovers, publishes a few more streams
/// (a new run id), ends gracefully and checks the journals against the history.
#[allow(clippy::too_many_arguments)]
fn second_run(
    survivor: &SimStorage,
    kind: FaultKind,
    workload: &Workload,
    streams: u64,
    events_tx: mpsc::Sender<VerifierEvent>,
    events: &mpsc::Receiver<VerifierEvent>,
    history: &mut History,
    violations: &mut Vec<String>,
) -> CheckReport {
    let mut process = match Process::start(survivor, workload, 2, events_tx) {
        Ok(process) => process,
        Err(e) => {
            violations.push(format!("restart after the fault: {e}"));
            return CheckReport::default();
        }
    };
    if kind == FaultKind::NoSpace {
        for j in process.inputs.iter().chain(&process.shard_logs) {
            if j.recovery_cut_bytes() != 0 {
                violations.push(format!(
                    "{}: restart after ENOSPC cut {} bytes of half-written tail",
                    j.name(),
                    j.recovery_cut_bytes()
                ));
            }
        }
    }
    let started = Instant::now();
    loop {
        if let Err(e) = process.step() {
            violations.push(format!("second run: {e}"));
            break;
        }
        if process.streams_finished() >= streams || process.chunker_ended() {
            break;
        }
        if started.elapsed() > RUN_TIMEOUT {
            violations.push("second run hangs".into());
            break;
        }
    }
    if let Err(e) = process.finish() {
        violations.push(format!("second run, graceful end: {e}"));
    }
    {
        let v = process.verifier.lock();
        violations.extend(v.violations().iter().map(|x| format!("second run: {x}")));
        if v.pending() != 0 {
            violations.push(format!(
                "second run: {} finished streams never got their Sum",
                v.pending()
            ));
        }
    }
    history.drain(events);
    let before = check(&process.log, history);
    process.kill();
    // Everything readers saw was durable: a power loss now must not change what is checked.
    let at_rest = survivor.crash(CrashMode::LoseUnsynced);
    let log = match Log::open(support::DATA_DIR, workload.options(&at_rest)) {
        Ok(log) => log,
        Err(e) => {
            violations.push(format!("reopening after a power loss at rest: {e}"));
            return before;
        }
    };
    let mut report = check(&log, history);
    if report.violation_count() > before.violation_count() {
        report.other.push(format!(
            "{} violations appear only after a power loss at the end: what readers saw was not durable",
            report.violation_count() - before.violation_count()
        ));
    }
    report
}

/// Counts per fault kind, for the printed table.
#[derive(Debug, Default)]
struct KindTotals {
    seeds: u64,
    by_phase: BTreeMap<FaultPhase, u64>,
    streams_checked: u64,
    finals_acknowledged: u64,
    sums_seen: u64,
    lost: u64,
    duplicated: u64,
    mismatched: u64,
    other: u64,
}

fn seeds_from_env(default: u64) -> Vec<u64> {
    if let Ok(s) = std::env::var("SS_STORAGE_FAULT_SEED") {
        return vec![s.parse().expect("SS_STORAGE_FAULT_SEED is a number")];
    }
    let n = std::env::var("SS_STORAGE_FAULT_SEEDS")
        .map(|s| s.parse().expect("SS_STORAGE_FAULT_SEEDS is a number"))
        .unwrap_or(default);
    (0..n).collect()
}

/// Runs `seeds`, prints a table per fault kind and returns the totals and every violation.
fn run_seeds(seeds: &[u64], harness: Harness) -> (BTreeMap<FaultKind, KindTotals>, Vec<String>) {
    let started = Instant::now();
    let mut totals: BTreeMap<FaultKind, KindTotals> = BTreeMap::new();
    let mut violations = Vec::new();
    for &seed in seeds {
        let outcome = run_seed(seed, harness);
        let t = totals.entry(outcome.kind).or_default();
        t.seeds += 1;
        *t.by_phase.entry(outcome.phase).or_default() += 1;
        let r = &outcome.report;
        t.streams_checked += r.streams_checked;
        t.finals_acknowledged += r.finals_acknowledged;
        t.sums_seen += r.sums_seen;
        t.lost += r.lost.len() as u64;
        t.duplicated += r.duplicated.len() as u64;
        t.mismatched += r.mismatched.len() as u64;
        t.other += (r.other.len() + outcome.run_violations.len()) as u64;
        violations.extend(outcome.violations());
    }
    let label = if harness.unsafe_split_commit {
        "split commit (broken on purpose)"
    } else {
        "storage faults"
    };
    println!(
        "{label}: {} seeds in {:.1} s",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    for (kind, t) in &totals {
        println!(
            "  {kind:?}: {} seeds, fired {:?}; streams checked {}, finals acknowledged {}, Sums seen {}; lost {}, duplicated {}, mismatched {}, other {}",
            t.seeds,
            t.by_phase,
            t.streams_checked,
            t.finals_acknowledged,
            t.sums_seen,
            t.lost,
            t.duplicated,
            t.mismatched,
            t.other
        );
    }
    (totals, violations)
}

/// Regression: under ENOSPC, a chunker that keeps batches in flight could submit a batch after
/// an earlier batch of the same partition failed and was rolled back, before it had seen that
/// failure; the later batch landed, so a stream's chunks in the failed batch were missing before
/// its later chunks (a gap). The summer stopped on the gap, and every restart stopped there
/// again. Chunkers now submit with `Journal::submit_unless_failed`, which refuses once any batch
/// has failed since the chunker started.
#[test]
fn no_space_under_a_pipelined_chunker_leaves_no_gap_in_a_stream() {
    // The ENOSPC seeds among the first 400 of that kind, or among the seeds `SS_STORAGE_FAULT_SEEDS`
    // (or `SS_STORAGE_FAULT_SEED`) names.
    let seeds: Vec<u64> = seeds_from_env(NO_SPACE_PIPELINED_SEEDS * FAULT_KINDS)
        .into_iter()
        .filter(|s| FaultKind::for_seed(*s) == FaultKind::NoSpace)
        .collect();
    let (_, violations) = run_seeds(
        &seeds,
        Harness {
            pipelined_chunker_under_no_space: true,
            ..HARNESS
        },
    );
    for v in violations.iter().take(10) {
        println!("VIOLATION {v}");
    }
    assert!(
        violations.is_empty(),
        "{} violations, first: {}",
        violations.len(),
        violations[0]
    );
}

/// Power loss, torn writes, a failed fsync and ENOSPC, one per seed over 400 seeds, while a
/// chunker publishes and two summers commit: after a restart and a graceful end, the journals
/// hold exactly one correct Sum for every acknowledged final chunk and every finished stream, and
/// every Sum seen durable is still there.
#[test]
fn storage_faults_lose_duplicate_or_corrupt_no_sum() {
    let seeds = seeds_from_env(SEEDS_DEFAULT);
    let (totals, violations) = run_seeds(&seeds, HARNESS);
    for v in violations.iter().take(20) {
        println!("VIOLATION {v}");
    }
    assert!(
        violations.is_empty(),
        "{} violations, first: {}",
        violations.len(),
        violations[0]
    );
    if seeds.len() as u64 >= SEEDS_DEFAULT {
        for (kind, t) in &totals {
            let fired = t.seeds - t.by_phase.get(&FaultPhase::NotFired).copied().unwrap_or(0);
            assert!(
                fired * 2 >= t.seeds,
                "{kind:?}: the fault fired in only {fired} of {} seeds",
                t.seeds
            );
            assert!(
                t.finals_acknowledged > 0 && t.sums_seen > 0,
                "{kind:?}: nothing was checked"
            );
        }
    }
}

/// The same harness over a shard that writes each transaction's checkpoint and its Sums in two
/// separate appends (deliberately broken): a power loss between the two loses Sums, and the
/// checks must report it — proof that the storage-fault test can fail.
#[test]
fn storage_faults_catch_a_split_commit_losing_sums() {
    let seeds: Vec<u64> = (0..SPLIT_COMMIT_SEEDS * FAULT_KINDS)
        .filter(|s| {
            matches!(
                FaultKind::for_seed(*s),
                FaultKind::PowerLoss | FaultKind::TornWrite
            )
        })
        .take(SPLIT_COMMIT_SEEDS as usize)
        .collect();
    let (totals, violations) = run_seeds(
        &seeds,
        Harness {
            unsafe_split_commit: true,
            ..HARNESS
        },
    );
    let lost: u64 = totals.values().map(|t| t.lost).sum();
    for v in violations.iter().take(3) {
        println!("caught: {v}");
    }
    assert!(
        lost >= 1,
        "a shard that commits Sums apart from its checkpoint lost no Sum in {} seeds: the harness cannot catch it",
        seeds.len()
    );
}
