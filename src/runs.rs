//! The `runs` journal: one durable record per `run`, so stream ids (which embed the run id) are
//! never reused across process restarts.
//!
//! ```text
//! RunStart 'R' 1  run_id u32  seed u64  started_unix_ms u64
//! ```

use anyhow::{bail, Context};
use ss_chunker::stream_gen::split_stream_id;
use ss_consumer::message::Message;
use ss_log::{Batch, Log};

pub const RUNS_JOURNAL: &str = "runs";
const TAG_RUN: u8 = b'R';
const RUN_RECORD_BYTES: usize = 2 + 4 + 8 + 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunStart {
    pub run_id: u32,
    pub seed: u64,
    pub started_unix_ms: u64,
}

impl RunStart {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(RUN_RECORD_BYTES);
        v.extend_from_slice(&[TAG_RUN, 1]);
        v.extend_from_slice(&self.run_id.to_le_bytes());
        v.extend_from_slice(&self.seed.to_le_bytes());
        v.extend_from_slice(&self.started_unix_ms.to_le_bytes());
        v
    }

    pub fn decode(b: &[u8]) -> Option<RunStart> {
        if b.len() != RUN_RECORD_BYTES || b[0] != TAG_RUN || b[1] != 1 {
            return None;
        }
        Some(RunStart {
            run_id: u32::from_le_bytes(b[2..6].try_into().ok()?),
            seed: u64::from_le_bytes(b[6..14].try_into().ok()?),
            started_unix_ms: u64::from_le_bytes(b[14..22].try_into().ok()?),
        })
    }
}

/// The highest run id among the chunks of the chunk journals' last frames, with where it lies
/// (journal and offset). A run publishes chunks only after its record is durable, so this is at
/// most the last recorded run, unless the `runs` journal lost records: its last frame damaged
/// (which open cannot tell from a torn write, and cuts) or the journal removed.
fn highest_run_published(log: &Log, journal_names: &[String]) -> anyhow::Result<Option<(u32, String, u64)>> {
    let mut highest: Option<(u32, String, u64)> = None;
    for name in journal_names.iter().filter(|n| n.starts_with("chunks-")) {
        let Some(frame) = log.journal(name)?.last_frame()? else {
            continue;
        };
        for message in frame.messages() {
            let message = message.with_context(|| format!("journal {name:?} offset {}", frame.offset))?;
            if let Ok(Message::Chunk(chunk)) = Message::decode(message) {
                let (run, _, _) = split_stream_id(chunk.stream);
                if highest.as_ref().is_none_or(|(h, _, _)| run > *h) {
                    highest = Some((run, name.clone(), frame.offset));
                }
            }
        }
    }
    Ok(highest)
}

/// Reads every record of the `runs` journal (for `verify`), as `run` meets them when it takes
/// its id: damage to the journal (open refuses it, or a read of a frame fails), a frame that is
/// not one run record, or run ids that do not increase is an error naming the offset.
pub fn check_runs_journal(log: &Log) -> anyhow::Result<()> {
    let journal = log.existing_journal(RUNS_JOURNAL)?;
    let mut frames = journal.frames(journal.first_offset());
    let mut last: Option<u32> = None;
    while let Some(frame) = frames.next().transpose()? {
        let mut messages = frames.messages(&frame);
        let record = match (messages.next().transpose()?, messages.next()) {
            (Some(m), None) => RunStart::decode(m),
            _ => None,
        };
        let Some(record) = record else {
            bail!(
                "journal {RUNS_JOURNAL:?} offset {}: not a run record (the runs journal is damaged)",
                frame.offset
            );
        };
        if let Some(previous) = last.filter(|&l| record.run_id <= l) {
            bail!(
                "journal {RUNS_JOURNAL:?} offset {}: run {} recorded after run {previous} (the runs journal is damaged)",
                frame.offset,
                record.run_id
            );
        }
        last = Some(record.run_id);
    }
    Ok(())
}

/// Takes the next run id durably: one more than the last recorded run, or than the highest run
/// whose chunks the chunk journals (`journal_names` lists the data directory's) end with, if the
/// `runs` journal lost records. Stream ids embed the run id, so reusing one would make the new
/// run's chunks look like duplicates of the old run's.
pub fn take_run_id(log: &Log, journal_names: &[String], seed: u64) -> anyhow::Result<RunStart> {
    let journal = log.journal(RUNS_JOURNAL)?;
    let recorded = match journal.last_frame()? {
        None => 0,
        Some(frame) => {
            let msg = frame.messages().next().context("empty run record")??;
            match RunStart::decode(msg) {
                Some(r) => r.run_id,
                None => bail!(
                    "journal {RUNS_JOURNAL:?} offset {}: not a run record",
                    frame.offset
                ),
            }
        }
    };
    let last = match highest_run_published(log, journal_names)? {
        Some((published, name, offset)) if published > recorded => {
            tracing::warn!(
                recorded,
                published,
                journal = name.as_str(),
                offset,
                "the runs journal lost records"
            );
            crate::exit::errln!(
                "stream-sum: warning: journal {RUNS_JOURNAL:?} records runs up to {recorded}, but journal \
                 {name:?} holds chunks of run {published} (frame at offset {offset}): run records were lost \
                 (damaged or removed); this run takes id {}",
                published + 1
            );
            published
        }
        _ => recorded,
    };
    let run_id = last + 1;
    if run_id > ss_chunker::stream_gen::RUN_ID_MAX {
        bail!("run ids exhausted ({last} runs in this data directory)");
    }
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let record = RunStart {
        run_id,
        seed,
        started_unix_ms,
    };
    journal.append(&Batch::single(&record.encode()))?;
    Ok(record)
}
