//! The Lua scripts behind every write that must be atomic. Redis runs each
//! one whole, so concurrent writers on different replicas are serialized by
//! Redis itself. Each script's doc names its KEYS and ARGV.

use std::sync::LazyLock;

use redis::Script;

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
pub(super) static CREATE_ENTRY: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static UPDATE_ENTRY: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static DELETE_ENTRY: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static INSERT_JOIN_TOKEN: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static REDEEM_JOIN_TOKEN: LazyLock<Script> = LazyLock::new(|| {
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
/// last save, JSON of the per-kind part `{"x509":{..},"audiences":{..}}`)...
/// Counts add up across replicas; the later time wins; at most
/// `MAX_USAGE_AUDIENCES` (64) audiences are counted per entry, as
/// [`UsageRecord::merge`](crate::store::UsageRecord::merge) does.
///
/// Checks every stored record first, so a corrupt one fails the batch
/// before anything is written. Records saved before per-audience counts
/// (no `x509`, no `audiences`) read as zero.
pub(super) static RECORD_USAGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local function count(c)
  return type(c) == 'table' and type(c.last_minted_at) == 'number'
    and type(c.mint_count) == 'number'
end
local function add(into, c)
  if c.last_minted_at > into.last_minted_at then into.last_minted_at = c.last_minted_at end
  into.mint_count = into.mint_count + c.mint_count
end
local records = {}
for i = 1, #ARGV, 4 do
  local id = ARGV[i]
  local ok, part = pcall(cjson.decode, ARGV[i + 3])
  if not ok or type(part) ~= 'table' then return {'bad argument', id} end
  local record = {entry_id = id, last_minted_at = 0, mint_count = 0,
    x509 = {last_minted_at = 0, mint_count = 0}, audiences = {}}
  local stored = redis.call('HGET', KEYS[2], id)
  if stored then
    local decoded
    ok, decoded = pcall(cjson.decode, stored)
    if not ok or type(decoded) ~= 'table' or not count(decoded)
      or (decoded.x509 ~= nil and not count(decoded.x509))
      or (decoded.audiences ~= nil and type(decoded.audiences) ~= 'table') then
      return {'corrupt', id}
    end
    add(record, decoded)
    if decoded.x509 then add(record.x509, decoded.x509) end
    for audience, c in pairs(decoded.audiences or {}) do
      if not count(c) then return {'corrupt', id} end
      record.audiences[audience] = {last_minted_at = c.last_minted_at, mint_count = c.mint_count}
    end
  end
  add(record, {last_minted_at = tonumber(ARGV[i + 1]), mint_count = tonumber(ARGV[i + 2])})
  if count(part.x509) then add(record.x509, part.x509) end
  local n = 0
  for _ in pairs(record.audiences) do n = n + 1 end
  for audience, c in pairs(part.audiences or {}) do
    if count(c) then
      if record.audiences[audience] then
        add(record.audiences[audience], c)
      elseif n < 64 then
        record.audiences[audience] = {last_minted_at = c.last_minted_at, mint_count = c.mint_count}
        n = n + 1
      end
    end
  end
  records[i] = record
end
for i = 1, #ARGV, 4 do
  local id = ARGV[i]
  if redis.call('HEXISTS', KEYS[1], id) == 1 then
    local record = records[i]
    if next(record.audiences) == nil then record.audiences = nil end
    redis.call('HSET', KEYS[2], id, cjson.encode(record))
  end
end
return {'ok'}
"#,
    )
});

/// KEYS: the one-time key. ARGV: expires_at, now, Redis expiry (Unix ms).
/// Returns 1 when recorded, 0 on a replay, -1 if the stored value is not a
/// number.
pub(super) static USE_ONCE: LazyLock<Script> = LazyLock::new(|| {
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

/// KEYS: revocations, version, revocation_keys.
/// ARGV: channel, key, revocation JSON, event JSON.
pub(super) static PUT_REVOCATION: LazyLock<Script> = LazyLock::new(|| {
    script_with_publish(
        r#"
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[3], 0, ARGV[2])
publish(KEYS[2], ARGV[1], ARGV[4])
return 1
"#,
    )
});

/// KEYS: revocations, version, revocation_keys.
/// ARGV: channel, then (key, revocation JSON, event JSON) per revocation.
pub(super) static PUT_REVOCATIONS: LazyLock<Script> = LazyLock::new(|| {
    script_with_publish(
        r#"
local n = 0
for i = 2, #ARGV, 3 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[3], 0, ARGV[i])
  publish(KEYS[2], ARGV[1], ARGV[i + 2])
  n = n + 1
end
return n
"#,
    )
});

/// KEYS: revocations, version, revocation_keys. ARGV: channel, key, event JSON.
pub(super) static DELETE_REVOCATION: LazyLock<Script> = LazyLock::new(|| {
    script_with_publish(
        r#"
redis.call('ZREM', KEYS[3], ARGV[2])
if redis.call('HDEL', KEYS[1], ARGV[2]) == 0 then return 0 end
publish(KEYS[2], ARGV[1], ARGV[3])
return 1
"#,
    )
});

/// KEYS: revocations, version, revocation_keys. ARGV: channel, then (key,
/// JSON as read, event JSON)... Deletes each only if unchanged since it was
/// read, so a revocation put again in between (say with a later expiry)
/// stays, and of two concurrent pruners only one deletes and reports a key.
pub(super) static PRUNE_REVOCATIONS: LazyLock<Script> = LazyLock::new(|| {
    script_with_publish(
        r#"
local pruned = {}
for i = 2, #ARGV, 3 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[3], ARGV[i])
    publish(KEYS[2], ARGV[1], ARGV[i + 2])
    pruned[#pruned + 1] = ARGV[i]
  end
end
return pruned
"#,
    )
});

/// KEYS: revocations, revocation_keys. ARGV: where to start (`-` for the
/// first key, `(<key>` for the first after `<key>`), limit. Replies
/// `key, JSON, key, JSON, ...`: up to `limit` revocations in key order.
///
/// The sorted set of keys (all scores 0, so ordered bytewise) is the index
/// that makes this a range read. It is kept by the scripts above; revocations
/// written before it existed, or by a replica of an older version during an
/// upgrade, are not in it, so it is rebuilt from the hash whenever it holds
/// fewer keys than the hash (one pass, once). A key in it whose revocation
/// is gone (deleted by such a replica) is dropped when met.
pub(super) static REVOCATIONS_AFTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('ZCARD', KEYS[2]) < redis.call('HLEN', KEYS[1]) then
  redis.call('DEL', KEYS[2])
  local keys = redis.call('HKEYS', KEYS[1])
  for i = 1, #keys, 1000 do
    local members = {}
    for j = i, math.min(i + 999, #keys) do
      members[#members + 1] = 0
      members[#members + 1] = keys[j]
    end
    redis.call('ZADD', KEYS[2], unpack(members))
  end
end
local limit = tonumber(ARGV[2])
local found = {}
local from = ARGV[1]
while #found < 2 * limit do
  local want = math.min(limit - #found / 2, 1000)
  local keys = redis.call('ZRANGE', KEYS[2], from, '+', 'BYLEX', 'LIMIT', 0, want)
  if #keys == 0 then break end
  local values = redis.call('HMGET', KEYS[1], unpack(keys))
  for i = 1, #keys do
    if values[i] then
      found[#found + 1] = keys[i]
      found[#found + 1] = values[i]
    else
      redis.call('ZREM', KEYS[2], keys[i])
    end
  end
  from = '(' .. keys[#keys]
end
return found
"#,
    )
});

/// KEYS: replicas, version. ARGV: channel, replica id, record JSON, event JSON.
pub(super) static PUBLISH_REPLICA: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) static FORGET_REPLICAS: LazyLock<Script> = LazyLock::new(|| {
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
pub(super) fn status(reply: &[String]) -> (&str, Option<&str>) {
    (
        reply.first().map_or("", String::as_str),
        reply.get(1).map(String::as_str),
    )
}

/// KEYS: audiences, version. ARGV: channel, name, record JSON, event JSON.
pub(super) static CREATE_AUDIENCE: LazyLock<Script> = LazyLock::new(|| {
    script_with_publish(
        r#"
if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3]) == 0 then return {'exists'} end
publish(KEYS[2], ARGV[1], ARGV[4])
return {'ok'}
"#,
    )
});

/// KEYS: audiences, version.
/// ARGV: channel, name, expected revision, record JSON, event JSON.
pub(super) static UPDATE_AUDIENCE: LazyLock<Script> = LazyLock::new(|| {
    script_with_publish(
        r#"
local stored = redis.call('HGET', KEYS[1], ARGV[2])
if not stored then return {'missing'} end
local ok, old = pcall(cjson.decode, stored)
if not ok or type(old) ~= 'table' or type(old.revision) ~= 'number' then
  return {'corrupt'}
end
if old.revision ~= tonumber(ARGV[3]) then
  return {'stale', string.format('%d', old.revision)}
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])
publish(KEYS[2], ARGV[1], ARGV[5])
return {'ok'}
"#,
    )
});

/// KEYS: audiences, version. ARGV: channel, name, event JSON.
pub(super) static DELETE_AUDIENCE: LazyLock<Script> = LazyLock::new(|| {
    script_with_publish(
        r#"
local stored = redis.call('HGET', KEYS[1], ARGV[2])
if not stored then return {'missing'} end
redis.call('HDEL', KEYS[1], ARGV[2])
publish(KEYS[2], ARGV[1], ARGV[3])
return {'ok', stored}
"#,
    )
});

/// KEYS: grants. ARGV: id, expected revision, record JSON. Grants are read
/// from the store when needed, so no change event is published.
pub(super) static UPDATE_GRANT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if not stored then return {'missing'} end
local ok, old = pcall(cjson.decode, stored)
if not ok or type(old) ~= 'table' or type(old.revision) ~= 'number' then
  return {'corrupt'}
end
if old.revision ~= tonumber(ARGV[2]) then
  return {'stale', string.format('%d', old.revision)}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return {'ok'}
"#,
    )
});
