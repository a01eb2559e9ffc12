//! Errors of the JetStream backend, each naming the stream or bucket and what happened.

use std::time::Duration;

/// Anything that can go wrong talking to the cluster.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NatsError {
    #[error("cannot connect to NATS at {urls}: {detail}")]
    Connect { urls: String, detail: String },
    #[error("NATS at {urls} has no JetStream: {detail}")]
    NoJetStream { urls: String, detail: String },
    #[error("stream {stream:?} exists with other settings than stream-sum needs: {}", .differences.join("; "))]
    StreamMismatch {
        stream: String,
        differences: Vec<String>,
    },
    #[error("stream {stream:?} does not exist")]
    NoSuchStream { stream: String },
    #[error("{name:?} cannot be a JetStream stream name (letters, digits, '-' and '_' only)")]
    BadName { name: String },
    #[error("stream {stream:?}: a frame of {len_bytes} bytes exceeds the server's max payload of {max_bytes} bytes")]
    TooLarge {
        stream: String,
        len_bytes: usize,
        max_bytes: usize,
    },
    /// A conditional append found the stream's last sequence moved by another writer.
    #[error("stream {stream:?}: fenced: expected last sequence {expected}, the stream is at {actual} (another writer appended)")]
    Fenced {
        stream: String,
        expected: u64,
        actual: u64,
    },
    /// Transient failures (no responders, leader elections, timeouts) kept on past the bound.
    #[error("stream {stream:?}: {what}: still failing after {waited:?}: {last}")]
    Unavailable {
        stream: String,
        what: &'static str,
        waited: Duration,
        last: String,
    },
    #[error("stream {stream:?}: {what}: {detail}")]
    Request {
        stream: String,
        what: &'static str,
        detail: String,
    },
}

/// True for the errors a JetStream request returns while a leader is being elected or a
/// server is restarting: retry them (bounded).
pub(crate) fn is_transient(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    [
        "no responders",
        "timed out",
        "timeout",
        "broken pipe",
        "temporarily unavailable",
        "stream not found",
        "no stream found",
        "not available",
        "no suitable peers",
        "leader",
        "disconnected",
        "connection",
        "10008",
        "10059",
        // 2.11+: a retry whose first try (same Nats-Msg-Id) is still being stored; the next
        // retry gets the first one's acknowledgement as a duplicate.
        "duplicate message id is in process",
        "10158",
    ]
    .iter()
    .any(|s| d.contains(s))
}
