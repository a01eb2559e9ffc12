//! `stream-sum plot`: records written by real `run --record` processes drawn as SVG and PNG, the
//! violation marker, several runs in one file, a cut line, and bad inputs' exit codes and messages.

mod common;

use std::path::Path;

use common::*;

/// Colours the figure draws its series with (see src/plot.rs); the violation colour is used by
/// nothing else.
const LINE_COLOR: &str = "#2CA02C";
const P50_COLOR: &str = "#1F77B4";
const P99_COLOR: &str = "#FF7F0E";
const VIOLATION_COLOR: &str = "#D62728";

/// The `points` of every `<polyline>` drawn in `color`, as point counts.
fn polylines(svg: &str, color: &str) -> Vec<usize> {
    svg.lines()
        .filter(|l| l.starts_with("<polyline") && l.contains(&format!("stroke=\"{color}\"")))
        .map(|l| {
            let points = l.split("points=\"").nth(1).expect("points attribute");
            points.split('"').next().unwrap().split_whitespace().count()
        })
        .collect()
}

/// The text of every `<text>` element (plotters puts it on the lines after the tag).
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .map(|t| {
            t.split_once('>')
                .unwrap()
                .1
                .split("</text>")
                .next()
                .unwrap()
                .trim()
                .to_string()
        })
        .collect()
}

fn plot(record: &Path, out: &Path) -> Out {
    cli(&["plot", record.to_str().unwrap(), "-o", out.to_str().unwrap()])
}

fn samples_in(record: &Path) -> usize {
    std::fs::read_to_string(record)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"kind\":\"sample\""))
        .count()
}

/// A real run's record drawn as SVG has the four panels, one line per series with a point per
/// sample, the title's "violations: 0" and no violation marker; as PNG it is a 1200 px PNG. A
/// second run appended to the same file, after a line cut as by a kill inside a write, is drawn
/// beside the first with its start marked; the cut line is skipped with a warning.
#[test]
fn plot_draws_real_runs_and_marks_a_second_run() {
    let t = temp_data();
    let record = t.dir.path().join("rec.jsonl");
    let mut args = small_run_args(&t.data, "3s");
    args.extend(["--record".into(), record.to_str().unwrap().into()]);
    cli(&args).expect_code(0, "run --record");
    let samples = samples_in(&record);
    assert!(samples >= 3, "a 3 s run records a sample a second; got {samples}");

    let svg_path = t.dir.path().join("one.svg");
    let out = plot(&record, &svg_path);
    out.expect_code(0, "plot one run");
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
    let texts = texts(&svg);
    for panel in [
        "Throughput",
        "Sum latency",
        "Disk (journal fragments)",
        "Anonymous RSS",
        "p50",
        "p99",
    ] {
        assert!(texts.iter().any(|t| t == panel), "no {panel:?} in {texts:?}");
    }
    assert!(
        texts
            .iter()
            .any(|t| t.contains("1 run,") && t.ends_with("violations: 0")),
        "title: {texts:?}"
    );
    // Throughput, disk and RSS: a point per sample each.
    let lines = polylines(&svg, LINE_COLOR);
    assert_eq!(
        lines.iter().filter(|&&n| n == samples).count(),
        3,
        "{samples} samples; green lines {lines:?}"
    );
    // Latency: a point per sample that verified a Sum (every one of a steady run, at least).
    for color in [P50_COLOR, P99_COLOR] {
        let lines = polylines(&svg, color);
        assert!(lines.iter().any(|&n| n >= samples - 1), "{color}: {lines:?}");
    }
    assert_eq!(
        polylines(&svg, VIOLATION_COLOR),
        Vec::<usize>::new(),
        "a clean run has no marker"
    );

    let png_path = t.dir.path().join("one.png");
    plot(&record, &png_path).expect_code(0, "plot one run as PNG");
    let png = std::fs::read(&png_path).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&png[12..16], b"IHDR");
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 1200, "width");

    // Cut the last line in half, as a kill inside its write would, then append a second run.
    let text = std::fs::read_to_string(&record).unwrap();
    let last = text.trim_end().rsplit('\n').next().unwrap();
    let cut = format!("{}{}", text, &last[..last.len() / 2]);
    std::fs::write(&record, &cut).unwrap();
    let cut_line = cut.lines().count();
    cli(&args).expect_code(0, "second run --record");
    let second_svg = t.dir.path().join("two.svg");
    let out = plot(&record, &second_svg);
    out.expect_code(0, "plot two runs");
    assert!(
        out.stderr.contains(&format!("line {cut_line}")) && out.stderr.contains("cut short"),
        "no warning naming line {cut_line}:\n{}",
        out.stderr
    );
    let svg = std::fs::read_to_string(&second_svg).unwrap();
    let texts = self::texts(&svg);
    assert!(
        texts
            .iter()
            .any(|t| t.contains("2 runs") && t.contains("violations: 0")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t == "run 2"),
        "second run's start unmarked: {texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.starts_with("wall-clock time")),
        "{texts:?}"
    );
}

/// A run whose shard stalls past the SLA ends with violations: the figure marks where the count
/// rose with red lines (one per panel, plus the legend's) and its title gives the run's count.
#[test]
fn plot_marks_violations() {
    let t = temp_data();
    let record = t.dir.path().join("rec.jsonl");
    let mut args = small_run_args(&t.data, "20s");
    args.extend(
        [
            "--faults",
            "stall-shard",
            "--sla",
            "1s",
            "--record",
            record.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let run = cli(&args);
    run.expect_code(1, "run with a stalled shard");
    let violations = run.json()["violations"].as_u64().unwrap();
    assert!(violations > 0);

    let svg_path = t.dir.path().join("v.svg");
    let out = plot(&record, &svg_path);
    out.expect_code(0, "plot");
    assert!(
        out.stderr.contains(&format!("violations: {violations}")),
        "{}",
        out.stderr
    );
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let texts = texts(&svg);
    assert!(
        texts
            .iter()
            .any(|t| t.ends_with(&format!("violations: {violations}"))),
        "title lacks violations: {violations}: {texts:?}"
    );
    assert!(
        texts.iter().any(|t| t == "violation"),
        "no legend entry: {texts:?}"
    );
    let marks = polylines(&svg, VIOLATION_COLOR);
    assert!(marks.len() >= 4, "a marker in each of the four panels: {marks:?}");
}

/// One JSON sample line with every field `record::Sample` has.
fn sample_line(run_id: u32, elapsed_s: f64) -> String {
    serde_json::json!({
        "kind": "sample", "run_id": run_id, "unix_s": 1.7e9 + elapsed_s, "elapsed_s": elapsed_s,
        "interval_s": 1.0, "chunk_bytes_total": 1, "chunks_total": 1, "streams_started_total": 1,
        "streams_finished_total": 1, "sums_verified_total": 1, "streams_awaiting_sum": 0,
        "chunk_mb_per_s": 10.0, "chunks_per_s": 1.0, "sums_per_s": 1.0, "sum_latency_ms_p50": 1.0,
        "sum_latency_ms_p99": 2.0, "sum_latency_ms_max": 3.0, "violations_total": 0,
        "errors_total": 0, "disk_bytes": 1, "rss_bytes": 1, "fragments_removed_total": 0,
        "shard_transactions_total": 1
    })
    .to_string()
}

/// Bad inputs: a bad line in the middle (exit 3, naming file and line), an empty record, a
/// missing file, an output in a missing directory, an output that cannot be replaced (no
/// temporary file left behind), an unknown extension and a missing -o (exit 2).
#[test]
fn plot_bad_inputs() {
    let t = temp_data();
    let dir = t.dir.path();
    let good = dir.join("good.jsonl");
    std::fs::write(
        &good,
        format!("{}\n{}\n", sample_line(1, 1.0), sample_line(1, 2.0)),
    )
    .unwrap();
    plot(&good, &dir.join("good.svg")).expect_code(0, "a hand-made record");

    let cases: [(&str, String, &[&str]); 4] = [
        (
            "garbage.jsonl",
            format!("{}\nnot json\n{}\n", sample_line(1, 1.0), sample_line(1, 2.0)),
            &["garbage.jsonl line 2", "not a record line"],
        ),
        (
            "missing-field.jsonl",
            format!("{}\n{{\"kind\":\"sample\",\"run_id\":1}}\n", sample_line(1, 1.0)),
            &["missing-field.jsonl line 2", "bad sample"],
        ),
        (
            "kind.jsonl",
            format!("{}\n{{\"kind\":\"surprise\"}}\n", sample_line(1, 1.0)),
            &["kind.jsonl line 2", "unknown kind"],
        ),
        ("empty.jsonl", String::new(), &["empty.jsonl holds no samples"]),
    ];
    for (name, text, needles) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let svg = dir.join(format!("{name}.svg"));
        let out = plot(&path, &svg);
        out.expect_code(3, name);
        for n in needles {
            assert!(
                out.stderr.contains(n),
                "{name}: stderr lacks {n:?}:\n{}",
                out.stderr
            );
        }
        assert!(!svg.exists(), "{name}: an output was written");
    }

    let missing = dir.join("no-such.jsonl");
    let out = plot(&missing, &dir.join("x.svg"));
    out.expect_code(3, "missing record");
    assert!(out.stderr.contains("no-such.jsonl"), "{}", out.stderr);

    let nowhere = dir.join("no-such-dir").join("out.svg");
    let out = plot(&good, &nowhere);
    out.expect_code(3, "output in a missing directory");
    assert!(out.stderr.contains(nowhere.to_str().unwrap()), "{}", out.stderr);

    // OUT is a directory: drawing succeeds, the rename over it fails, nothing is left behind.
    let boxed = dir.join("boxed");
    std::fs::create_dir_all(boxed.join("out.svg")).unwrap();
    let out = plot(&good, &boxed.join("out.svg"));
    out.expect_code(3, "output is a directory");
    assert!(out.stderr.contains("out.svg"), "{}", out.stderr);
    let left: Vec<_> = std::fs::read_dir(&boxed)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["out.svg"], "a temporary file was left behind");

    let out = plot(&good, &dir.join("out.txt"));
    out.expect_code(2, "unknown extension");
    assert!(out.stderr.contains(".svg or .png"), "{}", out.stderr);
    cli(&["plot", good.to_str().unwrap()]).expect_code(2, "no -o");
}
