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

#[cfg(test)]
mod tests {
    use super::input::{write_input, InputShape};
    use super::*;
    use ss_consumer::shard::ShardConfig;

    fn small_input(dir: &std::path::Path) -> input::ChunkInput {
        let shape = InputShape {
            target_data_bytes: 3_000_000,
            open_streams: 40,
            max_chunks_per_stream: 16,
            max_chunk_bytes: 16 << 10,
            frame_bytes: 16 << 10,
            seed: 11,
        };
        write_input(&dir.join("log"), &shape).expect("write the input")
    }

    fn scratch() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("ss-compare-scratch-test-")
            .tempdir_in(".")
            .expect("a test directory under the package")
    }

    /// Ours, the SQLite summer and raw SHA-1 each emit exactly the input's SHA-1s over a small
    /// chunk journal (small transactions, so there are many), which is what makes their
    /// throughputs comparable.
    #[test]
    fn every_summer_emits_the_inputs_sums() {
        let dir = scratch();
        let input = small_input(dir.path());
        assert!(input.expected.len() > 40 && input.chunk_count > 200);
        let config = ShardConfig {
            txn_max_input_bytes: 256 << 10,
            ..ShardConfig::default()
        };
        let ours = ours::run(&input, "sums", &config).unwrap();
        check_sums("ours", &ours, &input.expected).unwrap();
        assert!(ours.txns > 5, "{} txns", ours.txns);
        let peer = sqlite_peer::run(&input, &dir.path().join("s.sqlite"), &config).unwrap();
        check_sums("sqlite", &peer, &input.expected).unwrap();
        assert!(peer.txns > 5, "{} txns", peer.txns);
        let raw = raw_sha1::run(&raw_sha1::LoadedChunks::load(&input).unwrap()).unwrap();
        check_sums("raw", &raw, &input.expected).unwrap();
    }

    /// The SQLite summer stopped part-way resumes from the offset and SHA-1 states it stored, and
    /// still emits every Sum exactly once (its recovery path, which the timed runs never take).
    #[test]
    fn sqlite_summer_resumes_from_its_stored_state() {
        let dir = scratch();
        let input = small_input(dir.path());
        let config = ShardConfig {
            txn_max_input_bytes: 256 << 10,
            ..ShardConfig::default()
        };
        let db = dir.path().join("s.sqlite");
        let first = sqlite_peer::run_until(&input, &db, &config, input.end_offset / 2).unwrap();
        assert!(first.sums.len() < input.expected.len());
        let second = sqlite_peer::run(&input, &db, &config).unwrap();
        check_sums("sqlite resumed", &second, &input.expected).unwrap();
    }

    /// check_sums refuses a wrong Sum and a missing one.
    #[test]
    fn check_sums_refuses_wrong_and_missing_sums() {
        let expected: HashMap<u64, [u8; 20]> = [(1, [1; 20]), (2, [2; 20])].into();
        let run = |sums: HashMap<u64, [u8; 20]>| SummerRun {
            elapsed: Duration::ZERO,
            txns: 0,
            latency_us: None,
            sums,
        };
        assert!(check_sums("ok", &run(expected.clone()), &expected).is_ok());
        let wrong = run([(1, [1; 20]), (2, [9; 20])].into());
        assert!(check_sums("wrong", &wrong, &expected).is_err());
        let missing = run([(1, [1; 20]), (3, [3; 20])].into());
        assert!(check_sums("missing", &missing, &expected).is_err());
    }
}
