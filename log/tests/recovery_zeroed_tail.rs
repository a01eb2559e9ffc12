//! Recovery of a zeroed tail: valid frames followed by zeros (a file that grew but whose data
//! never reached the medium) are kept, the zeros are cut, and appends continue.

mod common;

use common::*;
use ss_log::sim::{CrashMode, SimStorage};
use ss_log::Batch;

const JOURNAL: &str = "zeroed";

/// Extends the fragment with zeros of several lengths (unaligned, shorter than a header, longer
/// than a fragment page) and checks that reopening keeps the frames, cuts exactly the zeros, and
/// that appends continue at the old head and survive another reopen.
#[test]
fn zeros_after_valid_frames_are_cut_and_appends_continue() {
    let storage = SimStorage::new(3);
    let payloads: Vec<Vec<u8>> = (0..4).map(|i| payload(&format!("z{i}"), 50 + i * 10)).collect();
    let head = {
        let log = open_sim(&storage, 1 << 20);
        let j = log.journal(JOURNAL).unwrap();
        let mut head = 0;
        for p in &payloads {
            head = j.append(&Batch::single(p)).unwrap().end;
        }
        head
    };
    let path = fragment_path(JOURNAL, 0);
    let image = storage.read_file(&path).unwrap();
    assert_eq!(image.len() as u64, head);
    for zeros in [1usize, 7, 8, 39, 40, 41, 64, 4096, 65_536 + 3] {
        let mut grown = image.clone();
        grown.resize(image.len() + zeros, 0);
        storage.write_file(&path, &grown);
        // The zeros model a crash inside a write after `head`; the hint never vouches for it.
        forget_scan_hint(&storage, JOURNAL);
        let extra = payload(&format!("after-{zeros}-zeros"), 21);
        {
            let log = open_sim(&storage, 1 << 20);
            let j = log.journal(JOURNAL).unwrap();
            assert_eq!(j.durable_head(), head, "{zeros} zeros");
            assert_eq!(j.recovery_cut_bytes(), zeros as u64, "{zeros} zeros cut");
            assert_eq!(single_messages(&read_all(&j)), payloads, "{zeros} zeros");
            let ack = j.append(&Batch::single(&extra)).unwrap();
            assert_eq!(ack.offset, head, "{zeros} zeros: append continues at the head");
        }
        let log = open_sim(&storage, 1 << 20);
        let j = log.journal(JOURNAL).unwrap();
        assert_eq!(j.recovery_cut_bytes(), 0);
        let mut expected = payloads.clone();
        expected.push(extra);
        assert_eq!(
            single_messages(&read_all(&j)),
            expected,
            "{zeros} zeros: after reopen"
        );
        drop(j);
        drop(log);
        storage.write_file(&path, &image);
    }
}

/// Replaces the whole last frame with zeros (its bytes never reached the medium, the size did)
/// and checks that the frame is cut and the earlier ones kept.
#[test]
fn zeroed_last_frame_is_cut() {
    let storage = SimStorage::new(4);
    let payloads: Vec<Vec<u8>> = (0..3).map(|i| payload(&format!("z{i}"), 100)).collect();
    let acks: Vec<_> = {
        let log = open_sim(&storage, 1 << 20);
        let j = log.journal(JOURNAL).unwrap();
        payloads
            .iter()
            .map(|p| j.append(&Batch::single(p)).unwrap())
            .collect()
    };
    let path = fragment_path(JOURNAL, 0);
    let mut image = storage.read_file(&path).unwrap();
    let last = acks[2];
    image[last.offset as usize..last.end as usize].fill(0);
    storage.write_file(&path, &image);
    forget_scan_hint(&storage, JOURNAL);
    let log = open_sim(&storage, 1 << 20);
    let j = log.journal(JOURNAL).unwrap();
    assert_eq!(j.durable_head(), last.offset);
    assert_eq!(j.recovery_cut_bytes(), last.end - last.offset);
    assert_eq!(single_messages(&read_all(&j)), payloads[..2]);
    assert_eq!(j.append(&Batch::single(b"next")).unwrap().offset, last.offset);
}

/// Over many seeds, crashes with `CrashMode::ZeroUnsynced` while appends are unsynced (the
/// storage dies at a seeded operation) and checks that every acknowledged frame survives,
/// that nothing else but whole frames does, and that appends continue after reopening.
#[test]
fn zero_unsynced_crash_over_many_seeds_keeps_acknowledged_frames() {
    let seeds = 200u64;
    let mut crashed_mid_append = 0;
    for seed in 0..seeds {
        let storage = SimStorage::new(seed);
        let mut acked = Vec::new();
        {
            let log = open_sim(&storage, 2048);
            let j = log.journal(JOURNAL).unwrap();
            storage.crash_after_ops(seed % 40);
            for i in 0..20 {
                let p = payload(&format!("s{seed}-{i}"), 30 + (i * 41 + seed as usize) % 250);
                match j.append(&Batch::single(&p)) {
                    Ok(ack) => acked.push((ack, p)),
                    Err(_) => {
                        crashed_mid_append += 1;
                        break;
                    }
                }
            }
        }
        let survivor = storage.crash(CrashMode::ZeroUnsynced);
        let log = open_sim(&survivor, 2048);
        let j = log.journal(JOURNAL).unwrap();
        let frames = read_all(&j);
        assert_eq!(
            frames.len(),
            acked.len(),
            "seed {seed}: zeroed unsynced bytes never validate"
        );
        for (frame, (ack, p)) in frames.iter().zip(&acked) {
            assert_eq!((frame.offset, &frame.messages[0]), (ack.offset, p), "seed {seed}");
        }
        let next = j.append(&Batch::single(b"after")).unwrap();
        assert_eq!(next.offset, acked.last().map_or(0, |(a, _)| a.end), "seed {seed}");
    }
    println!("zeroed crashes: {seeds} seeds, {crashed_mid_append} crashed mid-append");
    assert!(crashed_mid_append > seeds / 2);
}
