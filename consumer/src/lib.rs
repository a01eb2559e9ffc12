//! `ss-consumer`: the exactly-once consumer framework and the stream-sum summer.
//!
//! - [`message`]: the versioned messages (Chunk, Sum, Expired) and [`message::StreamId`].
//! - [`checkpoint`]: the checkpoint ending every transaction frame of a shard log.
//! - [`shard`]: [`shard::Shard`] drives an [`shard::Application`] over an input journal in
//!   transactions, each committed by **one** conditional append of outputs + checkpoint.
//! - [`audit`]: the exactly-once audit of chunk journals and shard logs, against themselves and
//!   against a [`audit::History`] kept outside them.
//! - [`summer`]: the [`summer::Summer`] application: running SHA-1 per stream, one Sum per
//!   finished stream, duplicates skipped, gaps refused, abandoned streams expired.
//!
//! ```
//! use ss_consumer::{message::{Chunk, StreamId}, shard::{Shard, ShardConfig}, summer::{Summer, SummerConfig}};
//! use ss_log::{Batch, Log, Options};
//! let dir = tempfile::tempdir().unwrap();
//! let log = Log::open(dir.path(), Options::default()).unwrap();
//! let input = log.journal("chunks-000").unwrap();
//! let mut batch = Batch::new();
//! batch.push_with(|b| Chunk { stream: StreamId(1), seq: 0, is_final: true, data: b"abc" }.encode(b));
//! let end = input.append(&batch).unwrap().end;
//! let summer = Summer::new(SummerConfig::default());
//! let mut shard = Shard::recover("shard-000", summer, &input, log.journal("sums-000").unwrap(), ShardConfig::default()).unwrap();
//! shard.run_until(end, std::time::Duration::from_millis(10)).unwrap();
//! assert_eq!(shard.app().counters().sums, 1);
//! ```
#![deny(unsafe_code)]

/// Whether this build has the fault machinery (feature `fault-injection`: the deliberately
/// broken split commit, and `ss_log`'s simulated storage). A constant, so code that checks it is
/// compiled out of a normal build.
pub const FAULT_INJECTION: bool = cfg!(feature = "fault-injection");

pub mod audit;
pub mod checkpoint;
pub mod message;
pub mod shard;
pub mod summer;
