//! The run's progress line and final summary.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Final figures of a `run`; printed as text, or as one JSON object with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub run_id: u32,
    pub partitions: usize,
    pub chunkers: usize,
    pub streams_started: u64,
    /// Streams whose final chunk was published durably by this run.
    pub streams_finished: u64,
    /// Finished streams of this run whose one correct Sum was seen.
    pub sums_verified: u64,
    /// Sums seen for streams of earlier runs (finished before a restart, summed after it).
    pub sums_previous_runs: u64,
    pub violations: usize,
    pub violation_messages: Vec<String>,
    pub errors: Vec<String>,
    pub chunks: u64,
    pub chunk_bytes: u64,
    pub elapsed_s: f64,
    pub chunk_mb_per_s: f64,
    pub chunks_per_s: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    /// Duplicate chunks the summers skipped (cumulative over the data directory's life).
    pub duplicate_chunks_skipped: u64,
    /// Abandoned streams the summers expired (cumulative).
    pub streams_expired: u64,
    pub shard_transactions: u64,
    /// Streams left unfinished by chunkers that a fault killed.
    pub streams_abandoned: u64,
    /// Shard recoveries from their logs (one per shard at start, one per restart or fencing).
    pub shard_recoveries: u64,
    /// Conditional appends refused because another owner appended first.
    pub fencings: u64,
    pub faults: Vec<crate::state::FaultRecord>,
    /// Largest disk use of the journals seen (sampled once a second).
    pub disk_bytes_max: u64,
    /// Largest anonymous resident memory seen (sampled once a second; mapped journal pages are
    /// page cache and not counted).
    pub rss_bytes_max: u64,
    /// Fragments removed by retention.
    pub fragments_removed: u64,
    /// True if the run stopped gracefully (every finished stream verified).
    pub completed: bool,
    /// What started the graceful stop: `duration`, `SIGINT`, `SIGTERM` or `low free space`
    /// (`--min-free-mb`); null for a run ended by a violation or an error.
    pub stopped_by: Option<&'static str>,
    /// The shard logs' `fdatasync`s in this run (embedded journal only; `None` on JetStream):
    /// every Sum waits for at least one that begins after it exists, so their tail bounds the
    /// Sum latency's.
    pub shard_log_syncs: Option<SyncTail>,
}

/// How many `fdatasync`s some journals made, and how many took longer than 1 ms and 2.5 ms (two
/// of the journals' fixed fsync histogram bounds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncTail {
    pub count: u64,
    pub over_1_ms: u64,
    pub over_2_5_ms: u64,
}

impl SyncTail {
    /// Adds one journal's fsync histogram.
    pub fn add(&mut self, fsync_seconds: &ss_log::HistogramSnapshot) {
        let over = |bound_s: f64| {
            let within = fsync_seconds
                .buckets
                .iter()
                .find(|&&(b, _)| b == bound_s)
                .map(|&(_, cumulative)| cumulative)
                .expect("1 ms and 2.5 ms are fsync histogram bounds");
            fsync_seconds.count - within
        };
        self.count += fsync_seconds.count;
        self.over_1_ms += over(0.001);
        self.over_2_5_ms += over(0.0025);
    }

    /// Percent of the syncs that took longer than 2.5 ms.
    pub fn over_2_5_ms_pct(&self) -> f64 {
        100.0 * self.over_2_5_ms as f64 / self.count.max(1) as f64
    }

    /// Percent of the syncs that took longer than 1 ms.
    pub fn over_1_ms_pct(&self) -> f64 {
        100.0 * self.over_1_ms as f64 / self.count.max(1) as f64
    }
}

pub fn percentile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(q) as f64 / 1000.0
}

pub fn max_ms(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.max() as f64 / 1000.0
}

/// Figures sampled for one progress line.
pub struct Progress {
    pub elapsed: Duration,
    pub streams_finished: u64,
    pub sums_verified: u64,
    pub pending: usize,
    pub chunk_bytes_delta: u64,
    pub chunks_delta: u64,
    pub interval: Duration,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub violations: usize,
    pub stopping: bool,
    /// (disk bytes, anonymous RSS bytes), shown in soak mode.
    pub resources: Option<(u64, u64)>,
}

impl Progress {
    pub fn line(&self) -> String {
        let secs = self.interval.as_secs_f64().max(1e-9);
        format!(
            "[{:>6.1}s] streams {} finished, {} verified, {} awaiting Sum | {:.1} MB/s | {:.1}k chunks/s | Sum latency p50 {:.2} ms p99 {:.2} ms | violations {}{}{}",
            self.elapsed.as_secs_f64(),
            self.streams_finished,
            self.sums_verified,
            self.pending,
            self.chunk_bytes_delta as f64 / secs / 1e6,
            self.chunks_delta as f64 / secs / 1e3,
            self.p50_ms,
            self.p99_ms,
            self.violations,
            match self.resources {
                Some((disk, rss)) => format!(" | disk {:.1} MB | anon RSS {:.1} MB", disk as f64 / 1e6, rss as f64 / 1e6),
                None => String::new(),
            },
            if self.stopping { " | stopping: finishing open streams" } else { "" }
        )
    }
}

impl Summary {
    pub fn text(&self) -> String {
        let mut s = format!(
            "stream-sum run {}: {} partitions, {} chunkers, {:.1} s{}\n\
             streams: {} started, {} finished, {} Sums verified ({} Sums for earlier runs' streams)\n\
             chunks: {} ({:.1} MB) at {:.1} MB/s, {:.1}k chunks/s\n\
             Sum latency (final chunk durable -> Sum durable): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n\
             summers: {} transactions; {} duplicate chunks skipped, {} abandoned streams expired (cumulative)\n\
             disk (max) {:.1} MB, anonymous RSS (max) {:.1} MB, {} fragments removed by retention\n\
             violations: {}\n",
            self.run_id,
            self.partitions,
            self.chunkers,
            self.elapsed_s,
            match self.stopped_by {
                Some(cause) if cause != "duration" => format!(", stopped early by {cause}"),
                _ => String::new(),
            },
            self.streams_started,
            self.streams_finished,
            self.sums_verified,
            self.sums_previous_runs,
            self.chunks,
            self.chunk_bytes as f64 / 1e6,
            self.chunk_mb_per_s,
            self.chunks_per_s / 1e3,
            self.latency_ms_p50,
            self.latency_ms_p99,
            self.latency_ms_max,
            self.shard_transactions,
            self.duplicate_chunks_skipped,
            self.streams_expired,
            self.disk_bytes_max as f64 / 1e6,
            self.rss_bytes_max as f64 / 1e6,
            self.fragments_removed,
            self.violations,
        );
        if let Some(t) = self.shard_log_syncs {
            s.push_str(&format!(
                "shard-log fdatasyncs: {}, {:.1}% over 1 ms, {:.2}% over 2.5 ms\n",
                t.count,
                t.over_1_ms_pct(),
                t.over_2_5_ms_pct()
            ));
        }
        if !self.faults.is_empty() {
            s.push_str(&format!(
                "faults injected: {} ({} shard recoveries, {} fencings, {} streams abandoned by killed chunkers)\n",
                self.faults.len(),
                self.shard_recoveries,
                self.fencings,
                self.streams_abandoned
            ));
            for f in &self.faults {
                s.push_str(&format!("  {:>6.1} s  {}  {}\n", f.at_s, f.kind, f.target));
            }
        }
        for v in &self.violation_messages {
            s.push_str(&format!("  VIOLATION: {v}\n"));
        }
        for e in &self.errors {
            s.push_str(&format!("  ERROR: {e}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ss_log::stats::FSYNC_SECONDS_BOUNDS;

    /// A journal's fsync histogram with `per_bucket[i]` syncs in bucket `i` and `overflow` past
    /// the last bound, as `JournalStats::snapshot` gives it (cumulative per bound).
    fn fsync_histogram(per_bucket: &[(f64, u64)], overflow: u64) -> ss_log::HistogramSnapshot {
        let mut cumulative = 0;
        let buckets = FSYNC_SECONDS_BOUNDS
            .iter()
            .map(|&b| {
                cumulative += per_bucket.iter().find(|&&(pb, _)| pb == b).map_or(0, |&(_, n)| n);
                (b, cumulative)
            })
            .collect();
        ss_log::HistogramSnapshot {
            buckets,
            count: cumulative + overflow,
            sum: 0.0,
        }
    }

    #[test]
    fn sync_tail_counts_the_syncs_past_1_ms_and_2_5_ms_over_several_journals() {
        let mut tail = SyncTail::default();
        // 10 within 0.5 ms, 4 within 1 ms (not over it), 5 in (1, 2.5], 3 in (2.5, 5], 2 past 5 s.
        tail.add(&fsync_histogram(
            &[(0.0005, 10), (0.001, 4), (0.0025, 5), (0.005, 3)],
            2,
        ));
        assert_eq!(
            tail,
            SyncTail {
                count: 24,
                over_1_ms: 10,
                over_2_5_ms: 5
            }
        );
        tail.add(&fsync_histogram(&[(0.0001, 75), (0.01, 1)], 0));
        assert_eq!(
            tail,
            SyncTail {
                count: 100,
                over_1_ms: 11,
                over_2_5_ms: 6
            }
        );
        assert!((tail.over_2_5_ms_pct() - 6.0).abs() < 1e-9);
        assert!((tail.over_1_ms_pct() - 11.0).abs() < 1e-9);
        assert_eq!(
            SyncTail::default().over_2_5_ms_pct(),
            0.0,
            "no syncs, no division by zero"
        );
    }
}
