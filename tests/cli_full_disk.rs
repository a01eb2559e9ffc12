//! `stream-sum run` on a real full disk: a small tmpfs mounted for the test.
//!
//! Guards against a run on a full disk ending with only the consequence of the failure ("an
//! earlier append failed and was rolled back") while the cause, ENOSPC on a named journal and
//! fragment, was never printed; and checks the directory it leaves resumes and verifies once
//! space returns.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Size of the tmpfs: a default run (about 600 MB/s here) fills it in well under a second.
const TMPFS_FULL_SIZE: &str = "size=16m";
/// Size after "freeing space": far more than the short, rate-limited resumed run below writes.
const TMPFS_FREED_SIZE: &str = "remount,size=256m";

/// A tmpfs mounted on a fresh directory, unmounted on drop (also when an assertion fails).
struct TmpfsMount {
    path: PathBuf,
}

impl TmpfsMount {
    /// Mounts, or returns why this process may not mount (so the test is skipped).
    fn mount(path: &Path) -> Result<TmpfsMount, String> {
        let euid = effective_uid();
        if euid != Some(0) {
            return Err(format!(
                "not root (effective uid {euid:?}); mounting a tmpfs needs root"
            ));
        }
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", TMPFS_FULL_SIZE, "stream-sum-full-disk"])
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
    let mount = match TmpfsMount::mount(&mount_point) {
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

    mount.remount(TMPFS_FREED_SIZE);
    // Rate-limited: unlimited, even the small run writes hundreds of MB a second.
    // The full run used the default 4 partitions; a resumed run must serve them all.
    let mut resumed_args = small_run_args(&data, "2s");
    let partitions = resumed_args.iter().position(|a| a == "--partitions").unwrap() + 1;
    resumed_args[partitions] = "4".to_string();
    resumed_args.extend(["--max-mb-per-s".to_string(), "20".to_string()]);
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
