//! A failed fsync poisons the journal: the failing append and every later one fail with
//! `AppendError::Poisoned`, durable data stays readable, and a reopen after a crash recovers
//! everything acknowledged.

mod common;

use std::sync::Arc;

use common::*;
use ss_log::sim::{CrashMode, SimStorage};
use ss_log::{AppendAck, AppendError, Batch, Log};

const JOURNAL: &str = "fsync";

fn is_poisoned(result: &Result<AppendAck, AppendError>) -> bool {
    matches!(result, Err(AppendError::Poisoned { journal, .. }) if journal == JOURNAL)
}

/// Fails the fdatasync of one append, then checks every append API is refused as poisoned, that
/// readers still see exactly the acknowledged frames, that another journal of the same directory
/// is unaffected, and, for each crash mode, that a reopen recovers every acknowledged frame and
/// accepts appends.
#[test]
fn fsync_failure_poisons_and_reopen_after_crash_recovers_acknowledged() {
    for mode in CrashMode::ALL {
        let storage = SimStorage::new(21);
        let payloads: Vec<Vec<u8>> = (0..3).map(|i| payload(&format!("durable-{i}"), 70)).collect();
        let failed = payload("sync-fails", 90);
        let acks: Vec<AppendAck>;
        {
            let log = open_sim(&storage, 1 << 20);
            let j = log.journal(JOURNAL).unwrap();
            acks = payloads
                .iter()
                .map(|p| j.append(&Batch::single(p)).unwrap())
                .collect();
            let head = j.durable_head();
            let mut reader = j.reader(0);
            assert!(reader.try_next().unwrap().is_some());

            storage.fail_sync_after(1);
            let result = j.append(&Batch::single(&failed));
            assert!(
                is_poisoned(&result),
                "{mode:?}: the failing append errors: {result:?}"
            );
            let reason = j.poisoned().expect("journal is poisoned");
            assert!(reason.contains("fdatasync"), "{reason}");
            assert!(result.unwrap_err().to_string().contains(JOURNAL));
            assert_eq!(storage.counters().failed_syncs, 1);

            assert!(is_poisoned(&j.append(&Batch::single(b"later"))));
            assert!(is_poisoned(&j.append_if(head, &Batch::single(b"later-if"))));
            assert!(matches!(
                j.submit(&Batch::single(b"later-submit")),
                Err(AppendError::Poisoned { .. })
            ));
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            assert!(is_poisoned(
                &rt.block_on(j.append_async(&Batch::single(b"later-async")))
            ));
            let again = log.journal(JOURNAL).unwrap();
            assert!(is_poisoned(&again.append(&Batch::single(b"via-new-handle"))));

            assert_eq!(j.durable_head(), head, "{mode:?}: the head does not move");
            assert_eq!(
                single_messages(&read_all(&j)),
                payloads,
                "{mode:?}: durable data readable"
            );
            assert_eq!(j.last_frame().unwrap().unwrap().offset, acks[2].offset);
            let rest: Vec<_> = std::iter::from_fn(|| reader.try_next().unwrap()).collect();
            assert_eq!(rest.len(), 2, "an existing reader reads on to the durable head");

            let other = log.journal("other").unwrap();
            other
                .append(&Batch::single(b"unaffected"))
                .expect("other journals are not poisoned");
            assert!(other.poisoned().is_none());
        }
        let survivor = storage.crash(mode);
        let log = open_sim(&survivor, 1 << 20);
        let j = log.journal(JOURNAL).unwrap();
        assert!(j.poisoned().is_none());
        let got = single_messages(&read_all(&j));
        assert!(
            got == payloads || got == [payloads.clone(), vec![failed.clone()]].concat(),
            "{mode:?}: acknowledged frames recovered (the failed one is indeterminate): {} frames",
            got.len()
        );
        let ack = j.append(&Batch::single(b"after-recovery")).unwrap();
        assert_eq!(ack.offset, read_all(&j).last().unwrap().offset);
    }
}

/// Fails the fdatasync of the append that rolls to a new fragment, and checks the journal is
/// poisoned with the head in the old fragment, and that a crash and reopen continue there.
#[test]
fn fsync_failure_while_rolling_poisons_and_recovers() {
    for mode in CrashMode::ALL {
        let storage = SimStorage::new(22);
        let payloads: Vec<Vec<u8>> = (0..4).map(|i| payload(&format!("roll-{i}"), 200)).collect();
        let head = {
            let log = open_sim(&storage, 1024);
            let j = log.journal(JOURNAL).unwrap();
            for p in &payloads {
                j.append(&Batch::single(p)).unwrap();
            }
            assert_eq!(j.fragments().len(), 1);
            storage.fail_sync_after(1);
            assert!(is_poisoned(&j.append(&Batch::single(&payload("rolls", 200)))));
            assert!(is_poisoned(&j.append(&Batch::single(b"later"))));
            assert_eq!(single_messages(&read_all(&j)), payloads);
            j.durable_head()
        };
        let survivor = storage.crash(mode);
        let log = open_sim(&survivor, 1024);
        let j = log.journal(JOURNAL).unwrap();
        let frames = read_all(&j);
        assert_eq!(single_messages(&frames[..4]), payloads, "{mode:?}");
        let ack = j.append(&Batch::single(b"after")).unwrap();
        assert!(ack.offset >= head, "{mode:?}");
        assert_eq!(read_all(&j).len(), frames.len() + 1);
    }
}

/// Four threads append while the n-th fdatasync fails: every thread ends with `Poisoned`, none
/// hangs, and after a crash every acknowledged append is recovered at its offset.
#[test]
fn fsync_failure_under_concurrent_appenders_fails_all_and_keeps_acknowledged() {
    for (seed, mode) in CrashMode::ALL.into_iter().enumerate() {
        let storage = SimStorage::new(23 + seed as u64);
        let log = open_sim(&storage, 4096);
        let j = log.journal(JOURNAL).unwrap();
        storage.fail_sync_after(15);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let j = j.clone();
                std::thread::spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0.. {
                        let p = payload(&format!("t{t}-{i}"), 50);
                        match j.append(&Batch::single(&p)) {
                            Ok(ack) => acked.push((ack, p)),
                            Err(AppendError::Poisoned { .. }) => return acked,
                            Err(e) => panic!("unexpected error {e}"),
                        }
                    }
                    unreachable!()
                })
            })
            .collect();
        let acked: Vec<(AppendAck, Vec<u8>)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        assert!(!acked.is_empty());
        drop((j, log));
        let survivor = storage.crash(mode);
        let log = open_sim(&survivor, 4096);
        let j = log.journal(JOURNAL).unwrap();
        let frames = read_all(&j);
        for (ack, p) in &acked {
            let f = frames
                .iter()
                .find(|f| f.offset == ack.offset)
                .expect("acknowledged frame");
            assert_eq!(&f.messages[0], p, "{mode:?}");
        }
        j.append(&Batch::single(b"after")).unwrap();
    }
}

/// After a failed fsync the frame's bytes are written but not durable. Restarting the process
/// (no power loss) and reopening used to publish that frame to readers without syncing it, so a
/// later power loss could remove a frame a reader had already seen. Checks that every frame a
/// reader sees after the reopen survives a power loss.
#[test]
fn reopen_after_failed_fsync_shows_readers_only_durable_frames() {
    let storage = SimStorage::new(24);
    {
        let log = open_sim(&storage, 1 << 20);
        let j = log.journal(JOURNAL).unwrap();
        j.append(&Batch::single(b"durable")).unwrap();
        storage.fail_sync_after(1);
        assert!(is_poisoned(&j.append(&Batch::single(b"sync-failed"))));
    }
    // The process restarts on the same medium: nothing was lost yet.
    let seen = {
        let log = open_sim(&storage, 1 << 20);
        single_messages(&read_all(&log.journal(JOURNAL).unwrap()))
    };
    let survivor = storage.crash(CrashMode::LoseUnsynced);
    let log = open_sim(&survivor, 1 << 20);
    let after_power_loss = single_messages(&read_all(&log.journal(JOURNAL).unwrap()));
    assert_eq!(
        after_power_loss, seen,
        "a frame readers saw vanished in a power loss"
    );
}

/// A read-only open (e.g. another process) while the writer is between its write and its
/// fdatasync used to recover the written but unsynced frame and show it to readers. Checks that
/// every frame a read-only reader sees survives a power loss.
#[test]
fn read_only_open_mid_commit_shows_readers_only_durable_frames() {
    let sim = SimStorage::new(25);
    let gated = Arc::new(GatedStorage::new(Arc::new(sim.clone())));
    let log = Log::open(DATA_DIR, opts(gated.clone(), 1 << 20)).unwrap();
    let j = log.journal(JOURNAL).unwrap();
    j.append(&Batch::single(b"durable")).unwrap();
    gated.gate.arm();
    let pending = j.submit(&Batch::single(b"mid-commit")).unwrap();
    gated.gate.wait_held();
    let ro = Log::open_read_only(DATA_DIR, opts(gated.clone(), 1 << 20)).unwrap();
    let seen = single_messages(&read_all(&ro.existing_journal(JOURNAL).unwrap()));
    let survivor = sim.crash(CrashMode::LoseUnsynced);
    gated.gate.release();
    let _ = pending.wait();
    let log = open_sim(&survivor, 1 << 20);
    let after_power_loss = single_messages(&read_all(&log.journal(JOURNAL).unwrap()));
    assert_eq!(
        after_power_loss, seen,
        "a frame a read-only reader saw vanished in a power loss"
    );
}

/// Storage whose next directory fsync fails with EIO once armed.
#[derive(Default)]
struct FailingDirSync {
    fail_next: std::sync::atomic::AtomicBool,
}

impl ss_log::storage::Intercept for FailingDirSync {
    fn sync_dir(&self, inner: &dyn ss_log::Storage, path: &std::path::Path) -> std::io::Result<()> {
        if self.fail_next.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(5));
        }
        inner.sync_dir(path)
    }
}

/// When the directory fsync after rolling to a new fragment failed, the new fragment's data was
/// synced but its directory entry was not. Restarting the process (no power loss) and reopening
/// used to show its frames to readers without syncing the directory, so a later power loss could
/// remove the whole fragment and frames a reader had seen. Checks that every frame a reader sees
/// after the reopen survives a power loss.
#[test]
fn reopen_after_failed_directory_fsync_shows_readers_only_durable_frames() {
    let sim = SimStorage::new(26);
    let failing = Arc::new(ss_log::storage::Intercepted::<FailingDirSync>::new(Arc::new(
        sim.clone(),
    )));
    {
        let log = Log::open(DATA_DIR, opts(failing.clone(), 1024)).unwrap();
        let j = log.journal(JOURNAL).unwrap();
        for i in 0..4 {
            j.append(&Batch::single(&payload(&format!("p{i}"), 200))).unwrap();
        }
        failing.fail_next.store(true, std::sync::atomic::Ordering::SeqCst);
        let result = j.append(&Batch::single(&payload("rolls", 200)));
        assert!(is_poisoned(&result), "{result:?}");
        assert!(j.poisoned().unwrap().contains("directory"));
        assert_eq!(j.fragments().len(), 2, "the append rolled");
    }
    let seen = {
        let log = open_sim(&sim, 1024);
        single_messages(&read_all(&log.journal(JOURNAL).unwrap()))
    };
    let survivor = sim.crash(CrashMode::LoseUnsynced);
    let log = open_sim(&survivor, 1024);
    let after_power_loss = single_messages(&read_all(&log.journal(JOURNAL).unwrap()));
    assert_eq!(
        after_power_loss.len(),
        seen.len(),
        "a frame readers saw vanished in a power loss"
    );
    assert_eq!(after_power_loss, seen);
}

/// A batch that seals its fragment (written and synced up to the roll point), creates the next,
/// and then fails the directory fsync poisons the journal with the cursor still on the sealed
/// fragment. A clean close then must not cut the sealed fragment back to the previous batch's end
/// (it once did, and the reopen refused: "the bytes between are missing", found by the
/// storage-fault suite's `FailingCall` kind).
#[test]
fn close_after_a_failed_directory_fsync_mid_roll_keeps_the_sealed_fragment_whole() {
    let sim = SimStorage::new(27);
    let gated = Arc::new(GatedStorage::new(Arc::new(sim.clone())));
    let failing = Arc::new(ss_log::storage::Intercepted::<FailingDirSync>::new(gated.clone()));
    let all: Vec<Vec<u8>> = ["p0", "p1", "held", "fits", "rolls"]
        .iter()
        .map(|t| payload(t, 200))
        .collect();
    {
        let log = Log::open(DATA_DIR, opts(failing.clone(), 1024)).unwrap();
        let j = log.journal(JOURNAL).unwrap();
        // 248-byte frames: four fill the first fragment, the fifth rolls.
        for p in &all[..2] {
            j.append(&Batch::single(p)).unwrap();
        }
        // Hold the third frame's sync, so the fourth and fifth queue up as one batch that
        // writes into the first fragment, seals it, then rolls.
        gated.gate.arm();
        let held = j.submit(&Batch::single(&all[2])).unwrap();
        gated.gate.wait_held();
        let fits = j.submit(&Batch::single(&all[3])).unwrap();
        let rolls = j.submit(&Batch::single(&all[4])).unwrap();
        assert_eq!(rolls.ack().offset, 4 * 248);
        failing.fail_next.store(true, std::sync::atomic::Ordering::SeqCst);
        gated.gate.release();
        held.wait().expect("the held commit completes");
        assert!(is_poisoned(&fits.wait()));
        assert!(is_poisoned(&rolls.wait()));
        assert_eq!(j.fragments().len(), 2, "the batch created the next fragment");
    }
    // The log was closed cleanly (dropped): reopening finds every acknowledged frame, and the
    // sealed frame of the failed batch may be there too, never anything after a hole.
    let log = open_sim(&sim, 1024);
    let frames = single_messages(&read_all(&log.journal(JOURNAL).expect("reopen after close")));
    assert!(frames.len() >= 3 && all.starts_with(&frames), "{frames:?}");
}

/// Open writes the last group-commit write again (fsyncgate), a piece at a time through a small
/// copy. A last write of several pieces, the last one partial, must be rewritten byte for byte:
/// read back after the reopen, and again after a power loss that keeps only what was synced.
#[test]
fn reopen_rewrites_a_last_write_of_many_pieces_byte_for_byte() {
    let open_big = |storage: &SimStorage| {
        let opts = ss_log::Options {
            frame_max_bytes: 1 << 20,
            pending_max_bytes: 1 << 20,
            ..sim_opts(storage, 4 << 20)
        };
        Log::open(DATA_DIR, opts).unwrap()
    };
    let storage = SimStorage::new(26);
    let big = payload("big", 200_000);
    {
        let log = open_big(&storage);
        let j = log.journal(JOURNAL).unwrap();
        j.append(&Batch::single(b"first")).unwrap();
        j.append(&Batch::single(&big)).unwrap();
        // The process dies without closing: the next open writes `big`'s frame again.
    }
    let survivor = storage.crash(CrashMode::Process);
    let expected = vec![b"first".to_vec(), big];
    {
        let log = open_big(&survivor);
        let j = log.journal(JOURNAL).unwrap();
        assert_eq!(single_messages(&read_all(&j)), expected, "after the rewrite");
    }
    let after_power_loss = survivor.crash(CrashMode::LoseUnsynced);
    let log = open_big(&after_power_loss);
    assert_eq!(
        single_messages(&read_all(&log.journal(JOURNAL).unwrap())),
        expected,
        "after a power loss"
    );
}
