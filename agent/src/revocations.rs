//! The agent follows the broker's revocation set, so that the Workload
//! API's `ValidateJWTSVID` honours revocation without asking the broker,
//! X.509 answers carry the broker's CRL, and no credential the agent holds
//! is handed out again once it is revoked: a cached JWT-SVID is checked on
//! every hit, and a change that may cover a workload X509-SVID wakes the
//! sync loop, which replaces the SVID (or withdraws it, when the broker
//! refuses to mint for a revoked identity).
//!
//! The watch is opened over plain TLS (the stream is open to any TLS
//! client) and retried in the background until it starts; until then, and
//! whenever the set is older than its staleness bound, validation fails
//! closed with Unavailable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use mayfly_sdk::SpiffeId;
use mayfly_sdk::jwt::ValidatedJwtSvid;
use mayfly_sdk::revocation::{
    Revocation, RevocationChange, RevocationError, RevocationKind, RevocationWatch,
};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use super::jwt_cache::CachedJwt;
use super::snapshot::WorkloadSvid;
use super::status::WorkloadError;
use super::upstream::Upstream;

/// The agent's view of the broker's revocations.
#[derive(Debug)]
pub(crate) struct Revocations {
    watch: ArcSwapOption<RevocationWatch>,
    signal: Arc<ChangeSignal>,
}

/// How a revocation change reaches the sync loop.
#[derive(Debug)]
struct ChangeSignal {
    /// The sync loop's wake-up.
    wake: Arc<Notify>,
    /// An identity revocation was added or lifted since the sync loop last
    /// looked: entries the broker refused may mint now, or not any more.
    identities_changed: AtomicBool,
}

impl ChangeSignal {
    /// Wakes the sync loop for a change that may cover a workload
    /// X509-SVID; a `jti` needs nothing (JWT-SVIDs are checked on use), nor
    /// does a serial revocation that expired.
    fn note(&self, change: &RevocationChange) {
        let kind = match change {
            RevocationChange::Full => None,
            RevocationChange::Upserted(revocation) => Some((revocation.kind, true)),
            RevocationChange::Removed(key) => key
                .split_once(':')
                .and_then(|(kind, _)| kind.parse::<RevocationKind>().ok())
                .map(|kind| (kind, false)),
        };
        match kind {
            Some((RevocationKind::Jti, _) | (RevocationKind::Serial, false)) => {}
            Some((RevocationKind::Serial, true)) => self.wake.notify_one(),
            None | Some(_) => {
                self.identities_changed.store(true, Ordering::Release);
                self.wake.notify_one();
            }
        }
    }
}

impl Revocations {
    /// Revocations that wake the sync loop through `wake`.
    pub(crate) fn new(wake: Arc<Notify>) -> Self {
        Revocations {
            watch: ArcSwapOption::empty(),
            signal: Arc::new(ChangeSignal {
                wake,
                identities_changed: AtomicBool::new(false),
            }),
        }
    }

    /// Whether a cached JWT-SVID may be handed out again without asking the
    /// broker: the set is fresh and covers it not. A stale set sends the
    /// caller to the broker.
    pub(crate) fn may_reuse_jwt(&self, subject: &SpiffeId, jwt: &CachedJwt, now_ms: i64) -> bool {
        let watch = self.watch.load();
        let Some(watch) = watch.as_ref() else {
            return false;
        };
        match watch
            .set()
            .check_jwt_ms(subject, jwt.jti.as_deref(), jwt.issued_at, now_ms)
        {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(%subject, %error, "not reusing a cached JWT-SVID");
                false
            }
        }
    }

    /// The revocation the agent knows of that covers a JWT-SVID it holds,
    /// however old its picture: for serving from the cache while the broker
    /// is out of reach.
    pub(crate) fn known_jwt_revocation(
        &self,
        subject: &SpiffeId,
        jwt: &CachedJwt,
        now: i64,
    ) -> Option<RevocationError> {
        let watch = self.watch.load();
        watch
            .as_ref()?
            .set()
            .check_jwt_known(subject, jwt.jti.as_deref(), jwt.issued_at, now)
            .err()
    }

    /// The revocation the agent knows of that covers a workload X509-SVID
    /// it holds. Staleness is not judged here: while the broker is out of
    /// reach the agent serves what it holds and has not heard revoked.
    pub(crate) fn known_x509_revocation(
        &self,
        svid: &WorkloadSvid,
        now: i64,
    ) -> Option<RevocationError> {
        let watch = self.watch.load();
        watch
            .as_ref()?
            .set()
            .check_x509_known(&svid.spiffe_id, &svid.serial, svid.not_before, now)
            .err()
    }

    /// The revocation that stops minting for `subject`, if the agent knows
    /// of one.
    pub(crate) fn minting_blocked(&self, subject: &SpiffeId) -> Option<Arc<Revocation>> {
        let watch = self.watch.load();
        watch.as_ref()?.set().minting_blocked(subject)
    }

    /// Whether an identity revocation changed since the last call.
    pub(crate) fn take_identities_changed(&self) -> bool {
        self.signal.identities_changed.swap(false, Ordering::AcqRel)
    }

    /// Checks a token that passed signature and claim checks.
    pub(crate) fn check_jwt(
        &self,
        validated: &ValidatedJwtSvid,
        now_ms: i64,
    ) -> Result<(), WorkloadError> {
        let watch = self.watch.load();
        let Some(watch) = watch.as_ref() else {
            return Err(WorkloadError::NotReady(
                "the agent has not received the broker's revocation set yet; retry shortly"
                    .to_owned(),
            ));
        };
        watch
            .set()
            .check_jwt_ms(
                &validated.spiffe_id,
                validated.jti.as_deref(),
                validated.issued_at,
                now_ms,
            )
            .map_err(|error| match error {
                RevocationError::Stale { .. } => WorkloadError::NotReady(error.to_string()),
                _ => WorkloadError::InvalidArgument(format!("invalid JWT-SVID: {error}")),
            })
    }

    /// The broker's latest CRL, for the Workload API's `crl` fields.
    pub(crate) fn crl(&self) -> Vec<Vec<u8>> {
        self.watch
            .load()
            .as_ref()
            .and_then(|watch| watch.crl())
            .map(|der| vec![der.to_vec()])
            .unwrap_or_default()
    }

    /// Whether the watch has started.
    pub(crate) fn is_following(&self) -> bool {
        self.watch.load().is_some()
    }

    /// One attempt to open the watch, waiting at most `patience` for the
    /// broker's first full set.
    ///
    /// # Errors
    ///
    /// Why it did not start, without secrets.
    pub(crate) async fn start_once(
        &self,
        server: &str,
        roots_pem: &[u8],
        patience: Duration,
    ) -> Result<(), String> {
        let client = mayfly_sdk::client::connect_broker(server, roots_pem, None)
            .await
            .map_err(|e| e.to_string())?;
        let watch = RevocationWatch::builder()
            .first_update_timeout(patience)
            .start_with_client(client)
            .await
            .map_err(|e| e.to_string())?;
        // Ends when the watch is replaced or dropped (its set with it).
        tokio::spawn(forward_changes(watch.set().changes(), self.signal.clone()));
        self.watch.store(Some(Arc::new(watch)));
        // A full set just arrived: what the agent holds is checked again.
        self.signal.note(&RevocationChange::Full);
        tracing::info!("following the broker's revocations");
        Ok(())
    }

    /// Opens the watch, retrying with backoff until it starts, and opens it
    /// again (trusting the new roots) whenever the broker's roots change: a
    /// root rotation moves the broker's TLS certificate to a new root. Runs
    /// until `cancel` fires.
    pub(crate) async fn follow(
        self: Arc<Self>,
        upstream: Arc<Upstream>,
        cancel: CancellationToken,
    ) {
        let mut roots_changed = upstream.roots_changed();
        loop {
            let mut delay = Duration::from_millis(100);
            while !self.is_following() {
                let roots = upstream.trusted_roots_pem();
                let result = tokio::select! {
                    () = cancel.cancelled() => return,
                    result = self.start_once(upstream.server(), &roots, Duration::from_secs(10)) => result,
                };
                if let Err(error) = result {
                    tracing::warn!(%error, "cannot follow the broker's revocations yet; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = roots_changed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            // New roots: a new watch over a channel that trusts them; the
            // old one serves until the new one has its first full set.
            let roots = upstream.trusted_roots_pem();
            if let Err(error) = self
                .start_once(upstream.server(), &roots, Duration::from_secs(10))
                .await
            {
                tracing::warn!(%error, "cannot re-open the revocation watch with the new roots; keeping the old one");
            }
        }
    }
}

/// Passes the set's changes to the sync loop until the set is gone.
async fn forward_changes(
    mut changes: broadcast::Receiver<RevocationChange>,
    signal: Arc<ChangeSignal>,
) {
    loop {
        match changes.recv().await {
            Ok(change) => signal.note(&change),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                signal.note(&RevocationChange::Full);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
