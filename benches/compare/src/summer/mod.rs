//! Workload (c): the stream-sum summer over a pre-written chunk journal.
//!
//! - [`input`]: writes the chunk journal once (not timed) and remembers every stream's SHA-1.
//! - [`ours`]: `ss_consumer::shard::Shard` + `ss_consumer::summer::Summer`, each transaction one
//!   durable append of Sums + checkpoint to the shard log.
//! - [`sqlite_peer`]: the same summer written the way a user would without us: running SHA-1
//!   states and the input offset kept in SQLite, one SQLite transaction per batch of chunks
//!   (same batch bounds as ours), Sums inserted in that same transaction.
//! - [`raw_sha1`]: SHA-1 alone over the same chunk bytes, in memory: the baseline.
//!
//! Every run returns the Sums it produced, checked against the input's own SHA-1s.

pub mod input;
pub mod ours;
pub mod raw_sha1;
pub mod sqlite_peer;

use std::collections::HashMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// One summer run over the whole input.
pub struct SummerRun {
    pub elapsed: Duration,
    /// Durable transactions committed (0 for the raw baseline).
    pub txns: u64,
    /// Per transaction (apply + commit); `None` for the raw baseline, which has none.
    pub latency_us: Option<Histogram<u64>>,
    /// Stream id → SHA-1 of every Sum emitted.
    pub sums: HashMap<u64, [u8; 20]>,
}

/// Checks that `run` emitted exactly one correct Sum for every stream of the input.
pub fn check_sums(system: &str, run: &SummerRun, expected: &HashMap<u64, [u8; 20]>) -> anyhow::Result<()> {
    anyhow::ensure!(
        run.sums.len() == expected.len(),
        "{system}: {} Sums for {} streams",
        run.sums.len(),
        expected.len()
    );
    for (stream, sha1) in expected {
        match run.sums.get(stream) {
            Some(got) if got == sha1 => {}
            Some(_) => anyhow::bail!("{system}: wrong Sum for stream {stream:016x}"),
            None => anyhow::bail!("{system}: no Sum for stream {stream:016x}"),
        }
    }
    Ok(())
}
