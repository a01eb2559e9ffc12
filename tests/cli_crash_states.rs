//! Directories in states a real crash leaves (SIGKILL right after a fragment roll made the new
//! fragment's name durable, before any frame reached it; or a zero-filled spare renamed in),
//! built on disk by hand, then resumed through the CLI: no Sum repeated, no run id reused, and
//! `verify` passes. Before the fix, the shard log's empty last fragment read as "no last frame",
//! so a shard restarted from input offset 0 and repeated every Sum, and the `runs` journal's
//! read as "no run yet", so the run id (and with it stream ids) was reused.

mod common;

use std::collections::HashSet;
use std::path::Path;

use common::*;

/// Creates, in each journal whose name starts with one of `prefixes`, the file of the fragment
/// that would begin at its head: empty, or `zero_bytes` of zeros.
fn add_fragment_at_heads(data: &Path, prefixes: &[&str], zero_bytes: usize) -> usize {
    let ls = journal_ls(data);
    let mut added = 0;
    for prefix in prefixes {
        for name in journal_names(&ls, prefix) {
            let end = journal_end(&ls, &name);
            let path = data.join("journals").join(&name).join(format!("{end:020}.frag"));
            if !path.exists() {
                std::fs::write(&path, vec![0u8; zero_bytes]).unwrap();
                added += 1;
            }
        }
    }
    added
}

fn assert_resumes_cleanly(data: &Path, first: &serde_json::Value) {
    let second = small_run(data, "2s");
    assert_eq!(u64_field(&second, "violations"), 0, "{second}");
    assert_eq!(
        u64_field(&second, "run_id"),
        u64_field(first, "run_id") + 1,
        "the run id is not reused: {second}"
    );
    let ls = journal_ls(data);
    let mut streams = HashSet::new();
    for name in journal_names(&ls, "sums-") {
        for line in journal_read(data, &name, None) {
            if line["kind"] == "sum" {
                let stream = str_field(&line, "stream").to_string();
                assert!(
                    streams.insert(stream.clone()),
                    "two Sums for stream {stream} in {name}"
                );
            }
        }
    }
    let runs: Vec<u64> = journal_read(data, "runs", None)
        .iter()
        .map(|r| u64_field(r, "run_id"))
        .collect();
    assert_eq!(
        runs.len(),
        runs.iter().collect::<HashSet<_>>().len(),
        "run ids {runs:?}"
    );
    let v = verify_json(data, 0);
    assert_eq!(u64_field(&v, "violations"), 0, "{v}");
}

#[test]
fn empty_fragment_after_a_roll_repeats_no_sum_and_reuses_no_run_id() {
    let t = temp_data();
    let first = small_run(&t.data, "2s");
    let added = add_fragment_at_heads(&t.data, &["sums-", "chunks-", "runs"], 0);
    assert!(added >= 3, "fragments added: {added}");
    assert_resumes_cleanly(&t.data, &first);
}

#[test]
fn zero_filled_fragment_after_a_roll_repeats_no_sum_and_reuses_no_run_id() {
    let t = temp_data();
    let first = small_run(&t.data, "2s");
    let added = add_fragment_at_heads(&t.data, &["sums-", "chunks-", "runs"], 1 << 20);
    assert!(added >= 3, "fragments added: {added}");
    assert_resumes_cleanly(&t.data, &first);
}
