//! One-screen summary of the journal benches as ratios to raw baselines measured in the same run.
//!
//! Each comparison runs in alternating rounds (journal, baseline, journal, baseline, ...) so that
//! drift on a shared machine hits both sides alike; the ratio reported is the median of the
//! per-round ratios. Prints a table, then one JSON object on the last line.
//!
//! Usage: `cargo run --release -p ss-benches --bin bench-summary [ROUNDS [ROW]]`, from the
//! repository root (ROW: only the rows whose JSON names contain it, e.g. `append_small`); files go
//! to `$SS_BENCH_DIR` or `target/bench-scratch` (journals for reads and opens are cached there
//! between runs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use ss_benches::append::{
    append_concurrent, append_sequential, raw_commits, ConcurrentShape, ExtendingFile, JournalFixture,
    PrewrittenFile,
};
use ss_benches::open::{leave_crashed_journal, open_timed, CrashedState, OpenFixture};
use ss_benches::read::{copy_all, crc32c_all, crc32c_per_frame, read_all, ReadFixture, READ_JOURNAL};
use ss_benches::{pattern_bytes, scratch};
use ss_log::frame::{frame_len_bytes, journal_salt, HEADER_LEN, MESSAGE_LEN_PREFIX_BYTES};
use ss_log::{Batch, Options};

const MIB: u64 = 1 << 20;

/// The journal options benched: the defaults, with zero-filled spare fragments if
/// `SS_BENCH_PREALLOCATE` is set.
fn journal_options() -> Options {
    Options {
        preallocate: std::env::var_os("SS_BENCH_PREALLOCATE").is_some(),
        ..Options::default()
    }
}
/// Time each side of a comparison runs per round.
const SLICE: Duration = Duration::from_millis(700);

/// CPU time this process has used (user + system), from `/proc/self/stat` (in 1/100 s ticks: the
/// USER_HZ that Linux reports these fields in).
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    let after_comm = &stat[stat.rfind(')').expect("comm field") + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; 12 and 13 after "pid (comm) ".
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / 100.0
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Runs `op` (which does some work and returns how many units it did) until `SLICE` has passed;
/// returns units per second.
fn rate(mut op: impl FnMut() -> (u64, Duration)) -> f64 {
    let mut units = 0;
    let mut spent = Duration::ZERO;
    while spent < SLICE {
        let (n, d) = op();
        units += n;
        spent += d;
    }
    units as f64 / spent.as_secs_f64()
}

/// Per-round rates of two sides and the median of their per-round ratios.
struct Paired {
    ours: Vec<f64>,
    raw: Vec<f64>,
}

impl Paired {
    fn run(rounds: usize, mut ours: impl FnMut() -> f64, mut raw: impl FnMut() -> f64) -> Paired {
        let mut p = Paired {
            ours: Vec::new(),
            raw: Vec::new(),
        };
        for _ in 0..rounds {
            p.ours.push(ours());
            p.raw.push(raw());
        }
        p
    }

    fn ratio(&self) -> f64 {
        median(self.ours.iter().zip(&self.raw).map(|(o, r)| o / r).collect())
    }

    fn ours(&self) -> f64 {
        median(self.ours.clone())
    }

    fn raw(&self) -> f64 {
        median(self.raw.clone())
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "meets target"
    } else {
        "MISSES target"
    }
}

fn frame_bytes(payload_bytes: usize) -> usize {
    frame_len_bytes(payload_bytes + MESSAGE_LEN_PREFIX_BYTES) as usize
}

fn large_appends(root: &Path, rounds: usize, label: &str, payload_bytes: usize) -> Value {
    let fixture = JournalFixture::new(root, journal_options());
    let raw_dir = scratch::temp_dir(root, "raw-");
    let mut prewritten = PrewrittenFile::create(&raw_dir.path().join("prewritten"), 64 * MIB);
    let mut extending = ExtendingFile::create(
        &raw_dir.path().join("extending"),
        Options::default().fragment_max_bytes,
    );
    let batch = Batch::single(&pattern_bytes(payload_bytes, 1));
    let frame = pattern_bytes(frame_bytes(payload_bytes), 2);
    let timed = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        f();
        (payload_bytes as u64, start.elapsed())
    };
    let mut extending_rates = Vec::new();
    let paired = Paired::run(
        rounds,
        || {
            let r = rate(|| {
                (
                    payload_bytes as u64,
                    append_sequential(&fixture.journal, &batch, 1),
                )
            });
            fixture.trim();
            r
        },
        || {
            extending_rates.push(rate(|| timed(&mut || extending.write_durable(&frame))));
            rate(|| timed(&mut || prewritten.write_durable(&frame)))
        },
    );
    let ratio = paired.ratio();
    let ratio_extending = paired.ratio_to(&extending_rates);
    println!(
        "append {label} frames, 1 writer   journal {:8.1} MB/s {:7.0} frames/s | raw pre-written {:8.1} MB/s | ratio {:.2} (target >= 0.85: {}) | raw extending {:8.1} MB/s, ratio {:.2}",
        paired.ours() / 1e6,
        paired.ours() / payload_bytes as f64,
        paired.raw() / 1e6,
        ratio,
        verdict(ratio >= 0.85),
        median(extending_rates.clone()) / 1e6,
        ratio_extending,
    );
    json!({
        "payload_bytes": payload_bytes,
        "journal_mb_s": paired.ours() / 1e6,
        "journal_frames_s": paired.ours() / payload_bytes as f64,
        "raw_prewritten_mb_s": paired.raw() / 1e6,
        "raw_extending_mb_s": median(extending_rates.clone()) / 1e6,
        "ratio_to_prewritten": ratio,
        "ratio_to_extending": ratio_extending,
        "rounds_journal_mb_s": paired.ours.iter().map(|r| r / 1e6).collect::<Vec<_>>(),
        "rounds_raw_prewritten_mb_s": paired.raw.iter().map(|r| r / 1e6).collect::<Vec<_>>(),
        "rounds_raw_extending_mb_s": extending_rates.iter().map(|r| r / 1e6).collect::<Vec<_>>(),
    })
}

impl Paired {
    fn ratio_to(&self, other: &[f64]) -> f64 {
        median(self.ours.iter().zip(other).map(|(o, r)| o / r).collect())
    }
}

fn small_appends(root: &Path, rounds: usize) -> Value {
    const RECORD_BYTES: usize = 128;
    let shape = ConcurrentShape {
        writers: 8,
        in_flight_max: 256,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let fixture = JournalFixture::new(root, journal_options());
    let raw_dir = scratch::temp_dir(root, "raw-");
    let mut prewritten = PrewrittenFile::create(&raw_dir.path().join("prewritten"), 64 * MIB);
    let batch = Batch::single(&pattern_bytes(RECORD_BYTES, 4));
    let per_commit = (shape.writers * shape.in_flight_max) as u64;
    let step = 64 * per_commit;
    let mut journal_cpu_s = 0.0;
    let mut journal_records = 0u64;
    let paired = Paired::run(
        rounds,
        || {
            let cpu_before = process_cpu_seconds();
            let r = rate(|| {
                journal_records += step;
                (
                    step,
                    append_concurrent(&rt, &fixture.journal, &batch, shape, step),
                )
            });
            journal_cpu_s += process_cpu_seconds() - cpu_before;
            fixture.trim();
            r
        },
        || {
            rate(|| {
                (
                    step,
                    raw_commits(&mut prewritten, frame_bytes(RECORD_BYTES), per_commit, step),
                )
            })
        },
    );
    let ratio = paired.ratio();
    let cpu_us_per_record = journal_cpu_s * 1e6 / journal_records as f64;
    let stats = fixture.journal.stats();
    let records_per_commit = stats.appends_total as f64 / stats.commits_total.max(1) as f64;
    let sync_ms_mean = stats.fsync_seconds.sum * 1e3 / stats.fsync_seconds.count.max(1) as f64;
    println!(
        "append 128 B records, 8 tasks x 256 in flight   journal {:9.0} records/s {:6.1} MB/s, {:.2} CPU us/record, {:.0} records and {:.3} ms fdatasync per commit | raw commits of 2048 records {:9.0} records/s | ratio {:.2} | target >= 500000 records/s: {}",
        paired.ours(),
        paired.ours() * RECORD_BYTES as f64 / 1e6,
        cpu_us_per_record,
        records_per_commit,
        sync_ms_mean,
        paired.raw(),
        ratio,
        verdict(paired.ours() >= 500_000.0),
    );
    json!({
        "record_bytes": RECORD_BYTES,
        "writers": shape.writers,
        "in_flight_max": shape.in_flight_max,
        "journal_records_s": paired.ours(),
        "journal_payload_mb_s": paired.ours() * RECORD_BYTES as f64 / 1e6,
        "raw_records_s_2048_per_commit": paired.raw(),
        "ratio_to_raw": ratio,
        "journal_cpu_us_per_record": cpu_us_per_record,
        "journal_records_per_commit": records_per_commit,
        "journal_fdatasync_ms_mean": sync_ms_mean,
        "rounds_journal_records_s": paired.ours,
        "rounds_raw_records_s": paired.raw,
    })
}

fn reads(root: &Path, rounds: usize, label: &str, frame_bytes: usize) -> Value {
    let payload_bytes = frame_bytes - HEADER_LEN - MESSAGE_LEN_PREFIX_BYTES;
    let fixture = ReadFixture::open(root, payload_bytes, 256 * MIB);
    let bytes = fixture.raw_bytes();
    let mut copy = vec![0u8; bytes.len()];
    let head = fixture.head;
    let timed = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        f();
        (head, start.elapsed())
    };
    let salt = journal_salt(READ_JOURNAL);
    let mut copy_rates = Vec::new();
    let mut whole_crc_rates = Vec::new();
    let paired = Paired::run(
        rounds,
        || {
            rate(|| {
                let (d, count) = read_all(&fixture.journal);
                assert_eq!(count.frames, head / frame_bytes as u64);
                (head, d)
            })
        },
        || {
            copy_rates.push(rate(|| timed(&mut || copy_all(&bytes, &mut copy))));
            whole_crc_rates.push(rate(|| {
                timed(&mut || {
                    std::hint::black_box(crc32c_all(std::hint::black_box(&bytes)));
                })
            }));
            rate(|| {
                timed(&mut || {
                    std::hint::black_box(crc32c_per_frame(std::hint::black_box(&bytes), frame_bytes, salt));
                })
            })
        },
    );
    let ratio = paired.ratio();
    println!(
        "read 256 MiB, {label} frames   journal {:6.2} GB/s {:9.0} frames/s | raw CRC-32C per frame {:6.2} GB/s, ratio {:.2} | CRC-32C one pass {:6.2} GB/s, ratio {:.2} | memcpy {:6.2} GB/s, ratio {:.2} | target >= 2 GB/s: {}",
        paired.ours() / 1e9,
        paired.ours() / frame_bytes as f64,
        paired.raw() / 1e9,
        ratio,
        median(whole_crc_rates.clone()) / 1e9,
        paired.ratio_to(&whole_crc_rates),
        median(copy_rates.clone()) / 1e9,
        paired.ratio_to(&copy_rates),
        verdict(paired.ours() >= 2e9),
    );
    json!({
        "frame_bytes": frame_bytes,
        "journal_gb_s": paired.ours() / 1e9,
        "journal_frames_s": paired.ours() / frame_bytes as f64,
        "raw_crc32c_per_frame_gb_s": paired.raw() / 1e9,
        "raw_crc32c_one_pass_gb_s": median(whole_crc_rates.clone()) / 1e9,
        "raw_memcpy_gb_s": median(copy_rates.clone()) / 1e9,
        "ratio_to_crc32c_per_frame": ratio,
        "ratio_to_crc32c_one_pass": paired.ratio_to(&whole_crc_rates),
        "ratio_to_memcpy": paired.ratio_to(&copy_rates),
    })
}

/// Drops the page cache of every fragment of the fixture, so the next open reads the last
/// fragment from the disk. Returns false if dd could not do it.
fn drop_cache(fixture: &OpenFixture) -> bool {
    drop_dir_cache(
        &fixture
            .dir
            .join(ss_log::JOURNALS_DIR)
            .join(ss_benches::open::OPEN_JOURNAL),
    )
}

fn opens(root: &Path) -> Value {
    let fixtures = [
        ("1 fragment, 16 MiB", OpenFixture::build(root, 0, 16 * MIB)),
        (
            "1 GiB history + 16 MiB",
            OpenFixture::build(root, 1 << 30, 16 * MIB),
        ),
        ("1 fragment, 30 MiB", OpenFixture::build(root, 0, 30 * MIB)),
    ];
    let time_open = |fixture: &OpenFixture| {
        let (d, log, journal) = open_timed(&fixture.dir);
        assert_eq!(journal.durable_head(), fixture.head);
        drop((journal, log));
        d.as_secs_f64() * 1e3
    };
    // Round-robin over the fixtures, so drift hits them alike.
    let mut warm = vec![Vec::new(); fixtures.len()];
    let mut cold = vec![Vec::new(); fixtures.len()];
    for round in 0..25 {
        for (i, (_, fixture)) in fixtures.iter().enumerate() {
            warm[i].push(time_open(fixture));
            if round % 5 == 0 && drop_cache(fixture) {
                cold[i].push(time_open(fixture));
            }
        }
    }
    let mut out = Vec::new();
    for (i, (label, fixture)) in fixtures.iter().enumerate() {
        let warm_ms = median(warm[i].clone());
        let cold_ms = if cold[i].is_empty() {
            f64::NAN
        } else {
            median(cold[i].clone())
        };
        println!(
            "open {label:<24} {:3} fragments, last {:5.1} MiB   warm cache {:6.2} ms | cold cache {:6.2} ms | target <= 10 ms: {}",
            fixture.fragment_count,
            fixture.last_fragment_bytes as f64 / MIB as f64,
            warm_ms,
            cold_ms,
            verdict(warm_ms <= 10.0 && (cold_ms.is_nan() || cold_ms <= 10.0)),
        );
        out.push(json!({
            "fixture": label,
            "fragments": fixture.fragment_count,
            "history_bytes": fixture.history_bytes,
            "last_fragment_bytes": fixture.last_fragment_bytes,
            "open_warm_ms": warm_ms,
            "open_cold_ms": cold_ms,
            "open_warm_ms_min": warm[i].iter().cloned().fold(f64::INFINITY, f64::min),
        }));
    }
    Value::Array(out)
}

/// Hidden first argument: `--leave-crashed DIR STATE` writes a journal in DIR and exits without
/// closing it (the child of [`opens_after_crash`]).
const LEAVE_CRASHED_ARG: &str = "--leave-crashed";

/// Drops the page cache of every file in `dir` (GNU dd's `nocache`); false if dd could not.
fn drop_dir_cache(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.filter_map(Result::ok).all(|e| {
        Command::new("dd")
            .arg(format!("if={}", e.path().display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Open after a crash (issue 12, criterion 5): a child process writes each [`CrashedState`] and
/// exits without closing; the open that follows is timed with the page cache as the child left
/// it (warm: what a restart after SIGKILL meets) and dropped (cold: after a reboot). Every open
/// gets a freshly written state, since a writable open repairs what it finds.
fn opens_after_crash(root: &Path, rounds: usize) -> Value {
    let exe = std::env::current_exe().expect("this program's path");
    let mut times: Vec<[Vec<f64>; 2]> = vec![[Vec::new(), Vec::new()]; CrashedState::ALL.len()];
    for _ in 0..rounds {
        for (i, state) in CrashedState::ALL.into_iter().enumerate() {
            for (c, cold) in [false, true].into_iter().enumerate() {
                let dir = scratch::temp_dir(root, "crashed");
                let status = Command::new(&exe)
                    .args([LEAVE_CRASHED_ARG, &dir.path().display().to_string(), state.name()])
                    .status()
                    .expect("spawn the crashed-journal writer");
                assert!(status.success(), "the crashed-journal writer failed: {status}");
                let journal_dir = dir
                    .path()
                    .join(ss_log::JOURNALS_DIR)
                    .join(ss_benches::open::OPEN_JOURNAL);
                if cold && !drop_dir_cache(&journal_dir) {
                    continue;
                }
                let (took, log, journal) = open_timed(dir.path());
                assert!(journal.durable_head() > 96 << 20);
                drop((journal, log));
                times[i][c].push(took.as_secs_f64() * 1e3);
            }
        }
    }
    let mut out = Vec::new();
    for (i, state) in CrashedState::ALL.into_iter().enumerate() {
        let [warm, cold] = &times[i];
        let list = |xs: &[f64]| xs.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(" ");
        let (warm_ms, cold_ms) = (median(warm.clone()), median(cold.clone()));
        println!(
            "open after crash {:<19} warm {:6.2} ms [{}] | cold {:6.2} ms [{}] | target <= 10 ms: {}",
            state.name(),
            warm_ms,
            list(warm),
            cold_ms,
            list(cold),
            verdict(warm_ms <= 10.0 && cold_ms <= 10.0),
        );
        out.push(json!({
            "state": state.name(),
            "open_warm_ms": warm_ms,
            "open_cold_ms": cold_ms,
            "open_warm_ms_all": warm,
            "open_cold_ms_all": cold,
        }));
    }
    Value::Array(out)
}

fn checksums(rounds: usize) -> Value {
    let bytes = pattern_bytes(64 << 10, 5);
    let crc = |f: fn(&[u8]) -> u32| {
        rate(|| {
            let start = Instant::now();
            for _ in 0..64 {
                std::hint::black_box(f(std::hint::black_box(&bytes)));
            }
            (64 * bytes.len() as u64, start.elapsed())
        })
    };
    let paired = Paired::run(rounds, || crc(crc32c::crc32c), || crc(crc32fast::hash));
    println!(
        "checksum 64 KiB   crc32c {:6.2} GB/s | crc32fast {:6.2} GB/s | ratio {:.2}",
        paired.ours() / 1e9,
        paired.raw() / 1e9,
        paired.ratio()
    );
    json!({
        "crc32c_gb_s": paired.ours() / 1e9,
        "crc32fast_gb_s": paired.raw() / 1e9,
        "ratio": paired.ratio(),
    })
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some(LEAVE_CRASHED_ARG) {
        let args: Vec<String> = std::env::args().skip(2).collect();
        let [dir, state] = &args[..] else {
            panic!("usage: {LEAVE_CRASHED_ARG} DIR STATE");
        };
        let state = CrashedState::from_name(state).expect("a crashed state's name");
        leave_crashed_journal(Path::new(dir), state);
        // At once, as a SIGKILL would: no destructor closes the journal.
        std::process::exit(0);
    }
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("ROUNDS must be a number"))
        .unwrap_or(5);
    let root = scratch::bench_root(&PathBuf::from("target/bench-scratch"));
    println!(
        "bench dir {} ({rounds} rounds of {SLICE:?} per side)",
        root.display()
    );
    // A second argument runs only the rows whose names contain it (e.g. `append_small`).
    let only = std::env::args().nth(2);
    let rows: [(&str, &dyn Fn() -> Value); 8] = [
        ("append_64kib", &|| {
            large_appends(&root, rounds, "64 KiB", 64 << 10)
        }),
        ("append_1mib", &|| large_appends(&root, rounds, "1 MiB", 1 << 20)),
        ("append_small", &|| small_appends(&root, rounds)),
        ("read_4kib", &|| reads(&root, rounds, "4 KiB", 4 << 10)),
        ("read_64kib", &|| reads(&root, rounds, "64 KiB", 64 << 10)),
        ("open", &|| opens(&root)),
        ("open_after_crash", &|| opens_after_crash(&root, rounds)),
        ("checksum_64kib", &|| checksums(rounds)),
    ];
    let mut summary = serde_json::Map::new();
    for (name, row) in rows {
        if only.as_deref().is_none_or(|only| name.contains(only)) {
            summary.insert(name.to_string(), row());
        }
    }
    println!("{}", Value::Object(summary));
}
