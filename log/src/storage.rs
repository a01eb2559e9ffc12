//! The storage seam: every file operation the journal performs goes through [`Storage`] and
//! [`StorageFile`], so tests can swap the real filesystem ([`RealStorage`]) for a simulated one
//! (`sim::SimStorage`, feature `fault-injection`) that loses unsynced bytes, tears writes, flips bits, fails fsync
//! and runs out of space, deterministically from a seed.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::mmap::MappedFile;

/// How [`Storage::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create a new file; fails if it exists. Read and write.
    CreateNew,
    /// Open an existing file for reading and writing.
    ReadWrite,
    /// Open an existing file for reading only.
    ReadOnly,
}

/// A held exclusive lock on a directory; released on drop.
pub trait DirLock: Send + Sync {}

/// Directory-level operations.
pub trait Storage: Send + Sync + 'static {
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries of a directory (files and directories), unsorted.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    fn is_dir(&self, path: &Path) -> bool;
    /// Opens a file. `map_len_hint` is the length a memory map of it should cover at least
    /// (the fragment size), so tailing readers map once.
    fn open(&self, path: &Path, mode: OpenMode, map_len_hint: u64) -> io::Result<Arc<dyn StorageFile>>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Renames a file within a directory (durable once the directory is synced).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on the directory `path` itself (the real storage: `flock` on the
    /// directory's descriptor); `ErrorKind::WouldBlock` if another holder has it.
    fn lock_dir(&self, path: &Path) -> io::Result<Box<dyn DirLock>>;
}

/// File-level operations.
// An `is_empty` would add nothing to the seam: callers need the length itself.
#[allow(clippy::len_without_is_empty)]
pub trait StorageFile: Send + Sync {
    fn len(&self) -> io::Result<u64>;
    fn write_all_at(&self, pos: u64, buf: &[u8]) -> io::Result<()>;
    /// Reads `len` bytes at `pos`; bytes past the end of the file are an `UnexpectedEof` error
    /// in every implementation. The real implementation returns a zero-copy view of a memory
    /// map, its pages faulted in first, so a page that cannot be read is an error here rather
    /// than a SIGBUS later (`mmap.rs` says what can still fault, and who catches it); callers
    /// must only ask for bytes that were written (and are durable, for readers).
    fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes>;
    /// `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Claims the file for reuse (a recycled fragment about to become the next one): `Ok(false)`
    /// if anyone else, in this process or another, has it open for reading. Every open file holds
    /// a shared claim for as long as it (or a memory map of it) lives; this upgrades this
    /// descriptor's claim to an exclusive one (the real storage: `flock(LOCK_EX | LOCK_NB)`).
    /// Undo it with [`StorageFile::share`] once the file has its new name.
    fn try_claim_exclusive(&self) -> io::Result<bool>;
    /// Turns an exclusive claim back into a shared one (`flock(LOCK_SH)`).
    fn share(&self) -> io::Result<()>;
}

/// The real filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealStorage;

struct RealDirLock {
    _file: File,
}
impl DirLock for RealDirLock {}

impl Storage for RealStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn open(&self, path: &Path, mode: OpenMode, map_len_hint: u64) -> io::Result<Arc<dyn StorageFile>> {
        let mut options = OpenOptions::new();
        options.read(true);
        match mode {
            OpenMode::CreateNew => options.write(true).create_new(true),
            OpenMode::ReadWrite => options.write(true),
            // Non-blocking, so that a FIFO put where a file should be cannot stall a read-only
            // command in open(2) waiting for a writer (regular files ignore the flag).
            OpenMode::ReadOnly => {
                use std::os::unix::fs::OpenOptionsExt;
                options.custom_flags(libc::O_NONBLOCK)
            }
        };
        let file = options.open(path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file (a FIFO, device or directory where a journal file should be)",
            ));
        }
        claim_shared(&file, path, mode)?;
        Ok(Arc::new(RealFile {
            file,
            reads: MappedFile::new(path.to_path_buf(), map_len_hint),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn lock_dir(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        // The directory itself, not a file in it: a lock file can be removed or replaced while
        // held (and the next opener then locks a new inode), a directory holding journals
        // cannot; and a symlink to the directory meets the same lock.
        let file = File::open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(RealDirLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "directory is locked by another process",
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// Takes the shared claim every open file holds (see [`StorageFile::try_claim_exclusive`]) and,
/// for an existing file, checks that `path` still names it. A writer reusing a recycled fragment
/// holds the exclusive claim only across renaming it, so the wait here is that short; a reader
/// that opened the old name just before it was renamed aside finds the name gone or naming
/// another file once it gets its claim, and reports the fragment as not found (removed by
/// retention) instead of reading bytes that are being rewritten.
///
/// On a file system without `flock` (some network and FUSE file systems) no claim is taken, and
/// [`StorageFile::try_claim_exclusive`] always refuses there, so nothing is recycled on it.
fn claim_shared(file: &File, path: &Path, mode: OpenMode) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    match file.lock_shared() {
        Err(e) if !claims_supported(&e) => {}
        other => other?,
    }
    if mode == OpenMode::CreateNew {
        return Ok(());
    }
    let opened = file.metadata()?;
    let named = std::fs::metadata(path)?;
    if (opened.dev(), opened.ino()) != (named.dev(), named.ino()) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} was renamed away (recycled by retention) while it was being opened",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// False for the errors of a file system that has no `flock` (EOPNOTSUPP, ENOLCK, ENOSYS).
fn claims_supported(error: &io::Error) -> bool {
    !(error.kind() == io::ErrorKind::Unsupported
        || matches!(
            error.raw_os_error(),
            Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::ENOSYS)
        ))
}

struct RealFile {
    file: File,
    reads: MappedFile,
}

impl StorageFile for RealFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn write_all_at(&self, pos: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, pos)
    }

    /// A zero-copy view of a memory map, whose pages are faulted in first; bounds-checked
    /// against the file's length ([`MappedFile::read_at`]).
    fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        self.reads.read_at(&self.file, pos, len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn try_claim_exclusive(&self) -> io::Result<bool> {
        match self.file.try_lock() {
            Ok(()) => Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            // No claims on this file system: readers cannot be seen, so never reuse.
            Err(std::fs::TryLockError::Error(e)) if !claims_supported(&e) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn share(&self) -> io::Result<()> {
        self.file.lock_shared()
    }
}

#[cfg(feature = "fault-injection")]
pub use intercept::{Intercept, Intercepted};

#[cfg(feature = "fault-injection")]
mod intercept {
    use super::*;

    /// The calls a storage wrapper may intercept, for tests that count, delay, hold or fail some of
    /// them: each method defaults to forwarding the call to the wrapped storage or file, so a wrapper
    /// implements only the ones it changes. [`Intercepted`] applies it to a storage and to every file
    /// opened through it.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use ss_log::storage::{Intercept, Intercepted};
    /// use ss_log::{Batch, Log, Options, StorageFile};
    ///
    /// #[derive(Default)]
    /// struct CountSyncs(AtomicU64);
    ///
    /// impl Intercept for CountSyncs {
    ///     fn sync_data(&self, file: &dyn StorageFile) -> std::io::Result<()> {
    ///         self.0.fetch_add(1, Ordering::Relaxed);
    ///         file.sync_data()
    ///     }
    /// }
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let storage = std::sync::Arc::new(Intercepted::<CountSyncs>::new(std::sync::Arc::new(ss_log::RealStorage)));
    /// let log = Log::open(dir.path(), Options::with_storage(storage.clone())).unwrap();
    /// log.journal("j").unwrap().append(&Batch::single(b"x")).unwrap();
    /// assert!(storage.0.load(Ordering::Relaxed) >= 1);
    /// ```
    pub trait Intercept: Send + Sync + 'static {
        fn create_dir_all(&self, inner: &dyn Storage, path: &Path) -> io::Result<()> {
            inner.create_dir_all(path)
        }
        fn list_dir(&self, inner: &dyn Storage, path: &Path) -> io::Result<Vec<String>> {
            inner.list_dir(path)
        }
        fn is_dir(&self, inner: &dyn Storage, path: &Path) -> bool {
            inner.is_dir(path)
        }
        /// Opens the file to wrap; the wrapper intercepts its calls too.
        fn open(
            &self,
            inner: &dyn Storage,
            path: &Path,
            mode: OpenMode,
            map_len_hint: u64,
        ) -> io::Result<Arc<dyn StorageFile>> {
            inner.open(path, mode, map_len_hint)
        }
        fn remove_file(&self, inner: &dyn Storage, path: &Path) -> io::Result<()> {
            inner.remove_file(path)
        }
        fn rename(&self, inner: &dyn Storage, from: &Path, to: &Path) -> io::Result<()> {
            inner.rename(from, to)
        }
        fn sync_dir(&self, inner: &dyn Storage, path: &Path) -> io::Result<()> {
            inner.sync_dir(path)
        }
        fn lock_dir(&self, inner: &dyn Storage, path: &Path) -> io::Result<Box<dyn DirLock>> {
            inner.lock_dir(path)
        }
        fn len(&self, file: &dyn StorageFile) -> io::Result<u64> {
            file.len()
        }
        fn write_all_at(&self, file: &dyn StorageFile, pos: u64, buf: &[u8]) -> io::Result<()> {
            file.write_all_at(pos, buf)
        }
        fn read_at(&self, file: &dyn StorageFile, pos: u64, len: usize) -> io::Result<Bytes> {
            file.read_at(pos, len)
        }
        fn sync_data(&self, file: &dyn StorageFile) -> io::Result<()> {
            file.sync_data()
        }
        fn set_len(&self, file: &dyn StorageFile, len: u64) -> io::Result<()> {
            file.set_len(len)
        }
        fn try_claim_exclusive(&self, file: &dyn StorageFile) -> io::Result<bool> {
            file.try_claim_exclusive()
        }
        fn share(&self, file: &dyn StorageFile) -> io::Result<()> {
            file.share()
        }
    }

    /// A storage whose calls, and those of its files, go through an [`Intercept`] to `inner`.
    /// Dereferences to the intercept, so a test reads its counters or gates directly.
    pub struct Intercepted<I> {
        inner: Arc<dyn Storage>,
        intercept: Arc<I>,
    }

    impl<I: Intercept> Intercepted<I> {
        /// `inner` wrapped with `intercept`.
        pub fn with(inner: Arc<dyn Storage>, intercept: I) -> Intercepted<I> {
            Intercepted {
                inner,
                intercept: Arc::new(intercept),
            }
        }

        /// `inner` wrapped with a default intercept.
        pub fn new(inner: Arc<dyn Storage>) -> Intercepted<I>
        where
            I: Default,
        {
            Intercepted::with(inner, I::default())
        }
    }

    impl<I> std::ops::Deref for Intercepted<I> {
        type Target = I;

        fn deref(&self) -> &I {
            &self.intercept
        }
    }

    struct InterceptedFile<I> {
        inner: Arc<dyn StorageFile>,
        intercept: Arc<I>,
    }

    impl<I: Intercept> Storage for Intercepted<I> {
        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            self.intercept.create_dir_all(&*self.inner, path)
        }
        fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
            self.intercept.list_dir(&*self.inner, path)
        }
        fn is_dir(&self, path: &Path) -> bool {
            self.intercept.is_dir(&*self.inner, path)
        }
        fn open(&self, path: &Path, mode: OpenMode, map_len_hint: u64) -> io::Result<Arc<dyn StorageFile>> {
            Ok(Arc::new(InterceptedFile {
                inner: self.intercept.open(&*self.inner, path, mode, map_len_hint)?,
                intercept: self.intercept.clone(),
            }))
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            self.intercept.remove_file(&*self.inner, path)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.intercept.rename(&*self.inner, from, to)
        }
        fn sync_dir(&self, path: &Path) -> io::Result<()> {
            self.intercept.sync_dir(&*self.inner, path)
        }
        fn lock_dir(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
            self.intercept.lock_dir(&*self.inner, path)
        }
    }

    impl<I: Intercept> StorageFile for InterceptedFile<I> {
        fn len(&self) -> io::Result<u64> {
            self.intercept.len(&*self.inner)
        }
        fn write_all_at(&self, pos: u64, buf: &[u8]) -> io::Result<()> {
            self.intercept.write_all_at(&*self.inner, pos, buf)
        }
        fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
            self.intercept.read_at(&*self.inner, pos, len)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.intercept.sync_data(&*self.inner)
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.intercept.set_len(&*self.inner, len)
        }
        fn try_claim_exclusive(&self) -> io::Result<bool> {
            self.intercept.try_claim_exclusive(&*self.inner)
        }
        fn share(&self) -> io::Result<()> {
            self.intercept.share(&*self.inner)
        }
    }
}
