//! fjall (an LSM tree): each record is one `insert` under a fresh key followed by
//! `Database::persist(PersistMode::SyncData)`, which returns once its journal is `fdatasync`ed.
//! Memtable flushes and compactions run in fjall's background threads, inside the timing.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::DurableAppender;

pub struct FjallAppender {
    db: Database,
    records: Keyspace,
    next_key: AtomicU64,
}

impl FjallAppender {
    pub fn open(dir: &Path) -> anyhow::Result<FjallAppender> {
        let db = Database::builder(dir)
            .open()
            .with_context(|| format!("opening fjall at {}", dir.display()))?;
        let records = db
            .keyspace("records", KeyspaceCreateOptions::default)
            .context("creating the fjall keyspace")?;
        Ok(FjallAppender {
            db,
            records,
            next_key: AtomicU64::new(0),
        })
    }
}

impl DurableAppender for FjallAppender {
    fn append(&self, _writer: usize, record: &[u8]) -> anyhow::Result<()> {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        self.records.insert(key, record).context("fjall insert")?;
        self.db
            .persist(PersistMode::SyncData)
            .context("fjall persist(SyncData)")?;
        Ok(())
    }
}

#[cfg(test)]
impl FjallAppender {
    pub fn record_count(&self) -> u64 {
        self.records.len().expect("count fjall records") as u64
    }
}
