//! `WatchRevocations`: the revocation set, streamed to verifiers.
//!
//! A stream starts with the whole set (`full`, in pages of at most [`PAGE`]
//! revocations, each but the last marked `more`), then sends each change as
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

/// The most revocations in one message: a larger full set goes in pages
/// (`more`), read from the index one page at a time, so a subscriber's sync
/// of a million revocations holds a page's worth of them, not a million.
pub const PAGE: usize = 1024;

/// Messages queued for one subscriber.
const STREAM_BUFFER: usize = 4;

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
        // Short: a message may be a page of the full set, and the index's
        // broadcast behind it is the buffer of changes.
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
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

    /// Sends the whole set, `pages` of at most [`PAGE`]: the first with
    /// `full` (and `crl`), each but the last with `more`; an empty set is one
    /// empty page. Each page is read when the subscriber has taken the ones
    /// before it. False once the subscriber is gone.
    async fn send_full(
        &self,
        tx: &mpsc::Sender<Result<pb::RevocationUpdate, Status>>,
        pages: impl Iterator<Item = Vec<Arc<Revocation>>>,
        crl: Option<&Arc<Vec<u8>>>,
    ) -> bool {
        let mut pages = pages.peekable();
        let mut first = true;
        loop {
            let page = pages.next().unwrap_or_default();
            let more = pages.peek().is_some();
            let update = pb::RevocationUpdate {
                full: first,
                upserted: page.iter().map(|r| r.to_proto()).collect(),
                fresh_as_of_ms: self.fresh_as_of_ms(),
                crl: crl
                    .filter(|_| first)
                    .map(|c| c.as_ref().clone())
                    .unwrap_or_default(),
                more,
                ..pb::RevocationUpdate::default()
            };
            if tx.send(Ok(update)).await.is_err() {
                return false;
            }
            if !more {
                return true;
            }
            first = false;
        }
    }

    async fn forward(self, tx: mpsc::Sender<Result<pb::RevocationUpdate, Status>>) {
        let (pages, mut changes) = self.set.subscribe_pages(PAGE);
        let mut crl = self.crl.clone();
        let current = crl.borrow_and_update().clone();
        if !self.send_full(&tx, pages, current.as_ref()).await {
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
                    // The set was replaced, or this subscriber was too slow to follow
                    // every change: start over with the whole set, as it is now.
                    Ok(RevocationChange::Full) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        if !self.send_full(&tx, self.set.pages(PAGE), None).await {
                            return;
                        }
                        continue;
                    }
                    Ok(change) => self.change(change),
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
            // Sent by `send_full`, in pages.
            RevocationChange::Full => {}
            RevocationChange::Upserted(revocation) => update.upserted = vec![revocation.to_proto()],
            RevocationChange::Removed(key) => update.removed = vec![key],
        }
        update
    }
}

#[cfg(test)]
mod tests {
    use mayfly_sdk::revocation::RevocationKind;
    use tokio_stream::StreamExt as _;

    use super::*;

    fn jti(n: usize) -> Revocation {
        Revocation::new(RevocationKind::Jti, &format!("t{n}"), 1, Some(i64::MAX / 2)).unwrap()
    }

    async fn next(stream: &mut RevocationStream) -> pb::RevocationUpdate {
        tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("a message within 5 s")
            .expect("the stream goes on")
            .expect("not an error")
    }

    /// Messages up to the first without `more`, skipping heartbeats before it.
    async fn full_set(stream: &mut RevocationStream) -> Vec<pb::RevocationUpdate> {
        let mut first = next(stream).await;
        while !first.full {
            assert!(!first.more, "`more` without a full set begun");
            first = next(stream).await;
        }
        let mut pages = vec![first];
        while pages.last().unwrap().more {
            pages.push(next(stream).await);
        }
        pages
    }

    /// The start and a resync (the set replaced, as a replica following its store does)
    /// both come as a full set in pages; a change after a resync comes on its own.
    #[tokio::test]
    async fn the_start_and_a_resync_come_in_pages() {
        let set = Arc::new(RevocationSet::authoritative());
        for n in 0..PAGE + 3 {
            set.upsert(jti(n));
        }
        let (_crl, crl) = watch::channel(None);
        let feed = RevocationFeed {
            set: Arc::clone(&set),
            crl,
            clock: Arc::new(crate::clock::SystemClock),
            shutdown: CancellationToken::new(),
        };
        let mut stream = feed.stream();
        let pages = full_set(&mut stream).await;
        assert_eq!(pages.len(), 2);
        assert!(pages[0].full && pages[0].more);
        assert!(!pages[1].full && !pages[1].more);
        assert_eq!(pages[0].upserted.len() + pages[1].upserted.len(), PAGE + 3);

        set.replace_all((0..2).map(jti));
        let pages = full_set(&mut stream).await;
        assert_eq!(pages.len(), 1, "two revocations fit a page");
        let mut values: Vec<_> = pages[0].upserted.iter().map(|r| r.value.clone()).collect();
        values.sort();
        assert_eq!(values, ["t0", "t1"]);

        set.upsert(jti(7));
        let mut update = next(&mut stream).await;
        while update.upserted.is_empty() {
            update = next(&mut stream).await;
        }
        assert!(!update.full && !update.more);
        assert_eq!(update.upserted[0].value, "t7");
    }
}
