//! A tailing read of a whole journal (reader from 0 to the durable head, every checksum verified),
//! beside CRC-32C of the same bytes in memory (in one pass, and frame by frame as the reader must)
//! and a plain copy of them, for journals of 256 MiB in 4 KiB
//! and in 64 KiB frames. Throughput in journal bytes per second; frames per second is that divided
//! by the frame size. The journals are built once and cached in cargo's target tmp dir.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ss_benches::read::{copy_all, crc32c_all, crc32c_per_frame, read_all, ReadFixture, READ_JOURNAL};
use ss_benches::scratch;
use ss_log::frame::{journal_salt, HEADER_LEN, MESSAGE_LEN_PREFIX_BYTES};

const JOURNAL_BYTES: u64 = 256 << 20;

fn bench_root() -> PathBuf {
    scratch::bench_root(Path::new(env!("CARGO_TARGET_TMPDIR")))
}

fn tailing_read(c: &mut Criterion) {
    let root = bench_root();
    let mut group = c.benchmark_group("read_256MiB");
    for (label, frame_bytes) in [("4KiB_frames", 4096usize), ("64KiB_frames", 64 << 10)] {
        // One message per frame, sized so header + length prefix + payload fill the frame exactly.
        let payload_bytes = frame_bytes - HEADER_LEN - MESSAGE_LEN_PREFIX_BYTES;
        let fixture = ReadFixture::open(&root, payload_bytes, JOURNAL_BYTES);
        group.throughput(Throughput::Bytes(fixture.head));
        group.bench_function(BenchmarkId::new("journal_reader", label), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let (elapsed, count) = read_all(&fixture.journal);
                        assert_eq!(count.frames, fixture.head / frame_bytes as u64);
                        elapsed
                    })
                    .sum()
            })
        });
        let bytes = fixture.raw_bytes();
        drop(fixture);
        group.bench_function(BenchmarkId::new("raw_crc32c", label), |b| {
            b.iter(|| black_box(crc32c_all(black_box(&bytes))))
        });
        let salt = journal_salt(READ_JOURNAL);
        group.bench_function(BenchmarkId::new("raw_crc32c_per_frame", label), |b| {
            b.iter(|| black_box(crc32c_per_frame(black_box(&bytes), frame_bytes, salt)))
        });
        let mut copy = vec![0u8; bytes.len()];
        group.bench_function(BenchmarkId::new("raw_memcpy", label), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    copy_all(black_box(&bytes), black_box(&mut copy));
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = tailing_read
}
criterion_main!(benches);
