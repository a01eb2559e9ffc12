//! Our summer: a [`Shard`] driving a [`Summer`] from the chunk journal, each transaction one
//! conditional durable append (Sums + checkpoint) to a fresh shard log.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use ss_consumer::message::{Message, TAG_SUM};
use ss_consumer::shard::{Shard, ShardConfig};
use ss_consumer::summer::{Summer, SummerConfig};

use super::input::ChunkInput;
use super::SummerRun;
use crate::harness::{latency_histogram, record_us};

/// Sums the whole input into the new shard log `shard_log_name` (in the input's data directory).
pub fn run(input: &ChunkInput, shard_log_name: &str, config: &ShardConfig) -> anyhow::Result<SummerRun> {
    let shard_log = input
        .log
        .journal(shard_log_name)
        .context("creating the shard log")?;
    let summer = Summer::new(SummerConfig::default());
    let mut shard = Shard::recover(
        "compare",
        summer,
        &input.journal,
        shard_log.clone(),
        config.clone(),
    )
    .context("recovering a fresh shard")?;
    let mut latency_us = latency_histogram();
    let started = Instant::now();
    while shard.input_offset() < input.end_offset {
        let t = Instant::now();
        shard
            .run_transaction(Duration::ZERO)
            .context("our shard transaction")?;
        record_us(&mut latency_us, t.elapsed());
    }
    shard.settle().context("settling our last transaction")?;
    let elapsed = started.elapsed();
    let txns = shard.stats().txns;
    drop(shard);
    Ok(SummerRun {
        elapsed,
        txns,
        latency_us: Some(latency_us),
        sums: read_sums(&shard_log)?,
    })
}

/// Every Sum in a shard log (not timed).
fn read_sums(shard_log: &ss_log::Journal) -> anyhow::Result<HashMap<u64, [u8; 20]>> {
    let mut sums = HashMap::new();
    let mut frames = shard_log.frames(0);
    while let Some(frame) = frames.next().transpose().context("reading our shard log")? {
        for m in frames.messages(&frame) {
            let m = m.context("a shard log frame's messages")?;
            if m.first() == Some(&TAG_SUM) {
                let Message::Sum(sum) = Message::decode(m).context("decoding a Sum")? else {
                    unreachable!("tag checked")
                };
                anyhow::ensure!(
                    sums.insert(sum.stream.0, sum.sha1).is_none(),
                    "our shard log holds two Sums for stream {}",
                    sum.stream
                );
            }
        }
    }
    Ok(sums)
}
