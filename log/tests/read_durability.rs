//! Readers never observe non-durable bytes: while the writer is held inside a commit (its
//! `fdatasync` blocked by a gate in a wrapper storage), the pending frame's bytes are in the file
//! but no reader, tail wait or listing shows them.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ss_log::sim::SimStorage;
use ss_log::{Batch, Log};

const JOURNAL: &str = "durable";

/// Checks, while the commit of `pending` is held, that readers (existing and new, at 0 and at
/// the head) see nothing past the durable head, and that waits for new data time out.
fn assert_pending_invisible(
    j: &ss_log::Journal,
    durable: &[Vec<u8>],
    durable_head: u64,
    reader: &mut ss_log::Reader,
) {
    assert_eq!(j.durable_head(), durable_head);
    assert!(
        reader.try_next().unwrap().is_none(),
        "an existing reader stops at the durable head"
    );
    assert!(reader.next_timeout(Duration::from_millis(20)).unwrap().is_none());
    let frames = read_all(j);
    assert_eq!(
        single_messages(&frames),
        durable,
        "a new reader sees only durable frames"
    );
    assert!(frames.iter().all(|f| f.end <= durable_head));
    assert!(j.reader(durable_head).try_next().unwrap().is_none());
    assert_eq!(
        j.wait_beyond(durable_head, Duration::from_millis(20)),
        durable_head
    );
    if let Some(last) = j.last_frame().unwrap() {
        assert!(last.end <= durable_head, "last_frame is durable");
    }
    assert!(j.fragments().last().unwrap().end <= durable_head);
}

/// Holds the fdatasync of one append, checks the frame's bytes are already in the fragment file
/// (so the test would see a leak) but invisible to readers, then releases it and checks the
/// waiting reader gets exactly that frame.
#[test]
fn reader_sees_nothing_past_durable_head_while_commit_is_held() {
    let sim = SimStorage::new(51);
    let gated = Arc::new(GatedStorage::new(Arc::new(sim.clone())));
    let log = Log::open(DATA_DIR, opts(gated.clone(), 1 << 20)).unwrap();
    let j = log.journal(JOURNAL).unwrap();
    let durable: Vec<Vec<u8>> = (0..3).map(|i| payload(&format!("d{i}"), 50)).collect();
    for p in &durable {
        j.append(&Batch::single(p)).unwrap();
    }
    let head = j.durable_head();
    let mut reader = j.reader(0);
    assert_eq!(std::iter::from_fn(|| reader.try_next().unwrap()).count(), 3);

    gated.gate.arm();
    let pending_payload = payload("pending", 80);
    let pending = j.submit(&Batch::single(&pending_payload)).unwrap();
    gated.gate.wait_held();
    let file = sim.read_file(&fragment_path(JOURNAL, 0)).unwrap();
    assert_eq!(
        file.len() as u64,
        pending.ack().end,
        "the pending frame is written, not durable"
    );
    assert_pending_invisible(&j, &durable, head, &mut reader);

    let tail = {
        let mut tail_reader = j.reader(head);
        std::thread::spawn(move || tail_reader.next_blocking().unwrap())
    };
    std::thread::sleep(Duration::from_millis(20));
    assert!(!tail.is_finished(), "a tailing reader waits for durability");
    gated.gate.release();
    let ack = pending.wait().unwrap();
    let frame = tail.join().unwrap();
    assert_eq!((frame.offset, frame.end), (ack.offset, ack.end));
    assert_eq!(frame.messages().next().unwrap().unwrap(), &pending_payload[..]);
    assert_eq!(reader.try_next().unwrap().unwrap().offset, ack.offset);
}

/// The same when the held commit rolls to a new fragment: the new fragment file exists, but
/// readers see nothing of it until the commit is durable.
#[test]
fn reader_sees_nothing_of_new_fragment_while_its_commit_is_held() {
    let sim = SimStorage::new(52);
    let gated = Arc::new(GatedStorage::new(Arc::new(sim.clone())));
    let log = Log::open(DATA_DIR, opts(gated.clone(), 1024)).unwrap();
    let j = log.journal(JOURNAL).unwrap();
    let durable: Vec<Vec<u8>> = (0..4).map(|i| payload(&format!("d{i}"), 200)).collect();
    for p in &durable {
        j.append(&Batch::single(p)).unwrap();
    }
    let head = j.durable_head();
    let mut reader = j.reader(0);
    assert_eq!(std::iter::from_fn(|| reader.try_next().unwrap()).count(), 4);

    gated.gate.arm();
    let pending = j.submit(&Batch::single(&payload("rolls", 200))).unwrap();
    gated.gate.wait_held();
    assert_eq!(pending.ack().offset, head);
    let new_file = sim
        .read_file(&fragment_path(JOURNAL, head))
        .expect("new fragment created");
    assert!(!new_file.is_empty(), "the pending frame is written into it");
    assert_pending_invisible(&j, &durable, head, &mut reader);

    gated.gate.release();
    let ack = pending.wait().unwrap();
    assert_eq!(reader.try_next().unwrap().unwrap().offset, ack.offset);
}

/// Several frames queue behind a held commit; readers see none of them, then all of them once
/// their batch is durable, in order.
#[test]
fn frames_queued_behind_held_commit_appear_only_when_durable() {
    let sim = SimStorage::new(53);
    let gated = Arc::new(GatedStorage::new(Arc::new(sim.clone())));
    let log = Log::open(DATA_DIR, opts(gated.clone(), 1 << 20)).unwrap();
    let j = log.journal(JOURNAL).unwrap();
    j.append(&Batch::single(b"durable")).unwrap();
    let head = j.durable_head();
    let mut reader = j.reader(0);
    reader.try_next().unwrap().unwrap();

    gated.gate.arm();
    let held = j.submit(&Batch::single(b"held")).unwrap();
    gated.gate.wait_held();
    let queued: Vec<_> = (0..5)
        .map(|i| {
            j.submit(&Batch::single(format!("queued-{i}").as_bytes()))
                .unwrap()
        })
        .collect();
    assert_pending_invisible(&j, &[b"durable".to_vec()], head, &mut reader);
    gated.gate.release();
    held.wait().unwrap();
    let acks: Vec<_> = queued.into_iter().map(|p| p.wait().unwrap()).collect();
    let rest: Vec<_> = std::iter::from_fn(|| reader.try_next().unwrap()).collect();
    assert_eq!(rest.len(), 6);
    assert_eq!(
        rest[1..].iter().map(|f| f.offset).collect::<Vec<_>>(),
        acks.iter().map(|a| a.offset).collect::<Vec<_>>()
    );
}
