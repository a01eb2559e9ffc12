//! Retention and resource figures for `--retention` and `soak`, and the free-space guard
//! (`--min-free-mb`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ss_log::Journal;

use crate::state::Shared;

/// Retention and resource figures, once a second (`--retention`, `soak`), on a thread of their
/// own: removing a fragment costs a rename or unlink and a directory fsync, and with small
/// fragments at full rate a pass can take seconds, which on the supervising thread stalled
/// `--duration`, progress and the SLA checks.
pub(crate) struct Maintenance {
    pub(crate) retention: bool,
    pub(crate) inputs: Vec<Journal>,
    pub(crate) shard_logs: Vec<Journal>,
}

/// The running maintenance thread; [`MaintenanceThread::stop`] ends it after its current step.
pub(crate) struct MaintenanceThread {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Maintenance>,
}

impl MaintenanceThread {
    /// Stops the thread, then takes one last resource sample (a run shorter than a second would
    /// otherwise report only its first).
    pub(crate) fn stop(self, shared: &Shared) {
        self.stop.store(true, Ordering::SeqCst);
        match self.handle.join() {
            Ok(maintenance) => maintenance.sample_resources(shared),
            Err(_) => shared.run.error("thread maintenance panicked".into()),
        }
    }
}

impl Maintenance {
    /// Runs a pass now and then once a second until stopped.
    pub(crate) fn start(self, shared: Arc<Shared>) -> std::io::Result<MaintenanceThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let handle = std::thread::Builder::new()
            .name("maintenance".into())
            .spawn(move || {
                let mut next_at = Instant::now();
                while !stopping.load(Ordering::SeqCst) {
                    if Instant::now() >= next_at {
                        next_at += Duration::from_secs(1);
                        shared
                            .run
                            .reporting_panic("maintenance", || self.pass(&shared, &stopping));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                self
            })?;
        Ok(MaintenanceThread { stop, handle })
    }

    fn pass(&self, shared: &Shared, stopping: &AtomicBool) {
        if self.retention {
            for (p, progress) in shared.shards.progress.iter().enumerate() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
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
        self.sample_resources(shared);
    }

    /// Disk use of the journals and anonymous RSS, now: once a second, and once more at the end
    /// (a run shorter than a second would otherwise report only its first sample).
    pub(crate) fn sample_resources(&self, shared: &Shared) {
        let disk: u64 = self
            .inputs
            .iter()
            .chain(&self.shard_logs)
            .flat_map(|j| j.fragments())
            .map(|f| std::fs::metadata(&f.path).map_or(0, |m| m.len()))
            .sum();
        shared.resources.disk_bytes.store(disk, Ordering::Relaxed);
        shared.resources.disk_bytes_max.fetch_max(disk, Ordering::Relaxed);
        sample_rss(shared);
    }
}

/// Anonymous RSS now, into the run's current and maximum figures.
pub(crate) fn sample_rss(shared: &Shared) {
    let rss = rss_bytes();
    shared.resources.rss_bytes.store(rss, Ordering::Relaxed);
    shared.resources.rss_bytes_max.fetch_max(rss, Ordering::Relaxed);
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

/// Bytes available to an unprivileged writer on the file system holding `dir` (statvfs
/// `f_bavail` × `f_frsize`: blocks reserved for root are not counted as free).
pub(crate) fn available_bytes(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// A chunk's bytes in a journal beyond its data: message length, chunk header, frame share.
const CHUNK_FRAMING_BYTES: u64 = 64;

/// How often the guard looks: an unlimited run writes about 25 MB between two looks, well
/// inside any margin worth setting.
const FREE_SPACE_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// The free-space guard of `--min-free-mb`: stops the run gracefully (open streams finish and get
/// their Sums) once the data directory's file system has less than `min_bytes` available,
/// instead of letting the disk fill (which ends the run with exit 3 and leaves no room for the
/// open streams' last chunks).
pub(crate) struct FreeSpaceGuard {
    dir: PathBuf,
    min_bytes: u64,
    /// `--max-chunk-bytes` (plus a chunk's framing): times the chunks the open streams have yet
    /// to publish, what finishing them may still write.
    chunk_bytes_max: u64,
    next_at: Instant,
    fired: bool,
}

impl FreeSpaceGuard {
    /// `min_mb` = 0: the guard never fires.
    pub(crate) fn new(dir: &Path, min_mb: u64, max_chunk_bytes: usize) -> FreeSpaceGuard {
        FreeSpaceGuard {
            dir: dir.to_path_buf(),
            min_bytes: min_mb.saturating_mul(1_000_000),
            chunk_bytes_max: max_chunk_bytes as u64 + CHUNK_FRAMING_BYTES,
            next_at: Instant::now(),
            fired: false,
        }
    }

    pub(crate) fn tick(&mut self, shared: &Shared, now: Instant) {
        if self.min_bytes == 0 || self.fired || now < self.next_at {
            return;
        }
        self.next_at = now + FREE_SPACE_CHECK_INTERVAL;
        let free = match available_bytes(&self.dir) {
            Ok(free) => free,
            Err(e) => {
                // Not a reason to stop: the appends themselves report a full disk.
                tracing::warn!(data = %self.dir.display(), error = %e, "free-space guard: statvfs failed; guard off");
                self.fired = true;
                return;
            }
        };
        // Long streams (--max-chunks-per-stream) can need more than --min-free-mb to finish:
        // the stop comes while what they may still write fits.
        let finishing = shared
            .chunkers
            .total(|s| &s.chunks_to_publish)
            .saturating_mul(self.chunk_bytes_max);
        // Twice the bound: the stop comes while the open streams can still finish, with room for
        // what is written until the next look.
        if free >= self.min_bytes.max(finishing.saturating_mul(2)) {
            return;
        }
        self.fired = true;
        let (free_mb, min_mb, finishing_mb) = (
            free / 1_000_000,
            self.min_bytes / 1_000_000,
            finishing / 1_000_000,
        );
        // What the open streams may still write does not fit at all (streams far longer than
        // the disk): they are abandoned, as by a killed chunker (summers expire them), rather
        // than finished into a full disk.
        let abandon = finishing > free;
        tracing::warn!(
            data = %self.dir.display(),
            free_mb,
            min_free_mb = min_mb,
            finishing_mb,
            abandon,
            "free space under --min-free-mb, or under what finishing the open streams may write; stopping gracefully"
        );
        let then = if abandon {
            "abandoning the open streams (they may need more than is free; summers expire them) and waiting for the Sums of the finished ones"
        } else {
            "finishing open streams and waiting for their Sums"
        };
        crate::exit::errln!(
            "\nstream-sum: {free_mb} MB free on the file system holding {}, under --min-free-mb {min_mb} or the {finishing_mb} MB finishing the open streams may write: stopping: {then} (add --retention, or free space, to run longer)",
            self.dir.display()
        );
        if abandon {
            for die in &shared.chunkers.die {
                die.store(true, Ordering::SeqCst);
            }
        }
        shared.run.request_stop("low free space");
    }
}
