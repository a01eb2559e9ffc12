//! `ss-compare`: our journal and summer side by side with what a user would pick instead
//! (SQLite, okaywal, fjall) and with raw `pwrite` + `fdatasync`, all in one run on one disk.
//!
//! ```text
//! cargo run --release --manifest-path benches/compare/Cargo.toml -- [--quick] \
//!     [--json PATH] [--markdown PATH] [--dir DIR] [--only a,b,c] [--systems NAME,..]
//! ```
//!
//! Workloads ([`workloads`]): (a) durable 128-byte appends from 8 writer threads; (b) durable
//! 64 KiB appends from one writer; (c) the stream-sum summer against the same summer kept in
//! SQLite. Every system commits durably (an fsync-family call) before an append or transaction
//! is acknowledged. Files go to a temporary directory under `--dir` (default: the current
//! directory, so the disk being measured is the one a data directory there would use).

mod append;
mod harness;
mod raw;
mod report;
mod summer;
mod workloads;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use harness::Timing;
use summer::input::InputShape;
use workloads::{Rounds, SummerPlan};

struct Args {
    quick: bool,
    json: Option<PathBuf>,
    markdown: Option<PathBuf>,
    dir: PathBuf,
    only: Vec<char>,
    /// Run only systems whose name contains one of these (lowercase); empty = all.
    systems: Vec<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        quick: false,
        json: None,
        markdown: None,
        dir: PathBuf::from("."),
        only: vec!['a', 'b', 'c'],
        systems: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().with_context(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--json" => args.json = Some(value("--json")?.into()),
            "--markdown" => args.markdown = Some(value("--markdown")?.into()),
            "--dir" => args.dir = value("--dir")?.into(),
            "--only" => {
                args.only = value("--only")?
                    .split(',')
                    .filter_map(|w| w.trim().chars().next())
                    .collect();
                if let Some(bad) = args.only.iter().find(|w| !"abc".contains(**w)) {
                    bail!("--only takes workloads a, b, c; got {bad:?}");
                }
            }
            "--systems" => {
                args.systems = value("--systems")?
                    .split(',')
                    .map(|s| s.trim().to_lowercase())
                    .collect();
            }
            "-h" | "--help" => {
                println!(
                    "usage: ss-compare [--quick] [--json PATH] [--markdown PATH] [--dir DIR] [--only a,b,c] [--systems NAME,..]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(args)
}

/// The filesystem type and device holding `path`, from /proc/mounts (longest matching mount).
fn filesystem_of(path: &Path) -> String {
    let Ok(path) = path.canonicalize() else {
        return "unknown".into();
    };
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return "unknown".into();
    };
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && path.starts_with(f[1])).then(|| (f[1].len(), format!("{} on {}", f[2], f[0])))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".into(), |(_, fs)| fs)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let rounds = if args.quick {
        Rounds {
            count: 12,
            slice: Timing {
                warmup: Duration::from_millis(10),
                measure: Duration::from_millis(100),
            },
        }
    } else {
        Rounds {
            count: 40,
            slice: Timing {
                warmup: Duration::from_millis(20),
                measure: Duration::from_millis(200),
            },
        }
    };
    let plan = SummerPlan {
        input: InputShape {
            target_data_bytes: if args.quick { 40_000_000 } else { 200_000_000 },
            open_streams: 1000,
            max_chunks_per_stream: 64,
            max_chunk_bytes: 48 << 10,
            frame_bytes: 64 << 10,
            seed: 0x5eed,
        },
        repetitions: if args.quick { 2 } else { 7 },
    };
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("ss-compare-scratch-")
        .tempdir_in(&args.dir)
        .with_context(|| format!("creating a scratch directory in {}", args.dir.display()))?;
    let fs = filesystem_of(scratch.path());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!(
        "ss-compare{}: files in {} ({fs}), {cores} cores; append workloads: {} rounds of {:?} warm-up + {:?} \
         measured per system",
        if args.quick { " --quick" } else { "" },
        scratch.path().display(),
        rounds.count,
        rounds.slice.warmup,
        rounds.slice.measure
    );
    if fs.starts_with("tmpfs") {
        eprintln!("warning: the scratch directory is on tmpfs: fsync costs nothing there; use --dir");
    }
    let started = Instant::now();
    let mut rows = Vec::new();
    if args.only.contains(&'a') {
        rows.extend(workloads::many_small_writers(
            scratch.path(),
            rounds,
            &args.systems,
        )?);
    }
    if args.only.contains(&'b') {
        let raw_file_bytes = if args.quick { 64 << 20 } else { 256 << 20 };
        rows.extend(workloads::large_single_writer(
            scratch.path(),
            rounds,
            raw_file_bytes,
            &args.systems,
        )?);
    }
    if args.only.contains(&'c') {
        rows.extend(workloads::summer(scratch.path(), &plan)?);
    }
    report::compute_ratios(&mut rows);
    let total = started.elapsed();
    println!("{}", report::text_table(&rows));
    println!("Configurations:\n{}", report::config_lines(&rows));
    println!(
        "Ratios are of MB/s (= of records/s within a workload). Files on {fs}; {cores} cores; total {:.0} s.",
        total.as_secs_f64()
    );
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "quick": args.quick,
            "filesystem": fs,
            "cores": cores,
            "append_rounds": rounds.count,
            "append_slice_warmup_s": rounds.slice.warmup.as_secs_f64(),
            "append_slice_measure_s": rounds.slice.measure.as_secs_f64(),
            "summer_input_target_bytes": plan.input.target_data_bytes,
            "summer_repetitions": plan.repetitions,
            "total_s": total.as_secs_f64(),
            "rows": rows,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, report::markdown(&rows))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
