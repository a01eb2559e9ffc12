//! The physical baselines: durable writes with nothing but `pwrite` + `fdatasync`.
//!
//! - [`PrewrittenFile`]: a file zero-filled and synced before timing, overwritten in place, so a
//!   durable write changes data only (no size or extent change to flush): the cheapest durable
//!   write this disk offers, and the baseline every ratio is taken against.
//! - [`ExtendingFile`]: the same writes appended to a file that grows, restarted at a size limit;
//!   each `fdatasync` also flushes the new size and block allocation. Shown beside the prewritten
//!   baseline because it is what a journal that appends to fresh fragment files pays.
//! - [`GroupCommitFile`]: many threads, one file, the simplest user-space group commit: the first
//!   waiting thread writes everything queued with one `pwrite` and one `fdatasync`; the others
//!   wait for it. Over a prewritten file (the baseline) or a growing one (to show what extending
//!   costs under group commit).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use anyhow::Context;

fn create_new(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Syncs the directory holding `path`, so the new file's entry is durable too.
fn sync_parent(path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().context("a file path has a parent")?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// Writes `len_bytes` zeros into a new file at `path` and syncs it (file and directory).
fn zero_filled(path: &Path, len_bytes: u64) -> anyhow::Result<File> {
    let file = create_new(path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len_bytes {
        let n = zeros.len().min((len_bytes - at) as usize);
        file.write_all_at(&zeros[..n], at)
            .with_context(|| format!("zero-filling {}", path.display()))?;
        at += n as u64;
    }
    file.sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    sync_parent(path)?;
    Ok(file)
}

/// A zero-filled, synced file overwritten in place (wrapping to the start at its end).
pub struct PrewrittenFile {
    path: PathBuf,
    file: File,
    len_bytes: u64,
    pos: Mutex<u64>,
}

impl PrewrittenFile {
    /// Creates `path` holding `len_bytes` zeros, durably (not part of any timing).
    pub fn create(path: &Path, len_bytes: u64) -> anyhow::Result<PrewrittenFile> {
        Ok(PrewrittenFile {
            path: path.to_path_buf(),
            file: zero_filled(path, len_bytes)?,
            len_bytes,
            pos: Mutex::new(0),
        })
    }

    /// Writes `buf` at the next position and returns once `fdatasync` has made it durable.
    pub fn write_durable(&self, buf: &[u8]) -> anyhow::Result<()> {
        anyhow::ensure!(
            buf.len() as u64 <= self.len_bytes,
            "a {}-byte write does not fit the {}-byte baseline file",
            buf.len(),
            self.len_bytes
        );
        let mut pos = self.pos.lock().expect("position lock");
        if *pos + buf.len() as u64 > self.len_bytes {
            *pos = 0;
        }
        self.file
            .write_all_at(buf, *pos)
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.file
            .sync_data()
            .with_context(|| format!("fdatasync of {}", self.path.display()))?;
        *pos += buf.len() as u64;
        Ok(())
    }
}

/// A file appended to (growing), emptied again when it would pass `max_bytes`.
pub struct ExtendingFile {
    path: PathBuf,
    file: File,
    max_bytes: u64,
    pos: Mutex<u64>,
}

impl ExtendingFile {
    pub fn create(path: &Path, max_bytes: u64) -> anyhow::Result<ExtendingFile> {
        let file = create_new(path)?;
        sync_parent(path)?;
        Ok(ExtendingFile {
            path: path.to_path_buf(),
            file,
            max_bytes,
            pos: Mutex::new(0),
        })
    }

    /// Appends `buf` and returns once `fdatasync` has made it (and the new size) durable.
    pub fn write_durable(&self, buf: &[u8]) -> anyhow::Result<()> {
        let mut pos = self.pos.lock().expect("position lock");
        if *pos + buf.len() as u64 > self.max_bytes {
            self.file
                .set_len(0)
                .with_context(|| format!("emptying {}", self.path.display()))?;
            *pos = 0;
        }
        self.file
            .write_all_at(buf, *pos)
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.file
            .sync_data()
            .with_context(|| format!("fdatasync of {}", self.path.display()))?;
        *pos += buf.len() as u64;
        Ok(())
    }
}

struct GroupState {
    /// Records queued since the last commit began.
    queued: Vec<u8>,
    /// A spare buffer, to swap with `queued` without allocating.
    spare: Vec<u8>,
    pos: u64,
    /// Records ever queued / ever made durable (record counts, not bytes).
    queued_count: u64,
    durable_count: u64,
    committing: bool,
    /// Set by a failed commit: the records in it are lost, so every later append fails too.
    failed: Option<String>,
}

/// Many threads appending to one file with a leader-based group commit.
pub struct GroupCommitFile {
    path: PathBuf,
    file: File,
    len_bytes: u64,
    /// The file grows with each commit (and is emptied at `len_bytes`) instead of being
    /// prewritten and overwritten.
    extending: bool,
    state: Mutex<GroupState>,
    committed: Condvar,
}

impl GroupCommitFile {
    /// A zero-filled, synced file of `len_bytes`, overwritten in place.
    pub fn prewritten(path: &Path, len_bytes: u64) -> anyhow::Result<GroupCommitFile> {
        Self::new(path, zero_filled(path, len_bytes)?, len_bytes, false)
    }

    /// An empty file that grows with each commit, emptied when it would pass `max_bytes`.
    pub fn extending(path: &Path, max_bytes: u64) -> anyhow::Result<GroupCommitFile> {
        let file = create_new(path)?;
        sync_parent(path)?;
        Self::new(path, file, max_bytes, true)
    }

    fn new(path: &Path, file: File, len_bytes: u64, extending: bool) -> anyhow::Result<GroupCommitFile> {
        Ok(GroupCommitFile {
            path: path.to_path_buf(),
            file,
            len_bytes,
            extending,
            state: Mutex::new(GroupState {
                queued: Vec::with_capacity(1 << 20),
                spare: Vec::with_capacity(1 << 20),
                pos: 0,
                queued_count: 0,
                durable_count: 0,
                committing: false,
                failed: None,
            }),
            committed: Condvar::new(),
        })
    }

    /// Queues `record` and returns once a commit that includes it is durable.
    pub fn append(&self, record: &[u8]) -> anyhow::Result<()> {
        let mut st = self.state.lock().expect("group commit lock");
        st.queued.extend_from_slice(record);
        st.queued_count += 1;
        let mine = st.queued_count;
        loop {
            if let Some(reason) = &st.failed {
                anyhow::bail!("an earlier group commit failed: {reason}");
            }
            if st.durable_count >= mine {
                return Ok(());
            }
            if st.committing {
                st = self.committed.wait(st).expect("group commit lock");
                continue;
            }
            // Lead a commit of everything queued so far.
            st.committing = true;
            let spare = std::mem::take(&mut st.spare);
            let batch = std::mem::replace(&mut st.queued, spare);
            let upto = st.queued_count;
            anyhow::ensure!(
                batch.len() as u64 <= self.len_bytes,
                "a {}-byte commit does not fit the baseline file",
                batch.len()
            );
            let wrap = st.pos + batch.len() as u64 > self.len_bytes;
            if wrap {
                st.pos = 0;
            }
            let pos = st.pos;
            st.pos += batch.len() as u64;
            drop(st);
            let empty_first = if wrap && self.extending {
                self.file.set_len(0)
            } else {
                Ok(())
            };
            let result = empty_first
                .and_then(|()| self.file.write_all_at(&batch, pos))
                .and_then(|()| self.file.sync_data())
                .with_context(|| format!("write + fdatasync of {}", self.path.display()));
            st = self.state.lock().expect("group commit lock");
            let mut batch = batch;
            batch.clear();
            st.spare = batch;
            st.committing = false;
            match &result {
                Ok(()) => st.durable_count = upto,
                Err(e) => st.failed = Some(format!("{e:#}")),
            }
            self.committed.notify_all();
            result?;
        }
    }
}

struct HandoffState {
    queued: Vec<u8>,
    queued_count: u64,
    durable_count: u64,
    writer_idle: bool,
    closed: bool,
    failed: Option<String>,
}

struct HandoffShared {
    path: PathBuf,
    file: File,
    len_bytes: u64,
    /// The file grows with each commit (emptied at `len_bytes`) instead of being overwritten.
    extending: bool,
    state: Mutex<HandoffState>,
    work: Condvar,
    committed: Condvar,
}

/// Many threads, one prewritten file, group commit by a *dedicated writer thread*: appenders
/// queue their record and wait; the writer takes everything queued, writes it with one `pwrite`
/// and one `fdatasync`, and wakes them. The same raw I/O as [`GroupCommitFile`], but every
/// commit is handed to another thread (the shape of our journal's writer), so the cost of that
/// handoff on a busy CPU shows up as the difference between the two. Over a growing file it
/// has the whole I/O shape of our journal's appends.
pub struct HandoffGroupCommitFile {
    shared: std::sync::Arc<HandoffShared>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl HandoffGroupCommitFile {
    /// A zero-filled, synced file of `len_bytes`, overwritten in place.
    pub fn prewritten(path: &Path, len_bytes: u64) -> anyhow::Result<HandoffGroupCommitFile> {
        Self::new(path, zero_filled(path, len_bytes)?, len_bytes, false)
    }

    /// An empty file that grows with each commit, emptied when it would pass `max_bytes`.
    pub fn extending(path: &Path, max_bytes: u64) -> anyhow::Result<HandoffGroupCommitFile> {
        let file = create_new(path)?;
        sync_parent(path)?;
        Self::new(path, file, max_bytes, true)
    }

    fn new(
        path: &Path,
        file: File,
        len_bytes: u64,
        extending: bool,
    ) -> anyhow::Result<HandoffGroupCommitFile> {
        let shared = std::sync::Arc::new(HandoffShared {
            path: path.to_path_buf(),
            file,
            len_bytes,
            extending,
            state: Mutex::new(HandoffState {
                queued: Vec::with_capacity(1 << 20),
                queued_count: 0,
                durable_count: 0,
                writer_idle: true,
                closed: false,
                failed: None,
            }),
            work: Condvar::new(),
            committed: Condvar::new(),
        });
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("raw-handoff-writer".into())
            .spawn(move || writer_shared.run_writer())
            .context("spawning the raw handoff writer")?;
        Ok(HandoffGroupCommitFile {
            shared,
            writer: Some(writer),
        })
    }

    /// Queues `record` and returns once the writer thread has made it durable.
    pub fn append(&self, record: &[u8]) -> anyhow::Result<()> {
        let sh = &self.shared;
        let mut st = sh.state.lock().expect("handoff lock");
        st.queued.extend_from_slice(record);
        st.queued_count += 1;
        let mine = st.queued_count;
        if st.writer_idle {
            sh.work.notify_one();
        }
        loop {
            if let Some(reason) = &st.failed {
                anyhow::bail!("the raw handoff writer failed: {reason}");
            }
            if st.durable_count >= mine {
                return Ok(());
            }
            st = sh.committed.wait(st).expect("handoff lock");
        }
    }
}

impl HandoffShared {
    fn run_writer(&self) {
        let mut spare = Vec::with_capacity(1 << 20);
        let mut pos = 0u64;
        let mut st = self.state.lock().expect("handoff lock");
        loop {
            while st.queued.is_empty() && !st.closed {
                st.writer_idle = true;
                st = self.work.wait(st).expect("handoff lock");
            }
            st.writer_idle = false;
            if st.queued.is_empty() {
                return;
            }
            let batch = std::mem::replace(&mut st.queued, std::mem::take(&mut spare));
            let upto = st.queued_count;
            drop(st);
            let wrap = pos + batch.len() as u64 > self.len_bytes;
            if wrap {
                pos = 0;
            }
            let empty_first = if wrap && self.extending {
                self.file.set_len(0)
            } else {
                Ok(())
            };
            let result = empty_first
                .and_then(|()| self.file.write_all_at(&batch, pos))
                .and_then(|()| self.file.sync_data());
            pos += batch.len() as u64;
            st = self.state.lock().expect("handoff lock");
            match result {
                Ok(()) => st.durable_count = upto,
                Err(e) => {
                    st.failed = Some(format!("write + fdatasync of {}: {e}", self.path.display()));
                    self.committed.notify_all();
                    return;
                }
            }
            self.committed.notify_all();
            spare = batch;
            spare.clear();
        }
    }
}

impl Drop for HandoffGroupCommitFile {
    fn drop(&mut self) {
        self.shared.state.lock().expect("handoff lock").closed = true;
        self.shared.work.notify_all();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 200;

    fn scratch() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("ss-compare-scratch-test-")
            .tempdir_in(".")
            .expect("a test directory under the package")
    }

    /// Appends 16-byte records (thread + 1, seq) from 8 threads through `append`.
    fn append_from_threads(append: impl Fn(&[u8]) -> anyhow::Result<()> + Sync) {
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let append = &append;
                s.spawn(move || {
                    for seq in 0..PER_THREAD {
                        let mut rec = (t + 1).to_le_bytes().to_vec();
                        rec.extend_from_slice(&seq.to_le_bytes());
                        append(&rec).expect("append");
                    }
                });
            }
        });
    }

    /// Checks the file holds every record exactly once, each thread's in order, then zeros.
    fn assert_every_record_once(path: &Path) {
        let bytes = std::fs::read(path).expect("read back");
        let mut next_seq = vec![0u64; THREADS as usize];
        let mut count = 0;
        for rec in bytes.chunks_exact(16) {
            let t = u64::from_le_bytes(rec[..8].try_into().unwrap());
            if t == 0 {
                break;
            }
            let seq = u64::from_le_bytes(rec[8..].try_into().unwrap());
            assert_eq!(
                seq,
                next_seq[t as usize - 1],
                "thread {t}: records out of order or repeated"
            );
            next_seq[t as usize - 1] += 1;
            count += 1;
        }
        assert_eq!(count, THREADS * PER_THREAD, "records in the file");
    }

    /// The leader group commit writes each of 1,600 concurrent records exactly once, in each
    /// thread's order, and acknowledges only what it wrote (checked by reading the file back).
    #[test]
    fn leader_group_commit_writes_every_record_once() {
        let dir = scratch();
        let path = dir.path().join("raw");
        let file = GroupCommitFile::prewritten(&path, 1 << 20).unwrap();
        append_from_threads(|r| file.append(r));
        assert_eq!(file.state.lock().unwrap().durable_count, THREADS * PER_THREAD);
        assert_every_record_once(&path);
    }

    /// The dedicated-writer group commit does the same through its writer thread, over a
    /// prewritten and over a growing file (which grows by exactly what was written).
    #[test]
    fn writer_thread_group_commit_writes_every_record_once() {
        let dir = scratch();
        let path = dir.path().join("raw");
        let file = HandoffGroupCommitFile::prewritten(&path, 1 << 20).unwrap();
        append_from_threads(|r| file.append(r));
        drop(file);
        assert_every_record_once(&path);
        let path = dir.path().join("raw-extending");
        let file = HandoffGroupCommitFile::extending(&path, 1 << 20).unwrap();
        append_from_threads(|r| file.append(r));
        drop(file);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), THREADS * PER_THREAD * 16);
        assert_every_record_once(&path);
    }

    /// The extending group commit grows the file by exactly the records written.
    #[test]
    fn extending_group_commit_grows_by_what_it_wrote() {
        let dir = scratch();
        let path = dir.path().join("raw");
        let file = GroupCommitFile::extending(&path, 1 << 20).unwrap();
        append_from_threads(|r| file.append(r));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), THREADS * PER_THREAD * 16);
        assert_every_record_once(&path);
    }
}
