//! [`JwtVerifier`]: local JWT-SVID validation for relying parties, with
//! JWT bundles that follow the agent's stream.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::Value;
use tokio::sync::watch;

use super::task::{self, TaskGuard};
use super::{JwtBundles, WorkloadClient, WorkloadError};
use crate::clock::now_unix_millis as unix_now_ms;
use crate::jwt::{
    Audience, JwtSvidError, JwtSvidValidator, ValidatedJwtSvid, insecure_decode_unverified,
};
use crate::revocation::RevocationWatch;
use crate::{SpiffeId, TrustDomain};

/// Verifies JWT-SVIDs locally, against JWT bundles a background task keeps
/// current from the agent's `FetchJWTBundles` stream.
///
/// The checks are [`JwtSvidValidator`]'s, the broker's own: algorithm
/// allow-list first, size limit before decoding, only `alg`/`kid`/`typ`
/// headers, a key chosen by `kid` from the subject's trust domain, `exp`
/// required (30 s leeway), the caller's audience required. Verifying takes
/// no lock and makes no call: the validators are rebuilt once per bundle
/// update and published as a snapshot. A bundle update that cannot be used
/// is logged and the last good bundles stay in use.
///
/// Revocation is opt-in: [`with_revocations`](Self::with_revocations) adds
/// a check against the broker's revocation set, itself lock-free and local.
///
/// Clones share the snapshot and the task, which stops with the last clone.
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
    revocations: Option<RevocationWatch>,
}

struct Inner {
    shared: Arc<Shared>,
    task: TaskGuard,
}

struct Shared {
    validators: ArcSwap<Validators>,
    updates: watch::Receiver<u64>,
}

/// One snapshot: a validator per trust domain that has JWT authorities.
struct Validators {
    generation: u64,
    bundles: JwtBundles,
    by_trust_domain: BTreeMap<TrustDomain, JwtSvidValidator>,
}

impl Validators {
    fn new(generation: u64, bundles: JwtBundles) -> Result<Self, WorkloadError> {
        let mut by_trust_domain = BTreeMap::new();
        for (trust_domain, authorities) in bundles.iter() {
            // A trust domain without JWT keys can verify nothing; its tokens
            // are refused as from an unknown trust domain.
            if authorities.is_empty() {
                continue;
            }
            let validator =
                JwtSvidValidator::new(trust_domain.clone(), authorities).map_err(|e| {
                    WorkloadError::invalid_response(format!("JWT bundle of {trust_domain}: {e}"))
                })?;
            by_trust_domain.insert(trust_domain.clone(), validator);
        }
        Ok(Validators {
            generation,
            bundles,
            by_trust_domain,
        })
    }
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let validators = self.inner.shared.validators.load();
        f.debug_struct("JwtVerifier")
            .field("generation", &validators.generation)
            .field("validators", &validators.by_trust_domain.values())
            .field("following", &self.inner.task)
            .field("revocations", &self.revocations)
            .finish()
    }
}

impl JwtVerifier {
    /// Starts following the agent's JWT bundles; waits for the first,
    /// retrying with backoff while the agent is unreachable or not ready
    /// (bound the wait with `tokio::time::timeout` if needed). Must be
    /// called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// At once, without retrying: the agent's refusal
    /// ([`WorkloadError::NoIdentityIssued`]: agents serve bundles only to
    /// registered workloads), and [`WorkloadError::InvalidResponse`] for a
    /// bundle this crate cannot use.
    pub async fn new(client: WorkloadClient) -> Result<Self, WorkloadError> {
        let open = {
            let client = client.clone();
            move || {
                let client = client.clone();
                async move { client.stream_jwt_bundles().await }
            }
        };
        let (stream, first) =
            task::first_update(&open, |_: &JwtBundles| Ok(()), "JWT bundles").await?;
        let (sender, updates) = watch::channel(0);
        let shared = Arc::new(Shared {
            validators: ArcSwap::from_pointee(Validators::new(0, first)?),
            updates,
        });
        let task = TaskGuard::spawn({
            let shared = shared.clone();
            move |cancel| async move {
                let apply = move |bundles| shared.apply(bundles, &sender);
                task::follow(stream, open, apply, cancel, "JWT bundles").await;
            }
        });
        Ok(JwtVerifier {
            inner: Arc::new(Inner { shared, task }),
            revocations: None,
        })
    }

    /// Also refuses tokens that the broker has revoked, as `revocations`
    /// (which follows the broker's revocation stream) knows them: after
    /// the signature and claims hold, the token is checked by its `jti`,
    /// and by its subject against entry, SPIFFE ID and agent revocations
    /// that cover tokens issued (`iat`) at or before them.
    ///
    /// Fails closed: while the revocation set has not heard from the broker
    /// for longer than its staleness bound, every token is refused
    /// ([`WorkloadError::Revoked`] with
    /// [`RevocationError::Stale`](crate::revocation::RevocationError::Stale)).
    /// The check stays local and lock-free. The verifier keeps the watch,
    /// and so its background task, alive; clones made after this call
    /// share it, clones made before do not check revocation.
    pub fn with_revocations(mut self, revocations: RevocationWatch) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// The revocations this verifier checks, if any.
    pub fn revocations(&self) -> Option<&RevocationWatch> {
        self.revocations.as_ref()
    }

    /// Verifies `token` for `audience` now (the system clock).
    ///
    /// # Errors
    ///
    /// As [`verify_at`](Self::verify_at).
    pub fn verify(
        &self,
        token: &str,
        audience: &Audience,
    ) -> Result<ValidatedJwtSvid, WorkloadError> {
        self.verify_at_ms(token, audience, unix_now_ms())
    }

    /// Verifies `token` for `audience` at `now_unix` (Unix seconds).
    ///
    /// The subject is read before the signature is checked, only to choose
    /// the trust domain's keys; the validator then checks everything,
    /// the subject's trust domain included. With
    /// [`with_revocations`](Self::with_revocations), the revocation check
    /// comes last, its freshness judged at the start of `now_unix`.
    ///
    /// # Errors
    ///
    /// [`WorkloadError::InvalidJwtSvid`] with the first failed check
    /// (malformed, disallowed algorithm, unknown `kid`, bad signature,
    /// expired, wrong audience …); [`WorkloadError::UnknownTrustDomain`]
    /// when no JWT bundle of the subject's trust domain is known;
    /// [`WorkloadError::Revoked`] when a revocation covers the token or
    /// the revocation set is stale.
    pub fn verify_at(
        &self,
        token: &str,
        audience: &Audience,
        now_unix: i64,
    ) -> Result<ValidatedJwtSvid, WorkloadError> {
        self.verify_at_ms(token, audience, now_unix.saturating_mul(1000))
    }

    /// [`verify_at`](Self::verify_at) with the clock in milliseconds, so
    /// that the revocation set's freshness is judged finely.
    fn verify_at_ms(
        &self,
        token: &str,
        audience: &Audience,
        now_ms: i64,
    ) -> Result<ValidatedJwtSvid, WorkloadError> {
        let invalid = |reason| WorkloadError::InvalidJwtSvid { reason };
        let trust_domain = claimed_subject(token).map_err(invalid)?.trust_domain();
        let validators = self.inner.shared.validators.load();
        let validator = validators
            .by_trust_domain
            .get(&trust_domain)
            .ok_or(WorkloadError::UnknownTrustDomain { trust_domain })?;
        let validated = validator
            .validate(token, audience, now_ms.div_euclid(1000))
            .map_err(invalid)?;
        // Looked up only once the token is genuine: a forged one is refused
        // as invalid, never as revoked, so the answer tells a forger
        // nothing about the set.
        if let Some(revocations) = &self.revocations {
            revocations
                .set()
                .check_jwt_ms(
                    &validated.spiffe_id,
                    validated.jti.as_deref(),
                    validated.issued_at,
                    now_ms,
                )
                .map_err(|reason| WorkloadError::Revoked { reason })?;
        }
        Ok(validated)
    }

    /// The JWT bundles in use.
    pub fn bundles(&self) -> JwtBundles {
        self.inner.shared.validators.load().bundles.clone()
    }

    /// A receiver of the bundles' generation: 0 for the first, one more on
    /// every change (a key rotation). `changed().await` fails once the
    /// verifier has stopped following the agent.
    pub fn updated(&self) -> watch::Receiver<u64> {
        self.inner.shared.updates.clone()
    }

    /// Whether the background task is still following the agent.
    pub fn is_following(&self) -> bool {
        self.inner.task.is_running()
    }

    /// A verifier with fixed bundles and no agent, for tests elsewhere in
    /// the crate.
    #[cfg(test)]
    pub(crate) fn with_fixed_bundles(bundles: JwtBundles) -> Result<Self, WorkloadError> {
        let (_, updates) = watch::channel(0);
        let shared = Arc::new(Shared {
            validators: ArcSwap::from_pointee(Validators::new(0, bundles)?),
            updates,
        });
        let task = TaskGuard::spawn(|cancel| async move { cancel.cancelled().await });
        Ok(JwtVerifier {
            inner: Arc::new(Inner { shared, task }),
            revocations: None,
        })
    }
}

impl Shared {
    fn apply(&self, bundles: JwtBundles, sender: &watch::Sender<u64>) {
        let current = self.validators.load();
        if bundles == current.bundles {
            return;
        }
        let generation = current.generation + 1;
        match Validators::new(generation, bundles) {
            Ok(validators) => {
                tracing::info!(generation, "new JWT bundles");
                self.validators.store(Arc::new(validators));
                sender.send_replace(generation);
            }
            Err(error) => {
                tracing::warn!(%error, "ignoring a JWT bundle update; the last bundles stay in use");
            }
        }
    }
}

/// The token's `sub`, read without verifying anything (same size limit and
/// structure checks as the validator), to choose the trust domain.
fn claimed_subject(token: &str) -> Result<SpiffeId, JwtSvidError> {
    let (_, claims) = insecure_decode_unverified(token)?;
    match claims.get("sub") {
        None => Err(JwtSvidError::MissingClaim { claim: "sub" }),
        Some(Value::String(subject)) => {
            SpiffeId::parse(subject).map_err(|reason| JwtSvidError::BadSubject { reason })
        }
        Some(_) => Err(JwtSvidError::InvalidClaimType {
            claim: "sub",
            expected: "a string",
        }),
    }
}
