//! cargo-fuzz entry point of the `journal_recovery` target. The body, `common::journal_recovery::run`, is shared
//! with the corpus-replay test (consumer/tests/fuzz_corpus_replay.rs).
#![no_main]

#[path = "../common/mod.rs"]
#[allow(dead_code)]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::journal_recovery::run(data));
