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
use crate::fragment::{has_fragment_name_shape, parse_fragment_name, Fragment};
use crate::frame::{self, FrameError, FRAME_ALIGN_BYTES, FRAME_MAGIC, HEADER_LEN};
use crate::scan_hint::{read_hints, Hints, ScanHint, ScanHintWriter, WriteBound};
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

/// Recovers the journal stored in `dir`. `writable` opens allow cutting a torn tail. Each step
/// of docs/design.md ("Recovery on open") is one helper below, called in order.
pub(crate) fn recover(
    dir: &Path,
    journal: &str,
    salt: u32,
    opts: &crate::Options,
    writable: bool,
) -> Result<Recovered, OpenError> {
    let storage = &*opts.storage;
    // The scan-start hint is read first: a live writer (read-only opens) records a hint only
    // after the fragment it names exists, so the listing below holds that fragment, and the
    // last fragment's bytes, read after it, hold every write the hint vouches for.
    let hints = read_hints(storage, dir, salt);
    let hint = hints.scan;
    // Step 1: the fragments, by name.
    let begins = list_fragment_begins(storage, dir, journal)?;
    let (&last_begin, sealed_begins) = begins.split_last().expect("listing refuses an empty journal");
    refuse_missing_fragment(dir, journal, &begins, hint)?;
    let mut fragments: Vec<Arc<Fragment>> = sealed_begins
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
        .open(&last_path, mode, opts.fragment_max_bytes)
        .map_err(|e| io_err(journal, "opening", &last_path, e))?;
    // Step 2: validate the last fragment, from the scan-start hint if it holds up (scan_hint.rs),
    // else from the start; look past its frames up to the write bound, if one holds.
    let hinted_start = ScanHint::start_in(hint, last_begin);
    let bound = WriteBound::in_fragment(hints.bound, last_begin);
    let scan = |base| scan_last_fragment(&*file, journal, &last_path, salt, last_begin, base, bound);
    let mut last = scan(hinted_start)?;
    if hinted_start > 0 && !hint.is_some_and(|h| last.hint_held(&h, last_begin)) {
        last = scan(0)?;
    }
    let at = LastFragment {
        journal,
        path: &last_path,
        begin: last_begin,
        file: &*file,
    };
    // Step 3: an invalid position that something proves had been durable is damage.
    refuse_damage(&at, &last, hint)?;
    // Step 4: anything else after the valid frames is a torn tail.
    let cut_bytes = cut_torn_tail(&at, &last, opts.preallocate, writable)?;
    // Step 5: the valid frames, and the fragments' names, durable before any reader sees them.
    make_durable(&at, &last, hint, writable)?;
    storage
        .sync_dir(dir)
        .map_err(|e| io_err(journal, "syncing", dir, e))?;
    // A last fragment with no frame yet (a crash right after a roll made its name durable, or a
    // zero-filled spare renamed in) does not mean the journal is empty: the last frame is in an
    // earlier fragment, which must end exactly where the next begins.
    let last_frame = match last.scan.last_frame_pos {
        Some(p) => Some(last_begin + last.base + p as u64),
        None => last_frame_before(
            storage,
            &fragments,
            last_begin,
            journal,
            salt,
            opts.fragment_max_bytes,
            hint,
        )?,
    };
    let scan_hint = writable.then(|| hint_writer_after_open(opts, dir, salt, last_begin, &last, hints));
    fragments.push(Arc::new(Fragment::with_file(last_begin, dir, file.clone())));
    Ok(Recovered {
        fragments,
        last_file: file,
        head: last_begin + last.base + last.scan.valid_len as u64,
        last_frame,
        cut_bytes,
        scan_hint,
    })
}

/// The scan-start hint writer of a writable open. The last write is durable now: it is recorded
/// as the hint, so the next open reads (and writes) only that write, unless appends move on.
fn hint_writer_after_open(
    opts: &crate::Options,
    dir: &Path,
    salt: u32,
    last_begin: u64,
    last: &LastScan,
    hints: Hints,
) -> ScanHintWriter {
    // The bound record as it is on disk, used or not: the writer keeps it true.
    let mut writer = ScanHintWriter::new(
        opts.storage.clone(),
        dir,
        salt,
        opts,
        hints.scan.filter(|_| last.base > 0),
        hints.bound,
    );
    if let (Some(write_begin), Some(frame_crc)) = (last.last_write_begin, last.last_write_frame_crc) {
        writer.after_durable_write(last_begin, write_begin, frame_crc);
        writer.record_latest();
    }
    writer
}

/// The last fragment being recovered, for the steps' errors and writes.
struct LastFragment<'a> {
    journal: &'a str,
    path: &'a Path,
    /// Its begin offset in the journal.
    begin: u64,
    file: &'a dyn StorageFile,
}

impl LastFragment<'_> {
    fn corrupt(&self, offset: u64, detail: String) -> OpenError {
        OpenError::corrupt(self.journal, self.path.to_path_buf(), offset, detail)
    }

    fn io_err(&self, what: &'static str, source: std::io::Error) -> OpenError {
        io_err(self.journal, what, self.path, source)
    }
}

/// Step 1: the begin offsets of the journal's fragments, in order, from their file names; at
/// least one. Names that are not 8-aligned or lie above [`FRAGMENT_BEGIN_MAX`] are corruption.
fn list_fragment_begins(storage: &dyn Storage, dir: &Path, journal: &str) -> Result<Vec<u64>, OpenError> {
    let names = storage
        .list_dir(dir)
        .map_err(|e| io_err(journal, "listing", dir, e))?;
    if let Some(bad) = names
        .iter()
        .find(|n| has_fragment_name_shape(n) && parse_fragment_name(n).is_none())
    {
        return Err(OpenError::corrupt(
            journal,
            dir.join(bad),
            u64::MAX,
            format!("a fragment's name cannot be {bad}: its begin offset is past 2^64 - 1"),
        ));
    }
    let mut begins: Vec<u64> = names.iter().filter_map(|n| parse_fragment_name(n)).collect();
    begins.sort_unstable();
    // Fragments begin where a frame begins (8-aligned), far below where offsets could overflow.
    if let Some(&bad) = begins
        .iter()
        .find(|&&b| b % FRAME_ALIGN_BYTES != 0 || b > FRAGMENT_BEGIN_MAX)
    {
        return Err(OpenError::corrupt(
            journal,
            dir.join(crate::fragment::fragment_file_name(bad)),
            bad,
            format!(
                "a fragment cannot begin at offset {bad} (must be a multiple of {FRAME_ALIGN_BYTES} and at most {FRAGMENT_BEGIN_MAX})"
            ),
        ));
    }
    if begins.is_empty() {
        return Err(OpenError::corrupt(
            journal,
            dir.to_path_buf(),
            0,
            "journal directory holds no fragment files".into(),
        ));
    }
    Ok(begins)
}

/// Step 1, last: a hint whose fragment is gone records a durable write in it (fragment names
/// are durable before any write into them, and hints are recorded after a write synced). That
/// is damage when the hint's fragment lay past the last one on disk (the journal lost its end),
/// or when a fragment on disk begins inside it, at or before that durable write (fragments never
/// overlap: a fragment renamed to another begin, a journal's only fragment among them, which
/// would otherwise read as an empty journal). A hint's fragment that is gone and lay wholly
/// below the first fragment on disk was removed by retention: nothing to refuse.
fn refuse_missing_fragment(
    dir: &Path,
    journal: &str,
    begins: &[u64],
    hint: Option<ScanHint>,
) -> Result<(), OpenError> {
    let Some(h) = hint.filter(|h| !begins.contains(&h.fragment_begin)) else {
        return Ok(());
    };
    let last_begin = *begins.last().expect("listing refuses an empty journal");
    if h.fragment_begin > last_begin {
        return Err(h.fragment_missing(
            journal,
            dir,
            &format!("this fragment is missing (the last fragment on disk begins at {last_begin})"),
        ));
    }
    match begins.iter().find(|&&b| b > h.fragment_begin && b <= h.scan_from) {
        Some(inside) => Err(h.fragment_missing(
            journal,
            dir,
            &format!(
                "this fragment is missing, and the fragment on disk beginning at {inside} lies inside it (was a fragment renamed?)"
            ),
        )),
        None => Ok(()),
    }
}

/// Step 3: refuses the first invalid position of the last fragment as damage when something
/// proves it had been made durable.
fn refuse_damage(at: &LastFragment, last: &LastScan, hint: Option<ScanHint>) -> Result<(), OpenError> {
    let valid_end = at.begin + last.base + last.scan.valid_len as u64;
    // The hint is written only after the fdatasync of the write beginning at `scan_from`
    // returned, and it was read before this scan: everything up to that write's first frame was
    // durable, and that frame too. Valid frames ending at or before it are damage, whether an
    // invalid position follows (a whole fragment overwritten, or another journal's file put in
    // its place) or the file simply ends there (cut short at a frame boundary).
    if let Some(h) = hint.filter(|h| h.fragment_begin == at.begin && valid_end <= h.scan_from) {
        let found = match &last.scan.first_error {
            Some((_, error)) => error.to_string(),
            None => format!("the fragment's frames end at offset {valid_end}"),
        };
        return Err(at.corrupt(
            valid_end,
            format!(
                "{found}; the scan-start hint records that the write at offset {} had been made durable, so this is damage, not a torn write",
                h.scan_from
            ),
        ));
    }
    let Some((_, error)) = &last.scan.first_error else {
        return Ok(());
    };
    let bad = valid_end;
    if let Some(later) = last.tail.later {
        return Err(at.corrupt(
            bad,
            format!("{error}; a frame from a later write follows at offset {later}, so this is damage, not a torn write"),
        ));
    }
    Ok(())
}

/// Step 4: cuts (or, on a writable open, zeroes) what a torn write left after the valid frames;
/// returns the bytes cut or zeroed.
///
/// What the torn write left must never validate behind a later, shorter append: a growing
/// fragment is cut back to its valid frames. A preallocated or recycled one keeps its length
/// (cutting a recycled file would make every commit into it grow the file again), and only the
/// bytes that could validate are zeroed: a preallocated fragment's garbage up to its zeros, a
/// recycled one's torn frames that are whole (`torn_end`). Its stale frames stay: they never
/// validate at this offset, and neither can a frame of the torn write that is not whole now,
/// since a later append overwrites its header before any of the rest. A fragment with a write
/// bound is one that started out longer than its writes (recycled, or a spare): it keeps its
/// length too, and nothing past the bound was written, so nothing there can be torn.
fn cut_torn_tail(
    at: &LastFragment,
    last: &LastScan,
    preallocate: bool,
    writable: bool,
) -> Result<u64, OpenError> {
    let valid_len = last.base + last.scan.valid_len as u64;
    let bounded = last.bound.is_some();
    if last.tail.stale || bounded || preallocate {
        let torn_end = if last.tail.stale || (bounded && !preallocate) {
            last.tail.torn_end
        } else {
            last.garbage_end
        };
        // No invalid position (the frames run to the end of the file): nothing is torn.
        let torn = torn_end.saturating_sub(last.scan.valid_len) as u64;
        if writable && torn > 0 {
            zero_range(at.file, valid_len, torn).map_err(|e| at.io_err("zeroing torn tail of", e))?;
        }
        return Ok(torn);
    }
    let file_len = at.file.len().map_err(|e| at.io_err("reading length of", e))?;
    let cut = file_len - valid_len;
    if writable && cut > 0 {
        // No reader exists yet, so shrinking the file cannot fault a memory map.
        at.file
            .set_len(valid_len)
            .map_err(|e| at.io_err("truncating torn tail of", e))?;
    }
    Ok(cut)
}

/// Step 5: makes the last fragment's valid frames durable (the caller then syncs the directory).
///
/// The valid frames may have been written but never synced: the previous process died or its
/// fsync failed between write and fdatasync (or between creating a fragment and syncing the
/// directory), or (read-only opens) the writer is mid-commit. Make them and the fragments'
/// directory entries durable before readers can see them, or a power loss could take back a
/// frame that a reader already acted on.
///
/// An fdatasync alone is not enough after a failed one (Linux, "fsyncgate"): the pages whose
/// writeback failed are clean in the page cache, readable, and no later fdatasync writes them.
/// Only the last group-commit write can be in that state (a failed fsync poisons the journal, so
/// nothing is written after it), so a writable open writes that write's frames again, making
/// their pages dirty, before syncing. Unless the hint names that very write: it was recorded
/// after the write's fdatasync returned, so its pages reached the medium.
fn make_durable(
    at: &LastFragment,
    last: &LastScan,
    hint: Option<ScanHint>,
    writable: bool,
) -> Result<(), OpenError> {
    let last_write_synced = last.base > 0 && hint.is_some_and(|h| Some(h.scan_from) == last.last_write_begin);
    if writable && !last_write_synced {
        if let Some(write_begin) = last.last_write_begin {
            let from = (write_begin.saturating_sub(at.begin) - last.base) as usize;
            let valid_len = last.scan.valid_len;
            // Through a copy, since `bytes` may be a map of this very file; a small one reused
            // per piece, since a copy of the whole write (up to megabytes) costs more in fresh
            // zeroed pages than the write itself.
            let mut copy = Vec::with_capacity(REWRITE_PIECE_BYTES.min(valid_len - from));
            for piece_start in (from..valid_len).step_by(REWRITE_PIECE_BYTES) {
                let piece = piece_start..(piece_start + REWRITE_PIECE_BYTES).min(valid_len);
                guarded(at.journal, at.path, last.base, &last.bytes, || {
                    copy.clear();
                    copy.extend_from_slice(&last.bytes[piece]);
                })?;
                at.file
                    .write_all_at(last.base + piece_start as u64, &copy)
                    .map_err(|e| at.io_err("rewriting the last write of", e))?;
            }
        }
    }
    at.file.sync_data().map_err(|e| at.io_err("syncing", e))
}

/// Bytes of the last write copied and written again per `pwrite` at open (recovery step 5).
const REWRITE_PIECE_BYTES: usize = 64 << 10;

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
    /// What lies past the first invalid position, if there is one.
    tail: TailScan,
    /// Where the last valid frame's group-commit write began (journal offset).
    last_write_begin: Option<u64>,
    /// The `header_crc` of the valid frame at `base`, if there is one (read inside `guarded`).
    base_frame_crc: Option<u32>,
    /// The `header_crc` of the last write's first frame, if that write began in this scan.
    last_write_frame_crc: Option<u32>,
    /// The write bound (a position in the fragment) where reading stopped, short of the file's
    /// end, if there was one and it held.
    bound: Option<u64>,
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

/// Reads the last fragment from position `base` to its end, or to `bound` (the write bound's
/// position in the fragment, past which nothing was written), and validates it frame by frame
/// (recovery steps 2 and 3 of docs/design.md). A bound that does not hold (frames run up to it,
/// or a frame's header there claims bytes past it) is ignored, never trusted: the fragment is
/// then read and searched to its end.
fn scan_last_fragment(
    file: &dyn StorageFile,
    journal: &str,
    path: &Path,
    salt: u32,
    fragment_begin: u64,
    base: u64,
    bound: Option<u64>,
) -> Result<LastScan, OpenError> {
    let file_len = file
        .len()
        .map_err(|e| io_err(journal, "reading length of", path, e))?;
    let bound = bound.filter(|&b| b > base && b < file_len);
    let bytes = read_range(file, base, bound.unwrap_or(file_len), journal, path)?;
    let begin = fragment_begin + base;
    let scanned = guarded(journal, path, base, &bytes, || {
        let scan = scan_fragment(&bytes, salt, begin);
        if bound.is_some() && matches!(scan.first_error, None | Some((_, FrameError::Truncated { .. }))) {
            return None;
        }
        // Past the valid frames, zeros are preallocated space (or a zeroed tail); anything else
        // up to the last non-zero byte is what a torn write left.
        let garbage_end = scan.valid_len + last_nonzero(&bytes[scan.valid_len..]).map_or(0, |i| i + 1);
        let tail = scan
            .first_error
            .as_ref()
            .map(|(bad_pos, _)| scan_tail(&bytes, salt, begin, *bad_pos, garbage_end))
            .unwrap_or_default();
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
        Some(LastScan {
            base,
            bytes: bytes.clone(),
            scan,
            garbage_end,
            tail,
            last_write_begin,
            base_frame_crc,
            last_write_frame_crc,
            bound,
        })
    })?;
    match scanned {
        Some(last) => Ok(last),
        None => scan_last_fragment(file, journal, path, salt, fragment_begin, base, None),
    }
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
            return Err(OpenError::corrupt(
                journal,
                fragment.path.clone(),
                valid_end,
                format!(
                    "this sealed fragment's frames end at offset {valid_end} but the next fragment begins at {end}{}; the bytes between are missing",
                    scan.first_error.as_ref().map_or(String::new(), |(_, e)| format!(" ({e})"))
                ),
            ));
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
    read_range(file, base, len, journal, path)
}

/// The bytes of `file` from position `base` to `end` (none if `end` is not past `base`).
fn read_range(
    file: &dyn StorageFile,
    base: u64,
    end: u64,
    journal: &str,
    path: &Path,
) -> Result<bytes::Bytes, OpenError> {
    if end <= base {
        return Ok(bytes::Bytes::new());
    }
    file.read_at(base, (end - base) as usize)
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

/// What lies past the first invalid position of the last fragment.
#[derive(Debug, Default)]
struct TailScan {
    /// The offset of a valid frame written by a later write than the one that covered the
    /// invalid position: the invalid bytes are damage, not a torn write.
    later: Option<u64>,
    /// Position just past the last frame there that is valid at its own offset (what a torn
    /// write left whole), or the invalid position if there is none.
    torn_end: usize,
    /// Whether a frame header of another offset lies there: a recycled fragment's stale frames.
    stale: bool,
}

/// Words compared per pass of [`scan_tail`]: a block without a frame's magic is passed over by
/// one vectorizable fold, instead of a branch per word.
const MAGIC_BLOCK_WORDS: usize = 512;

/// Looks at every 8-aligned position of `bytes` (a fragment's bytes from journal offset `begin`)
/// after `bad_pos`, the first invalid one, and before `scan_end`, for frames: a valid frame of
/// a later write, valid frames of the torn write itself, and stale frames of another offset.
/// Stops at the first later write. This reads the whole tail, which for a recycled fragment is
/// its stale bytes to the end of the file, so it skips positions without the magic in blocks.
fn scan_tail(bytes: &[u8], salt: u32, begin: u64, bad_pos: usize, scan_end: usize) -> TailScan {
    let bad_offset = begin + bad_pos as u64;
    let mut tail = TailScan {
        torn_end: bad_pos,
        ..TailScan::default()
    };
    // A frame header needs HEADER_LEN bytes, so a position past this cannot hold one.
    let limit = scan_end.min((bytes.len() + 1).saturating_sub(HEADER_LEN));
    let is_magic = |word: &[u8]| u32::from_le_bytes(word[..4].try_into().expect("4 bytes")) == FRAME_MAGIC;
    let word = FRAME_ALIGN_BYTES as usize;
    let mut block_start = bad_pos;
    while block_start < limit {
        let words = (limit - block_start).div_ceil(word).min(MAGIC_BLOCK_WORDS);
        // Every word starts before `limit`, so all its header bytes lie inside `bytes`.
        let block = &bytes[block_start..block_start + words * word];
        if block.chunks_exact(word).fold(false, |any, w| any | is_magic(w)) {
            for (i, w) in block.chunks_exact(word).enumerate() {
                let pos = block_start + i * word;
                if !is_magic(w) {
                    continue;
                }
                // The header is checked (offset included) before the payload.
                match frame::decode_frame(&bytes[pos..], salt, begin + pos as u64) {
                    Ok(h) if h.write_begin > bad_offset => {
                        tail.later = Some(h.offset);
                        return tail;
                    }
                    Ok(h) => tail.torn_end = tail.torn_end.max(pos + h.frame_len_bytes() as usize),
                    Err(FrameError::OffsetMismatch { .. }) => tail.stale = true,
                    Err(_) => {}
                }
            }
        }
        block_start += words * word;
    }
    tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode_frame, payload_crc, FrameHeader, FRAME_KIND_BATCH};
    use rand::{Rng, SeedableRng};

    const SALT: u32 = 0x5EED;
    const BEGIN: u64 = 1 << 20;

    /// Writes at `pos` a frame claiming journal offset `offset`, from a write that began at
    /// `write_begin`; returns its length.
    fn put_frame(bytes: &mut [u8], pos: usize, offset: u64, write_begin: u64, payload_len: usize) -> usize {
        let payload = vec![0x5A; payload_len];
        let header = FrameHeader {
            offset,
            write_begin,
            payload_len: payload_len as u32,
            kind: FRAME_KIND_BATCH,
            payload_crc: payload_crc(SALT, &payload),
            message_count: 0,
        };
        let mut frame = Vec::new();
        encode_frame(&mut frame, SALT, &header, &payload);
        bytes[pos..pos + frame.len()].copy_from_slice(&frame);
        frame.len()
    }

    /// The same search position by position, without skipping blocks.
    fn scan_tail_plainly(bytes: &[u8], bad_pos: usize, scan_end: usize) -> (Option<u64>, usize, bool) {
        let bad_offset = BEGIN + bad_pos as u64;
        let (mut torn_end, mut stale) = (bad_pos, false);
        let mut pos = bad_pos;
        while pos + HEADER_LEN <= bytes.len() && pos < scan_end {
            let offset = BEGIN + pos as u64;
            match frame::decode_frame(&bytes[pos..], SALT, offset) {
                Ok(h) if h.write_begin > bad_offset => return (Some(offset), torn_end, stale),
                Ok(h) => torn_end = torn_end.max(pos + h.frame_len_bytes() as usize),
                Err(FrameError::OffsetMismatch { .. }) => stale = true,
                Err(_) => {}
            }
            pos += FRAME_ALIGN_BYTES as usize;
        }
        (None, torn_end, stale)
    }

    #[test]
    fn tail_scan_finds_frames_at_block_edges_and_at_the_last_position() {
        let block = MAGIC_BLOCK_WORDS * FRAME_ALIGN_BYTES as usize;
        let len = 3 * block + 64;
        let bad_pos = 16;
        // A torn frame of the same write in the last word of the first block (blocks start at
        // the invalid position).
        let mut bytes = vec![0xEE; len];
        let torn_at = bad_pos + block - 8;
        let torn_len = put_frame(
            &mut bytes,
            torn_at,
            BEGIN + torn_at as u64,
            BEGIN + bad_pos as u64,
            24,
        );
        let tail = scan_tail(&bytes, SALT, BEGIN, bad_pos, len);
        assert_eq!(
            (tail.later, tail.torn_end, tail.stale),
            (None, torn_at + torn_len, false)
        );
        // A later write's frame at the last position a header fits.
        let last = len - HEADER_LEN;
        put_frame(&mut bytes, last, BEGIN + last as u64, BEGIN + last as u64, 0);
        let tail = scan_tail(&bytes, SALT, BEGIN, bad_pos, len);
        assert_eq!(tail.later, Some(BEGIN + last as u64));
        // Not if the scan ends before it.
        assert_eq!(scan_tail(&bytes, SALT, BEGIN, bad_pos, last).later, None);
        // A stale frame (an earlier offset) at the invalid position itself.
        let mut bytes = vec![0; len];
        put_frame(&mut bytes, bad_pos, BEGIN - 4096 + bad_pos as u64, 0, 8);
        assert!(scan_tail(&bytes, SALT, BEGIN, bad_pos, len).stale);
    }

    #[test]
    fn tail_scan_agrees_with_a_plain_scan_of_every_position() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..300 {
            let len = rng.random_range(64..20_000usize) / 8 * 8;
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let bad_pos = rng.random_range(0..len / 2) / 8 * 8;
            for _ in 0..rng.random_range(0..6) {
                let payload_len = rng.random_range(0..300);
                // Half of them at or next to a block's edge, where a skip would miss them.
                let pos = if rng.random_bool(0.5) {
                    let block = MAGIC_BLOCK_WORDS * FRAME_ALIGN_BYTES as usize;
                    (bad_pos + block * rng.random_range(1..5usize))
                        .saturating_sub(8 * rng.random_range(0..2usize))
                } else {
                    rng.random_range(0..len) / 8 * 8
                };
                if pos + HEADER_LEN + payload_len + 8 > len {
                    continue;
                }
                let here = BEGIN + pos as u64;
                let (offset, write_begin) = match rng.random_range(0..4) {
                    0 => (here - 8 * rng.random_range(1..1000u64), 0), // stale
                    1 => (here, BEGIN + bad_pos as u64 + 8 * rng.random_range(1..100u64)), // later
                    _ => (
                        here,
                        BEGIN + bad_pos as u64 - 8 * rng.random_range(0..2u64).min(bad_pos as u64 / 8),
                    ), // torn
                };
                put_frame(&mut bytes, pos, offset, write_begin.min(offset), payload_len);
            }
            let scan_end = rng.random_range(bad_pos..=len);
            let tail = scan_tail(&bytes, SALT, BEGIN, bad_pos, scan_end);
            let (later, torn_end, stale) = scan_tail_plainly(&bytes, bad_pos, scan_end);
            assert_eq!(tail.later, later, "round {round}");
            if later.is_none() {
                assert_eq!((tail.torn_end, tail.stale), (torn_end, stale), "round {round}");
            }
        }
    }
}
