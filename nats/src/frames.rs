//! The journal boundary ([`ss_log::boundary`]) on JetStream, so the chunker and the shard run
//! unchanged on a cluster.
//!
//! One frame is one message whose payload is a [`Batch`]'s payload (the same message list the
//! embedded log frames). The message with stream sequence `s` is the frame `s - 1..s`: the head is
//! the stream's last sequence, a checkpoint's input position is the last sequence it covers, and a
//! conditional append at head `h` is a publish with `Nats-Expected-Last-Sequence: h`.
//!
//! The traits are blocking (the shard and chunker run on threads); each call blocks on the
//! runtime whose handle is given. Appends complete before `submit` returns (one publish waited
//! on at a time per handle), so a pending append is already durable in the cluster's sense
//! (acknowledged by a quorum; see docs/design.md on what that means on disk).
//!
//! Every append carries `Nats-Msg-Id: <writer>-<n>`: `writer` is unique to this handle (process,
//! time, counter) and `n` counts its appends, so the server drops a retry of the same append, and
//! never mistakes another writer's frame at the same position for ours (two owners of one shard
//! at the same head must not share ids, or the server would acknowledge the second as a
//! duplicate of the first).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ss_log::{AppendAck, AppendError, Batch, Frame, FrameJournal, FrameReader, PendingFrame, ReadError};
use tokio::runtime::Handle;

use crate::error::NatsError;
use crate::journal::{NatsFrame, NatsJournal, NatsReader, RETRY_FOR};

static WRITERS: AtomicU64 = AtomicU64::new(0);

/// How long a reader waits for a message known to exist before it replaces its consumer.
const STALL: Duration = Duration::from_secs(5);
/// How often a reader that gets no frame asks the stream for its head: an ordered consumer
/// whose server restarted can go quiet without an error, and frames appended after it did
/// would otherwise never count as known (a 3-second server restart once left the shards and
/// Sum tailers silent for 54 s).
const HEAD_CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long a reader whose stream holds frames past it goes without one before it replaces its
/// consumer (from its position).
const QUIET_RESTART_AFTER: Duration = Duration::from_secs(2);

/// A [`NatsJournal`] behind the blocking journal boundary. Cheap to clone (clones share the
/// writer id and append counter).
#[derive(Clone)]
pub struct NatsFrames {
    journal: NatsJournal,
    rt: Handle,
    writer: Arc<str>,
    appends: Arc<AtomicU64>,
    known_head: Arc<AtomicU64>,
}

impl NatsFrames {
    pub fn new(journal: NatsJournal, rt: Handle) -> NatsFrames {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let writer = format!(
            "{:x}-{nanos:x}-{}",
            std::process::id(),
            WRITERS.fetch_add(1, Ordering::Relaxed)
        );
        NatsFrames {
            journal,
            rt,
            writer: writer.into(),
            appends: Arc::new(AtomicU64::new(0)),
            known_head: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn journal(&self) -> &NatsJournal {
        &self.journal
    }

    fn append(&self, expect_head: Option<u64>, batch: &Batch) -> Result<Done, AppendError> {
        let n = self.appends.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", self.writer);
        let payload = Bytes::copy_from_slice(batch.payload());
        let seq = self
            .rt
            .block_on(self.journal.append(payload, expect_head, &id))
            .map_err(|e| append_error(self.journal.name(), e))?;
        self.known_head.fetch_max(seq, Ordering::Relaxed);
        Ok(Done {
            ack: AppendAck {
                offset: seq - 1,
                end: seq,
            },
            at: Instant::now(),
        })
    }
}

fn append_error(journal: &str, e: NatsError) -> AppendError {
    match e {
        NatsError::Fenced { expected, actual, .. } => AppendError::Conflict {
            journal: journal.to_string(),
            expected,
            actual,
        },
        NatsError::TooLarge {
            len_bytes, max_bytes, ..
        } => AppendError::FrameTooLarge {
            journal: journal.to_string(),
            len: len_bytes as u64,
            max: max_bytes as u64,
        },
        e => AppendError::Backend {
            journal: journal.to_string(),
            detail: e.to_string(),
        },
    }
}

fn read_error(journal: &str, e: NatsError) -> ReadError {
    ReadError::Backend {
        journal: journal.to_string(),
        detail: e.to_string(),
    }
}

/// A message whose payload is not a frame is damage (`ReadError::Corrupt`, exit 3 in the CLI),
/// not a backend failure to retry: its "fragment" is the stream and message sequence.
fn to_frame(journal: &str, f: NatsFrame) -> Result<Frame, ReadError> {
    Frame::from_batch_payload(f.sequence - 1, f.sequence, f.payload).map_err(|error| ReadError::Corrupt {
        journal: journal.to_string(),
        fragment: format!("stream {journal} message {}", f.sequence).into(),
        offset: f.sequence - 1,
        error,
    })
}

/// An append that already completed.
pub struct Done {
    ack: AppendAck,
    at: Instant,
}

impl PendingFrame for Done {
    fn ack(&self) -> AppendAck {
        self.ack
    }
    fn wait(self) -> Result<AppendAck, AppendError> {
        Ok(self.ack)
    }
    fn wait_timed(self) -> Result<(AppendAck, Instant), AppendError> {
        Ok((self.ack, self.at))
    }
}

impl FrameJournal for NatsFrames {
    type Reader = NatsFrameReader;
    type Pending = Done;

    fn name(&self) -> &str {
        self.journal.name()
    }
    fn frame_max_bytes(&self) -> u64 {
        self.journal.frame_max_bytes() as u64
    }
    fn durable_head(&self) -> Result<u64, ReadError> {
        let head = self
            .rt
            .block_on(self.journal.head())
            .map_err(|e| read_error(self.name(), e))?;
        self.known_head.fetch_max(head, Ordering::Relaxed);
        Ok(head)
    }
    fn known_durable_head(&self) -> u64 {
        self.known_head.load(Ordering::Relaxed)
    }
    /// Stream info can come from a replica behind the leader (around elections and partitions):
    /// seen in `nats_survives_kills_and_partitions`, a shard recovered after its process was cut
    /// off found its input's head 399 under a checkpoint at 503 that another process had reached.
    fn head_lag_max(&self) -> Duration {
        crate::journal::RETRY_FOR
    }
    fn first_offset(&self) -> Result<u64, ReadError> {
        let first = self
            .rt
            .block_on(self.journal.first_sequence())
            .map_err(|e| read_error(self.name(), e))?;
        Ok(first.saturating_sub(1))
    }
    fn last_frame(&self) -> Result<Option<Frame>, ReadError> {
        let last = self
            .rt
            .block_on(self.journal.last())
            .map_err(|e| read_error(self.name(), e))?;
        last.map(|f| to_frame(self.name(), f)).transpose()
    }
    fn reader(&self, offset: u64) -> Result<NatsFrameReader, ReadError> {
        let inner = self
            .rt
            .block_on(self.journal.reader(offset))
            .map_err(|e| read_error(self.name(), e))?;
        Ok(NatsFrameReader {
            name: self.name().to_string(),
            inner,
            rt: self.rt.clone(),
            last_frame_at: Instant::now(),
            last_head_check: Instant::now(),
        })
    }
    fn submit(&self, batch: &Batch) -> Result<Done, AppendError> {
        self.append(None, batch)
    }
    fn submit_if(&self, expect_head: u64, batch: &Batch) -> Result<Done, AppendError> {
        self.append(Some(expect_head), batch)
    }
    fn failures(&self) -> u64 {
        0
    }
    fn submit_unless_failed(&self, _since: u64, batch: &Batch) -> Result<Done, AppendError> {
        // Appends complete before `submit` returns, so none can have failed unnoticed.
        self.append(None, batch)
    }
}

/// Frames of a JetStream journal in order, tailing.
pub struct NatsFrameReader {
    name: String,
    inner: NatsReader,
    rt: Handle,
    /// When a frame last arrived, or the consumer was last replaced.
    last_frame_at: Instant,
    /// When the stream's head was last asked for.
    last_head_check: Instant,
}

impl NatsFrameReader {
    /// The next frame, waiting up to `timeout`.
    fn poll(&mut self, timeout: Duration) -> Result<Option<Frame>, ReadError> {
        let next = self
            .rt
            .block_on(self.inner.next_timeout(timeout))
            .map_err(|e| read_error(&self.name, e))?;
        if next.is_some() {
            self.last_frame_at = Instant::now();
        }
        next.map(|f| to_frame(&self.name, f)).transpose()
    }

    /// After a poll that got nothing: at most every [`HEAD_CHECK_EVERY`], asks the stream for
    /// its head, and replaces a consumer that has been quiet for [`QUIET_RESTART_AFTER`] while
    /// frames past this reader exist.
    fn check_quiet(&mut self) -> Result<(), ReadError> {
        if self.last_head_check.elapsed() < HEAD_CHECK_EVERY {
            return Ok(());
        }
        self.last_head_check = Instant::now();
        let head = self.rt.block_on(self.inner.refresh_known_head(HEAD_CHECK_EVERY));
        if head > self.inner.position() && self.last_frame_at.elapsed() >= QUIET_RESTART_AFTER {
            self.rt
                .block_on(self.inner.restart())
                .map_err(|e| read_error(&self.name, e))?;
            self.last_frame_at = Instant::now();
        }
        Ok(())
    }
}

impl FrameReader for NatsFrameReader {
    fn offset(&self) -> u64 {
        self.inner.position()
    }
    /// Frames up to the head the reader knows of exist, so they are waited for (bounded); past
    /// it, only what the client already holds is returned.
    fn try_next(&mut self) -> Result<Option<Frame>, ReadError> {
        if self.inner.position() >= self.inner.known_head() {
            return self.next_timeout(Duration::ZERO);
        }
        let wanted = self.inner.position() + 1;
        let started = Instant::now();
        loop {
            if let Some(frame) = self.poll(STALL)? {
                return Ok(Some(frame));
            }
            if started.elapsed() >= RETRY_FOR {
                return Err(ReadError::Backend {
                    journal: self.name.clone(),
                    detail: format!("message {wanted} exists but did not arrive within {RETRY_FOR:?}"),
                });
            }
            // Seen with nats-server 2.15.1: an ordered pull consumer that stops delivering
            // without an error (cause not found yet); a new one from the same position is tried.
            self.rt
                .block_on(self.inner.restart())
                .map_err(|e| read_error(&self.name, e))?;
        }
    }

    fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Frame>, ReadError> {
        let frame = self.poll(timeout)?;
        if frame.is_none() {
            self.check_quiet()?;
        }
        Ok(frame)
    }
    fn known_durable_head(&self) -> u64 {
        // Every frame delivered or counted as pending was acknowledged by the cluster.
        self.inner.known_head()
    }
}
