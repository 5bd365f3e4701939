//! Server configuration: a TOML file, then `MAYFLY_*` environment overrides,
//! then command-line flags, all validated before any port is bound.
//!
//! ```toml
//! trust_domain = "example.org"
//! data_dir = "./mayfly-data"
//!
//! [listen]
//! grpc = "127.0.0.1:7443"
//! http = "127.0.0.1:7080"
//!
//! [ttl]
//! jwt_default = "5m"
//! x509_default = "15m"
//! jwt_max = "60m"
//! x509_max = "60m"
//! join_token_default = "10m"
//!
//! [ca]
//! root_ttl = "87600h"
//! intermediate_ttl = "8760h"      # rotated on its own: a successor at half life
//! jwt_key_ttl = "720h"            # likewise
//! publish_ahead = "15m"           # published this long before it signs
//!
//! [limits]
//! max_message_bytes = 65536
//! max_concurrent_streams = 256
//! max_connections = 10000
//! max_connections_per_peer = 1000  # per client IPv4 address or IPv6 /64; 0 = off
//! max_anonymous_connections = 5000 # without a client certificate; default half of max_connections
//! request_timeout = "10s"
//! handshake_timeout = "10s"        # TLS handshake plus the HTTP/2 preface
//! idle_timeout = "5m"              # a connection with no request in flight is closed
//!
//! [telemetry]
//! prometheus = true                # /metrics on the HTTP port (MAYFLY_PROMETHEUS)
//! # OTLP export of traces and metrics, off without an endpoint. The
//! # standard OTEL_* variables apply (MAYFLY_OTEL_* before them), e.g.
//! # OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER_ARG, OTEL_SERVICE_NAME.
//! otlp_endpoint = "http://127.0.0.1:4317"
//! otlp_protocol = "grpc"           # or "http/protobuf" (port 4318)
//! trace_sampling_ratio = 0.01      # calls traced when the caller did not decide
//!
//! # Several replicas share state in Redis; the default is the embedded store.
//! [store]
//! url = "redis://127.0.0.1:6379"
//! prefix = "mayfly"
//!
//! # How long validation trusts the revocation index without hearing from
//! # its source (Redis) before it fails closed.
//! revocation_staleness = "15s"
//!
//! # The audit log's signing key and anchor (docs/operations.md, "Audit").
//! [audit]
//! key_dir = "/var/lib/mayfly-audit-key"  # default <data_dir>/audit-key
//! key_epoch = "1h"                 # a new key this often (and at every start)
//! anchor_file = "/mnt/witness/mayfly-checkpoint.json"  # another volume; off by default
//! segment_max_size = "64MiB"       # seal the live segment at this size…
//! segment_max_age = "24h"          # …or when its first record is this old
//! retention = "2190d"              # remove sealed segments older than this; default: keep all
//! commit_linger = "1ms"            # group commit waits at most this for more records; "0s": never
//! # An HTTP witness (docs/operations.md, "An HTTP witness"): every new
//! # checkpoint is POSTed, and GET at start is compared with the log. Off by default.
//! anchor_url = "https://witness.example/mayfly/replica-a"
//! anchor_url_ca = "/etc/mayfly/witness-ca.pem"        # a private CA instead of the system's
//! anchor_url_token_file = "/etc/mayfly/witness.token" # 0600; sent as a bearer token
//! # Every new checkpoint as an RFC 5424 message; or "udp:127.0.0.1:514". Off by default.
//! anchor_syslog = "unix:/dev/log"
//!
//! # Entry lifecycle governance (docs/operations.md, "Governing identities").
//! [governance]
//! review_every = "90d"             # owner reviews; an entry may set its own; "0s" = never
//! sweep_every = "1m"               # one replica per round looks at every entry
//! dormant_after = "30d"            # no mint for this long (or since creation); off by default
//! on_dormant = "disable"           # or "report" (default): log and audit once
//! on_review_overdue = "report"     # or "disable"
//! on_expired = "report"            # or "disable"
//! data_classes = ["none", "internal", "confidential", "phi"]  # lowest first
//! require_registered_audiences = false  # true: JWT-SVIDs only for `mayfly audience create`d
//!
//! # Claims for relying parties that enforce governance themselves.
//! [jwt]
//! governance_claims = false        # true: JWT-SVIDs carry mayfly_env and mayfly_data_class
//!
//! # Alerts for people: the owners' digest and more, by webhook and/or as OTel log
//! # events (docs/operations.md, "Alerts").
//! [alerts]
//! webhook_url = "https://alerts.example/mayfly"    # off by default
//! webhook_secret_file = "/etc/mayfly/webhook.key"  # 0600, 32+ bytes: signs every body
//! otel_logs = false                                # true: log records to otlp_endpoint
//! owner_digest_every = "1d"                        # "0s" = never
//!
//! # Operators (docs/operations.md, "Emergency access").
//! [admin]
//! socket_path = "/run/mayfly/admin.sock"  # default <data_dir>/admin.sock
//! socket_group = "mayfly-operators"       # members may administer too; off by default
//!
//! # Break-glass grants: two operators, a clock.
//! [breakglass]
//! max_ttl = "4h"                   # the longest grant (at most 24h)
//! approve_within = "1h"            # unapproved grants lapse after this
//!
//! # Anomaly detection on the mint path (docs/operations.md, "Anomaly detection and
//! # quarantine"); every setting in `config::anomaly`. Defaults alert, never quarantine.
//! [anomaly]
//! rate_floor = 1000                # a spike: above this many mints per rate_window...
//! [[anomaly.rules]]                # first match wins
//! environment = "prod"
//! data_class = "phi"
//! action = "quarantine"            # disable the entry and revoke what it issued
//! ```
//!
//! Each attestor configuration (`[[attestors.k8s_psat]]`, `[[attestors.oidc]]`,
//! `[attestors.x509pop]`, see `crate::attest`) may pin the environments of
//! the identities it yields, e.g. `environments = ["staging", "test"]`
//! (unset: no pin); at load the list must name at least one valid
//! environment, none twice, or the server does not start.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mayfly_sdk::TrustDomain;
use mayfly_sdk::data_dir::DataDir;
use serde::Deserialize;

mod admin;
mod alerts;
mod anomaly;
mod governance;

pub use admin::{
    AdminConfig, BreakglassConfig, DEFAULT_APPROVE_WITHIN, DEFAULT_GRANT_MAX_TTL, GRANT_HARD_CAP,
};
pub use alerts::{AlertsConfig, DEFAULT_OWNER_DIGEST_EVERY};
pub use anomaly::{
    AnomalyAction, AnomalyConfig, AnomalyRule, MAX_ANOMALY_RULES, MAX_REFUSAL_COUNT,
};

pub use governance::{
    DEFAULT_REVIEW_EVERY, DEFAULT_SWEEP_EVERY, GovernanceAction, GovernanceConfig,
};

use crate::attest::AttestorsConfig;
use crate::policy::{HARD_TTL_CAP, TtlPolicy};

/// The default trust domain when none is configured.
pub const DEFAULT_TRUST_DOMAIN: &str = "mayfly.internal";
/// The default data directory, relative to the working directory.
pub use mayfly_sdk::data_dir::DEFAULT_DATA_DIR;
/// The default gRPC (TLS) listen address.
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:7443";
/// The default HTTP listen address (OIDC discovery, JWKS, bundle, health).
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:7080";

/// A configuration that cannot be used. The message names the setting and
/// where it came from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The config file is not valid TOML for this schema.
    #[error("config file {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        reason: String,
    },
    /// A setting has a value that is not allowed.
    #[error("{setting} (from {source_name}): {reason}")]
    Invalid {
        /// The setting, as spelled in the file.
        setting: &'static str,
        /// `config file`, `MAYFLY_...` or `--flag`.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
}

/// What the broker exports about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Serve the metrics as Prometheus text at `/metrics` on the HTTP port
    /// (counts and times only, no identities). Default on.
    pub prometheus: bool,
    /// Traces and metrics over OTLP; off without an endpoint.
    pub otlp: mayfly_telemetry::OtlpConfig,
}

/// The broker's `service.name` unless `OTEL_SERVICE_NAME` says otherwise.
pub const SERVICE_NAME: &str = "mayfly-broker";

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            prometheus: true,
            otlp: mayfly_telemetry::OtlpConfig::off(SERVICE_NAME),
        }
    }
}

impl TelemetryConfig {
    fn apply_file(&mut self, file: &FileTelemetry) -> Result<(), ConfigError> {
        let invalid = |setting: &'static str, error: mayfly_telemetry::OtlpConfigError| {
            ConfigError::Invalid {
                setting,
                source_name: "config file".into(),
                reason: error.to_string(),
            }
        };
        if let Some(prometheus) = file.prometheus {
            self.prometheus = prometheus;
        }
        if let Some(endpoint) = &file.otlp_endpoint {
            self.otlp.endpoint = Some(endpoint.clone()).filter(|e| !e.trim().is_empty());
        }
        if let Some(protocol) = &file.otlp_protocol {
            self.otlp.protocol = mayfly_telemetry::Protocol::parse(protocol)
                .map_err(|error| invalid("telemetry.otlp_protocol", error))?;
        }
        if let Some(ratio) = file.trace_sampling_ratio {
            self.otlp.sampling_ratio = ratio;
        }
        if let Some(name) = &file.service_name {
            self.otlp.service_name.clone_from(name);
        }
        self.otlp.validate().map_err(|error| {
            let setting = match error {
                mayfly_telemetry::OtlpConfigError::Ratio(_) => "telemetry.trace_sampling_ratio",
                _ => "telemetry.otlp_endpoint",
            };
            invalid(setting, error)
        })
    }
}

/// Resource limits that keep one client from exhausting the server.
///
/// A connection on the gRPC port holds one of `max_connections` slots from
/// accept to close, so every phase of its life is bounded: the TLS handshake
/// and the HTTP/2 preface by `handshake_timeout`, a connection with no
/// request in flight by `idle_timeout`, a peer that stops answering by the
/// HTTP/2 keepalive. `max_connections_per_peer` and
/// `max_anonymous_connections` keep one address, and clients without a
/// certificate, from taking every slot, so that workloads and agents with an
/// SVID can always connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest gRPC message accepted, bytes.
    pub max_message_bytes: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Concurrent connections on the gRPC port, handshaking ones included.
    pub max_connections: usize,
    /// Concurrent connections from one client address (an IPv4 address, or
    /// an IPv6 /64, which one host usually holds whole), handshaking ones
    /// included; 0 turns the cap off. The default, 1,000, is a tenth of
    /// `max_connections`: one address cannot take every slot, and a node
    /// whose workloads share its address (NAT) still has room. Behind a load
    /// balancer or proxy that does not preserve client addresses, every
    /// client has the balancer's address: raise this to `max_connections`
    /// or set it to 0.
    pub max_connections_per_peer: usize,
    /// Concurrent connections without a client certificate (attestation,
    /// validation, bundle and revocation watchers) once their handshake is
    /// done; `None` is half of `max_connections`. The rest stays free for
    /// clients with an SVID however many anonymous connections pile up.
    pub max_anonymous_connections: Option<usize>,
    /// Deadline for one request.
    pub request_timeout: Duration,
    /// Deadline from accept to the end of the TLS handshake and of the
    /// HTTP/2 client preface; a client that has not spoken by then is cut.
    pub handshake_timeout: Duration,
    /// A connection with no request in flight this long is closed (a
    /// streaming call such as `WatchBundle` is in flight while it lasts;
    /// keepalive pings are not requests). The default, 5 minutes, is longer
    /// than the SDK's renewal period of a JWT-SVID at the default 5-minute
    /// TTL (half of it), so a workload renewing on schedule keeps its
    /// connection and its next call needs no new handshake, and short
    /// enough that an abandoned connection frees its slot and buffers
    /// within minutes.
    pub idle_timeout: Duration,
}

/// The most connections the gRPC port may be configured for: far more than
/// one process has file descriptors for, and within what a semaphore holds.
pub const MAX_CONNECTIONS_CEILING: usize = 1_000_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 64 * 1024,
            max_concurrent_streams: 256,
            max_connections: 10_000,
            max_connections_per_peer: 1_000,
            max_anonymous_connections: None,
            request_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5 * 60),
        }
    }
}

impl Limits {
    /// How many connections without a client certificate may be open.
    pub fn anonymous_connection_cap(&self) -> usize {
        self.max_anonymous_connections
            .unwrap_or(self.max_connections / 2)
            .max(1)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |setting: &'static str, reason: &str| ConfigError::Invalid {
            setting,
            source_name: "configuration".into(),
            reason: reason.into(),
        };
        if !(1024..=16 * 1024 * 1024).contains(&self.max_message_bytes) {
            return Err(invalid(
                "limits.max_message_bytes",
                "must be between 1024 and 16777216",
            ));
        }
        if self.max_concurrent_streams == 0 {
            return Err(invalid("limits.max_concurrent_streams", "must be positive"));
        }
        if !(1..=MAX_CONNECTIONS_CEILING).contains(&self.max_connections) {
            return Err(invalid(
                "limits.max_connections",
                "must be between 1 and 1000000",
            ));
        }
        if let Some(anonymous) = self.max_anonymous_connections
            && !(1..=self.max_connections).contains(&anonymous)
        {
            return Err(invalid(
                "limits.max_anonymous_connections",
                "must be between 1 and limits.max_connections (0 would refuse attestation, \
                 which needs no certificate)",
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("limits.request_timeout", "must be positive"));
        }
        // A handshake that takes minutes is a client holding a slot, not a
        // slow network; an idle connection kept for days is a leak.
        for (setting, value, most, reason) in [
            (
                "limits.handshake_timeout",
                self.handshake_timeout,
                Duration::from_secs(5 * 60),
                "must be positive and at most 5m",
            ),
            (
                "limits.idle_timeout",
                self.idle_timeout,
                Duration::from_secs(86_400),
                "must be positive and at most 24h",
            ),
        ] {
            if value.is_zero() || value > most {
                return Err(invalid(setting, reason));
            }
        }
        Ok(())
    }

    fn apply_file(&mut self, file: &FileLimits) -> Result<(), ConfigError> {
        for (target, setting, value) in [
            (
                &mut self.request_timeout,
                "limits.request_timeout",
                &file.request_timeout,
            ),
            (
                &mut self.handshake_timeout,
                "limits.handshake_timeout",
                &file.handshake_timeout,
            ),
            (
                &mut self.idle_timeout,
                "limits.idle_timeout",
                &file.idle_timeout,
            ),
        ] {
            set_duration(target, setting, value.as_deref())?;
        }
        if let Some(n) = file.max_message_bytes {
            self.max_message_bytes = n;
        }
        if let Some(n) = file.max_concurrent_streams {
            self.max_concurrent_streams = n;
        }
        if let Some(n) = file.max_connections {
            self.max_connections = n;
        }
        if let Some(n) = file.max_connections_per_peer {
            self.max_connections_per_peer = n;
        }
        if let Some(n) = file.max_anonymous_connections {
            self.max_anonymous_connections = Some(n);
        }
        Ok(())
    }
}

/// The validated server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The trust domain every identity lives in.
    pub trust_domain: TrustDomain,
    /// Where keys, the store, the audit log and the admin socket live.
    pub data_dir: PathBuf,
    /// gRPC over TLS (broker API).
    pub grpc_listen: SocketAddr,
    /// Plain HTTP: OIDC discovery, JWKS, SPIFFE bundle, health.
    pub http_listen: SocketAddr,
    /// DNS names in the server certificate besides `localhost`.
    pub server_dns_names: Vec<String>,
    /// IP addresses in the server certificate besides the loopbacks.
    pub server_ip_addresses: Vec<IpAddr>,
    /// The `issuer` of OIDC discovery; defaults to `http://<http_listen>`.
    pub public_url: Option<String>,
    /// SVID TTL defaults and caps.
    pub ttl: TtlPolicy,
    /// Default join token lifetime.
    pub join_token_default_ttl: Duration,
    /// Lifetime of a new root CA.
    pub root_ttl: Duration,
    /// Lifetime of a new intermediate CA; a successor is prepared at half.
    pub intermediate_ttl: Duration,
    /// How long a JWT signing key signs; a successor is prepared at half.
    pub jwt_key_ttl: Duration,
    /// How long a new intermediate, JWT key or root is published before it
    /// is used to sign.
    pub publish_ahead: Duration,
    /// How often the broker checks whether a rotation step is due.
    pub rotation_check_interval: Duration,
    /// `spiffe_refresh_hint` of the served bundle.
    pub bundle_refresh_hint: Duration,
    /// Clock leeway when validating JWT-SVIDs.
    pub jwt_leeway: Duration,
    /// Resource limits.
    pub limits: Limits,
    /// Metrics.
    pub telemetry: TelemetryConfig,
    /// Platform attestors (Kubernetes, OIDC, x509pop).
    pub attestors: AttestorsConfig,
    /// Where shared state lives.
    pub store: StoreLocation,
    /// How long the revocation index may go without hearing from a shared
    /// store before validation and minting fail closed.
    pub revocation_staleness: Duration,
    /// The audit log's key and anchor.
    pub audit: AuditConfig,
    /// Entry lifecycle governance: reviews and the sweeper.
    pub governance: GovernanceConfig,
    /// Alerts for people: the webhook and the owners' digest.
    pub alerts: AlertsConfig,
    /// `[admin]`: where the admin socket is and which group may open it.
    pub admin: AdminConfig,
    /// `[breakglass]`: how long emergency grants may last.
    pub breakglass: BreakglassConfig,
    /// Anomaly detection on the mint path, and what a finding does.
    pub anomaly: AnomalyConfig,
    /// `[jwt] governance_claims`: JWT-SVIDs carry `mayfly_env` and
    /// `mayfly_data_class` (the entry's environment and data class), for
    /// relying parties that enforce them themselves. Default false.
    pub jwt_governance_claims: bool,
}

/// Where the audit log's signing key lives, how long one key signs, and
/// where signed checkpoints are anchored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditConfig {
    /// The key directory; `None`: `<data_dir>/audit-key`.
    pub key_dir: Option<PathBuf>,
    /// How long one audit key signs before the next takes over.
    pub key_epoch: Option<Duration>,
    /// A file on another volume every signed checkpoint is also written to.
    pub anchor_file: Option<PathBuf>,
    /// An HTTP witness every signed checkpoint is POSTed to, and read at start
    /// (`anchor_url`, `anchor_url_ca`, `anchor_url_token_file`).
    pub anchor_http: Option<crate::anchor::HttpAnchorConfig>,
    /// A syslog socket every signed checkpoint is sent to (`anchor_syslog`).
    pub anchor_syslog: Option<crate::anchor::SyslogTarget>,
    /// Start on a log that does not continue its anchored history, for this
    /// reason (`--accept-audit-rollback`; never from a file).
    pub accept_divergence: Option<String>,
    /// The live segment is sealed at this many bytes (`segment_max_size`).
    pub segment_max_bytes: Option<u64>,
    /// … or when its first record is this old.
    pub segment_max_age: Option<Duration>,
    /// Sealed segments older than this are removed; `None` keeps them all.
    pub retention: Option<Duration>,
    /// The longest a group commit waits for more records when the load says more are
    /// coming (`commit_linger`; `None`: [`crate::audit::DEFAULT_COMMIT_LINGER`]).
    pub commit_linger: Option<Duration>,
}

impl AuditConfig {
    /// `anchor_url` (with its CA and token files) and `anchor_syslog` from the file.
    fn apply_anchor_sinks(&mut self, file: &FileAudit) -> Result<(), ConfigError> {
        let invalid = |setting: &'static str, reason: String| ConfigError::Invalid {
            setting,
            source_name: "config file".into(),
            reason,
        };
        match &file.anchor_url {
            Some(url) => {
                let url = crate::anchor::AnchorUrl::parse(url)
                    .map_err(|e| invalid("audit.anchor_url", e.to_string()))?;
                self.anchor_http = Some(crate::anchor::HttpAnchorConfig {
                    url,
                    ca_file: file.anchor_url_ca.clone(),
                    token_file: file.anchor_url_token_file.clone(),
                });
            }
            None => {
                for (setting, given) in [
                    ("audit.anchor_url_ca", file.anchor_url_ca.is_some()),
                    (
                        "audit.anchor_url_token_file",
                        file.anchor_url_token_file.is_some(),
                    ),
                ] {
                    if given {
                        return Err(invalid(setting, "needs audit.anchor_url".into()));
                    }
                }
            }
        }
        if let Some(spec) = &file.anchor_syslog {
            self.anchor_syslog = Some(
                crate::anchor::SyslogTarget::parse(spec)
                    .map_err(|e| invalid("audit.anchor_syslog", e.to_string()))?,
            );
        }
        Ok(())
    }

    /// Sets up the HTTP anchor's client, which reads its CA and token files, so that a
    /// file that cannot be used stops the server before it binds anything.
    fn check_anchor_sinks(&self) -> Result<(), ConfigError> {
        let Some(http) = &self.anchor_http else {
            return Ok(());
        };
        crate::anchor::HttpAnchor::new(http).map(drop).map_err(|e| {
            use crate::anchor::AnchorError;
            let setting = match &e {
                AnchorError::CaFile { .. } | AnchorError::CaCertificates { .. } => {
                    "audit.anchor_url_ca"
                }
                AnchorError::TokenFile { .. } | AnchorError::TokenFormat { .. } => {
                    "audit.anchor_url_token_file"
                }
                _ => "audit.anchor_url",
            };
            ConfigError::Invalid {
                setting,
                source_name: "config file".into(),
                reason: e.to_string(),
            }
        })
    }
}

/// The default audit key epoch.
pub const DEFAULT_AUDIT_KEY_EPOCH: Duration = Duration::from_secs(3600);

/// Where entries, join tokens, revocations and usage are kept.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum StoreLocation {
    /// One redb file in the data directory: a single replica.
    #[default]
    Embedded,
    /// A Redis server shared by several replicas.
    Redis {
        /// `redis://[user:password@]host:port[/db]`; may hold a password, so
        /// it is never printed.
        url: String,
        /// Key prefix, so several deployments can share one Redis.
        prefix: String,
    },
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Embedded => f.write_str("Embedded"),
            StoreLocation::Redis { prefix, .. } => f
                .debug_struct("Redis")
                .field("url", &"[redacted]")
                .field("prefix", prefix)
                .finish(),
        }
    }
}

/// The default key prefix in Redis.
pub const DEFAULT_REDIS_PREFIX: &str = "mayfly";

impl Default for Config {
    fn default() -> Self {
        Config {
            trust_domain: default_trust_domain(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 7080)),
            server_dns_names: Vec::new(),
            server_ip_addresses: Vec::new(),
            public_url: None,
            ttl: TtlPolicy::default(),
            join_token_default_ttl: Duration::from_secs(10 * 60),
            root_ttl: Duration::from_secs(10 * 365 * 86_400),
            intermediate_ttl: Duration::from_secs(365 * 86_400),
            jwt_key_ttl: Duration::from_secs(30 * 86_400),
            publish_ahead: Duration::from_secs(15 * 60),
            rotation_check_interval: Duration::from_secs(60),
            bundle_refresh_hint: Duration::from_secs(5 * 60),
            jwt_leeway: Duration::from_secs(30),
            limits: Limits::default(),
            telemetry: TelemetryConfig::default(),
            attestors: AttestorsConfig::default(),
            store: StoreLocation::Embedded,
            revocation_staleness: Duration::from_secs(15),
            audit: AuditConfig::default(),
            governance: GovernanceConfig::default(),
            alerts: AlertsConfig::default(),
            admin: AdminConfig::default(),
            breakglass: BreakglassConfig::default(),
            anomaly: AnomalyConfig::default(),
            jwt_governance_claims: false,
        }
    }
}

fn default_trust_domain() -> TrustDomain {
    // A constant that the unit tests parse; it cannot fail.
    #[allow(clippy::expect_used)]
    TrustDomain::new(DEFAULT_TRUST_DOMAIN).expect("default trust domain is valid")
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    trust_domain: Option<String>,
    data_dir: Option<PathBuf>,
    public_url: Option<String>,
    server_dns_names: Option<Vec<String>>,
    server_ip_addresses: Option<Vec<IpAddr>>,
    #[serde(default)]
    listen: FileListen,
    #[serde(default)]
    ttl: FileTtl,
    #[serde(default)]
    ca: FileCa,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    telemetry: FileTelemetry,
    bundle_refresh_hint: Option<String>,
    jwt_leeway: Option<String>,
    #[serde(default)]
    attestors: AttestorsConfig,
    #[serde(default)]
    store: FileStore,
    revocation_staleness: Option<String>,
    #[serde(default)]
    audit: FileAudit,
    #[serde(default)]
    governance: governance::FileGovernance,
    #[serde(default)]
    alerts: alerts::FileAlerts,
    #[serde(default)]
    admin: admin::FileAdmin,
    #[serde(default)]
    breakglass: admin::FileBreakglass,
    #[serde(default)]
    anomaly: anomaly::FileAnomaly,
    #[serde(default)]
    jwt: FileJwt,
}

/// `[jwt]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJwt {
    governance_claims: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAudit {
    key_dir: Option<PathBuf>,
    key_epoch: Option<String>,
    anchor_file: Option<PathBuf>,
    segment_max_size: Option<String>,
    segment_max_age: Option<String>,
    retention: Option<String>,
    commit_linger: Option<String>,
    anchor_url: Option<String>,
    anchor_url_ca: Option<PathBuf>,
    anchor_url_token_file: Option<PathBuf>,
    anchor_syslog: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTelemetry {
    prometheus: Option<bool>,
    otlp_endpoint: Option<String>,
    otlp_protocol: Option<String>,
    trace_sampling_ratio: Option<f64>,
    service_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStore {
    url: Option<String>,
    prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileListen {
    grpc: Option<String>,
    http: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTtl {
    jwt_default: Option<String>,
    x509_default: Option<String>,
    jwt_max: Option<String>,
    x509_max: Option<String>,
    join_token_default: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCa {
    root_ttl: Option<String>,
    intermediate_ttl: Option<String>,
    jwt_key_ttl: Option<String>,
    publish_ahead: Option<String>,
    rotation_check_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_message_bytes: Option<usize>,
    max_concurrent_streams: Option<u32>,
    max_connections: Option<usize>,
    max_connections_per_peer: Option<usize>,
    max_anonymous_connections: Option<usize>,
    request_timeout: Option<String>,
    handshake_timeout: Option<String>,
    idle_timeout: Option<String>,
}

/// Values given on the command line; they win over file and environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--trust-domain`
    pub trust_domain: Option<String>,
    /// `--data-dir`
    pub data_dir: Option<PathBuf>,
    /// `--grpc-listen`
    pub grpc_listen: Option<String>,
    /// `--http-listen`
    pub http_listen: Option<String>,
    /// `--store`
    pub store: Option<String>,
    /// `--accept-audit-rollback`
    pub accept_audit_rollback: Option<String>,
}

/// One raw value and where it came from, for error messages.
struct Raw<'a> {
    value: &'a str,
    source_name: String,
}

impl Config {
    /// The URL a client gives as `--server` to reach the broker listening on
    /// `grpc_addr` (the bound address: with port 0 configured, the port
    /// chosen). The first configured server DNS name when there is one (it
    /// is in the broker's certificate), else the address itself, with
    /// `localhost` for an unspecified one (`0.0.0.0`, `::`).
    pub fn broker_url(&self, grpc_addr: SocketAddr) -> String {
        let port = grpc_addr.port();
        match self.server_dns_names.first() {
            Some(name) => format!("https://{name}:{port}"),
            None if grpc_addr.ip().is_unspecified() => format!("https://localhost:{port}"),
            None => format!("https://{grpc_addr}"),
        }
    }

    /// Loads the configuration: defaults, then the file (if any), then the
    /// environment (read through `env`), then `overrides`.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let parsed = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_owned(),
                    reason: e.to_string().replace('\n', " "),
                })?
            }
            None => FileConfig::default(),
        };
        let mut config = Config::default();
        config.apply_file(parsed)?;
        config.apply_env(&env)?;
        config.apply_overrides(overrides)?;
        config.check()?;
        Ok(config)
    }

    fn apply_file(&mut self, file: FileConfig) -> Result<(), ConfigError> {
        let from = file_raw;
        if let Some(td) = &file.trust_domain {
            self.trust_domain = parse_trust_domain(&from(td))?;
        }
        if let Some(dir) = file.data_dir {
            self.data_dir = dir;
        }
        self.public_url = file.public_url.or(self.public_url.take());
        if let Some(names) = file.server_dns_names {
            self.server_dns_names = names;
        }
        if let Some(ips) = file.server_ip_addresses {
            self.server_ip_addresses = ips;
        }
        if let Some(addr) = &file.listen.grpc {
            self.grpc_listen = parse_addr("listen.grpc", &from(addr))?;
        }
        if let Some(addr) = &file.listen.http {
            self.http_listen = parse_addr("listen.http", &from(addr))?;
        }
        set_duration(
            &mut self.ttl.jwt_default,
            "ttl.jwt_default",
            file.ttl.jwt_default.as_deref(),
        )?;
        set_duration(
            &mut self.ttl.x509_default,
            "ttl.x509_default",
            file.ttl.x509_default.as_deref(),
        )?;
        set_duration(
            &mut self.ttl.jwt_max,
            "ttl.jwt_max",
            file.ttl.jwt_max.as_deref(),
        )?;
        set_duration(
            &mut self.ttl.x509_max,
            "ttl.x509_max",
            file.ttl.x509_max.as_deref(),
        )?;
        set_duration(
            &mut self.join_token_default_ttl,
            "ttl.join_token_default",
            file.ttl.join_token_default.as_deref(),
        )?;
        set_duration(
            &mut self.root_ttl,
            "ca.root_ttl",
            file.ca.root_ttl.as_deref(),
        )?;
        set_duration(
            &mut self.intermediate_ttl,
            "ca.intermediate_ttl",
            file.ca.intermediate_ttl.as_deref(),
        )?;
        set_duration(
            &mut self.jwt_key_ttl,
            "ca.jwt_key_ttl",
            file.ca.jwt_key_ttl.as_deref(),
        )?;
        set_duration(
            &mut self.publish_ahead,
            "ca.publish_ahead",
            file.ca.publish_ahead.as_deref(),
        )?;
        set_duration(
            &mut self.rotation_check_interval,
            "ca.rotation_check_interval",
            file.ca.rotation_check_interval.as_deref(),
        )?;
        set_duration(
            &mut self.bundle_refresh_hint,
            "bundle_refresh_hint",
            file.bundle_refresh_hint.as_deref(),
        )?;
        set_duration(
            &mut self.jwt_leeway,
            "jwt_leeway",
            file.jwt_leeway.as_deref(),
        )?;
        self.limits.apply_file(&file.limits)?;
        self.telemetry.apply_file(&file.telemetry)?;
        self.attestors = file.attestors;
        set_duration(
            &mut self.revocation_staleness,
            "revocation_staleness",
            file.revocation_staleness.as_deref(),
        )?;
        if let Some(key_dir) = &file.audit.key_dir {
            self.audit.key_dir = Some(key_dir.clone());
        }
        if let Some(epoch) = &file.audit.key_epoch {
            self.audit.key_epoch = Some(parse_duration("audit.key_epoch", &file_raw(epoch))?);
        }
        if let Some(anchor) = &file.audit.anchor_file {
            self.audit.anchor_file = Some(anchor.clone());
        }
        if let Some(size) = &file.audit.segment_max_size {
            self.audit.segment_max_bytes = Some(parse_size("audit.segment_max_size", size)?);
        }
        if let Some(linger) = &file.audit.commit_linger {
            self.audit.commit_linger =
                Some(parse_duration("audit.commit_linger", &file_raw(linger))?);
        }
        if let Some(age) = &file.audit.segment_max_age {
            self.audit.segment_max_age =
                Some(parse_duration("audit.segment_max_age", &file_raw(age))?);
        }
        if let Some(retention) = &file.audit.retention {
            self.audit.retention = Some(parse_duration("audit.retention", &file_raw(retention))?);
        }
        self.audit.apply_anchor_sinks(&file.audit)?;
        self.governance.apply_file(&file.governance)?;
        self.alerts.apply_file(&file.alerts)?;
        self.admin.apply_file(&file.admin)?;
        self.breakglass.apply_file(&file.breakglass)?;
        self.anomaly.apply_file(&file.anomaly)?;
        if let Some(on) = file.jwt.governance_claims {
            self.jwt_governance_claims = on;
        }
        if let Some(url) = &file.store.url {
            self.store = parse_store("store.url", url, file.store.prefix.as_deref())?;
        } else if file.store.prefix.is_some() {
            return Err(ConfigError::Invalid {
                setting: "store.prefix",
                source_name: "config file".into(),
                reason: "needs store.url".into(),
            });
        }
        Ok(())
    }

    fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let raw = |name: &'static str| env(name).map(|value| (value, name.to_owned()));
        if let Some((value, name)) = raw("MAYFLY_TRUST_DOMAIN") {
            self.trust_domain = parse_trust_domain(&Raw {
                value: &value,
                source_name: name,
            })?;
        }
        if let Some((value, _)) = raw("MAYFLY_DATA_DIR") {
            self.data_dir = PathBuf::from(value);
        }
        if let Some((value, name)) = raw("MAYFLY_GRPC_LISTEN") {
            self.grpc_listen = parse_addr(
                "listen.grpc",
                &Raw {
                    value: &value,
                    source_name: name,
                },
            )?;
        }
        if let Some((value, name)) = raw("MAYFLY_HTTP_LISTEN") {
            self.http_listen = parse_addr(
                "listen.http",
                &Raw {
                    value: &value,
                    source_name: name,
                },
            )?;
        }
        if let Some((value, name)) = raw("MAYFLY_PROMETHEUS") {
            self.telemetry.prometheus = match value.as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(ConfigError::Invalid {
                        setting: "telemetry.prometheus",
                        source_name: name,
                        reason: format!("{value:?} is not true or false"),
                    });
                }
            };
        }
        self.telemetry.otlp =
            self.telemetry
                .otlp
                .apply_env(env)
                .map_err(|error| ConfigError::Invalid {
                    setting: "telemetry",
                    source_name: "the environment".into(),
                    reason: error.to_string(),
                })?;
        if let Some((value, _)) = raw("MAYFLY_PUBLIC_URL") {
            self.public_url = Some(value);
        }
        if let Some((value, _)) = raw("MAYFLY_STORE") {
            let prefix = env("MAYFLY_REDIS_PREFIX");
            self.store = parse_store("MAYFLY_STORE", &value, prefix.as_deref())?;
        }
        if let Some((value, name)) = raw("MAYFLY_REVOCATION_STALENESS") {
            self.revocation_staleness = parse_duration(
                "revocation_staleness",
                &Raw {
                    value: &value,
                    source_name: name,
                },
            )?;
        }
        for (var, setting, target) in [
            ("MAYFLY_JWT_TTL_MAX", "ttl.jwt_max", &mut self.ttl.jwt_max),
            (
                "MAYFLY_X509_TTL_MAX",
                "ttl.x509_max",
                &mut self.ttl.x509_max,
            ),
        ] {
            if let Some(value) = env(var) {
                *target = parse_duration(
                    setting,
                    &Raw {
                        value: &value,
                        source_name: var.to_owned(),
                    },
                )?;
            }
        }
        Ok(())
    }

    fn apply_overrides(&mut self, overrides: &Overrides) -> Result<(), ConfigError> {
        if let Some(td) = &overrides.trust_domain {
            self.trust_domain = parse_trust_domain(&Raw {
                value: td,
                source_name: "--trust-domain".into(),
            })?;
        }
        if let Some(dir) = &overrides.data_dir {
            self.data_dir = dir.clone();
        }
        if let Some(addr) = &overrides.grpc_listen {
            self.grpc_listen = parse_addr(
                "listen.grpc",
                &Raw {
                    value: addr,
                    source_name: "--grpc-listen".into(),
                },
            )?;
        }
        if let Some(addr) = &overrides.http_listen {
            self.http_listen = parse_addr(
                "listen.http",
                &Raw {
                    value: addr,
                    source_name: "--http-listen".into(),
                },
            )?;
        }
        if let Some(url) = &overrides.store {
            let prefix = match &self.store {
                StoreLocation::Redis { prefix, .. } => Some(prefix.clone()),
                StoreLocation::Embedded => None,
            };
            self.store = parse_store("--store", url, prefix.as_deref())?;
        }
        if let Some(reason) = &overrides.accept_audit_rollback {
            self.audit.accept_divergence = Some(reason.clone());
        }
        Ok(())
    }

    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |setting: &'static str, reason: String| ConfigError::Invalid {
            setting,
            source_name: "configuration".into(),
            reason,
        };
        if self.rotation_check_interval.is_zero() {
            return Err(invalid(
                "ca.rotation_check_interval",
                "must be positive".into(),
            ));
        }
        if let Some(epoch) = self.audit.key_epoch
            && (epoch < Duration::from_secs(60) || epoch > Duration::from_secs(7 * 86_400))
        {
            return Err(invalid(
                "audit.key_epoch",
                "must be between 1m and 168h (a key stolen can re-sign at most one epoch)".into(),
            ));
        }
        if self
            .audit
            .commit_linger
            .is_some_and(|linger| linger > crate::audit::MAX_COMMIT_LINGER)
        {
            return Err(invalid(
                "audit.commit_linger",
                format!(
                    "must be at most {:?} (\"0s\" turns lingering off)",
                    crate::audit::MAX_COMMIT_LINGER
                ),
            ));
        }
        if let Some(size) = self.audit.segment_max_bytes
            && !(4 << 10..=4 << 30).contains(&size)
        {
            return Err(invalid(
                "audit.segment_max_size",
                "must be between 4KiB and 4GiB".into(),
            ));
        }
        if let Some(age) = self.audit.segment_max_age
            && (age < Duration::from_secs(60) || age > Duration::from_secs(31 * 86_400))
        {
            return Err(invalid(
                "audit.segment_max_age",
                "must be between 1m and 31d".into(),
            ));
        }
        if let Some(retention) = self.audit.retention
            && retention < Duration::from_secs(3600)
        {
            return Err(invalid(
                "audit.retention",
                "must be at least 1h (what is past it is deleted; leave it out to keep every \
                 segment)"
                    .into(),
            ));
        }
        self.audit.check_anchor_sinks()?;
        self.alerts.check(&self.telemetry.otlp)?;
        if self.revocation_staleness < Duration::from_secs(1)
            || self.revocation_staleness > Duration::from_secs(300)
        {
            return Err(invalid(
                "revocation_staleness",
                "must be between 1s and 5m".into(),
            ));
        }
        for (setting, value) in [
            ("ttl.jwt_max", self.ttl.jwt_max),
            ("ttl.x509_max", self.ttl.x509_max),
        ] {
            if value > HARD_TTL_CAP || value.is_zero() {
                return Err(invalid(
                    setting,
                    format!("must be between 1s and {}s", HARD_TTL_CAP.as_secs()),
                ));
            }
        }
        if self.ttl.jwt_default > self.ttl.jwt_max || self.ttl.jwt_default.is_zero() {
            return Err(invalid(
                "ttl.jwt_default",
                "must be between 1s and ttl.jwt_max".into(),
            ));
        }
        if self.ttl.x509_default > self.ttl.x509_max || self.ttl.x509_default.is_zero() {
            return Err(invalid(
                "ttl.x509_default",
                "must be between 1s and ttl.x509_max".into(),
            ));
        }
        let day = Duration::from_secs(86_400);
        if self.join_token_default_ttl.is_zero() || self.join_token_default_ttl > day {
            return Err(invalid(
                "ttl.join_token_default",
                "must be between 1s and 24h".into(),
            ));
        }
        if self.intermediate_ttl < day || self.intermediate_ttl >= self.root_ttl {
            return Err(invalid(
                "ca.intermediate_ttl",
                "must be at least 1 day and shorter than ca.root_ttl".into(),
            ));
        }
        if self.jwt_leeway > Duration::from_secs(300) {
            return Err(invalid("jwt_leeway", "must be at most 5m".into()));
        }
        self.limits.check()?;
        if self.grpc_listen == self.http_listen && self.grpc_listen.port() != 0 {
            return Err(invalid(
                "listen",
                "grpc and http must listen on different addresses".into(),
            ));
        }
        // Building the attestors reads their JWKS files and CA bundles, so a
        // missing or bad file stops the server before it binds anything.
        crate::attest::Attestors::new(&self.attestors).map_err(|e| ConfigError::Invalid {
            setting: "attestors",
            source_name: "config file".into(),
            reason: e.to_string(),
        })?;
        if let Some(url) = &self.public_url
            && (!(url.starts_with("https://") || url.starts_with("http://")) || url.ends_with('/'))
        {
            return Err(invalid(
                "public_url",
                "must be an http(s) URL without a trailing '/'".into(),
            ));
        }
        Ok(())
    }

    /// The layout of the data directory.
    pub fn layout(&self) -> DataDir {
        DataDir::new(&self.data_dir)
    }

    /// The admin socket: `[admin] socket_path`, else `<data_dir>/admin.sock`.
    pub fn admin_socket(&self) -> PathBuf {
        self.admin
            .socket_path
            .clone()
            .unwrap_or_else(|| self.layout().admin_socket())
    }

    /// How the audit log is opened: the configured key directory (default
    /// `<data_dir>/audit-key`), key epoch and anchor, for `replica`.
    pub fn audit_options(&self, replica: &str) -> crate::audit::AuditOptions {
        let key_dir = self
            .audit
            .key_dir
            .clone()
            .unwrap_or_else(|| self.layout().audit_key());
        let mut options = crate::audit::AuditOptions::new(key_dir);
        options.key_epoch = self.audit.key_epoch.unwrap_or(DEFAULT_AUDIT_KEY_EPOCH);
        options.anchor = self.audit.anchor_file.clone();
        let defaults = crate::audit::Rotation::default();
        options.rotation = crate::audit::Rotation {
            max_bytes: self.audit.segment_max_bytes.unwrap_or(defaults.max_bytes),
            max_age: self.audit.segment_max_age.unwrap_or(defaults.max_age),
            retention: self.audit.retention,
        };
        options.accept_divergence = self.audit.accept_divergence.clone();
        options.commit_linger = self
            .audit
            .commit_linger
            .unwrap_or(crate::audit::DEFAULT_COMMIT_LINGER);
        options.replica = replica.to_owned();
        options
    }
}

/// A config file's table from `text`, for the section modules' tests.
#[cfg(test)]
fn test_table<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: "test".into(),
        reason: e.to_string(),
    })
}

/// A setting of the config file whose value is refused, and why.
fn file_invalid(setting: &'static str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        setting,
        source_name: "config file".into(),
        reason: reason.into(),
    }
}

fn file_raw(value: &str) -> Raw<'_> {
    Raw {
        value,
        source_name: "config file".to_owned(),
    }
}

fn parse_trust_domain(raw: &Raw<'_>) -> Result<TrustDomain, ConfigError> {
    TrustDomain::new(raw.value).map_err(|e| ConfigError::Invalid {
        setting: "trust_domain",
        source_name: raw.source_name.clone(),
        reason: e.to_string(),
    })
}

fn parse_addr(setting: &'static str, raw: &Raw<'_>) -> Result<SocketAddr, ConfigError> {
    raw.value.parse().map_err(|_| ConfigError::Invalid {
        setting,
        source_name: raw.source_name.clone(),
        reason: format!(
            "{:?} is not an IP:port address (e.g. 127.0.0.1:7443)",
            raw.value
        ),
    })
}

/// Reads a size like `64MiB`, `512KiB`, `1GiB` or a number of bytes.
fn parse_size(setting: &'static str, value: &str) -> Result<u64, ConfigError> {
    let text = value.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let shift = match unit.trim() {
        "" | "B" => Some(0),
        "KiB" => Some(10),
        "MiB" => Some(20),
        "GiB" => Some(30),
        _ => None,
    };
    number
        .parse::<u64>()
        .ok()
        .zip(shift)
        .and_then(|(number, shift)| number.checked_mul(1 << shift))
        .ok_or_else(|| ConfigError::Invalid {
            setting,
            source_name: "config file".into(),
            reason: format!("{value:?} is not a size like 64MiB, 512KiB, 1GiB or 65536"),
        })
}

fn parse_duration(setting: &'static str, raw: &Raw<'_>) -> Result<Duration, ConfigError> {
    humantime::parse_duration(raw.value).map_err(|e| ConfigError::Invalid {
        setting,
        source_name: raw.source_name.clone(),
        reason: format!("{:?} is not a duration like 90s, 5m or 1h ({e})", raw.value),
    })
}

fn set_duration(
    target: &mut Duration,
    setting: &'static str,
    value: Option<&str>,
) -> Result<(), ConfigError> {
    if let Some(value) = value {
        *target = parse_duration(
            setting,
            &Raw {
                value,
                source_name: "config file".into(),
            },
        )?;
    }
    Ok(())
}

/// Reads a store location: `embedded`, or a `redis://` / `rediss://` URL.
/// The error never repeats the URL, which may hold a password.
fn parse_store(
    setting: &'static str,
    value: &str,
    prefix: Option<&str>,
) -> Result<StoreLocation, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        setting,
        source_name: setting.into(),
        reason: reason.into(),
    };
    if value == "embedded" {
        return Ok(StoreLocation::Embedded);
    }
    if !(value.starts_with("redis://") || value.starts_with("rediss://")) {
        return Err(invalid(
            "expected `embedded` or a redis:// URL (redis://[user:password@]host:port[/db])",
        ));
    }
    let prefix = prefix.unwrap_or(DEFAULT_REDIS_PREFIX);
    if prefix.is_empty()
        || prefix.len() > 64
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return Err(invalid(
            "the Redis key prefix must be 1 to 64 letters, digits, '-', '_', '.' or ':'",
        ));
    }
    Ok(StoreLocation::Redis {
        url: value.to_owned(),
        prefix: prefix.to_owned(),
    })
}

#[cfg(test)]
mod tests;
