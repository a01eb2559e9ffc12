//! Structured logs on stderr (`tracing`): operational events as parseable key=value lines or JSON
//! objects, their levels under `RUST_LOG`, and their figures checked against what the run did.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;

use common::*;
use serde_json::Value;

/// Runs the binary with `RUST_LOG` set (or removed) and returns its output.
fn cli_env(args: &[String], rust_log: Option<&str>) -> Out {
    let mut cmd = bin();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match rust_log {
        Some(v) => cmd.env("RUST_LOG", v),
        None => cmd.env_remove("RUST_LOG"),
    };
    finish(cmd.spawn().expect("spawn stream-sum"), COMMAND_DEADLINE)
}

/// The JSON log events among stderr's lines (the progress and start lines are not JSON).
fn json_events(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}")))
        .collect()
}

fn events<'a>(all: &'a [Value], message: &str) -> Vec<&'a Value> {
    all.iter().filter(|e| e["fields"]["message"] == message).collect()
}

/// One text-format event: `TIMESTAMP LEVEL TARGET: message key=value ...`, as (level,
/// message, fields) with quoted values unquoted. None for lines that are not events.
fn text_event(line: &str) -> Option<(String, String, HashMap<String, String>)> {
    let (head, rest) = line.split_once(": ")?;
    let mut head = head.split_whitespace();
    let ts = head.next()?;
    if !(ts.len() > 20 && ts.ends_with('Z') && ts.as_bytes()[4] == b'-') {
        return None;
    }
    let level = head.next()?.to_string();
    // Split on spaces outside quotes (Debug-quoted values escape their own quotes).
    let (mut tokens, mut token, mut quoted, mut escaped) = (Vec::new(), String::new(), false, false);
    for c in rest.chars() {
        match c {
            ' ' if !quoted => tokens.push(std::mem::take(&mut token)),
            '"' if !escaped => {
                quoted = !quoted;
                token.push(c);
            }
            _ => token.push(c),
        }
        escaped = c == '\\' && !escaped;
    }
    tokens.push(token);
    let first_field = tokens
        .iter()
        .position(|t| t.contains('='))
        .unwrap_or(tokens.len());
    let message = tokens[..first_field].join(" ");
    let fields = tokens[first_field..]
        .iter()
        .map(|t| {
            let (k, v) = t.split_once('=').expect("key=value");
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect();
    Some((level, message, fields))
}

fn chunk_journal_ends(data: &Path) -> HashMap<String, u64> {
    let ls = journal_ls(data);
    ls["journals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["name"].as_str().unwrap().to_string(),
                j["end"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Default level (info), text format: a run logs its start, each shard's recovery and its stop
/// as key=value lines; a second run on the same directory logs each shard resuming at exactly
/// the end of its chunk journal (the first run consumed everything), with its log head; the
/// stop event carries the summary's figures.
#[test]
fn text_logs_name_run_start_recoveries_and_stop_with_real_offsets() {
    let t = temp_data();
    small_run(&t.data, "2s");
    let ends = chunk_journal_ends(&t.data);
    let out = cli_env(&small_run_args(&t.data, "2s"), None);
    out.expect_code(0, "second run");
    let summary = out.json();
    let events: Vec<_> = out.stderr.lines().filter_map(text_event).collect();
    let find = |m: &str| -> Vec<&HashMap<String, String>> {
        events.iter().filter(|e| e.1 == m).map(|e| &e.2).collect()
    };

    let starting = find("run starting");
    assert_eq!(starting.len(), 1, "{}", out.stderr);
    assert_eq!(starting[0]["run_id"], "2");
    assert_eq!(starting[0]["partitions"], "2");
    assert_eq!(starting[0]["data"], t.data.to_str().unwrap());

    let recovered = find("shard recovered");
    assert_eq!(recovered.len(), 2, "one per shard:\n{}", out.stderr);
    for r in recovered {
        let input = &r["input"];
        let offset: u64 = r["input_offset"].parse().unwrap();
        assert_eq!(Some(&offset), ends.get(input), "{r:?} vs journal ends {ends:?}");
        assert!(offset > 0, "{r:?}");
        assert!(r["log_head"].parse::<u64>().unwrap() > 0, "{r:?}");
        assert!(r["recovery_ms"].parse::<f64>().unwrap() >= 0.0, "{r:?}");
    }

    let stopped = find("run stopped");
    assert_eq!(stopped.len(), 1, "{}", out.stderr);
    assert_eq!(stopped[0]["violations"], "0");
    assert_eq!(stopped[0]["completed"], "true");
    assert_eq!(
        stopped[0]["sums_verified"],
        summary["sums_verified"].to_string(),
        "{summary}"
    );
    let infos = events.iter().filter(|e| e.0 == "INFO").count();
    assert_eq!(
        infos,
        events.len(),
        "a clean run logs nothing above info:\n{}",
        out.stderr
    );

    // RUST_LOG=warn: a clean run logs nothing at all; the human lines stay.
    let quiet = cli_env(&small_run_args(&t.data, "1s"), Some("warn"));
    quiet.expect_code(0, "run with RUST_LOG=warn");
    assert_eq!(
        quiet.stderr.lines().filter_map(text_event).count(),
        0,
        "{}",
        quiet.stderr
    );
    assert!(
        quiet.stderr.contains("stream-sum: run 3 over"),
        "{}",
        quiet.stderr
    );
}

/// `--log-format json` with component faults, retention and `RUST_LOG=debug`: every injected
/// fault the summary lists is an event, every fencing the summary counts is an "owner fenced"
/// event, every shard recovery it counts is a "shard recovered" event, and retention's removals
/// add up to the summary's fragments removed.
#[test]
fn json_logs_match_faults_fencings_recoveries_and_retention() {
    let t = temp_data();
    let mut args = small_run_args(&t.data, "6s");
    args.extend(
        [
            "--faults",
            "components",
            "--retention",
            "--fragment-max-bytes",
            "1048576",
            "--log-format",
            "json",
        ]
        .map(String::from),
    );
    let out = cli_env(&args, Some("debug"));
    out.expect_code(0, "run --faults components --log-format json");
    let summary = out.json();
    let all = json_events(&out.stderr);

    let faults = summary["faults"].as_array().unwrap();
    let injected = events(&all, "fault injected");
    assert_eq!(injected.len(), faults.len(), "{summary}\n{}", out.stderr);
    for (event, fault) in injected.iter().zip(faults) {
        assert_eq!(event["fields"]["kind"], fault["kind"]);
        assert_eq!(event["fields"]["target"], fault["target"]);
        assert_eq!(event["level"], "INFO");
    }
    assert!(!faults.is_empty(), "6 s of faults injects some: {summary}");

    let fenced = events(&all, "owner fenced");
    assert_eq!(
        fenced.len() as u64,
        summary["fencings"].as_u64().unwrap(),
        "{summary}"
    );
    let owners_recovered = events(&all, "shard recovered")
        .into_iter()
        .filter(|e| e["fields"]["owner"] == "owner")
        .count();
    assert_eq!(
        owners_recovered as u64,
        summary["shard_recoveries"].as_u64().unwrap(),
        "{summary}"
    );

    let removed: u64 = events(&all, "fragments removed by retention")
        .iter()
        .map(|e| e["fields"]["fragments"].as_u64().unwrap())
        .sum();
    let fragments_removed = summary["fragments_removed"].as_u64().unwrap();
    assert!(fragments_removed > 0, "1 MiB fragments with retention: {summary}");
    assert_eq!(removed, fragments_removed, "{summary}");
    let stopped = events(&all, "run stopped");
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0]["fields"]["fragments_removed"], fragments_removed);
}

/// A run that finds a violation (a shard stalled past the SLA) logs the first at error level
/// and its stop at warn.
#[test]
fn violation_is_logged_at_error() {
    let t = temp_data();
    let mut args = small_run_args(&t.data, "20s");
    args.extend(["--faults", "stall-shard", "--sla", "1s", "--log-format", "json"].map(String::from));
    let out = cli_env(&args, None);
    out.expect_code(1, "stalled shard");
    let all = json_events(&out.stderr);
    let stopped = events(&all, "run stopped");
    assert_eq!(stopped.len(), 1, "{}", out.stderr);
    assert_eq!(stopped[0]["level"], "WARN");
    assert!(stopped[0]["fields"]["violations"].as_u64().unwrap() > 0);
    let violations = events(&all, "violation");
    assert_eq!(violations.len(), 1, "the first one only:\n{}", out.stderr);
    assert_eq!(violations[0]["level"], "ERROR");
    let text = violations[0]["fields"]["violation"].as_str().unwrap();
    assert!(text.contains("SLA") || text.contains("Sum"), "{text}");
}
