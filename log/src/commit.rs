//! The commit path's state, in one place, as plain types testable without files or threads.
//!
//! - [`CommitState`]: the group-commit state machine. Appenders [`place`](CommitState::place)
//!   frames into the *filling* batch (conditional appends, backpressure and fragment roll
//!   decisions happen here, where offsets are assigned). A batch is committed by its **leader**:
//!   the first appender that waits on it while no commit is in flight, which
//!   [`take`](CommitState::take)s the batch and writes and syncs it on its own thread; otherwise
//!   (a commit in flight, or async and pipelined appenders) the journal's helper thread, which
//!   takes it as soon as the commit in flight ends.
//!   Failures roll back ([`failed`](CommitState::failed)) or poison
//!   ([`poison`](CommitState::poison)).
//! - [`DurableHead`]: the offset below which everything is durable (an atomic), the event that
//!   announces it moved, and the blocking and async waits on it, written once.
//! - [`FragmentSet`]: the journal's fragments, oldest first, and the first stored offset.
//! - [`Completion`]: the outcome slot of one batch, shared by its appenders.
//!
//! The I/O of a commit (write, fdatasync, rolls, roll back) is in `writer.rs`; the wiring (locks,
//! who wakes whom) in `journal.rs`; readers (`reader.rs`) use only the head and the fragment set.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use event_listener::{Event, Listener};
use parking_lot::RwLock;

use crate::error::AppendError;
use crate::fragment::Fragment;
use crate::frame::{self, FrameHeader, FRAME_KIND_BATCH};

/// Outcome slot of one group-commit batch, shared by its appenders.
pub(crate) struct Completion {
    /// Someone leads the batch (set under the state lock, read without it: once set, a waiter
    /// need not take the lock to learn that it only follows).
    led: AtomicBool,
    result: OnceLock<Result<(), AppendError>>,
    /// When the batch's outcome was known (for latency measurements).
    completed_at: OnceLock<Instant>,
    event: Event,
}

impl Completion {
    pub fn new() -> Arc<Completion> {
        Arc::new(Completion {
            led: AtomicBool::new(false),
            result: OnceLock::new(),
            completed_at: OnceLock::new(),
            event: Event::new(),
        })
    }

    /// Records the outcome (the first one wins) and wakes every waiter.
    pub fn complete(&self, result: Result<(), AppendError>) {
        let _ = self.completed_at.set(Instant::now());
        let _ = self.result.set(result);
        self.event.notify(usize::MAX);
    }

    /// Stamps the time the batch became durable, before its head is published.
    pub fn stamp(&self) {
        let _ = self.completed_at.set(Instant::now());
    }

    /// Whether the batch has a leader (or was taken, or completed): its waiters just wait.
    pub fn is_led(&self) -> bool {
        self.led.load(Ordering::Acquire) || self.result.get().is_some()
    }

    pub fn completed_at(&self) -> Option<Instant> {
        self.completed_at.get().copied()
    }

    /// Blocks until the outcome is known.
    pub fn wait(&self) -> &Result<(), AppendError> {
        loop {
            if let Some(r) = self.result.get() {
                return r;
            }
            let listener = self.event.listen();
            if self.result.get().is_none() {
                listener.wait();
            }
        }
    }

    /// Resolves once the outcome is known.
    pub async fn wait_async(&self) -> &Result<(), AppendError> {
        loop {
            if let Some(r) = self.result.get() {
                return r;
            }
            let listener = self.event.listen();
            if self.result.get().is_none() {
                listener.await;
            }
        }
    }
}

/// How many publications of the durable head [`DurableHead::durable_at`] remembers.
const DURABLE_TIMES_KEPT: usize = 256;

/// The durable head: readers see exactly the bytes below it. It only grows, over whole batches,
/// each published after its `fdatasync` returned.
pub(crate) struct DurableHead {
    head: AtomicU64,
    /// The last [`DURABLE_TIMES_KEPT`] heads published and when, oldest first, and whether
    /// older ones were dropped ([`DurableHead::durable_at`]).
    recent: parking_lot::Mutex<(std::collections::VecDeque<(u64, Instant)>, bool)>,
    /// The journal closed: nothing more will become durable.
    closed: AtomicBool,
    changed: Event,
}

impl DurableHead {
    pub fn new(head: u64) -> DurableHead {
        DurableHead {
            head: AtomicU64::new(head),
            recent: parking_lot::Mutex::new((std::collections::VecDeque::new(), false)),
            closed: AtomicBool::new(false),
            changed: Event::new(),
        }
    }

    pub fn get(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// Publishes a durable batch `[begin, end)` and wakes the waiters. Asserts the invariants:
    /// a batch begins at the durable head, and the head only grows.
    pub fn advance(&self, journal: &str, begin: u64, end: u64) {
        let head = self.get();
        assert_eq!(
            begin, head,
            "journal {journal:?}: a batch must begin at the durable head"
        );
        assert!(end >= head, "journal {journal:?}: the durable head only grows");
        {
            let mut recent = self.recent.lock();
            if recent.0.len() == DURABLE_TIMES_KEPT {
                recent.0.pop_front();
                recent.1 = true;
            }
            recent.0.push_back((end, Instant::now()));
        }
        self.head.store(end, Ordering::Release);
        self.changed.notify(usize::MAX);
    }

    /// When the head first reached `end` or beyond, if that was among the last
    /// [`DURABLE_TIMES_KEPT`] publications; `None` if it has not yet, or too long ago.
    pub fn durable_at(&self, end: u64) -> Option<Instant> {
        let recent = self.recent.lock();
        let (times, dropped) = &*recent;
        let i = times.partition_point(|&(head, _)| head < end);
        if i == 0 && *dropped {
            return None;
        }
        times.get(i).map(|&(_, at)| at)
    }

    /// Wakes every waiter without moving (poisoning, closing).
    pub fn notify(&self) {
        self.changed.notify(usize::MAX);
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The head, if it is past `offset` or the journal closed (a wait for `offset` is over).
    fn beyond(&self, offset: u64) -> Option<u64> {
        let head = self.get();
        (head > offset || self.is_closed()).then_some(head)
    }

    /// Waits until the head passes `offset`, the journal closes, or `deadline` passes; returns
    /// the head.
    pub fn wait_beyond(&self, offset: u64, deadline: Instant) -> u64 {
        loop {
            if let Some(head) = self.beyond(offset) {
                return head;
            }
            let listener = self.changed.listen();
            if let Some(head) = self.beyond(offset) {
                return head;
            }
            if listener.wait_deadline(deadline).is_none() {
                return self.get();
            }
        }
    }

    /// Async [`DurableHead::wait_beyond`], without a deadline.
    pub async fn wait_beyond_async(&self, offset: u64) -> u64 {
        loop {
            if let Some(head) = self.beyond(offset) {
                return head;
            }
            let listener = self.changed.listen();
            if let Some(head) = self.beyond(offset) {
                return head;
            }
            listener.await;
        }
    }
}

/// Where a read at some offset must look: the fragment holding it, where that fragment's
/// readable bytes end, and the fragment before it (to tell retention from damage).
pub(crate) struct Located {
    pub fragment: Arc<Fragment>,
    pub end: u64,
    pub previous: Option<Arc<Fragment>>,
}

/// The fragments of a journal, oldest first, and the first offset still stored.
pub(crate) struct FragmentSet {
    list: RwLock<Vec<Arc<Fragment>>>,
    first_offset: AtomicU64,
}

impl FragmentSet {
    pub fn new(fragments: Vec<Arc<Fragment>>) -> FragmentSet {
        let first = fragments.first().expect("at least one fragment").begin;
        FragmentSet {
            list: RwLock::new(fragments),
            first_offset: AtomicU64::new(first),
        }
    }

    pub fn first_offset(&self) -> u64 {
        self.first_offset.load(Ordering::Acquire)
    }

    /// The fragment holding `offset`, given the durable `head`; `None` if it was removed.
    pub fn locate(&self, offset: u64, head: u64) -> Option<Located> {
        let frags = self.list.read();
        let i = frags.partition_point(|f| f.begin <= offset);
        if i == 0 {
            return None;
        }
        Some(Located {
            fragment: frags[i - 1].clone(),
            end: frags.get(i).map_or(head, |n| n.begin.min(head)),
            previous: i.checked_sub(2).map(|p| frags[p].clone()),
        })
    }

    pub fn last(&self) -> Arc<Fragment> {
        self.list.read().last().cloned().expect("a fragment remains")
    }

    pub fn push(&self, fragment: Arc<Fragment>) {
        let mut frags = self.list.write();
        if let Some(last) = frags.last() {
            assert!(
                last.begin < fragment.begin,
                "fragments are pushed in offset order"
            );
        }
        frags.push(fragment);
    }

    /// Forgets the fragments beginning at or after `begin` (a roll back).
    pub fn drop_from(&self, begin: u64) {
        self.list.write().retain(|f| f.begin < begin);
    }

    /// `(begin, end, fragment)` of each fragment, the last ending at `head`.
    pub fn spans(&self, head: u64) -> Vec<(u64, u64, Arc<Fragment>)> {
        let frags = self.list.read();
        frags
            .iter()
            .enumerate()
            .map(|(i, f)| (f.begin, frags.get(i + 1).map_or(head, |n| n.begin), f.clone()))
            .collect()
    }

    /// Takes out the fragments lying wholly below `offset`, never the last one and never one
    /// whose successor begins at or past the durable `head` (a fragment beginning at the head
    /// holds no durable frame: its commit may still fail and be rolled back, removing it, so it
    /// cannot become the first).
    pub fn take_below(&self, offset: u64, head: u64) -> Vec<Arc<Fragment>> {
        let mut frags = self.list.write();
        let keep_from = frags
            .iter()
            .enumerate()
            .skip(1)
            .take_while(|(_, f)| f.begin <= offset && f.begin < head)
            .map(|(i, _)| i)
            .last()
            .unwrap_or(0);
        let taken: Vec<_> = frags.drain(..keep_from).collect();
        if let Some(first) = frags.first() {
            self.first_offset.store(first.begin, Ordering::Release);
        }
        taken
    }

    /// Puts back fragments taken by [`FragmentSet::take_below`] that are still on disk.
    pub fn put_back(&self, kept: Vec<Arc<Fragment>>) {
        let mut frags = self.list.write();
        frags.splice(0..0, kept);
        if let Some(first) = frags.first() {
            self.first_offset.store(first.begin, Ordering::Release);
        }
    }
}

/// Who commits the filling batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leader {
    /// Nobody has waited on it yet.
    None,
    /// An appender thread waiting on it: it commits on its own thread.
    Appender,
    /// The journal's helper thread (async and pipelined appenders must not block on I/O).
    Helper,
}

/// What must still hold when an append is placed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Condition {
    None,
    /// The head (including accepted appends) is still this.
    Head(u64),
    /// No batch has failed since the failure count was this.
    NoFailureSince(u64),
}

/// A frame to place: its payload, message count and payload checksum (computed outside the lock).
pub(crate) struct FrameToPlace<'a> {
    pub payload: &'a [u8],
    pub message_count: u32,
    pub payload_crc: u32,
}

/// The result of [`CommitState::place`].
pub(crate) enum Placed {
    /// The frame is in the filling batch at `offset..end`, completed through `done`.
    Queued {
        done: Arc<Completion>,
        offset: u64,
        end: u64,
    },
    /// The filling batch has no room for it (backpressure): wait for the commit in flight.
    Full,
}

/// The result of [`CommitState::claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The caller leads the filling batch and no commit is in flight: take it now.
    Now,
    /// The caller leads the filling batch, after the commit in flight.
    AfterInFlight,
    /// The batch is taken, led by someone else, or already completed: just wait for it.
    Follow,
}

/// A batch taken from the filling buffer by its leader.
pub(crate) struct TakenBatch {
    pub bytes: Vec<u8>,
    /// Journal offset of `bytes[0]`.
    pub begin: u64,
    /// Fragment rolls inside `bytes`: (byte index, begin offset of the new fragment).
    pub rolls: Vec<(usize, u64)>,
    pub last_frame: Option<u64>,
    pub done: Arc<Completion>,
}

impl TakenBatch {
    pub fn end(&self) -> u64 {
        self.begin + self.bytes.len() as u64
    }
}

/// Limits the state machine enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CommitLimits {
    pub fragment_max_bytes: u64,
    pub pending_max_bytes: u64,
}

/// The group-commit state machine of one journal (see the module docs). Held under the
/// journal's state lock; no I/O happens while it is borrowed.
pub(crate) struct CommitState {
    journal: String,
    salt: u32,
    limits: CommitLimits,
    /// Head including accepted frames not yet durable: where the next frame goes.
    pending_end: u64,
    fill: Vec<u8>,
    /// Journal offset of `fill[0]`.
    fill_begin: u64,
    fill_rolls: Vec<(usize, u64)>,
    fill_last_frame: Option<u64>,
    fill_done: Arc<Completion>,
    fill_leader: Leader,
    /// The buffer of the last committed batch, reused for the next fill.
    spare: Vec<u8>,
    /// Begin of the fragment the next frame goes into.
    frag_begin: u64,
    /// A batch is being written and synced.
    in_flight: bool,
    poisoned: Option<String>,
    /// Batches failed and rolled back so far.
    failures: u64,
    /// The error of the first of them: the cause that refusals after a failure report.
    first_failure: Option<AppendError>,
    closed: bool,
}

impl CommitState {
    /// A journal whose durable head is `head`, in the fragment beginning at `frag_begin`.
    pub fn new(journal: &str, salt: u32, limits: CommitLimits, head: u64, frag_begin: u64) -> CommitState {
        assert!(
            frag_begin <= head,
            "the last fragment begins at or below the head"
        );
        CommitState {
            journal: journal.to_string(),
            salt,
            limits,
            pending_end: head,
            fill: Vec::new(),
            fill_begin: head,
            fill_rolls: Vec::new(),
            fill_last_frame: None,
            fill_done: Completion::new(),
            fill_leader: Leader::None,
            spare: Vec::new(),
            frag_begin,
            in_flight: false,
            poisoned: None,
            failures: 0,
            first_failure: None,
            closed: false,
        }
    }

    #[cfg(test)]
    pub fn pending_end(&self) -> u64 {
        self.pending_end
    }

    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    pub fn failures(&self) -> u64 {
        self.failures
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    pub fn has_fill(&self) -> bool {
        !self.fill.is_empty()
    }

    /// Who leads the filling batch (meaningful while it is non-empty).
    pub fn fill_leader(&self) -> Leader {
        self.fill_leader
    }

    /// Whether `done` is the filling batch's completion.
    pub fn is_filling(&self, done: &Arc<Completion>) -> bool {
        Arc::ptr_eq(done, &self.fill_done)
    }

    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Places a frame in the filling batch: refuses if poisoned, closed or the condition fails;
    /// reports `Full` if the batch has no room; decides a fragment roll; encodes the frame at
    /// `pending_end`.
    pub fn place(&mut self, frame: &FrameToPlace<'_>, condition: Condition) -> Result<Placed, AppendError> {
        if let Some(reason) = &self.poisoned {
            return Err(AppendError::Poisoned {
                journal: self.journal.clone(),
                reason: reason.clone(),
            });
        }
        if self.closed {
            return Err(AppendError::Closed {
                journal: self.journal.clone(),
            });
        }
        match condition {
            Condition::None => {}
            Condition::Head(expected) if expected != self.pending_end => {
                return Err(AppendError::Conflict {
                    journal: self.journal.clone(),
                    expected,
                    actual: self.pending_end,
                });
            }
            Condition::NoFailureSince(since) if since != self.failures => {
                assert!(
                    since < self.failures,
                    "failure count {since} is ahead of the journal's {}",
                    self.failures
                );
                let first = self
                    .first_failure
                    .clone()
                    .expect("a failure is recorded with its count");
                return Err(AppendError::AfterFailure {
                    journal: self.journal.clone(),
                    since,
                    failures: self.failures,
                    first: Box::new(first),
                });
            }
            Condition::Head(_) | Condition::NoFailureSince(_) => {}
        }
        let frame_len = frame::frame_len_bytes(frame.payload.len());
        if !self.fill.is_empty() && self.fill.len() as u64 + frame_len > self.limits.pending_max_bytes {
            return Ok(Placed::Full);
        }
        let offset = self.pending_end;
        let frag_used = offset - self.frag_begin;
        if frag_used > 0 && frag_used + frame_len > self.limits.fragment_max_bytes {
            self.fill_rolls.push((self.fill.len(), offset));
            self.frag_begin = offset;
        }
        let header = FrameHeader {
            offset,
            write_begin: self.fill_begin,
            payload_len: frame.payload.len() as u32,
            kind: FRAME_KIND_BATCH,
            payload_crc: frame.payload_crc,
            message_count: frame.message_count,
        };
        frame::encode_frame(&mut self.fill, self.salt, &header, frame.payload);
        self.pending_end = offset + frame_len;
        self.fill_last_frame = Some(offset);
        Ok(Placed::Queued {
            done: self.fill_done.clone(),
            offset,
            end: offset + frame_len,
        })
    }

    /// `who` asks to lead the batch completed through `done`. The first to ask leads it.
    pub fn claim(&mut self, done: &Arc<Completion>, who: Leader) -> Claim {
        assert!(who != Leader::None, "a leader is someone");
        if !self.is_filling(done) || self.fill.is_empty() || self.fill_leader != Leader::None {
            return Claim::Follow;
        }
        self.fill_leader = who;
        self.fill_done.led.store(true, Ordering::Release);
        if self.in_flight {
            Claim::AfterInFlight
        } else {
            Claim::Now
        }
    }

    /// `who` asks to lead the filling batch, whoever placed its frames (an appender that finds
    /// it full must make sure it gets committed).
    pub fn claim_filling(&mut self, who: Leader) -> Claim {
        let done = self.fill_done.clone();
        self.claim(&done, who)
    }

    /// Takes the filling batch for writing, if there is one and no commit is in flight. The
    /// next batch starts filling at once, in the buffer of the previous commit.
    pub fn take(&mut self) -> Option<TakenBatch> {
        if self.in_flight || self.fill.is_empty() {
            return None;
        }
        self.in_flight = true;
        let bytes = std::mem::replace(&mut self.fill, std::mem::take(&mut self.spare));
        let begin = self.fill_begin;
        self.fill_begin = self.pending_end;
        self.fill_leader = Leader::None;
        Some(TakenBatch {
            bytes,
            begin,
            rolls: std::mem::take(&mut self.fill_rolls),
            last_frame: self.fill_last_frame.take(),
            done: std::mem::replace(&mut self.fill_done, Completion::new()),
        })
    }

    /// The batch in flight is durable; `bytes` is its buffer, kept for a later batch.
    pub fn committed(&mut self, mut bytes: Vec<u8>) {
        assert!(self.in_flight, "a commit was in flight");
        self.in_flight = false;
        bytes.clear();
        if self.spare.capacity() < bytes.capacity() {
            self.spare = bytes;
        }
    }

    /// The batch in flight failed and was rolled back: the journal continues at `durable_head`,
    /// in the fragment beginning at `frag_begin`. Returns the completion of the batch that was
    /// filling, which fails too (its offsets assumed the failed batch would land).
    pub fn failed(&mut self, error: &AppendError, durable_head: u64, frag_begin: u64) -> Arc<Completion> {
        assert!(self.in_flight, "a commit was in flight");
        self.in_flight = false;
        self.pending_end = durable_head;
        self.fill_begin = durable_head;
        self.fill.clear();
        self.fill_rolls.clear();
        self.fill_last_frame = None;
        self.fill_leader = Leader::None;
        self.frag_begin = frag_begin;
        self.failures += 1;
        self.first_failure.get_or_insert_with(|| error.clone());
        std::mem::replace(&mut self.fill_done, Completion::new())
    }

    /// Poisons the journal: every later append fails with `Poisoned`.
    pub fn poison(&mut self, reason: String) -> AppendError {
        self.poisoned.get_or_insert(reason);
        AppendError::Poisoned {
            journal: self.journal.clone(),
            reason: self.poisoned.clone().expect("set above"),
        }
    }

    /// The fragment the next frame goes into begins here.
    pub fn frag_begin(&self) -> u64 {
        self.frag_begin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: CommitLimits = CommitLimits {
        fragment_max_bytes: 1024,
        pending_max_bytes: 256,
    };

    fn state() -> CommitState {
        CommitState::new("j", 7, LIMITS, 0, 0)
    }

    fn frame(payload: &[u8]) -> FrameToPlace<'_> {
        FrameToPlace {
            payload,
            message_count: 1,
            payload_crc: frame::payload_crc(7, payload),
        }
    }

    fn queued(p: Result<Placed, AppendError>) -> (Arc<Completion>, u64, u64) {
        match p.expect("placed") {
            Placed::Queued { done, offset, end } => (done, offset, end),
            Placed::Full => panic!("unexpected Full"),
        }
    }

    #[test]
    fn the_first_to_claim_leads_and_commits_while_the_next_batch_fills() {
        let mut st = state();
        let (a, off_a, end_a) = queued(st.place(&frame(b"a"), Condition::None));
        assert_eq!(off_a, 0);
        let (a2, _, _) = queued(st.place(&frame(b"b"), Condition::None));
        assert!(Arc::ptr_eq(&a, &a2), "one batch, one completion");
        assert_eq!(st.claim(&a, Leader::Appender), Claim::Now);
        assert_eq!(
            st.claim(&a2, Leader::Appender),
            Claim::Follow,
            "one leader per batch"
        );
        let batch = st.take().expect("a batch");
        assert_eq!(batch.begin, 0);
        assert!(st.take().is_none(), "nothing to take while empty and in flight");
        // Arrivals during the commit fill the next batch; its first claimant leads after it.
        let (b, off_b, _) = queued(st.place(&frame(b"c"), Condition::None));
        assert!(off_b > end_a);
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(
            st.claim(&a, Leader::Appender),
            Claim::Follow,
            "the taken batch is not filling"
        );
        assert_eq!(st.claim(&b, Leader::Helper), Claim::AfterInFlight);
        assert!(st.take().is_none(), "one commit at a time");
        st.committed(batch.bytes);
        let next = st.take().expect("the next batch");
        assert_eq!(next.begin, off_b, "a batch begins where the previous one ended");
        assert_eq!(
            st.fill_leader(),
            Leader::None,
            "the new filling batch has no leader yet"
        );
    }

    #[test]
    fn conditional_appends_compare_with_the_head_including_pending_frames() {
        let mut st = state();
        let (_, _, end) = queued(st.place(&frame(b"x"), Condition::Head(0)));
        match st.place(&frame(b"y"), Condition::Head(0)) {
            Err(AppendError::Conflict { expected, actual, .. }) => {
                assert_eq!((expected, actual), (0, end));
            }
            _ => panic!("expected a conflict"),
        }
        queued(st.place(&frame(b"y"), Condition::Head(end)));
    }

    #[test]
    fn a_failure_fails_the_filling_batch_and_refuses_writers_started_before_it() {
        let mut st = state();
        let (a, _, _) = queued(st.place(&frame(b"a"), Condition::None));
        assert_eq!(st.claim(&a, Leader::Appender), Claim::Now);
        let batch = st.take().expect("batch");
        let (b, _, _) = queued(st.place(&frame(b"b"), Condition::None));
        let error = AppendError::Io {
            journal: "j".into(),
            fragment: "f".into(),
            reason: "EIO".into(),
        };
        let queued_done = st.failed(&error, 0, 0);
        assert!(Arc::ptr_eq(&queued_done, &b));
        assert_eq!(st.pending_end(), 0, "continues at the durable head");
        assert!(!st.has_fill());
        assert!(matches!(
            st.place(&frame(b"c"), Condition::NoFailureSince(0)),
            Err(AppendError::AfterFailure { failures: 1, .. })
        ));
        let (_, off, _) = queued(st.place(&frame(b"c"), Condition::NoFailureSince(1)));
        assert_eq!(off, 0);
        drop(batch);
    }

    #[test]
    fn poisoning_refuses_every_later_append() {
        let mut st = state();
        let e = st.poison("fdatasync failed".into());
        assert!(matches!(e, AppendError::Poisoned { .. }));
        assert!(matches!(
            st.place(&frame(b"a"), Condition::None),
            Err(AppendError::Poisoned { .. })
        ));
        st.close();
        assert!(st.is_closed());
    }

    #[test]
    fn a_full_batch_pushes_back_and_a_frame_past_the_fragment_limit_rolls() {
        let mut st = state();
        let big = vec![1u8; 200];
        let (done, _, end) = queued(st.place(&frame(&big), Condition::None));
        assert!(matches!(
            st.place(&frame(&big), Condition::None),
            Ok(Placed::Full)
        ));
        assert_eq!(st.claim(&done, Leader::Appender), Claim::Now);
        let b = st.take().expect("batch");
        st.committed(b.bytes);
        // Fill the fragment (1024 bytes) until a frame would pass it: it rolls there.
        let mut last_end = end;
        let mut rolled_at = None;
        for _ in 0..6 {
            let (d, off, e) = queued(st.place(&frame(&big), Condition::None));
            assert_eq!(st.claim(&d, Leader::Appender), Claim::Now);
            let b = st.take().expect("batch");
            if let Some(&(at, begin)) = b.rolls.first() {
                assert_eq!((at, begin), (0, off), "the new fragment begins with the frame");
                rolled_at = Some(off);
            }
            st.committed(b.bytes);
            assert_eq!(off, last_end);
            last_end = e;
        }
        let rolled_at = rolled_at.expect("a roll");
        assert!(rolled_at <= LIMITS.fragment_max_bytes);
        assert_eq!(st.frag_begin(), rolled_at);
    }

    #[test]
    fn durable_at_tells_when_the_head_first_passed_an_offset() {
        let head = DurableHead::new(0);
        assert_eq!(head.durable_at(10), None, "not durable yet");
        head.advance("j", 0, 10);
        let first = head.durable_at(10).expect("known");
        assert_eq!(head.durable_at(5), Some(first), "a frame ending inside the batch");
        head.advance("j", 10, 20);
        let second = head.durable_at(20).expect("known");
        assert!(second >= first);
        assert_eq!(
            head.durable_at(10),
            Some(first),
            "the earlier batch keeps its time"
        );
        assert_eq!(head.durable_at(21), None);
        for i in 0..DURABLE_TIMES_KEPT as u64 {
            head.advance("j", 20 + i, 21 + i);
        }
        assert_eq!(
            head.durable_at(10),
            None,
            "forgotten: older than the kept publications"
        );
        assert!(head.durable_at(20 + DURABLE_TIMES_KEPT as u64).is_some());
    }

    #[test]
    fn the_durable_head_only_grows_and_wakes_waiters() {
        let head = Arc::new(DurableHead::new(8));
        let h = head.clone();
        let waiter =
            std::thread::spawn(move || h.wait_beyond(8, Instant::now() + std::time::Duration::from_secs(10)));
        head.advance("j", 8, 16);
        assert_eq!(waiter.join().expect("waiter"), 16);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| head.advance("j", 8, 24)));
        assert!(result.is_err(), "a batch not beginning at the head is refused");
        head.close();
        assert_eq!(
            head.wait_beyond(100, Instant::now() + std::time::Duration::from_secs(10)),
            16
        );
    }
}
