//! Our journal: each call is one `Journal::append` of a one-message batch, which returns once the
//! frame is durable. Concurrent calls are group-committed: an appender that finds no commit in
//! flight writes and syncs its batch on its own thread; under contention the journal's helper
//! thread commits batch after batch.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use ss_log::{Batch, Journal, Log, Options};

use super::prewritten_storage::PrewritingStorage;
use super::DurableAppender;

pub struct OursAppender {
    journal: Journal,
    _log: Log,
    /// Remove fragments below the head every this many appends (retention); 0 = never.
    retention_every: u64,
    appends: AtomicU64,
    /// The durable head when `open` returned.
    #[cfg_attr(not(test), allow(dead_code))]
    opened_head: u64,
}

impl OursAppender {
    /// Opens a data directory at `dir` (default [`Options`]) with one journal.
    pub fn open(dir: &Path) -> anyhow::Result<OursAppender> {
        Self::open_with(dir, Options::default())
    }

    /// The same over [`PrewritingStorage`]: fragments after the first are prewritten (a
    /// diagnostic of what zero-filled fragments would buy).
    pub fn open_prewritten(dir: &Path) -> anyhow::Result<OursAppender> {
        let fragment_bytes = Options::default().fragment_max_bytes;
        let storage = PrewritingStorage::new(&dir.join("spares"), fragment_bytes)
            .context("starting the prewriting storage")?;
        let mut ours = Self::open_with(dir, Options::with_storage(Arc::new(storage)))?;
        ours.retention_every = 64;
        // Recovery leaves a new journal's first fragment empty and growing: fill it with large
        // frames until the journal rolls into a prewritten one, then drop it (not timed).
        let filler = Batch::single(&vec![0u8; 1 << 20]);
        while ours.journal.fragments().len() < 2 {
            ours.journal
                .append(&filler)
                .context("filling our first fragment")?;
        }
        ours.journal
            .remove_below(ours.journal.durable_head())
            .context("dropping our first fragment")?;
        ours.opened_head = ours.journal.durable_head();
        Ok(ours)
    }

    /// The shipped preallocation mode (`Options::preallocate`): zero-filled spare fragments
    /// prepared by the journal's own background thread, zeroing included in the timing. The first,
    /// growing fragment is filled and dropped before timing, as for the prewritten diagnostic.
    pub fn open_preallocated(dir: &Path) -> anyhow::Result<OursAppender> {
        let ours = Self::open_with(
            dir,
            Options {
                preallocate: true,
                ..Options::default()
            },
        )?;
        let filler = Batch::single(&vec![0u8; 1 << 20]);
        while ours.journal.fragments().len() < 2 {
            ours.journal
                .append(&filler)
                .context("filling our first fragment")?;
        }
        ours.journal
            .remove_below(ours.journal.durable_head())
            .context("dropping our first fragment")?;
        let mut ours = ours;
        ours.opened_head = ours.journal.durable_head();
        Ok(ours)
    }

    /// The default options with retention, as a journal under retention runs (a soak): every
    /// 64 appends, fragments below the head are removed, and (the default `Options::recycle`)
    /// renamed aside to become the next fragments. Before timing, two fragments are filled and
    /// removed, so the journal writes into recycled fragments from the start, as it does in a
    /// steady state (okaywal, its peer here, also starts with its segments preallocated).
    /// Without `write_bound`, the journal records no write bound (`write_bound_step_bytes`
    /// `u64::MAX`): a diagnostic of what the bound's syncs cost.
    pub fn open_recycling(dir: &Path, write_bound: bool) -> anyhow::Result<OursAppender> {
        let mut opts = Options::default();
        assert!(opts.recycle, "recycling is on by default");
        if !write_bound {
            opts.write_bound_step_bytes = u64::MAX;
        }
        let mut ours = Self::open_with(dir, opts)?;
        ours.retention_every = 64;
        let filler = Batch::single(&vec![0u8; 1 << 20]);
        while ours.journal.stats().fragments_removed_total < 2 {
            ours.journal
                .append(&filler)
                .context("filling our first fragments")?;
            ours.journal
                .remove_below(ours.journal.durable_head())
                .context("recycling our first fragments")?;
        }
        ours.opened_head = ours.journal.durable_head();
        Ok(ours)
    }

    fn open_with(dir: &Path, opts: Options) -> anyhow::Result<OursAppender> {
        let log = Log::open(dir, opts).with_context(|| format!("opening our log at {}", dir.display()))?;
        let journal = log.journal("records").context("creating our journal")?;
        Ok(OursAppender {
            journal,
            _log: log,
            retention_every: 0,
            appends: AtomicU64::new(0),
            opened_head: 0,
        })
    }
}

impl DurableAppender for OursAppender {
    fn append(&self, _writer: usize, record: &[u8]) -> anyhow::Result<()> {
        self.journal
            .append(&Batch::single(record))
            .context("our journal append")?;
        let n = self.appends.fetch_add(1, Ordering::Relaxed) + 1;
        if self.retention_every > 0 && n.is_multiple_of(self.retention_every) {
            self.journal
                .remove_below(self.journal.durable_head())
                .context("our journal retention")?;
        }
        Ok(())
    }
}

#[cfg(test)]
impl OursAppender {
    /// Frames appended since `open` returned (each append is one frame).
    pub fn frame_count(&self) -> u64 {
        let mut n = 0;
        for frame in self.journal.frames(self.opened_head) {
            frame.expect("read back");
            n += 1;
        }
        n
    }
}
