//! The I/O of one commit, run by the batch's leader: one write and one `fdatasync` per batch
//! (plus, at a roll, the seal of the full fragment and the creation of the next), and the roll
//! back of a batch whose write failed. It uses only what it needs of the journal
//! ([`WriteContext`]); the state machine deciding who commits what is `crate::commit`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::commit::{FragmentSet, TakenBatch};
use crate::error::AppendError;
use crate::fragment::{fragment_file_name, Fragment};
use crate::scan_hint::ScanHintWriter;
use crate::spare::{RecycledFragments, Spares};
use crate::stats::JournalStats;
use crate::storage::{OpenMode, Storage, StorageFile};

/// What a commit's I/O needs of its journal.
pub(crate) struct WriteContext<'a> {
    pub dir: &'a Path,
    pub storage: &'a dyn Storage,
    pub fragments: &'a FragmentSet,
    pub stats: &'a JournalStats,
    pub spares: Option<&'a Spares>,
    pub recycled: Option<&'a RecycledFragments>,
    pub map_len_hint: u64,
    pub fragment_max_bytes: u64,
}

/// The fragment being written. Owned by the journal, used by one leader at a time.
pub(crate) struct Cursor {
    /// Begin offset of the fragment being written.
    cur_begin: u64,
    cur_file: Arc<dyn StorageFile>,
    /// Begin offsets of fragments created by the batch being written.
    created: Vec<u64>,
    scan_hint: ScanHintWriter,
    /// Whether the current fragment's file started out longer than what is written into it (a
    /// recycled file, a zero-filled spare): writes into it must stay under a durable write bound
    /// (scan_hint.rs), so that open after a crash need not search all of its stale bytes.
    needs_bound: bool,
    /// End of the last write whose `fdatasync` returned (the durable head as this cursor knows
    /// it, which the journal publishes only after the cursor is released).
    synced_end: u64,
}

pub(crate) enum WriteFailure {
    /// A write or file creation failed; nothing was made durable, the batch can be rolled back.
    Write { error: std::io::Error, path: PathBuf },
    /// An fsync failed: what is on the medium is unknown, so the journal is poisoned.
    Sync(String),
}

/// The append error for a failed write: `NoSpace` for a full disk (ENOSPC, EDQUOT), else `Io`.
pub(crate) fn append_error(journal: &str, error: std::io::Error, path: PathBuf) -> AppendError {
    if error.kind() == std::io::ErrorKind::StorageFull {
        AppendError::NoSpace {
            journal: journal.to_string(),
            fragment: path,
        }
    } else {
        AppendError::Io {
            journal: journal.to_string(),
            fragment: path,
            reason: error.to_string(),
        }
    }
}

impl Cursor {
    pub fn new(
        cur_begin: u64,
        cur_file: Arc<dyn StorageFile>,
        scan_hint: ScanHintWriter,
        head: u64,
    ) -> Cursor {
        // A file longer than its frames holds bytes this journal did not write there (recovery
        // keeps a recycled or preallocated fragment's length).
        let longer = cur_file.len().map_or(true, |len| len > head - cur_begin);
        let needs_bound = longer || scan_hint.bound_names(cur_begin);
        Cursor {
            cur_begin,
            cur_file,
            created: Vec::new(),
            scan_hint,
            needs_bound,
            synced_end: head,
        }
    }

    fn cur_path(&self, cx: &WriteContext<'_>) -> PathBuf {
        cx.dir.join(fragment_file_name(self.cur_begin))
    }

    /// Writes `bytes` at journal `offset` of the current fragment; first, if the fragment needs
    /// one, a durable write bound past their end.
    fn write_at(&mut self, cx: &WriteContext<'_>, offset: u64, bytes: &[u8]) -> Result<(), WriteFailure> {
        debug_assert!(offset >= self.cur_begin);
        if self.needs_bound {
            let end = offset - self.cur_begin + bytes.len() as u64;
            self.scan_hint
                .bound_write(self.cur_begin, end)
                .map_err(|error| WriteFailure::Write {
                    error,
                    path: self.scan_hint.path(),
                })?;
        }
        self.cur_file
            .write_all_at(offset - self.cur_begin, bytes)
            .map_err(|error| WriteFailure::Write {
                error,
                path: self.cur_path(cx),
            })
    }

    fn sync(&self, cx: &WriteContext<'_>) -> Result<(), WriteFailure> {
        let started = std::time::Instant::now();
        let synced = self.cur_file.sync_data();
        cx.stats.fsynced(started.elapsed());
        synced.map_err(|e| {
            WriteFailure::Sync(format!(
                "fdatasync of {} failed: {e}",
                self.cur_path(cx).display()
            ))
        })
    }

    /// Writes a batch and makes it durable. At each roll point: write the bytes before it,
    /// `fdatasync` them (sealing the fragment), create the next fragment and fsync the directory
    /// before writing into it. Then one write and one `fdatasync` of the rest.
    pub fn write_batch(&mut self, cx: &WriteContext<'_>, batch: &TakenBatch) -> Result<(), WriteFailure> {
        let mut start = 0usize;
        let mut offset = batch.begin;
        self.created.clear();
        for &(at, new_begin) in &batch.rolls {
            if at > start {
                self.write_at(cx, offset, &batch.bytes[start..at])?;
                // Seal the full fragment before creating the next: recovery relies on every
                // fragment but the last being durable.
                self.sync(cx)?;
            }
            // Durable up to the roll point now (a later failure in this batch must not let
            // `close` cut it: the next fragment may already exist).
            self.synced_end = new_begin;
            // Counted as created before it exists: a failure part way (a spare renamed but not
            // opened, say) must not leave a file there for a roll back to miss.
            self.created.push(new_begin);
            let (fragment, file) = open_new_fragment(cx, new_begin).map_err(|error| WriteFailure::Write {
                error,
                path: cx.dir.join(fragment_file_name(new_begin)),
            })?;
            cx.stats.fragment_created();
            cx.fragments.push(fragment);
            // A recycled file or a spare has its length already; a new file has none, but a
            // bound record left for this begin (by a batch that rolled into a recycled file here
            // and was rolled back) must stay true for it.
            let needs_bound = file.len().map_or(true, |len| len > 0) || self.scan_hint.bound_names(new_begin);
            // Make the new name durable before writing into it: a power loss keeps any subset of
            // the directory operations since the last directory sync, so two fragments created
            // before one sync could leave the later without the earlier (a hole).
            cx.storage.sync_dir(cx.dir).map_err(|e| {
                WriteFailure::Sync(format!("fsync of directory {} failed: {e}", cx.dir.display()))
            })?;
            self.cur_file = file;
            self.cur_begin = new_begin;
            self.needs_bound = needs_bound;
            start = at;
            offset = new_begin;
        }
        if start < batch.bytes.len() {
            self.write_at(cx, offset, &batch.bytes[start..])?;
        }
        self.sync(cx)?;
        self.synced_end = batch.end();
        // `offset` is where this batch's write into the current fragment began, a frame start
        // with every byte before it now durable: open may start validating there.
        if let Some(frame_crc) = crate::frame::stored_header_crc(&batch.bytes[start..]) {
            self.scan_hint
                .after_durable_write(self.cur_begin, offset, frame_crc);
        }
        if let Some(spares) = cx.spares {
            // Past half of this fragment: have the next one zero-filled in time for the roll,
            // unless a recycled fragment is waiting.
            let used = batch.end() - self.cur_begin;
            let recycled_ready = cx.recycled.is_some_and(|r| r.ready());
            if used * 2 >= cx.fragment_max_bytes && !recycled_ready {
                spares.want();
            }
        }
        Ok(())
    }

    /// At close: records the last durable write as the scan-start hint (the next open then reads
    /// only that write and need not rewrite it), and, unless fragments are `preallocate`d (whose
    /// length is kept on purpose), cuts what lies past it in the current fragment (a recycled
    /// file's stale frames), which the next open would otherwise read to the end of the file
    /// looking for damage. Both are best effort: a failure, or a crash before either is durable,
    /// leaves what the next open handles anyway.
    /// `last_begin` is where the journal's last fragment begins: a fragment that is not the last
    /// (a batch created the next one, then failed before the cursor moved) is never cut.
    pub fn close(&mut self, preallocate: bool, last_begin: u64) {
        self.scan_hint.record_latest();
        let valid_len = self.synced_end.saturating_sub(self.cur_begin);
        let is_last = self.cur_begin == last_begin;
        if !preallocate && is_last && self.cur_file.len().is_ok_and(|len| len > valid_len) {
            // Readers read only below the durable head, which never passes `synced_end`.
            let _ = self.cur_file.set_len(valid_len);
        }
    }

    /// Undoes a batch whose write failed: removes fragments it created, cuts the current fragment
    /// back to the durable head and syncs it. Returns the begin of the fragment the journal
    /// continues in. An error here poisons the journal.
    pub fn roll_back(&mut self, cx: &WriteContext<'_>, durable: u64) -> std::io::Result<u64> {
        let created = std::mem::take(&mut self.created);
        if let Some(&first_created) = created.first() {
            cx.fragments.drop_from(first_created);
            // Newest first, each unlink made durable before the next: a power loss keeps any
            // subset of unsynced directory operations, and a surviving later fragment without
            // its predecessor would be a hole.
            for &begin in created.iter().rev() {
                let path = cx.dir.join(fragment_file_name(begin));
                match cx.storage.remove_file(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    other => other?,
                }
                cx.storage.sync_dir(cx.dir)?;
            }
        }
        let last = cx.fragments.last();
        self.cur_begin = last.begin;
        self.cur_file = last.file(cx.storage, cx.map_len_hint)?.clone();
        self.cur_file.set_len(durable - self.cur_begin)?;
        self.cur_file.sync_data()?;
        // Cut to its frames: nothing past them is left to bound, unless a bound record names it.
        self.needs_bound = self.scan_hint.bound_names(self.cur_begin);
        self.synced_end = durable;
        Ok(self.cur_begin)
    }
}

/// Creates the fragment beginning at `begin`: a fragment recycled by retention renamed, if one
/// is ready, else the zero-filled spare renamed, if one is ready, else a new empty file.
fn open_new_fragment(
    cx: &WriteContext<'_>,
    begin: u64,
) -> std::io::Result<(Arc<Fragment>, Arc<dyn StorageFile>)> {
    let path = cx.dir.join(fragment_file_name(begin));
    let reused = cx
        .recycled
        .and_then(|r| r.take_as(&path, cx.map_len_hint))
        .or_else(|| cx.spares.and_then(|s| s.take_as(&path, cx.map_len_hint)));
    let file = match reused {
        Some(file) => file?,
        None => cx.storage.open(&path, OpenMode::CreateNew, cx.map_len_hint)?,
    };
    let fragment = Fragment::with_file(begin, cx.dir, file.clone());
    Ok((Arc::new(fragment), file))
}
