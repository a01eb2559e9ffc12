//! The `runs` journal: one durable record per `run`, so stream ids (which embed the run id) are
//! never reused across process restarts.
//!
//! ```text
//! RunStart 'R' 1  run_id u32  seed u64  started_unix_ms u64
//! ```

use anyhow::{bail, Context};
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

/// Takes the next run id durably: one more than the last recorded run.
pub fn take_run_id(log: &Log, seed: u64) -> anyhow::Result<RunStart> {
    let journal = log.journal(RUNS_JOURNAL)?;
    let last = match journal.last_frame()? {
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
