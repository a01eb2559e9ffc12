//! A journal on JetStream: one stream per journal, one message per frame, positions are stream
//! sequences.
//!
//! A journal named `chunks-000` is the stream `chunks-000` on the subject `ss.chunks-000`, kept
//! in files, replicated, never expiring (limits retention with no limits). Its *head* is the
//! stream's last sequence (0 when empty); reading "after position p" yields the messages with
//! sequence > p, so a checkpoint that stores the head it reached means the same thing it does on
//! the embedded log (the byte offset after the last frame read).
//!
//! An append may be conditional on the head (`Nats-Expected-Last-Sequence`: fencing) and carries
//! a deterministic `Nats-Msg-Id` so the server drops a retried duplicate. Two traps are handled
//! here, not by callers: a retry of a conditional append can be answered "wrong last sequence"
//! although the first try landed (so the last message is read back, and if it carries our
//! message id the append succeeded at its sequence, else another writer fenced us); and during a
//! leader election requests fail with "no responders" or "stream not found" for a few seconds
//! (so they are retried with backoff, up to [`RETRY_FOR`], and then reported).

use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    consumer::{pull, DeliverPolicy},
    context::PublishErrorKind,
    message::PublishMessage,
    stream::{Config, DiscardPolicy, RetentionPolicy, StorageType},
};
use async_nats::{header, HeaderMap};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::error::{is_transient, NatsError};

/// How long transient failures (elections, restarts) are retried before they are reported.
pub const RETRY_FOR: Duration = Duration::from_secs(30);

/// The most message bytes one reader has requested and not yet received: every request of its
/// consumer asks for at most this many bytes' worth of the largest messages. A connection's
/// readers together must stay under the server's `max_pending` (64 MB by default), or the server
/// disconnects the client as a slow consumer: `verify --nats` reads 2 x partitions streams at
/// once on one connection, 16 readers at most 64 MB in the worst case (every frame of the
/// server's 1 MB `max_payload`; the chunk frames `run` writes are about 300 KB).
pub const READ_AHEAD_BYTES: usize = 4 << 20;

/// The subject prefix of every journal's stream.
pub const SUBJECT_PREFIX: &str = "ss.";

/// What every stream-sum stream must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamSpec {
    pub replicas: usize,
}

/// A connection to a cluster with JetStream.
#[derive(Clone)]
pub struct Nats {
    urls: String,
    client: async_nats::Client,
    js: jetstream::Context,
}

impl Nats {
    /// Connects to one of `urls` (comma-separated) and checks JetStream answers. Fails at once
    /// (no retry loop) when no server is reachable.
    pub async fn connect(urls: &str) -> Result<Nats, NatsError> {
        let addrs: Vec<async_nats::ServerAddr> = urls
            .split(',')
            .map(|u| u.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|e: std::io::Error| NatsError::Connect {
                urls: urls.to_string(),
                detail: e.to_string(),
            })?;
        let client = async_nats::ConnectOptions::new()
            .name("stream-sum")
            .connection_timeout(Duration::from_secs(5))
            .ignore_discovered_servers()
            .retain_servers_order()
            .max_reconnects(None)
            .connect(addrs)
            .await
            .map_err(|e| NatsError::Connect {
                urls: urls.to_string(),
                detail: e.to_string(),
            })?;
        let js = jetstream::new(client.clone());
        let nats = Nats {
            urls: urls.to_string(),
            client,
            js,
        };
        nats.check_jetstream().await?;
        Ok(nats)
    }

    /// Asks `$JS.API.INFO` (raw: the client's typed account info does not parse 2.9's reply).
    async fn check_jetstream(&self) -> Result<(), NatsError> {
        let started = Instant::now();
        loop {
            let detail = match self.client.request("$JS.API.INFO", Bytes::new()).await {
                Ok(reply) => match serde_json::from_slice::<serde_json::Value>(&reply.payload) {
                    Ok(v) if v.get("error").is_none() => return Ok(()),
                    Ok(v) => v["error"].to_string(),
                    Err(e) => format!("unreadable reply: {e}"),
                },
                Err(e) => e.to_string(),
            };
            // A server without JetStream answers "no responders" (nothing listens on the API
            // subjects) or "not enabled"; a cluster still electing its meta leader answers
            // "temporarily unavailable" (10008) for a few seconds.
            // A request that times out (a server still catching up) is tried again too.
            let electing = detail.contains("temporarily unavailable")
                || detail.contains("10008")
                || detail.contains("timed out");
            if !electing || started.elapsed() > Duration::from_secs(20) {
                return Err(NatsError::NoJetStream {
                    urls: self.urls.clone(),
                    detail,
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub fn urls(&self) -> &str {
        &self.urls
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The largest message the server accepts (payload plus headers).
    pub fn max_payload_bytes(&self) -> usize {
        self.client.server_info().max_payload
    }

    /// Names of the stream-sum journals (streams on `ss.*`), sorted. Transient failures (a
    /// cluster still electing its meta leader answers nothing) are retried, as opening is.
    pub async fn journal_names(&self) -> Result<Vec<String>, NatsError> {
        let started = Instant::now();
        loop {
            match self.list_journal_names().await {
                Ok(names) => return Ok(names),
                Err(detail) => retry_or_fail("", "listing streams", started, detail).await?,
            }
        }
    }

    async fn list_journal_names(&self) -> Result<Vec<String>, String> {
        let mut names = Vec::new();
        let mut list = self.js.streams();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| e.to_string())?;
            if info.config.subjects == [subject_of(&info.config.name)] {
                names.push(info.config.name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Opens the journal `name`, creating its stream if it does not exist, or checking that an
    /// existing one has the settings `spec` needs (naming every difference).
    pub async fn journal(&self, name: &str, spec: StreamSpec) -> Result<NatsJournal, NatsError> {
        check_name(name)?;
        let wanted = stream_config(name, spec);
        let started = Instant::now();
        loop {
            let result = match self.js.get_stream(name).await {
                Ok(mut stream) => match stream.info().await {
                    Ok(info) => {
                        let differences = differences(&info.config, &wanted);
                        if !differences.is_empty() {
                            return Err(NatsError::StreamMismatch {
                                stream: name.to_string(),
                                differences,
                            });
                        }
                        Ok(stream)
                    }
                    Err(e) => Err(e.to_string()),
                },
                Err(e) if e.to_string().contains("10059") || e.to_string().contains("not found") => {
                    match self.js.create_stream(wanted.clone()).await {
                        Ok(stream) => Ok(stream),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(stream) => return Ok(self.handle(name, stream)),
                Err(detail) => retry_or_fail(name, "opening the stream", started, detail).await?,
            }
        }
    }

    /// Checks that the journal `name`, if its stream exists, has the settings `spec` needs
    /// (naming every difference). Creates nothing.
    pub async fn check_existing(&self, name: &str, spec: StreamSpec) -> Result<(), NatsError> {
        check_name(name)?;
        let wanted = stream_config(name, spec);
        let started = Instant::now();
        loop {
            let detail = match self.js.get_stream(name).await {
                Ok(mut stream) => match stream.info().await {
                    Ok(info) => {
                        let differences = differences(&info.config, &wanted);
                        if differences.is_empty() {
                            return Ok(());
                        }
                        return Err(NatsError::StreamMismatch {
                            stream: name.to_string(),
                            differences,
                        });
                    }
                    Err(e) => e.to_string(),
                },
                Err(e) if e.to_string().contains("10059") => return Ok(()),
                Err(e) => e.to_string(),
            };
            retry_or_fail(name, "checking the stream", started, detail).await?;
        }
    }

    /// Opens the journal `name`, which must exist (for readers: creates nothing).
    pub async fn existing_journal(&self, name: &str) -> Result<NatsJournal, NatsError> {
        check_name(name)?;
        let started = Instant::now();
        loop {
            match self.js.get_stream(name).await {
                Ok(stream) => return Ok(self.handle(name, stream)),
                Err(e) if e.to_string().contains("10059") && started.elapsed() > Duration::from_secs(2) => {
                    return Err(NatsError::NoSuchStream {
                        stream: name.to_string(),
                    })
                }
                Err(e) => retry_or_fail(name, "opening the stream", started, e.to_string()).await?,
            }
        }
    }

    fn handle(&self, name: &str, stream: jetstream::stream::Stream) -> NatsJournal {
        NatsJournal {
            name: name.to_string(),
            subject: subject_of(name),
            js: self.js.clone(),
            stream,
            max_payload_bytes: self.max_payload_bytes(),
        }
    }
}

/// Like [`retry_or_fail`], for failures that are retried whatever they say (bounded).
pub(crate) async fn retry_or_fail_any(
    stream: &str,
    what: &'static str,
    started: Instant,
    detail: String,
) -> Result<(), NatsError> {
    let waited = started.elapsed();
    if waited > RETRY_FOR {
        return Err(NatsError::Unavailable {
            stream: stream.to_string(),
            what,
            waited,
            last: detail,
        });
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    Ok(())
}

/// Sleeps before the next try of a transient failure, or returns the error to report.
pub(crate) async fn retry_or_fail(
    stream: &str,
    what: &'static str,
    started: Instant,
    detail: String,
) -> Result<(), NatsError> {
    retry_or_fail_within(stream, what, started, RETRY_FOR, detail).await
}

/// Like [`retry_or_fail`], giving up once `retry_for` has passed since `started`.
pub(crate) async fn retry_or_fail_within(
    stream: &str,
    what: &'static str,
    started: Instant,
    retry_for: Duration,
    detail: String,
) -> Result<(), NatsError> {
    if !is_transient(&detail) {
        return Err(NatsError::Request {
            stream: stream.to_string(),
            what,
            detail,
        });
    }
    let waited = started.elapsed();
    if waited > retry_for {
        return Err(NatsError::Unavailable {
            stream: stream.to_string(),
            what,
            waited,
            last: detail,
        });
    }
    let backoff_ms = (50u64 << (waited.as_secs().min(4))).min(1000);
    tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
    Ok(())
}

fn check_name(name: &str) -> Result<(), NatsError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(NatsError::BadName {
            name: name.to_string(),
        })
    }
}

pub fn subject_of(name: &str) -> String {
    format!("{SUBJECT_PREFIX}{name}")
}

fn stream_config(name: &str, spec: StreamSpec) -> Config {
    Config {
        name: name.to_string(),
        subjects: vec![subject_of(name)],
        storage: StorageType::File,
        num_replicas: spec.replicas,
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::Old,
        max_messages: -1,
        max_bytes: -1,
        max_age: Duration::ZERO,
        max_message_size: -1,
        duplicate_window: Duration::from_secs(120),
        allow_direct: true,
        ..Config::default()
    }
}

/// Every setting of `have` that stream-sum cannot work with, as "what: have X, need Y".
fn differences(have: &Config, need: &Config) -> Vec<String> {
    let mut d = Vec::new();
    let mut check = |what: &str, have: String, need: String| {
        if have != need {
            d.push(format!("{what} is {have}, stream-sum needs {need}"));
        }
    };
    check(
        "subjects",
        format!("{:?}", have.subjects),
        format!("{:?}", need.subjects),
    );
    check(
        "storage",
        format!("{:?}", have.storage),
        format!("{:?}", need.storage),
    );
    check(
        "replicas",
        have.num_replicas.to_string(),
        need.num_replicas.to_string(),
    );
    check(
        "retention",
        format!("{:?}", have.retention),
        format!("{:?}", need.retention),
    );
    // Limits would drop messages a shard has not read, or its own checkpoints.
    if have.max_messages >= 0 {
        check("max_msgs", have.max_messages.to_string(), "-1 (unlimited)".into());
    }
    if have.max_bytes >= 0 {
        check("max_bytes", have.max_bytes.to_string(), "-1 (unlimited)".into());
    }
    if !have.max_age.is_zero() {
        check("max_age", format!("{:?}", have.max_age), "0 (unlimited)".into());
    }
    // A lower per-message limit than the server's would refuse frames sized to max payload.
    if have.max_message_size >= 0 {
        check(
            "max_msg_size",
            have.max_message_size.to_string(),
            "-1 (the server's max payload)".into(),
        );
    }
    if have.max_messages_per_subject > 0 {
        check(
            "max_msgs_per_subject",
            have.max_messages_per_subject.to_string(),
            "-1 (unlimited)".into(),
        );
    }
    if have.duplicate_window.is_zero() {
        check(
            "duplicate_window",
            "0".into(),
            "a window (120 s) for retried appends".into(),
        );
    }
    d
}

/// One journal (stream) on the cluster. Cheap to clone.
#[derive(Clone)]
pub struct NatsJournal {
    name: String,
    subject: String,
    js: jetstream::Context,
    stream: jetstream::stream::Stream,
    max_payload_bytes: usize,
}

/// One frame read back: its position (stream sequence) and payload.
#[derive(Clone, Debug)]
pub struct NatsFrame {
    pub sequence: u64,
    pub payload: Bytes,
    /// The `Nats-Msg-Id` it was appended with, if any.
    pub msg_id: Option<String>,
}

/// Room kept for the headers an append adds (message id, expected sequence).
pub const HEADER_ROOM_BYTES: usize = 256;

impl NatsJournal {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The largest frame payload an append accepts.
    pub fn frame_max_bytes(&self) -> usize {
        self.max_payload_bytes.saturating_sub(HEADER_ROOM_BYTES)
    }

    /// Appends one frame. With `expected_head`, only if the stream's last sequence is still it
    /// (else [`NatsError::Fenced`]). `msg_id` makes retries idempotent within the duplicate
    /// window; it should be unique per frame and the same on every retry. Returns the frame's
    /// sequence (its position, and the new head).
    pub async fn append(
        &self,
        payload: Bytes,
        expected_head: Option<u64>,
        msg_id: &str,
    ) -> Result<u64, NatsError> {
        if payload.len() > self.frame_max_bytes() {
            return Err(NatsError::TooLarge {
                stream: self.name.clone(),
                len_bytes: payload.len(),
                max_bytes: self.frame_max_bytes(),
            });
        }
        let started = Instant::now();
        loop {
            let mut msg = PublishMessage::build()
                .payload(payload.clone())
                .message_id(msg_id);
            if let Some(head) = expected_head {
                msg = msg.expected_last_sequence(head);
            }
            let ack = match self.js.send_publish(self.subject.clone(), msg).await {
                Ok(fut) => fut.await,
                Err(e) => Err(e),
            };
            match ack {
                Ok(ack) => return Ok(ack.sequence),
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    return self.resolve_wrong_last(expected_head.unwrap_or(0), msg_id).await;
                }
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    return Err(NatsError::TooLarge {
                        stream: self.name.clone(),
                        len_bytes: payload.len(),
                        max_bytes: self.frame_max_bytes(),
                    })
                }
                Err(e) => {
                    let detail = match e.kind() {
                        PublishErrorKind::StreamNotFound => "no responders / stream not found".to_string(),
                        PublishErrorKind::TimedOut => "timed out".to_string(),
                        PublishErrorKind::BrokenPipe => "broken pipe".to_string(),
                        _ => format!("{e}: {:?}", std::error::Error::source(&e).map(|s| s.to_string())),
                    };
                    retry_or_fail(&self.name, "appending", started, detail).await?;
                }
            }
        }
    }

    /// A "wrong last sequence" answer: our own earlier try may have landed. Decide by the last
    /// message's id.
    async fn resolve_wrong_last(&self, expected: u64, msg_id: &str) -> Result<u64, NatsError> {
        match self.last().await? {
            Some(last) if last.msg_id.as_deref() == Some(msg_id) => Ok(last.sequence),
            last => Err(NatsError::Fenced {
                stream: self.name.clone(),
                expected,
                actual: last.map_or(0, |l| l.sequence),
            }),
        }
    }

    /// The stream's state (first and last sequence, messages deleted from inside it, ...), from
    /// one stream-info request, retried while the cluster is unavailable; `what` names the
    /// reading in the error.
    pub async fn state(&self, what: &'static str) -> Result<jetstream::stream::State, NatsError> {
        let started = Instant::now();
        let mut stream = self.stream.clone();
        loop {
            match stream.info().await {
                Ok(info) => return Ok(info.state.clone()),
                Err(e) => retry_or_fail(&self.name, what, started, e.to_string()).await?,
            }
        }
    }

    /// The head: the last sequence (0 when nothing was ever appended).
    pub async fn head(&self) -> Result<u64, NatsError> {
        Ok(self.state("reading the head").await?.last_sequence)
    }

    /// The bytes the stream stores (JetStream's `state.bytes`: one replica's copy, message
    /// headers and subjects included). One request, no retry: a sample, not a promise.
    pub async fn stored_bytes(&self) -> Result<u64, NatsError> {
        let mut stream = self.stream.clone();
        match stream.info().await {
            Ok(info) => Ok(info.state.bytes),
            Err(e) => Err(NatsError::Request {
                stream: self.name.clone(),
                what: "reading the stored bytes",
                detail: e.to_string(),
            }),
        }
    }

    /// The first sequence still stored (1 for a stream nothing was removed from; for an empty
    /// stream, the next sequence).
    pub async fn first_sequence(&self) -> Result<u64, NatsError> {
        Ok(self
            .state("reading the first sequence")
            .await?
            .first_sequence
            .max(1))
    }

    /// The last frame, if any.
    pub async fn last(&self) -> Result<Option<NatsFrame>, NatsError> {
        let started = Instant::now();
        loop {
            match self.stream.get_last_raw_message_by_subject(&self.subject).await {
                Ok(m) => {
                    return Ok(Some(NatsFrame {
                        sequence: m.sequence,
                        msg_id: msg_id_of(&m.headers),
                        payload: m.payload,
                    }))
                }
                Err(e) if e.to_string().contains("no message found") || e.to_string().contains("10037") => {
                    return Ok(None)
                }
                Err(e) => {
                    retry_or_fail(&self.name, "reading the last message", started, e.to_string()).await?
                }
            }
        }
    }

    /// A reader of the frames after position `after` (sequence > `after`), tailing.
    pub async fn reader(&self, after: u64) -> Result<NatsReader, NatsError> {
        let known_head = self.head().await?;
        Ok(NatsReader {
            messages: self.ordered_from(after).await?,
            journal: self.clone(),
            position: after,
            known_head,
        })
    }

    /// How many messages a reader's consumer may pull at once. A chunk journal's frames are
    /// large (up to the server's largest message; about 300 KB as `run` writes them): as many as
    /// fit [`READ_AHEAD_BYTES`] at the largest size, at least one. Other journals (shard logs,
    /// `runs`, `partitions`) hold small frames, mostly a few KB: the client's default (0: 500),
    /// so that a Sum tailer does not wait on one round trip per 2-4 frames.
    fn read_ahead_messages(&self) -> i64 {
        if self.name.starts_with("chunks-") {
            (READ_AHEAD_BYTES / self.max_payload_bytes.max(1)).max(1) as i64
        } else {
            0
        }
    }

    /// An ordered consumer delivering the messages after `after`, at most
    /// [`READ_AHEAD_BYTES`] of them requested at a time.
    async fn ordered_from(&self, after: u64) -> Result<pull::Ordered, NatsError> {
        let started = Instant::now();
        loop {
            let config = pull::OrderedConfig {
                filter_subject: self.subject.clone(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
                // The client's ordered consumer pulls 500 messages a request by default, with no
                // bound on bytes; over a stream of 300 KB frames that is 150 MB, which the server
                // queues for the connection at once, past its `max_pending` (64 MB by default):
                // it then closes the connection as a slow consumer (`verify --nats` over a 960 MB
                // stream: 2 disconnections). The consumer's `max_batch` caps each request.
                max_batch: self.read_ahead_messages(),
                ..Default::default()
            };
            let made = match self.stream.create_consumer(config).await {
                Ok(c) => c.messages().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match made {
                Ok(messages) => return Ok(messages),
                Err(detail) => retry_or_fail(&self.name, "creating a reader", started, detail).await?,
            }
        }
    }
}

fn msg_id_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::NATS_MESSAGE_ID)
        .map(|v| v.as_str().to_string())
}

/// Reads a journal's frames in order from a position, waiting for new ones (an ordered
/// consumer: the client recreates it past failures, without gaps or repeats).
pub struct NatsReader {
    journal: NatsJournal,
    messages: pull::Ordered,
    position: u64,
    /// A head the stream is known to have reached: its last sequence when the reader was made,
    /// then each delivered message's sequence plus the messages still pending after it.
    known_head: u64,
}

impl NatsReader {
    /// The position after the last frame returned.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Replaces the consumer with a new one from this reader's position (for a consumer that
    /// stalls: a message known to exist does not arrive).
    pub async fn restart(&mut self) -> Result<(), NatsError> {
        self.messages = self.journal.ordered_from(self.position).await?;
        Ok(())
    }

    /// A head the stream is known to have reached (frames up to it exist and will arrive).
    pub fn known_head(&self) -> u64 {
        self.known_head.max(self.position)
    }

    /// Asks the stream for its head once (bounded by `wait`, no retry) and raises the known head
    /// to it: for a consumer that went quiet without an error (its server restarted, and nothing
    /// known to exist past this reader's position), so that frames appended meanwhile count as
    /// known and a stall can be seen and restarted. A failed or slow request changes nothing.
    pub async fn refresh_known_head(&mut self, wait: Duration) -> u64 {
        let mut stream = self.journal.stream.clone();
        if let Ok(Ok(info)) = tokio::time::timeout(wait, stream.info()).await {
            self.known_head = self.known_head.max(info.state.last_sequence);
        }
        self.known_head()
    }

    /// The next frame, waiting up to `wait` for one (`None` if none came).
    pub async fn next_timeout(&mut self, wait: Duration) -> Result<Option<NatsFrame>, NatsError> {
        match tokio::time::timeout(wait, self.next()).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The next frame, waiting for one.
    pub async fn next(&mut self) -> Result<NatsFrame, NatsError> {
        let started = Instant::now();
        loop {
            match self.messages.next().await {
                Some(Ok(m)) => {
                    let (sequence, pending) =
                        m.info()
                            .map(|i| (i.stream_sequence, i.pending))
                            .map_err(|e| NatsError::Request {
                                stream: self.journal.name.clone(),
                                what: "reading",
                                detail: e.to_string(),
                            })?;
                    self.known_head = self.known_head.max(sequence + pending);
                    if sequence <= self.position {
                        continue; // a redelivery across a consumer reset: already returned
                    }
                    self.position = sequence;
                    let msg_id = m.headers.as_ref().and_then(msg_id_of);
                    return Ok(NatsFrame {
                        sequence,
                        msg_id,
                        payload: m.message.payload,
                    });
                }
                Some(Err(e)) => {
                    // The ordered consumer gave up (its server was killed or cut off, and the
                    // client could not recreate it: "consumer not found", missed heartbeats):
                    // make a new one from where this reader is, bounded like any request.
                    retry_or_fail_any(&self.journal.name, "reading", started, e.to_string()).await?;
                    self.messages = self.journal.ordered_from(self.position).await?;
                }
                None => {
                    return Err(NatsError::Request {
                        stream: self.journal.name.clone(),
                        what: "reading",
                        detail: "the consumer ended".into(),
                    })
                }
            }
        }
    }
}
