//! The storage seam: every file operation the journal performs goes through [`Storage`] and
//! [`StorageFile`], so tests can swap the real filesystem ([`RealStorage`]) for a simulated one
//! ([`crate::sim::SimStorage`]) that loses unsynced bytes, tears writes, flips bits, fails fsync
//! and runs out of space, deterministically from a seed.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::mmap::FragmentMap;

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
    /// Takes an exclusive lock on a directory; `ErrorKind::WouldBlock` if another holder has it.
    fn lock_dir(&self, path: &Path) -> io::Result<Box<dyn DirLock>>;
}

/// File-level operations.
// An `is_empty` would add nothing to the seam: callers need the length itself.
#[allow(clippy::len_without_is_empty)]
pub trait StorageFile: Send + Sync {
    fn len(&self) -> io::Result<u64>;
    fn write_all_at(&self, pos: u64, buf: &[u8]) -> io::Result<()>;
    /// Reads `len` bytes at `pos`. The real implementation returns a zero-copy view of a memory
    /// map, its pages faulted in first, so a page that cannot be read is an error here rather
    /// than a SIGBUS later (`mmap.rs` says what can still fault, and who catches it); callers
    /// must only ask for bytes that were written (and are durable, for readers).
    fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes>;
    /// `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
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
            OpenMode::ReadOnly => &mut options,
        };
        let file = options.open(path)?;
        Ok(Arc::new(RealFile {
            file,
            path: path.to_path_buf(),
            map_len_hint,
            map: Mutex::new(None),
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
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.join("LOCK"))?;
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

struct RealFile {
    file: File,
    path: PathBuf,
    map_len_hint: u64,
    /// A read-only map of the file, at least `map_len_hint` long, made on first read.
    map: Mutex<Option<PopulatedMap>>,
}

/// A map and how much of it, from its start, has been faulted in without error.
struct PopulatedMap {
    map: FragmentMap,
    populated_bytes: usize,
}

impl RealFile {
    /// The map to read `..end` from: the current one, unless it is too short or a page of it
    /// faulted (it reads as zeros now; a fresh map gives the I/O another chance).
    fn map_covering<'a>(
        &self,
        state: &'a mut Option<PopulatedMap>,
        end: u64,
    ) -> io::Result<&'a mut PopulatedMap> {
        let usable = state
            .as_ref()
            .is_some_and(|s| s.map.bytes().len() as u64 >= end && !s.map.has_faulted());
        if !usable {
            let map_len = end.max(self.map_len_hint).max(1);
            let map = crate::mmap::map_read_only(&self.file, map_len)
                .map_err(|e| io::Error::new(e.kind(), format!("mmap {}: {e}", self.path.display())))?;
            *state = Some(PopulatedMap {
                map,
                populated_bytes: 0,
            });
        }
        Ok(state.as_mut().expect("mapped above"))
    }
}

impl StorageFile for RealFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn write_all_at(&self, pos: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, pos)
    }

    /// A zero-copy view of the map, whose pages are faulted in first: a page that cannot be read
    /// (EIO) or lies past the end of the file is an error here, naming the file and the byte,
    /// instead of a SIGBUS when the caller touches it ([`crate::mmap`]).
    fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        let end = pos + len as u64;
        let mut state = self.map.lock();
        let current = self.map_covering(&mut state, end)?;
        let (pos, end) = (pos as usize, end as usize);
        // Populate only what no earlier read did (tailing readers ask for a growing prefix).
        let from = if pos <= current.populated_bytes {
            current.populated_bytes.min(end)
        } else {
            pos
        };
        current.map.populate(from..end).map_err(|at| {
            io::Error::other(format!(
                "reading {}: byte {at} could not be read (an I/O error, or it is past the end of \
                 the file if the file was truncated)",
                self.path.display()
            ))
        })?;
        if pos <= current.populated_bytes {
            current.populated_bytes = current.populated_bytes.max(end);
        }
        Ok(current.map.bytes().slice(pos..end))
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}
