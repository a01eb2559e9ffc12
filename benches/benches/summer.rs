//! The summer and its shard, each beside a baseline measured in the same run:
//!
//! - `summer_apply_4KiB/*`: `Summer::apply` over 4 KiB chunks of 16 interleaved streams (1 MiB
//!   per iteration, Sums included) beside raw SHA-1 (sha1 crate) of the same bytes in the same
//!   order. Throughput in chunk data bytes per second; the target is summer ≥ 85% of raw.
//! - `shard_32B/*`: a shard with the default `ShardConfig` consuming 1,048,576 pre-written 32-byte
//!   chunks (1,024 streams interleaved, 256 chunks per input frame) to its end, every transaction
//!   appended durably to its shard log on the real filesystem, beside `Summer::apply` alone over
//!   the same chunks in memory. Throughput in chunks per second; the target is ≥ 1M chunks/s.
//! - `shard_recovery_10k_open/*`: `Shard::recover` of a shard with 10,000 open streams, right
//!   after a snapshot and with the most deltas the default snapshot policy lets pile up after one
//!   (twice the snapshot's bytes); the target is < 100 ms. `reopen_log+recover` includes opening
//!   the data directory and its journals.
//!
//! Files go to a temporary directory under the current directory (the package directory under
//! `cargo bench`), or under `$SS_BENCH_DIR`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sha1::{Digest, Sha1};
use ss_consumer::message::{Chunk, StreamId};
use ss_consumer::shard::{Application, Shard, ShardConfig};
use ss_consumer::summer::{Summer, SummerConfig};
use ss_log::{Batch, Journal, Log, Options};

fn bench_root() -> PathBuf {
    let root = std::env::var_os("SS_BENCH_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);
    std::fs::create_dir_all(&root).expect("create bench dir");
    root
}

fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(bench_root())
        .expect("create a temp dir for the bench")
}

/// Pseudo-random bytes (xorshift), so chunk data is not all zeros.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Encoded chunks of `streams` streams of `chunks_per_stream` chunks of `chunk_bytes`, round-robin
/// (the order a chunker multiplexing its streams would publish them), each stream's last final.
fn interleaved_chunks(
    streams: u64,
    chunks_per_stream: u32,
    chunk_bytes: usize,
    first_id: u64,
) -> Vec<Vec<u8>> {
    let data = pattern(chunk_bytes * 64, 7);
    let mut out = Vec::with_capacity(streams as usize * chunks_per_stream as usize);
    for seq in 0..chunks_per_stream {
        for s in 0..streams {
            let at = ((s as usize + seq as usize) % 64) * chunk_bytes;
            let mut m = Vec::with_capacity(chunk_bytes + 16);
            Chunk {
                stream: StreamId(first_id + s),
                seq,
                is_final: seq + 1 == chunks_per_stream,
                data: &data[at..at + chunk_bytes],
            }
            .encode(&mut m);
            out.push(m);
        }
    }
    out
}

/// Applies every chunk to a fresh summer (frame offsets advance per chunk, as if one per frame).
fn apply_all(chunks: &[Vec<u8>], out: &mut Batch) -> u64 {
    let mut summer = Summer::new(SummerConfig::default());
    out.clear();
    for (i, m) in chunks.iter().enumerate() {
        summer.apply(m, i as u64 * 64, out).expect("apply");
    }
    summer.counters().sums
}

fn summer_apply_4k(c: &mut Criterion) {
    const STREAMS: u64 = 16;
    const CHUNKS_PER_STREAM: u32 = 16;
    const CHUNK_BYTES: usize = 4096;
    let chunks = interleaved_chunks(STREAMS, CHUNKS_PER_STREAM, CHUNK_BYTES, 1);
    let decoded: Vec<(usize, &[u8])> = chunks
        .iter()
        .map(|m| {
            let c = Chunk::decode(m).expect("decode");
            ((c.stream.0 - 1) as usize, c.data)
        })
        .collect();
    let mut group = c.benchmark_group("summer_apply_4KiB");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Bytes((chunks.len() * CHUNK_BYTES) as u64));
    group.bench_function("raw_sha1", |b| {
        b.iter(|| {
            let mut hashers = vec![Sha1::new(); STREAMS as usize];
            for &(s, data) in &decoded {
                hashers[s].update(data);
            }
            for h in hashers {
                black_box(h.finalize());
            }
        })
    });
    let mut out = Batch::with_capacity(64 << 10);
    group.bench_function("summer_apply", |b| {
        b.iter(|| {
            let sums = apply_all(&chunks, &mut out);
            assert_eq!(sums, STREAMS);
        })
    });
    group.finish();
}

/// A data directory holding pre-written 32-byte chunks in journal `chunks-0`.
struct ShardFixture {
    _dir: tempfile::TempDir,
    log: Log,
    input: Journal,
    chunk_count: u64,
    runs: u64,
}

impl ShardFixture {
    fn new() -> ShardFixture {
        const STREAMS: u64 = 1024;
        const CHUNKS_PER_STREAM: u32 = 1024;
        const CHUNKS_PER_FRAME: usize = 256;
        let dir = temp_dir("summer-bench-shard-");
        let log = Log::open(dir.path(), Options::default()).expect("open bench log");
        let input = log.journal("chunks-0").expect("input journal");
        let chunks = interleaved_chunks(STREAMS, CHUNKS_PER_STREAM, 32, 1 << 40);
        let mut pending = Vec::new();
        for frame in chunks.chunks(CHUNKS_PER_FRAME) {
            let mut batch = Batch::with_capacity(frame.len() * 52);
            for m in frame {
                batch.push(m);
            }
            pending.push(input.submit(&batch).expect("write input"));
            if pending.len() == 256 {
                pending.drain(..).for_each(|p| {
                    p.wait().expect("durable input");
                });
            }
        }
        pending.drain(..).for_each(|p| {
            p.wait().expect("durable input");
        });
        ShardFixture {
            _dir: dir,
            log,
            input,
            chunk_count: chunks.len() as u64,
            runs: 0,
        }
    }

    /// Runs a fresh shard (its own new shard log) over the whole input; returns the time taken
    /// from recovery to the last transaction being durable.
    fn run_shard(&mut self) -> Duration {
        self.runs += 1;
        let shard_log = self
            .log
            .journal(&format!("sums-{}", self.runs))
            .expect("shard log");
        let started = Instant::now();
        let mut shard = Shard::recover(
            "shard-0",
            Summer::new(SummerConfig::default()),
            &self.input,
            shard_log,
            ShardConfig::default(),
        )
        .expect("recover");
        shard
            .run_until(self.input.durable_head(), Duration::ZERO)
            .expect("run shard");
        let elapsed = started.elapsed();
        assert_eq!(shard.app().counters().chunks, self.chunk_count);
        elapsed
    }

    /// Every input chunk, to apply in memory.
    fn chunks(&self) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut reader = self.input.reader(0);
        while let Some(frame) = reader.try_next().expect("read input") {
            for m in frame.messages() {
                out.push((frame.offset, m.expect("message").to_vec()));
            }
        }
        out
    }
}

fn shard_32b(c: &mut Criterion) {
    let mut fixture = ShardFixture::new();
    let chunks = fixture.chunks();
    let mut group = c.benchmark_group("shard_32B");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(fixture.chunk_count));
    group.bench_function("summer_apply_in_memory", |b| {
        let mut out = Batch::with_capacity(1 << 20);
        b.iter(|| {
            let mut summer = Summer::new(SummerConfig::default());
            out.clear();
            for (offset, m) in &chunks {
                summer.apply(m, *offset, &mut out).expect("apply");
            }
            black_box(summer.counters());
        })
    });
    group.bench_function("shard_durable", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| fixture.run_shard()).sum())
    });
    group.finish();
}

/// A data directory with two shard logs of a shard with 10,000 open streams: `sums-snapshot`
/// ends with the snapshot, `sums-deltas` has twice the snapshot's bytes in deltas after it.
struct RecoveryFixture {
    dir: tempfile::TempDir,
    delta_count: u64,
    snapshot_bytes: u64,
    delta_bytes: u64,
}

const OPEN_STREAMS: u64 = 10_000;

fn recovery_fixture() -> RecoveryFixture {
    let dir = temp_dir("summer-bench-recovery-");
    let log = Log::open(dir.path(), Options::default()).expect("open bench log");
    let input = log.journal("chunks-0").expect("input");
    // 10,000 streams opened (100 chunks per frame), then 5,000 frames touching 10 streams each.
    let opening = interleaved_chunks(OPEN_STREAMS, 2, 32, 1);
    for frame in opening[..OPEN_STREAMS as usize].chunks(100) {
        let mut batch = Batch::new();
        frame.iter().for_each(|m| batch.push(m));
        input.append(&batch).expect("write input");
    }
    let opened_end = input.durable_head();
    let data = pattern(32, 3);
    let mut next_seq = vec![1u32; OPEN_STREAMS as usize];
    let mut pending = Vec::new();
    for f in 0..5_000u64 {
        let mut batch = Batch::new();
        for k in 0..10 {
            let s = (f * 7919 + k * 1009) % OPEN_STREAMS;
            let seq = next_seq[s as usize];
            next_seq[s as usize] += 1;
            batch.push_with(|b| {
                Chunk {
                    stream: StreamId(1 + s),
                    seq,
                    is_final: false,
                    data: &data,
                }
                .encode(b)
            });
        }
        pending.push(input.submit(&batch).expect("write input"));
    }
    pending.into_iter().for_each(|p| {
        p.wait().expect("durable input");
    });

    let opening_config = ShardConfig {
        txn_max_messages: OPEN_STREAMS as usize,
        txn_max_input_bytes: u64::MAX,
        txn_max_duration: Duration::from_secs(600),
        ..ShardConfig::default()
    };
    let recover = |name: &str, config: ShardConfig| {
        Shard::recover(
            "shard-0",
            Summer::new(SummerConfig::default()),
            &input,
            log.journal(name).expect("shard log"),
            config,
        )
        .expect("recover")
    };
    let mut snapshot_bytes = 0;
    for name in ["sums-snapshot", "sums-deltas"] {
        let mut shard = recover(name, opening_config.clone());
        let report = shard
            .run_transaction(Duration::ZERO)
            .expect("opening transaction");
        assert!(report.snapshot && shard.input_offset() == opened_end);
        assert_eq!(shard.app().open_streams(), OPEN_STREAMS as usize);
        snapshot_bytes = report.checkpoint_bytes;
        shard.settle().expect("settle");
    }
    // The default policy snapshots again once deltas reach twice the last snapshot: stop just
    // short of that (the policy is disabled here so that it does not).
    let mut shard = recover(
        "sums-deltas",
        ShardConfig {
            txn_max_messages: 10,
            snapshot_min_delta_bytes: u64::MAX,
            ..ShardConfig::default()
        },
    );
    let mut delta_bytes = 0;
    let mut delta_count = 0;
    loop {
        let report = shard.run_transaction(Duration::ZERO).expect("delta transaction");
        assert!(
            !report.snapshot && report.placed_at.is_some(),
            "input for enough deltas"
        );
        delta_bytes += report.checkpoint_bytes;
        delta_count += 1;
        if delta_bytes + report.checkpoint_bytes >= 2 * snapshot_bytes {
            break;
        }
    }
    shard.settle().expect("settle");
    drop(shard);
    RecoveryFixture {
        dir,
        delta_count,
        snapshot_bytes,
        delta_bytes,
    }
}

fn shard_recovery(c: &mut Criterion) {
    let fixture = recovery_fixture();
    eprintln!(
        "shard_recovery_10k_open: snapshot {} bytes; {} deltas, {} bytes after it",
        fixture.snapshot_bytes, fixture.delta_count, fixture.delta_bytes
    );
    let mut group = c.benchmark_group("shard_recovery_10k_open");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    let log = Log::open(fixture.dir.path(), Options::default()).expect("open bench log");
    let input = log.journal("chunks-0").expect("input");
    for (label, journal) in [
        ("snapshot", "sums-snapshot"),
        ("snapshot+2x_deltas", "sums-deltas"),
    ] {
        let shard_log = log.journal(journal).expect("shard log");
        group.bench_function(BenchmarkId::new("recover", label), |b| {
            b.iter(|| {
                let shard = Shard::recover(
                    "shard-0",
                    Summer::new(SummerConfig::default()),
                    &input,
                    shard_log.clone(),
                    ShardConfig::default(),
                )
                .expect("recover");
                assert_eq!(shard.app().open_streams(), OPEN_STREAMS as usize);
                shard
            })
        });
    }
    drop((input, log));
    group.bench_function(
        BenchmarkId::new("reopen_log+recover", "snapshot+2x_deltas"),
        |b| {
            b.iter(|| {
                let log = Log::open(fixture.dir.path(), Options::default()).expect("open bench log");
                let input = log.journal("chunks-0").expect("input");
                let shard = Shard::recover(
                    "shard-0",
                    Summer::new(SummerConfig::default()),
                    &input,
                    log.journal("sums-deltas").expect("shard log"),
                    ShardConfig::default(),
                )
                .expect("recover");
                assert_eq!(shard.stats().recovered_deltas, fixture.delta_count);
                drop(shard);
            })
        },
    );
    group.finish();
}

criterion_group!(benches, summer_apply_4k, shard_32b, shard_recovery);
criterion_main!(benches);
