//! The chunk journal every summer reads: many streams interleaved, chunk sizes mixed the way the
//! chunker draws them (10% tiny 0-16 B, 50% small 16 B-4 KiB, 40% large 4 KiB-48 KiB), streams of
//! 1-64 chunks, chunks packed into frames of about 64 KiB. Written once before any timing.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use anyhow::Context;
use sha1::{Digest, Sha1};
use ss_consumer::message::{Chunk, StreamId};
use ss_log::{Batch, Journal, Log, Options};

/// What to generate.
#[derive(Debug, Clone)]
pub struct InputShape {
    /// Stop starting streams once this much chunk data is written (open ones are then finished).
    pub target_data_bytes: u64,
    pub open_streams: usize,
    pub max_chunks_per_stream: u32,
    pub max_chunk_bytes: usize,
    pub frame_bytes: usize,
    pub seed: u64,
}

/// The written input and what the summers must produce from it.
pub struct ChunkInput {
    pub log: Log,
    pub journal: Journal,
    /// Durable head of the chunk journal: every summer reads up to here.
    pub end_offset: u64,
    pub frame_count: u64,
    pub chunk_count: u64,
    /// Bytes of chunk data (not message headers or framing).
    pub chunk_data_bytes: u64,
    /// Stream id → SHA-1 of its whole content.
    pub expected: HashMap<u64, [u8; 20]>,
}

/// xorshift64*: fast, seeded, good enough to mix sizes and interleavings.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

struct GenStream {
    id: u64,
    next_seq: u32,
    chunk_count: u32,
    hasher: Sha1,
}

impl InputShape {
    fn chunk_len(&self, rng: &mut Rng) -> usize {
        let max = self.max_chunk_bytes as u64;
        let len = match rng.range(0, 9) {
            0 => rng.range(0, 16),
            1..=5 => rng.range(16, 4096),
            _ => rng.range(4096, max),
        };
        len as usize
    }
}

/// Writes the chunk journal `chunks` in a new data directory at `dir`.
pub fn write_input(dir: &Path, shape: &InputShape) -> anyhow::Result<ChunkInput> {
    assert!(shape.open_streams > 0 && shape.max_chunks_per_stream > 0 && shape.max_chunk_bytes >= 4096);
    let log = Log::open(dir, Options::default())
        .with_context(|| format!("opening the input log at {}", dir.display()))?;
    let journal = log.journal("chunks").context("creating the chunk journal")?;
    let mut rng = Rng(shape.seed | 1);
    let pattern: Vec<u8> = (0..(1 << 20) + shape.max_chunk_bytes)
        .map(|_| rng.next() as u8)
        .collect();
    let mut next_id = 1u64 << 40;
    let mut new_stream = |rng: &mut Rng| {
        next_id += 1;
        GenStream {
            id: next_id,
            next_seq: 0,
            chunk_count: rng.range(1, u64::from(shape.max_chunks_per_stream)) as u32,
            hasher: Sha1::new(),
        }
    };
    let mut open: Vec<GenStream> = (0..shape.open_streams).map(|_| new_stream(&mut rng)).collect();
    let mut expected = HashMap::new();
    let mut batch = Batch::with_capacity(shape.frame_bytes + shape.max_chunk_bytes + 64);
    let mut pending = VecDeque::new();
    let (mut chunk_count, mut chunk_data_bytes, mut frame_count) = (0u64, 0u64, 0u64);
    let mut flush = |batch: &mut Batch, pending: &mut VecDeque<ss_log::PendingAppend>, last: bool| {
        if !batch.is_empty() {
            pending.push_back(journal.submit(batch).context("submitting an input frame")?);
            batch.clear();
            frame_count += 1;
        }
        while pending.len() > if last { 0 } else { 64 } {
            let p = pending.pop_front().expect("non-empty");
            p.wait().context("appending an input frame")?;
        }
        anyhow::Ok(())
    };
    while !open.is_empty() {
        let i = rng.range(0, open.len() as u64 - 1) as usize;
        let finishing = chunk_data_bytes >= shape.target_data_bytes;
        let s = &mut open[i];
        let len = shape.chunk_len(&mut rng);
        let at = rng.range(0, 1 << 20) as usize;
        let data = &pattern[at..at + len];
        let is_final = finishing || s.next_seq + 1 == s.chunk_count;
        s.hasher.update(data);
        batch.push_with(|b| {
            Chunk {
                stream: StreamId(s.id),
                seq: s.next_seq,
                is_final,
                data,
            }
            .encode(b)
        });
        s.next_seq += 1;
        chunk_count += 1;
        chunk_data_bytes += len as u64;
        if is_final {
            let done = if finishing {
                open.swap_remove(i)
            } else {
                std::mem::replace(&mut open[i], new_stream(&mut rng))
            };
            expected.insert(done.id, done.hasher.finalize().into());
        }
        if batch.payload().len() >= shape.frame_bytes {
            flush(&mut batch, &mut pending, false)?;
        }
    }
    flush(&mut batch, &mut pending, true)?;
    let end_offset = journal.durable_head();
    Ok(ChunkInput {
        log,
        journal,
        end_offset,
        frame_count,
        chunk_count,
        chunk_data_bytes,
        expected,
    })
}
