//! The one module with `unsafe`: read-only memory maps of fragment files.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use bytes::Bytes;

/// Maps `len` bytes of `file` read-only and returns them as shared [`Bytes`] that keep the map
/// alive. `len` may exceed the file's current length, so a tailing reader can map a fragment once
/// and read what is appended later.
///
/// Callers must only read bytes below the file's length as of when they read them: touching a
/// page wholly beyond end-of-file raises SIGBUS. The journal guarantees this because readers only
/// look below the durable head, which is always inside the file, and the journal never truncates a
/// fragment below its durable head (recovery truncates only torn bytes, before any reader exists).
pub(crate) fn map_read_only(file: &File, len: u64) -> io::Result<Bytes> {
    let len = usize::try_from(len).map_err(|_| io::Error::other("map length overflows usize"))?;
    // SAFETY: the map is read-only. Its bytes may be changed by later appends to the same file,
    // but only bytes at or past the durable head change, and readers never look there (see the
    // contract above), so no reader observes a byte changing under it. The journal never
    // shrinks a fragment below its durable head while it is open, so reads below the durable
    // head cannot fault with SIGBUS. A file removed by retention stays mapped (unlinking does
    // not invalidate a map on Unix).
    let map = unsafe { memmap2::MmapOptions::new().len(len).map(file)? };
    Ok(Bytes::from_owner(map))
}
