//! The scan-start hint (`scan_hint.rs`, docs/design.md "The scan-start hint"): opening reads the
//! last fragment only from the hint, and a hint that does not hold up (damaged, or naming another
//! frame than the one there) costs a full scan, never a wrong head. A hint is also evidence: the
//! write it names had been made durable, so bytes or fragments missing below it are damage.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::{payload, read_all, CountingStorage, ReadFrame, DATA_DIR};
use ss_log::fragment::fragment_file_name;
use ss_log::scan_hint::{ScanHint, SCAN_HINT_FILE, SCAN_HINT_INTERVAL_BYTES};
use ss_log::sim::{CrashMode, SimStorage};
use ss_log::{Batch, Log, OpenError, Options, ReadError};

const JOURNAL: &str = "events";
const PAYLOAD_BYTES: usize = 60 << 10;
/// Frames written: about 6 MiB, all in the first (32 MiB) fragment.
const FRAMES: usize = 100;

fn journal_dir(data: &Path) -> PathBuf {
    data.join(ss_log::JOURNALS_DIR).join(JOURNAL)
}

fn first_fragment(data: &Path) -> PathBuf {
    journal_dir(data).join(fragment_file_name(0))
}

/// A journal of [`FRAMES`] frames of 60 KiB, one append each, in one fragment.
fn write_journal(data: &Path) -> Vec<ReadFrame> {
    let log = Log::open(data, Options::default()).unwrap();
    let journal = log.journal(JOURNAL).unwrap();
    for i in 0..FRAMES {
        journal
            .append(&Batch::single(&payload(&format!("frame {i}"), PAYLOAD_BYTES)))
            .unwrap();
    }
    assert_eq!(journal.fragments().len(), 1);
    read_all(&journal)
}

/// What an open read and wrote of fragment files.
#[derive(Debug, Clone, Copy)]
struct OpenCost {
    read: u64,
    written: u64,
}

/// Opens `data` over `storage` wrapped to count fragment reads and writes; returns the journal's
/// frames (read after the counts were taken) and what open read and wrote.
fn open_counted_over(
    data: &Path,
    storage: Arc<dyn ss_log::Storage>,
) -> Result<(Vec<ReadFrame>, OpenCost), OpenError> {
    let counting = CountingStorage::new(storage);
    let counts = counting.counts.clone();
    let log = Log::open(data, Options::with_storage(Arc::new(counting)))?;
    let journal = log.existing_journal(JOURNAL)?;
    let cost = OpenCost {
        read: counts.fragment_bytes_read.load(Ordering::Relaxed),
        written: counts.fragment_bytes_written.load(Ordering::Relaxed),
    };
    Ok((read_all(&journal), cost))
}

fn open_counted(data: &Path) -> Result<(Vec<ReadFrame>, OpenCost), OpenError> {
    open_counted_over(data, Arc::new(ss_log::RealStorage))
}

fn stored_hint(data: &Path) -> Option<ScanHint> {
    let bytes = std::fs::read(journal_dir(data).join(SCAN_HINT_FILE)).ok()?;
    ScanHint::decode(&bytes, ss_log::frame::journal_salt(JOURNAL))
}

/// A writable and a read-only open of `data` both refuse the journal as damage at `at` (fragment
/// path, offset), with `needle` in the detail, instead of opening it.
fn both_opens_refuse(data: &Path, options: impl Fn() -> Options, at: (&Path, u64), needle: &str) {
    for log in [
        Log::open(data, options()).unwrap(),
        Log::open_read_only(data, options()).unwrap(),
    ] {
        match log.existing_journal(JOURNAL) {
            Err(OpenError::Corrupt {
                offset,
                detail,
                fragment,
                ..
            }) => {
                assert_eq!((fragment.as_path(), offset), at, "{detail}");
                assert!(detail.contains(needle), "{detail}");
            }
            Err(e) => panic!("not refused as damage: {e}"),
            Ok(j) => panic!("opened, head {}, instead of refused", j.durable_head()),
        }
    }
}

fn write_hint(data: &Path, hint: ScanHint) {
    let bytes = hint.encode(ss_log::frame::journal_salt(JOURNAL));
    std::fs::write(journal_dir(data).join(SCAN_HINT_FILE), bytes).unwrap();
}

#[test]
fn after_a_crash_open_reads_the_last_fragment_from_the_last_hint_not_from_its_start() {
    let sim = SimStorage::new(5);
    let (crashed, written) = {
        let log = Log::open(DATA_DIR, Options::with_storage(Arc::new(sim.clone()))).unwrap();
        let journal = log.journal(JOURNAL).unwrap();
        for i in 0..FRAMES {
            journal
                .append(&Batch::single(&payload(&format!("frame {i}"), PAYLOAD_BYTES)))
                .unwrap();
        }
        let frames = read_all(&journal);
        // The process dies before closing: the hint is the last one the commits recorded.
        (sim.crash(CrashMode::Process), frames)
    };
    let data = Path::new(DATA_DIR);
    let fragment_len = crashed.read_file(&first_fragment(data)).unwrap().len() as u64;
    let hint = crashed
        .read_file(&journal_dir(data).join(SCAN_HINT_FILE))
        .and_then(|b| ScanHint::decode(&b, ss_log::frame::journal_salt(JOURNAL)))
        .expect("the commits recorded a hint");
    assert!(
        fragment_len - hint.scan_from < SCAN_HINT_INTERVAL_BYTES + PAYLOAD_BYTES as u64 + 4096,
        "hint at {} of a {fragment_len}-byte fragment",
        hint.scan_from
    );
    let (frames, cost) = open_counted_over(data, Arc::new(crashed)).unwrap();
    assert_eq!(frames, written);
    assert!(
        cost.read <= SCAN_HINT_INTERVAL_BYTES + 2 * PAYLOAD_BYTES as u64,
        "open read {} bytes of a {fragment_len}-byte last fragment",
        cost.read
    );
    // The last write was not the hinted one: open writes it again before syncing (fsyncgate).
    assert!(cost.written >= PAYLOAD_BYTES as u64, "{cost:?}");
}

#[test]
fn after_a_clean_close_open_reads_only_the_last_write_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_journal(dir.path());
    let fragment_len = std::fs::metadata(first_fragment(dir.path())).unwrap().len();
    let hint = stored_hint(dir.path()).expect("close recorded a hint");
    assert_eq!(hint.fragment_begin, 0);
    assert_eq!(hint.scan_from, written.last().unwrap().offset);

    let (frames, cost) = open_counted(dir.path()).unwrap();
    assert_eq!(frames, written);
    assert!(cost.read <= 2 * PAYLOAD_BYTES as u64, "{cost:?}");
    assert_eq!(
        cost.written, 0,
        "the hinted last write was synced: nothing to write again"
    );

    // Without the hint, open validates the whole fragment, writes the last write again, and
    // records a hint naming it.
    std::fs::remove_file(journal_dir(dir.path()).join(SCAN_HINT_FILE)).unwrap();
    let (frames, cost) = open_counted(dir.path()).unwrap();
    assert_eq!(frames, written);
    assert!(cost.read >= fragment_len, "{cost:?} of {fragment_len} bytes");
    assert!(cost.written >= PAYLOAD_BYTES as u64, "{cost:?}");
    assert_eq!(stored_hint(dir.path()), Some(hint));
    let (_, cost) = open_counted(dir.path()).unwrap();
    assert!(
        cost.read <= 2 * PAYLOAD_BYTES as u64 && cost.written == 0,
        "{cost:?}"
    );
}

#[test]
fn damage_before_the_hint_is_refused_by_readers_instead_of_open() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_journal(dir.path());
    let hint = stored_hint(dir.path()).unwrap();
    let damaged = &written[3];
    assert!(damaged.end < hint.scan_from);
    let path = first_fragment(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[damaged.offset as usize + 100] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();

    // Open trusts the hint: the head is unchanged; the first reader there refuses the frame.
    let log = Log::open(dir.path(), Options::default()).unwrap();
    let journal = log.existing_journal(JOURNAL).unwrap();
    assert_eq!(journal.durable_head(), written.last().unwrap().end);
    let error = journal
        .frames(0)
        .find_map(Result::err)
        .expect("the damaged frame is refused");
    match error {
        ReadError::Corrupt { offset, .. } => assert_eq!(offset, damaged.offset),
        other => panic!("expected Corrupt at {}, got {other}", damaged.offset),
    }
    drop((journal, log));

    // Without the hint open sees the damage itself (later writes follow it) and refuses.
    std::fs::remove_file(journal_dir(dir.path()).join(SCAN_HINT_FILE)).unwrap();
    match open_counted(dir.path()) {
        Err(OpenError::Corrupt { offset, .. }) => assert_eq!(offset, damaged.offset),
        Err(other) => panic!("expected Corrupt at {}, got {other}", damaged.offset),
        Ok(_) => panic!("open accepted a damaged frame followed by later writes"),
    }
}

#[test]
fn a_hint_that_does_not_hold_up_costs_a_full_scan_and_never_a_wrong_head() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_journal(dir.path());
    let real = stored_hint(dir.path()).unwrap();
    let fragment_len = std::fs::metadata(first_fragment(dir.path())).unwrap().len();
    let mid = &written[FRAMES / 2];
    let forged = [
        // Inside a frame, not at its start.
        ScanHint {
            scan_from: mid.offset + 4096,
            ..real
        },
        // A real frame start, but not the frame the writer recorded.
        ScanHint {
            scan_from: mid.offset,
            ..real
        },
    ];
    for hint in forged {
        write_hint(dir.path(), hint);
        let (frames, cost) = open_counted(dir.path()).unwrap();
        assert_eq!(frames, written, "with {hint:?}");
        assert!(cost.read >= fragment_len, "with {hint:?}: {cost:?}");
    }
    // A torn or damaged record is no hint at all.
    let mut bytes = real.encode(ss_log::frame::journal_salt(JOURNAL));
    bytes[20] ^= 1;
    std::fs::write(journal_dir(dir.path()).join(SCAN_HINT_FILE), bytes).unwrap();
    let (frames, cost) = open_counted(dir.path()).unwrap();
    assert_eq!(frames, written);
    assert!(cost.read >= fragment_len, "{cost:?}");

    // A hint past the end of the fragment records a durable write the fragment does not hold:
    // its frames end short of it, and that is damage, refused at their end (the same as a
    // fragment cut at a frame boundary below the hint).
    write_hint(
        dir.path(),
        ScanHint {
            scan_from: fragment_len + 8,
            ..real
        },
    );
    match open_counted(dir.path()) {
        Err(OpenError::Corrupt { offset, detail, .. }) => {
            assert_eq!(offset, fragment_len, "{detail}");
            assert!(detail.contains("frames end at offset"), "{detail}");
        }
        other => panic!("a hint past the fragment's end was not refused as damage: {other:?}"),
    }

    // The fragment cut short of the hint by hand: the hint records that the bytes up to its
    // write were durable, so the cut is damage, refused at the frame it cut, not a torn tail.
    write_hint(dir.path(), real);
    let cut_at = real.scan_from - 100;
    std::fs::OpenOptions::new()
        .write(true)
        .open(first_fragment(dir.path()))
        .unwrap()
        .set_len(cut_at)
        .unwrap();
    let cut_frame = written.iter().find(|f| f.end > cut_at).unwrap().offset;
    match open_counted(dir.path()) {
        Err(OpenError::Corrupt { offset, detail, .. }) => {
            assert_eq!(offset, cut_frame, "{detail}");
            assert!(detail.contains("scan-start hint"), "{detail}");
        }
        other => panic!("a cut below the hint was not refused as damage: {other:?}"),
    }
    // The same cut exactly at a frame boundary leaves no invalid byte at all: the fragment just
    // ends early. Still damage, refused where its frames end.
    std::fs::OpenOptions::new()
        .write(true)
        .open(first_fragment(dir.path()))
        .unwrap()
        .set_len(cut_frame)
        .unwrap();
    match open_counted(dir.path()) {
        Err(OpenError::Corrupt { offset, detail, .. }) => {
            assert_eq!(offset, cut_frame, "{detail}");
            assert!(
                detail.contains("frames end at offset") && detail.contains("scan-start hint"),
                "{detail}"
            );
        }
        other => panic!("a cut at a frame boundary below the hint was not refused: {other:?}"),
    }
}

/// Every fragment deleted by hand, the hint left: the hint records a durable write, so the
/// journal lost what it held, and a writable and a read-only open both refuse it as damage naming
/// the fragment and offset, instead of starting it over empty. Once the hint is removed too (the
/// error's advice for accepting the loss), the journal starts again at offset 0.
#[test]
fn fragments_deleted_by_hand_under_a_hint_are_damage_until_the_hint_goes_too() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path());
    let hint = stored_hint(dir.path()).expect("a hint was recorded");
    std::fs::remove_file(first_fragment(dir.path())).unwrap();
    both_opens_refuse(
        dir.path(),
        Options::default,
        (&first_fragment(dir.path()), hint.scan_from),
        "no fragment files",
    );
    assert!(
        stored_hint(dir.path()).is_some(),
        "a refused open changed nothing"
    );
    std::fs::remove_file(journal_dir(dir.path()).join(SCAN_HINT_FILE)).unwrap();

    let log = Log::open(dir.path(), Options::default()).unwrap();
    let journal = log.journal(JOURNAL).unwrap();
    assert_eq!(journal.durable_head(), 0);
    assert!(
        stored_hint(dir.path()).is_none(),
        "starting the journal again removed the old hint"
    );
    let ack = journal.append(&Batch::single(b"new life")).unwrap();
    drop((journal, log));
    let (frames, _) = open_counted(dir.path()).unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].offset, ack.offset);
}

#[test]
fn a_clean_close_cuts_a_recycled_fragments_stale_tail_so_open_reads_only_the_last_write() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options {
        fragment_max_bytes: 1 << 20,
        frame_max_bytes: 256 << 10,
        ..Options::default()
    };
    let (written, last_begin, stale_len) = {
        let log = Log::open(dir.path(), options()).unwrap();
        let journal = log.journal(JOURNAL).unwrap();
        for i in 0..80 {
            journal
                .append(&Batch::single(&payload(&format!("frame {i}"), PAYLOAD_BYTES)))
                .unwrap();
            journal
                .remove_below(journal.durable_head().saturating_sub(2 << 20))
                .unwrap();
        }
        let last = journal.fragments().last().unwrap().clone();
        let file_len = std::fs::metadata(&last.path).unwrap().len();
        assert!(
            file_len > last.end - last.begin,
            "the last fragment is a recycled file with stale bytes past the head"
        );
        let frames = read_all(&journal);
        (frames, last.begin, file_len - (last.end - last.begin))
    };
    let path = journal_dir(dir.path()).join(fragment_file_name(last_begin));
    let head = written.last().unwrap().end;
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        head - last_begin,
        "close cut the {stale_len} stale bytes"
    );
    let counting = CountingStorage::new(Arc::new(ss_log::RealStorage));
    let counts = counting.counts.clone();
    let log = Log::open(
        dir.path(),
        Options {
            storage: Arc::new(counting),
            ..options()
        },
    )
    .unwrap();
    let journal = log.existing_journal(JOURNAL).unwrap();
    let read = counts.fragment_bytes_read.load(Ordering::Relaxed);
    assert!(read <= 2 * PAYLOAD_BYTES as u64, "open read {read} bytes");
    assert_eq!(journal.durable_head(), head);
    assert_eq!(read_all(&journal), written);
}

/// The last fragment deleted by hand (or lost) after the writer recorded a hint in it: the
/// journal would otherwise open at the end of the fragment before, silently shorter. Open refuses
/// it, naming the missing fragment and the hint's offset; once the hint is removed too (the
/// error's advice for accepting the loss), it opens at the previous fragment's end.
#[test]
fn a_lost_last_fragment_the_hint_names_is_damage_not_a_shorter_journal() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options {
        fragment_max_bytes: 1 << 20,
        frame_max_bytes: 256 << 10,
        scan_hint_interval_bytes: 64 << 10,
        write_bound_step_bytes: 256 << 10,
        ..Options::default()
    };
    let fragments = {
        let log = Log::open(dir.path(), options()).unwrap();
        let journal = log.journal(JOURNAL).unwrap();
        for i in 0..40 {
            journal
                .append(&Batch::single(&payload(&format!("frame {i}"), PAYLOAD_BYTES)))
                .unwrap();
        }
        journal.fragments()
    };
    assert!(fragments.len() >= 2, "the appends rolled");
    let (last, before) = (&fragments[fragments.len() - 1], &fragments[fragments.len() - 2]);
    let hint = stored_hint(dir.path()).expect("a hint was recorded");
    assert_eq!(
        hint.fragment_begin, last.begin,
        "the close recorded its hint in the last fragment"
    );
    std::fs::remove_file(&last.path).unwrap();
    both_opens_refuse(
        dir.path(),
        options,
        (&last.path, hint.scan_from),
        "this fragment is missing",
    );
    std::fs::remove_file(journal_dir(dir.path()).join(SCAN_HINT_FILE)).unwrap();
    let log = Log::open(dir.path(), options()).unwrap();
    assert_eq!(log.existing_journal(JOURNAL).unwrap().durable_head(), before.end);
}

/// A journal's only fragment renamed to another begin (`0` → `8`): its frames claim other
/// offsets there, so without the hint it reads as an empty journal beginning at 8, and a writer
/// would have gone on from there (a shard log: every Sum and checkpoint lost, the partition
/// summed again). The hint names the fragment at 0 with a durable write far past 8: a fragment
/// beginning inside the hint's fragment is damage. A hint whose fragment retention removed, wholly
/// below the first fragment on disk, is not.
#[test]
fn a_fragment_renamed_to_another_begin_is_damage_not_an_empty_journal() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options {
        fragment_max_bytes: 1 << 20,
        frame_max_bytes: 256 << 10,
        scan_hint_interval_bytes: 64 << 10,
        ..Options::default()
    };
    {
        let log = Log::open(dir.path(), options()).unwrap();
        let journal = log.journal(JOURNAL).unwrap();
        for i in 0..4 {
            journal
                .append(&Batch::single(&payload(&format!("frame {i}"), PAYLOAD_BYTES)))
                .unwrap();
        }
        assert_eq!(journal.fragments().len(), 1, "one fragment");
    }
    let hint = stored_hint(dir.path()).expect("a hint was recorded");
    assert_eq!(hint.fragment_begin, 0);
    let jdir = journal_dir(dir.path());
    let (only, renamed) = (jdir.join(fragment_file_name(0)), jdir.join(fragment_file_name(8)));
    std::fs::rename(&only, &renamed).unwrap();
    both_opens_refuse(
        dir.path(),
        options,
        (&only, hint.scan_from),
        "the fragment on disk beginning at 8 lies inside it",
    );
    std::fs::rename(&renamed, &only).unwrap();

    // Retention: the hint still names the first fragment, which is gone, and lay below the
    // fragment that follows it. The journal opens, from that fragment on.
    let dir = tempfile::tempdir().unwrap();
    let (first_hint, second) = {
        let log = Log::open(dir.path(), options()).unwrap();
        let journal = log.journal(JOURNAL).unwrap();
        while journal.fragments().len() < 3 {
            journal
                .append(&Batch::single(&payload("frame", PAYLOAD_BYTES)))
                .unwrap();
        }
        let fragments = journal.fragments();
        let first_hint = ScanHint {
            fragment_begin: fragments[0].begin,
            scan_from: fragments[0].end - 4096,
            frame_crc: 0,
        };
        journal.remove_below(fragments[1].begin).unwrap();
        (first_hint, fragments[1].begin)
    };
    write_hint(dir.path(), first_hint);
    for log in [
        Log::open(dir.path(), options()).unwrap(),
        Log::open_read_only(dir.path(), options()).unwrap(),
    ] {
        let journal = log
            .existing_journal(JOURNAL)
            .expect("opens past a retention-removed hint fragment");
        assert_eq!(journal.fragments()[0].begin, second);
    }
}
