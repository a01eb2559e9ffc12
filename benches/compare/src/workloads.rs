//! The three workloads, each running every system in turn on the same disk and returning rows.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use ss_consumer::shard::ShardConfig;

use crate::append::fjall_peer::FjallAppender;
use crate::append::okaywal_peer::{OkayWalAppender, SEGMENT_BYTES};
use crate::append::ours::OursAppender;
use crate::append::sqlite::SqliteAppender;
use crate::append::DurableAppender;
use crate::harness::{latency_histogram, run_timed, Timing};
use crate::raw::{ExtendingFile, GroupCommitFile, HandoffGroupCommitFile, PrewrittenFile};
use crate::report::{Role, Row};
use crate::summer::input::{write_input, InputShape};
use crate::summer::raw_sha1::LoadedChunks;
use crate::summer::{self, check_sums, SummerRun};

pub const WORKLOAD_A: &str = "(a) 128 B × 8 writers";
pub const WORKLOAD_B: &str = "(b) 64 KiB × 1 writer";
pub const WORKLOAD_C: &str = "(c) summer";

/// Pseudo-random bytes (xorshift), so records are not all zeros.
fn pattern_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A fresh directory for one system's files, removed on drop.
fn system_dir(root: &Path, name: &str) -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir_in(root)
        .with_context(|| format!("creating a directory for {name} in {}", root.display()))
}

/// Opens a system's store in the directory given.
type OpenAppender = Box<dyn Fn(&Path) -> anyhow::Result<Box<dyn DurableAppender>>>;

/// One system of an append workload: its name, role, configuration note and constructor.
struct AppendSystem {
    name: &'static str,
    role: Role,
    config: String,
    open: OpenAppender,
}

/// Runs every system in `rounds` interleaved slices (the order rotated each round), so that the
/// machine's noise (other processes' fsyncs on the shared disk) lands on all systems alike. Each
/// slice warms up briefly before it measures; a row sums its system's slices.
fn run_append_workload(
    root: &Path,
    workload: &str,
    systems: Vec<AppendSystem>,
    writers: usize,
    record_bytes: usize,
    rounds: Rounds,
    only: &[String],
) -> anyhow::Result<Vec<Row>> {
    let systems: Vec<AppendSystem> = systems
        .into_iter()
        .filter(|s| only.is_empty() || only.iter().any(|o| s.name.to_lowercase().contains(o.as_str())))
        .collect();
    let records: Vec<Vec<u8>> = (0..writers)
        .map(|w| pattern_bytes(record_bytes, 7 + w as u64))
        .collect();
    let mut opened = Vec::new();
    for system in &systems {
        let dir = system_dir(root, system.name)?;
        let appender = (system.open)(dir.path()).with_context(|| format!("opening {}", system.name))?;
        opened.push((dir, appender));
    }
    let mut totals: Vec<(u64, Duration, Histogram<u64>, Vec<f64>)> = systems
        .iter()
        .map(|_| (0, Duration::ZERO, latency_histogram(), Vec::new()))
        .collect();
    for round in 0..rounds.count {
        if round % 10 == 0 {
            eprintln!("  {workload}: round {} of {} ...", round + 1, rounds.count);
        }
        for k in 0..systems.len() {
            let i = (k + round) % systems.len();
            let appender = &opened[i].1;
            let measured = run_timed(writers, rounds.slice, |w, _call| appender.append(w, &records[w]))
                .with_context(|| format!("{workload}: {}", systems[i].name))?;
            let records_per_s = measured.ops as f64 / measured.elapsed.as_secs_f64();
            let total = &mut totals[i];
            total.3.push(records_per_s);
            total.0 += measured.ops;
            total.1 += measured.elapsed;
            total
                .2
                .add(&measured.latency_us)
                .context("merging latency histograms")?;
        }
    }
    drop(opened);
    Ok(systems
        .into_iter()
        .zip(totals)
        .map(|(system, (ops, elapsed, latency_us, samples))| {
            let mut row = Row::new(
                workload,
                system.name,
                system.role,
                ops,
                ops * record_bytes as u64,
                elapsed,
                "append",
                Some(&latency_us),
                system.config,
            );
            row.samples_records_per_s = samples;
            row
        })
        .collect())
}

/// Interleaved measurement of an append workload: `count` rounds of one `slice` per system.
#[derive(Debug, Clone, Copy)]
pub struct Rounds {
    pub count: usize,
    pub slice: Timing,
}

fn ours_system(extra: &str) -> AppendSystem {
    AppendSystem {
        name: "ours (ss-log)",
        role: Role::Ours,
        config: format!(
            "Journal::append of a one-message Batch, durable on return; default Options, no \
             retention (a growing journal: 32 MiB fragments, not zero-filled, each commit extends \
             the file){extra}"
        ),
        open: Box::new(|dir| Ok(Box::new(OursAppender::open(dir)?))),
    }
}

/// Our journal with retention and `Options::recycle`: like for like with
/// okaywal, whose checkpointing recycles its segments.
fn ours_recycling_system() -> AppendSystem {
    AppendSystem {
        name: "ours, retention + recycling",
        role: Role::OursVariant,
        config: "the same journal, default Options (Options::recycle is on by default), with retention (remove_below the head every 64 \
                 appends): removed fragments are renamed aside and become the next fragments \
                 (Options::recycle), never re-zeroed; two fragments were filled and \
                 recycled before timing, so commits write into existing files, as in a soak; \
                 like for like with okaywal's checkpointing, which recycles its segments"
            .to_string(),
        open: Box::new(|dir| Ok(Box::new(OursAppender::open_recycling(dir, true)?))),
    }
}

/// The same without the write bound: a diagnostic of what its syncs cost.
fn ours_recycling_unbounded_system() -> AppendSystem {
    AppendSystem {
        name: "ours, retention + recycling, no write bound",
        role: Role::OursVariant,
        config: "as \"ours, retention + recycling\", with Options::write_bound_step_bytes = u64::MAX: \
                 no write bound is recorded before writes into recycled fragments (so open after a \
                 crash searches their stale bytes to the end); a diagnostic of the bound's cost, \
                 not a shipped mode"
            .to_string(),
        open: Box::new(|dir| Ok(Box::new(OursAppender::open_recycling(dir, false)?))),
    }
}

/// Our journal over prewritten fragments: a diagnostic of the fix for its file-growth cost.
fn ours_prewritten_system() -> AppendSystem {
    AppendSystem {
        name: "ours, prewritten fragments",
        role: Role::OursVariant,
        config: "the same journal code over a Storage wrapper (the journal's public storage seam) \
                 that renames a full-size spare into place for each new fragment: zero-filled and synced \
                 by a background thread, or a fragment removed by retention (run every 64 appends) \
                 recycled (the journal's first, growing fragment is filled and dropped before timing); \
                 a diagnostic of prewritten fragments, not a shipped mode"
            .to_string(),
        open: Box::new(|dir| Ok(Box::new(OursAppender::open_prewritten(dir)?))),
    }
}

/// Our journal with `Options::preallocate` (the shipped zero-filled spares).
fn ours_preallocated_system() -> AppendSystem {
    AppendSystem {
        name: "ours, Options::preallocate",
        role: Role::OursVariant,
        config: "the same journal with Options::preallocate: the journal's background thread                  zero-fills and syncs the next fragment while the current one fills, and the writer                  renames it in at the roll (zeroing runs during timing)"
            .to_string(),
        open: Box::new(|dir| Ok(Box::new(OursAppender::open_preallocated(dir)?))),
    }
}

fn peer_systems(concurrent: bool) -> Vec<AppendSystem> {
    let sqlite_sharing = if concurrent {
        "; 8 writers share one connection behind a mutex (no group commit in SQLite)"
    } else {
        ""
    };
    vec![
        AppendSystem {
            name: "SQLite",
            role: Role::Peer,
            config: format!(
                "bundled SQLite {}, journal_mode=WAL, synchronous=FULL, one autocommit INSERT \
                 (one transaction, one WAL sync) per record, default page size and autocheckpoint{sqlite_sharing}",
                rusqlite::version()
            ),
            open: Box::new(|dir| Ok(Box::new(SqliteAppender::open(&dir.join("records.sqlite"))?))),
        },
        AppendSystem {
            name: "okaywal",
            role: Role::Peer,
            config: format!(
                "okaywal 0.3: one entry per record, commit() durable on return (its own group \
                 commit, fdatasync outside the lock), {} MiB segments (preallocated with set_len), \
                 LogVoid checkpointing",
                SEGMENT_BYTES >> 20
            ),
            open: Box::new(|dir| Ok(Box::new(OkayWalAppender::open(dir)?))),
        },
        AppendSystem {
            name: "fjall",
            role: Role::Peer,
            config: "fjall 3 (LSM): insert + Database::persist(PersistMode::SyncData) per record, \
                     default options (flushes and compactions in its background threads)"
                .to_string(),
            open: Box::new(|dir| Ok(Box::new(FjallAppender::open(dir)?))),
        },
    ]
}

/// Raw I/O in the whole shape of our journal's appends: a dedicated writer thread, a growing file.
fn writer_thread_extending_system() -> AppendSystem {
    AppendSystem {
        name: "raw, writer thread + extending",
        role: Role::RawVariant,
        config: "a dedicated writer thread (as above) appending to a growing file (emptied at 32 MiB): \
                 the raw I/O of our journal's design, without its framing, checksums or bookkeeping; \
                 not the baseline"
            .to_string(),
        open: Box::new(|dir| {
            Ok(Box::new(HandoffGroupCommitFile::extending(
                &dir.join("raw"),
                32 << 20,
            )?))
        }),
    }
}

/// (a) durable 128-byte appends from 8 concurrent writer threads.
pub fn many_small_writers(root: &Path, rounds: Rounds, only: &[String]) -> anyhow::Result<Vec<Row>> {
    const RAW_FILE_BYTES: u64 = 64 << 20;
    let mut systems = vec![
        ours_system("; 8 threads calling append, group-committed by the journal (an appender commits alone when no commit is in flight; under contention its helper thread commits batch after batch)"),
        ours_recycling_system(),
        ours_recycling_unbounded_system(),
    ];
    systems.extend(peer_systems(true));
    systems.push(AppendSystem {
        name: "raw group commit",
        role: Role::Raw,
        config: format!(
            "8 threads, one {} MiB zero-filled pre-synced file, user-space leader group commit: \
             one pwrite + fdatasync of everything queued, the others wait",
            RAW_FILE_BYTES >> 20
        ),
        open: Box::new(|dir| {
            Ok(Box::new(GroupCommitFile::prewritten(
                &dir.join("raw"),
                RAW_FILE_BYTES,
            )?))
        }),
    });
    systems.push(AppendSystem {
        name: "raw, extending file",
        role: Role::RawVariant,
        config: "the same group commit appending to a growing file (emptied at 32 MiB), as a journal \
                 writing fresh fragments does; not the baseline"
            .to_string(),
        open: Box::new(|dir| Ok(Box::new(GroupCommitFile::extending(&dir.join("raw"), 32 << 20)?))),
    });
    systems.push(AppendSystem {
        name: "raw, writer thread",
        role: Role::RawVariant,
        config: format!(
            "the same raw I/O into a {} MiB prewritten file, but committed by a dedicated writer \
             thread the appenders hand their records to (our journal's shape); not the baseline",
            RAW_FILE_BYTES >> 20
        ),
        open: Box::new(|dir| {
            Ok(Box::new(HandoffGroupCommitFile::prewritten(
                &dir.join("raw"),
                RAW_FILE_BYTES,
            )?))
        }),
    });
    systems.push(writer_thread_extending_system());
    systems.push(ours_prewritten_system());
    systems.push(ours_preallocated_system());
    run_append_workload(root, WORKLOAD_A, systems, 8, 128, rounds, only)
}

/// (b) durable 64 KiB appends from one writer.
pub fn large_single_writer(
    root: &Path,
    rounds: Rounds,
    raw_file_bytes: u64,
    only: &[String],
) -> anyhow::Result<Vec<Row>> {
    let mut systems = vec![
        ours_system(""),
        ours_recycling_system(),
        ours_recycling_unbounded_system(),
    ];
    systems.extend(peer_systems(false));
    systems.push(AppendSystem {
        name: "raw pwrite+fdatasync",
        role: Role::Raw,
        config: format!(
            "pwrite of 64 KiB + fdatasync, into a {} MiB zero-filled pre-synced file, wrapping",
            raw_file_bytes >> 20
        ),
        open: Box::new(move |dir| {
            Ok(Box::new(PrewrittenFile::create(
                &dir.join("raw"),
                raw_file_bytes,
            )?))
        }),
    });
    systems.push(AppendSystem {
        name: "raw, writer thread",
        role: Role::RawVariant,
        config: format!(
            "the same pwrite + fdatasync into a {} MiB prewritten file, done by a dedicated writer \
             thread the appender hands each record to and waits for (our journal's shape); not the baseline",
            raw_file_bytes >> 20
        ),
        open: Box::new(move |dir| {
            Ok(Box::new(HandoffGroupCommitFile::prewritten(
                &dir.join("raw"),
                raw_file_bytes,
            )?))
        }),
    });
    systems.push(writer_thread_extending_system());
    systems.push(AppendSystem {
        name: "raw, extending file",
        role: Role::RawVariant,
        config: "pwrite of 64 KiB + fdatasync at the end of a growing file (emptied at 32 MiB): \
                 what a journal appending to fresh fragments pays; not the baseline"
            .to_string(),
        open: Box::new(|dir| Ok(Box::new(ExtendingFile::create(&dir.join("raw"), 32 << 20)?))),
    });
    systems.push(ours_prewritten_system());
    systems.push(ours_preallocated_system());
    run_append_workload(root, WORKLOAD_B, systems, 1, 64 << 10, rounds, only)
}

/// Sizes of the summer workload.
#[derive(Debug, Clone)]
pub struct SummerPlan {
    pub input: InputShape,
    /// Runs of each system; the row shows the median run, latencies over all of them.
    pub repetitions: usize,
}

struct SummerSystem {
    name: &'static str,
    role: Role,
    runs: Vec<SummerRun>,
}

impl SummerSystem {
    fn row(&self, chunk_count: u64, chunk_data_bytes: u64, config: String) -> Row {
        let mut elapsed: Vec<Duration> = self.runs.iter().map(|r| r.elapsed).collect();
        elapsed.sort();
        let median = elapsed[elapsed.len() / 2];
        let mut merged = latency_histogram();
        let mut has_latency = false;
        for h in self.runs.iter().filter_map(|r| r.latency_us.as_ref()) {
            merged.add(h).expect("histograms of the same precision merge");
            has_latency = true;
        }
        let mut row = Row::new(
            WORKLOAD_C,
            self.name,
            self.role,
            chunk_count,
            chunk_data_bytes,
            median,
            "txn",
            has_latency.then_some(&merged),
            config,
        );
        row.samples_records_per_s = self
            .runs
            .iter()
            .map(|r| chunk_count as f64 / r.elapsed.as_secs_f64())
            .collect();
        if self.role != Role::Raw {
            row.txns = Some(self.runs.iter().map(|r| r.txns).sum::<u64>() / self.runs.len() as u64);
        }
        row
    }
}

/// (c) the summer: ours (pipelined, the default, and not pipelined) against the SQLite summer
/// and raw SHA-1, all over the same pre-written chunk journal.
pub fn summer(root: &Path, plan: &SummerPlan) -> anyhow::Result<Vec<Row>> {
    let dir = system_dir(root, "summer")?;
    eprintln!(
        "  {WORKLOAD_C}: writing ~{} MB of chunks (not timed) ...",
        plan.input.target_data_bytes / 1_000_000
    );
    let input = write_input(&dir.path().join("log"), &plan.input)?;
    let chunks = LoadedChunks::load(&input)?;
    let pipelined = ShardConfig::default();
    let unpipelined = ShardConfig {
        pipelined: false,
        ..ShardConfig::default()
    };
    let mut systems = [
        SummerSystem {
            name: "ours (Shard+Summer)",
            role: Role::Ours,
            runs: Vec::new(),
        },
        SummerSystem {
            name: "ours, not pipelined",
            role: Role::OursVariant,
            runs: Vec::new(),
        },
        SummerSystem {
            name: "SQLite summer",
            role: Role::Peer,
            runs: Vec::new(),
        },
        SummerSystem {
            name: "raw SHA-1",
            role: Role::Raw,
            runs: Vec::new(),
        },
    ];
    for rep in 0..plan.repetitions {
        eprintln!(
            "  {WORKLOAD_C}: repetition {} of {} ...",
            rep + 1,
            plan.repetitions
        );
        let runs = [
            summer::ours::run(&input, &format!("sums-{rep}"), &pipelined)?,
            summer::ours::run(&input, &format!("sums-unpipelined-{rep}"), &unpipelined)?,
            summer::sqlite_peer::run(
                &input,
                &dir.path().join(format!("summer-{rep}.sqlite")),
                &pipelined,
            )?,
            summer::raw_sha1::run(&chunks)?,
        ];
        for (system, run) in systems.iter_mut().zip(runs) {
            check_sums(system.name, &run, &input.expected)?;
            system.runs.push(run);
        }
    }
    let c = &pipelined;
    let bounds = format!(
        "a transaction ends at {} messages, {} MiB of input, {} ms, or {} ms after its first Sum",
        c.txn_max_messages,
        c.txn_max_input_bytes >> 20,
        c.txn_max_duration.as_millis(),
        c.txn_max_output_delay.as_millis()
    );
    let input_note = format!(
        "{} chunks, {:.1} MB of chunk data in {} frames, {} streams",
        input.chunk_count,
        input.chunk_data_bytes as f64 / 1e6,
        input.frame_count,
        input.expected.len()
    );
    let configs = [
        format!(
            "default ShardConfig ({bounds}; pipelined: the next transaction is applied while the \
             previous append syncs); one durable append of Sums + checkpoint delta per transaction; {input_note}"
        ),
        "as above with pipelined=false: each transaction waits for its own append before the next".to_string(),
        format!(
            "SHA-1 states (92-byte SerializableState) and input offset in SQLite (WAL, synchronous=FULL), \
             one SQLite transaction per batch with the same bounds ({bounds}), not pipelined; \
             touched states upserted, finished streams deleted, Sums inserted in the same transaction"
        ),
        "sha1 crate over the same chunk bytes in the same order, one hasher per stream, chunks \
         already decoded in memory"
            .to_string(),
    ];
    Ok(systems
        .iter()
        .zip(configs)
        .map(|(s, config)| s.row(input.chunk_count, input.chunk_data_bytes, config))
        .collect())
}
