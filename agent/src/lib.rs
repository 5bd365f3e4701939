//! The node agent: `mayfly agent`.
//!
//! The agent attests itself to the broker once, with a join token, and
//! from then on holds its own X509-SVID (saved in its data directory, key
//! mode 0600, renewed over mTLS at about half its life). It serves the
//! standard SPIFFE Workload API on a Unix socket, so every SPIFFE client
//! library works against it unchanged:
//!
//! - a **sync loop** lists the entries registered under the
//!   agent (`parent_id` = the agent's SPIFFE ID) every few seconds, mints
//!   an X509-SVID for each (keys made here, CSRs sent in batches), renews
//!   them at half their lifetime and drops those of entries that went away.
//!   While the broker is unreachable it keeps serving what is still valid
//!   and retries with backoff and jitter; [`RunningAgent::health`] says how
//!   it is going;
//! - the **Workload API** attests every caller from the
//!   socket's peer credentials ([`workload_attest`]: `unix:uid:`,
//!   `unix:gid:`, `unix:path:`, `unix:sha256:` …) and serves the entries
//!   whose selectors it proved: X509-SVIDs and bundles as streams that
//!   update on every rotation, JWT-SVIDs (cached per SPIFFE ID and audience
//!   until half their life), JWT bundles, and local JWT-SVID validation.
//!
//! - the optional **file sink** ([`sink`], `--write-dir`) keeps one
//!   identity of the agent process itself in files (`svid.pem`,
//!   `svid_key.pem`, `bundle.pem`, `jwt_<audience>.token`) for programs
//!   that only read files, and runs a command or sends a signal after each
//!   renewal.
//!
//! Modules: `upstream` (the agent's own identity and its calls to the
//! broker), `identity` (its SVID files), `sync` and `snapshot`/`state` (what
//! it holds and publishes), `endpoint` (the socket) with `authority` (any
//! `:authority` a gRPC client sends) and `workload_api`, `workload_attest`
//! (callers' peer credentials to selectors), `jwt_issue`/`jwt_cache`,
//! `revocations` (the broker's revocation set, applied to every cache hit),
//! `bundle_watch`, `sink` (the file sink), `error`/`status` (errors and their
//! gRPC codes). The crate links the SDK, never the broker.
//!
//! The broker's address is fixed for the agent's life: after a broker
//! restart the agent reconnects to the same URL (run the broker on a fixed
//! address or a DNS name), serving its cached SVIDs meanwhile.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use mayfly_agent::{AgentConfig, start};
//!
//! let bundle = std::fs::read("/etc/mayfly/bundle.pem")?;
//! let mut config = AgentConfig::new("https://mayfly.internal:7443", bundle, "/run/mayfly/agent.sock");
//! config.join_token = Some(std::fs::read_to_string("/etc/mayfly/join-token")?.trim().to_owned().into());
//! config.data_dir = "/var/lib/mayfly-agent".into();
//! let agent = start(config).await?;
//! println!("serving the Workload API on {}", agent.socket_path().display());
//! // SPIFFE_ENDPOINT_SOCKET=unix:///run/mayfly/agent.sock for the workloads.
//! agent.shutdown().await;
//! # Ok(()) }
//! ```

mod authority;
mod bundle_watch;
mod claims;
mod endpoint;
mod error;
mod identity;
mod jwt_cache;
mod jwt_issue;
mod revocations;
pub mod sink;
mod snapshot;
mod state;
mod status;
mod sync;
mod telemetry;
mod upstream;
mod workload_api;
pub mod workload_attest;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mayfly_sdk::SpiffeId;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[doc(hidden)]
pub use authority::fuzz_rewrite as fuzz_authority_rewrite;
pub use error::AgentError;
pub use state::AgentHealth;
pub use telemetry::{SERVICE_NAME, TelemetryConfig, WORKLOAD_API};
pub use workload_api::{SECURITY_HEADER, require_security_header};

use identity::IdentityFiles;
use jwt_issue::JwtIssuer;
use mayfly_sdk::client::Secret;
use mayfly_sdk::clock::{Clock, SystemClock};
use sink::FileSinkConfig;
use state::AgentState;
use upstream::Upstream;
use workload_api::WorkloadApi;
use workload_attest::WorkloadAttestor;

/// The data directory when none is given.
pub const DEFAULT_DATA_DIR: &str = "./mayfly-agent";
/// How often the agent syncs with the broker when all is well.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(5);
/// How long [`RunningAgent::shutdown`] waits for open requests to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the agent is given.
#[derive(Clone)]
pub struct AgentConfig {
    /// The broker's URL (`https://…`).
    pub server: String,
    /// The root CA(s) to trust for the broker, PEM. Roots the broker later
    /// publishes (root rotation) are trusted as well.
    pub bundle_pem: Vec<u8>,
    /// Where to serve the Workload API.
    pub socket_path: PathBuf,
    /// The one-time join token; needed only when the data directory holds
    /// no valid agent SVID.
    pub join_token: Option<Secret>,
    /// Where the agent keeps its own SVID, key and the trust bundle.
    pub data_dir: PathBuf,
    /// How often to sync with the broker when all is well.
    pub sync_interval: Duration,
    /// The clock renewal and expiry are judged by (tests use a manual one).
    pub clock: Arc<dyn Clock>,
    /// Also write one identity of the agent process to files ([`sink`]).
    pub file_sink: Option<FileSinkConfig>,
    /// Node attestation with platform evidence instead of a join token. Read
    /// afresh at every attestation, so a rotated token file (a Kubernetes
    /// projected token) lets the agent re-attest after its SVID expired.
    pub node_evidence: Option<NodeEvidence>,
    /// Metrics on a listener of their own, and OTLP export.
    pub telemetry: TelemetryConfig,
}

/// Platform evidence the agent attests its node with (see the broker's
/// `k8s_psat`, `oidc` and `x509pop` attestors).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvidence {
    /// A file holding a Kubernetes projected service-account token.
    K8sPsatTokenFile(PathBuf),
    /// A file holding an OIDC ID token.
    OidcTokenFile(PathBuf),
    /// A device or host certificate chain (PEM, leaf first) and its PKCS#8
    /// key; only a signature over the broker's challenge leaves the node.
    X509Pop {
        /// The chain.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
}

impl AgentConfig {
    /// A config with the defaults: data directory [`DEFAULT_DATA_DIR`],
    /// sync every [`DEFAULT_SYNC_INTERVAL`], the system clock, no join token.
    pub fn new(
        server: impl Into<String>,
        bundle_pem: Vec<u8>,
        socket_path: impl Into<PathBuf>,
    ) -> Self {
        AgentConfig {
            server: server.into(),
            bundle_pem,
            socket_path: socket_path.into(),
            join_token: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            sync_interval: DEFAULT_SYNC_INTERVAL,
            clock: Arc::new(SystemClock),
            file_sink: None,
            node_evidence: None,
            telemetry: TelemetryConfig::default(),
        }
    }
}

impl fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentConfig")
            .field("server", &self.server)
            .field(
                "bundle_pem",
                &format_args!("[{} bytes]", self.bundle_pem.len()),
            )
            .field("socket_path", &self.socket_path)
            .field("join_token", &self.join_token)
            .field("data_dir", &self.data_dir)
            .field("sync_interval", &self.sync_interval)
            .field("clock", &self.clock)
            .field("file_sink", &self.file_sink)
            .finish()
    }
}

/// A running agent. Dropping it stops its tasks; [`shutdown`](Self::shutdown)
/// also waits for them and removes the socket.
#[derive(Debug)]
pub struct RunningAgent {
    socket_path: PathBuf,
    metrics_addr: Option<std::net::SocketAddr>,
    /// Kept until [`RunningAgent::shutdown`] stops it off the async workers.
    metrics: Option<mayfly_telemetry::Metrics>,
    state: Arc<AgentState>,
    upstream: Arc<Upstream>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningAgent {
    /// The Workload API socket.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_addr
    }

    /// The agent's own SPIFFE ID: the `parent_id` of the entries it serves.
    pub fn spiffe_id(&self) -> SpiffeId {
        self.upstream.identity().spiffe_id.clone()
    }

    /// How the sync with the broker is going.
    pub fn health(&self) -> AgentHealth {
        self.state.health()
    }

    /// Resolves when the agent cannot go on (its own SVID expired before it
    /// could be renewed), with the reason. Pending otherwise.
    pub async fn failed(&self) -> AgentError {
        self.state.failed().await
    }

    /// Stops syncing, ends open streams, drains requests (at most 5 s) and
    /// removes the socket.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        let mut tasks = std::mem::take(&mut self.tasks);
        let drain = async {
            for task in &mut tasks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
            tracing::warn!("the Workload API did not drain within {DRAIN_TIMEOUT:?}; forcing");
            for task in &tasks {
                task.abort();
            }
        }
        if let Err(error) = std::fs::remove_file(&self.socket_path) {
            tracing::debug!(%error, "removing the Workload API socket");
        }
        if let Some(metrics) = self.metrics.take() {
            metrics.shutdown().await;
        }
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Starts the agent: its own identity (saved, or attested with the join
/// token), the socket, a first sync, then the sync loop and the Workload
/// API in the background.
///
/// A first sync that fails is not an error: the agent serves as soon as
/// the broker answers.
///
/// # Errors
/// [`AgentError::Config`] for a zero sync interval or a file sink that
/// cannot work ([`FileSinkConfig::check`], another trust domain, the agent
/// cannot attest itself); [`AgentError::DataDir`];
/// [`AgentError::WriteDir`]; [`AgentError::NoIdentity`] without a saved SVID
/// or join token; the broker's refusal of the token or
/// [`AgentError::BrokerUnreachable`] while attesting;
/// [`AgentError::Socket`] if the socket cannot be bound.
pub async fn start(config: AgentConfig) -> Result<RunningAgent, AgentError> {
    mayfly_sdk::install_crypto_provider();
    if config.sync_interval.is_zero() {
        return Err(AgentError::Config {
            reason: "the sync interval must be positive".to_owned(),
        });
    }
    // Before attesting: a mistake here must not spend the join token.
    if let Some(sink) = &config.file_sink {
        sink.check(&config.data_dir)?;
    }
    let files = IdentityFiles::new(&config.data_dir);
    files.prepare()?;
    let upstream = Arc::new(
        Upstream::bootstrap(
            config.server.clone(),
            config.bundle_pem.clone(),
            upstream::NodeAttestation::from_config(&config),
            files,
            config.clock.clone(),
        )
        .await?,
    );
    let sink = match &config.file_sink {
        Some(sink) => Some(sink::prepare(sink, &upstream.identity().spiffe_id).await?),
        None => None,
    };
    let listener = endpoint::bind(&config.socket_path)?;
    let state = Arc::new(AgentState::new());
    let metrics = if config.telemetry.enabled() {
        Some(
            mayfly_telemetry::Metrics::with_export(&config.telemetry.otlp).map_err(|error| {
                AgentError::Config {
                    reason: error.to_string(),
                }
            })?,
        )
    } else {
        None
    };
    let metrics_listener =
        match config.telemetry.metrics_listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|error| {
                AgentError::Config {
                    reason: format!("--metrics-listen {addr}: {error}"),
                }
            })?),
            None => None,
        };
    let metrics_addr = metrics_listener
        .as_ref()
        .and_then(|listener| listener.local_addr().ok());

    let cancel = CancellationToken::new();
    let wake = Arc::new(tokio::sync::Notify::new());
    let revocations = Arc::new(revocations::Revocations::new(wake.clone()));
    let mut syncer = sync::Syncer::new(
        upstream.clone(),
        state.clone(),
        revocations.clone(),
        config.clock.clone(),
        config.sync_interval,
    );
    if let Err(error) = syncer.sync_once().await {
        tracing::warn!(%error, "first sync with the broker failed; will retry");
    }

    let sync_task = tokio::spawn(syncer.run(wake.clone(), cancel.child_token()));
    let bundle_task = tokio::spawn(bundle_watch::follow(
        upstream.clone(),
        wake,
        cancel.child_token(),
    ));
    let issuer = Arc::new(JwtIssuer::new(
        upstream.clone(),
        state.clone(),
        revocations.clone(),
        config.clock.clone(),
        metrics.as_ref().map(telemetry::AgentMetrics::new),
    ));
    let sink_task = sink.map(|sink| {
        sink.spawn(
            state.clone(),
            issuer.clone(),
            config.clock.clone(),
            config.sync_interval,
            cancel.child_token(),
        )
    });
    // Serve ValidateJWTSVID with the revocation set from the start when the
    // broker answers; otherwise keep trying in the background (and fail
    // those calls closed meanwhile).
    if let Err(error) = revocations
        .start_once(&config.server, &config.bundle_pem, Duration::from_secs(3))
        .await
    {
        tracing::warn!(%error, "cannot follow the broker's revocations yet; retrying in the background");
    }
    let revocation_task = tokio::spawn(
        revocations
            .clone()
            .follow(upstream.clone(), cancel.child_token()),
    );
    let api = WorkloadApi::new(
        state.clone(),
        issuer,
        WorkloadAttestor::new(),
        revocations,
        config.clock.clone(),
    );
    let shutdown = {
        let cancel = cancel.clone();
        let state = state.clone();
        async move {
            cancel.cancelled().await;
            state.close();
        }
    };
    let rpc = metrics.as_ref().map(|metrics| {
        let sampling = config
            .telemetry
            .otlp
            .traces_on()
            .then(|| mayfly_telemetry::Sampling::ratio(config.telemetry.otlp.sampling_ratio));
        mayfly_telemetry::RpcLayer::new(&WORKLOAD_API, &metrics.meter("mayfly-agent"), sampling)
    });
    let server_task = tokio::spawn(endpoint::serve(listener, api, rpc, shutdown));
    let metrics_task = match (metrics_listener, &metrics) {
        (Some(listener), Some(metrics)) => {
            let cancel = cancel.clone();
            Some(tokio::spawn(mayfly_telemetry::serve_metrics(
                listener,
                metrics.clone(),
                async move { cancel.cancelled().await },
            )))
        }
        _ => None,
    };
    tracing::info!(
        spiffe_id = %upstream.identity().spiffe_id,
        socket = %config.socket_path.display(),
        "serving the SPIFFE Workload API"
    );
    Ok(RunningAgent {
        socket_path: config.socket_path,
        metrics_addr,
        metrics,
        state,
        upstream,
        cancel,
        tasks: [sync_task, server_task, revocation_task, bundle_task]
            .into_iter()
            .chain(sink_task)
            .chain(metrics_task)
            .collect(),
    })
}

/// Runs the agent until `shutdown` resolves, then drains.
///
/// # Errors
/// What [`start`] returns; and [`AgentError::IdentityExpired`] if the
/// agent's own SVID expired before it could be renewed.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let agent = start(config).await?;
    let result = tokio::select! {
        () = shutdown => Ok(()),
        error = agent.failed() => Err(error),
    };
    agent.shutdown().await;
    result
}
