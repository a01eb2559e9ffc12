//! A small stream-sum workload over simulated storage, built from the real pieces, and the checks
//! of what it left against a history kept outside the journals.
//!
//! A [`Process`] is what one `stream-sum run` would be: a [`Log`] over a [`SimStorage`], two
//! partitions (chunk journal + shard log each), one [`Chunker`] on its own thread publishing
//! interleaved streams, two summer [`Shard`]s stepped by the caller's thread, and Sum tailers that
//! hand each durable Sum of this run to the chunker's [`Verifier`]. The verifier's events
//! (final chunk acknowledged durable, Sum seen durable) go to the caller, which keeps them as its
//! [`History`] (the audit's): the journals cannot vouch for themselves, so [`check`] runs the
//! exactly-once audit of `ss_consumer::audit` on them and against it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ss_chunker::chunker::{Chunker, ChunkerConfig, ChunkerStats};
use ss_chunker::stream_gen::{chunk_journal_name, partition_of, shard_log_name, split_stream_id};
use ss_chunker::verifier::{Verifier, VerifierEvent};
pub use ss_consumer::audit::History;
use ss_consumer::audit::{audit, At, ChunkIndex, Settled, SumIndex};
use ss_consumer::message::{Message, StreamId, Sum};
use ss_consumer::shard::{Shard, ShardConfig, ShardError};
use ss_consumer::summer::{Summer, SummerConfig};
use ss_log::sim::SimStorage;
use ss_log::{AppendError, Frames, Journal, Log, Options, ReadError};

/// Data directory on the simulated storage.
pub const DATA_DIR: &str = "/data";
/// Partitions: chunk journals and summer shards.
pub const PARTITIONS: usize = 2;
/// How long a shard transaction waits for input when there is none.
const SHARD_IDLE_WAIT: Duration = Duration::from_millis(1);
/// A graceful end that takes longer than this is reported as a hang.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// The journals' largest frame: small, so transactions and batches split often.
const FRAME_MAX_BYTES: u64 = 12 << 10;

/// A summer whose snapshot fits a 12 KiB frame: a finished window far longer than any seed's
/// streams (the default window of 50,000 alone would take 600 KB), and as many open streams as
/// fit beside it (81).
fn summer() -> Summer {
    let config = SummerConfig {
        finished_window: 256,
        ..SummerConfig::default()
    };
    Summer::new(config.fitting_frames_of(FRAME_MAX_BYTES))
}

/// Sizes of the workload (small, so hundreds of seeds run in seconds).
#[derive(Debug, Clone)]
pub struct Workload {
    pub seed: u64,
    /// Streams a chunker keeps open at once.
    pub streams: usize,
    pub max_chunk_bytes: usize,
    pub max_chunks_per_stream: u32,
    pub flush_bytes: usize,
    pub in_flight_max: usize,
    pub fragment_max_bytes: u64,
    /// `Options::preallocate`: zero-filled spare fragments.
    pub preallocate: bool,
    pub shard: ShardConfig,
}

impl Workload {
    pub fn options(&self, storage: &SimStorage) -> Options {
        Options {
            fragment_max_bytes: self.fragment_max_bytes,
            frame_max_bytes: FRAME_MAX_BYTES,
            batch_max_messages: 4096,
            pending_max_bytes: 64 << 10,
            preallocate: self.preallocate,
            recycle: true,
            scan_hint_interval_bytes: self.fragment_max_bytes / 4,
            write_bound_step_bytes: self.fragment_max_bytes / 8,
            storage: Arc::new(storage.clone()),
        }
    }
}

/// A shard's name, as the CLI names it.
pub fn shard_name(p: usize) -> String {
    format!("shard-{p:03}")
}

/// Keeps what the test saw acknowledged, from the verifiers' events, in the audit's [`History`].
pub trait DrainEvents {
    /// Takes every event sent so far.
    fn drain(&mut self, events: &Receiver<VerifierEvent>);
}

impl DrainEvents for History {
    fn drain(&mut self, events: &Receiver<VerifierEvent>) {
        while let Ok(event) = events.try_recv() {
            match event {
                VerifierEvent::FinalDurable {
                    stream,
                    sha1,
                    journal,
                    offset,
                } => self.final_acknowledged(stream, sha1, At { journal, offset }),
                VerifierEvent::SumSeen {
                    stream,
                    sha1,
                    journal,
                    offset,
                } => {
                    // The event carries no seq; the audit compares the SHA-1 and the place only.
                    let sum = Sum {
                        stream,
                        last_seq: 0,
                        sha1,
                    };
                    self.sum_seen(sum, At { journal, offset });
                }
            }
        }
    }
}

/// Why a process could not go on.
#[derive(Debug)]
pub enum ProcessError {
    Open(String),
    Shard(ShardError),
    Read(ReadError),
    /// A shard log held something that is not a stream-sum message.
    Decode(String),
}

impl std::fmt::Display for ProcessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProcessError::Open(e) | ProcessError::Decode(e) => f.write_str(e),
            ProcessError::Shard(e) => write!(f, "{e}"),
            ProcessError::Read(e) => write!(f, "{e}"),
        }
    }
}

impl ProcessError {
    /// An error a storage fault may cause (the storage died, an fsync failed, the disk is
    /// full), as opposed to one that means the data is wrong (a violation, corruption, fencing).
    pub fn is_storage_failure(&self) -> bool {
        match self {
            ProcessError::Open(_) => true,
            ProcessError::Shard(ShardError::Append { error, .. }) => is_storage_append_error(error),
            ProcessError::Shard(ShardError::Read { error, .. }) | ProcessError::Read(error) => {
                matches!(error, ReadError::Io { .. })
            }
            _ => false,
        }
    }
}

/// Append errors a storage fault may cause.
pub fn is_storage_append_error(e: &AppendError) -> bool {
    matches!(
        e,
        AppendError::Poisoned { .. }
            | AppendError::NoSpace { .. }
            | AppendError::Io { .. }
            | AppendError::AfterFailure { .. }
    )
}

/// One running "process"; see the module documentation.
pub struct Process {
    pub log: Log,
    pub inputs: Vec<Journal>,
    pub shard_logs: Vec<Journal>,
    shards: Vec<Shard<Summer>>,
    tailers: Vec<Frames>,
    run_id: u32,
    pub verifier: Arc<Mutex<Verifier>>,
    pub stats: Arc<ChunkerStats>,
    stop: Arc<AtomicBool>,
    die: Arc<AtomicBool>,
    chunker: Option<JoinHandle<Result<(), AppendError>>>,
    /// The chunker's result once its thread has ended.
    pub chunker_result: Option<Result<(), AppendError>>,
}

impl Process {
    /// Opens the log, recovers the shards from their logs and starts a chunker of run `run_id`
    /// (a new run id per start, so stream ids are never reused).
    pub fn start(
        storage: &SimStorage,
        workload: &Workload,
        run_id: u32,
        events: Sender<VerifierEvent>,
    ) -> Result<Process, ProcessError> {
        let log = Log::open(DATA_DIR, workload.options(storage))
            .map_err(|e| ProcessError::Open(format!("opening {DATA_DIR}: {e}")))?;
        let open = |name: &str| {
            log.journal(name)
                .map_err(|e| ProcessError::Open(format!("opening journal {name}: {e}")))
        };
        let mut inputs = Vec::new();
        let mut shard_logs = Vec::new();
        for p in 0..PARTITIONS {
            inputs.push(open(&chunk_journal_name(p))?);
            shard_logs.push(open(&shard_log_name(p))?);
        }
        let mut shards = Vec::new();
        for p in 0..PARTITIONS {
            let summer = summer();
            shards.push(
                Shard::recover(
                    &shard_name(p),
                    summer,
                    &inputs[p],
                    shard_logs[p].clone(),
                    workload.shard.clone(),
                )
                .map_err(ProcessError::Shard)?,
            );
        }
        // Every Sum of this run lands after the shard logs' current heads.
        let tailers = shard_logs.iter().map(|j| j.frames(j.durable_head())).collect();
        let mut verifier = Verifier::new(run_id, 0, Duration::from_secs(3600));
        verifier.set_events(events);
        let verifier = Arc::new(Mutex::new(verifier));
        let stats = Arc::new(ChunkerStats::default());
        let mut config = ChunkerConfig::new(
            0,
            run_id,
            workload.seed ^ ((run_id as u64) << 32),
            workload.streams,
        );
        config.shape.max_chunk_bytes = workload.max_chunk_bytes;
        config.shape.max_chunks_per_stream = workload.max_chunks_per_stream;
        config.flush_bytes = workload.flush_bytes;
        config.flush_interval = Duration::from_millis(1);
        config.in_flight_max = workload.in_flight_max;
        let mut chunker = Chunker::new(config, inputs.clone(), verifier.clone(), stats.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let die = Arc::new(AtomicBool::new(false));
        let (thread_stop, thread_die) = (stop.clone(), die.clone());
        let handle = std::thread::Builder::new()
            .name(format!("chunker-run-{run_id}"))
            .spawn(move || {
                // Only appends fail here: 2^32 stream ids are far more than a test uses.
                chunker
                    .run_or_die(&thread_stop, &thread_die)
                    .map_err(|e| e.append_error().cloned().unwrap_or_else(|| panic!("{e}")))
            })
            .expect("spawn chunker");
        Ok(Process {
            log,
            inputs,
            shard_logs,
            shards,
            tailers,
            run_id,
            verifier,
            stats,
            stop,
            die,
            chunker: Some(handle),
            chunker_result: None,
        })
    }

    /// Streams whose final chunk the chunker handed to a journal.
    pub fn streams_finished(&self) -> u64 {
        self.stats.streams_finished.load(Ordering::Relaxed)
    }

    /// The chunker starts no new streams and finishes its open ones.
    pub fn stop_chunker(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether the chunker's thread has ended (collecting its result if so).
    pub fn chunker_ended(&mut self) -> bool {
        if self.chunker.as_ref().is_some_and(|h| h.is_finished()) {
            let h = self.chunker.take().expect("handle");
            self.chunker_result = Some(h.join().expect("chunker thread panicked"));
        }
        self.chunker_result.is_some()
    }

    /// Whether every shard has applied its input up to the chunk journal's durable head.
    pub fn shards_caught_up(&self) -> bool {
        self.shards
            .iter()
            .zip(&self.inputs)
            .all(|(shard, input)| shard.input_offset() >= input.durable_head())
    }

    /// One transaction on every shard, then every new durable Sum to the verifier.
    pub fn step(&mut self) -> Result<(), ProcessError> {
        for shard in &mut self.shards {
            shard
                .run_transaction(SHARD_IDLE_WAIT)
                .map_err(ProcessError::Shard)?;
        }
        self.tail()
    }

    /// Hands every Sum of this run that is durable in the shard logs to the verifier.
    pub fn tail(&mut self) -> Result<(), ProcessError> {
        for (p, frames) in self.tailers.iter_mut().enumerate() {
            while let Some(frame) = frames.next().transpose().map_err(ProcessError::Read)? {
                let journal = shard_log_name(p);
                for m in frames.messages(&frame) {
                    let m = m.map_err(ProcessError::Read)?;
                    let message = Message::decode(m).map_err(|e| {
                        ProcessError::Decode(format!("{journal} offset {}: {e}", frame.offset))
                    })?;
                    if let Message::Sum(sum) = message {
                        if split_stream_id(sum.stream).0 == self.run_id {
                            self.verifier
                                .lock()
                                .on_sum(&sum, &journal, frame.offset, Instant::now());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Ends the run gracefully: the chunker finishes its open streams, the shards apply all input
    /// up to the chunk journals' heads, and the tailers read every Sum.
    pub fn finish(&mut self) -> Result<(), String> {
        self.stop_chunker();
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while !self.chunker_ended() {
            self.step().map_err(|e| e.to_string())?;
            if Instant::now() > deadline {
                return Err("chunker did not finish its streams in time".into());
            }
        }
        match self.chunker_result.clone().expect("ended") {
            Ok(()) => {}
            Err(e) => return Err(format!("chunker failed in a run without faults: {e}")),
        }
        for (p, shard) in self.shards.iter_mut().enumerate() {
            let end = self.inputs[p].durable_head();
            while shard.input_offset() < end {
                shard
                    .run_transaction(SHARD_IDLE_WAIT)
                    .map_err(|e| e.to_string())?;
                if Instant::now() > deadline {
                    return Err(format!("{} did not reach its input head in time", shard.name()));
                }
            }
            shard.settle().map_err(|e| e.to_string())?;
        }
        self.tail().map_err(|e| e.to_string())
    }

    /// The process stops at once, as after a fatal error: the chunker dies (what it handed to
    /// the journals is waited for, or fails), the shards and tailers are dropped and the log is
    /// closed. Returns the chunker's result.
    pub fn kill(mut self) -> Option<Result<(), AppendError>> {
        self.die.store(true, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.chunker.take() {
            self.chunker_result = Some(h.join().expect("chunker thread panicked"));
        }
        self.shards.clear();
        self.tailers.clear();
        self.log.close();
        self.chunker_result.take()
    }
}

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Streams with a final chunk in the chunk journals (each must have exactly one correct Sum).
    pub streams_checked: u64,
    pub finals_acknowledged: u64,
    pub sums_seen: u64,
    pub lost: Vec<String>,
    pub duplicated: Vec<String>,
    pub mismatched: Vec<String>,
    /// Anything else wrong: unreadable journals, gaps, Sums for streams never finished.
    pub other: Vec<String>,
}

impl CheckReport {
    pub fn violation_count(&self) -> usize {
        self.lost.len() + self.duplicated.len() + self.mismatched.len() + self.other.len()
    }

    pub fn violations(&self) -> impl Iterator<Item = &String> {
        self.lost
            .iter()
            .chain(&self.duplicated)
            .chain(&self.mismatched)
            .chain(&self.other)
    }
}

/// Checks the journals of `log` (after a graceful end: every input applied) with the audit,
/// against themselves and against `history`; also that each chunk journal holds only streams
/// of its own partition.
pub fn check(log: &Log, history: &History) -> CheckReport {
    let mut report = CheckReport {
        finals_acknowledged: history.finals.len() as u64,
        sums_seen: history.sums_seen.len() as u64,
        ..CheckReport::default()
    };
    let mut chunks = ChunkIndex::default();
    let mut sums = SumIndex::default();
    for p in 0..PARTITIONS {
        let name = chunk_journal_name(p);
        match log.existing_journal(&name).map(|j| ChunkIndex::scan(&j)) {
            Ok(Ok(index)) => {
                check_partition(&name, p, &index, &mut report.other);
                chunks.merge(index);
            }
            Ok(Err(e)) => report.other.push(format!("reading {name}: {e}")),
            Err(e) => report.other.push(format!("opening {name}: {e}")),
        }
        let name = shard_log_name(p);
        match log
            .existing_journal(&name)
            .map(|j| SumIndex::scan(&j, &chunk_journal_name(p)))
        {
            Ok(Ok(index)) => sums.merge(index),
            Ok(Err(e)) => report.other.push(format!("reading {name}: {e}")),
            Err(e) => report.other.push(format!("opening {name}: {e}")),
        }
    }
    let findings = audit(&chunks, &sums, history, Settled::Yes);
    report.streams_checked = chunks.finished.len() as u64;
    report.lost = findings.lost;
    report.duplicated = findings.duplicated;
    report.mismatched = findings.mismatched;
    report.other.extend(findings.other);
    report
}

/// Every stream in chunk journal `name` belongs to its partition `p`.
fn check_partition(name: &str, p: usize, index: &ChunkIndex, problems: &mut Vec<String>) {
    let mut ids: Vec<StreamId> = index
        .finished
        .keys()
        .chain(index.unfinished.keys())
        .chain(&index.partial)
        .copied()
        .filter(|id| partition_of(*id, PARTITIONS) != p)
        .collect();
    ids.sort();
    for id in ids {
        problems.push(format!("{name}: stream {id} of another partition"));
    }
}
