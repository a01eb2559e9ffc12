//! The exactly-once audit: one check, used by `stream-sum verify`, `stream-sum crash-test`, the
//! chunker's storage-fault harness and the consumer's crash tests.
//!
//! It has three parts:
//!
//! - [`ChunkIndex::scan`] rebuilds every stream from a chunk journal: its SHA-1 (a repeated chunk
//!   counts once; a gap, a chunk after the final one or a stream that does not start at seq 0 is
//!   a violation), where its final chunk is, and which streams are unfinished.
//! - [`SumIndex::scan`] collects every Sum of a shard log, with where it is, and the shard's last
//!   checkpointed input offset.
//! - [`audit`] checks them: against themselves (every finished stream has exactly one Sum, equal
//!   to the recomputed SHA-1; no Sum for a stream that did not finish) and, if given, against a
//!   [`History`] kept outside the journals, which the journals cannot vouch for themselves
//!   (every acknowledged final chunk is still there and has exactly one correct Sum; every Sum
//!   seen durable is still there).
//!
//! Retention and a live writer make some streams impossible to judge; [`Settled`] says whether
//! the caller knows every input was applied (a graceful end), in which case a missing Sum is
//! always lost, or not (a live directory: a Sum may be pending).

use std::collections::{HashMap, HashSet};

use sha1::{Digest, Sha1};
use ss_log::{FrameJournal, FrameReader, Journal, ReadError};

use crate::checkpoint::Checkpoint;
use crate::message::{hex, Chunk, DecodeError, Message, StreamId, Sum};

/// Scanning a journal for the audit failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{journal} offset {offset}: {error}")]
    Decode {
        journal: String,
        offset: u64,
        error: DecodeError,
    },
    #[error("{journal} offset {offset}: a chunk in a shard log")]
    ChunkInShardLog { journal: String, offset: u64 },
}

fn decode_error(journal: &Journal, offset: u64) -> impl Fn(DecodeError) -> AuditError + '_ {
    move |error| AuditError::Decode {
        journal: journal.name().to_string(),
        offset,
        error,
    }
}

fn boundary_decode_error(journal: &str, offset: u64, detail: String) -> AuditError {
    AuditError::Decode {
        journal: journal.to_string(),
        offset,
        error: DecodeError::new("message", detail),
    }
}

/// Where a message is: a journal and the offset of its frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct At {
    pub journal: String,
    pub offset: u64,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at offset {}", self.journal, self.offset)
    }
}

/// A stream whose final chunk is in a chunk journal.
#[derive(Debug, Clone)]
pub struct Finished {
    pub sha1: [u8; 20],
    pub last_seq: u32,
    /// Its final chunk.
    pub at: At,
}

struct OpenStream {
    hasher: Sha1,
    last_seq: u32,
}

/// What chunk journals hold, stream by stream.
#[derive(Default)]
pub struct ChunkIndex {
    pub finished: HashMap<StreamId, Finished>,
    /// Every place a final chunk is, whatever the state of its stream.
    pub finals_at: HashSet<(StreamId, At)>,
    /// Unfinished streams and the last seq of each.
    pub unfinished: HashMap<StreamId, u32>,
    /// Streams whose first chunks retention removed: their SHA-1 cannot be recomputed.
    pub partial: HashSet<StreamId>,
    /// The final chunk (its seq and place) of each partial stream whose final chunk is there:
    /// such a stream still needs exactly one Sum, of that final seq.
    pub partial_finals: HashMap<StreamId, (u32, At)>,
    pub chunks: u64,
    pub chunk_bytes: u64,
    pub duplicate_chunks: u64,
    /// Ranges retention removed while a journal was scanned (a live `run --retention`).
    pub gaps: u64,
    /// Retention removed chunks (before or during the scan): Sums for streams no chunk journal
    /// holds are unverifiable rather than violations.
    pub retained: bool,
    /// Where the chunk journals began when scanned (retention removed what lay below).
    pub first_offsets: FirstOffsets,
    /// Damage within the chunk journals: gaps in a stream, chunks after the final one.
    pub violations: Vec<String>,
}

impl ChunkIndex {
    /// Rebuilds every stream of one chunk journal, from its first offset to its durable head,
    /// stepping over ranges that retention removes meanwhile.
    pub fn scan(journal: &Journal) -> Result<ChunkIndex, AuditError> {
        let first = journal.first_offset();
        let mut index = ChunkIndex {
            retained: first > 0,
            first_offsets: FirstOffsets::of(journal.name(), first),
            ..ChunkIndex::default()
        };
        let mut open: HashMap<StreamId, OpenStream> = HashMap::new();
        let mut frames = journal.frames(first).step_over_removed();
        loop {
            let gaps_before = frames.gaps().len();
            let Some(frame) = frames.next().transpose()? else {
                break;
            };
            if frames.gaps().len() > gaps_before {
                // Chunks were removed under the scan: streams open across the hole cannot be
                // checked.
                index.retained = true;
                index.partial.extend(open.drain().map(|(id, _)| id));
            }
            let at = At {
                journal: journal.name().to_string(),
                offset: frame.offset,
            };
            for m in frames.messages(&frame) {
                let chunk = Chunk::decode(m?).map_err(decode_error(journal, frame.offset))?;
                index.add_chunk(&mut open, &chunk, &at);
            }
        }
        index.gaps = frames.gaps().len() as u64;
        index.unfinished = open.into_iter().map(|(id, s)| (id, s.last_seq)).collect();
        Ok(index)
    }

    /// [`ChunkIndex::scan`] of a journal behind the journal boundary (e.g. a JetStream stream,
    /// where nothing is removed), from its first position up to `end` (the head captured for a
    /// consistent cut).
    pub fn scan_boundary<J: FrameJournal>(journal: &J, end: u64) -> Result<ChunkIndex, AuditError> {
        let first = journal.first_offset()?;
        let mut index = ChunkIndex {
            retained: first > 0,
            first_offsets: FirstOffsets::of(journal.name(), first),
            ..ChunkIndex::default()
        };
        let mut open: HashMap<StreamId, OpenStream> = HashMap::new();
        let mut reader = journal.reader(first)?;
        while reader.offset() < end {
            let Some(frame) = reader.try_next()? else {
                break;
            };
            let at = At {
                journal: journal.name().to_string(),
                offset: frame.offset,
            };
            for m in frame.messages() {
                let m = m.map_err(|e| boundary_decode_error(journal.name(), frame.offset, e.to_string()))?;
                let chunk = Chunk::decode(m)
                    .map_err(|e| boundary_decode_error(journal.name(), frame.offset, e.to_string()))?;
                index.add_chunk(&mut open, &chunk, &at);
            }
        }
        index.unfinished = open.into_iter().map(|(id, s)| (id, s.last_seq)).collect();
        Ok(index)
    }

    fn add_chunk(&mut self, open: &mut HashMap<StreamId, OpenStream>, chunk: &Chunk<'_>, at: &At) {
        self.chunks += 1;
        self.chunk_bytes += chunk.data.len() as u64;
        let id = chunk.stream;
        if chunk.is_final {
            self.finals_at.insert((id, at.clone()));
        }
        if let Some(f) = self.finished.get(&id) {
            if chunk.seq <= f.last_seq {
                self.duplicate_chunks += 1;
            } else {
                self.violations.push(format!(
                    "stream {id}: chunk seq {} after its final chunk, at {} offset {}",
                    chunk.seq, at.journal, at.offset
                ));
            }
            return;
        }
        let s = match open.get_mut(&id) {
            Some(s) if chunk.seq <= s.last_seq => {
                self.duplicate_chunks += 1;
                return;
            }
            Some(s) if chunk.seq != s.last_seq + 1 => {
                self.violations.push(format!(
                    "stream {id}: gap in the chunk journal: seq {} after {}, at {} offset {}",
                    chunk.seq, s.last_seq, at.journal, at.offset
                ));
                open.remove(&id);
                return;
            }
            Some(s) => {
                s.last_seq = chunk.seq;
                s
            }
            None if chunk.seq != 0 => {
                if !self.retained {
                    self.violations.push(format!(
                        "stream {id}: first chunk has seq {}, at {} offset {}",
                        chunk.seq, at.journal, at.offset
                    ));
                }
                self.partial.insert(id);
                if chunk.is_final {
                    self.partial_finals.insert(id, (chunk.seq, at.clone()));
                }
                return;
            }
            None => open.entry(id).or_insert(OpenStream {
                hasher: Sha1::new(),
                last_seq: 0,
            }),
        };
        s.hasher.update(chunk.data);
        if chunk.is_final {
            let s = open.remove(&id).expect("the stream is open");
            let finished = Finished {
                sha1: s.hasher.finalize().into(),
                last_seq: s.last_seq,
                at: at.clone(),
            };
            self.finished.insert(id, finished);
        }
    }

    /// Adds the streams of another chunk journal (streams never span journals).
    pub fn merge(&mut self, other: ChunkIndex) {
        self.finished.extend(other.finished);
        self.finals_at.extend(other.finals_at);
        self.unfinished.extend(other.unfinished);
        self.partial.extend(other.partial);
        self.partial_finals.extend(other.partial_finals);
        self.chunks += other.chunks;
        self.chunk_bytes += other.chunk_bytes;
        self.duplicate_chunks += other.duplicate_chunks;
        self.gaps += other.gaps;
        self.retained |= other.retained;
        self.first_offsets.0.extend(other.first_offsets.0);
        self.violations.extend(other.violations);
    }
}

/// Per journal: its first stored offset when it was scanned.
#[derive(Debug, Clone, Default)]
pub struct FirstOffsets(HashMap<String, u64>);

impl FirstOffsets {
    fn of(journal: &str, first: u64) -> FirstOffsets {
        FirstOffsets(HashMap::from([(journal.to_string(), first)]))
    }

    /// Whether retention removed the place `at` (below its journal's first offset at the scan).
    pub fn removed(&self, at: &At) -> bool {
        self.0.get(&at.journal).is_some_and(|&first| at.offset < first)
    }
}

/// A shard's progress as its log shows it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShardProgress {
    /// Input offset of the shard's last checkpoint.
    pub checkpoint_input_offset: u64,
    /// Retention removed the front of the shard log (or a range while it was read): a finished
    /// stream whose final chunk lies below this input offset may have had its Sum there.
    pub sums_removed_below: u64,
}

/// The Sums of shard logs, by stream.
#[derive(Default)]
pub struct SumIndex {
    pub sums: HashMap<StreamId, Vec<(Sum, At)>>,
    pub count: usize,
    /// Streams the summers expired.
    pub expired: u64,
    /// Per input (chunk journal) name: its shard's progress.
    pub progress: HashMap<String, ShardProgress>,
    /// Where the shard logs began when scanned.
    pub first_offsets: FirstOffsets,
}

impl SumIndex {
    /// Collects the Sums of one shard log, whose shard reads the chunk journal `input`, stepping
    /// over ranges that retention removes meanwhile.
    pub fn scan(journal: &Journal, input: &str) -> Result<SumIndex, AuditError> {
        let mut index = SumIndex {
            first_offsets: FirstOffsets::of(journal.name(), journal.first_offset()),
            ..SumIndex::default()
        };
        let mut progress = ShardProgress::default();
        let mut frames = journal.frames(journal.first_offset()).step_over_removed();
        // After removed Sums, the first checkpoint read bounds the input they could have covered.
        let mut removed_unbounded = journal.first_offset() > 0;
        loop {
            let gaps_before = frames.gaps().len();
            let Some(frame) = frames.next().transpose()? else {
                break;
            };
            removed_unbounded |= frames.gaps().len() > gaps_before;
            let at = At {
                journal: journal.name().to_string(),
                offset: frame.offset,
            };
            for m in frames.messages(&frame) {
                match Message::decode(m?).map_err(decode_error(journal, frame.offset))? {
                    Message::Sum(s) => index.add(s, at.clone()),
                    Message::Expired(_) => index.expired += 1,
                    Message::Checkpoint(c) => {
                        progress.checkpoint_input_offset = Checkpoint::decode(c)
                            .map_err(decode_error(journal, frame.offset))?
                            .input_offset;
                        if removed_unbounded {
                            progress.sums_removed_below = progress.checkpoint_input_offset;
                            removed_unbounded = false;
                        }
                    }
                    Message::Chunk(_) => {
                        return Err(AuditError::ChunkInShardLog {
                            journal: journal.name().to_string(),
                            offset: frame.offset,
                        })
                    }
                }
            }
        }
        if removed_unbounded {
            progress.sums_removed_below = progress.checkpoint_input_offset;
        }
        index.progress.insert(input.to_string(), progress);
        Ok(index)
    }

    /// [`SumIndex::scan`] of a shard log behind the journal boundary (nothing removed), up to
    /// `end` (the head captured for a consistent cut).
    pub fn scan_boundary<J: FrameJournal>(
        journal: &J,
        input: &str,
        end: u64,
    ) -> Result<SumIndex, AuditError> {
        let mut index = SumIndex::default();
        let mut progress = ShardProgress::default();
        let mut reader = journal.reader(journal.first_offset()?)?;
        while reader.offset() < end {
            let Some(frame) = reader.try_next()? else {
                break;
            };
            let at = At {
                journal: journal.name().to_string(),
                offset: frame.offset,
            };
            let bad = |e: String| boundary_decode_error(journal.name(), frame.offset, e);
            for m in frame.messages() {
                match Message::decode(m.map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))? {
                    Message::Sum(s) => index.add(s, at.clone()),
                    Message::Expired(_) => index.expired += 1,
                    Message::Checkpoint(c) => {
                        progress.checkpoint_input_offset = Checkpoint::decode(c)
                            .map_err(|e| bad(e.to_string()))?
                            .input_offset;
                    }
                    Message::Chunk(_) => {
                        return Err(AuditError::ChunkInShardLog {
                            journal: journal.name().to_string(),
                            offset: frame.offset,
                        })
                    }
                }
            }
        }
        index.progress.insert(input.to_string(), progress);
        Ok(index)
    }

    /// Records one Sum found at `at`.
    pub fn add(&mut self, sum: Sum, at: At) {
        self.count += 1;
        self.sums.entry(sum.stream).or_default().push((sum, at));
    }

    /// Adds the Sums of another shard log.
    pub fn merge(&mut self, other: SumIndex) {
        for (id, list) in other.sums {
            self.sums.entry(id).or_default().extend(list);
        }
        self.count += other.count;
        self.expired += other.expired;
        self.progress.extend(other.progress);
        self.first_offsets.0.extend(other.first_offsets.0);
    }
}

/// A final chunk acknowledged durable (or an oracle's expectation of a finished stream).
#[derive(Debug, Clone)]
pub struct Acknowledged {
    pub sha1: [u8; 20],
    /// The seq of the final chunk, where the history knows it.
    pub last_seq: Option<u32>,
    /// Where the final chunk was acknowledged, where the history knows it.
    pub at: Option<At>,
}

/// What was acknowledged, kept outside the journals (a crash-test parent, a test harness).
#[derive(Debug, Default, Clone)]
pub struct History {
    pub finals: HashMap<StreamId, Acknowledged>,
    /// Every Sum seen durable, with where it was.
    pub sums_seen: Vec<(Sum, At)>,
    /// `finals` names every stream that may have a Sum (an oracle that planned every stream):
    /// a Sum for any other stream is a violation.
    pub complete: bool,
}

impl History {
    /// Records a final chunk acknowledged durable at `at`.
    pub fn final_acknowledged(&mut self, stream: StreamId, sha1: [u8; 20], at: At) {
        let ack = Acknowledged {
            sha1,
            last_seq: None,
            at: Some(at),
        };
        self.finals.insert(stream, ack);
    }

    /// Records a Sum seen durable at `at`.
    pub fn sum_seen(&mut self, sum: Sum, at: At) {
        self.sums_seen.push((sum, at));
    }
}

/// Whether every input was applied before the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// A graceful end: every input was applied, so a finished stream without a Sum is lost.
    Yes,
    /// A live directory, or one left by a crash: a finished stream past its shard's checkpoint
    /// may still get its Sum (pending).
    No,
}

/// The kinds of violation, one finding of each per stream at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Lost,
    Duplicated,
    Mismatched,
    Other,
}

/// What the audit found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Streams with exactly one Sum, equal to the recomputed SHA-1 ([`check_journals`]) or to
    /// the acknowledged one ([`check_history`]).
    pub verified: usize,
    /// The streams [`check_history`] verified (so that checks at several moments add up).
    pub verified_streams: HashSet<StreamId>,
    /// Finished streams whose final chunk lies past their shard's checkpoint.
    pub pending: usize,
    /// Streams or Sums retention made impossible to check.
    pub unverifiable: u64,
    pub lost: Vec<String>,
    pub duplicated: Vec<String>,
    pub mismatched: Vec<String>,
    /// Anything else wrong: damage in the chunk journals, Sums for streams that never finished.
    pub other: Vec<String>,
    /// (kind, stream) of every violation recorded, so that two checks report a stream once.
    flagged: HashSet<(Kind, StreamId)>,
}

impl Findings {
    pub fn violation_count(&self) -> usize {
        self.lost.len() + self.duplicated.len() + self.mismatched.len() + self.other.len()
    }

    pub fn violations(&self) -> impl Iterator<Item = &String> {
        self.other
            .iter()
            .chain(&self.lost)
            .chain(&self.duplicated)
            .chain(&self.mismatched)
    }

    /// Records a violation of `stream`, unless one of the same kind is recorded already.
    fn flag(&mut self, kind: Kind, stream: StreamId, message: String) {
        if !self.flagged.insert((kind, stream)) {
            return;
        }
        match kind {
            Kind::Lost => self.lost.push(message),
            Kind::Duplicated => self.duplicated.push(message),
            Kind::Mismatched => self.mismatched.push(message),
            Kind::Other => self.other.push(message),
        }
    }
}

/// Both checks: the journals against themselves and against `history`. A stream found wrong by
/// both is reported once per kind; `verified` counts are those of the journal check.
pub fn audit(chunks: &ChunkIndex, sums: &SumIndex, history: &History, settled: Settled) -> Findings {
    let mut findings = check_journals(chunks, sums, settled);
    let verified = findings.verified;
    check_history_into(history, Some(chunks), sums, settled, &mut findings);
    findings.verified = verified;
    findings
}

/// The journals against themselves: every finished stream has exactly one Sum, equal to the
/// SHA-1 of its chunks, unless it is pending (`settled` is [`Settled::No`] and its final chunk
/// lies past its shard's checkpoint) or retention removed what would decide; no Sum names a
/// stream that did not finish.
pub fn check_journals(chunks: &ChunkIndex, sums: &SumIndex, settled: Settled) -> Findings {
    let mut findings = Findings::default();
    findings.other.extend(chunks.violations.iter().cloned());
    let mut ids: Vec<&StreamId> = chunks.finished.keys().collect();
    ids.sort();
    for id in ids {
        let f = &chunks.finished[id];
        match sums.sums.get(id).map(Vec::as_slice) {
            None | Some([]) => check_no_sum(*id, &f.at, sums, settled, &mut findings),
            Some(list) => check_sums(*id, f, list, &mut findings),
        }
    }
    check_partial(chunks, sums, settled, &mut findings);
    check_unfinished(chunks, sums, &mut findings);
    findings
}

/// A stream whose final chunk is at `at` has no Sum: pending if its shard has not checkpointed
/// past it (and `settled` is [`Settled::No`]), unverifiable if retention removed the shard-log
/// fragments that may have held it, lost otherwise.
fn check_no_sum(id: StreamId, at: &At, sums: &SumIndex, settled: Settled, findings: &mut Findings) {
    let progress = sums.progress.get(&at.journal).copied().unwrap_or_default();
    if settled == Settled::No && at.offset >= progress.checkpoint_input_offset {
        findings.pending += 1;
    } else if at.offset < progress.sums_removed_below {
        // Its Sum may have been in the shard-log fragments retention removed.
        findings.unverifiable += 1;
    } else {
        let message = format!(
            "stream {id}: finished (final chunk in {at}) but has no Sum, though its shard checkpointed past it"
        );
        findings.flag(Kind::Lost, id, message);
    }
}

/// "stream ID: N Sums (journal@offset, ...)" for a stream with more than one Sum.
fn duplicated_message(id: StreamId, list: &[(Sum, At)]) -> String {
    let at: Vec<String> = list
        .iter()
        .map(|(_, a)| format!("{}@{}", a.journal, a.offset))
        .collect();
    format!("stream {id}: {} Sums ({})", list.len(), at.join(", "))
}

/// The Sums of a finished stream: exactly one, equal to the SHA-1 of its chunks.
fn check_sums(id: StreamId, f: &Finished, list: &[(Sum, At)], findings: &mut Findings) {
    if list.len() > 1 {
        findings.flag(Kind::Duplicated, id, duplicated_message(id, list));
    }
    let (sum, at) = &list[0];
    if sum.sha1 != f.sha1 || sum.last_seq != f.last_seq {
        let message = format!(
            "stream {id}: Sum in {at} is {} (last seq {}), recomputed {} (last seq {})",
            hex(&sum.sha1),
            sum.last_seq,
            hex(&f.sha1),
            f.last_seq
        );
        findings.flag(Kind::Mismatched, id, message);
    } else if list.len() == 1 {
        findings.verified += 1;
    }
}

/// Streams whose first chunks retention removed: their SHA-1 cannot be recomputed, but what the
/// shard logs alone prove still counts. More than one Sum is a duplicate; a final chunk that is
/// there needs exactly one Sum (lost, as for any stream, if its shard checkpointed past it and
/// kept its Sums), of its final seq. Only the Sum's SHA-1 is unverifiable.
fn check_partial(chunks: &ChunkIndex, sums: &SumIndex, settled: Settled, findings: &mut Findings) {
    let mut ids: Vec<&StreamId> = chunks.partial.iter().collect();
    ids.sort();
    for &id in ids {
        let list = sums.sums.get(&id).map_or(&[][..], Vec::as_slice);
        if list.len() > 1 {
            findings.flag(Kind::Duplicated, id, duplicated_message(id, list));
            continue;
        }
        match (chunks.partial_finals.get(&id), list) {
            (Some((_, at)), []) => check_no_sum(id, at, sums, settled, findings),
            (Some((last_seq, _)), [(sum, at)]) if sum.last_seq != *last_seq => {
                let message = format!(
                    "stream {id}: Sum in {at} has last seq {}, its final chunk seq {last_seq}",
                    sum.last_seq
                );
                findings.flag(Kind::Mismatched, id, message);
            }
            _ => findings.unverifiable += 1,
        }
    }
}

/// No Sum names a stream that did not finish in the chunk journals, and none has two Sums
/// (which the shard logs prove alone, whatever retention removed from the chunk journals).
fn check_unfinished(chunks: &ChunkIndex, sums: &SumIndex, findings: &mut Findings) {
    let mut ids: Vec<&StreamId> = sums
        .sums
        .keys()
        .filter(|id| !chunks.finished.contains_key(id) && !chunks.partial.contains(id))
        .collect();
    ids.sort();
    for &id in ids {
        let list = &sums.sums[&id];
        if list.len() > 1 {
            findings.flag(Kind::Duplicated, id, duplicated_message(id, list));
        }
        let (_, at) = &list[0];
        if chunks.unfinished.contains_key(&id) {
            let message = format!("stream {id}: Sum in {at} but the stream is unfinished");
            findings.flag(Kind::Other, id, message);
        } else if chunks.retained {
            // Streams whose chunks retention removed entirely: their Sums cannot be checked.
            findings.unverifiable += 1;
        } else {
            let message = format!("stream {id}: Sum in {at} for a stream no chunk journal holds");
            findings.flag(Kind::Other, id, message);
        }
    }
}

/// The journals against `history`: every acknowledged final chunk is still in its chunk journal
/// (if `chunks` were scanned) and its stream has exactly one Sum, equal to the acknowledged
/// SHA-1, unless it is pending (`settled` is [`Settled::No`] and the final chunk lies past its
/// shard's checkpoint, or where it lies is unknown); every Sum seen durable is still there; with
/// a complete history, no other stream has a Sum.
pub fn check_history(
    history: &History,
    chunks: Option<&ChunkIndex>,
    sums: &SumIndex,
    settled: Settled,
) -> Findings {
    let mut findings = Findings::default();
    check_history_into(history, chunks, sums, settled, &mut findings);
    findings
}

fn check_history_into(
    history: &History,
    chunks: Option<&ChunkIndex>,
    sums: &SumIndex,
    settled: Settled,
    findings: &mut Findings,
) {
    let mut ids: Vec<&StreamId> = history.finals.keys().collect();
    ids.sort();
    for id in ids {
        check_acknowledged(*id, &history.finals[id], chunks, sums, settled, findings);
    }
    for (sum, at) in &history.sums_seen {
        let still_there = sums
            .sums
            .get(&sum.stream)
            .is_some_and(|found| found.iter().any(|(s, a)| s.sha1 == sum.sha1 && a == at));
        if !still_there && sums.first_offsets.removed(at) {
            // Delivered, then removed by retention (its shard had snapshotted past it).
            findings.unverifiable += 1;
        } else if !still_there {
            let message = format!(
                "stream {}: Sum seen durable in {at} is no longer there",
                sum.stream
            );
            findings.flag(Kind::Lost, sum.stream, message);
        }
    }
    if history.complete {
        let mut unknown: Vec<&StreamId> = sums
            .sums
            .keys()
            .filter(|id| !history.finals.contains_key(id))
            .collect();
        unknown.sort();
        for id in unknown {
            let message = format!("stream {id}: has a Sum, but never finished");
            findings.flag(Kind::Other, *id, message);
        }
    }
}

/// One acknowledged final chunk: still there, and exactly one Sum, equal to the acknowledged
/// SHA-1 (and final seq, where known).
fn check_acknowledged(
    id: StreamId,
    ack: &Acknowledged,
    chunks: Option<&ChunkIndex>,
    sums: &SumIndex,
    settled: Settled,
    findings: &mut Findings,
) {
    if let (Some(chunks), Some(at)) = (chunks, &ack.at) {
        // A final chunk retention removed is not checked for; its Sum still is, below.
        if !chunks.finals_at.contains(&(id, at.clone())) && !chunks.first_offsets.removed(at) {
            let message = format!("stream {id}: final chunk acknowledged durable in {at} is not there");
            return findings.flag(Kind::Lost, id, message);
        }
    }
    let found = sums.sums.get(&id).map_or(&[][..], Vec::as_slice);
    let Some((sum, at)) = found.first() else {
        let progress = |at: &At| sums.progress.get(&at.journal).copied().unwrap_or_default();
        let past_checkpoint = ack
            .at
            .as_ref()
            .is_none_or(|at| at.offset >= progress(at).checkpoint_input_offset);
        if settled == Settled::No && past_checkpoint {
            // Its shard has not checkpointed past it yet: the Sum may still come.
            findings.pending += 1;
            return;
        }
        if ack
            .at
            .as_ref()
            .is_some_and(|at| at.offset < progress(at).sums_removed_below)
        {
            // Its Sum may have been in the shard-log fragments retention removed.
            findings.unverifiable += 1;
            return;
        }
        let message = format!("stream {id}: final chunk acknowledged durable, but no Sum");
        return findings.flag(Kind::Lost, id, message);
    };
    if found.len() > 1 {
        findings.flag(Kind::Duplicated, id, format!("stream {id}: {} Sums", found.len()));
    }
    if sum.sha1 != ack.sha1 || ack.last_seq.is_some_and(|seq| seq != sum.last_seq) {
        let message = format!(
            "stream {id}: Sum in {at} is {} (last seq {}), the chunker's is {} (last seq {:?})",
            hex(&sum.sha1),
            sum.last_seq,
            hex(&ack.sha1),
            ack.last_seq
        );
        findings.flag(Kind::Mismatched, id, message);
    } else if found.len() == 1 {
        findings.verified += 1;
        findings.verified_streams.insert(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(journal: &str, offset: u64) -> At {
        At {
            journal: journal.into(),
            offset,
        }
    }

    fn sum(stream: StreamId, last_seq: u32) -> Sum {
        Sum {
            stream,
            last_seq,
            sha1: [9; 20],
        }
    }

    /// Chunks of `stream` from `first_seq` to its final chunk `last_seq`, each 10 bytes, at
    /// offsets 1000 × seq of chunks-000, as a journal retention cut before `first_seq` holds.
    fn add_stream_tail(index: &mut ChunkIndex, stream: StreamId, first_seq: u32, last_seq: u32) {
        let mut open = HashMap::new();
        for seq in first_seq..=last_seq {
            let chunk = Chunk {
                stream,
                seq,
                is_final: seq == last_seq,
                data: &[7; 10],
            };
            index.add_chunk(
                &mut open,
                &chunk,
                &at("chunks-000", 1000 * u64::from(seq) + stream.0),
            );
        }
    }

    /// Before, every stream whose first chunks retention removed counted as unverifiable,
    /// whatever its Sums: after a soak (where nearly every stream is such), `verify` passed a
    /// lost Sum and a duplicated one. What the shard logs alone prove still counts.
    #[test]
    fn streams_retention_cut_still_need_exactly_one_sum_of_their_final_seq() {
        let mut chunks = ChunkIndex {
            retained: true,
            ..ChunkIndex::default()
        };
        // Streams 1-6 lost their first chunk to retention; stream 7 lost all of them.
        for stream in 1..=6 {
            add_stream_tail(&mut chunks, StreamId(stream), 1, 3);
        }
        assert_eq!(
            (chunks.chunks, chunks.chunk_bytes),
            (18, 180),
            "every chunk's bytes count"
        );
        let mut sums = SumIndex::default();
        // The shard checkpointed past 3,004; its log lost Sums below 1,005 to retention.
        let progress = ShardProgress {
            checkpoint_input_offset: 3004,
            sums_removed_below: 1005,
        };
        sums.progress.insert("chunks-000".into(), progress);
        let mut add = |stream: u64, last_seq: u32, offset: u64| {
            let stream = StreamId(stream);
            let list = sums.sums.entry(stream).or_default();
            list.push((sum(stream, last_seq), at("sums-000", offset)));
        };
        // 1: no Sum, final chunk (3,001) below the checkpoint: lost.
        add(2, 3, 100); // 2: two Sums: duplicated.
        add(2, 3, 200);
        add(3, 3, 300); // 3: one Sum of the right seq: its SHA-1 cannot be checked.
        add(4, 2, 400); // 4: one Sum of the wrong seq: mismatched.
                        // 5 and 6: no Sum, final chunk at 3,005 / 3,006, past the checkpoint: pending.
        add(7, 5, 700); // 7: every chunk removed, two Sums: duplicated.
        add(7, 5, 800);
        let findings = check_journals(&chunks, &sums, Settled::No);
        let text = |list: &[String]| list.join(" | ");
        assert_eq!(findings.lost.len(), 1, "{}", text(&findings.lost));
        assert!(
            findings.lost[0].contains("stream 0000000000000001:"),
            "{}",
            text(&findings.lost)
        );
        assert_eq!(findings.duplicated.len(), 2, "{}", text(&findings.duplicated));
        assert!(
            findings.duplicated[0].contains("stream 0000000000000002: 2 Sums (sums-000@100, sums-000@200)")
                && findings.duplicated[1].contains("stream 0000000000000007: 2 Sums"),
            "{}",
            text(&findings.duplicated)
        );
        assert_eq!(findings.mismatched.len(), 1, "{}", text(&findings.mismatched));
        assert!(findings.mismatched[0].contains("stream 0000000000000004:"));
        assert_eq!((findings.pending, findings.unverifiable), (2, 2), "{findings:?}");
        // Settled (nothing more will come): the pending ones are lost too.
        assert_eq!(check_journals(&chunks, &sums, Settled::Yes).lost.len(), 3);
        // A final chunk below where the shard log lost its Sums to retention: unverifiable.
        let mut removed = sums;
        removed.progress.get_mut("chunks-000").unwrap().sums_removed_below = 4000;
        let findings = check_journals(&chunks, &removed, Settled::Yes);
        assert!(findings.lost.is_empty(), "{:?}", findings.lost);
    }
}
