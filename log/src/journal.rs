//! A journal: the append path (group commit) and the shared state readers look at.
//!
//! Appenders encode their frame straight into the *filling* buffer under one short lock (the
//! offset is only known there, and the header checksum covers it). A writer thread per journal
//! takes the whole filling buffer, writes it with one `write`, makes it durable with one
//! `fdatasync`, then advances the durable head and wakes the appenders of that batch. While it
//! syncs, the next batch fills. The filling buffer is capped at `pending_max_bytes`; appenders
//! that do not fit wait (backpressure), so at most two batches of memory are in use.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use event_listener::{Event, Listener};
use parking_lot::{Condvar, Mutex, RwLock};

use crate::error::{AppendError, ReadError, RetentionError};
use crate::fragment::Fragment;
use crate::frame::{self, Batch, FrameHeader, FRAME_KIND_BATCH};
use crate::reader::{Frame, Reader};
use crate::storage::{OpenMode, StorageFile};
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

/// Outcome slot of one group-commit batch, shared by its appenders.
pub(crate) struct Completion {
    result: OnceLock<Result<(), AppendError>>,
    /// When the batch's outcome was known (for latency measurements).
    completed_at: OnceLock<Instant>,
    event: Event,
}

impl Completion {
    fn new() -> Arc<Completion> {
        Arc::new(Completion {
            result: OnceLock::new(),
            completed_at: OnceLock::new(),
            event: Event::new(),
        })
    }

    fn complete(&self, result: Result<(), AppendError>) {
        let _ = self.completed_at.set(Instant::now());
        let _ = self.result.set(result);
        self.event.notify(usize::MAX);
    }
}

/// An append that has a place in the journal and waits to become durable.
#[must_use = "an append is acknowledged only once wait() or durable() returns Ok"]
pub struct PendingAppend {
    done: Arc<Completion>,
    ack: AppendAck,
}

impl PendingAppend {
    /// Where the frame will be once durable.
    pub fn ack(&self) -> AppendAck {
        self.ack
    }

    /// [`PendingAppend::wait`], also returning when the frame became durable by the writer's
    /// clock (not when this waiter noticed), for latency measurements.
    pub fn wait_timed(self) -> Result<(AppendAck, Instant), AppendError> {
        let done = self.done.clone();
        let ack = self.wait()?;
        // `complete` sets the time before the result, so it is visible once the result is.
        Ok((ack, done.completed_at.get().copied().unwrap_or_else(Instant::now)))
    }

    /// Blocks until the frame is durable (or its batch failed).
    pub fn wait(self) -> Result<AppendAck, AppendError> {
        loop {
            if let Some(r) = self.done.result.get() {
                return r.clone().map(|()| self.ack);
            }
            let listener = self.done.event.listen();
            if self.done.result.get().is_none() {
                listener.wait();
            }
        }
    }

    /// Resolves when the frame is durable (or its batch failed).
    pub async fn durable(self) -> Result<AppendAck, AppendError> {
        loop {
            if let Some(r) = self.done.result.get() {
                return r.clone().map(|()| self.ack);
            }
            let listener = self.done.event.listen();
            if self.done.result.get().is_none() {
                listener.await;
            }
        }
    }
}

pub(crate) struct AppendState {
    /// Head including accepted frames not yet durable: where the next frame goes.
    pending_end: u64,
    fill: Vec<u8>,
    /// Journal offset of `fill[0]`.
    fill_begin: u64,
    /// Fragment rolls inside `fill`: (byte index in `fill`, begin offset of the new fragment).
    fill_rolls: Vec<(usize, u64)>,
    fill_last_frame: Option<u64>,
    fill_done: Arc<Completion>,
    spare: Vec<u8>,
    /// Begin of the fragment the next frame goes into.
    frag_begin: u64,
    poisoned: Option<String>,
    /// Batches failed and rolled back so far (see [`Journal::submit_unless_failed`]).
    failures: u64,
    /// The error of the first of them: the cause that refusals after a failure report.
    first_failure: Option<AppendError>,
    closed: bool,
    writer_idle: bool,
}

pub(crate) struct JournalShared {
    pub name: String,
    pub dir: PathBuf,
    pub salt: u32,
    pub opts: Options,
    pub writable: bool,
    state: Mutex<AppendState>,
    writer_wake: Condvar,
    space: Event,
    head: AtomicU64,
    pub head_changed: Event,
    pub fragments: RwLock<Vec<Arc<Fragment>>>,
    first_offset: AtomicU64,
    last_frame: Mutex<Option<u64>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Bytes of torn tail cut by recovery when this journal was opened.
    pub recovery_cut_bytes: u64,
    /// Zero-filled spare fragments (`Options::preallocate`, writable journals).
    pub(crate) spares: Option<Arc<crate::spare::Spares>>,
    /// Counters for metrics ([`Journal::stats`]).
    pub(crate) stats: crate::stats::JournalStats,
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

/// Whether there was room in the filling buffer.
enum Enqueue {
    Queued(PendingAppend),
    Full,
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
            .then(|| crate::spare::Spares::start(&dir, opts.storage.clone(), opts.fragment_max_bytes, &name));
        let last_begin = recovered.fragments.last().expect("at least one fragment").begin;
        let first = recovered.fragments.first().expect("at least one fragment").begin;
        let shared = Arc::new(JournalShared {
            name,
            dir,
            salt,
            writable,
            state: Mutex::new(AppendState {
                pending_end: recovered.head,
                fill: Vec::new(),
                fill_begin: recovered.head,
                fill_rolls: Vec::new(),
                fill_last_frame: None,
                fill_done: Completion::new(),
                spare: Vec::new(),
                frag_begin: last_begin,
                poisoned: None,
                failures: 0,
                first_failure: None,
                closed: false,
                writer_idle: true,
            }),
            writer_wake: Condvar::new(),
            space: Event::new(),
            head: AtomicU64::new(recovered.head),
            head_changed: Event::new(),
            fragments: RwLock::new(recovered.fragments),
            first_offset: AtomicU64::new(first),
            last_frame: Mutex::new(recovered.last_frame),
            writer: Mutex::new(None),
            recovery_cut_bytes: recovered.cut_bytes,
            spares,
            opts,
            stats: Default::default(),
        });
        if writable {
            let writer = crate::writer::Writer {
                shared: shared.clone(),
                cur_begin: last_begin,
                cur_file: recovered.last_file,
                created: Vec::new(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("journal-writer-{}", shared.name))
                .spawn(move || writer.run())
                .expect("spawn journal writer thread");
            *shared.writer.lock() = Some(handle);
        }
        shared
    }

    pub(crate) fn durable_head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    pub(crate) fn first_offset(&self) -> u64 {
        self.first_offset.load(Ordering::Acquire)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// Stops the writer after it has written everything already accepted.
    pub(crate) fn close(&self) {
        {
            let mut st = self.state.lock();
            st.closed = true;
            self.writer_wake.notify_all();
        }
        self.space.notify(usize::MAX);
        if let Some(handle) = self.writer.lock().take() {
            let _ = handle.join();
        }
        if let Some(spares) = &self.spares {
            spares.close();
        }
        self.head_changed.notify(usize::MAX);
    }

    fn try_enqueue(
        &self,
        batch: &Batch,
        condition: Condition,
        payload_crc: u32,
    ) -> Result<Enqueue, AppendError> {
        let payload = batch.payload();
        let frame_len = frame::frame_len_bytes(payload.len());
        let mut st = self.state.lock();
        if let Some(reason) = &st.poisoned {
            return Err(AppendError::Poisoned {
                journal: self.name.clone(),
                reason: reason.clone(),
            });
        }
        if st.closed {
            return Err(AppendError::Closed {
                journal: self.name.clone(),
            });
        }
        match condition {
            Condition::None => {}
            Condition::Head(expected) if expected != st.pending_end => {
                return Err(AppendError::Conflict {
                    journal: self.name.clone(),
                    expected,
                    actual: st.pending_end,
                });
            }
            Condition::NoFailureSince(since) if since != st.failures => {
                assert!(
                    since < st.failures,
                    "failure count {since} is ahead of the journal's {}",
                    st.failures
                );
                let first = st
                    .first_failure
                    .clone()
                    .expect("a failure is recorded with its count");
                return Err(AppendError::AfterFailure {
                    journal: self.name.clone(),
                    since,
                    failures: st.failures,
                    first: Box::new(first),
                });
            }
            Condition::Head(_) | Condition::NoFailureSince(_) => {}
        }
        if !st.fill.is_empty() && st.fill.len() as u64 + frame_len > self.opts.pending_max_bytes {
            return Ok(Enqueue::Full);
        }
        let offset = st.pending_end;
        let frag_used = offset - st.frag_begin;
        if frag_used > 0 && frag_used + frame_len > self.opts.fragment_max_bytes {
            let at = st.fill.len();
            st.fill_rolls.push((at, offset));
            st.frag_begin = offset;
        }
        let header = FrameHeader {
            offset,
            write_begin: st.fill_begin,
            payload_len: payload.len() as u32,
            kind: FRAME_KIND_BATCH,
            payload_crc,
            message_count: batch.message_count(),
        };
        frame::encode_frame(&mut st.fill, self.salt, &header, payload);
        st.pending_end = offset + frame_len;
        st.fill_last_frame = Some(offset);
        self.stats.appended(frame_len);
        let pending = PendingAppend {
            done: st.fill_done.clone(),
            ack: AppendAck {
                offset,
                end: offset + frame_len,
            },
        };
        if st.writer_idle {
            self.writer_wake.notify_one();
        }
        Ok(Enqueue::Queued(pending))
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

    fn submit_blocking(&self, batch: &Batch, condition: Condition) -> Result<PendingAppend, AppendError> {
        let crc = self.check_limits(batch)?;
        loop {
            if let Enqueue::Queued(p) = self.try_enqueue(batch, condition, crc)? {
                return Ok(p);
            }
            let listener = self.space.listen();
            if let Enqueue::Queued(p) = self.try_enqueue(batch, condition, crc)? {
                return Ok(p);
            }
            listener.wait();
        }
    }

    async fn submit_async(&self, batch: &Batch, condition: Condition) -> Result<PendingAppend, AppendError> {
        let crc = self.check_limits(batch)?;
        loop {
            if let Enqueue::Queued(p) = self.try_enqueue(batch, condition, crc)? {
                return Ok(p);
            }
            let listener = self.space.listen();
            if let Enqueue::Queued(p) = self.try_enqueue(batch, condition, crc)? {
                return Ok(p);
            }
            listener.await;
        }
    }

    // ---- called by the writer thread ----

    /// Takes the filling batch, waiting for one. `None` once closed and drained.
    pub(crate) fn take_batch(&self, recycled: Option<Vec<u8>>) -> Option<TakenBatch> {
        let mut st = self.state.lock();
        if let Some(mut buf) = recycled {
            buf.clear();
            st.spare = buf;
        }
        while st.fill.is_empty() {
            if st.closed {
                return None;
            }
            st.writer_idle = true;
            self.writer_wake.wait(&mut st);
        }
        st.writer_idle = false;
        let spare = std::mem::take(&mut st.spare);
        let bytes = std::mem::replace(&mut st.fill, spare);
        let begin = st.fill_begin;
        st.fill_begin = st.pending_end;
        let taken = TakenBatch {
            bytes,
            begin,
            rolls: std::mem::take(&mut st.fill_rolls),
            last_frame: st.fill_last_frame.take(),
            done: std::mem::replace(&mut st.fill_done, Completion::new()),
        };
        drop(st);
        self.space.notify(usize::MAX);
        Some(taken)
    }

    /// Publishes a durable batch.
    pub(crate) fn batch_durable(&self, batch: &TakenBatch) {
        let end = batch.begin + batch.bytes.len() as u64;
        let head = self.durable_head();
        // Invariants: a batch begins at the durable head, and the durable head only grows.
        assert_eq!(
            batch.begin, head,
            "journal {:?}: a batch must begin at the durable head",
            self.name
        );
        assert!(
            end >= head,
            "journal {:?}: the durable head only grows",
            self.name
        );
        *self.last_frame.lock() = batch.last_frame;
        self.stats.committed(batch.bytes.len() as u64);
        // Time-stamp before publishing the head, so no reader acts on the batch "before" it
        // was durable.
        let _ = batch.done.completed_at.set(Instant::now());
        self.head.store(end, Ordering::Release);
        batch.done.complete(Ok(()));
        self.head_changed.notify(usize::MAX);
    }

    /// Fails a batch whose write failed and was rolled back, along with everything queued after
    /// it (their offsets assumed the failed batch would land), so the journal continues at the
    /// durable head.
    pub(crate) fn batch_failed(&self, batch: &TakenBatch, error: AppendError, frag_begin: u64) {
        let queued = {
            let mut st = self.state.lock();
            let durable = self.durable_head();
            st.pending_end = durable;
            st.fill_begin = durable;
            st.fill.clear();
            st.fill_rolls.clear();
            st.fill_last_frame = None;
            st.frag_begin = frag_begin;
            st.failures += 1;
            st.first_failure.get_or_insert_with(|| error.clone());
            std::mem::replace(&mut st.fill_done, Completion::new())
        };
        self.stats.commit_failed();
        batch.done.complete(Err(error.clone()));
        queued.complete(Err(error));
        self.space.notify(usize::MAX);
    }

    /// Poisons the journal after a failed fsync: this batch and all later appends fail.
    pub(crate) fn poison(&self, batch: &TakenBatch, reason: String) {
        let error = AppendError::Poisoned {
            journal: self.name.clone(),
            reason: reason.clone(),
        };
        let frag_begin = {
            let mut st = self.state.lock();
            st.poisoned = Some(reason);
            st.frag_begin
        };
        self.batch_failed(batch, error, frag_begin);
        self.head_changed.notify(usize::MAX);
    }

    pub(crate) fn poison_reason(&self) -> Option<String> {
        self.state.lock().poisoned.clone()
    }

    pub(crate) fn push_fragment(&self, fragment: Arc<Fragment>) {
        self.stats.fragment_created();
        self.fragments.write().push(fragment);
    }

    pub(crate) fn drop_fragments_from(&self, begin: u64) {
        self.fragments.write().retain(|f| f.begin < begin);
    }

    pub(crate) fn map_len_hint(&self) -> u64 {
        self.opts.fragment_max_bytes
    }

    /// Creates the fragment beginning at `begin`: the zero-filled spare renamed, if one is
    /// ready, or else a new empty file.
    pub(crate) fn open_new_fragment(
        &self,
        begin: u64,
    ) -> std::io::Result<(Arc<Fragment>, Arc<dyn StorageFile>)> {
        let fragment = Fragment::new(begin, &self.dir);
        let spare = self
            .spares
            .as_ref()
            .and_then(|s| s.take_as(&fragment.path, self.map_len_hint()));
        let file = match spare {
            Some(file) => file?,
            None => self
                .opts
                .storage
                .open(&fragment.path, OpenMode::CreateNew, self.map_len_hint())?,
        };
        let fragment = Fragment::with_file(begin, &self.dir, file.clone());
        Ok((Arc::new(fragment), file))
    }
}

/// A batch the writer took from the filling buffer.
pub(crate) struct TakenBatch {
    pub bytes: Vec<u8>,
    pub begin: u64,
    pub rolls: Vec<(usize, u64)>,
    pub last_frame: Option<u64>,
    pub done: Arc<Completion>,
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
        self.shared.submit_blocking(batch, Condition::None)?.wait()
    }

    /// Appends only if the journal's head (including appends accepted but not yet durable) is
    /// still `expect_head`; otherwise fails with [`AppendError::Conflict`] and writes nothing.
    pub fn append_if(&self, expect_head: u64, batch: &Batch) -> Result<AppendAck, AppendError> {
        self.shared
            .submit_blocking(batch, Condition::Head(expect_head))?
            .wait()
    }

    /// Places `batch` in the journal without waiting for durability; blocks only while the
    /// pending buffer is full. Call [`PendingAppend::wait`] for the acknowledgement.
    pub fn submit(&self, batch: &Batch) -> Result<PendingAppend, AppendError> {
        self.shared.submit_blocking(batch, Condition::None)
    }

    /// [`Journal::submit`] with a conditional head.
    pub fn submit_if(&self, expect_head: u64, batch: &Batch) -> Result<PendingAppend, AppendError> {
        self.shared.submit_blocking(batch, Condition::Head(expect_head))
    }

    /// How many batches have failed (been rolled back, e.g. on ENOSPC) since the journal was
    /// opened.
    pub fn failures(&self) -> u64 {
        self.shared.state.lock().failures
    }

    /// [`Journal::submit`], unless a batch failed since [`Journal::failures`] returned `since`:
    /// then [`AppendError::AfterFailure`] and nothing is written. A writer that pipelines
    /// appends which must land in order (chunks of one stream) uses it, so that when one of its
    /// appends fails and is rolled back, a later one never lands in its place, leaving a gap.
    pub fn submit_unless_failed(&self, since: u64, batch: &Batch) -> Result<PendingAppend, AppendError> {
        self.shared
            .submit_blocking(batch, Condition::NoFailureSince(since))
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
        let deadline = Instant::now() + timeout;
        loop {
            let head = self.durable_head();
            if head > offset || self.shared.is_closed() {
                return head;
            }
            let listener = self.shared.head_changed.listen();
            let head = self.durable_head();
            if head > offset || self.shared.is_closed() {
                return head;
            }
            if listener.wait_deadline(deadline).is_none() {
                return self.durable_head();
            }
        }
    }

    /// Async: waits until the durable head passes `offset` or the journal closes.
    pub async fn wait_beyond_async(&self, offset: u64) -> u64 {
        loop {
            let head = self.durable_head();
            if head > offset || self.shared.is_closed() {
                return head;
            }
            let listener = self.shared.head_changed.listen();
            let head = self.durable_head();
            if head > offset || self.shared.is_closed() {
                return head;
            }
            listener.await;
        }
    }

    /// The fragments, oldest first.
    pub fn fragments(&self) -> Vec<FragmentInfo> {
        let frags = self.shared.fragments.read();
        let head = self.durable_head();
        frags
            .iter()
            .enumerate()
            .map(|(i, f)| FragmentInfo {
                begin: f.begin,
                end: frags.get(i + 1).map_or(head, |n| n.begin),
                path: f.path.clone(),
            })
            .collect()
    }

    /// Removes every fragment that lies wholly below `offset` (never the fragment being written).
    /// Readers positioned in removed ranges get [`ReadError::Removed`]. Returns how many
    /// fragments were removed.
    pub fn remove_below(&self, offset: u64) -> Result<usize, RetentionError> {
        let shared = &self.shared;
        if !shared.writable {
            return Err(RetentionError::ReadOnly {
                journal: shared.name.clone(),
            });
        }
        let doomed: Vec<Arc<Fragment>> = {
            let mut frags = shared.fragments.write();
            let head = shared.durable_head();
            let keep_from = frags
                .iter()
                .enumerate()
                .skip(1)
                // A fragment beginning at the durable head holds no durable frame: its commit may
                // still fail and be rolled back, removing it, so it cannot become the first.
                .take_while(|(_, f)| f.begin <= offset && f.begin < head)
                .map(|(i, _)| i)
                .last()
                .unwrap_or(0);
            let doomed: Vec<_> = frags.drain(..keep_from).collect();
            if let Some(first) = frags.first() {
                shared.first_offset.store(first.begin, Ordering::Release);
            }
            doomed
        };
        // Oldest first, syncing the directory after each unlink: a power loss keeps any subset
        // of the unlinks since the last directory sync, so unlinking several before one sync
        // could leave an old fragment without its successor (a hole). One at a time, what
        // survives is always a contiguous run of fragments ending at the head.
        let storage = &shared.opts.storage;
        for (i, f) in doomed.iter().enumerate() {
            let unlinked = match storage.remove_file(&f.path) {
                // Gone already (an earlier attempt unlinked it, then its directory sync failed).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            };
            let failure = match unlinked {
                Err(source) => Some((i, f.path.clone(), source)),
                Ok(()) => storage
                    .sync_dir(&shared.dir)
                    .err()
                    .map(|source| (i + 1, shared.dir.clone(), source)),
            };
            if let Some((kept_from, path, source)) = failure {
                // The fragments not unlinked are still on disk: put them back, or a later
                // retention would unlink their successors and leave them behind, a hole.
                let mut frags = shared.fragments.write();
                let kept: Vec<_> = doomed[kept_from..].to_vec();
                frags.splice(0..0, kept);
                if let Some(first) = frags.first() {
                    shared.first_offset.store(first.begin, Ordering::Release);
                }
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

    /// This journal's append, commit, fsync and fragment counters since this process opened it.
    pub fn stats(&self) -> crate::stats::StatsSnapshot {
        self.shared.stats.snapshot()
    }
}
