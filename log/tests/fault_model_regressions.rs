//! Regressions found by the kernel fault model (issue 11): each test is a state Linux can leave
//! that an earlier recovery or commit path got wrong.

mod common;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ss_log::sim::{CrashMode, SimStorage};
use ss_log::storage::{Intercept, Intercepted, OpenMode};
use ss_log::{Batch, Log, Storage, StorageFile};

const JOURNAL: &str = "j";
const FRAGMENT_MAX_BYTES: u64 = 1024;

/// Appends `n` frames of about 200 bytes, each acknowledged, and returns their offsets.
fn fill(log: &Log, tag: &str, n: usize) -> Vec<u64> {
    let j = log.journal(JOURNAL).unwrap();
    (0..n)
        .map(|i| {
            j.append(&Batch::single(&payload(&format!("{tag}{i}"), 200)))
                .unwrap()
                .offset
        })
        .collect()
}

/// A crash right after a roll made the new fragment's name durable, before any frame reached
/// it (SIGKILL between the directory sync and the write; or a zero-filled spare renamed in)
/// left a last fragment with no frame. Recovery took that to mean "no last frame", so
/// `Journal::last_frame` returned `None` and a shard restarted from input offset 0, repeating
/// every Sum. Crashes at every storage call of the rolling append, in both crash modes: the
/// last frame is always the newest surviving one.
#[test]
fn crash_right_after_a_roll_keeps_the_journals_last_frame() {
    for mode in [CrashMode::Process, CrashMode::PowerLoss] {
        for crash_at in 0..8 {
            let sim = SimStorage::new(crash_at);
            let acked = fill(&open_sim(&sim, FRAGMENT_MAX_BYTES), "a", 4);
            {
                let log = open_sim(&sim, FRAGMENT_MAX_BYTES);
                let j = log.journal(JOURNAL).unwrap();
                sim.crash_after_ops(crash_at);
                let _ = j.append(&Batch::single(&payload("rolls", 200)));
            }
            let survivor = sim.crash(mode);
            let log = open_sim(&survivor, FRAGMENT_MAX_BYTES);
            let j = log.journal(JOURNAL).unwrap();
            let last = j.last_frame().unwrap().unwrap_or_else(|| {
                panic!(
                    "{mode:?}, crash at call {crash_at}: no last frame ({:?})",
                    j.fragments()
                )
            });
            assert!(
                last.offset >= acked[3],
                "{mode:?}, crash at call {crash_at}: last frame {} is older than the last acknowledged {}",
                last.offset,
                acked[3]
            );
            assert_eq!(last.end, j.durable_head(), "{mode:?}, crash at call {crash_at}");
        }
    }
}

/// A sealed fragment that ends short of where the next begins (the bytes between are gone) is
/// refused when recovery must look into it, naming the fragment and offset, never read as a
/// journal with no last frame.
#[test]
fn sealed_fragment_ending_short_of_the_next_is_refused_by_name() {
    let sim = SimStorage::new(1);
    fill(&open_sim(&sim, FRAGMENT_MAX_BYTES), "a", 6);
    let log_files = sim.files();
    let frags: Vec<_> = log_files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "frag"))
        .collect();
    assert!(frags.len() >= 2, "the appends rolled: {frags:?}");
    // Empty the last fragment, and cut the one before it short. The scan-start hint goes too:
    // it would vouch for the emptied fragment's writes and refuse that first.
    let last = frags[frags.len() - 1];
    let before = frags[frags.len() - 2];
    sim.write_file(last, b"");
    forget_scan_hint(&sim, JOURNAL);
    let bytes = sim.read_file(before).unwrap();
    sim.write_file(before, &bytes[..bytes.len() - 8]);
    let Err(err) = Log::open(DATA_DIR, sim_opts(&sim, FRAGMENT_MAX_BYTES))
        .unwrap()
        .journal(JOURNAL)
    else {
        panic!("recovery refuses");
    };
    let text = err.to_string();
    assert!(
        text.contains(&before.file_name().unwrap().to_string_lossy().to_string()) && text.contains("missing"),
        "{text}"
    );
}

/// Storage whose next `open` of an existing fragment for writing fails with EMFILE once armed
/// (the spare was renamed to the fragment's name; opening it failed).
#[derive(Default)]
struct FailingFragmentOpen {
    armed: AtomicBool,
}

impl Intercept for FailingFragmentOpen {
    fn open(
        &self,
        inner: &dyn Storage,
        path: &Path,
        mode: OpenMode,
        map_len_hint: u64,
    ) -> io::Result<Arc<dyn StorageFile>> {
        let fragment = path.extension().is_some_and(|e| e == "frag");
        if fragment && mode == OpenMode::ReadWrite && self.armed.swap(false, Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(ss_log::sim::EMFILE));
        }
        inner.open(path, mode, map_len_hint)
    }
}

/// A roll that renamed the zero-filled spare into place and then failed to open it left that
/// file behind: every later roll to that offset failed ("already exists"), and a later roll at
/// another offset left a zero-filled fragment in the middle of the journal, which readers then
/// met as corruption. The roll back now removes it.
#[test]
fn spare_renamed_but_not_opened_is_removed_by_the_roll_back() {
    let sim = SimStorage::new(2);
    let storage = Arc::new(Intercepted::<FailingFragmentOpen>::new(Arc::new(sim.clone())));
    let options = || ss_log::Options {
        preallocate: true,
        ..opts(storage.clone(), FRAGMENT_MAX_BYTES)
    };
    let log = Log::open(DATA_DIR, options()).unwrap();
    let j = log.journal(JOURNAL).unwrap();
    let spare = Path::new(DATA_DIR)
        .join("journals")
        .join(JOURNAL)
        .join(ss_log::spare::SPARE_FILE_NAME);
    let mut acked = Vec::new();
    // Past half the fragment, the spare is prepared; wait until it is complete.
    for i in 0..3 {
        acked.push(j.append(&Batch::single(&payload(&format!("a{i}"), 200))).unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while sim.read_file(&spare).map(|b| b.len() as u64) != Some(FRAGMENT_MAX_BYTES) {
        assert!(Instant::now() < deadline, "the spare was never prepared");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50)); // its fdatasync and `ready`
    storage.armed.store(true, Ordering::SeqCst);
    let mut failed = 0;
    for i in 3..12 {
        match j.append(&Batch::single(&payload(&format!("a{i}"), 200))) {
            Ok(ack) => acked.push(ack),
            Err(e) => {
                failed += 1;
                assert!(failed == 1, "only the armed open fails, but also: {e}");
            }
        }
    }
    assert_eq!(failed, 1, "the armed open failed one append");
    drop(j);
    drop(log);
    let survivor = sim.crash(CrashMode::Process);
    let log = Log::open(DATA_DIR, sim_opts(&survivor, FRAGMENT_MAX_BYTES)).unwrap();
    let frames = read_all(&log.journal(JOURNAL).unwrap());
    let offsets: Vec<u64> = frames.iter().map(|f| f.offset).collect();
    assert_eq!(offsets, acked.iter().map(|a| a.offset).collect::<Vec<_>>());
}

/// Retention unlinked several fragments and synced the directory once: a power loss keeps any
/// subset of unsynced unlinks, so an old fragment could survive without its successor, a hole
/// at the start of the journal. Unlinks are now made durable one at a time, oldest first: at
/// every crash point, what survives is a contiguous run of fragments that reads to the head.
#[test]
fn retention_interrupted_by_power_loss_leaves_no_hole() {
    for crash_at in 0..10 {
        for seed in 0..20 {
            let sim = SimStorage::new(seed);
            let acked = fill(&open_sim(&sim, FRAGMENT_MAX_BYTES), "a", 24);
            {
                let log = open_sim(&sim, FRAGMENT_MAX_BYTES);
                let j = log.journal(JOURNAL).unwrap();
                sim.crash_after_ops(crash_at);
                let _ = j.remove_below(acked[20]);
            }
            let survivor = sim.crash(CrashMode::PowerLoss);
            let log = open_sim(&survivor, FRAGMENT_MAX_BYTES);
            let j = log.journal(JOURNAL).unwrap();
            let frames = read_from(&j, j.first_offset());
            let ctx = format!("crash at call {crash_at}, seed {seed}");
            assert_eq!(
                frames.last().map(|f| f.end),
                Some(j.durable_head()),
                "{ctx}: reads to the head"
            );
            for pair in frames.windows(2) {
                assert_eq!(pair[0].end, pair[1].offset, "{ctx}: contiguous");
            }
            assert!(j.first_offset() <= acked[20], "{ctx}");
        }
    }
}

/// After a failed fsync (Linux: the failed pages are clean in the page cache, readable, and no
/// later fsync writes them), a restart of the process used to sync and publish the frames of
/// that write as they read back, so a power loss later took frames readers had acted on. The
/// recovery now writes the last write's frames again before syncing them.
#[test]
fn failed_fsync_then_process_restart_then_power_loss_keeps_what_readers_saw() {
    for seed in 0..40 {
        let sim = SimStorage::new(seed);
        {
            let log = open_sim(&sim, 1 << 20);
            let j = log.journal(JOURNAL).unwrap();
            j.append(&Batch::single(b"durable")).unwrap();
            sim.fail_sync_after(1);
            assert!(j.append(&Batch::single(&payload("failed", 900))).is_err());
        }
        let restarted = sim.crash(CrashMode::Process);
        let seen = single_messages(&read_all(
            &open_sim(&restarted, 1 << 20).journal(JOURNAL).unwrap(),
        ));
        let after = restarted.crash(CrashMode::PowerLoss);
        let kept = single_messages(&read_all(&open_sim(&after, 1 << 20).journal(JOURNAL).unwrap()));
        assert_eq!(
            kept, seen,
            "seed {seed}: a frame readers saw vanished in a later power loss"
        );
    }
}

/// Reads through the simulator's read errors: a failing read is an error naming the journal
/// and the fragment, never a panic, and the next read succeeds.
#[test]
fn read_error_names_journal_and_fragment() {
    let sim = SimStorage::new(3);
    fill(&open_sim(&sim, FRAGMENT_MAX_BYTES), "a", 6);
    let log = Log::open_read_only(DATA_DIR, sim_opts(&sim, FRAGMENT_MAX_BYTES)).unwrap();
    let j = log.existing_journal(JOURNAL).unwrap();
    sim.fail_read_after(1);
    let mut reader = j.reader(0);
    let err = reader.try_next().expect_err("the read fails");
    let text = err.to_string();
    assert!(text.contains(JOURNAL) && text.contains(".frag"), "{text}");
}

/// Found by the op_sequence fuzz target: retention dropped the doomed fragments from the
/// journal's list before unlinking them; when an unlink failed (EIO), the fragments left on disk
/// were forgotten, a later retention unlinked their successors, and a restart found the old
/// fragment followed by a hole. Fragments whose unlink failed now go back on the list.
#[test]
fn retention_failing_an_unlink_then_retention_again_leaves_no_hole() {
    for errno in [ss_log::sim::EIO, ss_log::sim::EMFILE] {
        let sim = SimStorage::new(7);
        let acked = fill(&open_sim(&sim, FRAGMENT_MAX_BYTES), "a", 24);
        let log = open_sim(&sim, FRAGMENT_MAX_BYTES);
        let j = log.journal(JOURNAL).unwrap();
        sim.fail_op_after(1, errno);
        assert!(j.remove_below(acked[10]).is_err(), "the first unlink fails");
        assert_eq!(
            j.first_offset(),
            0,
            "the fragment that was not unlinked is still first"
        );
        j.remove_below(acked[20]).unwrap();
        drop((j, log));
        let survivor = sim.crash(CrashMode::PowerLoss);
        let log = open_sim(&survivor, FRAGMENT_MAX_BYTES);
        let j = log.journal(JOURNAL).unwrap();
        let frames = read_from(&j, j.first_offset());
        assert_eq!(
            frames.last().map(|f| f.end),
            Some(j.durable_head()),
            "errno {errno}"
        );
        for pair in frames.windows(2) {
            assert_eq!(pair[0].end, pair[1].offset, "errno {errno}: contiguous");
        }
    }
}
