//! The writer thread of a journal: one write and one fdatasync per group-commit batch.

use std::sync::Arc;

use crate::error::AppendError;
use crate::journal::{JournalShared, TakenBatch};
use crate::storage::StorageFile;

pub(crate) struct Writer {
    pub shared: Arc<JournalShared>,
    /// Begin offset of the fragment being written.
    pub cur_begin: u64,
    pub cur_file: Arc<dyn StorageFile>,
    /// Begin offsets of fragments created by the batch being written.
    pub created: Vec<u64>,
}

enum WriteFailure {
    /// A write or file creation failed; nothing was made durable, the batch can be rolled back.
    Write {
        error: std::io::Error,
        path: std::path::PathBuf,
    },
    /// An fsync failed: what is on the medium is unknown, so the journal is poisoned.
    Sync(String),
}

impl Writer {
    pub fn run(mut self) {
        let mut recycled = None;
        while let Some(batch) = self.shared.take_batch(recycled.take()) {
            match self.write_batch(&batch) {
                Ok(()) => self.shared.batch_durable(&batch),
                Err(WriteFailure::Sync(reason)) => self.shared.poison(&batch, reason),
                Err(WriteFailure::Write { error, path }) => self.roll_back(&batch, error, path),
            }
            recycled = Some(batch.bytes);
        }
    }

    fn cur_path(&self) -> std::path::PathBuf {
        self.shared
            .dir
            .join(crate::fragment::fragment_file_name(self.cur_begin))
    }

    fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<(), WriteFailure> {
        debug_assert!(offset >= self.cur_begin);
        self.cur_file
            .write_all_at(offset - self.cur_begin, bytes)
            .map_err(|error| WriteFailure::Write {
                error,
                path: self.cur_path(),
            })
    }

    fn sync(&self) -> Result<(), WriteFailure> {
        let started = std::time::Instant::now();
        let synced = self.cur_file.sync_data();
        self.shared.stats.fsynced(started.elapsed());
        synced.map_err(|e| {
            WriteFailure::Sync(format!("fdatasync of {} failed: {e}", self.cur_path().display()))
        })
    }

    fn write_batch(&mut self, batch: &TakenBatch) -> Result<(), WriteFailure> {
        let mut start = 0usize;
        let mut offset = batch.begin;
        self.created.clear();
        for &(at, new_begin) in &batch.rolls {
            if at > start {
                self.write_at(offset, &batch.bytes[start..at])?;
                // Seal the full fragment before creating the next: recovery relies on every
                // fragment but the last being durable.
                self.sync()?;
            }
            // Counted as created before it exists: a failure part way (a spare renamed but not
            // opened, say) must not leave a file there for a roll back to miss.
            self.created.push(new_begin);
            let (fragment, file) =
                self.shared
                    .open_new_fragment(new_begin)
                    .map_err(|error| WriteFailure::Write {
                        error,
                        path: self
                            .shared
                            .dir
                            .join(crate::fragment::fragment_file_name(new_begin)),
                    })?;
            self.shared.push_fragment(fragment);
            // Make the new name durable before writing into it: a power loss keeps any subset of
            // the directory operations since the last directory sync, so two fragments created
            // before one sync could leave the later without the earlier (a hole).
            self.shared.opts.storage.sync_dir(&self.shared.dir).map_err(|e| {
                WriteFailure::Sync(format!(
                    "fsync of directory {} failed: {e}",
                    self.shared.dir.display()
                ))
            })?;
            self.cur_file = file;
            self.cur_begin = new_begin;
            start = at;
            offset = new_begin;
        }
        if start < batch.bytes.len() {
            self.write_at(offset, &batch.bytes[start..])?;
        }
        self.sync()?;
        if let Some(spares) = &self.shared.spares {
            // Past half of this fragment: have the next one zero-filled in time for the roll.
            let used = batch.begin + batch.bytes.len() as u64 - self.cur_begin;
            if used * 2 >= self.shared.opts.fragment_max_bytes {
                spares.want();
            }
        }
        Ok(())
    }

    /// Undoes a batch whose write failed: removes fragments it created, cuts the current fragment
    /// back to the durable head, and fails the batch (and what queued behind it). If the undo
    /// itself fails, the journal is poisoned.
    fn roll_back(&mut self, batch: &TakenBatch, error: std::io::Error, path: std::path::PathBuf) {
        let durable = self.shared.durable_head();
        let journal = self.shared.name.clone();
        let created = std::mem::take(&mut self.created);
        let mut undo = || -> std::io::Result<()> {
            if let Some(&first_created) = created.first() {
                self.shared.drop_fragments_from(first_created);
                // Newest first, each unlink made durable before the next: a power loss keeps any
                // subset of unsynced directory operations, and a surviving later fragment without
                // its predecessor would be a hole.
                for &begin in created.iter().rev() {
                    let path = self.shared.dir.join(crate::fragment::fragment_file_name(begin));
                    match self.shared.opts.storage.remove_file(&path) {
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        other => other?,
                    }
                    self.shared.opts.storage.sync_dir(&self.shared.dir)?;
                }
            }
            let last = self
                .shared
                .fragments
                .read()
                .last()
                .cloned()
                .expect("a fragment remains");
            self.cur_begin = last.begin;
            self.cur_file = last
                .file(&*self.shared.opts.storage, self.shared.map_len_hint())?
                .clone();
            self.cur_file.set_len(durable - self.cur_begin)?;
            self.cur_file.sync_data()
        };
        if let Err(undo_error) = undo() {
            let reason = format!(
                "write to {} failed ({error}) and undoing it failed: {undo_error}",
                path.display()
            );
            self.shared.poison(batch, reason);
            return;
        }
        let append_error = if error.kind() == std::io::ErrorKind::StorageFull {
            AppendError::NoSpace {
                journal,
                fragment: path,
            }
        } else {
            AppendError::Io {
                journal,
                fragment: path,
                reason: error.to_string(),
            }
        };
        self.shared.batch_failed(batch, append_error, self.cur_begin);
    }
}
