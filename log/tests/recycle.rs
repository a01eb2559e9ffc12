//! Fragment recycling (`Options::recycle`, on by default): fragments removed by retention are
//! renamed aside and become the next fragments, keeping their old bytes. Those stale frames never
//! validate at their new offsets, so reads, recovery and crashes at every storage call (process
//! crash and power loss) find exactly the acknowledged frames and the right head.

mod common;

use std::path::Path;

use common::*;
use ss_log::sim::{CrashMode, SimStorage};
use ss_log::spare::{RECYCLED_MAX, RECYCLED_PREFIX};
use ss_log::{Batch, Journal, Log};

const JOURNAL: &str = "recycled";
/// 200-byte messages make 248-byte frames: four per 1024-byte fragment.
const FRAME_BYTES: u64 = 248;
const FRAGMENT_MAX_BYTES: u64 = 1024;

fn recycled_files(storage: &SimStorage) -> Vec<String> {
    storage
        .files()
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .filter(|n| n.starts_with(RECYCLED_PREFIX))
        .collect()
}

fn file_len(storage: &SimStorage, path: &Path) -> u64 {
    storage.read_file(path).expect("file exists").len() as u64
}

/// Appends `count` tagged 200-byte messages, one frame each; returns the payloads.
fn append_tagged(j: &Journal, tag: &str, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let p = payload(&format!("{tag}{i}"), 200);
            j.append(&Batch::single(&p)).unwrap();
            p
        })
        .collect()
}

/// Three full fragments, then retention of the first two: they are renamed aside (their names
/// gone, their bytes kept), and the next two rolls reuse them, stale frames and all.
fn journal_with_recycled_fragments(storage: &SimStorage) -> (Log, Journal, Vec<Vec<u8>>) {
    let log = open_sim(storage, FRAGMENT_MAX_BYTES);
    let j = log.journal(JOURNAL).unwrap();
    let mut written = append_tagged(&j, "a", 12);
    assert_eq!(j.fragments().len(), 3);
    assert_eq!(j.remove_below(j.durable_head()).unwrap(), 2);
    assert_eq!(recycled_files(storage).len(), RECYCLED_MAX.min(2));
    for b in [0, 4 * FRAME_BYTES] {
        assert!(
            storage.read_file(&fragment_path(JOURNAL, b)).is_none(),
            "fragment {b} removed"
        );
    }
    // One frame rolls into a recycled file: it keeps its old length, stale frames beyond the head.
    written.extend(append_tagged(&j, "b", 1));
    let last = j.fragments().last().unwrap().clone();
    assert_eq!(last.begin, 12 * FRAME_BYTES);
    assert_eq!(recycled_files(storage).len(), 1, "the roll took a recycled file");
    assert!(
        file_len(storage, &last.path) > FRAME_BYTES,
        "the new fragment is a recycled file holding stale bytes past its one frame"
    );
    (log, j, written)
}

#[test]
fn retention_renames_fragments_aside_and_rolls_reuse_them() {
    let storage = SimStorage::new(5);
    let (_log, j, written) = journal_with_recycled_fragments(&storage);
    let before = j.stats();
    // Three more frames fill that fragment, the next rolls into the other recycled file.
    let mut all = written;
    all.extend(append_tagged(&j, "c", 4));
    assert!(recycled_files(&storage).is_empty(), "both recycled files reused");
    let after = j.stats();
    assert_eq!(
        after.fragments_created_total - before.fragments_created_total,
        1,
        "a recycled fragment counts as created"
    );
    // Readers see exactly the appended frames: no stale frame validates past the head.
    let first = j.first_offset();
    assert_eq!(
        single_messages(&read_from(&j, first)),
        all[(first / FRAME_BYTES) as usize..]
    );
    assert_eq!(j.durable_head(), all.len() as u64 * FRAME_BYTES);
}

#[test]
fn recovery_over_a_recycled_fragment_with_stale_bytes_finds_the_head() {
    for mode in [CrashMode::Process, CrashMode::PowerLoss, CrashMode::TearUnsynced] {
        let storage = SimStorage::new(9);
        let (log, j, written) = journal_with_recycled_fragments(&storage);
        let head = j.durable_head();
        let last_path = j.fragments().last().unwrap().path.clone();
        let recycled_len = file_len(&storage, &last_path);
        // The process dies while the journal is open (a clean close would cut the stale bytes).
        let survivor = storage.crash(mode);
        drop(j);
        drop(log);
        let log = open_sim(&survivor, FRAGMENT_MAX_BYTES);
        let j = log.journal(JOURNAL).unwrap();
        assert_eq!(
            j.durable_head(),
            head,
            "{mode:?}: the head is the last acknowledged frame's end"
        );
        // Every append was acknowledged, so no torn write lies past the head: only stale frames,
        // which stay, so that commits into the file do not grow it again.
        assert_eq!(j.recovery_cut_bytes(), 0, "{mode:?}: nothing zeroed or cut");
        assert_eq!(
            file_len(&survivor, &last_path),
            recycled_len,
            "{mode:?}: the recycled file keeps its length"
        );
        let last = j.last_frame().unwrap().expect("a last frame");
        assert_eq!((last.offset, last.end), (head - FRAME_BYTES, head), "{mode:?}");
        let first = j.first_offset();
        assert_eq!(
            single_messages(&read_from(&j, first)),
            written[(first / FRAME_BYTES) as usize..],
            "{mode:?}"
        );
        // And appends continue there, across the other recycled file.
        let more = append_tagged(&j, "d", 5);
        let frames = read_from(&j, head);
        assert_eq!(single_messages(&frames), more, "{mode:?}");
    }
}

/// A torn write into a recycled fragment: its first frame never reached the disk, its second
/// did, whole, with a stale frame after it. Recovery must neutralise that second frame (it is
/// valid at its own offset) without cutting the recycled file: otherwise an append of the same
/// length as the lost frame, then a crash, would bring it back as if it had been appended
/// after that append.
#[test]
fn whole_frames_of_a_torn_write_into_a_recycled_fragment_never_come_back() {
    let storage = SimStorage::new(11);
    let (log, j, mut acked) = journal_with_recycled_fragments(&storage);
    let torn_begin = j.durable_head();
    let last_path = j.fragments().last().unwrap().path.clone();
    let last_begin = j.fragments().last().unwrap().begin;
    // The process dies while the journal is open (a clean close would cut the stale bytes).
    let survivor = storage.crash(CrashMode::Process);
    drop(j);
    drop(log);
    // One group-commit write of two frames past the head, as the writer lays them out, with the
    // first frame's header damaged, and the recycled file's last stale frame after them.
    let mut bytes = survivor.read_file(&last_path).unwrap();
    let recycled_len = bytes.len() as u64;
    let salt = ss_log::frame::journal_salt(JOURNAL);
    for i in 0..2u64 {
        let mut message = Vec::new();
        Batch::single(&payload(&format!("t{i}"), 200))
            .payload()
            .clone_into(&mut message);
        let header = ss_log::frame::FrameHeader {
            offset: torn_begin + i * FRAME_BYTES,
            write_begin: torn_begin,
            payload_len: message.len() as u32,
            kind: ss_log::frame::FRAME_KIND_BATCH,
            payload_crc: ss_log::frame::payload_crc(salt, &message),
            message_count: 1,
        };
        let mut frame = Vec::new();
        ss_log::frame::encode_frame(&mut frame, salt, &header, &message);
        assert_eq!(frame.len() as u64, FRAME_BYTES);
        let at = (header.offset - last_begin) as usize;
        bytes[at..at + frame.len()].copy_from_slice(&frame);
    }
    assert!((torn_begin - last_begin + 2 * FRAME_BYTES) < recycled_len);
    bytes[(torn_begin - last_begin) as usize + 9] ^= 1;
    survivor.write_file(&last_path, &bytes);
    // The writer syncs a write bound past a write into a recycled file before making it; this
    // one ends exactly at the torn write's end, so the search past the head still covers it.
    let torn_end = torn_begin - last_begin + 2 * FRAME_BYTES;
    record_write_bound(&survivor, JOURNAL, last_begin, torn_end);
    {
        let log = open_sim(&survivor, FRAGMENT_MAX_BYTES);
        let j = log.journal(JOURNAL).unwrap();
        assert_eq!(
            j.durable_head(),
            torn_begin,
            "the torn write is not part of the journal"
        );
        assert_eq!(
            j.recovery_cut_bytes(),
            2 * FRAME_BYTES,
            "zeroed from the head to the end of the torn write's whole second frame, nothing else"
        );
        assert_eq!(
            file_len(&survivor, &last_path),
            recycled_len,
            "the recycled file keeps its length"
        );
        // An append exactly as long as the lost frame ends where the torn write's second began.
        let p = payload("u0", 200);
        j.append(&Batch::single(&p)).unwrap();
        acked.push(p);
        std::mem::forget(log); // dies without closing
    }
    let survivor = survivor.crash(CrashMode::Process);
    let log = open_sim(&survivor, FRAGMENT_MAX_BYTES);
    let j = log.journal(JOURNAL).unwrap();
    let first = j.first_offset();
    assert_eq!(
        single_messages(&read_from(&j, first)),
        acked[(first / FRAME_BYTES) as usize..],
        "exactly the acknowledged appends, none of the torn write"
    );
}

/// Crashes at every storage call while appending into recycled fragments (rolls into them,
/// their first writes, over stale frames): after either crash mode, every acknowledged append is
/// there, in order, and nothing else but a prefix of the unacknowledged ones.
#[test]
fn crashes_at_every_call_while_writing_over_stale_frames_keep_exactly_the_acknowledged() {
    for mode in [CrashMode::Process, CrashMode::PowerLoss] {
        for crash_at in 0..40 {
            let storage = SimStorage::new(100 + crash_at);
            let (log, j, mut acked) = journal_with_recycled_fragments(&storage);
            storage.crash_after_ops(crash_at);
            let mut attempted = acked.clone();
            for i in 0..8 {
                let p = payload(&format!("e{i}"), 200);
                attempted.push(p.clone());
                match j.append(&Batch::single(&p)) {
                    Ok(_) => acked.push(p),
                    Err(_) => break,
                }
            }
            drop(j);
            drop(log);
            let survivor = storage.crash(mode);
            let log = Log::open(DATA_DIR, sim_opts(&survivor, FRAGMENT_MAX_BYTES))
                .unwrap_or_else(|e| panic!("{mode:?}, crash at {crash_at}: reopen: {e}"));
            let j = log.journal(JOURNAL).unwrap();
            let first = j.first_offset();
            let skip = (first / FRAME_BYTES) as usize;
            let read = single_messages(&read_from(&j, first));
            assert!(
                read.len() >= acked.len() - skip,
                "{mode:?}, crash at {crash_at}: {} frames read, {} acknowledged",
                read.len(),
                acked.len() - skip
            );
            assert_eq!(
                read,
                attempted[skip..skip + read.len()],
                "{mode:?}, crash at {crash_at}: frames are a prefix of what was appended"
            );
            assert_eq!(j.durable_head(), (skip + read.len()) as u64 * FRAME_BYTES);
        }
    }
}

/// A reader of this process still positioned in a removed fragment keeps its bytes: the roll
/// does not reuse a recycled file whose fragment a reader holds.
#[test]
fn a_fragment_held_by_a_reader_is_not_reused() {
    let storage = SimStorage::new(21);
    let log = open_sim(&storage, FRAGMENT_MAX_BYTES);
    let j = log.journal(JOURNAL).unwrap();
    let written = append_tagged(&j, "a", 12);
    let mut reader = j.reader(0);
    let frame = reader.try_next().unwrap().unwrap();
    assert_eq!(frame.payload().as_ref().len(), 4 + 200);
    let held = frame.payload().clone();
    assert_eq!(j.remove_below(j.durable_head()).unwrap(), 2);
    // Two rolls: the first may reuse fragment 992's file, never fragment 0's, which is held.
    append_tagged(&j, "b", 8);
    assert_eq!(
        recycled_files(&storage),
        vec![format!("{RECYCLED_PREFIX}00000000000000000000.spare")],
        "the held fragment's file still waits"
    );
    assert_eq!(held, frame.payload().clone());
    assert_eq!(&held[4..], &written[0][..], "the held payload is unchanged");
    drop(reader);
    // Once the reader is gone, the next roll reuses it.
    append_tagged(&j, "c", 4);
    assert!(recycled_files(&storage).is_empty());
}

/// Recycled files left by an earlier process are adopted at open and reused.
#[test]
fn recycled_files_survive_a_reopen_and_are_reused() {
    let storage = SimStorage::new(33);
    {
        let log = open_sim(&storage, FRAGMENT_MAX_BYTES);
        let j = log.journal(JOURNAL).unwrap();
        append_tagged(&j, "a", 12);
        j.remove_below(j.durable_head()).unwrap();
        assert_eq!(recycled_files(&storage).len(), 2);
    }
    let log = open_sim(&storage, FRAGMENT_MAX_BYTES);
    let j = log.journal(JOURNAL).unwrap();
    append_tagged(&j, "b", 1);
    assert_eq!(
        recycled_files(&storage).len(),
        1,
        "a roll after reopening reused one"
    );
    let last = j.fragments().last().unwrap().clone();
    assert!(
        file_len(&storage, &last.path) > FRAME_BYTES,
        "the new fragment is a recycled file"
    );
}

/// `Options::recycle = false`: retention unlinks, as before.
#[test]
fn without_recycling_retention_unlinks() {
    let storage = SimStorage::new(34);
    let opts = ss_log::Options {
        recycle: false,
        ..sim_opts(&storage, FRAGMENT_MAX_BYTES)
    };
    let log = Log::open(DATA_DIR, opts).unwrap();
    let j = log.journal(JOURNAL).unwrap();
    append_tagged(&j, "a", 12);
    assert_eq!(j.remove_below(j.durable_head()).unwrap(), 2);
    assert!(recycled_files(&storage).is_empty());
    append_tagged(&j, "b", 1);
    let last = j.fragments().last().unwrap().clone();
    assert_eq!(
        file_len(&storage, &last.path),
        FRAME_BYTES,
        "a new, growing fragment"
    );
}

/// Real files, a read-only `Log` beside the writer (as `verify` or `journal read` beside `run`):
/// its descriptors hold shared claims, so the writer does not reuse a recycled file that the
/// read-only reader still maps; it unlinks it instead, and the reader's bytes stay as they were.
/// A recycled file that no reader holds is reused. (Before the claims, the reused file's new
/// frames showed through the reader's map.)
#[test]
fn a_read_only_process_keeps_the_bytes_of_a_fragment_the_writer_recycles() {
    let dir = tempfile::tempdir().unwrap();
    let real = |fragment_max_bytes| ss_log::Options {
        storage: std::sync::Arc::new(ss_log::RealStorage),
        ..opts(std::sync::Arc::new(ss_log::RealStorage), fragment_max_bytes)
    };
    let log = Log::open(dir.path(), real(FRAGMENT_MAX_BYTES)).unwrap();
    let j = log.journal(JOURNAL).unwrap();
    let written = append_tagged(&j, "a", 12);
    let journal_dir = dir.path().join(ss_log::JOURNALS_DIR).join(JOURNAL);
    let recycled = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&journal_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(RECYCLED_PREFIX))
            .collect();
        names.sort();
        names
    };

    let read_only = Log::open_read_only(dir.path(), real(FRAGMENT_MAX_BYTES)).unwrap();
    let rj = read_only.existing_journal(JOURNAL).unwrap();
    let mut reader = rj.reader(0);
    let frame = reader.try_next().unwrap().unwrap();
    let held = frame.payload().clone();
    let held_copy = held.to_vec();
    assert_eq!(&held_copy[4..], &written[0][..]);

    assert_eq!(j.remove_below(j.durable_head()).unwrap(), 2);
    assert_eq!(recycled().len(), 2, "both removed fragments wait to be reused");
    // Two rolls. Fragment 0's file is mapped by the read-only reader: unlinked, not reused.
    // Fragment 992's file was never opened by it: reused.
    append_tagged(&j, "b", 8);
    assert!(recycled().is_empty(), "one reused, the held one unlinked");
    assert_eq!(
        held.to_vec(),
        held_copy,
        "the read-only reader's mapped bytes did not change"
    );
    // The reader reads the rest of its fragment as it was written.
    for expected in &written[1..4] {
        let frame = reader.try_next().unwrap().unwrap();
        assert_eq!(&frame.payload()[4..], &expected[..]);
    }
}

/// A journal reset by hand (its fragments and hint deleted, its recycled files left) starts
/// again at offset 0. A recycled file of the old journal must not become a fragment of the new
/// one: taken at the very begin it had before, its stale frames would be valid at their own
/// offsets, and the first recovery would count them as appended.
#[test]
fn a_journal_reset_by_hand_does_not_reuse_the_old_journals_recycled_files() {
    use ss_log::storage::Storage;
    let storage = SimStorage::new(12);
    let (log, j, _) = journal_with_recycled_fragments(&storage);
    let old_waiting = recycled_files(&storage);
    assert_eq!(old_waiting, [ss_log::spare::recycled_file_name(4 * FRAME_BYTES)]);
    drop(j);
    drop(log);
    let dir = fragment_path(JOURNAL, 0).parent().unwrap().to_path_buf();
    for name in storage.list_dir(&dir).unwrap() {
        if !name.starts_with(RECYCLED_PREFIX) {
            storage.remove_file(&dir.join(name)).unwrap();
        }
    }
    let log = open_sim(&storage, FRAGMENT_MAX_BYTES);
    let j = log.journal(JOURNAL).unwrap();
    assert_eq!(j.durable_head(), 0, "the journal starts again");
    assert!(
        recycled_files(&storage).is_empty(),
        "the old journal's recycled files are gone"
    );
    // The same appends as the old journal: the roll at 4 frames lands where the old file began.
    let new = append_tagged(&j, "n", 5);
    let survivor = storage.crash(CrashMode::Process);
    drop(j);
    drop(log);
    let log = open_sim(&survivor, FRAGMENT_MAX_BYTES);
    let j = log.journal(JOURNAL).unwrap();
    assert_eq!(
        single_messages(&read_from(&j, 0)),
        new,
        "exactly the new journal's appends"
    );
}

/// The write bound (docs/design.md, "The scan-start hint"): a crash at any moment leaves, for a
/// recycled last fragment, a durable bound at or past everything written into it. Each count of
/// appends is followed by a crash that keeps only what was synced.
#[test]
fn every_write_into_a_recycled_fragment_lies_under_a_write_bound_synced_before_it() {
    let salt = ss_log::frame::journal_salt(JOURNAL);
    let dir = fragment_path(JOURNAL, 0).parent().unwrap().to_path_buf();
    let mut bounded = 0;
    for appends in 0..10 {
        let storage = SimStorage::new(30 + appends as u64);
        let (log, j, _) = journal_with_recycled_fragments(&storage);
        append_tagged(&j, "w", appends);
        let last = j.fragments().last().unwrap().clone();
        // What the page cache holds: every byte the writer wrote into the file.
        let written_end = storage.read_file(&last.path).unwrap().len() as u64;
        let survivor = storage.crash(CrashMode::LoseUnsynced);
        drop(j);
        drop(log);
        let recycled = written_end > last.end - last.begin;
        if !recycled {
            continue;
        }
        bounded += 1;
        let hints = ss_log::scan_hint::read_hints(&survivor, &dir, salt);
        let bound = hints
            .bound
            .unwrap_or_else(|| panic!("{appends} appends: no durable write bound"));
        assert_eq!(
            bound.fragment_begin, last.begin,
            "{appends} appends: bound names the last fragment"
        );
        assert!(
            bound.bound >= last.end - last.begin,
            "{appends} appends: bound {} under the {} bytes written",
            bound.bound,
            last.end - last.begin
        );
    }
    assert!(bounded >= 5, "only {bounded} cases ended in a recycled fragment");
}

/// Bigger recycled fragments, for counting what open reads: 64 KiB fragments of 1 KiB frames,
/// retention down to the head, then `frames` appends into a recycled file; the process dies
/// without closing (a clean close would cut the stale bytes). Returns the storage after the
/// crash, the head and the last fragment's begin and path.
fn crashed_over_a_recycled_fragment(seed: u64, frames: usize) -> (SimStorage, u64, u64, std::path::PathBuf) {
    let storage = SimStorage::new(seed);
    let log = Log::open(DATA_DIR, big_fragment_opts(std::sync::Arc::new(storage.clone()))).unwrap();
    let j = log.journal(JOURNAL).unwrap();
    let frame = |tag: String| Batch::single(&payload(&tag, 1000));
    let mut i = 0;
    while j.fragments().len() < 3 {
        j.append(&frame(format!("a{i}"))).unwrap();
        i += 1;
    }
    j.remove_below(j.fragments().last().unwrap().begin).unwrap();
    // One roll, into a recycled file.
    while j.fragments().len() < 2 {
        j.append(&frame(format!("b{i}"))).unwrap();
        i += 1;
    }
    for k in 0..frames {
        j.append(&frame(format!("c{k}"))).unwrap();
    }
    let last = j.fragments().last().unwrap().clone();
    assert!(
        storage.read_file(&last.path).unwrap().len() as u64 > (60 << 10),
        "the last fragment is a recycled file, stale bytes to its end"
    );
    let head = j.durable_head();
    let survivor = storage.crash(CrashMode::Process);
    drop(j);
    drop(log);
    (survivor, head, last.begin, last.path)
}

fn big_fragment_opts(storage: std::sync::Arc<dyn ss_log::Storage>) -> ss_log::Options {
    ss_log::Options {
        fragment_max_bytes: 64 << 10,
        frame_max_bytes: 8 << 10,
        pending_max_bytes: 32 << 10,
        scan_hint_interval_bytes: 4 << 10,
        write_bound_step_bytes: 4 << 10,
        storage,
        ..ss_log::Options::default()
    }
}

/// Opens the crashed journal over `storage` counting fragment reads; returns the head and the
/// fragment bytes open read.
fn open_counting(storage: &SimStorage) -> Result<(u64, u64), ss_log::OpenError> {
    let counting = CountingStorage::new(std::sync::Arc::new(storage.clone()));
    let counts = counting.counts.clone();
    let log = Log::open(DATA_DIR, big_fragment_opts(std::sync::Arc::new(counting)))?;
    let j = log.existing_journal(JOURNAL)?;
    let read = counts
        .fragment_bytes_read
        .load(std::sync::atomic::Ordering::Relaxed);
    Ok((j.durable_head(), read))
}

/// Issue 12, criterion 5, after a crash: open reads a recycled last fragment from the scan-start
/// hint to the write bound, not its stale bytes to the end of the file (what cost 43-60 ms from a
/// cold disk with 32 MiB fragments). Without the bound record, the same state reads them all.
#[test]
fn after_a_crash_over_a_recycled_fragment_open_reads_only_up_to_the_write_bound() {
    let (storage, head, last_begin, last_path) = crashed_over_a_recycled_fragment(41, 6);
    let file_len = storage.read_file(&last_path).unwrap().len() as u64;
    let (opened_head, read) = open_counting(&storage).unwrap();
    assert_eq!(opened_head, head);
    // From the hint (< 4 KiB + one write behind the head) to the bound (< 4 KiB + one write past it).
    assert!(
        read <= 12 << 10,
        "open read {read} bytes of a {file_len}-byte fragment whose frames end at {}",
        head - last_begin
    );

    let (storage, head, _, _) = crashed_over_a_recycled_fragment(41, 6);
    let hint_path = last_path.with_file_name(ss_log::scan_hint::SCAN_HINT_FILE);
    let hint = storage.read_file(&hint_path).unwrap();
    storage.write_file(&hint_path, &hint[..ss_log::scan_hint::SCAN_HINT_BYTES]);
    let (opened_head, read) = open_counting(&storage).unwrap();
    assert_eq!(opened_head, head);
    assert!(
        read >= file_len - (head - last_begin),
        "without a bound open reads the stale bytes to the end ({read} bytes read)"
    );
}

/// A bound record that does not hold (a bug, or a file put there by hand) must never cost a
/// frame: frames running up to it, or one crossing it, make open read and search to the end.
#[test]
fn a_write_bound_the_frames_pass_is_ignored_and_costs_no_frame() {
    for bound in [8, 1000, 1024, 1032, 2048, 4096] {
        let (storage, head, last_begin, last_path) = crashed_over_a_recycled_fragment(43, 6);
        // No scan-start record, so open validates from the fragment's start, through the bound.
        forget_scan_hint(&storage, JOURNAL);
        record_write_bound(&storage, JOURNAL, last_begin, bound);
        assert!(head - last_begin > bound, "the frames pass {bound}");
        let hint_path = last_path.with_file_name(ss_log::scan_hint::SCAN_HINT_FILE);
        let hints = ss_log::scan_hint::read_hints(
            &storage,
            hint_path.parent().unwrap(),
            ss_log::frame::journal_salt(JOURNAL),
        );
        assert_eq!((hints.scan, hints.bound.map(|b| b.bound)), (None, Some(bound)));
        let (opened_head, _) = open_counting(&storage).unwrap();
        assert_eq!(opened_head, head, "bound at {bound}");
    }
}

/// Damage under the bound is still found: with the scan-start record gone (so open validates
/// from the fragment's start), a damaged first frame followed by frames of later writes is
/// refused as damage, not cut as a torn tail.
#[test]
fn damage_under_the_write_bound_is_still_refused() {
    let (storage, _, last_begin, last_path) = crashed_over_a_recycled_fragment(47, 6);
    let hint_path = last_path.with_file_name(ss_log::scan_hint::SCAN_HINT_FILE);
    let mut hint = storage.read_file(&hint_path).unwrap();
    hint[..ss_log::scan_hint::SCAN_HINT_BYTES].fill(0);
    storage.write_file(&hint_path, &hint);
    let hints = ss_log::scan_hint::read_hints(
        &storage,
        hint_path.parent().unwrap(),
        ss_log::frame::journal_salt(JOURNAL),
    );
    assert_eq!(
        hints.bound.map(|b| b.fragment_begin),
        Some(last_begin),
        "the bound is kept"
    );
    let mut bytes = storage.read_file(&last_path).unwrap();
    bytes[20] ^= 0x40;
    storage.write_file(&last_path, &bytes);
    let error = open_counting(&storage).unwrap_err().to_string();
    assert!(error.contains("a frame from a later write follows"), "{error}");
}

/// A bound record on disk naming a fragment begin is kept true whatever file takes that name:
/// here a new (growing) file, which needs no bound of its own, takes the begin a record names
/// with a small bound (as a batch that rolled into a recycled file there and was rolled back
/// leaves it). Writes into it extend the record; left as it was, a crash would have recovery
/// trust it and search past the frames only up to it.
#[test]
fn a_bound_record_left_for_a_begin_is_kept_true_by_a_new_file_taking_it() {
    let storage = SimStorage::new(53);
    let second = 4 * FRAME_BYTES;
    {
        let log = open_sim(&storage, FRAGMENT_MAX_BYTES);
        let j = log.journal(JOURNAL).unwrap();
        append_tagged(&j, "a", 3);
        assert_eq!(j.fragments().len(), 1);
    }
    record_write_bound(&storage, JOURNAL, second, 96);
    let log = open_sim(&storage, FRAGMENT_MAX_BYTES);
    let j = log.journal(JOURNAL).unwrap();
    append_tagged(&j, "b", 6);
    let fragments = j.fragments();
    assert_eq!(
        fragments[1].begin, second,
        "the journal rolled into the recorded begin"
    );
    assert_eq!(
        storage.read_file(&fragments[1].path).unwrap().len() as u64,
        fragments[1].end - second,
        "a new, growing file"
    );
    let survivor = storage.crash(CrashMode::LoseUnsynced);
    drop(j);
    drop(log);
    let dir = fragment_path(JOURNAL, 0).parent().unwrap().to_path_buf();
    let bound = ss_log::scan_hint::read_hints(&survivor, &dir, ss_log::frame::journal_salt(JOURNAL))
        .bound
        .expect("a bound record");
    assert_eq!(bound.fragment_begin, second);
    assert!(
        bound.bound >= fragments[1].end - second,
        "the record ({} bytes) covers the {} bytes written",
        bound.bound,
        fragments[1].end - second
    );
}

/// Waiting files removed by hand (`recycled-*.spare` are exactly what an operator short of
/// space deletes): the roll skips them and creates a new fragment. Before, the roll failed
/// ("write to <new fragment> failed: No such file or directory", naming a fragment that never
/// existed), the append with it, and `run --retention` stopped with exit 3.
#[test]
fn recycled_files_removed_by_hand_are_skipped_by_the_roll() {
    let storage = SimStorage::new(11);
    let log = open_sim(&storage, FRAGMENT_MAX_BYTES);
    let j = log.journal(JOURNAL).unwrap();
    let mut written = append_tagged(&j, "a", 12);
    assert_eq!(j.remove_below(j.durable_head()).unwrap(), 2);
    let waiting: Vec<_> = storage
        .files()
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(RECYCLED_PREFIX))
        .collect();
    assert!(!waiting.is_empty());
    for path in &waiting {
        ss_log::Storage::remove_file(&storage, path).expect("remove a waiting file");
    }
    // Two rolls: each would have taken a waiting file.
    written.extend(append_tagged(&j, "b", 8));
    let first = j.first_offset();
    assert_eq!(
        single_messages(&read_from(&j, first)),
        written[(first / FRAME_BYTES) as usize..]
    );
}
