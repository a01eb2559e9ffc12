//! Open time (`Log::open` + the journal, recovery included) of a journal with more than 1 GiB of
//! sealed history beside one with a single fragment holding as much in its last fragment, and a
//! single nearly full fragment (recovery reads and verifies the whole last fragment, so that is
//! the worst case). The journals are built once and cached in cargo's target tmp dir. Warm page
//! cache: the fixtures were just written or read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ss_benches::open::{open_timed, OpenFixture};
use ss_benches::scratch;

const MIB: u64 = 1 << 20;

fn bench_root() -> PathBuf {
    scratch::bench_root(Path::new(env!("CARGO_TARGET_TMPDIR")))
}

fn open_journal(c: &mut Criterion) {
    let root = bench_root();
    let fixtures = [
        ("1_fragment_16MiB", OpenFixture::build(&root, 0, 16 * MIB)),
        (
            "history_1GiB_last_16MiB",
            OpenFixture::build(&root, 1 << 30, 16 * MIB),
        ),
        (
            "1_fragment_30MiB_nearly_full",
            OpenFixture::build(&root, 0, 30 * MIB),
        ),
    ];
    let mut group = c.benchmark_group("open");
    for (label, fixture) in &fixtures {
        eprintln!(
            "open fixture {label}: {} fragments, {} history bytes, {} bytes in the last fragment",
            fixture.fragment_count, fixture.history_bytes, fixture.last_fragment_bytes
        );
        group.bench_function(*label, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let (elapsed, log, journal) = open_timed(&fixture.dir);
                        assert_eq!(journal.durable_head(), fixture.head);
                        drop((journal, log));
                        elapsed
                    })
                    .sum()
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
    targets = open_journal
}
criterion_main!(benches);
