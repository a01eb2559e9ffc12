//! cargo-fuzz entry point of the `op_sequence` target. The body, `common::op_sequence::run`, is shared
//! with the corpus-replay test (consumer/tests/fuzz_corpus_replay.rs).
#![no_main]

#[path = "../common/mod.rs"]
#[allow(dead_code)]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::op_sequence::run(data));
