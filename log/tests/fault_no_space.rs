//! ENOSPC: a clear `AppendError::NoSpace` naming the journal and fragment, a journal that stays
//! consistent (readers see exactly the acknowledged frames, nothing half-written remains), appends
//! that succeed again once space is freed without reopening, and a clean reopen.

mod common;

use std::sync::Arc;

use common::*;
use ss_log::sim::{CrashMode, SimStorage};
use ss_log::{AppendError, Batch, Log};

const JOURNAL: &str = "nospace";

/// Checks that `result` is `NoSpace` for this journal naming `fragment`, and that its message
/// says so.
fn assert_no_space<T: std::fmt::Debug>(result: Result<T, AppendError>, fragment: &std::path::Path) {
    match result {
        Err(e @ AppendError::NoSpace { .. }) => {
            let AppendError::NoSpace { journal, fragment: f } = &e else {
                unreachable!()
            };
            assert_eq!(journal, JOURNAL);
            assert_eq!(f, fragment);
            let message = e.to_string();
            assert!(message.contains(JOURNAL), "{message}");
            assert!(message.contains("no space"), "{message}");
            assert!(message.contains(&fragment.display().to_string()), "{message}");
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
}

/// Runs out of space inside the current fragment: the append fails with `NoSpace`, the file is
/// back at the durable head, a smaller append that fits still works, raising the capacity lets
/// the big one through without reopening, and reopening (also after a crash) recovers exactly
/// the acknowledged frames.
#[test]
fn no_space_fails_the_append_and_appends_resume_when_space_returns() {
    for mode in CrashMode::ALL {
        let storage = SimStorage::new(31);
        let path = fragment_path(JOURNAL, 0);
        let big = payload("big", 300);
        let mut expected: Vec<Vec<u8>> = (0..3).map(|i| payload(&format!("ok-{i}"), 60)).collect();
        {
            let log = open_sim(&storage, 1 << 20);
            let j = log.journal(JOURNAL).unwrap();
            for p in &expected {
                j.append(&Batch::single(p)).unwrap();
            }
            let head = j.durable_head();
            storage.set_capacity(Some(storage.used_bytes() + 100));
            assert_no_space(j.append(&Batch::single(&big)), &path);
            assert!(storage.counters().enospc >= 1);
            assert!(j.poisoned().is_none(), "ENOSPC does not poison");
            assert_eq!(j.durable_head(), head);
            assert_eq!(single_messages(&read_all(&j)), expected);
            assert_eq!(
                storage.read_file(&path).unwrap().len() as u64,
                head,
                "nothing half-written remains"
            );

            let small = payload("small", 20);
            let ack = j
                .append(&Batch::single(&small))
                .expect("an append that fits still works");
            assert_eq!(ack.offset, head);
            expected.push(small);
            assert_no_space(j.submit(&Batch::single(&big)).unwrap().wait(), &path);

            storage.set_capacity(None);
            let ack2 = j
                .append(&Batch::single(&big))
                .expect("appends resume once space returns");
            assert_eq!(ack2.offset, ack.end);
            expected.push(big.clone());
            assert_eq!(single_messages(&read_all(&j)), expected);
        }
        {
            let log = open_sim(&storage, 1 << 20);
            let j = log.journal(JOURNAL).unwrap();
            assert_eq!(j.recovery_cut_bytes(), 0, "reopen is clean");
            assert_eq!(single_messages(&read_all(&j)), expected);
        }
        let survivor = storage.crash(mode);
        let log = open_sim(&survivor, 1 << 20);
        let j = log.journal(JOURNAL).unwrap();
        assert_eq!(j.recovery_cut_bytes(), 0, "{mode:?}");
        assert_eq!(single_messages(&read_all(&j)), expected, "{mode:?}");
    }
}

/// Runs out of space on the first write into a new fragment (the append rolls): the error names
/// the new fragment, which is removed again; the journal stays in the old fragment; raising the
/// capacity lets the roll happen without reopening.
#[test]
fn no_space_while_rolling_to_new_fragment_removes_it_and_recovers() {
    let storage = SimStorage::new(32);
    let payloads: Vec<Vec<u8>> = (0..4).map(|i| payload(&format!("p{i}"), 200)).collect();
    let rolls = payload("rolls", 200);
    let log = open_sim(&storage, 1024);
    let j = log.journal(JOURNAL).unwrap();
    for p in &payloads {
        j.append(&Batch::single(p)).unwrap();
    }
    let head = j.durable_head();
    assert_eq!(j.fragments().len(), 1);
    let new_fragment = fragment_path(JOURNAL, head);
    storage.set_capacity(Some(storage.used_bytes()));
    assert_no_space(j.append(&Batch::single(&rolls)), &new_fragment);
    assert!(
        storage.read_file(&new_fragment).is_none(),
        "the fragment created for the failed append is removed: {:?}",
        storage.files()
    );
    assert_eq!(j.fragments().len(), 1);
    assert_eq!(j.durable_head(), head);
    assert_eq!(single_messages(&read_all(&j)), payloads);

    storage.set_capacity(None);
    let ack = j.append(&Batch::single(&rolls)).unwrap();
    assert_eq!(ack.offset, head);
    assert_eq!(j.fragments().len(), 2);
    drop((j, log));
    let log = open_sim(&storage, 1024);
    let j = log.journal(JOURNAL).unwrap();
    assert_eq!(single_messages(&read_all(&j)), [payloads, vec![rolls]].concat());
}

/// Runs out of space in the middle of a group-commit batch that rolls: the batch's first frame
/// fits (and is written and synced into the old fragment), the second needs a new fragment that
/// has no room. Both appends fail with `NoSpace`, the old fragment is cut back to the durable
/// head so the first frame never appears (not even after a crash), and appends resume once space
/// returns.
#[test]
fn no_space_mid_batch_while_rolling_rolls_back_the_whole_batch() {
    for mode in CrashMode::ALL {
        let sim = SimStorage::new(33);
        let gated = Arc::new(GatedStorage::new(Arc::new(sim.clone())));
        // The capacity below is counted to the byte: no scan-start hint may take 32 of them.
        let options = ss_log::Options {
            scan_hint_interval_bytes: u64::MAX,
            write_bound_step_bytes: u64::MAX,
            ..opts(gated.clone(), 1024)
        };
        let log = Log::open(DATA_DIR, options).unwrap();
        let j = log.journal(JOURNAL).unwrap();
        // 248-byte frames: frames 0-3 fill the first fragment, frame 4 rolls.
        let mut expected: Vec<Vec<u8>> = (0..2).map(|i| payload(&format!("p{i}"), 200)).collect();
        for p in &expected {
            j.append(&Batch::single(p)).unwrap();
        }
        // Hold the commit of frame 2 so that frames 3 and 4 queue up as one batch behind it.
        gated.gate.arm();
        let held = payload("held", 200);
        let held_pending = j.submit(&Batch::single(&held)).unwrap();
        gated.gate.wait_held();
        let fits = j.submit(&Batch::single(&payload("fits", 200))).unwrap();
        let rolls = j.submit(&Batch::single(&payload("rolls", 200))).unwrap();
        let new_fragment = fragment_path(JOURNAL, rolls.ack().offset);
        assert_eq!(rolls.ack().offset, 4 * 248);
        // Room for exactly one more frame.
        sim.set_capacity(Some(sim.used_bytes() + 248));
        gated.gate.release();
        let held_ack = held_pending.wait().expect("the held commit completes");
        expected.push(held);
        assert_no_space(fits.wait(), &new_fragment);
        assert_no_space(rolls.wait(), &new_fragment);

        assert_eq!(j.durable_head(), held_ack.end, "{mode:?}");
        assert_eq!(single_messages(&read_all(&j)), expected, "{mode:?}");
        let old = sim.read_file(&fragment_path(JOURNAL, 0)).unwrap();
        assert_eq!(
            old.len() as u64,
            held_ack.end,
            "{mode:?}: the frame that fit is cut again"
        );
        assert!(sim.read_file(&new_fragment).is_none(), "{mode:?}");

        sim.set_capacity(None);
        let after = payload("after", 200);
        assert_eq!(j.append(&Batch::single(&after)).unwrap().offset, held_ack.end);
        expected.push(after);
        drop((j, log));
        let survivor = sim.crash(mode);
        let log = open_sim(&survivor, 1024);
        let j = log.journal(JOURNAL).unwrap();
        assert_eq!(
            single_messages(&read_all(&j)),
            expected,
            "{mode:?}: after a crash"
        );
    }
}

/// A pipelining writer that had not yet waited for its failed append used to be refused with
/// only "an earlier append failed and was rolled back", the ENOSPC behind it never reported.
/// Checks that the refusal from `submit_unless_failed` carries the journal's first failure, the
/// `NoSpace` naming the fragment, both in its message and as its root cause.
#[test]
fn refusal_after_no_space_names_the_no_space_behind_it() {
    let storage = SimStorage::new(32);
    let path = fragment_path(JOURNAL, 0);
    let log = open_sim(&storage, 1 << 20);
    let j = log.journal(JOURNAL).unwrap();
    let since = j.failures();
    j.append(&Batch::single(&payload("ok", 60))).unwrap();
    storage.set_capacity(Some(storage.used_bytes() + 100));
    let failed = j
        .submit_unless_failed(since, &Batch::single(&payload("big", 300)))
        .unwrap();
    assert_no_space(failed.wait(), &path);
    storage.set_capacity(None);
    match j.submit_unless_failed(since, &Batch::single(&payload("later", 20))) {
        Err(e @ AppendError::AfterFailure { .. }) => {
            let message = e.to_string();
            assert!(message.contains("no space"), "{message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert_no_space(Err::<(), _>(e.root_cause().clone()), &path);
        }
        Err(other) => panic!("expected AfterFailure, got {other:?}"),
        Ok(_) => panic!("expected AfterFailure, but the append was accepted"),
    }
}
