//! `stream-sum run`: chunkers, summer shards and Sum tailers in one process over a data directory.
//!
//! Threads: one per summer shard (recover from its shard log, then transactions), one per shard
//! log tailer (delivers each durable Sum to the verifier of the chunker that owns the stream),
//! one per chunker. The main thread shows progress, checks SLAs and stops everything gracefully:
//! at the end of `--duration`, on the first SIGINT (Ctrl-C) or SIGTERM, or at the free-space
//! guard, the chunkers start no new streams, finish the open ones and the run ends once every
//! finished stream has its Sum.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use parking_lot::Mutex;
use ss_chunker::chunker::FLUSH_BYTES_DEFAULT;
use ss_chunker::stream_gen::{chunk_journal_name, shard_log_name, CHUNKERS_MAX};
use ss_chunker::verifier::Verifier;
use ss_consumer::shard::{checkpoint_frame_overhead_bytes, ShardConfig};
use ss_consumer::summer::SummerConfig;
use ss_log::{AppendError, Journal, Log, OpenError};

use crate::chunkers::{spawn_chunker, ChunkerCtx};
use crate::cli::{FaultMode, RunArgs};
use crate::config::{log_options_for, summer_config, MAX_CHUNK_BYTES_MAX, OPEN_STREAMS_MAX};
use crate::exit::{EXIT_ERROR, EXIT_OK, EXIT_USAGE, EXIT_VIOLATION};
use crate::faults::FaultInjector;
use crate::maintenance::{available_bytes, FreeSpaceGuard, Maintenance};
use crate::metrics_server::MetricsServer;
use crate::record::{Recorder, Sampler, SummaryLine};
use crate::runs::RunStart;
use crate::shards::run_shard;
use crate::state::{ChunkerSupervision, Resources, RunState, ShardSupervision, Shared, SumTailing};
use crate::summary::{max_ms, percentile_ms, Progress, Summary, SyncTail};
use crate::tailing::{start_reporter, tail_sums};

/// The hidden test switches (`--faults`, `--unsafe-split-commit`) need a build with fault
/// injection (as `cargo test` builds the binary); a normal build refuses them as usage errors.
fn fault_switches_available(args: &RunArgs) -> Result<(), String> {
    if args.faults != FaultMode::None && !ss_consumer::FAULT_INJECTION {
        return Err(ss_consumer::shard::FaultInjectionDisabled { what: "--faults" }.to_string());
    }
    ShardConfig::default()
        .with_unsafe_split_commit(args.unsafe_split_commit)
        .map(drop)
        .map_err(|e| e.to_string())
}

// Over 70 lines: the run's steps in order, each a named helper, with the metrics and record
// hooks (issue 14) inline where the samples are taken; moving them would hide when they run.
pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    if let Err(e) = check_args(&args) {
        crate::exit::errln!("stream-sum: error: {e}");
        return Ok(EXIT_USAGE);
    }
    // The metrics address is bound first, then the record file is opened: a port in use or a
    // path that cannot be written stops the run before anything else is touched.
    let Some((metrics, mut recorder)) = open_outputs(&args) else {
        return Ok(EXIT_ERROR);
    };
    let (log, run) = match open_data(&args)? {
        Ok(opened) => opened,
        Err(exit) => return Ok(exit),
    };
    let mut inputs = Vec::new();
    let mut shard_logs = Vec::new();
    for p in 0..args.partitions {
        inputs.push(log.journal(&chunk_journal_name(p))?);
        shard_logs.push(log.journal(&shard_log_name(p))?);
    }
    let tail_heads = shard_logs.iter().map(Journal::durable_head).collect();
    let frame_max_bytes = log_options_for(args.fragment_max_bytes).frame_max_bytes;
    let shared = new_shared(&args, run.run_id, tail_heads, frame_max_bytes);
    install_stop_signals(shared.clone())?;
    let reporter = args.report.then(|| start_reporter(&shared));
    crate::exit::errln!(
        "stream-sum: run {} over {} ({} partitions, {} chunkers x {} streams, duration {}, SLA {:?})",
        run.run_id,
        args.data.display(),
        args.partitions,
        args.chunkers,
        args.streams,
        args.limit().map_or("forever".to_string(), |d| format!("{d:?}")),
        args.sla
    );
    tracing::info!(
        run_id = run.run_id,
        data = args.data.display().to_string().as_str(),
        partitions = args.partitions,
        chunkers = args.chunkers,
        streams = args.streams,
        duration_s = args.limit().map(|d| d.as_secs_f64()),
        sla_s = args.sla.as_secs_f64(),
        max_mb_per_s = args.max_mb_per_s,
        retention = args.retention,
        faults = args.faults.name(),
        "run starting"
    );
    let watch = metrics
        .map(|m| m.start(inputs.iter().chain(&shard_logs).cloned().collect()))
        .transpose()
        .context("starting the metrics server")?;

    let tailers = start_tailers(&shard_logs, &shared);
    let shards = start_shards(&args, &inputs, &shard_logs, &shared);
    // No chunk is published before every shard has recovered: a shard that refuses its logs
    // (damage) ends the run with the chunk journals as they were, and the next run reports the
    // same damage instead of what new chunks on top of it would look like.
    while shared.shards.recoveries.load(Ordering::SeqCst) < args.partitions as u64
        && !shared.run.abort.load(Ordering::SeqCst)
        && !shared.run.stop_chunkers.load(Ordering::SeqCst)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    let ctx = ChunkerCtx {
        args: args.clone(),
        run_id: run.run_id,
        inputs: inputs.clone(),
    };
    if !shared.run.abort.load(Ordering::SeqCst) {
        for slot in 0..args.chunkers {
            spawn_chunker(&ctx, &shared, slot);
        }
    }
    let mut injector = FaultInjector::new(&args, shard_logs.clone(), inputs.clone());
    let maintenance = Maintenance {
        retention: args.retention,
        inputs: inputs.clone(),
        shard_logs: shard_logs.clone(),
    }
    .start(shared.clone())
    .context("starting the maintenance thread")?;
    let mut free_space = FreeSpaceGuard::new(&args.data, args.min_free_mb, args.max_chunk_bytes);

    let mut sampler = Sampler::new(started);
    let completed = supervise(&args, &shared, started, &mut |shared, now| {
        injector.tick(&ctx, shared, now);
        free_space.tick(shared, now);
        if let Some(sample) = sampler.tick(shared, now, false) {
            if let Some(watch) = &watch {
                let earlier = shared.sums.previous_runs.load(Ordering::Relaxed);
                watch.publish(&sample, sampler.latency_us(), earlier);
            }
            record(&mut recorder, &sample);
        }
    });
    let elapsed = started.elapsed();
    maintenance.stop(&shared);
    if completed {
        stop_and_join(&shared, &mut injector, shards, tailers);
    }
    let mut summary = summarize(&args, &shared, elapsed, completed);
    let mut syncs = SyncTail::default();
    for log in &shard_logs {
        syncs.add(&log.stats().fsync_seconds);
    }
    summary.shard_log_syncs = Some(syncs);
    log_stopped(&summary);
    let last = sampler
        .tick(&shared, Instant::now(), true)
        .expect("forced sample");
    if let Some(watch) = &watch {
        let earlier = shared.sums.previous_runs.load(Ordering::Relaxed);
        watch.publish(&last, sampler.latency_us(), earlier);
    }
    record(&mut recorder, &last);
    record(
        &mut recorder,
        &SummaryLine {
            kind: "summary",
            summary: &summary,
        },
    );
    shared.run.stop_reporter.store(true, Ordering::SeqCst);
    if let Some(reporter) = reporter {
        let _ = reporter.join();
    }
    report(&args, &summary, &shared)
}

/// The usage errors of a run's arguments (exit 2), checked before anything is opened.
fn check_args(args: &RunArgs) -> Result<(), String> {
    fault_switches_available(args)?;
    check_limits(args)?;
    let frame_needed = frame_needed_bytes(args);
    if log_options_for(args.fragment_max_bytes).frame_max_bytes < frame_needed {
        return Err(format!(
            "--fragment-max-bytes {} is too small for this run: a frame (at most one fragment) must hold {frame_needed} bytes (a chunk batch with --max-chunk-bytes {}, or a summer snapshot of {} x {} streams); use at least {frame_needed}",
            args.fragment_max_bytes, args.max_chunk_bytes, args.streams, args.chunkers
        ));
    }
    Ok(())
}

/// The limits on a run's sizes, whatever its backend.
/// Smallest chunk rate a chunker is given under `--max-mb-per-s` (1 KB/s).
const RATE_PER_CHUNKER_MIN_MB_PER_S: f64 = 0.001;

pub(crate) fn check_limits(args: &RunArgs) -> Result<(), String> {
    if args.chunkers > CHUNKERS_MAX {
        return Err(format!("--chunkers must be at most {CHUNKERS_MAX}"));
    }
    if args
        .streams
        .checked_mul(args.chunkers)
        .is_none_or(|open| open > OPEN_STREAMS_MAX)
    {
        return Err(format!(
            "--streams x --chunkers must be at most {OPEN_STREAMS_MAX} (the open streams one summer shard may hold)"
        ));
    }
    if args.max_chunk_bytes > MAX_CHUNK_BYTES_MAX {
        return Err(format!(
            "--max-chunk-bytes must be at most {MAX_CHUNK_BYTES_MAX} (chunks travel in one journal frame)"
        ));
    }
    if args.partitions > 1000 {
        return Err("--partitions must be at most 1000".into());
    }
    if let Some(mb) = args.max_mb_per_s {
        // Each chunker paces itself to its share; a share that rounds to 0 bytes/s cannot pace.
        let least_mb = RATE_PER_CHUNKER_MIN_MB_PER_S * args.chunkers as f64;
        if mb < least_mb {
            return Err(format!(
                "--max-mb-per-s {mb} is below {RATE_PER_CHUNKER_MIN_MB_PER_S} MB/s per chunker: with \
                 --chunkers {} it must be at least {least_mb}",
                args.chunkers
            ));
        }
    }
    Ok(())
}

/// The largest frame a run writes: a chunk batch (flushed past FLUSH_BYTES_DEFAULT, plus one
/// chunk and message headers) or a summer snapshot frame (its finished window and room for four
/// times the live streams: abandoned streams awaiting expiry stay open too).
pub(crate) fn frame_needed_bytes(args: &RunArgs) -> u64 {
    let batch_bytes_max = (FLUSH_BYTES_DEFAULT + args.max_chunk_bytes + (64 << 10)) as u64;
    let snapshot_bytes_max = SummerConfig::default().snapshot_bytes_max(4 * args.streams * args.chunkers);
    batch_bytes_max.max(snapshot_bytes_max + checkpoint_frame_overhead_bytes())
}

/// Binds the metrics address and opens the record file, if asked for; `None` (the reason
/// printed) if either fails.
fn open_outputs(args: &RunArgs) -> Option<(Option<MetricsServer>, Option<Recorder>)> {
    let metrics = match args.metrics_addr.map(MetricsServer::bind).transpose() {
        Ok(m) => m,
        Err(e) => {
            let addr = args.metrics_addr.expect("bound only when given");
            crate::exit::errln!("stream-sum: error: cannot serve metrics on {addr}: {e}");
            return None;
        }
    };
    let recorder = match args.record.as_deref().map(Recorder::open).transpose() {
        Ok(r) => r,
        Err(e) => {
            let path = args.record.as_deref().unwrap_or(std::path::Path::new(""));
            crate::exit::errln!(
                "stream-sum: error: cannot open record file {}: {e}",
                path.display()
            );
            return None;
        }
    };
    if let Some(r) = &recorder {
        tracing::info!(
            path = r.path().display().to_string().as_str(),
            "record file opened"
        );
    }
    Some((metrics, recorder))
}

/// Opens the data directory and takes this run's id. `Ok(Err(exit status))`, the reason
/// printed, if the directory is in use, holds more partitions than the run serves, or the disk
/// is full.
fn open_data(args: &RunArgs) -> anyhow::Result<Result<(Log, RunStart), u8>> {
    // Before opening: a refused run leaves nothing behind (no directory, lock or journals).
    if let Some(message) = too_little_free_space(args) {
        crate::exit::errln!("stream-sum: error: {message}");
        return Ok(Err(EXIT_ERROR));
    }
    let log = match Log::open(&args.data, log_options_for(args.fragment_max_bytes)) {
        Ok(log) => log,
        Err(e @ OpenError::Locked { .. }) => {
            crate::exit::errln!(
                "stream-sum: error: {e}; read-only commands (verify, journal ls/read) still work"
            );
            return Ok(Err(EXIT_ERROR));
        }
        Err(e) => return Err(e).with_context(|| format!("opening data directory {}", args.data.display())),
    };
    let names = log
        .journal_names()
        .with_context(|| format!("listing the journals of {}", args.data.display()))?;
    // A journal directory with no fragment file holds nothing a run must serve (a directory a
    // run made and was stopped before its first fragment, or one made by hand).
    let holding: Vec<String> = names
        .iter()
        .filter(|n| journal_has_fragments(&args.data, n))
        .cloned()
        .collect();
    if let Err(e) = check_partitions_held(&holding, args.partitions, &args.data.display().to_string()) {
        crate::exit::errln!("stream-sum: error: {e}");
        return Ok(Err(EXIT_USAGE));
    }
    // This process holds the directory's lock: nothing creates journals meanwhile.
    check_shard_logs_present(&names, &names, |chunks| {
        Ok(log.existing_journal(chunks)?.durable_head())
    })?;
    match crate::runs::take_run_id(&log, &names, args.seed) {
        Ok(run) => Ok(Ok((log, run))),
        Err(e) => match e.downcast_ref::<AppendError>().map(AppendError::root_cause) {
            Some(cause @ AppendError::NoSpace { .. }) => {
                crate::exit::errln!("stream-sum: error: {}", no_space_advice(cause, &args.data));
                Ok(Err(EXIT_ERROR))
            }
            _ => Err(e),
        },
    }
}

/// The refusal of a run that would start with less free space than `--min-free-mb`, if so.
fn too_little_free_space(args: &RunArgs) -> Option<String> {
    if args.min_free_mb == 0 {
        return None;
    }
    // A file system that cannot say is not a reason to refuse: the guard is then off, and a
    // full disk ends the run as it would without it.
    // The data directory, or where it will be created: its nearest existing ancestor.
    let existing = args
        .data
        .ancestors()
        .find(|a| a.exists())
        .unwrap_or(std::path::Path::new("."));
    let free = match available_bytes(existing) {
        Ok(free) => free,
        Err(e) => {
            tracing::warn!(data = %args.data.display(), error = %e, "free-space guard: statvfs failed; guard off");
            return None;
        }
    };
    let free_mb = free / 1_000_000;
    (free_mb < args.min_free_mb).then(|| {
        format!(
            "only {free_mb} MB free on the file system holding {}, under --min-free-mb {} (an unlimited run writes about 0.5 GB/s): free space, bound disk use with --retention and --max-mb-per-s, or lower --min-free-mb (0 turns the guard off)",
            args.data.display(),
            args.min_free_mb
        )
    })
}

/// Refuses `partitions` if the journals `names` (of `place`: a data directory or a cluster) cover
/// more: one past the highest `chunks-NNN` or `sums-NNN`. A run must serve every partition that
/// holds data, or streams an earlier run finished there would never get their Sums.
pub(crate) fn check_partitions_held(names: &[String], partitions: usize, place: &str) -> Result<(), String> {
    let highest = names
        .iter()
        .filter_map(|n| {
            let digits = n.strip_prefix("chunks-").or_else(|| n.strip_prefix("sums-"))?;
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((digits.parse::<usize>().ok()?, n))
        })
        .max();
    let Some((last, name)) = highest.filter(|(p, _)| *p >= partitions) else {
        return Ok(());
    };
    let held = last + 1;
    Err(format!(
        "{place} holds data for partition {last} ({name}), beyond --partitions {partitions} \
         (partitions 0 to {}): a run must serve every partition that holds data, or streams an \
         earlier run finished there would never get their Sums; run with --partitions {held} (or more)",
        partitions.saturating_sub(1),
    ))
}

/// Whether the journal `name` of the data directory `data` has a fragment file.
fn journal_has_fragments(data: &std::path::Path, name: &str) -> bool {
    std::fs::read_dir(data.join("journals").join(name)).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name()
                .to_str()
                .is_some_and(ss_log::fragment::has_fragment_name_shape)
        })
    })
}

/// Refuses a chunk journal among `names` that holds chunks (`head_of` gives its head) while its
/// shard's log is missing from `names_after`, the journals listed after those heads were taken.
/// A run creates every shard log before any chunk is published, so this is damage: the log's
/// Sums and checkpoints are gone, and a run would sum the partition again from its start (Sums
/// the chunkers already had, again) instead of resuming. (Listed after the heads, a live run's
/// shard log created since `names` was listed is there.)
pub(crate) fn check_shard_logs_present(
    names: &[String],
    names_after: &[String],
    head_of: impl Fn(&str) -> anyhow::Result<u64>,
) -> anyhow::Result<()> {
    for chunks in names.iter().filter(|n| n.starts_with("chunks-")) {
        let sums = chunks.replacen("chunks-", "sums-", 1);
        if names_after.contains(&sums) {
            continue;
        }
        let head = head_of(chunks)?;
        if head > 0 {
            anyhow::bail!(
                "journal {chunks:?} holds chunks up to offset {head}, but its shard's log {sums:?} is \
                 missing: the Sums and checkpoints it held are gone (removed by hand, or lost), and a \
                 run would sum the partition again from its start; restore {sums:?} from a backup, or \
                 remove both journals to start the partition over"
            );
        }
    }
    Ok(())
}

/// The state the run's threads share; the Sum tailers start at `tail_heads` (one per partition),
/// and the summers' limits fit frames of `frame_max_bytes`.
pub(crate) fn new_shared(
    args: &RunArgs,
    run_id: u32,
    tail_heads: Vec<u64>,
    frame_max_bytes: u64,
) -> Arc<Shared> {
    // Chunkers killed by faults are replaced in fresh slots, so stream ids are never reused.
    let slots = if args.faults == FaultMode::None {
        args.chunkers
    } else {
        (args.chunkers + 64).min(CHUNKERS_MAX)
    };
    Arc::new(Shared {
        run: RunState::new(run_id),
        shards: ShardSupervision::new(args.partitions, summer_config(args, frame_max_bytes)),
        sums: SumTailing {
            verifiers: (0..slots)
                .map(|c| Arc::new(Mutex::new(Verifier::new(run_id, c as u8, args.sla))))
                .collect(),
            previous_runs: AtomicU64::new(0),
            tail_offset: tail_heads.into_iter().map(AtomicU64::new).collect(),
        },
        chunkers: ChunkerSupervision::new(slots),
        resources: Resources::default(),
        faults: Mutex::new(Vec::new()),
    })
}

/// A Sum tailer per shard log, from its current head: every Sum of this run lands after it.
fn start_tailers(shard_logs: &[Journal], shared: &Arc<Shared>) -> Vec<JoinHandle<()>> {
    shard_logs
        .iter()
        .enumerate()
        .map(|(p, j)| {
            let (j, shared) = (j.clone(), shared.clone());
            let start = j.durable_head();
            std::thread::Builder::new()
                .name(format!("tail-{}", j.name()))
                .spawn(move || {
                    let thread = format!("tail-{}", j.name());
                    shared
                        .run
                        .reporting_panic(&thread, || tail_sums(p, j, start, &shared))
                })
                .expect("spawn tailer")
        })
        .collect()
}

/// A summer shard thread per partition.
fn start_shards(
    args: &RunArgs,
    inputs: &[Journal],
    shard_logs: &[Journal],
    shared: &Arc<Shared>,
) -> Vec<JoinHandle<()>> {
    let faults = args.faults != FaultMode::None;
    (0..args.partitions)
        .map(|p| {
            let (input, log_j, shared) = (inputs[p].clone(), shard_logs[p].clone(), shared.clone());
            // Checked before the run began (`check_args`).
            let shard_config = ShardConfig::default()
                .with_unsafe_split_commit(args.unsafe_split_commit)
                .expect("checked at start");
            std::thread::Builder::new()
                .name(format!("shard-{p:03}"))
                .spawn(move || {
                    shared.run.reporting_panic(&format!("shard-{p:03}"), || {
                        run_shard(p, input, log_j, &shared, faults, shard_config)
                    })
                })
                .expect("spawn shard")
        })
        .collect()
}

/// After a graceful stop: waits for the chunkers (their streams finished), then stops the shards
/// and the tailers once everything is applied and delivered.
fn stop_and_join(
    shared: &Shared,
    injector: &mut FaultInjector,
    shards: Vec<JoinHandle<()>>,
    tailers: Vec<JoinHandle<()>>,
) {
    let handles: Vec<_> = std::mem::take(&mut *shared.chunkers.handles.lock());
    for h in handles {
        let _ = h.join();
    }
    injector.join();
    shared.run.stop_shards.store(true, Ordering::SeqCst);
    for h in shards {
        let _ = h.join();
    }
    shared.run.stop_tailers.store(true, Ordering::SeqCst);
    for h in tailers {
        let _ = h.join();
    }
}

/// Prints the summary and returns the exit status: 1 for a violation, 3 for an error.
fn report(args: &RunArgs, summary: &Summary, shared: &Shared) -> anyhow::Result<u8> {
    if args.report {
        crate::exit::errprint!("{}", summary.text());
    } else if args.json {
        crate::exit::outln!("{}", serde_json::to_string(summary)?);
    } else {
        crate::exit::out!("{}", summary.text());
    }
    if let Some(cause) = shared.run.no_space.lock().as_ref() {
        crate::exit::errln!("stream-sum: error: {}", no_space_advice(cause, &args.data));
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
            crate::exit::errln!(
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

/// The first SIGINT or SIGTERM stops the run gracefully, as at the end of `--duration`
/// (`signals.rs`).
pub(crate) fn install_stop_signals(shared: Arc<Shared>) -> anyhow::Result<()> {
    crate::signals::on_stop_signals("stream-sum", move |_, name| {
        crate::exit::errln!(
            "\nstream-sum: {name}: stopping: finishing open streams and waiting for their Sums (Ctrl-C or SIGTERM again to exit now)"
        );
        shared.run.request_stop(name);
    })?;
    crate::signals::stop_with_parent()
}

/// Progress, SLA checks and the graceful stop. Returns true if the run completed gracefully.
// Over 70 lines: one loop that does, once per tick, the progress line, the SLA check and the
// graceful stop; its branches share the tick's figures.
pub(crate) fn supervise(
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
            shared.run.request_stop("duration");
        }
        let mut pending = 0;
        for v in &shared.sums.verifiers {
            let mut v = v.lock();
            v.check_sla(now);
            pending += v.pending();
            if let Some(first) = v.violations().first() {
                if !shared.run.abort.swap(true, Ordering::SeqCst) {
                    tracing::error!(violation = first.0.as_str(), "violation");
                }
            }
        }
        let done = shared.run.stop_chunkers.load(Ordering::SeqCst)
            && shared.chunkers.running.load(Ordering::SeqCst) == 0
            && pending == 0;
        let aborted = shared.run.abort.load(Ordering::SeqCst);
        if now.duration_since(last_print) >= interval || done || aborted {
            let bytes = shared.chunkers.total(|s| &s.chunk_bytes);
            let chunks = shared.chunkers.total(|s| &s.chunks);
            let latency = shared.sums.latency();
            let progress = Progress {
                elapsed: now.duration_since(started),
                streams_finished: shared.chunkers.total(|s| &s.streams_finished),
                sums_verified: shared.sums.sums_verified(),
                pending,
                chunk_bytes_delta: bytes - last_bytes,
                chunks_delta: chunks - last_chunks,
                interval: now.duration_since(last_print),
                p50_ms: percentile_ms(&latency, 0.5),
                p99_ms: percentile_ms(&latency, 0.99),
                violations: shared.run.violations.lock().len() + shared.sums.verifier_violations().len(),
                stopping: shared.run.stop_chunkers.load(Ordering::Relaxed),
                resources: args.retention.then(|| {
                    (
                        shared.resources.disk_bytes.load(Ordering::Relaxed),
                        shared.resources.rss_bytes.load(Ordering::Relaxed),
                    )
                }),
            };
            if tty {
                crate::exit::errprint!("\r\x1b[2K{}", progress.line());
            } else {
                crate::exit::errln!("{}", progress.line());
            }
            (last_bytes, last_chunks, last_print) = (bytes, chunks, now);
        }
        if done || aborted {
            if tty {
                crate::exit::errln!();
            }
            return done && !aborted;
        }
    }
}

pub(crate) fn summarize(args: &RunArgs, shared: &Shared, elapsed: Duration, completed: bool) -> Summary {
    let load = |f| shared.chunkers.total(f);
    let chunks = load(|s| &s.chunks);
    let chunk_bytes = load(|s| &s.chunk_bytes);
    let mut violation_messages = shared.run.violations.lock().clone();
    violation_messages.extend(shared.sums.verifier_violations());
    let latency = shared.sums.latency();
    let secs = elapsed.as_secs_f64().max(1e-9);
    Summary {
        run_id: shared.run.run_id,
        partitions: args.partitions,
        chunkers: args.chunkers,
        streams_started: load(|s| &s.streams_started),
        streams_finished: load(|s| &s.streams_finished),
        sums_verified: shared.sums.sums_verified(),
        sums_previous_runs: shared.sums.previous_runs.load(Ordering::Relaxed),
        violations: violation_messages.len(),
        violation_messages,
        errors: shared.run.errors.lock().clone(),
        chunks,
        chunk_bytes,
        elapsed_s: elapsed.as_secs_f64(),
        chunk_mb_per_s: chunk_bytes as f64 / secs / 1e6,
        chunks_per_s: chunks as f64 / secs,
        latency_ms_p50: percentile_ms(&latency, 0.5),
        latency_ms_p99: percentile_ms(&latency, 0.99),
        latency_ms_max: max_ms(&latency),
        duplicate_chunks_skipped: shared
            .shards
            .progress
            .iter()
            .map(|p| p.duplicates.load(Ordering::Relaxed))
            .sum(),
        streams_expired: shared
            .shards
            .progress
            .iter()
            .map(|p| p.expired.load(Ordering::Relaxed))
            .sum(),
        streams_abandoned: load(|s| &s.streams_abandoned),
        shard_recoveries: shared.shards.recoveries.load(Ordering::Relaxed),
        fencings: shared.shards.fencings.load(Ordering::Relaxed),
        faults: shared.faults.lock().clone(),
        disk_bytes_max: shared.resources.disk_bytes_max.load(Ordering::Relaxed),
        rss_bytes_max: shared.resources.rss_bytes_max.load(Ordering::Relaxed),
        fragments_removed: shared.resources.fragments_removed.load(Ordering::Relaxed),
        shard_transactions: shared
            .shards
            .progress
            .iter()
            .map(|p| p.txns.load(Ordering::Relaxed))
            .sum(),
        completed,
        stopped_by: *shared.run.stop_cause.lock(),
        shard_log_syncs: None,
    }
}

/// The run's end as one event: its figures, at `warn` if it found violations or errors.
pub(crate) fn log_stopped(s: &Summary) {
    macro_rules! stopped {
        ($level:ident) => {
            tracing::$level!(
                run_id = s.run_id,
                completed = s.completed,
                elapsed_s = s.elapsed_s,
                streams_finished = s.streams_finished,
                sums_verified = s.sums_verified,
                violations = s.violations,
                errors = s.errors.len(),
                chunk_mb_per_s = s.chunk_mb_per_s,
                latency_ms_p50 = s.latency_ms_p50,
                latency_ms_p99 = s.latency_ms_p99,
                latency_ms_max = s.latency_ms_max,
                shard_recoveries = s.shard_recoveries,
                fencings = s.fencings,
                fragments_removed = s.fragments_removed,
                "run stopped"
            )
        };
    }
    if s.violations > 0 || !s.errors.is_empty() || !s.completed {
        stopped!(warn);
    } else {
        stopped!(info);
    }
}
