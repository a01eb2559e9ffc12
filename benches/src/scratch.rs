//! Where benches keep their files, and journals built once and cached between runs.
//!
//! Bench files must live on the disk being measured, not on a tmpfs `/tmp`: the criterion
//! benches use cargo's `CARGO_TARGET_TMPDIR` (inside the target directory), and every entry
//! point honours `SS_BENCH_DIR` to put them elsewhere.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use ss_log::{Batch, Journal, Log, Options};

/// Environment variable naming the directory for bench files (overrides the caller's default).
pub const BENCH_DIR_ENV: &str = "SS_BENCH_DIR";

/// Name of the file written into a cached journal's data directory once it is complete.
const COMPLETE_MARKER: &str = "BENCH-COMPLETE";

/// The bench directory: `$SS_BENCH_DIR` if set, else `default`; created if missing.
pub fn bench_root(default: &Path) -> PathBuf {
    let root = std::env::var_os(BENCH_DIR_ENV).map_or_else(|| default.to_path_buf(), PathBuf::from);
    std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("creating bench dir {}: {e}", root.display()));
    root
}

/// A fresh temporary directory under `root`, removed on drop.
pub fn temp_dir(root: &Path, prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(root)
        .unwrap_or_else(|e| panic!("creating a temp dir in {}: {e}", root.display()))
}

/// Appends `batch` as frames, `chunk_frames` at a time (submitted together so group commit batches
/// them, then waited for), until `done(journal)` holds after a chunk is durable.
pub fn fill_journal(journal: &Journal, batch: &Batch, chunk_frames: usize, done: impl Fn(&Journal) -> bool) {
    let mut pending = VecDeque::with_capacity(chunk_frames);
    while !done(journal) {
        for _ in 0..chunk_frames {
            pending.push_back(
                journal
                    .submit(batch)
                    .expect("submit while building a bench journal"),
            );
        }
        for p in pending.drain(..) {
            p.wait().expect("append while building a bench journal");
        }
    }
}

/// The data directory `root/<key>` holding a journal named `journal_name` built by `build`, reusing
/// it if an earlier run completed it. Returns the directory and the journal's durable head.
pub fn cached_journal(
    root: &Path,
    key: &str,
    journal_name: &str,
    opts: &Options,
    build: impl FnOnce(&Journal),
) -> (PathBuf, u64) {
    let dir = root.join(key);
    let marker = dir.join(COMPLETE_MARKER);
    if let Ok(text) = std::fs::read_to_string(&marker) {
        if let Ok(head) = text.trim().parse::<u64>() {
            return (dir, head);
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("removing stale {}: {e}", dir.display()));
    }
    let head = {
        let log = Log::open(&dir, opts.clone()).expect("open a bench data dir");
        let journal = log.journal(journal_name).expect("create a bench journal");
        build(&journal);
        journal.durable_head()
    };
    std::fs::write(&marker, format!("{head}\n")).expect("write the bench cache marker");
    (dir, head)
}
