//! Recovery on open: find the fragments, validate the last one frame by frame, cut a torn tail,
//! refuse corruption.
//!
//! Only the last fragment is read: sealed fragments were fully synced before the next one was
//! created, so their content is checked lazily, by readers, frame by frame.
//!
//! Torn tail versus corruption: scanning the last fragment stops at the first position that is
//! not a valid frame (`bad`). Everything from `bad` on is a torn tail, and is cut, unless a valid
//! frame written by a *later* group-commit write follows it (its `write_begin` is past `bad`).
//! The writer issues a write only after the previous write's fdatasync returned, so a later
//! write's frame on disk proves the bytes at `bad` had been made durable: they were damaged
//! afterwards, and open refuses with an error naming the journal, fragment and offset. A valid
//! frame from the *same* write as `bad` is what a torn multi-page write looks like (pages reach
//! the medium in any order) and is cut with the rest.

use std::path::Path;
use std::sync::Arc;

use crate::error::OpenError;
use crate::fragment::{parse_fragment_name, Fragment};
use crate::frame::{self, FrameError, FRAME_ALIGN_BYTES, FRAME_MAGIC, HEADER_LEN};
use crate::scan_hint::{read_scan_hint, ScanHint, ScanHintWriter};
use crate::storage::{OpenMode, Storage, StorageFile};

/// Highest begin offset a fragment may have (2^62: offsets within it cannot overflow).
pub const FRAGMENT_BEGIN_MAX: u64 = 1 << 62;

pub(crate) struct Recovered {
    pub fragments: Vec<Arc<Fragment>>,
    /// The last fragment, opened read-write (read-only for read-only opens).
    pub last_file: Arc<dyn StorageFile>,
    pub head: u64,
    pub last_frame: Option<u64>,
    /// Bytes cut from a torn tail.
    pub cut_bytes: u64,
    /// Records scan-start hints from here on (writable opens; the writer's cursor keeps it).
    pub scan_hint: Option<ScanHintWriter>,
}

fn io_err(journal: &str, what: &'static str, path: &Path, source: std::io::Error) -> OpenError {
    OpenError::Io {
        journal: journal.to_string(),
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Recovers the journal stored in `dir`. `writable` opens allow cutting a torn tail.
// Over 70 lines, kept whole for now: the recovery algorithm of docs/design.md ("Recovery on
// open") reads top to bottom as its steps, with each scan already a named helper; issue 12 is
// changing the tail handling (recycled fragments), so a split waits for that to land.
pub(crate) fn recover(
    dir: &Path,
    journal: &str,
    salt: u32,
    opts: &crate::Options,
    writable: bool,
) -> Result<Recovered, OpenError> {
    let storage = &*opts.storage;
    let map_len_hint = opts.fragment_max_bytes;
    let preallocate = opts.preallocate;
    let names = storage
        .list_dir(dir)
        .map_err(|e| io_err(journal, "listing", dir, e))?;
    let mut begins: Vec<u64> = names.iter().filter_map(|n| parse_fragment_name(n)).collect();
    begins.sort_unstable();
    // Fragments begin where a frame begins (8-aligned), far below where offsets could overflow.
    if let Some(&bad) = begins
        .iter()
        .find(|&&b| b % FRAME_ALIGN_BYTES != 0 || b > FRAGMENT_BEGIN_MAX)
    {
        return Err(OpenError::Corrupt {
            journal: journal.to_string(),
            fragment: dir.join(crate::fragment::fragment_file_name(bad)),
            offset: bad,
            detail: format!(
                "a fragment cannot begin at offset {bad} (must be a multiple of {FRAME_ALIGN_BYTES} and at most {FRAGMENT_BEGIN_MAX})"
            ),
        });
    }
    let Some(&last_begin) = begins.last() else {
        return Err(OpenError::Corrupt {
            journal: journal.to_string(),
            fragment: dir.to_path_buf(),
            offset: 0,
            detail: "journal directory holds no fragment files".into(),
        });
    };
    let mut fragments: Vec<Arc<Fragment>> = begins[..begins.len() - 1]
        .iter()
        .map(|&b| Arc::new(Fragment::new(b, dir)))
        .collect();
    let last_path = dir.join(crate::fragment::fragment_file_name(last_begin));
    let mode = if writable {
        OpenMode::ReadWrite
    } else {
        OpenMode::ReadOnly
    };
    let file = storage
        .open(&last_path, mode, map_len_hint)
        .map_err(|e| io_err(journal, "opening", &last_path, e))?;
    let file_len = file
        .len()
        .map_err(|e| io_err(journal, "reading length of", &last_path, e))?;
    // Validate from the scan-start hint if it holds up (scan_hint.rs), else from the start.
    let hint = read_scan_hint(storage, dir, salt);
    let hinted_start = ScanHint::start_in(hint, last_begin);
    let mut last = scan_last_fragment(
        &*file,
        journal,
        &last_path,
        salt,
        last_begin,
        hinted_start,
        preallocate,
    )?;
    if hinted_start > 0 && !hint.is_some_and(|h| last.hint_held(&h, last_begin)) {
        last = scan_last_fragment(&*file, journal, &last_path, salt, last_begin, 0, preallocate)?;
    }
    let LastScan {
        base,
        bytes,
        scan,
        garbage_end,
        later,
        stale,
        last_write_begin,
        last_write_frame_crc,
        ..
    } = last;
    if let Some((bad_pos, error)) = &scan.first_error {
        if let Some(later) = later {
            return Err(OpenError::Corrupt {
                journal: journal.to_string(),
                fragment: last_path,
                offset: last_begin + base + *bad_pos as u64,
                detail: format!(
                    "{error}; a frame from a later write follows at offset {later}, so this is damage, not a torn write"
                ),
            });
        }
    }
    let valid_len = base + scan.valid_len as u64;
    // A recycled fragment (`Options::recycle`) holds stale frames of its old offsets after the
    // valid ones, up to its end: zeroing them all would cost a fragment's worth of writes at
    // open, so it is truncated like a growing fragment instead. (Its stale frames could stay:
    // they never validate at this offset; the torn write's frames could not.)
    let cut_bytes = if preallocate && !stale {
        // Keep the preallocated length; zero what the torn write left, so that no frame of it
        // can ever validate behind a later, shorter append.
        let garbage = (garbage_end - scan.valid_len) as u64;
        if writable && garbage > 0 {
            zero_range(&*file, valid_len, garbage)
                .map_err(|e| io_err(journal, "zeroing torn tail of", &last_path, e))?;
        }
        garbage
    } else {
        let cut = file_len - valid_len;
        if writable && cut > 0 {
            // No reader exists yet, so shrinking the file cannot fault a memory map.
            file.set_len(valid_len)
                .map_err(|e| io_err(journal, "truncating torn tail of", &last_path, e))?;
        }
        cut
    };
    // The valid frames may have been written but never synced: the previous process died or its
    // fsync failed between write and fdatasync (or between creating a fragment and syncing the
    // directory), or (read-only opens) the writer is mid-commit. Make them and the fragments'
    // directory entries durable before readers can see them, or a power loss could take back a
    // frame that a reader already acted on.
    //
    // An fdatasync alone is not enough after a failed one (Linux, "fsyncgate"): the pages whose
    // writeback failed are clean in the page cache, readable, and no later fdatasync writes them.
    // Only the last group-commit write can be in that state (a failed fsync poisons the journal,
    // so nothing is written after it), so a writable open writes that write's frames again,
    // making their pages dirty, before syncing.
    //
    // Unless the hint names that very write: it was recorded after the write's fdatasync
    // returned, so its pages reached the medium.
    let last_write_synced = base > 0 && hint.is_some_and(|h| Some(h.scan_from) == last_write_begin);
    if writable && !last_write_synced {
        if let Some(write_begin) = last_write_begin {
            let from = (write_begin.saturating_sub(last_begin) - base) as usize;
            // From a copy: `bytes` may be a map of this very file.
            let copy = guarded(journal, &last_path, base, &bytes, || {
                Vec::from(&bytes[from..scan.valid_len])
            })?;
            file.write_all_at(base + from as u64, &copy)
                .map_err(|e| io_err(journal, "rewriting the last write of", &last_path, e))?;
        }
    }
    file.sync_data()
        .map_err(|e| io_err(journal, "syncing", &last_path, e))?;
    storage
        .sync_dir(dir)
        .map_err(|e| io_err(journal, "syncing", dir, e))?;
    // A last fragment with no frame yet (a crash right after a roll made its name durable, or a
    // zero-filled spare renamed in) does not mean the journal is empty: the last frame is in an
    // earlier fragment, which must end exactly where the next begins.
    let last_frame = match scan.last_frame_pos {
        Some(p) => Some(last_begin + base + p as u64),
        None => last_frame_before(storage, &fragments, last_begin, journal, salt, map_len_hint, hint)?,
    };
    // The last write is durable now: record it as the hint, so the next open reads (and writes)
    // only that write, unless appends move on.
    let scan_hint = writable.then(|| {
        let mut writer = ScanHintWriter::new(
            opts.storage.clone(),
            dir,
            salt,
            opts.scan_hint_interval_bytes,
            hint.filter(|_| base > 0),
        );
        if let (Some(write_begin), Some(frame_crc)) = (last_write_begin, last_write_frame_crc) {
            writer.after_durable_write(last_begin, write_begin, frame_crc);
            writer.record_latest();
        }
        writer
    });
    fragments.push(Arc::new(Fragment::with_file(last_begin, dir, file.clone())));
    Ok(Recovered {
        fragments,
        last_file: file,
        head: last_begin + valid_len,
        last_frame,
        cut_bytes,
        scan_hint,
    })
}

/// What validating the last fragment from `base` found.
struct LastScan {
    /// Position in the fragment where validation started (0, or the scan-start hint's).
    base: u64,
    /// The fragment's bytes from `base` to its end.
    bytes: bytes::Bytes,
    /// Positions relative to `base`.
    scan: FragmentScan,
    /// End of the non-zero bytes after the valid frames, relative to `base`.
    garbage_end: usize,
    /// A frame of a later write after the first invalid position (then it is damage).
    later: Option<u64>,
    /// A stale frame (another offset's) after the valid frames: a recycled fragment.
    stale: bool,
    /// Where the last valid frame's group-commit write began (journal offset).
    last_write_begin: Option<u64>,
    /// The `header_crc` of the valid frame at `base`, if there is one (read inside `guarded`).
    base_frame_crc: Option<u32>,
    /// The `header_crc` of the last write's first frame, if that write began in this scan.
    last_write_frame_crc: Option<u32>,
}

impl LastScan {
    /// Whether a scan from `hint`'s `base` is as good as one from the fragment start: the very
    /// frame the hint recorded lies there, valid, and the last write (which open rewrites) began
    /// at or after it.
    fn hint_held(&self, hint: &ScanHint, fragment_begin: u64) -> bool {
        self.base_frame_crc == Some(hint.frame_crc)
            && self
                .last_write_begin
                .is_some_and(|w| w >= fragment_begin + self.base)
    }
}

/// Reads the last fragment from position `base` to its end and validates it frame by frame
/// (recovery steps 2 and 3 of docs/design.md).
fn scan_last_fragment(
    file: &dyn StorageFile,
    journal: &str,
    path: &Path,
    salt: u32,
    fragment_begin: u64,
    base: u64,
    preallocate: bool,
) -> Result<LastScan, OpenError> {
    let bytes = read_from(file, base, journal, path)?;
    let begin = fragment_begin + base;
    guarded(journal, path, base, &bytes, || {
        let scan = scan_fragment(&bytes, salt, begin);
        // Past the valid frames, zeros are preallocated space (or a zeroed tail); anything else
        // up to the last non-zero byte is what a torn write left.
        let garbage_end = scan.valid_len + last_nonzero(&bytes[scan.valid_len..]).map_or(0, |i| i + 1);
        let later = scan
            .first_error
            .as_ref()
            .and_then(|(bad_pos, _)| find_later_write(&bytes, salt, begin, *bad_pos, garbage_end));
        let stale = preallocate && holds_stale_frame(&bytes, salt, begin, scan.valid_len, garbage_end);
        let last_write_begin = scan.last_frame_pos.map(|p| {
            frame::decode_frame(&bytes[p..], salt, begin + p as u64)
                .expect("the scan validated this frame")
                .write_begin
        });
        let base_frame_crc = (scan.valid_len > 0)
            .then(|| frame::stored_header_crc(&bytes))
            .flatten();
        let last_write_frame_crc = last_write_begin
            .filter(|&w| w >= begin)
            .and_then(|w| frame::stored_header_crc(&bytes[(w - begin) as usize..]));
        LastScan {
            base,
            bytes: bytes.clone(),
            scan,
            garbage_end,
            later,
            stale,
            last_write_begin,
            base_frame_crc,
            last_write_frame_crc,
        }
    })
}

/// The last frame of the sealed fragments (`sealed`, in order), which end at `end`: scans them
/// backwards until one holds a frame, checking each ends where its successor begins. A fragment
/// the scan-start hint is for is scanned from the hint if a valid frame lies there.
fn last_frame_before(
    storage: &dyn Storage,
    sealed: &[Arc<Fragment>],
    mut end: u64,
    journal: &str,
    salt: u32,
    map_len_hint: u64,
    hint: Option<ScanHint>,
) -> Result<Option<u64>, OpenError> {
    for fragment in sealed.iter().rev() {
        let file = fragment
            .file(storage, map_len_hint)
            .map_err(|e| io_err(journal, "opening", &fragment.path, e))?;
        // The scan from `base`, and whether it holds the frame the hint recorded, valid.
        let scan_from = |base: u64| -> Result<(FragmentScan, bool), OpenError> {
            let bytes = read_from(&**file, base, journal, &fragment.path)?;
            guarded(journal, &fragment.path, base, &bytes, || {
                let scan = scan_fragment(&bytes, salt, fragment.begin + base);
                let hinted = scan.valid_len > 0
                    && hint.is_some_and(|h| frame::stored_header_crc(&bytes) == Some(h.frame_crc));
                (scan, hinted)
            })
        };
        let mut base = ScanHint::start_in(hint, fragment.begin);
        let (mut scan, hinted) = scan_from(base)?;
        if base > 0 && !hinted {
            base = 0;
            scan = scan_from(0)?.0;
        }
        let valid_end = fragment.begin + base + scan.valid_len as u64;
        if valid_end != end {
            return Err(OpenError::Corrupt {
                journal: journal.to_string(),
                fragment: fragment.path.clone(),
                offset: valid_end,
                detail: format!(
                    "this sealed fragment's frames end at offset {valid_end} but the next fragment begins at {end}{}; the bytes between are missing",
                    scan.first_error.as_ref().map_or(String::new(), |(_, e)| format!(" ({e})"))
                ),
            });
        }
        if let Some(p) = scan.last_frame_pos {
            return Ok(Some(fragment.begin + base + p as u64));
        }
        end = fragment.begin;
    }
    Ok(None)
}

/// The content of a fragment file from position `base` to its end (a view of its memory map,
/// for real files); empty if the file is no longer than `base`.
fn read_from(
    file: &dyn StorageFile,
    base: u64,
    journal: &str,
    path: &Path,
) -> Result<bytes::Bytes, OpenError> {
    let len = file
        .len()
        .map_err(|e| io_err(journal, "reading length of", path, e))?;
    if len <= base {
        return Ok(bytes::Bytes::new());
    }
    file.read_at(base, (len - base) as usize)
        .map_err(|e| io_err(journal, "reading", path, e))
}

/// Runs `f`, which reads `bytes` (a map of `path` from position `base`), inside [`crate::mmap::catch_faults`]: a page
/// that faults (EIO after eviction, or truncated by another process) is an I/O error naming the
/// byte, not a SIGBUS and not "corruption".
fn guarded<T>(
    journal: &str,
    path: &Path,
    base: u64,
    bytes: &[u8],
    f: impl FnOnce() -> T,
) -> Result<T, OpenError> {
    match crate::mmap::catch_faults(f) {
        (result, None) => Ok(result),
        (_, Some(addr)) => {
            let at = base + addr.wrapping_sub(bytes.as_ptr() as usize) as u64;
            Err(io_err(
                journal,
                "reading",
                path,
                std::io::Error::other(format!(
                    "fragment byte {at} could not be read: an I/O error, or the file was truncated by another process"
                )),
            ))
        }
    }
}

/// Result of validating a fragment's bytes frame by frame from its start.
#[derive(Debug)]
pub struct FragmentScan {
    /// Bytes of whole valid frames from the start.
    pub valid_len: usize,
    pub frame_count: u64,
    pub last_frame_pos: Option<usize>,
    /// Where validation stopped short of the end, and why.
    pub first_error: Option<(usize, FrameError)>,
}

/// Validates `bytes` (a fragment beginning at journal offset `begin`) frame by frame.
pub fn scan_fragment(bytes: &[u8], salt: u32, begin: u64) -> FragmentScan {
    let mut pos = 0usize;
    let mut frame_count = 0;
    let mut last_frame_pos = None;
    while pos < bytes.len() {
        match frame::decode_frame(&bytes[pos..], salt, begin + pos as u64) {
            Ok(h) => {
                last_frame_pos = Some(pos);
                frame_count += 1;
                pos += h.frame_len_bytes() as usize;
            }
            Err(e) => {
                return FragmentScan {
                    valid_len: pos,
                    frame_count,
                    last_frame_pos,
                    first_error: Some((pos, e)),
                };
            }
        }
    }
    FragmentScan {
        valid_len: pos,
        frame_count,
        last_frame_pos,
        first_error: None,
    }
}

/// Index of the last non-zero byte of `bytes`, if any (fast over long zero runs).
fn last_nonzero(bytes: &[u8]) -> Option<usize> {
    const BLOCK: usize = 4096;
    let mut end = bytes.len();
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let block = &bytes[start..end];
        // An OR over the block vectorizes; only a non-zero block is searched byte by byte.
        if block.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            return block.iter().rposition(|&b| b != 0).map(|i| start + i);
        }
        end = start;
    }
    None
}

/// Overwrites `len` bytes at `pos` with zeros and syncs them.
fn zero_range(file: &dyn crate::storage::StorageFile, pos: u64, len: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; len.min(1 << 20) as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        file.write_all_at(pos + done, &zeros[..n])?;
        done += n as u64;
    }
    file.sync_data()
}

/// Whether a frame header written for another offset lies in `bytes[from..end]` (a recycled
/// fragment's stale frames: checksum valid, offset not this position's).
fn holds_stale_frame(bytes: &[u8], salt: u32, begin: u64, from: usize, end: usize) -> bool {
    let mut pos = from;
    while pos + HEADER_LEN <= bytes.len() && pos < end {
        let magic = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes"));
        if magic == FRAME_MAGIC
            && matches!(
                frame::decode_header(&bytes[pos..], salt, begin + pos as u64),
                Err(FrameError::OffsetMismatch { .. })
            )
        {
            return true;
        }
        pos += FRAME_ALIGN_BYTES as usize;
    }
    false
}

/// The offset of a valid frame starting after `bad_pos` and before `scan_end` that was written
/// by a later write than the one that covered `bad_pos`, if any.
fn find_later_write(bytes: &[u8], salt: u32, begin: u64, bad_pos: usize, scan_end: usize) -> Option<u64> {
    let bad_offset = begin + bad_pos as u64;
    let mut pos = bad_pos + FRAME_ALIGN_BYTES as usize;
    while pos + HEADER_LEN <= bytes.len() && pos < scan_end {
        let magic = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes"));
        if magic == FRAME_MAGIC {
            if let Ok(h) = frame::decode_frame(&bytes[pos..], salt, begin + pos as u64) {
                if h.write_begin > bad_offset {
                    return Some(h.offset);
                }
            }
        }
        pos += FRAME_ALIGN_BYTES as usize;
    }
    None
}
