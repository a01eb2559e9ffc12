//! A chunker: many streams at once, their chunks interleaved and published to partitions.
//!
//! Chunks bound for one partition are gathered into one batch (one frame) and handed to the
//! journal without waiting (`submit`); a bounded number of batches per partition are in flight.
//! Order within a stream is preserved because one chunker writes each stream, in order, to one
//! journal. When a stream's final chunk is handed over, the stream's SHA-1 is registered with the
//! [`Verifier`]; when that batch is durable, the stream's SLA clock starts.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng;
use sha1::Digest;
use ss_consumer::message::{Chunk, StreamId};
use ss_log::{AppendAck, AppendError, Batch, FrameJournal, Journal, PendingFrame};

use crate::stream_gen::{partition_of, GenStream, StreamGen, StreamShape};
use crate::verifier::Verifier;

/// Why a chunker stopped. Neither is an exactly-once violation: the CLI exits 3 for both.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChunkerError {
    /// An append failed (storage, a full disk, a closed journal).
    #[error(transparent)]
    Append(#[from] AppendError),
    /// The chunker used all 2^32 stream ids of its run (a limit of a forever soak); a new run
    /// (a restart) takes a new run id.
    #[error("chunker {chunker}: all 2^32 stream ids of run {run_id} are used; restart for a new run id")]
    StreamIdsExhausted { chunker: u8, run_id: u32 },
}

impl ChunkerError {
    /// The failed append, if that is why the chunker stopped.
    pub fn append_error(&self) -> Option<&AppendError> {
        match self {
            ChunkerError::Append(e) => Some(e),
            ChunkerError::StreamIdsExhausted { .. } => None,
        }
    }
}

/// Payload bytes past which a partition's batch is sent, by default.
pub const FLUSH_BYTES_DEFAULT: usize = 256 << 10;

/// How a chunker behaves.
#[derive(Debug, Clone)]
pub struct ChunkerConfig {
    pub index: u8,
    pub run_id: u32,
    pub seed: u64,
    /// Streams open at once.
    pub streams: usize,
    pub shape: StreamShape,
    /// A partition's batch is submitted once it holds this many bytes...
    pub flush_bytes: usize,
    /// ...or once its oldest chunk waited this long.
    pub flush_interval: Duration,
    /// Batches in flight per partition before the chunker waits for the oldest.
    pub in_flight_max: usize,
    /// Publish at most this many chunk bytes per second (`None`: as fast as possible).
    pub max_bytes_per_s: Option<u64>,
}

impl ChunkerConfig {
    pub fn new(index: u8, run_id: u32, seed: u64, streams: usize) -> ChunkerConfig {
        ChunkerConfig {
            index,
            run_id,
            seed,
            streams,
            shape: StreamShape::default(),
            flush_bytes: FLUSH_BYTES_DEFAULT,
            flush_interval: Duration::from_millis(2),
            in_flight_max: 4,
            max_bytes_per_s: None,
        }
    }
}

/// Counters shared with the progress display. Chunks and finished streams count once their
/// batch is durable: a batch that fails (and is rolled back) or that a dying chunker drops never
/// counts.
#[derive(Debug, Default)]
pub struct ChunkerStats {
    pub chunks: AtomicU64,
    pub chunk_bytes: AtomicU64,
    pub streams_started: AtomicU64,
    /// Streams whose final chunk is durable.
    pub streams_finished: AtomicU64,
    /// Streams left unfinished by a chunker that died.
    pub streams_abandoned: AtomicU64,
    /// Chunks the open streams have yet to publish: times the largest chunk, a bound on what
    /// finishing them writes (the free-space guard stops a run while that still fits).
    pub chunks_to_publish: AtomicU64,
}

struct InFlight<P> {
    pending: P,
    offset: u64,
    end: u64,
    finals: Vec<StreamId>,
    chunks: u64,
    chunk_bytes: u64,
}

struct Outbox<J: FrameJournal> {
    journal: J,
    /// The journal's failure count when this chunker started: if any batch fails after it,
    /// later batches are refused, so no chunk lands where a failed one should have been.
    failures_at_start: u64,
    batch: Batch,
    finals: Vec<StreamId>,
    /// Chunks in `batch`, and their data bytes.
    batch_chunks: u64,
    batch_chunk_bytes: u64,
    oldest: Option<Instant>,
    in_flight: VecDeque<InFlight<J::Pending>>,
}

/// One chunker; see the module documentation.
pub struct Chunker<J: FrameJournal = Journal> {
    config: ChunkerConfig,
    gen: StreamGen,
    outboxes: Vec<Outbox<J>>,
    verifier: Arc<Mutex<Verifier>>,
    stats: Arc<ChunkerStats>,
}

impl<J: FrameJournal> Chunker<J> {
    /// `partitions[p]` is partition p's chunk journal.
    pub fn new(
        config: ChunkerConfig,
        partitions: Vec<J>,
        verifier: Arc<Mutex<Verifier>>,
        stats: Arc<ChunkerStats>,
    ) -> Chunker<J> {
        assert!(!partitions.is_empty() && config.streams > 0);
        let gen = StreamGen::new(config.seed, config.run_id, config.index, config.shape.clone());
        let outboxes = partitions
            .into_iter()
            .map(|journal| Outbox {
                failures_at_start: journal.failures(),
                journal,
                batch: Batch::with_capacity(config.flush_bytes + (64 << 10)),
                finals: Vec::new(),
                batch_chunks: 0,
                batch_chunk_bytes: 0,
                oldest: None,
                in_flight: VecDeque::new(),
            })
            .collect();
        Chunker {
            config,
            gen,
            outboxes,
            verifier,
            stats,
        }
    }

    /// Publishes until `stop` is set, then finishes the open streams (starting no new ones) and
    /// returns once everything published is durable.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), ChunkerError> {
        self.run_or_die(stop, &AtomicBool::new(false))
    }

    /// [`Chunker::run`], but if `die` is set the chunker stops at once like a crashed chunker:
    /// its open streams are abandoned unfinished (summers expire them). What it already handed
    /// to the journals still lands, and is waited for.
    pub fn run_or_die(&mut self, stop: &AtomicBool, die: &AtomicBool) -> Result<(), ChunkerError> {
        let result = self.publish_until_stopped(stop, die);
        if result.is_err() {
            // Batches handed to the journals before the failure may be durable: counted as they
            // settle (those queued behind the failed one fail and are not).
            for p in 0..self.outboxes.len() {
                while let Some(f) = self.outboxes[p].in_flight.pop_front() {
                    let _ = self.settle(p, f);
                }
            }
        }
        result
    }

    fn publish_until_stopped(&mut self, stop: &AtomicBool, die: &AtomicBool) -> Result<(), ChunkerError> {
        let mut open: Vec<GenStream> = Vec::with_capacity(self.config.streams);
        let partitions = self.outboxes.len();
        let mut count = 0u64;
        let started = std::time::Instant::now();
        let mut published_bytes = 0u64;
        loop {
            if die.load(Ordering::Relaxed) {
                self.abandon(&mut open);
            }
            if !stop.load(Ordering::Relaxed) && !die.load(Ordering::Relaxed) {
                self.open_streams(&mut open)?;
            }
            if open.is_empty() {
                break;
            }
            let i = self.gen.rng().random_range(0..open.len());
            let p = partition_of(open[i].id, partitions);
            let len = self.publish_chunk(&mut open[i], p);
            self.stats.chunks_to_publish.fetch_sub(1, Ordering::Relaxed);
            if open[i].next_seq == open[i].chunk_count {
                self.finish_stream(open.swap_remove(i), p);
            }
            if self.outboxes[p].batch.payload().len() >= self.config.flush_bytes {
                self.flush(p)?;
            }
            count += 1;
            published_bytes += len as u64;
            self.pace(started, published_bytes)?;
            if count.is_multiple_of(32) {
                self.poll(false)?;
            }
        }
        self.poll(true)?;
        for p in 0..partitions {
            while let Some(f) = self.outboxes[p].in_flight.pop_front() {
                self.settle(p, f)?;
            }
        }
        Ok(())
    }

    /// Dies like a crashed chunker: the open streams and the finals not yet sent are abandoned
    /// (unsent chunks die with the chunker; sent ones land).
    fn abandon(&mut self, open: &mut Vec<GenStream>) {
        let abandoned = open.len() as u64;
        let unpublished: u64 = open.iter().map(|s| u64::from(s.chunk_count - s.next_seq)).sum();
        self.stats
            .chunks_to_publish
            .fetch_sub(unpublished, Ordering::Relaxed);
        self.stats
            .streams_abandoned
            .fetch_add(abandoned, Ordering::Relaxed);
        for outbox in &mut self.outboxes {
            outbox.batch.clear();
            outbox.batch_chunks = 0;
            outbox.batch_chunk_bytes = 0;
            let finals = std::mem::take(&mut outbox.finals);
            self.stats
                .streams_abandoned
                .fetch_add(finals.len() as u64, Ordering::Relaxed);
            let mut v = self.verifier.lock();
            for id in finals {
                v.forget(id);
            }
        }
        open.clear();
    }

    /// Starts streams until `config.streams` are open.
    fn open_streams(&mut self, open: &mut Vec<GenStream>) -> Result<(), ChunkerError> {
        while open.len() < self.config.streams {
            let stream = self.gen.new_stream().ok_or(ChunkerError::StreamIdsExhausted {
                chunker: self.config.index,
                run_id: self.config.run_id,
            })?;
            self.stats
                .chunks_to_publish
                .fetch_add(u64::from(stream.chunk_count - stream.next_seq), Ordering::Relaxed);
            open.push(stream);
            self.stats.streams_started.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// A stream's final chunk is in partition `p`'s batch: its SHA-1 goes to the verifier, and
    /// its SLA clock starts when that batch is durable.
    fn finish_stream(&mut self, s: GenStream, p: usize) {
        let sha1: [u8; 20] = s.hasher.finalize().into();
        self.verifier.lock().expect(s.id, sha1, s.chunk_count - 1);
        self.outboxes[p].finals.push(s.id);
    }

    /// Under `config.max_bytes_per_s`, sleeps while the chunker is ahead of its rate (settling
    /// what is durable first).
    fn pace(&mut self, started: Instant, published_bytes: u64) -> Result<(), ChunkerError> {
        if let Some(rate) = self.config.max_bytes_per_s {
            let due = Duration::from_secs_f64(published_bytes as f64 / rate as f64);
            let ahead = due.saturating_sub(started.elapsed());
            if ahead > Duration::from_millis(5) {
                self.poll(true)?;
                std::thread::sleep(ahead);
            }
        }
        Ok(())
    }

    /// Appends the stream's next chunk to its partition's batch; returns the data length.
    fn publish_chunk(&mut self, stream: &mut GenStream, p: usize) -> usize {
        let (seq, is_final) = stream.next_chunk_seq();
        let outbox = &mut self.outboxes[p];
        outbox.oldest.get_or_insert_with(Instant::now);
        let gen = &mut self.gen;
        let mut len = 0;
        outbox.batch.push_with(|b| {
            Chunk {
                stream: stream.id,
                seq,
                is_final,
                data: &[],
            }
            .encode(b);
            len = gen.append_next_chunk(stream, b);
        });
        outbox.batch_chunks += 1;
        outbox.batch_chunk_bytes += len as u64;
        len
    }

    /// Waits for the batch `f` of partition `p` to be durable, then counts it and starts the SLA
    /// clocks of the streams whose final chunk it holds.
    fn settle(&self, p: usize, f: InFlight<J::Pending>) -> Result<(), AppendError> {
        let (_, now) = f.pending.wait_timed()?;
        self.stats.chunks.fetch_add(f.chunks, Ordering::Relaxed);
        self.stats.chunk_bytes.fetch_add(f.chunk_bytes, Ordering::Relaxed);
        self.stats
            .streams_finished
            .fetch_add(f.finals.len() as u64, Ordering::Relaxed);
        if f.finals.is_empty() {
            return Ok(());
        }
        let journal = self.outboxes[p].journal.name();
        let mut v = self.verifier.lock();
        for id in &f.finals {
            v.final_durable(*id, now, journal, f.offset);
        }
        Ok(())
    }

    fn flush(&mut self, p: usize) -> Result<(), AppendError> {
        let outbox = &mut self.outboxes[p];
        if outbox.batch.is_empty() {
            return Ok(());
        }
        let pending = outbox
            .journal
            .submit_unless_failed(outbox.failures_at_start, &outbox.batch)?;
        let AppendAck { offset, end } = pending.ack();
        outbox.batch.clear();
        outbox.oldest = None;
        let finals = std::mem::take(&mut outbox.finals);
        let (chunks, chunk_bytes) = (outbox.batch_chunks, outbox.batch_chunk_bytes);
        (outbox.batch_chunks, outbox.batch_chunk_bytes) = (0, 0);
        outbox.in_flight.push_back(InFlight {
            pending,
            offset,
            end,
            finals,
            chunks,
            chunk_bytes,
        });
        while self.outboxes[p].in_flight.len() > self.config.in_flight_max {
            let f = self.outboxes[p].in_flight.pop_front().expect("non-empty");
            self.settle(p, f)?;
        }
        Ok(())
    }

    /// Starts SLA clocks for batches that became durable; flushes batches that waited too long
    /// (all of them if `all`).
    fn poll(&mut self, all: bool) -> Result<(), AppendError> {
        for p in 0..self.outboxes.len() {
            let stale = self.outboxes[p]
                .oldest
                .is_some_and(|t| t.elapsed() >= self.config.flush_interval);
            if all || stale {
                self.flush(p)?;
            }
            let head = self.outboxes[p].journal.known_durable_head();
            while self.outboxes[p].in_flight.front().is_some_and(|f| f.end <= head) {
                let f = self.outboxes[p].in_flight.pop_front().expect("non-empty");
                self.settle(p, f)?;
            }
        }
        Ok(())
    }
}
