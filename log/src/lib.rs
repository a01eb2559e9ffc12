//! `ss-log`: the embedded journal engine of stream-sum.
//!
//! A [`Log`] is a data directory (held with an exclusive lock) of named [`Journal`]s. A journal
//! is an append-only sequence of bytes addressed by offset, stored as fragment files named by the
//! offset where they begin ([`fragment`]). Each append writes one CRC-32C framed [`frame`] holding
//! a [`Batch`] of messages, all or nothing. Appends from many threads and tasks are group-committed
//! by each batch's leader (a lone appender itself; under contention the journal's helper thread;
//! `commit`, [`writer`]): one write and one `fdatasync` per batch, after which the durable head
//! advances. [`Reader`]s see only durable frames, through memory maps, and can tail (blocking or
//! async); [`Journal::frames`] scans every durable frame from an offset. Opening runs
//! [`recovery`] on the last fragment only, from its [`scan_hint`] when one holds up.
//! All file operations go through the [`storage`] seam; `sim` (feature `fault-injection`, for
//! tests, fuzzing and the crash tools) simulates crashes and faults.
//!
//! ```
//! use ss_log::{Batch, Log, Options};
//! let dir = tempfile::tempdir().unwrap();
//! let log = Log::open(dir.path(), Options::default()).unwrap();
//! let journal = log.journal("events").unwrap();
//! let ack = journal.append(&Batch::single(b"hello")).unwrap();
//! let mut reader = journal.reader(0);
//! let frame = reader.try_next().unwrap().unwrap();
//! assert_eq!(frame.offset, ack.offset);
//! assert_eq!(frame.messages().next().unwrap().unwrap(), b"hello");
//! ```
#![deny(unsafe_code)]

pub mod boundary;
mod commit;
pub mod error;
pub mod fragment;
pub mod frame;
mod journal;
mod mmap;
mod reader;
pub mod recovery;
mod scan;
pub mod scan_hint;
#[cfg(feature = "fault-injection")]
pub mod sim;
pub mod spare;
pub mod stats;
pub mod storage;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

pub use boundary::{FrameJournal, FrameReader, PendingFrame};
pub use error::{AppendError, OpenError, ReadError, RetentionError};
pub use frame::Batch;
pub use journal::{AppendAck, FragmentInfo, Journal, PendingAppend};
pub use reader::{Frame, Reader};
pub use scan::{Frames, OnRemoved};
pub use stats::{HistogramSnapshot, StatsSnapshot};
pub use storage::{RealStorage, Storage, StorageFile};

/// Whether this build has the fault machinery (feature `fault-injection`): the simulated storage
/// and the storage wrappers of tests. A constant, so code that checks it is compiled out of a
/// normal build.
pub const FAULT_INJECTION: bool = cfg!(feature = "fault-injection");

use journal::JournalShared;
use storage::{DirLock, OpenMode};

/// Subdirectory of the data directory that holds one directory per journal.
pub const JOURNALS_DIR: &str = "journals";

/// Limits and the storage to use.
#[derive(Clone)]
pub struct Options {
    /// A fragment is rolled when the next frame would take it past this size.
    pub fragment_max_bytes: u64,
    /// Largest frame (header, payload and padding); larger appends fail with `FrameTooLarge`.
    pub frame_max_bytes: u64,
    /// Most messages in one batch; more fail with `BatchTooLarge`.
    pub batch_max_messages: u32,
    /// Most bytes accepted but not yet taken by a committing leader; appenders wait beyond it. At most
    /// twice this is buffered per journal (one batch filling, one being written).
    pub pending_max_bytes: u64,
    /// Zero-fill the next fragment ahead of use, so a commit's fdatasync need not also make a
    /// file size change durable ([`spare`]). Costs a spare file of `fragment_max_bytes` per busy
    /// journal and the bandwidth to zero it.
    pub preallocate: bool,
    /// Fragments removed by retention ([`Journal::remove_below`]) are renamed aside and become
    /// the next fragments instead of being unlinked (at most [`spare::RECYCLED_MAX`] wait), so
    /// a journal under retention writes into files that already exist: no growth to make
    /// durable at each commit. Their old frames are never valid at their new offsets, so
    /// nothing is cleared. On by default (it acts only when retention runs). A file that a
    /// reader still holds, in this process or another (a read-only `verify` beside the writer),
    /// is never reused: every open file holds a shared claim
    /// ([`StorageFile::try_claim_exclusive`]), and a file whose exclusive claim fails is unlinked
    /// instead (docs/design.md, "Recycling").
    pub recycle: bool,
    /// The writer records a scan-start hint ([`scan_hint`]) each time a write begins at least
    /// this far past the last hint (or the fragment's start), so that opening validates less
    /// than this plus the last write of the last fragment instead of all of it. Smaller costs
    /// a 32-byte unsynced write more often; 1 MiB costs one per MiB written. Close, and a
    /// writable open, also record the last write. `u64::MAX` records no hint at all (an existing
    /// one is still used).
    pub scan_hint_interval_bytes: u64,
    /// Before a write would pass the durable write bound of a fragment that started out longer
    /// than what is written into it (recycled, or a zero-filled spare), the writer records and
    /// syncs a new bound this far past the write's end ([`scan_hint`]): one 32-byte write and
    /// `fdatasync` per this many bytes. Open after a crash then searches at most about this much
    /// of the fragment's stale bytes for frames of a later write, not all of them. `u64::MAX`
    /// records no bound (an existing one is still used).
    pub write_bound_step_bytes: u64,
    pub storage: Arc<dyn Storage>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            fragment_max_bytes: 32 << 20,
            frame_max_bytes: 4 << 20,
            batch_max_messages: 1 << 20,
            pending_max_bytes: 8 << 20,
            preallocate: false,
            recycle: true,
            scan_hint_interval_bytes: scan_hint::SCAN_HINT_INTERVAL_BYTES,
            write_bound_step_bytes: scan_hint::WRITE_BOUND_STEP_BYTES,
            storage: Arc::new(RealStorage),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("fragment_max_bytes", &self.fragment_max_bytes)
            .field("frame_max_bytes", &self.frame_max_bytes)
            .field("batch_max_messages", &self.batch_max_messages)
            .field("pending_max_bytes", &self.pending_max_bytes)
            .field("preallocate", &self.preallocate)
            .field("recycle", &self.recycle)
            .field("scan_hint_interval_bytes", &self.scan_hint_interval_bytes)
            .field("write_bound_step_bytes", &self.write_bound_step_bytes)
            .finish_non_exhaustive()
    }
}

impl Options {
    /// Default limits over another storage (e.g. the simulated `sim::SimStorage`).
    pub fn with_storage(storage: Arc<dyn Storage>) -> Options {
        Options {
            storage,
            ..Options::default()
        }
    }

    fn validate(&self) -> Result<(), OpenError> {
        let min_frame = frame::frame_len_bytes(0);
        if self.frame_max_bytes < min_frame {
            return Err(OpenError::BadOptions(format!(
                "frame_max_bytes must be at least {min_frame}"
            )));
        }
        if self.frame_max_bytes > self.pending_max_bytes {
            return Err(OpenError::BadOptions(
                "frame_max_bytes must not exceed pending_max_bytes".into(),
            ));
        }
        if self.frame_max_bytes > u32::MAX as u64 {
            return Err(OpenError::BadOptions(
                "frame_max_bytes must fit in 32 bits".into(),
            ));
        }
        if self.fragment_max_bytes < self.frame_max_bytes {
            return Err(OpenError::BadOptions(
                "fragment_max_bytes must be at least frame_max_bytes".into(),
            ));
        }
        Ok(())
    }
}

pub(crate) struct LogInner {
    dir: PathBuf,
    opts: Options,
    writable: bool,
    journals: Mutex<BTreeMap<String, Arc<JournalShared>>>,
    /// A writer's locks on the data directory and `journals/` (none for a read-only open).
    /// Released with the last handle, as are the next.
    _dir_locks: Vec<Box<dyn DirLock>>,
    /// A writer's lock on each journal directory it opened, by journal name.
    journal_locks: Mutex<BTreeMap<String, Box<dyn DirLock>>>,
}

impl Drop for LogInner {
    fn drop(&mut self) {
        for shared in self.journals.get_mut().values() {
            shared.close();
        }
    }
}

/// A data directory of journals. Cheap to clone; the directory lock is released when the last
/// clone and the last [`Journal`] handle are dropped.
#[derive(Clone)]
pub struct Log {
    inner: Arc<LogInner>,
}

/// True for journal names: 1-100 characters of `[A-Za-z0-9._-]`, not starting with a dot.
pub fn is_valid_journal_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

impl Log {
    /// Opens (creating if needed) the data directory `dir` for reading and writing, taking its
    /// exclusive lock. A second opener gets [`OpenError::Locked`].
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Log, OpenError> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let journals_dir = dir.join(JOURNALS_DIR);
        let io = |what, path: &Path, source| OpenError::Io {
            journal: String::new(),
            what,
            path: path.to_path_buf(),
            source,
        };
        let created = !opts.storage.is_dir(&dir);
        opts.storage
            .create_dir_all(&dir)
            .map_err(|e| io("creating", &dir, e))?;
        let lock = |path: &Path| {
            lock_dir(&*opts.storage, path, "", || OpenError::Locked {
                dir: dir.clone(),
            })
        };
        // The data directory is locked before `journals/` exists: a reader that finds `journals/`
        // (which `open_read_only` requires) while this writer lives also finds a lock held, so it
        // never mistakes a starting run for a directory nobody writes. `journals/` is locked too:
        // another data directory whose `journals` is a symlink to this one meets that lock.
        let data_lock = lock(&dir)?;
        opts.storage
            .create_dir_all(&journals_dir)
            .map_err(|e| io("creating", &journals_dir, e))?;
        let journals_lock = lock(&journals_dir)?;
        if let Some(parent) = dir.parent().filter(|p| created && !p.as_os_str().is_empty()) {
            // A new data directory's own entry, or a power loss may take the whole directory.
            opts.storage
                .sync_dir(parent)
                .map_err(|e| io("syncing", parent, e))?;
        }
        // Make the data directory's entry `journals/` durable before any journal in it.
        opts.storage.sync_dir(&dir).map_err(|e| io("syncing", &dir, e))?;
        Ok(Log {
            inner: Arc::new(LogInner {
                dir,
                opts,
                writable: true,
                journals: Mutex::new(BTreeMap::new()),
                _dir_locks: vec![data_lock, journals_lock],
                journal_locks: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    /// Opens `dir` read-only, without its lock (another process may be writing). Journals are
    /// recovered without repairs; their heads are as of opening.
    pub fn open_read_only(dir: impl AsRef<Path>, opts: Options) -> Result<Log, OpenError> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        if !opts.storage.is_dir(&dir.join(JOURNALS_DIR)) {
            // (A regular file at `dir` is not a directory to the storage, but it does exist.)
            return Err(if opts.storage.is_dir(&dir) || dir.exists() {
                OpenError::NotADataDir { dir }
            } else {
                OpenError::NoDataDir { dir }
            });
        }
        Ok(Log {
            inner: Arc::new(LogInner {
                dir,
                opts,
                writable: false,
                journals: Mutex::new(BTreeMap::new()),
                _dir_locks: Vec::new(),
                journal_locks: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    pub fn is_writable(&self) -> bool {
        self.inner.writable
    }

    /// Closes every journal opened so far: appends already accepted are written and acknowledged,
    /// later appends fail with [`AppendError::Closed`], and readers that reach the head get
    /// [`ReadError::Closed`] instead of waiting. Handles stay usable for reading; the directory
    /// lock is released when the last handle is dropped. (Dropping the last handle also closes,
    /// but a tailing reader holds a handle, so it could never be woken that way.)
    pub fn close(&self) {
        for shared in self.inner.journals.lock().values() {
            shared.close();
        }
    }

    /// Names of the journals in the directory, sorted.
    pub fn journal_names(&self) -> Result<Vec<String>, OpenError> {
        let dir = self.inner.dir.join(JOURNALS_DIR);
        let mut names: Vec<String> = self
            .inner
            .opts
            .storage
            .list_dir(&dir)
            .map_err(|source| OpenError::Io {
                journal: String::new(),
                what: "listing",
                path: dir.clone(),
                source,
            })?
            .into_iter()
            // A journal is a directory: a stray file beside them (a README, say) is none.
            .filter(|n| is_valid_journal_name(n) && self.inner.opts.storage.is_dir(&dir.join(n)))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Opens the journal `name`, creating it if it does not exist (read-write logs only).
    pub fn journal(&self, name: &str) -> Result<Journal, OpenError> {
        self.open_journal(name, self.inner.writable)
    }

    /// Opens the journal `name`, which must exist.
    pub fn existing_journal(&self, name: &str) -> Result<Journal, OpenError> {
        self.open_journal(name, false)
    }

    fn open_journal(&self, name: &str, create: bool) -> Result<Journal, OpenError> {
        if !is_valid_journal_name(name) {
            return Err(OpenError::BadName {
                journal: name.to_string(),
            });
        }
        let mut journals = self.inner.journals.lock();
        if let Some(shared) = journals.get(name) {
            return Ok(Journal {
                shared: shared.clone(),
                _log: self.inner.clone(),
            });
        }
        let (dir, has_fragment) = self.prepare_dir(name, create)?;
        let salt = frame::journal_salt(name);
        let recover = || recovery::recover(&dir, name, salt, &self.inner.opts, self.inner.writable);
        let recovered = if self.inner.writable {
            recover()?
        } else if !has_fragment {
            // A writer is creating the journal (its directory exists, its first fragment not
            // yet), or one crashed right then: a writable open would start it empty, so it is.
            empty_journal(&dir)
        } else {
            recover_read_only(recover)?
        };
        let shared = JournalShared::new(
            name.to_string(),
            dir,
            self.inner.opts.clone(),
            self.inner.writable,
            recovered,
        );
        journals.insert(name.to_string(), shared.clone());
        Ok(Journal {
            shared,
            _log: self.inner.clone(),
        })
    }

    /// The journal's directory, created (with its first fragment, durably) if the log is
    /// writable and `create`; and whether it holds a fragment file.
    fn prepare_dir(&self, name: &str, create: bool) -> Result<(PathBuf, bool), OpenError> {
        let storage = &*self.inner.opts.storage;
        let parent = self.inner.dir.join(JOURNALS_DIR);
        let dir = parent.join(name);
        let io = |what, path: &Path, source| OpenError::Io {
            journal: name.to_string(),
            what,
            path: path.to_path_buf(),
            source,
        };
        if !storage.is_dir(&dir) {
            if !create {
                return Err(OpenError::NoSuchJournal {
                    journal: name.to_string(),
                    dir: self.inner.dir.clone(),
                });
            }
            storage
                .create_dir_all(&dir)
                .map_err(|e| io("creating", &dir, e))?;
            storage.sync_dir(&parent).map_err(|e| io("syncing", &parent, e))?;
        }
        let mut journal_locks = self.inner.journal_locks.lock();
        if self.inner.writable && !journal_locks.contains_key(name) {
            // Before anything in it is read or repaired: the same journal directory reached from
            // another data directory (a symlink) may have a writer in another process. (Held
            // from the first open on, even one that then failed, so a retry does not meet it.)
            let lock = lock_dir(storage, &dir, name, || OpenError::JournalLocked {
                journal: name.to_string(),
                dir: dir.clone(),
            })?;
            journal_locks.insert(name.to_string(), lock);
        }
        drop(journal_locks);
        let list = || -> Result<(Vec<String>, bool), OpenError> {
            let names = storage.list_dir(&dir).map_err(|e| io("listing", &dir, e))?;
            let has_fragment = names.iter().any(|n| fragment::has_fragment_name_shape(n));
            Ok((names, has_fragment))
        };
        let (mut names, mut has_fragment) = list()?;
        // A fragment's name is durable before anything is written into it, and a scan-start hint
        // only after a write into it synced: a valid hint over no fragment at all means the
        // fragments were removed, not that the journal was never written. Unless a live writer
        // (this is a read-only open) created the journal since the listing: listed again after
        // the hint was read, its fragment shows.
        if !has_fragment {
            if let Some(h) = scan_hint::read_scan_hint(storage, &dir, frame::journal_salt(name)) {
                (names, has_fragment) = list()?;
                if !has_fragment {
                    return Err(h.fragment_missing(
                        name,
                        &dir,
                        "the journal directory holds no fragment files",
                    ));
                }
            }
        }
        if !has_fragment && self.inner.writable {
            // A new journal, or one whose first fragment was never made durable, or one whose
            // fragments were removed by hand. What is left of an earlier incarnation goes: its
            // scan-start hint (not a valid one: that was refused above), and its
            // recycled files, whose stale frames would be valid at their own offsets in a
            // fragment the new journal rolls into at the begin they had before. The directory
            // sync below makes the removals durable with the first fragment.
            let leftovers = names
                .iter()
                .filter(|n| n.as_str() == scan_hint::SCAN_HINT_FILE || spare::is_recycled_file_name(n));
            for name in leftovers {
                let path = dir.join(name);
                match storage.remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(io("removing", &path, e));
                    }
                    _ => {}
                }
            }
            let path = dir.join(fragment::fragment_file_name(0));
            let file = storage
                .open(&path, OpenMode::CreateNew, self.inner.opts.fragment_max_bytes)
                .map_err(|e| io("creating", &path, e))?;
            file.sync_data().map_err(|e| io("syncing", &path, e))?;
            storage.sync_dir(&dir).map_err(|e| io("syncing", &dir, e))?;
            // The journal's own directory entry may not be durable yet either (a crash right
            // after creating it).
            storage.sync_dir(&parent).map_err(|e| io("syncing", &parent, e))?;
        }
        Ok((dir, has_fragment))
    }
}

/// Locks the directory `path` ([`Storage::lock_dir`]); `held()` if another holder has it, else an
/// I/O error of `journal` (empty for the data directory) naming `path`.
fn lock_dir(
    storage: &dyn Storage,
    path: &Path,
    journal: &str,
    held: impl FnOnce() -> OpenError,
) -> Result<Box<dyn DirLock>, OpenError> {
    storage.lock_dir(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            held()
        } else {
            OpenError::Io {
                journal: journal.to_string(),
                what: "locking",
                path: path.to_path_buf(),
                source: e,
            }
        }
    })
}

/// How often a read-only open lists a journal again when the fragment it found last vanished.
const READ_ONLY_OPEN_ATTEMPTS: usize = 3;

/// How often a read-only open reads a journal's last fragment again when it looks damaged.
const READ_ONLY_CORRUPT_ATTEMPTS: usize = 5;

/// Recovers a journal read-only. A live writer may roll twice and retention remove the fragment
/// that was last when it was listed before it is opened; list again instead of failing. And a
/// live writer committing into a *recycled* last fragment (`Options::recycle`) writes inside the
/// file's length while the scan reads it: the scan can see a stale frame at a position the writer
/// has not reached yet and, further on, frames the writer wrote meanwhile, which looks exactly
/// like damage followed by a later write. Damage stays where it is; a write in progress moves on:
/// read again, a few times, before refusing.
fn recover_read_only(
    recover: impl Fn() -> Result<recovery::Recovered, OpenError>,
) -> Result<recovery::Recovered, OpenError> {
    let mut attempt = 1;
    let mut corrupt_attempt = 1;
    loop {
        match recover() {
            Err(OpenError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && attempt < READ_ONLY_OPEN_ATTEMPTS =>
            {
                attempt += 1;
            }
            Err(OpenError::Corrupt { .. }) if corrupt_attempt < READ_ONLY_CORRUPT_ATTEMPTS => {
                corrupt_attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

/// A read-only view of a journal directory that holds no fragment file yet: empty, head 0.
fn empty_journal(dir: &Path) -> recovery::Recovered {
    let file: Arc<dyn StorageFile> = Arc::new(NoFile);
    recovery::Recovered {
        fragments: vec![Arc::new(fragment::Fragment::with_file(0, dir, file.clone()))],
        last_file: file,
        head: 0,
        last_frame: None,
        cut_bytes: 0,
        scan_hint: None,
    }
}

/// The file of an empty read-only journal's only fragment, which does not exist on disk. It is
/// never read (the head is 0) nor written (the journal is read-only).
struct NoFile;

impl StorageFile for NoFile {
    fn len(&self) -> std::io::Result<u64> {
        Ok(0)
    }

    fn write_all_at(&self, _pos: u64, _buf: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::other("an empty read-only journal has no file"))
    }

    fn read_at(&self, pos: u64, len: usize) -> std::io::Result<bytes::Bytes> {
        if pos == 0 && len == 0 {
            return Ok(bytes::Bytes::new());
        }
        Err(std::io::Error::other("an empty read-only journal has no file"))
    }

    fn sync_data(&self) -> std::io::Result<()> {
        Ok(())
    }

    fn set_len(&self, _len: u64) -> std::io::Result<()> {
        Err(std::io::Error::other("an empty read-only journal has no file"))
    }

    fn try_claim_exclusive(&self) -> std::io::Result<bool> {
        Ok(false)
    }

    fn share(&self) -> std::io::Result<()> {
        Ok(())
    }
}
