//! Helpers shared by the consumer integration tests: encoding chunk batches, an oracle of stream
//! contents, and reading a shard log back into its outputs and checkpoints.
#![allow(dead_code)]

use std::collections::HashMap;

use sha1::{Digest, Sha1};
use ss_consumer::checkpoint::{Checkpoint, CheckpointKind};
use ss_consumer::message::{Chunk, Expired, Message, StreamId, Sum};
use ss_log::{Batch, Journal};

/// Data directory used with simulated storage.
pub const DATA_DIR: &str = "/data";

/// One chunk to publish, owning its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedChunk {
    pub stream: StreamId,
    pub seq: u32,
    pub is_final: bool,
    pub data: Vec<u8>,
}

impl OwnedChunk {
    pub fn as_chunk(&self) -> Chunk<'_> {
        Chunk {
            stream: self.stream,
            seq: self.seq,
            is_final: self.is_final,
            data: &self.data,
        }
    }
}

/// A batch (one input frame) holding `chunks` in order.
pub fn chunk_batch<'a>(chunks: impl IntoIterator<Item = Chunk<'a>>) -> Batch {
    let mut batch = Batch::new();
    for c in chunks {
        batch.push_with(|b| c.encode(b));
    }
    batch
}

/// SHA-1 of the concatenation of `parts`.
pub fn sha1_of<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Deterministic pseudo-random bytes (xorshift), so chunk contents differ between streams.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What a shard log holds: its outputs and the checkpoint of every transaction frame.
#[derive(Debug, Default)]
pub struct ShardLogContents {
    pub sums: Vec<Sum>,
    /// The offset of the frame holding each of `sums`.
    pub sum_offsets: Vec<u64>,
    pub expired: Vec<Expired>,
    /// (frame offset, input offset, kind, checkpoint bytes) per transaction frame.
    pub checkpoints: Vec<(u64, u64, CheckpointKind, usize)>,
}

impl ShardLogContents {
    /// How many Sums each stream has.
    pub fn sum_counts(&self) -> HashMap<StreamId, usize> {
        let mut counts = HashMap::new();
        for s in &self.sums {
            *counts.entry(s.stream).or_insert(0) += 1;
        }
        counts
    }
}

/// Reads every durable frame of a shard log, checking that each is a transaction frame: outputs
/// (Sums, Expired) followed by exactly one checkpoint whose input offsets never go backwards.
pub fn read_shard_log(journal: &Journal) -> ShardLogContents {
    let mut out = ShardLogContents::default();
    read_shard_log_into(journal, &mut journal.first_offset(), &mut out)
        .unwrap_or_else(|e| panic!("reading shard log {}: {e}", journal.name()));
    out
}

/// Reads the durable frames of a shard log from `*offset` (a frame boundary) into `out`, checked
/// as [`read_shard_log`] does, advancing `*offset` past each frame as it is added, so that after
/// a read error (e.g. the simulated storage died meanwhile) `out` and `*offset` still agree and a
/// later call resumes after the last frame added. (They once disagreed: frames read before an
/// error were added but `*offset` kept its old value, the next call read them again, and the
/// harness reported repeated Sums and checkpoints going back that the log did not hold.)
pub fn read_shard_log_into(
    journal: &Journal,
    offset: &mut u64,
    out: &mut ShardLogContents,
) -> Result<(), ss_log::ReadError> {
    let mut frames = journal.frames(*offset);
    let mut last_input_offset = out.checkpoints.last().map_or(0, |c| c.1);
    while let Some(frame) = frames.next().transpose()? {
        let messages: Vec<&[u8]> = frames
            .messages(&frame)
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        let (last, outputs) = messages.split_last().expect("a transaction frame is never empty");
        let ck = Checkpoint::decode(last)
            .unwrap_or_else(|e| panic!("shard log {} frame {}: {e}", journal.name(), frame.offset));
        assert!(
            ck.input_offset >= last_input_offset,
            "shard log {} frame {}: input offset went back from {last_input_offset} to {}",
            journal.name(),
            frame.offset,
            ck.input_offset
        );
        last_input_offset = ck.input_offset;
        out.checkpoints
            .push((frame.offset, ck.input_offset, ck.kind, last.len()));
        for m in outputs {
            match Message::decode(m).expect("outputs decode") {
                Message::Sum(s) => {
                    out.sums.push(s);
                    out.sum_offsets.push(frame.offset);
                }
                Message::Expired(e) => out.expired.push(e),
                other => panic!(
                    "shard log {} frame {}: unexpected output {other:?}",
                    journal.name(),
                    frame.offset
                ),
            }
        }
        *offset = frames.offset();
    }
    Ok(())
}

/// Every chunk in an input journal, in order, with the offset of its frame.
pub fn read_input_chunks(journal: &Journal) -> Vec<(u64, OwnedChunk)> {
    let mut out = Vec::new();
    let mut frames = journal.frames(journal.first_offset());
    while let Some(frame) = frames.next() {
        let frame = frame.unwrap_or_else(|e| panic!("reading input: {e}"));
        for m in frames.messages(&frame) {
            let c = Chunk::decode(m.expect("input messages decode")).expect("input holds chunks");
            out.push((
                frame.offset,
                OwnedChunk {
                    stream: c.stream,
                    seq: c.seq,
                    is_final: c.is_final,
                    data: c.data.to_vec(),
                },
            ));
        }
    }
    out
}
