//! Bad `--metrics-addr` values for the real binary: an unparsable address is a usage error
//! (exit 2) and an address in use an operational one (exit 3), each named on stderr, and neither
//! creates the data directory or the record file.

mod common;

use std::net::TcpListener;

use common::*;

#[test]
fn metrics_address_in_use_exits_3_naming_it_and_touches_nothing() {
    let t = temp_data();
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port to occupy");
    let addr = taken.local_addr().unwrap().to_string();
    let record = t.dir.path().join("record.jsonl");
    for command in ["run", "soak"] {
        let out = cli(&[
            command,
            "--data",
            t.data.to_str().unwrap(),
            "--duration",
            "2s",
            "--record",
            record.to_str().unwrap(),
            "--metrics-addr",
            &addr,
        ]);
        out.expect_code(3, &format!("{command} on a port in use"));
        assert!(
            out.stderr.contains(&addr) && out.stderr.contains("in use"),
            "{command}: stderr does not name {addr} in use:\n{}",
            out.stderr
        );
        assert!(!t.data.exists(), "{command}: the data directory was created");
        assert!(!record.exists(), "{command}: the record file was created");
    }
    // The port was really in use, and the same command works once it is free (so the failure
    // above was the port's, not the command's).
    drop(taken);
    let out = cli(&[
        "run",
        "--data",
        t.data.to_str().unwrap(),
        "--duration",
        "1s",
        "--max-mb-per-s",
        "5",
        "--metrics-addr",
        &addr,
    ]);
    out.expect_code(0, "run on the freed port");
    assert!(
        out.stderr.contains(&format!("metrics at http://{addr}/metrics")),
        "{}",
        out.stderr
    );
}

#[test]
fn unparsable_metrics_address_exits_2_naming_it() {
    let t = temp_data();
    for bad in [
        "nonsense",
        "127.0.0.1",
        "127.0.0.1:99999",
        "localhost:http",
        "example.com:80",
        ":9898",
    ] {
        let out = cli(&["run", "--data", t.data.to_str().unwrap(), "--metrics-addr", bad]);
        out.expect_code(2, &format!("--metrics-addr {bad}"));
        assert!(
            out.stderr.contains("--metrics-addr") && out.stderr.contains(bad),
            "--metrics-addr {bad}: stderr:\n{}",
            out.stderr
        );
        assert!(
            !t.data.exists(),
            "--metrics-addr {bad} created the data directory"
        );
    }
}
