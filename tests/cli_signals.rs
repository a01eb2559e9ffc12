//! `stream-sum run` under real signals: SIGTERM (what `kill`, `timeout` and service managers send)
//! stops it gracefully like Ctrl-C, and a second signal exits at once.
//!
//! Guards against SIGTERM killing a run on the spot, with no summary and no verdict (its
//! default action), which is what `timeout 10 stream-sum run` did.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;

/// Long enough for the run to have recovered its shards and installed its handlers.
const SETTLE: Duration = Duration::from_secs(2);

fn spawn_run(args: &[String]) -> Child {
    spawn_with_stdout(args, Stdio::piped())
}

/// SIGTERM on a run with no time limit: the run finishes its open streams, prints its summary
/// (`stopped_by` "SIGTERM"), verifies every finished stream and exits 0; `verify` then finds
/// nothing pending.
#[test]
fn sigterm_stops_a_run_gracefully_with_its_summary_and_exit_0() {
    let t = temp_data();
    let child = spawn_run(&small_run_args(&t.data, "forever"));
    std::thread::sleep(SETTLE);
    send_signal(&child, "TERM");
    let out = finish(child, COMMAND_DEADLINE);
    out.expect_code(0, "run stopped by SIGTERM");
    assert!(out.stderr.contains("SIGTERM: stopping"), "{}", out.stderr);
    let summary = out.json();
    assert_eq!(summary["stopped_by"], "SIGTERM", "{summary}");
    let finished = u64_field(&summary, "streams_finished");
    assert!(finished > 0, "{summary}");
    assert_eq!(u64_field(&summary, "sums_verified"), finished, "{summary}");
    assert_eq!(u64_field(&summary, "violations"), 0, "{summary}");
    let v = verify_json(&t.data, 0);
    assert_eq!(u64_field(&v, "pending"), 0, "{v}");
}

/// A second signal during the graceful stop exits at once with 128 + its number (SIGTERM: 143),
/// without waiting for the open streams, which a throttled run takes seconds to finish; the
/// directory it leaves verifies, like after a crash.
#[test]
fn a_second_signal_exits_at_once_with_128_plus_its_number() {
    let t = temp_data();
    let mut args = small_run_args(&t.data, "forever");
    // 1 KB/s per chunker: finishing its open streams would take many seconds.
    args.extend(["--max-mb-per-s", "0.002"].map(String::from));
    let child = spawn_run(&args);
    std::thread::sleep(SETTLE);
    send_signal(&child, "INT");
    std::thread::sleep(Duration::from_millis(500));
    send_signal(&child, "TERM");
    let out = finish(child, Duration::from_secs(10));
    out.expect_code(143, "run given SIGINT then SIGTERM");
    assert!(out.stderr.contains("SIGINT: stopping"), "{}", out.stderr);
    assert!(
        out.stderr.contains("SIGTERM again; exiting without waiting"),
        "{}",
        out.stderr
    );
    let v = verify_json(&t.data, 0);
    assert_eq!(u64_field(&v, "violations"), 0, "{v}");
}
