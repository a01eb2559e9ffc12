//! The durable-append systems of workloads (a) and (b), behind one trait so the same timed loop
//! ([`crate::harness::run_timed`]) drives each of them.
//!
//! - [`ours::OursAppender`]: `Journal::append` (group commit inside the journal).
//! - [`sqlite::SqliteAppender`]: one row per transaction, WAL, `synchronous=FULL`.
//! - [`okaywal_peer::OkayWalAppender`]: one okaywal entry per record, `commit()` (group commit).
//! - [`fjall_peer::FjallAppender`]: `insert` + `Database::persist(SyncData)` per record.
//! - [`raw_peer`]: `pwrite` + `fdatasync` baselines from [`crate::raw`].

pub mod fjall_peer;
pub mod okaywal_peer;
pub mod ours;
pub mod raw_peer;
pub mod sqlite;

/// A store that makes one record durable per call.
pub trait DurableAppender: Sync {
    /// Appends `record` on behalf of writer `writer` and returns once it is durable.
    fn append(&self, writer: usize, record: &[u8]) -> anyhow::Result<()>;
}
