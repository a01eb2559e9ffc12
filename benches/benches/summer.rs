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
    const DATA_MIB: f64 = (STREAMS * CHUNKS_PER_STREAM as u64 * CHUNK_BYTES as u64) as f64 / (1 << 20) as f64;
    let mut group = c.benchmark_group("summer_apply_4KiB");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Bytes((chunks.len() * CHUNK_BYTES) as u64));
    let raw = || {
        let mut hashers = vec![Sha1::new(); STREAMS as usize];
        for &(s, data) in &decoded {
            hashers[s].update(data);
        }
        for h in hashers {
            black_box(h.finalize());
        }
    };
    let mut out = Batch::with_capacity(64 << 10);
    let mut summer = || {
        let sums = apply_all(&chunks, &mut out);
        assert_eq!(sums, STREAMS);
    };
    group.bench_function("raw_sha1", |b| b.iter(raw));
    group.bench_function("summer_apply", |b| b.iter(&mut summer));
    group.finish();

    // The machine is shared and its load shifts between the two measurements above; alternating
    // them gives a ratio that load affects much less.
    if std::env::args().any(|a| a == "--bench") && filter_matches("summer_apply_4KiB") {
        let mut raw_best_s = f64::MAX;
        let mut summer_best_s = f64::MAX;
        let mut ratios: Vec<f64> = (0..PAIRED_ROUNDS)
            .map(|_| {
                let t = Instant::now();
                (0..4).for_each(|_| raw());
                let raw_s = t.elapsed().as_secs_f64();
                let t = Instant::now();
                (0..4).for_each(|_| summer());
                let summer_s = t.elapsed().as_secs_f64();
                raw_best_s = raw_best_s.min(raw_s);
                summer_best_s = summer_best_s.min(summer_s);
                raw_s / summer_s
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        eprintln!(
            "summer_apply_4KiB: summer / raw SHA-1 throughput over {PAIRED_ROUNDS} alternating rounds: \
             best times {:.1}% (raw {:.0} MiB/s, summer {:.0} MiB/s); per-round median {:.1}%, \
             quartiles {:.1}%..{:.1}%",
            100.0 * raw_best_s / summer_best_s,
            4.0 * DATA_MIB / raw_best_s,
            4.0 * DATA_MIB / summer_best_s,
            100.0 * ratios[PAIRED_ROUNDS / 2],
            100.0 * ratios[PAIRED_ROUNDS / 4],
            100.0 * ratios[3 * PAIRED_ROUNDS / 4]
        );
    }
}

const PAIRED_ROUNDS: usize = 61;

/// Whether the criterion filter given on the command line (if any) selects `name`.
fn filter_matches(name: &str) -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filter = args.iter().find(|a| !a.starts_with('-'));
    filter.is_none_or(|f| name.contains(f.as_str()) || f.contains(name))
}

const SHARD_STREAMS: u64 = 1024;
const SHARD_CHUNKS_PER_STREAM: u32 = 1024;
const SHARD_CHUNKS_PER_FRAME: usize = 256;

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
        let dir = temp_dir("summer-bench-shard-");
        let log = Log::open(dir.path(), Options::default()).expect("open bench log");
        let input = log.journal("chunks-0").expect("input journal");
        let chunks = interleaved_chunks(SHARD_STREAMS, SHARD_CHUNKS_PER_STREAM, 32, 1 << 40);
        let mut pending = Vec::new();
        for frame in chunks.chunks(SHARD_CHUNKS_PER_FRAME) {
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
}

fn shard_32b(c: &mut Criterion) {
    // Built on first use, so that filtering the bench out skips writing the input.
    let mut fixture: Option<ShardFixture> = None;
    let chunks: Vec<(u64, Vec<u8>)> = interleaved_chunks(SHARD_STREAMS, SHARD_CHUNKS_PER_STREAM, 32, 1 << 40)
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            (
                (i / SHARD_CHUNKS_PER_FRAME) as u64 * (SHARD_CHUNKS_PER_FRAME as u64 * 52),
                m,
            )
        })
        .collect();
    let mut group = c.benchmark_group("shard_32B");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(chunks.len() as u64));
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
        let fixture = fixture.get_or_insert_with(ShardFixture::new);
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
        txn_max_output_bytes: u64::MAX,
        txn_max_duration: Duration::from_secs(600),
        txn_max_output_delay: Duration::from_secs(600),
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
        // The opening transaction's delta is followed by a snapshot frame of all the streams.
        snapshot_bytes = report.snapshot_bytes;
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

/// The fixture, built on first use (so that filtering the bench out skips it), with its log
/// open or closed as asked.
fn recovery_log(fixture: &mut Option<(RecoveryFixture, Option<Log>)>, open: bool) -> &RecoveryFixture {
    let (fixture, log) = fixture.get_or_insert_with(|| {
        let fixture = recovery_fixture();
        eprintln!(
            "shard_recovery_10k_open: snapshot {} bytes; {} deltas, {} bytes after it",
            fixture.snapshot_bytes, fixture.delta_count, fixture.delta_bytes
        );
        (fixture, None)
    });
    if !open {
        *log = None;
    } else if log.is_none() {
        *log = Some(Log::open(fixture.dir.path(), Options::default()).expect("open bench log"));
    }
    fixture
}

fn shard_recovery(c: &mut Criterion) {
    let mut fixture = None;
    let mut group = c.benchmark_group("shard_recovery_10k_open");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    for (label, journal) in [
        ("snapshot", "sums-snapshot"),
        ("snapshot+2x_deltas", "sums-deltas"),
    ] {
        group.bench_function(BenchmarkId::new("recover", label), |b| {
            recovery_log(&mut fixture, true);
            let log = fixture.as_ref().and_then(|f| f.1.clone()).expect("open log");
            let input = log.journal("chunks-0").expect("input");
            let shard_log = log.journal(journal).expect("shard log");
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
    group.bench_function(
        BenchmarkId::new("reopen_log+recover", "snapshot+2x_deltas"),
        |b| {
            let fixture = recovery_log(&mut fixture, false);
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
