//! Readers: frame-by-frame reads of the durable prefix, through memory maps, verifying every
//! checksum, with blocking and async tailing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::ReadError;
use crate::fragment::Fragment;
use crate::frame::{self, Messages, HEADER_LEN};
use crate::journal::Journal;
use crate::mmap;
use crate::storage::{Storage, StorageFile};

/// One validated frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Journal offset of the frame.
    pub offset: u64,
    /// Journal offset just past the frame (where the next frame begins).
    pub end: u64,
    pub message_count: u32,
    payload: Bytes,
}

impl Frame {
    /// A frame of another backend (see [`crate::boundary`]): `payload` is a [`crate::Batch`]'s
    /// payload, checked by the caller's own means (here: its message list must parse).
    pub fn from_batch_payload(offset: u64, end: u64, payload: Bytes) -> Result<Frame, frame::FrameError> {
        let mut message_count = 0u32;
        for m in frame::messages(&payload) {
            m?;
            message_count += 1;
        }
        Ok(Frame {
            offset,
            end,
            message_count,
            payload,
        })
    }

    /// The payload: zero-copy from the memory map where the storage allows.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The messages of the batch this frame carries.
    pub fn messages(&self) -> Messages<'_> {
        frame::messages(&self.payload)
    }
}

struct CachedView {
    fragment: Arc<Fragment>,
    /// Bytes of the fragment from its start; grows as the durable head moves.
    view: Bytes,
}

/// Reads frames in order from an offset; see [`Journal::reader`].
pub struct Reader {
    journal: Journal,
    offset: u64,
    cache: Option<CachedView>,
}

impl Reader {
    pub(crate) fn new(journal: Journal, offset: u64) -> Reader {
        Reader {
            journal,
            offset,
            cache: None,
        }
    }

    /// The offset of the next frame to read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Moves to `offset`, which must be a frame boundary.
    pub fn seek(&mut self, offset: u64) {
        self.offset = offset;
    }

    /// The next durable frame, or `None` if the reader is at the durable head.
    // Over 70 lines, kept whole for now: one read locates the fragment, maps it, checks the frame
    // inside `catch_faults` and classifies a failure (removed, I/O, truncated, corrupt), all over
    // the same fragment and view. Issue 12 is reshaping the locate step (a fragment set of the
    // commit path); split it into named steps once that lands.
    pub fn try_next(&mut self) -> Result<Option<Frame>, ReadError> {
        let shared = &self.journal.shared;
        let head = shared.durable_head();
        if self.offset >= head {
            return Ok(None);
        }
        let first = shared.first_offset();
        if self.offset < first {
            return Err(ReadError::Removed {
                journal: shared.name.clone(),
                offset: self.offset,
                first,
            });
        }
        let Some(crate::commit::Located {
            fragment,
            end: fragment_end,
            previous,
        }) = shared.fragments.locate(self.offset, head)
        else {
            return Err(ReadError::Removed {
                journal: shared.name.clone(),
                offset: self.offset,
                first,
            });
        };
        let io_error = |e: std::io::Error| ReadError::Io {
            journal: shared.name.clone(),
            fragment: fragment.path.clone(),
            offset: self.offset,
            source: Arc::new(e),
        };
        let file = match fragment.file(&*shared.opts.storage, shared.map_len_hint()) {
            Ok(file) => file,
            Err(e) if is_removed_by_retention(&e, previous.as_deref(), &*shared.opts.storage) => {
                // Sealed fragments are opened lazily, so retention (in this process, or in the
                // writer while a read-only open reads) can remove one between the listing and
                // the first read of it. Report the range as removed, and where data resumes.
                return Err(ReadError::Removed {
                    journal: shared.name.clone(),
                    offset: self.offset,
                    first: fragment_end,
                });
            }
            Err(e) => return Err(io_error(e)),
        };
        let mut limit = fragment_end - fragment.begin;
        if let Some(len) = fragment.len_at_open() {
            limit = limit.min(len);
        }
        let pos = (self.offset - fragment.begin) as usize;
        let reuse = matches!(&self.cache, Some(c) if Arc::ptr_eq(&c.fragment, &fragment) && c.view.len() as u64 >= limit);
        if !reuse {
            let view = file.read_at(0, limit as usize).map_err(io_error)?;
            self.cache = Some(CachedView {
                fragment: fragment.clone(),
                view,
            });
        }
        let view = &self.cache.as_ref().expect("cached above").view;
        let available = &view[..limit as usize];
        let corrupt = |error| ReadError::Corrupt {
            journal: shared.name.clone(),
            fragment: fragment.path.clone(),
            offset: self.offset,
            error,
        };
        if pos > available.len() {
            return Err(corrupt(frame::FrameError::Truncated {
                needed: pos as u64,
                available: limit,
            }));
        }
        if pos == available.len() && limit < fragment_end - fragment.begin {
            // The file ends where the journal goes on: the bytes up to the next fragment (or the
            // head) are gone, which is not an all-zero frame.
            return Err(corrupt(frame::FrameError::FragmentShort {
                file_end: self.offset,
                next: fragment_end,
            }));
        }
        // A page that faults while the frame is checked (EIO, or truncated away by another
        // process) reads as zeros instead of killing the process; the fault, not the zeros, is
        // the error. See `crate::mmap`.
        let (decoded, fault) =
            mmap::catch_faults(|| frame::decode_frame(&available[pos..], shared.salt, self.offset));
        // A fault by another reader of the same map left a zero page here too (error path only).
        let fault = fault.or_else(|| {
            decoded
                .is_err()
                .then(|| mmap::first_fault_in_map_of(view))
                .flatten()
        });
        if let Some(addr) = fault {
            let page = mmap::page_bytes() as u64;
            let at = addr.wrapping_sub(view.as_ptr() as usize) as u64 / page * page;
            let error = io_error(std::io::Error::other(format!(
                "the page at fragment byte {at} (journal offset {}) could not be read: an I/O error, \
                 or the fragment was truncated under the reader",
                fragment.begin + at
            )));
            // The faulted page reads as zeros in this map; the next try maps the file afresh.
            self.cache = None;
            return Err(error);
        }
        let header = match decoded {
            Ok(header) => header,
            Err(e) => return Err(truncated_under_reader(&**file, limit).map_or_else(|| corrupt(e), io_error)),
        };
        let payload_at = pos + HEADER_LEN;
        let payload = view.slice(payload_at..payload_at + header.payload_len as usize);
        let frame = Frame {
            offset: self.offset,
            end: self.offset + header.frame_len_bytes(),
            message_count: header.message_count,
            payload,
        };
        debug_assert!(frame.end <= head, "a reader must never pass the durable head");
        self.offset = frame.end;
        Ok(Some(frame))
    }

    /// The next frame, waiting for it to become durable. Fails with [`ReadError::Closed`] once
    /// the journal is closed and nothing more is durable.
    pub fn next_blocking(&mut self) -> Result<Frame, ReadError> {
        loop {
            if let Some(f) = self.next_timeout(Duration::from_secs(3600))? {
                return Ok(f);
            }
        }
    }

    /// The next frame, waiting at most `timeout` for it.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Frame>, ReadError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(f) = self.try_next()? {
                return Ok(Some(f));
            }
            if self.journal.shared.is_closed() {
                return Err(ReadError::Closed {
                    journal: self.journal.shared.name.clone(),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.journal.wait_beyond(self.offset, deadline - now);
        }
    }

    /// Async: the next frame, waiting for it to become durable.
    pub async fn next(&mut self) -> Result<Frame, ReadError> {
        loop {
            if let Some(f) = self.try_next()? {
                return Ok(f);
            }
            if self.journal.shared.is_closed() {
                return Err(ReadError::Closed {
                    journal: self.journal.shared.name.clone(),
                });
            }
            self.journal.wait_beyond_async(self.offset).await;
        }
    }
}

/// Whether a failure to open a sealed fragment means retention removed it: the file is gone, and
/// so is the fragment before it. Retention removes a prefix of the fragments, oldest first, so a
/// fragment missing behind one that is still there is damage, and stays an I/O error.
fn is_removed_by_retention(
    error: &std::io::Error,
    previous: Option<&Fragment>,
    storage: &dyn Storage,
) -> bool {
    if error.kind() != std::io::ErrorKind::NotFound {
        return false;
    }
    let Some(previous) = previous else {
        return true;
    };
    let (Some(dir), Some(name)) = (previous.path.parent(), previous.path.file_name()) else {
        return false;
    };
    storage
        .list_dir(dir)
        .is_ok_and(|names| !names.iter().any(|n| std::ffi::OsStr::new(n) == name))
}

/// An error if `file` is now shorter than the `expected_len` bytes the journal knows are in it:
/// another process truncated it, so a bad frame near the cut is not corruption.
fn truncated_under_reader(file: &dyn StorageFile, expected_len: u64) -> Option<std::io::Error> {
    let len = file.len().ok()?;
    (len < expected_len).then(|| {
        std::io::Error::other(format!(
            "the fragment is {len} bytes long, shorter than the {expected_len} bytes written to it: \
             it was truncated under the reader"
        ))
    })
}
