//! Closed journals: `Log::close` finishes accepted appends, refuses later ones with
//! `AppendError::Closed`, and releases tailing readers with `ReadError::Closed`.

mod common;

use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::*;
use ss_log::sim::SimStorage;
use ss_log::{AppendError, Batch, Log, ReadError};

const JOURNAL: &str = "closing";
const WAIT: Duration = Duration::from_secs(10);

fn assert_closed_append<T: std::fmt::Debug>(result: Result<T, AppendError>) {
    match result {
        Err(e @ AppendError::Closed { .. }) => assert!(e.to_string().contains(JOURNAL), "{e}"),
        other => panic!("expected Closed, got {other:?}"),
    }
}

/// Journals could only be closed by dropping the last handle, which a blocked tailing reader
/// holds itself, so `ReadError::Closed` was unreachable and such a reader waited forever. Checks
/// that `Log::close` wakes a blocking and an async tailing reader with `Closed`, after they read
/// the frames that were durable.
#[test]
fn close_releases_blocked_tailing_readers() {
    let storage = SimStorage::new(71);
    let log = open_sim(&storage, 1 << 20);
    let j = log.journal(JOURNAL).unwrap();
    j.append(&Batch::single(b"one")).unwrap();
    j.append(&Batch::single(b"two")).unwrap();

    let mut blocking = j.reader(0);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let end = loop {
            match blocking.next_blocking() {
                Ok(f) => got.push(f.offset),
                Err(e) => break e,
            }
        };
        tx.send((got, end)).unwrap();
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let mut async_reader = j.reader(j.durable_head());
    let waiter = rt.spawn(async move { async_reader.next().await });
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        rx.try_recv().is_err() && !waiter.is_finished(),
        "both readers wait at the head"
    );

    log.close();
    let (got, end) = rx.recv_timeout(WAIT).expect("the blocking reader is released");
    assert_eq!(got.len(), 2, "durable frames are read before Closed");
    assert!(
        matches!(&end, ReadError::Closed { journal } if journal == JOURNAL),
        "{end}"
    );
    let result = rt
        .block_on(async { tokio::time::timeout(WAIT, waiter).await })
        .expect("the async reader is released")
        .unwrap();
    assert!(matches!(result, Err(ReadError::Closed { .. })), "{result:?}");
    assert!(
        j.reader(0).next_timeout(WAIT).unwrap().is_some(),
        "durable frames stay readable"
    );
}

/// An append accepted before `close` (held mid-commit) is still made durable and acknowledged;
/// every append API fails with `Closed` afterwards, nothing more is written, and a reopen (once
/// all handles are dropped) shows exactly the acknowledged frames.
#[test]
fn close_finishes_accepted_appends_and_refuses_later_ones() {
    let sim = SimStorage::new(72);
    let gated = Arc::new(GatedStorage::new(Arc::new(sim.clone())));
    let log = Log::open(DATA_DIR, opts(gated.clone(), 1 << 20)).unwrap();
    let j = log.journal(JOURNAL).unwrap();
    j.append(&Batch::single(b"before")).unwrap();
    gated.gate.arm();
    let accepted = j.submit(&Batch::single(b"accepted")).unwrap();
    gated.gate.wait_held();
    let closer = {
        let log = log.clone();
        std::thread::spawn(move || log.close())
    };
    std::thread::sleep(Duration::from_millis(20));
    gated.gate.release();
    closer.join().unwrap();
    let ack = accepted
        .wait()
        .expect("an append accepted before close is acknowledged");

    let head = j.durable_head();
    assert_eq!(head, ack.end);
    let writes = sim.counters().writes;
    assert_closed_append(j.append(&Batch::single(b"late")));
    assert_closed_append(j.append_if(head, &Batch::single(b"late-if")));
    assert_closed_append(j.submit(&Batch::single(b"late-submit")).map(|p| p.ack()));
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    assert_closed_append(rt.block_on(j.append_async(&Batch::single(b"late-async"))));
    assert_closed_append(
        log.journal(JOURNAL)
            .unwrap()
            .append(&Batch::single(b"new handle")),
    );
    assert_eq!(sim.counters().writes, writes, "nothing is written after close");
    assert_eq!(j.durable_head(), head);

    let expected = vec![b"before".to_vec(), b"accepted".to_vec()];
    assert_eq!(single_messages(&read_all(&j)), expected);
    drop((j, log));
    let log = Log::open(DATA_DIR, opts(gated, 1 << 20)).unwrap();
    let j = log.journal(JOURNAL).unwrap();
    assert_eq!(single_messages(&read_all(&j)), expected);
    j.append(&Batch::single(b"reopened")).unwrap();
}
