//! Target `message_decode`: stream-sum messages, checkpoints and the summer's state over
//! arbitrary bytes.
//!
//! Input: `config u8` (small summer limits, so windows and limits are reached), then the bytes.
//! Checks that `Message::decode`, `Chunk/Sum/Expired::decode` and `Checkpoint::decode` never
//! panic, agree with each other and re-encode whatever they accept to the same bytes; and that
//! the summer's `restore_snapshot`/`apply_delta` never panic and accept only state that it can
//! write back out, use (finish a stream, expire streams) and restore again to the same snapshot.

use ss_consumer::checkpoint::Checkpoint;
use ss_consumer::message::{Chunk, Expired, Message, StreamId, Sum};
use ss_consumer::shard::Application;
use ss_consumer::summer::{Summer, SummerConfig};
use ss_log::Batch;

use super::input::Input;

/// Summer limits picked by the first input byte: small, so that the finished window overflows
/// and expiry triggers within a short input.
pub fn summer_config(byte: u8) -> SummerConfig {
    SummerConfig {
        max_open_streams: 1 + (byte >> 4) as usize,
        expire_after_bytes: 64,
        expire_check_interval_bytes: 32,
        finished_window: 1 + (byte & 0x0f) as usize,
    }
}

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let config = summer_config(input.u8());
    let bytes = input.rest();
    check_messages(bytes);
    check_checkpoint(bytes);
    check_summer_state(bytes, &config);
}

fn check_messages(bytes: &[u8]) {
    let message = Message::decode(bytes);
    let chunk = Chunk::decode(bytes);
    let sum = Sum::decode(bytes);
    let expired = Expired::decode(bytes);
    let mut encoded = Vec::new();
    if let Ok(c) = &chunk {
        c.encode(&mut encoded);
        assert_eq!(encoded, bytes, "chunk re-encodes differently");
        assert_eq!(message, Ok(Message::Chunk(*c)));
    }
    if let Ok(s) = &sum {
        encoded.clear();
        s.encode(&mut encoded);
        assert_eq!(encoded, bytes, "sum re-encodes differently");
        assert_eq!(message, Ok(Message::Sum(*s)));
    }
    if let Ok(e) = &expired {
        encoded.clear();
        e.encode(&mut encoded);
        assert_eq!(encoded, bytes, "expired re-encodes differently");
        assert_eq!(message, Ok(Message::Expired(*e)));
    }
    let accepted = [chunk.is_ok(), sum.is_ok(), expired.is_ok()];
    assert!(
        accepted.iter().filter(|&&ok| ok).count() <= 1,
        "tags select one decoder"
    );
    match message {
        Ok(Message::Checkpoint(b)) => assert_eq!(b, bytes),
        Ok(_) => assert!(
            accepted.contains(&true),
            "Message::decode accepted what no decoder does"
        ),
        Err(_) => assert!(
            !accepted.contains(&true),
            "Message::decode refused a valid message"
        ),
    }
}

fn check_checkpoint(bytes: &[u8]) {
    if let Ok(c) = Checkpoint::decode(bytes) {
        let mut encoded = Vec::new();
        Checkpoint::encode_header(&mut encoded, c.input_offset, c.txn_seq, c.snapshot_offset, c.kind);
        encoded.extend_from_slice(c.app_state);
        assert_eq!(encoded, bytes, "checkpoint re-encodes differently");
        assert_eq!(Message::decode(bytes), Ok(Message::Checkpoint(bytes)));
    }
}

fn snapshot(summer: &mut Summer) -> Vec<u8> {
    let mut out = Vec::new();
    summer.write_snapshot(&mut out);
    out
}

/// A snapshot the summer wrote restores into a summer that writes the same snapshot.
fn assert_snapshot_restores(snap: &[u8], config: &SummerConfig, what: &str) {
    let mut restored = Summer::new(config.clone());
    restored
        .restore_snapshot(snap)
        .unwrap_or_else(|e| panic!("{what}: the summer's own snapshot does not restore: {e}"));
    assert_eq!(
        snapshot(&mut restored),
        snap,
        "{what}: snapshot does not round-trip"
    );
}

fn check_summer_state(bytes: &[u8], config: &SummerConfig) {
    let mut from_snapshot = Summer::new(config.clone());
    if from_snapshot.restore_snapshot(bytes).is_ok() {
        let snap = snapshot(&mut from_snapshot);
        assert_snapshot_restores(&snap, config, "restored snapshot");
        exercise(&mut from_snapshot, bytes, config);
    }
    let mut from_delta = Summer::new(config.clone());
    if from_delta.apply_delta(bytes).is_ok() {
        let snap = snapshot(&mut from_delta);
        assert_snapshot_restores(&snap, config, "applied delta");
        exercise(&mut from_delta, bytes, config);
    }
}

/// What the summer must do with the final chunk [`finish_stream`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FinalChunk {
    /// The chunk carries the stream's next sequence number (an open stream) or is the first
    /// and only chunk of a stream the summer does not know: it finishes the stream.
    Finishes,
    /// The chunk repeats a sequence number the summer has seen: skipped and counted.
    Duplicate,
}

/// Picks the final chunk's sequence number for stream `id`, and what it must do, from the
/// summer's own view of the stream. An open stream whose last chunk was seq `u32::MAX` has no
/// next number, so the chunk repeats `u32::MAX`; a stream in the finished window gets seq 0.
fn final_chunk_for(summer: &Summer, id: StreamId) -> (u32, FinalChunk) {
    match (
        summer.open_stream_last_seq(id),
        summer.finished_stream_final_seq(id),
    ) {
        (Some(u32::MAX), _) => (u32::MAX, FinalChunk::Duplicate),
        (Some(last), _) => (last + 1, FinalChunk::Finishes),
        (None, Some(_)) => (0, FinalChunk::Duplicate),
        (None, None) => (0, FinalChunk::Finishes),
    }
}

/// Sends stream `id` a final chunk and checks the outcome against [`final_chunk_for`]: a chunk
/// that finishes the stream emits exactly one Sum (for `id`, at its seq) and closes it; a
/// duplicate emits nothing, counts a duplicate and leaves the stream as it was. The outcome is
/// read from what the summer emits and holds, not from its counters alone: restored counters
/// may sit at `u64::MAX`, where they saturate and no longer move (finding message_decode/0005).
fn finish_stream(summer: &mut Summer, id: StreamId, config: &SummerConfig) {
    let (seq, expected) = final_chunk_for(summer, id);
    let mut chunk = Vec::new();
    Chunk {
        stream: id,
        seq,
        is_final: true,
        data: b"end",
    }
    .encode(&mut chunk);
    let before = summer.counters();
    let open_before = summer.open_stream_last_seq(id);
    let open_count_before = summer.open_streams();
    let mut out = Batch::new();
    let result = summer.apply(&chunk, 1 << 16, &mut out);
    let emitted: Vec<Message<'_>> = ss_log::frame::messages(out.payload())
        .map(|m| Message::decode(m.expect("the summer writes valid message lists")).expect("valid message"))
        .collect();
    let after = summer.counters();
    match expected {
        FinalChunk::Duplicate => {
            result.expect("a duplicate final chunk is not a violation");
            assert!(
                emitted.is_empty(),
                "a duplicate final chunk emits nothing: {emitted:?}"
            );
            assert_eq!(
                after.duplicates,
                before.duplicates.saturating_add(1),
                "a duplicate is counted"
            );
            assert_eq!(after.sums, before.sums, "a duplicate counts no sum");
            assert_eq!(
                summer.open_stream_last_seq(id),
                open_before,
                "a duplicate changes no stream"
            );
        }
        FinalChunk::Finishes => {
            if let Err(e) = result {
                // Only a stream the summer does not know can be refused, by the open-stream limit.
                assert!(
                    open_before.is_none() && open_count_before >= config.max_open_streams,
                    "a final chunk with the next seq is refused: {e}"
                );
                return;
            }
            assert!(
                matches!(emitted.as_slice(), [Message::Sum(s)] if s.stream == id && s.last_seq == seq),
                "a final chunk yields one sum, for its stream at its seq: {emitted:?}"
            );
            assert_eq!(after.sums, before.sums.saturating_add(1), "a sum is counted");
            assert_eq!(
                after.duplicates, before.duplicates,
                "a finishing chunk is no duplicate"
            );
            assert_eq!(
                summer.open_stream_last_seq(id),
                None,
                "a finished stream is closed"
            );
            assert_eq!(
                summer.finished_stream_final_seq(id),
                Some(seq),
                "a finished stream is in the finished window"
            );
        }
    }
}

/// Uses restored state: finishes the stream named at the start of the state (the first open
/// entry's id, if any), writes a delta, runs an expiry check, and checks snapshots still restore.
fn exercise(summer: &mut Summer, bytes: &[u8], config: &SummerConfig) {
    let id = bytes
        .get(4..12)
        .map(|b| StreamId(u64::from_le_bytes(b.try_into().expect("8 bytes"))))
        .unwrap_or(StreamId(0));
    finish_stream(summer, id, config);
    let mut out = Batch::new();
    let mut delta = Vec::new();
    summer.write_delta(&mut delta);
    let open_before = summer.open_streams();
    summer
        .before_frame(1 << 20, &mut out)
        .expect("expiry is not a violation");
    assert!(summer.open_streams() <= open_before, "expiry opens no stream");
    for message in ss_log::frame::messages(out.payload()) {
        let message = message.expect("the summer writes valid message lists");
        assert!(
            matches!(
                Message::decode(message),
                Ok(Message::Sum(_) | Message::Expired(_))
            ),
            "the summer emits only sums and expiries"
        );
    }
    let snap = snapshot(summer);
    assert_snapshot_restores(&snap, config, "after use");
}
