//! A diagnostic, not a shipped mode: our journal, unchanged, over a [`Storage`] (the journal's
//! public storage seam) that hands it *prewritten* fragment files. When the journal creates a
//! fragment, a spare file of the full fragment size is renamed into place and opened, so appends
//! overwrite blocks that are already written, as the raw baseline does, instead of growing the
//! file. The difference to plain "ours" measures what prewritten fragments would buy.
//!
//! Spares come from two places: a background thread zero-fills one (data, size and directory
//! synced) whenever none is ready, and fragments removed by retention are recycled as spares
//! instead of being deleted (as okaywal recycles its segments). A recycled fragment still holds
//! old frames; they never validate at the new fragment's offsets (a frame's checksummed header
//! carries its own offset), so recovery takes them for a torn tail, as it does a zeroed one. (A
//! real implementation would also have to wait until no reader still maps a recycled fragment.)
//!
//! Recovery cuts the zeroed tail when a journal is created, so the first fragment of a new journal
//! is still an empty, growing file; only fragments created by rolls are prewritten (the bench
//! fills and drops the first fragment before timing). Zero-filling runs during the measurement
//! and competes for the disk until recycling takes over.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use ss_log::storage::{DirLock, OpenMode, Storage, StorageFile};
use ss_log::RealStorage;

/// Spares ready to be renamed into place, at most this many kept.
const POOL_MAX: usize = 2;

struct Spares {
    /// Zero-filled by the filler.
    zeroed: Vec<PathBuf>,
    /// Fragments removed by retention; used first, so zero-filling stops once they flow.
    recycled: Vec<PathBuf>,
    next_index: u64,
    /// Fragments recycled as spares so far.
    recycled_count: u64,
    stop: bool,
    failed: Option<String>,
}

struct Shared {
    dir: PathBuf,
    file_bytes: u64,
    spares: Mutex<Spares>,
    changed: Condvar,
}

pub struct PrewritingStorage {
    real: RealStorage,
    shared: Arc<Shared>,
    filler: Mutex<Option<JoinHandle<()>>>,
}

impl PrewritingStorage {
    /// Keeps spare files of `file_bytes` zeros in `spare_dir` (on the same filesystem as the data
    /// directory, so a rename moves them into place).
    pub fn new(spare_dir: &Path, file_bytes: u64) -> io::Result<PrewritingStorage> {
        std::fs::create_dir_all(spare_dir)?;
        let shared = Arc::new(Shared {
            dir: spare_dir.to_path_buf(),
            file_bytes,
            spares: Mutex::new(Spares {
                zeroed: Vec::new(),
                recycled: Vec::new(),
                next_index: 0,
                recycled_count: 0,
                stop: false,
                failed: None,
            }),
            changed: Condvar::new(),
        });
        let filler_shared = shared.clone();
        let filler = std::thread::Builder::new()
            .name("prewrite-filler".into())
            .spawn(move || filler_shared.run_filler())?;
        Ok(PrewritingStorage {
            real: RealStorage,
            shared,
            filler: Mutex::new(Some(filler)),
        })
    }

    /// Waits for the ready spare and takes it.
    fn take_spare(&self) -> io::Result<PathBuf> {
        let mut spares = self.shared.spares.lock().expect("spares lock");
        loop {
            if let Some(reason) = &spares.failed {
                return Err(io::Error::other(format!(
                    "prewriting a spare fragment failed: {reason}"
                )));
            }
            if let Some(path) = spares.recycled.pop().or_else(|| spares.zeroed.pop()) {
                self.shared.changed.notify_all();
                return Ok(path);
            }
            spares = self.shared.changed.wait(spares).expect("spares lock");
        }
    }
}

impl Shared {
    fn run_filler(&self) {
        let zeros = vec![0u8; 1 << 20];
        loop {
            let index = {
                let mut spares = self.spares.lock().expect("spares lock");
                let has_spare = |s: &Spares| !s.zeroed.is_empty() || !s.recycled.is_empty();
                while has_spare(&spares) && !spares.stop {
                    spares = self.changed.wait(spares).expect("spares lock");
                }
                if spares.stop {
                    return;
                }
                spares.next_index += 1;
                spares.next_index
            };
            let path = self.dir.join(format!("spare-{index}"));
            let filled = self.fill(&path, &zeros);
            let mut spares = self.spares.lock().expect("spares lock");
            match filled {
                Ok(()) => spares.zeroed.push(path),
                Err(e) => {
                    spares.failed = Some(format!("{}: {e}", path.display()));
                    self.changed.notify_all();
                    return;
                }
            }
            self.changed.notify_all();
        }
    }

    fn fill(&self, path: &Path, zeros: &[u8]) -> io::Result<()> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        let mut at = 0;
        while at < self.file_bytes {
            let n = zeros.len().min((self.file_bytes - at) as usize);
            file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        file.sync_all()?;
        File::open(&self.dir)?.sync_all()
    }
}

impl Drop for PrewritingStorage {
    fn drop(&mut self) {
        self.shared.spares.lock().expect("spares lock").stop = true;
        self.shared.changed.notify_all();
        if let Some(filler) = self.filler.lock().expect("filler lock").take() {
            let _ = filler.join();
        }
    }
}

impl Storage for PrewritingStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.real.create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.real.list_dir(path)
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.real.is_dir(path)
    }

    fn open(&self, path: &Path, mode: OpenMode, map_len_hint: u64) -> io::Result<Arc<dyn StorageFile>> {
        if mode != OpenMode::CreateNew || map_len_hint != self.shared.file_bytes {
            return self.real.open(path, mode, map_len_hint);
        }
        if path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", path.display()),
            ));
        }
        // The journal syncs the fragment's directory after creating it; the spare's data, size
        // and its own directory entry were synced by the filler.
        let spare = self.take_spare()?;
        std::fs::rename(&spare, path)?;
        self.real.open(path, OpenMode::ReadWrite, map_len_hint)
    }

    /// Recycles a removed full-size fragment as a spare while the pool has room.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.real.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let is_fragment = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(ss_log::fragment::parse_fragment_name)
            .is_some();
        if is_fragment && std::fs::metadata(path)?.len() == self.shared.file_bytes {
            let mut spares = self.shared.spares.lock().expect("spares lock");
            if spares.zeroed.len() + spares.recycled.len() < POOL_MAX {
                spares.next_index += 1;
                let spare = self.shared.dir.join(format!("spare-{}", spares.next_index));
                std::fs::rename(path, &spare)?;
                spares.recycled.push(spare);
                spares.recycled_count += 1;
                self.shared.changed.notify_all();
                return Ok(());
            }
        }
        self.real.remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.real.sync_dir(path)
    }

    fn lock_dir(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        self.real.lock_dir(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ss_log::{Batch, Log, Options};

    fn record(i: u32) -> Vec<u8> {
        vec![i as u8; 50_000]
    }

    /// A journal over prewritten fragments rolls into full-size spare files, reads back every
    /// frame, recycles the fragments retention removes (so the last fragment ends in stale frames
    /// of an older one), and reopens over the plain filesystem at the same head: recovery takes
    /// a zeroed or stale tail as the end, so prewriting and recycling keep the journal's format.
    #[test]
    fn journal_over_prewritten_fragments_reads_back_and_reopens() {
        let dir = tempfile::Builder::new()
            .prefix("ss-compare-scratch-test-")
            .tempdir_in(".")
            .unwrap();
        let fragment_bytes = 1 << 20;
        let opts = |storage: Arc<dyn Storage>| Options {
            fragment_max_bytes: fragment_bytes,
            frame_max_bytes: 256 << 10,
            pending_max_bytes: 1 << 20,
            ..Options::with_storage(storage)
        };
        let data = dir.path().join("data");
        let storage = Arc::new(PrewritingStorage::new(&dir.path().join("spares"), fragment_bytes).unwrap());
        let log = Log::open(&data, opts(storage.clone())).unwrap();
        let journal = log.journal("j").unwrap();
        for i in 0..100 {
            journal.append(&Batch::single(&record(i))).unwrap();
        }
        let fragments = journal.fragments();
        assert!(fragments.len() >= 4, "{} fragments", fragments.len());
        for f in &fragments[1..] {
            let len = std::fs::metadata(&f.path).unwrap().len();
            assert_eq!(len, fragment_bytes, "{} is prewritten", f.path.display());
        }
        let mut frames = journal.frames(0);
        for i in 0..100 {
            let frame = frames.next().expect("a frame").unwrap();
            assert_eq!(frame.messages().next().unwrap().unwrap(), &record(i)[..]);
        }
        assert!(frames.next().is_none());
        drop(frames);
        // Retention after every append recycles each sealed fragment; later rolls reuse them.
        // Stop right after a roll, so the current fragment is mostly an older one's frames.
        let mut i = 100;
        let head = loop {
            let before = journal.fragments().last().unwrap().begin;
            let head = journal.append(&Batch::single(&record(i))).unwrap().end;
            journal.remove_below(head).unwrap();
            i += 1;
            if i > 200 && journal.fragments().last().unwrap().begin != before {
                break head;
            }
        };
        let recycled = storage.shared.spares.lock().unwrap().recycled_count;
        assert!(recycled >= 5, "{recycled} fragments recycled");
        let mut last = None;
        for frame in journal.frames(journal.first_offset()) {
            let frame = frame.unwrap();
            last = Some(frame.messages().next().unwrap().unwrap()[0]);
        }
        assert_eq!(last, Some((i - 1) as u8));
        let current = journal.fragments().last().unwrap().clone();
        let bytes = std::fs::read(&current.path).unwrap();
        assert_eq!(bytes.len() as u64, fragment_bytes);
        let tail = &bytes[(head - current.begin) as usize..];
        assert!(
            tail.iter().any(|&b| b != 0),
            "the last fragment is a recycled one, stale tail and all"
        );
        drop((reader, journal, log, storage));
        let log = Log::open(&data, opts(Arc::new(RealStorage))).unwrap();
        let journal = log.journal("j").unwrap();
        assert_eq!(journal.durable_head(), head);
        let next = journal.append(&Batch::single(b"after reopen")).unwrap();
        assert_eq!(next.offset, head);
    }
}
