//! JWT-SVIDs for local workloads: from the cache while fresh, else minted
//! in one `BatchMintJwtSvids` call for every identity the request needs.
//! Entries that require a unique `jti` are never served from the cache.

use std::collections::HashMap;
use std::sync::Arc;

use mayfly_sdk::jwt::Audience;
use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::proto::workload as wl;
use zeroize::Zeroizing;

use super::identity::refresh_point;
use super::jwt_cache::CachedJwt;
use super::snapshot::RegisteredEntry;
use super::state::AgentState;
use super::status::WorkloadError;
use super::upstream::Upstream;
use crate::clock::Clock;

/// Hands out JWT-SVIDs, minting through the broker when the cache cannot.
#[derive(Debug)]
pub(crate) struct JwtIssuer {
    upstream: Arc<Upstream>,
    state: Arc<AgentState>,
    clock: Arc<dyn Clock>,
}

impl JwtIssuer {
    pub(crate) fn new(
        upstream: Arc<Upstream>,
        state: Arc<AgentState>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        JwtIssuer {
            upstream,
            state,
            clock,
        }
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
            match cache.fresh(&entry.spiffe_id, audience.as_str(), entry.revision, now) {
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
            match self.upstream.mint_jwt(params).await {
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
                        let cached = cache.unexpired(
                            &entry.spiffe_id,
                            audience.as_str(),
                            entry.revision,
                            now,
                        );
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
        let jwt = CachedJwt {
            token,
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
