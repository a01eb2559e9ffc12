//! Simulated storage for crash and fault tests, deterministic from a seed.
//!
//! The model: every file has the bytes a process sees (`data`) and the bytes that would survive a
//! power loss (`durable`); `sync_data` makes them equal. Writes since the last sync are kept as an
//! ordered list of operations. A directory entry (a created or removed file) becomes durable only
//! when its directory is synced. A [`SimStorage::crash`] freezes this instance (every later call
//! fails with EIO, as if the process died) and returns a new instance holding what survived:
//!
//! - [`CrashMode::LoseUnsynced`]: every unsynced byte is lost;
//! - [`CrashMode::TearUnsynced`]: a random number of the unsynced writes survive in order, and
//!   the next one is torn at a random byte;
//! - [`CrashMode::ZeroUnsynced`]: as `TearUnsynced`, but the surviving unsynced bytes read as
//!   zeros (the file grew, its data never reached the medium).
//!
//! Faults on demand: fail the n-th next `sync_data` with EIO, a byte capacity past which writes
//! fail with ENOSPC (nothing written), a countdown of mutating operations after which the
//! storage "crashes" by itself, and bit flips. Directories themselves are durable when created.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::storage::{DirLock, OpenMode, Storage, StorageFile};

/// What survives a simulated power loss; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    LoseUnsynced,
    TearUnsynced,
    ZeroUnsynced,
}

impl CrashMode {
    pub const ALL: [CrashMode; 3] = [
        CrashMode::LoseUnsynced,
        CrashMode::TearUnsynced,
        CrashMode::ZeroUnsynced,
    ];
}

type FileId = u64;

#[derive(Debug, Clone)]
enum Op {
    Write { pos: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Clone, Default)]
struct SimFile {
    data: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<Op>,
}

fn apply(image: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write { pos, bytes } => {
            let end = *pos as usize + bytes.len();
            if image.len() < end {
                image.resize(end, 0);
            }
            image[*pos as usize..end].copy_from_slice(bytes);
        }
        Op::SetLen(len) => image.resize(*len as usize, 0),
    }
}

/// Counters of what the simulated storage was asked to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimCounters {
    pub writes: u64,
    pub syncs: u64,
    pub dir_syncs: u64,
    pub failed_syncs: u64,
    pub enospc: u64,
}

struct SimState {
    rng: StdRng,
    dead: bool,
    dirs: BTreeSet<PathBuf>,
    paths: BTreeMap<PathBuf, FileId>,
    durable_paths: BTreeMap<PathBuf, FileId>,
    files: HashMap<FileId, SimFile>,
    next_id: FileId,
    locks: BTreeSet<PathBuf>,
    capacity_bytes: Option<u64>,
    fail_sync_countdown: Option<u64>,
    crash_countdown: Option<u64>,
    counters: SimCounters,
}

impl SimState {
    fn new(rng: StdRng) -> SimState {
        SimState {
            rng,
            dead: false,
            dirs: BTreeSet::new(),
            paths: BTreeMap::new(),
            durable_paths: BTreeMap::new(),
            files: HashMap::new(),
            next_id: 1,
            locks: BTreeSet::new(),
            capacity_bytes: None,
            fail_sync_countdown: None,
            crash_countdown: None,
            counters: SimCounters::default(),
        }
    }

    fn check_alive(&self) -> io::Result<()> {
        if self.dead {
            return Err(io::Error::other("simulated storage crashed (process is dead)"));
        }
        Ok(())
    }

    /// Counts one mutating operation toward the crash countdown; crashes when it reaches zero.
    fn step(&mut self) -> io::Result<()> {
        self.check_alive()?;
        if let Some(n) = self.crash_countdown.as_mut() {
            if *n == 0 {
                self.dead = true;
                return Err(io::Error::other("simulated storage crashed (countdown)"));
            }
            *n -= 1;
        }
        Ok(())
    }

    fn used_bytes(&self) -> u64 {
        self.paths
            .values()
            .map(|id| self.files[id].data.len() as u64)
            .sum()
    }
}

/// Simulated storage; clones share one disk.
#[derive(Clone)]
pub struct SimStorage {
    state: Arc<Mutex<SimState>>,
}

impl SimStorage {
    pub fn new(seed: u64) -> SimStorage {
        SimStorage {
            state: Arc::new(Mutex::new(SimState::new(StdRng::seed_from_u64(seed)))),
        }
    }

    /// Simulates a power loss: this instance dies and the returned one holds what survived.
    pub fn crash(&self, mode: CrashMode) -> SimStorage {
        let mut old = self.state.lock();
        old.dead = true;
        let seed = old.rng.random();
        let mut new = SimState::new(StdRng::seed_from_u64(seed));
        new.dirs = old.dirs.clone();
        let durable_paths = old.durable_paths.clone();
        for (path, id) in durable_paths {
            let file = old.files[&id].clone();
            let mut image = file.durable.clone();
            if mode != CrashMode::LoseUnsynced && !file.unsynced.is_empty() {
                let keep = old.rng.random_range(0..=file.unsynced.len());
                for op in &file.unsynced[..keep] {
                    let op = zeroed_if(op, mode);
                    apply(&mut image, &op);
                }
                if let Some(Op::Write { pos, bytes }) = file.unsynced.get(keep) {
                    let cut = old.rng.random_range(0..=bytes.len());
                    let torn = Op::Write {
                        pos: *pos,
                        bytes: bytes[..cut].to_vec(),
                    };
                    apply(&mut image, &zeroed_if(&torn, mode));
                }
            }
            let id = new.next_id;
            new.next_id += 1;
            new.files.insert(
                id,
                SimFile {
                    data: image.clone(),
                    durable: image,
                    unsynced: Vec::new(),
                },
            );
            new.paths.insert(path.clone(), id);
            new.durable_paths.insert(path, id);
        }
        SimStorage {
            state: Arc::new(Mutex::new(new)),
        }
    }

    /// Fails the `n`-th `sync_data` from now (1 = the next one) with EIO.
    pub fn fail_sync_after(&self, n: u64) {
        assert!(n >= 1);
        self.state.lock().fail_sync_countdown = Some(n);
    }

    /// Writes that would make the files' total size exceed `bytes` fail with ENOSPC.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.state.lock().capacity_bytes = bytes;
    }

    /// After `n` more mutating operations (write, sync, create, remove, set_len, dir sync) the
    /// storage dies: that operation and all later ones fail. Call [`SimStorage::crash`] to reboot.
    pub fn crash_after_ops(&self, n: u64) {
        self.state.lock().crash_countdown = Some(n);
    }

    pub fn is_dead(&self) -> bool {
        self.state.lock().dead
    }

    pub fn counters(&self) -> SimCounters {
        self.state.lock().counters
    }

    /// Bytes of all files, as a process sees them.
    pub fn used_bytes(&self) -> u64 {
        self.state.lock().used_bytes()
    }

    /// Paths of all files, sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        self.state.lock().paths.keys().cloned().collect()
    }

    /// A file's content as a process sees it.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.state.lock();
        s.paths.get(path).map(|id| s.files[id].data.clone())
    }

    /// Replaces a file's content, durably (models damage done to the medium offline).
    pub fn write_file(&self, path: &Path, bytes: &[u8]) {
        let mut s = self.state.lock();
        let id = match s.paths.get(path) {
            Some(id) => *id,
            None => {
                let id = s.next_id;
                s.next_id += 1;
                s.files.insert(id, SimFile::default());
                s.paths.insert(path.to_path_buf(), id);
                s.durable_paths.insert(path.to_path_buf(), id);
                id
            }
        };
        let f = s.files.get_mut(&id).expect("file");
        f.data = bytes.to_vec();
        f.durable = bytes.to_vec();
        f.unsynced.clear();
    }

    /// Flips one bit of a file, in what is seen and what is durable.
    pub fn flip_bit(&self, path: &Path, byte: u64, bit: u8) {
        let mut s = self.state.lock();
        let id = *s.paths.get(path).expect("flip_bit: no such file");
        let f = s.files.get_mut(&id).expect("file");
        f.data[byte as usize] ^= 1 << bit;
        if (byte as usize) < f.durable.len() {
            f.durable[byte as usize] ^= 1 << bit;
        }
    }
}

fn zeroed_if(op: &Op, mode: CrashMode) -> Op {
    match (op, mode) {
        (Op::Write { pos, bytes }, CrashMode::ZeroUnsynced) => Op::Write {
            pos: *pos,
            bytes: vec![0; bytes.len()],
        },
        _ => op.clone(),
    }
}

struct SimDirLock {
    state: Arc<Mutex<SimState>>,
    path: PathBuf,
}
impl DirLock for SimDirLock {}
impl Drop for SimDirLock {
    fn drop(&mut self) {
        self.state.lock().locks.remove(&self.path);
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl Storage for SimStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check_alive()?;
        for ancestor in path.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                s.dirs.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let s = self.state.lock();
        s.check_alive()?;
        if !s.dirs.contains(path) {
            return Err(not_found(path));
        }
        let mut names = BTreeSet::new();
        for p in s.paths.keys().chain(s.dirs.iter()) {
            if p.parent() == Some(path) {
                if let Some(name) = p.file_name() {
                    names.insert(name.to_string_lossy().into_owned());
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.state.lock().dirs.contains(path)
    }

    fn open(&self, path: &Path, mode: OpenMode, _map_len_hint: u64) -> io::Result<Arc<dyn StorageFile>> {
        let mut s = self.state.lock();
        let id = match mode {
            OpenMode::CreateNew => {
                s.step()?;
                if s.paths.contains_key(path) {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        path.display().to_string(),
                    ));
                }
                if !path.parent().is_some_and(|p| s.dirs.contains(p)) {
                    return Err(not_found(path));
                }
                let id = s.next_id;
                s.next_id += 1;
                s.files.insert(id, SimFile::default());
                s.paths.insert(path.to_path_buf(), id);
                id
            }
            OpenMode::ReadWrite | OpenMode::ReadOnly => {
                s.check_alive()?;
                *s.paths.get(path).ok_or_else(|| not_found(path))?
            }
        };
        Ok(Arc::new(SimFileHandle {
            state: self.state.clone(),
            id,
            writable: mode != OpenMode::ReadOnly,
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.step()?;
        s.paths.remove(path).map(|_| ()).ok_or_else(|| not_found(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.step()?;
        let id = s.paths.remove(from).ok_or_else(|| not_found(from))?;
        s.paths.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.step()?;
        s.counters.dir_syncs += 1;
        let in_dir = |p: &PathBuf| p.parent() == Some(path);
        s.durable_paths.retain(|p, _| !in_dir(p));
        let current: Vec<(PathBuf, FileId)> = s
            .paths
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, id)| (p.clone(), *id))
            .collect();
        s.durable_paths.extend(current);
        Ok(())
    }

    fn lock_dir(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        let mut s = self.state.lock();
        s.check_alive()?;
        if !s.locks.insert(path.to_path_buf()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "directory is locked by another owner",
            ));
        }
        Ok(Box::new(SimDirLock {
            state: self.state.clone(),
            path: path.to_path_buf(),
        }))
    }
}

struct SimFileHandle {
    state: Arc<Mutex<SimState>>,
    id: FileId,
    writable: bool,
}

impl StorageFile for SimFileHandle {
    fn len(&self) -> io::Result<u64> {
        let s = self.state.lock();
        s.check_alive()?;
        Ok(s.files[&self.id].data.len() as u64)
    }

    fn write_all_at(&self, pos: u64, buf: &[u8]) -> io::Result<()> {
        assert!(self.writable, "write to a read-only simulated file");
        let mut s = self.state.lock();
        s.step()?;
        s.counters.writes += 1;
        let grow = (pos + buf.len() as u64).saturating_sub(s.files[&self.id].data.len() as u64);
        if let Some(cap) = s.capacity_bytes {
            if s.used_bytes() + grow > cap {
                s.counters.enospc += 1;
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
        }
        let f = s.files.get_mut(&self.id).expect("file");
        let op = Op::Write {
            pos,
            bytes: buf.to_vec(),
        };
        apply(&mut f.data, &op);
        f.unsynced.push(op);
        Ok(())
    }

    fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        let s = self.state.lock();
        s.check_alive()?;
        let data = &s.files[&self.id].data;
        let end = pos as usize + len;
        if end > data.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past end of file",
            ));
        }
        Ok(Bytes::copy_from_slice(&data[pos as usize..end]))
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.state.lock();
        s.step()?;
        s.counters.syncs += 1;
        if let Some(n) = s.fail_sync_countdown.as_mut() {
            *n -= 1;
            if *n == 0 {
                s.fail_sync_countdown = None;
                s.counters.failed_syncs += 1;
                return Err(io::Error::from_raw_os_error(5)); // EIO
            }
        }
        let f = s.files.get_mut(&self.id).expect("file");
        f.durable = f.data.clone();
        f.unsynced.clear();
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        s.step()?;
        let f = s.files.get_mut(&self.id).expect("file");
        let op = Op::SetLen(len);
        apply(&mut f.data, &op);
        f.unsynced.push(op);
        Ok(())
    }
}
