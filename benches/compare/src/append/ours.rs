//! Our journal: each call is one `Journal::append` of a one-message batch, which returns once the
//! frame is durable. Concurrent calls are group-committed by the journal's writer thread.

use std::path::Path;

use anyhow::Context;
use ss_log::{Batch, Journal, Log, Options};

use super::DurableAppender;

pub struct OursAppender {
    journal: Journal,
    _log: Log,
}

impl OursAppender {
    /// Opens a data directory at `dir` (default [`Options`]) with one journal.
    pub fn open(dir: &Path) -> anyhow::Result<OursAppender> {
        let log = Log::open(dir, Options::default())
            .with_context(|| format!("opening our log at {}", dir.display()))?;
        let journal = log.journal("records").context("creating our journal")?;
        Ok(OursAppender { journal, _log: log })
    }
}

impl DurableAppender for OursAppender {
    fn append(&self, _writer: usize, record: &[u8]) -> anyhow::Result<()> {
        self.journal
            .append(&Batch::single(record))
            .context("our journal append")?;
        Ok(())
    }
}

#[cfg(test)]
impl OursAppender {
    /// Frames in the journal (each append is one frame).
    pub fn frame_count(&self) -> u64 {
        let mut reader = self.journal.reader(0);
        let mut n = 0;
        while reader.try_next().expect("read back").is_some() {
            n += 1;
        }
        n
    }
}
