//! Async (tokio) driving: producers publish with `append_async` while a shard runs
//! `run_transaction_async`, on the real filesystem, with the shard dropped mid-way and recovered.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ss_consumer::message::{Chunk, StreamId};
use ss_consumer::shard::{Shard, ShardConfig};
use ss_consumer::summer::{Summer, SummerConfig};
use ss_log::{Journal, Log, Options};

const PRODUCERS: u64 = 3;
const STREAMS_PER_PRODUCER: u64 = 20;

/// One producer task: its streams, interleaved, one `append_async` per frame. Returns the oracle
/// SHA-1 of each of its streams.
async fn produce(producer: u64, input: Journal) -> HashMap<StreamId, [u8; 20]> {
    let mut rng = StdRng::seed_from_u64(producer);
    let streams: Vec<(StreamId, Vec<Vec<u8>>)> = (0..STREAMS_PER_PRODUCER)
        .map(|i| {
            let chunks = (0..rng.random_range(1..8))
                .map(|_| pattern(rng.random_range(0..2000), rng.random()))
                .collect();
            (StreamId(producer << 32 | i), chunks)
        })
        .collect();
    let mut next = vec![0usize; streams.len()];
    loop {
        let live: Vec<usize> = (0..streams.len())
            .filter(|&i| next[i] < streams[i].1.len())
            .collect();
        if live.is_empty() {
            break;
        }
        let picked: Vec<usize> = (0..rng.random_range(1..4))
            .map(|_| live[rng.random_range(0..live.len())])
            .collect();
        let mut frame = Vec::new();
        for i in picked {
            if next[i] < streams[i].1.len() && !frame.iter().any(|&(j, _)| j == i) {
                frame.push((i, next[i]));
                next[i] += 1;
            }
        }
        let batch = chunk_batch(frame.iter().map(|&(i, seq)| Chunk {
            stream: streams[i].0,
            seq: seq as u32,
            is_final: seq + 1 == streams[i].1.len(),
            data: &streams[i].1[seq],
        }));
        input.append_async(&batch).await.expect("publish");
        if rng.random_bool(0.2) {
            tokio::task::yield_now().await;
        }
    }
    streams
        .iter()
        .map(|(id, chunks)| (*id, sha1_of(chunks.iter().map(Vec::as_slice))))
        .collect()
}

fn recover(input: &Journal, log: &Log, pipelined: bool) -> Shard<Summer> {
    let config = ShardConfig {
        txn_max_messages: 16,
        snapshot_min_delta_bytes: 2048,
        pipelined,
        ..ShardConfig::default()
    };
    Shard::recover(
        "shard-0",
        Summer::new(SummerConfig::default()),
        input,
        log.journal("sums-0").unwrap(),
        config,
    )
    .expect("recover")
}

async fn producers_and_async_shard(pipelined: bool) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Options::default()).unwrap();
    let input = log.journal("chunks-0").unwrap();
    let producers_done = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let input = input.clone();
            let done = producers_done.clone();
            tokio::spawn(async move {
                let oracle = produce(p, input).await;
                done.fetch_add(1, Ordering::SeqCst);
                oracle
            })
        })
        .collect();

    let mut shard = recover(&input, &log, pipelined);
    let mut restarted = false;
    let mut txns = 0u64;
    loop {
        let all_published = producers_done.load(Ordering::SeqCst) == PRODUCERS as usize;
        let head = input.durable_head();
        if all_published && shard.input_offset() == head {
            break;
        }
        let report = shard
            .run_transaction_async(Duration::from_millis(5))
            .await
            .expect("async transaction");
        txns += u64::from(report.placed_at.is_some());
        if !restarted && txns == 10 {
            // The owner dies without settling; the next one recovers and carries on.
            drop(shard);
            shard = recover(&input, &log, pipelined);
            restarted = true;
        }
    }
    shard.settle_async().await.expect("settle");
    assert!(restarted, "the shard was restarted mid-way");
    assert_eq!(shard.durable_input_offset(), input.durable_head());

    let mut oracle = HashMap::new();
    for t in tasks {
        oracle.extend(t.await.unwrap());
    }
    let contents = read_shard_log(shard.shard_log());
    assert_eq!(contents.sums.len(), oracle.len(), "one Sum per stream");
    let counts = contents.sum_counts();
    for sum in &contents.sums {
        assert_eq!(Some(&sum.sha1), oracle.get(&sum.stream), "Sum of {}", sum.stream);
        assert_eq!(counts[&sum.stream], 1);
    }
    assert_eq!(shard.app().counters().sums, oracle.len() as u64);
}

/// Producer tasks and a pipelined async shard on a multi-threaded runtime: every stream gets one
/// correct Sum, across a restart of the shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_shard_pipelined_sums_every_stream_once() {
    producers_and_async_shard(true).await;
}

/// The same with a shard that waits for each transaction's append before the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_shard_unpipelined_sums_every_stream_once() {
    producers_and_async_shard(false).await;
}
