//! [`RevocationWatch`]: the broker's `WatchRevocations` stream, followed in
//! the background into a [`RevocationSet`] that verifiers check without a
//! lock or a call.
//!
//! The set's freshness is the broker's: every message carries
//! `fresh_as_of_ms`, when the broker's own index last heard from its source,
//! and that (never the local receive time) is what the set records. A
//! broker cut off from its store therefore makes its followers stale too,
//! and a follower cut off from the broker goes stale on its own once its
//! bound passes: in both cases checks fail closed.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use super::{Revocation, RevocationSet, Staged};
use crate::backoff::Backoff;
use crate::clock::now_unix_millis as unix_now_ms;
use crate::proto::v1 as pb;
use crate::proto::v1::broker_client::BrokerClient;

/// The first wait after the stream fails.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between attempts: short, because the set is aging (and
/// failing closed once past its bound) for as long as it is cut off.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The largest message accepted. The first one is the whole set, which in a
/// large deployment can pass tonic's 4 MiB default; refusing it would leave
/// the set stale for good.
const MAX_UPDATE_BYTES: usize = 64 * 1024 * 1024;
/// The shortest silence after which a stream is given up and reopened.
const MIN_IDLE_LIMIT: Duration = Duration::from_secs(1);

/// Why [`RevocationWatch`] could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationWatchError {
    /// No full revocation set arrived in time: the broker is unreachable,
    /// not ready, or silent. Worth retrying later.
    #[error("no revocation set from the broker within {waited:?}; last attempt: {last_error}")]
    FirstUpdateTimeout {
        /// How long the watch waited.
        waited: Duration,
        /// What the last attempt met.
        last_error: String,
    },
    /// The broker refused the stream in a way retrying cannot fix: it does
    /// not serve `WatchRevocations` (`Unimplemented`), or refuses this
    /// client (`PermissionDenied`, `Unauthenticated`, `InvalidArgument`).
    #[error("the broker refused WatchRevocations ({code}): {message}")]
    Refused {
        /// The gRPC status code's name, e.g. `Unimplemented`.
        code: String,
        /// The broker's message.
        message: String,
    },
}

/// Follows the broker's revocations and keeps a [`RevocationSet`] current.
///
/// A background task reads the `WatchRevocations` stream: the first
/// message of every stream is the whole set and replaces what the set held
/// (a large set comes in pages, marked `more`, each read as it arrives and
/// applied together at the last one, so the set is never a part of one);
/// later ones add and remove revocations, or only say the broker is still
/// there (heartbeats). Each message moves the set's freshness to the
/// broker's `fresh_as_of_ms` (capped at the local clock, so a broker whose
/// clock runs ahead cannot stretch the bound). A revocation that cannot be
/// read is logged and skipped; the rest of its message is applied.
///
/// When the stream fails, ends, or stays silent for the staleness bound,
/// the task reopens it with exponential backoff (100 ms doubling up to
/// 5 s, jittered). Meanwhile the set keeps what it held and ages: once it
/// has not heard from the broker for longer than its bound, every check
/// fails closed with [`RevocationError::Stale`](super::RevocationError::Stale).
/// A new stream is trusted only from its full first message.
///
/// Clones share the set and the task; the task stops with the last clone
/// (a [`set`](Self::set) kept beyond that then goes stale).
///
/// ```no_run
/// # async fn demo(bundle_pem: &[u8], token: &str) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use mayfly_sdk::client::connect_broker;
/// use mayfly_sdk::jwt::Audience;
/// use mayfly_sdk::revocation::RevocationWatch;
/// use mayfly_sdk::workload::{JwtVerifier, WorkloadClient};
///
/// // TLS to the broker, trusting its bundle; no client certificate needed.
/// let broker = connect_broker("https://broker.example.org:8443", bundle_pem, None).await?;
/// let revocations = RevocationWatch::builder()
///     .staleness_bound(Duration::from_secs(30))
///     .start_with_client(broker)
///     .await?;
///
/// // Local JWT-SVID validation that also refuses revoked tokens, and
/// // every token while the revocation set is stale.
/// let verifier = JwtVerifier::new(WorkloadClient::from_env().await?)
///     .await?
///     .with_revocations(revocations.clone());
/// let caller = verifier.verify(token, &Audience::new("billing-db")?)?;
///
/// // The broker's CRL, for X.509 relying parties.
/// if let Some(crl_der) = revocations.crl() {
///     println!("CRL of {} bytes; {} is allowed", crl_der.len(), caller.spiffe_id);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RevocationWatch {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    /// Cancels the task when the last clone goes.
    _stop: DropGuard,
}

/// What the task publishes and handles read.
struct Shared {
    set: Arc<RevocationSet>,
    /// The latest CRL the broker sent that parses as one.
    crl: ArcSwapOption<Arc<[u8]>>,
    updates: watch::Receiver<u64>,
}

impl fmt::Debug for RevocationWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = &self.inner.shared.set;
        f.debug_struct("RevocationWatch")
            .field("revocations", &set.len())
            .field("staleness_bound", &set.staleness_bound())
            .field("last_heard_ms", &set.last_heard_ms())
            .field("crl_bytes", &self.crl().map(|crl| crl.len()))
            .field("following", &self.is_following())
            .finish()
    }
}

impl RevocationWatch {
    /// How long the set may go without hearing from the broker before its
    /// checks fail closed, unless the builder says otherwise.
    pub const DEFAULT_STALENESS_BOUND: Duration = Duration::from_secs(15);
    /// How long [`new`](Self::new) waits for the first full set, unless the
    /// builder says otherwise.
    pub const DEFAULT_FIRST_UPDATE_TIMEOUT: Duration = Duration::from_secs(10);

    /// Starts following the broker's revocations over `channel` with the
    /// default bound and timeout; waits for the first full set, so that a
    /// verifier built on it starts fresh. Must be called inside a Tokio
    /// runtime.
    ///
    /// # Errors
    ///
    /// As [`RevocationWatchBuilder::start`].
    pub async fn new(channel: Channel) -> Result<Self, RevocationWatchError> {
        Self::builder().start(channel).await
    }

    /// Like [`new`](Self::new), with a client such as
    /// [`connect_broker`](crate::client::connect_broker) returns.
    ///
    /// # Errors
    ///
    /// As [`RevocationWatchBuilder::start`].
    pub async fn from_client(client: BrokerClient<Channel>) -> Result<Self, RevocationWatchError> {
        Self::builder().start_with_client(client).await
    }

    /// A builder, to set the staleness bound or the first update's timeout.
    pub fn builder() -> RevocationWatchBuilder {
        RevocationWatchBuilder::default()
    }

    /// The set this watch keeps current. Its checks fail closed with
    /// [`RevocationError::Stale`](super::RevocationError::Stale) once the
    /// broker's freshness is older than the bound.
    pub fn set(&self) -> &Arc<RevocationSet> {
        &self.inner.shared.set
    }

    /// The broker's latest certificate revocation list (DER, signed by its
    /// intermediate CA), if it sent one. A CRL that does not parse is
    /// logged and the previous one kept; the signature is the relying
    /// party's to check.
    pub fn crl(&self) -> Option<Arc<[u8]>> {
        self.inner
            .shared
            .crl
            .load()
            .as_ref()
            .map(|crl| Arc::clone(&**crl))
    }

    /// A receiver that ticks on every message applied (heartbeats too): its
    /// value counts them. `changed().await` fails once the watch has
    /// stopped following the broker.
    pub fn updated(&self) -> watch::Receiver<u64> {
        self.inner.shared.updates.clone()
    }

    /// Whether the background task is still running (it runs, reconnecting
    /// as needed, until the last clone is dropped). Says nothing of
    /// freshness: ask [`set`](Self::set)`.check_fresh(now_ms)` for that.
    pub fn is_following(&self) -> bool {
        !self.inner.task.is_finished()
    }
}

/// Options for [`RevocationWatch`].
#[derive(Debug, Clone)]
pub struct RevocationWatchBuilder {
    staleness_bound: Duration,
    first_update_timeout: Duration,
}

impl Default for RevocationWatchBuilder {
    fn default() -> Self {
        RevocationWatchBuilder {
            staleness_bound: RevocationWatch::DEFAULT_STALENESS_BOUND,
            first_update_timeout: RevocationWatch::DEFAULT_FIRST_UPDATE_TIMEOUT,
        }
    }
}

impl RevocationWatchBuilder {
    /// How long the set may go without fresh word from the broker before
    /// its checks fail closed (default 15 s). A stream silent for this long
    /// (at least 1 s) is also given up and reopened. The broker sends a
    /// heartbeat every few seconds, so keep it well above that.
    pub fn staleness_bound(mut self, bound: Duration) -> Self {
        self.staleness_bound = bound;
        self
    }

    /// How long [`start`](Self::start) waits for the first full set
    /// (default 10 s).
    pub fn first_update_timeout(mut self, timeout: Duration) -> Self {
        self.first_update_timeout = timeout;
        self
    }

    /// Starts following the broker's revocations over `channel`, and waits
    /// for the first full set (retrying with backoff while the broker is
    /// unreachable), so that the set starts fresh unless the broker's own
    /// index is stale. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`RevocationWatchError::Refused`] at once when the broker refuses
    /// the stream for good; [`RevocationWatchError::FirstUpdateTimeout`]
    /// when no full set arrived in time.
    pub async fn start(self, channel: Channel) -> Result<RevocationWatch, RevocationWatchError> {
        self.start_with_client(BrokerClient::new(channel)).await
    }

    /// Like [`start`](Self::start), with a client such as
    /// [`connect_broker`](crate::client::connect_broker) returns.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub async fn start_with_client(
        self,
        client: BrokerClient<Channel>,
    ) -> Result<RevocationWatch, RevocationWatchError> {
        let (updates_sender, updates) = watch::channel(0);
        let shared = Arc::new(Shared {
            set: Arc::new(RevocationSet::following(self.staleness_bound)),
            crl: ArcSwapOption::empty(),
            updates,
        });
        let follower = Follower {
            client: client.max_decoding_message_size(MAX_UPDATE_BYTES),
            shared: shared.clone(),
            updates: updates_sender,
            idle_limit: self.staleness_bound.max(MIN_IDLE_LIMIT),
        };
        let stream = follower.first_sync(self.first_update_timeout).await?;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(follower.run(stream, cancel.clone()));
        Ok(RevocationWatch {
            inner: Arc::new(Inner {
                shared,
                task,
                _stop: cancel.drop_guard(),
            }),
        })
    }
}

/// Why a stream was given up.
#[derive(Debug)]
enum Interruption {
    Status(Status),
    Ended,
    Silent(Duration),
    NotFull,
    /// A page of the full set out of place: `more` without a full set
    /// begun, or a new full set before the last page of the one begun.
    BrokenPages,
}

impl fmt::Display for Interruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interruption::Status(status) => {
                write!(
                    f,
                    "the broker answered {:?}: {}",
                    status.code(),
                    status.message()
                )
            }
            Interruption::Ended => f.write_str("the broker ended the stream"),
            Interruption::Silent(limit) => write!(f, "no word from the broker for {limit:?}"),
            Interruption::NotFull => {
                f.write_str("the stream did not start with the full set; not trusting it")
            }
            Interruption::BrokenPages => f.write_str(
                "the broker's full set came in pages out of order; not trusting the stream",
            ),
        }
    }
}

/// Whether retrying may get a different answer. A broker without the RPC,
/// or one that refuses this client, answers the same way every time.
fn worth_retrying(status: &Status) -> bool {
    !matches!(
        status.code(),
        Code::Unimplemented
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::InvalidArgument
    )
}

/// What the follower applies at once: one message, or a full set's pages.
struct Update {
    /// A full set, staged as it is read (compact: a million `jti`s in pages are not a
    /// million [`Revocation`]s at once); `None` for a message of changes.
    full: Option<Staged>,
    /// The changes' revocations.
    upserted: Vec<Revocation>,
    removed: Vec<String>,
    crl: Vec<u8>,
    fresh_as_of_ms: i64,
}

impl Update {
    /// Reads `protos` into the full set or the changes, skipping (with a warning) one that
    /// cannot be read.
    fn read(&mut self, protos: Vec<pb::Revocation>) {
        if self.full.is_none() {
            self.upserted.reserve(protos.len());
        }
        for proto in protos {
            match Revocation::from_proto(proto) {
                Ok(revocation) => match &mut self.full {
                    Some(staged) => staged.push(revocation),
                    None => self.upserted.push(revocation),
                },
                Err(error) => tracing::warn!(%error,
                    "skipping a revocation from the broker that cannot be read"),
            }
        }
    }
}

/// The background task's side: reads streams and applies them.
struct Follower {
    client: BrokerClient<Channel>,
    shared: Arc<Shared>,
    updates: watch::Sender<u64>,
    idle_limit: Duration,
}

type UpdateStream = Streaming<pb::RevocationUpdate>;

impl Follower {
    /// Opens the stream and applies its first message, which must be the
    /// full set: deltas on top of what was held before a gap could miss
    /// what changed during it.
    async fn open(&self) -> Result<UpdateStream, Interruption> {
        let mut stream = self
            .client
            .clone()
            .watch_revocations(pb::WatchRevocationsRequest {})
            .await
            .map_err(Interruption::Status)?
            .into_inner();
        let first = self.next(&mut stream).await?;
        if !first.full {
            return Err(Interruption::NotFull);
        }
        let first = self.whole(&mut stream, first).await?;
        self.apply(first);
        Ok(stream)
    }

    /// `update` with the pages that follow it while it says `more`: a full
    /// set sent in pages becomes one update, applied at once, so the set
    /// holds either what it held before or the whole new set, never a part.
    /// Each page's revocations are read as it arrives, and the page dropped.
    async fn whole(
        &self,
        stream: &mut UpdateStream,
        update: pb::RevocationUpdate,
    ) -> Result<Update, Interruption> {
        if update.more && !update.full {
            return Err(Interruption::BrokenPages);
        }
        let mut more = update.more;
        let mut whole = Update {
            full: update.full.then(Staged::new),
            upserted: Vec::new(),
            removed: update.removed,
            crl: update.crl,
            // A set sent in pages was read from its first page on: it is as
            // fresh as that page, not as the last.
            fresh_as_of_ms: update.fresh_as_of_ms,
        };
        whole.read(update.upserted);
        while more {
            let page = self.next(stream).await?;
            if page.full {
                return Err(Interruption::BrokenPages);
            }
            whole.read(page.upserted);
            whole.removed.extend(page.removed);
            if !page.crl.is_empty() {
                whole.crl = page.crl;
            }
            more = page.more;
        }
        Ok(whole)
    }

    /// The next message, or why there is none.
    async fn next(&self, stream: &mut UpdateStream) -> Result<pb::RevocationUpdate, Interruption> {
        match tokio::time::timeout(self.idle_limit, stream.message()).await {
            Err(_) => Err(Interruption::Silent(self.idle_limit)),
            Ok(Err(status)) => Err(Interruption::Status(status)),
            Ok(Ok(None)) => Err(Interruption::Ended),
            Ok(Ok(Some(update))) => Ok(update),
        }
    }

    /// Opens the first stream, retrying what may pass, within `limit`.
    async fn first_sync(&self, limit: Duration) -> Result<UpdateStream, RevocationWatchError> {
        let mut last_error = None;
        let attempts = tokio::time::timeout(limit, async {
            let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
            loop {
                match self.open().await {
                    Ok(stream) => return Ok(stream),
                    Err(Interruption::Status(status)) if !worth_retrying(&status) => {
                        return Err(RevocationWatchError::Refused {
                            code: format!("{:?}", status.code()),
                            message: status.message().to_owned(),
                        });
                    }
                    Err(interruption) => {
                        let delay = backoff.next_delay();
                        tracing::warn!(%interruption, ?delay, "waiting for the broker's revocation set");
                        last_error = Some(interruption.to_string());
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        })
        .await;
        attempts.unwrap_or_else(|_| {
            Err(RevocationWatchError::FirstUpdateTimeout {
                waited: limit,
                last_error: last_error.unwrap_or_else(|| "no answer yet".to_owned()),
            })
        })
    }

    /// Follows `first`, then reopened streams, until cancelled.
    ///
    /// Every failure is retried, refusals included: stopping would leave
    /// the set stale for good, while a redeployed broker can fix them.
    async fn run(self, first: UpdateStream, cancel: CancellationToken) {
        let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
        let mut stream = Some(first);
        loop {
            let interruption = match stream.take() {
                Some(mut open) => tokio::select! {
                    () = cancel.cancelled() => return,
                    interruption = self.follow(&mut open) => interruption,
                },
                None => {
                    let opened = tokio::select! {
                        () = cancel.cancelled() => return,
                        opened = self.open() => opened,
                    };
                    match opened {
                        Ok(opened) => {
                            tracing::info!("following the broker's revocations again");
                            backoff.reset();
                            stream = Some(opened);
                            continue;
                        }
                        Err(interruption) => interruption,
                    }
                }
            };
            let delay = backoff.next_delay();
            match &interruption {
                Interruption::Status(status) if !worth_retrying(status) => tracing::error!(
                    %interruption,
                    ?delay,
                    "the broker refuses the revocation stream; retrying, but the set \
                     ages and fails closed once past its bound"
                ),
                _ => tracing::warn!(
                    %interruption,
                    ?delay,
                    "the revocation stream was interrupted; reconnecting (the set \
                     ages and fails closed once past its bound)"
                ),
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Applies messages until the stream stops.
    async fn follow(&self, stream: &mut UpdateStream) -> Interruption {
        loop {
            let update = match self.next(stream).await {
                Ok(update) => self.whole(stream, update).await,
                Err(interruption) => Err(interruption),
            };
            match update {
                Ok(update) => self.apply(update),
                Err(interruption) => return interruption,
            }
        }
    }

    fn apply(&self, update: Update) {
        let set = &self.shared.set;
        match update.full {
            Some(staged) => set.replace_with(staged),
            None => {
                for revocation in update.upserted {
                    set.upsert(revocation);
                }
            }
        }
        for key in &update.removed {
            if set.remove_key(key).is_none() {
                tracing::debug!(key, "the broker lifted a revocation this set does not hold");
            }
        }
        if !update.crl.is_empty() {
            self.keep_crl(update.crl);
        }
        if update.fresh_as_of_ms > 0 {
            set.mark_heard(update.fresh_as_of_ms.min(unix_now_ms()));
        } else {
            tracing::warn!("a revocation update without freshness; the set does not count it");
        }
        self.updates
            .send_modify(|applied| *applied = applied.wrapping_add(1));
    }

    fn keep_crl(&self, der: Vec<u8>) {
        if let Err(error) = x509_parser::parse_x509_crl(&der) {
            tracing::warn!(%error, "ignoring a CRL from the broker that does not parse; keeping the last one");
            return;
        }
        self.shared.crl.store(Some(Arc::new(Arc::from(der))));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;
    use tokio::net::TcpListener;
    use tokio::sync::{broadcast, mpsc};
    use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
    use tonic::transport::Endpoint;
    use tonic::{Request, Response};

    use super::*;
    use crate::SpiffeId;
    use crate::bundle::{JwtAuthority, JwtPublicKey, SpiffeBundle};
    use crate::jwt::Audience;
    use crate::proto::v1::broker_server::{Broker, BrokerServer};
    use crate::revocation::{RevocationError, RevocationKind};
    use crate::workload::{JwtBundles, JwtVerifier, WorkloadError};

    /// An upper bound on every wait: the tests never depend on its length.
    const PATIENCE: Duration = Duration::from_secs(10);
    /// How often the fake broker sends a heartbeat while its source is alive.
    const HEARTBEAT: Duration = Duration::from_millis(100);

    // ---- a broker that serves only WatchRevocations ----

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Mode {
        Normal,
        /// Streams start with a delta instead of the full set.
        FirstNotFull,
        /// An older broker without the RPC.
        Unimplemented,
        /// The first full set comes in pages of one revocation each.
        Paged,
    }

    struct FakeState {
        mode: Mode,
        revocations: Mutex<Vec<pb::Revocation>>,
        crl: Mutex<Vec<u8>>,
        /// Whether the broker's own index hears its source: only then does
        /// its freshness move, and do its streams get heartbeats.
        source_alive: AtomicBool,
        last_fresh_ms: AtomicI64,
        streams_opened: AtomicUsize,
        updates: broadcast::Sender<pb::RevocationUpdate>,
    }

    /// The broker's state, shared by the servers it runs (one at a time,
    /// possibly on the same port in turn).
    #[derive(Clone)]
    struct FakeBroker {
        state: Arc<FakeState>,
    }

    impl FakeBroker {
        fn new(mode: Mode, revocations: Vec<pb::Revocation>) -> Self {
            let (updates, _) = broadcast::channel(64);
            FakeBroker {
                state: Arc::new(FakeState {
                    mode,
                    revocations: Mutex::new(revocations),
                    crl: Mutex::new(Vec::new()),
                    source_alive: AtomicBool::new(true),
                    last_fresh_ms: AtomicI64::new(unix_now_ms()),
                    streams_opened: AtomicUsize::new(0),
                    updates,
                }),
            }
        }

        fn fresh_as_of_ms(&self) -> i64 {
            if self.state.source_alive.load(Ordering::SeqCst) {
                self.state
                    .last_fresh_ms
                    .fetch_max(unix_now_ms(), Ordering::SeqCst);
            }
            self.state.last_fresh_ms.load(Ordering::SeqCst)
        }

        fn set_source_alive(&self, alive: bool) {
            self.state.source_alive.store(alive, Ordering::SeqCst);
        }

        fn set_crl(&self, der: Vec<u8>) {
            *self.state.crl.lock().unwrap() = der;
        }

        fn set_revocations(&self, revocations: Vec<pb::Revocation>) {
            *self.state.revocations.lock().unwrap() = revocations;
        }

        /// Sends `update` on every open stream, stamped with the broker's
        /// freshness.
        fn send(&self, mut update: pb::RevocationUpdate) {
            update.fresh_as_of_ms = self.fresh_as_of_ms();
            let _ = self.state.updates.send(update);
        }

        fn streams_opened(&self) -> usize {
            self.state.streams_opened.load(Ordering::SeqCst)
        }

        /// What a new stream starts with: the full set, in pages of one in [`Mode::Paged`].
        fn first_messages(&self) -> Vec<pb::RevocationUpdate> {
            self.state.streams_opened.fetch_add(1, Ordering::SeqCst);
            let first = pb::RevocationUpdate {
                full: self.state.mode != Mode::FirstNotFull,
                upserted: self.state.revocations.lock().unwrap().clone(),
                removed: Vec::new(),
                fresh_as_of_ms: self.fresh_as_of_ms(),
                crl: self.state.crl.lock().unwrap().clone(),
                more: false,
            };
            if self.state.mode != Mode::Paged || first.upserted.len() < 2 {
                return vec![first];
            }
            let last = first.upserted.len() - 1;
            first
                .upserted
                .iter()
                .enumerate()
                .map(|(n, revocation)| pb::RevocationUpdate {
                    full: n == 0,
                    upserted: vec![revocation.clone()],
                    fresh_as_of_ms: first.fresh_as_of_ms,
                    crl: if n == 0 {
                        first.crl.clone()
                    } else {
                        Vec::new()
                    },
                    more: n < last,
                    ..Default::default()
                })
                .collect()
        }

        async fn serve(&self, listener: TcpListener) -> Running {
            let addr = listener.local_addr().unwrap();
            let stop = CancellationToken::new();
            let service = BrokerServer::new(Served {
                broker: self.clone(),
                stop: stop.clone(),
            });
            let server = tokio::spawn({
                let stop = stop.clone();
                async move {
                    tonic::transport::Server::builder()
                        .add_service(service)
                        .serve_with_incoming_shutdown(
                            TcpListenerStream::new(listener),
                            stop.cancelled_owned(),
                        )
                        .await
                        .unwrap();
                }
            });
            Running { addr, stop, server }
        }

        async fn start(&self) -> Running {
            self.serve(TcpListener::bind("127.0.0.1:0").await.unwrap())
                .await
        }
    }

    /// One server of a [`FakeBroker`].
    struct Running {
        addr: SocketAddr,
        stop: CancellationToken,
        server: JoinHandle<()>,
    }

    impl Running {
        fn channel(&self) -> Channel {
            Endpoint::from_shared(format!("http://{}", self.addr))
                .unwrap()
                .connect_timeout(Duration::from_secs(1))
                .connect_lazy()
        }

        /// Ends every stream and stops the server; its port is then free.
        async fn kill(self) {
            self.stop.cancel();
            tokio::time::timeout(PATIENCE, self.server)
                .await
                .expect("the fake broker shut down")
                .unwrap();
        }
    }

    struct Served {
        broker: FakeBroker,
        stop: CancellationToken,
    }

    fn unimplemented<T>() -> Result<Response<T>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    #[tonic::async_trait]
    impl Broker for Served {
        type WatchBundleStream = tokio_stream::Empty<Result<pb::Bundle, Status>>;
        type WatchRevocationsStream = ReceiverStream<Result<pb::RevocationUpdate, Status>>;

        async fn watch_revocations(
            &self,
            _: Request<pb::WatchRevocationsRequest>,
        ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
            if self.broker.state.mode == Mode::Unimplemented {
                return unimplemented();
            }
            // Subscribed before the snapshot is read: nothing falls between.
            let mut updates = self.broker.state.updates.subscribe();
            let firsts = self.broker.first_messages();
            let (sender, receiver) = mpsc::channel(16);
            let (broker, stop) = (self.broker.clone(), self.stop.clone());
            tokio::spawn(async move {
                for first in firsts {
                    if sender.send(Ok(first)).await.is_err() {
                        return;
                    }
                }
                let mut heartbeat = tokio::time::interval(HEARTBEAT);
                loop {
                    let update = tokio::select! {
                        () = stop.cancelled() => return,
                        update = updates.recv() => match update {
                            Ok(update) => update,
                            Err(broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(broadcast::error::RecvError::Closed) => return,
                        },
                        _ = heartbeat.tick() => {
                            if !broker.state.source_alive.load(Ordering::SeqCst) {
                                continue;
                            }
                            pb::RevocationUpdate {
                                fresh_as_of_ms: broker.fresh_as_of_ms(),
                                ..Default::default()
                            }
                        }
                    };
                    if sender.send(Ok(update)).await.is_err() {
                        return;
                    }
                }
            });
            Ok(Response::new(ReceiverStream::new(receiver)))
        }

        async fn attest_and_issue(
            &self,
            _: Request<pb::AttestAndIssueRequest>,
        ) -> Result<Response<pb::X509SvidResponse>, Status> {
            unimplemented()
        }

        async fn renew_x509_svid(
            &self,
            _: Request<pb::RenewX509SvidRequest>,
        ) -> Result<Response<pb::X509SvidResponse>, Status> {
            unimplemented()
        }

        async fn mint_jwt_svid(
            &self,
            _: Request<pb::MintJwtSvidRequest>,
        ) -> Result<Response<pb::MintJwtSvidResponse>, Status> {
            unimplemented()
        }

        async fn get_bundle(
            &self,
            _: Request<pb::GetBundleRequest>,
        ) -> Result<Response<pb::Bundle>, Status> {
            unimplemented()
        }

        async fn ping(
            &self,
            _: Request<pb::PingRequest>,
        ) -> Result<Response<pb::PingResponse>, Status> {
            unimplemented()
        }

        async fn watch_bundle(
            &self,
            _: Request<pb::WatchBundleRequest>,
        ) -> Result<Response<Self::WatchBundleStream>, Status> {
            unimplemented()
        }

        async fn validate_jwt_svid(
            &self,
            _: Request<pb::ValidateJwtSvidRequest>,
        ) -> Result<Response<pb::ValidateJwtSvidResponse>, Status> {
            unimplemented()
        }

        async fn create_x509_pop_challenge(
            &self,
            _: Request<pb::CreateX509PopChallengeRequest>,
        ) -> Result<Response<pb::X509PopChallenge>, Status> {
            unimplemented()
        }

        async fn mint_jwt_svid_with_evidence(
            &self,
            _: Request<pb::MintJwtSvidWithEvidenceRequest>,
        ) -> Result<Response<pb::MintJwtSvidResponse>, Status> {
            unimplemented()
        }

        async fn list_agent_entries(
            &self,
            _: Request<pb::ListAgentEntriesRequest>,
        ) -> Result<Response<pb::ListAgentEntriesResponse>, Status> {
            unimplemented()
        }

        async fn batch_mint_x509_svids(
            &self,
            _: Request<pb::BatchMintX509SvidsRequest>,
        ) -> Result<Response<pb::BatchMintX509SvidsResponse>, Status> {
            unimplemented()
        }

        async fn batch_mint_jwt_svids(
            &self,
            _: Request<pb::BatchMintJwtSvidsRequest>,
        ) -> Result<Response<pb::BatchMintJwtSvidsResponse>, Status> {
            unimplemented()
        }
    }

    // ---- helpers ----

    const SUB: &str = "spiffe://example.org/billing/api";
    const OTHER: &str = "spiffe://example.org/billing/web";

    fn id(text: &str) -> SpiffeId {
        text.parse().unwrap()
    }

    fn now_secs() -> i64 {
        unix_now_ms() / 1000
    }

    /// A fake broker in `mode` holding `revocations`, and a watch of it with the defaults.
    async fn watching(
        mode: Mode,
        revocations: Vec<pb::Revocation>,
    ) -> (FakeBroker, Running, RevocationWatch) {
        let broker = FakeBroker::new(mode, revocations);
        let server = broker.start().await;
        let watch = RevocationWatch::builder()
            .start(server.channel())
            .await
            .unwrap();
        (broker, server, watch)
    }

    fn jti(value: &str) -> pb::Revocation {
        let now = now_secs();
        Revocation::new(RevocationKind::Jti, value, now, Some(now + 3600))
            .unwrap()
            .to_proto()
    }

    fn entry(value: &str, subject: &str) -> pb::Revocation {
        let mut revocation =
            Revocation::new(RevocationKind::Entry, value, now_secs(), None).unwrap();
        revocation.subjects = vec![id(subject)];
        revocation.reason = "compromised".into();
        revocation.to_proto()
    }

    fn upserting(revocations: Vec<pb::Revocation>) -> pb::RevocationUpdate {
        pb::RevocationUpdate {
            upserted: revocations,
            ..Default::default()
        }
    }

    fn removing(keys: &[&str]) -> pb::RevocationUpdate {
        pb::RevocationUpdate {
            removed: keys.iter().map(|key| (*key).to_owned()).collect(),
            ..Default::default()
        }
    }

    /// Checks a token of `subject` with `jti`, issued a second ago, now.
    fn check(set: &RevocationSet, subject: &str, jti: &str) -> Result<(), RevocationError> {
        set.check_jwt_ms(&id(subject), Some(jti), Some(now_secs() - 1), unix_now_ms())
    }

    fn is_stale(result: Result<(), RevocationError>) -> bool {
        matches!(result, Err(RevocationError::Stale { .. }))
    }

    /// Polls `condition` until it holds; panics after [`PATIENCE`].
    async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !condition() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the watch has applied a message for which `condition`
    /// holds.
    async fn applied(watch: &RevocationWatch, what: &str, condition: impl Fn() -> bool) {
        let mut updated = watch.updated();
        tokio::time::timeout(PATIENCE, async {
            while !condition() {
                updated.changed().await.expect("the watch is following");
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
    }

    /// A CRL signed by a throwaway CA: DER that parses as a CRL.
    fn crl(number: u64) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(params, key);
        rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2026, 1, 1),
            next_update: rcgen::date_time_ymd(2026, 1, 2),
            crl_number: rcgen::SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .unwrap()
        .der()
        .to_vec()
    }

    // ---- the watch ----

    #[tokio::test]
    async fn the_first_full_set_is_in_place_when_new_returns() {
        let broker = FakeBroker::new(Mode::Normal, vec![jti("t1"), entry("e1", SUB)]);
        let server = broker.start().await;
        let watch = RevocationWatch::new(server.channel()).await.unwrap();
        let set = watch.set();

        assert_eq!(set.len(), 2);
        assert_eq!(
            set.staleness_bound(),
            Some(RevocationWatch::DEFAULT_STALENESS_BOUND)
        );
        assert!(set.check_fresh(unix_now_ms()).is_ok());
        assert!(matches!(
            check(set, OTHER, "t1"),
            Err(RevocationError::Revoked {
                kind: RevocationKind::Jti,
                ..
            })
        ));
        assert!(matches!(
            check(set, SUB, "t2"),
            Err(RevocationError::Revoked {
                kind: RevocationKind::Entry,
                ..
            })
        ));
        // Positive control: another token of another subject passes.
        assert!(check(set, OTHER, "t2").is_ok());
        assert!(watch.is_following());
        assert!(watch.crl().is_none(), "this broker sent no CRL");
        assert!(format!("{watch:?}").contains("revocations: 2"));
    }

    #[tokio::test]
    async fn upserts_and_removals_reach_the_set() {
        let broker = FakeBroker::new(Mode::Normal, vec![jti("t1")]);
        let server = broker.start().await;
        let watch = RevocationWatch::new(server.channel()).await.unwrap();
        let set = watch.set();
        assert!(check(set, OTHER, "t1").is_err());
        assert!(check(set, OTHER, "t2").is_ok());

        broker.send(upserting(vec![jti("t2"), entry("e1", SUB)]));
        applied(&watch, "t2 and e1 are revoked", || set.len() == 3).await;
        assert!(check(set, OTHER, "t2").is_err());
        assert!(check(set, SUB, "t9").is_err());
        assert!(check(set, OTHER, "t9").is_ok());

        broker.send(removing(&["jti:t1", "entry:e1"]));
        applied(&watch, "t1 and e1 are lifted", || set.len() == 1).await;
        assert!(check(set, OTHER, "t1").is_ok());
        assert!(check(set, SUB, "t9").is_ok());
        assert!(check(set, OTHER, "t2").is_err(), "t2 is still revoked");
    }

    #[tokio::test]
    async fn a_silent_broker_makes_checks_fail_closed_after_the_bound() {
        let broker = FakeBroker::new(Mode::Normal, vec![jti("t1")]);
        let server = broker.start().await;
        let bound = Duration::from_secs(1);
        let watch = RevocationWatch::builder()
            .staleness_bound(bound)
            .start(server.channel())
            .await
            .unwrap();
        let set = watch.set().clone();
        wait_until("the set is fresh", || check(&set, OTHER, "t2").is_ok()).await;

        // The broker's index stops hearing its source: no more heartbeats,
        // and its freshness stays where it was.
        broker.set_source_alive(false);
        let silent_since = broker.fresh_as_of_ms();
        wait_until("the set is stale", || is_stale(check(&set, OTHER, "t2"))).await;
        let heard = set.last_heard_ms().unwrap();
        assert!(
            heard <= silent_since,
            "the broker's freshness, not the local clock"
        );
        assert!(set.check_fresh(heard + 1000).is_ok());
        assert!(is_stale(set.check_fresh(heard + 1001)));
        // Fail closed, revoked or not: the revocation is still held.
        assert!(is_stale(check(&set, OTHER, "t1")));
        assert!(set.get(RevocationKind::Jti, "t1").is_some());

        // The silent stream is given up and reopened (no heartbeats come, so
        // any message now is a new stream's full set). It carries the
        // broker's old freshness: reconnecting alone does not make the set
        // fresh.
        let seen = *watch.updated().borrow();
        applied(&watch, "a full set after reconnecting", || {
            *watch.updated().borrow() > seen
        })
        .await;
        assert!(broker.streams_opened() >= 2);
        assert!(is_stale(check(&set, OTHER, "t2")));
        assert_eq!(set.last_heard_ms(), Some(heard));

        // The source is back: so is freshness.
        broker.set_source_alive(true);
        wait_until("the set is fresh again", || {
            check(&set, OTHER, "t2").is_ok()
        })
        .await;
        assert!(check(&set, OTHER, "t1").is_err());
    }

    /// A full set in pages is applied once, whole: at the stream's start and at a resync.
    #[tokio::test]
    async fn a_full_set_in_pages_replaces_the_set_at_its_last_page() {
        let (broker, server, watch) =
            watching(Mode::Paged, vec![jti("t1"), jti("t2"), jti("t3")]).await;
        let set = watch.set().clone();
        for value in ["t1", "t2", "t3"] {
            assert!(set.get(RevocationKind::Jti, value).is_some(), "{value}");
        }
        assert_eq!(set.len(), 3);

        // No heartbeats from here on: every apply below is one of the pages'.
        broker.set_source_alive(false);
        tokio::time::sleep(HEARTBEAT * 3).await;
        let mut updated = watch.updated();
        let before = *updated.borrow_and_update();
        broker.send(pb::RevocationUpdate {
            full: true,
            more: true,
            upserted: vec![jti("p1")],
            ..Default::default()
        });
        broker.send(upserting(vec![jti("p2")]));
        applied(&watch, "the resync", || {
            set.get(RevocationKind::Jti, "p2").is_some()
        })
        .await;
        assert_eq!(
            *updated.borrow(),
            before.wrapping_add(1),
            "one apply, both pages"
        );
        assert!(set.get(RevocationKind::Jti, "p1").is_some());
        assert!(set.get(RevocationKind::Jti, "t1").is_none(), "replaced");
        assert_eq!(set.len(), 2);
        assert_eq!(broker.streams_opened(), 1);
        server.kill().await;
    }

    /// `more` on a message that does not continue a full set: the stream is not trusted
    /// and is opened again; a delta after that is applied (the control).
    #[tokio::test]
    async fn a_page_out_of_place_is_not_trusted() {
        let (broker, server, watch) = watching(Mode::Normal, vec![jti("t1")]).await;
        let set = watch.set().clone();
        broker.send(pb::RevocationUpdate {
            more: true,
            upserted: vec![jti("x")],
            ..Default::default()
        });
        wait_until("the stream is opened again", || {
            broker.streams_opened() == 2
        })
        .await;
        broker.send(upserting(vec![jti("y")]));
        applied(&watch, "the delta", || {
            set.get(RevocationKind::Jti, "y").is_some()
        })
        .await;
        assert!(set.get(RevocationKind::Jti, "x").is_none());
        assert!(set.get(RevocationKind::Jti, "t1").is_some());
        server.kill().await;
    }

    #[tokio::test]
    async fn the_watch_reconnects_after_the_broker_restarts() {
        let broker = FakeBroker::new(Mode::Normal, vec![jti("t1")]);
        let server = broker.start().await;
        let addr = server.addr;
        let watch = RevocationWatch::builder()
            .staleness_bound(Duration::from_secs(1))
            .start(server.channel())
            .await
            .unwrap();
        let set = watch.set().clone();
        wait_until("the set is fresh", || check(&set, OTHER, "t2").is_ok()).await;

        server.kill().await;
        wait_until("the set is stale", || is_stale(check(&set, OTHER, "t2"))).await;
        assert!(
            set.get(RevocationKind::Jti, "t1").is_some(),
            "kept while cut off"
        );
        assert!(watch.is_following());

        // Back on the same port, with a revocation made while it was away.
        broker.set_revocations(vec![jti("t9")]);
        let server = broker.serve(TcpListener::bind(addr).await.unwrap()).await;
        wait_until("the new set is in place and fresh", || {
            set.get(RevocationKind::Jti, "t9").is_some() && check(&set, OTHER, "t2").is_ok()
        })
        .await;
        assert!(check(&set, OTHER, "t9").is_err());
        assert!(
            set.get(RevocationKind::Jti, "t1").is_none(),
            "the full set replaced it"
        );
        server.kill().await;
    }

    #[tokio::test]
    async fn an_unreadable_revocation_is_skipped_and_the_rest_applied() {
        let mut unknown_kind = jti("t0");
        unknown_kind.kind = "token".into();
        let broker = FakeBroker::new(Mode::Normal, vec![unknown_kind, jti("t1")]);
        let server = broker.start().await;
        let watch = RevocationWatch::new(server.channel()).await.unwrap();
        let set = watch.set();
        assert_eq!(set.len(), 1);
        assert!(check(set, OTHER, "t1").is_err());

        let mut bad_value = jti("t3");
        bad_value.value = "a b".into();
        let mut jti_with_subjects = jti("t4");
        jti_with_subjects.subjects = vec![SUB.into()];
        let mut bad_subject = entry("e1", SUB);
        bad_subject.subjects = vec!["https://example.org/x".into()];
        broker.send(upserting(vec![
            bad_value,
            jti("t2"),
            jti_with_subjects,
            bad_subject,
        ]));
        applied(&watch, "t2 is revoked", || set.len() == 2).await;
        assert!(check(set, OTHER, "t2").is_err());
        assert!(set.get(RevocationKind::Jti, "t4").is_none());
        assert!(check(set, SUB, "t9").is_ok());
        assert!(watch.is_following());

        // The stream goes on.
        broker.send(removing(&["jti:t2", "not a key", "token:t0"]));
        applied(&watch, "t2 is lifted", || set.len() == 1).await;
        assert!(check(set, OTHER, "t2").is_ok());
    }

    #[tokio::test]
    async fn the_latest_crl_is_kept() {
        let broker = FakeBroker::new(Mode::Normal, Vec::new());
        let (first, second) = (crl(1), crl(2));
        broker.set_crl(first.clone());
        let server = broker.start().await;
        let watch = RevocationWatch::new(server.channel()).await.unwrap();
        assert_eq!(watch.crl().as_deref(), Some(first.as_slice()));

        // Empty: unchanged. Not a CRL: ignored. A new CRL: replaces it.
        broker.send(pb::RevocationUpdate::default());
        broker.send(pb::RevocationUpdate {
            crl: b"not a CRL".to_vec(),
            ..Default::default()
        });
        broker.send(upserting(vec![jti("marker")]));
        applied(&watch, "the marker arrived", || watch.set().len() == 1).await;
        assert_eq!(watch.crl().as_deref(), Some(first.as_slice()));

        broker.send(pb::RevocationUpdate {
            crl: second.clone(),
            ..Default::default()
        });
        applied(&watch, "the new CRL", || {
            watch.crl().as_deref() == Some(second.as_slice())
        })
        .await;
        let kept = watch.crl().unwrap();
        let (_, parsed) = x509_parser::parse_x509_crl(&kept).unwrap();
        assert_eq!(parsed.crl_number().map(|n| n.to_string()), Some("2".into()));
    }

    #[tokio::test]
    async fn refusals_fail_at_once_and_a_missing_broker_after_the_timeout() {
        let old = FakeBroker::new(Mode::Unimplemented, Vec::new())
            .start()
            .await;
        let refused = RevocationWatch::builder()
            .first_update_timeout(Duration::from_secs(60))
            .start(old.channel())
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, RevocationWatchError::Refused { code, .. } if code == "Unimplemented"),
            "{refused:?}"
        );

        // Nothing listens on the port: retried until the timeout.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        let absent = RevocationWatch::builder()
            .first_update_timeout(Duration::from_millis(500))
            .start(channel.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(&absent, RevocationWatchError::FirstUpdateTimeout { last_error, .. } if last_error.contains("Unavailable")),
            "{absent:?}"
        );
        assert!(
            absent
                .to_string()
                .contains("no revocation set from the broker")
        );

        // A broker whose stream does not start with the full set is not
        // trusted either.
        let partial = FakeBroker::new(Mode::FirstNotFull, vec![jti("t1")])
            .start()
            .await;
        let untrusted = RevocationWatch::builder()
            .first_update_timeout(Duration::from_millis(500))
            .start(partial.channel())
            .await
            .unwrap_err();
        assert!(
            matches!(&untrusted, RevocationWatchError::FirstUpdateTimeout { last_error, .. } if last_error.contains("full set")),
            "{untrusted:?}"
        );

        // Positive control: a broker on the same port, same channel.
        let broker = FakeBroker::new(Mode::Normal, vec![jti("t1")]);
        let server = broker.serve(TcpListener::bind(addr).await.unwrap()).await;
        let watch = RevocationWatch::new(channel).await.unwrap();
        assert!(check(watch.set(), OTHER, "t1").is_err());
        server.kill().await;
    }

    #[tokio::test]
    async fn the_task_stops_with_the_last_handle() {
        let broker = FakeBroker::new(Mode::Normal, vec![jti("t1")]);
        let server = broker.start().await;
        let watch = RevocationWatch::new(server.channel()).await.unwrap();
        let clone = watch.clone();
        let set = watch.set().clone();
        let mut updated = watch.updated();
        updated.borrow_and_update();
        drop(watch);
        // Still running for the clone: heartbeats arrive.
        tokio::time::timeout(PATIENCE, updated.changed())
            .await
            .unwrap()
            .expect("following while a clone lives");
        assert!(clone.is_following());

        drop(clone);
        tokio::time::timeout(PATIENCE, async { while updated.changed().await.is_ok() {} })
            .await
            .expect("the task stopped");
        // The set outlives the watch, and ages from here.
        assert!(set.get(RevocationKind::Jti, "t1").is_some());
    }

    #[test]
    fn backoff_doubles_from_100_ms_to_5_s() {
        let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        for (delay, nominal) in delays
            .iter()
            .zip([100u64, 200, 400, 800, 1600, 3200, 5000, 5000])
        {
            let nominal = Duration::from_millis(nominal);
            assert!(
                *delay <= nominal && *delay >= nominal.mul_f64(0.8),
                "{delay:?}"
            );
        }
        assert!(delays.iter().all(|delay| *delay <= MAX_BACKOFF));
        backoff.reset();
        assert!(backoff.next_delay() <= MIN_BACKOFF);
    }

    // ---- JwtVerifier with revocations ----

    struct Signer {
        key: EcdsaKeyPair,
    }

    impl Signer {
        fn new() -> Self {
            Signer {
                key: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
            }
        }

        fn bundles(&self) -> JwtBundles {
            let point = self.key.public_key().as_ref();
            let mut bundle = SpiffeBundle::new(id(SUB).trust_domain());
            bundle.jwt_authorities = vec![JwtAuthority {
                key_id: "k1".into(),
                public_key: JwtPublicKey::EcP256 {
                    x: point[1..33].try_into().unwrap(),
                    y: point[33..65].try_into().unwrap(),
                },
            }];
            let jwks = bundle.to_jwks_json().unwrap().into_bytes();
            JwtBundles::parse(HashMap::from([("spiffe://example.org".to_owned(), jwks)])).unwrap()
        }

        fn token(&self, subject: &str, jti: &str) -> String {
            let now = now_secs();
            let header = json!({"alg": "ES256", "kid": "k1", "typ": "JWT"});
            let claims = json!({
                "sub": subject, "aud": "billing-db", "exp": now + 300, "iat": now - 10, "jti": jti,
            });
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let signature = self
                .key
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap();
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
        }
    }

    #[tokio::test]
    async fn a_verifier_with_revocations_refuses_revoked_tokens_and_fails_closed_when_stale() {
        let broker = FakeBroker::new(Mode::Normal, Vec::new());
        let server = broker.start().await;
        let watch = RevocationWatch::new(server.channel()).await.unwrap();
        let signer = Signer::new();
        let plain = JwtVerifier::with_fixed_bundles(signer.bundles()).unwrap();
        let verifier = plain.clone().with_revocations(watch.clone());
        assert!(verifier.revocations().is_some() && plain.revocations().is_none());
        let audience = Audience::new("billing-db").unwrap();
        let first = signer.token(SUB, "tok-1");
        let second = signer.token(SUB, "tok-2");

        // Positive control: genuine tokens pass.
        assert_eq!(
            verifier.verify(&first, &audience).unwrap().jti.as_deref(),
            Some("tok-1")
        );
        assert!(verifier.verify(&second, &audience).is_ok());

        broker.send(upserting(vec![jti("tok-1")]));
        applied(&watch, "tok-1 is revoked", || watch.set().len() == 1).await;
        let refused = verifier.verify(&first, &audience).unwrap_err();
        assert!(
            matches!(
                &refused,
                WorkloadError::Revoked {
                    reason: RevocationError::Revoked { kind: RevocationKind::Jti, value, .. }
                } if value == "tok-1"
            ),
            "{refused:?}"
        );
        assert!(!refused.is_retryable());
        assert!(
            verifier.verify(&second, &audience).is_ok(),
            "only tok-1 is revoked"
        );
        assert!(
            plain.verify(&first, &audience).is_ok(),
            "revocation is opt-in"
        );

        // A forged token naming a revoked jti is invalid, not revoked.
        let forged = Signer::new().token(SUB, "tok-1");
        assert!(matches!(
            verifier.verify(&forged, &audience),
            Err(WorkloadError::InvalidJwtSvid { .. })
        ));

        // Stale: past the bound without word from the broker, every token
        // is refused; the same token passes at a time the set is fresh.
        let heard_secs = watch.set().last_heard_ms().unwrap() / 1000;
        let later = heard_secs + 60;
        let stale = verifier.verify_at(&second, &audience, later).unwrap_err();
        assert!(
            matches!(
                &stale,
                WorkloadError::Revoked {
                    reason: RevocationError::Stale { .. }
                }
            ),
            "{stale:?}"
        );
        assert!(stale.is_retryable());
        assert!(plain.verify_at(&second, &audience, later).is_ok());
        assert!(verifier.verify_at(&second, &audience, heard_secs).is_ok());

        // An entry revocation covers every token of its subject issued before it.
        broker.send(upserting(vec![entry("e1", SUB)]));
        applied(&watch, "e1 is revoked", || watch.set().len() == 2).await;
        assert!(matches!(
            verifier.verify(&second, &audience),
            Err(WorkloadError::Revoked {
                reason: RevocationError::Revoked {
                    kind: RevocationKind::Entry,
                    ..
                }
            })
        ));
        assert!(
            verifier
                .verify(&signer.token(OTHER, "tok-3"), &audience)
                .is_ok()
        );
    }
}
