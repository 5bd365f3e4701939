//! What a JWT-SVID's claims must say (JWT-SVID.md §3), plus Mayfly's cap on
//! a token's lifetime.

use std::time::Duration;

use serde_json::{Map, Value};

use super::{Audience, JwtSvidError, LifetimeStart, ValidatedJwtSvid};
use crate::spiffe_id::{SpiffeId, TrustDomain};

/// The claim rules of one validator.
#[derive(Debug, Clone)]
pub(super) struct ClaimRules {
    pub(super) trust_domain: TrustDomain,
    pub(super) leeway_secs: i64,
    pub(super) max_lifetime_secs: i64,
}

impl ClaimRules {
    /// Checks the claims of a token `key_id` verified, for `audience` at
    /// `now` (Unix seconds).
    pub(super) fn check(
        &self,
        claims: &Map<String, Value>,
        audience: &Audience,
        now: i64,
        key_id: String,
    ) -> Result<ValidatedJwtSvid, JwtSvidError> {
        let spiffe_id = self.check_subject(claims)?;

        let expires_at =
            numeric_date(claims, "exp")?.ok_or(JwtSvidError::MissingClaim { claim: "exp" })?;
        if now > expires_at.saturating_add(self.leeway_secs) {
            return Err(JwtSvidError::Expired {
                expired_at: expires_at,
                now,
            });
        }

        let audiences = audiences(claims)?;
        if !audiences.iter().any(|a| a == audience.as_str()) {
            return Err(JwtSvidError::WrongAudience {
                expected: audience.as_str().to_owned(),
                actual: audiences,
            });
        }

        let latest_allowed = now.saturating_add(self.leeway_secs);
        if let Some(not_before) = numeric_date(claims, "nbf")?
            && not_before > latest_allowed
        {
            return Err(JwtSvidError::NotYetValid { not_before, now });
        }
        let issued_at = numeric_date(claims, "iat")?;
        if let Some(issued_at) = issued_at
            && issued_at > latest_allowed
        {
            return Err(JwtSvidError::IssuedInFuture { issued_at, now });
        }
        self.check_lifetime(expires_at, issued_at, now)?;

        let jti = match claims.get("jti") {
            None => None,
            Some(Value::String(jti)) => Some(jti.clone()),
            Some(_) => {
                return Err(JwtSvidError::InvalidClaimType {
                    claim: "jti",
                    expected: "a string",
                });
            }
        };

        Ok(ValidatedJwtSvid {
            spiffe_id,
            audience: audiences,
            expires_at,
            issued_at,
            jti,
            key_id,
        })
    }

    fn check_subject(&self, claims: &Map<String, Value>) -> Result<SpiffeId, JwtSvidError> {
        let subject = match claims.get("sub") {
            None => return Err(JwtSvidError::MissingClaim { claim: "sub" }),
            Some(Value::String(sub)) => sub,
            Some(_) => {
                return Err(JwtSvidError::InvalidClaimType {
                    claim: "sub",
                    expected: "a string",
                });
            }
        };
        let spiffe_id =
            SpiffeId::parse(subject).map_err(|reason| JwtSvidError::BadSubject { reason })?;
        if !spiffe_id.is_member_of(&self.trust_domain) {
            return Err(JwtSvidError::WrongTrustDomain {
                expected: self.trust_domain.clone(),
                actual: spiffe_id,
            });
        }
        // The parser refuses a trailing '/', so an empty path is the only
        // way to name the trust domain itself.
        if spiffe_id.path().is_empty() {
            return Err(JwtSvidError::SubjectWithoutPath { subject: spiffe_id });
        }
        Ok(spiffe_id)
    }

    /// `exp` no further than the maximum lifetime plus the leeway from now
    /// and from `iat`. The leeway covers a validator whose clock runs behind
    /// the issuer's; the `iat` check catches a token minted too long-lived
    /// even when it is presented late in its life.
    fn check_lifetime(
        &self,
        expires_at: i64,
        issued_at: Option<i64>,
        now: i64,
    ) -> Result<(), JwtSvidError> {
        let limit = self.max_lifetime_secs.saturating_add(self.leeway_secs);
        let starts = [
            Some((LifetimeStart::Now, now)),
            issued_at.map(|issued_at| (LifetimeStart::IssuedAt, issued_at)),
        ];
        for (measured_from, start) in starts.into_iter().flatten() {
            // Saturating: with `exp` near i64::MAX and a negative start the
            // difference overflows, and "too long" is then the right answer.
            let lifetime_secs = expires_at.saturating_sub(start);
            if lifetime_secs > limit {
                return Err(JwtSvidError::LifetimeTooLong {
                    expires_at,
                    measured_from,
                    start,
                    lifetime_secs,
                    max_lifetime_secs: self.max_lifetime_secs,
                    leeway_secs: self.leeway_secs,
                });
            }
        }
        Ok(())
    }
}

pub(super) fn duration_secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// An optional NumericDate claim, which must be a JSON integer (RFC 7519
/// allows fractions; JWT-SVID issuers do not use them, and strings or floats
/// here are a sign of a confused or hostile issuer).
fn numeric_date(
    claims: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<i64>, JwtSvidError> {
    match claims.get(claim) {
        None => Ok(None),
        Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64()),
        Some(_) => Err(JwtSvidError::InvalidClaimType {
            claim,
            expected: "an integer NumericDate (seconds since the Unix epoch)",
        }),
    }
}

/// `aud`: a string, or a non-empty array of strings.
fn audiences(claims: &Map<String, Value>) -> Result<Vec<String>, JwtSvidError> {
    const EXPECTED: &str = "a string or a non-empty array of strings";
    let invalid = JwtSvidError::InvalidClaimType {
        claim: "aud",
        expected: EXPECTED,
    };
    match claims.get("aud") {
        None => Err(JwtSvidError::MissingClaim { claim: "aud" }),
        Some(Value::String(aud)) => Ok(vec![aud.clone()]),
        Some(Value::Array(values)) if !values.is_empty() => values
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or(invalid.clone()))
            .collect(),
        Some(_) => Err(invalid),
    }
}
