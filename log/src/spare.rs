//! Zero-filled spare fragments, prepared ahead of use (`Options::preallocate`).
//!
//! A commit into a file that grows must also make the new file size durable, which costs an
//! fdatasync about a third more than one into bytes that already exist. So when the fragment
//! being written passes half its size, a background thread writes the next fragment's file full
//! of zeros (`next.spare`) and syncs it; at the roll, the writer renames it to the new
//! fragment's name (the directory is synced before anything in it is acknowledged). If no spare
//! is ready, the writer creates an empty, growing fragment as usual. Recovery reads zeros as the
//! end of the data, and zeroes (instead of truncating) a torn tail in a preallocated fragment.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::storage::{OpenMode, Storage, StorageFile};

/// File name of the spare fragment in a journal directory.
pub const SPARE_FILE_NAME: &str = "next.spare";
const ZERO_CHUNK_BYTES: usize = 1 << 20;

#[derive(Default)]
struct SpareState {
    ready: bool,
    wanted: bool,
    closed: bool,
}

/// The spare of one journal and the thread that prepares it.
pub(crate) struct Spares {
    path: PathBuf,
    storage: Arc<dyn Storage>,
    len_bytes: u64,
    state: Mutex<SpareState>,
    wake: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Spares {
    /// Starts the preparer for journal directory `dir`; spares are `len_bytes` long. A spare
    /// left by an earlier process is removed (it may be incomplete).
    pub fn start(dir: &Path, storage: Arc<dyn Storage>, len_bytes: u64, journal: &str) -> Arc<Spares> {
        let path = dir.join(SPARE_FILE_NAME);
        let _ = storage.remove_file(&path);
        let spares = Arc::new(Spares {
            path,
            storage,
            len_bytes,
            state: Mutex::new(SpareState::default()),
            wake: Condvar::new(),
            thread: Mutex::new(None),
        });
        let worker = spares.clone();
        let handle = std::thread::Builder::new()
            .name(format!("journal-spare-{journal}"))
            .spawn(move || worker.run())
            .expect("spawn spare preparer");
        *spares.thread.lock() = Some(handle);
        spares
    }

    /// Asks for a spare to be prepared if none is (cheap; called by the writer).
    pub fn want(&self) {
        let mut st = self.state.lock();
        if !st.ready && !st.wanted {
            st.wanted = true;
            self.wake.notify_one();
        }
    }

    /// Takes the ready spare, renamed to `path` and opened; `None` if none is ready, or if it
    /// was removed meanwhile (by hand: the roll then creates a new file, as without a spare).
    pub fn take_as(&self, path: &Path, map_len_hint: u64) -> Option<std::io::Result<Arc<dyn StorageFile>>> {
        let mut st = self.state.lock();
        if !st.ready {
            return None;
        }
        st.ready = false;
        match self.storage.rename(&self.path, path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => return Some(Err(named(e, "renaming the spare", &self.path))),
            Ok(()) => {}
        }
        Some(self.storage.open(path, OpenMode::ReadWrite, map_len_hint))
    }

    pub fn close(&self) {
        self.state.lock().closed = true;
        self.wake.notify_all();
        if let Some(handle) = self.thread.lock().take() {
            let _ = handle.join();
        }
    }

    fn run(&self) {
        loop {
            {
                let mut st = self.state.lock();
                // Sleep until a spare is wanted and none is ready (or the journal closes).
                while !st.closed && (!st.wanted || st.ready) {
                    self.wake.wait(&mut st);
                }
                if st.closed {
                    return;
                }
            }
            let prepared = self.prepare();
            if prepared.is_err() {
                // Out of space or failing storage: no spare; the writer grows fragments instead.
                let _ = self.storage.remove_file(&self.path);
            }
            let mut st = self.state.lock();
            st.ready = prepared.is_ok();
            st.wanted = false;
        }
    }

    fn prepare(&self) -> std::io::Result<()> {
        let _ = self.storage.remove_file(&self.path);
        let file = self.storage.open(&self.path, OpenMode::CreateNew, 0)?;
        let zeros = vec![0u8; ZERO_CHUNK_BYTES];
        let mut pos = 0;
        while pos < self.len_bytes {
            if self.state.lock().closed {
                return Err(std::io::Error::other("closing"));
            }
            let n = (self.len_bytes - pos).min(ZERO_CHUNK_BYTES as u64) as usize;
            file.write_all_at(pos, &zeros[..n])?;
            pos += n as u64;
        }
        file.sync_data()
    }
}

/// `e`, saying what was being done to which file (a failed roll's error otherwise names only the
/// new fragment, which may never have existed).
fn named(e: std::io::Error, what: &str, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Prefix of the name a fragment removed by retention is renamed to while it waits to be
/// reused: `recycled-<old begin, 20 digits>.spare`.
pub const RECYCLED_PREFIX: &str = "recycled-";
/// Suffix of recycled fragments' names.
pub const RECYCLED_SUFFIX: &str = ".spare";
/// Most removed fragments kept for reuse per journal; retention unlinks the others. Two cover a
/// roll while a reader still holds the newest one.
pub const RECYCLED_MAX: usize = 2;

/// Whether `name` is a recycled file's ([`recycled_file_name`]).
pub fn is_recycled_file_name(name: &str) -> bool {
    name.starts_with(RECYCLED_PREFIX) && name.ends_with(RECYCLED_SUFFIX)
}

/// The name a fragment beginning at `old_begin` waits under once removed by retention.
pub fn recycled_file_name(old_begin: u64) -> String {
    format!(
        "{RECYCLED_PREFIX}{}{RECYCLED_SUFFIX}",
        crate::fragment::fragment_file_name(old_begin).trim_end_matches(crate::fragment::FRAGMENT_SUFFIX)
    )
}

/// One removed fragment waiting to be reused.
struct Waiting {
    path: PathBuf,
    /// The removed fragment, to tell whether a reader of this process still holds it.
    fragment: Option<Arc<crate::fragment::Fragment>>,
}

/// Fragments removed by retention, renamed aside, to become the next fragments
/// (`Options::recycle`). A recycled file keeps its old bytes: frames of the offsets it held
/// before. They never validate at their new place (a frame's header checksum covers its own
/// offset), so recovery and readers see them as the end of the data, exactly as they see zeros,
/// and nothing needs clearing. Reusing a file that is already allocated and written makes a
/// commit's `fdatasync` cheaper than one that also grows the file.
pub(crate) struct RecycledFragments {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    waiting: Mutex<Vec<Waiting>>,
}

impl RecycledFragments {
    /// The pool of journal directory `dir`, adopting files recycled by an earlier process (up to
    /// [`RECYCLED_MAX`]; others are removed).
    pub fn open(dir: &Path, storage: Arc<dyn Storage>) -> RecycledFragments {
        let mut names: Vec<String> = storage
            .list_dir(dir)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| is_recycled_file_name(n))
            .collect();
        names.sort();
        let mut waiting = Vec::new();
        for name in names {
            let path = dir.join(&name);
            if waiting.len() < RECYCLED_MAX {
                waiting.push(Waiting { path, fragment: None });
            } else {
                let _ = storage.remove_file(&path);
            }
        }
        RecycledFragments {
            dir: dir.to_path_buf(),
            storage,
            waiting: Mutex::new(waiting),
        }
    }

    /// Whether retention should rename a removed fragment aside rather than unlink it.
    pub fn has_room(&self) -> bool {
        self.waiting.lock().len() < RECYCLED_MAX
    }

    /// Whether a recycled file is waiting (a roll would reuse it).
    pub fn ready(&self) -> bool {
        !self.waiting.lock().is_empty()
    }

    /// Renames a fragment removed by retention aside (the caller syncs the directory).
    pub fn recycle(&self, fragment: &Arc<crate::fragment::Fragment>) -> std::io::Result<()> {
        let path = self.dir.join(recycled_file_name(fragment.begin));
        self.storage.rename(&fragment.path, &path)?;
        self.waiting.lock().push(Waiting {
            path,
            fragment: Some(fragment.clone()),
        });
        Ok(())
    }

    /// Takes the oldest waiting file that no reader holds, renamed to `path` and opened; `None`
    /// if there is none. A waiting file that a reader turns out to hold (a read-only process that
    /// opened it before retention renamed it aside, or a map of it still alive in this process)
    /// is unlinked instead: its reader keeps its bytes, and the roll creates a new file; one that
    /// is gone (removed by hand) is skipped. The caller syncs the directory before writing into
    /// the returned file.
    pub fn take_as(&self, path: &Path, map_len_hint: u64) -> Option<std::io::Result<Arc<dyn StorageFile>>> {
        loop {
            let taken = {
                let mut waiting = self.waiting.lock();
                // A reader of this process positioned in the removed fragment holds it (and may
                // hold payloads mapped from it): its bytes must not change under it.
                let i = waiting
                    .iter()
                    .position(|w| w.fragment.as_ref().is_none_or(|f| Arc::strong_count(f) == 1))?;
                waiting.remove(i)
            };
            // Closes this process's descriptor of it, and with it that descriptor's shared claim
            // (unless a map of it is still alive: then the claim below fails).
            drop(taken.fragment);
            match self.claim_as(&taken.path, path, map_len_hint) {
                Ok(Some(file)) => return Some(Ok(file)),
                Ok(None) => {
                    // Held by a reader: unlinking leaves its bytes to it. Not synced: if the
                    // name survives a crash, the next open adopts or removes it.
                    let _ = self.storage.remove_file(&taken.path);
                }
                Err(e) => return Some(Err(named(e, "reusing the recycled fragment", &taken.path))),
            }
        }
    }

    /// Renames the waiting file `from` to `to` while holding it exclusively, so that no reader
    /// can open it between its old name and its new one; `None` if a reader holds it, or if it
    /// is gone.
    fn claim_as(
        &self,
        from: &Path,
        to: &Path,
        map_len_hint: u64,
    ) -> std::io::Result<Option<Arc<dyn StorageFile>>> {
        let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        let held = match self.storage.open(from, OpenMode::ReadWrite, 0) {
            Err(e) if gone(&e) => return Ok(None),
            held => held?,
        };
        if !held.try_claim_exclusive()? {
            return Ok(None);
        }
        match self.storage.rename(from, to) {
            Err(e) if gone(&e) => return Ok(None),
            renamed => renamed?,
        }
        // Readers opening the new name wait for this (their claims are shared).
        held.share()?;
        let file = self.storage.open(to, OpenMode::ReadWrite, map_len_hint)?;
        Ok(Some(file))
    }
}
