//! The crash suite's short versions, run in CI against the real binary: SIGKILL cycles, component
//! faults inside one process, the stall that the SLA check must catch, and a deliberately broken
//! summer that the suite must catch.

use std::process::Command;

fn stream_sum() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stream-sum"))
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}); stdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Runs `crash-test ARGS --json --fragment-max-bytes 1048576` on `data`, asserts it succeeded
/// with nothing lost, duplicated or mismatched, and returns its report.
fn crash_test_holding(args: &[&str], data: &std::path::Path) -> serde_json::Value {
    let out = stream_sum()
        .arg("crash-test")
        .args(args)
        .args(["--json", "--fragment-max-bytes", "1048576", "--data"])
        .arg(data)
        .output()
        .unwrap();
    let report = json_of(&out);
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{report}");
    for field in ["lost", "duplicated", "mismatched", "verify_violations"] {
        assert_eq!(report[field], 0, "{field}: {report}");
    }
    report
}

/// 20 SIGKILL cycles of a child `run`, then a graceful run and verify: nothing acknowledged is
/// lost, nothing duplicated or mismatched. Fragments of 1 MiB, so kills land inside rolls.
#[test]
fn crash_test_sigkill_20_cycles_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let report = crash_test_holding(&["--cycles", "20", "--seed", "7"], &dir.path().join("data"));
    assert_eq!(report["cycles"], 20);
    assert!(report["kills"].as_u64().unwrap() >= 10, "{report}");
    assert!(report["streams_finished"].as_u64().unwrap() > 100, "{report}");
    assert_eq!(report["sums_verified"], report["streams_finished"]);
}

/// The same with `--retention`: fragments behind the shards' checkpoints are removed and recycled
/// as new fragments (renamed under flock claims) while children are killed. The parent checks
/// its history after every cycle, so nearly every acknowledged final is verified before
/// retention removes it; everything it saw must hold.
#[test]
fn crash_test_sigkill_with_retention_and_recycling_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let report = crash_test_holding(&["--cycles", "12", "--seed", "11", "--retention"], &data);
    assert!(report["kills"].as_u64().unwrap() >= 6, "{report}");
    let finished = report["streams_finished"].as_u64().unwrap();
    let verified = report["sums_verified"].as_u64().unwrap();
    assert!(finished > 100 && verified * 10 >= finished * 9, "{report}");
    let first_fragment = std::fs::read_dir(data.join("journals/chunks-000"))
        .unwrap()
        .filter_map(|e| ss_log::fragment::parse_fragment_name(&e.unwrap().file_name().to_string_lossy()))
        .min()
        .unwrap();
    assert!(first_fragment > 0, "retention removed nothing: {report}");
}

/// Runs `crash-test` with deliberately broken summers (`--unsafe-split-commit`) and `more` args,
/// and asserts that it exits 1 with lost Sums.
fn crash_test_catches_split_summers(more: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = stream_sum()
        .args(["crash-test", "--cycles", "20", "--seed", "11", "--json"])
        .arg("--unsafe-split-commit")
        // Unthrottled children keep the summers busy, so kills land between the two appends.
        .args(["--max-mb-per-s", "1000"])
        .args(more)
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let report = json_of(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report["lost"].as_u64().unwrap() > 0, "{report}");
}

/// Summers that write their checkpoint and their Sums in two appends lose Sums when killed in
/// between; the crash suite must notice (proof that it can fail).
#[test]
fn crash_test_catches_summers_that_split_sums_from_their_checkpoint() {
    crash_test_catches_split_summers(&[]);
}

/// The same under `--retention` with 1 MiB fragments, where retention removes most of what the
/// final check would look at: the checks after each cycle must still catch the losses.
#[test]
fn crash_test_with_retention_catches_summers_that_split_sums_from_their_checkpoint() {
    crash_test_catches_split_summers(&["--retention", "--fragment-max-bytes", "1048576"]);
}

/// 20 s of shard restarts, second owners and chunker kills inside one process: every finished
/// stream still gets exactly one correct Sum, and verify agrees.
#[test]
fn run_with_component_faults_for_20s_keeps_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = stream_sum()
        .args([
            "run",
            "--duration",
            "20s",
            "--faults",
            "components",
            "--seed",
            "5",
            "--json",
            "--streams",
            "32",
        ])
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let summary = json_of(&out);
    assert!(out.status.success(), "{summary}");
    assert_eq!(summary["violations"], 0);
    assert!(summary["faults"].as_array().unwrap().len() >= 5, "{summary}");
    assert_eq!(summary["sums_verified"], summary["streams_finished"]);
    let verify = stream_sum()
        .args(["verify", "--json", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let v = json_of(&verify);
    assert!(verify.status.success(), "{v}");
    assert_eq!(v["violations"], 0);
    assert_eq!(v["pending"], 0);
}

/// A shard stalled past the SLA must be caught: the run stops with a violation naming a stream.
#[test]
fn run_with_a_stalled_shard_fails_the_sla() {
    let dir = tempfile::tempdir().unwrap();
    let out = stream_sum()
        .args([
            "run",
            "--duration",
            "30s",
            "--faults",
            "stall-shard",
            "--sla",
            "1s",
            "--json",
            "--streams",
            "16",
        ])
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let summary = json_of(&out);
    assert_eq!(out.status.code(), Some(1), "{summary}");
    let messages = summary["violation_messages"].to_string();
    assert!(messages.contains("missing Sum for stream"), "{summary}");
}

/// A directory that needs other run flags than the children get (more partitions than
/// `--partitions`): the first child refuses its command line, and `crash-test` exits 2 with the
/// child's reason, as a usage error, not 3 as if something had broken.
#[test]
fn crash_test_over_a_directory_its_children_refuse_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = stream_sum()
        .args([
            "run",
            "--duration",
            "300ms",
            "--partitions",
            "3",
            "--max-mb-per-s",
            "5",
        ])
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = stream_sum()
        .args(["crash-test", "--cycles", "2", "--partitions", "2", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refused its arguments") && stderr.contains("--partitions 3"),
        "{stderr}"
    );
}
