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

/// Regression: with the default limits a shard could hold up to 50,000 open streams, but a
/// snapshot of more than about 37,000 exceeded the default 4 MiB `frame_max_bytes`, so the shard
/// stopped with `FrameTooLarge` at its next snapshot, and again after every restart. Now the
/// defaults fit: a shard at exactly `max_open_streams`, with a full finished window, runs through
/// its snapshots (written in frames of their own), and one more stream is a clear error.
#[test]
fn shard_at_max_open_streams_with_a_full_finished_window_keeps_running_through_snapshots() {
    let config = SummerConfig::default();
    let open = config.max_open_streams as u64;
    let sim = SimStorage::new(1);
    let log = Log::open(DATA_DIR, Options::with_storage(Arc::new(sim))).unwrap();
    let input = log.journal("chunks-0").unwrap();
    // Fill the finished window with single-chunk streams.
    let finished = config.finished_window as u64;
    for frame in 0..finished.div_ceil(1000) {
        let chunks = (0..1000u64).map(|i| Chunk {
            stream: StreamId(1 << 40 | (frame * 1000 + i)),
            seq: 0,
            is_final: true,
            data: b"y",
        });
        input.append(&chunk_batch(chunks)).unwrap();
    }
    for seq in 0..3u32 {
        for frame in 0..open.div_ceil(1000) {
            let chunks = (frame * 1000..((frame + 1) * 1000).min(open)).map(|i| Chunk {
                stream: StreamId(i),
                seq,
                is_final: false,
                data: b"x",
            });
            input.append(&chunk_batch(chunks)).unwrap();
        }
    }
    let mut shard = Shard::recover(
        "shard-0",
        Summer::new(config.clone()),
        &input,
        log.journal("sums-0").unwrap(),
        ShardConfig::default(),
    )
    .unwrap();
    shard
        .run_until(input.durable_head(), Duration::ZERO)
        .expect("max_open_streams open streams are allowed");
    assert_eq!(shard.app().open_streams() as u64, open);
    assert!(
        shard.stats().snapshots >= 2,
        "snapshots of all streams were written"
    );
    let one_more = Chunk {
        stream: StreamId(open),
        seq: 0,
        is_final: false,
        data: b"z",
    };
    input.append(&chunk_batch([one_more])).unwrap();
    let error = shard.run_until(input.durable_head(), Duration::ZERO).unwrap_err();
    assert!(error.to_string().contains("too many open streams"), "{error}");
    // A limit, not a violation: the CLI exits 3 (operational error) for it, not 1.
    assert!(
        matches!(error, ss_consumer::shard::ShardError::Limit { .. }),
        "{error:?}"
    );
}
