//! Regression tests for shard bugs found while testing exactly-once (issue 4).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ss_consumer::message::{Chunk, StreamId};
use ss_consumer::shard::{Shard, ShardConfig, ShardError};
use ss_consumer::summer::{Summer, SummerConfig};
use ss_log::sim::SimStorage;
use ss_log::{AppendError, Log, Options};

fn chunk(stream: u64, seq: u32, is_final: bool, data: &[u8]) -> Chunk<'_> {
    Chunk {
        stream: StreamId(stream),
        seq,
        is_final,
        data,
    }
}

/// Bug: when a pipelined transaction's append failed (here: the disk is full) before the next
/// transaction was placed, the next placement saw the shard log head rolled back and the shard
/// stopped with `Fenced`, hiding the real cause. Checks that the shard reports the failed append.
#[test]
fn pipelined_shard_reports_a_failed_append_not_fencing() {
    let sim = SimStorage::new(3);
    let log = Log::open(DATA_DIR, Options::with_storage(Arc::new(sim.clone()))).unwrap();
    let input = log.journal("chunks").unwrap();
    let config = ShardConfig {
        txn_max_messages: 1,
        pipelined: true,
        ..ShardConfig::default()
    };
    let mut shard = Shard::recover(
        "shard",
        Summer::new(SummerConfig::default()),
        &input,
        log.journal("sums").unwrap(),
        config,
    )
    .unwrap();
    for seq in 0..3 {
        input
            .append(&chunk_batch([chunk(1, seq, seq == 2, b"data")]))
            .unwrap();
    }
    // The first transaction (a snapshot) lands; then the disk fills up.
    shard.run_transaction(Duration::ZERO).unwrap();
    shard.settle().unwrap();
    sim.set_capacity(Some(sim.used_bytes()));
    let head = shard.shard_log().durable_head();
    let report = shard.run_transaction(Duration::ZERO).unwrap();
    assert!(
        report.placed_at.is_some(),
        "the second transaction is placed, in flight"
    );
    // Let the writer fail and roll back that append before the next transaction is placed.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(shard.shard_log().durable_head(), head);
    match shard.run_transaction(Duration::ZERO) {
        Err(ShardError::Append {
            error: AppendError::NoSpace { .. },
            ..
        }) => {}
        other => panic!("expected the failed append (no space), got {other:?}"),
    }
}
