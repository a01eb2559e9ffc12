//! `run --faults`: component faults injected on a seeded schedule while a run goes on.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use ss_consumer::shard::{Shard, ShardConfig, ShardError};
use ss_consumer::summer::Summer;
use ss_log::Journal;

use crate::chunkers::{spawn_chunker, ChunkerCtx};
use crate::cli::{FaultMode, RunArgs};
use crate::state::{FaultRecord, Shared};

/// Injects component faults on a seeded schedule (`run --faults`).
pub(crate) struct FaultInjector {
    mode: FaultMode,
    rng: SmallRng,
    next_at: Option<Instant>,
    shard_logs: Vec<Journal>,
    inputs: Vec<Journal>,
    sla: Duration,
    zombies: Vec<JoinHandle<()>>,
    started: Instant,
}

impl FaultInjector {
    pub(crate) fn new(args: &RunArgs, shard_logs: Vec<Journal>, inputs: Vec<Journal>) -> FaultInjector {
        FaultInjector {
            mode: args.faults,
            rng: SmallRng::seed_from_u64(args.seed ^ 0xfa17),
            next_at: None,
            shard_logs,
            inputs,
            sla: args.sla,
            zombies: Vec::new(),
            started: Instant::now(),
        }
    }

    fn record(&self, shared: &Shared, now: Instant, kind: &'static str, target: String) {
        let at_s = now.duration_since(self.started).as_secs_f64();
        crate::exit::errln!("\nstream-sum: fault at {at_s:.1} s: {kind} {target}");
        tracing::info!(at_s, kind, target = target.as_str(), "fault injected");
        shared.faults.lock().push(FaultRecord { at_s, kind, target });
    }

    pub(crate) fn tick(&mut self, ctx: &ChunkerCtx, shared: &Arc<Shared>, now: Instant) {
        if self.mode == FaultMode::None || shared.run.stop_chunkers.load(Ordering::SeqCst) {
            return;
        }
        let next_at = *self
            .next_at
            .get_or_insert(now + Duration::from_millis(self.rng.random_range(1000..2000)));
        if now < next_at {
            return;
        }
        self.next_at = Some(now + Duration::from_millis(self.rng.random_range(1000..3000)));
        let p = self.rng.random_range(0..self.shard_logs.len());
        if self.mode == FaultMode::StallShard {
            // Only once: the SLA check must catch it and stop the run.
            if shared.faults.lock().is_empty() {
                let stall = self.sla + Duration::from_secs(2);
                shared.shards.stall_ms[p].store(stall.as_millis() as u64, Ordering::SeqCst);
                self.record(
                    shared,
                    now,
                    "stall-shard",
                    format!("shard-{p:03} for {:.1} s", stall.as_secs_f64()),
                );
            }
            return;
        }
        match self.rng.random_range(0..3) {
            0 => {
                shared.shards.restart[p].store(true, Ordering::SeqCst);
                self.record(shared, now, "restart-shard", format!("shard-{p:03}"));
            }
            1 => {
                let (input, log_j, shared2) =
                    (self.inputs[p].clone(), self.shard_logs[p].clone(), shared.clone());
                self.record(shared, now, "second-owner", format!("shard-{p:03}"));
                self.zombies
                    .push(std::thread::spawn(move || run_zombie(p, input, log_j, &shared2)));
            }
            _ => {
                let alive: Vec<usize> = shared
                    .chunkers
                    .slots
                    .lock()
                    .iter()
                    .copied()
                    .filter(|s| !shared.chunkers.die[*s].load(Ordering::SeqCst))
                    .collect();
                let free = (0..shared.chunkers.die.len()).find(|s| !shared.chunkers.slots.lock().contains(s));
                if let (Some(&victim), Some(slot)) =
                    (alive.get(self.rng.random_range(0..alive.len().max(1))), free)
                {
                    shared.chunkers.die[victim].store(true, Ordering::SeqCst);
                    spawn_chunker(ctx, shared, slot);
                    tracing::info!(chunker = slot, replaces = victim, "chunker started by fault");
                    self.record(
                        shared,
                        now,
                        "restart-chunker",
                        format!("chunker {victim} replaced by chunker {slot}"),
                    );
                }
            }
        }
    }

    pub(crate) fn join(&mut self) {
        for z in self.zombies.drain(..) {
            let _ = z.join();
        }
    }
}

/// A second owner of a shard, as after a lease handed over while the old owner still runs: it
/// recovers and runs transactions until fenced (or for a while). Whichever owner appends first
/// at a head wins; the other's conditional append fails and nothing of it lands.
fn run_zombie(p: usize, input: Journal, log_j: Journal, shared: &Shared) {
    let name = format!("shard-{p:03}-second-owner");
    let recovery_started = Instant::now();
    let mut shard = match Shard::recover(
        &name,
        Summer::new(shared.shards.summer_config.clone()),
        &input,
        log_j,
        ShardConfig::default(),
    ) {
        Ok(s) => s,
        Err(e) => return shared.run.shard_error(format!("{name}: {e}"), &e),
    };
    crate::shards::log_recovered(&shard, &input, recovery_started, "second");
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until && !shared.run.abort.load(Ordering::Relaxed) {
        match shard.run_transaction(Duration::from_millis(20)) {
            Ok(_) => {}
            Err(ShardError::Fenced {
                shard,
                expected,
                actual,
            }) => {
                tracing::info!(shard, owner = "second", expected, actual, "owner fenced");
                shared.shards.fencings.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e @ ShardError::Violation { .. }) => return shared.run.violation(e.to_string()),
            Err(e) => return shared.run.shard_error(format!("{name}: {e}"), &e),
        }
    }
    if let Err(ShardError::Fenced {
        shard,
        expected,
        actual,
    }) = shard.settle()
    {
        tracing::info!(shard, owner = "second", expected, actual, "owner fenced");
        shared.shards.fencings.fetch_add(1, Ordering::Relaxed);
    }
}
