//! Recovery of a torn tail: the last frame cut at every byte, and writes torn by simulated crashes.

mod common;

use common::*;
use ss_log::sim::{CrashMode, SimStorage};
use ss_log::{AppendAck, Batch};

const JOURNAL: &str = "torn";

/// Appends one single-message frame per payload and returns the acknowledgements.
fn append_all(journal: &ss_log::Journal, payloads: &[Vec<u8>]) -> Vec<AppendAck> {
    payloads
        .iter()
        .map(|p| journal.append(&Batch::single(p)).expect("append"))
        .collect()
}

/// Cuts the last fragment to every length from the end of the previous frame to the end of the
/// last one, and checks each time that reopening keeps exactly the whole frames, that the next
/// append lands at the cut head, and that it survives another reopen. Each cut goes with no
/// scan-start hint, as after a crash inside that write: its hint is recorded only once its
/// fdatasync returned, and a hint that vouches for it makes the cut damage (tested below).
fn check_torn_at_every_byte(fragment_max_bytes: u64, payloads: &[Vec<u8>]) {
    let storage = SimStorage::new(7);
    let acks = {
        let log = open_sim(&storage, fragment_max_bytes);
        append_all(&log.journal(JOURNAL).unwrap(), payloads)
    };
    let last = *acks.last().unwrap();
    let prev_end = acks[acks.len() - 2].end;
    let last_fragment_begin = {
        let log = open_sim(&storage, fragment_max_bytes);
        log.journal(JOURNAL).unwrap().fragments().last().unwrap().begin
    };
    assert!(last_fragment_begin <= last.offset);
    let path = fragment_path(JOURNAL, last_fragment_begin);
    let image = storage.read_file(&path).expect("last fragment exists");
    assert_eq!(
        image.len() as u64,
        last.end - last_fragment_begin,
        "the last fragment ends with the last frame"
    );

    for cut_end in prev_end.max(last_fragment_begin)..=last.end {
        storage.write_file(&path, &image[..(cut_end - last_fragment_begin) as usize]);
        forget_scan_hint(&storage, JOURNAL);
        let whole = if cut_end == last.end {
            acks.len()
        } else {
            acks.len() - 1
        };
        let head = acks[whole - 1].end;
        let extra = payload(&format!("after-cut-{cut_end}"), 33);
        {
            let log = open_sim(&storage, fragment_max_bytes);
            let j = log.journal(JOURNAL).unwrap();
            assert_eq!(j.durable_head(), head, "cut at {cut_end}: head");
            assert_eq!(
                j.recovery_cut_bytes(),
                cut_end - head,
                "cut at {cut_end}: bytes cut"
            );
            let frames = read_all(&j);
            assert_eq!(
                single_messages(&frames),
                payloads[..whole],
                "cut at {cut_end}: frames"
            );
            for (frame, ack) in frames.iter().zip(&acks) {
                assert_eq!((frame.offset, frame.end), (ack.offset, ack.end));
            }
            let ack = j.append(&Batch::single(&extra)).expect("append after recovery");
            assert_eq!(
                ack.offset, head,
                "cut at {cut_end}: next append continues at the cut"
            );
        }
        let log = open_sim(&storage, fragment_max_bytes);
        let j = log.journal(JOURNAL).unwrap();
        assert_eq!(
            j.recovery_cut_bytes(),
            0,
            "cut at {cut_end}: second reopen cuts nothing"
        );
        let mut expected = payloads[..whole].to_vec();
        expected.push(extra);
        assert_eq!(
            single_messages(&read_all(&j)),
            expected,
            "cut at {cut_end}: after reopen"
        );
    }
}

/// Cuts the last frame of a single fragment at every byte position and reopens each time.
#[test]
fn torn_last_frame_at_every_byte_keeps_whole_frames() {
    let payloads: Vec<Vec<u8>> = (0..6)
        .map(|i| payload(&format!("frame-{i}"), 20 + 37 * i))
        .collect();
    check_torn_at_every_byte(1 << 20, &payloads);
}

/// The last write cut short after a clean close, whose scan-start hint records that write as
/// durable (its fdatasync returned): not a torn write, since nothing torn could have been
/// vouched for. Open refuses it as damage at the cut frame, naming the hint, and changes
/// nothing; with the hint gone (as after a crash before it was written) the same bytes are a
/// torn tail, cut back to the whole frames.
#[test]
fn a_cut_in_a_write_the_scan_start_hint_vouches_for_is_damage_not_a_torn_tail() {
    let payloads: Vec<Vec<u8>> = (0..4).map(|i| payload(&format!("vouched-{i}"), 100)).collect();
    let storage = SimStorage::new(11);
    let acks = {
        let log = open_sim(&storage, 1 << 20);
        append_all(&log.journal(JOURNAL).unwrap(), &payloads)
    };
    let last = *acks.last().unwrap();
    let path = fragment_path(JOURNAL, 0);
    let image = storage.read_file(&path).expect("fragment exists");
    let cut = &image[..(last.offset + 20) as usize];
    storage.write_file(&path, cut);
    let err = match open_sim(&storage, 1 << 20).journal(JOURNAL) {
        Ok(_) => panic!("a cut durable write was taken for a torn tail"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("scan-start hint") && err.contains(&format!("offset {}", last.offset)),
        "{err}"
    );
    assert_eq!(
        storage.read_file(&path).unwrap(),
        cut,
        "a refused open changed the fragment"
    );

    forget_scan_hint(&storage, JOURNAL);
    let log = open_sim(&storage, 1 << 20);
    let j = log.journal(JOURNAL).unwrap();
    assert_eq!(
        j.durable_head(),
        last.offset,
        "without the hint: a torn tail, cut"
    );
}

/// Same, when the torn frame is the first one of a freshly rolled fragment (the cut leaves an
/// empty or partial new fragment behind a full sealed one).
#[test]
fn torn_first_frame_of_rolled_fragment_at_every_byte_keeps_whole_frames() {
    let payloads: Vec<Vec<u8>> = (0..5).map(|i| payload(&format!("roll-{i}"), 200)).collect();
    // 248-byte frames: four fit in a 1024-byte fragment, the fifth rolls.
    check_torn_at_every_byte(1024, &payloads);
    let storage = SimStorage::new(1);
    let log = open_sim(&storage, 1024);
    let j = log.journal(JOURNAL).unwrap();
    append_all(&j, &payloads);
    assert_eq!(j.fragments().len(), 2, "the fifth frame rolled to a new fragment");
}

/// Over many seeds, leaves one append's write unsynced (the storage dies before its fdatasync),
/// tears it with `CrashMode::TearUnsynced`, and checks that every acknowledged frame survives,
/// the torn one is either whole or gone, and appending and reopening work afterwards.
#[test]
fn torn_unsynced_write_over_many_seeds_keeps_acknowledged_frames() {
    let seeds = 300u64;
    let mut kept_whole = 0;
    let mut cut = 0;
    for seed in 0..seeds {
        let storage = SimStorage::new(seed);
        let acked: Vec<Vec<u8>> = (0..(seed % 5 + 1))
            .map(|i| {
                payload(
                    &format!("s{seed}-acked-{i}"),
                    10 + (seed as usize * 13 + i as usize * 29) % 300,
                )
            })
            .collect();
        let torn = payload(&format!("s{seed}-torn"), 40 + (seed as usize * 7) % 400);
        {
            let log = open_sim(&storage, 4096);
            let j = log.journal(JOURNAL).unwrap();
            append_all(&j, &acked);
            // The write of the next append succeeds; its fdatasync finds the storage dead.
            storage.crash_after_ops(1);
            let err = j
                .append(&Batch::single(&torn))
                .expect_err("the sync of this append fails");
            assert!(
                matches!(err, ss_log::AppendError::Poisoned { .. }),
                "seed {seed}: {err}"
            );
        }
        let survivor = storage.crash(CrashMode::TearUnsynced);
        let extra = payload(&format!("s{seed}-extra"), 17);
        {
            let log = open_sim(&survivor, 4096);
            let j = log.journal(JOURNAL).unwrap();
            let got = single_messages(&read_all(&j));
            let mut expected = acked.clone();
            if got.len() == acked.len() + 1 {
                kept_whole += 1;
                expected.push(torn.clone());
            } else {
                cut += 1;
            }
            assert_eq!(got, expected, "seed {seed}: recovered frames");
            j.append(&Batch::single(&extra)).expect("append after recovery");
            expected.push(extra);
            drop(j);
            drop(log);
            let log = open_sim(&survivor, 4096);
            let j = log.journal(JOURNAL).unwrap();
            assert_eq!(j.recovery_cut_bytes(), 0);
            assert_eq!(
                single_messages(&read_all(&j)),
                expected,
                "seed {seed}: after second reopen"
            );
        }
    }
    println!("torn unsynced writes: {seeds} seeds, {cut} cut, {kept_whole} whole");
    assert!(
        cut > seeds / 4 && kept_whole > seeds / 4,
        "both outcomes of a tear were exercised"
    );
}
