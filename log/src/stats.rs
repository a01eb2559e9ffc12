//! Counters of one journal's appends, commits, fsyncs and fragments, for metrics.
//!
//! Plain relaxed atomics bumped on the commit path (a few nanoseconds per commit, nothing per
//! read); [`JournalStats::snapshot`] copies them out for an exporter. Histograms use fixed
//! bucket bounds so a snapshot maps directly onto a Prometheus histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the fsync latency buckets, in seconds (the last bucket is +Inf).
pub const FSYNC_SECONDS_BOUNDS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Upper bounds of the commit (group-commit batch) size buckets, in bytes.
pub const COMMIT_BYTES_BOUNDS: [f64; 10] = [
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// A histogram with fixed upper bounds: per-bucket counts (not cumulative) plus an overflow
/// bucket, the sum and the count.
#[derive(Debug)]
struct FixedHistogram<const N: usize> {
    bounds: &'static [f64; N],
    counts: [AtomicU64; N],
    overflow: AtomicU64,
    /// Sum of observations times `scale` (1e6 for seconds: microseconds; 1 for bytes).
    sum_scaled: AtomicU64,
    scale: f64,
    count: AtomicU64,
}

impl<const N: usize> FixedHistogram<N> {
    fn new(bounds: &'static [f64; N], scale: f64) -> Self {
        FixedHistogram {
            bounds,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            overflow: AtomicU64::new(0),
            sum_scaled: AtomicU64::new(0),
            scale,
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        match self.bounds.iter().position(|&b| value <= b) {
            Some(i) => self.counts[i].fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_scaled
            .fetch_add((value * self.scale).round() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(&b, c)| {
                cumulative += c.load(Ordering::Relaxed);
                (b, cumulative)
            })
            .collect();
        let count = cumulative + self.overflow.load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            count,
            sum: self.sum_scaled.load(Ordering::Relaxed) as f64 / self.scale,
        }
    }
}

/// A histogram copied out: cumulative counts per upper bound (Prometheus `le` buckets; the
/// +Inf bucket is `count`), the sum of observations and their count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

/// The live counters of one journal.
#[derive(Debug)]
pub(crate) struct JournalStats {
    appends: AtomicU64,
    append_bytes: AtomicU64,
    commits: AtomicU64,
    fsync_seconds: FixedHistogram<14>,
    commit_bytes: FixedHistogram<10>,
    fragments_created: AtomicU64,
    fragments_removed: AtomicU64,
    commit_failures: AtomicU64,
}

impl Default for JournalStats {
    fn default() -> Self {
        JournalStats {
            appends: AtomicU64::new(0),
            append_bytes: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            fsync_seconds: FixedHistogram::new(&FSYNC_SECONDS_BOUNDS, 1e6),
            commit_bytes: FixedHistogram::new(&COMMIT_BYTES_BOUNDS, 1.0),
            fragments_created: AtomicU64::new(0),
            fragments_removed: AtomicU64::new(0),
            commit_failures: AtomicU64::new(0),
        }
    }
}

impl JournalStats {
    /// An append accepted into the filling batch (`frame_bytes` including the frame header).
    pub(crate) fn appended(&self, frame_bytes: u64) {
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.append_bytes.fetch_add(frame_bytes, Ordering::Relaxed);
    }

    /// A batch made durable: one write (or one per fragment it spans) and its fdatasync.
    pub(crate) fn committed(&self, batch_bytes: u64) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.commit_bytes.observe(batch_bytes as f64);
    }

    /// A batch that failed (rolled back or poisoned).
    pub(crate) fn commit_failed(&self) {
        self.commit_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// One fdatasync of a fragment, successful or not, and how long it took.
    pub(crate) fn fsynced(&self, took: Duration) {
        self.fsync_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn fragment_created(&self) {
        self.fragments_created.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fragments_removed(&self, count: u64) {
        self.fragments_removed.fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            appends_total: self.appends.load(Ordering::Relaxed),
            append_bytes_total: self.append_bytes.load(Ordering::Relaxed),
            commits_total: self.commits.load(Ordering::Relaxed),
            commit_failures_total: self.commit_failures.load(Ordering::Relaxed),
            fsync_seconds: self.fsync_seconds.snapshot(),
            commit_bytes: self.commit_bytes.snapshot(),
            fragments_created_total: self.fragments_created.load(Ordering::Relaxed),
            fragments_removed_total: self.fragments_removed.load(Ordering::Relaxed),
        }
    }
}

/// One journal's counters since it was opened by this process ([`crate::Journal::stats`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSnapshot {
    /// Appends (frames) accepted.
    pub appends_total: u64,
    /// Bytes of those frames, headers included.
    pub append_bytes_total: u64,
    /// Group-commit batches made durable (each one write + one fdatasync, plus one more of
    /// each per fragment roll inside the batch).
    pub commits_total: u64,
    /// Batches that failed (rolled back, or poisoned the journal).
    pub commit_failures_total: u64,
    /// Every fragment fdatasync and its latency, in seconds.
    pub fsync_seconds: HistogramSnapshot,
    /// Bytes per durable batch.
    pub commit_bytes: HistogramSnapshot,
    /// Fragments created by rolls (not counting the ones recovery found).
    pub fragments_created_total: u64,
    /// Fragments removed by retention.
    pub fragments_removed_total: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_count_the_overflow() {
        let stats = JournalStats::default();
        stats.fsynced(Duration::from_micros(50)); // first bucket
        stats.fsynced(Duration::from_millis(3)); // 0.005 bucket
        stats.fsynced(Duration::from_secs(10)); // beyond the last bound
        let s = stats.snapshot().fsync_seconds;
        assert_eq!(s.buckets[0], (0.000_1, 1));
        let at_5ms = s.buckets.iter().find(|(b, _)| *b == 0.005).unwrap().1;
        assert_eq!(at_5ms, 2);
        assert_eq!(s.buckets.last().unwrap().1, 2);
        assert_eq!(s.count, 3);
        assert!((s.sum - 10.00305).abs() < 1e-6, "sum {}", s.sum);
    }

    #[test]
    fn commits_record_their_bytes() {
        let stats = JournalStats::default();
        stats.appended(100);
        stats.appended(200);
        stats.committed(300);
        let s = stats.snapshot();
        assert_eq!(
            (s.appends_total, s.append_bytes_total, s.commits_total),
            (2, 300, 1)
        );
        assert_eq!(s.commit_bytes.buckets[1], (1024.0, 1));
        assert_eq!(s.commit_bytes.sum, 300.0);
    }
}
