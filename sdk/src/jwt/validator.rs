//! [`JwtSvidValidator`]: one trust domain's JWT authorities, parsed once,
//! and the order of checks the [module docs](super) give.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use super::claims::{ClaimRules, duration_secs};
use super::{Audience, DEFAULT_LEEWAY, JwtSvidError, MAX_JWT_SVID_LIFETIME};
use crate::bundle::JwtAuthority;
use crate::jose::{JwsPolicy, VerificationKey, quoted};
use crate::spiffe_id::{SpiffeId, TrustDomain};

/// What a valid JWT-SVID asserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedJwtSvid {
    /// The subject, in the validator's trust domain.
    pub spiffe_id: SpiffeId,
    /// Every audience in the token (one, if the issuer follows the spec's advice).
    pub audience: Vec<String>,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
    /// `iat`, Unix seconds, if present.
    pub issued_at: Option<i64>,
    /// `jti`, if present (for replay tracking and revocation).
    pub jti: Option<String>,
    /// The `kid` of the key that verified it.
    pub key_id: String,
}

/// Validates JWT-SVIDs of one trust domain. Build it once per bundle
/// update; it holds the parsed keys (a clone shares nothing mutable).
#[derive(Clone)]
pub struct JwtSvidValidator {
    keys: HashMap<String, VerificationKey>,
    policy: JwsPolicy,
    claims: ClaimRules,
}

impl fmt::Debug for JwtSvidValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key_ids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        key_ids.sort_unstable();
        f.debug_struct("JwtSvidValidator")
            .field("trust_domain", &self.claims.trust_domain)
            .field("key_ids", &key_ids)
            .field("leeway_secs", &self.claims.leeway_secs)
            .field("max_lifetime_secs", &self.claims.max_lifetime_secs)
            .field("max_token_bytes", &self.policy.max_token_bytes)
            .finish()
    }
}

impl JwtSvidValidator {
    /// A validator for `trust_domain` trusting `authorities`, with a 30 s
    /// leeway, a 1 h maximum lifetime ([`MAX_JWT_SVID_LIFETIME`]) and an
    /// 8 KiB token limit.
    ///
    /// # Errors
    ///
    /// [`JwtSvidError::NoAuthorities`] if `authorities` is empty,
    /// [`JwtSvidError::DuplicateKeyId`] if two share a key ID, and
    /// [`JwtSvidError::InvalidKey`] if a key is unusable (EC point off its
    /// curve, RSA modulus outside 2048–8192 bits).
    pub fn new(
        trust_domain: TrustDomain,
        authorities: &[JwtAuthority],
    ) -> Result<Self, JwtSvidError> {
        if authorities.is_empty() {
            return Err(JwtSvidError::NoAuthorities { trust_domain });
        }
        let mut keys = HashMap::with_capacity(authorities.len());
        for authority in authorities {
            let kid = &authority.key_id;
            let key = VerificationKey::new(&authority.public_key).map_err(|reason| {
                JwtSvidError::InvalidKey {
                    kid: kid.clone(),
                    reason,
                }
            })?;
            if keys.insert(kid.clone(), key).is_some() {
                return Err(JwtSvidError::DuplicateKeyId { kid: kid.clone() });
            }
        }
        Ok(Self {
            keys,
            policy: JwsPolicy::JWT_SVID,
            claims: ClaimRules {
                trust_domain,
                leeway_secs: duration_secs(DEFAULT_LEEWAY),
                max_lifetime_secs: duration_secs(MAX_JWT_SVID_LIFETIME),
            },
        })
    }

    /// Sets the clock leeway for `exp`, `nbf` and `iat` (default 30 s).
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.claims.leeway_secs = duration_secs(leeway);
        self
    }

    /// Sets the longest lifetime accepted (default [`MAX_JWT_SVID_LIFETIME`],
    /// 1 h): `exp` may be at most this much, plus the leeway, after the time
    /// of the check, and after `iat` when the token has one. Set it to the
    /// longest TTL the issuers you trust are configured to use.
    #[must_use]
    pub fn with_max_lifetime(mut self, max_lifetime: Duration) -> Self {
        self.claims.max_lifetime_secs = duration_secs(max_lifetime);
        self
    }

    /// Sets the token size limit in bytes (default 8 KiB).
    #[must_use]
    pub fn with_max_token_bytes(mut self, max: usize) -> Self {
        self.policy.max_token_bytes = max;
        self
    }

    /// The trust domain this validator accepts subjects from.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.claims.trust_domain
    }

    /// Validates `token` for `audience` at `now_unix` (Unix seconds).
    ///
    /// # Errors
    ///
    /// The first failed check, in the order the [module docs](super) give.
    pub fn validate(
        &self,
        token: &str,
        audience: &Audience,
        now_unix: i64,
    ) -> Result<ValidatedJwtSvid, JwtSvidError> {
        let jws = self.policy.parse(token)?;
        let key = self
            .keys
            .get(jws.key_id())
            .ok_or_else(|| JwtSvidError::UnknownKeyId {
                kid: quoted(jws.key_id()),
                trust_domain: self.claims.trust_domain.clone(),
            })?;
        let claims = jws.verify(key)?;
        self.claims
            .check(&claims, audience, now_unix, jws.into_key_id())
    }
}
