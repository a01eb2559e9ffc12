//! `run --metrics-addr` scraped by a real Prometheus server (Debian's `prometheus`): through
//! Prometheus's HTTP API, the chunk counter rises, the violation counter is 0, and the Sum
//! latency histogram and the per-journal families arrive intact (so the text parses as
//! Prometheus reads it, not only as we write it). Skipped, saying so, where `prometheus` is not
//! installed, except under CI (`CI` set), where that fails.

mod common;
mod metrics_common;

use std::time::{Duration, Instant};

use metrics_common::*;
use serde_json::Value;

/// Longest the test waits for Prometheus to answer and to have scraped what it checks.
const DEADLINE: Duration = Duration::from_secs(90);

/// Asks Prometheus for the instant vector of `query`: each series' value, or `None` while the
/// server is not answering yet.
fn query(prometheus: std::net::SocketAddr, query: &str) -> Option<Vec<(Value, f64)>> {
    let path = format!("/api/v1/query?query={}", url_encode(query));
    let (status, body) = http_get(prometheus, &path).ok()?;
    if status != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{query}: {e}: {body}"));
    assert_eq!(v["status"], "success", "{query}: {body}");
    let results = v["data"]["result"].as_array().expect("result array");
    Some(
        results
            .iter()
            .map(|r| {
                let value = r["value"][1].as_str().expect("value string");
                (r["metric"].clone(), value.parse().expect("a number"))
            })
            .collect(),
    )
}

/// Polls `q` until `accept` takes its values, failing with the last answer after the deadline.
fn wait_for(
    prometheus: std::net::SocketAddr,
    q: &str,
    started: Instant,
    mut accept: impl FnMut(&[(Value, f64)]) -> bool,
) -> Vec<(Value, f64)> {
    let mut last = None;
    loop {
        if let Some(values) = query(prometheus, q) {
            if accept(&values) {
                return values;
            }
            last = Some(values);
        }
        assert!(
            started.elapsed() < DEADLINE,
            "Prometheus query {q:?}: no acceptable answer within {DEADLINE:?}; last: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn prometheus_scrapes_the_run_and_sees_chunks_rise_with_no_violations() {
    let Some(prometheus_bin) = tool("prometheus", "prometheus") else {
        return;
    };
    let t = common::temp_data();
    let run = start_metrics_run(&t.data);

    let config = t.dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: stream-sum\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: ['{}']\n",
            run.addr
        ),
    )
    .unwrap();
    let port = free_port();
    let prometheus: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut command = std::process::Command::new(prometheus_bin);
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            t.dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={prometheus}"))
        .arg("--log.level=warn");
    let log = t.dir.path().join("prometheus.log");
    let _server = spawn_logged(command, &log);
    let started = Instant::now();

    // The target is up: Prometheus scraped it and parsed the text.
    let up = wait_for(prometheus, r#"up{job="stream-sum"}"#, started, |v| {
        v.len() == 1 && v[0].1 == 1.0
    });
    eprintln!("prometheus sees the run up after {:?}: {up:?}", started.elapsed());

    // The chunk counter rises across scrapes.
    let first = wait_for(prometheus, "stream_sum_chunks_total", started, |v| {
        v.len() == 1 && v[0].1 > 0.0
    })[0]
        .1;
    let risen = wait_for(prometheus, "stream_sum_chunks_total", started, |v| {
        v.len() == 1 && v[0].1 > first
    })[0]
        .1;
    eprintln!("stream_sum_chunks_total rose from {first} to {risen}");

    // No violations, as a scraped series that exists (an absent series would also be "not 1").
    let violations = wait_for(prometheus, "stream_sum_violations_total", started, |v| {
        v.len() == 1
    });
    assert_eq!(violations[0].1, 0.0, "violations: {violations:?}");

    // The Sum latency histogram: Sums counted, and a p99 Prometheus computes from the buckets.
    wait_for(prometheus, "stream_sum_sum_latency_seconds_count", started, |v| {
        v.len() == 1 && v[0].1 > 0.0
    });
    let p99 = wait_for(
        prometheus,
        "histogram_quantile(0.99, stream_sum_sum_latency_seconds_bucket)",
        started,
        |v| v.len() == 1 && v[0].1.is_finite() && v[0].1 > 0.0,
    );
    assert!(p99[0].1 <= 10.0, "p99 beyond the SLA bucket: {p99:?}");

    // Per journal: one series for each of the run's 2 chunk journals and 2 shard logs, all
    // appending and fsyncing.
    let appends = wait_for(prometheus, "stream_sum_journal_appends_total", started, |v| {
        v.len() == 4 && v.iter().all(|(_, x)| *x > 0.0)
    });
    let mut journals: Vec<String> = appends
        .iter()
        .map(|(m, _)| m["journal"].as_str().expect("journal label").to_string())
        .collect();
    journals.sort();
    assert_eq!(journals, ["chunks-000", "chunks-001", "sums-000", "sums-001"]);
    wait_for(
        prometheus,
        "stream_sum_journal_fsync_seconds_count",
        started,
        |v| v.len() == 4 && v.iter().all(|(_, x)| *x > 0.0),
    );
    wait_for(prometheus, "stream_sum_rss_anon_bytes", started, |v| {
        v.len() == 1 && v[0].1 > 0.0
    });
}
