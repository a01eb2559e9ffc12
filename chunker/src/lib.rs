//! `ss-chunker`: chunkers publish many interleaved streams into partitioned chunk journals and
//! verify, online, that each finished stream gets exactly one correct Sum within the SLA.
//!
//! - [`stream_gen`]: seeded stream generation, stream ids (run id, chunker, counter), routing of
//!   streams to partitions, journal names.
//! - [`chunker`]: [`chunker::Chunker`] publishes with durable group-committed appends.
//! - [`verifier`]: [`verifier::Verifier`] matches Sums read from the shard logs against what its
//!   chunker published: wrong, duplicate, unknown and late Sums are violations.
#![deny(unsafe_code)]

pub mod chunker;
pub mod stream_gen;
pub mod verifier;
