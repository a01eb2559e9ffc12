//! The frame scanner, `Journal::frames`: it yields every durable frame in order and ends at the
//! head, continues after later appends (a tailer may keep one), fails at a range retention
//! removed unless told to step over it (then the range is recorded exactly), and names the
//! fragment that holds a frame in its message errors.

mod common;

use common::*;
use ss_log::frame::FrameError;
use ss_log::sim::SimStorage;
use ss_log::{AppendAck, Batch, ReadError};

const JOURNAL: &str = "scanned";
/// 200-byte messages make 248-byte frames: four per 1024-byte fragment.
const FRAGMENT_MAX_BYTES: u64 = 1024;

/// Reads every frame, ends at the head, then yields a frame appended after it ended.
#[test]
fn frames_end_at_the_head_and_continue_after_later_appends() {
    let storage = SimStorage::new(71);
    let log = open_sim(&storage, FRAGMENT_MAX_BYTES);
    let j = log.journal(JOURNAL).unwrap();
    let acks: Vec<AppendAck> = (0..9)
        .map(|i| j.append(&Batch::single(&payload(&format!("s{i}"), 200))).unwrap())
        .collect();
    let mut frames = j.frames(0);
    let offsets: Vec<u64> = frames.by_ref().map(|f| f.unwrap().offset).collect();
    assert_eq!(offsets, acks.iter().map(|a| a.offset).collect::<Vec<_>>());
    assert_eq!(frames.offset(), j.durable_head());
    assert!(frames.next().is_none(), "still at the head");
    let later = j.append(&Batch::single(b"later")).unwrap();
    let frame = frames.next().expect("the later frame").unwrap();
    assert_eq!((frame.offset, frame.end), (later.offset, later.end));
    let messages: Vec<&[u8]> = frames.messages(&frame).collect::<Result<_, _>>().unwrap();
    assert_eq!(messages, [&b"later"[..]]);
    assert!(frames.gaps().is_empty());
}

/// A scan that reaches a range retention removed under it fails there with `Removed` (and fails
/// again if asked again: it does not skip data silently); one told to step over it resumes where
/// the data does and records exactly the range it stepped over.
#[test]
fn frames_fail_at_removed_ranges_unless_told_to_step_over_them() {
    let storage = SimStorage::new(72);
    let log = open_sim(&storage, FRAGMENT_MAX_BYTES);
    let j = log.journal(JOURNAL).unwrap();
    let acks: Vec<AppendAck> = (0..14)
        .map(|i| j.append(&Batch::single(&payload(&format!("r{i}"), 200))).unwrap())
        .collect();
    let mut strict = j.frames(0);
    let mut stepping = j.frames(0).step_over_removed();
    assert_eq!(strict.next().unwrap().unwrap().offset, 0);
    assert_eq!(stepping.next().unwrap().unwrap().offset, 0);
    // Removes the first two fragments (frames 0..8) while both scans are in the first.
    assert_eq!(j.remove_below(acks[9].offset).unwrap(), 2);
    let first = j.first_offset();
    assert_eq!(first, acks[8].offset);
    for _ in 0..2 {
        match strict.next() {
            Some(Err(ReadError::Removed { offset, first: f, .. })) => {
                assert_eq!((offset, f), (acks[1].offset, first));
            }
            other => panic!("expected Removed, got {other:?}"),
        }
    }
    let rest: Vec<u64> = stepping.by_ref().map(|f| f.unwrap().offset).collect();
    assert_eq!(rest, acks[8..].iter().map(|a| a.offset).collect::<Vec<_>>());
    assert_eq!(
        stepping.gaps(),
        &[std::ops::Range {
            start: acks[1].offset,
            end: first
        }]
    );
}

/// `message_error` names the journal, the fragment holding the frame and the frame's offset.
#[test]
fn message_errors_name_the_fragment_and_offset() {
    let storage = SimStorage::new(73);
    let log = open_sim(&storage, FRAGMENT_MAX_BYTES);
    let j = log.journal(JOURNAL).unwrap();
    let acks: Vec<AppendAck> = (0..6)
        .map(|i| j.append(&Batch::single(&payload(&format!("m{i}"), 200))).unwrap())
        .collect();
    let fragment_begin = j.fragments()[1].begin;
    assert!(fragment_begin <= acks[5].offset);
    match j.message_error(acks[5].offset, FrameError::Zeroed) {
        e @ ReadError::Corrupt { .. } => {
            let ReadError::Corrupt {
                journal,
                fragment,
                offset,
                ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(journal, JOURNAL);
            assert_eq!(*fragment, fragment_path(JOURNAL, fragment_begin));
            assert_eq!(*offset, acks[5].offset);
            let text = e.to_string();
            assert!(
                text.contains(&ss_log::fragment::fragment_file_name(fragment_begin)),
                "{text}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}
