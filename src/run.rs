//! `stream-sum run`: chunkers, summer shards and Sum tailers in one process over a data directory.
//!
//! Threads: one per summer shard (recover from its shard log, then transactions), one per shard
//! log tailer (delivers each durable Sum to the verifier of the chunker that owns the stream),
//! one per chunker. The main thread shows progress, checks SLAs and stops everything gracefully:
//! at the end of `--duration` or on the first Ctrl-C the chunkers start no new streams, finish
//! the open ones and the run ends once every finished stream has its Sum.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use ss_chunker::chunker::{Chunker, ChunkerConfig, ChunkerStats, FLUSH_BYTES_DEFAULT};
use ss_chunker::stream_gen::{chunk_journal_name, shard_log_name, split_stream_id, CHUNKERS_MAX};
use ss_chunker::verifier::{Verifier, VerifierEvent};
use ss_consumer::message::{hex, Message};
use ss_consumer::shard::{Shard, ShardConfig, ShardError};
use ss_consumer::summer::{Summer, SummerConfig};
use ss_log::{AppendError, Journal, Log, OpenError, Options};

use crate::cli::{FaultMode, RunArgs};
use crate::faults::{FaultInjector, FaultRecord};
use crate::maintenance::Maintenance;
use crate::metrics_server::MetricsServer;
use crate::record::{Recorder, Sampler, SummaryLine};
use crate::summary::{max_ms, percentile_ms, Progress, Summary};
use crate::{EXIT_ERROR, EXIT_OK, EXIT_USAGE, EXIT_VIOLATION};

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

/// State shared by every thread of the run.
pub(crate) struct Shared {
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
    pub(crate) verifiers: Vec<Arc<Mutex<Verifier>>>,
    pub(crate) chunker_stats: Vec<Arc<ChunkerStats>>,
    pub(crate) shard_progress: Vec<ShardProgress>,
    pub(crate) sums_previous_runs: AtomicU64,
    pub(crate) chunkers_running: AtomicUsize,
    /// Per shard: set to make the shard drop its state and recover from its log.
    pub(crate) shard_restart: Vec<AtomicBool>,
    /// Per shard: stall this long before the next transaction (stall-shard fault).
    pub(crate) shard_stall_ms: Vec<AtomicU64>,
    /// Per chunker slot: set to make that chunker die.
    pub(crate) chunker_die: Vec<AtomicBool>,
    pub(crate) chunker_handles: Mutex<Vec<JoinHandle<()>>>,
    /// Chunker slots in use, in order of start.
    pub(crate) chunker_slots: Mutex<Vec<usize>>,
    pub(crate) faults: Mutex<Vec<FaultRecord>>,
    pub(crate) shard_recoveries: AtomicU64,
    pub(crate) fencings: AtomicU64,
    pub(crate) summer_config: SummerConfig,
    /// Per shard log: offset up to which its Sums were delivered to the verifiers.
    pub(crate) tail_offset: Vec<AtomicU64>,
    pub(crate) disk_bytes: AtomicU64,
    pub(crate) disk_bytes_max: AtomicU64,
    pub(crate) rss_bytes: AtomicU64,
    pub(crate) rss_bytes_max: AtomicU64,
    pub(crate) fragments_removed: AtomicU64,
}

/// What a chunker needs to start.
pub(crate) struct ChunkerCtx {
    args: RunArgs,
    run_id: u32,
    inputs: Vec<Journal>,
}

pub(crate) fn spawn_chunker(ctx: &ChunkerCtx, shared: &Arc<Shared>, slot: usize) {
    let args = &ctx.args;
    let mut config = ChunkerConfig::new(
        slot as u8,
        ctx.run_id,
        args.seed.wrapping_add(slot as u64 * 7919),
        args.streams,
    );
    config.shape.max_chunk_bytes = args.max_chunk_bytes;
    config.shape.max_chunks_per_stream = args.max_chunks_per_stream as u32;
    config.max_bytes_per_s = args
        .max_mb_per_s
        .map(|mb| (mb * 1e6 / args.chunkers as f64) as u64);
    let mut chunker = Chunker::new(
        config,
        ctx.inputs.clone(),
        shared.verifiers[slot].clone(),
        shared.chunker_stats[slot].clone(),
    );
    shared.chunkers_running.fetch_add(1, Ordering::SeqCst);
    shared.chunker_slots.lock().push(slot);
    let thread_shared = shared.clone();
    let handle = std::thread::Builder::new()
        .name(format!("chunker-{slot}"))
        .spawn(move || {
            let shared = thread_shared;
            if let Err(e) = chunker.run_or_die(&shared.stop_chunkers, &shared.chunker_die[slot]) {
                shared.append_error(format!("chunker {slot}: {e}"), &e);
            }
            shared.chunkers_running.fetch_sub(1, Ordering::SeqCst);
        })
        .expect("spawn chunker");
    shared.chunker_handles.lock().push(handle);
}

impl Shared {
    pub(crate) fn violation(&self, v: String) {
        self.violations.lock().push(v);
        self.abort.store(true, Ordering::SeqCst);
    }

    pub(crate) fn error(&self, e: String) {
        self.errors.lock().push(e);
        self.abort.store(true, Ordering::SeqCst);
    }

    /// [`Shared::error`] for a failed append: also remembers the first one whose root cause is
    /// a full disk.
    pub(crate) fn append_error(&self, message: String, error: &AppendError) {
        let cause = error.root_cause();
        if matches!(cause, AppendError::NoSpace { .. }) {
            self.no_space.lock().get_or_insert_with(|| cause.clone());
        }
        self.error(message);
    }

    /// [`Shared::error`] for a shard that stopped, through [`Shared::append_error`] if an append
    /// failed.
    pub(crate) fn shard_error(&self, message: String, error: &ShardError) {
        match error {
            ShardError::Append { error, .. } => self.append_error(message, error),
            _ => self.error(message),
        }
    }

    fn verifier_violations(&self) -> Vec<String> {
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

pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    if args.chunkers > CHUNKERS_MAX {
        eprintln!("stream-sum: error: --chunkers must be at most {CHUNKERS_MAX}");
        return Ok(EXIT_USAGE);
    }
    if args.streams * args.chunkers > OPEN_STREAMS_MAX {
        eprintln!(
            "stream-sum: error: --streams x --chunkers must be at most {OPEN_STREAMS_MAX} (the open streams one summer shard may hold)"
        );
        return Ok(EXIT_USAGE);
    }
    if args.max_chunk_bytes > MAX_CHUNK_BYTES_MAX {
        eprintln!("stream-sum: error: --max-chunk-bytes must be at most {MAX_CHUNK_BYTES_MAX} (chunks travel in one journal frame)");
        return Ok(EXIT_USAGE);
    }
    if args.partitions > 1000 {
        eprintln!("stream-sum: error: --partitions must be at most 1000");
        return Ok(EXIT_USAGE);
    }
    let options = log_options_for(args.fragment_max_bytes);
    // A frame must hold a chunk batch (flushed past FLUSH_BYTES_DEFAULT, plus one chunk and
    // message headers) and a summer snapshot: its finished window and room for four times the
    // live streams (abandoned streams awaiting expiry stay open too).
    let batch_bytes_max = (FLUSH_BYTES_DEFAULT + args.max_chunk_bytes + (64 << 10)) as u64;
    let snapshot_bytes_max = summer_config(&args).snapshot_bytes_max(4 * args.streams * args.chunkers);
    let frame_needed = batch_bytes_max.max(snapshot_bytes_max);
    if options.frame_max_bytes < frame_needed {
        eprintln!(
            "stream-sum: error: --fragment-max-bytes {} is too small for this run: a frame (at most one fragment) must hold {frame_needed} bytes (a chunk batch with --max-chunk-bytes {}, or a summer snapshot of {} x {} streams); use at least {frame_needed}",
            args.fragment_max_bytes, args.max_chunk_bytes, args.streams, args.chunkers
        );
        return Ok(EXIT_USAGE);
    }
    // The metrics address is bound first, then the record file is opened: a port in use or a
    // path that cannot be written stops the run before anything else is touched.
    let metrics = match args.metrics_addr.map(MetricsServer::bind).transpose() {
        Ok(m) => m,
        Err(e) => {
            let addr = args.metrics_addr.expect("bound only when given");
            eprintln!("stream-sum: error: cannot serve metrics on {addr}: {e}");
            return Ok(EXIT_ERROR);
        }
    };
    let mut recorder = match args.record.as_deref().map(Recorder::open).transpose() {
        Ok(r) => r,
        Err(e) => {
            let path = args.record.as_deref().unwrap_or(std::path::Path::new(""));
            eprintln!(
                "stream-sum: error: cannot open record file {}: {e}",
                path.display()
            );
            return Ok(EXIT_ERROR);
        }
    };
    let log = match Log::open(&args.data, options) {
        Ok(log) => log,
        Err(e @ OpenError::Locked { .. }) => {
            eprintln!("stream-sum: error: {e}; read-only commands (verify, journal ls/read) still work");
            return Ok(EXIT_ERROR);
        }
        Err(e) => return Err(e).with_context(|| format!("opening data directory {}", args.data.display())),
    };
    let run = match crate::runs::take_run_id(&log, args.seed) {
        Ok(run) => run,
        Err(e) => match e.downcast_ref::<AppendError>().map(AppendError::root_cause) {
            Some(cause @ AppendError::NoSpace { .. }) => {
                eprintln!("stream-sum: error: {}", no_space_advice(cause, &args.data));
                return Ok(EXIT_ERROR);
            }
            _ => return Err(e),
        },
    };
    let mut inputs = Vec::new();
    let mut shard_logs = Vec::new();
    for p in 0..args.partitions {
        inputs.push(log.journal(&chunk_journal_name(p))?);
        shard_logs.push(log.journal(&shard_log_name(p))?);
    }
    // Chunkers killed by faults are replaced in fresh slots, so stream ids are never reused.
    let slots = if args.faults == FaultMode::None {
        args.chunkers
    } else {
        (args.chunkers + 64).min(CHUNKERS_MAX)
    };
    let shared = Arc::new(Shared {
        run_id: run.run_id,
        stop_chunkers: AtomicBool::new(false),
        stop_shards: AtomicBool::new(false),
        stop_tailers: AtomicBool::new(false),
        stop_reporter: AtomicBool::new(false),
        abort: AtomicBool::new(false),
        violations: Mutex::new(Vec::new()),
        errors: Mutex::new(Vec::new()),
        no_space: Mutex::new(None),
        verifiers: (0..slots)
            .map(|c| Arc::new(Mutex::new(Verifier::new(run.run_id, c as u8, args.sla))))
            .collect(),
        chunker_stats: (0..slots).map(|_| Arc::new(ChunkerStats::default())).collect(),
        shard_progress: (0..args.partitions).map(|_| ShardProgress::default()).collect(),
        sums_previous_runs: AtomicU64::new(0),
        chunkers_running: AtomicUsize::new(0),
        shard_restart: (0..args.partitions).map(|_| AtomicBool::new(false)).collect(),
        shard_stall_ms: (0..args.partitions).map(|_| AtomicU64::new(0)).collect(),
        chunker_die: (0..slots).map(|_| AtomicBool::new(false)).collect(),
        chunker_handles: Mutex::new(Vec::new()),
        chunker_slots: Mutex::new(Vec::new()),
        faults: Mutex::new(Vec::new()),
        shard_recoveries: AtomicU64::new(0),
        fencings: AtomicU64::new(0),
        summer_config: summer_config(&args),
        tail_offset: shard_logs
            .iter()
            .map(|j| AtomicU64::new(j.durable_head()))
            .collect(),
        disk_bytes: AtomicU64::new(0),
        disk_bytes_max: AtomicU64::new(0),
        rss_bytes: AtomicU64::new(0),
        rss_bytes_max: AtomicU64::new(0),
        fragments_removed: AtomicU64::new(0),
    });
    install_ctrl_c(shared.clone())?;
    let reporter = args.report.then(|| start_reporter(&shared));
    eprintln!(
        "stream-sum: run {} over {} ({} partitions, {} chunkers x {} streams, duration {}, SLA {:?})",
        run.run_id,
        args.data.display(),
        args.partitions,
        args.chunkers,
        args.streams,
        args.limit().map_or("forever".to_string(), |d| format!("{d:?}")),
        args.sla
    );
    let journals = inputs.iter().chain(&shard_logs).cloned().collect();
    let watch = metrics
        .map(|m| m.start(journals))
        .transpose()
        .context("starting the metrics server")?;

    // Tailers start at the shard logs' current heads: every Sum of this run lands after them.
    let tailers: Vec<JoinHandle<()>> = shard_logs
        .iter()
        .enumerate()
        .map(|(p, j)| {
            let (j, shared) = (j.clone(), shared.clone());
            let start = j.durable_head();
            std::thread::Builder::new()
                .name(format!("tail-{}", j.name()))
                .spawn(move || tail_sums(p, j, start, &shared))
                .expect("spawn tailer")
        })
        .collect();
    let faults = args.faults != FaultMode::None;
    let shards: Vec<JoinHandle<()>> = (0..args.partitions)
        .map(|p| {
            let (input, log_j, shared) = (inputs[p].clone(), shard_logs[p].clone(), shared.clone());
            let shard_config = ShardConfig {
                unsafe_split_commit: args.unsafe_split_commit,
                ..ShardConfig::default()
            };
            std::thread::Builder::new()
                .name(format!("shard-{p:03}"))
                .spawn(move || run_shard(p, input, log_j, &shared, faults, shard_config))
                .expect("spawn shard")
        })
        .collect();
    let started = Instant::now();
    let ctx = ChunkerCtx {
        args: args.clone(),
        run_id: run.run_id,
        inputs: inputs.clone(),
    };
    for slot in 0..args.chunkers {
        spawn_chunker(&ctx, &shared, slot);
    }
    let mut injector = FaultInjector::new(&args, shard_logs.clone(), inputs.clone());
    let mut maintenance = Maintenance {
        retention: args.retention,
        inputs: inputs.clone(),
        shard_logs: shard_logs.clone(),
        next_at: Instant::now(),
    };

    let mut sampler = Sampler::new(started);
    let completed = supervise(&args, &shared, started, &mut |shared, now| {
        injector.tick(&ctx, shared, now);
        maintenance.tick(shared, now);
        if let Some(sample) = sampler.tick(shared, now, false) {
            if let Some(watch) = &watch {
                watch.publish(&sample, sampler.latency_us(), shared);
            }
            record(&mut recorder, &sample);
        }
    });
    let elapsed = started.elapsed();
    if completed {
        let handles: Vec<_> = std::mem::take(&mut *shared.chunker_handles.lock());
        for h in handles {
            let _ = h.join();
        }
        injector.join();
        shared.stop_shards.store(true, Ordering::SeqCst);
        for h in shards {
            let _ = h.join();
        }
        shared.stop_tailers.store(true, Ordering::SeqCst);
        for h in tailers {
            let _ = h.join();
        }
    }
    let summary = summarize(&args, &shared, elapsed, completed);
    let last = sampler
        .tick(&shared, Instant::now(), true)
        .expect("forced sample");
    if let Some(watch) = &watch {
        watch.publish(&last, sampler.latency_us(), &shared);
    }
    record(&mut recorder, &last);
    record(
        &mut recorder,
        &SummaryLine {
            kind: "summary",
            summary: &summary,
        },
    );
    shared.stop_reporter.store(true, Ordering::SeqCst);
    if let Some(reporter) = reporter {
        let _ = reporter.join();
    }
    if args.report {
        eprint!("{}", summary.text());
    } else if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print!("{}", summary.text());
    }
    if let Some(cause) = shared.no_space.lock().as_ref() {
        eprintln!("stream-sum: error: {}", no_space_advice(cause, &args.data));
    }
    if summary.violations > 0 {
        return Ok(EXIT_VIOLATION);
    }
    if !summary.errors.is_empty() {
        return Ok(EXIT_ERROR);
    }
    Ok(EXIT_OK)
}

/// Appends one line to the record file, if any. A record that cannot be written is reported
/// once and closed; the run itself goes on.
fn record<T: serde::Serialize>(recorder: &mut Option<Recorder>, line: &T) {
    if let Some(r) = recorder {
        if let Err(e) = r.write(line) {
            eprintln!(
                "stream-sum: warning: writing record file {}: {e}; recording stopped",
                r.path().display()
            );
            *recorder = None;
        }
    }
}

/// What to say when an append ran out of space: the cause, where, and what to do. Retention alone
/// is not always enough: measured on a 512 MB tmpfs, an unthrottled `run --retention` still
/// filled it (docs/reliability.md, "Full disk").
fn no_space_advice(cause: &AppendError, data: &std::path::Path) -> String {
    let AppendError::NoSpace { journal, fragment } = cause else {
        return cause.to_string();
    };
    format!(
        "no space left on device: journal {journal:?} could not write {}; the run stopped and the failed appends were rolled back. \
         Free space on the file system holding {}, or bound disk use with --retention (it frees whole fragments once a second: \
         give it a few hundred MB, or add --max-mb-per-s), then run again on the same directory to resume",
        fragment.display(),
        data.display()
    )
}

/// Prints every verifier event as one line on stdout, flushed at once, for a watching parent.
fn start_reporter(shared: &Arc<Shared>) -> JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    for v in &shared.verifiers {
        v.lock().set_events(tx.clone());
    }
    let shared = shared.clone();
    std::thread::Builder::new()
        .name("reporter".into())
        .spawn(move || {
            let mut out = std::io::stdout().lock();
            loop {
                let event = match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(event) => event,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        if shared.stop_reporter.load(Ordering::SeqCst) {
                            match rx.try_recv() {
                                Ok(event) => event,
                                Err(_) => return,
                            }
                        } else {
                            continue;
                        }
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                };
                let line = match event {
                    VerifierEvent::FinalDurable {
                        stream,
                        sha1,
                        journal,
                        offset,
                    } => {
                        format!("F {stream} {journal} {offset} {}\n", hex(&sha1))
                    }
                    VerifierEvent::SumSeen {
                        stream,
                        sha1,
                        journal,
                        offset,
                    } => {
                        format!("S {stream} {journal} {offset} {}\n", hex(&sha1))
                    }
                };
                if out.write_all(line.as_bytes()).and_then(|()| out.flush()).is_err() {
                    return;
                }
            }
        })
        .expect("spawn reporter")
}

fn install_ctrl_c(shared: Arc<Shared>) -> anyhow::Result<()> {
    let presses = AtomicUsize::new(0);
    ctrlc::set_handler(move || {
        if presses.fetch_add(1, Ordering::SeqCst) == 0 {
            eprintln!("\nstream-sum: stopping: finishing open streams and waiting for their Sums (Ctrl-C again to exit now)");
            shared.stop_chunkers.store(true, Ordering::SeqCst);
        } else {
            eprintln!("\nstream-sum: interrupted again; exiting without waiting");
            std::process::exit(130);
        }
    })
    .context("installing the Ctrl-C handler")
}

/// Progress, SLA checks and the graceful stop. Returns true if the run completed gracefully.
fn supervise(
    args: &RunArgs,
    shared: &Arc<Shared>,
    started: Instant,
    on_tick: &mut dyn FnMut(&Arc<Shared>, Instant),
) -> bool {
    let tty = std::io::stderr().is_terminal();
    let interval = args.progress_interval.unwrap_or(if tty {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    });
    let mut last_print = Instant::now();
    let (mut last_bytes, mut last_chunks) = (0u64, 0u64);
    loop {
        std::thread::sleep(Duration::from_millis(25));
        let now = Instant::now();
        on_tick(shared, now);
        if args.limit().is_some_and(|d| now.duration_since(started) >= d) {
            shared.stop_chunkers.store(true, Ordering::SeqCst);
        }
        let mut pending = 0;
        for v in &shared.verifiers {
            let mut v = v.lock();
            v.check_sla(now);
            pending += v.pending();
            if !v.violations().is_empty() {
                shared.abort.store(true, Ordering::SeqCst);
            }
        }
        let done = shared.stop_chunkers.load(Ordering::SeqCst)
            && shared.chunkers_running.load(Ordering::SeqCst) == 0
            && pending == 0;
        let aborted = shared.abort.load(Ordering::SeqCst);
        if now.duration_since(last_print) >= interval || done || aborted {
            let bytes: u64 = shared
                .chunker_stats
                .iter()
                .map(|s| s.chunk_bytes.load(Ordering::Relaxed))
                .sum();
            let chunks: u64 = shared
                .chunker_stats
                .iter()
                .map(|s| s.chunks.load(Ordering::Relaxed))
                .sum();
            let latency = shared.latency();
            let progress = Progress {
                elapsed: now.duration_since(started),
                streams_finished: shared
                    .chunker_stats
                    .iter()
                    .map(|s| s.streams_finished.load(Ordering::Relaxed))
                    .sum(),
                sums_verified: shared.verifiers.iter().map(|v| v.lock().sums_verified()).sum(),
                pending,
                chunk_bytes_delta: bytes - last_bytes,
                chunks_delta: chunks - last_chunks,
                interval: now.duration_since(last_print),
                p50_ms: percentile_ms(&latency, 0.5),
                p99_ms: percentile_ms(&latency, 0.99),
                violations: shared.violations.lock().len() + shared.verifier_violations().len(),
                stopping: shared.stop_chunkers.load(Ordering::Relaxed),
                resources: args.retention.then(|| {
                    (
                        shared.disk_bytes.load(Ordering::Relaxed),
                        shared.rss_bytes.load(Ordering::Relaxed),
                    )
                }),
            };
            if tty {
                eprint!("\r\x1b[2K{}", progress.line());
            } else {
                eprintln!("{}", progress.line());
            }
            (last_bytes, last_chunks, last_print) = (bytes, chunks, now);
        }
        if done || aborted {
            if tty {
                eprintln!();
            }
            return done && !aborted;
        }
    }
}

/// Journal limits for stream-sum. Fragments are not preallocated: measured here, zero-filling
/// spares cost this bandwidth-bound workload a quarter of its throughput and doubled its Sum
/// latency p99 (docs/benchmarks.md). Fragments removed by retention are unlinked, not recycled
/// (`Options::recycle` is off: `verify` and `journal read` may read the directory while `run`
/// writes it, and a recycled file would change under them). 16 MiB frames hold a summer snapshot of up to
/// `OPEN_STREAMS_MAX` open streams (112 B each) plus its finished window (12 B per entry).
pub fn log_options() -> Options {
    Options {
        frame_max_bytes: 16 << 20,
        pending_max_bytes: 16 << 20,
        ..Options::default()
    }
}

/// [`log_options`] with fragments rolled at `fragment_max_bytes` (`run --fragment-max-bytes`);
/// frames are capped at the fragment size.
fn log_options_for(fragment_max_bytes: u64) -> Options {
    let options = log_options();
    Options {
        fragment_max_bytes,
        frame_max_bytes: options.frame_max_bytes.min(fragment_max_bytes),
        ..options
    }
}

/// Summer limits for a run: streams are expired only after far more input than any live
/// stream's chunks can be apart (each chunker cycles through its streams, so a live stream's
/// chunks are at most about streams × chunkers / partitions chunks apart in a partition).
fn summer_config(args: &RunArgs) -> SummerConfig {
    let gap_bytes = (args.streams * args.chunkers * args.max_chunk_bytes / args.partitions) as u64;
    let default = SummerConfig::default();
    SummerConfig {
        expire_after_bytes: default.expire_after_bytes.max(16 * gap_bytes),
        max_open_streams: OPEN_STREAMS_MAX,
        ..default
    }
}

/// Largest chunk a run may generate (a chunk batch must fit one 16 MiB frame).
const MAX_CHUNK_BYTES_MAX: usize = 4 << 20;

/// Most open streams per summer shard in a run: 100,000 × 112 B + 50,000 × 12 B < 16 MiB.
const OPEN_STREAMS_MAX: usize = 100_000;

pub(crate) fn run_shard(
    p: usize,
    input: Journal,
    log_j: Journal,
    shared: &Shared,
    faults: bool,
    config: ShardConfig,
) {
    let name = format!("shard-{p:03}");
    let progress = &shared.shard_progress[p];
    // Each pass recovers the shard from its log, as a restarted summer process would.
    loop {
        let summer = Summer::new(shared.summer_config.clone());
        let mut shard = match Shard::recover(&name, summer, &input, log_j.clone(), config.clone()) {
            Ok(s) => s,
            Err(e) => return shared.shard_error(format!("recovering {name}: {e}"), &e),
        };
        shared.shard_recoveries.fetch_add(1, Ordering::Relaxed);
        loop {
            if shared.abort.load(Ordering::Relaxed) {
                return;
            }
            if shared.shard_restart[p].swap(false, Ordering::SeqCst) {
                break; // Drop the shard's memory; recover afresh from its log.
            }
            let stall_ms = shared.shard_stall_ms[p].swap(0, Ordering::SeqCst);
            if stall_ms > 0 {
                std::thread::sleep(Duration::from_millis(stall_ms));
            }
            if shared.stop_shards.load(Ordering::SeqCst) && shard.input_offset() >= input.durable_head() {
                if let Err(e) = shard.settle() {
                    shared.shard_error(e.to_string(), &e);
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
                Err(e @ ShardError::Violation { .. }) => return shared.violation(e.to_string()),
                Err(ShardError::Fenced { .. }) if faults => {
                    // A second owner (injected) appended first: this owner's view is stale.
                    shared.fencings.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) => return shared.shard_error(e.to_string(), &e),
            }
        }
    }
}

/// Reads Sums from a shard log as they become durable and hands each to its chunker's verifier.
fn tail_sums(p: usize, journal: Journal, start: u64, shared: &Shared) {
    let mut frames = journal.frames(start);
    while !shared.stop_tailers.load(Ordering::SeqCst) {
        let frame = match frames.next_timeout(Duration::from_millis(50)) {
            Ok(Some(f)) => f,
            Ok(None) => continue,
            Err(e) => return shared.error(format!("tailing {}: {e}", journal.name())),
        };
        let seen_at = Instant::now();
        for m in frames.messages(&frame) {
            let sum = match m
                .map_err(|e| e.to_string())
                .and_then(|m| Message::decode(m).map_err(|e| e.to_string()))
            {
                Ok(Message::Sum(sum)) => sum,
                Ok(_) => continue,
                Err(e) => return shared.error(format!("{} offset {}: {e}", journal.name(), frame.offset)),
            };
            let (run, chunker, _) = split_stream_id(sum.stream);
            if run != shared.run_id {
                shared.sums_previous_runs.fetch_add(1, Ordering::Relaxed);
            } else if let Some(v) = shared.verifiers.get(chunker as usize) {
                v.lock().on_sum(&sum, journal.name(), frame.offset, seen_at);
            } else {
                shared.violation(format!(
                    "Sum in {} at offset {} for stream {} of chunker {chunker}, which does not exist",
                    journal.name(),
                    frame.offset,
                    sum.stream
                ));
            }
        }
        shared.tail_offset[p].store(frame.end, Ordering::SeqCst);
    }
}

fn summarize(args: &RunArgs, shared: &Shared, elapsed: Duration, completed: bool) -> Summary {
    let load = |f: fn(&ChunkerStats) -> &AtomicU64| -> u64 {
        shared
            .chunker_stats
            .iter()
            .map(|s| f(s).load(Ordering::Relaxed))
            .sum()
    };
    let chunks = load(|s| &s.chunks);
    let chunk_bytes = load(|s| &s.chunk_bytes);
    let mut violation_messages = shared.violations.lock().clone();
    violation_messages.extend(shared.verifier_violations());
    let latency = shared.latency();
    let secs = elapsed.as_secs_f64().max(1e-9);
    Summary {
        run_id: shared.run_id,
        partitions: args.partitions,
        chunkers: args.chunkers,
        streams_started: load(|s| &s.streams_started),
        streams_finished: load(|s| &s.streams_finished),
        sums_verified: shared.verifiers.iter().map(|v| v.lock().sums_verified()).sum(),
        sums_previous_runs: shared.sums_previous_runs.load(Ordering::Relaxed),
        violations: violation_messages.len(),
        violation_messages,
        errors: shared.errors.lock().clone(),
        chunks,
        chunk_bytes,
        elapsed_s: elapsed.as_secs_f64(),
        chunk_mb_per_s: chunk_bytes as f64 / secs / 1e6,
        chunks_per_s: chunks as f64 / secs,
        latency_ms_p50: percentile_ms(&latency, 0.5),
        latency_ms_p99: percentile_ms(&latency, 0.99),
        latency_ms_max: max_ms(&latency),
        duplicate_chunks_skipped: shared
            .shard_progress
            .iter()
            .map(|p| p.duplicates.load(Ordering::Relaxed))
            .sum(),
        streams_expired: shared
            .shard_progress
            .iter()
            .map(|p| p.expired.load(Ordering::Relaxed))
            .sum(),
        streams_abandoned: load(|s| &s.streams_abandoned),
        shard_recoveries: shared.shard_recoveries.load(Ordering::Relaxed),
        fencings: shared.fencings.load(Ordering::Relaxed),
        faults: shared.faults.lock().clone(),
        disk_bytes_max: shared.disk_bytes_max.load(Ordering::Relaxed),
        rss_bytes_max: shared.rss_bytes_max.load(Ordering::Relaxed),
        fragments_removed: shared.fragments_removed.load(Ordering::Relaxed),
        shard_transactions: shared
            .shard_progress
            .iter()
            .map(|p| p.txns.load(Ordering::Relaxed))
            .sum(),
        completed,
    }
}
