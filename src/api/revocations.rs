//! `WatchRevocations`: the revocation set, streamed to verifiers.
//!
//! A stream starts with the whole set (`full`), then sends each change as
//! the index applies it, and a heartbeat every [`HEARTBEAT`]. Every message
//! carries `fresh_as_of_ms`, the moment this broker's own index last heard
//! from its source, so a subscriber ages with the broker: when the broker
//! loses Redis, its subscribers go stale with it and fail closed.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::revocation::{Revocation, RevocationChange, RevocationSet};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::clock::Clock;

/// How often an idle stream says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(2);

/// The stream type of `WatchRevocations`.
pub type RevocationStream =
    Pin<Box<dyn Stream<Item = Result<pb::RevocationUpdate, Status>> + Send + 'static>>;

/// What the stream is made of.
#[derive(Debug, Clone)]
pub struct RevocationFeed {
    /// The index.
    pub set: Arc<RevocationSet>,
    /// The current CRL (DER), if one is published.
    pub crl: watch::Receiver<Option<Arc<Vec<u8>>>>,
    /// The clock (freshness of an authoritative index is "now").
    pub clock: Arc<dyn Clock>,
    /// Ends every stream at shutdown.
    pub shutdown: CancellationToken,
}

impl RevocationFeed {
    /// Starts one subscriber's stream.
    pub fn stream(&self) -> RevocationStream {
        let (tx, rx) = mpsc::channel(64);
        let feed = self.clone();
        tokio::spawn(async move { feed.forward(tx).await });
        Box::pin(ReceiverStream::new(rx))
    }

    fn fresh_as_of_ms(&self) -> i64 {
        match self.set.staleness_bound() {
            None => crate::clock::unix_millis(self.clock.now()),
            Some(_) => self.set.last_heard_ms().unwrap_or(0),
        }
    }

    fn full(&self, all: &[Arc<Revocation>], crl: Option<&Arc<Vec<u8>>>) -> pb::RevocationUpdate {
        pb::RevocationUpdate {
            full: true,
            upserted: all.iter().map(|r| r.to_proto()).collect(),
            removed: Vec::new(),
            fresh_as_of_ms: self.fresh_as_of_ms(),
            crl: crl.map(|c| c.as_ref().clone()).unwrap_or_default(),
        }
    }

    async fn forward(self, tx: mpsc::Sender<Result<pb::RevocationUpdate, Status>>) {
        let (snapshot, mut changes) = self.set.subscribe();
        let mut crl = self.crl.clone();
        let first = self.full(&snapshot, crl.borrow_and_update().as_ref());
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.tick().await;
        let mut crl_open = true;
        loop {
            let update = tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tx.closed() => return,
                change = changes.recv() => match change {
                    Ok(change) => self.change(change),
                    // Too slow to follow every change: start over with the whole set.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.full(&self.set.snapshot(), None)
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                changed = crl.changed(), if crl_open => {
                    if changed.is_err() {
                        crl_open = false;
                        continue;
                    }
                    let der = crl.borrow_and_update().clone();
                    pb::RevocationUpdate {
                        fresh_as_of_ms: self.fresh_as_of_ms(),
                        crl: der.map(|c| c.as_ref().clone()).unwrap_or_default(),
                        ..pb::RevocationUpdate::default()
                    }
                }
                _ = heartbeat.tick() => pb::RevocationUpdate {
                    fresh_as_of_ms: self.fresh_as_of_ms(),
                    ..pb::RevocationUpdate::default()
                },
            };
            if tx.send(Ok(update)).await.is_err() {
                return;
            }
        }
    }

    fn change(&self, change: RevocationChange) -> pb::RevocationUpdate {
        let mut update = pb::RevocationUpdate {
            fresh_as_of_ms: self.fresh_as_of_ms(),
            ..pb::RevocationUpdate::default()
        };
        match change {
            RevocationChange::Full(all) => {
                update.full = true;
                update.upserted = all.iter().map(|r| r.to_proto()).collect();
            }
            RevocationChange::Upserted(revocation) => update.upserted = vec![revocation.to_proto()],
            RevocationChange::Removed(key) => update.removed = vec![key],
        }
        update
    }
}
