//! The agent follows the broker's revocation set, so that the Workload
//! API's `ValidateJWTSVID` honours revocation without asking the broker,
//! and X.509 answers carry the broker's CRL.
//!
//! The watch is opened over plain TLS (the stream is open to any TLS
//! client) and retried in the background until it starts; until then, and
//! whenever the set is older than its staleness bound, validation fails
//! closed with Unavailable.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use mayfly_sdk::jwt::ValidatedJwtSvid;
use mayfly_sdk::revocation::{RevocationError, RevocationWatch};
use tokio_util::sync::CancellationToken;

use super::status::WorkloadError;
use super::upstream::Upstream;
use crate::cli::connect;

/// The agent's view of the broker's revocations.
#[derive(Debug, Default)]
pub(crate) struct Revocations {
    watch: ArcSwapOption<RevocationWatch>,
}

impl Revocations {
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
        let client = connect::broker(server, roots_pem, None)
            .await
            .map_err(|e| e.to_string())?;
        let watch = RevocationWatch::builder()
            .first_update_timeout(patience)
            .start_with_client(client)
            .await
            .map_err(|e| e.to_string())?;
        self.watch.store(Some(Arc::new(watch)));
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
