//! `stream-sum plot FILE -o OUT.svg|OUT.png`: draws a record (`run`/`soak --record FILE`).
//!
//! Four panels share one time axis: chunk throughput (MB/s), Sum latency p50/p99 (ms), disk (MB)
//! and anonymous RSS (MB). A red vertical line marks each sample where `violations_total` rose, and
//! the title says "violations: N". A file holding several runs is drawn on wall-clock time since
//! its first sample, with a grey line and the run id at each run's start.
//!
//! Reading: one JSON object per line, `{"kind":"sample",...}` ([`Sample`]) or
//! `{"kind":"summary",...}` (the run's last line). A line cut short (the recording process was
//! killed inside its write) is skipped with a warning; any other bad line is an error naming the
//! file and the line. Writing: the figure is drawn into a temporary file beside the output and
//! renamed over it, so a failure never leaves a partial file.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Deserialize;

use crate::cli::PlotArgs;
use crate::exit::{EXIT_OK, EXIT_USAGE};
use crate::record::Sample;

/// The font every figure is drawn with, bundled so PNG text needs no system fonts (DejaVu Sans
/// Mono; licence in `assets/DejaVuSansMono-LICENSE.txt`). SVG text is drawn by the viewer; the
/// font only measures it for layout.
const FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");
pub const FONT: &str = "sans-serif";

/// Most points drawn per run and series; longer runs are bucketed (mean throughput, the largest
/// latency, disk and RSS of each bucket, so spikes stay visible).
const POINTS_PER_RUN_MAX: usize = 3000;

/// Figure size in pixels.
const SIZE: (u32, u32) = (1200, 1100);

const P50_COLOR: RGBColor = RGBColor(31, 119, 180);
const P99_COLOR: RGBColor = RGBColor(255, 127, 14);
const LINE_COLOR: RGBColor = RGBColor(44, 160, 44);
/// Violation markers; nothing else in a figure is this colour.
pub const VIOLATION_COLOR: RGBColor = RGBColor(214, 39, 40);
const RUN_START_COLOR: RGBColor = RGBColor(150, 150, 150);

/// The output formats, from the output file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    pub fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "svg" => Some(Format::Svg),
            "png" => Some(Format::Png),
            _ => None,
        }
    }
}

/// One run in a record: its samples in order, and its summary line if it got that far.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub run_id: u32,
    pub samples: Vec<Sample>,
    /// `violations` of the summary line, if the run wrote one.
    pub summary_violations: Option<u64>,
}

impl RunRecord {
    /// Violations of this run: the summary's count, or the last sample's.
    pub fn violations(&self) -> u64 {
        let sampled = self.samples.last().map_or(0, |s| s.violations_total);
        self.summary_violations.map_or(sampled, |v| v.max(sampled))
    }
}

/// A parsed record file.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub runs: Vec<RunRecord>,
    /// Lines skipped because they were cut short (1-based line numbers).
    pub torn_lines: Vec<usize>,
}

impl Record {
    pub fn violations(&self) -> u64 {
        self.runs.iter().map(RunRecord::violations).sum()
    }

    pub fn samples(&self) -> usize {
        self.runs.iter().map(|r| r.samples.len()).sum()
    }
}

#[derive(Deserialize)]
struct Tagged {
    kind: String,
}

#[derive(Deserialize)]
struct SummaryViolations {
    run_id: u32,
    violations: u64,
}

/// Parses a record's bytes; `name` is used in error messages. Runs are split where the run id
/// changes, where elapsed time goes backwards (two fresh data directories both start at run 1)
/// and after a summary line.
pub fn parse_record(bytes: &[u8], name: &str) -> anyhow::Result<Record> {
    let mut record = Record::default();
    let mut current: Option<RunRecord> = None;
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    for (index, line) in lines.iter().enumerate() {
        let number = index + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let tagged: Tagged = match serde_json::from_slice(line) {
            Ok(t) => t,
            // A line that ends before its JSON does was cut by a kill inside the write: the last
            // line of the file, or a line a later run's append terminated (Recorder::open).
            Err(e) if e.is_eof() => {
                crate::exit::errln!(
                    "stream-sum: warning: {name} line {number}: skipping a line cut short ({e})"
                );
                record.torn_lines.push(number);
                continue;
            }
            Err(e) => bail!("{name} line {number}: not a record line: {e}"),
        };
        match tagged.kind.as_str() {
            "sample" => {
                let sample: Sample = serde_json::from_slice(line)
                    .with_context(|| format!("{name} line {number}: bad sample"))?;
                let new_run = current.as_ref().is_none_or(|run| {
                    run.run_id != sample.run_id
                        || run
                            .samples
                            .last()
                            .is_some_and(|last| sample.elapsed_s < last.elapsed_s)
                });
                if new_run {
                    record.runs.extend(current.take());
                    current = Some(RunRecord {
                        run_id: sample.run_id,
                        samples: Vec::new(),
                        summary_violations: None,
                    });
                }
                current.as_mut().expect("a current run").samples.push(sample);
            }
            "summary" => {
                let summary: SummaryViolations = serde_json::from_slice(line)
                    .with_context(|| format!("{name} line {number}: bad summary"))?;
                match current.take() {
                    Some(mut run) if run.run_id == summary.run_id => {
                        run.summary_violations = Some(summary.violations);
                        record.runs.push(run);
                    }
                    other => {
                        // A run that ended before its first sample: nothing to draw but its count.
                        record.runs.extend(other);
                        record.runs.push(RunRecord {
                            run_id: summary.run_id,
                            samples: Vec::new(),
                            summary_violations: Some(summary.violations),
                        });
                    }
                }
            }
            other => {
                bail!("{name} line {number}: unknown kind {other:?} (expected \"sample\" or \"summary\")")
            }
        }
    }
    record.runs.extend(current);
    Ok(record)
}

/// Registers the bundled font under [`FONT`] (once per process; later calls are no-ops).
pub fn register_font() -> anyhow::Result<()> {
    static REGISTERED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES)
                .map_err(|_| "the bundled font does not parse".to_string())
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Renders with `draw` into `out` (SVG or PNG, by extension), atomically: the figure is drawn into
/// a temporary file in the same directory and renamed over `out`; a failure leaves no file.
pub fn render(
    out: &Path,
    size: (u32, u32),
    draw_svg: impl FnOnce(DrawingArea<SVGBackend, Shift>) -> anyhow::Result<()>,
    draw_png: impl FnOnce(DrawingArea<BitMapBackend, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let format =
        Format::of(out).ok_or_else(|| anyhow!("{}: the output must end in .svg or .png", out.display()))?;
    register_font()?;
    let tmp = temporary_path(out);
    // Creating the file first turns an unwritable directory into a clear error before drawing.
    std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", out.display()))?;
    let drawn = (|| -> anyhow::Result<()> {
        match format {
            Format::Svg => {
                let mut svg = String::new();
                draw_svg(SVGBackend::with_string(&mut svg, size).into_drawing_area())?;
                std::fs::write(&tmp, svg)?;
            }
            Format::Png => {
                let root = BitMapBackend::new(&tmp, size).into_drawing_area();
                draw_png(root)?;
            }
        }
        std::fs::rename(&tmp, out)?;
        Ok(())
    })();
    if drawn.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    drawn.with_context(|| format!("cannot write {}", out.display()))
}

/// `DIR/.NAME.PID.tmp.EXT`: hidden, in the output's directory (so the rename stays on one file
/// system), and keeping the extension (the PNG encoder picks the format by it).
fn temporary_path(out: &Path) -> PathBuf {
    let name = out
        .file_stem()
        .map_or("plot".into(), |s| s.to_string_lossy().into_owned());
    let ext = out
        .extension()
        .map_or("".into(), |s| s.to_string_lossy().into_owned());
    let file = format!(".{name}.{}.tmp.{ext}", std::process::id());
    match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(file),
        _ => PathBuf::from(file),
    }
}

/// A drawing error as an `anyhow::Error` (plotters' errors borrow their backend's error type).
pub fn drawing<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow!("drawing: {e}")
}

pub fn plot(args: PlotArgs) -> anyhow::Result<u8> {
    if Format::of(&args.output).is_none() {
        crate::exit::errln!(
            "stream-sum: error: -o {}: the output must end in .svg or .png",
            args.output.display()
        );
        return Ok(EXIT_USAGE);
    }
    let name = args.file.display().to_string();
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read record file {name}"))?;
    let record = parse_record(&bytes, &name)?;
    if record.samples() == 0 {
        bail!("{name} holds no samples (a record gets one a second from `run --record {name}`)");
    }
    let figure = Figure::new(&record, &name);
    render(
        &args.output,
        SIZE,
        |root| figure.draw(root),
        |root| figure.draw(root),
    )?;
    tracing::info!(
        record = name.as_str(),
        output = args.output.display().to_string().as_str(),
        runs = record.runs.len(),
        samples = record.samples(),
        violations = record.violations(),
        "plot written"
    );
    crate::exit::errln!(
        "stream-sum: plotted {} samples of {} run(s) from {name} into {} (violations: {})",
        record.samples(),
        record.runs.len(),
        args.output.display(),
        record.violations()
    );
    Ok(EXIT_OK)
}

/// The time axis: seconds, minutes or hours, whichever keeps its numbers readable.
#[derive(Debug, Clone, Copy)]
struct TimeUnit {
    seconds: f64,
    name: &'static str,
}

impl TimeUnit {
    fn for_span(span_s: f64) -> TimeUnit {
        if span_s < 180.0 {
            TimeUnit {
                seconds: 1.0,
                name: "s",
            }
        } else if span_s < 3.0 * 3600.0 {
            TimeUnit {
                seconds: 60.0,
                name: "min",
            }
        } else {
            TimeUnit {
                seconds: 3600.0,
                name: "h",
            }
        }
    }
}

/// One drawn series of one run: (time in axis units, value).
type Points = Vec<(f64, f64)>;

/// A line of a panel: which of a run's series, its legend label and colour.
type Line = (usize, &'static str, RGBColor);

/// What the figure draws, computed once from a record (the same for SVG and PNG).
struct Figure {
    title: String,
    x_desc: String,
    x_max: f64,
    /// Per run: throughput, p50, p99, disk, RSS points.
    runs: Vec<[Points; 5]>,
    /// (time, run id) at each run's start after the first.
    run_starts: Vec<(f64, u32)>,
    /// Times where a run's violations rose.
    violations_at: Vec<f64>,
}

impl Figure {
    fn new(record: &Record, name: &str) -> Figure {
        let t0 = record
            .runs
            .iter()
            .flat_map(|r| r.samples.first())
            .map(|s| s.unix_s)
            .fold(f64::INFINITY, f64::min);
        let t_end = record
            .runs
            .iter()
            .flat_map(|r| r.samples.last())
            .map(|s| s.unix_s)
            .fold(t0, f64::max);
        let unit = TimeUnit::for_span(t_end - t0);
        let x = |s: &Sample| (s.unix_s - t0) / unit.seconds;
        let mut runs = Vec::new();
        let mut run_starts = Vec::new();
        let mut violations_at = Vec::new();
        let drawn: Vec<&RunRecord> = record.runs.iter().filter(|r| !r.samples.is_empty()).collect();
        for (i, run) in drawn.iter().enumerate() {
            if i > 0 {
                run_starts.push((x(&run.samples[0]), run.run_id));
            }
            let mut before = 0;
            for s in &run.samples {
                if s.violations_total > before {
                    violations_at.push(x(s));
                }
                before = before.max(s.violations_total);
            }
            runs.push(series(&run.samples, &x));
        }
        let violations = record.violations();
        let span = format_span(t_end - t0);
        let title = format!(
            "{name}: {} run{}, {span}, violations: {violations}",
            record.runs.len(),
            if record.runs.len() == 1 { "" } else { "s" }
        );
        let x_desc = if drawn.len() > 1 {
            format!(
                "wall-clock time since {} UTC ({}); grey lines: run starts",
                format_utc(t0),
                unit.name
            )
        } else {
            format!(
                "time since the first sample, {} UTC ({})",
                format_utc(t0),
                unit.name
            )
        };
        Figure {
            title,
            x_desc,
            x_max: ((t_end - t0) / unit.seconds).max(1e-3),
            runs,
            run_starts,
            violations_at,
        }
    }

    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(drawing)?;
        let root = root.titled(&self.title, (FONT, 22)).map_err(drawing)?;
        let panels = root.split_evenly((4, 1));
        let specs: [(&str, &str, &[Line]); 4] = [
            ("Throughput", "chunk MB/s", &[(0, "chunk MB/s", LINE_COLOR)]),
            (
                "Sum latency",
                "ms",
                &[(1, "p50", P50_COLOR), (2, "p99", P99_COLOR)],
            ),
            ("Disk (journal fragments)", "MB", &[(3, "disk MB", LINE_COLOR)]),
            ("Anonymous RSS", "MB", &[(4, "RSS MB", LINE_COLOR)]),
        ];
        for (i, (panel, (caption, y_desc, lines))) in panels.iter().zip(specs).enumerate() {
            // The time axis is shared: described once, under the last panel.
            let x_desc = if i + 1 == panels.len() {
                self.x_desc.as_str()
            } else {
                ""
            };
            self.draw_panel(panel, caption, y_desc, x_desc, lines)?;
        }
        root.present().map_err(drawing)?;
        Ok(())
    }

    fn draw_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        caption: &str,
        y_desc: &str,
        x_desc: &str,
        lines: &[Line],
    ) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let y_max = lines
            .iter()
            .flat_map(|&(i, _, _)| self.runs.iter().flat_map(move |r| r[i].iter().map(|p| p.1)))
            .fold(0.0f64, f64::max);
        let legend = lines.len() > 1 || !self.violations_at.is_empty();
        // Headroom above the data for the legend (upper left) and the run labels.
        let headroom = if legend { 1.45 } else { 1.1 };
        let y_max = if y_max > 0.0 { y_max * headroom } else { 1.0 };
        let mut chart = ChartBuilder::on(area)
            .caption(caption, (FONT, 16))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..self.x_max, 0.0..y_max)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .draw()
            .map_err(drawing)?;
        for &(i, label, color) in lines {
            for (r, run) in self.runs.iter().enumerate() {
                let drawn = chart
                    .draw_series(LineSeries::new(run[i].iter().copied(), color.stroke_width(2)))
                    .map_err(drawing)?;
                if r == 0 && lines.len() > 1 {
                    drawn.label(label).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                }
            }
        }
        for &(t, run_id) in &self.run_starts {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(t, 0.0), (t, y_max)],
                    RUN_START_COLOR.stroke_width(1),
                )))
                .map_err(drawing)?;
            // Labelled right of its line, or left of it near the right edge.
            let h_pos = if t > self.x_max * 0.85 {
                HPos::Right
            } else {
                HPos::Left
            };
            let style = (FONT, 11)
                .into_font()
                .color(&RUN_START_COLOR)
                .pos(Pos::new(h_pos, VPos::Top));
            chart
                .draw_series(std::iter::once(Text::new(
                    format!(" run {run_id} "),
                    (t, y_max),
                    style,
                )))
                .map_err(drawing)?;
        }
        let marks = chart
            .draw_series(
                self.violations_at
                    .iter()
                    .map(|&t| PathElement::new(vec![(t, 0.0), (t, y_max)], VIOLATION_COLOR.stroke_width(2))),
            )
            .map_err(drawing)?;
        if !self.violations_at.is_empty() {
            marks.label("violation").legend(|(x, y)| {
                PathElement::new(
                    vec![(x + 10, y - 6), (x + 10, y + 6)],
                    VIOLATION_COLOR.stroke_width(2),
                )
            });
        }
        if legend {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font((FONT, 12))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(drawing)?;
        }
        Ok(())
    }
}

/// A run's five series (throughput, p50, p99, disk MB, RSS MB), at most [`POINTS_PER_RUN_MAX`]
/// points each. Latency is drawn only for intervals that verified a Sum (0 means "none").
fn series(samples: &[Sample], x: &dyn Fn(&Sample) -> f64) -> [Points; 5] {
    let bucket = samples.len().div_ceil(POINTS_PER_RUN_MAX).max(1);
    let mut out: [Points; 5] = Default::default();
    for chunk in samples.chunks(bucket) {
        let t = chunk.iter().map(x).sum::<f64>() / chunk.len() as f64;
        let mean = |f: fn(&Sample) -> f64| chunk.iter().map(f).sum::<f64>() / chunk.len() as f64;
        let max = |f: fn(&Sample) -> f64| chunk.iter().map(f).fold(0.0, f64::max);
        out[0].push((t, mean(|s| s.chunk_mb_per_s)));
        if chunk.iter().any(|s| s.sums_per_s > 0.0) {
            out[1].push((t, max(|s| s.sum_latency_ms_p50)));
            out[2].push((t, max(|s| s.sum_latency_ms_p99)));
        }
        out[3].push((t, max(|s| s.disk_bytes as f64 / 1e6)));
        out[4].push((t, max(|s| s.rss_bytes as f64 / 1e6)));
    }
    out
}

/// "42 s", "12.5 min", "3.2 h".
fn format_span(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 2.0 * 3600.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a Unix time, by the civil-from-days algorithm (no time zone
/// database needed for UTC).
pub fn format_utc(unix_s: f64) -> String {
    let secs = unix_s.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(run_id: u32, elapsed_s: f64, violations_total: u64) -> String {
        let s = Sample {
            kind: "sample".into(),
            run_id,
            unix_s: 1_700_000_000.0 + elapsed_s,
            elapsed_s,
            interval_s: 1.0,
            chunk_bytes_total: 0,
            chunks_total: 0,
            streams_started_total: 0,
            streams_finished_total: 0,
            sums_verified_total: 0,
            streams_awaiting_sum: 0,
            chunk_mb_per_s: 100.0,
            chunks_per_s: 10.0,
            sums_per_s: 1.0,
            sum_latency_ms_p50: 1.0,
            sum_latency_ms_p99: 2.0,
            sum_latency_ms_max: 3.0,
            violations_total,
            errors_total: 0,
            disk_bytes: 1,
            rss_bytes: 1,
            fragments_removed_total: 0,
            shard_transactions_total: 0,
        };
        serde_json::to_string(&s).unwrap()
    }

    /// Runs split on a new run id, on elapsed time going backwards (a second fresh directory is
    /// run 1 again) and after a summary line; violations are counted per run.
    #[test]
    fn runs_split_and_violations_add_up() {
        let text = [
            sample(1, 1.0, 0),
            sample(1, 2.0, 1),
            r#"{"kind":"summary","run_id":1,"violations":1}"#.to_string(),
            sample(1, 1.0, 0),
            sample(1, 2.0, 0),
            sample(1, 0.5, 2),
            sample(2, 1.0, 0),
        ]
        .join("\n");
        let record = parse_record(text.as_bytes(), "r").unwrap();
        let sizes: Vec<usize> = record.runs.iter().map(|r| r.samples.len()).collect();
        assert_eq!(sizes, [2, 2, 1, 1]);
        assert_eq!(record.violations(), 3);
    }

    /// A last line cut inside its JSON is skipped; a cut line in the middle (terminated by a
    /// later run's append) too; a line that is not JSON at all is an error naming its line.
    #[test]
    fn cut_lines_are_skipped_and_garbage_is_an_error() {
        let full = sample(1, 1.0, 0);
        let cut = &full[..full.len() / 2];
        let text = format!("{full}\n{cut}\n{full}\n{cut}");
        let record = parse_record(text.as_bytes(), "r").unwrap();
        assert_eq!(record.torn_lines, [2, 4]);
        assert_eq!(record.samples(), 2);

        let text = format!("{full}\nhello\n{full}\n");
        let e = parse_record(text.as_bytes(), "rec.jsonl").unwrap_err();
        assert!(format!("{e:#}").contains("rec.jsonl line 2"), "{e:#}");

        let text = format!("{full}\n{{\"kind\":\"sample\",\"run_id\":1}}\n");
        let e = parse_record(text.as_bytes(), "rec.jsonl").unwrap_err();
        assert!(format!("{e:#}").contains("line 2: bad sample"), "{e:#}");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0.0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400.0), "2000-02-29 00:00:00");
        assert_eq!(format_utc(1_700_000_000.0), "2023-11-14 22:13:20");
    }
}
