//! CRC-32C (`crc32c`, SSE4.2 / ARMv8 CRC instructions) against CRC-32 (`crc32fast`, PCLMULQDQ
//! folding) over buffers of frame sizes. The journal uses CRC-32C; this bench is the measurement
//! behind that choice (docs/benchmarks.md).

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ss_benches::pattern_bytes;

fn checksums(c: &mut Criterion) {
    let mut group = c.benchmark_group("checksum");
    for (label, len) in [
        ("128B", 128usize),
        ("4KiB", 4 << 10),
        ("64KiB", 64 << 10),
        ("1MiB", 1 << 20),
    ] {
        let bytes = pattern_bytes(len, 5);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::new("crc32c", label), |b| {
            b.iter(|| crc32c::crc32c(black_box(&bytes)))
        });
        group.bench_function(BenchmarkId::new("crc32fast", label), |b| {
            b.iter(|| crc32fast::hash(black_box(&bytes)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    targets = checksums
}
criterion_main!(benches);
