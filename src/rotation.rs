//! Key rotation, as the broker runs it.
//!
//! The CA crate keeps the rotation journal and does each step
//! ([`CertificateAuthority::rotate_due`] and the operator's root steps).
//! [`Rotation`] drives it: every [`Rotation::run`] tick it takes the due
//! automatic steps (intermediate CA and JWT key), and for every step,
//! automatic or an operator's, it writes an audit record, republishes the
//! bundle (the sequence goes up and every `WatchBundle` and Workload API
//! stream gets it at once), refreshes the validator of the mint path, and
//! tells the tasks that depend on the CA's signers (the broker's TLS
//! certificate, the CRL, the replica's published keys) through
//! [`Rotation::changes`].

use std::sync::Arc;
use std::time::Duration;

use mayfly_ca::{CaError, CertificateAuthority, RotationEvent};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::bundle::BundlePublisher;
use crate::audit::{AuditEvent, AuditLog, Outcome};
use crate::clock::Clock;
use crate::mint::Minter;

/// Drives the CA's rotation and publishes its effects.
#[derive(Debug)]
pub struct Rotation {
    ca: Arc<CertificateAuthority>,
    bundle: Arc<BundlePublisher>,
    minter: Arc<Minter>,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
    changes: watch::Sender<u64>,
}

impl Rotation {
    /// Wires rotation to the served bundle and the mint path.
    pub fn new(
        ca: Arc<CertificateAuthority>,
        bundle: Arc<BundlePublisher>,
        minter: Arc<Minter>,
        audit: AuditLog,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let (changes, _) = watch::channel(ca.generation());
        Rotation {
            ca,
            bundle,
            minter,
            audit,
            clock,
            changes,
        }
    }

    /// The CA.
    pub fn ca(&self) -> &Arc<CertificateAuthority> {
        &self.ca
    }

    /// The served bundle.
    pub fn bundle(&self) -> &Arc<BundlePublisher> {
        &self.bundle
    }

    /// Ticks with the CA's generation after every step that changed it.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Takes the automatic steps that are due now.
    ///
    /// # Errors
    ///
    /// The CA's error; steps already taken stay taken (each is persisted on
    /// its own) and are published.
    pub async fn tick(&self) -> Result<Vec<RotationEvent>, CaError> {
        let result = self.ca.rotate_due(self.clock.now());
        self.record("ca.rotate", "server", result).await
    }

    /// Audits `result`'s events (or its refusal) under `action` by
    /// `actor`, and publishes what changed.
    ///
    /// # Errors
    ///
    /// `result`'s error, after auditing it.
    pub async fn record(
        &self,
        action: &str,
        actor: &str,
        result: Result<Vec<RotationEvent>, CaError>,
    ) -> Result<Vec<RotationEvent>, CaError> {
        match &result {
            Ok(events) => {
                for event in events {
                    tracing::info!(%event, "CA rotation");
                    self.append(AuditEvent {
                        action: action.to_owned(),
                        actor: actor.to_owned(),
                        outcome: Outcome::Ok,
                        reason: Some(event.detail.clone()),
                        detail: Some(serde_json::json!({
                            "authority": event.kind.as_str(),
                            "id": event.id,
                            "from": event.from.map(|s| s.as_str()),
                            "to": event.to.as_str(),
                        })),
                        ..AuditEvent::default()
                    })
                    .await;
                }
            }
            Err(error) if action != "ca.rotate" => {
                self.append(AuditEvent {
                    action: action.to_owned(),
                    actor: actor.to_owned(),
                    outcome: Outcome::Refused,
                    reason: Some(error.to_string()),
                    ..AuditEvent::default()
                })
                .await;
            }
            Err(_) => {}
        }
        self.publish();
        result
    }

    /// Republishes the bundle, refreshes the mint path's validator and
    /// wakes the dependent tasks if the CA changed.
    pub fn publish(&self) {
        match self.bundle.refresh() {
            Ok(true) => {
                if let Err(error) = self
                    .minter
                    .set_jwt_authorities(&self.bundle.jwt_authorities())
                {
                    tracing::error!(%error, "cannot update the JWT validator after a rotation");
                }
            }
            Ok(false) => {}
            Err(error) => tracing::error!(%error, "cannot republish the bundle after a rotation"),
        }
        let generation = self.ca.generation();
        self.changes.send_if_modified(|current| {
            let changed = *current != generation;
            *current = generation;
            changed
        });
    }

    async fn append(&self, event: AuditEvent) {
        if let Err(error) = self.audit.append(event).await {
            tracing::error!(%error, "cannot write the audit record of a CA rotation step");
        }
    }

    /// Ticks every `interval` until `cancel` fires.
    pub async fn run(self: Arc<Self>, interval: Duration, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            if let Err(error) = self.tick().await {
                tracing::error!(%error, "a due CA rotation step failed; will retry");
            }
        }
    }
}
