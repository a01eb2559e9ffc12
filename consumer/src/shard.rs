//! The exactly-once consumer framework: a shard reads one input journal and owns one shard log.
//!
//! A shard works in transactions. It reads a bounded run of input frames (bounded by messages,
//! bytes and time), feeds their messages to its [`Application`], then appends **one frame** to its
//! shard log holding the outputs produced and a [`Checkpoint`]: the input offset reached plus the
//! application state the transaction touched (a delta), or periodically all of it (a snapshot).
//! The append is conditional on the shard log head the shard last saw, so a stale owner is fenced
//! out. Outputs and checkpoint land together or not at all; after a crash the shard restores its
//! state from the latest snapshot plus the deltas after it and re-reads input from the
//! checkpointed offset, so every output appears exactly once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ss_log::frame::{frame_len_bytes, MESSAGE_LEN_PREFIX_BYTES};
use ss_log::{
    AppendAck, AppendError, Batch, Frame, FrameJournal, FrameReader, Journal, PendingFrame, ReadError,
};

use crate::checkpoint::{Checkpoint, CheckpointKind, CHECKPOINT_HEADER_BYTES};
use crate::message::DecodeError;

/// The state machine a shard drives.
pub trait Application {
    /// Called before each input frame at `frame_offset` is applied: deterministic housekeeping
    /// keyed on input progress (e.g. expiring abandoned state). Outputs go to `out`.
    fn before_frame(&mut self, frame_offset: u64, out: &mut Batch) -> Result<(), AppError>;
    /// Applies one input message of the frame at `frame_offset`. Outputs go to `out`.
    fn apply(&mut self, message: &[u8], frame_offset: u64, out: &mut Batch) -> Result<(), AppError>;
    /// Writes the state touched since the last delta or snapshot, and forgets what was touched.
    fn write_delta(&mut self, out: &mut Vec<u8>);
    /// About how many bytes [`Application::write_delta`] would write now (bounds a
    /// transaction's frame together with its outputs).
    fn delta_bytes_hint(&self) -> usize;
    /// The most bytes [`Application::apply`] and [`Application::before_frame`] can add, over one
    /// input frame at `frame_offset` with `message_count` messages, to the outputs and to what
    /// [`Application::delta_bytes_hint`] reports. The shard applies a further input frame only
    /// while this still fits the transaction's frame.
    fn apply_bytes_max(&self, frame_offset: u64, message_count: u32) -> u64;
    /// Writes the whole state, and forgets what was touched.
    fn write_snapshot(&mut self, out: &mut Vec<u8>);
    /// The most bytes [`Application::write_snapshot`] can ever write, within the application's
    /// own limits. A shard refuses to start on a shard log whose frames cannot hold it: a
    /// snapshot that outgrew its frame could never be committed, and the shard would stall.
    fn snapshot_bytes_max(&self) -> u64;
    /// Replaces the state with a snapshot.
    fn restore_snapshot(&mut self, bytes: &[u8]) -> Result<(), DecodeError>;
    /// Applies a delta written by [`Application::write_delta`].
    fn apply_delta(&mut self, bytes: &[u8]) -> Result<(), DecodeError>;
}

/// An application refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// The input breaks the application's rules (a gap in a stream, a chunk after the final
    /// one, a stream with no first chunk): an exactly-once violation.
    #[error("{0}")]
    Violation(String),
    /// A resource limit of the application was reached (e.g. too many open streams): an
    /// operational error, not a violation of the input's rules.
    #[error("{0}")]
    Limit(String),
    /// The input holds a message the application cannot decode (a Sum where a chunk must be, a
    /// malformed message list): damage to the input journal, not a violation of its rules.
    #[error("{0}")]
    Undecodable(String),
}

/// Why a shard stopped.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ShardError {
    #[error("shard {shard}: fenced out by another owner (shard log head moved from {expected} to {actual}); stopping without emitting anything")]
    Fenced {
        shard: String,
        expected: u64,
        actual: u64,
    },
    /// The application found its input breaking its rules ([`AppError::Violation`]).
    #[error("shard {shard}: input offset {offset}: {error}")]
    Violation {
        shard: String,
        offset: u64,
        error: AppError,
    },
    /// The application reached one of its limits ([`AppError::Limit`]).
    #[error("shard {shard}: input offset {offset}: limit reached: {error}")]
    Limit {
        shard: String,
        offset: u64,
        error: AppError,
    },
    #[error("shard {shard}: appending to the shard log: {error}")]
    Append {
        shard: String,
        #[source]
        error: AppendError,
    },
    #[error("shard {shard}: reading: {error}")]
    Read {
        shard: String,
        #[source]
        error: ReadError,
    },
    #[error("shard {shard}: journal {journal:?} offset {offset}: {detail}")]
    Corrupt {
        shard: String,
        /// The journal that broke: the shard log, or the input (a checkpoint past its head).
        journal: String,
        offset: u64,
        detail: String,
    },
    #[error("shard {shard} is already owned in this process")]
    AlreadyOwned { shard: String },
}

impl ShardError {
    /// [`ShardError::Violation`], [`ShardError::Limit`] or, for an undecodable message of the
    /// input journal `input`, [`ShardError::Corrupt`], as the application's error says.
    fn app(shard: &str, input: &str, offset: u64, error: AppError) -> ShardError {
        let shard = shard.to_string();
        match error {
            AppError::Limit(_) => ShardError::Limit { shard, offset, error },
            AppError::Violation(_) => ShardError::Violation { shard, offset, error },
            AppError::Undecodable(detail) => ShardError::Corrupt {
                shard,
                journal: input.to_string(),
                offset,
                detail: format!("{detail}: the input journal is damaged"),
            },
        }
    }

    fn append(shard: &str, error: AppendError) -> ShardError {
        match error {
            AppendError::Conflict { expected, actual, .. } => ShardError::Fenced {
                shard: shard.to_string(),
                expected,
                actual,
            },
            error => ShardError::Append {
                shard: shard.to_string(),
                error,
            },
        }
    }
}

/// Bytes of application state (outputs plus delta, or a snapshot) that one transaction frame can
/// hold in a shard log whose frames hold at most `frame_max_bytes`: the frame's header, padding
/// and the checkpoint's own header taken off (8 bytes spare for any alignment).
pub fn checkpoint_state_room_bytes(frame_max_bytes: u64) -> u64 {
    frame_max_bytes.saturating_sub(checkpoint_frame_overhead_bytes())
}

/// Bytes of a transaction frame that are not application state: see
/// [`checkpoint_state_room_bytes`].
pub fn checkpoint_frame_overhead_bytes() -> u64 {
    frame_len_bytes(0) + 8 + (MESSAGE_LEN_PREFIX_BYTES + CHECKPOINT_HEADER_BYTES) as u64
}

/// Transaction bounds and snapshot policy.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// A transaction ends after this many input messages...
    pub txn_max_messages: usize,
    /// ...or this many input bytes...
    pub txn_max_input_bytes: u64,
    /// ...or this long after it started (checked between frames)...
    pub txn_max_duration: Duration,
    /// ...or this long after its first output (a Sum) was produced (checked between frames), so
    /// an output waits for at most this much more input before its commit starts. This bounds
    /// output latency when input backs up (the other bounds then take 20 ms or 4 MiB).
    pub txn_max_output_delay: Duration,
    /// ...or once its outputs plus its delta reach this many bytes (checked between frames; one
    /// input frame's outputs may go past it), so a transaction frame stays below the journal's
    /// `frame_max_bytes`.
    pub txn_max_output_bytes: u64,
    /// A snapshot is written once the deltas since the last one reach
    /// `max(snapshot_min_delta_bytes, 2 × last snapshot size)`, so recovery reads a bounded
    /// amount and snapshot cost stays proportional to the work done.
    pub snapshot_min_delta_bytes: u64,
    /// Keep one transaction's append in flight while the next one is applied.
    pub pipelined: bool,
    /// DELIBERATELY BROKEN, for proving the crash suite can fail: write each transaction's
    /// checkpoint and its outputs in two separate appends (checkpoint first), so a crash between
    /// them loses the outputs. Never set it outside such a test. Only with the feature
    /// `fault-injection`; see [`ShardConfig::with_unsafe_split_commit`].
    #[cfg(feature = "fault-injection")]
    pub unsafe_split_commit: bool,
}

/// A fault was asked of a build without the feature `fault-injection`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} needs a build with the feature `fault-injection` (as `cargo test` builds it, or `cargo build --release --features fault-injection`)")]
pub struct FaultInjectionDisabled {
    pub what: &'static str,
}

impl ShardConfig {
    /// This config with [`ShardConfig::unsafe_split_commit`] set to `on`, or an error if `on`
    /// and this build has no fault injection (then the commit path has no such branch at all).
    pub fn with_unsafe_split_commit(self, on: bool) -> Result<ShardConfig, FaultInjectionDisabled> {
        #[cfg(feature = "fault-injection")]
        {
            Ok(ShardConfig {
                unsafe_split_commit: on,
                ..self
            })
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            if on {
                return Err(FaultInjectionDisabled {
                    what: "the split commit (unsafe_split_commit)",
                });
            }
            Ok(self)
        }
    }
}

impl Default for ShardConfig {
    fn default() -> ShardConfig {
        ShardConfig {
            txn_max_messages: 1 << 16,
            txn_max_input_bytes: 4 << 20,
            txn_max_duration: Duration::from_millis(20),
            txn_max_output_delay: Duration::from_millis(1),
            txn_max_output_bytes: 1 << 20,
            snapshot_min_delta_bytes: 1 << 20,
            pipelined: true,
            #[cfg(feature = "fault-injection")]
            unsafe_split_commit: false,
        }
    }
}

/// What one transaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxnReport {
    pub input_messages: u64,
    pub input_bytes: u64,
    /// Output messages (excluding the checkpoint).
    pub outputs: u32,
    /// Bytes of the checkpoint message (delta or snapshot).
    pub checkpoint_bytes: u64,
    pub snapshot: bool,
    /// Bytes of the snapshot checkpoint written after this transaction, in its own frame (0 if
    /// none was due).
    pub snapshot_bytes: u64,
    /// Where the transaction's frames were placed: `offset` of its first frame, `end` just past
    /// its last (the snapshot frame, if one followed): the shard-log head after it. `None` if
    /// nothing was placed. A fresh shard's first call also places its initial snapshot.
    pub placed_at: Option<AppendAck>,
}

/// Counters over a shard's life in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub txns: u64,
    pub snapshots: u64,
    pub input_messages: u64,
    pub input_bytes: u64,
    /// Deltas replayed by recovery on top of the snapshot.
    pub recovered_deltas: u64,
}

/// One shard: an input journal, a shard log and the application state between them. `J` is the
/// journal backend ([`ss_log::boundary`]): the embedded [`Journal`] unless said otherwise.
pub struct Shard<A: Application, J: FrameJournal = Journal> {
    name: String,
    /// The input journal's name, for damage found in it.
    input_name: String,
    /// Where recovery resumed the input, and the shard-log frame whose checkpoint said so: a
    /// first read that finds no frame there blames the checkpoint as well as the input.
    resumed_at: (u64, u64),
    app: A,
    log: J,
    reader: J::Reader,
    config: ShardConfig,
    /// The shard log head this owner expects: every append is conditional on it.
    expect_head: u64,
    next_txn_seq: u64,
    snapshot_offset: u64,
    delta_bytes_since_snapshot: u64,
    last_snapshot_bytes: u64,
    frame: Batch,
    /// An input frame read but not applied: it would not have fitted the transaction's frame, so
    /// it opens the next transaction. Input offsets (checkpoints included) stop before it.
    carried: Option<Frame>,
    /// [`checkpoint_state_room_bytes`] of the shard log.
    state_room_bytes: u64,
    in_flight: Option<J::Pending>,
    /// Input offset covered by the last durable checkpoint.
    durable_input_offset: u64,
    /// Shard-log offset of the snapshot the last durable checkpoint builds on.
    durable_snapshot_offset: u64,
    /// (input offset, snapshot offset) of the transaction in flight, once it is durable.
    pending_checkpoint: Option<(u64, u64)>,
    stats: ShardStats,
}

fn last_checkpoint<'a>(frame: &'a Frame, shard: &str, journal: &str) -> Result<Checkpoint<'a>, ShardError> {
    let corrupt = |detail: String| ShardError::Corrupt {
        shard: shard.to_string(),
        journal: journal.to_string(),
        offset: frame.offset,
        detail,
    };
    let mut last = None;
    for m in frame.messages() {
        last = Some(m.map_err(|e| corrupt(e.to_string()))?);
    }
    let last = last.ok_or_else(|| corrupt("transaction frame without messages".into()))?;
    Checkpoint::decode(last).map_err(|e| corrupt(format!("last message is not a checkpoint: {e}")))
}

/// What replaying a shard log from its latest snapshot restored, for [`Shard::recover`].
#[derive(Default)]
struct Replayed {
    input_offset: u64,
    /// The shard-log frame whose checkpoint gave `input_offset`.
    checkpoint_offset: u64,
    next_txn_seq: u64,
    snapshot_offset: u64,
    delta_bytes: u64,
    snapshot_bytes: u64,
    recovered_deltas: u64,
}

/// Restores `app` from `log` up to `head`: the snapshot its last frame's checkpoint names, then
/// every later delta, in order (txn_seq checked).
fn replay<A: Application, J: FrameJournal>(
    name: &str,
    app: &mut A,
    log: &J,
    head: u64,
) -> Result<Replayed, ShardError> {
    let read_err = |error| ShardError::Read {
        shard: name.to_string(),
        error,
    };
    let mut r = Replayed::default();
    let last = log.last_frame().map_err(read_err)?;
    let Some(last) = last else {
        let log_first_offset = log.first_offset().map_err(read_err)?;
        if head > log_first_offset {
            // Restarting from input offset 0 would repeat every Sum already in the log.
            return Err(ShardError::Corrupt {
                shard: name.to_string(),
                journal: log.name().to_string(),
                offset: head,
                detail: format!(
                    "the shard log holds bytes {}..{head} but no last frame was found; refusing to start over from input offset 0",
                    log_first_offset
                ),
            });
        }
        return Ok(r);
    };
    r.snapshot_offset = last_checkpoint(&last, name, log.name())?.snapshot_offset;
    let mut frames = log.reader(r.snapshot_offset).map_err(read_err)?;
    while frames.offset() < head {
        let frame = frames
            .try_next()
            .map_err(read_err)?
            .ok_or_else(|| ShardError::Corrupt {
                shard: name.to_string(),
                journal: log.name().to_string(),
                offset: frames.offset(),
                detail: format!("shard log ends before its head {head}"),
            })?;
        replay_frame(name, app, log, &frame, &mut r)?;
    }
    Ok(r)
}

/// Applies one transaction frame's checkpoint: the snapshot (the first frame), or a delta.
fn replay_frame<A: Application, J: FrameJournal>(
    name: &str,
    app: &mut A,
    log: &J,
    frame: &Frame,
    r: &mut Replayed,
) -> Result<(), ShardError> {
    let ck = last_checkpoint(frame, name, log.name())?;
    let corrupt = |detail: String| ShardError::Corrupt {
        shard: name.to_string(),
        journal: log.name().to_string(),
        offset: frame.offset,
        detail,
    };
    let first = frame.offset == r.snapshot_offset;
    match (ck.kind, first) {
        (CheckpointKind::Snapshot, true) => {
            app.restore_snapshot(ck.app_state)
                .map_err(|e| corrupt(e.to_string()))?;
            r.snapshot_bytes = ck.app_state.len() as u64;
        }
        (CheckpointKind::Delta, false) => {
            app.apply_delta(ck.app_state)
                .map_err(|e| corrupt(e.to_string()))?;
            r.delta_bytes += ck.app_state.len() as u64;
            r.recovered_deltas += 1;
        }
        (kind, _) => {
            return Err(corrupt(format!(
                "unexpected {kind:?} checkpoint (latest snapshot is at {})",
                r.snapshot_offset
            )))
        }
    }
    if ck.txn_seq != r.next_txn_seq && !first {
        return Err(corrupt(format!(
            "txn_seq {} where {} was expected",
            ck.txn_seq, r.next_txn_seq
        )));
    }
    r.input_offset = ck.input_offset;
    r.checkpoint_offset = frame.offset;
    r.next_txn_seq = ck.txn_seq + 1;
    Ok(())
}

impl<A: Application, J: FrameJournal> Shard<A, J> {
    /// Restores `app` from the shard log (latest snapshot plus later deltas) and positions the
    /// input reader at the checkpointed offset. `app` must be in its initial state.
    pub fn recover(
        name: &str,
        mut app: A,
        input: &J,
        log: J,
        config: ShardConfig,
    ) -> Result<Shard<A, J>, ShardError> {
        let read_err = |error| ShardError::Read {
            shard: name.to_string(),
            error,
        };
        let head = log.durable_head().map_err(read_err)?;
        let replayed = replay(name, &mut app, &log, head)?;
        let stats = ShardStats {
            recovered_deltas: replayed.recovered_deltas,
            ..ShardStats::default()
        };
        let Replayed {
            input_offset,
            checkpoint_offset,
            next_txn_seq,
            snapshot_offset,
            delta_bytes,
            snapshot_bytes,
            ..
        } = replayed;
        // Invariant: a shard's checkpoint never points past its input's durable head. If it
        // does, the input lost bytes the shard already acted on (its medium lost acknowledged
        // writes, or the input journal was replaced): new input would land at offsets the shard
        // believes it has consumed, and their Sums would be lost.
        let mut input_head = input.durable_head().map_err(read_err)?;
        // A replicated backend may answer the head from a replica behind the frames this
        // checkpoint covers (another process read them): read it again for a while first.
        let asked = Instant::now();
        while input_offset > input_head && asked.elapsed() < input.head_lag_max() {
            std::thread::sleep(Duration::from_millis(200));
            input_head = input.durable_head().map_err(read_err)?;
        }
        if input_offset > input_head {
            return Err(ShardError::Corrupt {
                shard: name.to_string(),
                journal: input.name().to_string(),
                offset: input_head,
                detail: format!(
                    "the shard log {:?} checkpoints input offset {input_offset}, past the input's durable head {}: the input lost bytes the shard already consumed; restore the input journal from a backup, or remove both journals to start over",
                    log.name(),
                    input_head
                ),
            });
        }
        let state_room_bytes = checkpoint_state_room_bytes(log.frame_max_bytes());
        let snapshot_bytes_max = app.snapshot_bytes_max();
        if snapshot_bytes_max > state_room_bytes {
            return Err(ShardError::Limit {
                shard: name.to_string(),
                offset: input_offset,
                error: AppError::Limit(format!(
                    "a snapshot may take up to {} bytes (the application's limits, or the state restored from the log if that is larger), but a frame of the shard log {:?} (frame_max_bytes {}) holds at most {state_room_bytes} bytes of checkpoint state: raise the shard log's frame limit (for `run`, --fragment-max-bytes) or lower the application's limits (for a summer, max_open_streams or finished_window)",
                    snapshot_bytes_max,
                    log.name(),
                    log.frame_max_bytes()
                )),
            });
        }
        let mut config = config;
        // One transaction is one frame: a further input frame is applied only while its most
        // output still fits (`apply_available`); past half the frame, the transaction ends.
        config.txn_max_output_bytes = config.txn_max_output_bytes.min(log.frame_max_bytes() / 2);
        Ok(Shard {
            name: name.to_string(),
            input_name: input.name().to_string(),
            resumed_at: (input_offset, checkpoint_offset),
            app,
            reader: input.reader(input_offset).map_err(read_err)?,
            log,
            config,
            expect_head: head,
            next_txn_seq,
            snapshot_offset,
            delta_bytes_since_snapshot: delta_bytes,
            last_snapshot_bytes: snapshot_bytes,
            frame: Batch::with_capacity(64 << 10),
            carried: None,
            state_room_bytes,
            in_flight: None,
            durable_input_offset: input_offset,
            durable_snapshot_offset: snapshot_offset,
            pending_checkpoint: None,
            stats,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn app(&self) -> &A {
        &self.app
    }

    pub fn stats(&self) -> ShardStats {
        self.stats
    }

    /// Input offset covered by the last durable checkpoint (input below it may be removed).
    pub fn durable_input_offset(&self) -> u64 {
        self.durable_input_offset
    }

    /// Shard-log offset of the snapshot that recovery would start from now: shard-log
    /// fragments wholly below it may be removed.
    pub fn durable_snapshot_offset(&self) -> u64 {
        self.durable_snapshot_offset
    }

    /// Input offset applied so far (including the open transaction).
    pub fn input_offset(&self) -> u64 {
        match &self.carried {
            Some(frame) => frame.offset,
            None => self.reader.offset(),
        }
    }

    /// The next input frame already durable: the carried one first.
    fn try_next_input(&mut self) -> Result<Option<Frame>, ShardError> {
        if let Some(frame) = self.carried.take() {
            return Ok(Some(frame));
        }
        self.reader.try_next().map_err(|e| self.read_error(e))
    }

    /// Whether `frame` may join the open transaction: the most it can add keeps the
    /// transaction's outputs and delta within one shard-log frame.
    fn fits(&self, frame: &Frame) -> bool {
        let now = (self.frame.payload().len() + self.app.delta_bytes_hint()) as u64;
        now + self.app.apply_bytes_max(frame.offset, frame.message_count) <= self.state_room_bytes
    }

    pub fn shard_log(&self) -> &J {
        &self.log
    }

    fn apply_frame(&mut self, frame: &Frame, report: &mut TxnReport) -> Result<(), ShardError> {
        let violation = |error| ShardError::app(&self.name, &self.input_name, frame.offset, error);
        self.app
            .before_frame(frame.offset, &mut self.frame)
            .map_err(violation)?;
        for message in frame.messages() {
            let message = message.map_err(|e| {
                violation(AppError::Undecodable(format!(
                    "malformed message list in input frame: {e}"
                )))
            })?;
            self.app
                .apply(message, frame.offset, &mut self.frame)
                .map_err(violation)?;
            report.input_messages += 1;
        }
        report.input_bytes += frame.end - frame.offset;
        Ok(())
    }

    fn txn_full(&self, report: &TxnReport, started: Instant, first_output_at: Option<Instant>) -> bool {
        first_output_at.is_some_and(|at| at.elapsed() >= self.config.txn_max_output_delay)
            || report.input_messages >= self.config.txn_max_messages as u64
            || report.input_bytes >= self.config.txn_max_input_bytes
            || (self.frame.payload().len() + self.app.delta_bytes_hint()) as u64
                >= self.config.txn_max_output_bytes
            || started.elapsed() >= self.config.txn_max_duration
    }

    /// A fresh shard's first frame: a snapshot of the initial state, so every later delta has a
    /// base. Written before any input is applied.
    fn commit_initial_snapshot(&mut self, report: &mut TxnReport) -> Result<(), ShardError> {
        debug_assert!(self.frame.is_empty() && self.in_flight.is_none());
        let pending = self.commit_frame(report, true)?;
        report.snapshot_bytes = std::mem::take(&mut report.checkpoint_bytes);
        self.pending_checkpoint = Some((self.input_offset(), self.snapshot_offset));
        self.in_flight = Some(pending);
        Ok(())
    }

    fn snapshot_due(&self) -> bool {
        self.delta_bytes_since_snapshot
            >= self
                .config
                .snapshot_min_delta_bytes
                .max(2 * self.last_snapshot_bytes)
    }

    /// Starts a transaction: a fresh shard first places its initial snapshot.
    fn begin_transaction(&mut self) -> Result<TxnReport, ShardError> {
        let mut report = TxnReport::default();
        if self.next_txn_seq == 0 {
            self.commit_initial_snapshot(&mut report)?;
        }
        Ok(report)
    }

    fn read_error(&self, error: ReadError) -> ShardError {
        let (input_offset, checkpoint_offset) = self.resumed_at;
        match &error {
            // No frame where the checkpoint resumes the input (the reader never comes back to an
            // offset it passed, so this is the first read): the checkpoint names the middle of a
            // frame, or the input's frame there is damaged. Said naming both: the read error
            // alone ("bad magic") sends an operator to the input only.
            ReadError::Corrupt { offset, .. } if *offset == input_offset => ShardError::Corrupt {
                shard: self.name.clone(),
                journal: self.log.name().to_string(),
                offset: checkpoint_offset,
                detail: format!(
                    "the shard log's last checkpoint resumes input {:?} at offset {input_offset}, where no frame begins ({error}): \
                     the checkpoint names the middle of a frame (the shard log is damaged), or the input's frame there is",
                    self.input_name
                ),
            },
            _ => ShardError::Read {
                shard: self.name.clone(),
                error,
            },
        }
    }

    /// Applies `first` and then what input is already durable, within the transaction bounds.
    fn apply_available(&mut self, first: Frame, report: &mut TxnReport) -> Result<(), ShardError> {
        let started = Instant::now();
        let mut first_output_at = None;
        self.apply_frame(&first, report)?;
        loop {
            if first_output_at.is_none() && !self.frame.is_empty() {
                first_output_at = Some(Instant::now());
            }
            if self.txn_full(report, started, first_output_at) {
                break;
            }
            match self.try_next_input()? {
                Some(frame) if self.fits(&frame) => self.apply_frame(&frame, report)?,
                Some(frame) => {
                    self.carried = Some(frame);
                    break;
                }
                None => break,
            }
        }
        Ok(())
    }

    /// Runs one transaction: waits up to `idle_wait` for input, applies what is available within
    /// the bounds, and commits. With nothing to apply, only settles an in-flight append.
    pub fn run_transaction(&mut self, idle_wait: Duration) -> Result<TxnReport, ShardError> {
        let mut report = self.begin_transaction()?;
        let first = match self.try_next_input()? {
            Some(f) => Some(f),
            None => {
                self.settle()?;
                self.reader
                    .next_timeout(idle_wait)
                    .map_err(|e| self.read_error(e))?
            }
        };
        let Some(first) = first else { return Ok(report) };
        self.apply_available(first, &mut report)?;
        let pending = self.commit(&mut report)?;
        self.finish_commit(pending)?;
        Ok(report)
    }

    /// The deliberately broken commit ([`ShardConfig::unsafe_split_commit`]): the checkpoint
    /// becomes durable alone, then the outputs follow with an empty delta. A crash in between
    /// has advanced the input offset past outputs that never land.
    #[cfg(feature = "fault-injection")]
    fn split_commit(&mut self, report: &mut TxnReport) -> Result<J::Pending, ShardError> {
        let outputs = std::mem::replace(&mut self.frame, Batch::with_capacity(64 << 10));
        let first = self.commit_frame(report, false)?;
        first.wait().map_err(|e| ShardError::append(&self.name, e))?;
        let count = outputs.message_count();
        self.frame = outputs;
        let second = self.commit_frame(report, false)?;
        report.outputs = count;
        Ok(second)
    }

    /// Places the transaction frame (outputs + checkpoint) in the shard log, conditionally.
    fn commit(&mut self, report: &mut TxnReport) -> Result<J::Pending, ShardError> {
        #[cfg(feature = "fault-injection")]
        if self.config.unsafe_split_commit && !self.frame.is_empty() {
            return self.split_commit(report);
        }
        let pending = self.commit_frame(report, false)?;
        if !self.snapshot_due() {
            return Ok(pending);
        }
        // Snapshots travel in a frame of their own, after the transaction's frame, so no frame
        // holds both outputs and the whole state. A crash between the two is harmless: the
        // transaction is complete without the snapshot. Waiting for the later frame covers the
        // earlier one (a journal completes appends in order and fails everything queued behind
        // a failure).
        let mut snapshot_report = TxnReport::default();
        let snapshot = match self.commit_frame(&mut snapshot_report, true) {
            Ok(snapshot) => snapshot,
            // The transaction frame just placed may have failed and been rolled back, moving the
            // head: report that failure, not fencing.
            Err(fenced @ ShardError::Fenced { .. }) => {
                return Err(match pending.wait() {
                    Err(e) => ShardError::append(&self.name, e),
                    Ok(_) => fenced,
                });
            }
            Err(e) => return Err(e),
        };
        report.snapshot = true;
        report.snapshot_bytes = snapshot_report.checkpoint_bytes;
        report.placed_at = Some(AppendAck {
            offset: pending.ack().offset,
            end: snapshot.ack().end,
        });
        Ok(snapshot)
    }

    /// Places the frame of outputs gathered so far plus a checkpoint (a snapshot if `snapshot`,
    /// which needs a frame without outputs), conditionally.
    fn commit_frame(&mut self, report: &mut TxnReport, snapshot: bool) -> Result<J::Pending, ShardError> {
        debug_assert!(
            !snapshot || self.frame.is_empty(),
            "a snapshot frame carries no outputs"
        );
        let input_offset = self.input_offset();
        // Invariant: a checkpoint never points past what its input has made durable (readers
        // only return durable frames, and the durable head only grows).
        assert!(
            input_offset <= self.reader.known_durable_head(),
            "shard {}: checkpoint input offset {input_offset} past the input's durable head {}",
            self.name,
            self.reader.known_durable_head()
        );
        let frame_offset = self.expect_head;
        let (kind, snapshot_offset) = if snapshot {
            (CheckpointKind::Snapshot, frame_offset)
        } else {
            (CheckpointKind::Delta, self.snapshot_offset)
        };
        report.outputs = self.frame.message_count();
        let txn_seq = self.next_txn_seq;
        let app = &mut self.app;
        let mut state_bytes = 0;
        self.frame.push_with(|buf| {
            Checkpoint::encode_header(buf, input_offset, txn_seq, snapshot_offset, kind);
            let start = buf.len();
            if snapshot {
                app.write_snapshot(buf);
            } else {
                app.write_delta(buf);
            }
            state_bytes = (buf.len() - start) as u64;
        });
        let placed = self.log.submit_if(frame_offset, &self.frame);
        self.frame.clear();
        let pending = match placed {
            Ok(pending) => pending,
            Err(error) => {
                // A conflict right behind this owner's own in-flight append may only mean that
                // the append failed and the journal rolled back: report that failure, not
                // fencing. (The wait is short: a rolled-back append is already being failed.)
                if let (AppendError::Conflict { .. }, Some(previous)) = (&error, self.in_flight.take()) {
                    previous.wait().map_err(|e| ShardError::append(&self.name, e))?;
                }
                return Err(ShardError::append(&self.name, error));
            }
        };
        let ack = pending.ack();
        debug_assert_eq!(ack.offset, frame_offset);
        self.expect_head = ack.end;
        self.next_txn_seq += 1;
        if snapshot {
            self.snapshot_offset = frame_offset;
            self.last_snapshot_bytes = state_bytes;
            self.delta_bytes_since_snapshot = 0;
            self.stats.snapshots += 1;
        } else {
            self.delta_bytes_since_snapshot += state_bytes;
        }
        self.stats.txns += 1;
        self.stats.input_messages += report.input_messages;
        self.stats.input_bytes += report.input_bytes;
        report.checkpoint_bytes = (CHECKPOINT_HEADER_BYTES as u64) + state_bytes;
        report.snapshot = snapshot;
        report.placed_at = Some(ack);
        Ok(pending)
    }

    fn finish_commit(&mut self, pending: J::Pending) -> Result<(), ShardError> {
        let input_offset = self.input_offset();
        if let Some(previous) = self.in_flight.take() {
            self.settled(previous.wait())?;
        }
        self.pending_checkpoint = Some((input_offset, self.snapshot_offset));
        if self.config.pipelined {
            self.in_flight = Some(pending);
            Ok(())
        } else {
            self.settled(pending.wait())
        }
    }

    fn settled(&mut self, result: Result<AppendAck, AppendError>) -> Result<(), ShardError> {
        result.map_err(|e| ShardError::append(&self.name, e))?;
        if self.in_flight.is_none() {
            if let Some((input_offset, snapshot_offset)) = self.pending_checkpoint.take() {
                self.durable_input_offset = input_offset;
                self.durable_snapshot_offset = snapshot_offset;
            }
        }
        Ok(())
    }

    /// Waits for the in-flight transaction, if any, to be durable.
    pub fn settle(&mut self) -> Result<(), ShardError> {
        if let Some(previous) = self.in_flight.take() {
            self.settled(previous.wait())?;
        }
        Ok(())
    }

    /// Runs transactions until the input reaches `input_end` (and it is all committed).
    pub fn run_until(&mut self, input_end: u64, idle_wait: Duration) -> Result<(), ShardError> {
        while self.input_offset() < input_end {
            self.run_transaction(idle_wait)?;
        }
        self.settle()
    }
}

/// The async drivers, for the embedded journal (whose appends and reads can be awaited).
impl<A: Application> Shard<A, Journal> {
    /// Async [`Shard::run_transaction`].
    pub async fn run_transaction_async(&mut self, idle_wait: Duration) -> Result<TxnReport, ShardError> {
        let mut report = self.begin_transaction()?;
        let first = match self.try_next_input()? {
            Some(f) => Some(f),
            None => {
                self.settle_async().await?;
                match tokio::time::timeout(idle_wait, self.reader.next()).await {
                    Ok(r) => Some(r.map_err(|e| self.read_error(e))?),
                    Err(_elapsed) => None,
                }
            }
        };
        let Some(first) = first else { return Ok(report) };
        self.apply_available(first, &mut report)?;
        let pending = self.commit(&mut report)?;
        let input_offset = self.input_offset();
        if let Some(previous) = self.in_flight.take() {
            self.settled(previous.durable().await)?;
        }
        self.pending_checkpoint = Some((input_offset, self.snapshot_offset));
        if self.config.pipelined {
            self.in_flight = Some(pending);
        } else {
            self.settled(pending.durable().await)?;
        }
        Ok(report)
    }

    /// Async [`Shard::settle`].
    pub async fn settle_async(&mut self) -> Result<(), ShardError> {
        if let Some(previous) = self.in_flight.take() {
            self.settled(previous.durable().await)?;
        }
        Ok(())
    }
}

impl<A: Application, J: FrameJournal> Drop for Shard<A, J> {
    /// Waits for the in-flight transaction, if any: an owner is gone only once its last append
    /// has landed or failed. Otherwise a successor recovering from the durable head meanwhile
    /// would be fenced when that append lands.
    fn drop(&mut self) {
        if let Some(previous) = self.in_flight.take() {
            let _ = previous.wait();
        }
    }
}

/// In-process shard ownership: at most one live owner per shard name.
#[derive(Clone, Default)]
pub struct ShardLocks {
    held: Arc<Mutex<HashSet<String>>>,
}

/// Ownership of one shard; released on drop.
pub struct ShardLease {
    locks: ShardLocks,
    shard: String,
}

impl ShardLocks {
    pub fn try_acquire(&self, shard: &str) -> Result<ShardLease, ShardError> {
        if !self.held.lock().insert(shard.to_string()) {
            return Err(ShardError::AlreadyOwned {
                shard: shard.to_string(),
            });
        }
        Ok(ShardLease {
            locks: self.clone(),
            shard: shard.to_string(),
        })
    }
}

impl Drop for ShardLease {
    fn drop(&mut self) {
        self.locks.held.lock().remove(&self.shard);
    }
}
