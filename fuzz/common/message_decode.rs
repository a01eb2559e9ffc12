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

/// Uses restored state: finishes the stream named at the start of the state (the first open
/// entry's id, if any), writes a delta, runs an expiry check, and checks snapshots still restore.
fn exercise(summer: &mut Summer, bytes: &[u8], config: &SummerConfig) {
    let mut out = Batch::new();
    let id = bytes
        .get(4..12)
        .map(|b| StreamId(u64::from_le_bytes(b.try_into().expect("8 bytes"))))
        .unwrap_or(StreamId(0));
    let seq = summer.open_stream_last_seq(id).map_or(0, |s| s.saturating_add(1));
    let mut chunk = Vec::new();
    Chunk {
        stream: id,
        seq,
        is_final: true,
        data: b"end",
    }
    .encode(&mut chunk);
    let before = summer.counters();
    if summer.apply(&chunk, 1 << 16, &mut out).is_ok() && summer.counters().duplicates == before.duplicates {
        assert_eq!(
            summer.counters().sums,
            before.sums.saturating_add(1),
            "a final chunk yields one sum"
        );
        assert_eq!(
            summer.open_stream_last_seq(id),
            None,
            "a finished stream is closed"
        );
    }
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
