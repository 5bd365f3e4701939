//! A cache of JWT-SVIDs whose signature and claims were verified, so that a
//! relying party validating the same token again does not pay for another
//! ECDSA verification.
//!
//! Entries are keyed by the SHA-256 of the token (the token itself is not
//! kept) and hold what the validation found. A hit is only used while the
//! token has not expired, for an audience it carries, and for the validator
//! generation (the set of trusted keys) that verified it: a key rotation or
//! a replica leaving invalidates what it verified. The revocation check is
//! not cached: the caller runs it on every call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mayfly_sdk::jwt::{Audience, ValidatedJwtSvid};

/// How many verified tokens are kept at most.
pub const MAX_ENTRIES: usize = 100_000;

#[derive(Debug)]
struct Verified {
    svid: Arc<ValidatedJwtSvid>,
    generation: u64,
}

/// Verified tokens, lock-free to read.
#[derive(Debug)]
pub struct VerifiedTokens {
    map: papaya::HashMap<[u8; 32], Verified>,
    generation: AtomicU64,
    leeway_secs: i64,
}

impl VerifiedTokens {
    /// An empty cache for a validator with this clock leeway.
    pub fn new(leeway_secs: i64) -> Self {
        VerifiedTokens {
            map: papaya::HashMap::new(),
            generation: AtomicU64::new(0),
            leeway_secs,
        }
    }

    /// The current validator generation; read it before validating.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The trusted keys changed: nothing verified before counts.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.map.pin().clear();
    }

    /// The key of `token`.
    pub fn key(token: &str) -> [u8; 32] {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        key
    }

    /// What a still-usable earlier validation of the token with this key
    /// found, if any.
    pub fn get(
        &self,
        key: &[u8; 32],
        audience: &Audience,
        now: i64,
    ) -> Option<Arc<ValidatedJwtSvid>> {
        let map = self.map.pin();
        let hit = map.get(key)?;
        let usable = hit.generation == self.generation()
            && now <= hit.svid.expires_at.saturating_add(self.leeway_secs)
            && hit.svid.audience.iter().any(|a| a == audience.as_str());
        usable.then(|| hit.svid.clone())
    }

    /// Remembers a successful validation made at `generation`.
    pub fn insert(&self, key: [u8; 32], svid: Arc<ValidatedJwtSvid>, generation: u64, now: i64) {
        let map = self.map.pin();
        if map.len() >= MAX_ENTRIES {
            // Expired tokens first; if the cache is full of live ones, start over.
            let leeway = self.leeway_secs;
            map.retain(|_, v| now <= v.svid.expires_at.saturating_add(leeway));
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(key, Verified { svid, generation });
    }

    /// How many are cached.
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

    fn svid(audience: &str, expires_at: i64) -> Arc<ValidatedJwtSvid> {
        Arc::new(ValidatedJwtSvid {
            spiffe_id: "spiffe://example.org/a".parse().unwrap(),
            audience: vec![audience.to_owned()],
            expires_at,
            issued_at: Some(expires_at - 60),
            jti: Some("j".into()),
            key_id: "k".into(),
        })
    }

    #[test]
    fn a_hit_needs_the_same_token_audience_generation_and_an_unexpired_token() {
        let cache = VerifiedTokens::new(30);
        let db = Audience::new("db").unwrap();
        let key = VerifiedTokens::key("header.claims.sig");
        assert!(cache.get(&key, &db, 100).is_none());
        cache.insert(key, svid("db", 200), cache.generation(), 100);
        assert!(cache.get(&key, &db, 100).is_some());
        assert!(cache.get(&key, &db, 230).is_some(), "within the leeway");
        assert!(cache.get(&key, &db, 231).is_none(), "expired");
        assert!(
            cache
                .get(&key, &Audience::new("other").unwrap(), 100)
                .is_none()
        );
        assert!(
            cache
                .get(&VerifiedTokens::key("header.claims.sig2"), &db, 100)
                .is_none()
        );
        cache.invalidate();
        assert!(cache.get(&key, &db, 100).is_none(), "the keys changed");
        // Inserted with the generation read before a rotation: not used.
        let before = cache.generation();
        cache.invalidate();
        cache.insert(key, svid("db", 200), before, 100);
        assert!(cache.get(&key, &db, 100).is_none());
    }

    #[test]
    fn it_stays_bounded() {
        let cache = VerifiedTokens::new(0);
        for i in 0..MAX_ENTRIES + 10 {
            let key = VerifiedTokens::key(&i.to_string());
            // Half of them expired by `now`.
            cache.insert(key, svid("db", if i % 2 == 0 { 50 } else { 500 }), 0, 100);
        }
        assert!(cache.len() <= MAX_ENTRIES);
        assert!(!cache.is_empty());
    }
}
