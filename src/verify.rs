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

use serde::Serialize;
use ss_consumer::audit::{self, ChunkIndex, Settled, SumIndex};
use ss_log::{FrameJournal, Journal, Log};

use crate::cli::VerifyArgs;
use crate::exit::{EXIT_OK, EXIT_VIOLATION};

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
    let log = Log::open_read_only(&args.data, crate::config::log_options())?;
    let names = log.journal_names()?;
    // After listing: a `run` takes the lock before it creates journals, so if any are listed and
    // it is still running, this sees its lock.
    let live = writer_holds_lock(&args.data);
    let chunk_names: Vec<&String> = names.iter().filter(|n| n.starts_with("chunks-")).collect();
    let sum_names: Vec<&String> = names.iter().filter(|n| n.starts_with("sums-")).collect();
    if chunk_names.is_empty() && !live {
        // Nothing to check is not a pass: a script's `run; verify` must not succeed where the
        // run wrote nothing (it was refused, or pointed elsewhere).
        anyhow::bail!(
            "{} holds no chunk journals: nothing to verify (no run has written there)",
            args.data.join("journals").display()
        );
    }
    // The run records too: damage there is refused by the next `run` (which takes its id from
    // them), so it is damage here, not a pass.
    if names.iter().any(|n| n == crate::runs::RUNS_JOURNAL) {
        crate::runs::check_runs_journal(&log)?;
    }
    let open = |n: &String| log.existing_journal(n);
    // The consistent cut. Shard logs first: a journal's head is fixed when it is opened, and a
    // Sum or checkpoint is durable only after the chunks it covers, so chunk journals opened
    // later hold every chunk the shard logs' Sums cover, even while a `run` is still writing.
    // (Opened the other way round, a Sum made durable in between would be judged against
    // chunks read before its final chunk was: "Sum for an unfinished stream".)
    let sum_journals: Vec<Journal> = sum_names.iter().map(|n| open(n)).collect::<Result<_, _>>()?;
    let chunk_journals: Vec<Journal> = chunk_names.iter().map(|n| open(n)).collect::<Result<_, _>>()?;
    let names_after = log.journal_names()?;
    crate::run::check_shard_logs_present(&names, &names_after, |name| {
        Ok(chunk_journals
            .iter()
            .find(|j| j.name() == name)
            .map_or(0, Journal::durable_head))
    })?;
    // One thread per journal: verifying is SHA-1 bound.
    let (chunk_scans, sum_scans) = std::thread::scope(|s| {
        let c: Vec<_> = chunk_journals
            .iter()
            .map(|j| s.spawn(move || ChunkIndex::scan(j)))
            .collect();
        let m: Vec<_> = sum_journals
            .iter()
            .map(|j| s.spawn(move || SumIndex::scan(j, &input_of(j.name()))))
            .collect();
        let c: Vec<_> = c.into_iter().map(|h| h.join().expect("scan thread")).collect();
        let m: Vec<_> = m.into_iter().map(|h| h.join().expect("scan thread")).collect();
        (c, m)
    });
    let mut chunks = ChunkIndex::default();
    for scan in chunk_scans {
        chunks.merge(scan?);
    }
    let mut sums = SumIndex::default();
    for scan in sum_scans {
        sums.merge(scan?);
    }
    check_checkpoints_within_inputs(&sums, &chunk_journals)?;
    let place = args.data.display().to_string();
    print_report(
        &place,
        &chunks,
        &sums,
        (chunk_journals.len(), sum_journals.len()),
        live,
        args.json,
    )
}

/// A shard's checkpoint past the end of its input (the chunk journal lost bytes the summer had
/// consumed: its last frames damaged and cut as a torn write, or the journal removed) is
/// damage, not an exactly-once violation: refuse (exit 3) naming both journals, as `run` does,
/// rather than report the streams it cut off as unfinished ones with Sums. The chunk journals
/// were opened after the shard logs, so a live writer's input can only be further along.
fn check_checkpoints_within_inputs(sums: &SumIndex, chunk_journals: &[Journal]) -> anyhow::Result<()> {
    let mut inputs: Vec<(&String, u64)> = sums
        .progress
        .iter()
        .map(|(input, p)| (input, p.checkpoint_input_offset))
        .collect();
    inputs.sort();
    for (input, checkpoint) in inputs {
        let head = chunk_journals
            .iter()
            .find(|j| j.name() == input.as_str())
            .map_or(0, Journal::durable_head);
        if checkpoint > head {
            anyhow::bail!(
                "journal {input:?} ends at offset {head}, but its shard's log ({:?}) checkpoints input offset \
                 {checkpoint}: the chunk journal lost bytes the summer had already consumed (damage cut \
                 as a torn tail, or the journal removed); restore it from a backup, or remove both \
                 journals to start over",
                input.replacen("chunks-", "sums-", 1)
            );
        }
        // Where the checkpoint resumes, a frame begins (the scans read every frame intact, so a
        // failure here means the checkpoint names the middle of one): `run` would refuse it.
        let journal = chunk_journals.iter().find(|j| j.name() == input.as_str());
        if let Some(journal) =
            journal.filter(|j| checkpoint < j.durable_head() && checkpoint >= j.first_offset())
        {
            // (Only damage: retention may remove the fragment meanwhile under a live `run`.)
            if let Some(Err(e @ ss_log::ReadError::Corrupt { .. })) = journal.frames(checkpoint).next() {
                anyhow::bail!(
                    "the shard log {:?} checkpoints input offset {checkpoint} of {input:?}, where no frame begins ({e}): \
                     the checkpoint names the middle of a frame, so the shard log is damaged; restore it from a backup",
                    input.replacen("chunks-", "sums-", 1)
                );
            }
        }
    }
    Ok(())
}

/// `verify` over journals behind the journal boundary (JetStream): the shard logs' heads are
/// captured before the chunk journals', and nothing past them is read (the consistent cut).
pub(crate) fn check_boundary<J: FrameJournal>(
    place: &str,
    sum_journals: &[J],
    chunk_journals: &[J],
    json: bool,
) -> anyhow::Result<u8> {
    let sum_ends: Vec<u64> = sum_journals
        .iter()
        .map(|j| j.durable_head())
        .collect::<Result<_, _>>()?;
    let chunk_ends: Vec<u64> = chunk_journals
        .iter()
        .map(|j| j.durable_head())
        .collect::<Result<_, _>>()?;
    let (chunk_scans, sum_scans) = std::thread::scope(|s| {
        let c: Vec<_> = chunk_journals
            .iter()
            .zip(&chunk_ends)
            .map(|(j, end)| s.spawn(move || ChunkIndex::scan_boundary(j, *end)))
            .collect();
        let m: Vec<_> = sum_journals
            .iter()
            .zip(&sum_ends)
            .map(|(j, end)| s.spawn(move || SumIndex::scan_boundary(j, &input_of(j.name()), *end)))
            .collect();
        let c: Vec<_> = c.into_iter().map(|h| h.join().expect("scan thread")).collect();
        let m: Vec<_> = m.into_iter().map(|h| h.join().expect("scan thread")).collect();
        (c, m)
    });
    let mut chunks = ChunkIndex::default();
    for scan in chunk_scans {
        chunks.merge(scan?);
    }
    let mut sums = SumIndex::default();
    for scan in sum_scans {
        sums.merge(scan?);
    }
    print_report(
        place,
        &chunks,
        &sums,
        (chunk_journals.len(), sum_journals.len()),
        false,
        json,
    )
}

/// Checks the indexes and prints the report; the exit status.
fn print_report(
    place: &str,
    chunks: &ChunkIndex,
    sums: &SumIndex,
    (chunk_journals, shard_logs): (usize, usize),
    live: bool,
    json: bool,
) -> anyhow::Result<u8> {
    let findings = audit::check_journals(chunks, sums, Settled::No);
    let mut report = VerifyReport {
        chunk_journals,
        shard_logs,
        chunks: chunks.chunks,
        chunk_bytes: chunks.chunk_bytes,
        duplicate_chunks: chunks.duplicate_chunks,
        streams_finished: chunks.finished.len(),
        streams_unfinished: chunks.unfinished.len(),
        sums: sums.count,
        sums_verified: findings.verified,
        live,
        pending: findings.pending,
        streams_expired: sums.expired,
        unverifiable: findings.unverifiable,
        violations: 0,
        violation_messages: findings.violations().cloned().collect(),
    };
    report.violations = report.violation_messages.len();
    if json {
        crate::exit::outln!("{}", serde_json::to_string(&report)?);
    } else {
        crate::exit::outln!(
            "verify {}: {} chunk journals, {} shard logs\n\
             chunks: {} ({:.1} MB), {} duplicates skipped\n\
             streams: {} finished, {} unfinished, {} expired by summers\n\
             Sums: {} found, {} verified exactly once and correct, {} pending (past the shard's checkpoint), {} unverifiable (retention)\n\
             {}violations: {}",
            place,
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
            crate::exit::outln!("  VIOLATION: {v}");
        }
        if report.violations > 50 {
            crate::exit::outln!("  ... and {} more", report.violations - 50);
        }
    }
    Ok(if report.violations > 0 {
        EXIT_VIOLATION
    } else {
        EXIT_OK
    })
}

/// The chunk journal that the shard writing shard log `name` reads: `sums-P` reads `chunks-P`.
fn input_of(name: &str) -> String {
    format!("chunks-{}", name.trim_start_matches("sums-"))
}

/// Whether a process holds the data directory's lock (a `run` is writing it: it locks the data
/// directory itself, then `journals/`), read from /proc/locks so that verify never takes the
/// lock itself: even a brief probe could make a `run` starting at that moment fail as "in use".
/// False where /proc/locks is unavailable. Matches the directories' inode numbers only (the
/// device numbers /proc/locks prints differ from `st_dev` on some overlay filesystems); it
/// labels the report, and decides only whether a directory with no chunk journal is a starting
/// run or nothing to verify.
fn writer_holds_lock(data: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let inodes: Vec<String> = [data.to_path_buf(), data.join("journals")]
        .iter()
        .filter_map(|dir| std::fs::metadata(dir).ok())
        .map(|m| m.ino().to_string())
        .collect();
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        return false;
    };
    // "1: FLOCK  ADVISORY  WRITE 28361 fe:00:10011736 0 EOF"
    locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&"FLOCK")
            && fields.get(3) == Some(&"WRITE")
            && fields
                .get(5)
                .and_then(|f| f.rsplit(':').next())
                .is_some_and(|ino| inodes.iter().any(|i| i == ino))
    })
}
