//! Durable appends beside raw `write` + `fdatasync` of the same bytes, measured in the same run:
//!
//! - `append_large/*`: one writer appending 64 KiB and 1 MiB frames, each waiting until durable,
//!   beside raw writes of the same frame bytes into a pre-written (zero-filled, synced beforehand)
//!   file and into a file that grows with each write. Throughput in payload bytes per second.
//! - `append_small_concurrent/*`: 8 tokio tasks appending 128-byte records, each keeping up to 256
//!   appends in flight, beside raw commits of the same bytes 2048 records at a time. Throughput in
//!   records per second.
//!
//! Files go to cargo's target tmp dir (the build disk, not a tmpfs `/tmp`) or `$SS_BENCH_DIR`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ss_benches::append::{
    append_concurrent, append_sequential, raw_commits, ConcurrentShape, ExtendingFile, JournalFixture,
    PrewrittenFile,
};
use ss_benches::{pattern_bytes, scratch};
use ss_log::frame::{frame_len_bytes, MESSAGE_LEN_PREFIX_BYTES};
use ss_log::{Batch, Options};

const RECORD_BYTES: usize = 128;
const SHAPE: ConcurrentShape = ConcurrentShape {
    writers: 8,
    in_flight_max: 256,
};
/// Size of the pre-written baseline file; writes wrap around inside it.
const PREWRITTEN_FILE_BYTES: u64 = 64 << 20;

fn bench_root() -> PathBuf {
    scratch::bench_root(Path::new(env!("CARGO_TARGET_TMPDIR")))
}

/// On-disk bytes of a frame holding one message of `payload_bytes`.
fn frame_bytes(payload_bytes: usize) -> usize {
    frame_len_bytes(payload_bytes + MESSAGE_LEN_PREFIX_BYTES) as usize
}

fn append_large(c: &mut Criterion) {
    let root = bench_root();
    let mut group = c.benchmark_group("append_large");
    for (label, payload_bytes) in [("64KiB", 64usize << 10), ("1MiB", 1 << 20)] {
        group.throughput(Throughput::Bytes(payload_bytes as u64));
        let batch = Batch::single(&pattern_bytes(payload_bytes, 1));
        let fixture = JournalFixture::new(&root, Options::default());
        group.bench_function(BenchmarkId::new("journal", label), |b| {
            b.iter_custom(|iters| {
                let elapsed = append_sequential(&fixture.journal, &batch, iters);
                fixture.trim();
                elapsed
            })
        });
        drop(fixture);

        let raw_dir = scratch::temp_dir(&root, "raw-");
        let frame = pattern_bytes(frame_bytes(payload_bytes), 2);
        let mut prewritten =
            PrewrittenFile::create(&raw_dir.path().join("prewritten"), PREWRITTEN_FILE_BYTES);
        group.bench_function(BenchmarkId::new("raw_prewritten", label), |b| {
            b.iter(|| prewritten.write_durable(&frame))
        });
        let mut extending = ExtendingFile::create(
            &raw_dir.path().join("extending"),
            Options::default().fragment_max_bytes,
        );
        group.bench_function(BenchmarkId::new("raw_extending", label), |b| {
            b.iter(|| extending.write_durable(&frame))
        });
    }
    group.finish();
}

fn append_small_concurrent(c: &mut Criterion) {
    let root = bench_root();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut group = c.benchmark_group("append_small_concurrent");
    group.throughput(Throughput::Elements(1));
    let batch = Batch::single(&pattern_bytes(RECORD_BYTES, 4));
    let fixture = JournalFixture::new(&root, Options::default());
    group.bench_function("journal_8x256_in_flight", |b| {
        b.iter_custom(|iters| {
            let elapsed = append_concurrent(&rt, &fixture.journal, &batch, SHAPE, iters);
            fixture.trim();
            elapsed
        })
    });
    drop(fixture);

    let raw_dir = scratch::temp_dir(&root, "raw-");
    let mut prewritten = PrewrittenFile::create(&raw_dir.path().join("prewritten"), PREWRITTEN_FILE_BYTES);
    let per_commit = (SHAPE.writers * SHAPE.in_flight_max) as u64;
    group.bench_function("raw_prewritten_2048_per_commit", |b| {
        b.iter_custom(|iters| raw_commits(&mut prewritten, frame_bytes(RECORD_BYTES), per_commit, iters))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = append_large, append_small_concurrent
}
criterion_main!(benches);
