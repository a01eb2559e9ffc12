//! Limits of a shard with default settings (default `SummerConfig`, `ShardConfig` and log
//! `Options`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ss_consumer::message::{Chunk, StreamId};
use ss_consumer::shard::{Shard, ShardConfig};
use ss_consumer::summer::{Summer, SummerConfig};
use ss_log::sim::SimStorage;
use ss_log::{Log, Options};

/// Known bug, not fixed yet (reported to the lead): with the default limits a shard may hold up
/// to 50,000 open streams, but a snapshot of more than about 37,000 (112 bytes each, plus 12 per
/// remembered finished stream) exceeds the default 4 MiB `frame_max_bytes`; the shard then stops
/// with `FrameTooLarge` at its next snapshot, and again after every restart. Checks that a shard
/// with 40,000 open streams, each touched three times, runs to the end of its input.
#[test]
#[ignore = "known bug: a snapshot of 40,000 open streams exceeds the default frame_max_bytes"]
fn shard_below_max_open_streams_keeps_running_through_snapshots() {
    let sim = SimStorage::new(1);
    let log = Log::open(DATA_DIR, Options::with_storage(Arc::new(sim))).unwrap();
    let input = log.journal("chunks-0").unwrap();
    for seq in 0..3u32 {
        for frame in 0..40u64 {
            let chunks = (0..1000u64).map(|i| Chunk {
                stream: StreamId(frame * 1000 + i),
                seq,
                is_final: false,
                data: b"x",
            });
            input.append(&chunk_batch(chunks)).unwrap();
        }
    }
    let summer = Summer::new(SummerConfig::default());
    let mut shard = Shard::recover(
        "shard-0",
        summer,
        &input,
        log.journal("sums-0").unwrap(),
        ShardConfig::default(),
    )
    .unwrap();
    shard
        .run_until(input.durable_head(), Duration::ZERO)
        .expect("40,000 open streams are below max_open_streams");
    assert_eq!(shard.app().open_streams(), 40_000);
    assert!(
        shard.stats().snapshots >= 2,
        "a snapshot of all 40,000 streams was written"
    );
}
