//! Online verification: every finished stream of a chunker gets exactly one correct Sum within
//! the SLA.
//!
//! A stream is *expected* from the moment its final chunk is handed to the journal (the chunker
//! knows the whole content then), and its SLA clock starts when that final chunk is durable.
//! A Sum may be seen before the chunker notices the final chunk's durability (the summer can be
//! that fast); its latency is then counted as zero.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ss_consumer::message::{StreamId, Sum};

use crate::stream_gen::split_stream_id;

/// A broken guarantee, with what identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a verifier tells a watcher (the crash-test parent keeps these as its own history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifierEvent {
    /// The final chunk of `stream` is durable in `journal`, in the frame at `offset`.
    FinalDurable {
        stream: StreamId,
        sha1: [u8; 20],
        journal: String,
        offset: u64,
    },
    /// A Sum for `stream` was seen durable in `journal` at `offset`.
    SumSeen {
        stream: StreamId,
        sha1: [u8; 20],
        journal: String,
        offset: u64,
    },
}

struct Expected {
    sha1: [u8; 20],
    last_seq: u32,
    final_durable_at: Option<Instant>,
}

/// Streams whose Sum was verified, kept as a watermark over the per-chunker counter plus the
/// verified counters above it (streams finish roughly in start order, so the set stays small).
#[derive(Default)]
struct VerifiedSet {
    below: u32,
    above: HashSet<u32>,
}

impl VerifiedSet {
    fn contains(&self, counter: u32) -> bool {
        counter < self.below || self.above.contains(&counter)
    }

    fn insert(&mut self, counter: u32) {
        self.above.insert(counter);
        while self.above.remove(&self.below) {
            self.below += 1;
        }
    }

    /// Marks a counter that will never get a Sum (so the watermark can pass it).
    fn skip(&mut self, counter: u32) {
        self.insert(counter);
    }
}

/// A Sum seen before its stream's final chunk was noticed durable.
struct EarlySum {
    sha1: [u8; 20],
    /// The Sum was the one expected (a wrong one is already a violation).
    correct: bool,
    /// When the Sum was seen durable.
    at: Instant,
    /// Where the Sum is, for a late Sum's violation.
    journal: String,
    offset: u64,
}

/// One chunker's expectations and what it has verified.
pub struct Verifier {
    run_id: u32,
    chunker: u8,
    sla: Duration,
    expected: HashMap<StreamId, Expected>,
    verified: VerifiedSet,
    latency_us: Histogram<u64>,
    sums_verified: u64,
    violations: Vec<Violation>,
    events: Option<std::sync::mpsc::Sender<VerifierEvent>>,
    /// Streams whose Sum was seen before their final chunk's durability was noticed, kept until
    /// it is: then the Sum's latency is known and judged against the SLA.
    early_sums: HashMap<StreamId, EarlySum>,
    /// Streams already reported as missing their Sum (SLA passed), with what their Sum must be:
    /// a Sum arriving after that is late, not a duplicate, and is still checked.
    overdue: HashMap<StreamId, Expected>,
}

impl Verifier {
    pub fn new(run_id: u32, chunker: u8, sla: Duration) -> Verifier {
        Verifier {
            run_id,
            chunker,
            sla,
            expected: HashMap::new(),
            verified: VerifiedSet::default(),
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds"),
            sums_verified: 0,
            violations: Vec::new(),
            events: None,
            early_sums: HashMap::new(),
            overdue: HashMap::new(),
        }
    }

    /// Sends every final-chunk acknowledgement and every Sum seen to `events`.
    pub fn set_events(&mut self, events: std::sync::mpsc::Sender<VerifierEvent>) {
        self.events = Some(events);
    }

    fn emit(&self, event: VerifierEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    /// The chunker handed `stream`'s final chunk to the journal; its content hashes to `sha1`.
    pub fn expect(&mut self, stream: StreamId, sha1: [u8; 20], last_seq: u32) {
        self.expected.insert(
            stream,
            Expected {
                sha1,
                last_seq,
                final_durable_at: None,
            },
        );
    }

    /// The final chunk of `stream` was never handed to a journal after all (its chunker died
    /// with it unsent): expect no Sum.
    pub fn forget(&mut self, stream: StreamId) {
        if self.expected.remove(&stream).is_some() {
            self.verified.skip(split_stream_id(stream).2);
        }
    }

    /// The final chunk of `stream` became durable at `at`, in the frame at `offset` of
    /// `journal`; starts its SLA clock.
    pub fn final_durable(&mut self, stream: StreamId, at: Instant, journal: &str, offset: u64) {
        let sha1 = match self.expected.get_mut(&stream) {
            Some(e) => {
                e.final_durable_at = Some(at);
                e.sha1
            }
            None => match self.early_sums.remove(&stream) {
                Some(early) => {
                    self.judge_latency(stream, early.correct, at, early.at, &early.journal, early.offset);
                    early.sha1
                }
                None => return,
            },
        };
        self.emit(VerifierEvent::FinalDurable {
            stream,
            sha1,
            journal: journal.to_string(),
            offset,
        });
    }

    /// A Sum for one of this chunker's streams (this run) was seen durable at `at`.
    pub fn on_sum(&mut self, sum: &Sum, journal: &str, offset: u64, at: Instant) {
        let (run, chunker, counter) = split_stream_id(sum.stream);
        debug_assert_eq!((run, chunker), (self.run_id, self.chunker));
        let stream = sum.stream;
        if let Some(e) = self.overdue.remove(&stream) {
            // Late: the missing Sum is already a violation. It must still be the right one.
            self.check_sum(&e, sum, journal, offset);
            self.emit_sum_seen(sum, journal, offset);
            return;
        }
        if self.verified.contains(counter) {
            self.violations.push(Violation(format!(
                "duplicate Sum for stream {stream} in {journal} at offset {offset}"
            )));
            return;
        }
        let Some(e) = self.expected.remove(&stream) else {
            self.violations.push(Violation(format!(
                "Sum for stream {stream} in {journal} at offset {offset}, which this chunker never finished"
            )));
            return;
        };
        let correct = self.check_sum(&e, sum, journal, offset);
        self.emit_sum_seen(sum, journal, offset);
        self.verified.insert(counter);
        match e.final_durable_at {
            Some(final_at) => self.judge_latency(stream, correct, final_at, at, journal, offset),
            // Judged once the final chunk's durability time is known: until then the Sum is
            // neither verified nor late.
            None => {
                let early = EarlySum {
                    sha1: e.sha1,
                    correct,
                    at,
                    journal: journal.to_string(),
                    offset,
                };
                self.early_sums.insert(stream, early);
            }
        }
    }

    /// Records the latency of a Sum seen at `sum_at` for a final chunk durable at `final_at`, and
    /// counts it verified if it is `correct` and on time. A late one, durable past the SLA though
    /// before the next `check_sla` looked, is as late as a Sum that check reported missing, and
    /// counted the same way (a violation, not verified).
    fn judge_latency(
        &mut self,
        stream: StreamId,
        correct: bool,
        final_at: Instant,
        sum_at: Instant,
        journal: &str,
        offset: u64,
    ) {
        let latency = sum_at.saturating_duration_since(final_at);
        self.latency_us
            .saturating_record(latency.as_micros().max(1) as u64);
        if latency > self.sla {
            self.violations.push(Violation(format!(
                "late Sum for stream {stream} in {journal} at offset {offset}: durable {} after the final chunk, SLA is {}",
                human_duration(latency),
                human_duration(self.sla)
            )));
            return;
        }
        if correct {
            self.sums_verified += 1;
        }
    }

    /// Records a violation if `sum` is not the one `e` expects; true if it is.
    fn check_sum(&mut self, e: &Expected, sum: &Sum, journal: &str, offset: u64) -> bool {
        let correct = e.sha1 == sum.sha1 && e.last_seq == sum.last_seq;
        if !correct {
            self.violations.push(Violation(format!(
                "wrong Sum for stream {} in {journal} at offset {offset}: sha1 {} (last seq {}), expected {} (last seq {})",
                sum.stream,
                ss_consumer::message::hex(&sum.sha1),
                sum.last_seq,
                ss_consumer::message::hex(&e.sha1),
                e.last_seq
            )));
        }
        correct
    }

    fn emit_sum_seen(&self, sum: &Sum, journal: &str, offset: u64) {
        self.emit(VerifierEvent::SumSeen {
            stream: sum.stream,
            sha1: sum.sha1,
            journal: journal.to_string(),
            offset,
        });
    }

    /// Records a violation for every stream whose Sum is overdue at `now`.
    pub fn check_sla(&mut self, now: Instant) {
        let sla = self.sla;
        let mut late: Vec<(StreamId, Duration)> = self
            .expected
            .iter()
            .filter_map(|(id, e)| {
                let waited = now.saturating_duration_since(e.final_durable_at?);
                (waited > sla).then_some((*id, waited))
            })
            .collect();
        late.sort();
        for (id, waited) in late {
            let e = self.expected.remove(&id).expect("listed from expected");
            self.overdue.insert(id, e);
            self.verified.skip(split_stream_id(id).2);
            self.violations.push(Violation(format!(
                "missing Sum for stream {id}: final chunk durable {} ago, SLA is {}",
                human_duration(waited),
                human_duration(sla)
            )));
        }
    }

    /// Streams expected and not yet verified (a Sum seen before its final chunk was noticed
    /// durable is not verified yet).
    pub fn pending(&self) -> usize {
        self.expected.len() + self.early_sums.len()
    }

    pub fn sums_verified(&self) -> u64 {
        self.sums_verified
    }

    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    pub fn latency_us(&self) -> &Histogram<u64> {
        &self.latency_us
    }
}

/// `d` in seconds with one decimal, or in milliseconds below a second (an SLA of 3 ms must not
/// read "0.0 s").
fn human_duration(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream_gen::stream_id;

    fn sum(id: StreamId, sha: u8) -> Sum {
        Sum {
            stream: id,
            last_seq: 2,
            sha1: [sha; 20],
        }
    }

    #[test]
    fn one_correct_sum_verifies_and_a_second_is_a_duplicate() {
        let mut v = Verifier::new(1, 0, Duration::from_secs(1));
        let id = stream_id(1, 0, 0);
        v.expect(id, [7; 20], 2);
        let t = Instant::now();
        v.final_durable(id, t, "chunks-000", 0);
        v.on_sum(&sum(id, 7), "sums-000", 0, t + Duration::from_millis(3));
        assert_eq!((v.sums_verified(), v.violations().len(), v.pending()), (1, 0, 0));
        v.on_sum(&sum(id, 7), "sums-000", 100, t);
        assert!(v.violations()[0].0.contains("duplicate"));
    }

    #[test]
    fn a_sum_after_its_sla_passed_is_late_not_a_duplicate_and_is_still_checked() {
        let mut v = Verifier::new(1, 0, Duration::from_millis(3));
        let (a, b) = (stream_id(1, 0, 0), stream_id(1, 0, 1));
        let t = Instant::now();
        for id in [a, b] {
            v.expect(id, [7; 20], 2);
            v.final_durable(id, t, "chunks-000", 0);
        }
        v.check_sla(t + Duration::from_millis(5));
        let missing: Vec<_> = v.violations().iter().map(|x| x.0.clone()).collect();
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(missing[0].contains("SLA is 3.0 ms"), "{missing:?}");
        // `a`'s one Sum arrives late and right: nothing more to report.
        v.on_sum(&sum(a, 7), "sums-000", 0, t + Duration::from_millis(6));
        assert_eq!(v.violations().len(), 2, "{:?}", v.violations());
        // `b`'s arrives late and wrong: still a wrong Sum.
        v.on_sum(&sum(b, 8), "sums-000", 100, t + Duration::from_millis(6));
        assert!(v.violations()[2].0.contains("wrong Sum"), "{:?}", v.violations());
        // A second Sum for `a` is a duplicate.
        v.on_sum(&sum(a, 7), "sums-000", 200, t + Duration::from_millis(7));
        assert!(v.violations()[3].0.contains("duplicate"), "{:?}", v.violations());
        assert_eq!(v.violations().len(), 4);
    }

    #[test]
    fn a_sum_durable_past_its_sla_is_late_even_before_the_next_sla_check() {
        let mut v = Verifier::new(1, 0, Duration::from_millis(3));
        let (a, b) = (stream_id(1, 0, 0), stream_id(1, 0, 1));
        let t = Instant::now();
        for id in [a, b] {
            v.expect(id, [7; 20], 2);
            v.final_durable(id, t, "chunks-000", 0);
        }
        // No `check_sla` in between: the Sums' own durability times tell.
        v.on_sum(&sum(a, 7), "sums-000", 0, t + Duration::from_millis(2));
        v.on_sum(&sum(b, 7), "sums-000", 100, t + Duration::from_millis(9));
        assert_eq!(v.sums_verified(), 1);
        let all: Vec<_> = v.violations().iter().map(|x| x.0.clone()).collect();
        assert_eq!(all.len(), 1, "{all:?}");
        assert!(
            all[0].contains("late Sum for stream")
                && all[0].contains("9.0 ms")
                && all[0].contains("SLA is 3.0 ms"),
            "{all:?}"
        );
        // A second Sum for the late stream is still a duplicate.
        v.on_sum(&sum(b, 7), "sums-000", 200, t + Duration::from_millis(10));
        assert!(v.violations()[1].0.contains("duplicate"), "{:?}", v.violations());
    }

    /// Before, a Sum seen ahead of its chunker's durability notice counted as verified at once
    /// and its latency, recorded later, was never held against the SLA: `run --sla 2ms` exited 0
    /// with a max latency over 2 ms.
    #[test]
    fn a_sum_seen_before_its_final_chunk_was_noticed_durable_is_still_held_to_the_sla() {
        let mut v = Verifier::new(1, 0, Duration::from_millis(3));
        let (a, b, c) = (stream_id(1, 0, 0), stream_id(1, 0, 1), stream_id(1, 0, 2));
        let t = Instant::now();
        for id in [a, b, c] {
            v.expect(id, [7; 20], 2);
        }
        v.on_sum(&sum(a, 7), "sums-000", 0, t + Duration::from_millis(2));
        v.on_sum(&sum(b, 7), "sums-000", 100, t + Duration::from_millis(9));
        v.on_sum(&sum(c, 8), "sums-000", 200, t + Duration::from_millis(1));
        // Seen, not yet judged.
        assert_eq!((v.sums_verified(), v.pending()), (0, 3));
        for id in [a, b, c] {
            v.final_durable(id, t, "chunks-000", 0);
        }
        assert_eq!((v.sums_verified(), v.pending()), (1, 0));
        let all: Vec<_> = v.violations().iter().map(|x| x.0.clone()).collect();
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(all[0].contains("wrong Sum"), "{all:?}");
        assert!(
            all[1].contains("late Sum")
                && all[1].contains("sums-000 at offset 100")
                && all[1].contains("9.0 ms"),
            "{all:?}"
        );
    }

    #[test]
    fn wrong_unknown_and_late_sums_are_violations() {
        let mut v = Verifier::new(1, 0, Duration::from_millis(10));
        let (a, b, c) = (stream_id(1, 0, 0), stream_id(1, 0, 1), stream_id(1, 0, 2));
        v.expect(a, [1; 20], 2);
        v.on_sum(&sum(a, 2), "sums-000", 0, Instant::now());
        v.on_sum(&sum(b, 2), "sums-000", 0, Instant::now());
        v.expect(c, [1; 20], 2);
        let t = Instant::now();
        v.final_durable(c, t, "chunks-000", 0);
        v.check_sla(t + Duration::from_millis(5));
        assert_eq!(v.violations().len(), 2);
        v.check_sla(t + Duration::from_millis(50));
        let all: Vec<_> = v.violations().iter().map(|x| x.0.clone()).collect();
        assert!(
            all[0].contains("wrong Sum") && all[1].contains("never finished") && all[2].contains("missing"),
            "{all:?}"
        );
    }
}
