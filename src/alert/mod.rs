//! Alerts: messages the broker sends to people, not to workloads — today the owners'
//! governance digest ([`crate::governance::digest`]); the same sink serves every later kind.
//!
//! An [`AlertSink`] is a bounded queue in front of one task that delivers each alert to the
//! webhook ([`webhook`]) and tries again while the receiver is briefly away.
//!
//! Invariants, and why:
//! - **Nothing is unbounded.** The queue holds [`QUEUE_CAPACITY`] alerts; a full queue
//!   refuses the new one ([`AlertError::QueueFull`]) rather than grow, and the producer
//!   says so in the audit log. Each alert is tried at most [`webhook::MAX_TRIES`] times.
//! - **Delivery is evidence.** Each alert's fate is an audit record: `alert.delivered`, or
//!   `alert.undelivered` with the last error once every try failed, so that "the owner was
//!   told" can be shown later, with the delivery id the receiver saw.
//! - **Shutdown does not wait on a receiver:** the task stops at once when cancelled;
//!   alerts still queued are lost, and the next digest round reports the same facts again.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditEvent, AuditLog, Outcome};
use crate::clock::Clock;
use crate::telemetry::BrokerMetrics;

pub mod webhook;

pub use webhook::{Webhook, WebhookConfig, WebhookError};

/// Alerts waiting for delivery, at most.
pub const QUEUE_CAPACITY: usize = 256;

/// The actor of the audit records the sink writes.
const ACTOR: &str = "mayfly-alerts";

/// One alert: what the webhook receives as its JSON body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// What it is about (`owner-digest`); also the `Mayfly-Event` header.
    pub kind: &'static str,
    /// Unique per alert and the same on every try; also the `Mayfly-Delivery` header.
    pub delivery: String,
    /// The trust domain of the broker that sent it.
    pub trust_domain: String,
    /// Unix seconds when the broker made it.
    pub generated_at: i64,
    /// Who it is for (an entry owner), as the audit log names it.
    pub subject: String,
    /// The alert itself; its shape depends on `kind`.
    pub body: serde_json::Value,
}

impl Alert {
    /// A new alert with a fresh delivery id.
    pub fn new(
        kind: &'static str,
        trust_domain: &str,
        generated_at: i64,
        subject: &str,
        body: serde_json::Value,
    ) -> Self {
        let mut id = [0u8; 16];
        // The system RNG failing is not something the broker can run without.
        #[allow(clippy::expect_used)]
        aws_lc_rs::rand::fill(&mut id).expect("system random number generator failed");
        Alert {
            kind,
            delivery: hex::encode(id),
            trust_domain: trust_domain.to_owned(),
            generated_at,
            subject: subject.to_owned(),
            body,
        }
    }
}

/// Why an alert was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AlertError {
    /// [`QUEUE_CAPACITY`] alerts are waiting already.
    #[error("the alert queue is full ({QUEUE_CAPACITY} waiting for the webhook)")]
    QueueFull,
    /// The delivering task has stopped (the server is shutting down).
    #[error("the alert sink has stopped")]
    Stopped,
}

/// What became of one alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The receiver's URL.
    pub url: String,
    /// Tries made.
    pub tries: u32,
    /// `None` when delivered, else the last try's error.
    pub error: Option<String>,
}

/// An alert waiting, and who waits for its fate.
#[derive(Debug)]
struct Queued {
    alert: Alert,
    done: Option<oneshot::Sender<Delivery>>,
}

/// The producers' end of the queue; cheap to clone.
#[derive(Debug, Clone)]
pub struct AlertSink {
    queue: mpsc::Sender<Queued>,
}

impl AlertSink {
    /// Queues `alert` for delivery; never waits.
    ///
    /// # Errors
    /// [`AlertError::QueueFull`] when [`QUEUE_CAPACITY`] alerts wait already;
    /// [`AlertError::Stopped`] after shutdown.
    pub fn send(&self, alert: Alert) -> Result<(), AlertError> {
        self.enqueue(Queued { alert, done: None })
    }

    /// Queues `alert` and waits for its fate: every try, with the waits between them
    /// (`mayfly alerts test`).
    ///
    /// # Errors
    /// As [`send`](Self::send); [`AlertError::Stopped`] if the server stops first.
    pub async fn deliver(&self, alert: Alert) -> Result<Delivery, AlertError> {
        let (done, fate) = oneshot::channel();
        self.enqueue(Queued {
            alert,
            done: Some(done),
        })?;
        fate.await.map_err(|_| AlertError::Stopped)
    }

    fn enqueue(&self, queued: Queued) -> Result<(), AlertError> {
        self.queue.try_send(queued).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => AlertError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => AlertError::Stopped,
        })
    }
}

/// Starts delivering to `webhook`: the sink, and the task to spawn (it runs until
/// `cancel`).
pub fn start(
    webhook: Webhook,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
    metrics: Arc<BrokerMetrics>,
    cancel: CancellationToken,
) -> (AlertSink, impl Future<Output = ()> + Send + 'static) {
    let (queue, mut waiting) = mpsc::channel::<Queued>(QUEUE_CAPACITY);
    let task = async move {
        loop {
            let queued = tokio::select! {
                () = cancel.cancelled() => return,
                queued = waiting.recv() => match queued {
                    Some(queued) => queued,
                    None => return,
                },
            };
            let delivery = tokio::select! {
                () = cancel.cancelled() => return,
                delivery = deliver(&webhook, &queued.alert, &audit, clock.as_ref(), &metrics) => delivery,
            };
            if let Some(done) = queued.done {
                // The waiter may have given up; the audit record holds the fate anyway.
                let _ = done.send(delivery);
            }
        }
    };
    (AlertSink { queue }, task)
}

/// Tries `alert` until it is delivered, a final status, or [`webhook::MAX_TRIES`]; audits
/// the outcome.
async fn deliver(
    webhook: &Webhook,
    alert: &Alert,
    audit: &AuditLog,
    clock: &dyn Clock,
    metrics: &BrokerMetrics,
) -> Delivery {
    let body = match serde_json::to_vec(alert) {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, kind = alert.kind, "cannot encode an alert");
            return Delivery {
                url: webhook.url().to_string(),
                tries: 0,
                error: Some(format!("cannot encode the alert: {error}")),
            };
        }
    };
    let mut wait = webhook::FIRST_RETRY_AFTER;
    let mut tries = 0;
    let result = loop {
        tries += 1;
        let result = webhook
            .post(alert.kind, &alert.delivery, &body, clock.unix_now())
            .await;
        match &result {
            Err(error) if error.is_transient() && tries < webhook::MAX_TRIES => {
                metrics.alert_delivery("webhook", "retried");
                tracing::info!(kind = alert.kind, delivery = %alert.delivery, %error, tries,
                    "the alert webhook did not take an alert; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(60));
            }
            _ => break result,
        }
    };
    let (action, outcome, reason) = match &result {
        Ok(()) => {
            metrics.alert_delivery("webhook", "delivered");
            ("alert.delivered", Outcome::Ok, None)
        }
        Err(error) => {
            metrics.alert_delivery("webhook", "failed");
            tracing::warn!(kind = alert.kind, delivery = %alert.delivery, url = %webhook.url(),
                %error, tries, "an alert could not be delivered");
            ("alert.undelivered", Outcome::Ok, Some(error.to_string()))
        }
    };
    let record = AuditEvent {
        action: action.into(),
        outcome,
        actor: ACTOR.into(),
        reason,
        detail: Some(serde_json::json!({
            "kind": alert.kind,
            "subject": alert.subject,
            "delivery": alert.delivery,
            "tries": tries,
            "url": webhook.url().to_string(),
        })),
        ..AuditEvent::default()
    };
    if let Err(error) = audit.append(record).await {
        tracing::warn!(%error, delivery = %alert.delivery, "cannot audit an alert's delivery");
    }
    Delivery {
        url: webhook.url().to_string(),
        tries,
        error: result.err().map(|e| e.to_string()),
    }
}
