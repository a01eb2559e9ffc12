//! Clients a real `run --metrics-addr` must survive: many idle or half-sent connections do not
//! keep a scraper out (each gets 408 once its head is late), and a request whose header lines
//! end in a bare LF is answered like one with CRLF.

mod common;
mod metrics_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use metrics_common::*;

#[test]
fn idle_and_half_sent_connections_do_not_keep_a_scraper_out() {
    let t = common::temp_data();
    let run = start_metrics_run(&t.data);
    // More idle clients than the server once served at all (32), each stuck mid-head.
    let mut idle: Vec<TcpStream> = (0..100)
        .map(|i| {
            let mut s = TcpStream::connect(run.addr).expect("connect an idle client");
            if i % 2 == 0 {
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                    .expect("half a head");
            }
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let body = run.get("/metrics");
    assert!(body.contains("stream_sum_journal_durable_head_bytes"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a scrape beside 100 idle clients took {:?}",
        started.elapsed()
    );
    // The idle clients are answered 408 and closed once their head is late.
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer)
            .expect("the server closes an idle client");
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
    }
}

#[test]
fn a_request_with_bare_lf_line_endings_is_answered() {
    let t = common::temp_data();
    let run = start_metrics_run(&t.data);
    let mut s = TcpStream::connect(run.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\nHost: {}\n\n", run.addr).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    assert!(
        answer.contains("stream_sum_journal_durable_head_bytes"),
        "{answer:?}"
    );
}
