//! Retention and resource figures for `--retention` and `soak`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ss_log::Journal;

use crate::state::Shared;

/// Retention and resource figures, once a second (`--retention`, `soak`).
pub(crate) struct Maintenance {
    pub(crate) retention: bool,
    pub(crate) inputs: Vec<Journal>,
    pub(crate) shard_logs: Vec<Journal>,
    pub(crate) next_at: Instant,
}

impl Maintenance {
    pub(crate) fn tick(&mut self, shared: &Shared, now: Instant) {
        if now < self.next_at {
            return;
        }
        self.next_at = now + Duration::from_secs(1);
        if self.retention {
            for (p, progress) in shared.shards.progress.iter().enumerate() {
                // Input below the durable checkpoint is never read again, even after a crash.
                let input_below = progress.durable_input_offset.load(Ordering::SeqCst);
                // Recovery starts at the latest durable snapshot; Sums below the tail offset
                // were delivered to the verifiers.
                let log_below = progress
                    .durable_snapshot_offset
                    .load(Ordering::SeqCst)
                    .min(shared.sums.tail_offset[p].load(Ordering::SeqCst));
                for (journal, below) in [(&self.inputs[p], input_below), (&self.shard_logs[p], log_below)] {
                    match journal.remove_below(below) {
                        Ok(n) => {
                            if n > 0 {
                                tracing::debug!(
                                    journal = journal.name(),
                                    fragments = n,
                                    below,
                                    first_offset = journal.first_offset(),
                                    "fragments removed by retention"
                                );
                            }
                            shared
                                .resources
                                .fragments_removed
                                .fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(e) => shared.run.error(format!("retention: {e}")),
                    }
                }
            }
        }
        let disk: u64 = self
            .inputs
            .iter()
            .chain(&self.shard_logs)
            .flat_map(|j| j.fragments())
            .map(|f| std::fs::metadata(&f.path).map_or(0, |m| m.len()))
            .sum();
        shared.resources.disk_bytes.store(disk, Ordering::Relaxed);
        shared.resources.disk_bytes_max.fetch_max(disk, Ordering::Relaxed);
        let rss = rss_bytes();
        shared.resources.rss_bytes.store(rss, Ordering::Relaxed);
        shared.resources.rss_bytes_max.fetch_max(rss, Ordering::Relaxed);
    }
}

/// This process's anonymous resident memory (heap, stacks), from /proc (0 where unavailable).
/// Mapped journal pages are left out: they are page cache, reclaimable, and grow with the data a
/// run has read, not with what it holds.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
