//! Starting, running and stopping the broker.
//!
//! [`start`] does the whole bootstrap (data directory, CA, store, audit log,
//! listeners) and returns a [`RunningServer`], whose `shutdown` drains (at most
//! [`DRAIN_TIMEOUT`]). `mayfly server` (the binary's command line) loads the
//! config, calls [`start`], prints what happened and waits for a signal.

use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mayfly_ca::{CaConfig, CaError, CertificateAuthority, LoadReport};
use mayfly_sdk::files::FileError;
use mayfly_sdk::proto::v1::admin_server::AdminServer;
use mayfly_sdk::proto::v1::broker_server::BrokerServer;
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;

use crate::api::admin::{AdminService, AdminState};
use crate::api::broker::BrokerService;
use crate::api::bundle::{BundleFileError, BundleFiles, BundlePublisher};
use crate::api::connections::{InFlightLayer, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT};
use crate::api::http::{HttpState, router};
use crate::api::operators::{AdminPeers, SocketGroupError, admin_peer_check};
use crate::api::revocations::RevocationFeed;
use crate::api::tls::{ServerIdentity, TlsError, incoming};
use crate::attest::{AttestorConfigError, Attestors};
use crate::audit::{AuditError, AuditEvent, AuditLog};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, StoreLocation};
use crate::mint::{MintError, Minter, MinterParts, UsageTracker};
use crate::policy::{Entry, EntryId, EntryIndex, IndexLoad};
use crate::replica::{KeyPublishError, KeyPublisher, ReplicaIdError, Replicas};
use crate::revoke::{RevokeError, Revoker};
use crate::rotation::Rotation;
use crate::store::{EmbeddedStore, RedisStore, Store, StoreError, StoreEvent};
use crate::telemetry::{ADMIN_SERVICE, BROKER_SERVICE, Telemetry};
use mayfly_sdk::revocation::{Revocation, RevocationSet};
use mayfly_telemetry::{RpcLayer, Sampling};
use tokio::sync::mpsc;

/// How often usage counters are written to the store.
const USAGE_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// How long shutdown waits for in-flight requests before forcing.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stopping server waits for the anchors outside the host (HTTP, syslog, the
/// Redis witness) to take the audit log's last checkpoint.
pub const LAST_SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long start waits for a shared store's first full state.
const FIRST_SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start. Each variant keeps the error of the
/// layer that failed as its source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The operators' group cannot be given the admin socket.
    #[error(transparent)]
    AdminSocket(#[from] SocketGroupError),
    /// The data directory cannot be used.
    #[error("data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: FileError,
    },
    /// This replica's id cannot be read or made.
    #[error("replica id: {0}")]
    ReplicaId(#[from] ReplicaIdError),
    /// The OTLP metric exporter cannot be built.
    #[error("telemetry: {0}")]
    Telemetry(#[source] mayfly_telemetry::TracingError),
    /// The CA could not be loaded or created, or a rotation step due at
    /// start failed.
    #[error("certificate authority: {0}")]
    Ca(#[from] CaError),
    /// The bundle could not be published.
    #[error("trust bundle: {0}")]
    Bundle(#[from] BundleFileError),
    /// The store could not be opened or read.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A shared store did not deliver its first complete state.
    #[error("store: {0}")]
    FirstSync(#[from] FirstSyncError),
    /// This replica's JWT keys could not be published.
    #[error("publishing this replica's JWT keys: {0}")]
    Keys(#[from] KeyPublishError),
    /// The audit log could not be opened or written.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// An anchor sink of the audit log cannot be set up (its CA or token file).
    #[error("audit anchor: {0}")]
    Anchor(#[from] crate::anchor::AnchorError),
    /// The alert webhook cannot be set up (its secret or CA file).
    #[error("alert webhook: {0}")]
    Alerts(#[from] crate::alert::WebhookError),
    /// The OTel log events output of the alerts cannot be set up (its OTLP endpoint).
    #[error("alert log events ([alerts] otel_logs): {0}")]
    AlertLogs(#[source] mayfly_telemetry::TracingError),
    /// The mint path could not be wired (its JWT validator or issuer).
    #[error("mint path: {0}")]
    Mint(#[from] MintError),
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address or socket path.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// An attestor could not be built from its config.
    #[error(transparent)]
    Attestors(#[from] AttestorConfigError),
    /// TLS setup failed.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
}

/// Why a shared store's first complete state did not arrive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FirstSyncError {
    /// The change feed ended first.
    #[error("the store's change feed ended")]
    FeedEnded,
    /// Nothing complete came in time.
    #[error("no complete state from the shared store within {}s", .0.as_secs())]
    Timeout(Duration),
}

/// What [`start`] did, for the banner.
#[derive(Debug, Clone)]
pub struct StartReport {
    /// What the CA loader created.
    pub created_root: bool,
    /// Whether a new intermediate was made.
    pub created_intermediate: bool,
    /// Whether a JWT key was made.
    pub created_jwt_key: bool,
    /// SHA-256 of the root certificate.
    pub root_fingerprint: String,
    /// The JWT signing key id.
    pub jwt_key_id: String,
    /// Where the root CA bundle was written for clients.
    pub bundle_path: PathBuf,
    /// Entries loaded from the store.
    pub entries: usize,
    /// The configured attestors.
    pub attestors: Vec<&'static str>,
    /// The store, described without secrets.
    pub store: String,
    /// This replica's id.
    pub replica_id: String,
    /// Revocations in force at start.
    pub revocations: usize,
}

/// A running broker. Dropping it does not stop it; call [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct RunningServer {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    admin_socket: PathBuf,
    config: Config,
    report: StartReport,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    /// Fired after the audit log closed: the anchor and witness tasks send its last
    /// checkpoint and stop.
    log_closed: CancellationToken,
    anchors: Vec<JoinHandle<()>>,
    audit: AuditLog,
    store: Arc<dyn Store>,
    usage: Arc<UsageTracker>,
    revoker: Arc<Revoker>,
    telemetry: Telemetry,
    witness: Option<Arc<crate::witness::WitnessView>>,
    governance: Arc<crate::governance::Sweeper>,
}

impl RunningServer {
    /// Runs one governance sweep round now rather than at the next tick
    /// (tests, on a clock they control); another replica may have taken
    /// the round.
    ///
    /// # Errors
    ///
    /// [`crate::governance::GovernanceError`] if the store or the audit log
    /// fails.
    pub async fn sweep_governance(
        &self,
    ) -> Result<crate::governance::SweepOutcome, crate::governance::GovernanceError> {
        self.governance.sweep().await
    }

    /// Runs one owners' digest round now rather than at the next tick (tests, on a clock
    /// they control); another replica may have taken the round.
    ///
    /// # Errors
    ///
    /// [`crate::governance::GovernanceError`] if the store or the audit log fails.
    pub async fn send_owner_digests(
        &self,
    ) -> Result<crate::governance::DigestOutcome, crate::governance::GovernanceError> {
        self.governance.send_owner_digests().await
    }

    /// What this replica's audit witness accepted last of the other replicas'
    /// audit logs; `None` without a shared store (no witness runs).
    pub fn audit_witness(&self) -> Option<&Arc<crate::witness::WitnessView>> {
        self.witness.as_ref()
    }

    /// Drops the revocations that cover nothing any more, now rather than
    /// at the next periodic prune (tests and operators' tools); returns
    /// their keys.
    ///
    /// # Errors
    ///
    /// [`RevokeError`] if the store cannot be reached.
    pub async fn prune_revocations(&self) -> Result<Vec<String>, RevokeError> {
        self.revoker.prune().await
    }

    /// The revocation index this replica checks.
    pub fn revocations(&self) -> &Arc<RevocationSet> {
        self.revoker.set()
    }

    /// The bound broker (gRPC over TLS) address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The admin socket path.
    pub fn admin_socket(&self) -> &Path {
        &self.admin_socket
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What bootstrap did.
    pub fn report(&self) -> &StartReport {
        &self.report
    }

    /// Stops accepting, drains in-flight requests (at most 10 s), saves
    /// usage, closes the audit log and sends its last checkpoint to the
    /// anchors outside the host (at most [`LAST_SEND_TIMEOUT`]).
    pub async fn shutdown(self) {
        self.cancel.cancel();
        // What is left after the timeout lets go of the store and the listeners.
        if !join_within(self.tasks, DRAIN_TIMEOUT).await {
            tracing::warn!(
                "in-flight requests did not finish within {DRAIN_TIMEOUT:?}; forcing shutdown"
            );
        }
        flush_usage(self.store.as_ref(), &self.usage).await;
        if let Err(error) = self.audit.close().await {
            tracing::error!(%error, "closing the audit log");
        }
        // The closed log's last checkpoint: without it, a witness holds one up to a
        // second older, and an insider could cut that second off the log unseen.
        self.log_closed.cancel();
        if !join_within(self.anchors, LAST_SEND_TIMEOUT).await {
            tracing::warn!(
                "the audit log's last checkpoint did not reach every anchor within \
                 {LAST_SEND_TIMEOUT:?}; they hold an earlier one"
            );
        }
        let _ = std::fs::remove_file(&self.admin_socket);
        // Last: the final OTLP export counts the drained requests.
        self.telemetry.shutdown().await;
    }
}

/// Waits for every task in `tasks` to end, at most `limit`; aborts those still running
/// then. True if all ended in time.
async fn join_within(tasks: Vec<JoinHandle<()>>, limit: Duration) -> bool {
    let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
    let joined = async {
        for task in tasks {
            let _ = task.await;
        }
    };
    let ended = tokio::time::timeout(limit, joined).await.is_ok();
    if !ended {
        for abort in aborts {
            abort.abort();
        }
    }
    ended
}

/// Bootstraps and starts the broker on `config`, with the system clock.
pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    start_with_clock(config, Arc::new(SystemClock)).await
}

/// Like [`start`], with a given clock (tests).
///
/// The steps, in order: open the state (data directory, CA, store, audit
/// log, the in-process indexes), wire the mint path on it, bind the
/// listeners, serve, and record `server.start`. Nothing is served before
/// every step that can fail has succeeded, except that last record: if it
/// cannot be written, the tasks already spawned are stopped (a drop guard).
pub async fn start_with_clock(
    config: Config,
    clock: Arc<dyn Clock>,
) -> Result<RunningServer, ServerError> {
    crate::install_crypto_provider();
    let state = State::open(&config, &clock).await?;
    let mut core = Core::wire(&config, &clock, &state).await?;
    let listeners = Listeners::bind(&config).await?;
    let identity = Arc::new(ServerIdentity::new(
        core.ca.clone(),
        config.ttl.x509_max,
        &config.server_dns_names,
        &config.server_ip_addresses,
    )?);
    let (tls_config, resolver) = identity.server_config(clock.as_ref())?;
    // Every JWT-SVID names the issuer that OIDC discovery serves, from the
    // first one minted: set before the broker API serves anything.
    let issuer = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", listeners.http_addr));
    core.minter.set_issuer(&issuer)?;

    let mut tasks = Tasks::new();
    let crl = Arc::new(tokio::sync::watch::Sender::new(None::<Arc<Vec<u8>>>));
    let report = state.report(&config, &core);
    // With a shared store, the replicas witness each other's audit logs.
    let witness = state
        .feed
        .is_some()
        .then(|| Arc::new(crate::witness::WitnessView::default()));
    let grpc_addr = listeners.grpc_addr;
    let http_addr = listeners.http_addr;
    let admin_socket = listeners.admin_socket.clone();
    let alerts = if config.alerts.any_output() {
        let mut outputs = Vec::new();
        if let Some(webhook) = &config.alerts.webhook {
            // Checked with the config: only a file changed since can fail here.
            outputs.push(crate::alert::Output::Webhook(crate::alert::Webhook::new(
                webhook,
            )?));
        }
        if config.alerts.otel_logs {
            // The endpoint was checked with the config ([alerts] otel_logs needs one).
            let logs = mayfly_telemetry::OtlpLogs::new(&config.telemetry.otlp)
                .map_err(ServerError::AlertLogs)?;
            outputs.push(crate::alert::Output::OtelLogs(logs));
        }
        let (sink, output_tasks) = crate::alert::start(
            outputs,
            state.parts.audit.clone(),
            clock.clone(),
            core.telemetry.metrics().clone(),
            tasks.token(),
        );
        for task in output_tasks {
            tasks.push(task);
        }
        Some(sink)
    } else {
        None
    };
    let breakglass = Arc::new(crate::breakglass::Breakglass::new(
        crate::breakglass::BreakglassParts {
            store: state.parts.store.clone(),
            entries: state.parts.entries.clone(),
            revoker: core.revoker.clone(),
            audit: state.parts.audit.clone(),
            alerts: alerts.clone(),
            clock: clock.clone(),
            config: config.breakglass,
            trust_domain: config.trust_domain.as_str().to_owned(),
        },
    ));
    core.minter.set_breakglass(breakglass.clone());
    tasks.push(breakglass.clone().run(tasks.token()));
    serve(
        &mut tasks,
        &config,
        &clock,
        &state,
        &core,
        listeners,
        tls_config,
        issuer,
        &crl,
        alerts.clone(),
        breakglass,
    );
    tasks.push(identity.keep_fresh(
        resolver,
        clock.clone(),
        core.rotation.changes(),
        tasks.token(),
    ));
    run_background(
        &mut tasks,
        &config,
        &clock,
        state.feed,
        state.anchors,
        &state.parts,
        &core,
        &crl,
        witness.clone(),
    );
    let mut governance = crate::governance::Sweeper::new(
        config.governance.clone(),
        state.parts.store.clone(),
        state.parts.entries.clone(),
        state.parts.usage.clone(),
        state.parts.audit.clone(),
        clock.clone(),
    );
    if let Some(sink) = &alerts {
        governance = governance.with_alerts(
            sink.clone(),
            config.alerts.owner_digest_every,
            config.trust_domain.as_str(),
        );
    }
    let governance = Arc::new(governance);
    tasks.push(governance.clone().run(tasks.token()));
    if let Some((detector, findings)) = core.anomaly.take() {
        let responder = crate::anomaly::Responder::new(crate::anomaly::ResponderParts {
            config: config.anomaly.clone(),
            detector,
            store: state.parts.store.clone(),
            entries: state.parts.entries.clone(),
            revoker: core.revoker.clone(),
            audit: state.parts.audit.clone(),
            alerts: alerts.clone(),
            clock: clock.clone(),
            metrics: core.telemetry.metrics().clone(),
            trust_domain: config.trust_domain.as_str().to_owned(),
        });
        tasks.push(responder.run(findings, tasks.token()));
    }

    state
        .parts
        .audit
        .append(AuditEvent {
            action: "server.start".into(),
            actor: "server".into(),
            detail: Some(serde_json::json!({
                "trust_domain": config.trust_domain.as_str(),
                "grpc": grpc_addr.to_string(),
                "http": http_addr.to_string(),
                "root_fingerprint": report.root_fingerprint,
                "jwt_key_id": report.jwt_key_id,
                "created_root": report.created_root,
                "created_intermediate": report.created_intermediate,
                "attestors": core.attestors.names(),
            })),
            ..AuditEvent::default()
        })
        .await?;

    let tasks = tasks.into_parts();
    Ok(RunningServer {
        grpc_addr,
        http_addr,
        admin_socket,
        config,
        report,
        cancel: tasks.cancel,
        tasks: tasks.handles,
        log_closed: tasks.log_closed,
        anchors: tasks.last,
        audit: state.parts.audit,
        store: state.parts.store,
        usage: state.parts.usage,
        revoker: core.revoker,
        telemetry: core.telemetry,
        witness,
        governance,
    })
}

/// The tasks a starting server spawned, stopped (cancelled, then aborted)
/// if it is dropped before [`into_parts`](Self::into_parts): a start that
/// fails after spawning leaves nothing running.
struct Tasks(Spawned);

/// Spawned tasks of two kinds, and the tokens that stop them.
#[derive(Default)]
struct Spawned {
    cancel: CancellationToken,
    handles: Vec<JoinHandle<()>>,
    /// Fires once the audit log has closed: the tasks that carry its checkpoints off the
    /// host ([`push_last`](Tasks::push_last)) send the last one, then stop.
    log_closed: CancellationToken,
    last: Vec<JoinHandle<()>>,
}

impl Tasks {
    fn new() -> Self {
        Tasks(Spawned::default())
    }

    /// A token that fires when the server stops.
    fn token(&self) -> CancellationToken {
        self.0.cancel.child_token()
    }

    fn push(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.0.handles.push(tokio::spawn(task));
    }

    /// A token that fires once the audit log has closed, after the requests drained.
    fn log_closed_token(&self) -> CancellationToken {
        self.0.log_closed.child_token()
    }

    /// A task that runs on while requests drain and stops after the audit log closed (on
    /// [`log_closed_token`](Self::log_closed_token)), given at most [`LAST_SEND_TIMEOUT`].
    fn push_last(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.0.last.push(tokio::spawn(task));
    }

    /// Hands the tasks over to the running server; the guard is disarmed (it is
    /// left holding none).
    fn into_parts(mut self) -> Spawned {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        let tasks = &self.0;
        if tasks.handles.is_empty() && tasks.last.is_empty() {
            return;
        }
        tasks.cancel.cancel();
        tasks.log_closed.cancel();
        for handle in tasks.handles.iter().chain(&tasks.last) {
            handle.abort();
        }
    }
}

/// What the broker keeps: opened (or created) from the data directory and
/// the store, before anything is wired or served.
struct State {
    parts: Parts,
    /// The audit log's anchor sinks (HTTP, syslog), each run by a task once serving.
    anchors: Vec<crate::anchor::Sink>,
    ca_report: LoadReport,
    /// A shared store's change feed, followed once serving.
    feed: Option<mpsc::Receiver<StoreEvent>>,
}

/// The shared pieces of [`State`] that the tasks hold.
struct Parts {
    ca: Arc<CertificateAuthority>,
    replicas: Arc<Replicas>,
    store: Arc<dyn Store>,
    audit: AuditLog,
    usage: Arc<UsageTracker>,
    entries: Arc<EntryIndex>,
    revocations: Arc<RevocationSet>,
    /// The registered audiences the mint path enforces.
    audiences: Arc<crate::audience::AudienceIndex>,
}

/// How many entries or revocations the start reads from the embedded store
/// at a time. Reading them all at once held every one twice at the peak (a
/// million revocations with their reasons are hundreds of MiB), and the
/// allocator kept much of that after it was freed.
const LOAD_PAGE: usize = 1024;

/// Reads a store table [`LOAD_PAGE`] rows at a time: `read` is given the
/// key of the last row so far (`None` for the first page), `key` names a
/// row's key, and `take` gets each page.
async fn read_in_pages<T, K, F>(
    mut read: impl FnMut(Option<K>) -> F,
    key: impl Fn(&T) -> K,
    mut take: impl FnMut(Vec<T>),
) -> Result<(), StoreError>
where
    F: std::future::Future<Output = Result<Vec<T>, StoreError>>,
{
    let mut after = None;
    loop {
        let page = read(after.take()).await?;
        let done = page.len() < LOAD_PAGE;
        after = page.last().map(&key);
        take(page);
        if done {
            return Ok(());
        }
    }
}

/// The embedded store's entries, a page at a time, as a snapshot to publish.
async fn load_entries(store: &dyn Store) -> Result<IndexLoad, StoreError> {
    let mut load = IndexLoad::default();
    read_in_pages(
        |after: Option<EntryId>| async move { store.entries_after(after.as_ref(), LOAD_PAGE).await },
        |entry: &Entry| entry.id.clone(),
        |page| load.add(page),
    )
    .await?;
    Ok(load)
}

/// The embedded store's revocations into `set`, a page at a time.
async fn load_revocations(store: &dyn Store, set: &RevocationSet) -> Result<(), StoreError> {
    read_in_pages(
        |after: Option<String>| async move {
            store.revocations_after(after.as_deref(), LOAD_PAGE).await
        },
        Revocation::key,
        |page| {
            page.into_iter()
                .for_each(|revocation| set.upsert(revocation))
        },
    )
    .await
}

impl State {
    /// Opens the data directory, the CA, the store and the audit log, and
    /// fills the in-process indexes: from a shared store's feed (waiting
    /// for its first complete state) or from the embedded store.
    async fn open(config: &Config, clock: &Arc<dyn Clock>) -> Result<Self, ServerError> {
        let data_dir = config.data_dir.clone();
        mayfly_sdk::files::ensure_private_dir(&data_dir).map_err(|source| {
            ServerError::DataDir {
                path: data_dir.clone(),
                source,
            }
        })?;
        let (ca, ca_report) = load_ca(config, clock.as_ref())?;
        let replicas = Arc::new(Replicas::new(crate::replica::load_or_create_id(&data_dir)?));
        let store = open_store(config).await?;
        let mut audit_options = config.audit_options(replicas.id());
        audit_options.anchored =
            witnessed_checkpoint(config, store.as_ref(), replicas.id()).await?;
        let anchors = crate::anchor::Sinks::open(
            config.audit.anchor_http.as_ref(),
            config.audit.anchor_syslog.as_ref(),
        )?;
        audit_options.anchored.extend(anchors.read_at_start().await);
        let audit = AuditLog::open_with(&config.layout().audit(), &audit_options)?;
        let anchors = anchors.attach(&audit);
        let usage = Arc::new(UsageTracker::new(store.usage().await?));
        let entries = Arc::new(EntryIndex::new(Vec::new()));
        let audiences = Arc::new(crate::audience::AudienceIndex::default());
        let (revocations, feed) = match store.subscribe() {
            // A shared store: the index follows its feed and knows how fresh it is.
            Some(mut feed) => {
                let set = Arc::new(RevocationSet::following(config.revocation_staleness));
                let indexes = (&*entries, &*audiences);
                first_sync(&mut feed, indexes, &set, &usage, &replicas, clock.as_ref()).await?;
                (set, Some(feed))
            }
            // The embedded store: this process is the only writer.
            None => {
                entries.publish(load_entries(store.as_ref()).await?);
                audiences.replace_all(store.list_audiences().await?);
                let set = Arc::new(RevocationSet::authoritative());
                load_revocations(store.as_ref(), &set).await?;
                (set, None)
            }
        };
        Ok(State {
            anchors,
            parts: Parts {
                ca: Arc::new(ca),
                replicas,
                store,
                audit,
                usage,
                entries,
                revocations,
                audiences,
            },
            ca_report,
            feed,
        })
    }

    /// What start did, for the banner.
    fn report(&self, config: &Config, core: &Core) -> StartReport {
        let parts = &self.parts;
        StartReport {
            created_root: self.ca_report.created_root,
            created_intermediate: self.ca_report.created_intermediate,
            created_jwt_key: self.ca_report.created_jwt_key,
            root_fingerprint: parts.ca.root_fingerprint_sha256(),
            jwt_key_id: parts.ca.jwt_signer().key_id().to_owned(),
            bundle_path: config.layout().bundle_pem(),
            entries: parts.entries.len(),
            attestors: core.attestors.names(),
            store: parts.store.describe(),
            replica_id: parts.replicas.id().to_owned(),
            revocations: parts.revocations.len(),
        }
    }
}

/// The broker's services, wired on its [`State`].
struct Core {
    ca: Arc<CertificateAuthority>,
    telemetry: Telemetry,
    revoker: Arc<Revoker>,
    bundle: Arc<BundlePublisher>,
    attestors: Arc<Attestors>,
    minter: Arc<Minter>,
    rotation: Arc<Rotation>,
    keys: KeyPublisher,
    /// The anomaly detectors and their findings, for the task that handles them
    /// (taken when it is spawned); `None` with `[anomaly] enabled = false`.
    anomaly: Option<AnomalyWiring>,
}

/// The anomaly detectors the minter reports to, and the queue of their findings.
type AnomalyWiring = (
    Arc<crate::anomaly::Detector>,
    tokio::sync::mpsc::Receiver<crate::anomaly::Finding>,
);

impl Core {
    /// Wires revocation, the bundle, the attestors, the mint path and
    /// rotation; takes a rotation step that fell due while the broker was
    /// down, and publishes this replica's JWT keys, so that the other
    /// replicas validate the first token it mints.
    async fn wire(
        config: &Config,
        clock: &Arc<dyn Clock>,
        state: &State,
    ) -> Result<Self, ServerError> {
        let parts = &state.parts;
        let ca = parts.ca.clone();
        let telemetry =
            Telemetry::with_export(&config.telemetry.otlp).map_err(ServerError::Telemetry)?;
        telemetry.observe_state(
            &parts.entries,
            &parts.revocations,
            &ca,
            clock,
            state.feed.is_some().then(|| {
                let replicas = Arc::downgrade(&parts.replicas);
                Box::new(move || replicas.upgrade().map(|r| r.store_connected()))
                    as crate::telemetry::StoreConnected
            }),
        );
        parts.audit.observe(telemetry.metrics().clone());
        let revoker = Arc::new(Revoker::new(
            parts.store.clone(),
            parts.revocations.clone(),
            parts.entries.clone(),
            parts.audit.clone(),
            clock.clone(),
            config.jwt_leeway,
        ));
        let bundle = Arc::new(BundlePublisher::new(
            ca.clone(),
            config.bundle_refresh_hint,
            Some(BundleFiles {
                sequence: config.layout().bundle_sequence(),
                roots_pem: config.layout().bundle_pem(),
            }),
        )?);
        let attestors = Arc::new(Attestors::new(&config.attestors)?);
        let anomaly = config.anomaly.enabled.then(|| {
            let (detector, findings) = crate::anomaly::Detector::new(
                &config.anomaly,
                parts.entries.clone(),
                clock.clone(),
                telemetry.metrics().clone(),
            );
            (Arc::new(detector), findings)
        });
        let mut minter = Minter::new(MinterParts {
            ca: ca.clone(),
            entries: parts.entries.clone(),
            store: parts.store.clone(),
            audit: parts.audit.clone(),
            usage: parts.usage.clone(),
            clock: clock.clone(),
            attestors: attestors.clone(),
            revocations: parts.revocations.clone(),
            leeway: config.jwt_leeway,
            metrics: telemetry.metrics().clone(),
        })?
        .with_ttl_caps(config.ttl.jwt_max, config.ttl.x509_max)
        .with_audiences(parts.audiences.clone(), config.governance.audience_policy())
        .with_governance_claims(config.jwt_governance_claims);
        if let Some((detector, _)) = &anomaly {
            minter = minter.with_anomaly(detector.clone());
        }
        let minter = Arc::new(minter);
        let rotation = Arc::new(Rotation::new(
            ca.clone(),
            bundle.clone(),
            minter.clone(),
            parts.audit.clone(),
            clock.clone(),
        ));
        rotation.tick().await?;
        let keys = KeyPublisher {
            store: parts.store.clone(),
            ca: ca.clone(),
            bundle: bundle.clone(),
            replicas: parts.replicas.clone(),
            clock: clock.clone(),
            leeway: config.jwt_leeway,
        };
        keys.refresh().await?;
        minter.set_jwt_authorities(&bundle.jwt_authorities())?;
        Ok(Core {
            ca,
            telemetry,
            revoker,
            bundle,
            attestors,
            minter,
            rotation,
            keys,
            anomaly,
        })
    }
}

/// The bound listeners: broker (gRPC over TLS), HTTP and the admin socket.
struct Listeners {
    grpc: TcpListener,
    grpc_addr: SocketAddr,
    http: TcpListener,
    http_addr: SocketAddr,
    admin: UnixListener,
    admin_socket: PathBuf,
    /// Who may use the admin socket: the owner of the data directory, root
    /// and the operators' group.
    admin_peers: AdminPeers,
}

impl Listeners {
    async fn bind(config: &Config) -> Result<Self, ServerError> {
        let grpc = bind_tcp(config.grpc_listen).await?;
        let http = bind_tcp(config.http_listen).await?;
        let grpc_addr = local_addr(&grpc, config.grpc_listen)?;
        let http_addr = local_addr(&http, config.http_listen)?;
        let admin_socket = config.admin_socket();
        let group = config
            .admin
            .socket_group
            .as_deref()
            .map(crate::api::operators::resolve_group)
            .transpose()?;
        let admin = bind_admin_socket(&admin_socket)?;
        if let Some(gid) = group {
            crate::api::operators::open_to_group(&admin_socket, gid)?;
        }
        let owner_uid = std::fs::metadata(&config.data_dir)
            .map(|m| m.uid())
            .map_err(|source| ServerError::DataDir {
                path: config.data_dir.clone(),
                source: FileError::Io {
                    operation: "stat",
                    path: config.data_dir.clone(),
                    source,
                },
            })?;
        Ok(Listeners {
            grpc,
            grpc_addr,
            http,
            http_addr,
            admin,
            admin_socket,
            admin_peers: AdminPeers { owner_uid, group },
        })
    }
}

/// Spawns the three servers: broker, admin and HTTP.
#[allow(clippy::too_many_arguments)]
fn serve(
    tasks: &mut Tasks,
    config: &Config,
    clock: &Arc<dyn Clock>,
    state: &State,
    core: &Core,
    listeners: Listeners,
    tls_config: Arc<rustls::ServerConfig>,
    issuer: String,
    crl: &Arc<tokio::sync::watch::Sender<Option<Arc<Vec<u8>>>>>,
    alerts: Option<crate::alert::AlertSink>,
    breakglass: Arc<crate::breakglass::Breakglass>,
) {
    let parts = &state.parts;
    let limits = config.limits.clone();
    let broker = BrokerServer::new(BrokerService::new(
        core.minter.clone(),
        core.bundle.clone(),
        config.trust_domain.clone(),
        RevocationFeed {
            set: parts.revocations.clone(),
            crl: crl.subscribe(),
            clock: clock.clone(),
            shutdown: tasks.token(),
        },
    ))
    .max_decoding_message_size(limits.max_message_bytes);
    let (connections, open) = incoming(listeners.grpc, tls_config, &limits, tasks.token());
    core.telemetry
        .observe_connections(Box::new(move || open.now()));
    let sampling = config
        .telemetry
        .otlp
        .traces_on()
        .then(|| Sampling::ratio(config.telemetry.otlp.sampling_ratio));
    let meter = core.telemetry.meter();
    let replica = vec![opentelemetry::KeyValue::new(
        "mayfly.replica",
        parts.replicas.id().to_owned(),
    )];
    let broker_rpc =
        RpcLayer::new(&BROKER_SERVICE, &meter, sampling).with_span_attributes(replica.clone());
    let admin_rpc = RpcLayer::new(&ADMIN_SERVICE, &meter, sampling).with_span_attributes(replica);
    let shutdown = tasks.token();
    tasks.push(async move {
        let served = tonic::transport::Server::builder()
            .timeout(limits.request_timeout)
            .max_concurrent_streams(limits.max_concurrent_streams)
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .layer(InFlightLayer)
            .layer(broker_rpc)
            .add_service(broker)
            .serve_with_incoming_shutdown(connections, shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "broker gRPC server stopped");
        }
    });

    let admin_state = AdminState {
        config: config.clone(),
        store: parts.store.clone(),
        entries: parts.entries.clone(),
        usage: parts.usage.clone(),
        audit: parts.audit.clone(),
        clock: clock.clone(),
        bundle: core.bundle.clone(),
        grpc_addr: listeners.grpc_addr.to_string(),
        http_addr: listeners.http_addr.to_string(),
        attestors: core.attestors.clone(),
        revoker: core.revoker.clone(),
        replicas: parts.replicas.clone(),
        rotation: core.rotation.clone(),
        alerts,
        audiences: parts.audiences.clone(),
        breakglass: Some(breakglass),
    };
    let admin = AdminServer::with_interceptor(
        AdminService::new(admin_state),
        admin_peer_check(listeners.admin_peers),
    );
    let admin_listener = listeners.admin;
    let shutdown = tasks.token();
    tasks.push(async move {
        let served = tonic::transport::Server::builder()
            .layer(admin_rpc)
            .add_service(admin)
            .serve_with_incoming_shutdown(
                UnixListenerStream::new(admin_listener),
                shutdown.cancelled_owned(),
            )
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "admin server stopped");
        }
    });

    let app = router(HttpState {
        bundle: core.bundle.clone(),
        issuer,
        crl: crl.subscribe(),
        revocations: parts.revocations.clone(),
        clock: clock.clone(),
        telemetry: core.telemetry.clone(),
        serve_metrics: config.telemetry.prometheus,
    });
    let http_listener = listeners.http;
    let shutdown = tasks.token();
    tasks.push(async move {
        let served = axum::serve(http_listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "HTTP server stopped");
        }
    });
}

/// Spawns the background work: usage flushes, pruning, following a shared
/// store, key publication, rotation, the validator following the bundle,
/// the CRL, the audit anchor sinks (`anchors`), and with a shared store the
/// audit witness (`witness`).
#[allow(clippy::too_many_arguments)]
fn run_background(
    tasks: &mut Tasks,
    config: &Config,
    clock: &Arc<dyn Clock>,
    feed: Option<mpsc::Receiver<StoreEvent>>,
    anchors: Vec<crate::anchor::Sink>,
    parts: &Parts,
    core: &Core,
    crl: &Arc<tokio::sync::watch::Sender<Option<Arc<Vec<u8>>>>>,
    witness: Option<Arc<crate::witness::WitnessView>>,
) {
    if let Some(view) = witness {
        tasks.push_last(crate::witness::run(
            parts.replicas.id().to_owned(),
            parts.store.clone(),
            parts.audit.clone(),
            core.telemetry.metrics().clone(),
            clock.clone(),
            view,
            tasks.log_closed_token(),
        ));
    }
    for sink in anchors {
        tasks.push_last(crate::anchor::run(
            sink,
            parts.replicas.id().to_owned(),
            parts.audit.clone(),
            core.telemetry.metrics().clone(),
            tasks.log_closed_token(),
        ));
    }
    tasks.push(usage_flusher(
        parts.store.clone(),
        parts.usage.clone(),
        tasks.token(),
    ));
    tasks.push(prune_expired(
        parts.store.clone(),
        core.revoker.clone(),
        clock.clone(),
        tasks.token(),
    ));
    if let Some(feed) = feed {
        tasks.push(crate::replica::follow(
            feed,
            parts.entries.clone(),
            parts.audiences.clone(),
            parts.revocations.clone(),
            parts.usage.clone(),
            parts.replicas.clone(),
            clock.clone(),
            tasks.token(),
        ));
    }
    tasks.push(
        core.keys
            .clone()
            .run(core.rotation.changes(), tasks.token()),
    );
    tasks.push(
        core.rotation
            .clone()
            .run(config.rotation_check_interval, tasks.token()),
    );
    tasks.push(validator_follows_bundle(
        core.bundle.clone(),
        core.minter.clone(),
        tasks.token(),
    ));
    tasks.push(crate::api::crl::publish(
        core.ca.clone(),
        parts.revocations.clone(),
        crl.clone(),
        clock.clone(),
        core.rotation.changes(),
        tasks.token(),
    ));
}

/// Keeps the mint path's JWT validator on the served bundle's keys: this
/// replica's (rotation) and the other replicas' (a token minted by one
/// validates on all).
async fn validator_follows_bundle(
    bundle: Arc<BundlePublisher>,
    minter: Arc<Minter>,
    cancel: CancellationToken,
) {
    let mut changes = bundle.subscribe();
    loop {
        // First at once: a change before the subscription is not missed.
        if let Err(error) = minter.set_jwt_authorities(&bundle.jwt_authorities()) {
            tracing::error!(%error, "cannot validate with the bundle's new JWT keys; keeping the old ones");
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}

/// The checkpoint of this replica's audit log that the shared store witnessed
/// (Redis `{prefix}:audit`), named for the log to compare itself with at open:
/// a log rolled back or forked since is refused there. None with the embedded
/// store, or when Redis holds none yet. A record that cannot be decoded is
/// passed over with a warning, like an unreadable anchor file: the witness
/// overwrites it with the next checkpoint, and the other replicas still
/// remember what they saw.
async fn witnessed_checkpoint(
    config: &Config,
    store: &dyn Store,
    replica: &str,
) -> Result<Vec<(String, crate::audit::SignedCheckpoint)>, ServerError> {
    let StoreLocation::Redis { prefix, .. } = &config.store else {
        return Ok(Vec::new());
    };
    let witness = format!("redis {prefix}:audit");
    match store.audit_checkpoint(replica).await {
        Ok(Some(record)) => Ok(vec![(witness, record.checkpoint)]),
        Ok(None) => {
            tracing::info!(%witness, "no witnessed audit checkpoint of this replica yet");
            Ok(Vec::new())
        }
        Err(StoreError::Corrupt { reason }) => {
            tracing::warn!(%witness, %reason,
                "the witnessed audit checkpoint cannot be read; starting without comparing against it");
            Ok(Vec::new())
        }
        Err(error) => Err(error.into()),
    }
}

async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ServerError> {
    Ok(match &config.store {
        StoreLocation::Embedded => Arc::new(EmbeddedStore::open(&config.layout().store())?),
        StoreLocation::Redis { url, prefix } => Arc::new(RedisStore::connect(url, prefix).await?),
    })
}

/// Waits for a shared store's first full state and heartbeat, so that the
/// replica starts with complete, fresh indexes.
async fn first_sync(
    feed: &mut mpsc::Receiver<StoreEvent>,
    (entries, audiences): (&EntryIndex, &crate::audience::AudienceIndex),
    revocations: &RevocationSet,
    usage: &UsageTracker,
    replicas: &Replicas,
    clock: &dyn Clock,
) -> Result<(), ServerError> {
    let wait = async {
        let (mut synced, mut heard) = (false, false);
        while !(synced && heard) {
            let Some(event) = feed.recv().await else {
                return Err(FirstSyncError::FeedEnded);
            };
            synced |= matches!(event, StoreEvent::Snapshot { .. });
            heard |= synced && matches!(event, StoreEvent::Heard(_));
            if let StoreEvent::Lost { reason } = &event {
                tracing::warn!(%reason, "waiting for the shared store");
            }
            let now_ms = crate::clock::unix_millis(clock.now());
            crate::replica::apply(&event, entries, revocations, usage, replicas, now_ms);
            crate::replica::apply_audiences(&event, audiences);
        }
        Ok(())
    };
    match tokio::time::timeout(FIRST_SYNC_TIMEOUT, wait).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(FirstSyncError::Timeout(FIRST_SYNC_TIMEOUT).into()),
    }
}

fn load_ca(
    config: &Config,
    clock: &dyn Clock,
) -> Result<(CertificateAuthority, LoadReport), ServerError> {
    let mut ca_config = CaConfig::new(config.trust_domain.clone());
    ca_config.root_ttl = config.root_ttl;
    ca_config.intermediate_ttl = config.intermediate_ttl;
    ca_config.jwt_key_ttl = config.jwt_key_ttl;
    ca_config.publish_ahead = config.publish_ahead;
    // An old intermediate or JWT key stays published until nothing it
    // signed can still be valid.
    ca_config.max_x509_ttl = config.ttl.x509_max;
    ca_config.max_jwt_ttl = config.ttl.jwt_max + config.jwt_leeway;
    Ok(CertificateAuthority::load_or_create(
        &config.layout().ca(),
        &ca_config,
        clock.now(),
    )?)
}

async fn bind_tcp(address: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Bind {
            address: address.to_string(),
            source,
        })
}

fn local_addr(listener: &TcpListener, configured: SocketAddr) -> Result<SocketAddr, ServerError> {
    listener.local_addr().map_err(|source| ServerError::Bind {
        address: configured.to_string(),
        source,
    })
}

fn bind_admin_socket(path: &Path) -> Result<UnixListener, ServerError> {
    let bind_error = |source| ServerError::Bind {
        address: path.display().to_string(),
        source,
    };
    // A socket left by a crashed server. Another live server cannot be using
    // it: it would hold the store's lock, and opening the store came first.
    if path.exists() {
        std::fs::remove_file(path).map_err(bind_error)?;
    }
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
    Ok(listener)
}

async fn usage_flusher(store: Arc<dyn Store>, usage: Arc<UsageTracker>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(USAGE_FLUSH_INTERVAL) => flush_usage(store.as_ref(), &usage).await,
        }
    }
}

/// How often expired join tokens, replay keys and challenges are dropped.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// Used or expired join tokens stay this long, so a late reuse is reported
/// as reuse rather than as an unknown token.
const JOIN_TOKEN_RETENTION: i64 = 24 * 60 * 60;

async fn prune_expired(
    store: Arc<dyn Store>,
    revoker: Arc<Revoker>,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(PRUNE_INTERVAL) => {}
        }
        let now = clock.unix_now();
        if let Err(error) = store.prune_join_tokens(now - JOIN_TOKEN_RETENTION).await {
            tracing::warn!(%error, "cannot prune expired join tokens; will retry");
        }
        if let Err(error) = store.prune_one_time(now).await {
            tracing::warn!(%error, "cannot prune expired replay records; will retry");
        }
        if let Err(error) = revoker.prune().await {
            tracing::warn!(%error, "cannot prune expired revocations; will retry");
        }
    }
}

async fn flush_usage(store: &dyn Store, usage: &UsageTracker) {
    let dirty = usage.take_dirty();
    if dirty.is_empty() {
        return;
    }
    if let Err(error) = store.record_usage(&dirty).await {
        tracing::warn!(%error, "cannot save usage records; will retry");
        usage.restore_dirty(&dirty);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task that holds `token` until it is cancelled or aborted.
    fn holder(tasks: &mut Tasks, token: &Arc<()>) {
        let held = token.clone();
        let cancel = tasks.token();
        tasks.push(async move {
            cancel.cancelled().await;
            drop(held);
        });
    }

    /// Lets the spawned tasks run until `token` has `count` holders, or
    /// gives up after `tries` sleeps of 10 ms.
    async fn settle(token: &Arc<()>, count: usize, tries: u32) -> usize {
        for _ in 0..tries {
            if Arc::strong_count(token) == count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Arc::strong_count(token)
    }

    /// A task pushed to run until the audit log closes, holding `token` until then.
    fn last_holder(tasks: &mut Tasks, token: &Arc<()>) {
        let held = token.clone();
        let closed = tasks.log_closed_token();
        tasks.push_last(async move {
            closed.cancelled().await;
            drop(held);
        });
    }

    #[tokio::test]
    async fn tasks_of_a_start_that_failed_stop_and_handed_over_tasks_run_on() {
        // Positive control: tasks handed to the running server keep running.
        let kept = Arc::new(());
        let last = Arc::new(());
        let mut tasks = Tasks::new();
        holder(&mut tasks, &kept);
        last_holder(&mut tasks, &last);
        let handed = tasks.into_parts();
        assert_eq!(
            settle(&kept, 1, 20).await,
            2,
            "a handed-over task was stopped"
        );
        handed.cancel.cancel();
        for handle in handed.handles {
            handle.await.unwrap();
        }
        assert_eq!(Arc::strong_count(&kept), 1);
        // The anchors' kind outlives the stop of the rest, and ends when the log closed.
        assert_eq!(settle(&last, 1, 20).await, 2, "stopped with the rest");
        handed.log_closed.cancel();
        for handle in handed.last {
            handle.await.unwrap();
        }
        assert_eq!(Arc::strong_count(&last), 1);

        // A start that fails after spawning drops its tasks, of both kinds: they stop.
        let dropped = Arc::new(());
        let mut tasks = Tasks::new();
        holder(&mut tasks, &dropped);
        holder(&mut tasks, &dropped);
        last_holder(&mut tasks, &dropped);
        assert_eq!(Arc::strong_count(&dropped), 4);
        drop(tasks);
        assert_eq!(
            settle(&dropped, 1, 500).await,
            1,
            "a task outlived a failed start"
        );
    }

    /// The start reads the embedded store a page at a time: with more rows than a page
    /// (and not a multiple of it), every entry and every revocation arrives once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_start_loads_every_page_of_entries_and_revocations() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
        let trust_domain = mayfly_sdk::TrustDomain::new("example.org").unwrap();
        let count = LOAD_PAGE * 2 + 7;
        let mut ids = Vec::new();
        for n in 0..count {
            let entry = crate::policy::EntrySpec {
                spiffe_id: Some(format!("spiffe://example.org/w/{n}")),
                selectors: Some(vec![format!("unix:uid:{n}")]),
                audiences: Some(vec!["db".into()]),
                owner: Some("team@example.org".into()),
                purpose: Some("paged start".into()),
                ..crate::policy::EntrySpec::default()
            }
            .create(&trust_domain, &crate::policy::TtlPolicy::default(), 0)
            .unwrap();
            ids.push(entry.id.clone());
            store.create_entry(&entry).await.unwrap();
        }
        let revocations: Vec<Revocation> = (0..count)
            .map(|n| {
                let kind = mayfly_sdk::revocation::RevocationKind::Jti;
                Revocation::new(kind, &format!("jti-{n}"), 100, Some(i64::MAX / 2)).unwrap()
            })
            .collect();
        store.put_revocations(&revocations).await.unwrap();

        let entries = EntryIndex::default();
        entries.publish(load_entries(&store).await.unwrap());
        let set = RevocationSet::authoritative();
        load_revocations(&store, &set).await.unwrap();

        assert_eq!(entries.len(), count);
        assert!(ids.iter().all(|id| entries.by_id(id).is_some()));
        assert_eq!(set.len(), count);
        assert!(
            revocations
                .iter()
                .all(|r| set.get(r.kind, &r.value).is_some())
        );
        // The control: an id and a jti the store does not hold are not there.
        assert!(entries.by_id(&EntryId::generate()).is_none());
        let kind = mayfly_sdk::revocation::RevocationKind::Jti;
        assert!(set.get(kind, "jti-never").is_none());
    }
}
