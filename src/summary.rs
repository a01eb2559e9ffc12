//! The run's progress line and final summary.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

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
            "stream-sum run {}: {} partitions, {} chunkers, {:.1} s\n\
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
