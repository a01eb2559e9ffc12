//! The journal options and summer limits of `run` (and of the read-only commands, which open
//! the same directory with the same options).

use ss_consumer::summer::SummerConfig;
use ss_log::Options;

use crate::cli::RunArgs;

/// Journal limits for stream-sum. Fragments are not preallocated: measured here, zero-filling
/// spares cost this bandwidth-bound workload a quarter of its throughput and doubled its Sum
/// latency p99 (docs/benchmarks.md). Fragments removed by retention (`--retention`, `soak`)
/// are recycled as the next ones (`Options::recycle`, the default): no file growth to sync at
/// each commit once the first fragments are recycled. 16 MiB frames hold a summer snapshot of up to
/// `OPEN_STREAMS_MAX` open streams (112 B each) plus its finished window (12 B per entry).
pub(crate) fn log_options() -> Options {
    Options {
        frame_max_bytes: 16 << 20,
        pending_max_bytes: 16 << 20,
        ..Options::default()
    }
}

/// [`log_options`] with fragments rolled at `fragment_max_bytes` (`run --fragment-max-bytes`);
/// frames are capped at the fragment size.
pub(crate) fn log_options_for(fragment_max_bytes: u64) -> Options {
    let options = log_options();
    Options {
        fragment_max_bytes,
        frame_max_bytes: options.frame_max_bytes.min(fragment_max_bytes),
        ..options
    }
}

/// Summer limits for a run: streams are expired only after far more input than any live
/// stream's chunks can be apart (each chunker cycles through its streams, so a live stream's
/// chunks are at most about streams × chunkers / partitions chunks apart in a partition).
/// Open streams are capped at `OPEN_STREAMS_MAX`, and lower if a snapshot of that many would not
/// fit one frame of `frame_max_bytes` (a shard refuses such a shard log; past the cap a new
/// stream stops the shard with a limit error, exit 3, rather than a snapshot it cannot commit).
pub(crate) fn summer_config(args: &RunArgs, frame_max_bytes: u64) -> SummerConfig {
    let gap_bytes = (args.streams * args.chunkers * args.max_chunk_bytes / args.partitions) as u64;
    let default = SummerConfig::default();
    SummerConfig {
        expire_after_bytes: default.expire_after_bytes.max(16 * gap_bytes),
        max_open_streams: OPEN_STREAMS_MAX,
        ..default
    }
    .fitting_frames_of(frame_max_bytes)
}

/// Largest chunk a run may generate (a chunk batch must fit one 16 MiB frame).
pub(crate) const MAX_CHUNK_BYTES_MAX: usize = 4 << 20;

/// Most open streams per summer shard in a run: 100,000 × 112 B + 50,000 × 12 B < 16 MiB.
pub(crate) const OPEN_STREAMS_MAX: usize = 100_000;
