//! Retention: `remove_below` removes whole fragments below an offset (never the current one),
//! their files are gone, readers of removed ranges get `ReadError::Removed`, reads above still
//! work, and the journal reopens from its new first fragment.

mod common;

use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::*;
use ss_log::sim::{CrashMode, SimStorage};
use ss_log::{AppendAck, AppendError, Batch, Log, Options, ReadError, RetentionError};

const JOURNAL: &str = "retained";
/// 200-byte messages make 248-byte frames: four per 1024-byte fragment.
const FRAME_BYTES: u64 = 248;
const FRAGMENT_MAX_BYTES: u64 = 1024;

fn assert_removed(result: Result<Option<ss_log::Frame>, ReadError>, offset: u64, first: u64) {
    match result {
        Err(e @ ReadError::Removed { .. }) => {
            let ReadError::Removed {
                journal,
                offset: o,
                first: f,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!((journal.as_str(), *o, *f), (JOURNAL, offset, first));
            assert!(e.to_string().contains("removed"), "{e}");
        }
        other => panic!("expected Removed, got {other:?}"),
    }
}

/// The names of every file in the simulated storage, sorted.
fn file_names(storage: &SimStorage) -> Vec<String> {
    let mut names: Vec<String> = storage
        .files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Removes the fragments below an offset in the middle of the fourth fragment (the first three),
/// then everything but the current fragment; checks the files, `first_offset`, readers below
/// (new and already positioned) and above, appends, a reopen and a crash.
#[test]
fn remove_below_removes_whole_fragments_and_reads_of_removed_ranges_fail() {
    let storage = SimStorage::new(61);
    let payloads: Vec<Vec<u8>> = (0..22).map(|i| payload(&format!("r{i}"), 200)).collect();
    let log = open_sim(&storage, FRAGMENT_MAX_BYTES);
    let j = log.journal(JOURNAL).unwrap();
    let acks: Vec<AppendAck> = payloads
        .iter()
        .map(|p| j.append(&Batch::single(p)).unwrap())
        .collect();
    let begins: Vec<u64> = j.fragments().iter().map(|f| f.begin).collect();
    assert_eq!(begins, (0..6).map(|i| i * 4 * FRAME_BYTES).collect::<Vec<_>>());
    let mut positioned = j.reader(acks[4].offset);
    positioned.try_next().unwrap().unwrap();

    let cut = acks[13].offset; // inside the fourth fragment
    assert_eq!(j.remove_below(cut).unwrap(), 3);
    for &b in &begins[..3] {
        assert!(
            storage.read_file(&fragment_path(JOURNAL, b)).is_none(),
            "fragment {b} removed"
        );
    }
    for &b in &begins[3..] {
        assert!(
            storage.read_file(&fragment_path(JOURNAL, b)).is_some(),
            "fragment {b} kept"
        );
    }
    let first = begins[3];
    assert_eq!(j.first_offset(), first);
    assert_eq!(j.fragments().first().unwrap().begin, first);
    assert_removed(j.reader(0).try_next(), 0, first);
    assert_removed(j.reader(acks[11].offset).try_next(), acks[11].offset, first);
    assert_removed(positioned.try_next(), acks[5].offset, first);
    assert_eq!(single_messages(&read_from(&j, first)), payloads[12..]);
    assert_eq!(single_messages(&read_from(&j, cut)), payloads[13..]);
    assert_eq!(j.remove_below(cut).unwrap(), 0, "removing again is a no-op");
    assert_eq!(j.remove_below(0).unwrap(), 0);

    assert_eq!(
        j.remove_below(u64::MAX).unwrap(),
        2,
        "all but the current fragment"
    );
    let current = begins[5];
    assert_eq!(j.first_offset(), current);
    // Only the current fragment is left, beside the first two removed, renamed aside to be
    // recycled (`Options::recycle`: at most `RECYCLED_MAX` wait; the others were unlinked), and
    // the scan-start hint (never removed by retention).
    assert_eq!(ss_log::spare::RECYCLED_MAX, 2);
    let expected_files = [
        ss_log::fragment::fragment_file_name(current),
        ss_log::spare::recycled_file_name(begins[0]),
        ss_log::spare::recycled_file_name(begins[1]),
        ss_log::scan_hint::SCAN_HINT_FILE.to_string(),
    ];
    assert_eq!(file_names(&storage), expected_files, "{:?}", storage.files());
    assert_removed(j.reader(begins[4]).try_next(), begins[4], current);
    assert_eq!(single_messages(&read_all(&j)), payloads[20..]);
    assert_eq!(j.last_frame().unwrap().unwrap().offset, acks[21].offset);
    let next = j.append(&Batch::single(b"after retention")).unwrap();
    assert_eq!(next.offset, acks[21].end);
    drop((positioned, j, log));

    let log = open_sim(&storage, FRAGMENT_MAX_BYTES);
    let j = log.journal(JOURNAL).unwrap();
    assert_eq!(j.first_offset(), current);
    assert_eq!(j.durable_head(), next.end);
    assert_removed(j.reader(0).try_next(), 0, current);
    assert_eq!(read_all(&j).len(), 3);
    j.append(&Batch::single(b"after reopen")).unwrap();
    drop((j, log));

    let survivor = storage.crash(CrashMode::LoseUnsynced);
    assert_eq!(
        file_names(&survivor),
        expected_files,
        "removals were made durable (directory synced)"
    );
    let log = open_sim(&survivor, FRAGMENT_MAX_BYTES);
    assert_eq!(read_all(&log.journal(JOURNAL).unwrap()).len(), 4);
}

/// On the real filesystem: the fragment files are unlinked, a frame read (zero-copy, from a
/// memory map) before the removal stays readable, and the journal reopens.
#[test]
fn remove_below_unlinks_files_on_real_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        fragment_max_bytes: FRAGMENT_MAX_BYTES,
        frame_max_bytes: 1024,
        pending_max_bytes: 4096,
        ..Options::default()
    };
    let log = Log::open(dir.path(), opts.clone()).unwrap();
    let j = log.journal(JOURNAL).unwrap();
    let payloads: Vec<Vec<u8>> = (0..10).map(|i| payload(&format!("f{i}"), 200)).collect();
    let acks: Vec<_> = payloads
        .iter()
        .map(|p| j.append(&Batch::single(p)).unwrap())
        .collect();
    let held = j.reader(0).try_next().unwrap().unwrap();
    let paths: Vec<_> = j.fragments().into_iter().map(|f| f.path).collect();
    assert_eq!(paths.len(), 3);
    assert_eq!(j.remove_below(acks[9].offset).unwrap(), 2);
    assert!(!paths[0].exists() && !paths[1].exists() && paths[2].exists());
    assert_eq!(held.messages().next().unwrap().unwrap(), &payloads[0][..]);
    assert_removed(j.reader(0).try_next(), 0, acks[8].offset);
    drop((j, log));
    let log = Log::open(dir.path(), opts).unwrap();
    let j = log.journal(JOURNAL).unwrap();
    assert_eq!(single_messages(&read_all(&j)), payloads[8..]);
}

/// A read-only journal refuses retention.
#[test]
fn remove_below_on_read_only_journal_is_refused() {
    let storage = SimStorage::new(62);
    {
        let log = open_sim(&storage, FRAGMENT_MAX_BYTES);
        log.journal(JOURNAL)
            .unwrap()
            .append(&Batch::single(b"x"))
            .unwrap();
    }
    let ro = Log::open_read_only(DATA_DIR, sim_opts(&storage, FRAGMENT_MAX_BYTES)).unwrap();
    let j = ro.existing_journal(JOURNAL).unwrap();
    assert!(matches!(
        j.remove_below(u64::MAX),
        Err(RetentionError::ReadOnly { .. })
    ));
}

/// `remove_below(durable_head)` while a commit that rolls to a new fragment was in progress used
/// to remove the last fragment holding durable data (the new one begins at the head); when that
/// commit then failed and was rolled back, no fragment was left and the writer thread panicked,
/// leaving the append waiting forever. Checks the append fails with `NoSpace` instead and the
/// journal goes on.
#[test]
fn remove_below_during_failing_rolling_commit_keeps_a_fragment() {
    let sim = SimStorage::new(63);
    let gated = Arc::new(GatedStorage::new(Arc::new(sim.clone())));
    let log = Log::open(DATA_DIR, opts(gated.clone(), FRAGMENT_MAX_BYTES)).unwrap();
    let j = log.journal(JOURNAL).unwrap();
    let payloads: Vec<Vec<u8>> = (0..4).map(|i| payload(&format!("p{i}"), 200)).collect();
    for p in &payloads {
        j.append(&Batch::single(p)).unwrap();
    }
    let head = j.durable_head();
    // The next append rolls: the writer creates the fragment at `head`, then writes (held here).
    gated.write_gate.arm();
    let rolls = j.submit(&Batch::single(&payload("rolls", 200))).unwrap();
    gated.write_gate.wait_held();
    assert_eq!(j.fragments().last().unwrap().begin, head);
    let removed = j.remove_below(j.durable_head()).unwrap();
    assert_eq!(
        removed, 0,
        "the fragment holding the durable frames stays until the roll commits"
    );
    sim.set_capacity(Some(sim.used_bytes()));
    gated.write_gate.release();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(rolls.wait()).unwrap());
    let result = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the failed commit is reported (the writer thread must survive)");
    assert!(matches!(result, Err(AppendError::NoSpace { .. })), "{result:?}");
    sim.set_capacity(None);
    let ack = j.append(&Batch::single(b"after")).unwrap();
    assert_eq!(ack.offset, head);
    let kept = read_all(&j);
    assert_eq!(single_messages(&kept[..4]), payloads);
    assert_eq!(kept.len(), 5);
    assert_eq!(
        j.remove_below(j.durable_head()).unwrap(),
        1,
        "once the roll is durable, it can go"
    );
    let kept = read_all(&j);
    drop((j, log));
    let log = open_sim(&sim, FRAGMENT_MAX_BYTES);
    assert_eq!(read_all(&log.journal(JOURNAL).unwrap()), kept);
}
