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

use mayfly_ca::{CaConfig, CertificateAuthority, LoadReport};
use mayfly_sdk::proto::v1::admin_server::AdminServer;
use mayfly_sdk::proto::v1::broker_server::BrokerServer;
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;

use crate::api::admin::{AdminService, AdminState, admin_peer_check};
use crate::api::broker::BrokerService;
use crate::api::bundle::{BundleFiles, BundlePublisher};
use crate::api::connections::{InFlightLayer, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT};
use crate::api::http::{HttpState, router};
use crate::api::revocations::RevocationFeed;
use crate::api::tls::{ServerIdentity, incoming};
use crate::attest::Attestors;
use crate::audit::{AuditEvent, AuditLog};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, StoreLocation};
use crate::mint::{Minter, UsageTracker};
use crate::policy::EntryIndex;
use crate::replica::{KeyPublisher, Replicas};
use crate::revoke::Revoker;
use crate::rotation::Rotation;
use crate::store::{EmbeddedStore, RedisStore, Store, StoreEvent};
use mayfly_sdk::revocation::RevocationSet;
use tokio::sync::{Notify, mpsc};

/// How often usage counters are written to the store.
const USAGE_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// How long shutdown waits for in-flight requests before forcing.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long start waits for a shared store's first full state.
const FIRST_SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The data directory cannot be used.
    #[error("data directory {path}: {reason}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The CA could not be loaded or created.
    #[error("certificate authority: {0}")]
    Ca(String),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(String),
    /// The audit log could not be opened.
    #[error("audit log: {0}")]
    Audit(String),
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {reason}")]
    Bind {
        /// The address or socket path.
        address: String,
        /// Why.
        reason: String,
    },
    /// An attestor could not be built from its config.
    #[error("{0}")]
    Attestors(String),
    /// TLS setup failed.
    #[error("TLS: {0}")]
    Tls(String),
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
    audit: AuditLog,
    store: Arc<dyn Store>,
    usage: Arc<UsageTracker>,
    revoker: Arc<Revoker>,
}

impl RunningServer {
    /// Drops the revocations that cover nothing any more, now rather than
    /// at the next periodic prune (tests and operators' tools); returns
    /// their keys.
    ///
    /// # Errors
    ///
    /// A message if the store cannot be reached.
    pub async fn prune_revocations(&self) -> Result<Vec<String>, String> {
        self.revoker.prune().await.map_err(|e| e.to_string())
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
    /// usage and closes the audit log.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let aborts: Vec<_> = self.tasks.iter().map(JoinHandle::abort_handle).collect();
        let drain = async {
            for task in self.tasks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
            tracing::warn!(
                "in-flight requests did not finish within {DRAIN_TIMEOUT:?}; forcing shutdown"
            );
            // What is left lets go of the store and the listeners now.
            for abort in aborts {
                abort.abort();
            }
        }
        flush_usage(self.store.as_ref(), &self.usage).await;
        if let Err(error) = self.audit.close().await {
            tracing::error!(%error, "closing the audit log");
        }
        let _ = std::fs::remove_file(&self.admin_socket);
    }
}

/// Bootstraps and starts the broker on `config`, with the system clock.
pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    start_with_clock(config, Arc::new(SystemClock)).await
}

/// Like [`start`], with a given clock (tests).
pub async fn start_with_clock(
    config: Config,
    clock: Arc<dyn Clock>,
) -> Result<RunningServer, ServerError> {
    crate::install_crypto_provider();
    let data_dir = config.data_dir.clone();
    mayfly_sdk::files::ensure_private_dir(&data_dir).map_err(|e| ServerError::DataDir {
        path: data_dir.clone(),
        reason: e.to_string(),
    })?;
    let (ca, ca_report) = load_ca(&config, clock.as_ref())?;
    let ca = Arc::new(ca);
    let bundle_path = config.layout().bundle_pem();

    let replica_id =
        crate::replica::load_or_create_id(&data_dir).map_err(|reason| ServerError::DataDir {
            path: data_dir.clone(),
            reason,
        })?;
    let replicas = Arc::new(Replicas::new(replica_id));
    let store = open_store(&config).await?;
    let store_error = |e: crate::store::StoreError| ServerError::Store(e.to_string());
    let audit =
        AuditLog::open(&config.layout().audit()).map_err(|e| ServerError::Audit(e.to_string()))?;
    let usage = Arc::new(UsageTracker::new(store.usage().await.map_err(store_error)?));
    let entries = Arc::new(EntryIndex::new(Vec::new()));
    let replicas_changed = Arc::new(Notify::new());
    let (revocations, feed) = match store.subscribe() {
        // A shared store: the index follows its feed and knows how fresh it is.
        Some(mut feed) => {
            let set = Arc::new(RevocationSet::following(config.revocation_staleness));
            first_sync(
                &mut feed,
                &entries,
                &set,
                &usage,
                &replicas_changed,
                clock.as_ref(),
            )
            .await?;
            (set, Some(feed))
        }
        // The embedded store: this process is the only writer.
        None => {
            entries.replace_all(store.list_entries().await.map_err(store_error)?);
            let set = Arc::new(RevocationSet::authoritative());
            set.replace_all(store.list_revocations().await.map_err(store_error)?);
            (set, None)
        }
    };
    let revoker = Arc::new(Revoker::new(
        store.clone(),
        revocations.clone(),
        entries.clone(),
        audit.clone(),
        clock.clone(),
        config.jwt_leeway,
    ));
    let bundle = Arc::new(
        BundlePublisher::new(
            ca.clone(),
            config.bundle_refresh_hint,
            Some(BundleFiles {
                sequence: config.layout().bundle_sequence(),
                roots_pem: bundle_path.clone(),
            }),
        )
        .map_err(ServerError::Ca)?,
    );
    let attestors = Arc::new(
        Attestors::new(&config.attestors).map_err(|e| ServerError::Attestors(e.to_string()))?,
    );
    let minter = Arc::new(
        Minter::new(
            ca.clone(),
            entries.clone(),
            store.clone(),
            audit.clone(),
            usage.clone(),
            clock.clone(),
            attestors.clone(),
            revocations.clone(),
            config.jwt_leeway,
        )
        .map_err(|e| ServerError::Ca(e.to_string()))?
        .with_ttl_caps(config.ttl.jwt_max, config.ttl.x509_max),
    );
    let rotation = Arc::new(Rotation::new(
        ca.clone(),
        bundle.clone(),
        minter.clone(),
        audit.clone(),
        clock.clone(),
    ));
    // A broker that was down when a step fell due takes it before serving.
    rotation
        .tick()
        .await
        .map_err(|e| ServerError::Ca(e.to_string()))?;
    let minter_for_validation = minter.clone();
    let keys = KeyPublisher {
        store: store.clone(),
        ca: ca.clone(),
        bundle: bundle.clone(),
        replicas: replicas.clone(),
        clock: clock.clone(),
        leeway: config.jwt_leeway,
    };
    // Publish this replica's key before serving, so that the others can
    // validate the first token it mints.
    keys.refresh().await.map_err(ServerError::Store)?;
    minter
        .set_jwt_authorities(&bundle.jwt_authorities())
        .map_err(|e| ServerError::Ca(e.to_string()))?;

    let grpc_listener = bind_tcp(config.grpc_listen).await?;
    let http_listener = bind_tcp(config.http_listen).await?;
    let grpc_addr = local_addr(&grpc_listener, config.grpc_listen)?;
    let http_addr = local_addr(&http_listener, config.http_listen)?;
    let admin_socket = config.admin_socket();
    let admin_listener = bind_admin_socket(&admin_socket)?;
    let admin_uid =
        std::fs::metadata(&data_dir)
            .map(|m| m.uid())
            .map_err(|e| ServerError::DataDir {
                path: data_dir.clone(),
                reason: e.to_string(),
            })?;

    let identity = Arc::new(
        ServerIdentity::new(
            ca.clone(),
            config.ttl.x509_max,
            &config.server_dns_names,
            &config.server_ip_addresses,
        )
        .map_err(ServerError::Tls)?,
    );
    let (tls_config, resolver) = identity
        .server_config(clock.as_ref())
        .map_err(ServerError::Tls)?;

    let cancel = CancellationToken::new();
    let crl = Arc::new(tokio::sync::watch::Sender::new(None::<Arc<Vec<u8>>>));
    let mut tasks = Vec::new();
    let limits = config.limits.clone();

    // Every JWT-SVID names the issuer that OIDC discovery serves, from the
    // first one minted: set before the broker API serves anything.
    let issuer = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{http_addr}"));
    minter
        .set_issuer(&issuer)
        .map_err(|e| ServerError::Ca(e.to_string()))?;

    let broker = BrokerServer::new(BrokerService::new(
        minter,
        bundle.clone(),
        config.trust_domain.clone(),
        RevocationFeed {
            set: revocations.clone(),
            crl: crl.subscribe(),
            clock: clock.clone(),
            shutdown: cancel.child_token(),
        },
    ))
    .max_decoding_message_size(limits.max_message_bytes);
    let connections = incoming(grpc_listener, tls_config, &limits, cancel.child_token());
    let shutdown = cancel.clone();
    tasks.push(tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .timeout(limits.request_timeout)
            .max_concurrent_streams(limits.max_concurrent_streams)
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .layer(InFlightLayer)
            .add_service(broker)
            .serve_with_incoming_shutdown(connections, shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "broker gRPC server stopped");
        }
    }));

    let admin_state = AdminState {
        config: config.clone(),
        store: store.clone(),
        entries: entries.clone(),
        usage: usage.clone(),
        audit: audit.clone(),
        clock: clock.clone(),
        bundle: bundle.clone(),
        grpc_addr: grpc_addr.to_string(),
        http_addr: http_addr.to_string(),
        attestors: attestors.clone(),
        revoker: revoker.clone(),
        replicas: replicas.clone(),
        rotation: rotation.clone(),
    };
    let admin =
        AdminServer::with_interceptor(AdminService::new(admin_state), admin_peer_check(admin_uid));
    let shutdown = cancel.clone();
    tasks.push(tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(admin)
            .serve_with_incoming_shutdown(
                UnixListenerStream::new(admin_listener),
                shutdown.cancelled_owned(),
            )
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "admin server stopped");
        }
    }));

    let app = router(HttpState {
        bundle: bundle.clone(),
        issuer,
        crl: crl.subscribe(),
        revocations: revocations.clone(),
        clock: clock.clone(),
    });
    let shutdown = cancel.clone();
    tasks.push(tokio::spawn(async move {
        let served = axum::serve(http_listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "HTTP server stopped");
        }
    }));

    tasks.push(tokio::spawn(identity.keep_fresh(
        resolver,
        clock.clone(),
        rotation.changes(),
        cancel.child_token(),
    )));
    tasks.push(tokio::spawn(usage_flusher(
        store.clone(),
        usage.clone(),
        cancel.child_token(),
    )));
    tasks.push(tokio::spawn(prune_expired(
        store.clone(),
        revoker.clone(),
        clock.clone(),
        cancel.child_token(),
    )));
    if let Some(feed) = feed {
        tasks.push(tokio::spawn(crate::replica::follow(
            feed,
            entries.clone(),
            revocations.clone(),
            usage.clone(),
            replicas_changed.clone(),
            clock.clone(),
            cancel.child_token(),
        )));
    }
    tasks.push(tokio::spawn(keys.run(
        replicas_changed,
        rotation.changes(),
        cancel.child_token(),
    )));
    tasks.push(tokio::spawn(
        rotation
            .clone()
            .run(config.rotation_check_interval, cancel.child_token()),
    ));
    tasks.push(tokio::spawn(validator_follows_bundle(
        bundle.clone(),
        minter_for_validation,
        cancel.child_token(),
    )));
    tasks.push(tokio::spawn(crate::api::crl::publish(
        ca.clone(),
        revocations.clone(),
        crl.clone(),
        clock.clone(),
        rotation.changes(),
        cancel.child_token(),
    )));

    let report = StartReport {
        created_root: ca_report.created_root,
        created_intermediate: ca_report.created_intermediate,
        created_jwt_key: ca_report.created_jwt_key,
        root_fingerprint: ca.root_fingerprint_sha256(),
        jwt_key_id: ca.jwt_signer().key_id().to_owned(),
        bundle_path,
        entries: entries.len(),
        attestors: attestors.names(),
        store: store.describe(),
        replica_id: replicas.id().to_owned(),
        revocations: revocations.len(),
    };
    audit
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
                "attestors": attestors.names(),
            })),
            ..AuditEvent::default()
        })
        .await
        .map_err(|e| ServerError::Audit(e.to_string()))?;

    Ok(RunningServer {
        grpc_addr,
        http_addr,
        admin_socket,
        config,
        report,
        cancel,
        tasks,
        audit,
        store,
        usage,
        revoker,
    })
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

async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ServerError> {
    Ok(match &config.store {
        StoreLocation::Embedded => Arc::new(
            EmbeddedStore::open(&config.layout().store())
                .map_err(|e| ServerError::Store(e.to_string()))?,
        ),
        StoreLocation::Redis { url, prefix } => Arc::new(
            RedisStore::connect(url, prefix)
                .await
                .map_err(|e| ServerError::Store(e.to_string()))?,
        ),
    })
}

/// Waits for a shared store's first full state and heartbeat, so that the
/// replica starts with complete, fresh indexes.
async fn first_sync(
    feed: &mut mpsc::Receiver<StoreEvent>,
    entries: &EntryIndex,
    revocations: &RevocationSet,
    usage: &UsageTracker,
    replicas_changed: &Notify,
    clock: &dyn Clock,
) -> Result<(), ServerError> {
    let wait = async {
        let (mut synced, mut heard) = (false, false);
        while !(synced && heard) {
            let Some(event) = feed.recv().await else {
                return Err("the store's change feed ended".to_owned());
            };
            synced |= matches!(event, StoreEvent::Snapshot { .. });
            heard |= synced && matches!(event, StoreEvent::Heard(_));
            if let StoreEvent::Lost { reason } = &event {
                tracing::warn!(%reason, "waiting for the shared store");
            }
            let now_ms = crate::clock::unix_millis(clock.now());
            crate::replica::apply(
                &event,
                entries,
                revocations,
                usage,
                replicas_changed,
                now_ms,
            );
        }
        Ok(())
    };
    match tokio::time::timeout(FIRST_SYNC_TIMEOUT, wait).await {
        Ok(result) => result.map_err(ServerError::Store),
        Err(_) => Err(ServerError::Store(format!(
            "no complete state from the shared store within {}s",
            FIRST_SYNC_TIMEOUT.as_secs()
        ))),
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
    CertificateAuthority::load_or_create(&config.layout().ca(), &ca_config, clock.now())
        .map_err(|e| ServerError::Ca(e.to_string()))
}

async fn bind_tcp(address: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(address)
        .await
        .map_err(|e| ServerError::Bind {
            address: address.to_string(),
            reason: e.to_string(),
        })
}

fn local_addr(listener: &TcpListener, configured: SocketAddr) -> Result<SocketAddr, ServerError> {
    listener.local_addr().map_err(|e| ServerError::Bind {
        address: configured.to_string(),
        reason: e.to_string(),
    })
}

fn bind_admin_socket(path: &Path) -> Result<UnixListener, ServerError> {
    let bind_error = |reason: String| ServerError::Bind {
        address: path.display().to_string(),
        reason,
    };
    // A socket left by a crashed server. Another live server cannot be using
    // it: it would hold the store's lock, and opening the store came first.
    if path.exists() {
        std::fs::remove_file(path).map_err(|e| bind_error(e.to_string()))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| bind_error(e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| bind_error(e.to_string()))?;
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
