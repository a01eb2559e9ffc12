//! The state of a `run` that its threads share, as narrow handles: each part of the run takes
//! the handle it works on ([`RunState`] for stopping and reporting, [`ShardSupervision`],
//! [`SumTailing`], [`ChunkerSupervision`], [`Resources`]) from the one [`Shared`] the run owns.
//! This module imports no other module of the CLI, so every part may use it without a cycle.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use ss_chunker::chunker::ChunkerStats;
use ss_chunker::verifier::Verifier;
use ss_consumer::shard::ShardError;
use ss_consumer::summer::SummerConfig;
use ss_log::AppendError;

/// State shared by every thread of the run, in parts.
pub(crate) struct Shared {
    pub(crate) run: RunState,
    pub(crate) shards: ShardSupervision,
    pub(crate) sums: SumTailing,
    pub(crate) chunkers: ChunkerSupervision,
    pub(crate) resources: Resources,
    /// Faults injected so far (`run --faults`).
    pub(crate) faults: Mutex<Vec<FaultRecord>>,
}

/// Stopping the run and what ends it: violations and errors.
pub(crate) struct RunState {
    pub(crate) run_id: u32,
    pub(crate) stop_chunkers: AtomicBool,
    pub(crate) stop_shards: AtomicBool,
    pub(crate) stop_tailers: AtomicBool,
    pub(crate) stop_reporter: AtomicBool,
    pub(crate) abort: AtomicBool,
    pub(crate) violations: Mutex<Vec<String>>,
    pub(crate) errors: Mutex<Vec<String>>,
    /// The first append that failed for want of space (behind whatever error reported it), so
    /// the run ends by naming it and saying what to do.
    pub(crate) no_space: Mutex<Option<AppendError>>,
    /// Why the chunkers were told to stop (the first cause wins): `duration`, `SIGINT`,
    /// `SIGTERM` or `low free space`. None while they run, and for a run ended by a violation
    /// or an error.
    pub(crate) stop_cause: Mutex<Option<&'static str>>,
}

impl RunState {
    pub(crate) fn new(run_id: u32) -> RunState {
        RunState {
            run_id,
            stop_chunkers: AtomicBool::new(false),
            stop_shards: AtomicBool::new(false),
            stop_tailers: AtomicBool::new(false),
            stop_reporter: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            violations: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
            no_space: Mutex::new(None),
            stop_cause: Mutex::new(None),
        }
    }

    /// Starts the graceful stop: chunkers start no new streams and finish their open ones.
    /// `cause` is recorded if it is the first.
    pub(crate) fn request_stop(&self, cause: &'static str) {
        self.stop_cause.lock().get_or_insert(cause);
        self.stop_chunkers.store(true, Ordering::SeqCst);
    }

    /// True once the run is stopping for a violation or an error. Problems found after that are
    /// logged at `debug` only: they are consequences of the first, they are all in the summary,
    /// and the run's last stderr line stays its own final word (e.g. the no-space advice).
    fn stopping(&self) -> bool {
        self.abort.load(Ordering::SeqCst)
    }

    pub(crate) fn violation(&self, v: String) {
        if self.stopping() {
            tracing::debug!(violation = v.as_str(), "violation (run already stopping)");
        } else {
            tracing::error!(violation = v.as_str(), "violation");
        }
        self.violations.lock().push(v);
        self.abort.store(true, Ordering::SeqCst);
    }

    /// Runs a thread's body `f`; a panic in it becomes a run error naming `thread` (and so
    /// ends the run, exit 3) instead of leaving the others waiting for work it will never do.
    pub(crate) fn reporting_panic(&self, thread: &str, f: impl FnOnce()) {
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            self.error(format!("thread {thread} panicked: {what}"));
        }
    }

    pub(crate) fn error(&self, e: String) {
        if self.stopping() {
            tracing::debug!(error = e.as_str(), "error (run already stopping)");
        } else {
            tracing::error!(error = e.as_str(), "run error");
        }
        self.push_error(e);
    }

    fn push_error(&self, e: String) {
        self.errors.lock().push(e);
        self.abort.store(true, Ordering::SeqCst);
    }

    /// [`RunState::error`] for a failed append: also remembers the first one whose root cause
    /// is a full disk.
    pub(crate) fn append_error(&self, message: String, error: &AppendError) {
        let cause = error.root_cause();
        if matches!(cause, AppendError::NoSpace { .. }) {
            self.no_space.lock().get_or_insert_with(|| cause.clone());
        }
        let (failure, journal) = append_failure(cause);
        if self.stopping() {
            tracing::debug!(
                journal,
                failure,
                error = message.as_str(),
                "append failed (run already stopping)"
            );
        } else {
            tracing::error!(journal, failure, error = message.as_str(), "append failed");
        }
        self.push_error(message);
    }

    /// [`RunState::error`] for a shard that stopped, through [`RunState::append_error`] if an
    /// append failed.
    pub(crate) fn shard_error(&self, message: String, error: &ShardError) {
        match error {
            ShardError::Append { error, .. } => self.append_error(message, error),
            _ => self.error(message),
        }
    }
}

/// Per-shard counters for the summary.
#[derive(Default)]
pub(crate) struct ShardProgress {
    pub(crate) txns: AtomicU64,
    /// What the shard has durably checkpointed (retention may remove below these).
    pub(crate) durable_input_offset: AtomicU64,
    pub(crate) durable_snapshot_offset: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) expired: AtomicU64,
}

/// The summer shards: their progress, and the hooks faults use on them.
pub(crate) struct ShardSupervision {
    pub(crate) progress: Vec<ShardProgress>,
    /// Per shard: set to make the shard drop its state and recover from its log.
    pub(crate) restart: Vec<AtomicBool>,
    /// Per shard: stall this long before the next transaction (stall-shard fault).
    pub(crate) stall_ms: Vec<AtomicU64>,
    pub(crate) recoveries: AtomicU64,
    pub(crate) fencings: AtomicU64,
    pub(crate) summer_config: SummerConfig,
}

impl ShardSupervision {
    pub(crate) fn new(partitions: usize, summer_config: SummerConfig) -> ShardSupervision {
        ShardSupervision {
            progress: (0..partitions).map(|_| ShardProgress::default()).collect(),
            restart: (0..partitions).map(|_| AtomicBool::new(false)).collect(),
            stall_ms: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            recoveries: AtomicU64::new(0),
            fencings: AtomicU64::new(0),
            summer_config,
        }
    }
}

/// Sums on their way from the shard logs to the verifiers of the chunkers that own them.
pub(crate) struct SumTailing {
    pub(crate) verifiers: Vec<Arc<Mutex<Verifier>>>,
    pub(crate) previous_runs: AtomicU64,
    /// Per shard log: offset up to which its Sums were delivered to the verifiers.
    pub(crate) tail_offset: Vec<AtomicU64>,
}

impl SumTailing {
    /// Finished streams of this run whose one correct Sum was seen, over every verifier.
    pub(crate) fn sums_verified(&self) -> u64 {
        self.verifiers.iter().map(|v| v.lock().sums_verified()).sum()
    }

    pub(crate) fn verifier_violations(&self) -> Vec<String> {
        self.verifiers
            .iter()
            .flat_map(|v| {
                v.lock()
                    .violations()
                    .iter()
                    .map(|x| x.0.clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub(crate) fn latency(&self) -> Histogram<u64> {
        let mut all = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds");
        for v in &self.verifiers {
            all.add(v.lock().latency_us()).expect("same bounds");
        }
        all
    }
}

/// The chunker threads: their counters, and the hooks faults use on them.
pub(crate) struct ChunkerSupervision {
    pub(crate) stats: Vec<Arc<ChunkerStats>>,
    pub(crate) running: AtomicUsize,
    /// Per chunker slot: set to make that chunker die.
    pub(crate) die: Vec<AtomicBool>,
    pub(crate) handles: Mutex<Vec<JoinHandle<()>>>,
    /// Chunker slots in use, in order of start.
    pub(crate) slots: Mutex<Vec<usize>>,
}

impl ChunkerSupervision {
    /// One counter of [`ChunkerStats`], summed over every chunker slot.
    pub(crate) fn total(&self, counter: fn(&ChunkerStats) -> &AtomicU64) -> u64 {
        self.stats
            .iter()
            .map(|s| counter(s).load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn new(slots: usize) -> ChunkerSupervision {
        ChunkerSupervision {
            stats: (0..slots).map(|_| Arc::new(ChunkerStats::default())).collect(),
            running: AtomicUsize::new(0),
            die: (0..slots).map(|_| AtomicBool::new(false)).collect(),
            handles: Mutex::new(Vec::new()),
            slots: Mutex::new(Vec::new()),
        }
    }
}

/// Disk and memory figures, and what retention removed (`maintenance`).
#[derive(Default)]
pub(crate) struct Resources {
    pub(crate) disk_bytes: AtomicU64,
    pub(crate) disk_bytes_max: AtomicU64,
    pub(crate) rss_bytes: AtomicU64,
    pub(crate) rss_bytes_max: AtomicU64,
    pub(crate) fragments_removed: AtomicU64,
}

/// One injected fault, for the summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FaultRecord {
    pub at_s: f64,
    pub kind: &'static str,
    pub target: String,
}

/// How an append failed, as a log field, and the journal it failed on.
fn append_failure(cause: &AppendError) -> (&'static str, &str) {
    match cause {
        AppendError::Poisoned { journal, .. } => ("poisoned", journal),
        AppendError::Conflict { journal, .. } => ("conflict", journal),
        AppendError::AfterFailure { journal, .. } => ("after_failure", journal),
        AppendError::FrameTooLarge { journal, .. } => ("frame_too_large", journal),
        AppendError::BatchTooLarge { journal, .. } => ("batch_too_large", journal),
        AppendError::NoSpace { journal, .. } => ("no_space", journal),
        AppendError::Io { journal, .. } => ("io", journal),
        AppendError::WouldBlock { journal, .. } => ("would_block", journal),
        AppendError::Closed { journal } => ("closed", journal),
        AppendError::ReadOnly { journal } => ("read_only", journal),
        AppendError::Backend { journal, .. } => ("backend", journal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_thread_body_becomes_a_run_error_that_aborts_the_run() {
        let run = RunState::new(1);
        run.reporting_panic("chunker-0", || {});
        assert!(!run.abort.load(Ordering::SeqCst), "no panic, no error");
        run.reporting_panic("chunker-0", || panic!("cannot convert float seconds"));
        run.reporting_panic("shard-001", || panic!("{} overflow", "capacity"));
        assert_eq!(
            *run.errors.lock(),
            [
                "thread chunker-0 panicked: cannot convert float seconds",
                "thread shard-001 panicked: capacity overflow"
            ]
        );
        assert!(run.abort.load(Ordering::SeqCst));
    }
}
