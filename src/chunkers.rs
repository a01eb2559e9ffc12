//! Chunker threads of a `run`: each publishes its streams until told to stop (or to die, by a
//! fault), reporting a failure through [`RunState`](crate::state::RunState).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use ss_chunker::chunker::{Chunker, ChunkerConfig};
use ss_log::Journal;

use crate::cli::RunArgs;
use crate::state::Shared;

/// What a chunker needs to start.
pub(crate) struct ChunkerCtx {
    pub(crate) args: RunArgs,
    pub(crate) run_id: u32,
    pub(crate) inputs: Vec<Journal>,
}

/// Starts chunker `slot` on its own thread.
pub(crate) fn spawn_chunker(ctx: &ChunkerCtx, shared: &Arc<Shared>, slot: usize) {
    let args = &ctx.args;
    let mut config = ChunkerConfig::new(
        slot as u8,
        ctx.run_id,
        args.seed.wrapping_add(slot as u64 * 7919),
        args.streams,
    );
    config.shape.max_chunk_bytes = args.max_chunk_bytes;
    config.shape.max_chunks_per_stream = args.max_chunks_per_stream as u32;
    config.max_bytes_per_s = args
        .max_mb_per_s
        .map(|mb| (mb * 1e6 / args.chunkers as f64) as u64);
    let mut chunker = Chunker::new(
        config,
        ctx.inputs.clone(),
        shared.sums.verifiers[slot].clone(),
        shared.chunkers.stats[slot].clone(),
    );
    shared.chunkers.running.fetch_add(1, Ordering::SeqCst);
    shared.chunkers.slots.lock().push(slot);
    let thread_shared = shared.clone();
    let handle = std::thread::Builder::new()
        .name(format!("chunker-{slot}"))
        .spawn(move || {
            let shared = thread_shared;
            shared.run.reporting_panic(&format!("chunker-{slot}"), || {
                match chunker.run_or_die(&shared.run.stop_chunkers, &shared.chunkers.die[slot]) {
                    Err(e) => match e.append_error() {
                        Some(append) => shared.run.append_error(format!("chunker {slot}: {e}"), append),
                        None => shared.run.error(format!("chunker {slot}: {e}")),
                    },
                    Ok(()) if shared.chunkers.die[slot].load(Ordering::SeqCst) => {
                        tracing::info!(chunker = slot, "chunker killed by fault");
                    }
                    Ok(()) => {}
                }
            });
            shared.chunkers.running.fetch_sub(1, Ordering::SeqCst);
        })
        .expect("spawn chunker");
    shared.chunkers.handles.lock().push(handle);
}
