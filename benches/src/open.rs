//! Opening a journal: the time from `Log::open` to a usable [`Journal`] (recovery included),
//! for journals whose sealed history differs while their last fragment holds about as much.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ss_log::{Batch, Journal, Log, Options};

use crate::scratch;

/// Name of the journal in each cached open fixture.
pub const OPEN_JOURNAL: &str = "history";
/// Payload of each frame of an open fixture.
pub const OPEN_FRAME_PAYLOAD_BYTES: usize = 64 << 10;

/// A cached data directory holding one journal with a given history.
#[derive(Debug, Clone)]
pub struct OpenFixture {
    pub dir: PathBuf,
    pub head: u64,
    pub fragment_count: usize,
    /// Bytes in sealed fragments (all but the last).
    pub history_bytes: u64,
    /// Bytes of frames in the last fragment: what recovery reads and verifies.
    pub last_fragment_bytes: u64,
}

impl OpenFixture {
    /// Builds (or reuses, under `root`) a journal whose sealed fragments hold at least
    /// `history_min_bytes` (0: a single fragment) and whose last fragment holds at least
    /// `last_fragment_min_bytes`, with the default options (32 MiB fragments).
    pub fn build(root: &Path, history_min_bytes: u64, last_fragment_min_bytes: u64) -> OpenFixture {
        let opts = Options::default();
        // Each fill step may overshoot by 1 MiB; the fragment must not roll while filling its last part.
        assert!(last_fragment_min_bytes + (3 << 19) < opts.fragment_max_bytes);
        let key = format!("open-{history_min_bytes}b-history-{last_fragment_min_bytes}b-last");
        let batch = Batch::single(&crate::pattern_bytes(OPEN_FRAME_PAYLOAD_BYTES, 3));
        let (dir, head) = scratch::cached_journal(root, &key, OPEN_JOURNAL, &opts, |journal| {
            // 16 frames (1 MiB) per step, so the last fragment overshoots its target by at most that.
            scratch::fill_journal(journal, &batch, 16, |j| {
                let last_begin = j.fragments().last().expect("a fragment").begin;
                last_begin >= history_min_bytes && j.durable_head() - last_begin >= last_fragment_min_bytes
            })
        });
        let (_, _, journal) = open_timed(&dir);
        assert_eq!(
            journal.durable_head(),
            head,
            "cached journal in {} changed",
            dir.display()
        );
        let fragments = journal.fragments();
        let last = fragments.last().expect("a fragment");
        OpenFixture {
            dir,
            head,
            fragment_count: fragments.len(),
            history_bytes: last.begin - fragments[0].begin,
            last_fragment_bytes: last.end - last.begin,
        }
    }
}

/// Opens the data directory `dir` and its journal, returning the time both took.
pub fn open_timed(dir: &Path) -> (Duration, Log, Journal) {
    let start = Instant::now();
    let log = Log::open(dir, Options::default()).expect("open a bench data dir");
    let journal = log
        .existing_journal(OPEN_JOURNAL)
        .expect("open the bench journal");
    (start.elapsed(), log, journal)
}
