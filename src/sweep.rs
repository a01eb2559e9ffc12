//! `stream-sum sweep`: Sum latency against load (issue 12). Runs `stream-sum run` as a child,
//! first saturated to measure the maximum rate, then throttled (`--max-mb-per-s`) at fractions of
//! it, then saturated again; each step on a fresh data directory, removed after it. Prints a table
//! (or JSON) and draws latency p50/p99/max against the achieved rate.
//!
//! A subcommand rather than a bench binary: like `crash-test` it drives this very binary
//! (`current_exe`), so there is no path to guess and no second build, and it draws with the same
//! plotting code as `plot`.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;

use crate::cli::SweepArgs;
use crate::exit::{EXIT_OK, EXIT_USAGE, EXIT_VIOLATION};
use crate::plot::{drawing, format_utc, render, Format, FONT};
use crate::summary::SyncTail;

/// A sweep's SIGINT/SIGTERM: the first is passed to the running step as SIGTERM (a Ctrl-C reaches
/// it directly too), which stops gracefully; the sweep then removes that step's directory, as
/// after any step, and ends without running the others. A second signal exits at once (128 + its
/// number), leaving the step's directory.
#[derive(Default)]
struct Interrupt {
    /// The first signal's number; 0 while none came.
    signal: AtomicI32,
    /// The running step's process id; 0 between steps.
    child: AtomicU32,
}

impl Interrupt {
    fn install() -> anyhow::Result<Arc<Interrupt>> {
        let interrupt = Arc::new(Interrupt::default());
        let seen = interrupt.clone();
        crate::signals::on_stop_signals("sweep", move |signal, _| {
            seen.signal.store(signal, Ordering::SeqCst);
            crate::exit::errln!("\nsweep: interrupted: stopping the running step, then removing its directory (again to exit now)");
            seen.stop_child();
        })?;
        Ok(interrupt)
    }

    /// Sends SIGTERM to the running step, if any: it stops gracefully.
    fn stop_child(&self) {
        let child = self.child.load(Ordering::SeqCst);
        if let Some(pid) = rustix::process::Pid::from_raw(child as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }

    fn signal(&self) -> Option<i32> {
        Some(self.signal.load(Ordering::SeqCst)).filter(|&s| s != 0)
    }
}

/// One step of the sweep, from its child's JSON summary.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// "max" (the first, saturated run), "25%", ..., "saturated" (the last).
    pub name: String,
    /// Target as a percentage of the measured maximum; None when unthrottled.
    pub load_pct: Option<f64>,
    /// `--max-mb-per-s` given to the run; None when unthrottled.
    pub offered_mb_per_s: Option<f64>,
    pub achieved_mb_per_s: f64,
    /// Achieved rate over the measured maximum.
    pub of_max: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    pub sums_verified: u64,
    /// Summer transactions per second of the run (each ends with one shard-log append).
    pub transactions_per_s: f64,
    /// Percent of the shard logs' `fdatasync`s that took over 2.5 ms (`None` if the run did not
    /// say: a JetStream run). Every Sum waits for one, so above 1% a 2 ms Sum p99 is out of reach.
    pub shard_log_syncs_over_2_5_ms_pct: Option<f64>,
    /// The same over 1 ms.
    pub shard_log_syncs_over_1_ms_pct: Option<f64>,
    pub violations: u64,
    pub elapsed_s: f64,
}

/// The sweep's result (`--json`).
#[derive(Debug, Serialize)]
pub struct Sweep {
    pub started_utc: String,
    pub step_duration_s: f64,
    pub max_mb_per_s: f64,
    pub run_args: Vec<String>,
    /// The machine baselines script's JSON (`--baselines`), run just before the first step.
    pub baselines: Option<serde_json::Value>,
    pub steps: Vec<Step>,
}

pub fn sweep(args: SweepArgs) -> anyhow::Result<u8> {
    if let Some(bad) = args.loads.iter().find(|l| !(**l > 0.0 && **l < 100.0)) {
        crate::exit::errln!(
            "stream-sum: error: --loads {bad}: each load must be a percentage between 0 and 100"
        );
        return Ok(EXIT_USAGE);
    }
    if Format::of(&args.plot).is_none() {
        crate::exit::errln!(
            "stream-sum: error: --plot {}: the figure must end in .svg or .png",
            args.plot.display()
        );
        return Ok(EXIT_USAGE);
    }
    if let Err(e) = check_run_args(&args.run_args) {
        crate::exit::errln!("stream-sum: error: sweep -- {}: {e}", args.run_args.join(" "));
        return Ok(EXIT_USAGE);
    }
    // Fail on an unwritable figure path now, not after minutes of runs.
    check_writable(&args.plot)?;
    let created_parent = !args.data.exists();
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("cannot create the sweep's directory {}", args.data.display()))?;
    let started_utc = format_utc(now_unix_s());
    let baselines = match &args.baselines {
        Some(script) => Some(run_baselines(script, &args.data)?),
        None => None,
    };
    if let Some(b) = &baselines {
        crate::exit::errln!("sweep: machine baselines: {b}");
    }

    let interrupt = Interrupt::install()?;
    let mut steps = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        let first = run_step(&args, "max", None, None, None, &interrupt)?;
        if interrupt.signal().is_some() {
            return Ok(());
        }
        let max = first.achieved_mb_per_s;
        if max <= 0.0 {
            bail!("the saturated run published nothing ({first:?})");
        }
        steps.push(Step { of_max: 1.0, ..first });
        let loads = args.loads.iter().map(|&load| (format!("{load}%"), Some(load)));
        for (name, load) in loads.chain([("saturated".to_string(), None)]) {
            let rate = load.map(|l| max * l / 100.0);
            let step = run_step(&args, &name, load, rate, Some(max), &interrupt)?;
            if interrupt.signal().is_some() {
                // Cut short: its figures are not those of a whole step.
                return Ok(());
            }
            steps.push(step);
        }
        Ok(())
    })();
    if created_parent {
        // Only the step directories were in it, each removed after its step.
        let _ = std::fs::remove_dir(&args.data);
    }
    if let Some(signal) = interrupt.signal() {
        if let Err(e) = result {
            crate::exit::errln!("sweep: the interrupted step: {e:#}");
        }
        crate::exit::errln!(
            "sweep: interrupted after {} whole step(s); no figure drawn, every step directory removed",
            steps.len()
        );
        for step in &steps {
            crate::exit::errln!(
                "sweep: step {}: {:.1} MB/s, Sum latency p50 {:.2} ms p99 {:.2} ms",
                step.name,
                step.achieved_mb_per_s,
                step.latency_ms_p50,
                step.latency_ms_p99
            );
        }
        // 128 + the signal's number (130 or 143), as for a process the signal ended.
        return Ok((128 + signal) as u8);
    }
    result?;

    let sweep = Sweep {
        started_utc,
        step_duration_s: args.duration.as_secs_f64(),
        max_mb_per_s: steps[0].achieved_mb_per_s,
        run_args: args.run_args.clone(),
        baselines,
        steps,
    };
    render(
        &args.plot,
        (1100, 700),
        |root| draw(root, &sweep),
        |root| draw(root, &sweep),
    )?;
    if args.json {
        crate::exit::outln!("{}", serde_json::to_string(&sweep)?);
    } else {
        crate::exit::out!("{}", table(&sweep));
    }
    crate::exit::errln!("sweep: figure written to {}", args.plot.display());
    tracing::info!(
        max_mb_per_s = sweep.max_mb_per_s,
        steps = sweep.steps.len(),
        plot = args.plot.display().to_string().as_str(),
        "sweep finished"
    );
    let violations: u64 = sweep.steps.iter().map(|s| s.violations).sum();
    Ok(if violations > 0 { EXIT_VIOLATION } else { EXIT_OK })
}

/// The `run` flags a sweep sets for each step itself.
const SWEEP_SETS: [&str; 5] = [
    "--data",
    "--duration",
    "--json",
    "--max-mb-per-s",
    "--progress-interval",
];

/// Refuses `run_args` that `run` would refuse, or that the sweep sets itself, before any step.
fn check_run_args(run_args: &[String]) -> Result<(), String> {
    if let Some(taken) = run_args.iter().find(|a| {
        SWEEP_SETS
            .iter()
            .any(|s| a.as_str() == *s || a.starts_with(&format!("{s}=")))
    }) {
        return Err(format!("{taken} is set by the sweep for each step; leave it out"));
    }
    if run_args.iter().any(|a| a == "--nats" || a.starts_with("--nats=")) {
        return Err("a sweep runs on the embedded journal; --nats is not for it".into());
    }
    let argv = ["stream-sum", "run"]
        .into_iter()
        .map(String::from)
        .chain(run_args.iter().cloned());
    match <crate::cli::Cli as clap::Parser>::try_parse_from(argv) {
        Ok(_) => Ok(()),
        Err(e) => Err(e
            .to_string()
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ")
            .to_string()),
    }
}

fn now_unix_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Creates and removes a file beside `path`, so an unwritable directory is an error up front.
fn check_writable(path: &Path) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let probe = dir.join(format!(".stream-sum-sweep-probe.{}", std::process::id()));
    std::fs::File::create(&probe).with_context(|| format!("cannot write {}", path.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Runs the machine baselines script (`/work/shared/tools/baselines DIR`-style: one JSON object on
/// stdout) with the sweep's directory, so it measures the disk the steps write to.
fn run_baselines(script: &Path, dir: &Path) -> anyhow::Result<serde_json::Value> {
    crate::exit::errln!("sweep: measuring machine baselines with {}", script.display());
    let out = Command::new(script)
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running the baselines script {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "baselines script {} exited with {}: {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(line)
        .with_context(|| format!("baselines script {} printed no JSON: {text}", script.display()))
}

/// How long the sweep lets the disk rest, after syncing it, before each step.
const SETTLE: Duration = Duration::from_secs(3);

/// Lets the disk go idle before a step: flushes the file system holding `dir` (the previous
/// step's deletions, the baselines' files, any writeback still queued) and waits [`SETTLE`].
/// Without it a step inherits the previous one's deletions and writeback (measured on the quiet
/// machine: Sum latency p99 10.7 ms at 75% right after the saturated step, 2.3-2.8 ms in
/// separate runs).
fn settle_disk(dir: &Path) {
    let synced = Command::new("sync").arg("-f").arg(dir).status();
    if !matches!(synced, Ok(status) if status.success()) {
        crate::exit::errln!(
            "sweep: `sync -f {}` failed ({synced:?}); waiting anyway",
            dir.display()
        );
    }
    std::thread::sleep(SETTLE);
}

/// One `stream-sum run` on a fresh directory inside `--data`, removed after it.
fn run_step(
    args: &SweepArgs,
    name: &str,
    load_pct: Option<f64>,
    rate: Option<f64>,
    max: Option<f64>,
    interrupt: &Interrupt,
) -> anyhow::Result<Step> {
    let dir = args.data.join(format!(
        "step-{}-{}",
        std::process::id(),
        name.trim_end_matches('%')
    ));
    if dir.exists() {
        bail!("{} already exists; refusing to reuse it", dir.display());
    }
    let offered = rate.map_or("unlimited".to_string(), |r| format!("{r:.1} MB/s"));
    crate::exit::errln!(
        "sweep: step {name}: {offered} for {} into {}",
        humantime::format_duration(args.duration),
        dir.display()
    );
    settle_disk(&args.data);
    let result = run_child(args, &dir, rate, interrupt);
    let _ = std::fs::remove_dir_all(&dir);
    let (code, summary, stderr_tail) = result?;
    let field = |k: &str| summary[k].as_f64().unwrap_or(0.0);
    let violations = summary["violations"].as_u64().unwrap_or(0);
    if code != 0 && !(code == 1 && violations > 0) {
        bail!("step {name}: `stream-sum run` exited with {code}:\n{stderr_tail}");
    }
    let elapsed_s = field("elapsed_s").max(1e-9);
    let syncs = serde_json::from_value::<SyncTail>(summary["shard_log_syncs"].clone()).ok();
    let achieved = field("chunk_mb_per_s");
    let step = Step {
        name: name.to_string(),
        load_pct,
        offered_mb_per_s: rate,
        achieved_mb_per_s: achieved,
        of_max: max.map_or(1.0, |m| achieved / m),
        latency_ms_p50: field("latency_ms_p50"),
        latency_ms_p99: field("latency_ms_p99"),
        latency_ms_max: field("latency_ms_max"),
        sums_verified: summary["sums_verified"].as_u64().unwrap_or(0),
        transactions_per_s: field("shard_transactions") / elapsed_s,
        shard_log_syncs_over_2_5_ms_pct: syncs.map(|t| t.over_2_5_ms_pct()),
        shard_log_syncs_over_1_ms_pct: syncs.map(|t| t.over_1_ms_pct()),
        violations,
        elapsed_s,
    };
    crate::exit::errln!(
        "sweep: step {name}: {achieved:.1} MB/s, Sum latency p50 {:.2} ms p99 {:.2} ms max {:.2} ms, violations {violations}",
        step.latency_ms_p50, step.latency_ms_p99, step.latency_ms_max
    );
    Ok(step)
}

/// Runs the child to completion: (exit code, its JSON summary, the end of its stderr).
fn run_child(
    args: &SweepArgs,
    dir: &Path,
    rate: Option<f64>,
    interrupt: &Interrupt,
) -> anyhow::Result<(i32, serde_json::Value, String)> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("run")
        .arg("--data")
        .arg(dir)
        .arg("--duration")
        .arg(format!("{}ms", args.duration.as_millis()))
        .args(["--json", "--progress-interval", "1h"]);
    if let Some(rate) = rate {
        cmd.arg("--max-mb-per-s").arg(format!("{rate:.3}"));
    }
    // Its own process group: a Ctrl-C at the terminal reaches the sweep alone, which passes it
    // on once (two would make the step exit at once, without its summary). And it stops when
    // the sweep dies, even by SIGKILL (`signals::stop_with_parent`).
    cmd.args(&args.run_args)
        .process_group(0)
        .env(
            crate::signals::STOP_WITH_PARENT_ENV,
            std::process::id().to_string(),
        )
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("starting `stream-sum run`")?;
    interrupt.child.store(child.id(), Ordering::SeqCst);
    if interrupt.signal().is_some() {
        // The signal came while this step was starting: pass it on now.
        interrupt.stop_child();
    }
    let stderr = child.stderr.take().expect("piped");
    let tail = std::thread::spawn(move || {
        let lines: Vec<String> = BufReader::new(stderr).lines().map_while(Result::ok).collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout)
        .context("reading the run's summary")?;
    let status = child.wait().context("waiting for `stream-sum run`")?;
    interrupt.child.store(0, Ordering::SeqCst);
    let tail = tail.join().unwrap_or_default();
    let code = status.code().unwrap_or(-1);
    let summary = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .ok_or_else(|| anyhow!("`stream-sum run` exited with {status} and printed no summary:\n{tail}"))?;
    Ok((code, summary, tail))
}

/// The sweep as a table for people.
pub fn table(sweep: &Sweep) -> String {
    let mut out = format!(
        "stream-sum sweep, {} UTC, {} s per step{}: maximum {:.1} MB/s\n",
        sweep.started_utc,
        sweep.step_duration_s,
        if sweep.run_args.is_empty() {
            String::new()
        } else {
            format!(" (run {})", sweep.run_args.join(" "))
        },
        sweep.max_mb_per_s
    );
    if let Some(b) = &sweep.baselines {
        out += &format!("machine baselines just before: {b}\n");
    }
    out += "| step | offered MB/s | achieved MB/s | of max | Sum latency p50 ms | p99 ms | max ms | Sums | txn/s | shard-log syncs > 1 ms / > 2.5 ms | violations |\n";
    out += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for s in &sweep.steps {
        out += &format!(
            "| {} | {} | {:.1} | {:.0}% | {:.2} | {:.2} | {:.2} | {} | {:.0} | {} | {} |\n",
            s.name,
            s.offered_mb_per_s
                .map_or("unlimited".into(), |r| format!("{r:.1}")),
            s.achieved_mb_per_s,
            s.of_max * 100.0,
            s.latency_ms_p50,
            s.latency_ms_p99,
            s.latency_ms_max,
            s.sums_verified,
            s.transactions_per_s,
            match (s.shard_log_syncs_over_1_ms_pct, s.shard_log_syncs_over_2_5_ms_pct) {
                (Some(over_1), Some(over_2_5)) => format!("{over_1:.1}% / {over_2_5:.2}%"),
                _ => "n/a".into(),
            },
            s.violations
        );
    }
    out
}

const P50_COLOR: RGBColor = RGBColor(31, 119, 180);
const P99_COLOR: RGBColor = RGBColor(255, 127, 14);
const MAX_COLOR: RGBColor = RGBColor(127, 127, 127);
const TARGET_COLOR: RGBColor = RGBColor(214, 39, 40);

/// Latency p50/p99/max (log scale) against the achieved rate, each step labelled, with issue 12's
/// targets (p99 ≤ 2 ms to 75% load, ≤ 5 ms at 90%) as horizontal lines.
fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, sweep: &Sweep) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(drawing)?;
    let x_max = sweep
        .steps
        .iter()
        .map(|s| s.achieved_mb_per_s)
        .fold(sweep.max_mb_per_s, f64::max)
        * 1.1;
    let values = || {
        sweep
            .steps
            .iter()
            .flat_map(|s| [s.latency_ms_p50, s.latency_ms_p99, s.latency_ms_max])
            .filter(|v| *v > 0.0)
    };
    let y_min = values().fold(f64::INFINITY, f64::min).min(1.0) / 2.0;
    let y_max = values().fold(0.0, f64::max).max(10.0) * 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Sum latency against load: {} UTC, max {:.0} MB/s, {} s per step",
                sweep.started_utc, sweep.max_mb_per_s, sweep.step_duration_s
            ),
            (FONT, 18),
        )
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, (y_min..y_max).log_scale())
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_desc("achieved chunk MB/s (step labels: target % of the measured maximum)")
        .y_desc("Sum latency, ms (log scale)")
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .draw()
        .map_err(drawing)?;
    // Every step (the two saturated ones at the right end) in order of achieved rate.
    let mut by_rate: Vec<&Step> = sweep.steps.iter().collect();
    by_rate.sort_by(|a, b| a.achieved_mb_per_s.total_cmp(&b.achieved_mb_per_s));
    type Of = fn(&Step) -> f64;
    let series: [(&str, RGBColor, Of); 3] = [
        ("p50", P50_COLOR, |s| s.latency_ms_p50),
        ("p99", P99_COLOR, |s| s.latency_ms_p99),
        ("max", MAX_COLOR, |s| s.latency_ms_max),
    ];
    for (label, color, of) in series {
        let points: Vec<(f64, f64)> = by_rate
            .iter()
            .filter(|s| of(s) > 0.0)
            .map(|s| (s.achieved_mb_per_s, of(s)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(drawing)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(drawing)?;
    }
    for s in &sweep.steps {
        if s.latency_ms_p99 > 0.0 {
            chart
                .draw_series(std::iter::once(Text::new(
                    s.name.clone(),
                    (s.achieved_mb_per_s, s.latency_ms_p99 * 1.25),
                    (FONT, 11).into_font(),
                )))
                .map_err(drawing)?;
        }
    }
    for (ms, text) in [(2.0, "p99 target to 75%: 2 ms"), (5.0, "p99 target at 90%: 5 ms")] {
        if ms > y_min && ms < y_max {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(0.0, ms), (x_max, ms)],
                    TARGET_COLOR.mix(0.5).stroke_width(1),
                )))
                .map_err(drawing)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    text,
                    (x_max * 0.01, ms * 1.08),
                    (FONT, 11).into_font().color(&TARGET_COLOR),
                )))
                .map_err(drawing)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(drawing)?;
    root.present().map_err(drawing)?;
    Ok(())
}

/// Parses "20s"-style step durations of at least one second.
pub fn parse_step_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 20s, 1m)"))?;
    if d < Duration::from_secs(1) {
        return Err("a step must last at least 1s".into());
    }
    Ok(d)
}
