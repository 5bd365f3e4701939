//! [`JwtSource`]: JWT-SVIDs per audience, cached and renewed before they
//! expire.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::task::{TaskGuard, agent_backoff};
use super::{JwtSvid, WorkloadClient, WorkloadError};
use crate::SpiffeId;
use crate::clock::{now_unix as unix_now, now_unix_millis as unix_now_ms};
use crate::jwt::Audience;
use crate::revocation::{RevocationError, RevocationWatch};

/// The fraction of a token's lifetime after which it is renewed.
const RENEW_AT: f64 = 0.5;
/// A token this close to its expiry is not handed out: the caller's
/// request would arrive with a dead token.
const EXPIRY_MARGIN_SECS: i64 = 5;
/// The shortest wait between two renewals of one audience.
const MIN_RENEW_INTERVAL_SECS: i64 = 1;

/// JWT-SVIDs for the workload, one per audience, from the agent.
///
/// The first [`jwt`](Self::jwt) call for an audience asks the agent; later
/// ones are answered from a cache that readers load without locking. A
/// background task renews each cached token at half its lifetime, if it was
/// asked for since it was last fetched (tokens nobody uses are dropped,
/// not renewed forever). When a renewal fails the task retries with
/// backoff and jitter while the cached token, still valid, is served;
/// InvalidArgument is never retried.
///
/// With [`with_revocations`](Self::with_revocations), every answer from the
/// cache is checked against the broker's revocation set first: a revoked
/// token is dropped and a new one asked for, so a token revoked at the
/// broker is not handed out again once the set has heard of it.
///
/// Clones share the cache and the task, which stops with the last clone.
#[derive(Clone)]
pub struct JwtSource {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    task: TaskGuard,
}

struct Shared {
    client: WorkloadClient,
    spiffe_id: Option<SpiffeId>,
    cache: ArcSwap<HashMap<Audience, Arc<Cached>>>,
    /// Wakes the renewer when the cache gains a token.
    added: Notify,
    /// Checked on every answer from the cache, when set.
    revocations: ArcSwapOption<RevocationWatch>,
}

/// A cached token and when to renew it.
struct Cached {
    svid: Arc<JwtSvid>,
    renew_at: i64,
    /// Asked for since it was fetched.
    used: AtomicBool,
}

impl fmt::Debug for JwtSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut audiences: Vec<String> = self
            .inner
            .shared
            .cache
            .load()
            .keys()
            .map(|a| a.as_str().to_owned())
            .collect();
        audiences.sort_unstable();
        f.debug_struct("JwtSource")
            .field("spiffe_id", &self.inner.shared.spiffe_id)
            .field("cached_audiences", &audiences)
            .field("renewing", &self.inner.task)
            .finish()
    }
}

impl JwtSource {
    /// A source of JWT-SVIDs for the first identity the agent gives this
    /// workload for each audience. Asks nothing of the agent until the
    /// first [`jwt`](Self::jwt). Must be called inside a Tokio runtime.
    pub fn new(client: WorkloadClient) -> Self {
        Self::start(client, None)
    }

    /// A source of JWT-SVIDs for `spiffe_id`, for a workload that holds
    /// several identities.
    pub fn for_spiffe_id(client: WorkloadClient, spiffe_id: SpiffeId) -> Self {
        Self::start(client, Some(spiffe_id))
    }

    fn start(client: WorkloadClient, spiffe_id: Option<SpiffeId>) -> Self {
        let shared = Arc::new(Shared {
            client,
            spiffe_id,
            cache: ArcSwap::from_pointee(HashMap::new()),
            added: Notify::new(),
            revocations: ArcSwapOption::empty(),
        });
        let task = TaskGuard::spawn({
            let shared = shared.clone();
            move |cancel| renew(shared, cancel)
        });
        JwtSource {
            inner: Arc::new(Inner { shared, task }),
        }
    }

    /// A JWT-SVID for `audience`, as a compact JWS to send as a bearer
    /// token.
    ///
    /// # Errors
    ///
    /// As [`jwt_svid`](Self::jwt_svid).
    pub async fn jwt(&self, audience: &Audience) -> Result<String, WorkloadError> {
        Ok(self.jwt_svid(audience).await?.token().to_owned())
    }

    /// A JWT-SVID for `audience`: the cached one while it is valid for
    /// another few seconds, else a fresh one from the agent.
    ///
    /// Concurrent first calls for one audience may each ask the agent
    /// (which caches, so they get the same token).
    ///
    /// # Errors
    ///
    /// When the agent must be asked, its refusal:
    /// [`WorkloadError::PermissionDenied`] if the workload's entry does not
    /// allow `audience`, [`WorkloadError::NoIdentityIssued`],
    /// [`WorkloadError::Unavailable`] when it cannot mint and has nothing
    /// cached; [`WorkloadError::InvalidResponse`] for a token that is not a
    /// JWT-SVID for `audience`.
    pub async fn jwt_svid(&self, audience: &Audience) -> Result<Arc<JwtSvid>, WorkloadError> {
        let shared = &self.inner.shared;
        let now_ms = unix_now_ms();
        let now = now_ms.div_euclid(1000);
        let cached = shared
            .cache
            .load()
            .get(audience)
            .filter(|cached| now < cached.svid.expires_at().saturating_sub(EXPIRY_MARGIN_SECS))
            .cloned();
        let mut fallback = None;
        if let Some(cached) = cached {
            match shared.revocation_check(&cached.svid, now_ms) {
                Ok(()) => {
                    cached.used.store(true, Ordering::Relaxed);
                    return Ok(cached.svid.clone());
                }
                Err(RevocationError::Stale { .. }) => fallback = Some(cached.svid.clone()),
                Err(error) => {
                    tracing::info!(audience = %audience, %error, "the cached JWT-SVID was revoked; asking for another");
                    shared.remove(audience);
                }
            }
        }
        match shared.fetch(audience).await {
            Ok(svid) => {
                let svid = Arc::new(svid);
                shared.insert(audience, svid.clone(), None);
                shared.added.notify_one();
                Ok(svid)
            }
            // The set could not tell, and the agent cannot answer: the
            // cached token, not known to be revoked, is still valid.
            Err(error) if error.is_retryable() && fallback.is_some() => {
                tracing::warn!(audience = %audience, %error, "serving the cached JWT-SVID; the revocation set is stale and the agent did not answer");
                fallback.ok_or(error)
            }
            Err(error) => Err(error),
        }
    }

    /// Checks every token handed out from the cache against `revocations`
    /// from now on (and for every clone of this source). A set past its
    /// staleness bound sends each request to the agent.
    #[must_use]
    pub fn with_revocations(self, revocations: RevocationWatch) -> Self {
        self.inner
            .shared
            .revocations
            .store(Some(Arc::new(revocations)));
        self
    }
}

impl Shared {
    /// `Ok` when no revocation set is attached or it clears `svid`.
    fn revocation_check(&self, svid: &JwtSvid, now_ms: i64) -> Result<(), RevocationError> {
        let revocations = self.revocations.load();
        let Some(watch) = revocations.as_ref() else {
            return Ok(());
        };
        watch
            .set()
            .check_jwt_ms(svid.spiffe_id(), svid.jti(), svid.issued_at(), now_ms)
    }

    async fn fetch(&self, audience: &Audience) -> Result<JwtSvid, WorkloadError> {
        self.client
            .fetch_jwt_svid(audience, self.spiffe_id.as_ref())
            .await
    }

    /// Caches `svid`; `previous` is the token it replaces, if any.
    fn insert(&self, audience: &Audience, svid: Arc<JwtSvid>, previous: Option<&JwtSvid>) {
        let now = unix_now();
        let same_token = previous.is_some_and(|old| old.token() == svid.token());
        let cached = Arc::new(Cached {
            renew_at: renew_at(&svid, now, same_token),
            svid,
            used: AtomicBool::new(false),
        });
        self.cache.rcu(|cache| {
            let mut cache = HashMap::clone(cache);
            cache.insert(audience.clone(), cached.clone());
            cache
        });
    }

    fn remove(&self, audience: &Audience) {
        self.cache.rcu(|cache| {
            let mut cache = HashMap::clone(cache);
            cache.remove(audience);
            cache
        });
    }

    /// Renews the tokens due at `now`; `false` if a renewal failed.
    async fn renew_due(&self, now: i64) -> bool {
        let due: Vec<(Audience, Arc<Cached>)> = self
            .cache
            .load()
            .iter()
            .filter(|(_, cached)| cached.renew_at <= now)
            .map(|(audience, cached)| (audience.clone(), cached.clone()))
            .collect();
        let mut all_renewed = true;
        for (audience, cached) in due {
            if !cached.used.load(Ordering::Relaxed) {
                tracing::debug!(audience = %audience, "JWT-SVID unused since fetched; dropped");
                self.remove(&audience);
                continue;
            }
            match self.fetch(&audience).await {
                Ok(svid) => self.insert(&audience, Arc::new(svid), Some(&cached.svid)),
                Err(error) if !error.is_retryable() => {
                    tracing::error!(audience = %audience, %error, "cannot renew the JWT-SVID; dropped");
                    self.remove(&audience);
                }
                Err(error) => {
                    tracing::warn!(
                        audience = %audience,
                        %error,
                        "renewing the JWT-SVID failed; the cached one is served meanwhile"
                    );
                    if cached.svid.expires_at() <= now {
                        self.remove(&audience);
                    }
                    all_renewed = false;
                }
            }
        }
        all_renewed
    }

    /// When the next renewal is due, if any token is cached.
    fn next_renewal(&self) -> Option<i64> {
        self.cache
            .load()
            .values()
            .map(|cached| cached.renew_at)
            .min()
    }
}

/// Renews cached tokens as they come due, until cancelled.
async fn renew(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut backoff = agent_backoff();
    let mut not_before: Option<tokio::time::Instant> = None;
    loop {
        let now = unix_now();
        let wait = shared
            .next_renewal()
            .map(|at| Duration::from_secs(u64::try_from(at - now).unwrap_or(0)));
        let wake_at = wait.map(|wait| {
            let at = tokio::time::Instant::now() + wait;
            not_before.map_or(at, |retry| at.max(retry))
        });
        tokio::select! {
            () = cancel.cancelled() => return,
            () = shared.added.notified() => continue,
            () = sleep_until(wake_at) => {}
        }
        if shared.renew_due(unix_now()).await {
            backoff.reset();
            not_before = None;
        } else {
            not_before = Some(tokio::time::Instant::now() + backoff.next_delay());
        }
    }
}

/// Sleeps until `at`, or forever when `None`.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// When to renew `svid`, fetched at `now`: at [`RENEW_AT`] of its
/// lifetime, and at least a second away. When the agent handed back the
/// token it had already given (its cache lives by its own clock), wait
/// half of what is left instead, so the two do not ping-pong.
fn renew_at(svid: &JwtSvid, now: i64, same_token: bool) -> i64 {
    let expires_at = svid.expires_at();
    let earliest = now.saturating_add(MIN_RENEW_INTERVAL_SECS);
    if same_token {
        return earliest.max(now.saturating_add((expires_at - now) / 2));
    }
    let issued_at = svid.issued_at().filter(|&iat| iat <= now).unwrap_or(now);
    let lifetime = expires_at.saturating_sub(issued_at).max(0);
    // Lifetimes are minutes, so the conversion through f64 is exact.
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let renew_after = (lifetime as f64 * RENEW_AT) as i64;
    earliest.max(issued_at.saturating_add(renew_after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use zeroize::Zeroizing;

    fn svid(iat: Option<i64>, exp: i64) -> JwtSvid {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","kid":"k"}"#);
        let mut claims = serde_json::json!({
            "sub": "spiffe://example.org/api", "aud": "db", "exp": exp,
        });
        if let Some(iat) = iat {
            claims["iat"] = iat.into();
        }
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let token = format!("{header}.{claims}.c2ln");
        JwtSvid::parse(
            Zeroizing::new(token),
            "spiffe://example.org/api",
            String::new(),
        )
        .unwrap()
    }

    #[test]
    fn renewal_is_due_at_half_life() {
        assert_eq!(renew_at(&svid(Some(1000), 1300), 1000, false), 1150);
        // Fetched later than issued: still half of the token's own life.
        assert_eq!(renew_at(&svid(Some(1000), 1300), 1100, false), 1150);
        // No iat: half of what is left from the fetch.
        assert_eq!(renew_at(&svid(None, 1300), 1000, false), 1150);
        // Never in the past, never sooner than a second.
        assert_eq!(renew_at(&svid(Some(1000), 1300), 1200, false), 1201);
        assert_eq!(renew_at(&svid(Some(1000), 1000), 1000, false), 1001);
        // The agent's cached token again: half of what is left.
        assert_eq!(renew_at(&svid(Some(1000), 1300), 1160, true), 1230);
    }
}
