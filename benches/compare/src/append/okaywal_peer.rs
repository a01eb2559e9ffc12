//! okaywal: each record is one entry (`begin_entry`, `write_chunk`, `commit`); `commit` returns
//! once the entry is synced, and concurrent commits share one `fdatasync` (its own group
//! commit). Checkpointing is a no-op ([`okaywal::LogVoid`]), so segments are recycled.

use std::path::Path;

use anyhow::Context;
use okaywal::{Configuration, LogVoid, WriteAheadLog};

use super::DurableAppender;

/// Segment size given to okaywal: the same 32 MiB as our fragments (its default is 1 MiB).
pub const SEGMENT_BYTES: u32 = 32 << 20;

pub struct OkayWalAppender {
    wal: Option<WriteAheadLog>,
}

impl OkayWalAppender {
    pub fn open(dir: &Path) -> anyhow::Result<OkayWalAppender> {
        let wal = Configuration::default_for(dir)
            .preallocate_bytes(SEGMENT_BYTES)
            .checkpoint_after_bytes(u64::from(SEGMENT_BYTES) * 3 / 4)
            .open(LogVoid)
            .with_context(|| format!("opening okaywal at {}", dir.display()))?;
        Ok(OkayWalAppender { wal: Some(wal) })
    }
}

impl DurableAppender for OkayWalAppender {
    fn append(&self, _writer: usize, record: &[u8]) -> anyhow::Result<()> {
        let wal = self.wal.as_ref().expect("open until dropped");
        let mut entry = wal.begin_entry().context("okaywal begin_entry")?;
        entry.write_chunk(record).context("okaywal write_chunk")?;
        entry.commit().context("okaywal commit")?;
        Ok(())
    }
}

impl Drop for OkayWalAppender {
    fn drop(&mut self) {
        if let Some(wal) = self.wal.take() {
            // Stops its checkpoint thread before the directory is removed.
            let _ = wal.shutdown();
        }
    }
}
