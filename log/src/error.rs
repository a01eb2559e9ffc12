//! Typed errors, one per kind of operation. Each names the journal and, where bytes are at fault,
//! the fragment file and offset.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::frame::FrameError;

/// Opening a data directory or a journal failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("data directory {dir} is in use by another process (it holds the lock on {dir} or on its journals/ directory)")]
    Locked { dir: PathBuf },
    /// A writable open of a journal whose directory another writer holds: the same journal
    /// directory reached from two data directories (a symlink), one written by another process.
    #[error("journal {journal:?} is in use by another process: it holds the lock on {dir} (is that directory shared, through a symlink, with another data directory?)")]
    JournalLocked { journal: String, dir: PathBuf },
    #[error("data directory {dir} does not exist")]
    NoDataDir { dir: PathBuf },
    /// `dir` exists but holds no `journals` directory (a file, an empty directory, another
    /// program's directory).
    #[error("{dir} is not a stream-sum data directory: it has no journals directory ({dir}/journals)")]
    NotADataDir { dir: PathBuf },
    #[error("journal {journal:?} does not exist in {dir}")]
    NoSuchJournal { journal: String, dir: PathBuf },
    #[error(
        "invalid journal name {journal:?}: use 1-100 characters from [A-Za-z0-9._-], not starting with '.'"
    )]
    BadName { journal: String },
    #[error("journal {journal:?} is corrupt: fragment {fragment} at journal offset {offset}: {detail}. Open refused and changed nothing: restore that fragment from a backup, or, accepting the loss of everything from the fragment's start on, move it and the fragments after it out of the journal directory and remove the journal's scan-start.hint")]
    Corrupt {
        journal: String,
        fragment: PathBuf,
        offset: u64,
        detail: String,
    },
    #[error("{}{what} {path}: {source}", journal_prefix(journal))]
    Io {
        /// Empty for the data directory itself.
        journal: String,
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("invalid options: {0}")]
    BadOptions(String),
}

impl OpenError {
    /// [`OpenError::Corrupt`]: `fragment` of `journal` is damaged at `offset`, as `detail` says.
    pub(crate) fn corrupt(journal: &str, fragment: PathBuf, offset: u64, detail: String) -> OpenError {
        OpenError::Corrupt {
            journal: journal.to_string(),
            fragment,
            offset,
            detail,
        }
    }
}

/// An append failed. Nothing of the frame is visible to readers, now or after recovery, unless
/// the error says the outcome is indeterminate.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    #[error(
        "journal {journal:?} is poisoned after a failed fsync ({reason}); restart the process to recover"
    )]
    Poisoned { journal: String, reason: String },
    #[error("journal {journal:?}: conditional append expected head {expected}, but head is {actual}")]
    Conflict {
        journal: String,
        expected: u64,
        actual: u64,
    },
    /// Refused by [`crate::Journal::submit_unless_failed`]. `first` is the journal's first
    /// failure since it was opened, so a refusal names the root cause (e.g. [`AppendError::NoSpace`])
    /// even when the writer never waited for the append that failed.
    #[error("journal {journal:?}: refusing the append because an earlier one failed and was rolled back ({failures} failures, {since} when this writer started), so that no later append lands in its place; the first failure: {first}")]
    AfterFailure {
        journal: String,
        since: u64,
        failures: u64,
        first: Box<AppendError>,
    },
    #[error("journal {journal:?}: frame of {len} bytes exceeds frame_max_bytes {max}")]
    FrameTooLarge { journal: String, len: u64, max: u64 },
    #[error("journal {journal:?}: batch of {count} messages exceeds batch_max_messages {max}")]
    BatchTooLarge { journal: String, count: u32, max: u32 },
    #[error("journal {journal:?}: no space left writing {fragment} (the append was not written; free space and retry)")]
    NoSpace { journal: String, fragment: PathBuf },
    #[error("journal {journal:?}: write to {fragment} failed: {reason} (the append was not written)")]
    Io {
        journal: String,
        fragment: PathBuf,
        reason: String,
    },
    #[error("journal {journal:?}: pending bytes reached pending_max_bytes {max}")]
    WouldBlock { journal: String, max: u64 },
    #[error("journal {journal:?} is closed")]
    Closed { journal: String },
    #[error("journal {journal:?} is opened read-only")]
    ReadOnly { journal: String },
    /// A failure of another backend behind [`crate::FrameJournal`] (e.g. a cluster that stayed
    /// unreachable past its retry bound). The append may or may not have landed.
    #[error("journal {journal:?}: {detail}")]
    Backend { journal: String, detail: String },
}

impl AppendError {
    /// The failure behind this error: for [`AppendError::AfterFailure`] the first failure it
    /// carries, otherwise the error itself.
    pub fn root_cause(&self) -> &AppendError {
        match self {
            AppendError::AfterFailure { first, .. } => first.root_cause(),
            other => other,
        }
    }
}

/// A read failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    /// Retention removed the fragment holding `offset`; stored data resumes at `first` (for a
    /// fragment removed after the journal was opened, the begin of the next one it listed).
    #[error("journal {journal:?}: offset {offset} was removed by retention (first offset is {first})")]
    Removed {
        journal: String,
        offset: u64,
        first: u64,
    },
    #[error("journal {journal:?}: offset {offset} is past the durable head {head}")]
    PastHead { journal: String, offset: u64, head: u64 },
    #[error("journal {journal:?} is corrupt: fragment {fragment} at journal offset {offset}: {error}")]
    Corrupt {
        journal: String,
        fragment: PathBuf,
        offset: u64,
        error: FrameError,
    },
    /// The bytes could not be read (EIO, a fragment truncated by another process, a file that
    /// would not open). `offset` is the journal offset of the frame being read; `source` is the
    /// storage's error (shared, so the error stays `Clone`).
    #[error("journal {journal:?}: reading {fragment} at journal offset {offset}: {source}")]
    Io {
        journal: String,
        fragment: PathBuf,
        offset: u64,
        #[source]
        source: Arc<io::Error>,
    },
    #[error("journal {journal:?} is closed")]
    Closed { journal: String },
    /// A failure of another backend behind [`crate::FrameJournal`].
    #[error("journal {journal:?}: {detail}")]
    Backend { journal: String, detail: String },
}

/// Retention failed.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("journal {journal:?}: removing {path}: {source}")]
    Io {
        journal: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("journal {journal:?} is opened read-only")]
    ReadOnly { journal: String },
}

/// `journal "NAME": ` before an error about that journal; nothing for the data directory itself.
fn journal_prefix(journal: &str) -> String {
    if journal.is_empty() {
        String::new()
    } else {
        format!("journal {journal:?}: ")
    }
}
