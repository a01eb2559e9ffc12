//! A journal: the append path (leader-based group commit) and the shared state readers look at.
//!
//! Appenders encode their frame straight into the *filling* batch under one short lock (the
//! offset is only known there, and the header checksum covers it). The batch is committed by
//! its **leader**. The first appender that waits for a batch while no commit is in flight leads
//! it on its own thread: it takes the whole batch, writes it with one `write`, makes it durable
//! with one `fdatasync`, advances the durable head and wakes the batch's appenders (a lone
//! writer never hands its frame to another thread). A batch whose first waiter finds a commit in
//! flight (contention) goes to the journal's **helper thread**, which commits batch after batch
//! as long as they keep coming; so do the batches of appenders that must not block on I/O (async
//! tasks, and pipelined `submit`s that wait later).
//! The state machine is [`crate::commit::CommitState`]; the I/O of a commit is in
//! [`crate::writer`]. The filling batch is capped at `pending_max_bytes`; appenders that do not
//! fit wait (backpressure), so at most two batches of memory are in use.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use event_listener::{Event, Listener};
use parking_lot::{Condvar, Mutex};

use crate::commit::{
    Claim, CommitLimits, CommitState, Completion, Condition, DurableHead, FragmentSet, FrameToPlace, Leader,
    Placed, TakenBatch,
};
use crate::error::{AppendError, ReadError, RetentionError};
use crate::frame::{self, Batch};
use crate::reader::{Frame, Reader};
use crate::spare::{RecycledFragments, Spares};
use crate::writer::{Cursor, WriteContext, WriteFailure};
use crate::Options;

/// Where an acknowledged append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendAck {
    /// Journal offset of the frame.
    pub offset: u64,
    /// Journal offset just past the frame: the head right after this append.
    pub end: u64,
}

/// A description of one fragment file, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentInfo {
    pub begin: u64,
    /// Offset just past the fragment's last frame (the next fragment's begin, or the head).
    pub end: u64,
    pub path: PathBuf,
}

/// An append that has a place in the journal and waits to become durable.
#[must_use = "an append is acknowledged only once wait() or durable() returns Ok"]
pub struct PendingAppend {
    done: Arc<Completion>,
    ack: AppendAck,
    shared: Arc<JournalShared>,
}

impl PendingAppend {
    /// Where the frame will be once durable.
    pub fn ack(&self) -> AppendAck {
        self.ack
    }

    /// [`PendingAppend::wait`], also returning when the frame became durable by the committer's
    /// clock (not when this waiter noticed), for latency measurements.
    pub fn wait_timed(self) -> Result<(AppendAck, Instant), AppendError> {
        let done = self.done.clone();
        let ack = self.wait()?;
        // The time is set before the result, so it is visible once the result is.
        Ok((ack, done.completed_at().unwrap_or_else(Instant::now)))
    }

    /// Blocks until the frame is durable (or its batch failed). If nobody leads the frame's
    /// batch yet and no commit is in flight, the caller does: it writes and syncs the batch on
    /// this thread; with a commit in flight, the journal's helper thread commits it.
    pub fn wait(self) -> Result<AppendAck, AppendError> {
        self.shared.lead_or_follow(&self.done);
        self.done.wait().clone().map(|()| self.ack)
    }

    /// Resolves when the frame is durable (or its batch failed). Never blocks the calling
    /// thread on I/O: if nobody leads the batch yet, the journal's helper thread commits it.
    pub async fn durable(self) -> Result<AppendAck, AppendError> {
        self.shared.hand_to_helper(&self.done);
        self.done.wait_async().await.clone().map(|()| self.ack)
    }
}

pub(crate) struct JournalShared {
    pub name: String,
    pub dir: PathBuf,
    pub salt: u32,
    pub opts: Options,
    pub writable: bool,
    /// The durable head: readers see exactly the bytes below it.
    pub head: DurableHead,
    pub fragments: FragmentSet,
    state: Mutex<CommitState>,
    /// The helper thread waits here for a batch to lead (or the journal to close).
    helper_wake: Condvar,
    /// Appenders waiting for room in the filling batch.
    space: Event,
    /// The file being written: used by the leader only, so never contended.
    cursor: Mutex<Option<Cursor>>,
    helper: Mutex<Option<JoinHandle<()>>>,
    last_frame: Mutex<Option<u64>>,
    /// Bytes of torn tail cut by recovery when this journal was opened.
    pub recovery_cut_bytes: u64,
    /// Zero-filled spare fragments (`Options::preallocate`, writable journals).
    spares: Option<Arc<Spares>>,
    /// Fragments removed by retention, kept to become the next fragments (`Options::recycle`).
    recycled: Option<RecycledFragments>,
    /// Counters for metrics ([`Journal::stats`]).
    pub(crate) stats: crate::stats::JournalStats,
}

/// A handle to one journal; cheap to clone. Keeps its data directory open.
#[derive(Clone)]
pub struct Journal {
    pub(crate) shared: Arc<JournalShared>,
    pub(crate) _log: Arc<crate::LogInner>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("name", &self.shared.name)
            .field("head", &self.durable_head())
            .finish()
    }
}

/// Poisons the journal if the committing thread unwinds (a panic in a commit), so that every
/// waiter wakes with an error instead of waiting forever.
struct PanicGuard<'a> {
    shared: &'a JournalShared,
    done: Arc<Completion>,
}

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.shared.poison_after_panic(&self.done);
        }
    }
}

impl JournalShared {
    pub(crate) fn new(
        name: String,
        dir: PathBuf,
        opts: Options,
        writable: bool,
        recovered: crate::recovery::Recovered,
    ) -> Arc<JournalShared> {
        let salt = frame::journal_salt(&name);
        let spares = (writable && opts.preallocate)
            .then(|| Spares::start(&dir, opts.storage.clone(), opts.fragment_max_bytes, &name));
        let recycled =
            (writable && opts.recycle).then(|| RecycledFragments::open(&dir, opts.storage.clone()));
        let last_begin = recovered.fragments.last().expect("at least one fragment").begin;
        let limits = CommitLimits {
            fragment_max_bytes: opts.fragment_max_bytes,
            pending_max_bytes: opts.pending_max_bytes,
        };
        let shared = Arc::new(JournalShared {
            state: Mutex::new(CommitState::new(&name, salt, limits, recovered.head, last_begin)),
            name,
            dir,
            salt,
            writable,
            helper_wake: Condvar::new(),
            space: Event::new(),
            head: DurableHead::new(recovered.head),
            fragments: FragmentSet::new(recovered.fragments),
            cursor: Mutex::new(writable.then(|| {
                Cursor::new(
                    last_begin,
                    recovered.last_file,
                    recovered
                        .scan_hint
                        .expect("a writable recovery has a hint writer"),
                    recovered.head,
                )
            })),
            helper: Mutex::new(None),
            last_frame: Mutex::new(recovered.last_frame),
            recovery_cut_bytes: recovered.cut_bytes,
            spares,
            recycled,
            opts,
            stats: Default::default(),
        });
        if writable {
            let helper = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("journal-commit-{}", shared.name))
                .spawn(move || helper.run_helper())
                .expect("spawn journal helper thread");
            *shared.helper.lock() = Some(handle);
        }
        shared
    }

    pub(crate) fn durable_head(&self) -> u64 {
        self.head.get()
    }

    pub(crate) fn first_offset(&self) -> u64 {
        self.fragments.first_offset()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.head.is_closed()
    }

    pub(crate) fn map_len_hint(&self) -> u64 {
        self.opts.fragment_max_bytes
    }

    /// Stops accepting appends, lets what was accepted be committed, then wakes readers with
    /// "closed".
    pub(crate) fn close(&self) {
        self.state.lock().close();
        self.helper_wake.notify_all();
        self.space.notify(usize::MAX);
        if let Some(handle) = self.helper.lock().take() {
            let _ = handle.join();
        }
        if let Some(cursor) = self.cursor.lock().as_mut() {
            let last_begin = self.fragments.last().begin;
            cursor.close(self.opts.preallocate, last_begin);
        }
        if let Some(spares) = &self.spares {
            spares.close();
        }
        self.head.close();
    }

    fn check_limits(&self, batch: &Batch) -> Result<u32, AppendError> {
        if !self.writable {
            return Err(AppendError::ReadOnly {
                journal: self.name.clone(),
            });
        }
        let len = frame::frame_len_bytes(batch.payload().len());
        if len > self.opts.frame_max_bytes {
            return Err(AppendError::FrameTooLarge {
                journal: self.name.clone(),
                len,
                max: self.opts.frame_max_bytes,
            });
        }
        if batch.message_count() > self.opts.batch_max_messages {
            return Err(AppendError::BatchTooLarge {
                journal: self.name.clone(),
                count: batch.message_count(),
                max: self.opts.batch_max_messages,
            });
        }
        // The payload checksum does not depend on the offset: compute it outside the lock.
        Ok(frame::payload_crc(self.salt, batch.payload()))
    }

    /// Places the frame; `None` if the filling batch is full. `helper`: the batch is left to
    /// the helper thread (a caller that will not wait at once, or must not block on I/O).
    fn try_place(
        self: &Arc<Self>,
        frame: &FrameToPlace<'_>,
        condition: Condition,
        helper: bool,
    ) -> Result<Option<PendingAppend>, AppendError> {
        let mut st = self.state.lock();
        match st.place(frame, condition)? {
            Placed::Queued { done, offset, end } => {
                if helper && st.claim(&done, Leader::Helper) != Claim::Follow {
                    self.helper_wake.notify_one();
                }
                drop(st);
                self.stats.appended(end - offset);
                Ok(Some(PendingAppend {
                    done,
                    ack: AppendAck { offset, end },
                    shared: self.clone(),
                }))
            }
            Placed::Full => {
                // Make sure the full batch gets committed even if nobody waits for it yet.
                if st.claim_filling(Leader::Helper) != Claim::Follow {
                    self.helper_wake.notify_one();
                }
                Ok(None)
            }
        }
    }

    fn submit_blocking(
        self: &Arc<Self>,
        batch: &Batch,
        condition: Condition,
        helper: bool,
    ) -> Result<PendingAppend, AppendError> {
        let frame = FrameToPlace {
            payload: batch.payload(),
            message_count: batch.message_count(),
            payload_crc: self.check_limits(batch)?,
        };
        loop {
            if let Some(p) = self.try_place(&frame, condition, helper)? {
                return Ok(p);
            }
            let listener = self.space.listen();
            if let Some(p) = self.try_place(&frame, condition, helper)? {
                return Ok(p);
            }
            listener.wait();
        }
    }

    async fn submit_async(
        self: &Arc<Self>,
        batch: &Batch,
        condition: Condition,
    ) -> Result<PendingAppend, AppendError> {
        let frame = FrameToPlace {
            payload: batch.payload(),
            message_count: batch.message_count(),
            payload_crc: self.check_limits(batch)?,
        };
        loop {
            if let Some(p) = self.try_place(&frame, condition, true)? {
                return Ok(p);
            }
            let listener = self.space.listen();
            if let Some(p) = self.try_place(&frame, condition, true)? {
                return Ok(p);
            }
            listener.await;
        }
    }

    /// Called by a thread about to wait for `done`: if nobody leads that batch and no commit is
    /// in flight, this thread leads it, committing it on its own thread now (a lone appender:
    /// no hand-off). If a commit is in flight (appenders are contending), the batch goes to the
    /// helper thread instead, which commits batch after batch without sleeping for as long as
    /// they keep coming, while every appender stays free to append again as soon as its own
    /// batch is durable. (Measured: an appender leading in turn left one of 8 contending
    /// appenders out of each batch, and a wake-up per turn, 0.8 of what a committing thread
    /// does; docs/benchmarks.md.) Returns once the batch has an outcome or someone leads it.
    fn lead_or_follow(&self, done: &Arc<Completion>) {
        if done.is_led() {
            return;
        }
        let mut st = self.state.lock();
        let who = if st.in_flight() {
            Leader::Helper
        } else {
            Leader::Appender
        };
        match st.claim(done, who) {
            Claim::Follow => {}
            Claim::Now => {
                let batch = st
                    .take()
                    .expect("a claimed batch with no commit in flight can be taken");
                drop(st);
                self.commit(batch);
            }
            Claim::AfterInFlight => {
                debug_assert_eq!(
                    who,
                    Leader::Helper,
                    "appenders lead only with no commit in flight"
                );
                drop(st);
                self.helper_wake.notify_one();
            }
        }
    }

    /// Leaves `done`'s batch to the helper thread, unless someone already leads it.
    fn hand_to_helper(&self, done: &Arc<Completion>) {
        if done.is_led() {
            return;
        }
        let mut st = self.state.lock();
        if st.claim(done, Leader::Helper) != Claim::Follow {
            self.helper_wake.notify_one();
        }
    }

    /// The helper thread: leads batches left to it, and at close everything still filling.
    fn run_helper(&self) {
        let mut st = self.state.lock();
        loop {
            let mine = st.fill_leader() == Leader::Helper || st.is_closed();
            if mine && !st.in_flight() && st.has_fill() {
                let batch = st.take().expect("checked above");
                drop(st);
                self.commit(batch);
                st = self.state.lock();
                continue;
            }
            if st.is_closed() && !st.has_fill() && !st.in_flight() {
                return;
            }
            self.helper_wake.wait(&mut st);
        }
    }

    /// Writes and syncs a taken batch, then publishes it, rolls it back or poisons.
    fn commit(&self, batch: TakenBatch) {
        let _guard = PanicGuard {
            shared: self,
            done: batch.done.clone(),
        };
        let mut slot = self.cursor.lock();
        let cursor = slot.as_mut().expect("only writable journals commit");
        let cx = WriteContext {
            dir: &self.dir,
            storage: &*self.opts.storage,
            fragments: &self.fragments,
            stats: &self.stats,
            spares: self.spares.as_deref(),
            recycled: self.recycled.as_ref(),
            map_len_hint: self.map_len_hint(),
            fragment_max_bytes: self.opts.fragment_max_bytes,
        };
        match cursor.write_batch(&cx, &batch) {
            Ok(()) => {
                drop(slot);
                self.publish(batch);
            }
            Err(WriteFailure::Sync(reason)) => {
                drop(slot);
                self.poison(batch, reason);
            }
            Err(WriteFailure::Write { error, path }) => match cursor.roll_back(&cx, self.durable_head()) {
                Ok(frag_begin) => {
                    drop(slot);
                    let error = crate::writer::append_error(&self.name, error, path);
                    self.fail(batch, error, frag_begin);
                }
                Err(undo_error) => {
                    drop(slot);
                    let reason = format!(
                        "write to {} failed ({error}) and undoing it failed: {undo_error}",
                        path.display()
                    );
                    self.poison(batch, reason);
                }
            },
        }
    }

    /// Wakes the helper if it must act now that no commit is in flight. (An appender leads
    /// only a batch it can take at once, so no appender waits for its turn.)
    fn wake_next(&self, leader: Leader, closed: bool) {
        if leader == Leader::Helper || closed {
            self.helper_wake.notify_one();
        }
    }

    /// Publishes a durable batch: head first, then the next leader, then the batch's waiters.
    fn publish(&self, batch: TakenBatch) {
        let TakenBatch {
            bytes,
            begin,
            last_frame,
            done,
            ..
        } = batch;
        let end = begin + bytes.len() as u64;
        *self.last_frame.lock() = last_frame;
        self.stats.committed(bytes.len() as u64);
        // Time-stamp before publishing the head, so no reader acts on the batch "before" it
        // was durable.
        done.stamp();
        self.head.advance(&self.name, begin, end);
        let (next, closed) = {
            let mut st = self.state.lock();
            st.committed(bytes);
            (st.fill_leader(), st.is_closed())
        };
        // The next leader first: its write should not wait for this batch's wake-ups.
        self.wake_next(next, closed);
        done.complete(Ok(()));
        self.space.notify(usize::MAX);
    }

    /// Fails a batch whose write failed and was rolled back, along with the batch filling
    /// behind it (its offsets assumed the failed batch would land), so the journal continues at
    /// the durable head.
    fn fail(&self, batch: TakenBatch, error: AppendError, frag_begin: u64) {
        let (queued, closed) = {
            let mut st = self.state.lock();
            (st.failed(&error, self.durable_head(), frag_begin), st.is_closed())
        };
        self.stats.commit_failed();
        self.wake_next(Leader::Helper, closed);
        batch.done.complete(Err(error.clone()));
        queued.complete(Err(error));
        self.space.notify(usize::MAX);
    }

    /// Poisons the journal after a failed fsync (or a failed roll back): this batch, the one
    /// filling and all later appends fail.
    fn poison(&self, batch: TakenBatch, reason: String) {
        let (error, frag_begin) = {
            let mut st = self.state.lock();
            (st.poison(reason), st.frag_begin())
        };
        self.fail(batch, error, frag_begin);
        self.head.notify();
    }

    /// The committing thread panicked: poison, fail the batch in flight and the one filling,
    /// and wake everyone (appenders, the next leader, the helper, readers).
    fn poison_after_panic(&self, done: &Arc<Completion>) {
        let (error, queued) = {
            let mut st = self.state.lock();
            let error = st.poison(format!(
                "the thread committing a batch of journal {:?} panicked",
                self.name
            ));
            let frag_begin = st.frag_begin();
            let queued = st
                .in_flight()
                .then(|| st.failed(&error, self.head.get(), frag_begin));
            (error, queued)
        };
        self.stats.commit_failed();
        self.helper_wake.notify_all();
        done.complete(Err(error.clone()));
        if let Some(queued) = queued {
            queued.complete(Err(error));
        }
        self.space.notify(usize::MAX);
        self.head.notify();
    }

    pub(crate) fn poison_reason(&self) -> Option<String> {
        self.state.lock().poisoned().map(str::to_string)
    }
}

impl Journal {
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Offset just past the last durable frame. Readers see exactly the frames below it.
    /// The largest frame an append may produce (`Options::frame_max_bytes`).
    pub fn frame_max_bytes(&self) -> u64 {
        self.shared.opts.frame_max_bytes
    }

    pub fn durable_head(&self) -> u64 {
        self.shared.durable_head()
    }

    /// The lowest offset still stored (retention removes whole fragments below it).
    pub fn first_offset(&self) -> u64 {
        self.shared.first_offset()
    }

    /// Appends `batch` as one frame and returns once it is durable.
    pub fn append(&self, batch: &Batch) -> Result<AppendAck, AppendError> {
        self.shared.submit_blocking(batch, Condition::None, false)?.wait()
    }

    /// Appends only if the journal's head (including appends accepted but not yet durable) is
    /// still `expect_head`; otherwise fails with [`AppendError::Conflict`] and writes nothing.
    pub fn append_if(&self, expect_head: u64, batch: &Batch) -> Result<AppendAck, AppendError> {
        self.shared
            .submit_blocking(batch, Condition::Head(expect_head), false)?
            .wait()
    }

    /// Places `batch` in the journal without waiting for durability; blocks only while the
    /// pending buffer is full. Call [`PendingAppend::wait`] for the acknowledgement.
    pub fn submit(&self, batch: &Batch) -> Result<PendingAppend, AppendError> {
        self.shared.submit_blocking(batch, Condition::None, true)
    }

    /// [`Journal::submit`] with a conditional head.
    pub fn submit_if(&self, expect_head: u64, batch: &Batch) -> Result<PendingAppend, AppendError> {
        self.shared
            .submit_blocking(batch, Condition::Head(expect_head), true)
    }

    /// How many batches have failed (been rolled back, e.g. on ENOSPC) since the journal was
    /// opened.
    pub fn failures(&self) -> u64 {
        self.shared.state.lock().failures()
    }

    /// [`Journal::submit`], unless a batch failed since [`Journal::failures`] returned `since`:
    /// then [`AppendError::AfterFailure`] and nothing is written. A writer that pipelines
    /// appends which must land in order (chunks of one stream) uses it, so that when one of its
    /// appends fails and is rolled back, a later one never lands in its place, leaving a gap.
    pub fn submit_unless_failed(&self, since: u64, batch: &Batch) -> Result<PendingAppend, AppendError> {
        self.shared
            .submit_blocking(batch, Condition::NoFailureSince(since), true)
    }

    /// Async [`Journal::append`].
    pub async fn append_async(&self, batch: &Batch) -> Result<AppendAck, AppendError> {
        self.shared
            .submit_async(batch, Condition::None)
            .await?
            .durable()
            .await
    }

    /// Async [`Journal::append_if`].
    pub async fn append_if_async(&self, expect_head: u64, batch: &Batch) -> Result<AppendAck, AppendError> {
        self.shared
            .submit_async(batch, Condition::Head(expect_head))
            .await?
            .durable()
            .await
    }

    /// Async [`Journal::submit`]: waits only for room in the pending buffer.
    pub async fn submit_async(&self, batch: &Batch) -> Result<PendingAppend, AppendError> {
        self.shared.submit_async(batch, Condition::None).await
    }

    /// A reader positioned at `offset` (a frame boundary, e.g. 0, a checkpointed offset, or an
    /// [`AppendAck::end`]).
    pub fn reader(&self, offset: u64) -> Reader {
        Reader::new(self.clone(), offset)
    }

    /// The last durable frame, if any (read without scanning the journal).
    pub fn last_frame(&self) -> Result<Option<Frame>, ReadError> {
        let Some(offset) = *self.shared.last_frame.lock() else {
            return Ok(None);
        };
        if offset < self.first_offset() {
            return Ok(None);
        }
        self.reader(offset).try_next()
    }

    /// Bytes of torn tail that recovery cut when this journal was opened.
    pub fn recovery_cut_bytes(&self) -> u64 {
        self.shared.recovery_cut_bytes
    }

    /// The reason the journal is poisoned, if it is.
    pub fn poisoned(&self) -> Option<String> {
        self.shared.poison_reason()
    }

    /// Waits until the durable head passes `offset`, the journal closes, or `timeout` elapses.
    /// Returns the durable head.
    pub fn wait_beyond(&self, offset: u64, timeout: Duration) -> u64 {
        self.shared.head.wait_beyond(offset, Instant::now() + timeout)
    }

    /// Async: waits until the durable head passes `offset` or the journal closes.
    pub async fn wait_beyond_async(&self, offset: u64) -> u64 {
        self.shared.head.wait_beyond_async(offset).await
    }

    /// The fragments, oldest first.
    pub fn fragments(&self) -> Vec<FragmentInfo> {
        self.shared
            .fragments
            .spans(self.durable_head())
            .into_iter()
            .map(|(begin, end, f)| FragmentInfo {
                begin,
                end,
                path: f.path.clone(),
            })
            .collect()
    }

    /// Removes every fragment that lies wholly below `offset` (never the fragment being written).
    /// Readers positioned in removed ranges get [`ReadError::Removed`]. Returns how many
    /// fragments were removed. With `Options::recycle` (the default) a removed fragment's file
    /// is renamed aside to become a later fragment instead of being unlinked, while fewer than
    /// [`crate::spare::RECYCLED_MAX`] wait.
    pub fn remove_below(&self, offset: u64) -> Result<usize, RetentionError> {
        let shared = &self.shared;
        if !shared.writable {
            return Err(RetentionError::ReadOnly {
                journal: shared.name.clone(),
            });
        }
        let doomed = shared.fragments.take_below(offset, shared.durable_head());
        // Oldest first, syncing the directory after each unlink or rename: a power loss keeps
        // any subset of the directory operations since the last directory sync, so removing
        // several before one sync could leave an old fragment without its successor (a hole).
        // One at a time, what survives is always a contiguous run of fragments ending at the
        // head. A rename aside removes the fragment's name just as an unlink does.
        let storage = &shared.opts.storage;
        for (i, f) in doomed.iter().enumerate() {
            let recycled = shared.recycled.as_ref().filter(|r| r.has_room());
            let removed = match recycled {
                Some(r) => r.recycle(f),
                None => storage.remove_file(&f.path),
            };
            let removed = match removed {
                // Gone already (an earlier attempt removed it, then its directory sync failed).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            };
            let failure = match removed {
                Err(source) => Some((i, f.path.clone(), source)),
                Ok(()) => storage
                    .sync_dir(&shared.dir)
                    .err()
                    .map(|source| (i + 1, shared.dir.clone(), source)),
            };
            if let Some((kept_from, path, source)) = failure {
                // The fragments not removed are still on disk: put them back, or a later
                // retention would remove their successors and leave them behind, a hole.
                shared.fragments.put_back(doomed[kept_from..].to_vec());
                return Err(RetentionError::Io {
                    journal: shared.name.clone(),
                    path,
                    source,
                });
            }
        }
        shared.stats.fragments_removed(doomed.len() as u64);
        Ok(doomed.len())
    }

    /// When the frame ending at `end` became durable in this process, if it was among the last
    /// 256 commits (a tailing reader learns when a frame landed, not when it woke to read it).
    pub fn durable_at(&self, end: u64) -> Option<Instant> {
        self.shared.head.durable_at(end)
    }

    /// This journal's append, commit, fsync and fragment counters since this process opened it.
    pub fn stats(&self) -> crate::stats::StatsSnapshot {
        self.shared.stats.snapshot()
    }
}
