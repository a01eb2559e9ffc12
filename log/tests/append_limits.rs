//! Limits with their own errors: frames larger than `frame_max_bytes`, batches with more than
//! `batch_max_messages`, invalid options and names; and the pending-bytes bound that makes
//! appenders wait instead of buffering without limit.

mod common;

use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::*;
use ss_log::sim::SimStorage;
use ss_log::{AppendError, Batch, Log, OpenError, Options};

const JOURNAL: &str = "limits";

/// With `frame_max_bytes` 1024, a frame of exactly 1024 bytes (40-byte header, 4-byte length
/// prefix, 980-byte message) is accepted and one of 1032 is refused with `FrameTooLarge` naming
/// the journal and both sizes, through every append API, with nothing written.
#[test]
fn frame_too_large_is_refused_and_nothing_written() {
    let storage = SimStorage::new(81);
    let log = open_sim(&storage, 1 << 20);
    let j = log.journal(JOURNAL).unwrap();
    let ack = j
        .append(&Batch::single(&[7; 980]))
        .expect("a frame of exactly the maximum fits");
    assert_eq!(ack.end - ack.offset, 1024);
    let head = j.durable_head();
    let writes = storage.counters().writes;
    let too_large = Batch::single(&[7; 981]);
    let check = |result: Result<ss_log::AppendAck, AppendError>| match result {
        Err(e @ AppendError::FrameTooLarge { .. }) => {
            assert!(
                matches!(&e, AppendError::FrameTooLarge { journal, len: 1032, max: 1024 } if journal == JOURNAL)
            );
            let message = e.to_string();
            assert!(message.contains("1032") && message.contains("1024") && message.contains(JOURNAL));
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    };
    check(j.append(&too_large));
    check(j.append_if(head, &too_large));
    check(j.submit(&too_large).map(|p| p.ack()));
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    check(rt.block_on(j.append_async(&too_large)));
    assert_eq!(j.durable_head(), head);
    assert_eq!(storage.counters().writes, writes, "nothing written");
    assert_eq!(read_all(&j).len(), 1);
    assert!(j.poisoned().is_none());
    j.append(&Batch::single(b"small")).expect("the journal goes on");
}

/// A batch of 65 messages with `batch_max_messages` 64 is refused with `BatchTooLarge`; 64 fit
/// in one frame.
#[test]
fn batch_with_too_many_messages_is_refused() {
    let storage = SimStorage::new(82);
    let log = open_sim(&storage, 1 << 20);
    let j = log.journal(JOURNAL).unwrap();
    let mut batch = Batch::new();
    for i in 0..64u8 {
        batch.push(&[i]);
    }
    let ack = j.append(&batch).unwrap();
    batch.push(b"one too many");
    match j.append(&batch) {
        Err(AppendError::BatchTooLarge { journal, count, max }) => {
            assert_eq!((journal.as_str(), count, max), (JOURNAL, 65, 64));
        }
        other => panic!("expected BatchTooLarge, got {other:?}"),
    }
    let frames = read_all(&j);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].offset, ack.offset);
    assert_eq!(frames[0].messages.len(), 64);
}

/// Inconsistent limits and bad journal names are refused at open with their own errors.
#[test]
fn invalid_options_and_names_are_refused() {
    let storage = SimStorage::new(83);
    let base = sim_opts(&storage, 1 << 20);
    let bad = [
        Options {
            frame_max_bytes: 8,
            ..base.clone()
        },
        Options {
            frame_max_bytes: 16 * 1024,
            pending_max_bytes: 8 * 1024,
            ..base.clone()
        },
        Options {
            fragment_max_bytes: 512,
            ..base.clone()
        },
    ];
    for opts in bad {
        let described = format!("{opts:?}");
        assert!(
            matches!(Log::open(DATA_DIR, opts), Err(OpenError::BadOptions(_))),
            "{described}"
        );
    }
    let log = Log::open(DATA_DIR, base).unwrap();
    for name in ["", ".hidden", "a/b", "white space", &"x".repeat(101)] {
        assert!(
            matches!(log.journal(name), Err(OpenError::BadName { .. })),
            "{name:?}"
        );
    }
    assert!(matches!(
        log.existing_journal("absent"),
        Err(OpenError::NoSuchJournal { .. })
    ));
}

/// While a commit is held, submitters fill the pending buffer (`pending_max_bytes` 8 KiB); the
/// next submitter waits (backpressure) until the commit finishes, then goes through.
#[test]
fn pending_bytes_limit_makes_submitters_wait() {
    let sim = SimStorage::new(84);
    let gated = Arc::new(GatedStorage::new(Arc::new(sim.clone())));
    let log = Log::open(DATA_DIR, opts(gated.clone(), 1 << 20)).unwrap();
    let j = log.journal(JOURNAL).unwrap();
    gated.gate.arm();
    let held = j.submit(&Batch::single(b"held")).unwrap();
    gated.gate.wait_held();
    // 1024-byte frames: eight fill the 8 KiB buffer.
    let queued: Vec<_> = (0..8)
        .map(|_| j.submit(&Batch::single(&[1; 980])).unwrap())
        .collect();
    let (tx, rx) = mpsc::channel();
    let j2 = j.clone();
    std::thread::spawn(move || {
        tx.send(j2.submit(&Batch::single(&[2; 980])).map(|p| p.wait()))
            .unwrap()
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(100)).is_err(),
        "a submitter beyond pending_max_bytes waits"
    );
    gated.gate.release();
    held.wait().unwrap();
    let last = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("it proceeds once the buffer is taken")
        .unwrap()
        .unwrap();
    let acks: Vec<_> = queued.into_iter().map(|p| p.wait().unwrap()).collect();
    assert_eq!(last.offset, acks.last().unwrap().end);
    assert_eq!(read_all(&j).len(), 10);
}
