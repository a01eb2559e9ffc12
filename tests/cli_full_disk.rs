//! `stream-sum run` on a real full disk: a small tmpfs mounted for the test.
//!
//! Guards against a run on a full disk ending with only the consequence of the failure ("an
//! earlier append failed and was rolled back") while the cause, ENOSPC on a named journal and
//! fragment, was never printed; and checks the directory it leaves resumes and verifies once
//! space returns. Also the free-space guard (`--min-free-mb`) that stops a run before that.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Size of the tmpfs: a default run (about 600 MB/s here) fills it in well under a second.
const TMPFS_FULL_SIZE: &str = "size=16m";
/// Size for the free-space guard: room for a second or so of the rate-limited small run below.
const TMPFS_GUARD_SIZE: &str = "size=64m";
/// The guard's margin on it: it fires once about 16 MB are written.
const GUARD_MIN_FREE_MB: u64 = 48;
/// Size after "freeing space": far more than the short, rate-limited resumed run below writes.
const TMPFS_FREED_SIZE: &str = "remount,size=256m";

/// A tmpfs mounted on a fresh directory, unmounted on drop (also when an assertion fails).
struct TmpfsMount {
    path: PathBuf,
}

impl TmpfsMount {
    /// Mounts with `options` (its size), or returns why this process may not mount (so the test
    /// is skipped).
    fn mount(path: &Path, options: &str) -> Result<TmpfsMount, String> {
        let euid = effective_uid();
        if euid != Some(0) {
            return Err(format!(
                "not root (effective uid {euid:?}); mounting a tmpfs needs root"
            ));
        }
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "stream-sum-full-disk"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let denied = ["permission denied", "not permitted", "only root"]
                .iter()
                .any(|s| stderr.to_lowercase().contains(s));
            assert!(
                denied,
                "mount -t tmpfs failed for a reason other than permission: {stderr}"
            );
            return Err(format!("mount -t tmpfs was refused: {}", stderr.trim()));
        }
        Ok(TmpfsMount {
            path: path.to_path_buf(),
        })
    }

    /// Grows the tmpfs in place, as freeing space on a full disk would.
    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", options])
            .arg(&self.path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount -o {options}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (e.g. a child outlived a failed assertion): detach it lazily.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// The effective uid, from /proc/self/status (no libc dependency for one number).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// A default-sized run on a 16 MiB tmpfs runs out of space: it exits 3, and its last words name
/// the cause (no space left on device), the journal and fragment file, and what to do (free
/// space, or `--retention`); the summary's errors carry the ENOSPC too, not only the refusals
/// that followed it. The directory it leaves verifies. After the tmpfs is grown, a second run on
/// the same directory resumes (run id 2, every finished stream verified) and `verify` passes.
#[test]
fn run_on_full_tmpfs_exits_3_naming_no_space_then_resumes_and_verifies() {
    let t = temp_data();
    let mount_point = t.dir.path().join("tmpfs");
    std::fs::create_dir(&mount_point).expect("create mount point");
    // Declared after `t`, so it is dropped (unmounted) before the temporary directory goes.
    let mount = match TmpfsMount::mount(&mount_point, TMPFS_FULL_SIZE) {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED run_on_full_tmpfs_exits_3_naming_no_space_then_resumes_and_verifies: {why}");
            return;
        }
    };
    let data = mount_point.join("data");
    let data_str = data.to_str().expect("utf-8 path");

    let full = cli(&[
        "run",
        "--data",
        data_str,
        "--duration",
        "30s",
        "--progress-interval",
        "60s",
        "--min-free-mb",
        "0",
        "--json",
    ]);
    full.expect_code(3, "run on a full tmpfs");
    let last_line = full.stderr.lines().last().unwrap_or_default();
    for needle in [
        "stream-sum: error: no space left on device: journal \"",
        &format!("could not write {data_str}/journals/"),
        ".frag;",
        "Free space on the file system holding",
        "--retention",
        "run again on the same directory to resume",
    ] {
        assert!(
            last_line.contains(needle),
            "last stderr line lacks {needle:?}:\n{}",
            full.stderr
        );
    }
    let summary = full.json();
    let errors = summary["errors"].as_array().expect("errors array");
    assert!(!errors.is_empty(), "{summary}");
    for e in errors {
        let e = e.as_str().expect("error string");
        assert!(
            e.contains("no space left writing"),
            "an error without its cause: {e}"
        );
    }
    assert_eq!(u64_field(&summary, "violations"), 0, "{summary}");
    let v = verify_json(&data, 0);
    assert_eq!(
        u64_field(&v, "violations"),
        0,
        "verify of the full directory: {v}"
    );
    assert_counts_match_the_journals(&summary, &v);

    mount.remount(TMPFS_FREED_SIZE);
    // Rate-limited: unlimited, even the small run writes hundreds of MB a second.
    // The full run used the default 4 partitions; a resumed run must serve them all.
    let mut resumed_args = small_run_args(&data, "2s");
    let partitions = resumed_args.iter().position(|a| a == "--partitions").unwrap() + 1;
    resumed_args[partitions] = "4".to_string();
    resumed_args.extend(["--max-mb-per-s", "20", "--min-free-mb", "0"].map(String::from));
    let resumed = cli(&resumed_args);
    resumed.expect_code(0, "run after space returned");
    let resumed = resumed.json();
    assert_eq!(u64_field(&resumed, "run_id"), 2, "{resumed}");
    let finished = u64_field(&resumed, "streams_finished");
    assert!(finished > 0, "{resumed}");
    assert_eq!(u64_field(&resumed, "sums_verified"), finished, "{resumed}");
    assert_eq!(u64_field(&resumed, "violations"), 0, "{resumed}");

    let v = verify_json(&data, 0);
    assert_eq!(
        u64_field(&v, "violations"),
        0,
        "verify after the resumed run: {v}"
    );
    assert_eq!(u64_field(&v, "pending"), 0, "verify after the resumed run: {v}");
}

/// The free-space guard (`--min-free-mb`): a run on a 64 MiB tmpfs that keeps 48 MB free stops
/// gracefully once less is left, before the disk fills: exit 0, `stopped_by` "low free space",
/// every finished stream verified, and `verify` passes with nothing pending. Another run asking
/// for more room than is left is refused with exit 3 before it takes a run id, naming the free
/// space and `--min-free-mb`.
#[test]
fn a_run_stops_gracefully_at_the_free_space_guard_and_a_run_without_room_is_refused() {
    let t = temp_data();
    let mount_point = t.dir.path().join("tmpfs");
    std::fs::create_dir(&mount_point).expect("create mount point");
    let _mount = match TmpfsMount::mount(&mount_point, TMPFS_GUARD_SIZE) {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED a_run_stops_gracefully_at_the_free_space_guard_and_a_run_without_room_is_refused: {why}");
            return;
        }
    };
    let data = mount_point.join("data");
    let min_free = GUARD_MIN_FREE_MB.to_string();
    let mut args = small_run_args(&data, "forever");
    args.extend(["--max-mb-per-s", "20", "--min-free-mb", &min_free].map(String::from));
    let guarded = cli(&args);
    guarded.expect_code(0, "run stopped by the free-space guard");
    assert!(
        guarded
            .stderr
            .contains(&format!("under --min-free-mb {GUARD_MIN_FREE_MB} or the ")),
        "{}",
        guarded.stderr
    );
    let summary = guarded.json();
    assert_eq!(summary["stopped_by"], "low free space", "{summary}");
    let finished = u64_field(&summary, "streams_finished");
    assert!(finished > 0, "{summary}");
    assert_eq!(u64_field(&summary, "sums_verified"), finished, "{summary}");
    assert_eq!(u64_field(&summary, "violations"), 0, "{summary}");
    let v = verify_json(&data, 0);
    assert_eq!(u64_field(&v, "pending"), 0, "{v}");
    assert_eq!(u64_field(&v, "violations"), 0, "{v}");

    let runs_end = journal_end(&journal_ls(&data), "runs");
    let mut args = small_run_args(&data, "1s");
    args.extend(["--min-free-mb", "60"].map(String::from));
    let refused = cli(&args);
    refused.expect_code(3, "run with less free space than --min-free-mb");
    for needle in [
        "MB free on the file system holding",
        "under --min-free-mb 60",
        "--retention",
    ] {
        assert!(
            refused.stderr.contains(needle),
            "lacks {needle:?}: {}",
            refused.stderr
        );
    }
    assert_eq!(
        journal_end(&journal_ls(&data), "runs"),
        runs_end,
        "the refused run took a run id"
    );
}

/// Streams long enough that finishing them needs more than `--min-free-mb` (8 streams of up to
/// 850 chunks of up to 16 KiB, on a 64 MiB tmpfs keeping 8 MB): the guard stopped
/// at 8 MB free and the graceful stop then filled the disk (exit 3). It now stops while what
/// the open streams may still write fits: exit 0, every finished stream verified.
#[test]
fn the_free_space_guard_leaves_room_for_long_open_streams_to_finish() {
    let Some((guarded, v)) = run_long_streams_on_a_guarded_tmpfs(
        "the_free_space_guard_leaves_room_for_long_open_streams_to_finish",
        "16384",
        "850",
    ) else {
        return;
    };
    guarded.expect_code(0, "run with long streams stopped by the free-space guard");
    let summary = guarded.json();
    assert_eq!(summary["stopped_by"], "low free space", "{summary}");
    let finished = u64_field(&summary, "streams_finished");
    assert!(finished > 0, "{summary}");
    assert_eq!(u64_field(&summary, "sums_verified"), finished, "{summary}");
    assert_eq!(u64_field(&v, "pending"), 0, "{v}");
    assert_eq!(u64_field(&v, "violations"), 0, "{v}");
}

/// Streams that cannot finish on the disk at all (8 of up to 10,000 chunks of up to 48 KiB on a
/// 64 MiB tmpfs): the guard fired at --min-free-mb and the graceful stop filled the disk (exit
/// 3). Now the guard sees what finishing them may write exceeds what is free and abandons them,
/// as a killed chunker does (summers expire them): exit 0, nothing filled, `verify` passes.
#[test]
fn the_free_space_guard_abandons_open_streams_that_cannot_fit() {
    let Some((guarded, v)) = run_long_streams_on_a_guarded_tmpfs(
        "the_free_space_guard_abandons_open_streams_that_cannot_fit",
        "49152",
        "10000",
    ) else {
        return;
    };
    guarded.expect_code(0, "run whose open streams cannot fit");
    assert!(
        guarded.stderr.contains("abandoning the open streams"),
        "{}",
        guarded.stderr
    );
    let summary = guarded.json();
    assert_eq!(summary["stopped_by"], "low free space", "{summary}");
    assert!(u64_field(&summary, "streams_abandoned") > 0, "{summary}");
    assert_eq!(
        u64_field(&summary, "sums_verified"),
        u64_field(&summary, "streams_finished"),
        "{summary}"
    );
    assert_eq!(u64_field(&v, "violations"), 0, "{v}");
}

/// A throttled run of 8 streams of up to `max_chunks` chunks of up to `max_chunk_bytes` on a
/// 64 MiB tmpfs keeping 8 MB free, and `verify` of what it left; `None` (the test skipped) where
/// this process may not mount.
fn run_long_streams_on_a_guarded_tmpfs(
    test: &str,
    max_chunk_bytes: &str,
    max_chunks: &str,
) -> Option<(Out, serde_json::Value)> {
    let t = temp_data();
    let mount_point = t.dir.path().join("tmpfs");
    std::fs::create_dir(&mount_point).expect("create mount point");
    let _mount = match TmpfsMount::mount(&mount_point, TMPFS_GUARD_SIZE) {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            return None;
        }
    };
    let data = mount_point.join("data");
    let mut args = small_run_args(&data, "forever");
    for (flag, value) in [
        ("--max-chunk-bytes", max_chunk_bytes),
        ("--max-chunks-per-stream", max_chunks),
    ] {
        let at = args.iter().position(|a| a == flag).unwrap() + 1;
        args[at] = value.to_string();
    }
    args.extend(["--max-mb-per-s", "20", "--min-free-mb", "8"].map(String::from));
    let out = cli(&args);
    let v = verify_json(&data, 0);
    Some((out, v))
}

/// Under a file-size limit (`ulimit -f`, 4 MiB here) a fragment cannot grow past it: the run
/// was killed by SIGXFSZ (status 153, nothing said). Now the write fails with EFBIG, reported
/// as an I/O error naming the fragment, exit 3; nothing acknowledged is lost, so a resume without
/// the limit verifies every Sum.
#[test]
fn a_run_past_the_file_size_limit_exits_3_naming_the_fragment_then_resumes() {
    let t = temp_data();
    let child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -f 4096 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_stream-sum"))
        .args(["run", "--data", t.data.to_str().unwrap(), "--duration", "20s"])
        .args(["--max-mb-per-s", "40", "--progress-interval", "100s", "--json"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let out = finish(child, COMMAND_DEADLINE);
    out.expect_code(3, "a run past the file-size limit");
    assert!(
        out.stderr.contains("File too large") && out.stderr.contains(".frag"),
        "stderr does not name the fragment and EFBIG:\n{}",
        out.stderr
    );
    assert_counts_match_the_journals(&out.json(), &verify_json(&t.data, 0));
    let resumed = cli(&[
        "run",
        "--data",
        t.data.to_str().unwrap(),
        "--duration",
        "200ms",
        "--json",
    ]);
    resumed.expect_code(0, "the resume without the limit");
    let v = verify_json(&t.data, 0);
    assert_eq!(u64_field(&v, "violations"), 0, "{v}");
    assert_eq!(u64_field(&v, "pending"), 0, "{v}");
}

/// A failed run's summary counts what its journals hold: chunks, their bytes and finished streams
/// count once durable. They counted chunks and streams of the batch that failed (rolled back),
/// and a stream finished in it as "awaiting Sum".
fn assert_counts_match_the_journals(summary: &serde_json::Value, verify: &serde_json::Value) {
    for field in ["chunks", "chunk_bytes", "streams_finished"] {
        assert_eq!(
            u64_field(summary, field),
            u64_field(verify, field),
            "{field}: summary {summary}\nverify {verify}"
        );
    }
}
