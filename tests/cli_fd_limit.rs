//! Data directories with more fragments than the usual soft open-file limit.
//!
//! Guards against `run`, `verify` and `journal` failing with EMFILE ("Too many open files") once
//! a directory holds about `ulimit -n` fragments (each open journal keeps a descriptor per
//! fragment): two default 30 s runs reach the common soft limit of 1024.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// Fewer descriptors than the directory below has fragments.
const LOW_LIMIT: &str = "64";

/// A directory of well over 64 fragments (1 MiB each).
fn many_fragments(data: &Path) -> usize {
    let out = cli(&[
        "run",
        "--data",
        data.to_str().unwrap(),
        "--duration",
        "1s",
        "--partitions",
        "2",
        "--max-mb-per-s",
        "120",
        "--fragment-max-bytes",
        "1048576",
        "--progress-interval",
        "60s",
        "--json",
    ]);
    out.expect_code(0, "run");
    let ls = journal_ls(data);
    let fragments: usize = ls["journals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["fragments"].as_array().unwrap().len())
        .sum();
    assert!(fragments > 80, "only {fragments} fragments: {ls}");
    fragments
}

/// `verify` under a shell's limits `limits` (e.g. `-Sn 64`).
fn verify_under(limits: &str, data: &Path) -> Out {
    let script = format!("ulimit {limits} && exec \"$0\" verify --data \"$1\" --json");
    let child = Command::new("sh")
        .args([
            "-c",
            &script,
            env!("CARGO_BIN_EXE_stream-sum"),
            data.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    finish(child, COMMAND_DEADLINE)
}

/// A soft limit below the fragment count, with room under the hard limit: the command raises its
/// own soft limit and verifies the directory.
#[test]
fn verify_raises_a_low_soft_open_file_limit_to_read_many_fragments() {
    let t = temp_data();
    many_fragments(&t.data);
    let out = verify_under(&format!("-Sn {LOW_LIMIT}"), &t.data);
    out.expect_code(0, "verify with a soft limit of 64");
    assert_eq!(u64_field(&out.json(), "violations"), 0);
}

/// A hard limit below the fragment count: exit 3, naming the file it could not open and the
/// limits, and saying what to raise.
#[test]
fn verify_under_a_low_hard_open_file_limit_names_the_limit_and_the_fix() {
    let t = temp_data();
    many_fragments(&t.data);
    let out = verify_under(&format!("-n {LOW_LIMIT}"), &t.data);
    out.expect_code(3, "verify with a hard limit of 64");
    for needle in [".frag", "Too many open files", "hard limit 64", "ulimit -Hn"] {
        assert!(out.stderr.contains(needle), "lacks {needle:?}: {}", out.stderr);
    }
}
