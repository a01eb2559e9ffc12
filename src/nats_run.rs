//! `stream-sum run --nats URL[,URL...]`: the same chunkers, summer shards and Sum tailers as
//! `run`, over JetStream streams instead of a data directory, with shard ownership shared
//! between processes through leases.
//!
//! Only the choice of backend and ownership differ from [`crate::run`]: the chunker is
//! `Chunker<NatsFrames>`, the shard `Shard<Summer, NatsFrames>`, the tailer the same generic
//! `tail_sums`. Every process runs its own chunkers (with its own run id, from the `runs`
//! stream) and tails every shard log (Sums of other processes' streams are counted, not
//! verified). For each partition a thread tries to take the shard's lease; while it holds it, it
//! recovers the shard from its stream and runs transactions, renewing the lease every third of
//! its TTL. It gives the shard up when renewal fails for two thirds of the TTL, when the lease
//! was taken, or when an append is fenced (another owner moved the shard log's head); then it
//! goes back to trying for the lease. A process that stops releases its leases.
//!
//! Shards are split between processes: each process holds a `member-NN` lease while it
//! runs, counts the live members every third of the TTL, and takes at most its share of the
//! shards (partitions / members, rounded up); one holding more than its share gives the extras
//! up at a transaction boundary, so a process that joins gets shards and one that leaves (or
//! dies: its leases expire) has its shards taken over.
//!
//! Processes sharing a cluster must agree on `--partitions`: the first run claims the count in
//! the stream `partitions` (one record, appended only to an empty stream, so of runs starting
//! together exactly one count wins), and a run with another count is refused (exit 2) before it
//! creates any stream.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use ss_chunker::chunker::{Chunker, ChunkerConfig};
use ss_chunker::stream_gen::{chunk_journal_name, shard_log_name, RUN_ID_MAX};
use ss_consumer::shard::{Shard, ShardConfig, ShardError};
use ss_consumer::summer::Summer;
use ss_log::{AppendError, Batch, FrameJournal, FrameReader, PendingFrame};
use ss_nats::{Lease, Leases, Nats, NatsError, NatsFrames, StreamSpec};
use tokio::runtime::{Handle, Runtime};

use crate::cli::{FaultMode, RunArgs};
use crate::exit::{EXIT_ERROR, EXIT_OK, EXIT_USAGE, EXIT_VIOLATION};
use crate::maintenance::sample_rss;
use crate::run::{
    check_limits, frame_needed_bytes, install_stop_signals, log_stopped, new_shared, summarize, supervise,
};
use crate::runs::{RunStart, RUNS_JOURNAL};
use crate::shards::log_recovered;
use crate::state::Shared;
use crate::tailing::tail_sums;

/// Connects to the cluster and opens every stream a command needs, checking first that none
/// exists with other settings (so a mismatch writes nothing). Errors are printed; `Err(code)`
/// is the exit status.
pub(crate) fn connect(rt: &Runtime, urls: &str) -> Result<Nats, u8> {
    rt.block_on(Nats::connect(urls)).map_err(|e| {
        crate::exit::errln!("stream-sum: error: {e}");
        EXIT_ERROR
    })
}

/// A runtime for the NATS client; the chunker, shard and tailer threads block on it.
pub(crate) fn runtime() -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the NATS client runtime")
}

pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    let urls = args.cluster.nats.clone().expect("--nats");
    if let Some(usage) = check_limits(&args).err().or_else(|| unsupported(&args)) {
        crate::exit::errln!("stream-sum: error: {usage}");
        return Ok(EXIT_USAGE);
    }
    let rt = runtime()?;
    let nats = match connect(&rt, &urls) {
        Ok(n) => n,
        Err(code) => return Ok(code),
    };
    let spec = StreamSpec {
        replicas: args.cluster.replicas,
    };
    let frame_max = nats
        .max_payload_bytes()
        .saturating_sub(ss_nats::journal::HEADER_ROOM_BYTES) as u64;
    let frame_needed = frame_needed_bytes(&args);
    if frame_max < frame_needed {
        crate::exit::errln!(
            "stream-sum: error: the server's max_payload ({} bytes) is too small for this run: a frame must hold {frame_needed} bytes (a chunk batch with --max-chunk-bytes {}, or a summer snapshot of {} x {} streams); raise max_payload or lower those",
            nats.max_payload_bytes(),
            args.max_chunk_bytes,
            args.streams,
            args.chunkers
        );
        return Ok(EXIT_USAGE);
    }
    let held = match rt.block_on(nats.journal_names()) {
        Ok(held) => held,
        Err(e) => {
            crate::exit::errln!("stream-sum: error: {e}");
            return Ok(EXIT_ERROR);
        }
    };
    if let Err(e) =
        crate::run::check_partitions_held(&held, args.partitions, &format!("the cluster at {urls}"))
    {
        crate::exit::errln!("stream-sum: error: {e}");
        return Ok(EXIT_USAGE);
    }
    if let Err(e) = check_streams_whole(&rt, &nats, &urls, &held) {
        crate::exit::errln!("stream-sum: error: {e:#}");
        return Ok(EXIT_ERROR);
    }
    let mut names = vec![PARTITIONS_JOURNAL.to_string(), RUNS_JOURNAL.to_string()];
    for p in 0..args.partitions {
        names.push(chunk_journal_name(p));
        names.push(shard_log_name(p));
    }
    // Every stream's settings are checked before anything is created (a mismatch writes
    // nothing), and the partition count is claimed before any partition's stream is created (a
    // refused run leaves no stream that would make the cluster hold more partitions).
    if let Err(e) = rt.block_on(check_all(&nats, &names, spec)) {
        crate::exit::errln!("stream-sum: error: {e}");
        return Ok(EXIT_ERROR);
    }
    match claim_partitions(&rt, &nats, spec, args.partitions) {
        Ok(None) => {}
        Ok(Some(claimed)) => {
            crate::exit::errln!(
                "stream-sum: error: the cluster at {urls} runs {claimed} partitions (claimed by the first run on it), but --partitions is {}: every process sharing a cluster's shards must run the same count, or some shards get no owner; run with --partitions {claimed} (to change the count, delete the stream {PARTITIONS_JOURNAL:?} while no run is active; fewer partitions than the streams hold is refused anyway)",
                args.partitions
            );
            return Ok(EXIT_USAGE);
        }
        Err(e) => {
            crate::exit::errln!("stream-sum: error: claiming the partition count: {e:#}");
            return Ok(EXIT_ERROR);
        }
    }
    let journals = match rt.block_on(open_all(&nats, &names, spec)) {
        Ok(j) => j,
        Err(e) => {
            crate::exit::errln!("stream-sum: error: {e}");
            return Ok(EXIT_ERROR);
        }
    };
    let leases = match rt.block_on(Leases::open(
        nats.jetstream(),
        spec.replicas,
        args.cluster.lease_ttl,
    )) {
        Ok(l) => l,
        Err(e) => {
            crate::exit::errln!("stream-sum: error: {e}");
            return Ok(EXIT_ERROR);
        }
    };
    let frames = |name: &str| NatsFrames::new(journals[name].clone(), rt.handle().clone());
    let run = take_run_id(&frames(RUNS_JOURNAL), args.seed)?;
    let inputs: Vec<NatsFrames> = (0..args.partitions)
        .map(|p| frames(&chunk_journal_name(p)))
        .collect();
    let shard_logs: Vec<NatsFrames> = (0..args.partitions).map(|p| frames(&shard_log_name(p))).collect();
    let mut tail_heads = Vec::new();
    for j in &shard_logs {
        tail_heads.push(j.durable_head()?);
    }
    let shared = new_shared(&args, run.run_id, tail_heads, frame_max);
    install_stop_signals(shared.clone())?;
    let owner = format!("pid{}-run{}", std::process::id(), run.run_id);
    crate::exit::errln!(
        "stream-sum: run {} on NATS {urls} as {owner} ({} partitions shared by lease, {} chunkers x {} streams, replicas {}, duration {}, SLA {:?})",
        run.run_id,
        args.partitions,
        args.chunkers,
        args.streams,
        spec.replicas,
        args.limit().map_or("forever".to_string(), |d| format!("{d:?}")),
        args.sla
    );
    tracing::info!(
        run_id = run.run_id,
        nats = urls.as_str(),
        owner = owner.as_str(),
        partitions = args.partitions,
        chunkers = args.chunkers,
        streams = args.streams,
        duration_s = args.limit().map(|d| d.as_secs_f64()),
        sla_s = args.sla.as_secs_f64(),
        max_mb_per_s = args.max_mb_per_s,
        replicas = spec.replicas,
        lease_ttl_s = args.cluster.lease_ttl.as_secs_f64(),
        "run starting"
    );

    let balance = Arc::new(Balance {
        target: AtomicUsize::new(0),
        held: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
    });
    let membership = {
        let (leases, owner, rt, balance) = (
            leases.clone(),
            owner.clone(),
            rt.handle().clone(),
            balance.clone(),
        );
        let partitions = args.partitions;
        std::thread::Builder::new()
            .name("membership".into())
            .spawn(move || membership(&leases, &owner, &rt, &balance, partitions))
            .expect("spawn membership")
    };
    let tailers: Vec<JoinHandle<()>> = shard_logs
        .iter()
        .enumerate()
        .map(|(p, j)| {
            let (j, shared) = (j.clone(), shared.clone());
            let start = shared.sums.tail_offset[p].load(Ordering::SeqCst);
            std::thread::Builder::new()
                .name(format!("tail-{}", j.name()))
                .spawn(move || tail_sums(p, j, start, &shared))
                .expect("spawn tailer")
        })
        .collect();
    let shards: Vec<JoinHandle<()>> = (0..args.partitions)
        .map(|p| {
            let owned = OwnedShard {
                p,
                input: inputs[p].clone(),
                log: shard_logs[p].clone(),
                leases: leases.clone(),
                owner: owner.clone(),
                rt: rt.handle().clone(),
                shared: shared.clone(),
                balance: balance.clone(),
            };
            std::thread::Builder::new()
                .name(format!("shard-{p:03}"))
                .spawn(move || owned.run())
                .expect("spawn shard")
        })
        .collect();
    let started = Instant::now();
    for slot in 0..args.chunkers {
        spawn_chunker(&args, run.run_id, &inputs, &shared, slot);
    }
    // Anonymous RSS once a second, as the embedded run's maintenance thread samples it; the
    // "disk" figure is the bytes the run's streams store (one replica's copy), every 5 s.
    let stored: Vec<ss_nats::NatsJournal> = (0..args.partitions)
        .flat_map(|p| [chunk_journal_name(p), shard_log_name(p)])
        .map(|name| journals[&name].clone())
        .collect();
    let mut rss_sampled_at: Option<Instant> = None;
    let mut stored_sampled_at: Option<Instant> = None;
    let completed = supervise(&args, &shared, started, &mut |shared, now| {
        if rss_sampled_at.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1)) {
            rss_sampled_at = Some(now);
            sample_rss(shared);
        }
        if stored_sampled_at.is_none_or(|at| now.duration_since(at) >= STORED_BYTES_INTERVAL) {
            stored_sampled_at = Some(now);
            sample_stored_bytes(&rt, &stored, shared);
        }
    });
    let elapsed = started.elapsed();
    if completed {
        let handles: Vec<_> = std::mem::take(&mut *shared.chunkers.handles.lock());
        for h in handles {
            let _ = h.join();
        }
        shared.run.stop_shards.store(true, Ordering::SeqCst);
        for h in shards {
            let _ = h.join();
        }
        shared.run.stop_tailers.store(true, Ordering::SeqCst);
        for h in tailers {
            let _ = h.join();
        }
    } else {
        // Stop everything (shards release their leases) without waiting for input to drain:
        // every thread must be done with the runtime before it is dropped.
        shared.run.abort.store(true, Ordering::SeqCst);
        shared.run.stop_chunkers.store(true, Ordering::SeqCst);
        shared
            .chunkers
            .die
            .iter()
            .for_each(|d| d.store(true, Ordering::SeqCst));
        shared.run.stop_shards.store(true, Ordering::SeqCst);
        shared.run.stop_tailers.store(true, Ordering::SeqCst);
        let handles: Vec<_> = std::mem::take(&mut *shared.chunkers.handles.lock());
        for h in handles.into_iter().chain(shards).chain(tailers) {
            let _ = h.join();
        }
    }
    balance.stop.store(true, Ordering::SeqCst);
    let _ = membership.join();
    sample_rss(&shared);
    sample_stored_bytes(&rt, &stored, &shared);
    let summary = summarize(&args, &shared, elapsed, completed);
    log_stopped(&summary);
    if args.json {
        crate::exit::outln!("{}", serde_json::to_string(&summary)?);
    } else {
        crate::exit::out!("{}", summary.text());
    }
    drop(rt);
    if summary.violations > 0 {
        return Ok(EXIT_VIOLATION);
    }
    if !summary.errors.is_empty() {
        return Ok(EXIT_ERROR);
    }
    Ok(EXIT_OK)
}

/// Flags of `run` that the NATS backend does not implement.
fn unsupported(args: &RunArgs) -> Option<String> {
    let what = if args.faults != FaultMode::None {
        "--faults"
    } else if args.retention {
        "--retention (soak)"
    } else if args.report {
        "--report"
    } else if args.record.is_some() {
        "--record"
    } else if args.unsafe_split_commit {
        "--unsafe-split-commit"
    } else if args.metrics_addr.is_some() {
        "--metrics-addr"
    } else {
        return None;
    };
    Some(format!("{what} is not supported with --nats"))
}

/// Refuses (exit 3) what the embedded backend's recovery refuses and JetStream would take
/// quietly, among the streams `names` the cluster at `urls` held:
/// - a chunk stream holding chunks whose shard log is gone (deleted by hand): its Sums and
///   checkpoints are lost, `verify` would call them pending and `run` would sum the partition
///   again from its start (as `run::check_shard_logs_present` on a data directory);
/// - a stream whose first messages are gone (purged, or deleted from the front): this backend has
///   no retention and never removes a message, so a stream begins at offset 0 or was damaged.
///
/// The streams are listed again after the chunk streams' heads are read, so a shard log that a
/// live `run --nats` created meanwhile is found.
fn check_streams_whole(rt: &Runtime, nats: &Nats, urls: &str, names: &[String]) -> anyhow::Result<()> {
    let ours = |n: &&String| n.starts_with("chunks-") || n.starts_with("sums-");
    let mut firsts = Vec::new();
    let mut heads = std::collections::HashMap::new();
    for name in names.iter().filter(ours) {
        let journal = rt.block_on(nats.existing_journal(name))?;
        // One stream-info request: the first and last sequences, and the messages deleted
        // from inside (JetStream's `num_deleted`).
        let state = rt.block_on(journal.state("reading the stream's state"))?;
        firsts.push((name, state.first_sequence.max(1) - 1));
        heads.insert(name.as_str(), state.last_sequence);
        let deleted = state.deleted_count.unwrap_or(0);
        if deleted > 0 {
            let held = held_in(name);
            anyhow::bail!(
                "stream {name:?} on the cluster at {urls} has {deleted} message(s) deleted from inside it: the JetStream backend never removes one, so the {held} they held are lost (`nats stream info {name}` lists them with --deleted); restore the stream, or delete it and its partner (chunks-NNN and sums-NNN of the same partition) to start the partition over"
            );
        }
    }
    let names_after = rt.block_on(nats.journal_names())?;
    crate::run::check_shard_logs_present(names, &names_after, |name| {
        Ok(heads.get(name).copied().unwrap_or(0))
    })
    .with_context(|| format!("on the cluster at {urls}"))?;
    for (name, first) in firsts {
        if first > 0 {
            let held = held_in(name);
            anyhow::bail!(
                "stream {name:?} on the cluster at {urls} begins at offset {first} (sequence {}): the messages before it were removed (purged, or deleted by hand), and the JetStream backend never removes one (it has no retention), so the {held} they held are lost; restore the stream, or delete it and its partner (chunks-NNN and sums-NNN of the same partition) to start the partition over",
                first + 1
            );
        }
    }
    Ok(())
}

/// What the stream `name` (a chunk stream or a shard log) holds, for damage messages.
fn held_in(name: &str) -> &'static str {
    if name.starts_with("chunks-") {
        "chunks"
    } else {
        "Sums and checkpoints"
    }
}

/// Checks every existing stream of `names` has the settings `spec` needs; creates nothing.
async fn check_all(nats: &Nats, names: &[String], spec: StreamSpec) -> Result<(), NatsError> {
    for name in names {
        nats.check_existing(name, spec).await?;
    }
    Ok(())
}

/// How often a JetStream run samples its streams' stored bytes (one stream-info request per
/// stream: kept rare, the servers are busy with the run).
const STORED_BYTES_INTERVAL: Duration = Duration::from_secs(5);

/// Records the bytes `streams` store as the run's disk figure (the summary's "disk (max)"); a
/// sample that cannot be taken within a second, or fails, is skipped.
fn sample_stored_bytes(rt: &tokio::runtime::Runtime, streams: &[ss_nats::NatsJournal], shared: &Shared) {
    let sum = async {
        let mut total = 0u64;
        for s in streams {
            total += s.stored_bytes().await.ok()?;
        }
        Some(total)
    };
    // (The timer is made inside the runtime: this runs on the supervising thread.)
    let total = rt.block_on(async { tokio::time::timeout(Duration::from_secs(1), sum).await });
    if let Ok(Some(bytes)) = total {
        shared.resources.disk_bytes.store(bytes, Ordering::Relaxed);
        shared
            .resources
            .disk_bytes_max
            .fetch_max(bytes, Ordering::Relaxed);
    }
}

/// Opens the journals `names`: first checks every existing one (so a mismatch anywhere creates
/// nothing), then creates the missing ones.
pub(crate) async fn open_all(
    nats: &Nats,
    names: &[String],
    spec: StreamSpec,
) -> Result<std::collections::HashMap<String, ss_nats::NatsJournal>, NatsError> {
    check_all(nats, names, spec).await?;
    let mut journals = std::collections::HashMap::new();
    for name in names {
        journals.insert(name.clone(), nats.journal(name, spec).await?);
    }
    Ok(journals)
}

/// The stream holding the cluster's partition count: one [`PartitionCount`] record, appended by
/// the first run conditionally on the stream being empty (`Nats-Expected-Last-Sequence: 0`,
/// which holds under races, docs/design.md), so of runs starting together exactly one count wins.
pub(crate) const PARTITIONS_JOURNAL: &str = "partitions";

/// The record in [`PARTITIONS_JOURNAL`], little-endian:
///
/// ```text
/// PartitionCount 'P' 1  partitions u32
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartitionCount {
    pub(crate) partitions: u32,
}

const TAG_PARTITIONS: u8 = b'P';
const PARTITION_COUNT_BYTES: usize = 2 + 4;

impl PartitionCount {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(PARTITION_COUNT_BYTES);
        v.extend_from_slice(&[TAG_PARTITIONS, 1]);
        v.extend_from_slice(&self.partitions.to_le_bytes());
        v
    }

    pub(crate) fn decode(b: &[u8]) -> Option<PartitionCount> {
        if b.len() != PARTITION_COUNT_BYTES || b[0] != TAG_PARTITIONS || b[1] != 1 {
            return None;
        }
        Some(PartitionCount {
            partitions: u32::from_le_bytes(b[2..6].try_into().ok()?),
        })
    }
}

/// Claims `partitions` as the cluster's partition count if none is claimed yet; else reads the
/// claimed count. `Some(claimed)` if it differs from `partitions` (the run must not start).
fn claim_partitions(
    rt: &Runtime,
    nats: &Nats,
    spec: StreamSpec,
    partitions: usize,
) -> anyhow::Result<Option<usize>> {
    let journal = rt.block_on(nats.journal(PARTITIONS_JOURNAL, spec))?;
    let frames = NatsFrames::new(journal, rt.handle().clone());
    let record = PartitionCount {
        partitions: u32::try_from(partitions).context("--partitions")?,
    };
    match frames.submit_if(0, &Batch::single(&record.encode())) {
        Ok(pending) => {
            pending.wait()?;
            return Ok(None);
        }
        // Claimed already (by a run earlier, or one starting at the same moment).
        Err(AppendError::Conflict { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let first = frames
        .reader(0)?
        .try_next()?
        .with_context(|| format!("stream {PARTITIONS_JOURNAL:?} holds no record"))?;
    let message = first.messages().next().context("an empty frame")??;
    let claimed = PartitionCount::decode(message)
        .with_context(|| format!("stream {PARTITIONS_JOURNAL:?} sequence 1: not a partition count record"))?
        .partitions as usize;
    Ok((claimed != partitions).then_some(claimed))
}

/// Takes the next run id: one more than the last run record, appended conditionally on the
/// head it read (two processes starting at once get different ids).
fn take_run_id(runs: &NatsFrames, seed: u64) -> anyhow::Result<RunStart> {
    loop {
        let head = runs.durable_head()?;
        let last = match runs.last_frame()? {
            None => 0,
            Some(frame) => {
                let msg = frame.messages().next().context("empty run record")??;
                RunStart::decode(msg)
                    .with_context(|| {
                        format!("stream {RUNS_JOURNAL:?} sequence {}: not a run record", frame.end)
                    })?
                    .run_id
            }
        };
        let run_id = last + 1;
        anyhow::ensure!(
            run_id <= RUN_ID_MAX,
            "run ids exhausted ({last} runs on this cluster)"
        );
        let record = RunStart {
            run_id,
            seed,
            started_unix_ms: ss_nats::lease::now_unix_ms(),
        };
        match runs.submit_if(head, &Batch::single(&record.encode())) {
            Ok(pending) => {
                pending.wait()?;
                return Ok(record);
            }
            Err(AppendError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn spawn_chunker(args: &RunArgs, run_id: u32, inputs: &[NatsFrames], shared: &Arc<Shared>, slot: usize) {
    let mut config = ChunkerConfig::new(
        slot as u8,
        run_id,
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
        inputs.to_vec(),
        shared.sums.verifiers[slot].clone(),
        shared.chunkers.stats[slot].clone(),
    );
    shared.chunkers.running.fetch_add(1, Ordering::SeqCst);
    shared.chunkers.slots.lock().push(slot);
    let thread_shared = shared.clone();
    let handle = std::thread::Builder::new()
        .name(format!("chunker-{slot}"))
        .spawn(move || {
            let shared = thread_shared;
            if let Err(e) = chunker.run_or_die(&shared.run.stop_chunkers, &shared.chunkers.die[slot]) {
                match e.append_error() {
                    Some(append) => shared.run.append_error(format!("chunker {slot}: {e}"), append),
                    None => shared.run.error(format!("chunker {slot}: {e}")),
                }
            }
            shared.chunkers.running.fetch_sub(1, Ordering::SeqCst);
        })
        .expect("spawn chunker");
    shared.chunkers.handles.lock().push(handle);
}

/// This process's share of the shards.
struct Balance {
    /// Shards this process should hold at most (0 until the members were first counted).
    target: AtomicUsize,
    /// Shards it holds.
    held: AtomicUsize,
    stop: AtomicBool,
}

impl Balance {
    /// Takes one more shard's place if under the share.
    fn try_take(&self) -> bool {
        let target = self.target.load(Ordering::SeqCst);
        self.held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |h| {
                (h < target).then_some(h + 1)
            })
            .is_ok()
    }

    /// Gives one shard's place up if over the share (one shard at a time decides to).
    fn over_share(&self) -> bool {
        let target = self.target.load(Ordering::SeqCst);
        self.held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |h| {
                (h > target).then(|| h - 1)
            })
            .is_ok()
    }
}

/// Runs `f` on `rt`, giving up after `bound`.
fn bounded<F: std::future::Future>(
    rt: &Handle,
    bound: Duration,
    f: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    rt.block_on(async { tokio::time::timeout(bound, f).await })
}

/// Most processes that can share one cluster's shards (member slots in the lease bucket).
const MEMBER_SLOTS: usize = 16;

/// Keeps one `member-NN` lease for this process and its share of the shards up to date: the
/// live members are the unexpired `member-NN` leases.
fn membership(leases: &Leases, owner: &str, rt: &Handle, balance: &Balance, partitions: usize) {
    // Every request is bounded, so a hung request cannot freeze the share; and the stop flag is
    // checked between requests: with the cluster gone, a pass of 2 x MEMBER_SLOTS requests each
    // waiting out its bound once kept a stopping run silent for minutes.
    let bound = leases.ttl();
    let stopping = || balance.stop.load(Ordering::SeqCst);
    let mut mine: Option<Lease> = None;
    while !balance.stop.load(Ordering::SeqCst) {
        if let Some(lease) = mine.as_mut() {
            if !matches!(bounded(rt, bound, leases.renew(lease)), Ok(Ok(true))) {
                mine = None;
            }
        }
        if mine.is_none() {
            for i in (0..MEMBER_SLOTS).take_while(|_| !stopping()) {
                if let Ok(Ok(Some(lease))) =
                    bounded(rt, bound, leases.try_acquire(&format!("member-{i:02}"), owner))
                {
                    mine = Some(lease);
                    break;
                }
            }
        }
        let now = ss_nats::lease::now_unix_ms();
        let mut live = 0;
        let mut counted = true;
        for i in 0..MEMBER_SLOTS {
            if stopping() {
                counted = false;
                break;
            }
            match bounded(rt, bound, leases.holder(&format!("member-{i:02}"))) {
                Ok(Ok(Some(h))) if h.expires_unix_ms > now => live += 1,
                Ok(Ok(_)) => {}
                _ => counted = false,
            }
        }
        if counted {
            let n = live.max(1);
            let target = partitions.div_ceil(n);
            if balance.target.swap(target, Ordering::SeqCst) != target {
                tracing::info!(
                    owner,
                    live_processes = n,
                    shards_max = target,
                    "membership changed"
                );
            }
        }
        let next = Instant::now() + leases.ttl() / 3;
        while Instant::now() < next && !balance.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if let Some(lease) = mine {
        let _ = bounded(rt, bound, leases.release(&lease));
    }
}

/// One partition's shard as this process competes for it.
struct OwnedShard {
    p: usize,
    input: NatsFrames,
    log: NatsFrames,
    leases: Leases,
    owner: String,
    rt: Handle,
    shared: Arc<Shared>,
    balance: Arc<Balance>,
}

/// Why an owner gave a shard up.
enum GaveUp {
    /// The run is ending (the lease is released).
    Stop,
    /// More shards than this process's share (the lease is released; its place was already
    /// given back).
    Rebalance,
    /// The lease was lost or could not be renewed in time, or another owner fenced us.
    Lost(String),
}

impl OwnedShard {
    fn key(&self) -> String {
        format!("shard-{:03}", self.p)
    }

    fn run(self) {
        let retry = (self.leases.ttl() / 4).min(Duration::from_millis(500));
        loop {
            if self.shared.run.abort.load(Ordering::SeqCst)
                || self.shared.run.stop_shards.load(Ordering::SeqCst)
            {
                return;
            }
            if !self.balance.try_take() {
                std::thread::sleep(retry);
                continue;
            }
            let lease = match self
                .rt
                .block_on(self.leases.try_acquire(&self.key(), &self.owner))
            {
                Ok(Some(lease)) => lease,
                Ok(None) | Err(_) => {
                    // Held by a live owner, or the cluster is unreachable: try again later.
                    self.balance.held.fetch_sub(1, Ordering::SeqCst);
                    std::thread::sleep(retry);
                    continue;
                }
            };
            let (lease, outcome) = self.own(lease);
            match outcome {
                GaveUp::Stop => {
                    self.balance.held.fetch_sub(1, Ordering::SeqCst);
                    let _ = self.rt.block_on(self.leases.release(&lease));
                    return;
                }
                GaveUp::Rebalance => {
                    tracing::info!(
                        shard = self.key().as_str(),
                        owner = self.owner.as_str(),
                        "shard released for rebalancing"
                    );
                    let _ = self.rt.block_on(self.leases.release(&lease));
                    // Let another process take it before competing again.
                    std::thread::sleep(self.leases.ttl() / 2);
                }
                GaveUp::Lost(why) => {
                    self.balance.held.fetch_sub(1, Ordering::SeqCst);
                    self.shared.shards.fencings.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        shard = self.key().as_str(),
                        owner = self.owner.as_str(),
                        reason = why.as_str(),
                        "shard given up"
                    );
                    std::thread::sleep(retry);
                }
            }
        }
    }

    /// Recovers the shard and runs transactions while the lease holds.
    fn own(&self, mut lease: Lease) -> (Lease, GaveUp) {
        let name = format!("shard-{:03}", self.p);
        let shared = &self.shared;
        let progress = &shared.shards.progress[self.p];
        let ttl = self.leases.ttl();
        let mut renewed_at = Instant::now();
        let summer = Summer::new(shared.shards.summer_config.clone());
        let recovery_started = Instant::now();
        let mut shard = match Shard::recover(
            &name,
            summer,
            &self.input,
            self.log.clone(),
            ShardConfig::default(),
        ) {
            Ok(s) => s,
            Err(e) if is_damage(&e) => return self.stop_for_damage(lease, e),
            Err(e) => return (lease, GaveUp::Lost(format!("recovering: {e}"))),
        };
        log_recovered(&shard, &self.input, recovery_started, &self.owner);
        shared.shards.recoveries.fetch_add(1, Ordering::Relaxed);
        loop {
            if shared.run.abort.load(Ordering::Relaxed) {
                return (lease, GaveUp::Stop);
            }
            if renewed_at.elapsed() >= ttl / 3 {
                match self.rt.block_on(self.leases.renew(&mut lease)) {
                    Ok(true) => renewed_at = Instant::now(),
                    Ok(false) => return (lease, GaveUp::Lost("the lease was taken".into())),
                    Err(_) => {} // Try again before the next transaction.
                }
            }
            if renewed_at.elapsed() >= ttl * 2 / 3 {
                return (
                    lease,
                    GaveUp::Lost(format!(
                        "could not renew the lease for {:?}",
                        renewed_at.elapsed()
                    )),
                );
            }
            if !shared.run.stop_shards.load(Ordering::SeqCst) && self.balance.over_share() {
                if let Err(e) = shard.settle() {
                    shared.run.shard_error(e.to_string(), &e);
                }
                return (lease, GaveUp::Rebalance);
            }
            if shared.run.stop_shards.load(Ordering::SeqCst) {
                match self.input.durable_head() {
                    Ok(head) if shard.input_offset() >= head => {
                        if let Err(e) = shard.settle() {
                            shared.run.shard_error(e.to_string(), &e);
                        }
                        return (lease, GaveUp::Stop);
                    }
                    _ => {}
                }
            }
            match shard.run_transaction(Duration::from_millis(20)) {
                Ok(report) => {
                    let c = shard.app().counters();
                    if report.placed_at.is_some() {
                        progress.txns.fetch_add(1, Ordering::Relaxed);
                    }
                    progress.duplicates.store(c.duplicates, Ordering::Relaxed);
                    progress.expired.store(c.expired, Ordering::Relaxed);
                }
                Err(e @ ShardError::Violation { .. }) => {
                    shared.run.violation(e.to_string());
                    return (lease, GaveUp::Stop);
                }
                Err(e) if is_damage(&e) => return self.stop_for_damage(lease, e),
                Err(ShardError::Fenced {
                    shard,
                    expected,
                    actual,
                }) => {
                    // Another owner moved the shard log's head: this owner's view is stale.
                    tracing::info!(
                        shard,
                        owner = self.owner.as_str(),
                        expected,
                        actual,
                        "owner fenced"
                    );
                    let why = format!("fenced: the shard log's head moved from {expected} to {actual}");
                    return (lease, GaveUp::Lost(why));
                }
                // Fenced by another owner, or the cluster unreachable past the retry bound: give
                // the shard up; whoever holds the lease next recovers it from its log.
                Err(e) => return (lease, GaveUp::Lost(e.to_string())),
            }
        }
    }

    /// Damage in the shard's input or log stops the run (exit 3, naming it): another owner, or
    /// this one again, would meet it too. Taking the shard up again and again instead once turned
    /// a damaged chunk message into a loop of hand-offs and an SLA violation (exit 1).
    fn stop_for_damage(&self, lease: Lease, e: ShardError) -> (Lease, GaveUp) {
        self.shared.run.shard_error(e.to_string(), &e);
        (lease, GaveUp::Stop)
    }
}

/// Whether a shard's error is damage to a stream (a message that is not a frame, a checkpoint
/// past its input's end), not a lost lease or an unreachable cluster.
fn is_damage(e: &ShardError) -> bool {
    matches!(
        e,
        ShardError::Corrupt { .. }
            | ShardError::Read {
                error: ss_log::ReadError::Corrupt { .. },
                ..
            }
    )
}

/// `journal ls --nats`: the stream-sum streams with their first and last positions, in the
/// shape `journal ls` prints for a data directory (no fragments).
pub fn journal_ls(urls: &str, as_json: bool) -> anyhow::Result<u8> {
    use std::io::Write;
    let rt = runtime()?;
    let nats = match connect(&rt, urls) {
        Ok(n) => n,
        Err(code) => return Ok(code),
    };
    let mut journals = Vec::new();
    for name in rt.block_on(nats.journal_names())? {
        let j = rt.block_on(nats.existing_journal(&name))?;
        let begin = rt.block_on(j.first_sequence())? - 1;
        let end = rt.block_on(j.head())?;
        journals.push(serde_json::json!({"name": name, "begin": begin, "end": end, "fragments": []}));
    }
    let mut out = std::io::stdout().lock();
    if as_json {
        writeln!(out, "{}", serde_json::json!({ "journals": journals }))?;
    } else {
        writeln!(
            out,
            "{:<12} {:>16} {:>16}  (stream sequences)",
            "journal", "begin", "end"
        )?;
        for j in &journals {
            let (begin, end) = (j["begin"].as_u64().unwrap_or(0), j["end"].as_u64().unwrap_or(0));
            writeln!(
                out,
                "{:<12} {begin:>16} {end:>16}",
                j["name"].as_str().unwrap_or("")
            )?;
        }
    }
    Ok(EXIT_OK)
}

/// `journal read --nats`: one JSON line per message, as `journal read` prints, up to the head
/// as of the start.
pub fn journal_read(urls: &str, name: &str, from: Option<u64>) -> anyhow::Result<u8> {
    use std::io::Write;
    let rt = runtime()?;
    let nats = match connect(&rt, urls) {
        Ok(n) => n,
        Err(code) => return Ok(code),
    };
    let j = match rt.block_on(nats.existing_journal(name)) {
        Ok(j) => j,
        Err(e) => {
            crate::exit::errln!("stream-sum: error: {e}");
            return Ok(EXIT_ERROR);
        }
    };
    let head = rt.block_on(j.head())?;
    let start = match from {
        Some(f) => f,
        None => rt.block_on(j.first_sequence())? - 1,
    };
    anyhow::ensure!(
        start <= head,
        "journal {name:?}: --from {start} is past the journal's end ({head})"
    );
    let mut reader = rt.block_on(j.reader(start))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while reader.position() < head {
        let frame = rt.block_on(reader.next())?;
        for m in ss_log::frame::messages(&frame.payload) {
            let line = crate::journal_cmd::message_json(name, frame.sequence - 1, m?);
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    Ok(EXIT_OK)
}

/// `verify --nats`: the same exactly-once check as for a data directory, over the cluster's
/// streams (shard logs' heads captured before the chunk journals', for a consistent cut).
pub fn verify(urls: &str, json: bool) -> anyhow::Result<u8> {
    let rt = runtime()?;
    let nats = match connect(&rt, urls) {
        Ok(n) => n,
        Err(code) => return Ok(code),
    };
    let names = rt.block_on(nats.journal_names())?;
    if !names
        .iter()
        .any(|n| n.starts_with("chunks-") || n.starts_with("sums-"))
    {
        anyhow::bail!(
            "the cluster at {urls} holds no stream-sum streams (no chunks-NNN or sums-NNN): nothing to verify (wrong cluster, or no `run --nats` wrote there yet)"
        );
    }
    check_streams_whole(&rt, &nats, urls, &names)?;
    let open = |prefix: &str| -> anyhow::Result<Vec<NatsFrames>> {
        let mut v = Vec::new();
        for n in names.iter().filter(|n| n.starts_with(prefix)) {
            v.push(NatsFrames::new(
                rt.block_on(nats.existing_journal(n))?,
                rt.handle().clone(),
            ));
        }
        Ok(v)
    };
    let sum_journals = open("sums-")?;
    let chunk_journals = open("chunks-")?;
    let code = crate::verify::check_boundary(&format!("NATS {urls}"), &sum_journals, &chunk_journals, json)?;
    drop((sum_journals, chunk_journals));
    drop(rt);
    Ok(code)
}
