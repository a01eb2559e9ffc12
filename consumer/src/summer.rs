//! The summer: per stream, a running SHA-1 and the last sequence number; one Sum per finished
//! stream.
//!
//! Rules, applied per chunk (input offsets name where a violation was seen):
//! - a chunk with `seq <= last` of an open stream, or `seq <= final` of a recently finished one,
//!   is a duplicate (a chunker re-published after an indeterminate append): skipped and counted;
//! - `seq > last + 1` is a gap, a chunk after the final one, or a first chunk with `seq != 0`:
//!   a violation that stops the shard;
//! - a stream with no chunk for `expire_after_bytes` of input is abandoned (its chunker died): it
//!   is dropped and an [`Expired`] record is emitted. Expiry is checked before the first frame at
//!   or past each multiple of `expire_check_interval_bytes`, so it depends only on input offsets
//!   and replays identically;
//! - a new stream when `max_open_streams` are open first expires the least recently active open
//!   stream, if it had no chunk for `expire_after_bytes / 4` of input (streams abandoned by
//!   killed runs pile up faster than they age out when runs are killed often: every resume then
//!   failed at the same chunk); otherwise it is an error, as is a snapshot that would not fit.
//!
//! Delta (app state of a checkpoint), little-endian:
//! ```text
//! open_count u32,     open_count × (stream u64, last_seq u32, last_active_offset u64, sha1_state [92])
//! finished_count u32, finished_count × (stream u64, final_seq u32)      in the order they finished
//! expired_count u32,  expired_count × (stream u64)
//! counters: chunks u64, chunk_bytes u64, duplicates u64, sums u64, expired u64
//! next_expiry_check u64
//! ```
//! Snapshot: the same layout holding every open stream and the whole finished window (and no
//! expired streams). Both carry `next_expiry_check`, so that a summer recovered from a snapshot
//! plus deltas checks expiry at the same input offsets as the live one did.

use std::collections::{HashMap, VecDeque};

use sha1::digest::common::hazmat::{SerializableState, SerializedState};
use sha1::{Digest, Sha1};
use ss_log::frame::MESSAGE_LEN_PREFIX_BYTES;
use ss_log::Batch;

use crate::message::{Chunk, Cursor, DecodeError, Expired, StreamId, Sum, EXPIRED_BYTES, SUM_BYTES};
use crate::shard::{AppError, Application};

/// Bytes of a serialized running SHA-1 (sha1 crate `SerializableState`).
pub const SHA1_STATE_BYTES: usize = 92;
const OPEN_ENTRY_BYTES: usize = 8 + 4 + 8 + SHA1_STATE_BYTES;
/// Bytes of one finished-window entry in a snapshot.
const FINISHED_ENTRY_BYTES: usize = 12;

/// Summer limits. A snapshot holds 112 B per open stream and 12 B per finished-window entry, and
/// must fit in one journal frame (a shard refuses to start otherwise): the defaults (25,000 and
/// 50,000: 3.4 MB) fit the journal's default 4 MiB `frame_max_bytes`; raise both together, or
/// size `max_open_streams` with [`SummerConfig::fitting_frames_of`].
#[derive(Debug, Clone)]
pub struct SummerConfig {
    pub max_open_streams: usize,
    /// A stream with no chunk for this many bytes of input is expired.
    pub expire_after_bytes: u64,
    pub expire_check_interval_bytes: u64,
    /// How many finished streams are remembered to recognise duplicates of their chunks.
    pub finished_window: usize,
}

impl SummerConfig {
    /// Bytes of a snapshot holding `open_streams` open streams and a full finished window (at
    /// most: the reserve `write_snapshot` makes).
    pub fn snapshot_bytes_max(&self, open_streams: usize) -> u64 {
        (12 + open_streams * OPEN_ENTRY_BYTES + self.finished_window * FINISHED_ENTRY_BYTES + 48) as u64
    }

    /// The most open streams whose snapshot (with a full finished window) fits in `state_bytes`.
    fn open_streams_within(&self, state_bytes: u64) -> usize {
        let fixed = self.snapshot_bytes_max(0);
        (state_bytes.saturating_sub(fixed) / OPEN_ENTRY_BYTES as u64) as usize
    }

    /// This config with `max_open_streams` lowered, if need be, so that a snapshot fits one frame
    /// of a shard log whose frames hold `frame_max_bytes` (0 if not even the finished window fits:
    /// lower `finished_window` first).
    pub fn fitting_frames_of(self, frame_max_bytes: u64) -> SummerConfig {
        let fitting = self.open_streams_within(crate::shard::checkpoint_state_room_bytes(frame_max_bytes));
        SummerConfig {
            max_open_streams: self.max_open_streams.min(fitting),
            ..self
        }
    }
}

impl Default for SummerConfig {
    fn default() -> SummerConfig {
        SummerConfig {
            max_open_streams: 25_000,
            expire_after_bytes: 256 << 20,
            expire_check_interval_bytes: 4 << 20,
            finished_window: 50_000,
        }
    }
}

/// Counters, checkpointed with the state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SummerCounters {
    pub chunks: u64,
    pub chunk_bytes: u64,
    pub duplicates: u64,
    pub sums: u64,
    pub expired: u64,
}

#[derive(Clone)]
struct OpenStream {
    hasher: Sha1,
    last_seq: u32,
    last_active_offset: u64,
    touched: bool,
}

/// The summer application.
pub struct Summer {
    config: SummerConfig,
    open: HashMap<StreamId, OpenStream>,
    finished: HashMap<StreamId, u32>,
    finished_order: VecDeque<StreamId>,
    touched: Vec<StreamId>,
    finished_since_delta: usize,
    expired_since_delta: Vec<StreamId>,
    next_expiry_check: u64,
    counters: SummerCounters,
}

impl Summer {
    pub fn new(config: SummerConfig) -> Summer {
        assert!(config.finished_window > 0 && config.expire_check_interval_bytes > 0);
        Summer {
            next_expiry_check: config.expire_check_interval_bytes,
            config,
            open: HashMap::new(),
            finished: HashMap::new(),
            finished_order: VecDeque::new(),
            touched: Vec::new(),
            finished_since_delta: 0,
            expired_since_delta: Vec::new(),
            counters: SummerCounters::default(),
        }
    }

    pub fn counters(&self) -> SummerCounters {
        self.counters
    }

    pub fn open_streams(&self) -> usize {
        self.open.len()
    }

    /// Whether a stream is open, and its last sequence number.
    pub fn open_stream_last_seq(&self, stream: StreamId) -> Option<u32> {
        self.open.get(&stream).map(|s| s.last_seq)
    }

    /// Whether a stream is in the finished window, and its final sequence number.
    pub fn finished_stream_final_seq(&self, stream: StreamId) -> Option<u32> {
        self.finished.get(&stream).copied()
    }

    fn touch(touched: &mut Vec<StreamId>, id: StreamId, s: &mut OpenStream) {
        if !s.touched {
            s.touched = true;
            touched.push(id);
        }
    }

    fn remember_finished(&mut self, id: StreamId, final_seq: u32) {
        self.finished.insert(id, final_seq);
        self.finished_order.push_back(id);
        while self.finished_order.len() > self.config.finished_window {
            let old = self.finished_order.pop_front().expect("non-empty");
            self.finished.remove(&old);
        }
    }

    fn finish(&mut self, id: StreamId, stream: OpenStream, out: &mut Batch) {
        let sha1: [u8; 20] = stream.hasher.finalize().into();
        let sum = Sum {
            stream: id,
            last_seq: stream.last_seq,
            sha1,
        };
        out.push_with(|b| sum.encode(b));
        self.counters.sums = self.counters.sums.saturating_add(1);
        self.remember_finished(id, stream.last_seq);
        self.finished_since_delta += 1;
    }
}

/// Under a full open set, a stream idle for `expire_after_bytes / PRESSURE_EXPIRY_FRACTION` is
/// expired to make room (still several times the longest gap a live stream leaves: see
/// `expire_after_bytes`'s sizing).
const PRESSURE_EXPIRY_FRACTION: u64 = 4;

impl Summer {
    /// Expires the least recently active open stream (the lowest id among equals) if it had no
    /// chunk for `expire_after_bytes / PRESSURE_EXPIRY_FRACTION` before `frame_offset`; whether
    /// it did. Depends only on the state and the input offset, so it replays identically.
    fn expire_the_idlest(&mut self, frame_offset: u64, out: &mut Batch) -> bool {
        let horizon = frame_offset.saturating_sub(self.config.expire_after_bytes / PRESSURE_EXPIRY_FRACTION);
        let Some((&id, _)) = self
            .open
            .iter()
            .min_by_key(|(id, s)| (s.last_active_offset, **id))
            .filter(|(_, s)| s.last_active_offset < horizon)
        else {
            return false;
        };
        self.expire(id, out);
        true
    }

    /// Drops the open stream `id`: an [`Expired`] record out, and its id in the next delta.
    fn expire(&mut self, id: StreamId, out: &mut Batch) {
        let s = self.open.remove(&id).expect("open stream");
        let e = Expired {
            stream: id,
            last_seq: s.last_seq,
            last_active_offset: s.last_active_offset,
        };
        out.push_with(|b| e.encode(b));
        self.expired_since_delta.push(id);
        self.counters.expired = self.counters.expired.saturating_add(1);
    }
}

impl Application for Summer {
    fn before_frame(&mut self, frame_offset: u64, out: &mut Batch) -> Result<(), AppError> {
        if frame_offset < self.next_expiry_check {
            return Ok(());
        }
        let interval = self.config.expire_check_interval_bytes;
        self.next_expiry_check = (frame_offset / interval + 1) * interval;
        let horizon = frame_offset.saturating_sub(self.config.expire_after_bytes);
        let mut doomed: Vec<StreamId> = self
            .open
            .iter()
            .filter(|(_, s)| s.last_active_offset < horizon)
            .map(|(id, _)| *id)
            .collect();
        doomed.sort_unstable();
        for id in doomed {
            self.expire(id, out);
        }
        Ok(())
    }

    fn apply(&mut self, message: &[u8], frame_offset: u64, out: &mut Batch) -> Result<(), AppError> {
        let chunk = Chunk::decode(message).map_err(|e| AppError::Undecodable(format!("not a chunk: {e}")))?;
        let id = chunk.stream;
        self.counters.chunks = self.counters.chunks.saturating_add(1);
        if let Some(s) = self.open.get_mut(&id) {
            if chunk.seq <= s.last_seq {
                self.counters.duplicates = self.counters.duplicates.saturating_add(1);
                return Ok(());
            }
            if chunk.seq != s.last_seq + 1 {
                return Err(AppError::Violation(format!(
                    "stream {id}: gap: chunk seq {} after seq {}",
                    chunk.seq, s.last_seq
                )));
            }
            s.hasher.update(chunk.data);
            s.last_seq = chunk.seq;
            s.last_active_offset = frame_offset;
            self.counters.chunk_bytes = self.counters.chunk_bytes.saturating_add(chunk.data.len() as u64);
            if chunk.is_final {
                let s = self.open.remove(&id).expect("open stream");
                self.finish(id, s, out);
            } else {
                Self::touch(&mut self.touched, id, s);
            }
            return Ok(());
        }
        if let Some(&final_seq) = self.finished.get(&id) {
            if chunk.seq <= final_seq {
                self.counters.duplicates = self.counters.duplicates.saturating_add(1);
                return Ok(());
            }
            return Err(AppError::Violation(format!(
                "stream {id}: chunk seq {} after its final chunk seq {final_seq}",
                chunk.seq
            )));
        }
        if chunk.seq != 0 {
            return Err(AppError::Violation(format!(
                "stream {id}: first chunk seen has seq {} (expected 0: chunks lost, or the stream was expired)",
                chunk.seq
            )));
        }
        if self.open.len() >= self.config.max_open_streams && !self.expire_the_idlest(frame_offset, out) {
            return Err(AppError::Limit(format!(
                "stream {id}: too many open streams (max_open_streams {}), none of them idle for {} bytes of input; with more streams per run, use larger fragments (--fragment-max-bytes), which allow more open streams",
                self.config.max_open_streams,
                self.config.expire_after_bytes / PRESSURE_EXPIRY_FRACTION
            )));
        }
        let mut hasher = Sha1::new();
        hasher.update(chunk.data);
        self.counters.chunk_bytes = self.counters.chunk_bytes.saturating_add(chunk.data.len() as u64);
        let s = OpenStream {
            hasher,
            last_seq: 0,
            last_active_offset: frame_offset,
            touched: false,
        };
        if chunk.is_final {
            self.finish(id, s, out);
        } else {
            let s = self.open.entry(id).or_insert(s);
            Self::touch(&mut self.touched, id, s);
        }
        Ok(())
    }

    fn write_delta(&mut self, out: &mut Vec<u8>) {
        let touched = std::mem::take(&mut self.touched);
        let count_at = out.len();
        out.extend_from_slice(&0u32.to_le_bytes());
        let mut open_count = 0u32;
        for id in &touched {
            if let Some(s) = self.open.get_mut(id) {
                s.touched = false;
                write_open_entry(out, *id, s);
                open_count += 1;
            }
        }
        out[count_at..count_at + 4].copy_from_slice(&open_count.to_le_bytes());
        self.touched = touched;
        self.touched.clear();
        let n = self.finished_since_delta.min(self.finished_order.len());
        out.extend_from_slice(&(n as u32).to_le_bytes());
        for id in self.finished_order.iter().skip(self.finished_order.len() - n) {
            out.extend_from_slice(&id.0.to_le_bytes());
            out.extend_from_slice(&self.finished[id].to_le_bytes());
        }
        self.finished_since_delta = 0;
        out.extend_from_slice(&(self.expired_since_delta.len() as u32).to_le_bytes());
        for id in self.expired_since_delta.drain(..) {
            out.extend_from_slice(&id.0.to_le_bytes());
        }
        write_counters(out, &self.counters);
        out.extend_from_slice(&self.next_expiry_check.to_le_bytes());
    }

    fn delta_bytes_hint(&self) -> usize {
        self.touched.len() * OPEN_ENTRY_BYTES
            + self.finished_since_delta * 12
            + self.expired_since_delta.len() * 8
            + 64
    }

    fn apply_bytes_max(&self, frame_offset: u64, message_count: u32) -> u64 {
        // A chunk opens or touches one stream (an open entry in the delta), or finishes one (a
        // Sum out, a finished entry in the delta); a duplicate adds nothing.
        let per_chunk = OPEN_ENTRY_BYTES.max(MESSAGE_LEN_PREFIX_BYTES + SUM_BYTES + FINISHED_ENTRY_BYTES);
        // An expiry check may expire every open stream: an Expired out and an id in the delta.
        let expiries = if frame_offset >= self.next_expiry_check {
            self.open.len() * (MESSAGE_LEN_PREFIX_BYTES + EXPIRED_BYTES + 8)
        } else {
            0
        };
        // A new stream in a full open set may expire one to make room.
        let room_made = (self.open.len() + message_count as usize)
            .saturating_sub(self.config.max_open_streams)
            * (MESSAGE_LEN_PREFIX_BYTES + EXPIRED_BYTES + 8);
        (message_count as usize * per_chunk + expiries + room_made) as u64
    }

    fn snapshot_bytes_max(&self) -> u64 {
        // A state restored under larger limits (a restart with smaller frames) may already hold
        // more than this config allows: bound what it holds too.
        let config = SummerConfig {
            finished_window: self.config.finished_window.max(self.finished_order.len()),
            ..self.config.clone()
        };
        config.snapshot_bytes_max(self.config.max_open_streams.max(self.open.len()))
    }

    fn write_snapshot(&mut self, out: &mut Vec<u8>) {
        for id in self.touched.drain(..) {
            if let Some(s) = self.open.get_mut(&id) {
                s.touched = false;
            }
        }
        self.finished_since_delta = 0;
        self.expired_since_delta.clear();
        out.reserve(
            12 + self.open.len() * OPEN_ENTRY_BYTES + self.finished_order.len() * FINISHED_ENTRY_BYTES + 48,
        );
        out.extend_from_slice(&(self.open.len() as u32).to_le_bytes());
        let mut ids: Vec<&StreamId> = self.open.keys().collect();
        ids.sort_unstable();
        for id in ids {
            write_open_entry(out, *id, &self.open[id]);
        }
        out.extend_from_slice(&(self.finished_order.len() as u32).to_le_bytes());
        for id in &self.finished_order {
            out.extend_from_slice(&id.0.to_le_bytes());
            out.extend_from_slice(&self.finished[id].to_le_bytes());
        }
        out.extend_from_slice(&0u32.to_le_bytes());
        write_counters(out, &self.counters);
        out.extend_from_slice(&self.next_expiry_check.to_le_bytes());
    }

    fn restore_snapshot(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        *self = Summer::new(self.config.clone());
        let mut c = Cursor::new(bytes, "summer snapshot");
        self.read_state(&mut c)?;
        self.next_expiry_check = c.u64()?;
        c.expect_end()
    }

    fn apply_delta(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        let mut c = Cursor::new(bytes, "summer delta");
        self.read_state(&mut c)?;
        self.next_expiry_check = c.u64()?;
        c.expect_end()
    }
}

impl Summer {
    /// Reads the common delta/snapshot layout and applies it on top of the current state.
    fn read_state(&mut self, c: &mut Cursor<'_>) -> Result<(), DecodeError> {
        let open_count = c.u32()?;
        let mut opened = Vec::with_capacity((open_count as usize).min(c.bytes.len() / OPEN_ENTRY_BYTES));
        for _ in 0..open_count {
            let id = StreamId(c.u64()?);
            let last_seq = c.u32()?;
            let last_active_offset = c.u64()?;
            let hasher = read_sha1_state(c.take(SHA1_STATE_BYTES)?, id)?;
            opened.push((
                id,
                OpenStream {
                    hasher,
                    last_seq,
                    last_active_offset,
                    touched: false,
                },
            ));
        }
        let finished_count = c.u32()?;
        for _ in 0..finished_count {
            let id = StreamId(c.u64()?);
            let final_seq = c.u32()?;
            if self.finished.contains_key(&id) {
                return Err(DecodeError::new(
                    "summer state",
                    format!("stream {id} finished twice"),
                ));
            }
            self.open.remove(&id);
            self.remember_finished(id, final_seq);
        }
        let expired_count = c.u32()?;
        for _ in 0..expired_count {
            self.open.remove(&StreamId(c.u64()?));
        }
        // Removals first, then the streams open at the end of the transaction: a stream expired
        // and then started again by a late duplicate of its first chunk ends up open, as live.
        // A live stream is never open while in the finished window (its chunks are duplicates
        // there), so state that says so is corrupt: finishing it would list it finished twice.
        if let Some((id, _)) = opened.iter().find(|(id, _)| self.finished.contains_key(id)) {
            return Err(DecodeError::new(
                "summer state",
                format!("stream {id} both open and finished"),
            ));
        }
        self.open.extend(opened);
        self.counters = SummerCounters {
            chunks: c.u64()?,
            chunk_bytes: c.u64()?,
            duplicates: c.u64()?,
            sums: c.u64()?,
            expired: c.u64()?,
        };
        Ok(())
    }
}

/// Restores a running SHA-1, refusing states whose length count would overflow when hashing
/// continues (the sha1 crate trusts it; a corrupt or crafted checkpoint must not panic).
fn read_sha1_state(bytes: &[u8], id: StreamId) -> Result<Sha1, DecodeError> {
    const BLOCK_LEN_AT: usize = 20;
    const BLOCK_LEN_MAX: u64 = 1 << 50;
    let block_len = u64::from_le_bytes(bytes[BLOCK_LEN_AT..BLOCK_LEN_AT + 8].try_into().expect("8 bytes"));
    if block_len > BLOCK_LEN_MAX {
        return Err(DecodeError::new(
            "summer state",
            format!("SHA-1 state of stream {id} claims {block_len} blocks"),
        ));
    }
    let state = SerializedState::<Sha1>::try_from(bytes)
        .map_err(|_| DecodeError::new("summer state", "bad SHA-1 state length"))?;
    Sha1::deserialize(&state)
        .map_err(|_| DecodeError::new("summer state", format!("invalid SHA-1 state of stream {id}")))
}

fn write_open_entry(out: &mut Vec<u8>, id: StreamId, s: &OpenStream) {
    out.extend_from_slice(&id.0.to_le_bytes());
    out.extend_from_slice(&s.last_seq.to_le_bytes());
    out.extend_from_slice(&s.last_active_offset.to_le_bytes());
    out.extend_from_slice(s.hasher.serialize().as_slice());
}

fn write_counters(out: &mut Vec<u8>, c: &SummerCounters) {
    for v in [c.chunks, c.chunk_bytes, c.duplicates, c.sums, c.expired] {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Message, Sum};

    fn chunk(stream: u64, seq: u32, is_final: bool, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        Chunk {
            stream: StreamId(stream),
            seq,
            is_final,
            data,
        }
        .encode(&mut v);
        v
    }

    fn sums(out: &Batch) -> Vec<Sum> {
        ss_log::frame::messages(out.payload())
            .filter_map(|m| match Message::decode(m.unwrap()).unwrap() {
                Message::Sum(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    /// The shard refuses a shard log whose frames cannot hold `snapshot_bytes_max`, and ends a
    /// transaction before `apply_bytes_max` could overflow its frame: both must be upper bounds.
    #[test]
    fn snapshot_and_apply_bounds_hold_at_the_limits() {
        let config = SummerConfig {
            max_open_streams: 40,
            finished_window: 30,
            expire_after_bytes: 1_000,
            expire_check_interval_bytes: 500,
        };
        let mut s = Summer::new(config.clone());
        let mut out = Batch::new();
        for id in 0..50 {
            s.apply(&chunk(1000 + id, 0, true, b"done"), 0, &mut out).unwrap();
        }
        let input: Vec<Vec<u8>> = (0..40).map(|id| chunk(id, 0, false, b"open")).collect();
        let before = (out.payload().len() + s.delta_bytes_hint()) as u64;
        let bound = s.apply_bytes_max(0, input.len() as u32);
        for c in &input {
            s.apply(c, 0, &mut out).unwrap();
        }
        let after = (out.payload().len() + s.delta_bytes_hint()) as u64;
        assert!(after - before <= bound, "{} > {bound}", after - before);
        let hint = s.delta_bytes_hint();
        let mut delta = Vec::new();
        s.write_delta(&mut delta);
        assert!(
            delta.len() <= hint,
            "the hint bounds the delta: {} > {hint}",
            delta.len()
        );
        let mut snapshot = Vec::new();
        s.write_snapshot(&mut snapshot);
        assert_eq!(
            snapshot.len() as u64,
            s.snapshot_bytes_max(),
            "a full summer's snapshot is the bound"
        );
        // An expiry check past every stream's horizon expires all 40: within the bound too.
        let mut expiries = Batch::new();
        let before = s.delta_bytes_hint() as u64;
        let bound = s.apply_bytes_max(10_000, 0);
        s.before_frame(10_000, &mut expiries).unwrap();
        assert_eq!(s.open_streams(), 0);
        let added = expiries.payload().len() as u64 + s.delta_bytes_hint() as u64 - before;
        assert!(
            added > 0 && added <= bound,
            "expiring every stream: {added} > {bound}"
        );
    }

    #[test]
    fn stream_sum_equals_sha1_of_its_chunks_and_duplicates_are_skipped() {
        let mut s = Summer::new(SummerConfig::default());
        let mut out = Batch::new();
        s.apply(&chunk(1, 0, false, b"hello "), 0, &mut out).unwrap();
        s.apply(&chunk(1, 0, false, b"hello "), 8, &mut out).unwrap();
        s.apply(&chunk(1, 1, true, b"world"), 16, &mut out).unwrap();
        s.apply(&chunk(1, 1, true, b"world"), 24, &mut out).unwrap();
        let got = sums(&out);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].sha1, <[u8; 20]>::from(Sha1::digest(b"hello world")));
        assert_eq!(s.counters().duplicates, 2);
    }

    #[test]
    fn gaps_late_chunks_and_missing_first_chunks_are_violations() {
        let mut s = Summer::new(SummerConfig::default());
        let mut out = Batch::new();
        s.apply(&chunk(1, 0, false, b"a"), 0, &mut out).unwrap();
        let violation = |e: AppError| match e {
            AppError::Violation(text) => text,
            AppError::Limit(text) | AppError::Undecodable(text) => panic!("a violation, not {text}"),
        };
        let e = violation(s.apply(&chunk(1, 2, false, b"c"), 8, &mut out).unwrap_err());
        assert!(e.contains("0000000000000001") && e.contains("gap"), "{e}");
        s.apply(&chunk(2, 0, true, b""), 16, &mut out).unwrap();
        let e = violation(s.apply(&chunk(2, 1, false, b"x"), 24, &mut out).unwrap_err());
        assert!(e.contains("after its final"), "{e}");
        let e = violation(s.apply(&chunk(3, 5, false, b"x"), 32, &mut out).unwrap_err());
        assert!(e.contains("expected 0"), "{e}");
    }

    #[test]
    fn snapshot_plus_deltas_restore_the_same_state() {
        let mut live = Summer::new(SummerConfig::default());
        let mut out = Batch::new();
        let mut snap = Vec::new();
        live.apply(&chunk(1, 0, false, b"a"), 0, &mut out).unwrap();
        live.apply(&chunk(2, 0, false, b"b"), 0, &mut out).unwrap();
        live.write_snapshot(&mut snap);
        live.apply(&chunk(1, 1, true, b"c"), 8, &mut out).unwrap();
        live.apply(&chunk(2, 1, false, b"d"), 8, &mut out).unwrap();
        live.apply(&chunk(3, 0, false, b"e"), 8, &mut out).unwrap();
        let mut delta = Vec::new();
        live.write_delta(&mut delta);
        let mut restored = Summer::new(SummerConfig::default());
        restored.restore_snapshot(&snap).unwrap();
        restored.apply_delta(&delta).unwrap();
        assert_eq!(restored.counters(), live.counters());
        assert_eq!(restored.open_streams(), 2);
        for s in [&mut live, &mut restored] {
            let mut o = Batch::new();
            s.apply(&chunk(2, 2, true, b"!"), 16, &mut o).unwrap();
            s.apply(&chunk(1, 1, true, b"c"), 16, &mut o).unwrap();
            assert_eq!(sums(&o)[0].sha1, <[u8; 20]>::from(Sha1::digest(b"bd!")));
        }
        assert_eq!(restored.counters(), live.counters());
    }

    /// Fuzz finding message_decode/0004: a delta that opens a stream still in the finished
    /// window (never written live) is refused instead of leaving the stream open and finished.
    #[test]
    fn state_with_a_stream_both_open_and_finished_is_refused() {
        let mut out = Batch::new();
        let mut finished = Summer::new(SummerConfig::default());
        finished.apply(&chunk(1, 0, true, b"a"), 0, &mut out).unwrap();
        let mut snap = Vec::new();
        finished.write_snapshot(&mut snap);
        let mut open = Summer::new(SummerConfig::default());
        open.apply(&chunk(1, 0, false, b"a"), 0, &mut out).unwrap();
        let mut delta = Vec::new();
        open.write_delta(&mut delta);
        let mut restored = Summer::new(SummerConfig::default());
        restored.restore_snapshot(&snap).unwrap();
        let e = restored.apply_delta(&delta).unwrap_err();
        assert!(e.to_string().contains("both open and finished"), "{e}");
    }

    #[test]
    fn abandoned_streams_expire_by_input_progress() {
        let config = SummerConfig {
            expire_after_bytes: 100,
            expire_check_interval_bytes: 50,
            ..Default::default()
        };
        let mut s = Summer::new(config);
        let mut out = Batch::new();
        s.apply(&chunk(1, 0, false, b"a"), 0, &mut out).unwrap();
        s.before_frame(60, &mut out).unwrap();
        assert_eq!(s.open_streams(), 1);
        s.before_frame(160, &mut out).unwrap();
        assert_eq!(s.open_streams(), 0);
        assert_eq!(s.counters().expired, 1);
    }

    /// Streams abandoned by runs killed in quick succession filled the open set before any was
    /// idle for `expire_after_bytes`, and the next new stream failed the shard at the same chunk
    /// on every resume. A new stream in a full set now expires the idlest open stream if it was
    /// idle for a quarter of that (within `apply_bytes_max`), and is an error only if none was.
    #[test]
    fn a_new_stream_in_a_full_open_set_expires_the_idlest_or_fails() {
        let config = SummerConfig {
            max_open_streams: 2,
            expire_after_bytes: 400,
            expire_check_interval_bytes: 1 << 40,
            ..Default::default()
        };
        let mut s = Summer::new(config);
        let mut out = Batch::new();
        s.apply(&chunk(1, 0, false, b"a"), 0, &mut out).unwrap();
        s.apply(&chunk(2, 0, false, b"b"), 50, &mut out).unwrap();
        // Stream 1 idle for 99 bytes, under 400 / 4: no room.
        let err = s.apply(&chunk(3, 0, false, b"c"), 99, &mut out).unwrap_err();
        assert!(matches!(err, AppError::Limit(_)), "{err:?}");
        assert!(format!("{err:?}").contains("--fragment-max-bytes"), "{err:?}");
        // At 101, stream 1 (the idlest) is expired for stream 3, within the bound.
        let before = (out.payload().len() + s.delta_bytes_hint()) as u64;
        let bound = s.apply_bytes_max(101, 1);
        s.apply(&chunk(3, 0, false, b"c"), 101, &mut out).unwrap();
        let added = (out.payload().len() + s.delta_bytes_hint()) as u64 - before;
        assert!(added <= bound, "{added} > {bound}");
        assert_eq!(s.open_streams(), 2);
        assert_eq!(s.counters().expired, 1);
        let expired: Vec<u64> = ss_log::frame::messages(out.payload())
            .filter_map(|m| match Message::decode(m.unwrap()).unwrap() {
                Message::Expired(e) => Some(e.stream.0),
                _ => None,
            })
            .collect();
        assert_eq!(expired, [1]);
        // Stream 2 goes on; stream 1's next chunk is a violation, as after any expiry.
        s.apply(&chunk(2, 1, true, b"b"), 120, &mut out).unwrap();
        assert_eq!(sums(&out).len(), 1);
        assert!(matches!(
            s.apply(&chunk(1, 1, false, b"a"), 130, &mut out),
            Err(AppError::Violation(_))
        ));
    }
}
