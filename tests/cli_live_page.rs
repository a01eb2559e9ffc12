//! The live page of `run --metrics-addr`, loaded in a real headless browser (Debian's
//! `chromium`): its script fetched the run's samples and drew them, and the figures it shows are
//! the running process's own, checked against `/metrics` read just before and just after the
//! browser loaded the page. Skipped, saying so, where `chromium` is not installed, except under
//! CI (`CI` set), where that fails.

mod common;
mod metrics_common;

use std::time::Duration;

use metrics_common::*;

/// The opening tag of the element with `id` in `dom`.
fn tag_with_id<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element with id {id:?} in the page:\n{dom}"));
    let start = dom[..at].rfind('<').expect("tag start");
    let end = at + dom[at..].find('>').expect("tag end");
    &dom[start..=end]
}

/// The value of `attr` in `tag` (an opening tag as the browser serialized it).
fn attr<'a>(tag: &'a str, attr: &str) -> &'a str {
    let key = format!(" {attr}=\"");
    let at = tag.find(&key).unwrap_or_else(|| panic!("no {attr} in {tag}")) + key.len();
    &tag[at..at + tag[at..].find('"').expect("closing quote")]
}

fn number(tag: &str, name: &str) -> f64 {
    let v = attr(tag, name);
    v.parse().unwrap_or_else(|e| panic!("{name}={v:?} in {tag}: {e}"))
}

#[test]
fn chromium_renders_the_runs_figures_and_charts() {
    let Some(chromium) = tool("chromium", "chromium") else {
        return;
    };
    let t = common::temp_data();
    let run = start_metrics_run(&t.data);
    // Three samples at least, so every chart has a line to draw from its first fetch.
    run.wait_for_samples(3, Duration::from_secs(30));
    let chunks_before = run.metric("stream_sum_chunks_total");

    let profile = t.dir.path().join("chromium-profile");
    let out = common::finish(
        std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                "--virtual-time-budget=5000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("--dump-dom")
            .arg(format!("http://{}/", run.addr))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn chromium"),
        Duration::from_secs(120),
    );
    out.expect_code(0, "chromium --dump-dom");
    let chunks_after = run.metric("stream_sum_chunks_total");
    let violations = run.metric("stream_sum_violations_total");
    let dom = &out.stdout;

    // The script ran and fetched samples from the process.
    let body = &dom[dom.find("<body").expect("body")..];
    let body = &body[..=body.find('>').expect("body tag end")];
    let samples = number(body, "data-samples");
    assert!(samples >= 3.0, "the page holds {samples} samples");

    // Its figures are the process's: the chunk total it shows lies between /metrics before and
    // after the page loaded, and so do its violations (0, as /metrics says).
    let chunks_shown = number(tag_with_id(dom, "fig-chunks_total"), "data-value");
    assert!(
        chunks_before <= chunks_shown && chunks_shown <= chunks_after && chunks_shown > 0.0,
        "page shows {chunks_shown} chunks; /metrics said {chunks_before} before, {chunks_after} after"
    );
    let violations_shown = number(tag_with_id(dom, "fig-violations_total"), "data-value");
    assert_eq!((violations_shown, violations), (0.0, 0.0));
    let status = &dom[dom.find("id=\"status\"").expect("status")..];
    assert!(
        status.contains("running, no violations"),
        "status: {}",
        &status[..200.min(status.len())]
    );

    // Every chart drew a line through every sample, with the sample's figures: the throughput
    // chart's last point is the run's throughput (throttled to 20 MB/s, so between 0 and 40).
    for chart in ["throughput", "latency", "disk", "rss", "violations"] {
        let id = format!("chart-{chart}");
        let svg_tag = tag_with_id(dom, &id);
        assert_eq!(number(svg_tag, "data-points"), samples, "{svg_tag}");
        let svg = &dom[dom.find(&format!("id=\"{id}\"")).unwrap()..];
        let svg = &svg[..svg.find("</svg>").expect("svg end")];
        let polyline = &svg[svg
            .find("<polyline")
            .unwrap_or_else(|| panic!("{id} has no line: {svg}"))..];
        let points = attr(polyline, "points").split(' ').count();
        assert_eq!(points as f64, samples, "{id}: {polyline}");
    }
    let throughput = number(tag_with_id(dom, "chart-throughput"), "data-last");
    assert!(
        throughput > 0.0 && throughput < 40.0,
        "throughput shown {throughput} MB/s"
    );
    let rss = number(tag_with_id(dom, "chart-rss"), "data-last");
    assert!(rss > 0.0, "RSS shown {rss} MB");
}
