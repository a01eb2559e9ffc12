//! Helpers shared by the integration tests: options over simulated storage, reading a journal
//! back, and storage wrappers (`Intercept`s) that count or hold `fdatasync` calls.
#![allow(dead_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use ss_log::sim::SimStorage;
use ss_log::storage::{Intercept, Intercepted};
use ss_log::{Journal, Log, Options, Storage, StorageFile};

/// Data directory used with simulated storage.
pub const DATA_DIR: &str = "/data";

/// Small limits over `storage`, so that tests roll fragments quickly.
pub fn opts(storage: Arc<dyn Storage>, fragment_max_bytes: u64) -> Options {
    Options {
        fragment_max_bytes,
        frame_max_bytes: 1024,
        batch_max_messages: 64,
        pending_max_bytes: 8 * 1024,
        preallocate: false,
        recycle: true,
        // Several hints per fragment, so every suite over these options exercises them.
        scan_hint_interval_bytes: fragment_max_bytes / 4,
        write_bound_step_bytes: fragment_max_bytes / 8,
        storage,
    }
}

pub fn sim_opts(storage: &SimStorage, fragment_max_bytes: u64) -> Options {
    opts(Arc::new(storage.clone()), fragment_max_bytes)
}

pub fn open_sim(storage: &SimStorage, fragment_max_bytes: u64) -> Log {
    Log::open(DATA_DIR, sim_opts(storage, fragment_max_bytes)).expect("open simulated log")
}

/// Path of the fragment of journal `name` that begins at `begin`, under [`DATA_DIR`].
/// Empties journal `name`'s scan-start hint in `storage`, as a crash before it was written
/// leaves it: tests that cut or zero a write by hand to model a crash inside it use it, since
/// the hint of a clean close records that very write as durable (and the cut as damage).
pub fn forget_scan_hint(storage: &ss_log::sim::SimStorage, name: &str) {
    let hint = fragment_path(name, 0).with_file_name(ss_log::scan_hint::SCAN_HINT_FILE);
    storage.write_file(&hint, &[]);
}

/// Records in `storage` the write bound journal `name`'s writer would have synced before a write
/// ending at position `bound` of the fragment beginning at `fragment_begin`: tests that plant
/// a write by hand (one the writer never made) record it too, as the writer would have.
pub fn record_write_bound(storage: &ss_log::sim::SimStorage, name: &str, fragment_begin: u64, bound: u64) {
    use ss_log::scan_hint::{WriteBound, SCAN_HINT_BYTES, SCAN_HINT_FILE};
    let path = fragment_path(name, 0).with_file_name(SCAN_HINT_FILE);
    let mut bytes = storage.read_file(&path).unwrap_or_default();
    bytes.resize(SCAN_HINT_BYTES, 0);
    let salt = ss_log::frame::journal_salt(name);
    bytes.extend_from_slice(
        &WriteBound {
            fragment_begin,
            bound,
        }
        .encode(salt),
    );
    storage.write_file(&path, &bytes);
}

pub fn fragment_path(name: &str, begin: u64) -> PathBuf {
    Path::new(DATA_DIR)
        .join(ss_log::JOURNALS_DIR)
        .join(name)
        .join(ss_log::fragment::fragment_file_name(begin))
}

/// One frame as read back: offset, end and its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadFrame {
    pub offset: u64,
    pub end: u64,
    pub messages: Vec<Vec<u8>>,
}

/// Reads every durable frame from `offset` to the durable head, panicking on any read error
/// (readers verify checksums, so a returned frame is a valid one).
pub fn read_from(journal: &Journal, offset: u64) -> Vec<ReadFrame> {
    let mut frames = journal.frames(offset);
    let mut out = Vec::new();
    while let Some(frame) = frames.next() {
        let frame = frame.unwrap_or_else(|e| panic!("reading journal {}: {e}", journal.name()));
        let messages = frames
            .messages(&frame)
            .map(|m| m.map(<[u8]>::to_vec))
            .collect::<Result<Vec<_>, _>>()
            .expect("messages of a valid frame decode");
        assert_eq!(messages.len(), frame.message_count as usize);
        out.push(ReadFrame {
            offset: frame.offset,
            end: frame.end,
            messages,
        });
    }
    out
}

pub fn read_all(journal: &Journal) -> Vec<ReadFrame> {
    read_from(journal, journal.first_offset())
}

/// The single message of each frame.
pub fn single_messages(frames: &[ReadFrame]) -> Vec<Vec<u8>> {
    frames
        .iter()
        .map(|f| {
            assert_eq!(f.messages.len(), 1, "frame at {} holds one message", f.offset);
            f.messages[0].clone()
        })
        .collect()
}

/// A deterministic payload of `len_bytes` bytes tagged with `tag` (so no two payloads are equal).
pub fn payload(tag: &str, len_bytes: usize) -> Vec<u8> {
    let mut p = tag.as_bytes().to_vec();
    let mut x = tag.len() as u8;
    while p.len() < len_bytes {
        x = x.wrapping_mul(31).wrapping_add(7);
        p.push(x);
    }
    p
}

/// Storage over another that counts `sync_data` calls, directory syncs and writes.
pub type CountingStorage = Intercepted<Counting>;

/// The counts of a [`CountingStorage`].
#[derive(Default)]
pub struct Counting {
    pub counts: Arc<Counts>,
}

#[derive(Default)]
pub struct Counts {
    pub syncs: AtomicU64,
    pub dir_syncs: AtomicU64,
    pub writes: AtomicU64,
    /// Bytes asked of `read_at` of fragment files (`.frag`).
    pub fragment_bytes_read: AtomicU64,
    /// Bytes written to fragment files.
    pub fragment_bytes_written: AtomicU64,
}

impl Intercept for Counting {
    fn sync_dir(&self, inner: &dyn Storage, path: &Path) -> io::Result<()> {
        self.counts.dir_syncs.fetch_add(1, Ordering::Relaxed);
        inner.sync_dir(path)
    }
    fn write_all_at(&self, file: &dyn StorageFile, pos: u64, buf: &[u8]) -> io::Result<()> {
        self.counts.writes.fetch_add(1, Ordering::Relaxed);
        file.write_all_at(pos, buf)
    }
    fn sync_data(&self, file: &dyn StorageFile) -> io::Result<()> {
        self.counts.syncs.fetch_add(1, Ordering::Relaxed);
        file.sync_data()
    }
    fn open(
        &self,
        inner: &dyn Storage,
        path: &Path,
        mode: ss_log::storage::OpenMode,
        map_len_hint: u64,
    ) -> io::Result<Arc<dyn StorageFile>> {
        let file = inner.open(path, mode, map_len_hint)?;
        let fragment = path.extension().is_some_and(|e| e == "frag");
        Ok(if fragment {
            Arc::new(ReadCounted {
                file,
                counts: self.counts.clone(),
            })
        } else {
            file
        })
    }
}

/// A fragment file whose reads and writes are counted in [`Counts`].
struct ReadCounted {
    file: Arc<dyn StorageFile>,
    counts: Arc<Counts>,
}

impl StorageFile for ReadCounted {
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }
    fn write_all_at(&self, pos: u64, buf: &[u8]) -> io::Result<()> {
        self.counts
            .fragment_bytes_written
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.file.write_all_at(pos, buf)
    }
    fn read_at(&self, pos: u64, len: usize) -> io::Result<bytes::Bytes> {
        self.counts
            .fragment_bytes_read
            .fetch_add(len as u64, Ordering::Relaxed);
        self.file.read_at(pos, len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn try_claim_exclusive(&self) -> io::Result<bool> {
        self.file.try_claim_exclusive()
    }
    fn share(&self) -> io::Result<()> {
        self.file.share()
    }
}

/// A gate that, once armed, holds the next call through it (`sync_data` or `write_all_at`, see
/// [`GatedStorage`]) until released, so a test can look at the journal while the writer is in the
/// middle of a commit.
#[derive(Default)]
pub struct SyncGate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    armed: bool,
    held: bool,
    released: bool,
}

impl SyncGate {
    /// Makes the next call through the gate block until [`SyncGate::release`].
    pub fn arm(&self) {
        let mut s = self.state.lock();
        *s = GateState {
            armed: true,
            held: false,
            released: false,
        };
    }

    /// Waits until a call is being held by the gate.
    pub fn wait_held(&self) {
        let mut s = self.state.lock();
        while !s.held {
            let timed_out = self.changed.wait_for(&mut s, Duration::from_secs(10)).timed_out();
            assert!(!timed_out || s.held, "no call reached the gate within 10 s");
        }
    }

    /// Lets the held call proceed.
    pub fn release(&self) {
        let mut s = self.state.lock();
        s.released = true;
        self.changed.notify_all();
    }

    fn pass(&self) {
        let mut s = self.state.lock();
        if !s.armed {
            return;
        }
        s.armed = false;
        s.held = true;
        self.changed.notify_all();
        while !s.released {
            self.changed.wait(&mut s);
        }
        s.held = false;
    }
}

/// Storage over another whose file `sync_data` calls can be held by `gate` and whose file
/// `write_all_at` calls can be held by `write_gate`.
pub type GatedStorage = Intercepted<Gates>;

/// The gates of a [`GatedStorage`].
#[derive(Default)]
pub struct Gates {
    pub gate: Arc<SyncGate>,
    pub write_gate: Arc<SyncGate>,
}

impl Intercept for Gates {
    fn write_all_at(&self, file: &dyn StorageFile, pos: u64, buf: &[u8]) -> io::Result<()> {
        self.write_gate.pass();
        file.write_all_at(pos, buf)
    }
    fn sync_data(&self, file: &dyn StorageFile) -> io::Result<()> {
        self.gate.pass();
        file.sync_data()
    }
}
