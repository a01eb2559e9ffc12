//! The summer written the way a user would without us, on SQLite (WAL, `synchronous=FULL`).
//!
//! The running SHA-1 of each open stream lives in memory and in the `streams` table (its 92-byte
//! `SerializableState`), the input offset in `progress`, and finished streams' Sums in `sums`.
//! Input frames are read from the same chunk journal through an `ss_log` reader, so input costs
//! the same as ours. Each batch of frames, bounded exactly like our shard's transactions (the
//! same [`ShardConfig`] limits on messages, input bytes and time, checked between frames), is
//! committed as one SQLite transaction: the states of the streams it touched are upserted,
//! finished streams are deleted, their Sums inserted, and the input offset advanced. Duplicate
//! chunks are skipped and gaps refused, as in ours; streams are not expired (the input has no
//! abandoned streams).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension};
use sha1::digest::common::hazmat::{SerializableState, SerializedState};
use sha1::{Digest, Sha1};
use ss_consumer::message::Chunk;
use ss_consumer::shard::ShardConfig;

use super::input::ChunkInput;
use super::SummerRun;
use crate::append::sqlite::open_durable;
use crate::harness::{latency_histogram, record_us};

struct OpenStream {
    hasher: Sha1,
    last_seq: u32,
    touched: bool,
}

struct SqliteSummer {
    conn: Connection,
    open: HashMap<u64, OpenStream>,
    /// Final seq of finished streams, to recognise duplicates of their chunks.
    finished: HashMap<u64, u32>,
    touched: Vec<u64>,
    /// (stream, final seq, SHA-1) of streams finished in the open batch.
    finished_in_batch: Vec<(u64, u32, [u8; 20])>,
}

impl SqliteSummer {
    /// Opens `path`, creating the schema, and restores the state a previous run left.
    fn open(path: &Path) -> anyhow::Result<(SqliteSummer, u64)> {
        let conn = open_durable(path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS progress (id INTEGER PRIMARY KEY CHECK (id = 0), input_offset INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS streams (stream INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL, sha1_state BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS sums (stream INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL, sha1 BLOB NOT NULL);",
        )
        .context("creating the summer schema")?;
        let offset: Option<i64> = conn
            .query_row("SELECT input_offset FROM progress WHERE id = 0", [], |r| r.get(0))
            .optional()
            .context("reading the input offset")?;
        let mut open = HashMap::new();
        {
            let mut q = conn.prepare("SELECT stream, last_seq, sha1_state FROM streams")?;
            let mut rows = q.query([])?;
            while let Some(row) = rows.next()? {
                let (stream, last_seq, state): (i64, u32, Vec<u8>) = (row.get(0)?, row.get(1)?, row.get(2)?);
                let state = SerializedState::<Sha1>::try_from(&state[..])
                    .map_err(|_| anyhow::anyhow!("stream {stream:016x}: bad SHA-1 state length"))?;
                let hasher = Sha1::deserialize(&state)
                    .map_err(|_| anyhow::anyhow!("stream {stream:016x}: invalid SHA-1 state"))?;
                open.insert(
                    stream as u64,
                    OpenStream {
                        hasher,
                        last_seq,
                        touched: false,
                    },
                );
            }
        }
        let mut finished = HashMap::new();
        {
            let mut q = conn.prepare("SELECT stream, last_seq FROM sums")?;
            let mut rows = q.query([])?;
            while let Some(row) = rows.next()? {
                finished.insert(row.get::<_, i64>(0)? as u64, row.get(1)?);
            }
        }
        let summer = SqliteSummer {
            conn,
            open,
            finished,
            touched: Vec::new(),
            finished_in_batch: Vec::new(),
        };
        Ok((summer, offset.unwrap_or(0) as u64))
    }

    fn apply(&mut self, message: &[u8]) -> anyhow::Result<()> {
        let chunk = Chunk::decode(message).context("not a chunk")?;
        let id = chunk.stream.0;
        if let Some(s) = self.open.get_mut(&id) {
            if chunk.seq <= s.last_seq {
                return Ok(()); // duplicate
            }
            anyhow::ensure!(
                chunk.seq == s.last_seq + 1,
                "stream {id:016x}: gap: seq {} after {}",
                chunk.seq,
                s.last_seq
            );
            s.hasher.update(chunk.data);
            s.last_seq = chunk.seq;
            if chunk.is_final {
                let s = self.open.remove(&id).expect("open stream");
                self.finish(id, s);
            } else if !s.touched {
                s.touched = true;
                self.touched.push(id);
            }
            return Ok(());
        }
        if let Some(&final_seq) = self.finished.get(&id) {
            anyhow::ensure!(
                chunk.seq <= final_seq,
                "stream {id:016x}: chunk after its final one"
            );
            return Ok(()); // duplicate
        }
        anyhow::ensure!(
            chunk.seq == 0,
            "stream {id:016x}: first chunk has seq {}",
            chunk.seq
        );
        let mut s = OpenStream {
            hasher: Sha1::new(),
            last_seq: 0,
            touched: true,
        };
        s.hasher.update(chunk.data);
        if chunk.is_final {
            self.finish(id, s);
        } else {
            self.touched.push(id);
            self.open.insert(id, s);
        }
        Ok(())
    }

    fn finish(&mut self, id: u64, s: OpenStream) {
        self.finished.insert(id, s.last_seq);
        self.finished_in_batch
            .push((id, s.last_seq, s.hasher.finalize().into()));
    }

    /// One SQLite transaction: touched states, finished streams' Sums, the input offset.
    fn commit(&mut self, input_offset: u64) -> anyhow::Result<()> {
        let tx = self.conn.transaction().context("BEGIN")?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO streams (stream, last_seq, sha1_state) VALUES (?1, ?2, ?3)
                 ON CONFLICT (stream) DO UPDATE SET last_seq = excluded.last_seq, sha1_state = excluded.sha1_state",
            )?;
            for id in self.touched.drain(..) {
                if let Some(s) = self.open.get_mut(&id) {
                    s.touched = false;
                    upsert
                        .execute(params![id as i64, s.last_seq, s.hasher.serialize().as_slice()])
                        .context("upserting a stream state")?;
                }
            }
            let mut delete = tx.prepare_cached("DELETE FROM streams WHERE stream = ?1")?;
            let mut insert_sum =
                tx.prepare_cached("INSERT INTO sums (stream, last_seq, sha1) VALUES (?1, ?2, ?3)")?;
            for (id, last_seq, sha1) in self.finished_in_batch.drain(..) {
                delete
                    .execute([id as i64])
                    .context("deleting a finished stream")?;
                insert_sum
                    .execute(params![id as i64, last_seq, &sha1[..]])
                    .context("inserting a Sum")?;
            }
            tx.prepare_cached(
                "INSERT INTO progress (id, input_offset) VALUES (0, ?1)
                 ON CONFLICT (id) DO UPDATE SET input_offset = excluded.input_offset",
            )?
            .execute([input_offset as i64])
            .context("advancing the input offset")?;
        }
        tx.commit().context("COMMIT")
    }
}

/// Sums the whole input into a new SQLite database at `db_path`, batching like `config`.
pub fn run(input: &ChunkInput, db_path: &Path, config: &ShardConfig) -> anyhow::Result<SummerRun> {
    run_until(input, db_path, config, input.end_offset)
}

/// Sums the input from the offset stored in `db_path` (0 if new) until at least `input_end`.
pub fn run_until(
    input: &ChunkInput,
    db_path: &Path,
    config: &ShardConfig,
    input_end: u64,
) -> anyhow::Result<SummerRun> {
    let (mut summer, offset) = SqliteSummer::open(db_path)?;
    let mut frames = input.journal.frames(offset);
    let mut latency_us = latency_histogram();
    let mut txns = 0;
    let started = Instant::now();
    while frames.offset() < input_end {
        let txn_started = Instant::now();
        let (mut messages, mut input_bytes) = (0usize, 0u64);
        // The same bounds as our shard, the output delay included: a transaction ends at most
        // `txn_max_output_delay` after its first Sum.
        let mut first_output_at: Option<Instant> = None;
        while messages < config.txn_max_messages
            && input_bytes < config.txn_max_input_bytes
            && txn_started.elapsed() < config.txn_max_duration
            && first_output_at.is_none_or(|at| at.elapsed() < config.txn_max_output_delay)
        {
            let Some(frame) = frames.next().transpose().context("reading the chunk journal")? else {
                break;
            };
            for m in frames.messages(&frame) {
                summer.apply(m.context("input messages")?)?;
                messages += 1;
            }
            input_bytes += frame.end - frame.offset;
            if first_output_at.is_none() && !summer.finished_in_batch.is_empty() {
                first_output_at = Some(Instant::now());
            }
        }
        summer.commit(frames.offset())?;
        txns += 1;
        record_us(&mut latency_us, txn_started.elapsed());
    }
    let elapsed = started.elapsed();
    if frames.offset() >= input.end_offset {
        anyhow::ensure!(
            summer.open.is_empty(),
            "{} streams left open at the end",
            summer.open.len()
        );
    }
    let mut sums = HashMap::new();
    let mut q = summer.conn.prepare("SELECT stream, sha1 FROM sums")?;
    let mut rows = q.query([])?;
    while let Some(row) = rows.next()? {
        let sha1: Vec<u8> = row.get(1)?;
        let sha1: [u8; 20] = sha1
            .try_into()
            .map_err(|_| anyhow::anyhow!("a Sum is not 20 bytes"))?;
        sums.insert(row.get::<_, i64>(0)? as u64, sha1);
    }
    Ok(SummerRun {
        elapsed,
        txns,
        latency_us: Some(latency_us),
        sums,
    })
}
