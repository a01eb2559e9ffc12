//! Target `journal_recovery`: opening a journal from a damaged directory image.
//!
//! A valid image is built once with real appends over `SimStorage` (small fragments, so there
//! are several). The input picks a variant of it and then a list of edits: flip, set, zero or
//! insert bytes, truncate or extend a file, copy bytes between files, rename, duplicate or delete
//! fragment files. The edited files are written into a fresh `SimStorage`, and then:
//!
//! - read-only and read-write opens either both fail with an `OpenError` or both succeed with the
//!   same head; nothing panics;
//! - reading every frame from `first_offset()` ends at the head or with a `ReadError`, and every
//!   frame returned is byte for byte a frame that validates at its offset in the image (readers
//!   never hand back bytes that fail their checksum); an unchanged original frame reads back as
//!   the payload that was appended at that offset;
//! - an append then succeeds, and after a reopen the journal reads back the same frames as
//!   before, followed by the appended one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ss_log::fragment::{fragment_file_name, parse_fragment_name};
use ss_log::frame::{self, Batch, HEADER_LEN};
use ss_log::sim::SimStorage;
use ss_log::{Journal, Log, Options, ReadError, Storage};

use super::input::Input;

pub const DATA_DIR: &str = "/data";
pub const JOURNAL: &str = "fuzz";
/// Frames in the base image.
pub const BASE_FRAMES: usize = 10;
/// Most edits applied per input.
pub const EDITS_MAX: usize = 32;
/// Payload of the append made after a successful open.
const PROBE_MESSAGE: &[u8] = b"appended after recovery";

pub fn journal_dir() -> PathBuf {
    Path::new(DATA_DIR).join(ss_log::JOURNALS_DIR).join(JOURNAL)
}

/// Small limits, so that a few appends roll several fragments.
pub fn options(storage: &SimStorage) -> Options {
    Options {
        fragment_max_bytes: 256,
        frame_max_bytes: 192,
        batch_max_messages: 16,
        pending_max_bytes: 1024,
        preallocate: false,
        recycle: true,
        // A scan-start hint every few frames, so the image holds one for the fuzzer to damage.
        scan_hint_interval_bytes: 64,
        write_bound_step_bytes: 32,
        storage: Arc::new(storage.clone()),
    }
}

/// A journal directory image: file name → bytes, and the frames appended to it.
#[derive(Clone)]
pub struct Image {
    pub files: BTreeMap<String, Vec<u8>>,
    /// Offset → (the frame's encoded bytes, its payload).
    pub frames: BTreeMap<u64, (Vec<u8>, Vec<u8>)>,
}

/// The messages of base frame `index`: 1 to 3 messages of varying lengths.
pub fn base_messages(index: usize) -> Vec<Vec<u8>> {
    (0..=index % 3)
        .map(|k| {
            let mut m = format!("frame {index} message {k} ").into_bytes();
            m.resize(m.len() + (index * 7 + k * 5) % 24, b'a' + index as u8);
            m
        })
        .collect()
}

/// Variant 0: the image as sequential appends leave it. Variant 1: the same frames, but those of
/// the last fragment re-encoded as one group-commit write (their `write_begin` is the first
/// one's offset), as a group commit of concurrent appends leaves it.
pub fn base_image(variant: u8) -> &'static Image {
    static IMAGES: OnceLock<[Image; 2]> = OnceLock::new();
    let images = IMAGES.get_or_init(|| {
        let sequential = build_sequential();
        let grouped = regroup_last_fragment(&sequential);
        [sequential, grouped]
    });
    &images[variant as usize % 2]
}

fn build_sequential() -> Image {
    let storage = SimStorage::new(7);
    let log = Log::open(DATA_DIR, options(&storage)).expect("open base log");
    let journal = log.journal(JOURNAL).expect("create base journal");
    let mut payloads = BTreeMap::new();
    for index in 0..BASE_FRAMES {
        let mut batch = Batch::new();
        for m in base_messages(index) {
            batch.push(&m);
        }
        let ack = journal.append(&batch).expect("append to base journal");
        payloads.insert(ack.offset, batch.payload().to_vec());
    }
    assert!(
        journal.fragments().len() >= 3,
        "the base image spans several fragments"
    );
    drop(journal);
    drop(log);
    let mut files = BTreeMap::new();
    for path in storage.files() {
        if path.parent() == Some(journal_dir().as_path()) {
            let name = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            files.insert(name, storage.read_file(&path).expect("listed file"));
        }
    }
    let mut image = Image {
        files,
        frames: BTreeMap::new(),
    };
    for (offset, payload) in payloads {
        let (name, pos) = locate(&image.files, offset).expect("frame in a fragment");
        let len = frame::frame_len_bytes(payload.len()) as usize;
        let bytes = image.files[&name][pos..pos + len].to_vec();
        image.frames.insert(offset, (bytes, payload));
    }
    image
}

fn regroup_last_fragment(base: &Image) -> Image {
    let mut image = base.clone();
    let (name, bytes) = image
        .files
        .iter_mut()
        .rfind(|(name, _)| parse_fragment_name(name).is_some())
        .expect("a fragment");
    let begin = parse_fragment_name(name).expect("fragment name");
    let salt = frame::journal_salt(JOURNAL);
    let mut regrouped = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let mut h = frame::decode_frame(&bytes[pos..], salt, begin + pos as u64).expect("base frame");
        h.write_begin = begin;
        let payload = &bytes[pos + HEADER_LEN..pos + HEADER_LEN + h.payload_len as usize];
        frame::encode_frame(&mut regrouped, salt, &h, payload);
        pos += h.frame_len_bytes() as usize;
    }
    *bytes = regrouped;
    for (&offset, (encoded, _)) in image.frames.iter_mut() {
        if offset >= begin {
            let at = (offset - begin) as usize;
            *encoded = bytes[at..at + encoded.len()].to_vec();
        }
    }
    image
}

/// The fragment file holding journal offset `offset` (the one with the greatest begin at or
/// below it, as readers choose) and the position in it.
fn locate(files: &BTreeMap<String, Vec<u8>>, offset: u64) -> Option<(String, usize)> {
    files
        .keys()
        .filter_map(|n| parse_fragment_name(n).map(|b| (b, n)))
        .filter(|(b, _)| *b <= offset)
        .max_by_key(|(b, _)| *b)
        .map(|(b, n)| (n.clone(), (offset - b) as usize))
}

/// Applies the edits the input describes.
pub fn edit(files: &mut BTreeMap<String, Vec<u8>>, input: &mut Input<'_>) {
    for _ in 0..EDITS_MAX {
        if input.is_empty() {
            return;
        }
        let op = input.u8() % 11;
        let names: Vec<String> = files.keys().cloned().collect();
        if names.is_empty() {
            return;
        }
        let name = names[input.u8() as usize % names.len()].clone();
        let len = files[&name].len();
        match op {
            // Flip bits of one byte.
            0 => {
                let pos = input.u16() as usize;
                let mask = input.u8() | 1;
                if len > 0 {
                    files.get_mut(&name).expect("file")[pos % len] ^= mask;
                }
            }
            // Overwrite 4 bytes with a value from the input (lets the fuzzer plant checksums).
            1 => {
                let pos = input.u16() as usize;
                let value = input.array::<4>();
                let file = files.get_mut(&name).expect("file");
                if pos + 4 <= file.len() {
                    file[pos..pos + 4].copy_from_slice(&value);
                }
            }
            // Truncate.
            2 => {
                let new_len = input.u16() as usize % (len + 1);
                files.get_mut(&name).expect("file").truncate(new_len);
            }
            // Extend with a repeated byte (0 models a zero-filled or fallocated tail).
            3 => {
                let extra = input.u8() as usize;
                let fill = input.u8();
                files.get_mut(&name).expect("file").resize(len + extra, fill);
            }
            // Zero a range.
            4 => {
                let pos = input.u16() as usize;
                let zeros = input.u8() as usize;
                let file = files.get_mut(&name).expect("file");
                let start = pos.min(file.len());
                let end = (start + zeros).min(file.len());
                file[start..end].fill(0);
            }
            // Insert raw input bytes.
            5 => {
                let pos = input.u16() as usize;
                let count = input.u8() as usize;
                let raw = input.take(count).to_vec();
                let file = files.get_mut(&name).expect("file");
                let at = pos.min(file.len());
                file.splice(at..at, raw);
            }
            // Copy a range from another file (e.g. a frame into the wrong place).
            6 => {
                let src = names[input.u8() as usize % names.len()].clone();
                let src_pos = input.u16() as usize;
                let count = input.u8() as usize;
                let dst_pos = input.u16() as usize;
                let src_bytes = &files[&src];
                let start = src_pos.min(src_bytes.len());
                let chunk = src_bytes[start..(start + count).min(src_bytes.len())].to_vec();
                let file = files.get_mut(&name).expect("file");
                let at = dst_pos.min(file.len());
                if file.len() < at + chunk.len() {
                    file.resize(at + chunk.len(), 0);
                }
                file[at..at + chunk.len()].copy_from_slice(&chunk);
            }
            // Rename.
            7 => {
                let new_name = pick_name(input, &name);
                let bytes = files.remove(&name).expect("file");
                files.insert(new_name, bytes);
            }
            // Duplicate under another name.
            8 => {
                let new_name = pick_name(input, &name);
                let bytes = files[&name].clone();
                files.insert(new_name, bytes);
            }
            // Delete.
            9 => {
                files.remove(&name);
            }
            // Swap the contents of two files.
            _ => {
                let other = names[input.u8() as usize % names.len()].clone();
                if other != name {
                    let a = files.remove(&name).expect("file");
                    let b = files.insert(other, a).expect("file");
                    files.insert(name, b);
                }
            }
        }
    }
}

/// A new name for the fragment file `old`: an aligned shift of its offset, an arbitrary offset,
/// or a name that is not a fragment name.
fn pick_name(input: &mut Input<'_>, old: &str) -> String {
    let begin = parse_fragment_name(old).unwrap_or(0);
    match input.u8() % 4 {
        0 | 1 => {
            let delta = i64::from(input.u8() as i8) * 8;
            fragment_file_name(begin.saturating_add_signed(delta))
        }
        2 => fragment_file_name(input.u64()),
        _ => format!("{old}.renamed"),
    }
}

/// One frame read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadFrame {
    pub offset: u64,
    pub end: u64,
    pub payload: Vec<u8>,
}

/// Reads every frame from `first_offset()` until the head or the first error, checking each one
/// against the files in `storage`.
pub fn read_all(journal: &Journal, storage: &SimStorage) -> (Vec<ReadFrame>, Option<ReadError>) {
    let files = journal_files(storage);
    let salt = frame::journal_salt(journal.name());
    let head = journal.durable_head();
    let mut scan = journal.frames(journal.first_offset());
    let mut frames = Vec::new();
    loop {
        match scan.next().transpose() {
            Ok(Some(f)) => {
                assert!(
                    f.end <= head,
                    "frame [{}, {}) read past the head {head}",
                    f.offset,
                    f.end
                );
                assert_eq!(f.end, f.offset + frame::frame_len_bytes(f.payload().len()));
                assert_frame_on_disk(&files, salt, f.offset, f.payload());
                frames.push(ReadFrame {
                    offset: f.offset,
                    end: f.end,
                    payload: f.payload().to_vec(),
                });
            }
            Ok(None) => {
                assert_eq!(scan.offset(), head, "reads stop exactly at the head");
                return (frames, None);
            }
            Err(e) => return (frames, Some(e)),
        }
    }
}

/// The journal's files in `storage`, by name.
pub fn journal_files(storage: &SimStorage) -> BTreeMap<String, Vec<u8>> {
    let dir = journal_dir();
    storage
        .files()
        .into_iter()
        .filter(|p| p.parent() == Some(dir.as_path()))
        .map(|p| {
            let name = p.file_name().expect("file name").to_string_lossy().into_owned();
            let bytes = storage.read_file(&p).expect("listed file");
            (name, bytes)
        })
        .collect()
}

/// A frame a reader returned is a frame that validates at its offset in the files, with exactly
/// that payload.
fn assert_frame_on_disk(files: &BTreeMap<String, Vec<u8>>, salt: u32, offset: u64, payload: &[u8]) {
    let (name, pos) = locate(files, offset).unwrap_or_else(|| panic!("frame at {offset} is in no fragment"));
    let bytes = files[&name].get(pos..).unwrap_or(&[]);
    match frame::decode_frame(bytes, salt, offset) {
        Ok(h) => {
            let on_disk = &bytes[HEADER_LEN..HEADER_LEN + h.payload_len as usize];
            assert_eq!(
                on_disk, payload,
                "frame at {offset}: payload read differs from {name}"
            );
        }
        Err(e) => panic!("a reader returned the frame at {offset}, which fails in {name}: {e}"),
    }
}

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let base = base_image(input.u8());
    let mut files = base.files.clone();
    edit(&mut files, &mut input);

    let storage = SimStorage::new(1);
    let dir = journal_dir();
    storage.create_dir_all(&dir).expect("create journal dir");
    for (name, bytes) in &files {
        storage.write_file(&dir.join(name), bytes);
    }

    // Read-only first: it must not repair anything, and must agree with a read-write open.
    let read_only = {
        let log = Log::open_read_only(DATA_DIR, options(&storage)).expect("open data dir read-only");
        match log.existing_journal(JOURNAL) {
            Ok(journal) => {
                let (frames, error) = read_all(&journal, &storage);
                Some((journal.durable_head(), frames, error.is_some()))
            }
            Err(_) => None,
        }
    };
    assert_eq!(
        journal_files(&storage),
        files,
        "a read-only open changed the files"
    );

    let log = Log::open(DATA_DIR, options(&storage)).expect("open data dir");
    let journal = match log.journal(JOURNAL) {
        Ok(journal) => journal,
        Err(e) => {
            assert!(
                read_only.is_none(),
                "read-only open succeeded where read-write open fails: {e}"
            );
            return;
        }
    };
    let (frames, error) = read_all(&journal, &storage);
    let head = journal.durable_head();
    if let Some((ro_head, ro_frames, ro_error)) = &read_only {
        assert_eq!(
            *ro_head, head,
            "read-only and read-write opens disagree on the head"
        );
        assert_eq!(
            *ro_frames, frames,
            "read-only and read-write opens read different frames"
        );
        assert_eq!(*ro_error, error.is_some());
    } else {
        let no_fragments = !files.keys().any(|n| parse_fragment_name(n).is_some());
        assert!(
            no_fragments,
            "read-write open succeeded where read-only open fails"
        );
    }
    for f in &frames {
        if let Some((encoded, payload)) = base.frames.get(&f.offset) {
            let (name, pos) = locate(&files, f.offset).expect("located above");
            if files[&name].get(pos..pos + encoded.len()) == Some(encoded.as_slice()) {
                assert_eq!(
                    &f.payload, payload,
                    "an untouched frame reads back what was appended"
                );
            }
        }
    }

    let mut probe = Batch::new();
    probe.push(PROBE_MESSAGE);
    let ack = journal
        .append(&probe)
        .unwrap_or_else(|e| panic!("append after a successful open (head {head}) failed: {e}"));
    assert_eq!(ack.offset, head, "an append lands at the recovered head");
    drop(journal);
    drop(log);

    let log = Log::open(DATA_DIR, options(&storage)).expect("reopen data dir");
    let journal = log
        .journal(JOURNAL)
        .unwrap_or_else(|e| panic!("reopen after an acknowledged append failed: {e}"));
    assert_eq!(
        journal.durable_head(),
        ack.end,
        "the appended frame is the head after reopen"
    );
    let appended = journal
        .reader(ack.offset)
        .try_next()
        .unwrap_or_else(|e| panic!("reading the appended frame at {} after reopen: {e}", ack.offset))
        .unwrap_or_else(|| panic!("the appended frame at {} is gone after reopen", ack.offset));
    assert_eq!(appended.payload().as_ref(), probe.payload());
    let (again, again_error) = read_all(&journal, &storage);
    let mut expected = frames;
    if error.is_none() {
        expected.push(ReadFrame {
            offset: ack.offset,
            end: ack.end,
            payload: probe.payload().to_vec(),
        });
        assert!(
            again_error.is_none(),
            "reopen broke a clean journal: {again_error:?}"
        );
    }
    assert_eq!(
        again.len().min(expected.len()),
        expected.len(),
        "frames lost by append+reopen"
    );
    assert_eq!(
        again[..expected.len()],
        expected[..],
        "frames changed by append+reopen"
    );
}
