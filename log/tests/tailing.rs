//! Tailing readers wake on new data: a reader waiting at the head (blocking in another thread, or
//! awaiting under tokio) returns the frame appended after it started waiting. Runs on the real
//! filesystem, so reads go through the memory maps as they grow.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::*;
use ss_log::{Batch, Log, Options};

const WAIT: Duration = Duration::from_secs(10);

fn small_fragments() -> Options {
    Options {
        fragment_max_bytes: 4096,
        frame_max_bytes: 1024,
        pending_max_bytes: 4096,
        ..Options::default()
    }
}

/// A thread blocks in `next_blocking` at the head; it is still waiting after 50 ms, and returns
/// the frame appended after that, with its offset and payload.
#[test]
fn blocking_reader_wakes_on_new_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_fragments()).unwrap();
    let j = log.journal("tail").unwrap();
    j.append(&Batch::single(b"before")).unwrap();
    let mut reader = j.reader(j.durable_head());
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || tx.send(reader.next_blocking()).unwrap());
    assert!(
        rx.recv_timeout(Duration::from_millis(50)).is_err(),
        "the reader waits while nothing is appended"
    );
    let ack = j.append(&Batch::single(b"after")).unwrap();
    let frame = rx.recv_timeout(WAIT).expect("the reader wakes").unwrap();
    assert_eq!((frame.offset, frame.end), (ack.offset, ack.end));
    assert_eq!(frame.messages().next().unwrap().unwrap(), b"after");
    waiter.join().unwrap();
}

/// A blocking tail reader follows 300 appends across several fragment rolls, one frame at a
/// time, receiving each in order with its payload.
#[test]
fn blocking_reader_follows_appends_across_fragment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_fragments()).unwrap();
    let j = log.journal("tail").unwrap();
    let mut reader = j.reader(0);
    let follower = std::thread::spawn(move || {
        (0..300)
            .map(|_| {
                let f = reader.next_blocking().unwrap();
                (f.offset, f.messages().next().unwrap().unwrap().to_vec())
            })
            .collect::<Vec<_>>()
    });
    let mut expected = Vec::new();
    for i in 0..300 {
        let p = payload(&format!("m{i}"), 100);
        let ack = j.append(&Batch::single(&p)).unwrap();
        expected.push((ack.offset, p));
    }
    assert!(j.fragments().len() > 5, "fragments rolled");
    assert_eq!(follower.join().unwrap(), expected);
}

/// `next_timeout` returns `None` when nothing arrives in time and the frame once it does.
#[test]
fn reader_with_timeout_returns_none_then_new_frame() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_fragments()).unwrap();
    let j = log.journal("tail").unwrap();
    let mut reader = j.reader(0);
    let started = std::time::Instant::now();
    assert!(reader.next_timeout(Duration::from_millis(30)).unwrap().is_none());
    assert!(started.elapsed() >= Duration::from_millis(30));
    let j2 = j.clone();
    let appender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        j2.append(&Batch::single(b"late")).unwrap()
    });
    let frame = reader
        .next_timeout(WAIT)
        .unwrap()
        .expect("the frame arrives within the timeout");
    assert_eq!(frame.offset, appender.join().unwrap().offset);
}

/// An async reader awaiting `next()` at the head on a multi-threaded runtime is still pending
/// after 50 ms and resolves with the frame appended (asynchronously) after that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_reader_wakes_on_new_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_fragments()).unwrap();
    let j = log.journal("tail").unwrap();
    j.append_async(&Batch::single(b"before")).await.unwrap();
    let mut reader = j.reader(j.durable_head());
    let waiter = tokio::spawn(async move { reader.next().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiter.is_finished(),
        "the reader waits while nothing is appended"
    );
    let ack = j.append_async(&Batch::single(b"after")).await.unwrap();
    let frame = tokio::time::timeout(WAIT, waiter)
        .await
        .expect("the reader wakes")
        .unwrap()
        .unwrap();
    assert_eq!((frame.offset, frame.end), (ack.offset, ack.end));
    assert_eq!(frame.messages().next().unwrap().unwrap(), b"after");
}

/// Four async readers on a single-threaded runtime all wait at the head, and all receive the
/// frames appended by a plain thread after they started waiting, in order.
#[tokio::test(flavor = "current_thread")]
async fn async_readers_on_current_thread_runtime_wake_on_appends_from_thread() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_fragments()).unwrap();
    let j = log.journal("tail").unwrap();
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let mut reader = j.reader(0);
            tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..20 {
                    got.push(reader.next().await.unwrap().offset);
                }
                got
            })
        })
        .collect();
    tokio::task::yield_now().await;
    let j2 = j.clone();
    let appender = std::thread::spawn(move || {
        (0..20)
            .map(|i| {
                j2.append(&Batch::single(format!("a{i}").as_bytes()))
                    .unwrap()
                    .offset
            })
            .collect::<Vec<_>>()
    });
    for r in readers {
        let got = tokio::time::timeout(WAIT, r)
            .await
            .expect("readers wake")
            .unwrap();
        assert_eq!(got.len(), 20);
        assert!(got.windows(2).all(|w| w[0] < w[1]));
    }
    let offsets = appender.join().unwrap();
    assert_eq!(read_all(&j).iter().map(|f| f.offset).collect::<Vec<_>>(), offsets);
}
