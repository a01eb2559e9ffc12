//! `ss-nats`: stream-sum on NATS JetStream.
//!
//! - [`cluster`]: a real 3-node `nats-server` cluster on loopback, with [`proxy`]s in front of
//!   every route and client connection so tests can kill nodes and cut the network.
//! - [`journal`]: a journal as a JetStream stream ([`Nats`] connects and creates or validates
//!   streams, [`NatsJournal`] appends frames with fencing and idempotent retries, reads the head
//!   and the last frame, and tails with a [`NatsReader`]).
//! - [`frames`]: [`NatsFrames`], a JetStream journal behind `ss_log`'s journal boundary, so the
//!   chunker and the exactly-once shard run on the cluster unchanged.
//! - [`lease`]: shard ownership across processes ([`Leases`]: compare-and-set on a key-value
//!   bucket's revision, with expiry).
#![deny(unsafe_code)]

pub mod cluster;
pub mod error;
pub mod frames;
pub mod journal;
pub mod lease;
pub mod proxy;

pub use error::NatsError;
pub use frames::NatsFrames;
pub use journal::{Nats, NatsFrame, NatsJournal, NatsReader, StreamSpec};
pub use lease::{Lease, Leases};
