//! What `run`/`soak` `--metrics-addr` serves: the run's figures kept in memory for Prometheus
//! (`/metrics`) and for the live page (`/samples.json`, see [`crate::metrics_server`]).
//!
//! The run hands [`Watch::publish`] each [`Sample`] the [`crate::record::Sampler`] takes (once a
//! second, on the supervising thread) with the merged Sum-latency histogram; a scrape reads those
//! figures under a short lock and each journal's [`Journal::stats`] (relaxed atomics). Nothing
//! here runs on the chunkers', summers' or tailers' paths, so serving costs them nothing but CPU
//! time for the scrapes themselves (measured in docs/benchmarks.md).
//!
//! The text is written by `prometheus-client` from a [`Collector`] that encodes constant values at
//! scrape time: every figure already lives in the run's own counters, so nothing is counted twice.

use std::collections::VecDeque;

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde::Serialize;
use ss_log::{HistogramSnapshot, Journal, StatsSnapshot};

use crate::record::Sample;

/// Samples kept for the live page: half an hour at one a second (about 0.5 MB).
pub const SAMPLES_KEPT: usize = 1800;

/// Upper bounds of the Sum latency buckets, in seconds (the SLA defaults to 10 s).
pub const SUM_LATENCY_SECONDS_BOUNDS: [f64; 16] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A sample as the live page gets it: numbered, so the page asks only for newer ones.
#[derive(Debug, Clone, Serialize)]
pub struct NumberedSample {
    /// 1 for the run's first sample, then one more for each.
    pub seq: u64,
    #[serde(flatten)]
    pub sample: Sample,
}

/// The figures of the latest sample that are not in [`Sample`] itself.
#[derive(Debug, Default)]
struct Latest {
    sample: Option<Sample>,
    /// Sum latency since the run started, as a Prometheus histogram.
    sum_latency: HistogramSnapshot,
    /// Sums the tailers read for streams of earlier runs (resumed directory).
    sums_previous_runs_total: u64,
}

/// The run's figures, shared between the supervising thread (which publishes) and the server.
#[derive(Debug)]
pub struct Watch {
    journals: Vec<Journal>,
    latest: Mutex<Latest>,
    samples: Mutex<VecDeque<NumberedSample>>,
}

impl Watch {
    /// Figures for a run over `journals` (listed, with their stats, under label `journal`).
    pub fn new(journals: Vec<Journal>) -> Watch {
        Watch {
            journals,
            latest: Mutex::new(Latest::default()),
            samples: Mutex::new(VecDeque::with_capacity(SAMPLES_KEPT)),
        }
    }

    /// Takes a new sample, the merged Sum latency histogram (microseconds) it was taken with,
    /// and the count of Sums the tailers read for earlier runs' streams.
    pub fn publish(&self, sample: &Sample, latency_us: &Histogram<u64>, sums_previous_runs_total: u64) {
        let sum_latency = latency_buckets(latency_us);
        {
            let mut latest = self.latest.lock();
            latest.sample = Some(sample.clone());
            latest.sum_latency = sum_latency;
            latest.sums_previous_runs_total = sums_previous_runs_total;
        }
        let mut samples = self.samples.lock();
        let seq = samples.back().map_or(1, |s| s.seq + 1);
        if samples.len() == SAMPLES_KEPT {
            samples.pop_front();
        }
        samples.push_back(NumberedSample {
            seq,
            sample: sample.clone(),
        });
    }

    /// The kept samples numbered above `after`, oldest first.
    pub fn samples_after(&self, after: u64) -> Vec<NumberedSample> {
        let samples = self.samples.lock();
        let first = samples.front().map_or(1, |s| s.seq);
        let skip = after.saturating_add(1).saturating_sub(first) as usize;
        samples.iter().skip(skip).cloned().collect()
    }

    /// The Prometheus text (format 0.0.4) of every metric.
    pub fn encode(self: &std::sync::Arc<Self>) -> String {
        let mut registry = Registry::with_prefix("stream_sum");
        registry.register_collector(Box::new(WatchCollector(self.clone())));
        let mut text = String::with_capacity(16 << 10);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Derives Prometheus buckets from an hdrhistogram of microseconds: each recorded value counts
/// in the first bucket whose bound is at or above the highest value it stands for (so a value
/// lands at most 0.1% of a bound too high), and the sum is the histogram's mean times its count.
fn latency_buckets(latency_us: &Histogram<u64>) -> HistogramSnapshot {
    let mut counts = [0u64; SUM_LATENCY_SECONDS_BOUNDS.len()];
    for v in latency_us.iter_recorded() {
        let seconds = v.value_iterated_to() as f64 / 1e6;
        if let Some(i) = SUM_LATENCY_SECONDS_BOUNDS.iter().position(|&b| seconds <= b) {
            counts[i] += v.count_at_value();
        }
    }
    let mut cumulative = 0;
    let buckets = SUM_LATENCY_SECONDS_BOUNDS
        .iter()
        .zip(counts)
        .map(|(&b, c)| {
            cumulative += c;
            (b, cumulative)
        })
        .collect();
    HistogramSnapshot {
        buckets,
        count: latency_us.len(),
        sum: latency_us.mean() * latency_us.len() as f64 / 1e6,
    }
}

/// Encodes the figures on each scrape.
#[derive(Debug)]
struct WatchCollector(std::sync::Arc<Watch>);

/// A histogram snapshot (cumulative buckets) as `prometheus-client` encodes one.
struct ConstHistogram<'a>(&'a HistogramSnapshot);

impl EncodeMetric for ConstHistogram<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // The encoder takes per-bucket counts and adds them up; the +Inf bucket is the rest.
        let mut previous = 0;
        let mut buckets: Vec<(f64, u64)> = self
            .0
            .buckets
            .iter()
            .map(|&(bound, cumulative)| {
                let count = cumulative.saturating_sub(previous);
                previous = cumulative;
                (bound, count)
            })
            .collect();
        buckets.push((f64::INFINITY, self.0.count.saturating_sub(previous)));
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.0.sum,
            self.0.count,
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Writes one metric family: its descriptor, then one value per label set.
fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Option<&str>, &dyn EncodeMetric)],
) -> Result<(), std::fmt::Error> {
    let Some((_, first)) = values.first() else {
        return Ok(());
    };
    let mut metric = encoder.encode_descriptor(name, help, None, first.metric_type())?;
    if let [(None, value)] = values {
        return value.encode(metric);
    }
    for (journal, value) in values {
        let journal = journal.expect("a family of several values is labelled by journal");
        value.encode(metric.encode_family(&[("journal", journal)])?)?;
    }
    Ok(())
}

impl Collector for WatchCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let watch = &self.0;
        let (sample, sum_latency, sums_previous) = {
            let latest = watch.latest.lock();
            let Some(sample) = latest.sample.clone() else {
                // Before the first sample (the run's first second) only the journals are known.
                drop(latest);
                return encode_journals(watch, &mut encoder);
            };
            (
                sample,
                latest.sum_latency.clone(),
                latest.sums_previous_runs_total,
            )
        };
        let counter = |v: u64| ConstCounter::new(v);
        let counters: [(&str, &str, u64); 10] = [
            (
                "chunk_bytes",
                "Chunk payload bytes published (acknowledged durable).",
                sample.chunk_bytes_total,
            ),
            (
                "chunks",
                "Chunks published (acknowledged durable).",
                sample.chunks_total,
            ),
            (
                "streams_started",
                "Streams the chunkers started.",
                sample.streams_started_total,
            ),
            (
                "streams_finished",
                "Streams whose final chunk is durable.",
                sample.streams_finished_total,
            ),
            (
                "streams_verified",
                "Finished streams whose one correct Sum was seen durable (each has exactly one Sum).",
                sample.sums_verified_total,
            ),
            (
                "sums",
                "Sums read from the shard logs: this run's (all verified) plus earlier runs' streams'.",
                sample.sums_verified_total + sums_previous,
            ),
            (
                "violations",
                "Exactly-once or SLA violations found (any stops the run).",
                sample.violations_total,
            ),
            (
                "errors",
                "Operational errors (any stops the run).",
                sample.errors_total,
            ),
            (
                "shard_transactions",
                "Summer shard transactions committed.",
                sample.shard_transactions_total,
            ),
            (
                "fragments_removed",
                "Fragments removed by retention, all journals.",
                sample.fragments_removed_total,
            ),
        ];
        for (name, help, value) in counters {
            family(&mut encoder, name, help, &[(None, &counter(value))])?;
        }
        let gauges: [(&str, &str, f64); 5] = [
            (
                "streams_awaiting_sum",
                "Finished streams awaiting their Sum.",
                sample.streams_awaiting_sum as f64,
            ),
            (
                "disk_bytes",
                "Bytes of the journals' fragment files.",
                sample.disk_bytes as f64,
            ),
            (
                "rss_anon_bytes",
                "Anonymous resident memory of the process.",
                sample.rss_bytes as f64,
            ),
            (
                "elapsed_seconds",
                "Seconds since this run started, at the latest sample.",
                sample.elapsed_s,
            ),
            (
                "run_id",
                "This run's id in the data directory.",
                f64::from(sample.run_id),
            ),
        ];
        for (name, help, value) in gauges {
            family(&mut encoder, name, help, &[(None, &ConstGauge::new(value))])?;
        }
        family(
            &mut encoder,
            "sum_latency_seconds",
            "Sum latency of this run's verified streams: final chunk durable to its Sum seen durable.",
            &[(None, &ConstHistogram(&sum_latency))],
        )?;
        encode_journals(watch, &mut encoder)
    }
}

/// One journal's figures at a scrape: name, durable head, counters.
struct JournalFigures<'a> {
    name: &'a str,
    durable_head: u64,
    stats: StatsSnapshot,
}

/// A per-journal counter family: name, help, the counter.
type JournalCounter = (&'static str, &'static str, fn(&StatsSnapshot) -> u64);

const JOURNAL_COUNTERS: [JournalCounter; 6] = [
    (
        "journal_appends",
        "Appends (frames) accepted by the journal since this process opened it.",
        |s| s.appends_total,
    ),
    (
        "journal_append_bytes",
        "Bytes of the appended frames, headers included.",
        |s| s.append_bytes_total,
    ),
    (
        "journal_commits",
        "Group-commit batches made durable (one write and one fdatasync each).",
        |s| s.commits_total,
    ),
    (
        "journal_commit_failures",
        "Batches that failed (rolled back, or poisoned the journal).",
        |s| s.commit_failures_total,
    ),
    ("journal_fragments_created", "Fragments created by rolls.", |s| {
        s.fragments_created_total
    }),
    (
        "journal_fragments_removed",
        "Fragments removed by retention.",
        |s| s.fragments_removed_total,
    ),
];

/// A per-journal histogram family: name, help, the histogram.
type JournalHistogram = (
    &'static str,
    &'static str,
    fn(&StatsSnapshot) -> &HistogramSnapshot,
);

const JOURNAL_HISTOGRAMS: [JournalHistogram; 2] = [
    (
        "journal_fsync_seconds",
        "Fragment fdatasync latency; _count is the number of fsyncs.",
        |s| &s.fsync_seconds,
    ),
    (
        "journal_commit_bytes",
        "Bytes per durable group-commit batch.",
        |s| &s.commit_bytes,
    ),
];

/// The per-journal families, label `journal`.
fn encode_journals(watch: &Watch, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let journals: Vec<JournalFigures> = watch
        .journals
        .iter()
        .map(|j| JournalFigures {
            name: j.name(),
            durable_head: j.durable_head(),
            stats: j.stats(),
        })
        .collect();
    let heads: Vec<ConstGauge<f64>> = journals
        .iter()
        .map(|j| ConstGauge::new(j.durable_head as f64))
        .collect();
    labelled(
        encoder,
        "journal_durable_head_bytes",
        "Offset up to which the journal is durable (bytes written since it was created).",
        &journals,
        &heads,
    )?;
    for (name, help, of) in JOURNAL_COUNTERS {
        let counters: Vec<ConstCounter> = journals.iter().map(|j| ConstCounter::new(of(&j.stats))).collect();
        labelled(encoder, name, help, &journals, &counters)?;
    }
    for (name, help, of) in JOURNAL_HISTOGRAMS {
        let histograms: Vec<ConstHistogram> = journals.iter().map(|j| ConstHistogram(of(&j.stats))).collect();
        labelled(encoder, name, help, &journals, &histograms)?;
    }
    Ok(())
}

/// One family with a value per journal.
fn labelled<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    journals: &[JournalFigures],
    values: &[M],
) -> Result<(), std::fmt::Error> {
    let values: Vec<(Option<&str>, &dyn EncodeMetric)> = journals
        .iter()
        .zip(values)
        .map(|(j, v)| (Some(j.name), v as &dyn EncodeMetric))
        .collect();
    family(encoder, name, help, &values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_cumulative_and_count_everything() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        h.record(300).unwrap(); // 0.3 ms: first bucket
        h.record(3_000).unwrap(); // 3 ms: the 5 ms bucket
        h.record(120_000_000).unwrap(); // 120 s: beyond the last bound
        let s = latency_buckets(&h);
        assert_eq!(s.buckets[0], (0.000_5, 1));
        assert_eq!(s.buckets.iter().find(|(b, _)| *b == 0.005).unwrap().1, 2);
        assert_eq!(s.buckets.last().unwrap().1, 2);
        assert_eq!(s.count, 3);
        assert!((s.sum - 120.0033).abs() < 0.2, "sum {}", s.sum);
    }

    /// A sample with every total set to `n`.
    fn sample(n: u64) -> Sample {
        let text = format!(
            r#"{{"kind":"sample","run_id":1,"unix_s":0,"elapsed_s":{n},"interval_s":1,"chunk_bytes_total":{n},"chunks_total":{n},
            "streams_started_total":{n},"streams_finished_total":{n},"sums_verified_total":{n},"streams_awaiting_sum":0,
            "chunk_mb_per_s":1,"chunks_per_s":1,"sums_per_s":1,"sum_latency_ms_p50":1,"sum_latency_ms_p99":2,
            "sum_latency_ms_max":3,"violations_total":0,"errors_total":0,"disk_bytes":{n},"rss_bytes":{n},
            "fragments_removed_total":0,"shard_transactions_total":{n}}}"#
        );
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn samples_after_returns_the_newer_ones_and_forgets_the_oldest() {
        let watch = Watch::new(Vec::new());
        let h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for n in 1..=(SAMPLES_KEPT as u64 + 5) {
            watch.publish(&sample(n), &h, 0);
        }
        let all = watch.samples_after(0);
        assert_eq!(all.len(), SAMPLES_KEPT);
        assert_eq!((all[0].seq, all[0].sample.chunks_total), (6, 6));
        let newer = watch.samples_after(SAMPLES_KEPT as u64 + 3);
        assert_eq!(newer.iter().map(|s| s.seq).collect::<Vec<_>>(), [1804, 1805]);
        assert!(watch.samples_after(1805).is_empty());
    }

    #[test]
    fn metrics_text_names_every_family_with_units_and_journal_labels() {
        let dir = tempfile::tempdir().unwrap();
        let log = ss_log::Log::open(dir.path(), ss_log::Options::default()).unwrap();
        let journal = log.journal("chunks-000").unwrap();
        journal.append(&ss_log::Batch::single(b"x")).unwrap();
        let watch = std::sync::Arc::new(Watch::new(vec![journal]));
        let before = watch.encode();
        assert!(
            !before.contains("stream_sum_chunks_total"),
            "no run figures before a sample"
        );
        assert!(
            before.contains("stream_sum_journal_appends_total{journal=\"chunks-000\"} 1\n"),
            "{before}"
        );
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        h.record(2_000).unwrap();
        watch.publish(&sample(42), &h, 3);
        let text = watch.encode();
        for line in [
            "# TYPE stream_sum_chunks_total counter\nstream_sum_chunks_total 42\n",
            "stream_sum_sums_total 45\n",
            "stream_sum_violations_total 0\n",
            "# TYPE stream_sum_disk_bytes gauge\n",
            "# TYPE stream_sum_sum_latency_seconds histogram\n",
            "stream_sum_sum_latency_seconds_bucket{le=\"0.001\"} 0\n",
            "stream_sum_sum_latency_seconds_bucket{le=\"0.0025\"} 1\n",
            "stream_sum_sum_latency_seconds_bucket{le=\"+Inf\"} 1\n",
            "stream_sum_sum_latency_seconds_count 1\n",
            "stream_sum_journal_durable_head_bytes{journal=\"chunks-000\"} ",
            "stream_sum_journal_fsync_seconds_count{journal=\"chunks-000\"} ",
            "stream_sum_journal_commit_bytes_bucket{journal=\"chunks-000\",le=\"+Inf\"} 1\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }

    /// What serving costs the run per second: one publish (on the supervising thread) and one
    /// scrape, with a histogram of 100,000 Sums spread over 0.1 ms to 1 s and 8 journals.
    /// docs/benchmarks.md: `cargo test --release --bin stream-sum publish_and_scrape_cost --
    /// --ignored --nocapture`. Ignored in the suite: a timing on a shared machine.
    #[test]
    #[ignore]
    fn publish_and_scrape_cost() {
        let dir = tempfile::tempdir().unwrap();
        let log = ss_log::Log::open(dir.path(), ss_log::Options::default()).unwrap();
        let journals = (0..8).map(|i| log.journal(&format!("j-{i}")).unwrap()).collect();
        let watch = std::sync::Arc::new(Watch::new(journals));
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for i in 0..100_000u64 {
            h.record(100 + i * i % 1_000_000).unwrap();
        }
        let rounds = 2_000u32;
        let started = std::time::Instant::now();
        for n in 0..u64::from(rounds) {
            watch.publish(&sample(n), &h, 0);
        }
        let publish = started.elapsed() / rounds;
        let started = std::time::Instant::now();
        let mut bytes = 0;
        for _ in 0..rounds {
            bytes += watch.encode().len();
        }
        let scrape = started.elapsed() / rounds;
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            bytes += serde_json::to_string(&watch.samples_after(u64::from(rounds) - 1))
                .unwrap()
                .len();
        }
        let poll = started.elapsed() / rounds;
        crate::exit::errln!("per second of a run: publish {publish:?}, /metrics {scrape:?}, /samples.json (1 new) {poll:?} ({bytes} bytes)");
        assert!(publish + scrape + poll < std::time::Duration::from_millis(5));
    }
}
