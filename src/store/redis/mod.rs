//! [`RedisStore`]: the store several broker replicas share, on one Redis
//! server. Its key layout and change feed protocol are documented on the
//! type, so that they show in the public docs.
//!
//! This file holds the type and its [`Store`] operations; the rest is split
//! by what it does:
//!
//! - `connection`: connecting, sending commands and scripts, mapping errors;
//! - `scripts`: the Lua scripts that make each write atomic;
//! - `codec`: how records, challenges and change messages are encoded;
//! - `feed`: the change feed task behind [`Store::subscribe`].

mod codec;
mod connection;
mod feed;
mod scripts;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mayfly_sdk::revocation::Revocation;
use redis::aio::ConnectionManager;
use redis::{Client, Value};
use tokio::sync::mpsc;

use self::codec::{
    WireEvent, decode_challenge, encode, encode_challenge, event_json, garbage_after_ms,
};
use self::scripts::{
    CREATE_AUDIENCE, CREATE_ENTRY, DELETE_AUDIENCE, DELETE_ENTRY, DELETE_REVOCATION,
    FORGET_REPLICAS, INSERT_JOIN_TOKEN, PRUNE_REVOCATIONS, PUBLISH_REPLICA, PUT_REVOCATION,
    PUT_REVOCATIONS, RECORD_USAGE, REDEEM_JOIN_TOKEN, REVOCATIONS_AFTER, UPDATE_AUDIENCE,
    UPDATE_ENTRY, UPDATE_GRANT, USE_ONCE, status,
};
use super::{
    AuditAnchorRecord, RedeemError, ReplicaRecord, Store, StoreError, StoreEvent, UsageRecord,
};
use crate::attest::join_token::{JoinTokenRecord, TokenHash};
use crate::audience::AudienceRecord;
use crate::policy::grant::GrantRecord;
use crate::policy::{Entry, EntryId};

/// A replica record dead for this long is deleted by
/// [`Store::live_replicas`]; until then a replica whose clock runs behind
/// still sees it.
const REPLICA_GRACE_SECONDS: i64 = 60 * 60;

/// The Redis-backed [`Store`], shared by several broker replicas.
///
/// Every write that must be atomic is one Lua script, so it happens entirely
/// or not at all, and concurrent writers on different replicas are
/// serialized by Redis itself: entry create/update/delete (with SPIFFE ID
/// uniqueness and an optimistic revision check), join token redemption (of
/// any number of concurrent redemptions, on any replicas, exactly one wins),
/// usage batches, replay guards, revocation pruning. Commands go through an
/// auto-reconnecting connection; while Redis cannot be reached, every call
/// fails with [`StoreError::Unavailable`] and the caller fails closed.
///
/// ```no_run
/// # async fn example() -> Result<(), mayfly::store::StoreError> {
/// use mayfly::store::{RedisStore, Store};
///
/// let store = RedisStore::connect("redis://10.0.0.5:6379", "mayfly").await?;
/// let mut feed = store.subscribe().expect("a shared store has a change feed");
/// while let Some(event) = feed.recv().await {
///     println!("{event:?}");
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Keys
///
/// Everything lives under `{prefix}:`, on one server (not Redis Cluster: the
/// scripts touch several keys at once):
///
/// | key | type | content |
/// | --- | --- | --- |
/// | `{prefix}:entries` | hash | entry id → [`Entry`] JSON |
/// | `{prefix}:spiffe_ids` | hash | SPIFFE ID → entry id (uniqueness) |
/// | `{prefix}:join_tokens` | hash | token hash → [`JoinTokenRecord`] JSON as minted |
/// | `{prefix}:join_tokens_used` | hash | token hash → Unix seconds of its redemption |
/// | `{prefix}:usage` | hash | entry id → [`UsageRecord`] JSON |
/// | `{prefix}:once:{key}` | string | a one-time key's `expires_at` |
/// | `{prefix}:challenge:{id}` | string | `expires_at` (8 bytes, big-endian), then the nonce |
/// | `{prefix}:revocations` | hash | `kind:value` → [`Revocation`] JSON |
/// | `{prefix}:revocation_keys` | sorted set | every `kind:value`, score 0: the key order a listing pages through (rebuilt from the hash when it holds fewer); about 120 bytes a revocation |
/// | `{prefix}:audiences` | hash | audience name → [`AudienceRecord`] JSON |
/// | `{prefix}:grants` | hash | break-glass grant id → [`GrantRecord`] JSON (read when needed: the entry carries a grant in force) |
/// | `{prefix}:replicas` | hash | replica id → [`ReplicaRecord`] JSON |
/// | `{prefix}:audit` | hash | replica id → [`AuditAnchorRecord`] JSON: its latest signed audit checkpoint and key hand-overs (the audit witness) |
/// | `{prefix}:version` | string | the change counter (an integer) |
///
/// One-time keys and challenges are judged by the `now` the caller passes,
/// like in the embedded store; Redis expires them a grace period after
/// `expires_at` (so clock skew between Redis and the replicas cannot reopen
/// a replay window), which is why [`Store::prune_one_time`] has nothing to do.
///
/// # Change feed
///
/// Every change to entries, revocations and replicas increments
/// `{prefix}:version` and publishes, on channel `{prefix}:events`, in the
/// same script as the write (so version order is write order):
///
/// ```json
/// {"version": 42, "event": {"type": "entry_upserted", "entry": { ... }}}
/// ```
///
/// where `event` is one of `{"type": "entry_upserted", "entry": Entry}`,
/// `{"type": "entry_deleted", "id": "<entry id>"}`,
/// `{"type": "revocation_put", "revocation": Revocation}`,
/// `{"type": "revocation_deleted", "key": "<kind:value>"}`,
/// `{"type": "audience_upserted", "audience": AudienceRecord}`,
/// `{"type": "audience_deleted", "name": "<audience>"}` or
/// `{"type": "replicas_changed"}`. Every snapshot (step 1 below) also
/// reads every audience and sends them as [`StoreEvent::AudiencesReplaced`]
/// right after [`StoreEvent::Snapshot`].
///
/// [`RedisStore::subscribe`] turns that into [`StoreEvent`]s. It spawns a
/// task on the current Tokio runtime (called outside one, the receiver gets
/// a single [`StoreEvent::Lost`] and closes); the task ends when the
/// receiver is dropped. It:
///
/// 1. opens a pub/sub connection and subscribes to `{prefix}:events`
///    *first*, then reads every entry, every revocation and the version in
///    one transaction, and sends [`StoreEvent::Snapshot`] then
///    [`StoreEvent::Heard`]. Subscribing first means no change can fall
///    between the snapshot and the feed;
/// 2. for each message: a version at or below the last one applied is
///    already in the view and ignored; exactly the next version is sent as
///    its event; a version further ahead means a message was missed, and
///    the task resyncs (a new Snapshot and Heard);
/// 3. every poll interval (1 s by default, see
///    [`RedisStore::with_poll_interval`]) it pings the pub/sub connection and
///    reads the version. If it is ahead of the view, the task gives the
///    messages in flight a moment to arrive, then resyncs if still behind;
///    if it differs otherwise (Redis lost its data), it resyncs at once.
///    When the view is complete it sends `Heard(now)`. A failed read sends
///    [`StoreEvent::Lost`];
/// 4. when the pub/sub connection is lost it sends `Lost`, reconnects with
///    exponential backoff (100 ms doubling to 5 s, with jitter), and starts
///    again at step 1, until the receiver is dropped.
///
/// `Heard` is only ever sent while the view is complete, so a subscriber
/// that stops hearing knows its view is aging.
///
/// Cloning is cheap and shares the connection. `Debug` and
/// [`Store::describe`] show the server's `host:port` and the key prefix,
/// never the URL's password.
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    commands: ConnectionManager,
    names: Arc<Names>,
    poll_interval: Duration,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("server", &self.names.server)
            .field("prefix", &self.names.prefix)
            .finish_non_exhaustive()
    }
}

/// The server's address and every key and channel name, computed once.
struct Names {
    /// `host:port` (or a socket path): never the URL, which may hold a password.
    server: String,
    prefix: String,
    entries: String,
    spiffe_ids: String,
    join_tokens: String,
    join_tokens_used: String,
    usage: String,
    revocations: String,
    revocation_keys: String,
    replicas: String,
    audit: String,
    audiences: String,
    grants: String,
    version: String,
    events: String,
}

impl Names {
    fn new(server: String, prefix: &str) -> Self {
        let key = |name: &str| format!("{prefix}:{name}");
        Names {
            entries: key("entries"),
            spiffe_ids: key("spiffe_ids"),
            join_tokens: key("join_tokens"),
            join_tokens_used: key("join_tokens_used"),
            usage: key("usage"),
            revocations: key("revocations"),
            revocation_keys: key("revocation_keys"),
            replicas: key("replicas"),
            audit: key("audit"),
            audiences: key("audiences"),
            grants: key("grants"),
            version: key("version"),
            events: key("events"),
            server,
            prefix: prefix.to_owned(),
        }
    }

    fn one_time(&self, key: &str) -> String {
        format!("{}:once:{key}", self.prefix)
    }

    fn challenge(&self, id: &str) -> String {
        format!("{}:challenge:{id}", self.prefix)
    }
}

#[async_trait::async_trait]
impl Store for RedisStore {
    async fn list_entries(&self) -> Result<Vec<Entry>, StoreError> {
        self.read_all(&self.names.entries, "entry").await
    }

    async fn entry(&self, id: &EntryId) -> Result<Option<Entry>, StoreError> {
        let json: Option<String> = self
            .query(redis::cmd("HGET").arg(&self.names.entries).arg(id.as_str()))
            .await?;
        json.map(|json| self.decode("entry", id.as_str(), &json))
            .transpose()
    }

    async fn create_entry(&self, entry: &Entry) -> Result<(), StoreError> {
        let id = entry.id.as_str();
        let event = WireEvent::EntryUpserted {
            entry: entry.clone(),
        };
        let reply: Vec<String> = self
            .invoke(
                CREATE_ENTRY
                    .key(&self.names.entries)
                    .key(&self.names.spiffe_ids)
                    .key(&self.names.version)
                    .arg(&self.names.events)
                    .arg(id)
                    .arg(entry.spiffe_id.as_str())
                    .arg(encode("entry", id, entry)?)
                    .arg(event_json(&event)?),
            )
            .await?;
        match status(&reply) {
            ("ok", _) => Ok(()),
            ("exists", _) => Err(StoreError::Conflict {
                reason: format!("entry {id} already exists"),
            }),
            ("spiffe_taken", Some(owner)) => Err(StoreError::Conflict {
                reason: format!("{} is already registered as entry {owner}", entry.spiffe_id),
            }),
            _ => Err(self.unexpected_reply("create entry", &reply)),
        }
    }

    async fn update_entry(&self, entry: &Entry, expected_revision: u64) -> Result<(), StoreError> {
        let id = entry.id.as_str();
        if entry.revision <= expected_revision {
            return Err(StoreError::Internal {
                reason: format!(
                    "update of entry {id} to revision {} does not raise expected revision {expected_revision}",
                    entry.revision
                ),
            });
        }
        let event = WireEvent::EntryUpserted {
            entry: entry.clone(),
        };
        let reply: Vec<String> = self
            .invoke(
                UPDATE_ENTRY
                    .key(&self.names.entries)
                    .key(&self.names.spiffe_ids)
                    .key(&self.names.version)
                    .arg(&self.names.events)
                    .arg(id)
                    .arg(expected_revision)
                    .arg(entry.spiffe_id.as_str())
                    .arg(encode("entry", id, entry)?)
                    .arg(event_json(&event)?),
            )
            .await?;
        match status(&reply) {
            ("ok", _) => Ok(()),
            ("missing", _) => Err(entry_not_found(&entry.id)),
            ("corrupt", _) => Err(self.corrupt("entry", id)),
            ("stale", Some(stored)) => Err(StoreError::Conflict {
                reason: format!(
                    "entry {id} is at revision {stored}, not {expected_revision}; it changed since it was read"
                ),
            }),
            ("spiffe_taken", Some(owner)) => Err(StoreError::Conflict {
                reason: format!("{} is already registered as entry {owner}", entry.spiffe_id),
            }),
            _ => Err(self.unexpected_reply("update entry", &reply)),
        }
    }

    async fn delete_entry(&self, id: &EntryId) -> Result<Entry, StoreError> {
        let event = WireEvent::EntryDeleted { id: id.clone() };
        let reply: Vec<String> = self
            .invoke(
                DELETE_ENTRY
                    .key(&self.names.entries)
                    .key(&self.names.spiffe_ids)
                    .key(&self.names.usage)
                    .key(&self.names.version)
                    .arg(&self.names.events)
                    .arg(id.as_str())
                    .arg(event_json(&event)?),
            )
            .await?;
        match status(&reply) {
            ("ok", Some(stored)) => self.decode("entry", id.as_str(), stored),
            ("missing", _) => Err(entry_not_found(id)),
            ("corrupt", _) => Err(self.corrupt("entry", id.as_str())),
            _ => Err(self.unexpected_reply("delete entry", &reply)),
        }
    }

    async fn insert_join_token(&self, record: &JoinTokenRecord) -> Result<(), StoreError> {
        let token_id = record.hash.token_id();
        let used_at = record.used_at.map(|at| at.to_string()).unwrap_or_default();
        let reply: Vec<String> = self
            .invoke(
                INSERT_JOIN_TOKEN
                    .key(&self.names.entries)
                    .key(&self.names.join_tokens)
                    .key(&self.names.join_tokens_used)
                    .arg(record.entry_id.as_str())
                    .arg(record.hash.as_str())
                    .arg(encode("join token", &token_id, record)?)
                    .arg(used_at),
            )
            .await?;
        match status(&reply) {
            ("ok", _) => Ok(()),
            ("missing", _) => Err(entry_not_found(&record.entry_id)),
            ("exists", _) => Err(StoreError::Conflict {
                reason: format!("join token {token_id} already exists"),
            }),
            _ => Err(self.unexpected_reply("insert join token", &reply)),
        }
    }

    async fn join_token(&self, hash: &TokenHash) -> Result<Option<JoinTokenRecord>, StoreError> {
        let token_id = hash.token_id();
        let mut connection = self.commands.clone();
        // The record is kept as minted; its redemption time is kept apart.
        let (stored, used_at): (Option<String>, Option<String>) = redis::pipe()
            .atomic()
            .cmd("HGET")
            .arg(&self.names.join_tokens)
            .arg(hash.as_str())
            .cmd("HGET")
            .arg(&self.names.join_tokens_used)
            .arg(hash.as_str())
            .query_async(&mut connection)
            .await
            .map_err(|error| self.backend(&error))?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let mut record: JoinTokenRecord = self.decode("join token", &token_id, &stored)?;
        if let Some(used_at) = used_at {
            let used_at = used_at
                .parse()
                .map_err(|_| self.corrupt("redemption time of join token", &token_id))?;
            record.used_at = Some(used_at);
        }
        Ok(Some(record))
    }

    async fn redeem_join_token(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> Result<JoinTokenRecord, RedeemError> {
        let token_id = hash.token_id();
        let reply: Vec<String> = self
            .invoke(
                REDEEM_JOIN_TOKEN
                    .key(&self.names.join_tokens)
                    .key(&self.names.join_tokens_used)
                    .arg(hash.as_str())
                    .arg(now),
            )
            .await?;
        match status(&reply) {
            ("ok", Some(stored)) => {
                let mut record: JoinTokenRecord = self.decode("join token", &token_id, stored)?;
                record.used_at = Some(now);
                Ok(record)
            }
            ("unknown", _) => Err(RedeemError::Unknown),
            ("used", Some(used_at)) => match used_at.parse() {
                Ok(used_at) => Err(RedeemError::AlreadyUsed { used_at }),
                Err(_) => Err(self
                    .corrupt("redemption time of join token", &token_id)
                    .into()),
            },
            ("expired", Some(stored)) => {
                let record: JoinTokenRecord = self.decode("join token", &token_id, stored)?;
                Err(RedeemError::Expired {
                    expired_at: record.expires_at,
                })
            }
            ("corrupt", _) => Err(self.corrupt("join token", &token_id).into()),
            _ => Err(self.unexpected_reply("redeem join token", &reply).into()),
        }
    }

    async fn prune_join_tokens(&self, before: i64) -> Result<usize, StoreError> {
        let mut expired = Vec::new();
        for (hash, json) in self.hash_entries(&self.names.join_tokens).await? {
            let record: JoinTokenRecord = self.decode("join token", &hash, &json)?;
            if record.expires_at < before {
                expired.push(hash);
            }
        }
        if expired.is_empty() {
            return Ok(0);
        }
        let mut connection = self.commands.clone();
        let (removed, _): (usize, usize) = redis::pipe()
            .atomic()
            .cmd("HDEL")
            .arg(&self.names.join_tokens)
            .arg(&expired)
            .cmd("HDEL")
            .arg(&self.names.join_tokens_used)
            .arg(&expired)
            .query_async(&mut connection)
            .await
            .map_err(|error| self.backend(&error))?;
        Ok(removed)
    }

    async fn record_usage(&self, usage: &[UsageRecord]) -> Result<(), StoreError> {
        if usage.is_empty() {
            return Ok(());
        }
        let mut invocation = RECORD_USAGE.key(&self.names.entries);
        invocation.key(&self.names.usage);
        for record in usage {
            let part = serde_json::json!({
                "x509": record.x509,
                "audiences": record.audiences,
            });
            invocation
                .arg(record.entry_id.as_str())
                .arg(record.last_minted_at)
                .arg(record.mint_count)
                .arg(part.to_string());
        }
        let reply: Vec<String> = self.invoke(&invocation).await?;
        match status(&reply) {
            ("ok", _) => Ok(()),
            ("corrupt", Some(id)) => Err(self.corrupt("usage record", id)),
            _ => Err(self.unexpected_reply("record usage", &reply)),
        }
    }

    async fn usage(&self) -> Result<Vec<UsageRecord>, StoreError> {
        self.read_all(&self.names.usage, "usage record").await
    }

    async fn use_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        let recorded: i64 = self
            .invoke(
                USE_ONCE
                    .key(self.names.one_time(key))
                    .arg(expires_at)
                    .arg(now)
                    .arg(garbage_after_ms(expires_at)),
            )
            .await?;
        match recorded {
            1 => Ok(true),
            0 => Ok(false),
            _ => Err(self.corrupt("one-time key", key)),
        }
    }

    async fn insert_challenge(
        &self,
        id: &str,
        nonce: &[u8],
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let reply: Value = self
            .query(
                redis::cmd("SET")
                    .arg(self.names.challenge(id))
                    .arg(encode_challenge(nonce, expires_at))
                    .arg("NX")
                    .arg("PXAT")
                    .arg(garbage_after_ms(expires_at)),
            )
            .await?;
        match reply {
            Value::Nil => Err(StoreError::Conflict {
                reason: format!("challenge {id} already exists"),
            }),
            _ => Ok(()),
        }
    }

    async fn take_challenge(&self, id: &str) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
        let value: Option<Vec<u8>> = self
            .query(redis::cmd("GETDEL").arg(self.names.challenge(id)))
            .await?;
        match value {
            None => Ok(None),
            Some(value) => decode_challenge(&value)
                .map(Some)
                .ok_or_else(|| self.corrupt("challenge", id)),
        }
    }

    async fn prune_one_time(&self, _now: i64) -> Result<usize, StoreError> {
        // Redis expires one-time keys and challenges itself.
        Ok(0)
    }

    async fn put_revocation(&self, revocation: &Revocation) -> Result<(), StoreError> {
        let key = revocation.key();
        let event = WireEvent::RevocationPut {
            revocation: revocation.clone(),
        };
        let _: i64 = self
            .invoke(
                PUT_REVOCATION
                    .key(&self.names.revocations)
                    .key(&self.names.version)
                    .key(&self.names.revocation_keys)
                    .arg(&self.names.events)
                    .arg(&key)
                    .arg(encode("revocation", &key, revocation)?)
                    .arg(event_json(&event)?),
            )
            .await?;
        Ok(())
    }

    async fn put_revocations(&self, revocations: &[Revocation]) -> Result<(), StoreError> {
        // One script call a chunk: atomic, one round trip, and short enough not to hold
        // Redis up for long.
        const CHUNK: usize = 500;
        for chunk in revocations.chunks(CHUNK) {
            let mut invocation = PUT_REVOCATIONS.key(&self.names.revocations);
            invocation
                .key(&self.names.version)
                .key(&self.names.revocation_keys)
                .arg(&self.names.events);
            for revocation in chunk {
                let key = revocation.key();
                let event = WireEvent::RevocationPut {
                    revocation: revocation.clone(),
                };
                invocation
                    .arg(&key)
                    .arg(encode("revocation", &key, revocation)?)
                    .arg(event_json(&event)?);
            }
            let _: i64 = self.invoke(&invocation).await?;
        }
        Ok(())
    }

    async fn delete_revocation(&self, key: &str) -> Result<bool, StoreError> {
        let event = WireEvent::RevocationDeleted {
            key: key.to_owned(),
        };
        let deleted: i64 = self
            .invoke(
                DELETE_REVOCATION
                    .key(&self.names.revocations)
                    .key(&self.names.version)
                    .key(&self.names.revocation_keys)
                    .arg(&self.names.events)
                    .arg(key)
                    .arg(event_json(&event)?),
            )
            .await?;
        Ok(deleted == 1)
    }

    async fn list_revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        self.read_all(&self.names.revocations, "revocation").await
    }

    async fn revocations_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Revocation>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let from = after.map_or_else(|| "-".to_owned(), |key| format!("({key}"));
        let reply: Vec<String> = self
            .invoke(
                REVOCATIONS_AFTER
                    .key(&self.names.revocations)
                    .key(&self.names.revocation_keys)
                    .arg(from)
                    .arg(limit),
            )
            .await?;
        if !reply.len().is_multiple_of(2) {
            return Err(self.unexpected_reply("revocations after", &reply));
        }
        reply
            .chunks_exact(2)
            .map(|pair| self.decode("revocation", &pair[0], &pair[1]))
            .collect()
    }

    async fn prune_revocations(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let mut invocation = PRUNE_REVOCATIONS.key(&self.names.revocations);
        invocation
            .key(&self.names.version)
            .key(&self.names.revocation_keys)
            .arg(&self.names.events);
        let mut expired = 0;
        for (key, json) in self.hash_entries(&self.names.revocations).await? {
            let revocation: Revocation = self.decode("revocation", &key, &json)?;
            if revocation.is_expired(now) {
                let event = WireEvent::RevocationDeleted { key: key.clone() };
                invocation.arg(key).arg(json).arg(event_json(&event)?);
                expired += 1;
            }
        }
        if expired == 0 {
            return Ok(Vec::new());
        }
        self.invoke(&invocation).await
    }

    async fn publish_replica(&self, replica: &ReplicaRecord) -> Result<(), StoreError> {
        let id = replica.replica_id.as_str();
        let _: i64 = self
            .invoke(
                PUBLISH_REPLICA
                    .key(&self.names.replicas)
                    .key(&self.names.version)
                    .arg(&self.names.events)
                    .arg(id)
                    .arg(encode("replica", id, replica)?)
                    .arg(event_json(&WireEvent::ReplicasChanged)?),
            )
            .await?;
        Ok(())
    }

    async fn live_replicas(&self, now: i64) -> Result<Vec<ReplicaRecord>, StoreError> {
        let mut live = Vec::new();
        let mut dead = Vec::new();
        for (id, json) in self.hash_entries(&self.names.replicas).await? {
            let record: ReplicaRecord = self.decode("replica", &id, &json)?;
            if record.keep_until > now {
                live.push(record);
            } else if record.keep_until.saturating_add(REPLICA_GRACE_SECONDS) < now {
                dead.push((id, json));
            }
        }
        if !dead.is_empty() {
            // Tidying up is not what the caller asked for: a failure here
            // does not fail the read.
            if let Err(error) = self.forget_replicas(&dead).await {
                tracing::debug!(%error, "could not delete dead replica records");
            }
        }
        Ok(live)
    }

    async fn publish_audit_checkpoint(
        &self,
        replica: &str,
        record: &AuditAnchorRecord,
    ) -> Result<(), StoreError> {
        if record.replica != replica {
            return Err(StoreError::Internal {
                reason: format!(
                    "audit checkpoint of replica {} published as replica {replica}",
                    record.replica
                ),
            });
        }
        let _: i64 = self
            .query(
                redis::cmd("HSET")
                    .arg(&self.names.audit)
                    .arg(replica)
                    .arg(encode("audit checkpoint of replica", replica, record)?),
            )
            .await?;
        Ok(())
    }

    async fn audit_checkpoints(&self) -> Result<Vec<AuditAnchorRecord>, StoreError> {
        self.hash_entries(&self.names.audit)
            .await?
            .iter()
            .map(|(replica, json)| self.decode_audit(replica, json))
            .collect()
    }

    async fn audit_checkpoint(
        &self,
        replica: &str,
    ) -> Result<Option<AuditAnchorRecord>, StoreError> {
        let json: Option<String> = self
            .query(redis::cmd("HGET").arg(&self.names.audit).arg(replica))
            .await?;
        json.map(|json| self.decode_audit(replica, &json))
            .transpose()
    }

    async fn list_audiences(&self) -> Result<Vec<AudienceRecord>, StoreError> {
        let mut rows = self.hash_entries(&self.names.audiences).await?;
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        rows.iter()
            .map(|(name, json)| self.decode("audience", name, json))
            .collect()
    }

    async fn create_audience(&self, record: &AudienceRecord) -> Result<(), StoreError> {
        let name = record.name.as_str();
        let event = WireEvent::AudienceUpserted {
            audience: record.clone(),
        };
        let reply: Vec<String> = self
            .invoke(
                CREATE_AUDIENCE
                    .key(&self.names.audiences)
                    .key(&self.names.version)
                    .arg(&self.names.events)
                    .arg(name)
                    .arg(encode("audience", name, record)?)
                    .arg(event_json(&event)?),
            )
            .await?;
        match status(&reply) {
            ("ok", _) => Ok(()),
            ("exists", _) => Err(StoreError::Conflict {
                reason: format!("audience {name:?} already exists"),
            }),
            _ => Err(self.unexpected_reply("create audience", &reply)),
        }
    }

    async fn update_audience(
        &self,
        record: &AudienceRecord,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        let name = record.name.as_str();
        if record.revision <= expected_revision {
            return Err(StoreError::Internal {
                reason: format!(
                    "update of audience {name:?} to revision {} does not raise expected revision {expected_revision}",
                    record.revision
                ),
            });
        }
        let event = WireEvent::AudienceUpserted {
            audience: record.clone(),
        };
        let reply: Vec<String> = self
            .invoke(
                UPDATE_AUDIENCE
                    .key(&self.names.audiences)
                    .key(&self.names.version)
                    .arg(&self.names.events)
                    .arg(name)
                    .arg(expected_revision)
                    .arg(encode("audience", name, record)?)
                    .arg(event_json(&event)?),
            )
            .await?;
        match status(&reply) {
            ("ok", _) => Ok(()),
            ("missing", _) => Err(audience_not_found(name)),
            ("corrupt", _) => Err(self.corrupt("audience", name)),
            ("stale", Some(stored)) => Err(StoreError::Conflict {
                reason: format!(
                    "audience {name:?} is at revision {stored}, not {expected_revision}; it changed since it was read"
                ),
            }),
            _ => Err(self.unexpected_reply("update audience", &reply)),
        }
    }

    async fn delete_audience(&self, name: &str) -> Result<AudienceRecord, StoreError> {
        let event = WireEvent::AudienceDeleted {
            name: name.to_owned(),
        };
        let reply: Vec<String> = self
            .invoke(
                DELETE_AUDIENCE
                    .key(&self.names.audiences)
                    .key(&self.names.version)
                    .arg(&self.names.events)
                    .arg(name)
                    .arg(event_json(&event)?),
            )
            .await?;
        match status(&reply) {
            ("ok", Some(stored)) => self.decode("audience", name, stored),
            ("missing", _) => Err(audience_not_found(name)),
            _ => Err(self.unexpected_reply("delete audience", &reply)),
        }
    }

    async fn list_grants(&self) -> Result<Vec<GrantRecord>, StoreError> {
        let mut rows = self.hash_entries(&self.names.grants).await?;
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        rows.iter()
            .map(|(id, json)| self.decode("grant", id, json))
            .collect()
    }

    async fn grant(&self, id: &str) -> Result<Option<GrantRecord>, StoreError> {
        let json: Option<String> = self
            .query(redis::cmd("HGET").arg(&self.names.grants).arg(id))
            .await?;
        json.map(|json| self.decode("grant", id, &json)).transpose()
    }

    async fn create_grant(&self, record: &GrantRecord) -> Result<(), StoreError> {
        let created: bool = self
            .query(
                redis::cmd("HSETNX")
                    .arg(&self.names.grants)
                    .arg(&record.id)
                    .arg(encode("grant", &record.id, record)?),
            )
            .await?;
        if created {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                reason: format!("grant {} already exists", record.id),
            })
        }
    }

    async fn update_grant(
        &self,
        record: &GrantRecord,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        let id = record.id.as_str();
        if record.revision <= expected_revision {
            return Err(StoreError::Internal {
                reason: format!(
                    "update of grant {id} to revision {} does not raise expected revision {expected_revision}",
                    record.revision
                ),
            });
        }
        let reply: Vec<String> = self
            .invoke(
                UPDATE_GRANT
                    .key(&self.names.grants)
                    .arg(id)
                    .arg(expected_revision)
                    .arg(encode("grant", id, record)?),
            )
            .await?;
        match status(&reply) {
            ("ok", _) => Ok(()),
            ("missing", _) => Err(StoreError::NotFound {
                what: format!("grant {id}"),
            }),
            ("corrupt", _) => Err(self.corrupt("grant", id)),
            ("stale", Some(stored)) => Err(StoreError::Conflict {
                reason: format!(
                    "grant {id} is at revision {stored}, not {expected_revision}; it changed since it was read"
                ),
            }),
            _ => Err(self.unexpected_reply("update grant", &reply)),
        }
    }

    fn describe(&self) -> String {
        format!("redis {} (prefix {})", self.names.server, self.names.prefix)
    }

    fn subscribe(&self) -> Option<mpsc::Receiver<StoreEvent>> {
        Some(feed::subscribe(self))
    }
}

impl RedisStore {
    /// An audit checkpoint record, which must be the replica's whose field holds it.
    fn decode_audit(&self, replica: &str, json: &str) -> Result<AuditAnchorRecord, StoreError> {
        let record: AuditAnchorRecord =
            self.decode("audit checkpoint of replica", replica, json)?;
        if record.replica != replica {
            return Err(StoreError::Corrupt {
                reason: format!(
                    "the audit checkpoint kept for replica {replica} in redis {} is replica {}'s",
                    self.names.server, record.replica
                ),
            });
        }
        Ok(record)
    }

    /// Deletes replica records dead for longer than the grace period, each
    /// only if unchanged since it was read.
    async fn forget_replicas(&self, dead: &[(String, String)]) -> Result<(), StoreError> {
        let mut invocation = FORGET_REPLICAS.key(&self.names.replicas);
        invocation
            .key(&self.names.version)
            .arg(&self.names.events)
            .arg(event_json(&WireEvent::ReplicasChanged)?);
        for (id, json) in dead {
            invocation.arg(id).arg(json);
        }
        let _removed: i64 = self.invoke(&invocation).await?;
        Ok(())
    }
}

fn entry_not_found(id: &EntryId) -> StoreError {
    StoreError::NotFound {
        what: format!("entry {id}"),
    }
}

fn audience_not_found(name: &str) -> StoreError {
    StoreError::NotFound {
        what: format!("audience {name:?}"),
    }
}
