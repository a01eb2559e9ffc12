//! Sum tailing in a `run`: a thread per shard log hands each durable Sum to the verifier of the
//! chunker that owns its stream; with `--report`, a reporter prints every verifier event.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ss_chunker::stream_gen::split_stream_id;
use ss_chunker::verifier::VerifierEvent;
use ss_consumer::message::{hex, Message};
use ss_log::{FrameJournal, FrameReader};

use crate::state::Shared;

/// Prints every verifier event as one line on stdout, flushed at once, for a watching parent.
pub(crate) fn start_reporter(shared: &Arc<Shared>) -> JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    for v in &shared.sums.verifiers {
        v.lock().set_events(tx.clone());
    }
    let shared = shared.clone();
    std::thread::Builder::new()
        .name("reporter".into())
        .spawn(move || {
            let mut out = std::io::stdout().lock();
            loop {
                let event = match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(event) => event,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        if shared.run.stop_reporter.load(Ordering::SeqCst) {
                            match rx.try_recv() {
                                Ok(event) => event,
                                Err(_) => return,
                            }
                        } else {
                            continue;
                        }
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                };
                let line = match event {
                    VerifierEvent::FinalDurable {
                        stream,
                        sha1,
                        journal,
                        offset,
                    } => {
                        format!("F {stream} {journal} {offset} {}\n", hex(&sha1))
                    }
                    VerifierEvent::SumSeen {
                        stream,
                        sha1,
                        journal,
                        offset,
                    } => {
                        format!("S {stream} {journal} {offset} {}\n", hex(&sha1))
                    }
                };
                if out.write_all(line.as_bytes()).and_then(|()| out.flush()).is_err() {
                    return;
                }
            }
        })
        .expect("spawn reporter")
}

/// Reads Sums from a shard log as they become durable and hands each to its chunker's verifier.
/// Generic over the journal boundary: the embedded log, or JetStream (`run --nats`).
pub(crate) fn tail_sums<J: FrameJournal>(p: usize, journal: J, start: u64, shared: &Shared) {
    let mut frames = match journal.reader(start) {
        Ok(r) => r,
        Err(e) => return shared.run.error(format!("tailing {}: {e}", journal.name())),
    };
    while !shared.run.stop_tailers.load(Ordering::SeqCst) {
        let frame = match frames.next_timeout(Duration::from_millis(50)) {
            Ok(Some(f)) => f,
            Ok(None) => continue,
            Err(e) => return shared.run.error(format!("tailing {}: {e}", journal.name())),
        };
        // The Sum's latency ends when it became durable (the SLA's definition), not when this
        // thread woke to read it; a backend that cannot tell gives the time it was read.
        let seen_at = journal.durable_at(frame.end).unwrap_or_else(Instant::now);
        for m in frame.messages() {
            let sum = match m
                .map_err(|e| e.to_string())
                .and_then(|m| Message::decode(m).map_err(|e| e.to_string()))
            {
                Ok(Message::Sum(sum)) => sum,
                Ok(_) => continue,
                Err(e) => {
                    return shared
                        .run
                        .error(format!("{} offset {}: {e}", journal.name(), frame.offset))
                }
            };
            let (run, chunker, _) = split_stream_id(sum.stream);
            if run != shared.run.run_id {
                shared.sums.previous_runs.fetch_add(1, Ordering::Relaxed);
            } else if let Some(v) = shared.sums.verifiers.get(chunker as usize) {
                v.lock().on_sum(&sum, journal.name(), frame.offset, seen_at);
            } else {
                shared.run.violation(format!(
                    "Sum in {} at offset {} for stream {} of chunker {chunker}, which does not exist",
                    journal.name(),
                    frame.offset,
                    sum.stream
                ));
            }
        }
        shared.sums.tail_offset[p].store(frame.end, Ordering::SeqCst);
    }
}
