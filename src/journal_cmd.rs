//! `stream-sum journal ls | read`.

use std::io::Write;

use serde_json::json;
use ss_consumer::checkpoint::{Checkpoint, CheckpointKind};
use ss_consumer::message::{hex, Message};
use ss_log::{Log, ReadError};

use crate::cli::JournalCommand;
use crate::exit::{EXIT_OK, EXIT_USAGE};
use crate::runs::RunStart;

pub fn journal(command: JournalCommand) -> anyhow::Result<u8> {
    match command {
        JournalCommand::Ls {
            nats: Some(urls),
            json,
            ..
        } => crate::nats_run::journal_ls(&urls, json),
        JournalCommand::Read {
            nats: Some(urls),
            journal,
            from,
            ..
        } => crate::nats_run::journal_read(&urls, &journal, from),
        JournalCommand::Ls { data, json, .. } => ls(&data, json),
        JournalCommand::Read {
            data, journal, from, ..
        } => read(&data, &journal, from),
    }
}

fn ls(data: &std::path::Path, as_json: bool) -> anyhow::Result<u8> {
    let log = Log::open_read_only(data, crate::config::log_options())?;
    let mut journals = Vec::new();
    for name in log.journal_names()? {
        let j = log.existing_journal(&name)?;
        let fragments: Vec<_> = j
            .fragments()
            .into_iter()
            .filter_map(|f| {
                let file_bytes = match std::fs::metadata(&f.path) {
                    Ok(m) => m.len(),
                    // An empty journal whose first fragment no writer has created yet (a
                    // directory a starting `run` made, or made by hand): no file to list.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && f.end == f.begin => return None,
                    Err(_) => 0,
                };
                Some(json!({"begin": f.begin, "end": f.end, "bytes": f.end - f.begin, "file_bytes": file_bytes, "path": f.path.to_string_lossy()}))
            })
            .collect();
        journals.push(
            json!({"name": name, "begin": j.first_offset(), "end": j.durable_head(), "fragments": fragments}),
        );
    }
    let mut out = std::io::stdout().lock();
    if as_json {
        writeln!(out, "{}", json!({ "journals": journals })).map_err(stdout_error)?;
    } else {
        writeln!(
            out,
            "{:<12} {:>16} {:>16} {:>10}  fragments",
            "journal", "begin", "end", "MB"
        )
        .map_err(stdout_error)?;
        for j in &journals {
            let (begin, end) = (j["begin"].as_u64().unwrap_or(0), j["end"].as_u64().unwrap_or(0));
            writeln!(
                out,
                "{:<12} {:>16} {:>16} {:>10.1}  {}",
                j["name"].as_str().unwrap_or(""),
                begin,
                end,
                (end - begin) as f64 / 1e6,
                j["fragments"].as_array().map_or(0, Vec::len)
            )
            .map_err(stdout_error)?;
            for f in j["fragments"].as_array().into_iter().flatten() {
                // A file shorter than its offsets' span: bytes truncated away, or a fragment
                // removed by hand after it (the span then runs to the next one's begin).
                let (bytes, file_bytes) = (
                    f["bytes"].as_u64().unwrap_or(0),
                    f["file_bytes"].as_u64().unwrap_or(0),
                );
                let short = if file_bytes < bytes {
                    let begin = f["begin"].as_u64().unwrap_or(0);
                    format!(
                        "  MISSING offsets {}..{}: the file holds {file_bytes} of {bytes} bytes (truncated, or the next fragment was removed): reads there fail as damage",
                        begin + file_bytes,
                        begin + bytes
                    )
                } else {
                    String::new()
                };
                writeln!(
                    out,
                    "    {} [{}, {}){short}",
                    f["path"].as_str().unwrap_or(""),
                    f["begin"],
                    f["end"]
                )
                .map_err(stdout_error)?;
            }
        }
    }
    Ok(EXIT_OK)
}

fn read(data: &std::path::Path, name: &str, from: Option<u64>) -> anyhow::Result<u8> {
    if !ss_log::is_valid_journal_name(name) {
        // A bad name is a bad command line, whatever the directory holds.
        crate::exit::errln!(
            "stream-sum: error: {}",
            ss_log::OpenError::BadName { journal: name.into() }
        );
        return Ok(EXIT_USAGE);
    }
    let log = Log::open_read_only(data, crate::config::log_options())?;
    let journal = log.existing_journal(name)?;
    let start = from.unwrap_or_else(|| journal.first_offset());
    let head = journal.durable_head();
    if start > head {
        // A bad command line, like a --from inside a frame (exit 2), not damage.
        crate::exit::errln!(
            "stream-sum: error: journal {name:?}: --from {start} is past the journal's end ({head}); `journal ls` shows each journal's offsets"
        );
        return Ok(EXIT_USAGE);
    }
    let first_offset = journal.first_offset();
    if from.is_some_and(|from| from < first_offset) {
        // Removed before this read began: step over it, saying so (not "while reading").
        crate::exit::errln!(
            "stream-sum: journal {name:?}: offsets {start}..{first_offset} were removed by retention; reading from {first_offset}"
        );
    }
    let start = start.max(first_offset);
    // A live `run --retention` may remove fragments this open listed: step over them, saying so.
    let mut frames = journal.frames(start).step_over_removed();
    let next_frame = |frames: &mut ss_log::Frames| {
        let gaps_before = frames.gaps().len();
        let frame = frames.next().transpose();
        if let Some(gap) = frames.gaps().get(gaps_before) {
            let resumed = frame
                .as_ref()
                .ok()
                .and_then(|f| f.as_ref())
                .map_or(head, |f| f.offset);
            crate::exit::errln!(
                "stream-sum: journal {name:?}: offsets {}..{resumed} were removed by retention while reading",
                gap.start
            );
        }
        frame
    };
    // A --from that is not where a frame begins reads as damage: tell a bad --from (it lies
    // inside a frame read from its fragment's start) from damage at that very offset.
    let first = match next_frame(&mut frames) {
        Err(e @ ReadError::Corrupt { .. }) if from.is_some() => match frame_around(&journal, start) {
            Some(frame) => {
                crate::exit::errln!(
                    "stream-sum: error: journal {name:?}: --from {start} lies inside the frame at offsets {}..{}; frames begin at offsets printed by `journal read` (here {} or {}) or at a fragment begin from `journal ls`",
                    frame.offset, frame.end, frame.offset, frame.end
                );
                return Ok(EXIT_USAGE);
            }
            None => return Err(e.into()),
        },
        other => other?,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut next = first;
    while let Some(frame) = next {
        for m in frames.messages(&frame) {
            let m = m?;
            let line = message_json(name, frame.offset, m);
            writeln!(out, "{line}").map_err(stdout_error)?;
        }
        next = next_frame(&mut frames)?;
    }
    out.flush().map_err(stdout_error)?;
    Ok(EXIT_OK)
}

/// A failed write of the output, named as such: "No space left on device" alone reads as the
/// data directory's disk being full. (A closed pipe, `| head`, stays quiet: `main` looks for it
/// in the error's chain.)
fn stdout_error(e: std::io::Error) -> anyhow::Error {
    anyhow::Error::new(e).context("could not write the output to stdout")
}

/// The frame that covers `offset` without beginning there, read from the start of the fragment
/// that holds it; `None` if the frames from there do not reach `offset` intact.
fn frame_around(journal: &ss_log::Journal, offset: u64) -> Option<ss_log::Frame> {
    let fragment = journal
        .fragments()
        .into_iter()
        .find(|f| f.begin <= offset && offset < f.end)?;
    let mut frames = journal.frames(fragment.begin);
    while let Some(Ok(frame)) = frames.next() {
        if frame.end > offset {
            return (frame.offset < offset).then_some(frame);
        }
    }
    None
}

/// One message as the JSON line `journal read` prints (`offset`: the frame's position).
pub(crate) fn message_json(name: &str, offset: u64, m: &[u8]) -> serde_json::Value {
    match Message::decode(m) {
        Ok(Message::Chunk(c)) => json!({
            "journal": name, "offset": offset, "kind": "chunk", "stream": c.stream.to_string(),
            "seq": c.seq, "final": c.is_final, "data_hex": hex(c.data)
        }),
        Ok(Message::Sum(s)) => json!({
            "journal": name, "offset": offset, "kind": "sum", "stream": s.stream.to_string(),
            "seq": s.last_seq, "sha1_hex": hex(&s.sha1)
        }),
        Ok(Message::Expired(e)) => json!({
            "journal": name, "offset": offset, "kind": "expired", "stream": e.stream.to_string(),
            "seq": e.last_seq, "last_active_offset": e.last_active_offset
        }),
        Ok(Message::Checkpoint(bytes)) => match Checkpoint::decode(bytes) {
            Ok(c) => json!({
                "journal": name, "offset": offset, "kind": "checkpoint",
                "checkpoint": match c.kind { CheckpointKind::Delta => "delta", CheckpointKind::Snapshot => "snapshot" },
                "input_offset": c.input_offset, "txn_seq": c.txn_seq, "snapshot_offset": c.snapshot_offset,
                "state_bytes": c.app_state.len()
            }),
            Err(e) => {
                json!({"journal": name, "offset": offset, "kind": "undecodable", "error": e.to_string()})
            }
        },
        Err(e) => match RunStart::decode(m) {
            Some(r) => json!({
                "journal": name, "offset": offset, "kind": "run", "run_id": r.run_id,
                "seed": r.seed, "started_unix_ms": r.started_unix_ms
            }),
            None => match crate::nats_run::PartitionCount::decode(m) {
                Some(p) => {
                    json!({"journal": name, "offset": offset, "kind": "partitions", "partitions": p.partitions})
                }
                None => {
                    json!({"journal": name, "offset": offset, "kind": "undecodable", "error": e.to_string(), "data_hex": hex(m)})
                }
            },
        },
    }
}
