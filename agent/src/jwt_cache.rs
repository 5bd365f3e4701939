//! JWT-SVIDs the agent minted, kept per (SPIFFE ID, audience) and handed
//! out again until half their lifetime has passed.
//!
//! A token is only reused for the entry revision it was minted for: an
//! operator's change to the entry (an audience removed, a shorter TTL) is
//! honoured at the next request. While the broker is unreachable, a token
//! that is past its refresh point but not expired is still served.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use mayfly_sdk::SpiffeId;
use zeroize::Zeroizing;

/// A JWT-SVID and when to stop handing it out.
pub(crate) struct CachedJwt {
    pub(crate) token: Zeroizing<String>,
    /// Its `jti` and `iat`, for the revocation check on every hit.
    pub(crate) jti: Option<String>,
    pub(crate) issued_at: Option<i64>,
    pub(crate) revision: u64,
    pub(crate) expires_at: i64,
    pub(crate) refresh_at: i64,
}

impl fmt::Debug for CachedJwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedJwt")
            .field("token", &"[redacted]")
            .field("jti", &self.jti)
            .field("issued_at", &self.issued_at)
            .field("revision", &self.revision)
            .field("expires_at", &self.expires_at)
            .field("refresh_at", &self.refresh_at)
            .finish()
    }
}

type Key = (SpiffeId, String);

/// The cache. Its lock is never held across an `.await`: every method is
/// synchronous.
#[derive(Debug, Default)]
pub(crate) struct JwtCache {
    tokens: Mutex<HashMap<Key, Arc<CachedJwt>>>,
}

impl JwtCache {
    /// A token for `spiffe_id` and `audience`, minted for `revision`, that
    /// has not reached its refresh point at `now`.
    pub(crate) fn fresh(
        &self,
        spiffe_id: &SpiffeId,
        audience: &str,
        revision: u64,
        now: i64,
    ) -> Option<Arc<CachedJwt>> {
        self.lookup(spiffe_id, audience, revision)
            .filter(|jwt| now < jwt.refresh_at)
    }

    /// Like [`fresh`](Self::fresh), but any unexpired token will do: for
    /// when the broker cannot mint a new one.
    pub(crate) fn unexpired(
        &self,
        spiffe_id: &SpiffeId,
        audience: &str,
        revision: u64,
        now: i64,
    ) -> Option<Arc<CachedJwt>> {
        self.lookup(spiffe_id, audience, revision)
            .filter(|jwt| now < jwt.expires_at)
    }

    fn lookup(
        &self,
        spiffe_id: &SpiffeId,
        audience: &str,
        revision: u64,
    ) -> Option<Arc<CachedJwt>> {
        let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens
            .get(&(spiffe_id.clone(), audience.to_owned()))
            .filter(|jwt| jwt.revision == revision)
            .cloned()
    }

    /// Keeps `jwt` for `spiffe_id` and `audience`, and returns it.
    pub(crate) fn insert(
        &self,
        spiffe_id: SpiffeId,
        audience: String,
        jwt: CachedJwt,
    ) -> Arc<CachedJwt> {
        let jwt = Arc::new(jwt);
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens.insert((spiffe_id, audience), jwt.clone());
        jwt
    }

    /// Forgets the token for `spiffe_id` and `audience` if it is `jwt`
    /// (and not one that replaced it meanwhile).
    pub(crate) fn evict(&self, spiffe_id: &SpiffeId, audience: &str, jwt: &Arc<CachedJwt>) {
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (spiffe_id.clone(), audience.to_owned());
        if tokens.get(&key).is_some_and(|held| Arc::ptr_eq(held, jwt)) {
            tokens.remove(&key);
        }
    }

    /// Drops expired tokens and those of identities that are no longer
    /// registered at the revision they were minted for.
    pub(crate) fn retain(&self, live: &HashMap<SpiffeId, u64>, now: i64) {
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens.retain(|(spiffe_id, _), jwt| {
            now < jwt.expires_at && live.get(spiffe_id) == Some(&jwt.revision)
        });
    }

    /// How many tokens are kept.
    pub(crate) fn len(&self) -> usize {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(path: &str) -> SpiffeId {
        format!("spiffe://example.org{path}").parse().unwrap()
    }

    fn jwt(revision: u64) -> CachedJwt {
        CachedJwt {
            token: Zeroizing::new("header.claims.signature".into()),
            jti: Some("j1".into()),
            issued_at: Some(100),
            revision,
            expires_at: 200,
            refresh_at: 150,
        }
    }

    #[test]
    fn reused_until_half_life_then_only_while_unexpired() {
        let cache = JwtCache::default();
        cache.insert(id("/a"), "db".into(), jwt(1));
        assert!(cache.fresh(&id("/a"), "db", 1, 149).is_some());
        assert!(cache.fresh(&id("/a"), "db", 1, 150).is_none());
        assert!(cache.unexpired(&id("/a"), "db", 1, 199).is_some());
        assert!(cache.unexpired(&id("/a"), "db", 1, 200).is_none());
        assert!(cache.fresh(&id("/a"), "other", 1, 0).is_none());
        assert!(cache.fresh(&id("/b"), "db", 1, 0).is_none());
    }

    #[test]
    fn a_new_entry_revision_is_not_served_old_tokens() {
        let cache = JwtCache::default();
        cache.insert(id("/a"), "db".into(), jwt(1));
        assert!(cache.fresh(&id("/a"), "db", 2, 0).is_none());
        assert!(cache.unexpired(&id("/a"), "db", 2, 0).is_none());
    }

    #[test]
    fn retain_drops_gone_changed_and_expired() {
        let cache = JwtCache::default();
        cache.insert(id("/a"), "db".into(), jwt(1));
        cache.insert(id("/b"), "db".into(), jwt(1));
        cache.insert(id("/c"), "db".into(), jwt(1));
        let live = HashMap::from([(id("/a"), 1), (id("/b"), 2)]);
        cache.retain(&live, 0);
        assert_eq!(cache.len(), 1);
        cache.retain(&live, 200);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn evict_forgets_only_the_token_it_names() {
        let cache = JwtCache::default();
        let first = cache.insert(id("/a"), "db".into(), jwt(1));
        let second = cache.insert(id("/a"), "db".into(), jwt(1));
        cache.evict(&id("/a"), "db", &first);
        assert_eq!(cache.len(), 1, "a newer token is kept");
        cache.evict(&id("/a"), "db", &second);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn debug_hides_the_token() {
        assert!(!format!("{:?}", jwt(1)).contains("signature"));
    }
}
