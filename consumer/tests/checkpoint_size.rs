//! Checkpoint cost tracks a transaction's own work: with 10,000 open streams, a transaction that
//! touches 10 streams writes a delta of about 10 streams' state, while a snapshot holds all
//! 10,000; and a shard recovered from a snapshot plus many deltas continues exactly where the
//! live one was.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha1::{Digest, Sha1};
use ss_consumer::checkpoint::CHECKPOINT_HEADER_BYTES;
use ss_consumer::message::{Chunk, StreamId};
use ss_consumer::shard::{Shard, ShardConfig, TxnReport};
use ss_consumer::summer::{Summer, SummerConfig, SHA1_STATE_BYTES};
use ss_log::sim::SimStorage;
use ss_log::{Journal, Log, Options};

const OPEN_STREAMS: usize = 10_000;
const TOUCHED_PER_TXN: usize = 10;
/// Bytes of one open stream in a checkpoint: id, last seq, last active offset, SHA-1 state.
const OPEN_ENTRY_BYTES: u64 = 8 + 4 + 8 + SHA1_STATE_BYTES as u64;
/// Fixed part of a summer checkpoint besides its entries: three counts, five counters, the next
/// expiry check (60 bytes today), with some room.
const FIXED_STATE_BYTES_MAX: u64 = 64;
/// Delta transactions to run after the snapshot that 10,000 open streams trigger, before the
/// recovery check.
const DELTAS_AFTER_SNAPSHOT: usize = 300;
/// 10-stream frames written ahead: enough for the deltas that trigger the snapshot (twice the
/// last snapshot's size, about 1,800 of them) and those after it.
const TOUCHING_FRAMES: usize = 2_600;

/// The input and the oracle: a running SHA-1 and the next sequence number per stream.
struct Streams {
    hashers: Vec<Sha1>,
    next_seq: Vec<u32>,
}

impl Streams {
    fn id(i: usize) -> StreamId {
        StreamId(0x5eed_0000 + i as u64)
    }

    /// Appends one frame holding the next chunk of each of `which`; the last if `is_final`.
    fn publish(&mut self, input: &Journal, which: &[usize], is_final: bool, rng: &mut StdRng) {
        let data: Vec<Vec<u8>> = which.iter().map(|_| pattern(32, rng.random())).collect();
        let chunks: Vec<Chunk<'_>> = which
            .iter()
            .zip(&data)
            .map(|(&i, d)| {
                self.hashers[i].update(d);
                self.next_seq[i] += 1;
                Chunk {
                    stream: Streams::id(i),
                    seq: self.next_seq[i] - 1,
                    is_final,
                    data: d,
                }
            })
            .collect();
        input.append(&chunk_batch(chunks)).expect("publish");
    }
}

fn recover(input: &Journal, log: &Log) -> Shard<Summer> {
    let config = ShardConfig {
        // Every input frame (100 or 10 chunks) is one transaction.
        txn_max_messages: TOUCHED_PER_TXN,
        txn_max_duration: Duration::from_secs(60),
        txn_max_output_delay: Duration::from_secs(60),
        ..ShardConfig::default()
    };
    Shard::recover(
        "shard-0",
        // 13,366 open streams fit a 2 MiB frame beside the default finished window.
        Summer::new(SummerConfig::default().fitting_frames_of(2 << 20)),
        input,
        log.journal("sums-0").unwrap(),
        config,
    )
    .expect("recover")
}

/// Opens 10,000 streams, then runs transactions that each touch 10 of them until the shard
/// writes a snapshot, and 300 more. Checks that every such delta is 10 entries plus a small fixed
/// part, that the snapshot holds all 10,000 entries (hundreds of times a delta), and that a shard
/// recovered from that snapshot plus the 300 deltas has the same state: finishing every stream
/// after recovery gives one Sum per stream equal to the oracle's SHA-1.
#[test]
fn delta_checkpoints_track_streams_touched_not_streams_open() {
    let mut rng = StdRng::seed_from_u64(10_000);
    let sim = SimStorage::new(1);
    // Fragments just big enough for a snapshot: the simulated storage copies a whole fragment
    // on every sync and on every read after the head moved.
    let options = Options {
        fragment_max_bytes: 2 << 20,
        frame_max_bytes: 2 << 20,
        ..Options::with_storage(Arc::new(sim))
    };
    let log = Log::open(DATA_DIR, options).unwrap();
    let input = log.journal("chunks-0").unwrap();
    let mut streams = Streams {
        hashers: vec![Sha1::new(); OPEN_STREAMS],
        next_seq: vec![0; OPEN_STREAMS],
    };
    for first in (0..OPEN_STREAMS).step_by(100) {
        let which: Vec<usize> = (first..first + 100).collect();
        streams.publish(&input, &which, false, &mut rng);
    }
    let opened_end = input.durable_head();
    for _ in 0..TOUCHING_FRAMES {
        let mut which = Vec::new();
        while which.len() < TOUCHED_PER_TXN {
            let i = rng.random_range(0..OPEN_STREAMS);
            if !which.contains(&i) {
                which.push(i);
            }
        }
        streams.publish(&input, &which, false, &mut rng);
    }
    let mut shard = recover(&input, &log);
    shard.run_until(opened_end, Duration::ZERO).unwrap();
    assert_eq!(shard.app().open_streams(), OPEN_STREAMS);

    let delta_min = CHECKPOINT_HEADER_BYTES as u64 + TOUCHED_PER_TXN as u64 * OPEN_ENTRY_BYTES;
    let delta_max = delta_min + FIXED_STATE_BYTES_MAX;
    let snapshot_min = OPEN_STREAMS as u64 * OPEN_ENTRY_BYTES;
    let mut deltas: Vec<TxnReport> = Vec::new();
    let mut snapshot: Option<TxnReport> = None;
    let mut after_snapshot = 0;
    while after_snapshot < DELTAS_AFTER_SNAPSHOT {
        assert!(
            shard.input_offset() < input.durable_head(),
            "no snapshot after {} deltas",
            deltas.len()
        );
        let report = shard.run_transaction(Duration::ZERO).unwrap();
        assert_eq!(report.input_messages, TOUCHED_PER_TXN as u64);
        if report.snapshot {
            assert!(snapshot.is_none(), "one snapshot expected in this phase");
            snapshot = Some(report);
        } else {
            assert!(
                (delta_min..=delta_max).contains(&report.checkpoint_bytes),
                "a delta touching {TOUCHED_PER_TXN} of {OPEN_STREAMS} open streams is {} bytes, \
                 expected {delta_min}..={delta_max}",
                report.checkpoint_bytes
            );
            deltas.push(report);
            if snapshot.is_some() {
                after_snapshot += 1;
            }
        }
    }
    shard.settle().unwrap();
    let snapshot = snapshot.expect("a snapshot");
    let delta_bytes = deltas[0].checkpoint_bytes;
    assert!(
        deltas.iter().all(|d| d.checkpoint_bytes == delta_bytes),
        "deltas vary in size"
    );
    assert!(
        snapshot.snapshot_bytes >= snapshot_min,
        "snapshot of {OPEN_STREAMS} open streams is {} bytes",
        snapshot.snapshot_bytes
    );
    eprintln!(
        "checkpoint_size: {OPEN_STREAMS} open streams: delta touching {TOUCHED_PER_TXN} = {delta_bytes} B, \
         snapshot = {} B ({}x), {} deltas before the snapshot",
        snapshot.snapshot_bytes,
        snapshot.snapshot_bytes / delta_bytes,
        deltas.len() - DELTAS_AFTER_SNAPSHOT
    );

    // Recovery: the latest snapshot plus every delta after it.
    let live_counters = shard.app().counters();
    let live_offset = shard.input_offset();
    let live_last_seqs: Vec<Option<u32>> = (0..OPEN_STREAMS)
        .map(|i| shard.app().open_stream_last_seq(Streams::id(i)))
        .collect();
    drop(shard);
    let started = std::time::Instant::now();
    let mut shard = recover(&input, &log);
    eprintln!("checkpoint_size: recovery took {:?}", started.elapsed());
    assert_eq!(shard.stats().recovered_deltas, DELTAS_AFTER_SNAPSHOT as u64);
    assert_eq!(shard.input_offset(), live_offset);
    assert_eq!(shard.app().counters(), live_counters);
    assert_eq!(shard.app().open_streams(), OPEN_STREAMS);
    for (i, live) in live_last_seqs.iter().enumerate() {
        assert!(live.is_some());
        assert_eq!(
            shard.app().open_stream_last_seq(Streams::id(i)),
            *live,
            "stream {i}"
        );
    }

    // Finish every stream after recovery and compare each Sum with the oracle.
    assert!(
        shard.input_offset() < input.durable_head(),
        "touching frames remain"
    );
    for first in (0..OPEN_STREAMS).step_by(100) {
        let which: Vec<usize> = (first..first + 100).collect();
        streams.publish(&input, &which, true, &mut rng);
    }
    let sums_before = read_shard_log(shard.shard_log()).sums.len();
    shard.run_until(input.durable_head(), Duration::ZERO).unwrap();
    assert_eq!(shard.app().open_streams(), 0);
    let contents = read_shard_log(shard.shard_log());
    assert_eq!(sums_before, 0);
    assert_eq!(contents.sums.len(), OPEN_STREAMS);
    let counts = contents.sum_counts();
    for sum in &contents.sums {
        let i = (sum.stream.0 - Streams::id(0).0) as usize;
        let expected: [u8; 20] = streams.hashers[i].clone().finalize().into();
        assert_eq!(sum.sha1, expected, "stream {}", sum.stream);
        assert_eq!(sum.last_seq, streams.next_seq[i] - 1);
        assert_eq!(counts[&sum.stream], 1);
    }
}
