//! Exactly-once summing under crashes, over many seeds on simulated storage.
//!
//! Per seed, several producers publish interleaved streams of chunks into 2-3 partitions (input
//! journals): random chunk sizes from empty to 4 KiB, some chunks and whole frames published
//! twice on purpose, some streams abandoned unfinished. One shard per partition consumes them in
//! small transactions with frequent snapshots. Meanwhile the storage dies after a random number of
//! mutating operations, so crashes land before a shard's append reaches the medium, in the middle
//! of it (the reboot keeps a torn or zeroed tail), right after it is durable but before the shard
//! learns so, and in the middle of producers' appends (they re-publish what was not acknowledged,
//! creating more duplicates). After each crash the log is reopened from what survived and the
//! shards recover from their shard logs. At the end the shards run to the input heads and every
//! shard log is read: each finished stream has exactly one Sum equal to the oracle's SHA-1, and
//! no unfinished or unknown stream has one. Crash counts per kind are printed (`--nocapture`) and
//! each kind must have happened.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use ss_consumer::audit::{self, Acknowledged, At, History, SumIndex};
use ss_consumer::message::{Chunk, StreamId};
use ss_consumer::shard::{Shard, ShardConfig, ShardError, TxnReport};
use ss_consumer::summer::{Summer, SummerConfig};
use ss_log::sim::{CrashMode, SimStorage};
use ss_log::{AppendError, Batch, Journal, Log, Options};

/// Seeds run by default; `SS_CRASH_SEEDS` overrides (e.g. for a longer soak).
const SEEDS_DEFAULT: u64 = 300;
/// Largest producer frame payload before the last chunk is added.
const PRODUCER_BATCH_BUDGET_BYTES: usize = 12 << 10;

struct Params {
    partitions: usize,
    producers: usize,
    streams_per_producer: usize,
    active_per_producer: usize,
    shard: ShardConfig,
    fragment_max_bytes: u64,
    /// Remove input fragments below each shard's durable checkpoint and shard-log fragments
    /// below its durable snapshot as the run goes (as `stream-sum run --retention` does).
    retention: bool,
    /// `Options::preallocate`: zero-filled spare fragments.
    preallocate: bool,
}

impl Params {
    fn random(rng: &mut StdRng) -> Params {
        Params {
            partitions: rng.random_range(2..=3),
            producers: rng.random_range(2..=4),
            streams_per_producer: rng.random_range(3..=10),
            active_per_producer: rng.random_range(1..=4),
            shard: ShardConfig {
                txn_max_messages: rng.random_range(1..=8),
                txn_max_input_bytes: rng.random_range(1 << 10..=16 << 10),
                // Long enough never to end a transaction: bounds by count and bytes keep the
                // transactions small and replayable.
                txn_max_duration: Duration::from_secs(60),
                txn_max_output_delay: Duration::from_secs(60),
                snapshot_min_delta_bytes: rng.random_range(64..=2048),
                pipelined: rng.random_bool(0.5),
                ..ShardConfig::default()
            },
            fragment_max_bytes: rng.random_range(20 << 10..=48 << 10),
            retention: rng.random_bool(0.5),
            preallocate: rng.random_bool(0.5),
        }
    }

    fn options(&self, sim: &SimStorage) -> Options {
        Options {
            fragment_max_bytes: self.fragment_max_bytes,
            frame_max_bytes: FRAME_MAX_BYTES,
            batch_max_messages: 1024,
            pending_max_bytes: 256 << 10,
            preallocate: self.preallocate,
            // `SS_NO_RECYCLE` set: retention unlinks (to bisect a failure between the two).
            recycle: std::env::var_os("SS_NO_RECYCLE").is_none(),
            // Several scan-start hints per fragment: every recovery here starts from one.
            scan_hint_interval_bytes: self.fragment_max_bytes / 4,
            write_bound_step_bytes: self.fragment_max_bytes / 8,
            storage: Arc::new(sim.clone()),
        }
    }
}

/// The shard logs' largest frame.
const FRAME_MAX_BYTES: u64 = 20 << 10;

/// A summer that never expires streams: in this test every stream keeps arriving until it is
/// finished or abandoned, and abandoned ones must simply get no Sum. Its snapshot fits a frame:
/// a finished window longer than a seed's streams (at most 40), and open streams to match.
fn summer() -> Summer {
    let config = SummerConfig {
        expire_after_bytes: u64::MAX,
        finished_window: 256,
        ..SummerConfig::default()
    };
    Summer::new(config.fitting_frames_of(FRAME_MAX_BYTES))
}

struct Stream {
    id: StreamId,
    partition: usize,
    chunks: Vec<Vec<u8>>,
    /// Chunks the producer will publish: all of them, or fewer for an abandoned stream.
    publish_count: usize,
    /// Chunks acknowledged durable (always a prefix: a producer publishes a stream in order and
    /// re-publishes from the first unacknowledged chunk).
    acked: usize,
}

impl Stream {
    fn finishes(&self) -> bool {
        self.publish_count == self.chunks.len()
    }

    fn chunk(&self, seq: usize) -> Chunk<'_> {
        Chunk {
            stream: self.id,
            seq: seq as u32,
            is_final: seq + 1 == self.chunks.len(),
            data: &self.chunks[seq],
        }
    }

    fn oracle_sha1(&self) -> [u8; 20] {
        sha1_of(self.chunks.iter().map(Vec::as_slice))
    }
}

fn random_chunk_len(rng: &mut StdRng) -> usize {
    match rng.random_range(0..100) {
        0..15 => 0,
        15..65 => rng.random_range(1..100),
        65..90 => rng.random_range(100..1024),
        _ => rng.random_range(1024..=4096),
    }
}

/// Plans every stream of every producer: ids, contents, and where abandoned ones stop.
fn plan_streams(rng: &mut StdRng, params: &Params) -> (Vec<Stream>, Vec<Producer>) {
    let mut streams = Vec::new();
    let mut producers = Vec::new();
    let mut ids = HashSet::new();
    for _ in 0..params.producers {
        let mut owned = Vec::new();
        for _ in 0..params.streams_per_producer {
            let id = loop {
                let id = StreamId(rng.random());
                if ids.insert(id) {
                    break id;
                }
            };
            let chunk_count = rng.random_range(1..=10);
            let chunks: Vec<Vec<u8>> = (0..chunk_count)
                .map(|_| {
                    let len = random_chunk_len(rng);
                    pattern(len, rng.random())
                })
                .collect();
            let publish_count = if chunk_count > 1 && rng.random_bool(0.2) {
                rng.random_range(1..chunk_count)
            } else {
                chunk_count
            };
            owned.push(streams.len());
            streams.push(Stream {
                id,
                partition: (id.0 % params.partitions as u64) as usize,
                chunks,
                publish_count,
                acked: 0,
            });
        }
        producers.push(Producer {
            queue: owned,
            next_start: 0,
            active: Vec::new(),
            last_acked_batch: None,
        });
    }
    (streams, producers)
}

/// An in-test chunker: publishes its streams a few at a time, interleaved.
struct Producer {
    queue: Vec<usize>,
    next_start: usize,
    active: Vec<usize>,
    /// The last acknowledged frame (partition, (stream index, seq) per chunk), to publish again.
    last_acked_batch: Option<(usize, Vec<(usize, usize)>)>,
}

impl Producer {
    fn is_done(&self) -> bool {
        self.active.is_empty() && self.next_start == self.queue.len()
    }

    /// Publishes one frame. `Ok(None)` once every stream is published; `Err` if the storage died.
    fn publish(
        &mut self,
        rng: &mut StdRng,
        streams: &mut [Stream],
        inputs: &[Journal],
        max_active: usize,
        stats: &mut Stats,
    ) -> Result<Option<(usize, u64)>, AppendError> {
        while self.active.len() < max_active && self.next_start < self.queue.len() {
            self.active.push(self.queue[self.next_start]);
            self.next_start += 1;
        }
        if self.active.is_empty() {
            return Ok(None);
        }
        if let Some((partition, entries)) = &self.last_acked_batch {
            if rng.random_bool(0.05) {
                // The whole frame again, as a chunker unsure of its append would send it.
                let batch = chunk_batch(entries.iter().map(|&(s, seq)| streams[s].chunk(seq)));
                let ack = inputs[*partition].append(&batch)?;
                stats.republished_frames += 1;
                return Ok(Some((*partition, ack.end)));
            }
        }
        let partition = streams[self.active[rng.random_range(0..self.active.len())]].partition;
        let mut candidates: Vec<usize> = self
            .active
            .iter()
            .copied()
            .filter(|&s| streams[s].partition == partition)
            .collect();
        candidates.shuffle(rng);
        let mut entries = Vec::new();
        let mut bytes = 0;
        for &s in candidates.iter().take(4) {
            let st = &streams[s];
            if st.acked > 0 && rng.random_bool(0.1) {
                entries.push((s, rng.random_range(0..st.acked)));
            }
            let n = if rng.random_bool(0.3) { 2 } else { 1 };
            for seq in st.acked..(st.acked + n).min(st.publish_count) {
                if bytes > PRODUCER_BATCH_BUDGET_BYTES {
                    break;
                }
                bytes += st.chunks[seq].len();
                entries.push((s, seq));
            }
            if st.acked > 0 && rng.random_bool(0.05) {
                entries.push((s, rng.random_range(0..st.acked)));
            }
        }
        let batch: Batch = chunk_batch(entries.iter().map(|&(s, seq)| streams[s].chunk(seq)));
        let ack = inputs[partition].append(&batch)?;
        for &(s, seq) in &entries {
            let st = &mut streams[s];
            st.acked = st.acked.max(seq + 1);
        }
        self.active
            .retain(|&s| streams[s].acked < streams[s].publish_count);
        self.last_acked_batch = Some((partition, entries));
        Ok(Some((partition, ack.end)))
    }
}

/// What one shard's owner knows about its own transactions, to classify crashes.
#[derive(Default)]
struct ShardTrack {
    /// Shard log head covered by acknowledged transactions.
    acked_head: u64,
    /// Placed but unacknowledged transactions: (input offset after it, frame end).
    placed: Vec<(u64, u64)>,
    /// A transaction failed because the storage died while it ran.
    interrupted: bool,
}

impl ShardTrack {
    fn placed(&mut self, shard: &Shard<Summer>, report: &TxnReport) {
        if let Some(ack) = report.placed_at {
            self.placed.push((shard.input_offset(), ack.end));
        }
        let durable = shard.durable_input_offset();
        while let Some(&(input_after, end)) = self.placed.first() {
            if input_after > durable {
                break;
            }
            self.acked_head = end;
            self.placed.remove(0);
        }
    }
}

/// Counts over all seeds.
#[derive(Default, Debug)]
struct Stats {
    crashes: u64,
    crashes_by_countdown: u64,
    crashes_explicit_after_durable: u64,
    crashes_during_reopen: u64,
    crashes_in_producer_append: u64,
    /// Shard transactions interrupted with no trace of them on the medium.
    txn_lost_before_durable: u64,
    /// Shard transactions whose frame was torn (recovery cut a tail of the shard log).
    txn_torn: u64,
    /// Shard transactions durable but not acknowledged to the shard when it crashed.
    txn_durable_unacknowledged: u64,
    input_torn_tails: u64,
    republished_frames: u64,
    fragments_removed: u64,
    duplicates_skipped: u64,
    sums: u64,
    finished_streams: u64,
    abandoned_streams: u64,
    txns: u64,
    snapshots: u64,
    recovered_deltas: u64,
    /// Crashes per mode, in `CrashMode::ALL` order (Lose, Tear, Zero, Process, PowerLoss).
    crashes_by_mode: [u64; 5],
    failing_calls_armed: u64,
    restarts_after_failed_call: u64,
}

struct World {
    /// Kept so that the directory lock and journals live as long as the world.
    _log: Log,
    inputs: Vec<Journal>,
    shards: Vec<Shard<Summer>>,
}

fn open_world(sim: &SimStorage, params: &Params) -> Result<World, String> {
    let log = Log::open(DATA_DIR, params.options(sim)).map_err(|e| e.to_string())?;
    let mut inputs = Vec::new();
    let mut shards = Vec::new();
    for p in 0..params.partitions {
        let input = log.journal(&format!("chunks-{p}")).map_err(|e| e.to_string())?;
        let shard_log = log.journal(&format!("sums-{p}")).map_err(|e| e.to_string())?;
        let shard = Shard::recover(
            &format!("shard-{p}"),
            summer(),
            &input,
            shard_log,
            params.shard.clone(),
        )
        .map_err(|e| e.to_string())?;
        inputs.push(input);
        shards.push(shard);
    }
    Ok(World {
        _log: log,
        inputs,
        shards,
    })
}

fn random_mode(rng: &mut StdRng) -> CrashMode {
    match rng.random_range(0..8) {
        0 => CrashMode::LoseUnsynced,
        1 => CrashMode::TearUnsynced,
        2 => CrashMode::ZeroUnsynced,
        3..=5 => CrashMode::PowerLoss,
        _ => CrashMode::Process,
    }
}

/// Errnos the injected failing calls return.
const ERRNOS: [i32; 3] = [ss_log::sim::EIO, ss_log::sim::ENOSPC, ss_log::sim::EMFILE];

struct Run<'a> {
    seed: u64,
    rng: StdRng,
    params: Params,
    sim: SimStorage,
    world: Option<World>,
    tracks: Vec<ShardTrack>,
    /// Highest acknowledged input end per partition: must survive every crash.
    acked_input_end: Vec<u64>,
    /// Per shard: what its log held, read as the run goes (retention removes old fragments),
    /// and the offset read up to.
    collected: Vec<(ShardLogContents, u64)>,
    stats: &'a mut Stats,
}

impl Run<'_> {
    /// Whether the storage died or an injected call failed: either way the process restarts.
    fn faulted(&self) -> bool {
        let c = self.sim.counters();
        self.sim.is_dead() || c.failed_ops + c.failed_syncs > 0
    }

    fn world(&mut self) -> &mut World {
        self.world.as_mut().expect("world is open")
    }

    /// Kills the storage (if not dead already), reboots from what survived, reopens and recovers.
    fn crash_and_reboot(&mut self) {
        let mode = random_mode(&mut self.rng);
        self.stats.crashes_by_mode[CrashMode::ALL.iter().position(|m| *m == mode).expect("a mode")] += 1;
        let survivor = self.sim.crash(mode);
        let world = self.world.take().expect("world is open");
        for (track, shard) in self.tracks.iter_mut().zip(&world.shards) {
            // A pipelined transaction still in flight is as unknown to its shard as a failed one.
            if shard.durable_input_offset() < shard.input_offset() {
                track.interrupted = true;
            }
        }
        drop(world);
        self.stats.crashes += 1;
        self.sim = survivor;
        let world = loop {
            if self.rng.random_bool(0.05) {
                self.sim.crash_after_ops(self.rng.random_range(0..4));
            }
            match open_world(&self.sim, &self.params) {
                Ok(world) => break world,
                Err(e) => {
                    assert!(self.faulted(), "seed {}: reopening failed: {e}", self.seed);
                    self.stats.crashes += 1;
                    self.stats.crashes_during_reopen += 1;
                    self.sim = self.sim.crash(random_mode(&mut self.rng));
                }
            }
        };
        self.sim.crash_after_ops(u64::MAX);
        for (p, input) in world.inputs.iter().enumerate() {
            assert!(
                input.durable_head() >= self.acked_input_end[p],
                "seed {}: partition {p} lost acknowledged input: head {} < {}",
                self.seed,
                input.durable_head(),
                self.acked_input_end[p]
            );
            if input.recovery_cut_bytes() > 0 {
                self.stats.input_torn_tails += 1;
            }
        }
        for (i, (track, shard)) in self.tracks.iter_mut().zip(&world.shards).enumerate() {
            let head = shard.shard_log().durable_head();
            let cut = shard.shard_log().recovery_cut_bytes();
            assert!(
                head >= track.acked_head,
                "seed {}: shard {i} lost an acknowledged transaction: head {head} < {}",
                self.seed,
                track.acked_head
            );
            if track.interrupted || !track.placed.is_empty() {
                if head > track.acked_head {
                    self.stats.txn_durable_unacknowledged += 1;
                } else if cut > 0 {
                    self.stats.txn_torn += 1;
                } else {
                    self.stats.txn_lost_before_durable += 1;
                }
            } else {
                assert_eq!(
                    head, track.acked_head,
                    "seed {}: shard {i}: unexpected frames",
                    self.seed
                );
            }
            *track = ShardTrack {
                acked_head: head,
                ..ShardTrack::default()
            };
        }
        self.world = Some(world);
    }

    /// Reads shard `i`'s new durable frames into `collected`. Fails only if the storage died
    /// meanwhile (a countdown crash can land in a background thread, e.g. the spare preparer).
    fn collect(&mut self, i: usize) -> Result<(), ss_log::ReadError> {
        let world = self.world.as_ref().expect("world is open");
        let (contents, offset) = &mut self.collected[i];
        read_shard_log_into(world.shards[i].shard_log(), offset, contents)?;
        Ok(())
    }

    /// Retention behind shard `i`: input below its durable checkpoint, shard log below its
    /// durable snapshot (after reading what is there). Failures are crashes.
    fn retain(&mut self, i: usize) {
        if let Err(e) = self.collect(i) {
            assert!(
                self.faulted(),
                "seed {}: reading shard log {i} failed: {e}",
                self.seed
            );
            return;
        }
        let world = self.world.as_ref().expect("world is open");
        let shard = &world.shards[i];
        let removed = shard
            .shard_log()
            .remove_below(shard.durable_snapshot_offset())
            .and_then(|n| Ok(n + world.inputs[i].remove_below(shard.durable_input_offset())?));
        match removed {
            Ok(n) => self.stats.fragments_removed += n as u64,
            Err(e) => assert!(self.faulted(), "seed {}: retention failed: {e}", self.seed),
        }
    }

    fn shard_step(&mut self, i: usize) {
        let result = self.world().shards[i].run_transaction(Duration::ZERO);
        match result {
            Ok(report) => {
                let world = self.world.as_mut().expect("world is open");
                self.tracks[i].placed(&world.shards[i], &report);
                let unsettled = world.shards[i].durable_input_offset() < world.shards[i].input_offset();
                let shard_log = world.shards[i].shard_log().clone();
                if let (Some(ack), true) = (report.placed_at, unsettled) {
                    if !self.faulted() && self.rng.random_bool(0.04) {
                        // Durable, but the shard has not looked yet: crash now.
                        let log = shard_log;
                        while log.durable_head() < ack.end && !self.faulted() {
                            log.wait_beyond(ack.end - 1, Duration::from_millis(100));
                        }
                        drop(log);
                        if !self.faulted() {
                            self.stats.crashes_explicit_after_durable += 1;
                            self.crash_and_reboot();
                        }
                        return;
                    }
                }
                if self.params.retention && !self.faulted() && self.rng.random_bool(0.2) {
                    self.retain(i);
                }
            }
            Err(e) => {
                assert!(
                    self.faulted(),
                    "seed {}: shard {i} failed while the storage is alive: {e}",
                    self.seed
                );
                assert!(!matches!(
                    e,
                    ShardError::Violation { .. } | ShardError::Fenced { .. }
                ));
                self.tracks[i].interrupted = true;
            }
        }
    }

    fn run(&mut self, streams: &mut [Stream], producers: &mut [Producer]) {
        let mut steps = 0u64;
        let mut armed = false;
        while producers.iter().any(|p| !p.is_done()) {
            steps += 1;
            assert!(steps < 200_000, "seed {}: no progress", self.seed);
            if !armed && self.rng.random_bool(0.08) {
                let n = if self.rng.random_bool(0.7) {
                    self.rng.random_range(0..4)
                } else {
                    self.rng.random_range(0..40)
                };
                if self.rng.random_bool(0.25) {
                    // A failing call (a short write, a failed fsync with Linux semantics, EMFILE
                    // on open, ...): the process notices and restarts.
                    let errno = ERRNOS[self.rng.random_range(0..ERRNOS.len())];
                    self.sim.fail_op_after(n + 1, errno);
                    self.stats.failing_calls_armed += 1;
                } else {
                    self.sim.crash_after_ops(n);
                }
                armed = true;
            }
            if self.rng.random_bool(0.5) {
                let live: Vec<usize> = (0..producers.len())
                    .filter(|&p| !producers[p].is_done())
                    .collect();
                let p = live[self.rng.random_range(0..live.len())];
                let max_active = self.params.active_per_producer;
                let world = self.world.as_mut().expect("world is open");
                match producers[p].publish(&mut self.rng, streams, &world.inputs, max_active, self.stats) {
                    Ok(Some((partition, end))) => {
                        let acked = &mut self.acked_input_end[partition];
                        *acked = (*acked).max(end);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        assert!(self.faulted(), "seed {}: producer append failed: {e}", self.seed);
                        self.stats.crashes_in_producer_append += 1;
                    }
                }
            } else {
                let i = self.rng.random_range(0..self.params.partitions);
                self.shard_step(i);
            }
            if self.faulted() {
                if self.sim.is_dead() {
                    self.stats.crashes_by_countdown += 1;
                } else {
                    self.stats.restarts_after_failed_call += 1;
                }
                self.crash_and_reboot();
                armed = false;
            }
        }
        // Every stream is published: finish consuming without faults.
        self.sim.crash_after_ops(u64::MAX);
        self.sim.disarm_failures();
        // A countdown armed in the last step can still fire on a journal's committing thread
        // after the loop's last check and before the disarm above (seen once in 25,000 seeds,
        // seed 14173 under load): that process is dead, so reboot it like any other crash.
        if self.faulted() {
            self.stats.crashes_by_countdown += u64::from(self.sim.is_dead());
            self.crash_and_reboot();
        }
        let world = self.world.as_mut().expect("world is open");
        for (shard, input) in world.shards.iter_mut().zip(&world.inputs) {
            shard
                .run_until(input.durable_head(), Duration::ZERO)
                .unwrap_or_else(|e| panic!("seed {}: final run: {e}", self.seed));
        }
    }

    /// The exactly-once audit of the collected Sums against the oracle, a complete history: each
    /// finished stream has exactly one Sum, with the oracle's SHA-1 and final seq; no other
    /// stream has one. (That each Sum is in its stream's shard is checked here: the audit knows
    /// no partitions.)
    fn audit(&self, streams: &[Stream]) {
        let seed = self.seed;
        let mut history = History {
            complete: true,
            ..History::default()
        };
        for s in streams.iter().filter(|s| s.finishes()) {
            let ack = Acknowledged {
                sha1: s.oracle_sha1(),
                last_seq: Some(s.chunks.len() as u32 - 1),
                at: None,
            };
            history.finals.insert(s.id, ack);
        }
        let partitions: HashMap<StreamId, usize> = streams.iter().map(|s| (s.id, s.partition)).collect();
        let world = self.world.as_ref().expect("world is open");
        let mut sums = SumIndex::default();
        for (p, shard) in world.shards.iter().enumerate() {
            let contents = &self.collected[p].0;
            for (sum, &offset) in contents.sums.iter().zip(&contents.sum_offsets) {
                if let Some(&partition) = partitions.get(&sum.stream) {
                    assert_eq!(
                        partition, p,
                        "seed {seed}: Sum of {} in the wrong shard",
                        sum.stream
                    );
                }
                let journal = shard.shard_log().name().to_string();
                sums.add(*sum, At { journal, offset });
            }
        }
        let findings = audit::check_history(&history, None, &sums, audit::Settled::Yes);
        let violations: Vec<&String> = findings.violations().collect();
        assert!(violations.is_empty(), "seed {seed}: {violations:#?}");
        assert_eq!(findings.verified, history.finals.len(), "seed {seed}");
    }

    /// Checks every shard log against the oracle.
    fn check(&mut self, streams: &[Stream]) {
        let seed = self.seed;
        for i in 0..self.params.partitions {
            self.collect(i)
                .unwrap_or_else(|e| panic!("seed {seed}: reading shard log {i}: {e}"));
        }
        let world = self.world.as_ref().expect("world is open");
        for (p, input) in world.inputs.iter().enumerate() {
            for s in streams.iter().filter(|s| s.partition == p) {
                assert_eq!(
                    s.acked, s.publish_count,
                    "seed {seed}: stream {} not fully published",
                    s.id
                );
            }
            if self.params.retention {
                continue; // Early input is gone.
            }
            let finals: HashSet<StreamId> = read_input_chunks(input)
                .into_iter()
                .filter(|(_, c)| c.is_final)
                .map(|(_, c)| c.stream)
                .collect();
            for s in streams.iter().filter(|s| s.partition == p) {
                assert_eq!(
                    finals.contains(&s.id),
                    s.finishes(),
                    "seed {seed}: stream {}: final chunk in input vs finished",
                    s.id
                );
            }
        }
        self.audit(streams);
        for (p, shard) in world.shards.iter().enumerate() {
            let contents = &self.collected[p].0;
            assert!(contents.expired.is_empty(), "seed {seed}: nothing should expire");
            let counters = shard.app().counters();
            assert_eq!(
                counters.sums,
                contents.sums.len() as u64,
                "seed {seed}: checkpointed sums"
            );
            let abandoned = streams
                .iter()
                .filter(|s| s.partition == p && !s.finishes())
                .count();
            assert_eq!(
                shard.app().open_streams(),
                abandoned,
                "seed {seed}: only abandoned streams stay open"
            );
            self.stats.duplicates_skipped += counters.duplicates;
            self.stats.sums += contents.sums.len() as u64;
            self.stats.snapshots += contents
                .checkpoints
                .iter()
                .filter(|c| c.2 == ss_consumer::checkpoint::CheckpointKind::Snapshot)
                .count() as u64;
            self.stats.txns += contents.checkpoints.len() as u64;
            self.stats.recovered_deltas += shard.stats().recovered_deltas;
        }
        self.stats.finished_streams += streams.iter().filter(|s| s.finishes()).count() as u64;
        self.stats.abandoned_streams += streams.iter().filter(|s| !s.finishes()).count() as u64;
    }
}

fn run_seed(seed: u64, stats: &mut Stats, split_commit: bool) {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut params = Params::random(&mut rng);
    params.shard.unsafe_split_commit = split_commit;
    let (mut streams, mut producers) = plan_streams(&mut rng, &params);
    let sim = SimStorage::new(seed);
    let world = open_world(&sim, &params).expect("first open");
    let partitions = params.partitions;
    let mut run = Run {
        seed,
        rng,
        params,
        sim,
        world: Some(world),
        tracks: (0..partitions).map(|_| ShardTrack::default()).collect(),
        acked_input_end: vec![0; partitions],
        collected: (0..partitions)
            .map(|_| (ShardLogContents::default(), 0))
            .collect(),
        stats,
    };
    run.run(&mut streams, &mut producers);
    run.check(&streams);
}

/// Runs the seeds and checks, besides each seed's own assertions, that crashes landed at every
/// step of a transaction and that duplicates were exercised.
#[test]
fn every_finished_stream_has_exactly_one_correct_sum_across_crashes() {
    let seeds = std::env::var("SS_CRASH_SEEDS")
        .ok()
        .map_or(SEEDS_DEFAULT, |s| s.parse().expect("SS_CRASH_SEEDS is a number"));
    let started = Instant::now();
    let mut stats = Stats::default();
    let first: u64 =
        std::env::var("SS_CRASH_FIRST_SEED").map_or(0, |v| v.parse().expect("SS_CRASH_FIRST_SEED"));
    for seed in first..first + seeds {
        // Name the seed of any failure, whichever assertion (here or in a helper) reports it.
        let ran =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_seed(seed, &mut stats, false)));
        if let Err(panic) = ran {
            eprintln!("exactly_once_crashes: seed {seed} failed (rerun: SS_CRASH_SEEDS=1 SS_CRASH_FIRST_SEED={seed})");
            std::panic::resume_unwind(panic);
        }
    }
    eprintln!(
        "exactly_once_crashes: {seeds} seeds, {} crashes injected in {:.1} s: {stats:#?}",
        stats.crashes,
        started.elapsed().as_secs_f64()
    );
    assert!(
        stats.txn_lost_before_durable > 0,
        "no crash before a transaction was durable"
    );
    assert!(stats.txn_torn > 0, "no torn transaction frame");
    assert!(
        stats.txn_durable_unacknowledged > 0,
        "no crash between durable and acknowledged"
    );
    assert!(
        stats.crashes_in_producer_append > 0,
        "no crash during a producer append"
    );
    assert!(stats.duplicates_skipped > 0 && stats.recovered_deltas > 0);
    assert!(stats.abandoned_streams > 0 && stats.finished_streams > 0);
    assert!(stats.fragments_removed > 0, "retention never removed a fragment");
    assert!(
        stats.crashes_by_mode.iter().all(|&n| n > 0),
        "every crash mode ran: {:?}",
        stats.crashes_by_mode
    );
    assert!(stats.restarts_after_failed_call > 0, "no injected call failed");
}

/// The harness must be able to fail: with the shard's deliberately broken commit (checkpoint and
/// outputs in two appends, so a crash between them loses Sums) some seed must fail its checks.
#[test]
fn split_commit_is_caught_by_the_harness() {
    let caught = (0..100).find(|&seed| {
        let mut stats = Stats::default();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_seed(seed, &mut stats, true))).is_err()
    });
    eprintln!("split commit: first failing seed {caught:?}");
    assert!(caught.is_some(), "no seed caught a commit split in two appends");
}

/// Input for the replay test: rounds in which every live stream gets its next chunk (so no live
/// stream idles long enough to expire), with abandoned streams falling silent and expiring.
fn write_expiry_input(seed: u64, input: &Journal) -> u64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut live: Vec<(StreamId, u32, u32)> = Vec::new(); // (id, next seq, chunk count)
    let mut next_id = seed << 16;
    for _round in 0..rng.random_range(30..60) {
        while live.len() < 8 {
            next_id += 1;
            live.push((StreamId(next_id), 0, rng.random_range(1..12)));
        }
        live.shuffle(&mut rng);
        let mut chunks = Vec::new();
        for (id, next, count) in live.iter_mut() {
            if *next == 0 || rng.random_bool(0.97) {
                let data = pattern(rng.random_range(0..200), rng.random());
                chunks.push((*id, *next, *next + 1 == *count, data));
                *next += 1;
            } else {
                *count = 0; // Abandoned: never published again.
            }
        }
        live.retain(|&(_, next, count)| count != 0 && next < count);
        for frame in chunks.chunks(3) {
            let batch = chunk_batch(frame.iter().map(|(id, seq, is_final, data)| Chunk {
                stream: *id,
                seq: *seq,
                is_final: *is_final,
                data,
            }));
            input.append(&batch).expect("write input");
        }
    }
    input.durable_head()
}

/// A summer expiring streams soon, whose snapshot fits the 16 KiB frames of
/// `run_with_crashes`.
fn expiring_summer() -> Summer {
    let config = SummerConfig {
        expire_after_bytes: 12 << 10,
        expire_check_interval_bytes: 1500,
        finished_window: 256,
        ..SummerConfig::default()
    };
    Summer::new(config.fitting_frames_of(16 << 10))
}

/// Every output (Sums and Expired records, in order) of a shard log.
fn outputs(journal: &Journal) -> Vec<String> {
    let contents = read_shard_log(journal);
    let mut out = Vec::new();
    let mut frames = journal.frames(0);
    while let Some(frame) = frames.next() {
        let frame = frame.expect("read shard log");
        let messages: Vec<&[u8]> = frames
            .messages(&frame)
            .collect::<Result<_, _>>()
            .expect("messages");
        for m in &messages[..messages.len() - 1] {
            out.push(format!(
                "{:?}",
                ss_consumer::message::Message::decode(m).expect("output")
            ));
        }
    }
    assert_eq!(out.len(), contents.sums.len() + contents.expired.len());
    out
}

/// Runs a shard over pre-written input with crashes at random points of its transactions and
/// returns its outputs and how many crashes it took.
fn run_with_crashes(seed: u64, config: ShardConfig, crash: bool) -> (Vec<String>, u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xc0ffee);
    let options = |sim: &SimStorage| Options {
        fragment_max_bytes: 16 << 10,
        frame_max_bytes: 16 << 10,
        ..Options::with_storage(Arc::new(sim.clone()))
    };
    let mut sim = SimStorage::new(seed);
    let end = {
        let log = Log::open(DATA_DIR, options(&sim)).unwrap();
        write_expiry_input(seed, &log.journal("chunks-0").unwrap())
    };
    let mut crashes = 0;
    loop {
        let log = Log::open(DATA_DIR, options(&sim)).unwrap();
        let input = log.journal("chunks-0").unwrap();
        assert_eq!(input.durable_head(), end, "seed {seed}: input is durable");
        let mut shard = Shard::recover(
            "shard-0",
            expiring_summer(),
            &input,
            log.journal("sums-0").unwrap(),
            config.clone(),
        )
        .unwrap_or_else(|e| panic!("seed {seed}: recover: {e}"));
        if crash && crashes < 20 {
            sim.crash_after_ops(rng.random_range(0..12));
        }
        match shard.run_until(end, Duration::ZERO) {
            Ok(()) if !sim.is_dead() => return (outputs(shard.shard_log()), crashes),
            Ok(()) => {}
            Err(e) => assert!(sim.is_dead(), "seed {seed}: shard failed: {e}"),
        }
        drop(shard);
        drop(input);
        drop(log);
        sim = sim.crash(random_mode(&mut rng));
        crashes += 1;
    }
}

/// Replays the same input (streams that finish, and abandoned ones that expire) through a
/// crash-free shard and through shards with other transaction sizes that crash at random points
/// and recover. Checks that the outputs, Sums and Expired records in order, are identical: what a
/// shard emits depends on its input only, never on where crashes and transactions fell.
#[test]
fn shard_outputs_with_crashes_equal_those_of_a_crash_free_run() {
    let mut crashes = 0;
    let mut expired = 0;
    let mut sums = 0;
    for seed in 0..100 {
        let reference_config = ShardConfig {
            txn_max_messages: 1 << 16,
            txn_max_duration: Duration::from_secs(60),
            txn_max_output_delay: Duration::from_secs(60),
            pipelined: false,
            ..ShardConfig::default()
        };
        let (reference, _) = run_with_crashes(seed, reference_config, false);
        let mut rng = StdRng::seed_from_u64(seed);
        let config = ShardConfig {
            txn_max_messages: rng.random_range(1..10),
            txn_max_input_bytes: 4 << 10,
            txn_max_duration: Duration::from_secs(60),
            txn_max_output_delay: Duration::from_secs(60),
            snapshot_min_delta_bytes: rng.random_range(100..2000),
            pipelined: rng.random_bool(0.5),
            ..ShardConfig::default()
        };
        let (crashed, n) = run_with_crashes(seed, config, true);
        assert_eq!(
            crashed, reference,
            "seed {seed}: outputs differ after {n} crashes"
        );
        crashes += n;
        expired += reference.iter().filter(|o| o.starts_with("Expired")).count();
        sums += reference.iter().filter(|o| o.starts_with("Sum")).count();
    }
    eprintln!("replay: 100 seeds, {crashes} crashes, {sums} Sums and {expired} expiries identical");
    assert!(crashes > 100 && expired > 50 && sums > 1000);
}
