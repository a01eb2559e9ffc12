//! cargo-fuzz entry point of the `message_decode` target. The body, `common::message_decode::run`, is shared
//! with the corpus-replay test (consumer/tests/fuzz_corpus_replay.rs).
#![no_main]

#[path = "../common/mod.rs"]
#[allow(dead_code)]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::message_decode::run(data));
