//! The record of a run: its figures sampled once a second (`run`/`soak` `--record FILE`, one JSON
//! object per line, appended) and the same samples for the live page and the metrics.
//!
//! A record file may hold several runs one after another (each `run` on it appends); each line
//! carries its run id and wall-clock time, so `stream-sum plot` draws them on one time axis.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::state::Shared;
use crate::summary::{max_ms, percentile_ms};

/// How often a sample is taken.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// One sample: totals since the run started, and rates and Sum latency over the interval since
/// the previous sample.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    /// Always "sample" (a record's last line of a run is its "summary").
    pub kind: String,
    pub run_id: u32,
    /// Wall-clock time of the sample, seconds since the Unix epoch.
    pub unix_s: f64,
    /// Seconds since this run started.
    pub elapsed_s: f64,
    /// Length of the interval the rates and latencies cover.
    pub interval_s: f64,
    pub chunk_bytes_total: u64,
    pub chunks_total: u64,
    pub streams_started_total: u64,
    pub streams_finished_total: u64,
    pub sums_verified_total: u64,
    /// Finished streams awaiting their Sum.
    pub streams_awaiting_sum: u64,
    /// Chunk payload published in the interval, MB/s (10^6 bytes).
    pub chunk_mb_per_s: f64,
    pub chunks_per_s: f64,
    pub sums_per_s: f64,
    /// Sum latency (final chunk durable to Sum seen durable) of the Sums verified in the
    /// interval; 0 if none were.
    pub sum_latency_ms_p50: f64,
    pub sum_latency_ms_p99: f64,
    pub sum_latency_ms_max: f64,
    pub violations_total: u64,
    pub errors_total: u64,
    /// Bytes of the journals' fragment files (sampled once a second by maintenance).
    pub disk_bytes: u64,
    /// Anonymous resident memory of the process.
    pub rss_bytes: u64,
    pub fragments_removed_total: u64,
    pub shard_transactions_total: u64,
}

/// Takes samples from the run's shared state; keeps what the interval figures need.
pub struct Sampler {
    started: Instant,
    last_at: Instant,
    last: Option<Sample>,
    /// Every verifier's latency histogram merged at the previous sample.
    last_latency: Histogram<u64>,
}

impl Sampler {
    pub fn new(started: Instant) -> Sampler {
        Sampler {
            started,
            last_at: started,
            last: None,
            last_latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds"),
        }
    }

    /// A sample if one is due at `now` (every [`SAMPLE_INTERVAL`]), or if `force`.
    pub fn tick(&mut self, shared: &Shared, now: Instant, force: bool) -> Option<Sample> {
        if !force && self.last.is_some() && now.duration_since(self.last_at) < SAMPLE_INTERVAL {
            return None;
        }
        if !force && self.last.is_none() && now.duration_since(self.started) < SAMPLE_INTERVAL {
            return None;
        }
        Some(self.sample(shared, now))
    }

    /// Every verifier's Sum latency histogram (microseconds) merged at the latest sample.
    pub fn latency_us(&self) -> &Histogram<u64> {
        &self.last_latency
    }

    fn sample(&mut self, shared: &Shared, now: Instant) -> Sample {
        let stat = |f: fn(&ss_chunker::chunker::ChunkerStats) -> &std::sync::atomic::AtomicU64| -> u64 {
            shared
                .chunkers
                .stats
                .iter()
                .map(|s| f(s).load(Ordering::Relaxed))
                .sum()
        };
        let latency = shared.sums.latency();
        let mut interval_latency = latency.clone();
        // The merged histogram only grows, so the difference is this interval's Sums.
        if interval_latency.subtract(&self.last_latency).is_err() {
            interval_latency = latency.clone();
        }
        let (mut verified, mut pending) = (0u64, 0u64);
        let mut verifier_violations = 0u64;
        for v in &shared.sums.verifiers {
            let v = v.lock();
            verified += v.sums_verified();
            pending += v.pending() as u64;
            verifier_violations += v.violations().len() as u64;
        }
        let interval_s = now.duration_since(self.last_at).as_secs_f64().max(1e-9);
        let prev = self.last.as_ref();
        let delta = |total: u64, of: fn(&Sample) -> u64| total - prev.map_or(0, of);
        let chunk_bytes_total = stat(|s| &s.chunk_bytes);
        let chunks_total = stat(|s| &s.chunks);
        let sample = Sample {
            kind: "sample".into(),
            run_id: shared.run.run_id,
            unix_s: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            elapsed_s: now.duration_since(self.started).as_secs_f64(),
            interval_s,
            chunk_bytes_total,
            chunks_total,
            streams_started_total: stat(|s| &s.streams_started),
            streams_finished_total: stat(|s| &s.streams_finished),
            sums_verified_total: verified,
            streams_awaiting_sum: pending,
            chunk_mb_per_s: delta(chunk_bytes_total, |s| s.chunk_bytes_total) as f64 / interval_s / 1e6,
            chunks_per_s: delta(chunks_total, |s| s.chunks_total) as f64 / interval_s,
            sums_per_s: delta(verified, |s| s.sums_verified_total) as f64 / interval_s,
            sum_latency_ms_p50: percentile_ms(&interval_latency, 0.5),
            sum_latency_ms_p99: percentile_ms(&interval_latency, 0.99),
            sum_latency_ms_max: max_ms(&interval_latency),
            violations_total: shared.run.violations.lock().len() as u64 + verifier_violations,
            errors_total: shared.run.errors.lock().len() as u64,
            disk_bytes: shared.resources.disk_bytes.load(Ordering::Relaxed),
            rss_bytes: shared.resources.rss_bytes.load(Ordering::Relaxed),
            fragments_removed_total: shared.resources.fragments_removed.load(Ordering::Relaxed),
            shard_transactions_total: shared
                .shards
                .progress
                .iter()
                .map(|p| p.txns.load(Ordering::Relaxed))
                .sum(),
        };
        self.last_at = now;
        self.last_latency = latency;
        self.last = Some(sample.clone());
        sample
    }
}

/// An open record file (`--record FILE`).
pub struct Recorder {
    path: PathBuf,
    file: File,
}

impl Recorder {
    /// Opens `path` for appending (created if missing). Opened before the run starts, so a
    /// path that cannot be written stops the command before anything else happens.
    ///
    /// A file whose last line is unfinished (an earlier recording process was killed inside its
    /// write) first gets a newline, so this run's lines start on lines of their own and `plot`
    /// skips only the cut line.
    pub fn open(path: &Path) -> std::io::Result<Recorder> {
        let mut file = OpenOptions::new().create(true).append(true).open(path)?;
        if ends_unfinished(path)? {
            file.write_all(b"\n")?;
        }
        Ok(Recorder {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one JSON line. One `write` per line, so a reader never sees half a line unless
    /// the process dies inside it (`plot` skips a torn last line).
    pub fn write<T: Serialize>(&mut self, value: &T) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(value).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// True if the file is not empty and its last byte is not a newline.
fn ends_unfinished(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path)?;
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// The last line a run appends: its summary, tagged.
#[derive(Serialize)]
pub struct SummaryLine<'a> {
    pub kind: &'static str,
    #[serde(flatten)]
    pub summary: &'a crate::summary::Summary,
}
