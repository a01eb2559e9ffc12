//! The bodies of the fuzz targets, in plain Rust (no libFuzzer), so that the cargo-fuzz entry
//! points in `fuzz/fuzz_targets/` and the corpus-replay test in
//! `consumer/tests/fuzz_corpus_replay.rs` run exactly the same code on an input.
//!
//! - [`frame_decode`]: frame header/frame/message-list decoding and fragment scans over arbitrary
//!   bytes; whatever validates re-encodes to the same bytes.
//! - [`journal_recovery`]: opening a journal whose directory image (fragment bytes, lengths,
//!   names) was mutated from a valid one; reads validate, an append survives a reopen.
//! - [`message_decode`]: stream-sum messages, checkpoints and the summer's snapshot/delta state.
//! - [`op_sequence`]: appends, conditional appends, crashes, faults, reopens, reads and retention
//!   against an in-memory model of what was acknowledged.
//!
//! Each `run(data)` panics on a violated property and returns normally otherwise. [`seeds`]
//! builds the committed seed corpus.

pub mod frame_decode;
pub mod input;
pub mod journal_recovery;
pub mod message_decode;
pub mod op_sequence;
pub mod seeds;

/// Names of the fuzz targets, as `cargo fuzz list` shows them.
pub const TARGETS: [&str; 4] = [
    "frame_decode",
    "journal_recovery",
    "message_decode",
    "op_sequence",
];
