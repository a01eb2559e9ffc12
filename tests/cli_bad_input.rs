//! Bad input to the real `stream-sum` binary: each gets its exit code (2 usage, 3 operational)
//! and a message on stderr naming what is wrong.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// Unknown flags and bad values exit 2 before touching any data directory, naming the flag and
/// the value on stderr.
#[test]
fn usage_errors_exit_2_and_name_the_flag() {
    let t = temp_data();
    let data = t.data.to_str().unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (&["run", "--data", data, "--bogus"], &["--bogus"]),
        (
            &["run", "--data", data, "--duration", "abc"],
            &["--duration", "abc"],
        ),
        (
            &["run", "--data", data, "--partitions", "0"],
            &["--partitions", "0"],
        ),
        (&["run", "--data", data, "--chunkers", "0"], &["--chunkers", "0"]),
        (&["run", "--data", data, "--streams=-1"], &["--streams", "-1"]),
        (&["run", "--data", data, "--sla", "soon"], &["--sla", "soon"]),
        (
            &["run", "--data", data, "--fragment-max-bytes", "4096"],
            &["--fragment-max-bytes", "4096"],
        ),
        // Terabyte fragments once passed, took a run id, and failed at their first memory map.
        (
            &["run", "--data", data, "--fragment-max-bytes", "99999999999999"],
            &["--fragment-max-bytes", "99999999999999", "1 GiB"],
        ),
        (
            &[
                "run",
                "--data",
                data,
                "--fragment-max-bytes",
                "1048576",
                "--max-chunk-bytes",
                "4000000",
            ],
            &["--fragment-max-bytes", "1048576", "4327680"],
        ),
        // A rate that leaves a chunker under 1 KB/s (it once panicked the chunker, and the run hung).
        (
            &["run", "--data", data, "--chunkers", "1", "--max-mb-per-s", "1e-7"],
            &["--max-mb-per-s", "--chunkers 1", "at least 0.001"],
        ),
        // --streams x --chunkers overflowing (a wrapped product once passed the limit).
        (
            &[
                "run",
                "--data",
                data,
                "--chunkers",
                "2",
                "--streams",
                "9223372036854775809",
            ],
            &["--streams x --chunkers"],
        ),
        (&["verify", "--data", data, "--bogus"], &["--bogus"]),
        (
            &["journal", "read", "--data", data, "runs", "--from", "x"],
            &["--from", "x"],
        ),
        (&["journal", "frobnicate"], &["frobnicate"]),
        // The JetStream backend's flags (an adversarial pass found each accepted): an empty URL
        // list once exited 3, an empty entry passed, a zero lease TTL made ~850 shard hand-offs in
        // 2 s, and `soak --nats` and `--metrics-addr` with `--nats` ran without the cluster or
        // the server they name. All before any connection: the port below is closed.
        (&["run", "--nats", ""], &["--nats", "at least one server URL"]),
        (&["verify", "--nats", " "], &["--nats", "at least one server URL"]),
        (
            &["run", "--nats", "nats://127.0.0.1:1,,x"],
            &["--nats", "empty entry"],
        ),
        (
            &["journal", "ls", "--nats", "nats://:4222"],
            &["--nats", "names no host"],
        ),
        (
            &["run", "--nats", "nats://127.0.0.1:1", "--lease-ttl", "0s"],
            &["--lease-ttl", "0s", "from 1s"],
        ),
        (
            &["soak", "--nats", "nats://127.0.0.1:1"],
            &["soak is not supported with --nats"],
        ),
        (
            &[
                "run",
                "--nats",
                "nats://127.0.0.1:1",
                "--metrics-addr",
                "127.0.0.1:0",
            ],
            &["--metrics-addr is not supported with --nats"],
        ),
        (
            &["journal", "read", "--data", data, "../x"],
            &["invalid journal name", "../x"],
        ),
    ];
    for (args, named) in cases {
        let out = cli(args);
        out.expect_code(2, &format!("{args:?}"));
        for n in *named {
            assert!(
                out.stderr.contains(n),
                "{args:?}: stderr does not name {n:?}:\n{}",
                out.stderr
            );
        }
        assert!(out.stdout.is_empty(), "{args:?}: stdout:\n{}", out.stdout);
    }
    assert!(!t.data.exists(), "a usage error created the data directory");
}

/// `verify`, `journal ls` and `journal read` on a directory that does not exist exit 3 with a
/// message naming the directory, and do not create it.
#[test]
fn read_only_commands_on_missing_directory_exit_3_naming_it() {
    let t = temp_data();
    let missing = t.dir.path().join("no-such-data");
    let d = missing.to_str().unwrap();
    for args in [
        vec!["verify", "--data", d],
        vec!["verify", "--data", d, "--json"],
        vec!["journal", "ls", "--data", d],
        vec!["journal", "read", "--data", d, "chunks-000"],
    ] {
        let out = cli(&args);
        out.expect_code(3, &format!("{args:?}"));
        assert!(
            out.stderr.contains(d),
            "{args:?}: stderr does not name {d}:\n{}",
            out.stderr
        );
        assert!(
            out.stderr.contains("does not exist"),
            "{args:?}: stderr does not say what is wrong:\n{}",
            out.stderr
        );
    }
    assert!(
        !missing.exists(),
        "a read-only command created the data directory"
    );
}

/// `journal read` of a journal the directory does not hold exits 3, naming the journal.
#[test]
fn journal_read_of_missing_journal_exits_3_naming_it() {
    let t = temp_data();
    small_run(&t.data, "300ms");
    let out = cli(&[
        "journal",
        "read",
        "--data",
        t.data.to_str().unwrap(),
        "chunks-999",
    ]);
    out.expect_code(3, "journal read chunks-999");
    assert!(out.stderr.contains("chunks-999"), "stderr:\n{}", out.stderr);
    assert!(out.stderr.contains("does not exist"), "stderr:\n{}", out.stderr);
    assert!(out.stdout.is_empty(), "stdout:\n{}", out.stdout);
}

/// While one `run` holds the data directory, a second `run` exits 3 saying it is in use (also
/// through another data directory whose `journals` is a symlink to it), and
/// `verify`, `journal ls` and `journal read` still work on it (verify finds no violation in the
/// live directory: Sums it sees always have their chunks).
#[test]
fn run_on_directory_in_use_exits_3_while_read_only_commands_work() {
    let t = temp_data();
    let d = t.data.to_str().unwrap();
    // Throttled, and until killed: the verifies below read everything it wrote, and on a loaded
    // machine an unthrottled 30 s holder wrote gigabytes and ended before they did.
    let mut args = small_run_args(&t.data, "forever");
    args.retain(|a| a != "--json");
    args.extend(["--max-mb-per-s", "20"].map(String::from));
    let child = bin()
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the holding run");
    let mut holder = KillOnDrop(child);
    // The start line is printed once the directory lock is held.
    let mut stderr = BufReader::new(holder.0.stderr.take().expect("stderr"));
    let mut line = String::new();
    let started = Instant::now();
    while !line.starts_with("stream-sum: run 1 over") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).expect("read stderr") > 0,
            "holder exited early"
        );
        assert!(started.elapsed() < COMMAND_DEADLINE, "holder never started");
    }
    // Let it publish for a while, so the read-only commands meet a directory being written.
    std::thread::sleep(Duration::from_millis(500));

    let second = cli(&small_run_args(&t.data, "1s"));
    second.expect_code(3, "second run");
    assert!(second.stderr.contains("in use"), "stderr:\n{}", second.stderr);
    assert!(
        second.stderr.contains(d),
        "stderr does not name {d}:\n{}",
        second.stderr
    );

    // The same journals reached through another data directory, whose journals/ is a symlink:
    // refused too (a lock file's lock did not cover this, so two writers shared the journals),
    // and verify there sees the live run.
    let other = t.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::os::unix::fs::symlink(t.data.join("journals"), other.join("journals")).unwrap();
    let through = cli(&small_run_args(&other, "1s"));
    through.expect_code(3, "a run through a symlinked journals/");
    assert!(through.stderr.contains("in use"), "stderr:\n{}", through.stderr);
    assert_eq!(verify_json(&other, 0)["live"], true);

    for _ in 0..3 {
        let v = verify_json(&t.data, 0);
        assert_eq!(u64_field(&v, "violations"), 0, "verify of a live directory: {v}");
    }
    let ls = journal_ls(&t.data);
    assert!(journal_names(&ls, "chunks-").len() == 2, "{ls}");
    let runs = journal_read(&t.data, "runs", None);
    assert_eq!(runs.len(), 1, "the refused run must not record a run: {runs:?}");

    assert!(
        holder.0.try_wait().expect("try_wait").is_none(),
        "the holding run ended early"
    );
    holder.0.kill().expect("kill the holding run");
    holder.0.wait().expect("wait");
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("read stderr");
}

/// Flips one payload byte of a frame in the middle of a finished run's chunk fragment (valid
/// frames follow it): `journal read` and `verify` exit 3 with an error naming the fragment file
/// and the damaged frame's offset.
#[test]
fn corrupt_chunk_fragment_exits_3_naming_fragment_and_offset() {
    let t = temp_data();
    small_run(&t.data, "500ms");
    let ls = journal_ls(&t.data);
    let fragment = &journal_fragments(&ls, "chunks-000")[0];
    let (begin, end) = (u64_field(fragment, "begin"), u64_field(fragment, "end"));
    let path = str_field(fragment, "path").to_string();
    let mut frames: Vec<u64> = journal_read(&t.data, "chunks-000", None)
        .iter()
        .map(|l| u64_field(l, "offset"))
        .collect();
    frames.dedup();
    // The first frame at or past the fragment's middle, with at least one frame after it.
    let middle = begin + (end - begin) / 2;
    let i = frames
        .iter()
        .position(|&o| o >= middle)
        .expect("a frame past the middle");
    let damaged = frames[i];
    assert!(
        frames.get(i + 1).is_some_and(|&o| o < end),
        "no valid frame follows {damaged}"
    );
    // Byte 4 of the frame's first message: past the 40-byte header and the 4-byte length prefix.
    let flip_at = damaged - begin + 40 + 4;
    let mut bytes = std::fs::read(&path).expect("read fragment");
    bytes[flip_at as usize] ^= 0xff;
    std::fs::write(&path, &bytes).expect("write fragment");

    let file_name = Path::new(&path)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let d = t.data.to_str().unwrap();
    let damaged_from = damaged.to_string();
    for args in [
        vec!["journal", "read", "--data", d, "chunks-000"],
        // Damage right at --from is damage, not a --from that misses a frame.
        vec![
            "journal",
            "read",
            "--data",
            d,
            "chunks-000",
            "--from",
            &damaged_from,
        ],
        vec!["verify", "--data", d],
        vec!["verify", "--data", d, "--json"],
    ] {
        let out = cli(&args);
        out.expect_code(3, &format!("{args:?}"));
        assert!(
            out.stderr.contains(&file_name),
            "{args:?}: stderr does not name {file_name}:\n{}",
            out.stderr
        );
        assert!(
            out.stderr.contains(&format!("offset {damaged}")),
            "{args:?}: stderr does not name offset {damaged}:\n{}",
            out.stderr
        );
    }
}

/// `journal read` into a pipe closed after one line (like `| head -1`) exits 0 quietly.
#[test]
fn journal_read_into_closed_pipe_exits_0() {
    let t = temp_data();
    small_run(&t.data, "500ms");
    let ls = journal_ls(&t.data);
    let end = journal_end(&ls, "chunks-000");
    assert!(
        end > 1 << 20,
        "chunks-000 holds only {end} bytes, too few to fill a pipe"
    );
    let mut child = bin()
        .args([
            "journal",
            "read",
            "--data",
            t.data.to_str().unwrap(),
            "chunks-000",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn journal read");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("read one line");
    let first: serde_json::Value = serde_json::from_str(&first).expect("first line is JSON");
    assert_eq!(first["kind"], "chunk", "{first}");
    drop(stdout);
    let out = finish(child, COMMAND_DEADLINE);
    out.expect_code(0, "journal read | head -1");
    assert!(out.stderr.is_empty(), "stderr:\n{}", out.stderr);
}

/// A shard log damaged in the middle (valid frames follow): `run` exits 3 naming the shard log's
/// fragment, and publishes nothing first. Shards recover before any chunker starts, so the chunk
/// journals end where they did, and a second `run` reports the same damage (chunks published on
/// top of it once led the next run to a different, misleading diagnosis).
#[test]
fn a_run_refused_for_a_damaged_shard_log_publishes_no_chunk_first() {
    let t = temp_data();
    small_run(&t.data, "1s");
    let ls = journal_ls(&t.data);
    let fragment = journal_fragments(&ls, "sums-000")[0].clone();
    let begin = u64_field(&fragment, "begin");
    let path = str_field(&fragment, "path").to_string();
    let lines = journal_read(&t.data, "sums-000", None);
    // Recovery reads from the last checkpoint's snapshot on: damage a frame it reads, with a
    // valid frame after it (so it is damage, not a torn tail).
    let snapshot = lines
        .iter()
        .rev()
        .find(|l| l["kind"] == "checkpoint")
        .map(|l| u64_field(l, "snapshot_offset"))
        .expect("a checkpoint in sums-000");
    let mut frames: Vec<u64> = lines
        .iter()
        .map(|l| u64_field(l, "offset"))
        .filter(|&o| o > snapshot)
        .collect();
    frames.dedup();
    assert!(
        frames.len() >= 2,
        "too few frames after the snapshot at {snapshot}: {frames:?}"
    );
    let damaged = frames[(frames.len() - 1) / 2];
    let mut bytes = std::fs::read(&path).expect("read fragment");
    // Byte 4 of the frame's first message: past the 40-byte header and the 4-byte length prefix.
    bytes[(damaged - begin + 40 + 4) as usize] ^= 0xff;
    std::fs::write(&path, &bytes).expect("write fragment");
    let chunk_ends = |ls: &serde_json::Value| -> Vec<u64> {
        journal_names(ls, "chunks-")
            .iter()
            .map(|n| journal_end(ls, n))
            .collect()
    };
    let before = chunk_ends(&ls);

    for attempt in ["first", "second"] {
        let out = cli(&small_run_args(&t.data, "1s"));
        out.expect_code(3, &format!("{attempt} run over a damaged shard log"));
        assert!(
            out.stderr.contains(&path) && out.stderr.contains(&format!("offset {damaged}")),
            "{attempt} run: stderr does not name {path} at offset {damaged}:\n{}",
            out.stderr
        );
        assert_eq!(
            chunk_ends(&journal_ls(&t.data)),
            before,
            "{attempt} run published chunks before refusing"
        );
    }
}

/// A chunk journal that lost its tail (here its last fragment cut to half) while its shard had
/// checkpointed past that. With the scan-start hint of the clean close, which records the last
/// write as durable, open itself refuses the cut fragment (exit 3, naming it and the hint).
/// Without the hint (as if lost), the cut reads as a torn tail, and `verify` still exits 3
/// naming both journals, as damage, instead of exit 1 with "Sum for an unfinished stream" for
/// every stream the cut took.
#[test]
fn verify_calls_a_checkpoint_past_its_inputs_end_damage_not_a_violation() {
    let t = temp_data();
    small_run(&t.data, "1s");
    let ls = journal_ls(&t.data);
    let fragments = journal_fragments(&ls, "chunks-000");
    let last = fragments.last().expect("a fragment");
    let path = str_field(last, "path");
    let len = std::fs::metadata(path).unwrap().len();
    assert!(len > 4096, "{path} holds only {len} bytes");
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let out = cli(&["verify", "--data", t.data.to_str().unwrap()]);
    out.expect_code(3, "verify over a chunk journal cut below its scan-start hint");
    // Refused at open when the cut lies below the hint's write, else by the checkpoint check.
    assert!(
        (out.stderr.contains(path) && out.stderr.contains("scan-start hint"))
            || (out.stderr.contains("\"chunks-000\"") && out.stderr.contains("\"sums-000\"")),
        "stderr names neither the cut fragment and the hint nor both journals:\n{}",
        out.stderr
    );

    let hint = std::path::Path::new(path).with_file_name("scan-start.hint");
    std::fs::remove_file(&hint).expect("remove the scan-start hint");
    let out = cli(&["verify", "--data", t.data.to_str().unwrap()]);
    out.expect_code(3, "verify over a chunk journal that lost its tail");
    assert!(
        out.stderr.contains("\"chunks-000\"") && out.stderr.contains("\"sums-000\""),
        "stderr does not name both journals:\n{}",
        out.stderr
    );
}

/// A stray file among the journals is not a journal: `journal ls`, `verify` and `run` step over
/// it. A path that exists but is not a data directory (a file, an empty directory) is named as
/// such, not as missing.
#[test]
fn stray_files_are_not_journals_and_a_non_data_directory_is_named_as_such() {
    let t = temp_data();
    small_run(&t.data, "500ms");
    std::fs::write(t.data.join("journals").join("README"), "notes\n").unwrap();
    let d = t.data.to_str().unwrap();
    cli(&["journal", "ls", "--data", d]).expect_code(0, "journal ls beside a stray file");
    cli(&["verify", "--data", d]).expect_code(0, "verify beside a stray file");

    let file = t.dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let empty = t.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for path in [&file, &empty] {
        let p = path.to_str().unwrap();
        for args in [vec!["verify", "--data", p], vec!["journal", "ls", "--data", p]] {
            let out = cli(&args);
            out.expect_code(3, &format!("{args:?}"));
            assert!(
                out.stderr.contains("is not a stream-sum data directory") && out.stderr.contains(p),
                "{args:?}:\n{}",
                out.stderr
            );
        }
    }
}

/// A shard log's last fragment overwritten whole (garbage from its first byte, as a bad copy or
/// another file put in its place would leave): no frame in it is valid, so it once read as a
/// torn tail from offset 0, and `verify` passed with its Sums "pending" while `run` cut them all.
/// The scan-start hint of the clean close records those writes as durable: `verify` and `run`
/// exit 3, naming the fragment and the hint, and `run` leaves the file as it was.
#[test]
fn a_shard_log_fragment_overwritten_whole_is_damage_not_a_torn_tail() {
    let t = temp_data();
    small_run(&t.data, "1s");
    let ls = journal_ls(&t.data);
    let last = journal_fragments(&ls, "sums-000")
        .last()
        .cloned()
        .expect("a fragment");
    let path = str_field(&last, "path").to_string();
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let garbage: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(&path, &garbage).unwrap();

    let verify = cli(&["verify", "--data", t.data.to_str().unwrap()]);
    verify.expect_code(3, "verify over an overwritten shard-log fragment");
    let run = cli(&small_run_args(&t.data, "1s"));
    run.expect_code(3, "run over an overwritten shard-log fragment");
    for out in [&verify, &run] {
        assert!(
            out.stderr.contains(&path) && out.stderr.contains("scan-start hint"),
            "stderr does not name {path} and the hint:\n{}",
            out.stderr
        );
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "run changed the damaged fragment"
    );
}

/// A stdout that cannot take the summary (here /dev/full: ENOSPC) does not replace the verdict:
/// a run that found violations still exits 1 and says on stderr that its output was lost (it
/// panicked in `println!` and exited 101), and `verify` still exits with its own status.
#[test]
fn an_unwritable_stdout_keeps_the_exit_status_of_the_verdict() {
    let t = temp_data();
    let mut args = small_run_args(&t.data, "1s");
    args.extend(["--sla", "0s"].map(String::from));
    let run = finish(spawn_with_stdout(&args, dev_full()), COMMAND_DEADLINE);
    run.expect_code(1, "run with violations, stdout on /dev/full");
    assert!(
        run.stderr.contains("could not write the output to stdout"),
        "{}",
        run.stderr
    );
    let verify_args = ["verify", "--data", t.data.to_str().unwrap(), "--json"];
    let verify = finish(spawn_with_stdout(&verify_args, dev_full()), COMMAND_DEADLINE);
    assert_ne!(verify.code, Some(101), "{}", verify.stderr);
    assert!(
        verify.stderr.contains("could not write the output to stdout"),
        "{}",
        verify.stderr
    );
}

/// A shard log removed whole while its chunk journal holds chunks: its Sums and checkpoints are
/// gone, and a run would sum the partition again from its start. `verify` and `run` both refuse
/// it as damage (exit 3) naming both journals, and the refused run creates nothing in its place.
#[test]
fn a_missing_shard_log_beside_its_chunk_journal_is_damage_for_verify_and_run() {
    let t = temp_data();
    small_run(&t.data, "500ms");
    let d = t.data.to_str().unwrap();
    let shard_log = t.data.join("journals").join("sums-001");
    std::fs::remove_dir_all(&shard_log).expect("remove sums-001");
    each_refused_as_damage(
        &[
            vec!["verify", "--data", d],
            vec!["run", "--data", d, "--duration", "1s"],
        ],
        &["\"chunks-001\"", "\"sums-001\" is missing"],
    );
    assert!(!shard_log.exists(), "the refused run created sums-001 again");
}

/// A stderr that cannot be written: its reader gone (`run 2>&1 | head -2`) or `2>/dev/full`. Each
/// message to it once panicked the thread that spoke: the shard threads died, the run hung
/// before publishing anything and ignored SIGTERM, and `2>/dev/full` made every exit 101. Now a
/// run finishes with its verdict, and `verify` of a missing directory still exits 3.
#[test]
fn an_unwritable_stderr_neither_hangs_a_run_nor_changes_its_exit_status() {
    let t = temp_data();
    let args = small_run_args(&t.data, "1s");
    let start = |stderr: Stdio| {
        bin()
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn stream-sum")
    };
    // The reader of stderr goes away before the run's first word.
    let mut closed = start(Stdio::piped());
    drop(closed.stderr.take());
    let status = wait_deadline(&mut closed, COMMAND_DEADLINE);
    assert_eq!(status.code(), Some(0), "run with its stderr reader gone");
    let mut full_run = start(dev_full().into());
    let status = wait_deadline(&mut full_run, COMMAND_DEADLINE);
    assert_eq!(status.code(), Some(0), "run 2>/dev/full");
    let missing = t.dir.path().join("missing");
    let mut verify = bin()
        .arg("verify")
        .arg("--data")
        .arg(&missing)
        .stdout(Stdio::null())
        .stderr(dev_full())
        .spawn()
        .expect("spawn verify");
    let status = wait_deadline(&mut verify, COMMAND_DEADLINE);
    assert_eq!(
        status.code(),
        Some(3),
        "verify of a missing directory 2>/dev/full"
    );
}

/// A FIFO named like a fragment: read-only commands once blocked forever in open(2) waiting for
/// a writer. Every command now refuses it (exit 3) naming the file.
#[test]
fn a_fifo_where_a_fragment_should_be_is_refused_not_waited_on() {
    let t = temp_data();
    small_run(&t.data, "300ms");
    let fifo = t
        .data
        .join("journals")
        .join("chunks-000")
        .join("00000000099999999992.frag");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    let d = t.data.to_str().unwrap();
    each_refused_as_damage(
        &[
            vec!["verify", "--data", d],
            vec!["journal", "ls", "--data", d],
            vec!["run", "--data", d, "--duration", "0s"],
        ],
        &["00000000099999999992.frag", "not a regular file"],
    );
}

/// Runs each command line, expecting exit 3 with every one of `needles` on stderr.
fn each_refused_as_damage(commands: &[Vec<&str>], needles: &[&str]) {
    for args in commands {
        let out = cli(args);
        out.expect_code(3, &format!("{args:?}"));
        for needle in needles {
            assert!(
                out.stderr.contains(needle),
                "{args:?}: stderr lacks {needle:?}:\n{}",
                out.stderr
            );
        }
    }
}

/// A run refused for too little free space creates nothing (before, it left the directory, its
/// `LOCK` and `journals/`), and `verify` over a directory that holds no chunk journal exits 3:
/// a script's `run; verify` must not pass where nothing ran.
#[test]
fn a_run_refused_for_free_space_creates_nothing_and_verify_over_no_journals_exits_3() {
    let t = temp_data();
    let data = t.data.to_str().unwrap();
    let refused = cli(&["run", "--data", data, "--min-free-mb", "1000000000000"]);
    refused.expect_code(3, "run under --min-free-mb");
    assert!(
        refused.stderr.contains("MB free on the file system holding"),
        "{}",
        refused.stderr
    );
    assert!(!t.data.exists(), "the refused run created {}", t.data.display());
    std::fs::create_dir_all(t.data.join("journals")).unwrap();
    let verify = cli(&["verify", "--data", data]);
    verify.expect_code(3, "verify over a directory without journals");
    assert!(
        verify
            .stderr
            .contains("holds no chunk journals: nothing to verify"),
        "{}",
        verify.stderr
    );
}

/// A shard log whose last checkpoint names the middle of an input frame (made here by summing
/// another journal whose frames lie elsewhere into `sums-000`, then removing that journal) is
/// refused by `verify` as damage to the shard log (before, it passed: exit 0), and by `run`
/// naming the shard log's checkpoint, not only "chunks-000 is corrupt: bad magic".
#[test]
fn a_checkpoint_inside_an_input_frame_is_damage_to_the_shard_log_for_verify_and_run() {
    use ss_consumer::message::{Chunk, StreamId};
    use ss_consumer::shard::{Shard, ShardConfig};
    use ss_consumer::summer::{Summer, SummerConfig};
    use ss_log::{Batch, Log, Options};
    let t = temp_data();
    let chunk_batch = |stream: u64, data: &[u8]| {
        let mut batch = Batch::new();
        let chunk = Chunk {
            stream: StreamId(stream),
            seq: 0,
            is_final: false,
            data,
        };
        batch.push_with(|b| chunk.encode(b));
        batch
    };
    {
        let log = Log::open(&t.data, Options::default()).unwrap();
        let elsewhere = log.journal("chunks-elsewhere").unwrap();
        elsewhere.append(&chunk_batch(1, b"a")).unwrap();
        let chunks = log.journal("chunks-000").unwrap();
        chunks.append(&chunk_batch(2, &[7; 4096])).unwrap();
        let mut shard = Shard::recover(
            "shard-000",
            Summer::new(SummerConfig::default()),
            &elsewhere,
            log.journal("sums-000").unwrap(),
            ShardConfig::default(),
        )
        .unwrap();
        while shard.durable_input_offset() < elsewhere.durable_head() {
            shard.run_transaction(Duration::from_millis(10)).unwrap();
            shard.settle().unwrap();
        }
    }
    std::fs::remove_dir_all(t.data.join("journals").join("chunks-elsewhere")).unwrap();
    let d = t.data.to_str().unwrap();
    let verify = cli(&["verify", "--data", d]);
    verify.expect_code(3, "verify over a checkpoint inside an input frame");
    assert!(
        verify
            .stderr
            .contains("the shard log \"sums-000\" checkpoints input offset")
            && verify.stderr.contains("where no frame begins"),
        "{}",
        verify.stderr
    );
    let run = cli(&["run", "--data", d, "--partitions", "1", "--duration", "1s"]);
    run.expect_code(3, "run over a checkpoint inside an input frame");
    assert!(
        run.stderr.contains("sums-000") && run.stderr.contains("checkpoint resumes input"),
        "{}",
        run.stderr
    );
}
