//! The journal boundary: what the chunker and the exactly-once shard need from a journal, so the
//! same chunk and summer code runs on this crate's [`Journal`] (the default) and on other
//! backends (NATS JetStream, in `ss-nats`).
//!
//! A backend is a [`FrameJournal`] with a [`FrameReader`] and a [`PendingFrame`]. Positions are
//! opaque `u64`s whose meaning the backend defines; what callers rely on is:
//!
//! - a [`Frame`] spans `offset..end`, the next frame starts at `end`, and the head after an
//!   append is the appended frame's `end` (here: byte offsets; on JetStream a message with
//!   stream sequence `s` spans `s - 1..s`, so the head is the stream's last sequence);
//! - `reader(p)` yields the frames whose `offset >= p`, in order, each exactly once;
//! - `submit_if(h, batch)` places the frame at `h` only if the head is still `h`, else fails with
//!   [`AppendError::Conflict`] and writes nothing (fencing);
//! - a frame carries one [`Batch`] of messages, all or nothing.
//!
//! The embedded [`Journal`] implements the traits by calling its own methods, so code generic over
//! them is monomorphized to exactly the calls it made before (no dynamic dispatch, no copies).

use std::time::{Duration, Instant};

use crate::{AppendAck, AppendError, Batch, Frame, Journal, PendingAppend, ReadError, Reader};

/// A journal as writers and shards see it.
pub trait FrameJournal: Clone + Send + Sync + 'static {
    type Reader: FrameReader;
    type Pending: PendingFrame;

    fn name(&self) -> &str;
    /// Largest frame an append accepts, in bytes of payload and framing.
    fn frame_max_bytes(&self) -> u64;
    /// The position after the last durable frame.
    fn durable_head(&self) -> Result<u64, ReadError>;
    /// A durable head at least as far as every append through this handle that has completed,
    /// without a round trip (for polling pending appends).
    fn known_durable_head(&self) -> u64;
    /// The position of the first frame still stored.
    fn first_offset(&self) -> Result<u64, ReadError>;
    /// The last durable frame, if any.
    fn last_frame(&self) -> Result<Option<Frame>, ReadError>;
    /// Reads the frames at and after `offset` (a frame boundary).
    fn reader(&self, offset: u64) -> Result<Self::Reader, ReadError>;
    /// Places an append; durable once the returned pending append resolves.
    fn submit(&self, batch: &Batch) -> Result<Self::Pending, AppendError>;
    /// Places an append only if the head is still `expect_head` (fencing).
    fn submit_if(&self, expect_head: u64, batch: &Batch) -> Result<Self::Pending, AppendError>;
    /// How many appends failed since the journal was opened (see [`Journal::failures`]).
    fn failures(&self) -> u64;
    /// [`FrameJournal::submit`] unless an append failed since `failures()` was `since`.
    fn submit_unless_failed(&self, since: u64, batch: &Batch) -> Result<Self::Pending, AppendError>;
    /// How long [`FrameJournal::durable_head`] may lag the head another process has already
    /// read past (a replicated backend that can answer from a replica behind its leader):
    /// a head found behind such a position is read again for this long before it is believed.
    /// Zero for the embedded journal, whose head is the file's.
    fn head_lag_max(&self) -> Duration {
        Duration::ZERO
    }
    /// When the frame ending at `end` became durable, if the backend still knows (a reader that
    /// sees a frame some time after that learns when it really landed); `None` otherwise.
    fn durable_at(&self, end: u64) -> Option<Instant> {
        let _ = end;
        None
    }
}

/// Frames in order from a position.
pub trait FrameReader: Send {
    /// The position of the next frame (just past the last one returned).
    fn offset(&self) -> u64;
    /// The next durable frame, without waiting.
    fn try_next(&mut self) -> Result<Option<Frame>, ReadError>;
    /// The next frame, waiting up to `timeout` for one to become durable.
    fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Frame>, ReadError>;
    /// A durable head at least as far as every frame returned so far, without a round trip
    /// (checked against checkpoints: one never points past its input's durable head).
    fn known_durable_head(&self) -> u64;
}

/// An append that has a place and waits to become durable.
pub trait PendingFrame: Send {
    /// Where the frame will be once durable.
    fn ack(&self) -> AppendAck;
    /// Blocks until the frame is durable (or failed).
    fn wait(self) -> Result<AppendAck, AppendError>;
    /// [`PendingFrame::wait`], also returning when it became durable.
    fn wait_timed(self) -> Result<(AppendAck, Instant), AppendError>;
}

impl FrameJournal for Journal {
    type Reader = Reader;
    type Pending = PendingAppend;

    #[inline]
    fn durable_at(&self, end: u64) -> Option<Instant> {
        Journal::durable_at(self, end)
    }

    #[inline]
    fn name(&self) -> &str {
        Journal::name(self)
    }
    #[inline]
    fn frame_max_bytes(&self) -> u64 {
        Journal::frame_max_bytes(self)
    }
    #[inline]
    fn durable_head(&self) -> Result<u64, ReadError> {
        Ok(Journal::durable_head(self))
    }
    #[inline]
    fn known_durable_head(&self) -> u64 {
        Journal::durable_head(self)
    }
    #[inline]
    fn first_offset(&self) -> Result<u64, ReadError> {
        Ok(Journal::first_offset(self))
    }
    #[inline]
    fn last_frame(&self) -> Result<Option<Frame>, ReadError> {
        Journal::last_frame(self)
    }
    #[inline]
    fn reader(&self, offset: u64) -> Result<Reader, ReadError> {
        Ok(Journal::reader(self, offset))
    }
    #[inline]
    fn submit(&self, batch: &Batch) -> Result<PendingAppend, AppendError> {
        Journal::submit(self, batch)
    }
    #[inline]
    fn submit_if(&self, expect_head: u64, batch: &Batch) -> Result<PendingAppend, AppendError> {
        Journal::submit_if(self, expect_head, batch)
    }
    #[inline]
    fn failures(&self) -> u64 {
        Journal::failures(self)
    }
    #[inline]
    fn submit_unless_failed(&self, since: u64, batch: &Batch) -> Result<PendingAppend, AppendError> {
        Journal::submit_unless_failed(self, since, batch)
    }
}

impl FrameReader for Reader {
    #[inline]
    fn offset(&self) -> u64 {
        Reader::offset(self)
    }
    #[inline]
    fn try_next(&mut self) -> Result<Option<Frame>, ReadError> {
        Reader::try_next(self)
    }
    #[inline]
    fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Frame>, ReadError> {
        Reader::next_timeout(self, timeout)
    }
    #[inline]
    fn known_durable_head(&self) -> u64 {
        self.journal().durable_head()
    }
}

impl PendingFrame for PendingAppend {
    #[inline]
    fn ack(&self) -> AppendAck {
        PendingAppend::ack(self)
    }
    #[inline]
    fn wait(self) -> Result<AppendAck, AppendError> {
        PendingAppend::wait(self)
    }
    #[inline]
    fn wait_timed(self) -> Result<(AppendAck, Instant), AppendError> {
        PendingAppend::wait_timed(self)
    }
}
