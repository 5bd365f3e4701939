//! [`RedisStore`]: the store several broker replicas share, on one Redis
//! server. Its key layout and change feed protocol are documented on the
//! type, so that they show in the public docs.

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use mayfly_sdk::revocation::Revocation;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use redis::{Client, ErrorKind, FromRedisValue, RedisError, Script, ScriptInvocation, Value};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tokio_stream::StreamExt as _;

use super::{RedeemError, ReplicaRecord, Store, StoreError, StoreEvent, UsageRecord};
use crate::attest::join_token::{JoinTokenRecord, TokenHash};
use crate::policy::{Entry, EntryId};

/// How long [`RedisStore::connect`] waits for Redis to answer PING, and the
/// change feed for SUBSCRIBE.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection attempt of the command connection may take.
const CONNECTION_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a command may wait for its answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The change feed's default poll interval.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest poll interval accepted.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// The longest wait for in-flight messages before a poll resyncs.
const MAX_CATCH_UP: Duration = Duration::from_millis(250);
/// The change feed's reconnect backoff: first delay and cap.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Events buffered for a slow subscriber before the feed task waits.
const EVENT_BUFFER: usize = 1024;
/// Redis keeps one-time keys and challenges this long past `expires_at`
/// (judged by its own clock): the caller's `now` decides, Redis only
/// collects garbage.
const ONE_TIME_GRACE_SECONDS: i64 = 10 * 60;
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
/// | `{prefix}:replicas` | hash | replica id → [`ReplicaRecord`] JSON |
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
/// `{"type": "revocation_deleted", "key": "<kind:value>"}` or
/// `{"type": "replicas_changed"}`.
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
    replicas: String,
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
            replicas: key("replicas"),
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

impl RedisStore {
    /// Connects to the Redis server at `url`
    /// (`redis://[user:password@]host:port[/db]`, or `rediss://` for TLS,
    /// verifying the server against the operating system's trusted roots),
    /// keeping every key under `{prefix}:`, and checks that it answers PING.
    ///
    /// Needs a Tokio runtime. Later connection losses are repaired in the
    /// background.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if the URL is malformed, or if the server
    /// cannot be reached, refuses the credentials, or does not answer PING
    /// within 5 seconds. The reason names `host:port`, never the password.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        // Never the URL itself, which may hold a password; the parser's
        // errors do not echo it.
        let client = Client::open(url).map_err(|error| StoreError::Unavailable {
            reason: format!(
                "invalid redis URL (expected redis://[user:password@]host:port[/db]): {error}"
            ),
        })?;
        let server = client.get_connection_info().addr().to_string();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECTION_ATTEMPT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let connect = async {
            let mut commands = client.get_connection_manager_with_config(config).await?;
            redis::cmd("PING")
                .query_async::<Value>(&mut commands)
                .await?;
            Ok::<_, RedisError>(commands)
        };
        let commands = match timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(commands)) => commands,
            Ok(Err(error)) => {
                return Err(StoreError::Unavailable {
                    reason: format!("cannot connect to redis {server}: {error}"),
                });
            }
            Err(_) => {
                return Err(StoreError::Unavailable {
                    reason: format!(
                        "redis {server} did not answer PING within {}s",
                        CONNECT_TIMEOUT.as_secs()
                    ),
                });
            }
        };
        tracing::debug!(%server, prefix, "redis store connected");
        Ok(RedisStore {
            client,
            commands,
            names: Arc::new(Names::new(server, prefix)),
            poll_interval: DEFAULT_POLL_INTERVAL,
        })
    }

    /// Sets how often the change feed ([`Store::subscribe`]) checks the
    /// version and sends a heartbeat (default 1 s, at least 10 ms). Applies
    /// to feeds subscribed afterwards.
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(MIN_POLL_INTERVAL);
        self
    }

    // -----------------------------------------------------------------------
    // Talking to Redis

    async fn query<T: FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, StoreError> {
        let mut connection = self.commands.clone();
        command
            .query_async(&mut connection)
            .await
            .map_err(|error| self.backend(&error))
    }

    async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut connection = self.commands.clone();
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|error| self.backend(&error))
    }

    /// Maps a Redis error; its type does not leave this module.
    fn backend(&self, error: &RedisError) -> StoreError {
        let server = &self.names.server;
        match error.kind() {
            ErrorKind::UnexpectedReturnType | ErrorKind::Parse => StoreError::Corrupt {
                reason: format!("unexpected data from redis {server}: {error}"),
            },
            _ => StoreError::Unavailable {
                reason: format!("redis {server}: {error}"),
            },
        }
    }

    /// Every field and value of a hash, in field order.
    async fn hash_entries(&self, key: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut rows: Vec<(String, String)> = self.query(redis::cmd("HGETALL").arg(key)).await?;
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(rows)
    }

    async fn read_all<T: DeserializeOwned>(
        &self,
        key: &str,
        what: &str,
    ) -> Result<Vec<T>, StoreError> {
        self.hash_entries(key)
            .await?
            .iter()
            .map(|(field, json)| self.decode(what, field, json))
            .collect()
    }

    fn decode<T: DeserializeOwned>(
        &self,
        what: &str,
        key: &str,
        json: &str,
    ) -> Result<T, StoreError> {
        serde_json::from_str(json).map_err(|error| StoreError::Corrupt {
            reason: format!("{what} {key} in redis {}: {error}", self.names.server),
        })
    }

    /// The entries, revocations and version, read in one transaction.
    async fn snapshot(&self) -> Result<(Vec<Entry>, Vec<Revocation>, u64), StoreError> {
        let mut connection = self.commands.clone();
        type Rows = Vec<(String, String)>;
        let (mut entries, mut revocations, version): (Rows, Rows, Option<u64>) = redis::pipe()
            .atomic()
            .cmd("HGETALL")
            .arg(&self.names.entries)
            .cmd("HGETALL")
            .arg(&self.names.revocations)
            .cmd("GET")
            .arg(&self.names.version)
            .query_async(&mut connection)
            .await
            .map_err(|error| self.backend(&error))?;
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        revocations.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let entries = entries
            .iter()
            .map(|(id, json)| self.decode("entry", id, json))
            .collect::<Result<_, _>>()?;
        let revocations = revocations
            .iter()
            .map(|(key, json)| self.decode("revocation", key, json))
            .collect::<Result<_, _>>()?;
        Ok((entries, revocations, version.unwrap_or(0)))
    }

    /// The change counter.
    async fn version(&self) -> Result<u64, StoreError> {
        let version: Option<u64> = self
            .query(redis::cmd("GET").arg(&self.names.version))
            .await?;
        Ok(version.unwrap_or(0))
    }

    fn unexpected_reply(&self, script: &str, reply: &[String]) -> StoreError {
        StoreError::Internal {
            reason: format!(
                "unexpected reply {:?} from the {script} script on redis {}",
                reply.first(),
                self.names.server
            ),
        }
    }

    fn corrupt(&self, what: &str, key: &str) -> StoreError {
        StoreError::Corrupt {
            reason: format!(
                "{what} {key} in redis {} cannot be decoded",
                self.names.server
            ),
        }
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

// ---------------------------------------------------------------------------
// Scripts

/// Shared by the scripts that change entries, revocations or replicas:
/// counts the change and publishes it, in the same script as the write.
const PUBLISH: &str = r#"
local function publish(version_key, channel, event)
  local version = redis.call('INCR', version_key)
  redis.call('PUBLISH', channel,
    '{"version":' .. string.format('%d', version) .. ',"event":' .. event .. '}')
end
"#;

fn script_with_publish(body: &str) -> Script {
    Script::new(&format!("{PUBLISH}{body}"))
}

/// KEYS: entries, spiffe_ids, version.
/// ARGV: channel, id, spiffe_id, entry JSON, event JSON.
static CREATE_ENTRY: LazyLock<Script> = LazyLock::new(|| {
    script_with_publish(
        r#"
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then return {'exists'} end
local owner = redis.call('HGET', KEYS[2], ARGV[3])
if owner then return {'spiffe_taken', owner} end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[2])
publish(KEYS[3], ARGV[1], ARGV[5])
return {'ok'}
"#,
    )
});

/// KEYS: entries, spiffe_ids, version.
/// ARGV: channel, id, expected revision, new spiffe_id, entry JSON, event JSON.
static UPDATE_ENTRY: LazyLock<Script> = LazyLock::new(|| {
    script_with_publish(
        r#"
local stored = redis.call('HGET', KEYS[1], ARGV[2])
if not stored then return {'missing'} end
local ok, old = pcall(cjson.decode, stored)
if not ok or type(old) ~= 'table' or type(old.revision) ~= 'number'
    or type(old.spiffe_id) ~= 'string' then
  return {'corrupt'}
end
if old.revision ~= tonumber(ARGV[3]) then
  return {'stale', string.format('%d', old.revision)}
end
if old.spiffe_id ~= ARGV[4] then
  local owner = redis.call('HGET', KEYS[2], ARGV[4])
  if owner and owner ~= ARGV[2] then return {'spiffe_taken', owner} end
  if redis.call('HGET', KEYS[2], old.spiffe_id) == ARGV[2] then
    redis.call('HDEL', KEYS[2], old.spiffe_id)
  end
end
redis.call('HSET', KEYS[2], ARGV[4], ARGV[2])
redis.call('HSET', KEYS[1], ARGV[2], ARGV[5])
publish(KEYS[3], ARGV[1], ARGV[6])
return {'ok'}
"#,
    )
});

/// KEYS: entries, spiffe_ids, usage, version.
/// ARGV: channel, id, event JSON.
static DELETE_ENTRY: LazyLock<Script> = LazyLock::new(|| {
    script_with_publish(
        r#"
local stored = redis.call('HGET', KEYS[1], ARGV[2])
if not stored then return {'missing'} end
local ok, old = pcall(cjson.decode, stored)
if not ok or type(old) ~= 'table' or type(old.spiffe_id) ~= 'string' then
  return {'corrupt'}
end
redis.call('HDEL', KEYS[1], ARGV[2])
if redis.call('HGET', KEYS[2], old.spiffe_id) == ARGV[2] then
  redis.call('HDEL', KEYS[2], old.spiffe_id)
end
redis.call('HDEL', KEYS[3], ARGV[2])
publish(KEYS[4], ARGV[1], ARGV[3])
return {'ok', stored}
"#,
    )
});

/// KEYS: entries, join_tokens, join_tokens_used.
/// ARGV: entry id, token hash, record JSON, used_at or "".
static INSERT_JOIN_TOKEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {'missing'} end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return {'exists'} end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[3], ARGV[2], ARGV[4]) end
return {'ok'}
"#,
    )
});

/// KEYS: join_tokens, join_tokens_used. ARGV: token hash, now.
///
/// Reuse is checked before expiry: a replayed token is the louder event.
static REDEEM_JOIN_TOKEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if not stored then return {'unknown'} end
local used_at = redis.call('HGET', KEYS[2], ARGV[1])
if used_at then return {'used', used_at} end
local ok, record = pcall(cjson.decode, stored)
if not ok or type(record) ~= 'table' or type(record.expires_at) ~= 'number' then
  return {'corrupt'}
end
if tonumber(ARGV[2]) >= record.expires_at then return {'expired', stored} end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return {'ok', stored}
"#,
    )
});

/// KEYS: entries, usage. ARGV: (entry id, last_minted_at, mints since the
/// last save)... Counts add up across replicas; the later time wins.
///
/// Checks every stored record first, so a corrupt one fails the batch
/// before anything is written.
static RECORD_USAGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local latest = {}
local count = {}
for i = 1, #ARGV, 3 do
  local id = ARGV[i]
  latest[i] = tonumber(ARGV[i + 1])
  count[i] = tonumber(ARGV[i + 2])
  local stored = redis.call('HGET', KEYS[2], id)
  if stored then
    local ok, record = pcall(cjson.decode, stored)
    if not ok or type(record) ~= 'table' or type(record.last_minted_at) ~= 'number'
      or type(record.mint_count) ~= 'number' then
      return {'corrupt', id}
    end
    if record.last_minted_at > latest[i] then latest[i] = record.last_minted_at end
    count[i] = count[i] + record.mint_count
  end
end
for i = 1, #ARGV, 3 do
  local id = ARGV[i]
  if redis.call('HEXISTS', KEYS[1], id) == 1 then
    redis.call('HSET', KEYS[2], id, '{"entry_id":"' .. id .. '","last_minted_at":'
      .. string.format('%d', latest[i]) .. ',"mint_count":' .. string.format('%d', count[i]) .. '}')
  end
end
return {'ok'}
"#,
    )
});

/// KEYS: the one-time key. ARGV: expires_at, now, Redis expiry (Unix ms).
/// Returns 1 when recorded, 0 on a replay, -1 if the stored value is not a
/// number.
static USE_ONCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local stored = redis.call('GET', KEYS[1])
if stored then
  local until_ = tonumber(stored)
  if not until_ then return -1 end
  if until_ >= tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[3])
return 1
"#,
    )
});

/// KEYS: revocations, version. ARGV: channel, key, revocation JSON, event JSON.
static PUT_REVOCATION: LazyLock<Script> = LazyLock::new(|| {
    script_with_publish(
        r#"
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
publish(KEYS[2], ARGV[1], ARGV[4])
return 1
"#,
    )
});

/// KEYS: revocations, version. ARGV: channel, key, event JSON.
static DELETE_REVOCATION: LazyLock<Script> = LazyLock::new(|| {
    script_with_publish(
        r#"
if redis.call('HDEL', KEYS[1], ARGV[2]) == 0 then return 0 end
publish(KEYS[2], ARGV[1], ARGV[3])
return 1
"#,
    )
});

/// KEYS: revocations, version. ARGV: channel, then (key, JSON as read,
/// event JSON)... Deletes each only if unchanged since it was read, so a
/// revocation put again in between (say with a later expiry) stays, and of
/// two concurrent pruners only one deletes and reports a key.
static PRUNE_REVOCATIONS: LazyLock<Script> = LazyLock::new(|| {
    script_with_publish(
        r#"
local pruned = {}
for i = 2, #ARGV, 3 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    publish(KEYS[2], ARGV[1], ARGV[i + 2])
    pruned[#pruned + 1] = ARGV[i]
  end
end
return pruned
"#,
    )
});

/// KEYS: replicas, version. ARGV: channel, replica id, record JSON, event JSON.
static PUBLISH_REPLICA: LazyLock<Script> = LazyLock::new(|| {
    script_with_publish(
        r#"
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
publish(KEYS[2], ARGV[1], ARGV[4])
return 1
"#,
    )
});

/// KEYS: replicas, version. ARGV: channel, event JSON, then (replica id,
/// JSON as read)... Deletes each only if unchanged (not republished).
static FORGET_REPLICAS: LazyLock<Script> = LazyLock::new(|| {
    script_with_publish(
        r#"
local removed = 0
for i = 3, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    removed = removed + 1
  end
end
if removed > 0 then publish(KEYS[2], ARGV[1], ARGV[2]) end
return removed
"#,
    )
});

/// A script's status reply: `{'ok', ...}`, or why not.
fn status(reply: &[String]) -> (&str, Option<&str>) {
    (
        reply.first().map_or("", String::as_str),
        reply.get(1).map(String::as_str),
    )
}

// ---------------------------------------------------------------------------
// Change messages

/// A change as published on `{prefix}:events`, inside `{"version": n,
/// "event": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    EntryUpserted { entry: Entry },
    EntryDeleted { id: EntryId },
    RevocationPut { revocation: Revocation },
    RevocationDeleted { key: String },
    ReplicasChanged,
}

impl From<WireEvent> for StoreEvent {
    fn from(event: WireEvent) -> Self {
        match event {
            WireEvent::EntryUpserted { entry } => StoreEvent::EntryUpserted(entry),
            WireEvent::EntryDeleted { id } => StoreEvent::EntryDeleted(id),
            WireEvent::RevocationPut { revocation } => StoreEvent::RevocationPut(revocation),
            WireEvent::RevocationDeleted { key } => StoreEvent::RevocationDeleted(key),
            WireEvent::ReplicasChanged => StoreEvent::ReplicasChanged,
        }
    }
}

fn event_json(event: &WireEvent) -> Result<String, StoreError> {
    serde_json::to_string(event).map_err(|error| StoreError::Internal {
        reason: format!("cannot encode change event: {error}"),
    })
}

fn encode(what: &str, key: &str, value: &impl Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|error| StoreError::Internal {
        reason: format!("cannot encode {what} {key}: {error}"),
    })
}

/// Reads a published message: its version, and its event if this build
/// knows it (`None` otherwise, and the subscriber resyncs).
fn decode_message(payload: &[u8]) -> Result<(u64, Option<StoreEvent>), String> {
    #[derive(Deserialize)]
    struct Message {
        version: u64,
        event: serde_json::Value,
    }
    let message: Message = serde_json::from_slice(payload)
        .map_err(|error| format!("undecodable change message: {error}"))?;
    let event = serde_json::from_value::<WireEvent>(message.event)
        .ok()
        .map(StoreEvent::from);
    Ok((message.version, event))
}

// ---------------------------------------------------------------------------
// Challenges

fn encode_challenge(nonce: &[u8], expires_at: i64) -> Vec<u8> {
    let mut value = expires_at.to_be_bytes().to_vec();
    value.extend_from_slice(nonce);
    value
}

fn decode_challenge(value: &[u8]) -> Option<(Vec<u8>, i64)> {
    let (expiry, nonce) = value.split_first_chunk::<8>()?;
    Some((nonce.to_vec(), i64::from_be_bytes(*expiry)))
}

/// Unix milliseconds at which Redis may forget a one-time record that the
/// caller considers live until `expires_at`.
fn garbage_after_ms(expires_at: i64) -> i64 {
    expires_at
        .saturating_add(ONE_TIME_GRACE_SECONDS)
        .saturating_mul(1000)
        .max(1)
}

// ---------------------------------------------------------------------------
// The trait

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
            invocation
                .arg(record.entry_id.as_str())
                .arg(record.last_minted_at)
                .arg(record.mint_count);
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
                    .arg(&self.names.events)
                    .arg(&key)
                    .arg(encode("revocation", &key, revocation)?)
                    .arg(event_json(&event)?),
            )
            .await?;
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

    async fn prune_revocations(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let mut invocation = PRUNE_REVOCATIONS.key(&self.names.revocations);
        invocation.key(&self.names.version).arg(&self.names.events);
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

    fn describe(&self) -> String {
        format!("redis {} (prefix {})", self.names.server, self.names.prefix)
    }

    fn subscribe(&self) -> Option<mpsc::Receiver<StoreEvent>> {
        let (events, receiver) = mpsc::channel(EVENT_BUFFER);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let feed = Feed {
                    store: self.clone(),
                    events,
                    last_version: 0,
                };
                runtime.spawn(feed.run());
            }
            Err(_) => {
                // Without a runtime there is no feed: say so, and close the
                // channel, so the subscriber's view never counts as fresh.
                tracing::error!("RedisStore::subscribe called outside a Tokio runtime");
                let _ = events.try_send(StoreEvent::Lost {
                    reason: "the redis change feed needs a Tokio runtime".to_owned(),
                });
            }
        }
        Some(receiver)
    }
}

fn entry_not_found(id: &EntryId) -> StoreError {
    StoreError::NotFound {
        what: format!("entry {id}"),
    }
}

// ---------------------------------------------------------------------------
// The change feed task

/// Why a feed session ended.
enum End {
    /// The receiver was dropped: stop.
    Closed,
    /// Redis cannot be reached, or its state cannot be read: reconnect.
    Lost(String),
}

/// The task behind [`RedisStore::subscribe`] (see "Change feed" on
/// [`RedisStore`]).
struct Feed {
    store: RedisStore,
    events: mpsc::Sender<StoreEvent>,
    /// The version the subscriber's view is complete up to.
    last_version: u64,
}

impl Feed {
    async fn run(mut self) {
        let mut backoff = Backoff::new();
        loop {
            let reason = match self.session(&mut backoff).await {
                End::Closed => return,
                End::Lost(reason) => reason,
            };
            tracing::warn!(%reason, "redis change feed lost; reconnecting");
            if self.send(StoreEvent::Lost { reason }).await.is_err() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = self.events.closed() => return,
            }
        }
    }

    /// Subscribes, resyncs, then follows messages and polls until the
    /// connection is lost or the receiver dropped.
    async fn session(&mut self, backoff: &mut Backoff) -> End {
        let (mut sink, mut stream) = match self.open().await {
            Ok(feed) => feed,
            Err(reason) => return End::Lost(reason),
        };
        if let Err(end) = self.resync().await {
            return end;
        }
        backoff.reset();
        let interval = self.store.poll_interval;
        let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let step = tokio::select! {
                () = self.events.closed() => Err(End::Closed),
                message = stream.next() => match message {
                    Some(message) => self.on_message(message.get_payload_bytes()).await,
                    None => Err(self.feed_closed()),
                },
                _ = ticker.tick() => self.poll(&mut sink, &mut stream).await,
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// A pub/sub connection subscribed to the change channel.
    async fn open(&self) -> Result<(PubSubSink, PubSubStream), String> {
        let server = &self.store.names.server;
        let subscribe = async {
            let mut pubsub = self.store.client.get_async_pubsub().await?;
            pubsub.subscribe(&self.store.names.events).await?;
            Ok::<_, RedisError>(pubsub.split())
        };
        match timeout(CONNECT_TIMEOUT, subscribe).await {
            Ok(Ok(feed)) => Ok(feed),
            Ok(Err(error)) => Err(format!("cannot subscribe to redis {server}: {error}")),
            Err(_) => Err(format!(
                "redis {server} did not answer SUBSCRIBE within {}s",
                CONNECT_TIMEOUT.as_secs()
            )),
        }
    }

    fn feed_closed(&self) -> End {
        End::Lost(format!(
            "pub/sub connection to redis {} closed",
            self.store.names.server
        ))
    }

    /// Sends the whole state, then a heartbeat.
    async fn resync(&mut self) -> Result<(), End> {
        let heard_at = now_millis();
        let (entries, revocations, version) = self
            .store
            .snapshot()
            .await
            .map_err(|error| End::Lost(error.to_string()))?;
        self.send(StoreEvent::Snapshot {
            entries,
            revocations,
        })
        .await?;
        self.last_version = version;
        self.send(StoreEvent::Heard(heard_at)).await
    }

    async fn on_message(&mut self, payload: &[u8]) -> Result<(), End> {
        match decode_message(payload) {
            Ok((version, _)) if version <= self.last_version => Ok(()),
            Ok((version, Some(event))) if self.last_version.checked_add(1) == Some(version) => {
                self.send(event).await?;
                self.last_version = version;
                Ok(())
            }
            Ok((version, _)) => {
                tracing::debug!(
                    version,
                    last_version = self.last_version,
                    "missed or unknown change message; resyncing"
                );
                self.resync().await
            }
            Err(reason) => {
                tracing::warn!(%reason, "resyncing");
                self.resync().await
            }
        }
    }

    /// Checks both connections and the version; sends a heartbeat when the
    /// view is complete.
    async fn poll(&mut self, sink: &mut PubSubSink, stream: &mut PubSubStream) -> Result<(), End> {
        let heard_at = now_millis();
        // The pub/sub socket is separate from the command connection: a
        // half-open one would otherwise go unnoticed.
        match timeout(RESPONSE_TIMEOUT, sink.ping::<Value>()).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return Err(self.feed_closed()),
        }
        let version = match self.store.version().await {
            Ok(version) => version,
            Err(error) => {
                return self
                    .send(StoreEvent::Lost {
                        reason: error.to_string(),
                    })
                    .await;
            }
        };
        if version > self.last_version {
            self.catch_up(version, stream).await?;
        }
        if version != self.last_version {
            tracing::debug!(
                version,
                last_version = self.last_version,
                "change feed behind; resyncing"
            );
            return self.resync().await;
        }
        self.send(StoreEvent::Heard(heard_at)).await
    }

    /// Applies messages already on their way, for a moment, so that a write
    /// seen by the poll before its message does not cost a resync.
    async fn catch_up(&mut self, version: u64, stream: &mut PubSubStream) -> Result<(), End> {
        let deadline = Instant::now() + (self.store.poll_interval / 4).min(MAX_CATCH_UP);
        while self.last_version < version {
            // Only the wait is timed, never the handling of a message, so
            // no message is ever half applied.
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(message)) => self.on_message(message.get_payload_bytes()).await?,
                Ok(None) => return Err(self.feed_closed()),
                Err(_) => break,
            }
        }
        Ok(())
    }

    async fn send(&self, event: StoreEvent) -> Result<(), End> {
        self.events.send(event).await.map_err(|_| End::Closed)
    }
}

fn now_millis() -> i64 {
    crate::clock::unix_millis(SystemTime::now())
}

/// Exponential reconnect delays with jitter.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff { next: BACKOFF_MIN }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    /// The next delay: 75–100 % of the current step, which then doubles up
    /// to the cap, so that replicas do not reconnect in lockstep.
    fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (step * 2).min(BACKOFF_MAX);
        let mut random = [0u8; 1];
        match aws_lc_rs::rand::fill(&mut random) {
            Ok(()) => step.mul_f64(0.75 + 0.25 * f64::from(random[0]) / 255.0),
            Err(_) => step,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use mayfly_sdk::revocation::RevocationKind;

    use super::*;

    #[test]
    fn change_messages_round_trip() {
        let revocation = Revocation::new(RevocationKind::Jti, "abc123", 100, Some(4000)).unwrap();
        let event = WireEvent::RevocationPut {
            revocation: revocation.clone(),
        };
        let json = event_json(&event).unwrap();
        assert!(
            json.starts_with(r#"{"type":"revocation_put","revocation":{"#),
            "{json}"
        );
        // As the scripts wrap it.
        let message = format!(r#"{{"version":7,"event":{json}}}"#);
        assert_eq!(
            decode_message(message.as_bytes()).unwrap(),
            (7, Some(StoreEvent::RevocationPut(revocation)))
        );
        let message = format!(
            r#"{{"version":8,"event":{}}}"#,
            event_json(&WireEvent::ReplicasChanged).unwrap()
        );
        assert_eq!(
            decode_message(message.as_bytes()).unwrap(),
            (8, Some(StoreEvent::ReplicasChanged))
        );
    }

    #[test]
    fn unknown_events_keep_their_version_and_garbage_is_refused() {
        assert_eq!(
            decode_message(br#"{"version":9,"event":{"type":"from_the_future"}}"#).unwrap(),
            (9, None)
        );
        assert!(decode_message(b"{not json").is_err());
        assert!(decode_message(br#"{"event":{"type":"replicas_changed"}}"#).is_err());
    }

    #[test]
    fn challenges_encode_expiry_then_nonce() {
        let value = encode_challenge(b"nonce", 1_700_000_000);
        assert_eq!(
            decode_challenge(&value),
            Some((b"nonce".to_vec(), 1_700_000_000))
        );
        assert_eq!(decode_challenge(&value[..7]), None);
        assert_eq!(
            decode_challenge(&value[..8]),
            Some((Vec::new(), 1_700_000_000))
        );
    }

    #[test]
    fn one_time_records_outlive_their_expiry_in_redis() {
        assert_eq!(garbage_after_ms(100), (100 + ONE_TIME_GRACE_SECONDS) * 1000);
        assert_eq!(garbage_after_ms(i64::MAX), i64::MAX);
        assert_eq!(garbage_after_ms(i64::MIN), 1);
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut backoff = Backoff::new();
        let delays: Vec<_> = (0..8).map(|_| backoff.next_delay()).collect();
        for (delay, step_ms) in delays
            .iter()
            .zip([100, 200, 400, 800, 1600, 3200, 5000, 5000])
        {
            let step = Duration::from_millis(step_ms);
            assert!(
                *delay <= step && *delay >= step.mul_f64(0.75),
                "{delay:?} for {step:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= BACKOFF_MIN);
    }
}
