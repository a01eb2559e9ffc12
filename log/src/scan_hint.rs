//! The scan-start hint and the write bound: where recovery may begin validating a journal's last
//! fragment, and where it may stop looking past the valid frames, so that opening after a crash
//! reads about [`SCAN_HINT_INTERVAL_BYTES`] plus the last write plus at most
//! `Options::write_bound_step_bytes` of the last fragment, not the whole of it (up to 32 MiB,
//! 15-60 ms from a cold disk).
//!
//! Both are 32-byte records in the file `scan-start.hint` of the journal directory.
//!
//! **The scan-start record** (bytes 0..32) names a fragment, an offset in it where a group-commit
//! write began, and the header checksum of the frame there. The writer records it only after that
//! write's `fdatasync` returned, so every byte of the fragment before it was durable first. It is
//! never synced itself and may be lost, stale or torn by a crash: recovery uses it only if its
//! checksum holds, it names the last fragment, and a whole valid frame lies at its offset with the
//! recorded header checksum (so it is the very frame the writer saw durable, not one a later
//! incarnation of the journal wrote there); otherwise recovery scans the fragment from its start,
//! as it always did. Bytes of the last fragment before a used hint are checked by readers frame by
//! frame, like sealed fragments. Close, and a writable open once it synced the last write, record
//! that last write itself: the next open then reads only it, and does not write it again (its sync
//! is known to have returned).
//!
//! **The write-bound record** (bytes 32..64) names a fragment and a position in it: nothing at or
//! past that position was written into the fragment's file since it became that fragment. A
//! fragment that starts out longer than what is written into it (a recycled file, whose stale
//! bytes run to its end, or a zero-filled spare) has everything past its frames searched for
//! frames of a later write at open after a crash; the bound limits that search. The writer keeps
//! the invariant by recording (and `fdatasync`ing) a bound `write_bound_step_bytes` past a write's
//! end before any write that would pass the recorded bound, so one extra small sync per step of
//! writing. Bounds of a fragment only grow, so any record of it that a crash leaves (the last
//! synced one, or a later one that reached the medium unsynced with a scan-start record) is a
//! bound. A growing file (created empty) needs none: its length bounds it.
//!
//! Byte layout (little-endian), docs/design.md "The scan-start hint":
//!
//! | bytes  | field            | content                                              |
//! |--------|------------------|------------------------------------------------------|
//! | 0..4   | `magic`          | the ASCII bytes `SSH1`                               |
//! | 4..8   | `crc`            | CRC-32C of bytes 8..32, seeded with the journal salt |
//! | 8..16  | `fragment_begin` | begin offset of the fragment the hint is for         |
//! | 16..24 | `scan_from`      | journal offset where a durable write began           |
//! | 24..28 | `frame_crc`      | `header_crc` of the frame at `scan_from`             |
//! | 28..32 | `reserved`       | 0                                                    |
//! | 32..36 | `magic`          | the ASCII bytes `SSW1`                               |
//! | 36..40 | `crc`            | CRC-32C of bytes 40..64, seeded with the journal salt |
//! | 40..48 | `fragment_begin` | begin offset of the fragment the bound is for        |
//! | 48..56 | `bound`          | position in that fragment nothing was written at or past |
//! | 56..64 | `reserved`       | 0                                                    |
//!
//! A file of 32 bytes (written before the bound existed) has no bound: recovery searches to the
//! end of the fragment, as before.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::OpenError;
use crate::frame::FRAME_ALIGN_BYTES;
use crate::storage::{OpenMode, Storage, StorageFile};

/// Name of the hint file in a journal directory (not a fragment name, so listings ignore it).
pub const SCAN_HINT_FILE: &str = "scan-start.hint";
/// Default of `Options::scan_hint_interval_bytes`: the writer records a new hint once a write
/// begins this far past the hinted offset (or the fragment's start), so open reads less than this
/// plus the last write of the last fragment.
pub const SCAN_HINT_INTERVAL_BYTES: u64 = 1 << 20;
/// Length of the scan-start record (the first of the file).
pub const SCAN_HINT_BYTES: usize = 32;
const SCAN_HINT_MAGIC: [u8; 4] = *b"SSH1";
/// Length of the write-bound record, which follows the scan-start record in the file.
pub const WRITE_BOUND_BYTES: usize = 32;
const WRITE_BOUND_MAGIC: [u8; 4] = *b"SSW1";
/// Where the write-bound record lies in the hint file.
const WRITE_BOUND_AT: u64 = SCAN_HINT_BYTES as u64;
/// Length of the hint file holding both records.
const HINT_FILE_BYTES: usize = SCAN_HINT_BYTES + WRITE_BOUND_BYTES;
/// Default of `Options::write_bound_step_bytes`: how far past a write's end the writer records
/// the write bound when that write would pass the recorded one. Open after a crash over a
/// recycled fragment searches at most about this (plus the last write) of its stale bytes; the
/// writer pays one 32-byte write and `fdatasync` of the hint file per this many bytes written
/// into a recycled or pre-zeroed fragment.
pub const WRITE_BOUND_STEP_BYTES: u64 = 2 << 20;

/// A place in a journal where recovery may start validating: a write began at `scan_from` in the
/// fragment beginning at `fragment_begin`, with the frame whose header checksum is `frame_crc`,
/// and everything before it was durable first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanHint {
    pub fragment_begin: u64,
    pub scan_from: u64,
    pub frame_crc: u32,
}

impl ScanHint {
    /// The hint's fragment is not on disk (`found` says what is), yet the hint records a
    /// durable write in it: a fragment's name is durable before anything is written into it, and
    /// a hint is recorded only after a write into it synced. So the fragment was lost: damage.
    pub(crate) fn fragment_missing(&self, journal: &str, dir: &Path, found: &str) -> OpenError {
        OpenError::corrupt(
            journal,
            dir.join(crate::fragment::fragment_file_name(self.fragment_begin)),
            self.scan_from,
            format!(
                "{found}, but the scan-start hint records that the write at offset {} in this fragment had been made durable: the fragment was lost",
                self.scan_from
            ),
        )
    }

    /// The record's bytes, checksummed with the journal salt.
    pub fn encode(&self, salt: u32) -> [u8; SCAN_HINT_BYTES] {
        let mut body = [0u8; RECORD_BODY_BYTES];
        body[0..8].copy_from_slice(&self.fragment_begin.to_le_bytes());
        body[8..16].copy_from_slice(&self.scan_from.to_le_bytes());
        body[16..20].copy_from_slice(&self.frame_crc.to_le_bytes());
        seal_record(SCAN_HINT_MAGIC, &body, salt)
    }

    /// The hint in `bytes`, if they are a whole, intact record of this journal that makes sense
    /// (an aligned offset inside the fragment, past its start).
    pub fn decode(bytes: &[u8], salt: u32) -> Option<ScanHint> {
        let body = open_record(bytes, SCAN_HINT_MAGIC, salt)?;
        let hint = ScanHint {
            fragment_begin: u64_at(&body, 0),
            scan_from: u64_at(&body, 8),
            frame_crc: u32::from_le_bytes(body[16..20].try_into().expect("4 bytes")),
        };
        let reserved_zero = body[20..24] == [0; 4];
        let sensible =
            hint.scan_from > hint.fragment_begin && hint.scan_from.is_multiple_of(FRAME_ALIGN_BYTES);
        (reserved_zero && sensible).then_some(hint)
    }

    /// Where validation of the fragment beginning at `fragment_begin` may start, as a position in
    /// that fragment: at this hint if it is for that fragment, else at its start.
    pub fn start_in(hint: Option<ScanHint>, fragment_begin: u64) -> u64 {
        hint.filter(|h| h.fragment_begin == fragment_begin)
            .map_or(0, |h| h.scan_from - fragment_begin)
    }
}

/// A durable bound on what was written into a fragment: nothing at or past position `bound` of
/// the fragment beginning at `fragment_begin` was written since the file became that fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteBound {
    pub fragment_begin: u64,
    /// A position in the fragment (bytes from its start).
    pub bound: u64,
}

impl WriteBound {
    /// The record's bytes, checksummed with the journal salt.
    pub fn encode(&self, salt: u32) -> [u8; WRITE_BOUND_BYTES] {
        let mut body = [0u8; RECORD_BODY_BYTES];
        body[0..8].copy_from_slice(&self.fragment_begin.to_le_bytes());
        body[8..16].copy_from_slice(&self.bound.to_le_bytes());
        seal_record(WRITE_BOUND_MAGIC, &body, salt)
    }

    /// The bound in `bytes`, if they are a whole, intact record of this journal.
    pub fn decode(bytes: &[u8], salt: u32) -> Option<WriteBound> {
        let body = open_record(bytes, WRITE_BOUND_MAGIC, salt)?;
        (u64_at(&body, 16) == 0).then(|| WriteBound {
            fragment_begin: u64_at(&body, 0),
            bound: u64_at(&body, 8),
        })
    }

    /// The bound's position in the fragment beginning at `fragment_begin`, if it is for that one.
    pub fn in_fragment(bound: Option<WriteBound>, fragment_begin: u64) -> Option<u64> {
        bound
            .filter(|b| b.fragment_begin == fragment_begin)
            .map(|b| b.bound)
    }
}

/// Bytes of a hint-file record after its magic and checksum (both records are 32 bytes).
const RECORD_BODY_BYTES: usize = 24;

/// A record of the hint file: `magic`, the CRC-32C of `body` seeded with `salt`, then `body`.
fn seal_record(magic: [u8; 4], body: &[u8; RECORD_BODY_BYTES], salt: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[0..4].copy_from_slice(&magic);
    out[4..8].copy_from_slice(&crc32c::crc32c_append(salt, body).to_le_bytes());
    out[8..].copy_from_slice(body);
    out
}

/// The body of the record at the start of `bytes`, if it is whole, has `magic` and its checksum
/// (seeded with `salt`) holds.
fn open_record(bytes: &[u8], magic: [u8; 4], salt: u32) -> Option<[u8; RECORD_BODY_BYTES]> {
    let record = bytes.get(..32)?;
    let body: [u8; RECORD_BODY_BYTES] = record[8..].try_into().ok()?;
    let crc = u32::from_le_bytes(record[4..8].try_into().ok()?);
    (record[0..4] == magic && crc == crc32c::crc32c_append(salt, &body)).then_some(body)
}

fn u64_at(body: &[u8; RECORD_BODY_BYTES], at: usize) -> u64 {
    u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"))
}

/// What the hint file of a journal directory holds: each record if it is intact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hints {
    pub scan: Option<ScanHint>,
    pub bound: Option<WriteBound>,
}

/// The hints stored in the journal directory `dir`. Any failure to read them means "no hint":
/// recovery then scans whole fragments, and searches them to their end.
pub fn read_hints(storage: &dyn Storage, dir: &Path, salt: u32) -> Hints {
    let read = || -> Option<Hints> {
        let path = dir.join(SCAN_HINT_FILE);
        let file = storage
            .open(&path, OpenMode::ReadOnly, HINT_FILE_BYTES as u64)
            .ok()?;
        let len = (file.len().ok()? as usize).min(HINT_FILE_BYTES);
        if len < SCAN_HINT_BYTES {
            return None;
        }
        let bytes = file.read_at(0, len).ok()?;
        Some(Hints {
            scan: ScanHint::decode(&bytes, salt),
            bound: bytes
                .get(SCAN_HINT_BYTES..)
                .and_then(|b| WriteBound::decode(b, salt)),
        })
    };
    read().unwrap_or_default()
}

/// The scan-start hint stored in the journal directory `dir`, if there is an intact one.
pub fn read_scan_hint(storage: &dyn Storage, dir: &Path, salt: u32) -> Option<ScanHint> {
    read_hints(storage, dir, salt).scan
}

/// Records hints as durable writes move through a fragment, in the hint file of one journal
/// directory. Owned by the writer's cursor (and used by recovery first), so one thread at a time.
pub(crate) struct ScanHintWriter {
    storage: Arc<dyn Storage>,
    /// The journal directory.
    dir: PathBuf,
    salt: u32,
    interval_bytes: u64,
    /// The hint believed to be stored (read at open, or last written).
    recorded: Option<ScanHint>,
    /// The latest durable write past its fragment's start, as a hint (recorded at close).
    latest: Option<ScanHint>,
    /// How far past a write's end a new write bound is recorded.
    bound_step_bytes: u64,
    /// The write-bound record on disk, whatever fragment it names (read at open, or last synced).
    bound: Option<WriteBound>,
    file: Option<Arc<dyn StorageFile>>,
}

impl ScanHintWriter {
    /// A writer for the journal in `dir` (checksummed with `salt`), whose stored hint is
    /// believed to be `recorded` and whose write-bound record on disk is `bound`.
    pub fn new(
        storage: Arc<dyn Storage>,
        dir: &Path,
        salt: u32,
        opts: &crate::Options,
        recorded: Option<ScanHint>,
        bound: Option<WriteBound>,
    ) -> ScanHintWriter {
        ScanHintWriter {
            storage,
            dir: dir.to_path_buf(),
            salt,
            interval_bytes: opts.scan_hint_interval_bytes,
            recorded,
            latest: None,
            bound_step_bytes: opts.write_bound_step_bytes,
            bound,
            file: None,
        }
    }

    /// Whether the write bound on disk names the fragment beginning at `fragment_begin`. Such a
    /// record must stay true for whatever file holds that name, so writes into the fragment keep
    /// extending it even when the file needs none of its own (a new file taking the begin of a
    /// recycled one a failed batch removed).
    pub fn bound_names(&self, fragment_begin: u64) -> bool {
        WriteBound::in_fragment(self.bound, fragment_begin).is_some()
    }

    /// Path of the hint file, for errors.
    pub fn path(&self) -> PathBuf {
        self.dir.join(SCAN_HINT_FILE)
    }

    /// Makes sure a durable write bound covers a write into the fragment beginning at
    /// `fragment_begin` that ends at position `write_end` of it: if the recorded bound does not,
    /// records one `write_bound_step_bytes` further and `fdatasync`s it, before
    /// the caller writes. An error means the caller must not write (the bound may not be durable).
    /// Never with a step of `u64::MAX` (bounds off).
    pub fn bound_write(&mut self, fragment_begin: u64, write_end: u64) -> std::io::Result<()> {
        if self.bound_step_bytes == u64::MAX
            || WriteBound::in_fragment(self.bound, fragment_begin).is_some_and(|b| write_end <= b)
        {
            return Ok(());
        }
        let bound = WriteBound {
            fragment_begin,
            bound: write_end
                .saturating_add(self.bound_step_bytes)
                .next_multiple_of(FRAME_ALIGN_BYTES),
        };
        let stored = self
            .write_at(WRITE_BOUND_AT, &bound.encode(self.salt))
            .and_then(|()| self.file.as_ref().expect("opened by write_at").sync_data());
        match stored {
            Ok(()) => {
                self.bound = Some(bound);
                Ok(())
            }
            Err(e) => {
                self.file = None;
                Err(e)
            }
        }
    }

    /// A write that began at journal offset `write_begin`, in the fragment beginning at
    /// `fragment_begin`, is durable (its `fdatasync` returned); `frame_crc` is the `header_crc` of
    /// its first frame. Records it as the hint if it began at least `interval_bytes` past where
    /// the hint now lets a scan start, and remembers it for [`Self::record_latest`]. A failure is
    /// ignored: the hint is an optimisation, and a stale or missing one only makes the next open
    /// read more.
    pub fn after_durable_write(&mut self, fragment_begin: u64, write_begin: u64, frame_crc: u32) {
        if write_begin <= fragment_begin {
            return;
        }
        let hint = ScanHint {
            fragment_begin,
            scan_from: write_begin,
            frame_crc,
        };
        self.latest = Some(hint);
        let scan_start = fragment_begin + ScanHint::start_in(self.recorded, fragment_begin);
        if write_begin >= scan_start.saturating_add(self.interval_bytes.max(1)) {
            self.store(hint);
        }
    }

    /// Records the latest durable write as the hint, if it is not already (at close, and at open
    /// once recovery synced the last write): the next open then reads only that write, and, as
    /// the hint proves its `fdatasync` returned, need not write it again. Never with an interval
    /// of `u64::MAX` (hints off).
    pub fn record_latest(&mut self) {
        if self.interval_bytes == u64::MAX {
            return;
        }
        if let Some(hint) = self.latest.filter(|&h| self.recorded != Some(h)) {
            self.store(hint);
        }
    }

    fn store(&mut self, hint: ScanHint) {
        if self.write_at(0, &hint.encode(self.salt)).is_ok() {
            self.recorded = Some(hint);
        } else {
            // Open the file again next time (it may have been removed, or the handle gone bad).
            self.file = None;
        }
    }

    fn write_at(&mut self, pos: u64, record: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            let (storage, path) = (&*self.storage, self.dir.join(SCAN_HINT_FILE));
            let len = HINT_FILE_BYTES as u64;
            let file = match storage.open(&path, OpenMode::ReadWrite, len) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    storage.open(&path, OpenMode::CreateNew, len)?
                }
                other => other?,
            };
            self.file = Some(file);
        }
        self.file
            .as_ref()
            .expect("opened above")
            .write_all_at(pos, record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_round_trips_and_any_damage_or_other_journal_voids_it() {
        let salt = crate::frame::journal_salt("events");
        let hint = ScanHint {
            fragment_begin: 1 << 25,
            scan_from: (1 << 25) + 4096,
            frame_crc: 0xdead_beef,
        };
        let bytes = hint.encode(salt);
        assert_eq!(ScanHint::decode(&bytes, salt), Some(hint));
        assert_eq!(
            ScanHint::decode(&bytes, crate::frame::journal_salt("other")),
            None
        );
        assert_eq!(ScanHint::decode(&bytes[..31], salt), None);
        for byte in 0..SCAN_HINT_BYTES {
            let mut flipped = bytes;
            flipped[byte] ^= 0x10;
            assert_eq!(ScanHint::decode(&flipped, salt), None, "flip in byte {byte}");
        }
        assert_eq!(ScanHint::decode(&[0u8; SCAN_HINT_BYTES], salt), None);
    }

    #[test]
    fn a_hint_at_a_fragment_start_or_unaligned_is_refused() {
        let salt = crate::frame::journal_salt("events");
        for (fragment_begin, scan_from) in [(4096, 4096), (4096, 4100), (8192, 4096)] {
            let hint = ScanHint {
                fragment_begin,
                scan_from,
                frame_crc: 1,
            };
            assert_eq!(ScanHint::decode(&hint.encode(salt), salt), None, "{hint:?}");
        }
    }

    #[test]
    fn the_scan_start_applies_only_to_the_hinted_fragment() {
        let hint = Some(ScanHint {
            fragment_begin: 100 << 20,
            scan_from: (100 << 20) + 8192,
            frame_crc: 7,
        });
        assert_eq!(ScanHint::start_in(hint, 100 << 20), 8192);
        assert_eq!(ScanHint::start_in(hint, 132 << 20), 0);
        assert_eq!(ScanHint::start_in(None, 100 << 20), 0);
    }
}
