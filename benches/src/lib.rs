//! Workloads for the criterion benches in `benches/benches/` and for the `bench-summary` binary.
//!
//! Every journal workload has a raw baseline beside it, measured in the same run on the same
//! disk, so results can be read as ratios (the machines are shared and noisy; absolute figures
//! drift):
//!
//! - [`append`]: durable appends (single writer, large frames; many async writers, small
//!   records) beside raw `write` + `fdatasync` into a pre-written file.
//! - [`read`]: a tailing read of a whole journal, checksums verified, beside CRC-32C and a plain
//!   copy of the same bytes in memory.
//! - [`open`]: the time to open a journal with a long history beside one with a single fragment.
//! - [`scratch`]: where the benches put their files (a directory on the same disk as the build,
//!   not `/tmp`), and journals built once and cached between runs.

pub mod append;
pub mod open;
pub mod read;
pub mod scratch;

/// Bytes of pseudo-random content (xorshift), so payloads are not all zeros.
pub fn pattern_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
