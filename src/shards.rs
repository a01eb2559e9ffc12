//! Summer shard threads of a `run`: recover a shard from its log, then run transactions until
//! told to stop, reporting through [`ShardSupervision`](crate::state::ShardSupervision) and
//! [`RunState`](crate::state::RunState).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ss_consumer::shard::{Shard, ShardConfig, ShardError};
use ss_consumer::summer::Summer;
use ss_log::{FrameJournal, Journal};

use crate::state::Shared;

pub(crate) fn run_shard(
    p: usize,
    input: Journal,
    log_j: Journal,
    shared: &Shared,
    faults: bool,
    config: ShardConfig,
) {
    let name = format!("shard-{p:03}");
    let progress = &shared.shards.progress[p];
    // Each pass recovers the shard from its log, as a restarted summer process would.
    loop {
        let summer = Summer::new(shared.shards.summer_config.clone());
        let recovery_started = Instant::now();
        let mut shard = match Shard::recover(&name, summer, &input, log_j.clone(), config.clone()) {
            Ok(s) => s,
            Err(e) => return shared.run.shard_error(format!("recovering {name}: {e}"), &e),
        };
        log_recovered(&shard, &input, recovery_started, "owner");
        shared.shards.recoveries.fetch_add(1, Ordering::Relaxed);
        loop {
            if shared.run.abort.load(Ordering::Relaxed) {
                return;
            }
            // The fault hooks (`--faults`): compiled out of a build without fault injection.
            if ss_consumer::FAULT_INJECTION && faults {
                if shared.shards.restart[p].swap(false, Ordering::SeqCst) {
                    break; // Drop the shard's memory; recover afresh from its log.
                }
                let stall_ms = shared.shards.stall_ms[p].swap(0, Ordering::SeqCst);
                if stall_ms > 0 {
                    std::thread::sleep(Duration::from_millis(stall_ms));
                }
            }
            if shared.run.stop_shards.load(Ordering::SeqCst) && shard.input_offset() >= input.durable_head() {
                if let Err(e) = shard.settle() {
                    shared.run.shard_error(e.to_string(), &e);
                }
                return;
            }
            match shard.run_transaction(Duration::from_millis(20)) {
                Ok(report) => {
                    let c = shard.app().counters();
                    if report.placed_at.is_some() {
                        progress.txns.fetch_add(1, Ordering::Relaxed);
                    }
                    progress.duplicates.store(c.duplicates, Ordering::Relaxed);
                    progress
                        .durable_input_offset
                        .store(shard.durable_input_offset(), Ordering::SeqCst);
                    progress
                        .durable_snapshot_offset
                        .store(shard.durable_snapshot_offset(), Ordering::SeqCst);
                    progress.expired.store(c.expired, Ordering::Relaxed);
                }
                Err(e @ ShardError::Violation { .. }) => return shared.run.violation(e.to_string()),
                Err(ShardError::Fenced {
                    shard,
                    expected,
                    actual,
                }) if faults => {
                    // A second owner (injected) appended first: this owner's view is stale.
                    tracing::info!(shard, owner = "owner", expected, actual, "owner fenced");
                    shared.shards.fencings.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) => return shared.run.shard_error(e.to_string(), &e),
            }
        }
    }
}

/// Logs a shard's recovery from its log: where it resumes and how long it took. `owner` is who
/// recovered it: `owner` (or `second`, injected) in one process, the lease owner on NATS.
pub(crate) fn log_recovered<J: FrameJournal>(
    shard: &Shard<Summer, J>,
    input: &J,
    started: Instant,
    owner: &str,
) {
    tracing::info!(
        shard = shard.name(),
        owner,
        input = input.name(),
        input_offset = shard.input_offset(),
        shard_log = shard.shard_log().name(),
        snapshot_offset = shard.durable_snapshot_offset(),
        log_head = shard.shard_log().known_durable_head(),
        deltas_replayed = shard.stats().recovered_deltas,
        recovery_ms = started.elapsed().as_secs_f64() * 1e3,
        "shard recovered"
    );
}
