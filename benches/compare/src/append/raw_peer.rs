//! The raw baselines of [`crate::raw`] as appenders.

use super::DurableAppender;
use crate::raw::{ExtendingFile, GroupCommitFile, HandoffGroupCommitFile, PrewrittenFile};

impl DurableAppender for PrewrittenFile {
    fn append(&self, _writer: usize, record: &[u8]) -> anyhow::Result<()> {
        self.write_durable(record)
    }
}

impl DurableAppender for ExtendingFile {
    fn append(&self, _writer: usize, record: &[u8]) -> anyhow::Result<()> {
        self.write_durable(record)
    }
}

impl DurableAppender for GroupCommitFile {
    fn append(&self, _writer: usize, record: &[u8]) -> anyhow::Result<()> {
        GroupCommitFile::append(self, record)
    }
}

impl DurableAppender for HandoffGroupCommitFile {
    fn append(&self, _writer: usize, record: &[u8]) -> anyhow::Result<()> {
        HandoffGroupCommitFile::append(self, record)
    }
}
