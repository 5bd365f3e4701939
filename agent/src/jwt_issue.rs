//! JWT-SVIDs for local workloads: from the cache while fresh, else minted
//! in one `BatchMintJwtSvids` call for every identity the request needs.
//! Entries that require a unique `jti` are never served from the cache.
//!
//! Every cache hit is checked against the broker's revocation set: a
//! revoked token (by `jti`, or its identity by entry, SPIFFE ID or agent)
//! is dropped and a new one asked for, which the broker refuses for a
//! revoked identity. A set past its staleness bound sends every request to
//! the broker; while the broker is out of reach, cached tokens are served
//! unless a revocation the agent has heard of covers them.

use std::collections::HashMap;
use std::sync::Arc;

use mayfly_sdk::jwt::{Audience, insecure_decode_unverified};
use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::proto::workload as wl;
use zeroize::Zeroizing;

use super::identity::refresh_point;
use super::jwt_cache::CachedJwt;
use super::revocations::Revocations;
use super::snapshot::RegisteredEntry;
use super::state::AgentState;
use super::status::WorkloadError;
use super::telemetry::AgentMetrics;
use super::upstream::Upstream;
use mayfly_sdk::clock::Clock;
use tracing::Instrument as _;

/// Hands out JWT-SVIDs, minting through the broker when the cache cannot.
#[derive(Debug)]
pub(crate) struct JwtIssuer {
    upstream: Arc<Upstream>,
    state: Arc<AgentState>,
    revocations: Arc<Revocations>,
    clock: Arc<dyn Clock>,
    metrics: Option<AgentMetrics>,
}

impl JwtIssuer {
    pub(crate) fn new(
        upstream: Arc<Upstream>,
        state: Arc<AgentState>,
        revocations: Arc<Revocations>,
        clock: Arc<dyn Clock>,
        metrics: Option<AgentMetrics>,
    ) -> Self {
        JwtIssuer {
            upstream,
            state,
            revocations,
            clock,
            metrics,
        }
    }

    /// The cached token for `entry` and `audience` that may be handed out
    /// now without asking the broker; a revoked one is forgotten.
    fn reusable(&self, entry: &RegisteredEntry, audience: &Audience) -> Option<Arc<CachedJwt>> {
        let now_ms = mayfly_sdk::clock::unix_millis(self.clock.now());
        let now = now_ms.div_euclid(1000);
        let cache = &self.state.jwt;
        let jwt = cache.fresh(&entry.spiffe_id, audience.as_str(), entry.revision, now)?;
        if self
            .revocations
            .may_reuse_jwt(&entry.spiffe_id, &jwt, now_ms)
        {
            return Some(jwt);
        }
        if let Some(error) = self
            .revocations
            .known_jwt_revocation(&entry.spiffe_id, &jwt, now)
        {
            tracing::info!(spiffe_id = %entry.spiffe_id, %error, "a cached JWT-SVID was revoked; asking the broker for another");
            cache.evict(&entry.spiffe_id, audience.as_str(), &jwt);
        }
        None
    }

    /// One JWT-SVID for `audience` per entry of `entries` (each allowing
    /// it), in entry order. Entries the broker refuses are left out.
    ///
    /// # Errors
    /// When none can be had: the broker's refusal (PermissionDenied,
    /// InvalidArgument), or [`WorkloadError::NotReady`] when it cannot be
    /// reached and nothing unexpired is cached.
    pub(crate) async fn svids(
        &self,
        entries: &[Arc<RegisteredEntry>],
        audience: &Audience,
    ) -> Result<Vec<wl::Jwtsvid>, WorkloadError> {
        let now = self.clock.unix_now();
        let cache = &self.state.jwt;
        let mut found: HashMap<&str, Arc<CachedJwt>> = HashMap::new();
        let mut misses = Vec::new();
        for entry in entries {
            // An entry that requires unique jtis gets a freshly signed token
            // every time: the broker does not reuse them, nor may the agent.
            if entry.unique_jti {
                misses.push(entry);
                continue;
            }
            let reused = self.reusable(entry, audience);
            if let Some(metrics) = &self.metrics {
                metrics.jwt_cache(reused.is_some());
            }
            match reused {
                Some(jwt) => {
                    found.insert(&entry.id, jwt);
                }
                None => misses.push(entry),
            }
        }
        let mut refusal = None;
        if !misses.is_empty() {
            let params = misses
                .iter()
                .map(|entry| pb::JwtSvidParams {
                    entry_id: entry.id.clone(),
                    audience: audience.as_str().to_owned(),
                    ttl_seconds: 0,
                })
                .collect();
            let minted = self
                .upstream
                .mint_jwt(params)
                .instrument(mayfly_telemetry::stage("agent.mint"))
                .await;
            match minted {
                Ok(response) => {
                    for result in response.results {
                        let Some(entry) = misses.iter().find(|e| e.id == result.entry_id) else {
                            continue;
                        };
                        match self.accept(entry, audience, result, now) {
                            Ok(jwt) => {
                                found.insert(&entry.id, jwt);
                            }
                            Err(error) => {
                                refusal.get_or_insert(error);
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot mint JWT-SVIDs; serving unexpired cached ones");
                    for entry in misses.iter().filter(|e| !e.unique_jti) {
                        let cached = cache
                            .unexpired(&entry.spiffe_id, audience.as_str(), entry.revision, now)
                            .filter(|jwt| {
                                self.revocations
                                    .known_jwt_revocation(&entry.spiffe_id, jwt, now)
                                    .is_none()
                            });
                        if let Some(jwt) = cached {
                            found.insert(&entry.id, jwt);
                        }
                    }
                    refusal = Some(WorkloadError::NotReady(format!(
                        "cannot mint a JWT-SVID now: {error}"
                    )));
                }
            }
        }
        let svids: Vec<wl::Jwtsvid> = entries
            .iter()
            .filter_map(|entry| {
                found.get(entry.id.as_str()).map(|jwt| wl::Jwtsvid {
                    spiffe_id: entry.spiffe_id.to_string(),
                    svid: jwt.token.to_string(),
                    hint: String::new(),
                })
            })
            .collect();
        match (svids.is_empty(), refusal) {
            (true, Some(error)) => Err(error),
            (true, None) => Err(WorkloadError::NotReady(
                "the broker minted no JWT-SVID".to_owned(),
            )),
            (false, _) => Ok(svids),
        }
    }

    /// Checks and caches one batch result.
    fn accept(
        &self,
        entry: &RegisteredEntry,
        audience: &Audience,
        result: pb::BatchJwtResult,
        now: i64,
    ) -> Result<Arc<CachedJwt>, WorkloadError> {
        let minted = match (result.svid, result.error) {
            (Some(minted), _) => minted,
            (None, error) => {
                let (code, message) = error.map_or((tonic::Code::Unknown, String::new()), |e| {
                    (tonic::Code::from_i32(e.code), e.message)
                });
                tracing::warn!(
                    spiffe_id = %entry.spiffe_id,
                    audience = %audience,
                    ?code,
                    %message,
                    "the broker did not mint a JWT-SVID"
                );
                return Err(match code {
                    tonic::Code::PermissionDenied => WorkloadError::Denied(message),
                    tonic::Code::InvalidArgument => WorkloadError::InvalidArgument(message),
                    _ => WorkloadError::NotReady(message),
                });
            }
        };
        let token = Zeroizing::new(minted.token);
        if token.is_empty()
            || minted.spiffe_id != entry.spiffe_id.as_str()
            || minted.expires_at <= now
        {
            tracing::warn!(
                spiffe_id = %entry.spiffe_id,
                minted_for = %minted.spiffe_id,
                "refusing a JWT-SVID that does not fit the entry"
            );
            return Err(WorkloadError::NotReady(
                "the broker's JWT-SVID does not fit the entry".to_owned(),
            ));
        }
        let (jti, issued_at) = jti_and_issued_at(&token, minted.jti);
        let jwt = CachedJwt {
            token,
            jti,
            issued_at,
            revision: entry.revision,
            expires_at: minted.expires_at,
            refresh_at: refresh_point(now, minted.expires_at),
        };
        if entry.unique_jti {
            return Ok(Arc::new(jwt));
        }
        Ok(self
            .state
            .jwt
            .insert(entry.spiffe_id.clone(), audience.as_str().to_owned(), jwt))
    }
}

/// The token's `jti` (the broker says it too) and `iat`, read from the
/// claims of a token the broker just signed for us over mTLS. A token
/// without `iat` is covered by every revocation of its identity: the
/// closed side.
fn jti_and_issued_at(token: &str, jti_from_broker: String) -> (Option<String>, Option<i64>) {
    let claims = insecure_decode_unverified(token)
        .ok()
        .map(|(_, claims)| claims);
    let claim = |name: &str| claims.as_ref().and_then(|claims| claims.get(name).cloned());
    let jti = match claim("jti") {
        Some(serde_json::Value::String(jti)) => Some(jti),
        _ => Some(jti_from_broker).filter(|jti| !jti.is_empty()),
    };
    let issued_at = claim("iat").and_then(|iat| iat.as_i64());
    (jti, issued_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn token(claims: &serde_json::Value) -> String {
        let encode = |value: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
        };
        format!(
            "{}.{}.c2ln",
            encode(&serde_json::json!({"alg": "ES256", "kid": "k"})),
            encode(claims)
        )
    }

    #[test]
    fn jti_and_iat_come_from_the_claims() {
        let claims = serde_json::json!({"sub": "spiffe://td/a", "jti": "abc", "iat": 1700});
        assert_eq!(
            jti_and_issued_at(&token(&claims), "other".into()),
            (Some("abc".into()), Some(1700))
        );
        // Without them: the broker's jti, and no iat (covered by identity
        // revocations whenever they were made).
        let bare = serde_json::json!({"sub": "spiffe://td/a"});
        assert_eq!(
            jti_and_issued_at(&token(&bare), "xyz".into()),
            (Some("xyz".into()), None)
        );
        assert_eq!(jti_and_issued_at("junk", String::new()), (None, None));
    }
}
