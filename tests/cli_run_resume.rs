//! A second `stream-sum run` on a data directory an earlier run left behind, gracefully or killed.

mod common;

use std::collections::HashSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Stream ids of the Sums in every shard log, reading each from the offset in `from` (if listed).
fn sum_streams(data: &Path, ls: &Value, from: &[(String, u64)]) -> HashSet<String> {
    let mut streams = HashSet::new();
    for name in journal_names(ls, "sums-") {
        let start = from.iter().find(|(n, _)| *n == name).map(|(_, o)| *o);
        for line in journal_read(data, &name, start) {
            if line["kind"] == "sum" {
                let stream = str_field(&line, "stream").to_string();
                assert!(streams.insert(stream.clone()), "two Sums for stream {stream}");
            }
        }
    }
    streams
}

/// A second run on the same directory resumes: it takes the next run id, its Sums name only new
/// stream ids (none of the first run's), both runs' records are in the `runs` journal, and
/// `verify` passes over both runs with nothing pending.
#[test]
fn second_run_resumes_with_new_run_id_and_new_stream_ids() {
    let t = temp_data();
    let first = small_run(&t.data, "2s");
    let ls1 = journal_ls(&t.data);
    let first_streams = sum_streams(&t.data, &ls1, &[]);
    assert_eq!(
        first_streams.len() as u64,
        u64_field(&first, "streams_finished"),
        "{first}"
    );

    let second = small_run(&t.data, "2s");
    assert_eq!(
        u64_field(&second, "run_id"),
        u64_field(&first, "run_id") + 1,
        "{second}"
    );
    assert_eq!(u64_field(&second, "violations"), 0, "{second}");
    let finished2 = u64_field(&second, "streams_finished");
    assert!(finished2 > 0, "{second}");
    assert_eq!(u64_field(&second, "sums_verified"), finished2, "{second}");

    let ls2 = journal_ls(&t.data);
    let heads1: Vec<(String, u64)> = journal_names(&ls1, "sums-")
        .into_iter()
        .map(|n| {
            let end = journal_end(&ls1, &n);
            (n, end)
        })
        .collect();
    let second_streams = sum_streams(&t.data, &ls2, &heads1);
    assert_eq!(
        second_streams.len() as u64,
        finished2,
        "Sums appended by the second run"
    );
    let reused: Vec<&String> = first_streams.intersection(&second_streams).collect();
    assert!(
        reused.is_empty(),
        "stream ids reused by the second run: {reused:?}"
    );

    let runs: Vec<u64> = journal_read(&t.data, "runs", None)
        .iter()
        .map(|r| u64_field(r, "run_id"))
        .collect();
    assert_eq!(
        runs,
        vec![u64_field(&first, "run_id"), u64_field(&second, "run_id")]
    );

    let v = verify_json(&t.data, 0);
    assert_eq!(u64_field(&v, "violations"), 0, "{v}");
    assert_eq!(u64_field(&v, "pending"), 0, "{v}");
    let finished = u64_field(&first, "streams_finished") + finished2;
    assert_eq!(u64_field(&v, "streams_finished"), finished, "{v}");
    assert_eq!(u64_field(&v, "sums_verified"), finished, "{v}");
}

/// A run killed with SIGKILL mid-way leaves unfinished streams; `verify` does not count them as
/// violations, a second run recovers the shards and exits 0, and afterwards `verify` passes with
/// nothing pending while the killed run's streams stay unfinished (and Sum-less).
#[test]
fn run_killed_mid_way_then_second_run_resumes_and_verifies() {
    let t = temp_data();
    let mut args = small_run_args(&t.data, "30s");
    args.retain(|a| a != "--json");
    let child = bin()
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn run");
    let mut child = KillOnDrop(child);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.0.try_wait().expect("try_wait").is_none(),
        "the 30s run ended early"
    );
    child.0.kill().expect("SIGKILL the run");
    let status = child.0.wait().expect("wait for the killed run");
    assert_eq!(status.signal(), Some(9), "{status:?}");

    let after_kill = verify_json(&t.data, 0);
    assert_eq!(u64_field(&after_kill, "violations"), 0, "{after_kill}");
    assert!(u64_field(&after_kill, "streams_finished") > 0, "{after_kill}");
    let unfinished = u64_field(&after_kill, "streams_unfinished");
    assert!(
        unfinished > 0,
        "a run killed mid-way left no open stream: {after_kill}"
    );

    let second = small_run(&t.data, "2s");
    assert_eq!(u64_field(&second, "run_id"), 2, "{second}");
    assert_eq!(u64_field(&second, "violations"), 0, "{second}");
    assert!(u64_field(&second, "streams_finished") > 0, "{second}");
    assert_eq!(
        u64_field(&second, "sums_verified"),
        u64_field(&second, "streams_finished"),
        "{second}"
    );

    let v = verify_json(&t.data, 0);
    assert_eq!(u64_field(&v, "violations"), 0, "{v}");
    assert_eq!(u64_field(&v, "pending"), 0, "{v}");
    assert_eq!(u64_field(&v, "streams_unfinished"), unfinished, "{v}");
    assert_eq!(
        u64_field(&v, "streams_finished"),
        u64_field(&after_kill, "streams_finished") + u64_field(&second, "streams_finished"),
        "{v}"
    );
    assert_eq!(
        u64_field(&v, "sums_verified"),
        u64_field(&v, "streams_finished"),
        "{v}"
    );
}

/// A run with fewer partitions than the directory holds would leave the others' streams without
/// a summer (an earlier run's finished streams there would never get their Sums): it is refused
/// with exit 2, naming the count to use, before it writes anything (no run id taken). More
/// partitions than the directory holds is fine, and an empty journal directory holds nothing.
#[test]
fn a_run_with_fewer_partitions_than_the_directory_holds_is_refused_and_writes_nothing() {
    let t = temp_data();
    small_run(&t.data, "1s");
    let before = journal_ls(&t.data);
    let mut args = small_run_args(&t.data, "1s");
    let at = args.iter().position(|a| a == "--partitions").unwrap() + 1;
    args[at] = "1".into();
    let out = cli(&args);
    out.expect_code(2, "run with --partitions 1 over 2 partitions");
    assert!(
        out.stderr.contains("holds data for partition 1 (") && out.stderr.contains("--partitions 2"),
        "{}",
        out.stderr
    );
    assert_eq!(
        journal_end(&journal_ls(&t.data), "runs"),
        journal_end(&before, "runs"),
        "the refused run took a run id"
    );
    // An empty journal directory (no fragment file) holds nothing to serve: it asks for no
    // partition (it asked for 8 here, and the refusal named partitions that do not exist).
    std::fs::create_dir(t.data.join("journals").join("chunks-007")).unwrap();
    args[at] = "3".into();
    let out = cli(&args);
    out.expect_code(0, "run with --partitions 3 over 2 partitions");
    assert_eq!(u64_field(&out.json(), "run_id"), 2);
    let v = verify_json(&t.data, 0);
    assert_eq!(u64_field(&v, "violations"), 0, "{v}");
}

/// The `runs` journal's last record damaged (open cannot tell that from a torn write and cuts
/// it) or the journal removed: the next run must not take the lost run's id again, or its
/// streams (same ids, and with the same seed the same content) would be skipped by the summers
/// as duplicates of the old run's and never get their Sums. It takes one past the highest run in
/// the chunk journals, says so, and both runs verify.
#[test]
fn a_run_after_the_runs_journal_lost_its_record_takes_a_fresh_run_id() {
    for damage in ["flip a byte of the last run record", "remove the runs journal"] {
        let t = temp_data();
        let first = small_run(&t.data, "1s");
        assert_eq!(u64_field(&first, "run_id"), 1, "{first}");
        let runs_dir = t.data.join("journals").join("runs");
        if damage.starts_with("flip") {
            let fragment = runs_dir.join(format!("{:020}.frag", 0));
            let mut bytes = std::fs::read(&fragment).unwrap();
            assert!(
                bytes.len() > 50,
                "{damage}: the run record is {} bytes",
                bytes.len()
            );
            bytes[50] ^= 1; // inside the record's payload
            std::fs::write(&fragment, bytes).unwrap();
        } else {
            std::fs::remove_dir_all(&runs_dir).unwrap();
        }

        let out = cli(&small_run_args(&t.data, "1s"));
        out.expect_code(0, damage);
        let second = out.json();
        assert_eq!(u64_field(&second, "run_id"), 2, "{damage}: {second}");
        assert!(
            out.stderr.contains("run records were lost"),
            "{damage}: no warning:\n{}",
            out.stderr
        );
        assert_eq!(u64_field(&second, "violations"), 0, "{damage}: {second}");
        let finished = u64_field(&first, "streams_finished") + u64_field(&second, "streams_finished");
        let v = verify_json(&t.data, 0);
        assert_eq!(u64_field(&v, "sums_verified"), finished, "{damage}: {v}");
    }
}

/// The `runs` journal cut at a frame boundary after its scan-start hint vouched for the write
/// (a restore or a copying tool's crash): `run` and `journal ls` refuse it as damage, and so does
/// `verify` now. Before, `verify` never opened `runs` and passed a directory no run could resume.
#[test]
fn verify_refuses_a_damaged_runs_journal_like_run_does() {
    let t = temp_data();
    small_run(&t.data, "200ms");
    small_run(&t.data, "200ms");
    let runs = journal_read(&t.data, "runs", None);
    assert_eq!(runs.len(), 2, "{runs:?}");
    let second = u64_field(&runs[1], "offset");
    let fragment = t
        .data
        .join("journals")
        .join("runs")
        .join(format!("{:020}.frag", 0));
    let file = std::fs::OpenOptions::new().write(true).open(&fragment).unwrap();
    file.set_len(second).unwrap();
    drop(file);

    let run = cli(&small_run_args(&t.data, "200ms"));
    run.expect_code(3, "run over a damaged runs journal");
    let verify = cli(&["verify", "--data", t.data.to_str().unwrap()]);
    verify.expect_code(3, "verify over a damaged runs journal");
    assert!(
        verify.stderr.contains("\"runs\"") && verify.stderr.contains(&fragment.display().to_string()),
        "verify does not name the runs journal's fragment:\n{}",
        verify.stderr
    );
}
