//! The operator API (`mayfly.v1.Admin`), served only on the admin Unix
//! socket. The socket is owner-only, and every call is also checked against
//! the peer's uid: only the data directory's owner (or root) may administer.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mayfly_ca::{CaError, CertificateAuthority, RotationEvent};

use mayfly_sdk::SpiffeId;
use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::proto::v1::admin_server::Admin;
use mayfly_sdk::revocation::Revocation;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Code, Request, Response, Status};

mod audiences;
mod grants;

pub use audiences::audience_to_proto;
pub use grants::grant_to_proto;

use super::bundle::BundlePublisher;
use super::paging::{self, ListError, Listing, PageRequest, PageTokenError, Unpaged};
use crate::attest::Attestors;
use crate::attest::join_token::{JoinTokenRecord, JoinTokenSecret};
use crate::audit::{AuditEvent, AuditLog, Outcome};
use crate::clock::Clock;
use crate::config::Config;
use crate::governance::{EntryState, standing};
use crate::listing::PageFill;
use crate::mint::UsageTracker;
use crate::policy::{Entry, EntryFilter, EntryId, EntryIndex, EntrySpec};
use crate::replica::Replicas;
use crate::revoke::{RevocationFilter, RevokeError, Revoker};
use crate::rotation::Rotation;
use crate::store::Store;

/// Implements `mayfly.v1.Admin`.
#[derive(Debug, Clone)]
pub struct AdminService {
    inner: Arc<AdminState>,
}

/// What the admin service works on.
#[derive(Debug)]
pub struct AdminState {
    /// Server configuration.
    pub config: Config,
    /// The durable store.
    pub store: Arc<dyn Store>,
    /// The in-process entry index the mint path reads.
    pub entries: Arc<EntryIndex>,
    /// Usage counters.
    pub usage: Arc<UsageTracker>,
    /// The audit log.
    pub audit: AuditLog,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The served bundle.
    pub bundle: Arc<BundlePublisher>,
    /// The bound gRPC address.
    pub grpc_addr: String,
    /// The bound HTTP address.
    pub http_addr: String,
    /// The configured attestors (for entry checks).
    pub attestors: Arc<Attestors>,
    /// Revokes and lists revocations.
    pub revoker: Arc<Revoker>,
    /// This replica and the others sharing the store.
    pub replicas: Arc<Replicas>,
    /// The CA and its rotation.
    pub rotation: Arc<Rotation>,
    /// Where alerts go; `None` without `[alerts] webhook_url`.
    pub alerts: Option<crate::alert::AlertSink>,
    /// The registered audiences the mint path enforces.
    pub audiences: Arc<crate::audience::AudienceIndex>,
    /// Break-glass grants.
    pub breakglass: Option<Arc<crate::breakglass::Breakglass>>,
}

impl AdminService {
    /// The service.
    pub fn new(state: AdminState) -> Self {
        AdminService {
            inner: Arc::new(state),
        }
    }

    fn actor<T>(request: &Request<T>) -> String {
        request
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|info| info.peer_cred)
            .map_or_else(
                || "admin".to_owned(),
                |cred| format!("admin:uid={}", cred.uid()),
            )
    }

    fn to_proto(&self, entry: &Entry) -> pb::Entry {
        let usage = self.inner.usage.detail(&entry.id);
        let mut proto = entry_to_proto(entry, usage.total.last_minted_at, usage.total.mint_count);
        let default = self.inner.config.governance.review_every;
        proto.review_every_seconds = entry.review_interval(default);
        proto.review_due_at = entry.review_due_at(default).unwrap_or(0);
        proto.states = self
            .standing(entry)
            .iter()
            .map(|state| state.as_str().to_owned())
            .collect();
        proto.audience_usage = usage
            .audiences
            .iter()
            .map(|(audience, count)| pb::AudienceUsage {
                audience: audience.clone(),
                mint_count: count.mint_count,
                last_minted_at: count.last_minted_at,
            })
            .collect();
        proto.x509_mint_count = usage.x509.mint_count;
        proto.x509_last_minted_at = usage.x509.last_minted_at;
        proto.unregistered_audiences = self.inner.audiences.unregistered_of(entry);
        if let Some(grant) = entry.grant_in_force(self.inner.clock.unix_now()) {
            proto.active_grant.clone_from(&grant.grant_id);
            proto.active_grant_expires_at = grant.expires_at;
        }
        proto.unreviewed_grants = entry.unreviewed_grants().to_vec();
        proto
    }

    /// The entry's governance states now: [`standing`] by the broker's
    /// clock, `[governance]` settings, usage and revocation set (a
    /// revocation of the entry, its SPIFFE ID or its parent agent).
    fn standing(&self, entry: &Entry) -> Vec<EntryState> {
        let state = &self.inner;
        let (last_minted, _) = state.usage.usage(&entry.id);
        let set = state.revoker.set();
        let revoked = set.minting_blocked(&entry.spiffe_id).is_some()
            || entry
                .parent_id
                .as_ref()
                .is_some_and(|parent| set.minting_blocked(parent).is_some());
        standing(
            entry,
            state.clock.unix_now(),
            &state.config.governance,
            last_minted,
            revoked,
        )
    }

    /// Whether `entry` is in any of `states` (all pass when none is given).
    fn in_states(&self, entry: &Entry, states: &[EntryState]) -> bool {
        states.is_empty()
            || self
                .standing(entry)
                .iter()
                .any(|state| states.contains(state))
    }

    fn find(&self, id_or_spiffe_id: &str) -> Result<Arc<Entry>, Status> {
        let found = if id_or_spiffe_id.starts_with("spiffe://") {
            let id = SpiffeId::parse(id_or_spiffe_id)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            self.inner.entries.by_spiffe_id(&id)
        } else {
            let id = EntryId::parse(id_or_spiffe_id)?;
            self.inner.entries.by_id(&id)
        };
        found.ok_or_else(|| Status::not_found(format!("no entry {id_or_spiffe_id}")))
    }

    /// Stores `next` in place of `current` (refused if another change came
    /// first: the store compares revisions), publishes it to the mint path
    /// and audits `action` with the given detail.
    async fn change_entry(
        &self,
        current: &Entry,
        next: Entry,
        action: &str,
        actor: String,
        detail: serde_json::Value,
    ) -> Result<Response<pb::Entry>, Status> {
        let state = &self.inner;
        state.store.update_entry(&next, current.revision).await?;
        state.entries.upsert(next.clone());
        self.audit(AuditEvent {
            action: action.into(),
            outcome: Outcome::Ok,
            actor,
            entry_id: Some(next.id.to_string()),
            spiffe_id: Some(next.spiffe_id.to_string()),
            reason: detail
                .get("reason")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            detail: Some(detail),
            ..AuditEvent::default()
        })
        .await?;
        Ok(Response::new(self.to_proto(&next)))
    }

    async fn audit(&self, event: AuditEvent) -> Result<(), Status> {
        self.inner.audit.append(event).await.map(|_| ()).map_err(|e| {
            tracing::error!(error = %e, "audit append failed");
            Status::unavailable("audit log unavailable; the change was made but its audit record could not be written")
        })
    }
}

impl AdminService {
    /// Refuses, and audits the refusal of, an entry that would put a
    /// workload in another environment than its agent
    /// ([`crate::policy::separation`]); `current` is `None` on create.
    async fn check_separation(
        &self,
        current: Option<&Entry>,
        next: &Entry,
        action: &str,
        actor: &str,
    ) -> Result<(), Status> {
        use crate::policy::separation::{check_registration, separation_relevant};
        if !separation_relevant(current, next) {
            return Ok(());
        }
        let Err(error) = check_registration(next, &self.inner.entries) else {
            return Ok(());
        };
        let audited = self
            .inner
            .audit
            .append(AuditEvent {
                action: action.into(),
                outcome: Outcome::Refused,
                actor: actor.to_owned(),
                entry_id: Some(next.id.to_string()),
                spiffe_id: Some(next.spiffe_id.to_string()),
                reason: Some(error.to_string()),
                detail: Some(serde_json::json!({
                    "rule": "environment_separation",
                    "environment": &next.environment,
                    "parent_id": &next.parent_id,
                })),
                ..AuditEvent::default()
            })
            .await;
        if let Err(e) = audited {
            tracing::error!(error = %e, "audit append failed");
            return Err(Status::unavailable(
                "audit log unavailable; the entry was not changed",
            ));
        }
        Err((*error).into())
    }
}

/// `PurgeEntries` only takes entries expired for at least a day.
const PURGE_MIN_EXPIRED_FOR: u64 = 24 * 60 * 60;

/// An entry on the wire, with its usage.
pub fn entry_to_proto(entry: &Entry, last_minted_at: i64, mint_count: u64) -> pb::Entry {
    pb::Entry {
        id: entry.id.to_string(),
        spiffe_id: entry.spiffe_id.to_string(),
        selectors: entry.selectors.iter().map(ToString::to_string).collect(),
        audiences: entry
            .audiences
            .iter()
            .map(|a| a.as_str().to_owned())
            .collect(),
        kinds: entry.kinds.iter().map(|k| k.as_str().to_owned()).collect(),
        jwt_ttl_seconds: entry.jwt_ttl_seconds,
        x509_ttl_seconds: entry.x509_ttl_seconds,
        dns_names: entry.dns_names.clone(),
        owner: entry.owner.clone(),
        purpose: entry.purpose.clone(),
        environment: entry.environment.clone(),
        data_class: entry.data_class.clone(),
        expires_at: entry.expires_at,
        created_at: entry.created_at,
        updated_at: entry.updated_at,
        revision: entry.revision,
        last_minted_at,
        mint_count,
        parent_id: entry
            .parent_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        unique_jti: entry.unique_jti,
        disabled: entry.disabled.as_ref().map(|d| pb::EntryDisabled {
            at: d.at,
            by: d.by.clone(),
            reason: d.reason.clone(),
        }),
        last_review: entry.last_review.as_ref().map(|r| pb::EntryReview {
            at: r.at,
            by: r.by.clone(),
            note: r.note.clone(),
        }),
        review_every_seconds: entry.review_every_seconds.unwrap_or(0),
        review_due_at: 0,
        states: Vec::new(),
        audience_usage: Vec::new(),
        x509_mint_count: 0,
        x509_last_minted_at: 0,
        unregistered_audiences: Vec::new(),
        active_grant: String::new(),
        active_grant_expires_at: 0,
        unreviewed_grants: Vec::new(),
    }
}

fn spec_from_proto(spec: Option<pb::EntrySpec>) -> EntrySpec {
    let spec = spec.unwrap_or_default();
    EntrySpec {
        spiffe_id: spec.spiffe_id,
        selectors: spec.selectors.map(|l| l.values),
        audiences: spec.audiences.map(|l| l.values),
        kinds: spec.kinds.map(|l| l.values),
        jwt_ttl_seconds: spec.jwt_ttl_seconds,
        x509_ttl_seconds: spec.x509_ttl_seconds,
        dns_names: spec.dns_names.map(|l| l.values),
        owner: spec.owner,
        purpose: spec.purpose,
        environment: spec.environment,
        data_class: spec.data_class,
        expires_at: spec.expires_at,
        parent_id: spec.parent_id,
        unique_jti: spec.unique_jti,
        review_every_seconds: spec.review_every_seconds,
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_entry(
        &self,
        request: Request<pb::CreateEntryRequest>,
    ) -> Result<Response<pb::Entry>, Status> {
        let actor = Self::actor(&request);
        let state = &self.inner;
        let entry = spec_from_proto(request.into_inner().spec).create(
            &state.config.trust_domain,
            &state.config.ttl,
            state.clock.unix_now(),
        )?;
        state
            .attestors
            .check_entry_selectors(&entry.selectors)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.check_entry_audiences(&entry)?;
        self.check_separation(None, &entry, "entry.create", &actor)
            .await?;
        state.store.create_entry(&entry).await?;
        state.entries.upsert(entry.clone());
        self.audit(AuditEvent {
            action: "entry.create".into(),
            actor,
            entry_id: Some(entry.id.to_string()),
            spiffe_id: Some(entry.spiffe_id.to_string()),
            detail: serde_json::to_value(&entry).ok(),
            ..AuditEvent::default()
        })
        .await?;
        Ok(Response::new(self.to_proto(&entry)))
    }

    async fn list_entries(
        &self,
        request: Request<pb::ListEntriesRequest>,
    ) -> Result<Response<pb::ListEntriesResponse>, Status> {
        let request = request.into_inner();
        self.entries_listed(&request)
            .map(Response::new)
            .map_err(list_status)
    }

    async fn get_entry(
        &self,
        request: Request<pb::GetEntryRequest>,
    ) -> Result<Response<pb::Entry>, Status> {
        let entry = self.find(&request.into_inner().id)?;
        Ok(Response::new(self.to_proto(&entry)))
    }

    async fn update_entry(
        &self,
        request: Request<pb::UpdateEntryRequest>,
    ) -> Result<Response<pb::Entry>, Status> {
        let actor = Self::actor(&request);
        let request = request.into_inner();
        let state = &self.inner;
        let current = self.find(&request.id)?;
        let updated = spec_from_proto(request.spec).update(
            &current,
            &state.config.trust_domain,
            &state.config.ttl,
            state.clock.unix_now(),
        )?;
        state
            .attestors
            .check_entry_selectors(&updated.selectors)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.check_entry_audiences(&updated)?;
        self.check_separation(Some(&current), &updated, "entry.update", &actor)
            .await?;
        state.store.update_entry(&updated, current.revision).await?;
        state.entries.upsert(updated.clone());
        self.audit(AuditEvent {
            action: "entry.update".into(),
            actor,
            entry_id: Some(updated.id.to_string()),
            spiffe_id: Some(updated.spiffe_id.to_string()),
            detail: Some(serde_json::json!({ "before": &*current, "after": &updated })),
            ..AuditEvent::default()
        })
        .await?;
        Ok(Response::new(self.to_proto(&updated)))
    }

    async fn delete_entry(
        &self,
        request: Request<pb::DeleteEntryRequest>,
    ) -> Result<Response<pb::DeleteEntryResponse>, Status> {
        let actor = Self::actor(&request);
        let state = &self.inner;
        let id = self.find(&request.into_inner().id)?.id.clone();
        let removed = state.store.delete_entry(&id).await?;
        state.entries.remove(&id);
        let proto = self.to_proto(&removed);
        state.usage.forget(&id);
        self.audit(AuditEvent {
            action: "entry.delete".into(),
            actor,
            entry_id: Some(removed.id.to_string()),
            spiffe_id: Some(removed.spiffe_id.to_string()),
            ..AuditEvent::default()
        })
        .await?;
        Ok(Response::new(pb::DeleteEntryResponse {
            entry: Some(proto),
        }))
    }

    async fn create_join_token(
        &self,
        request: Request<pb::CreateJoinTokenRequest>,
    ) -> Result<Response<pb::CreateJoinTokenResponse>, Status> {
        let actor = Self::actor(&request);
        let request = request.into_inner();
        let state = &self.inner;
        let entry = self.find(&request.entry_id)?;
        let ttl = match request.ttl_seconds {
            0 => state.config.join_token_default_ttl,
            seconds if u64::from(seconds) > 24 * 60 * 60 => {
                return Err(Status::invalid_argument(
                    "join token ttl must be at most 24h",
                ));
            }
            seconds => Duration::from_secs(seconds.into()),
        };
        let now = state.clock.unix_now();
        if let Some(disabled) = &entry.disabled {
            return Err(Status::failed_precondition(format!(
                "entry {} is disabled since {} by {}: {}; `mayfly entry enable {} --reason ...` first",
                entry.id,
                crate::clock::rfc3339(disabled.at),
                disabled.by,
                disabled.reason,
                entry.id
            )));
        }
        if entry.is_expired(now) {
            return Err(Status::failed_precondition(format!(
                "entry {} expired at {}; extend it with `mayfly entry update {} --expires ...` first",
                entry.id,
                crate::clock::rfc3339(entry.expires_at),
                entry.id
            )));
        }
        let secret = JoinTokenSecret::generate();
        let hash = secret.hash();
        let expires_at = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        let record = JoinTokenRecord {
            hash: hash.clone(),
            entry_id: entry.id.clone(),
            created_at: now,
            expires_at,
            created_by: actor.clone(),
            used_at: None,
        };
        state.store.insert_join_token(&record).await?;
        self.audit(AuditEvent {
            action: "token.create".into(),
            outcome: Outcome::Ok,
            actor,
            entry_id: Some(entry.id.to_string()),
            spiffe_id: Some(entry.spiffe_id.to_string()),
            evidence_sha256: Some(hash.as_str().to_owned()),
            detail: Some(
                serde_json::json!({ "token_id": hash.token_id(), "expires_at": expires_at }),
            ),
            ..AuditEvent::default()
        })
        .await?;
        Ok(Response::new(pb::CreateJoinTokenResponse {
            token: secret.expose().to_owned(),
            token_id: hash.token_id(),
            expires_at,
            entry_id: entry.id.to_string(),
            spiffe_id: entry.spiffe_id.to_string(),
        }))
    }

    async fn server_status(
        &self,
        _request: Request<pb::ServerStatusRequest>,
    ) -> Result<Response<pb::ServerStatusResponse>, Status> {
        let state = &self.inner;
        // Reads keys.jsonl (a few lines a day): off the async workers.
        let log = state.audit.clone();
        let audit = tokio::task::spawn_blocking(move || log.status())
            .await
            .map_err(|_| Status::internal("internal error; see the server log"))?;
        Ok(Response::new(pb::ServerStatusResponse {
            trust_domain: state.config.trust_domain.to_string(),
            grpc_address: state.grpc_addr.clone(),
            http_address: state.http_addr.clone(),
            data_dir: state.config.data_dir.display().to_string(),
            root_fingerprint_sha256: state.rotation.ca().root_fingerprint_sha256(),
            entries: u64::try_from(state.entries.len()).unwrap_or(u64::MAX),
            bundle_sequence: state.bundle.current().proto.sequence,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            store: state.store.describe(),
            revocations: u64::try_from(state.revoker.set().len()).unwrap_or(u64::MAX),
            revocations_fresh_as_of: state
                .revoker
                .set()
                .last_heard_ms()
                .map_or(0, |ms| ms.div_euclid(1000)),
            replica_id: state.replicas.id().to_owned(),
            live_replicas: state.replicas.live(),
            broker_url: state
                .grpc_addr
                .parse()
                .map(|addr| state.config.broker_url(addr))
                .unwrap_or_default(),
            audit_signed_seq: audit.signed_seq,
            audit_key_epoch: audit.key_epoch,
            audit_root_key: audit.root_key,
            audit_anchor: if audit.anchors.is_empty() {
                "none".to_owned()
            } else {
                audit
                    .anchors
                    .iter()
                    .map(|anchor| format!("{} {anchor}", anchor.sink))
                    .collect::<Vec<_>>()
                    .join("; ")
            },
            audit_anchors: audit
                .anchors
                .into_iter()
                .map(|anchor| pb::AuditAnchor {
                    sink: anchor.sink,
                    target: anchor.target,
                    failures: anchor.failures,
                    first_error: anchor.first_error,
                })
                .collect(),
        }))
    }

    async fn revoke(
        &self,
        request: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::Revocation>, Status> {
        let actor = Self::actor(&request);
        let request = request.into_inner();
        let revocation = self
            .inner
            .revoker
            .revoke(&request.kind, &request.value, &request.reason, &actor)
            .await
            .map_err(revoke_status)?;
        Ok(Response::new(revocation.to_proto()))
    }

    async fn revoke_many(
        &self,
        request: Request<pb::RevokeManyRequest>,
    ) -> Result<Response<pb::RevokeManyResponse>, Status> {
        let actor = Self::actor(&request);
        let request = request.into_inner();
        if request.items.len() > crate::revoke::MAX_BULK {
            return Err(revoke_status(RevokeError::TooMany {
                max: crate::revoke::MAX_BULK,
            }));
        }
        let items: Vec<_> = request
            .items
            .iter()
            .map(|item| crate::revoke::RevokeItem {
                kind: &item.kind,
                value: &item.value,
                reason: &item.reason,
            })
            .collect();
        let answers = self
            .inner
            .revoker
            .revoke_many(&items, &actor)
            .await
            .map_err(revoke_status)?;
        let mut response = pb::RevokeManyResponse::default();
        for answer in answers {
            let result = match answer {
                crate::revoke::Bulk::Revoked(revocation) => {
                    response.revoked += 1;
                    pb::RevokeManyResult {
                        revocation: Some(revocation.to_proto()),
                        error: String::new(),
                    }
                }
                crate::revoke::Bulk::InForce(revocation) => {
                    response.in_force += 1;
                    pb::RevokeManyResult {
                        revocation: Some(revocation.to_proto()),
                        error: String::new(),
                    }
                }
                crate::revoke::Bulk::Refused(error) => {
                    response.refused += 1;
                    pb::RevokeManyResult {
                        revocation: None,
                        error: error.to_string(),
                    }
                }
            };
            response.results.push(result);
        }
        Ok(Response::new(response))
    }

    async fn unrevoke(
        &self,
        request: Request<pb::UnrevokeRequest>,
    ) -> Result<Response<pb::Revocation>, Status> {
        let actor = Self::actor(&request);
        let request = request.into_inner();
        let revocation = self
            .inner
            .revoker
            .unrevoke(&request.kind, &request.value, &request.reason, &actor)
            .await
            .map_err(revoke_status)?;
        Ok(Response::new(revocation.to_proto()))
    }

    async fn ca_status(
        &self,
        _request: Request<pb::CaStatusRequest>,
    ) -> Result<Response<pb::CaStatusResponse>, Status> {
        let rotation = &self.inner.rotation;
        let status = rotation.ca().status(self.inner.clock.now());
        Ok(Response::new(pb::CaStatusResponse {
            authorities: status
                .authorities
                .iter()
                .map(|a| pb::CaAuthority {
                    kind: a.kind.as_str().to_owned(),
                    id: a.id.clone(),
                    state: a.state.as_str().to_owned(),
                    not_before: a.not_before.unwrap_or(0),
                    not_after: a.not_after.unwrap_or(0),
                    issuer: a.issuer.clone().unwrap_or_default(),
                    key_on_server: a.key_on_server,
                    live_until: a.live_until.unwrap_or(0),
                    since: a.since.unwrap_or(0),
                })
                .collect(),
            warnings: status.warnings,
            bundle_sequence: rotation.bundle().current().proto.sequence,
        }))
    }

    async fn ca_prepare(
        &self,
        request: Request<pb::CaPrepareRequest>,
    ) -> Result<Response<pb::CaRotationResponse>, Status> {
        let actor = Self::actor(&request);
        let pem = request.into_inner().root_certificate_pem;
        self.rotation_step("ca.prepare", &actor, |ca, now| {
            if pem.is_empty() {
                ca.prepare_root(now)
            } else {
                ca.prepare_root_from_certificate(&pem, now)
            }
        })
        .await
    }

    async fn ca_activate(
        &self,
        request: Request<pb::CaActivateRequest>,
    ) -> Result<Response<pb::CaRotationResponse>, Status> {
        let actor = Self::actor(&request);
        let force = request.into_inner().force;
        self.rotation_step("ca.activate", &actor, |ca, now| {
            ca.activate_root(now, force)
        })
        .await
    }

    async fn ca_retire(
        &self,
        request: Request<pb::CaRetireRequest>,
    ) -> Result<Response<pb::CaRotationResponse>, Status> {
        let actor = Self::actor(&request);
        let force = request.into_inner().force;
        self.rotation_step("ca.retire", &actor, |ca, now| ca.retire_root(now, force))
            .await
    }

    async fn ca_intermediate_csr(
        &self,
        request: Request<pb::CaIntermediateCsrRequest>,
    ) -> Result<Response<pb::CaIntermediateCsrResponse>, Status> {
        let actor = Self::actor(&request);
        let csr_pem = self
            .inner
            .rotation
            .ca()
            .intermediate_csr(self.inner.clock.now())
            .map_err(ca_status)?;
        self.audit(AuditEvent {
            action: "ca.intermediate-csr".into(),
            actor,
            ..AuditEvent::default()
        })
        .await?;
        Ok(Response::new(pb::CaIntermediateCsrResponse { csr_pem }))
    }

    async fn ca_import_intermediate(
        &self,
        request: Request<pb::CaImportIntermediateRequest>,
    ) -> Result<Response<pb::CaRotationResponse>, Status> {
        let actor = Self::actor(&request);
        let pem = request.into_inner().certificate_pem;
        self.rotation_step("ca.import-intermediate", &actor, |ca, now| {
            ca.import_intermediate(&pem, now)
        })
        .await
    }

    async fn disable_entry(
        &self,
        request: Request<pb::DisableEntryRequest>,
    ) -> Result<Response<pb::Entry>, Status> {
        let actor = Self::actor(&request);
        let request = request.into_inner();
        let current = self.find(&request.id)?;
        let now = self.inner.clock.unix_now();
        let next = current.disabled(&actor, &request.reason, now)?;
        let detail =
            serde_json::json!({ "reason": request.reason.trim(), "revision": next.revision });
        self.change_entry(&current, next, "entry.disable", actor, detail)
            .await
    }

    async fn enable_entry(
        &self,
        request: Request<pb::EnableEntryRequest>,
    ) -> Result<Response<pb::Entry>, Status> {
        let actor = Self::actor(&request);
        let request = request.into_inner();
        let current = self.find(&request.id)?;
        let now = self.inner.clock.unix_now();
        let next = current.enabled(&request.reason, now)?;
        let detail = serde_json::json!({
            "reason": request.reason.trim(),
            "revision": next.revision,
            "was_disabled": &current.disabled,
        });
        self.change_entry(&current, next, "entry.enable", actor, detail)
            .await
    }

    async fn review_entry(
        &self,
        request: Request<pb::ReviewEntryRequest>,
    ) -> Result<Response<pb::Entry>, Status> {
        let actor = Self::actor(&request);
        let request = request.into_inner();
        let current = self.find(&request.id)?;
        let now = self.inner.clock.unix_now();
        let next = current.reviewed(&actor, &request.note, now)?;
        let default = self.inner.config.governance.review_every;
        let detail = serde_json::json!({
            "note": request.note.trim(),
            "revision": next.revision,
            "was_due_at": current.review_due_at(default),
            "next_due_at": next.review_due_at(default),
        });
        self.change_entry(&current, next, "entry.review", actor, detail)
            .await
    }

    async fn purge_entries(
        &self,
        request: Request<pb::PurgeEntriesRequest>,
    ) -> Result<Response<pb::PurgeEntriesResponse>, Status> {
        let actor = Self::actor(&request);
        let request = request.into_inner();
        if request.expired_for_seconds < PURGE_MIN_EXPIRED_FOR {
            return Err(Status::invalid_argument(format!(
                "expired_for must be at least {PURGE_MIN_EXPIRED_FOR}s (1d)"
            )));
        }
        let state = &self.inner;
        let now = state.clock.unix_now();
        let expired_for = i64::try_from(request.expired_for_seconds).unwrap_or(i64::MAX);
        let due: Vec<Arc<Entry>> = state
            .entries
            .all()
            .into_iter()
            .filter(|e| now.saturating_sub(e.expires_at) >= expired_for)
            .collect();
        let mut entries = Vec::with_capacity(due.len());
        for entry in due {
            if !request.confirm {
                entries.push(self.to_proto(&entry));
                continue;
            }
            let removed = match state.store.delete_entry(&entry.id).await {
                Ok(removed) => removed,
                // Deleted meanwhile: nothing to purge.
                Err(crate::store::StoreError::NotFound { .. }) => continue,
                Err(error) => return Err(error.into()),
            };
            state.entries.remove(&removed.id);
            entries.push(self.to_proto(&removed));
            state.usage.forget(&removed.id);
            self.audit(AuditEvent {
                action: "entry.purge".into(),
                actor: actor.clone(),
                entry_id: Some(removed.id.to_string()),
                spiffe_id: Some(removed.spiffe_id.to_string()),
                reason: Some(format!(
                    "expired at {}, more than {} ago",
                    crate::clock::rfc3339(removed.expires_at),
                    crate::governance::describe_duration(Duration::from_secs(
                        request.expired_for_seconds
                    ))
                )),
                detail: serde_json::to_value(&removed).ok(),
                ..AuditEvent::default()
            })
            .await?;
        }
        Ok(Response::new(pb::PurgeEntriesResponse {
            entries,
            deleted: request.confirm,
        }))
    }

    async fn create_audience(
        &self,
        request: Request<pb::CreateAudienceRequest>,
    ) -> Result<Response<pb::Audience>, Status> {
        self.audience_create(request).await
    }

    async fn list_audiences(
        &self,
        _request: Request<pb::ListAudiencesRequest>,
    ) -> Result<Response<pb::ListAudiencesResponse>, Status> {
        Ok(Response::new(self.audience_list()))
    }

    async fn get_audience(
        &self,
        request: Request<pb::GetAudienceRequest>,
    ) -> Result<Response<pb::Audience>, Status> {
        self.audience_get(&request.into_inner().name)
            .map(Response::new)
    }

    async fn update_audience(
        &self,
        request: Request<pb::UpdateAudienceRequest>,
    ) -> Result<Response<pb::Audience>, Status> {
        self.audience_update(request).await
    }

    async fn delete_audience(
        &self,
        request: Request<pb::DeleteAudienceRequest>,
    ) -> Result<Response<pb::DeleteAudienceResponse>, Status> {
        self.audience_delete(request).await
    }

    async fn request_grant(
        &self,
        request: Request<pb::RequestGrantRequest>,
    ) -> Result<Response<pb::Grant>, Status> {
        self.grant_request(request).await
    }

    async fn approve_grant(
        &self,
        request: Request<pb::ApproveGrantRequest>,
    ) -> Result<Response<pb::Grant>, Status> {
        self.grant_approve(request).await
    }

    async fn revoke_grant(
        &self,
        request: Request<pb::RevokeGrantRequest>,
    ) -> Result<Response<pb::RevokeGrantResponse>, Status> {
        self.grant_revoke(request).await
    }

    async fn list_grants(
        &self,
        request: Request<pb::ListGrantsRequest>,
    ) -> Result<Response<pb::ListGrantsResponse>, Status> {
        self.grant_list(request).await
    }

    async fn review_grant(
        &self,
        request: Request<pb::ReviewGrantRequest>,
    ) -> Result<Response<pb::Grant>, Status> {
        self.grant_review(request).await
    }

    async fn list_revocations(
        &self,
        request: Request<pb::ListRevocationsRequest>,
    ) -> Result<Response<pb::ListRevocationsResponse>, Status> {
        let request = request.into_inner();
        self.revocations_listed(&request)
            .await
            .map(Response::new)
            .map_err(list_status)
    }

    async fn owner_digests(
        &self,
        request: Request<pb::OwnerDigestsRequest>,
    ) -> Result<Response<pb::OwnerDigestsResponse>, Status> {
        let request = request.into_inner();
        let state = &self.inner;
        let now = state.clock.unix_now();
        let owner = (!request.owner.is_empty()).then_some(request.owner.as_str());
        let digests = crate::governance::digest::current(
            &state.entries,
            &state.usage,
            now,
            &state.config.governance,
            owner,
        );
        super::digests::page(digests, &request.page_token, now).map(Response::new)
    }

    async fn test_alert(
        &self,
        request: Request<pb::TestAlertRequest>,
    ) -> Result<Response<pb::TestAlertResponse>, Status> {
        let actor = Self::actor(&request);
        let note = request.into_inner().note;
        if note.chars().count() > 256 || note.chars().any(char::is_control) {
            return Err(Status::invalid_argument(
                "note: at most 256 characters, without control characters",
            ));
        }
        let state = &self.inner;
        let Some(sink) = &state.alerts else {
            return Err(Status::failed_precondition(
                "no alert output: set [alerts] webhook_url and webhook_secret_file, \
                 or [alerts] otel_logs = true with [telemetry] otlp_endpoint",
            ));
        };
        let alert = crate::alert::Alert::new(
            "test",
            state.config.trust_domain.as_str(),
            state.clock.unix_now(),
            &actor,
            serde_json::json!({
                "note": note,
                "message": "a test alert, sent by `mayfly alerts test`",
            }),
        );
        let delivery_id = alert.delivery.clone();
        let fates = sink.deliver_each(alert).await?;
        let outputs: Vec<pb::AlertOutputFate> = fates
            .into_iter()
            .map(|fate| pb::AlertOutputFate {
                output: fate.output.to_owned(),
                url: fate.delivery.url,
                tries: fate.delivery.tries,
                delivered: fate.delivery.error.is_none(),
                error: fate.delivery.error.unwrap_or_default(),
            })
            .collect();
        let summary = outputs
            .iter()
            .find(|fate| !fate.delivered)
            .or(outputs.first())
            .cloned()
            .unwrap_or_default();
        Ok(Response::new(pb::TestAlertResponse {
            delivery: delivery_id,
            url: summary.url,
            tries: summary.tries,
            delivered: outputs.iter().all(|fate| fate.delivered),
            error: summary.error,
            outputs,
        }))
    }
}

impl AdminService {
    /// One page of entries (filtered by `filter` and by state), or all of
    /// them for a client that does not page.
    fn entries_listed(
        &self,
        request: &pb::ListEntriesRequest,
    ) -> Result<pb::ListEntriesResponse, ListError> {
        let filter = paging::entry_filter(request)?;
        let states = paging::entry_states(request)?;
        let page = PageRequest::parse(Listing::Entries, request.page_size, &request.page_token)?;
        let PageRequest::Paged { size, after } = page else {
            return Ok(pb::ListEntriesResponse {
                entries: self.entries_unpaged(&filter, &states)?,
                next_page_token: String::new(),
            });
        };
        let after = after
            .map(|key| {
                EntryId::parse(&key).map_err(|error| PageTokenError::BadKey {
                    listing: Listing::Entries,
                    reason: error.to_string(),
                    key,
                })
            })
            .transpose()?;
        let mut fill = PageFill::new(size, paging::SCAN_BUDGET);
        self.inner.entries.scan_after(after.as_ref(), |entry| {
            fill.offer(
                entry.id.as_str(),
                (filter.matches(entry) && self.in_states(entry, &states)).then(|| entry.clone()),
            )
        });
        let page = fill.finish();
        Ok(pb::ListEntriesResponse {
            entries: page.items.iter().map(|e| self.to_proto(e)).collect(),
            next_page_token: page
                .resume_after
                .map(|key| paging::encode_token(Listing::Entries, &key))
                .unwrap_or_default(),
        })
    }

    /// Every entry `filter` passes, if they fit in one unpaged response.
    fn entries_unpaged(
        &self,
        filter: &EntryFilter,
        states: &[EntryState],
    ) -> Result<Vec<pb::Entry>, ListError> {
        let mut unpaged = Unpaged::new(Listing::Entries);
        let mut result = Ok(());
        self.inner.entries.scan_after(None, |entry| {
            if filter.matches(entry) && self.in_states(entry, states) {
                result = unpaged.push(self.to_proto(entry));
            }
            if result.is_ok() {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        });
        result.map(|()| unpaged.into_items())
    }

    /// One page of revocations, or all of them for a client that does not
    /// page.
    async fn revocations_listed(
        &self,
        request: &pb::ListRevocationsRequest,
    ) -> Result<pb::ListRevocationsResponse, ListError> {
        let filter = paging::revocation_filter(request)?;
        let page =
            PageRequest::parse(Listing::Revocations, request.page_size, &request.page_token)?;
        let PageRequest::Paged { size, after } = page else {
            return Ok(pb::ListRevocationsResponse {
                revocations: self.revocations_unpaged(&filter).await?,
                next_page_token: String::new(),
            });
        };
        let page = self
            .inner
            .revoker
            .page(after.as_deref(), &filter, size, paging::SCAN_BUDGET)
            .await?;
        Ok(pb::ListRevocationsResponse {
            revocations: page.items.iter().map(Revocation::to_proto).collect(),
            next_page_token: page
                .resume_after
                .map(|key| paging::encode_token(Listing::Revocations, &key))
                .unwrap_or_default(),
        })
    }

    /// Every revocation in force `filter` passes, if they fit in one
    /// unpaged response: read in the largest pages, stopping at the limit.
    async fn revocations_unpaged(
        &self,
        filter: &RevocationFilter,
    ) -> Result<Vec<pb::Revocation>, ListError> {
        let mut unpaged = Unpaged::new(Listing::Revocations);
        let mut after = None;
        loop {
            let page = self
                .inner
                .revoker
                .page(after.as_deref(), filter, paging::MAX_PAGE_SIZE, usize::MAX)
                .await?;
            for revocation in &page.items {
                unpaged.push(revocation.to_proto())?;
            }
            match page.resume_after {
                Some(key) => after = Some(key),
                None => return Ok(unpaged.into_items()),
            }
        }
    }
}

impl AdminService {
    /// Runs one operator rotation step, audits and publishes it.
    async fn rotation_step(
        &self,
        action: &str,
        actor: &str,
        step: impl FnOnce(&CertificateAuthority, SystemTime) -> Result<Vec<RotationEvent>, CaError>,
    ) -> Result<Response<pb::CaRotationResponse>, Status> {
        let rotation = &self.inner.rotation;
        let result = step(rotation.ca(), self.inner.clock.now());
        let events = rotation
            .record(action, actor, result)
            .await
            .map_err(ca_status)?;
        Ok(Response::new(pb::CaRotationResponse {
            events: events.iter().map(event_to_proto).collect(),
            bundle_sequence: rotation.bundle().current().proto.sequence,
        }))
    }
}

fn event_to_proto(event: &RotationEvent) -> pb::CaRotationEvent {
    pb::CaRotationEvent {
        kind: event.kind.as_str().to_owned(),
        id: event.id.clone(),
        from: event
            .from
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        to: event.to.as_str().to_owned(),
        detail: event.detail.clone(),
    }
}

/// A CA refusal or failure as a status, by who is at fault
/// (`status::ca_code`). The admin is a local operator, so even an internal
/// error keeps its details.
fn ca_status(error: CaError) -> Status {
    let code = super::status::ca_code(&error);
    match code {
        Code::Internal => tracing::error!(%error, "CA operation failed"),
        Code::Unavailable => tracing::warn!(%error, "CA operation failed"),
        _ => {}
    }
    Status::new(code, error.to_string())
}

fn list_status(error: ListError) -> Status {
    Status::new(list_code(&error), error.to_string())
}

/// The status code of every listing error: an exhaustive match, so a new
/// variant must be given its code here. A bad token or filter is the
/// caller's; an unpaged request too large to answer waits for the caller to
/// page.
fn list_code(error: &ListError) -> Code {
    match error {
        ListError::PageToken(_) | ListError::Filter { .. } => Code::InvalidArgument,
        ListError::TooLargeUnpaged { .. } => Code::FailedPrecondition,
        ListError::Revocations(error) => revoke_code(error),
    }
}

fn revoke_status(error: RevokeError) -> Status {
    Status::new(revoke_code(&error), error.to_string())
}

/// The status code of every revocation error: an exhaustive match, so a new
/// variant must be given its code here.
fn revoke_code(error: &RevokeError) -> Code {
    match error {
        RevokeError::Malformed(_)
        | RevokeError::SpiffeId(_)
        | RevokeError::EntryId(_)
        | RevokeError::ReasonMissing
        | RevokeError::ReasonTooLong { .. }
        | RevokeError::NotLiftable { .. }
        | RevokeError::TooMany { .. } => Code::InvalidArgument,
        RevokeError::NoSuchEntry { .. } | RevokeError::NotRevoked { .. } => Code::NotFound,
        RevokeError::Store(_) | RevokeError::Audit { .. } => Code::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use mayfly_sdk::revocation::RevocationKind;

    use super::*;
    use crate::api::paging::{decode_token, encode_token};
    use crate::policy::EntryError;

    /// One example of every revocation error with the code the operator
    /// gets; `number` fails to compile when a variant is added.
    #[test]
    fn every_revocation_error_has_its_code() {
        fn number(error: &RevokeError) -> usize {
            match error {
                RevokeError::Malformed(_) => 0,
                RevokeError::SpiffeId(_) => 1,
                RevokeError::EntryId(_) => 2,
                RevokeError::ReasonMissing => 3,
                RevokeError::ReasonTooLong { .. } => 4,
                RevokeError::NotLiftable { .. } => 5,
                RevokeError::NoSuchEntry { .. } => 6,
                RevokeError::NotRevoked { .. } => 7,
                RevokeError::Store(_) => 8,
                RevokeError::Audit { .. } => 9,
                RevokeError::TooMany { .. } => 10,
            }
        }
        let cases = [
            (
                RevokeError::Malformed("nonsense".parse::<RevocationKind>().unwrap_err()),
                Code::InvalidArgument,
            ),
            (
                RevokeError::SpiffeId(SpiffeId::parse("not an id").unwrap_err()),
                Code::InvalidArgument,
            ),
            (
                RevokeError::EntryId(EntryError::Missing { field: "entry" }),
                Code::InvalidArgument,
            ),
            (RevokeError::ReasonMissing, Code::InvalidArgument),
            (RevokeError::ReasonTooLong { max: 1 }, Code::InvalidArgument),
            (RevokeError::TooMany { max: 1 }, Code::InvalidArgument),
            (
                RevokeError::NotLiftable {
                    kind: RevocationKind::Jti,
                },
                Code::InvalidArgument,
            ),
            (
                RevokeError::NoSuchEntry {
                    entry_id: EntryId::parse("0123456789abcdef").unwrap(),
                },
                Code::NotFound,
            ),
            (
                RevokeError::NotRevoked {
                    kind: RevocationKind::SpiffeId,
                    value: "spiffe://example.org/a".into(),
                },
                Code::NotFound,
            ),
            (
                RevokeError::Store(crate::store::StoreError::Unavailable {
                    reason: "down".into(),
                }),
                Code::Unavailable,
            ),
            (
                RevokeError::Audit {
                    action: "revoke".into(),
                    key: "jti:x".into(),
                    source: crate::audit::AuditError::Closed,
                },
                Code::Unavailable,
            ),
        ];
        let mut seen = [false; 11];
        for (error, code) in cases {
            seen[number(&error)] = true;
            let message = error.to_string();
            let status = revoke_status(error);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
        }
        assert!(
            seen.iter().all(|s| *s),
            "a variant has no example: {seen:?}"
        );
    }

    /// One example of every listing error, each page token error among
    /// them, with the code the operator gets: a malformed token is the
    /// caller's mistake, never INTERNAL. `number` fails to compile when a
    /// variant is added to either enum.
    #[test]
    fn every_listing_error_has_its_code() {
        fn number(error: &ListError) -> usize {
            match error {
                ListError::PageToken(token) => match token {
                    PageTokenError::TooLong { .. } => 0,
                    PageTokenError::Malformed => 1,
                    PageTokenError::Version { .. } => 2,
                    PageTokenError::OtherListing { .. } => 3,
                    PageTokenError::BadKey { .. } => 4,
                },
                ListError::Filter { .. } => 5,
                ListError::TooLargeUnpaged { .. } => 6,
                ListError::Revocations(_) => 7,
            }
        }
        use base64::Engine as _;
        let token = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let refused =
            |listing, text: &str| ListError::from(decode_token(listing, text).unwrap_err());
        let cases = [
            (
                refused(Listing::Entries, &"A".repeat(5000)),
                Code::InvalidArgument,
            ),
            (refused(Listing::Entries, "%%%"), Code::InvalidArgument),
            (
                refused(
                    Listing::Entries,
                    &token(r#"{"v":9,"list":"entries","after":"0123456789abcdef"}"#),
                ),
                Code::InvalidArgument,
            ),
            (
                refused(
                    Listing::Revocations,
                    &encode_token(Listing::Entries, "0123456789abcdef"),
                ),
                Code::InvalidArgument,
            ),
            (
                refused(
                    Listing::Entries,
                    &token(r#"{"v":1,"list":"entries","after":"jti:x"}"#),
                ),
                Code::InvalidArgument,
            ),
            (
                ListError::Filter {
                    field: "kind",
                    reason: "unknown".into(),
                },
                Code::InvalidArgument,
            ),
            (
                ListError::TooLargeUnpaged {
                    listing: Listing::Revocations,
                    limit_bytes: paging::UNPAGED_LIMIT_BYTES,
                },
                Code::FailedPrecondition,
            ),
            (
                ListError::Revocations(RevokeError::Store(crate::store::StoreError::Unavailable {
                    reason: "down".into(),
                })),
                Code::Unavailable,
            ),
        ];
        let mut seen = [false; 8];
        for (error, code) in cases {
            seen[number(&error)] = true;
            let message = error.to_string();
            let status = list_status(error);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
        }
        assert!(
            seen.iter().all(|s| *s),
            "a variant has no example: {seen:?}"
        );
    }
}
