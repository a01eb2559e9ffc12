//! The baseline of workload (c): SHA-1 alone over the same chunk bytes in the same order, one
//! hasher per stream, the chunks already decoded in memory (loading them is not timed).

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Context;
use sha1::{Digest, Sha1};
use ss_consumer::message::Chunk;

use super::input::ChunkInput;
use super::SummerRun;

/// The input's frames, kept mapped, to hash from memory.
pub struct LoadedChunks {
    frames: Vec<ss_log::Frame>,
}

impl LoadedChunks {
    pub fn load(input: &ChunkInput) -> anyhow::Result<LoadedChunks> {
        let frames = input
            .journal
            .frames(0)
            .collect::<Result<_, _>>()
            .context("reading the chunk journal")?;
        Ok(LoadedChunks { frames })
    }
}

pub fn run(chunks: &LoadedChunks) -> anyhow::Result<SummerRun> {
    // Decoded (stream slot, data, final) triples, with dense stream slots, built before timing.
    let mut slots: HashMap<u64, usize> = HashMap::new();
    let mut ids = Vec::new();
    let mut plan: Vec<(usize, &[u8], bool)> = Vec::new();
    for frame in &chunks.frames {
        for m in frame.messages() {
            let chunk = Chunk::decode(m.context("input messages")?).context("decoding a chunk")?;
            let slot = *slots.entry(chunk.stream.0).or_insert_with(|| {
                ids.push(chunk.stream.0);
                ids.len() - 1
            });
            plan.push((slot, chunk.data, chunk.is_final));
        }
    }
    let mut hashers = vec![Sha1::new(); ids.len()];
    let mut digests = vec![[0u8; 20]; ids.len()];
    let started = Instant::now();
    for &(slot, data, is_final) in &plan {
        hashers[slot].update(data);
        if is_final {
            digests[slot] = std::mem::take(&mut hashers[slot]).finalize().into();
        }
    }
    let elapsed = started.elapsed();
    Ok(SummerRun {
        elapsed,
        txns: 0,
        latency_us: None,
        sums: ids.into_iter().zip(digests).collect(),
    })
}
