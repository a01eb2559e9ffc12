//! A small stream-sum workload over simulated storage, built from the real pieces, and the checks
//! of what it left against a history kept outside the journals.
//!
//! A [`Process`] is what one `stream-sum run` would be: a [`Log`] over a [`SimStorage`], two
//! partitions (chunk journal + shard log each), one [`Chunker`] on its own thread publishing
//! interleaved streams, two summer [`Shard`]s stepped by the caller's thread, and Sum tailers that
//! hand each durable Sum of this run to the chunker's [`Verifier`]. The verifier's events
//! (final chunk acknowledged durable, Sum seen durable) go to the caller, which keeps them as its
//! [`History`]: the journals cannot vouch for themselves, so [`check`] compares them against it.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sha1::{Digest, Sha1};
use ss_chunker::chunker::{Chunker, ChunkerConfig, ChunkerStats};
use ss_chunker::stream_gen::{chunk_journal_name, partition_of, shard_log_name, split_stream_id};
use ss_chunker::verifier::{Verifier, VerifierEvent};
use ss_consumer::message::{hex, Chunk, Message, StreamId, Sum};
use ss_consumer::shard::{Shard, ShardConfig, ShardError};
use ss_consumer::summer::{Summer, SummerConfig};
use ss_log::sim::SimStorage;
use ss_log::{AppendError, Journal, Log, Options, ReadError, Reader};

/// Data directory on the simulated storage.
pub const DATA_DIR: &str = "/data";
/// Partitions: chunk journals and summer shards.
pub const PARTITIONS: usize = 2;
/// How long a shard transaction waits for input when there is none.
const SHARD_IDLE_WAIT: Duration = Duration::from_millis(1);
/// A graceful end that takes longer than this is reported as a hang.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

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
            frame_max_bytes: 12 << 10,
            batch_max_messages: 4096,
            pending_max_bytes: 64 << 10,
            preallocate: self.preallocate,
            recycle: true,
            storage: Arc::new(storage.clone()),
        }
    }
}

/// A shard's name, as the CLI names it.
pub fn shard_name(p: usize) -> String {
    format!("shard-{p:03}")
}

/// What the test saw acknowledged, from the verifiers' events.
#[derive(Debug, Default)]
pub struct History {
    /// stream -> (sha1, chunk journal, frame offset) of its final chunk, acknowledged durable.
    pub finals: HashMap<StreamId, ([u8; 20], String, u64)>,
    /// (stream, sha1, shard log, frame offset) of every Sum seen durable.
    pub sums_seen: Vec<(StreamId, [u8; 20], String, u64)>,
}

impl History {
    /// Takes every event sent so far.
    pub fn drain(&mut self, events: &Receiver<VerifierEvent>) {
        while let Ok(event) = events.try_recv() {
            match event {
                VerifierEvent::FinalDurable {
                    stream,
                    sha1,
                    journal,
                    offset,
                } => {
                    self.finals.insert(stream, (sha1, journal, offset));
                }
                VerifierEvent::SumSeen {
                    stream,
                    sha1,
                    journal,
                    offset,
                } => self.sums_seen.push((stream, sha1, journal, offset)),
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
    tailers: Vec<Reader>,
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
            let summer = Summer::new(SummerConfig::default());
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
        let tailers = shard_logs.iter().map(|j| j.reader(j.durable_head())).collect();
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
            .spawn(move || chunker.run_or_die(&thread_stop, &thread_die))
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
        for (p, reader) in self.tailers.iter_mut().enumerate() {
            while let Some(frame) = reader.try_next().map_err(ProcessError::Read)? {
                let journal = shard_log_name(p);
                for m in frame.messages() {
                    let m = m.map_err(|e| {
                        ProcessError::Decode(format!("{journal} offset {}: {e}", frame.offset))
                    })?;
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

/// A stream as the chunk journals hold it.
#[derive(Default)]
struct StoredStream {
    hasher: Sha1,
    next_seq: u32,
    /// (chunk journal, frame offset) of its final chunk.
    final_at: Option<(String, u64)>,
    sha1: Option<[u8; 20]>,
}

fn read_frames(journal: &Journal, mut each: impl FnMut(u64, &[u8])) -> Result<(), String> {
    let head = journal.durable_head();
    let mut reader = journal.reader(journal.first_offset());
    while reader.offset() < head {
        let frame = reader
            .try_next()
            .map_err(|e| format!("reading {}: {e}", journal.name()))?
            .ok_or_else(|| {
                format!(
                    "{} ends at {} before its head {head}",
                    journal.name(),
                    reader.offset()
                )
            })?;
        for m in frame.messages() {
            let m = m.map_err(|e| format!("{} offset {}: {e}", journal.name(), frame.offset))?;
            each(frame.offset, m);
        }
    }
    Ok(())
}

/// Checks the journals of `log` (after a graceful end: every input applied) against `history`:
/// every acknowledged final chunk is in its chunk journal and its stream has exactly one Sum,
/// equal to the chunker's SHA-1; every Sum seen durable is still in its shard log; every stream
/// whose final chunk is in the chunk journals has exactly one Sum, equal to the SHA-1 recomputed
/// from its chunks; no Sum names a stream whose final chunk is not there.
pub fn check(log: &Log, history: &History) -> CheckReport {
    let mut report = CheckReport {
        finals_acknowledged: history.finals.len() as u64,
        sums_seen: history.sums_seen.len() as u64,
        ..CheckReport::default()
    };
    let mut streams: HashMap<StreamId, StoredStream> = HashMap::new();
    let mut finals_at: HashSet<(StreamId, String, u64)> = HashSet::new();
    for p in 0..PARTITIONS {
        let name = chunk_journal_name(p);
        let journal = match log.existing_journal(&name) {
            Ok(j) => j,
            Err(e) => {
                report.other.push(format!("opening {name}: {e}"));
                continue;
            }
        };
        let mut problems = Vec::new();
        let read = read_frames(&journal, |offset, m| {
            let chunk = match Chunk::decode(m) {
                Ok(c) => c,
                Err(e) => return problems.push(format!("{name} offset {offset}: {e}")),
            };
            if partition_of(chunk.stream, PARTITIONS) != p {
                problems.push(format!(
                    "{name} offset {offset}: stream {} of another partition",
                    chunk.stream
                ));
            }
            let s = streams.entry(chunk.stream).or_default();
            if chunk.seq < s.next_seq || s.final_at.is_some() {
                return; // A repeated chunk: the summer skips it too.
            }
            if chunk.seq != s.next_seq {
                return problems.push(format!(
                    "{name} offset {offset}: stream {}: gap: chunk seq {} where {} was next",
                    chunk.stream, chunk.seq, s.next_seq
                ));
            }
            s.hasher.update(chunk.data);
            s.next_seq += 1;
            if chunk.is_final {
                s.final_at = Some((name.clone(), offset));
                s.sha1 = Some(std::mem::take(&mut s.hasher).finalize().into());
                finals_at.insert((chunk.stream, name.clone(), offset));
            }
        });
        if let Err(e) = read {
            report.other.push(e);
        }
        report.other.extend(problems);
    }

    let mut sums: HashMap<StreamId, Vec<(Sum, String, u64)>> = HashMap::new();
    for p in 0..PARTITIONS {
        let name = shard_log_name(p);
        let journal = match log.existing_journal(&name) {
            Ok(j) => j,
            Err(e) => {
                report.other.push(format!("opening {name}: {e}"));
                continue;
            }
        };
        let mut problems = Vec::new();
        let read = read_frames(&journal, |offset, m| match Message::decode(m) {
            Ok(Message::Sum(sum)) => sums
                .entry(sum.stream)
                .or_default()
                .push((sum, name.clone(), offset)),
            Ok(_) => {}
            Err(e) => problems.push(format!("{name} offset {offset}: {e}")),
        });
        if let Err(e) = read {
            report.other.push(e);
        }
        report.other.extend(problems);
    }

    // The history: what was acknowledged must still be there.
    let mut acknowledged: Vec<_> = history.finals.iter().collect();
    acknowledged.sort_by_key(|(id, _)| **id);
    for (id, (sha1, journal, offset)) in acknowledged {
        if !finals_at.contains(&(*id, journal.clone(), *offset)) {
            report.lost.push(format!(
                "stream {id}: final chunk acknowledged durable in {journal} at offset {offset} is not there"
            ));
        }
        match sums.get(id).map(Vec::as_slice) {
            None | Some([]) => report.lost.push(format!(
                "stream {id}: final chunk acknowledged durable in {journal} at offset {offset}, but no Sum"
            )),
            Some(found) => {
                for (sum, log_name, at) in found {
                    if sum.sha1 != *sha1 {
                        report.mismatched.push(format!(
                            "stream {id}: Sum in {log_name} at offset {at} is {}, the chunker's SHA-1 is {}",
                            hex(&sum.sha1),
                            hex(sha1)
                        ));
                    }
                }
            }
        }
    }
    for (id, sha1, journal, offset) in &history.sums_seen {
        let still_there = sums.get(id).is_some_and(|found| {
            found
                .iter()
                .any(|(s, j, at)| s.sha1 == *sha1 && j == journal && at == offset)
        });
        if !still_there {
            report.lost.push(format!(
                "stream {id}: Sum seen durable in {journal} at offset {offset} is no longer there"
            ));
        }
    }

    // The journals against themselves.
    let mut finished: Vec<(&StreamId, &StoredStream)> =
        streams.iter().filter(|(_, s)| s.final_at.is_some()).collect();
    finished.sort_by_key(|(id, _)| **id);
    report.streams_checked = finished.len() as u64;
    for (id, s) in finished {
        let (journal, offset) = s.final_at.as_ref().expect("finished");
        let expected = s.sha1.expect("finished");
        match sums.get(id).map(Vec::as_slice) {
            None | Some([]) => report.lost.push(format!(
                "stream {id}: final chunk in {journal} at offset {offset}, but no Sum"
            )),
            Some([(sum, log_name, at)]) => {
                if sum.sha1 != expected || sum.last_seq + 1 != s.next_seq {
                    report.mismatched.push(format!(
                        "stream {id}: Sum in {log_name} at offset {at} is {} (last seq {}), its chunks hash to {} (last seq {})",
                        hex(&sum.sha1),
                        sum.last_seq,
                        hex(&expected),
                        s.next_seq - 1
                    ));
                }
            }
            Some(found) => {
                let at: Vec<String> = found.iter().map(|(_, j, o)| format!("{j}@{o}")).collect();
                report
                    .duplicated
                    .push(format!("stream {id}: {} Sums: {}", found.len(), at.join(", ")));
            }
        }
    }
    let mut unfounded: Vec<&StreamId> = sums
        .keys()
        .filter(|id| streams.get(id).is_none_or(|s| s.final_at.is_none()))
        .collect();
    unfounded.sort();
    for id in unfounded {
        report.other.push(format!(
            "stream {id}: has a Sum, but its final chunk is not in the chunk journals"
        ));
    }
    report
}
