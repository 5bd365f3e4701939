//! The change feed: the task behind [`RedisStore::subscribe`], following
//! pub/sub messages, polling the version and resyncing (the protocol is on
//! the type's docs), and reconnecting with backoff.

use std::time::{Duration, SystemTime};

use mayfly_sdk::backoff::Backoff;
use mayfly_sdk::revocation::Revocation;
use redis::aio::{PubSubSink, PubSubStream};
use redis::{RedisError, Value};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tokio_stream::StreamExt as _;

use super::codec::decode_message;
use super::connection::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
use super::{RedisStore, StoreError, StoreEvent};
use crate::audience::AudienceRecord;
use crate::policy::Entry;

/// What a resync reads: entries, revocations, audiences and the version.
type Snapshot = (Vec<Entry>, Vec<Revocation>, Vec<AudienceRecord>, u64);

/// The shortest poll interval accepted.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// The longest wait for in-flight messages before a poll resyncs.
const MAX_CATCH_UP: Duration = Duration::from_millis(250);
/// The change feed's reconnect backoff: first delay and cap.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Events buffered for a slow subscriber before the feed task waits.
const EVENT_BUFFER: usize = 1024;

impl RedisStore {
    /// Sets how often the change feed
    /// ([`Store::subscribe`](crate::store::Store::subscribe)) checks the
    /// version and sends a heartbeat (default 1 s, at least 10 ms). Applies
    /// to feeds subscribed afterwards.
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(MIN_POLL_INTERVAL);
        self
    }

    /// The entries, revocations, audiences and version, read in one
    /// transaction.
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut connection = self.commands.clone();
        type Rows = Vec<(String, String)>;
        let (mut entries, mut revocations, mut audiences, version): (
            Rows,
            Rows,
            Rows,
            Option<u64>,
        ) = redis::pipe()
            .atomic()
            .cmd("HGETALL")
            .arg(&self.names.entries)
            .cmd("HGETALL")
            .arg(&self.names.revocations)
            .cmd("HGETALL")
            .arg(&self.names.audiences)
            .cmd("GET")
            .arg(&self.names.version)
            .query_async(&mut connection)
            .await
            .map_err(|error| self.backend(&error))?;
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        revocations.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let entries = entries
            .iter()
            .map(|(id, json)| self.decode("entry", id, json))
            .collect::<Result<_, _>>()?;
        let revocations = revocations
            .iter()
            .map(|(key, json)| self.decode("revocation", key, json))
            .collect::<Result<_, _>>()?;
        audiences.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let audiences = audiences
            .iter()
            .map(|(name, json)| self.decode("audience", name, json))
            .collect::<Result<_, _>>()?;
        Ok((entries, revocations, audiences, version.unwrap_or(0)))
    }

    /// The change counter.
    async fn version(&self) -> Result<u64, StoreError> {
        let version: Option<u64> = self
            .query(redis::cmd("GET").arg(&self.names.version))
            .await?;
        Ok(version.unwrap_or(0))
    }
}

/// Spawns the feed task for `store` on the current runtime and returns its
/// receiver (see [`RedisStore::subscribe`]).
pub(super) fn subscribe(store: &RedisStore) -> mpsc::Receiver<StoreEvent> {
    let (events, receiver) = mpsc::channel(EVENT_BUFFER);
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            let feed = Feed {
                store: store.clone(),
                events,
                last_version: 0,
            };
            runtime.spawn(feed.run());
        }
        Err(_) => {
            // Without a runtime there is no feed: say so, and close the
            // channel, so the subscriber's view never counts as fresh.
            tracing::error!("RedisStore::subscribe called outside a Tokio runtime");
            let _ = events.try_send(StoreEvent::Lost {
                reason: "the redis change feed needs a Tokio runtime".to_owned(),
            });
        }
    }
    receiver
}

/// Why a feed session ended.
enum End {
    /// The receiver was dropped: stop.
    Closed,
    /// Redis cannot be reached, or its state cannot be read: reconnect.
    Lost(String),
}

/// The task behind [`RedisStore::subscribe`] (see "Change feed" on
/// [`RedisStore`]).
struct Feed {
    store: RedisStore,
    events: mpsc::Sender<StoreEvent>,
    /// The version the subscriber's view is complete up to.
    last_version: u64,
}

impl Feed {
    async fn run(mut self) {
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        loop {
            let reason = match self.session(&mut backoff).await {
                End::Closed => return,
                End::Lost(reason) => reason,
            };
            tracing::warn!(%reason, "redis change feed lost; reconnecting");
            if self.send(StoreEvent::Lost { reason }).await.is_err() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = self.events.closed() => return,
            }
        }
    }

    /// Subscribes, resyncs, then follows messages and polls until the
    /// connection is lost or the receiver dropped.
    async fn session(&mut self, backoff: &mut Backoff) -> End {
        let (mut sink, mut stream) = match self.open().await {
            Ok(feed) => feed,
            Err(reason) => return End::Lost(reason),
        };
        if let Err(end) = self.resync().await {
            return end;
        }
        backoff.reset();
        let interval = self.store.poll_interval;
        let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let step = tokio::select! {
                () = self.events.closed() => Err(End::Closed),
                message = stream.next() => match message {
                    Some(message) => self.on_message(message.get_payload_bytes()).await,
                    None => Err(self.feed_closed()),
                },
                _ = ticker.tick() => self.poll(&mut sink, &mut stream).await,
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// A pub/sub connection subscribed to the change channel.
    async fn open(&self) -> Result<(PubSubSink, PubSubStream), String> {
        let server = &self.store.names.server;
        let subscribe = async {
            let mut pubsub = self.store.client.get_async_pubsub().await?;
            pubsub.subscribe(&self.store.names.events).await?;
            Ok::<_, RedisError>(pubsub.split())
        };
        match timeout(CONNECT_TIMEOUT, subscribe).await {
            Ok(Ok(feed)) => Ok(feed),
            Ok(Err(error)) => Err(format!("cannot subscribe to redis {server}: {error}")),
            Err(_) => Err(format!(
                "redis {server} did not answer SUBSCRIBE within {}s",
                CONNECT_TIMEOUT.as_secs()
            )),
        }
    }

    fn feed_closed(&self) -> End {
        End::Lost(format!(
            "pub/sub connection to redis {} closed",
            self.store.names.server
        ))
    }

    /// Sends the whole state, then a heartbeat.
    async fn resync(&mut self) -> Result<(), End> {
        let heard_at = now_millis();
        let (entries, revocations, audiences, version) = self
            .store
            .snapshot()
            .await
            .map_err(|error| End::Lost(error.to_string()))?;
        self.send(StoreEvent::Snapshot {
            entries,
            revocations,
        })
        .await?;
        self.send(StoreEvent::AudiencesReplaced(audiences)).await?;
        self.last_version = version;
        self.send(StoreEvent::Heard(heard_at)).await
    }

    async fn on_message(&mut self, payload: &[u8]) -> Result<(), End> {
        match decode_message(payload) {
            Ok((version, _)) if version <= self.last_version => Ok(()),
            Ok((version, Some(event))) if self.last_version.checked_add(1) == Some(version) => {
                self.send(event).await?;
                self.last_version = version;
                Ok(())
            }
            Ok((version, _)) => {
                tracing::debug!(
                    version,
                    last_version = self.last_version,
                    "missed or unknown change message; resyncing"
                );
                self.resync().await
            }
            Err(reason) => {
                tracing::warn!(%reason, "resyncing");
                self.resync().await
            }
        }
    }

    /// Checks both connections and the version; sends a heartbeat when the
    /// view is complete.
    async fn poll(&mut self, sink: &mut PubSubSink, stream: &mut PubSubStream) -> Result<(), End> {
        let heard_at = now_millis();
        // The pub/sub socket is separate from the command connection: a
        // half-open one would otherwise go unnoticed.
        match timeout(RESPONSE_TIMEOUT, sink.ping::<Value>()).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return Err(self.feed_closed()),
        }
        let version = match self.store.version().await {
            Ok(version) => version,
            Err(error) => {
                return self
                    .send(StoreEvent::Lost {
                        reason: error.to_string(),
                    })
                    .await;
            }
        };
        if version > self.last_version {
            self.catch_up(version, stream).await?;
        }
        if version != self.last_version {
            tracing::debug!(
                version,
                last_version = self.last_version,
                "change feed behind; resyncing"
            );
            return self.resync().await;
        }
        self.send(StoreEvent::Heard(heard_at)).await
    }

    /// Applies messages already on their way, for a moment, so that a write
    /// seen by the poll before its message does not cost a resync.
    async fn catch_up(&mut self, version: u64, stream: &mut PubSubStream) -> Result<(), End> {
        let deadline = Instant::now() + (self.store.poll_interval / 4).min(MAX_CATCH_UP);
        while self.last_version < version {
            // Only the wait is timed, never the handling of a message, so
            // no message is ever half applied.
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(message)) => self.on_message(message.get_payload_bytes()).await?,
                Ok(None) => return Err(self.feed_closed()),
                Err(_) => break,
            }
        }
        Ok(())
    }

    async fn send(&self, event: StoreEvent) -> Result<(), End> {
        self.events.send(event).await.map_err(|_| End::Closed)
    }
}

fn now_millis() -> i64 {
    crate::clock::unix_millis(SystemTime::now())
}
