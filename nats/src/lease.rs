//! Shard ownership across processes: leases in a JetStream key-value bucket, as Gazette uses
//! etcd.
//!
//! A lease is the key `<shard>` in the bucket [`BUCKET`], holding `{"owner", "expires_unix_ms"}`.
//! Every change is a compare-and-set on the key's revision, so two processes can never both
//! take or renew the same lease from the same state: one's update fails with "wrong last
//! revision". A lease whose expiry has passed may be taken by anyone (CAS on the revision read).
//! The holder renews well before expiry; a holder that cannot renew in time (partitioned, paused)
//! must stop the shard. Expiry is wall-clock time, so processes on different machines need
//! clocks within a small fraction of the TTL of each other.
//!
//! A lease is not the exactly-once argument: two processes may both believe they own a shard
//! for a moment (the old one has not noticed its lease expired). The shard log's conditional
//! append (expected last sequence) is what keeps the stale one from writing.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{
    self, kv,
    stream::{self, StorageType},
};
use serde::{Deserialize, Serialize};

/// How often a compare-and-set re-reads after a write to another key got in between.
const CAS_ATTEMPTS: usize = 100;

use crate::error::NatsError;
use crate::journal::{retry_or_fail, retry_or_fail_within};

/// The bucket holding stream-sum's shard leases.
pub const BUCKET: &str = "ss-leases";

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct LeaseValue {
    owner: String,
    expires_unix_ms: u64,
}

/// The leases of one cluster.
#[derive(Clone)]
pub struct Leases {
    kv: kv::Store,
    js: jetstream::Context,
    stream: stream::Stream,
    ttl: Duration,
}

/// A lease this process holds (as of its last successful renewal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub key: String,
    pub owner: String,
    pub revision: u64,
    pub expires_unix_ms: u64,
}

/// Who holds a key now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub owner: String,
    pub expires_unix_ms: u64,
    pub revision: u64,
}

pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_millis() as u64
}

fn err(what: &'static str, e: impl std::fmt::Display) -> NatsError {
    NatsError::Request {
        stream: format!("KV_{BUCKET}"),
        what,
        detail: e.to_string(),
    }
}

/// A compare-and-set that lost: 2.9 answers error code 10071, 2.15 also 10164, which the client
/// reports as a generic failure "wrong last sequence".
fn lost_race(e: &impl std::fmt::Display) -> bool {
    e.to_string().contains("wrong last sequence")
}

impl Leases {
    /// Opens (creating if needed) the lease bucket with `replicas` replicas; leases last `ttl`
    /// unless renewed.
    pub async fn open(js: &jetstream::Context, replicas: usize, ttl: Duration) -> Result<Leases, NatsError> {
        if js.get_stream(format!("KV_{BUCKET}")).await.is_err() {
            // The bucket's stream, made as the client's `create_key_value` would make it
            // (which first asks for account info, whose 2.9 reply the client cannot parse).
            // Losing a creation race to another process is fine: the config is the same.
            let _ = js
                .create_stream(stream::Config {
                    name: format!("KV_{BUCKET}"),
                    subjects: vec![format!("$KV.{BUCKET}.>")],
                    max_messages_per_subject: 1,
                    storage: StorageType::File,
                    num_replicas: replicas,
                    allow_rollup: true,
                    deny_delete: true,
                    // Reads go to the stream leader: a follower's direct get may be behind and
                    // show an expired or released lease as still held (or the reverse).
                    allow_direct: false,
                    discard: stream::DiscardPolicy::New,
                    ..Default::default()
                })
                .await;
        }
        // A bucket just made (here or by another process) may have no leader yet: its reads
        // time out and its writes find "no stream" until it has one. Opening does not wait
        // for that (a probe read here could hang for the client's whole request timeout and
        // delay the run's start); each lease operation retries such failures instead.
        let name = format!("KV_{BUCKET}");
        let started = Instant::now();
        let (kv, stream) = loop {
            let opened = async {
                let kv = js.get_key_value(BUCKET).await.map_err(|e| e.to_string())?;
                let info = kv.status().await.map_err(|e| e.to_string())?;
                let stream = js.get_stream(&name).await.map_err(|e| e.to_string())?;
                Ok::<_, String>((kv, info.info.config.num_replicas, stream))
            };
            match opened.await {
                Ok((kv, have, stream)) => {
                    if have != replicas {
                        return Err(NatsError::StreamMismatch {
                            stream: name,
                            differences: vec![format!("replicas is {have}, stream-sum needs {replicas}")],
                        });
                    }
                    break (kv, stream);
                }
                Err(detail) => retry_or_fail(&name, "opening the lease bucket", started, detail).await?,
            }
        };
        Ok(Leases {
            kv,
            js: js.clone(),
            stream,
            ttl,
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Who holds `key` (possibly expired), if anyone ever did.
    pub async fn holder(&self, key: &str) -> Result<Option<Holder>, NatsError> {
        self.holder_since(key, Instant::now()).await
    }

    /// [`Leases::holder`], retrying transient failures until the TTL has passed since `started`
    /// (a lease operation that takes longer is of no use to its holder).
    async fn holder_since(&self, key: &str, started: Instant) -> Result<Option<Holder>, NatsError> {
        let entry = loop {
            match self.kv.entry(key).await {
                Ok(entry) => break entry,
                Err(e) => self.retry(started, "reading a lease", e.to_string()).await?,
            }
        };
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        let v: LeaseValue = serde_json::from_slice(&entry.value).map_err(|e| err("decoding a lease", e))?;
        Ok(Some(Holder {
            owner: v.owner,
            expires_unix_ms: v.expires_unix_ms,
            revision: entry.revision,
        }))
    }

    /// Sleeps before the next try of a transient failure (a leader election, a server
    /// restarting), or returns the error to report: a permanent one, or any once the TTL has
    /// passed since `started`.
    async fn retry(&self, started: Instant, what: &'static str, detail: String) -> Result<(), NatsError> {
        retry_or_fail_within(&format!("KV_{BUCKET}"), what, started, self.ttl, detail).await
    }

    /// Takes `key` for `owner` if nobody holds it, its lease expired, or `owner` already holds
    /// it. `Ok(None)`: another owner holds it (or won a race for it).
    pub async fn try_acquire(&self, key: &str, owner: &str) -> Result<Option<Lease>, NatsError> {
        let value = self.value(owner);
        let expires_unix_ms = value.expires_unix_ms;
        let expected = match self.holder(key).await? {
            None => None,
            Some(h) if h.owner == owner || h.expires_unix_ms <= now_unix_ms() => Some(h.revision),
            Some(_) => return Ok(None),
        };
        let Some(revision) = self.compare_and_set(key, &value, expected).await? else {
            return Ok(None);
        };
        Ok(Some(Lease {
            key: key.to_string(),
            owner: owner.to_string(),
            revision,
            expires_unix_ms,
        }))
    }

    /// Extends a held lease. `Ok(false)`: it was lost (someone else changed the key since our
    /// last renewal, which they may only do after it expired): stop the shard.
    pub async fn renew(&self, lease: &mut Lease) -> Result<bool, NatsError> {
        let value = self.value(&lease.owner);
        match self
            .compare_and_set(&lease.key, &value, Some(lease.revision))
            .await?
        {
            Some(r) => {
                lease.revision = r;
                lease.expires_unix_ms = value.expires_unix_ms;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Gives a lease up (marks it expired), if still held: another process may take it at once.
    pub async fn release(&self, lease: &Lease) -> Result<(), NatsError> {
        let value = LeaseValue {
            owner: lease.owner.clone(),
            expires_unix_ms: 0,
        };
        self.compare_and_set(&lease.key, &value, Some(lease.revision))
            .await?;
        Ok(())
    }

    /// Writes `value` to `key` only if the key's revision is still `expected` (`None`: the key
    /// has no value). Returns the new revision, or `None` if the key changed.
    ///
    /// The key-value client's own compare-and-set sends the key's revision as
    /// `Nats-Expected-Last-Subject-Sequence`; on nats-server 2.9.10 in a cluster two such
    /// updates racing from the same revision can both land (seen in
    /// `tests/cluster_leases.rs`). The stream-wide `Nats-Expected-Last-Sequence` holds under
    /// races on every version tried, so this reads the bucket's last sequence, checks the key
    /// is unchanged, and publishes conditional on that sequence; a write to any other key in
    /// between makes it read and check again.
    ///
    /// Transient failures are retried until the TTL has passed. A write whose answer was lost
    /// (a timeout, a leader change) may have landed: if the key then holds exactly our value
    /// (owner and expiry to the millisecond), that was our write, and its revision is returned.
    async fn compare_and_set(
        &self,
        key: &str,
        value: &LeaseValue,
        expected: Option<u64>,
    ) -> Result<Option<u64>, NatsError> {
        let subject = format!("$KV.{BUCKET}.{key}");
        let payload: bytes::Bytes = serde_json::to_vec(value).expect("serializable").into();
        let mut stream = self.stream.clone();
        let started = Instant::now();
        let mut maybe_landed = false;
        for _ in 0..CAS_ATTEMPTS {
            let last = loop {
                match stream.info().await {
                    Ok(info) => break info.state.last_sequence,
                    Err(e) => {
                        self.retry(started, "reading the lease bucket", e.to_string())
                            .await?
                    }
                }
            };
            let current = self.holder_since(key, started).await?;
            // After a write whose answer was lost: exactly our value means it landed.
            let landed = |h: &&Holder| {
                maybe_landed && h.owner == value.owner && h.expires_unix_ms == value.expires_unix_ms
            };
            if let Some(h) = current.as_ref().filter(landed) {
                return Ok(Some(h.revision));
            }
            // A released or never-set key: any value counts as "no holder" for `None`.
            if current.map(|h| h.revision) != expected {
                return Ok(None);
            }
            let msg = PublishMessage::build()
                .payload(payload.clone())
                .expected_last_sequence(last);
            let ack = match self.js.send_publish(subject.clone(), msg).await {
                Ok(fut) => fut.await,
                Err(e) => Err(e),
            };
            match ack {
                Ok(ack) => return Ok(Some(ack.sequence)),
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence || lost_race(&e) => continue,
                Err(e) => {
                    maybe_landed = true;
                    self.retry(started, "writing a lease", e.to_string()).await?;
                }
            }
        }
        Err(err(
            "writing a lease",
            format!("the bucket kept changing ({CAS_ATTEMPTS} tries)"),
        ))
    }

    /// The owners of the unexpired leases whose key starts with `prefix` (e.g. the members of a
    /// group that each hold a `member-<owner>` lease).
    pub async fn live_owners(&self, prefix: &str) -> Result<Vec<String>, NatsError> {
        use futures_util::StreamExt;
        let mut keys = self.kv.keys().await.map_err(|e| err("listing leases", e))?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| err("listing leases", e))?;
            if key.starts_with(prefix) {
                names.push(key);
            }
        }
        let now = now_unix_ms();
        let mut owners = Vec::new();
        for key in names {
            if let Some(h) = self.holder(&key).await? {
                if h.expires_unix_ms > now {
                    owners.push(h.owner);
                }
            }
        }
        owners.sort();
        Ok(owners)
    }

    fn value(&self, owner: &str) -> LeaseValue {
        LeaseValue {
            owner: owner.to_string(),
            expires_unix_ms: now_unix_ms() + self.ttl.as_millis() as u64,
        }
    }
}
