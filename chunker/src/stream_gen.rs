//! Seeded stream generation: stream ids, stream lengths, chunk sizes and chunk bytes.

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use sha1::{Digest, Sha1};
use ss_consumer::message::StreamId;

/// Bits of a stream id: `run_id (24) | chunker index (8) | counter (32)`. A run id is taken
/// durably at start, so ids are never reused across chunkers or process restarts.
pub const STREAM_COUNTER_BITS: u32 = 32;
pub const STREAM_CHUNKER_BITS: u32 = 8;
pub const RUN_ID_MAX: u32 = (1 << 24) - 1;
pub const CHUNKERS_MAX: usize = 1 << STREAM_CHUNKER_BITS;

pub fn stream_id(run_id: u32, chunker: u8, counter: u32) -> StreamId {
    assert!(run_id <= RUN_ID_MAX);
    StreamId(((run_id as u64) << 40) | ((chunker as u64) << STREAM_COUNTER_BITS) | counter as u64)
}

/// (run id, chunker index, counter) of a stream id.
pub fn split_stream_id(id: StreamId) -> (u32, u8, u32) {
    (
        (id.0 >> 40) as u32,
        (id.0 >> STREAM_COUNTER_BITS) as u8,
        id.0 as u32,
    )
}

/// Shape of generated streams.
#[derive(Debug, Clone)]
pub struct StreamShape {
    /// Chunks per stream are drawn uniformly from 1..=max_chunks_per_stream.
    pub max_chunks_per_stream: u32,
    /// Largest chunk; sizes mix tiny (0-16 B), small (16 B-4 KiB) and large (4 KiB-max) chunks.
    pub max_chunk_bytes: usize,
}

impl Default for StreamShape {
    fn default() -> StreamShape {
        StreamShape {
            max_chunks_per_stream: 64,
            max_chunk_bytes: 48 << 10,
        }
    }
}

/// A stream being written: its id, progress and the SHA-1 of what was published so far.
pub struct GenStream {
    pub id: StreamId,
    pub next_seq: u32,
    pub chunk_count: u32,
    pub hasher: Sha1,
    pub bytes: u64,
}

/// Generates streams and their chunks from a seed.
pub struct StreamGen {
    rng: SmallRng,
    run_id: u32,
    chunker: u8,
    /// The counter of the next stream id; past `u32::MAX` the ids are used up.
    next_counter: u64,
    shape: StreamShape,
}

impl StreamGen {
    pub fn new(seed: u64, run_id: u32, chunker: u8, shape: StreamShape) -> StreamGen {
        assert!(shape.max_chunks_per_stream >= 1);
        StreamGen {
            rng: SmallRng::seed_from_u64(seed),
            run_id,
            chunker,
            next_counter: 0,
            shape,
        }
    }

    pub fn rng(&mut self) -> &mut SmallRng {
        &mut self.rng
    }

    /// The next stream, or `None` once this chunker's 2^32 stream ids of this run are used.
    pub fn new_stream(&mut self) -> Option<GenStream> {
        let counter = u32::try_from(self.next_counter).ok()?;
        self.next_counter += 1;
        let id = stream_id(self.run_id, self.chunker, counter);
        Some(GenStream {
            id,
            next_seq: 0,
            chunk_count: self.rng.random_range(1..=self.shape.max_chunks_per_stream),
            hasher: Sha1::new(),
            bytes: 0,
        })
    }

    /// Draws a chunk size: 10% tiny (0-16 B), 50% small (16 B-4 KiB), 40% large (4 KiB-max).
    pub fn chunk_len(&mut self) -> usize {
        let max = self.shape.max_chunk_bytes;
        match self.rng.random_range(0..10) {
            0 => self.rng.random_range(0..=16usize.min(max)),
            1..=5 => self.rng.random_range(16usize.min(max)..=4096usize.min(max)),
            _ => self.rng.random_range(4096usize.min(max)..=max),
        }
    }

    /// Appends the next chunk's data for `stream` to `out` (after whatever `out` holds, e.g. the
    /// chunk's encoded header), hashes it into the stream and advances its sequence number.
    /// Returns the data length.
    pub fn append_next_chunk(&mut self, stream: &mut GenStream, out: &mut Vec<u8>) -> usize {
        let len = self.chunk_len();
        let at = out.len();
        out.resize(at + len, 0);
        self.rng.fill_bytes(&mut out[at..]);
        stream.hasher.update(&out[at..]);
        stream.bytes += len as u64;
        stream.next_seq += 1;
        len
    }
}

impl GenStream {
    /// (seq, is_final) of the stream's next chunk.
    pub fn next_chunk_seq(&self) -> (u32, bool) {
        (self.next_seq, self.next_seq + 1 == self.chunk_count)
    }
}

/// The partition a stream's chunks go to.
pub fn partition_of(stream: StreamId, partitions: usize) -> usize {
    // splitmix64 finaliser: spreads sequential ids evenly.
    let mut z = stream.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % partitions as u64) as usize
}

/// Name of partition `p`'s chunk journal.
pub fn chunk_journal_name(p: usize) -> String {
    format!("chunks-{p:03}")
}

/// Name of partition `p`'s shard log (where its summer writes Sums and checkpoints).
pub fn shard_log_name(p: usize) -> String {
    format!("sums-{p:03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_encode_run_chunker_and_counter() {
        let id = stream_id(5, 3, 77);
        assert_eq!(split_stream_id(id), (5, 3, 77));
        assert_ne!(stream_id(5, 3, 77), stream_id(6, 3, 77));
    }

    #[test]
    fn same_seed_generates_the_same_streams() {
        let shape = StreamShape::default();
        let mut a = StreamGen::new(9, 1, 0, shape.clone());
        let mut b = StreamGen::new(9, 1, 0, shape);
        let (mut sa, mut sb) = (a.new_stream().unwrap(), b.new_stream().unwrap());
        let (mut ba, mut bb) = (Vec::new(), Vec::new());
        assert_eq!(sa.chunk_count, sb.chunk_count);
        for _ in 0..sa.chunk_count {
            assert_eq!(sa.next_chunk_seq(), sb.next_chunk_seq());
            ba.clear();
            bb.clear();
            assert_eq!(
                a.append_next_chunk(&mut sa, &mut ba),
                b.append_next_chunk(&mut sb, &mut bb)
            );
            assert_eq!(ba, bb);
        }
    }

    /// A forever soak can use up a chunker's stream ids: the last id is handed out, then `None`
    /// (the chunker stops with an error), never a panic nor a reused id.
    #[test]
    fn stream_ids_run_out_without_a_panic() {
        let mut gen = StreamGen::new(9, 1, 2, StreamShape::default());
        gen.next_counter = u64::from(u32::MAX);
        let last = gen.new_stream().expect("the last id");
        assert_eq!(split_stream_id(last.id), (1, 2, u32::MAX));
        assert!(gen.new_stream().is_none());
        assert!(gen.new_stream().is_none());
    }

    #[test]
    fn partitions_are_all_used() {
        let mut seen = [0; 4];
        for i in 0..1000 {
            seen[partition_of(stream_id(1, 0, i), 4)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 150), "{seen:?}");
    }
}
