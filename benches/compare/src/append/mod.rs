//! The durable-append systems of workloads (a) and (b), behind one trait so the same timed loop
//! ([`crate::harness::run_timed`]) drives each of them.
//!
//! - [`ours::OursAppender`]: `Journal::append` (group commit inside the journal); also over
//!   [`prewritten_storage::PrewritingStorage`], a diagnostic with prewritten fragments.
//! - [`sqlite::SqliteAppender`]: one row per transaction, WAL, `synchronous=FULL`.
//! - [`okaywal_peer::OkayWalAppender`]: one okaywal entry per record, `commit()` (group commit).
//! - [`fjall_peer::FjallAppender`]: `insert` + `Database::persist(SyncData)` per record.
//! - [`raw_peer`]: `pwrite` + `fdatasync` baselines from [`crate::raw`].

pub mod fjall_peer;
pub mod okaywal_peer;
pub mod ours;
pub mod prewritten_storage;
pub mod raw_peer;
pub mod sqlite;

/// A store that makes one record durable per call.
pub trait DurableAppender: Sync {
    /// Appends `record` on behalf of writer `writer` and returns once it is durable.
    fn append(&self, writer: usize, record: &[u8]) -> anyhow::Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREADS: usize = 4;
    const PER_THREAD: usize = 50;

    fn append_from_threads(appender: &dyn DurableAppender, record_bytes: usize) {
        let record = vec![0xa5u8; record_bytes];
        std::thread::scope(|s| {
            for w in 0..THREADS {
                let record = &record;
                s.spawn(move || {
                    for _ in 0..PER_THREAD {
                        appender.append(w, record).expect("durable append");
                    }
                });
            }
        });
    }

    /// Every system takes 200 concurrent appends of 128 B and 64 KiB records, and the ones whose
    /// contents we can count hold exactly that many records afterwards.
    #[test]
    fn every_system_keeps_every_concurrent_append() {
        let dir = tempfile::Builder::new()
            .prefix("ss-compare-scratch-test-")
            .tempdir_in(".")
            .unwrap();
        let expected = (THREADS * PER_THREAD) as u64;
        for (i, record_bytes) in [128, 64 << 10].into_iter().enumerate() {
            let sub = |name: &str| {
                let p = dir.path().join(format!("{name}-{i}"));
                std::fs::create_dir(&p).unwrap();
                p
            };
            let ours = ours::OursAppender::open(&sub("ours")).unwrap();
            append_from_threads(&ours, record_bytes);
            assert_eq!(ours.frame_count(), expected);
            let prewritten = ours::OursAppender::open_prewritten(&sub("ours-prewritten")).unwrap();
            append_from_threads(&prewritten, record_bytes);
            assert_eq!(prewritten.frame_count(), expected);
            let sqlite = sqlite::SqliteAppender::open(&sub("sqlite").join("db")).unwrap();
            append_from_threads(&sqlite, record_bytes);
            assert_eq!(sqlite.row_count(), expected);
            let fjall = fjall_peer::FjallAppender::open(&sub("fjall")).unwrap();
            append_from_threads(&fjall, record_bytes);
            assert_eq!(fjall.record_count(), expected);
            let okaywal = okaywal_peer::OkayWalAppender::open(&sub("okaywal")).unwrap();
            append_from_threads(&okaywal, record_bytes);
        }
    }
}
