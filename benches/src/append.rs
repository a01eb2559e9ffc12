//! Durable appends and their raw baselines: `write` + `fdatasync` into a file that was written
//! (zero-filled) and synced beforehand, the cheapest durable write this disk offers, and the same
//! into a file that grows with each write, which is what the journal does today.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use ss_log::{Batch, Journal, Log, Options};
use tokio::runtime::Runtime;

use crate::scratch;

/// A file written with zeros and fdatasynced when created (not timed), then overwritten in
/// place: each durable write changes data only, never the file size or block allocation.
pub struct PrewrittenFile {
    file: File,
    len_bytes: u64,
    pos: u64,
}

impl PrewrittenFile {
    /// Creates `path` holding `len_bytes` zeros, durably.
    pub fn create(path: &Path, len_bytes: u64) -> PrewrittenFile {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        let zeros = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < len_bytes {
            let n = zeros.len().min((len_bytes - at) as usize);
            file.write_all_at(&zeros[..n], at)
                .expect("zero-fill the baseline file");
            at += n as u64;
        }
        file.sync_all().expect("sync the zero-filled baseline file");
        PrewrittenFile {
            file,
            len_bytes,
            pos: 0,
        }
    }

    /// Writes `buf` at the next position (wrapping to the start when it would pass the end) and
    /// returns once `fdatasync` has made it durable.
    pub fn write_durable(&mut self, buf: &[u8]) {
        assert!(
            buf.len() as u64 <= self.len_bytes,
            "write larger than the baseline file"
        );
        if self.pos + buf.len() as u64 > self.len_bytes {
            self.pos = 0;
        }
        self.file.write_all_at(buf, self.pos).expect("baseline write");
        self.file.sync_data().expect("baseline fdatasync");
        self.pos += buf.len() as u64;
    }
}

/// A file that grows with each durable write, restarted from empty at `max_bytes` (as the
/// journal rolls to a new fragment): each `fdatasync` also flushes the new size and extents.
pub struct ExtendingFile {
    file: File,
    max_bytes: u64,
    pos: u64,
}

impl ExtendingFile {
    pub fn create(path: &Path, max_bytes: u64) -> ExtendingFile {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        ExtendingFile {
            file,
            max_bytes,
            pos: 0,
        }
    }

    /// Appends `buf` at the end of the file and returns once `fdatasync` has made it durable.
    pub fn write_durable(&mut self, buf: &[u8]) {
        if self.pos + buf.len() as u64 > self.max_bytes {
            self.file.set_len(0).expect("restart the extending baseline file");
            self.pos = 0;
        }
        self.file.write_all_at(buf, self.pos).expect("baseline write");
        self.file.sync_data().expect("baseline fdatasync");
        self.pos += buf.len() as u64;
    }
}

/// A data directory with one journal, in a temporary directory removed on drop.
pub struct JournalFixture {
    pub journal: Journal,
    pub log: Log,
    _dir: tempfile::TempDir,
}

impl JournalFixture {
    pub fn new(root: &Path, opts: Options) -> JournalFixture {
        let dir = scratch::temp_dir(root, "journal-");
        let log = Log::open(dir.path(), opts).expect("open the bench data dir");
        let journal = log.journal("bench").expect("create the bench journal");
        JournalFixture {
            journal,
            log,
            _dir: dir,
        }
    }

    /// Removes sealed fragments (retention), so long runs keep disk use bounded.
    pub fn trim(&self) {
        self.journal
            .remove_below(self.journal.durable_head())
            .expect("remove old bench fragments");
    }
}

/// Appends `batch` `count` times from one thread, each append waiting until durable.
pub fn append_sequential(journal: &Journal, batch: &Batch, count: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..count {
        journal.append(batch).expect("durable append");
    }
    start.elapsed()
}

/// Shape of the many-writers workload.
#[derive(Debug, Clone, Copy)]
pub struct ConcurrentShape {
    /// Tokio tasks appending at once.
    pub writers: usize,
    /// Appends each writer keeps submitted but not yet acknowledged.
    pub in_flight_max: usize,
}

/// `records` appends of `batch` (one frame each), spread over `shape.writers` tokio tasks that
/// each keep up to `shape.in_flight_max` appends in flight: `submit_async(..).await` places an
/// append, and the writer awaits `durable()` of its oldest one once its window is full. Returns
/// the time until every append is durable.
pub fn append_concurrent(
    rt: &Runtime,
    journal: &Journal,
    batch: &Batch,
    shape: ConcurrentShape,
    records: u64,
) -> Duration {
    let writers = shape.writers as u64;
    rt.block_on(async {
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(shape.writers);
        for w in 0..writers {
            let count = records / writers + u64::from(w < records % writers);
            let journal = journal.clone();
            let batch = batch.clone();
            tasks.push(tokio::spawn(async move {
                let mut in_flight = VecDeque::with_capacity(shape.in_flight_max);
                for _ in 0..count {
                    if in_flight.len() == shape.in_flight_max {
                        let oldest: ss_log::PendingAppend = in_flight.pop_front().expect("window is full");
                        oldest.durable().await.expect("durable append");
                    }
                    in_flight.push_back(journal.submit_async(&batch).await.expect("submit"));
                }
                for p in in_flight {
                    p.durable().await.expect("durable append");
                }
            }));
        }
        for t in tasks {
            t.await.expect("writer task");
        }
        start.elapsed()
    })
}

/// Raw baseline for the many-writers workload: the same on-disk bytes (`frame_bytes` per record)
/// written in commits of `records_per_commit` records, each one `write` + `fdatasync` into a
/// pre-written file. This is what the disk allows if group commit cost nothing per record.
pub fn raw_commits(
    file: &mut PrewrittenFile,
    frame_bytes: usize,
    records_per_commit: u64,
    records: u64,
) -> Duration {
    let commit = crate::pattern_bytes(frame_bytes * records_per_commit as usize, 7);
    let start = Instant::now();
    let mut left = records;
    while left > 0 {
        let n = left.min(records_per_commit);
        file.write_durable(&commit[..frame_bytes * n as usize]);
        left -= n;
    }
    start.elapsed()
}
