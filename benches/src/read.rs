//! Tailing reads of a whole journal (every frame's checksums verified by the reader) and their
//! in-memory baselines over the same bytes: CRC-32C, and a plain copy.

use std::path::Path;
use std::time::{Duration, Instant};

use ss_log::frame::HEADER_LEN;
use ss_log::{Batch, Journal, Log, Options};

use crate::scratch;

/// Name of the journal in each cached read fixture.
pub const READ_JOURNAL: &str = "read";

/// A cached journal of frames of one size, opened.
pub struct ReadFixture {
    pub journal: Journal,
    pub log: Log,
    /// Durable head: the bytes a read from 0 covers.
    pub head: u64,
}

impl ReadFixture {
    /// Opens (building on first use) a journal of about `total_bytes` in frames that each hold one
    /// message of `payload_bytes`, cached under `root`.
    pub fn open(root: &Path, payload_bytes: usize, total_bytes: u64) -> ReadFixture {
        let key = format!("read-{payload_bytes}b-{total_bytes}b");
        let opts = Options::default();
        let batch = Batch::single(&crate::pattern_bytes(payload_bytes, payload_bytes as u64));
        let chunk_frames = ((8 << 20) / payload_bytes).max(1);
        let (dir, head) = scratch::cached_journal(root, &key, READ_JOURNAL, &opts, |journal| {
            scratch::fill_journal(journal, &batch, chunk_frames, |j| j.durable_head() >= total_bytes)
        });
        let log = Log::open(&dir, opts).expect("open the cached read journal");
        let journal = log
            .existing_journal(READ_JOURNAL)
            .expect("cached read journal exists");
        assert_eq!(
            journal.durable_head(),
            head,
            "cached journal in {} changed",
            dir.display()
        );
        ReadFixture { journal, log, head }
    }

    /// The journal's bytes from 0 to the head, read from its fragment files (for baselines).
    pub fn raw_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head as usize);
        for f in self.journal.fragments() {
            let bytes =
                std::fs::read(&f.path).unwrap_or_else(|e| panic!("reading {}: {e}", f.path.display()));
            out.extend_from_slice(&bytes[..(f.end - f.begin) as usize]);
        }
        assert_eq!(out.len() as u64, self.head);
        out
    }
}

/// What one read of a whole journal covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadCount {
    pub frames: u64,
    pub messages: u64,
    pub payload_bytes: u64,
}

/// Reads every frame from offset 0 to the durable head with a new reader (checksums verified),
/// and checks the reader ended exactly at the head.
pub fn read_all(journal: &Journal) -> (Duration, ReadCount) {
    let head = journal.durable_head();
    let start = Instant::now();
    let mut frames = journal.frames(0);
    let mut count = ReadCount {
        frames: 0,
        messages: 0,
        payload_bytes: 0,
    };
    for frame in frames.by_ref() {
        let frame = frame.expect("read a bench frame");
        count.frames += 1;
        count.messages += u64::from(frame.message_count);
        count.payload_bytes += frame.payload().len() as u64;
    }
    let elapsed = start.elapsed();
    assert_eq!(frames.offset(), head, "reader stopped short of the head");
    (elapsed, count)
}

/// CRC-32C of `bytes` in one pass (as fast as this CRC-32C implementation goes).
pub fn crc32c_all(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// The checksum work a reader does, without the framing: for each `frame_bytes` chunk of `bytes`
/// (frames laid end to end), CRC-32C of the 32 header bytes after the stored checksum, and of the
/// rest of the frame. This is the fair in-memory baseline for small frames, because CRC-32C runs
/// slower per byte on short buffers.
pub fn crc32c_per_frame(bytes: &[u8], frame_bytes: usize, salt: u32) -> u32 {
    let mut acc = 0;
    for frame in bytes.chunks(frame_bytes) {
        acc ^= crc32c::crc32c_append(salt, &frame[8..HEADER_LEN]);
        acc ^= crc32c::crc32c_append(salt, &frame[HEADER_LEN..]);
    }
    acc
}

/// Copies `src` into `dst` (a memcpy of the same bytes).
pub fn copy_all(src: &[u8], dst: &mut [u8]) {
    dst.copy_from_slice(src);
}
