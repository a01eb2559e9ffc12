//! The frame scanner: every durable frame of a journal from an offset, in order, as an iterator.
//!
//! [`Journal::frames`] is the one way to read a journal through: `verify`, `crash-test`,
//! `journal read`, the test harnesses and the benches all use it instead of a hand-written loop
//! over [`Reader::try_next`]. Its errors are the reader's, so they already name the journal, the
//! fragment and the offset; [`Frames::messages`] does the same for a frame whose message list is
//! malformed. A scan can either fail where retention removed a range ([`ReadError::Removed`], the
//! default) or step over it and count it ([`Frames::step_over_removed`]), which is what a reader
//! of a live directory (a `run --retention` removing fragments meanwhile) wants.
//!
//! ```
//! use ss_log::{Batch, Log, Options};
//! let dir = tempfile::tempdir().unwrap();
//! let log = Log::open(dir.path(), Options::default()).unwrap();
//! let journal = log.journal("events").unwrap();
//! journal.append(&Batch::single(b"a")).unwrap();
//! journal.append(&Batch::single(b"b")).unwrap();
//! let mut frames = journal.frames(journal.first_offset());
//! let mut seen = Vec::new();
//! while let Some(frame) = frames.next() {
//!     let frame = frame.unwrap();
//!     for m in frames.messages(&frame) {
//!         seen.push(m.unwrap().to_vec());
//!     }
//! }
//! assert_eq!(seen, [b"a".to_vec(), b"b".to_vec()]);
//! ```

use std::ops::Range;
use std::time::Duration;

use crate::error::ReadError;
use crate::frame::FrameError;
use crate::journal::Journal;
use crate::reader::{Frame, Reader};

/// What a scan does where retention removed the range it would read next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRemoved {
    /// Yield [`ReadError::Removed`] and end.
    Fail,
    /// Move to where the stored data resumes, and record the range in [`Frames::gaps`].
    StepOver,
}

/// Every durable frame of a journal from an offset; see [`Journal::frames`].
///
/// The iterator ends (`None`) at the durable head as it is when reached; calling `next` again
/// later yields frames made durable since, so a tailer may keep one. An error does not move the
/// scan: the next call reads the same offset again (as [`Reader::try_next`] does), so a loop
/// must stop at an error rather than skip it.
pub struct Frames {
    reader: Reader,
    on_removed: OnRemoved,
    /// Ranges stepped over, oldest first (only with [`OnRemoved::StepOver`]).
    gaps: Vec<Range<u64>>,
}

impl Journal {
    /// Every durable frame from `from` (a frame boundary: 0, [`Journal::first_offset`], a
    /// checkpointed offset, an [`crate::AppendAck::end`]) to the durable head; see [`Frames`].
    pub fn frames(&self, from: u64) -> Frames {
        Frames {
            reader: self.reader(from),
            on_removed: OnRemoved::Fail,
            gaps: Vec::new(),
        }
    }

    /// A [`ReadError::Corrupt`] for a malformed message list in the frame at `frame_offset`,
    /// naming the fragment that holds it.
    pub fn message_error(&self, frame_offset: u64, error: FrameError) -> ReadError {
        let fragment = self
            .fragments()
            .into_iter()
            .rev()
            .find(|f| f.begin <= frame_offset)
            .map(|f| f.path)
            .unwrap_or_default();
        ReadError::Corrupt {
            journal: self.name().to_string(),
            fragment,
            offset: frame_offset,
            error,
        }
    }
}

impl Frames {
    /// Steps over ranges that retention removed (before or during the scan) instead of failing;
    /// each one is recorded in [`Frames::gaps`].
    pub fn step_over_removed(mut self) -> Frames {
        self.on_removed = OnRemoved::StepOver;
        self
    }

    /// The offset of the next frame to read.
    pub fn offset(&self) -> u64 {
        self.reader.offset()
    }

    pub fn journal(&self) -> &Journal {
        self.reader.journal()
    }

    /// The ranges stepped over so far, oldest first.
    pub fn gaps(&self) -> &[Range<u64>] {
        &self.gaps
    }

    /// The messages of `frame` (read from this scan), each error naming journal, fragment and
    /// frame offset.
    pub fn messages<'f>(&self, frame: &'f Frame) -> impl Iterator<Item = Result<&'f [u8], ReadError>> + 'f {
        let journal = self.reader.journal().clone();
        let offset = frame.offset;
        frame
            .messages()
            .map(move |m| m.map_err(|error| journal.message_error(offset, error)))
    }

    /// Like `next`, but waits up to `timeout` for a frame when the scan is at the durable head.
    /// `Ok(None)` when none arrived; [`ReadError::Closed`] once the journal is closed.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Frame>, ReadError> {
        loop {
            match self.reader.next_timeout(timeout) {
                Err(e) => {
                    if let Some(e) = self.stepped_over(e) {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }

    /// `None` if `error` is a removed range this scan steps over (and has now moved past), else
    /// the error to yield.
    fn stepped_over(&mut self, error: ReadError) -> Option<ReadError> {
        match error {
            ReadError::Removed { first, .. }
                if self.on_removed == OnRemoved::StepOver && first > self.reader.offset() =>
            {
                self.gaps.push(self.reader.offset()..first);
                self.reader.seek(first);
                None
            }
            other => Some(other),
        }
    }
}

impl Iterator for Frames {
    type Item = Result<Frame, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.reader.try_next() {
                Ok(frame) => return frame.map(Ok),
                Err(e) => {
                    if let Some(e) = self.stepped_over(e) {
                        return Some(Err(e));
                    }
                }
            }
        }
    }
}
