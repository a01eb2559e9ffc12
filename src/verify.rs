//! `stream-sum verify`: the offline exactly-once check over a data directory.
//!
//! From the chunk journals it recomputes each stream's SHA-1 (a repeated chunk counts once; a gap
//! is a violation), noting the offset of each final chunk. From the shard logs it collects every
//! Sum and each shard's checkpointed input offset. Then: every finished stream has exactly one
//! Sum, equal to the recomputed SHA-1, unless its final chunk lies past its shard's checkpoint
//! (still pending: the summer has not reached it yet); no unfinished stream has a Sum; no Sum
//! names a stream the chunk journals do not hold (unless retention removed its chunks).
//!
//! On a directory a `run` is writing, it checks a consistent cut: every shard log is opened (its
//! head captured) before any chunk journal, so every Sum seen has its chunks; see "Reading a live
//! directory" in docs/design.md.

use std::collections::HashMap;

use anyhow::Context;
use serde::Serialize;
use sha1::{Digest, Sha1};
use ss_consumer::checkpoint::Checkpoint;
use ss_consumer::message::{hex, Chunk, Message, StreamId, Sum};
use ss_log::{Frame, FrameJournal, FrameReader, Journal, Log, ReadError, Reader};

use crate::cli::VerifyArgs;
use crate::{EXIT_OK, EXIT_VIOLATION};

struct OpenStream {
    hasher: Sha1,
    last_seq: u32,
}

struct FinishedStream {
    sha1: [u8; 20],
    last_seq: u32,
    journal: String,
    final_offset: u64,
}

/// What one chunk journal holds.
#[derive(Default)]
struct ChunkScan {
    finished: HashMap<StreamId, FinishedStream>,
    unfinished: HashMap<StreamId, u32>,
    chunks: u64,
    chunk_bytes: u64,
    duplicate_chunks: u64,
    /// Streams whose first chunks were removed by retention.
    partial_streams: std::collections::HashSet<StreamId>,
    /// Ranges retention removed while this scan read the journal (a live `run --retention`).
    gaps: u64,
    violations: Vec<String>,
}

/// The next frame of `reader`, stepping over ranges that retention removed (before or while the
/// journal was read: a live `run --retention` removes fragments a read-only open listed); each
/// range stepped over is counted in `gaps`.
pub(crate) fn next_retained(reader: &mut Reader, gaps: &mut u64) -> Result<Option<Frame>, ReadError> {
    loop {
        match reader.try_next() {
            Err(ReadError::Removed { first, .. }) if first > reader.offset() => {
                reader.seek(first);
                *gaps += 1;
            }
            other => return other,
        }
    }
}

/// The readers verify scans with: the embedded log's steps over retention gaps; other backends
/// (JetStream) remove nothing.
pub(crate) trait ScanReader: FrameReader {
    fn next_retained(&mut self, gaps: &mut u64) -> Result<Option<Frame>, ReadError>;
}

impl ScanReader for Reader {
    fn next_retained(&mut self, gaps: &mut u64) -> Result<Option<Frame>, ReadError> {
        next_retained(self, gaps)
    }
}

impl ScanReader for ss_nats::frames::NatsFrameReader {
    fn next_retained(&mut self, _gaps: &mut u64) -> Result<Option<Frame>, ReadError> {
        self.try_next()
    }
}

/// The next frame below `end` (the head captured for the consistent cut).
fn next_below<R: ScanReader>(reader: &mut R, end: u64, gaps: &mut u64) -> Result<Option<Frame>, ReadError> {
    if reader.offset() >= end {
        return Ok(None);
    }
    reader.next_retained(gaps)
}

fn scan_chunks<J: FrameJournal>(journal: &J, end: u64) -> anyhow::Result<ChunkScan>
where
    J::Reader: ScanReader,
{
    let mut scan = ChunkScan::default();
    let mut open: HashMap<StreamId, OpenStream> = HashMap::new();
    let first_offset = journal.first_offset()?;
    let mut reader = journal.reader(first_offset)?;
    let mut retained = first_offset > 0;
    loop {
        let gaps_before = scan.gaps;
        let Some(frame) = next_below(&mut reader, end, &mut scan.gaps)? else {
            break;
        };
        if scan.gaps > gaps_before {
            // Chunks were removed under the scan: streams open across the hole cannot be checked.
            retained = true;
            scan.partial_streams.extend(open.drain().map(|(id, _)| id));
        }
        for m in frame.messages() {
            let m = m.with_context(|| format!("{} offset {}", journal.name(), frame.offset))?;
            let chunk =
                Chunk::decode(m).with_context(|| format!("{} offset {}", journal.name(), frame.offset))?;
            scan.chunks += 1;
            let id = chunk.stream;
            let at = format!("{} offset {}", journal.name(), frame.offset);
            if let Some(f) = scan.finished.get(&id) {
                if chunk.seq <= f.last_seq {
                    scan.duplicate_chunks += 1;
                } else {
                    scan.violations.push(format!(
                        "stream {id}: chunk seq {} after its final chunk, at {at}",
                        chunk.seq
                    ));
                }
                continue;
            }
            let s = match open.get_mut(&id) {
                Some(s) => {
                    if chunk.seq <= s.last_seq {
                        scan.duplicate_chunks += 1;
                        continue;
                    }
                    if chunk.seq != s.last_seq + 1 {
                        scan.violations.push(format!(
                            "stream {id}: gap in the chunk journal: seq {} after {}, at {at}",
                            chunk.seq, s.last_seq
                        ));
                        open.remove(&id);
                        continue;
                    }
                    s.last_seq = chunk.seq;
                    s
                }
                None if chunk.seq != 0 => {
                    if !retained {
                        scan.violations
                            .push(format!("stream {id}: first chunk has seq {}, at {at}", chunk.seq));
                    }
                    scan.partial_streams.insert(id);
                    continue;
                }
                None => open.entry(id).or_insert(OpenStream {
                    hasher: Sha1::new(),
                    last_seq: 0,
                }),
            };
            s.hasher.update(chunk.data);
            scan.chunk_bytes += chunk.data.len() as u64;
            if chunk.is_final {
                let s = open.remove(&id).expect("open");
                scan.finished.insert(
                    id,
                    FinishedStream {
                        sha1: s.hasher.finalize().into(),
                        last_seq: s.last_seq,
                        journal: journal.name().to_string(),
                        final_offset: frame.offset,
                    },
                );
            }
        }
    }
    scan.unfinished = open.into_iter().map(|(id, s)| (id, s.last_seq)).collect();
    Ok(scan)
}

struct SumScan {
    sums: Vec<(Sum, String, u64)>,
    expired: u64,
    /// Input offset of the shard's last checkpoint.
    checkpoint_input_offset: u64,
    /// Retention removed the front of the shard log (or a range while it was read): a finished
    /// stream whose final chunk lies below this input offset may have had its Sum there.
    sums_removed_below: u64,
}

fn scan_sums<J: FrameJournal>(journal: &J, end: u64) -> anyhow::Result<SumScan>
where
    J::Reader: ScanReader,
{
    let mut scan = SumScan {
        sums: Vec::new(),
        expired: 0,
        checkpoint_input_offset: 0,
        sums_removed_below: 0,
    };
    let first_offset = journal.first_offset()?;
    let mut reader = journal.reader(first_offset)?;
    let mut gaps = 0;
    // After removed Sums, the first checkpoint read bounds the input they could have covered.
    let mut removed_unbounded = first_offset > 0;
    loop {
        let gaps_before = gaps;
        let Some(frame) = next_below(&mut reader, end, &mut gaps)? else {
            break;
        };
        removed_unbounded |= gaps > gaps_before;
        for m in frame.messages() {
            let m = m.with_context(|| format!("{} offset {}", journal.name(), frame.offset))?;
            match Message::decode(m).with_context(|| format!("{} offset {}", journal.name(), frame.offset))? {
                Message::Sum(s) => scan.sums.push((s, journal.name().to_string(), frame.offset)),
                Message::Expired(_) => scan.expired += 1,
                Message::Checkpoint(c) => {
                    scan.checkpoint_input_offset = Checkpoint::decode(c)
                        .with_context(|| format!("{} offset {}", journal.name(), frame.offset))?
                        .input_offset;
                    if removed_unbounded {
                        scan.sums_removed_below = scan.checkpoint_input_offset;
                        removed_unbounded = false;
                    }
                }
                Message::Chunk(_) => anyhow::bail!(
                    "{} offset {}: a chunk in a shard log",
                    journal.name(),
                    frame.offset
                ),
            }
        }
    }
    if removed_unbounded {
        scan.sums_removed_below = scan.checkpoint_input_offset;
    }
    Ok(scan)
}

#[derive(Debug, Serialize)]
struct VerifyReport {
    chunk_journals: usize,
    shard_logs: usize,
    chunks: u64,
    chunk_bytes: u64,
    duplicate_chunks: u64,
    streams_finished: usize,
    streams_unfinished: usize,
    sums: usize,
    sums_verified: usize,
    /// A `run` held the directory's lock when verify began: the counts are a consistent cut of
    /// a directory being written, and pending and unfinished streams are in flight.
    live: bool,
    /// Finished streams whose final chunk lies past their shard's checkpoint.
    pending: usize,
    streams_expired: u64,
    /// Streams or Sums that retention made impossible to check.
    unverifiable: u64,
    violations: usize,
    violation_messages: Vec<String>,
}

pub fn verify(args: VerifyArgs) -> anyhow::Result<u8> {
    if let Some(urls) = &args.nats {
        return crate::nats_run::verify(urls, args.json);
    }
    let log = Log::open_read_only(&args.data, crate::run::log_options())?;
    let names = log.journal_names()?;
    // After listing: a `run` takes the lock before it creates journals, so if any are listed and
    // it is still running, this sees its lock.
    let live = writer_holds_lock(&args.data);
    let chunk_names: Vec<&String> = names.iter().filter(|n| n.starts_with("chunks-")).collect();
    let sum_names: Vec<&String> = names.iter().filter(|n| n.starts_with("sums-")).collect();
    let open = |n: &String| log.existing_journal(n);
    // The consistent cut. Shard logs first: a journal's head is fixed when it is opened, and a
    // Sum or checkpoint is durable only after the chunks it covers, so chunk journals opened
    // later hold every chunk the shard logs' Sums cover, even while a `run` is still writing.
    // (Opened the other way round, a Sum made durable in between would be judged against
    // chunks read before its final chunk was: "Sum for an unfinished stream".)
    let sum_journals: Vec<Journal> = sum_names.iter().map(|n| open(n)).collect::<Result<_, _>>()?;
    let chunk_journals: Vec<Journal> = chunk_names.iter().map(|n| open(n)).collect::<Result<_, _>>()?;
    check_journals(
        &args.data.display().to_string(),
        &sum_journals,
        &chunk_journals,
        live,
        args.json,
    )
}

/// The exactly-once check over shard logs and chunk journals of any backend; `where` names them
/// in the report. The shard logs must have been opened (their heads captured) before the chunk
/// journals: the heads are captured here in that order, and nothing past them is read.
pub(crate) fn check_journals<J: FrameJournal>(
    where_: &str,
    sum_journals: &[J],
    chunk_journals: &[J],
    live: bool,
    json: bool,
) -> anyhow::Result<u8>
where
    J::Reader: ScanReader,
{
    let sum_ends: Vec<u64> = sum_journals
        .iter()
        .map(|j| j.durable_head())
        .collect::<Result<_, _>>()?;
    let chunk_ends: Vec<u64> = chunk_journals
        .iter()
        .map(|j| j.durable_head())
        .collect::<Result<_, _>>()?;
    // One thread per journal: verifying is SHA-1 bound.
    let (chunk_scans, sum_scans) = std::thread::scope(|s| {
        let c: Vec<_> = chunk_journals
            .iter()
            .zip(&chunk_ends)
            .map(|(j, end)| s.spawn(move || scan_chunks(j, *end)))
            .collect();
        let m: Vec<_> = sum_journals
            .iter()
            .zip(&sum_ends)
            .map(|(j, end)| s.spawn(move || scan_sums(j, *end)))
            .collect();
        let c: Vec<_> = c.into_iter().map(|h| h.join().expect("scan thread")).collect();
        let m: Vec<_> = m.into_iter().map(|h| h.join().expect("scan thread")).collect();
        (c, m)
    });
    let mut report = VerifyReport {
        chunk_journals: chunk_journals.len(),
        shard_logs: sum_journals.len(),
        chunks: 0,
        chunk_bytes: 0,
        duplicate_chunks: 0,
        streams_finished: 0,
        streams_unfinished: 0,
        sums: 0,
        sums_verified: 0,
        live,
        pending: 0,
        streams_expired: 0,
        unverifiable: 0,
        violations: 0,
        violation_messages: Vec::new(),
    };
    let mut finished = HashMap::new();
    let mut unfinished = HashMap::new();
    let mut partial = std::collections::HashSet::new();
    let mut retention = false;
    for j in chunk_journals {
        retention |= j.first_offset()? > 0;
    }
    for scan in chunk_scans {
        let scan = scan?;
        retention |= scan.gaps > 0;
        report.chunks += scan.chunks;
        report.chunk_bytes += scan.chunk_bytes;
        report.duplicate_chunks += scan.duplicate_chunks;
        report.unverifiable += scan.partial_streams.len() as u64;
        partial.extend(scan.partial_streams);
        report.violation_messages.extend(scan.violations);
        finished.extend(scan.finished);
        unfinished.extend(scan.unfinished);
    }
    // Per chunk journal: its shard's last checkpointed input offset, and the input offset below
    // which the shard's Sums may have been removed by retention.
    let mut checkpoints: HashMap<String, (u64, u64)> = HashMap::new();
    let mut sums: HashMap<StreamId, Vec<(Sum, String, u64)>> = HashMap::new();
    for (journal, scan) in sum_journals.iter().zip(sum_scans) {
        let name = journal.name();
        let scan = scan?;
        report.streams_expired += scan.expired;
        report.sums += scan.sums.len();
        let partition = name.trim_start_matches("sums-");
        checkpoints.insert(
            format!("chunks-{partition}"),
            (scan.checkpoint_input_offset, scan.sums_removed_below),
        );
        for s in scan.sums {
            sums.entry(s.0.stream).or_default().push(s);
        }
    }
    report.streams_finished = finished.len();
    report.streams_unfinished = unfinished.len();
    let mut ids: Vec<&StreamId> = finished.keys().collect();
    ids.sort();
    for id in ids {
        let f = &finished[id];
        match sums.get(id).map(Vec::as_slice) {
            None | Some([]) => {
                let (checkpoint, sums_removed_below) = checkpoints.get(&f.journal).copied().unwrap_or((0, 0));
                if f.final_offset >= checkpoint {
                    report.pending += 1;
                } else if f.final_offset < sums_removed_below {
                    // Its Sum may have been in the shard-log fragments retention removed.
                    report.unverifiable += 1;
                } else {
                    report.violation_messages.push(format!(
                        "stream {id}: finished (final chunk in {} at offset {}) but has no Sum, though its shard checkpointed past it",
                        f.journal, f.final_offset
                    ));
                }
            }
            Some(list) => {
                if list.len() > 1 {
                    let at: Vec<String> = list.iter().map(|(_, j, o)| format!("{j}@{o}")).collect();
                    report.violation_messages.push(format!(
                        "stream {id}: {} Sums ({})",
                        list.len(),
                        at.join(", ")
                    ));
                }
                let (sum, j, o) = &list[0];
                if sum.sha1 != f.sha1 || sum.last_seq != f.last_seq {
                    report.violation_messages.push(format!(
                        "stream {id}: Sum in {j} at offset {o} is {} (last seq {}), recomputed {} (last seq {})",
                        hex(&sum.sha1),
                        sum.last_seq,
                        hex(&f.sha1),
                        f.last_seq
                    ));
                } else if list.len() == 1 {
                    report.sums_verified += 1;
                }
            }
        }
    }
    for (id, list) in &sums {
        if finished.contains_key(id) {
            continue;
        }
        let (_, j, o) = &list[0];
        if unfinished.contains_key(id) {
            report.violation_messages.push(format!(
                "stream {id}: Sum in {j} at offset {o} but the stream is unfinished"
            ));
        } else if retention {
            // Streams whose chunks retention removed entirely: their Sums cannot be checked.
            if !partial.contains(id) {
                report.unverifiable += 1;
            }
        } else {
            report.violation_messages.push(format!(
                "stream {id}: Sum in {j} at offset {o} for a stream no chunk journal holds"
            ));
        }
    }
    report.violations = report.violation_messages.len();
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "verify {}: {} chunk journals, {} shard logs\n\
             chunks: {} ({:.1} MB), {} duplicates skipped\n\
             streams: {} finished, {} unfinished, {} expired by summers\n\
             Sums: {} found, {} verified exactly once and correct, {} pending (past the shard's checkpoint), {} unverifiable (retention)\n\
             {}violations: {}",
            where_,
            report.chunk_journals,
            report.shard_logs,
            report.chunks,
            report.chunk_bytes as f64 / 1e6,
            report.duplicate_chunks,
            report.streams_finished,
            report.streams_unfinished,
            report.streams_expired,
            report.sums,
            report.sums_verified,
            report.pending,
            report.unverifiable,
            if live {
                "live: a `run` holds the directory; this is a consistent cut as of verify's start, pending and unfinished streams are in flight\n"
            } else {
                ""
            },
            report.violations
        );
        for v in report.violation_messages.iter().take(50) {
            println!("  VIOLATION: {v}");
        }
        if report.violations > 50 {
            println!("  ... and {} more", report.violations - 50);
        }
    }
    Ok(if report.violations > 0 {
        EXIT_VIOLATION
    } else {
        EXIT_OK
    })
}

/// Whether a process holds the data directory's lock (a `run` is writing it), read from
/// /proc/locks so that verify never takes the lock itself: even a brief probe could make a `run`
/// starting at that moment fail as "in use". False where /proc/locks is unavailable. Matches the
/// lock file's inode number only (the device numbers /proc/locks prints differ from `st_dev` on
/// some overlay filesystems); this only labels the report, and never changes a verdict.
fn writer_holds_lock(data: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(lock) = std::fs::metadata(data.join("LOCK")) else {
        return false;
    };
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        return false;
    };
    let ino = lock.ino().to_string();
    // "1: FLOCK  ADVISORY  WRITE 28361 fe:00:10011736 0 EOF"
    locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&"FLOCK")
            && fields.get(3) == Some(&"WRITE")
            && fields.get(5).and_then(|f| f.rsplit(':').next()) == Some(ino.as_str())
    })
}
