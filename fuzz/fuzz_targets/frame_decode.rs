//! cargo-fuzz entry point of the `frame_decode` target. The body, `common::frame_decode::run`, is shared
//! with the corpus-replay test (consumer/tests/fuzz_corpus_replay.rs).
#![no_main]

#[path = "../common/mod.rs"]
#[allow(dead_code)]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::frame_decode::run(data));
