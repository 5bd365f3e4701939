//! Metrics: OpenTelemetry instruments on the broker's paths, read on demand
//! and served as Prometheus text at `/metrics` on the HTTP port, and
//! exported over OTLP when `[telemetry] otlp_endpoint` (or
//! `OTEL_EXPORTER_OTLP_ENDPOINT`) is set. The plumbing (meter provider,
//! RPC layer, spans, exporters) is the `mayfly-telemetry` crate's.
//!
//! Each broker has its own meter provider (tests run several in one
//! process), read by a manual reader when `/metrics` is scraped; recording
//! a measurement is an atomic add on the request path, never I/O. Labels
//! are bounded sets (a kind, an outcome, a status class, an attestor name):
//! no SPIFFE ID, entry id or audience is ever a label; those are in the
//! traces and the audit log.
//!
//! | metric (Prometheus) | type | labels |
//! |---|---|---|
//! | `mayfly_credentials_total` | counter | `kind` (`jwt`, `x509`), `outcome` (`granted`, `refused`), `refusal` (whose fault: `invalid`, `unproven`, `denied`, `attestation`, `ca`, `unavailable`, `internal`; `none` when granted) |
//! | `mayfly_attestations_total` | counter | `attestor` (`join_token`, `k8s_psat`, `oidc`, `x509pop`), `outcome` (`passed`, `refused`) |
//! | `mayfly_jwt_validations_total` | counter | `outcome` (`valid`, `refused`), `refusal` |
//! | `mayfly_cache_requests_total` | counter | `cache` (`jwt_svid`: the JWT-SVID cache; `verified_token`: ValidateJwtSvid's), `result` (`hit`, `miss`) |
//! | `mayfly_signing_duration_seconds` | histogram | `kind` (`jwt`, `x509`): signing and encoding one credential |
//! | `mayfly_entries` | gauge | |
//! | `mayfly_revocations` | gauge | `kind` (`entry`, `spiffe-id`, `jti`, `serial`, `agent`) |
//! | `mayfly_connections` | gauge | `peer` (`all`, `anonymous`: without a client certificate): open on the gRPC port |
//! | `mayfly_revocation_staleness_seconds` | gauge | (only with a shared store) |
//! | `mayfly_revocation_staleness_bound_seconds` | gauge | the configured bound (only with a shared store) |
//! | `mayfly_ready` | gauge | 1 when `/readyz` would say ready, else 0 |
//! | `mayfly_store_connected` | gauge | 1 while the shared store's change feed is connected (only with one) |
//! | `mayfly_ca_expiry_seconds` | gauge | `kind` (`root`, `intermediate`, `jwt`): seconds until the active one's `notAfter` (for the JWT key, the end of its configured life) |
//! | `mayfly_ca_successor` | gauge | `kind`: 1 when a successor is prepared (or pending an offline signature) |
//! | `mayfly_ca_rotation_due_seconds` | gauge | `kind` (`intermediate`, `jwt`): until the next automatic rotation step (negative: overdue) |
//! | `mayfly_audit_commit_duration_seconds` | histogram | `outcome` (`durable`, `failed`): write and fdatasync of one group commit |
//! | `mayfly_audit_commit_records` | histogram | records per group commit |
//! | `mayfly_audit_head_sequence` | gauge | the last durable record's sequence number |
//! | `mayfly_audit_anchor_writes_total` | counter | `sink` (`file`: `[audit] anchor_file`; `http`: `anchor_url`; `syslog`: `anchor_syslog`), `outcome` (`ok`, `failed`): signed checkpoints sent to an anchor outside the host (only with one configured) |
//! | `mayfly_alert_deliveries_total` | counter | `output` (`webhook`: `[alerts] webhook_url`; `otel_logs`: `[alerts] otel_logs`), `outcome` (`delivered`, `retried`: a try failed and another follows, `failed`: every try failed or a final answer, `refused`: the output's queue was full) (only with an alert output) |
//! | `mayfly_anomalies_total` | counter | `detector` (`rate-spike`, `refusal-burst`, `new-source`), `action` (`alert`, `quarantine`): findings of the anomaly detectors, by what was done (each pair starts at 0 while `[anomaly] enabled`) |
//! | `mayfly_anomaly_findings_dropped_total` | counter | `reason` (`queue_full`: a finding the anomaly task's queue had no room for; `untracked`: an entry beyond the detectors' cap, not watched) |
//! | `mayfly_audit_anchored_sequence` | gauge | `sink`: the sequence number of the last checkpoint that anchor took |
//! | `mayfly_audit_witness_publishes_total` | counter | `outcome` (`ok`, `failed`): this replica's signed audit checkpoint published to the shared store, every 2 s (only with one) |
//! | `mayfly_audit_witness_findings_total` | counter | `kind` (`regressed`, `forked`, `bad_signature`, `key_changed`): another replica's published checkpoint did not continue what this replica saw of it (only with a shared store; each kind starts at 0) |
//! | `rpc_server_call_duration_seconds` | histogram | `rpc_system` (`grpc`), `rpc_service` (`mayfly.v1.Broker`, `mayfly.v1.Admin`), `rpc_method` (the service's methods, else `_OTHER`), `rpc_grpc_status_code`: from an RPC's call to the end of its response |

use std::sync::{Arc, Weak};
use std::time::Duration;

use mayfly_ca::CertificateAuthority;
use mayfly_sdk::revocation::RevocationSet;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};
use opentelemetry_sdk::error::OTelSdkError;

use crate::audit::CommitObserver;
use crate::clock::Clock;
use crate::policy::EntryIndex;

pub use mayfly_telemetry::prometheus::CONTENT_TYPE;
use mayfly_telemetry::{Metrics, RpcService};

/// `mayfly.v1.Broker` and its methods, as in `proto/mayfly/v1/broker.proto`
/// (a test keeps the two the same): the RPC metric's and spans' labels.
pub static BROKER_SERVICE: RpcService = RpcService {
    name: "mayfly.v1.Broker",
    methods: &[
        "AttestAndIssue",
        "RenewX509Svid",
        "MintJwtSvid",
        "GetBundle",
        "WatchBundle",
        "ValidateJwtSvid",
        "CreateX509PopChallenge",
        "MintJwtSvidWithEvidence",
        "ListAgentEntries",
        "BatchMintX509Svids",
        "BatchMintJwtSvids",
        "WatchRevocations",
        "Ping",
    ],
};

/// `mayfly.v1.Admin` and its methods, as in `proto/mayfly/v1/admin.proto`.
pub static ADMIN_SERVICE: RpcService = RpcService {
    name: "mayfly.v1.Admin",
    methods: &[
        "CreateEntry",
        "ListEntries",
        "GetEntry",
        "UpdateEntry",
        "DeleteEntry",
        "CreateJoinToken",
        "ServerStatus",
        "Revoke",
        "RevokeMany",
        "Unrevoke",
        "ListRevocations",
        "CaStatus",
        "CaPrepare",
        "CaActivate",
        "CaRetire",
        "CaIntermediateCsr",
        "CaImportIntermediate",
        "DisableEntry",
        "EnableEntry",
        "ReviewEntry",
        "PurgeEntries",
        "OwnerDigests",
        "TestAlert",
        "CreateAudience",
        "ListAudiences",
        "GetAudience",
        "UpdateAudience",
        "DeleteAudience",
        "RequestGrant",
        "ApproveGrant",
        "RevokeGrant",
        "ListGrants",
        "ReviewGrant",
    ],
};

/// How many connections the gRPC listener holds now (all, anonymous);
/// `None` once it is gone.
pub type OpenConnections = Box<dyn Fn() -> Option<(usize, usize)> + Send + Sync>;

/// Whether the shared store's change feed is connected now; `None` once
/// the broker that knows is gone.
pub type StoreConnected = Box<dyn Fn() -> Option<bool> + Send + Sync>;

/// The broker's meter provider and the reader `/metrics` collects from.
#[derive(Debug, Clone)]
pub struct Telemetry {
    metrics: Metrics,
    instruments: Arc<BrokerMetrics>,
}

impl Telemetry {
    /// A meter provider of its own, with the request-path instruments, read
    /// at `/metrics` only.
    pub fn new() -> Self {
        Telemetry::over(Metrics::new())
    }

    /// Also exported over OTLP when `otlp`'s metrics are on (inside the
    /// tokio runtime).
    ///
    /// # Errors
    ///
    /// The OTLP exporter cannot be built.
    pub fn with_export(
        otlp: &mayfly_telemetry::OtlpConfig,
    ) -> Result<Self, mayfly_telemetry::TracingError> {
        Ok(Telemetry::over(Metrics::with_export(otlp)?))
    }

    fn over(metrics: Metrics) -> Self {
        let instruments = Arc::new(BrokerMetrics::new(&metrics.meter("mayfly")));
        Telemetry {
            metrics,
            instruments,
        }
    }

    /// The meter RPC layers record into.
    pub fn meter(&self) -> Meter {
        self.metrics.meter("mayfly")
    }

    /// The instruments the request path records into.
    pub fn metrics(&self) -> &Arc<BrokerMetrics> {
        &self.instruments
    }

    /// Registers the gauges read at each scrape: entries, revocations, the
    /// revocation index's staleness, and how long the CA's active root and
    /// intermediate have left. The callbacks hold weak references, so a
    /// stopped broker's state is not kept alive by its meter.
    ///
    /// With a shared store, `store_connected` says whether its change feed
    /// is connected now.
    pub fn observe_state(
        &self,
        entries: &Arc<EntryIndex>,
        revocations: &Arc<RevocationSet>,
        ca: &Arc<CertificateAuthority>,
        clock: &Arc<dyn Clock>,
        store_connected: Option<StoreConnected>,
    ) {
        let meter = self.meter();
        if let Some(connected) = store_connected {
            meter
                .u64_observable_gauge("mayfly.store.connected")
                .with_description(
                    "1 while the shared store's change feed is connected, 0 after it was lost.",
                )
                .with_callback(move |gauge| {
                    if let Some(connected) = connected() {
                        gauge.observe(u64::from(connected), &[]);
                    }
                })
                .build();
        }
        let weak_entries: Weak<EntryIndex> = Arc::downgrade(entries);
        meter
            .u64_observable_gauge("mayfly.entries")
            .with_description("Registered entries, in this replica's index.")
            .with_unit("{entry}")
            .with_callback(move |gauge| {
                if let Some(entries) = weak_entries.upgrade() {
                    gauge.observe(entries.len() as u64, &[]);
                }
            })
            .build();
        let weak_revocations = Arc::downgrade(revocations);
        meter
            .u64_observable_gauge("mayfly.revocations")
            .with_description("Revocations in force, in this replica's index, by kind.")
            .with_unit("{revocation}")
            .with_callback(move |gauge| {
                if let Some(set) = weak_revocations.upgrade() {
                    for kind in mayfly_sdk::revocation::RevocationKind::ALL {
                        gauge.observe(
                            set.of_kind(kind).len() as u64,
                            &[KeyValue::new("kind", kind.as_str())],
                        );
                    }
                }
            })
            .build();
        let weak_revocations = Arc::downgrade(revocations);
        let staleness_clock = clock.clone();
        meter
            .f64_observable_gauge("mayfly.revocation.staleness")
            .with_description(
                "Seconds since the revocation index last heard from the shared store (only with one).",
            )
            .with_unit("s")
            .with_callback(move |gauge| {
                let Some(set) = weak_revocations.upgrade() else {
                    return;
                };
                if set.staleness_bound().is_none() {
                    return;
                }
                let now_ms = crate::clock::unix_millis(staleness_clock.now());
                let age_ms = set
                    .last_heard_ms()
                    .map_or(i64::MAX, |heard| now_ms.saturating_sub(heard));
                gauge.observe(age_ms as f64 / 1000.0, &[]);
            })
            .build();
        let weak_revocations = Arc::downgrade(revocations);
        meter
            .f64_observable_gauge("mayfly.revocation.staleness.bound")
            .with_description(
                "The configured staleness bound: past it the broker refuses (only with a shared store).",
            )
            .with_unit("s")
            .with_callback(move |gauge| {
                if let Some(bound) = weak_revocations.upgrade().and_then(|s| s.staleness_bound()) {
                    gauge.observe(bound.as_secs_f64(), &[]);
                }
            })
            .build();
        let weak_revocations = Arc::downgrade(revocations);
        let ready_clock = clock.clone();
        meter
            .u64_observable_gauge("mayfly.ready")
            .with_description(
                "1 when the broker can answer (what /readyz says), 0 when its revocation index is too stale.",
            )
            .with_callback(move |gauge| {
                let Some(set) = weak_revocations.upgrade() else {
                    return;
                };
                let now_ms = crate::clock::unix_millis(ready_clock.now());
                gauge.observe(u64::from(set.check_fresh(now_ms).is_ok()), &[]);
            })
            .build();
        let weak_ca = Arc::downgrade(ca);
        let expiry_clock = clock.clone();
        meter
            .f64_observable_gauge("mayfly.ca.expiry")
            .with_description(
                "Seconds until the active root or intermediate certificate expires, or the active JWT key reaches the end of its configured life.",
            )
            .with_unit("s")
            .with_callback(move |gauge| {
                let Some(ca) = weak_ca.upgrade() else {
                    return;
                };
                let now = expiry_clock.now();
                let now_secs = crate::clock::unix_seconds(now);
                let jwt_key_life = i64::try_from(ca.config().jwt_key_ttl.as_secs()).unwrap_or(i64::MAX);
                for authority in ca.status(now).authorities {
                    if authority.state != mayfly_ca::AuthorityState::Active {
                        continue;
                    }
                    let (kind, ends) = match authority.kind {
                        mayfly_ca::AuthorityKind::Root => ("root", authority.not_after),
                        mayfly_ca::AuthorityKind::Intermediate => {
                            ("intermediate", authority.not_after)
                        }
                        mayfly_ca::AuthorityKind::JwtKey => (
                            "jwt",
                            authority.since.map(|since| since.saturating_add(jwt_key_life)),
                        ),
                    };
                    if let Some(ends) = ends {
                        gauge.observe(
                            ends.saturating_sub(now_secs) as f64,
                            &[KeyValue::new("kind", kind)],
                        );
                    }
                }
            })
            .build();
        let weak_ca = Arc::downgrade(ca);
        let due_clock = clock.clone();
        meter
            .f64_observable_gauge("mayfly.ca.rotation.due")
            .with_description(
                "Seconds until the next automatic rotation step of the intermediate CA or the JWT key (preparing a successor, or activating it); negative when overdue.",
            )
            .with_unit("s")
            .with_callback(move |gauge| {
                let Some(ca) = weak_ca.upgrade() else {
                    return;
                };
                let now = crate::clock::unix_seconds(due_clock.now());
                for (kind, due) in ca.next_rotation_steps() {
                    let label = match kind {
                        mayfly_ca::AuthorityKind::Intermediate => "intermediate",
                        mayfly_ca::AuthorityKind::JwtKey => "jwt",
                        mayfly_ca::AuthorityKind::Root => continue,
                    };
                    gauge.observe(
                        due.saturating_sub(now) as f64,
                        &[KeyValue::new("kind", label)],
                    );
                }
            })
            .build();
        let weak_ca = Arc::downgrade(ca);
        let successor_clock = clock.clone();
        meter
            .u64_observable_gauge("mayfly.ca.successor")
            .with_description(
                "1 when a successor of the active root, intermediate or JWT key is prepared or published, else 0.",
            )
            .with_callback(move |gauge| {
                let Some(ca) = weak_ca.upgrade() else {
                    return;
                };
                let status = ca.status(successor_clock.now());
                for (kind, label) in [
                    (mayfly_ca::AuthorityKind::Root, "root"),
                    (mayfly_ca::AuthorityKind::Intermediate, "intermediate"),
                    (mayfly_ca::AuthorityKind::JwtKey, "jwt"),
                ] {
                    let waiting = status.authorities.iter().any(|a| {
                        a.kind == kind
                            && matches!(
                                a.state,
                                mayfly_ca::AuthorityState::Prepared
                                    | mayfly_ca::AuthorityState::Pending
                            )
                    });
                    gauge.observe(u64::from(waiting), &[KeyValue::new("kind", label)]);
                }
            })
            .build();
    }

    /// Registers the gauge of the gRPC listener's open connections: `open`
    /// says how many (all, and anonymous), `None` once the listener is gone.
    pub fn observe_connections(&self, open: OpenConnections) {
        self.meter()
            .u64_observable_gauge("mayfly.connections")
            .with_description(
                "Open connections on the broker's gRPC port (handshaking ones included), all and those without a client certificate.",
            )
            .with_unit("{connection}")
            .with_callback(move |gauge| {
                if let Some((all, anonymous)) = open() {
                    gauge.observe(all as u64, &[KeyValue::new("peer", "all")]);
                    gauge.observe(anonymous as u64, &[KeyValue::new("peer", "anonymous")]);
                }
            })
            .build();
    }

    /// Exports what is left (with OTLP) and stops the meter provider.
    pub async fn shutdown(&self) {
        self.metrics.shutdown().await;
    }

    /// Every metric now, as Prometheus text.
    ///
    /// # Errors
    ///
    /// The SDK's error if the meter provider was shut down.
    pub fn render(&self) -> Result<String, OTelSdkError> {
        self.metrics.render()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

/// The instruments the request path records into. Recording is an atomic
/// add on an attribute set the SDK keeps, never I/O.
#[derive(Debug)]
pub struct BrokerMetrics {
    credentials: Counter<u64>,
    attestations: Counter<u64>,
    validations: Counter<u64>,
    cache: Counter<u64>,
    audit_commit: Histogram<f64>,
    audit_batch: Histogram<u64>,
    audit_head: Gauge<u64>,
    anchor_writes: Counter<u64>,
    anchored: Gauge<u64>,
    alert_deliveries: Counter<u64>,
    anomalies: Counter<u64>,
    anomaly_dropped: Counter<u64>,
    witness_publishes: Counter<u64>,
    witness_findings: Counter<u64>,
    signing: Histogram<f64>,
}

impl BrokerMetrics {
    fn new(meter: &Meter) -> Self {
        BrokerMetrics {
            credentials: meter
                .u64_counter("mayfly.credentials")
                .with_description(
                    "Credentials asked for, by kind, outcome and whose fault a refusal was.",
                )
                .with_unit("{credential}")
                .build(),
            attestations: meter
                .u64_counter("mayfly.attestations")
                .with_description("Platform attestations, by attestor and outcome.")
                .with_unit("{attestation}")
                .build(),
            validations: meter
                .u64_counter("mayfly.jwt.validations")
                .with_description(
                    "ValidateJwtSvid calls, by outcome and whose fault a refusal was.",
                )
                .with_unit("{validation}")
                .build(),
            cache: meter
                .u64_counter("mayfly.cache.requests")
                .with_description("Look-ups of the broker's JWT-SVID cache, by result.")
                .with_unit("{request}")
                .build(),
            audit_commit: meter
                .f64_histogram("mayfly.audit.commit.duration")
                .with_description(
                    "Time to write and fdatasync one batch of audit records (a group commit), by outcome.",
                )
                .with_unit("s")
                .with_boundaries(vec![
                    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 1.0,
                ])
                .build(),
            audit_batch: meter
                .u64_histogram("mayfly.audit.commit.records")
                .with_description("Audit records per group commit.")
                .with_unit("{record}")
                .with_boundaries(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0])
                .build(),
            signing: meter
                .f64_histogram("mayfly.signing.duration")
                .with_description(
                    "Time to sign and encode one credential, by kind.",
                )
                .with_unit("s")
                .with_boundaries(vec![
                    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5,
                    0.005, 0.01, 0.05,
                ])
                .build(),
            audit_head: meter
                .u64_gauge("mayfly.audit.head.sequence")
                .with_description("Sequence number of the last durable audit record.")
                .with_unit("{record}")
                .build(),
            alert_deliveries: meter
                .u64_counter("mayfly.alert.deliveries")
                .with_description(
                    "Tries to deliver an alert, by output (webhook, otel_logs) and outcome: delivered, retried, failed, refused (queue full).",
                )
                .with_unit("{try}")
                .build(),
            anomalies: meter
                .u64_counter("mayfly.anomalies")
                .with_description(
                    "Findings of the anomaly detectors on the mint path, by detector and action.",
                )
                .with_unit("{finding}")
                .build(),
            anomaly_dropped: meter
                .u64_counter("mayfly.anomaly.findings.dropped")
                .with_description(
                    "Anomaly findings dropped (the anomaly task's queue was full) and entries not tracked (the detectors' map was full).",
                )
                .with_unit("{finding}")
                .build(),
            anchor_writes: meter
                .u64_counter("mayfly.audit.anchor.writes")
                .with_description(
                    "Signed audit checkpoints sent to an anchor outside the host, by sink and outcome.",
                )
                .with_unit("{checkpoint}")
                .build(),
            anchored: meter
                .u64_gauge("mayfly.audit.anchored.sequence")
                .with_description("Sequence number of the last audit checkpoint each anchor took, by sink.")
                .with_unit("{record}")
                .build(),
            witness_publishes: meter
                .u64_counter("mayfly.audit.witness.publishes")
                .with_description(
                    "This replica's signed audit checkpoints published to the shared store, by outcome.",
                )
                .with_unit("{checkpoint}")
                .build(),
            witness_findings: meter
                .u64_counter("mayfly.audit.witness.findings")
                .with_description(
                    "Other replicas' published audit checkpoints that did not continue what this replica saw of them, by kind.",
                )
                .with_unit("{finding}")
                .build(),
        }
    }

    /// One try to deliver an alert at `output` (`webhook`, `otel_logs`): `delivered`,
    /// `retried` or `failed`; or `refused` when the output's queue was full.
    pub fn alert_delivery(&self, output: &'static str, outcome: &'static str) {
        self.alert_deliveries.add(
            1,
            &[
                KeyValue::new("output", output),
                KeyValue::new("outcome", outcome),
            ],
        );
    }

    /// The anomaly detectors started: every detector and action is exported from now on,
    /// at zero, so that the first finding is an increase an alert rule sees.
    pub fn anomaly_started(&self, detectors: &[&'static str], actions: &[&'static str]) {
        for detector in detectors {
            for action in actions {
                self.anomaly(detector, action, 0);
            }
        }
    }

    /// `count` findings of `detector`, handled with `action`.
    pub fn anomaly(&self, detector: &'static str, action: &'static str, count: u64) {
        self.anomalies.add(
            count,
            &[
                KeyValue::new("detector", detector),
                KeyValue::new("action", action),
            ],
        );
    }

    /// A finding or an entry the detectors let go: `queue_full` or `untracked`.
    pub fn anomaly_dropped(&self, reason: &'static str) {
        self.anomaly_dropped
            .add(1, &[KeyValue::new("reason", reason)]);
    }

    /// The audit witness started (with a shared store): every kind of finding is
    /// exported from now on, at zero, so that the first finding is an increase an alert
    /// rule sees rather than a new series.
    pub fn witness_started(&self) {
        for kind in crate::audit::WitnessProblem::KINDS {
            self.witness_findings.add(0, &[KeyValue::new("kind", kind)]);
        }
    }

    /// This replica's audit checkpoint was published to the shared store (`ok`), or
    /// could not be.
    pub fn witness_published(&self, ok: bool) {
        self.witness_publishes.add(
            1,
            &[KeyValue::new("outcome", if ok { "ok" } else { "failed" })],
        );
    }

    /// The audit witness found another replica's checkpoint of `kind` (one of
    /// [`WitnessProblem::KINDS`](crate::audit::WitnessProblem::KINDS)).
    pub fn witness_finding(&self, kind: &'static str) {
        self.witness_findings.add(1, &[KeyValue::new("kind", kind)]);
    }

    /// A credential of `kind` (`jwt`, `x509`) was granted (`refusal` is
    /// `None`), or refused for a reason of that class
    /// (`MintError::class`).
    pub fn credential(&self, kind: &'static str, refusal: Option<&'static str>) {
        self.credentials.add(
            1,
            &[
                KeyValue::new("kind", kind),
                KeyValue::new(
                    "outcome",
                    if refusal.is_none() {
                        "granted"
                    } else {
                        "refused"
                    },
                ),
                KeyValue::new("refusal", refusal.unwrap_or("none")),
            ],
        );
    }

    /// An attestation by `attestor` passed, or was refused.
    pub fn attestation(&self, attestor: &'static str, passed: bool) {
        self.attestations.add(
            1,
            &[
                KeyValue::new("attestor", attestor),
                KeyValue::new("outcome", if passed { "passed" } else { "refused" }),
            ],
        );
    }

    /// A `ValidateJwtSvid` was answered: valid, or refused for a reason of
    /// that class.
    pub fn validation(&self, refusal: Option<&'static str>) {
        self.validations.add(
            1,
            &[
                KeyValue::new(
                    "outcome",
                    if refusal.is_none() {
                        "valid"
                    } else {
                        "refused"
                    },
                ),
                KeyValue::new("refusal", refusal.unwrap_or("none")),
            ],
        );
    }

    /// The JWT-SVID cache was asked, and had a token to reuse or not.
    pub fn jwt_cache(&self, hit: bool) {
        self.cache("jwt_svid", hit);
    }

    /// `cache` (`jwt_svid`, `verified_token`) was asked, and had an answer
    /// or not.
    pub fn cache(&self, cache: &'static str, hit: bool) {
        self.cache.add(
            1,
            &[
                KeyValue::new("cache", cache),
                KeyValue::new("result", if hit { "hit" } else { "miss" }),
            ],
        );
    }

    /// A credential of `kind` (`jwt`, `x509`) was signed in `took` (the
    /// signature and encoding alone, not the request around it).
    pub fn signed(&self, kind: &'static str, took: Duration) {
        self.signing
            .record(took.as_secs_f64(), &[KeyValue::new("kind", kind)]);
    }
}

impl CommitObserver for BrokerMetrics {
    fn committed(&self, records: usize, took: Duration, durable: bool, head_seq: u64) {
        let outcome = [KeyValue::new(
            "outcome",
            if durable { "durable" } else { "failed" },
        )];
        self.audit_commit.record(took.as_secs_f64(), &outcome);
        self.audit_batch.record(records as u64, &[]);
        if durable {
            self.audit_head.record(head_seq, &[]);
        }
    }

    fn anchored(&self, sink: &'static str, ok: bool, seq: u64) {
        let labels = [
            KeyValue::new("sink", sink),
            KeyValue::new("outcome", if ok { "ok" } else { "failed" }),
        ];
        self.anchor_writes.add(1, &labels);
        if ok {
            self.anchored.record(seq, &labels[..1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `rpc` lines of a proto file, in order.
    fn methods_in(proto: &str) -> Vec<&str> {
        proto
            .lines()
            .filter_map(|line| line.trim().strip_prefix("rpc "))
            .filter_map(|rest| rest.split('(').next())
            .map(str::trim)
            .collect()
    }

    #[test]
    fn the_method_lists_are_the_protos() {
        assert_eq!(
            methods_in(include_str!("../../proto/mayfly/v1/broker.proto")),
            BROKER_SERVICE.methods
        );
        assert_eq!(
            methods_in(include_str!("../../proto/mayfly/v1/admin.proto")),
            ADMIN_SERVICE.methods
        );
        assert_eq!(
            BROKER_SERVICE.method_of("/mayfly.v1.Broker/MintJwtSvid"),
            "MintJwtSvid"
        );
        assert_eq!(ADMIN_SERVICE.method_of("/mayfly.v1.Admin/Revoke"), "Revoke");
        assert_eq!(
            ADMIN_SERVICE.method_of("/mayfly.v1.Broker/MintJwtSvid"),
            "_OTHER"
        );
    }
}
