//! The checkpoint a shard writes as the last message of every transaction frame.
//!
//! ```text
//! 'K' 1  input_offset u64  txn_seq u64  snapshot_offset u64  kind u8  app_state (rest)
//! ```
//!
//! - `input_offset`: the input journal offset the shard has consumed up to (a frame boundary);
//!   after a restart the shard reads input from here.
//! - `txn_seq`: 0 for the shard's first transaction, then +1 per transaction.
//! - `snapshot_offset`: shard-log offset of the frame holding the latest snapshot (this frame's
//!   own offset when `kind` is snapshot). Recovery reads the last frame, jumps here, restores the
//!   snapshot and applies the deltas after it, so it never scans older history.
//! - `kind`: 0 = delta (app state of what this transaction touched), 1 = snapshot (full state).

use crate::message::{Cursor, DecodeError, MESSAGE_VERSION, TAG_CHECKPOINT};

/// Whether a checkpoint carries a delta or a full snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointKind {
    Delta,
    Snapshot,
}

/// A decoded checkpoint; `app_state` is the application's delta or snapshot bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint<'a> {
    pub input_offset: u64,
    pub txn_seq: u64,
    pub snapshot_offset: u64,
    pub kind: CheckpointKind,
    pub app_state: &'a [u8],
}

/// Bytes of a checkpoint before its app state.
pub const CHECKPOINT_HEADER_BYTES: usize = 2 + 8 + 8 + 8 + 1;

impl<'a> Checkpoint<'a> {
    /// Writes the checkpoint header to `out`; the caller appends the app state after it.
    pub fn encode_header(
        out: &mut Vec<u8>,
        input_offset: u64,
        txn_seq: u64,
        snapshot_offset: u64,
        kind: CheckpointKind,
    ) {
        out.extend_from_slice(&[TAG_CHECKPOINT, MESSAGE_VERSION]);
        out.extend_from_slice(&input_offset.to_le_bytes());
        out.extend_from_slice(&txn_seq.to_le_bytes());
        out.extend_from_slice(&snapshot_offset.to_le_bytes());
        out.push(match kind {
            CheckpointKind::Delta => 0,
            CheckpointKind::Snapshot => 1,
        });
    }

    pub fn decode(bytes: &'a [u8]) -> Result<Checkpoint<'a>, DecodeError> {
        let mut c = Cursor::new(bytes, "checkpoint");
        c.header(TAG_CHECKPOINT)?;
        let input_offset = c.u64()?;
        let txn_seq = c.u64()?;
        let snapshot_offset = c.u64()?;
        let kind = match c.u8()? {
            0 => CheckpointKind::Delta,
            1 => CheckpointKind::Snapshot,
            k => return Err(DecodeError::new("checkpoint", format!("unknown kind {k}"))),
        };
        Ok(Checkpoint {
            input_offset,
            txn_seq,
            snapshot_offset,
            kind,
            app_state: c.bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trips_and_rejects_truncation() {
        let mut buf = Vec::new();
        Checkpoint::encode_header(&mut buf, 10, 2, 0, CheckpointKind::Snapshot);
        buf.extend_from_slice(b"state");
        let c = Checkpoint::decode(&buf).unwrap();
        assert_eq!(
            c,
            Checkpoint {
                input_offset: 10,
                txn_seq: 2,
                snapshot_offset: 0,
                kind: CheckpointKind::Snapshot,
                app_state: b"state"
            }
        );
        for n in 0..CHECKPOINT_HEADER_BYTES {
            assert!(Checkpoint::decode(&buf[..n]).is_err());
        }
    }
}
