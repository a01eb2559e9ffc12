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

    /// Takes the ready spare, renamed to `path` and opened; `None` if none is ready.
    pub fn take_as(&self, path: &Path, map_len_hint: u64) -> Option<std::io::Result<Arc<dyn StorageFile>>> {
        let mut st = self.state.lock();
        if !st.ready {
            return None;
        }
        st.ready = false;
        let taken = self
            .storage
            .rename(&self.path, path)
            .and_then(|()| self.storage.open(path, OpenMode::ReadWrite, map_len_hint));
        Some(taken)
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
