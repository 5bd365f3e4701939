//! JWT-SVIDs the broker signed, kept per (entry, audience) and handed out
//! again until half their lifetime has passed, so that a workload asking
//! often does not cost an ECDSA signature, an audit-log entry of a new `jti`
//! and a new token for relying parties to verify each time.
//!
//! Only what the cache itself can judge is decided here: whether a token has
//! at least half its lifetime left and whether the current JWT key signed it.
//! The caller checks the entry, the audience, the TTL and the revocation
//! index before serving a hit, every time. Entries that require a unique
//! `jti` are never cached (the caller does not insert them).
//!
//! The key carries the entry's revision, so a token minted under an entry's
//! old settings is never served after an update, and the requested TTL, so
//! that a caller asking for a short-lived token never gets a longer one,
//! and whether the token carries the governance claims, so that tokens with
//! and without them are never mixed.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use mayfly_sdk::jwt::Audience;
use zeroize::Zeroizing;

use crate::policy::{Entry, EntryId};

/// How many (entry, revision, audience, TTL) keys are kept at most.
pub const MAX_KEYS: usize = 65_536;

/// How often, at most, the whole cache is swept for tokens past their
/// half-life (Unix seconds between sweeps).
const SWEEP_INTERVAL_SECS: i64 = 60;

/// What a cached token was minted for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JwtCacheKey {
    entry_id: EntryId,
    revision: u64,
    audience: Audience,
    /// The TTL the caller asked for; `None` for the entry's.
    ttl_seconds: Option<u64>,
    /// Whether the token carries the governance claims (`[jwt]
    /// governance_claims`): tokens with and without never share a key.
    governance_claims: bool,
}

impl JwtCacheKey {
    /// The key of a mint for `entry` at its current revision.
    pub fn new(entry: &Entry, audience: &Audience, ttl: Option<Duration>) -> Self {
        JwtCacheKey {
            entry_id: entry.id.clone(),
            revision: entry.revision,
            audience: audience.clone(),
            ttl_seconds: ttl.map(|ttl| ttl.as_secs()),
            governance_claims: false,
        }
    }

    /// The same key for a token with (`true`) or without the governance
    /// claims.
    #[must_use]
    pub fn with_governance_claims(mut self, on: bool) -> Self {
        self.governance_claims = on;
        self
    }
}

/// A signed JWT-SVID and the facts needed to decide whether to reuse it.
/// Debug does not print the token.
pub struct CachedJwt {
    /// The compact JWS: a bearer credential.
    pub token: Zeroizing<String>,
    /// Its `jti`.
    pub jti: String,
    /// Its `iat`, Unix seconds.
    pub issued_at: i64,
    /// Its `exp`, Unix seconds.
    pub expires_at: i64,
    /// The `kid` of the key that signed it.
    pub key_id: String,
}

impl CachedJwt {
    /// Whether the token may be handed out again at `now` by a broker
    /// signing with `signer_key_id`: that key signed it, and at least half
    /// of its lifetime (`exp - iat`) is left.
    pub fn is_reusable(&self, signer_key_id: &str, now: i64) -> bool {
        self.key_id == signer_key_id && self.has_half_life_left(now)
    }

    /// Whether at least half of the lifetime is left at `now` (and the token
    /// was not issued after `now`, as when the clock was set back).
    fn has_half_life_left(&self, now: i64) -> bool {
        let lifetime = self.expires_at.saturating_sub(self.issued_at);
        let left = self.expires_at.saturating_sub(now);
        now >= self.issued_at && left > 0 && left.saturating_mul(2) >= lifetime
    }
}

impl fmt::Debug for CachedJwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedJwt")
            .field("token", &"[redacted]")
            .field("jti", &self.jti)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("key_id", &self.key_id)
            .finish()
    }
}

/// The cache, lock-free to read.
#[derive(Debug)]
pub struct JwtSvidCache {
    map: papaya::HashMap<JwtCacheKey, Arc<CachedJwt>>,
    capacity: usize,
    /// Unix seconds at which the next sweep is due.
    next_sweep: AtomicI64,
}

impl Default for JwtSvidCache {
    fn default() -> Self {
        Self::with_capacity(MAX_KEYS)
    }
}

impl JwtSvidCache {
    /// An empty cache of at most 65,536 keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty cache of at most `capacity` keys.
    pub fn with_capacity(capacity: usize) -> Self {
        JwtSvidCache {
            map: papaya::HashMap::new(),
            capacity,
            next_sweep: AtomicI64::new(i64::MIN),
        }
    }

    /// The token cached for `key`, if it may be reused at `now` by a broker
    /// signing with `signer_key_id`. One that may not is dropped.
    pub fn reusable(
        &self,
        key: &JwtCacheKey,
        signer_key_id: &str,
        now: i64,
    ) -> Option<Arc<CachedJwt>> {
        let map = self.map.pin();
        let hit = map.get(key)?;
        if hit.is_reusable(signer_key_id, now) {
            return Some(Arc::clone(hit));
        }
        // Only if it is still the unusable one: a token another request
        // just cached for this key stays.
        let _ = map.remove_if(key, |_, cached| !cached.is_reusable(signer_key_id, now));
        None
    }

    /// Drops `jwt` from `key` (a revoked token), unless another token has
    /// replaced it already.
    pub fn forget(&self, key: &JwtCacheKey, jwt: &Arc<CachedJwt>) {
        let _ = self
            .map
            .pin()
            .remove_if(key, |_, cached| Arc::ptr_eq(cached, jwt));
    }

    /// Keeps `jwt` for `key`, replacing what was there. Returns whether it
    /// was kept: when the cache is full of tokens that are still reusable,
    /// a new key is not added (the cache never grows past its bound).
    pub fn insert(&self, key: JwtCacheKey, jwt: Arc<CachedJwt>, now: i64) -> bool {
        self.sweep_if_due(now);
        let map = self.map.pin();
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, cached| cached.has_half_life_left(now));
            if map.len() >= self.capacity {
                return false;
            }
        }
        map.insert(key, jwt);
        true
    }

    /// Drops every token past its half-life, at most once a minute, so that
    /// keys nobody asks for again do not stay until the cache is full.
    fn sweep_if_due(&self, now: i64) {
        let due = self.next_sweep.load(Ordering::Acquire);
        if now < due {
            return;
        }
        let next = now.saturating_add(SWEEP_INTERVAL_SECS);
        // One caller sweeps; the others go on.
        if self
            .next_sweep
            .compare_exchange(due, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.map
                .pin()
                .retain(|_, cached| cached.has_half_life_left(now));
        }
    }

    /// How many tokens are cached.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none are cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(entry: &str, revision: u64, audience: &str, ttl: Option<u64>) -> JwtCacheKey {
        JwtCacheKey {
            entry_id: EntryId::parse(entry).unwrap(),
            revision,
            audience: Audience::new(audience).unwrap(),
            ttl_seconds: ttl,
            governance_claims: false,
        }
    }

    const ENTRY: &str = "0123456789abcdef";

    /// A token issued at 1000, valid for 300 s: half-life at 1150.
    fn jwt(key_id: &str) -> Arc<CachedJwt> {
        Arc::new(CachedJwt {
            token: Zeroizing::new("header.claims.signature".into()),
            jti: "jti-1".into(),
            issued_at: 1_000,
            expires_at: 1_300,
            key_id: key_id.into(),
        })
    }

    #[test]
    fn reused_while_half_the_lifetime_is_left_and_not_after() {
        let cache = JwtSvidCache::new();
        let k = key(ENTRY, 1, "db", None);
        assert!(cache.reusable(&k, "kid-1", 1_000).is_none(), "empty");
        assert!(cache.insert(k.clone(), jwt("kid-1"), 1_000));
        let hit = cache.reusable(&k, "kid-1", 1_000).expect("just minted");
        assert_eq!(hit.jti, "jti-1");
        assert!(
            cache.reusable(&k, "kid-1", 1_150).is_some(),
            "exactly half left"
        );
        assert!(
            cache.reusable(&k, "kid-1", 1_151).is_none(),
            "less than half left"
        );
        assert!(cache.is_empty(), "the stale token was dropped");
    }

    #[test]
    fn half_life_rule_at_its_edges() {
        let one_second = CachedJwt {
            token: Zeroizing::new(String::new()),
            jti: String::new(),
            issued_at: 10,
            expires_at: 11,
            key_id: "k".into(),
        };
        assert!(one_second.is_reusable("k", 10));
        assert!(!one_second.is_reusable("k", 11), "expired");
        let token = jwt("k");
        assert!(!token.is_reusable("k", 999), "issued after the clock's now");
        assert!(!token.is_reusable("k", 1_300));
        assert!(!token.is_reusable("k", i64::MAX));
    }

    #[test]
    fn a_token_of_another_signing_key_is_not_reused() {
        let cache = JwtSvidCache::new();
        let k = key(ENTRY, 1, "db", None);
        cache.insert(k.clone(), jwt("kid-old"), 1_000);
        assert!(cache.reusable(&k, "kid-old", 1_010).is_some(), "control");
        assert!(cache.reusable(&k, "kid-new", 1_010).is_none(), "rotated");
        assert!(
            cache.reusable(&k, "kid-old", 1_010).is_none(),
            "dropped on the miss"
        );
    }

    #[test]
    fn every_part_of_the_key_counts() {
        let cache = JwtSvidCache::new();
        let k = key(ENTRY, 1, "db", None);
        cache.insert(k.clone(), jwt("k"), 1_000);
        assert!(cache.reusable(&k, "k", 1_000).is_some(), "control");
        for other in [
            key("fedcba9876543210", 1, "db", None),
            key(ENTRY, 2, "db", None),
            key(ENTRY, 1, "cache", None),
            key(ENTRY, 1, "db", Some(60)),
            key(ENTRY, 1, "db", None).with_governance_claims(true),
        ] {
            assert!(cache.reusable(&other, "k", 1_000).is_none(), "{other:?}");
        }
    }

    #[test]
    fn forget_drops_only_the_token_it_names() {
        let cache = JwtSvidCache::new();
        let k = key(ENTRY, 1, "db", None);
        let revoked = jwt("k");
        cache.insert(k.clone(), revoked.clone(), 1_000);
        let replacement = jwt("k");
        cache.insert(k.clone(), replacement.clone(), 1_000);
        cache.forget(&k, &revoked);
        let kept = cache.reusable(&k, "k", 1_000).expect("the replacement");
        assert!(Arc::ptr_eq(&kept, &replacement));
        cache.forget(&k, &replacement);
        assert!(cache.reusable(&k, "k", 1_000).is_none());
    }

    #[test]
    fn it_stays_bounded_and_makes_room_from_stale_tokens() {
        let cache = JwtSvidCache::with_capacity(4);
        for i in 0..4 {
            assert!(cache.insert(key(ENTRY, i, "db", None), jwt("k"), 1_000));
        }
        // Full of reusable tokens: a new key is not added, a known key is replaced.
        assert!(!cache.insert(key(ENTRY, 9, "db", None), jwt("k"), 1_000));
        assert!(cache.insert(key(ENTRY, 0, "db", None), jwt("k"), 1_000));
        assert_eq!(cache.len(), 4);
        // Once they pass their half-life they make room.
        assert!(cache.insert(key(ENTRY, 9, "db", None), jwt("k"), 1_151));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn tokens_past_their_half_life_are_swept_on_a_later_insert() {
        let cache = JwtSvidCache::new();
        cache.insert(key(ENTRY, 1, "db", None), jwt("k"), 1_000);
        cache.insert(key(ENTRY, 2, "db", None), jwt("k"), 1_000);
        assert_eq!(cache.len(), 2);
        // Within the sweep interval nothing is swept.
        cache.insert(key(ENTRY, 3, "db", None), jwt("k"), 1_020);
        assert_eq!(cache.len(), 3);
        // A minute later, the two keys nobody asked for again are gone.
        let fresh = Arc::new(CachedJwt {
            token: Zeroizing::new("t".into()),
            jti: "jti-2".into(),
            issued_at: 1_200,
            expires_at: 1_500,
            key_id: "k".into(),
        });
        cache.insert(key(ENTRY, 4, "db", None), fresh, 1_200);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn debug_hides_the_token() {
        let text = format!("{:?}", jwt("k"));
        assert!(!text.contains("signature"), "{text}");
        assert!(
            text.contains("[redacted]") && text.contains("jti-1"),
            "{text}"
        );
    }
}
