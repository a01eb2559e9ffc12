//! Recovery of damaged frames: a bit flip in the last frame is a torn tail (cut); a bit flip in an
//! earlier frame followed by frames from later writes is corruption (open refuses, naming the
//! fragment file and the offset).

mod common;

use common::*;
use ss_log::frame::HEADER_LEN;
use ss_log::sim::SimStorage;
use ss_log::{AppendAck, Batch, Log, OpenError, ReadError};

const JOURNAL: &str = "flips";

/// Options that never record a scan-start hint: these tests are about what open itself sees in
/// the whole last fragment. With a hint, damage before it is the readers' to find instead
/// (`scan_hint.rs`: `damage_before_the_hint_is_refused_by_readers_instead_of_open`).
fn unhinted(storage: &SimStorage, fragment_max_bytes: u64) -> ss_log::Options {
    ss_log::Options {
        scan_hint_interval_bytes: u64::MAX,
        write_bound_step_bytes: u64::MAX,
        ..sim_opts(storage, fragment_max_bytes)
    }
}

fn open_unhinted(storage: &SimStorage, fragment_max_bytes: u64) -> Log {
    Log::open(DATA_DIR, unhinted(storage, fragment_max_bytes)).expect("open simulated log")
}

fn write_frames(storage: &SimStorage, fragment_max_bytes: u64, payloads: &[Vec<u8>]) -> Vec<AppendAck> {
    let log = open_unhinted(storage, fragment_max_bytes);
    let j = log.journal(JOURNAL).unwrap();
    payloads
        .iter()
        .map(|p| j.append(&Batch::single(p)).unwrap())
        .collect()
}

/// Flips one bit in every header and payload byte of the last frame in turn (padding is not
/// covered by checksums) and checks that reopening cuts that frame, keeps the others, and that
/// appends continue at its offset.
#[test]
fn bit_flip_in_last_frame_cuts_it_and_appends_continue() {
    let storage = SimStorage::new(11);
    let payloads: Vec<Vec<u8>> = (0..4).map(|i| payload(&format!("f{i}"), 60)).collect();
    let acks = write_frames(&storage, 1 << 20, &payloads);
    let last = acks[3];
    let path = fragment_path(JOURNAL, 0);
    let image = storage.read_file(&path).unwrap();
    let covered = HEADER_LEN + 4 + payloads[3].len(); // header, length prefix, message
    for i in 0..covered {
        let byte = last.offset + i as u64;
        storage.write_file(&path, &image);
        storage.flip_bit(&path, byte, (i % 8) as u8);
        let log = open_unhinted(&storage, 1 << 20);
        let j = log.journal(JOURNAL).unwrap();
        assert_eq!(j.durable_head(), last.offset, "flip at byte {byte}");
        assert_eq!(
            j.recovery_cut_bytes(),
            last.end - last.offset,
            "flip at byte {byte}"
        );
        assert_eq!(
            single_messages(&read_all(&j)),
            payloads[..3],
            "flip at byte {byte}"
        );
        let ack = j.append(&Batch::single(b"replacement")).unwrap();
        assert_eq!(ack.offset, last.offset, "flip at byte {byte}");
    }
}

/// Checks that opening fails with `Corrupt` naming `fragment` and the journal offset `offset`,
/// in the error value and its message, and that the refused open changed no byte.
fn assert_open_refuses(
    storage: &SimStorage,
    fragment_max_bytes: u64,
    fragment: &std::path::Path,
    offset: u64,
) {
    let before = storage.read_file(fragment).unwrap();
    let log = open_unhinted(storage, fragment_max_bytes);
    let err = log
        .journal(JOURNAL)
        .expect_err("open must refuse a corrupt journal");
    match &err {
        OpenError::Corrupt {
            journal,
            fragment: f,
            offset: o,
            ..
        } => {
            assert_eq!(journal, JOURNAL);
            assert_eq!(f, fragment);
            assert_eq!(*o, offset);
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    let message = err.to_string();
    assert!(message.contains(&fragment.display().to_string()), "{message}");
    assert!(message.contains(&format!("offset {offset}")), "{message}");
    assert!(message.contains(JOURNAL), "{message}");
    drop(log);
    assert_eq!(
        storage.read_file(fragment).unwrap(),
        before,
        "a refused open must not cut anything"
    );
    let ro = Log::open_read_only(DATA_DIR, unhinted(storage, fragment_max_bytes)).unwrap();
    assert!(
        matches!(ro.existing_journal(JOURNAL), Err(OpenError::Corrupt { .. })),
        "a read-only open refuses too"
    );
}

/// Flips a bit in the header and in the payload of each earlier frame (each appended, and so
/// written, after the previous was durable) and checks that open refuses with an error naming the
/// fragment file and that frame's offset.
#[test]
fn bit_flip_in_earlier_frame_followed_by_valid_frames_refuses_open() {
    let storage = SimStorage::new(12);
    let payloads: Vec<Vec<u8>> = (0..5).map(|i| payload(&format!("e{i}"), 80)).collect();
    let acks = write_frames(&storage, 1 << 20, &payloads);
    let path = fragment_path(JOURNAL, 0);
    let image = storage.read_file(&path).unwrap();
    for ack in &acks[..4] {
        for within in [
            0u64,
            5,
            9,
            17,
            25,
            29,
            33,
            38,
            HEADER_LEN as u64 + 2,
            HEADER_LEN as u64 + 50,
        ] {
            storage.write_file(&path, &image);
            storage.flip_bit(&path, ack.offset + within, (within % 8) as u8);
            assert_open_refuses(&storage, 1 << 20, &path, ack.offset);
        }
    }
    storage.write_file(&path, &image);
    let log = open_unhinted(&storage, 1 << 20);
    assert_eq!(
        single_messages(&read_all(&log.journal(JOURNAL).unwrap())),
        payloads
    );
}

/// The same in a later fragment, where the journal offset named in the error differs from the
/// position in the file.
#[test]
fn bit_flip_in_earlier_frame_of_rolled_fragment_names_journal_offset() {
    let storage = SimStorage::new(13);
    let payloads: Vec<Vec<u8>> = (0..10).map(|i| payload(&format!("r{i}"), 200)).collect();
    // 248-byte frames, four per 1024-byte fragment: the third fragment holds frames 8 and 9.
    let acks = write_frames(&storage, 1024, &payloads);
    let begin = 8 * (acks[0].end - acks[0].offset);
    assert_eq!(acks[8].offset, begin);
    assert!(storage.read_file(&fragment_path(JOURNAL, begin)).is_some());
    let path = fragment_path(JOURNAL, begin);
    storage.flip_bit(&path, acks[8].offset - begin + 50, 3);
    assert_open_refuses(&storage, 1024, &path, acks[8].offset);
}

/// A flipped bit in a sealed fragment (recovery reads only the last one, so open succeeds) is
/// reported to the reader as `ReadError::Corrupt` naming that fragment and the frame's offset;
/// frames before it still read.
#[test]
fn bit_flip_in_sealed_fragment_fails_the_read_of_that_frame() {
    let storage = SimStorage::new(14);
    let payloads: Vec<Vec<u8>> = (0..10).map(|i| payload(&format!("s{i}"), 200)).collect();
    let acks = write_frames(&storage, 1024, &payloads);
    let path = fragment_path(JOURNAL, 0);
    storage.flip_bit(&path, acks[2].offset + HEADER_LEN as u64 + 10, 0);
    let log = open_unhinted(&storage, 1024);
    let j = log.journal(JOURNAL).unwrap();
    let mut r = j.reader(0);
    for p in &payloads[..2] {
        assert_eq!(
            r.try_next().unwrap().unwrap().messages().next().unwrap().unwrap(),
            &p[..]
        );
    }
    let err = r.try_next().expect_err("the damaged frame does not validate");
    match &err {
        ReadError::Corrupt { fragment, offset, .. } => {
            assert_eq!(fragment, &path);
            assert_eq!(*offset, acks[2].offset);
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    assert!(err.to_string().contains(&path.display().to_string()));
    let later = read_from(&j, acks[3].offset);
    assert_eq!(single_messages(&later), payloads[3..]);
}

/// A sealed fragment whose file is cut short, or gone from between two others, leaves offsets in
/// no file: the read there fails naming the missing range (from where the file ends to where the
/// journal goes on), not "zeroed bytes"; frames before it still read.
#[test]
fn a_sealed_fragment_cut_short_or_removed_names_the_missing_offsets() {
    let storage = SimStorage::new(15);
    let payloads: Vec<Vec<u8>> = (0..10).map(|i| payload(&format!("m{i}"), 200)).collect();
    let acks = write_frames(&storage, 1024, &payloads);
    // Four 248-byte frames per fragment: fragments begin at acks[0], acks[4] and acks[8].
    let second = fragment_path(JOURNAL, acks[4].offset);
    let whole = storage.read_file(&second).expect("the second fragment");
    storage.write_file(&second, &whole[..(acks[5].offset - acks[4].offset) as usize]);
    let expect_short = |j: &ss_log::Journal, from: u64, file_end: u64| {
        let mut r = j.reader(from);
        let mut read = 0;
        let err = loop {
            match r.try_next() {
                Ok(Some(_)) => read += 1,
                Ok(None) => panic!("read to the head past missing offsets"),
                Err(e) => break e,
            }
        };
        match &err {
            ReadError::Corrupt {
                offset,
                error: ss_log::frame::FrameError::FragmentShort { file_end: end, next },
                ..
            } => {
                assert_eq!((*offset, *end, *next), (file_end, file_end, acks[8].offset));
            }
            other => panic!("expected FragmentShort, got {other}"),
        }
        let text = err.to_string();
        assert!(
            text.contains(&format!("offsets {file_end}..{}", acks[8].offset)),
            "{text}"
        );
        read
    };
    {
        let log = open_unhinted(&storage, 1024);
        let j = log.journal(JOURNAL).unwrap();
        assert_eq!(
            expect_short(&j, 0, acks[5].offset),
            5,
            "frames before the cut read"
        );
        assert_eq!(single_messages(&read_from(&j, acks[8].offset)), payloads[8..]);
    }
    ss_log::Storage::remove_file(&storage, &second).unwrap();
    let log = open_unhinted(&storage, 1024);
    let j = log.journal(JOURNAL).unwrap();
    assert_eq!(
        expect_short(&j, 0, acks[4].offset),
        4,
        "the first fragment reads whole"
    );
}

/// A file named like a fragment whose begin is not a frame's (unaligned), or whose 20 digits
/// overflow an offset, is a damaged fragment name: open refuses naming that file, for a
/// writer and a reader alike. Before, `99999999999999999999.frag` was skipped as a stray file
/// while `18446744073709551615.frag` was refused.
#[test]
fn a_fragment_name_that_is_unaligned_or_overflows_an_offset_is_damage_not_a_stray_file() {
    for bad in [
        "99999999999999999999.frag",
        "18446744073709551615.frag",
        "00000000000000000012.frag",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), ss_log::Options::default()).unwrap();
        log.journal(JOURNAL)
            .unwrap()
            .append(&Batch::single(b"before the odd file"))
            .unwrap();
        drop(log);
        let path = dir.path().join("journals").join(JOURNAL).join(bad);
        std::fs::write(&path, b"").unwrap();
        let log = Log::open(dir.path(), ss_log::Options::default()).unwrap();
        let err = log.journal(JOURNAL).expect_err(bad);
        assert!(matches!(err, OpenError::Corrupt { .. }), "{bad}: {err}");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        let ro = Log::open_read_only(dir.path(), ss_log::Options::default()).unwrap();
        assert!(
            matches!(ro.existing_journal(JOURNAL), Err(OpenError::Corrupt { .. })),
            "{bad}: a read-only open refuses too"
        );
    }
}
