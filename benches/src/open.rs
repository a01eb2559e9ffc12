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

/// The state a writer leaves when it dies without closing, for timing the open that follows a
/// crash (issue 12, criterion 5). See [`leave_crashed_journal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashedState {
    /// Retention keeping 40 MiB behind the head, so rolls take recycled files: the last
    /// fragment holds about 13 MiB of frames and 19 MiB of a removed fragment's stale bytes.
    Recycled,
    /// The same, written with the write bound off (`write_bound_step_bytes` `u64::MAX`): the
    /// state the code before the write bound left, whose open searches the stale bytes to the end.
    RecycledUnbounded,
    /// No retention: fragments grow as they are written; the last holds about 13 MiB.
    Growing,
}

impl CrashedState {
    pub const ALL: [CrashedState; 3] = [
        CrashedState::Recycled,
        CrashedState::RecycledUnbounded,
        CrashedState::Growing,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CrashedState::Recycled => "recycled",
            CrashedState::RecycledUnbounded => "recycled-unbounded",
            CrashedState::Growing => "growing",
        }
    }

    pub fn from_name(name: &str) -> Option<CrashedState> {
        CrashedState::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Writes journal [`OPEN_JOURNAL`] in the data directory `dir` (default options, 64 KiB appends
/// of one frame each) until its last fragment begins at 96 MiB or later and holds at least
/// 13 MiB, and returns without closing it: the caller must then exit the process at once (as a
/// SIGKILL would leave it: the page cache keeps every write, the scan-start hint is the last
/// one recorded, nothing is cut). Returns the durable head.
pub fn leave_crashed_journal(dir: &Path, state: CrashedState) -> u64 {
    let opts = Options {
        write_bound_step_bytes: match state {
            CrashedState::RecycledUnbounded => u64::MAX,
            _ => Options::default().write_bound_step_bytes,
        },
        ..Options::default()
    };
    let log = Log::open(dir, opts).expect("open a bench data dir");
    let journal = log.journal(OPEN_JOURNAL).expect("create the bench journal");
    let batch = Batch::single(&crate::pattern_bytes(OPEN_FRAME_PAYLOAD_BYTES, 7));
    loop {
        let last_begin = journal.fragments().last().expect("a fragment").begin;
        let head = journal.durable_head();
        if last_begin >= 96 << 20 && head - last_begin >= 13 << 20 {
            break;
        }
        journal
            .append(&batch)
            .expect("append while building a crashed journal");
        if state != CrashedState::Growing {
            journal
                .remove_below(head.saturating_sub(40 << 20))
                .expect("retention while building a crashed journal");
        }
    }
    let head = journal.durable_head();
    // Never closed: no clean-close hint, no cut of the recycled file's stale bytes.
    std::mem::forget(journal);
    std::mem::forget(log);
    head
}
