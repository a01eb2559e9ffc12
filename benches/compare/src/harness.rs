//! Timed runs: `writers` threads call one durable operation in a loop for a warm-up and then a
//! measured period, each call's latency recorded. Every system of a workload goes through the
//! same loop, so the only difference between rows is the operation itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use hdrhistogram::Histogram;

/// How long a timed run warms up and then measures.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub warmup: Duration,
    pub measure: Duration,
}

/// What a timed run counted: operations that *started* in the measured period, and the time from
/// its start until the last of them finished.
pub struct Measured {
    pub ops: u64,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
}

/// A histogram of microseconds, 3 significant digits, growing as needed.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is a valid histogram precision")
}

/// Records `elapsed` (rounded up to 1 µs) into `hist`.
pub fn record_us(hist: &mut Histogram<u64>, elapsed: Duration) {
    let us = (elapsed.as_micros() as u64).max(1);
    hist.record(us)
        .expect("an auto-resizing histogram accepts any value");
}

/// Runs `op(writer_index, call_index)` on `writers` threads until `timing` is over. The first
/// error stops every thread and is returned.
pub fn run_timed<F>(writers: usize, timing: Timing, op: F) -> anyhow::Result<Measured>
where
    F: Fn(usize, u64) -> anyhow::Result<()> + Sync,
{
    assert!(writers > 0, "a timed run needs at least one writer");
    let stop = AtomicBool::new(false);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let start = Instant::now();
    let measure_from = start + timing.warmup;
    let measure_until = measure_from + timing.measure;
    let per_writer: Vec<(u64, Instant, Histogram<u64>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (op, stop, first_error) = (&op, &stop, &first_error);
                scope.spawn(move || {
                    let mut hist = latency_histogram();
                    let mut ops = 0u64;
                    let mut last_end = measure_from;
                    let mut call = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let began = Instant::now();
                        if began >= measure_until {
                            break;
                        }
                        if let Err(e) = op(w, call) {
                            let mut slot = first_error.lock().expect("error slot");
                            slot.get_or_insert(e.context(format!("writer {w}, call {call}")));
                            stop.store(true, Ordering::Relaxed);
                            break;
                        }
                        call += 1;
                        let ended = Instant::now();
                        if began >= measure_from {
                            ops += 1;
                            last_end = last_end.max(ended);
                            record_us(&mut hist, ended - began);
                        }
                    }
                    (ops, last_end, hist)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread panicked"))
            .collect()
    });
    if let Some(e) = first_error.into_inner().expect("error slot") {
        return Err(e);
    }
    let mut latency_us = latency_histogram();
    let mut ops = 0;
    let mut last_end = measure_from;
    for (n, end, hist) in per_writer {
        ops += n;
        last_end = last_end.max(end);
        latency_us.add(&hist).context("merging latency histograms")?;
    }
    if ops == 0 {
        return Err(anyhow!(
            "no operation started within the {:?} measured period",
            timing.measure
        ));
    }
    Ok(Measured {
        ops,
        elapsed: last_end - measure_from,
        latency_us,
    })
}
