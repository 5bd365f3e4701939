//! The break-glass operations: what the admin API and the mint path call.

use std::sync::Arc;
use std::time::Duration;

use mayfly_sdk::SpiffeId;
use mayfly_sdk::jwt::Audience;
use tokio_util::sync::CancellationToken;

use super::{
    Approval, BREAKGLASS_ACTOR, BreakglassError, Ended, EndedHow, GrantRecord, GrantReview,
    GrantState, IssuedCredential, IssuedKind, MAX_ISSUED_PER_GRANT, MAX_OPEN_GRANTS,
    MAX_TICKET_LEN, MIN_TTL, Operator, SWEEP_EVERY, parse_grant_id,
};
use crate::alert::{Alert, AlertSink};
use crate::audit::{AuditEvent, AuditLog};
use crate::clock::{Clock, rfc3339};
use crate::config::BreakglassConfig;
use crate::policy::{ActiveGrant, Entry, EntryId, EntryIndex, governance_text};
use crate::revoke::Revoker;
use crate::store::{Store, StoreError};

/// How often a write that lost a race is tried again.
const TRIES: usize = 8;

/// What [`Breakglass`] works on.
#[derive(Debug)]
pub struct BreakglassParts {
    /// Where grants and entries are stored.
    pub store: Arc<dyn Store>,
    /// The in-process entry index (updated with each entry change made here).
    pub entries: Arc<EntryIndex>,
    /// Revokes what a revoked grant issued.
    pub revoker: Arc<Revoker>,
    /// The audit log.
    pub audit: AuditLog,
    /// Where alerts go; `None`: no grant may be asked for.
    pub alerts: Option<AlertSink>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// `[breakglass]`.
    pub config: BreakglassConfig,
    /// The trust domain, for the alerts.
    pub trust_domain: String,
}

/// Break-glass grants: asked for, approved, used, ended, reviewed.
#[derive(Debug)]
pub struct Breakglass {
    parts: BreakglassParts,
}

/// An operator's request for a grant, as decoded from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRequest {
    /// The entry to widen.
    pub entry_id: String,
    /// The audience to add; `None`: re-enable the disabled entry.
    pub audience: Option<String>,
    /// How long it lasts once approved.
    pub ttl: Duration,
    /// Why.
    pub reason: String,
    /// The incident or change ticket.
    pub ticket: String,
}

/// One credential the mint path issued under a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantUse {
    /// The grant.
    pub grant_id: String,
    /// The entry.
    pub entry_id: EntryId,
    /// Its SPIFFE ID.
    pub spiffe_id: SpiffeId,
    /// Its owner (whom the alert names).
    pub owner: String,
    /// The audience of a JWT-SVID.
    pub audience: Option<Audience>,
    /// The credential.
    pub credential: IssuedCredential,
}

/// Why the mint path may not hand out a credential under a grant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UseRefused {
    /// The grant is not in force any more (or not found).
    #[error("break-glass grant {grant} is {state}; no credential is issued under it")]
    Ended {
        /// The grant.
        grant: String,
        /// Where it stands (`missing` when it is gone).
        state: &'static str,
    },
    /// The grant issued its most credentials.
    #[error(
        "break-glass grant {grant} has issued {MAX_ISSUED_PER_GRANT} credentials, its most; \
         ask for a new grant"
    )]
    Exhausted {
        /// The grant.
        grant: String,
    },
    /// The store could not record the use, so nothing is issued.
    #[error("cannot record the use of break-glass grant {grant}: {source}")]
    Store {
        /// The grant.
        grant: String,
        /// Why.
        #[source]
        source: StoreError,
    },
}

impl Breakglass {
    /// Break-glass on `parts`.
    pub fn new(parts: BreakglassParts) -> Self {
        Breakglass { parts }
    }

    /// `[breakglass]`.
    pub fn config(&self) -> &BreakglassConfig {
        &self.parts.config
    }

    /// Records a new pending grant asked for by `by`.
    ///
    /// # Errors
    ///
    /// [`BreakglassError::NoAlerts`] without an alert output; `Invalid` or `Text` for a bad
    /// field; `NoSuchEntry`; `Pointless` when the entry already allows it; `TooManyOpen`;
    /// `Store` or `Audit`.
    pub async fn request(
        &self,
        by: &Operator,
        request: GrantRequest,
    ) -> Result<GrantRecord, BreakglassError> {
        if self.parts.alerts.is_none() {
            return Err(BreakglassError::NoAlerts);
        }
        let entry_id = EntryId::parse(request.entry_id.trim())?;
        let max = self.parts.config.max_ttl;
        if request.ttl < MIN_TTL || request.ttl > max {
            return Err(BreakglassError::Invalid(format!(
                "--ttl must be between {} and {} ([breakglass] max_ttl)",
                crate::governance::describe_duration(MIN_TTL),
                humantime::format_duration(max)
            )));
        }
        let reason = governance_text("reason", &request.reason)?;
        let ticket = ticket(&request.ticket)?;
        let audience = request
            .audience
            .as_deref()
            .map(|a| {
                Audience::new(a.trim())
                    .map_err(|e| BreakglassError::Invalid(format!("audience: {e}")))
            })
            .transpose()?;
        let entry = self
            .parts
            .store
            .entry(&entry_id)
            .await?
            .ok_or_else(|| BreakglassError::NoSuchEntry(entry_id.to_string()))?;
        check_useful(&entry, audience.as_ref())?;
        let now = self.parts.clock.unix_now();
        let open = self
            .parts
            .store
            .list_grants()
            .await?
            .iter()
            .filter(|g| !g.state(now).is_ended())
            .count();
        if open >= MAX_OPEN_GRANTS {
            return Err(BreakglassError::TooManyOpen);
        }
        let grant = GrantRecord {
            id: new_grant_id(),
            entry_id: entry.id.clone(),
            spiffe_id: entry.spiffe_id.clone(),
            owner: entry.owner.clone(),
            audience,
            ttl_seconds: request.ttl.as_secs(),
            reason,
            ticket,
            requested_by: by.clone(),
            requested_at: now,
            approve_by: now.saturating_add(secs(self.parts.config.approve_within)),
            approval: None,
            ended: None,
            review: None,
            issued: Vec::new(),
            revision: 1,
        };
        self.parts.store.create_grant(&grant).await?;
        self.record("breakglass.request", &by.actor(), &grant, "the request")
            .await?;
        self.alert("breakglass.requested", &grant);
        Ok(grant)
    }

    /// Approves pending grant `id` as `by`, who must not be its requester; the grant is
    /// in force on its entry at once, for its TTL.
    ///
    /// # Errors
    ///
    /// `NoSuchGrant`; `SelfApproval`; `State` unless pending; `EntryHasGrant`; `Conflict`,
    /// `Store` or `Audit`.
    pub async fn approve(&self, by: &Operator, id: &str) -> Result<GrantRecord, BreakglassError> {
        let grant = self.get(id).await?;
        let now = self.parts.clock.unix_now();
        let state = grant.state(now);
        if state != GrantState::Pending {
            return Err(BreakglassError::State {
                grant: grant.id,
                state,
                hint: "only a pending grant can be approved; ask for a new one",
            });
        }
        if by.uid == grant.requested_by.uid {
            return Err(BreakglassError::SelfApproval {
                grant: grant.id,
                requester: grant.requested_by,
            });
        }
        let entry = self
            .parts
            .store
            .entry(&grant.entry_id)
            .await?
            .ok_or_else(|| BreakglassError::NoSuchEntry(grant.entry_id.to_string()))?;
        if let Some(other) = entry.grant_in_force(now) {
            return Err(BreakglassError::EntryHasGrant {
                entry: entry.id.to_string(),
                grant: other.grant_id.clone(),
            });
        }
        let mut approved = grant.next();
        let expires_at = now.saturating_add(i64::try_from(grant.ttl_seconds).unwrap_or(i64::MAX));
        approved.approval = Some(Approval {
            by: by.clone(),
            at: now,
            expires_at,
        });
        self.parts
            .store
            .update_grant(&approved, grant.revision)
            .await?;
        self.put_in_force(&approved, now).await?;
        self.record("breakglass.approve", &by.actor(), &approved, "the approval")
            .await?;
        self.alert("breakglass.approved", &approved);
        Ok(approved)
    }

    /// Ends grant `id` now, as `by`, and revokes every credential it issued that has not
    /// expired. A grant revoked before is revoked again (its credentials once more), so a
    /// revocation cut short can be finished. Returns the grant and how many credentials
    /// were revoked.
    ///
    /// # Errors
    ///
    /// `NoSuchGrant`; `Text` for the reason; `State` for a grant that expired or lapsed;
    /// `Conflict`, `Store`, `Audit`; `Revoke` when some credentials could not be revoked.
    pub async fn revoke(
        &self,
        by: &Operator,
        id: &str,
        reason: &str,
    ) -> Result<(GrantRecord, usize), BreakglassError> {
        let reason = governance_text("reason", reason)?;
        let mut tries = 0;
        let grant = loop {
            tries += 1;
            let grant = self.get(id).await?;
            let now = self.parts.clock.unix_now();
            match grant.state(now) {
                GrantState::Revoked => break grant,
                state @ (GrantState::Expired | GrantState::Lapsed) => {
                    return Err(BreakglassError::State {
                        grant: grant.id,
                        state,
                        hint: "it is over, and nothing it issued outlived it",
                    });
                }
                GrantState::Pending | GrantState::Active => {}
            }
            let mut ended = grant.next();
            ended.ended = Some(Ended {
                at: now,
                how: EndedHow::Revoked,
                by: by.actor(),
                reason: Some(reason.clone()),
            });
            match self.parts.store.update_grant(&ended, grant.revision).await {
                Ok(()) => {}
                Err(StoreError::Conflict { .. }) if tries < TRIES => continue,
                Err(e) => return Err(e.into()),
            }
            self.take_off_entry(&ended, now).await?;
            self.record("breakglass.revoke", &by.actor(), &ended, "the revocation")
                .await?;
            self.alert("breakglass.revoked", &ended);
            break ended;
        };
        let revoked = self.revoke_issued(by, &grant, &reason).await?;
        Ok((grant, revoked))
    }

    /// Records the post-incident review of ended grant `id`.
    ///
    /// # Errors
    ///
    /// `NoSuchGrant`; `Text` for the note; `State` while the grant is pending or in force;
    /// `Pointless` when it was reviewed already; `Conflict`, `Store` or `Audit`.
    pub async fn review(
        &self,
        by: &Operator,
        id: &str,
        note: &str,
    ) -> Result<GrantRecord, BreakglassError> {
        let note = governance_text("note", note)?;
        let grant = self.get(id).await?;
        let now = self.parts.clock.unix_now();
        let state = grant.state(now);
        if !state.is_ended() {
            return Err(BreakglassError::State {
                grant: grant.id,
                state,
                hint: "review it once it has ended (`mayfly breakglass revoke` ends it now)",
            });
        }
        if let Some(review) = &grant.review {
            return Err(BreakglassError::Pointless(format!(
                "grant {} was reviewed already, by {} at {}",
                grant.id,
                review.by,
                rfc3339(review.at)
            )));
        }
        let mut reviewed = grant.next();
        reviewed.review = Some(GrantReview {
            by: by.clone(),
            at: now,
            note,
        });
        self.parts
            .store
            .update_grant(&reviewed, grant.revision)
            .await?;
        let grant_id = reviewed.id.clone();
        self.change_entry(&reviewed.entry_id, |entry| {
            entry.grant_reviewed(&grant_id, now)
        })
        .await?;
        self.record("breakglass.review", &by.actor(), &reviewed, "the review")
            .await?;
        Ok(reviewed)
    }

    /// Grant `id`.
    ///
    /// # Errors
    ///
    /// `Invalid` for a malformed id; `NoSuchGrant`; `Store`.
    pub async fn get(&self, id: &str) -> Result<GrantRecord, BreakglassError> {
        let id = parse_grant_id(id)?;
        self.parts
            .store
            .grant(&id)
            .await?
            .ok_or(BreakglassError::NoSuchGrant(id))
    }

    /// Every grant, newest first.
    ///
    /// # Errors
    ///
    /// `Store`.
    pub async fn list(&self) -> Result<Vec<GrantRecord>, BreakglassError> {
        let mut grants = self.parts.store.list_grants().await?;
        grants.sort_by(|a, b| {
            b.requested_at
                .cmp(&a.requested_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(grants)
    }

    /// Adds `grant_use` to its grant's record, unless the grant is no longer in force or
    /// has issued its most; the mint path hands the credential out only after this.
    ///
    /// # Errors
    ///
    /// [`UseRefused`].
    pub async fn record_use(&self, grant_use: &GrantUse) -> Result<(), UseRefused> {
        let grant_id = &grant_use.grant_id;
        let store_error = |source| UseRefused::Store {
            grant: grant_id.clone(),
            source,
        };
        for _ in 0..TRIES {
            let grant = self
                .parts
                .store
                .grant(grant_id)
                .await
                .map_err(store_error)?
                .ok_or_else(|| UseRefused::Ended {
                    grant: grant_id.clone(),
                    state: "missing",
                })?;
            let state = grant.state(self.parts.clock.unix_now());
            if state != GrantState::Active {
                return Err(UseRefused::Ended {
                    grant: grant_id.clone(),
                    state: state.as_str(),
                });
            }
            if grant.issued.len() >= MAX_ISSUED_PER_GRANT {
                return Err(UseRefused::Exhausted {
                    grant: grant_id.clone(),
                });
            }
            let mut next = grant.next();
            next.issued.push(grant_use.credential.clone());
            match self.parts.store.update_grant(&next, grant.revision).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(store_error(StoreError::Unavailable {
            reason: format!("grant {grant_id} kept changing"),
        }))
    }

    /// Raises the alert for a credential issued under a grant (after its audit record).
    pub fn announce_use(&self, grant_use: &GrantUse, actor: &str) {
        let Some(sink) = &self.parts.alerts else {
            return;
        };
        let alert = Alert::new(
            "breakglass.used",
            &self.parts.trust_domain,
            self.parts.clock.unix_now(),
            &grant_use.owner,
            serde_json::json!({
                "grant": grant_use.grant_id,
                "entry_id": grant_use.entry_id.as_str(),
                "spiffe_id": grant_use.spiffe_id.as_str(),
                "audience": grant_use.audience.as_ref().map(Audience::as_str),
                "credential": &grant_use.credential,
                "actor": actor,
            }),
        );
        if let Err(error) = sink.send(alert) {
            tracing::warn!(%error, grant = %grant_use.grant_id, "cannot raise a break-glass alert");
        }
    }

    /// Records the end of every grant whose clock ran out (expired, or lapsed unapproved),
    /// takes ended grants off their entries, and puts approved grants that are in force
    /// but missing from their entry (an approval cut short) back on. Returns how many ends
    /// it recorded. Every replica sweeps; the store's revisions let one record each end.
    ///
    /// # Errors
    ///
    /// `Store` or `Audit`; the next sweep tries again.
    pub async fn sweep(&self) -> Result<usize, BreakglassError> {
        let now = self.parts.clock.unix_now();
        let mut recorded = 0;
        for grant in self.parts.store.list_grants().await? {
            let state = grant.state(now);
            if grant.ended.is_some() {
                if grant.was_in_force() && self.on_entry(&grant, now) {
                    self.take_off_entry(&grant, now).await?;
                }
                continue;
            }
            let (how, action, kind) = match state {
                GrantState::Expired => {
                    (EndedHow::Expired, "breakglass.expire", "breakglass.expired")
                }
                GrantState::Lapsed => (EndedHow::Lapsed, "breakglass.lapse", "breakglass.lapsed"),
                GrantState::Active => {
                    if !self.on_entry(&grant, now) {
                        self.put_in_force(&grant, now).await?;
                    }
                    continue;
                }
                GrantState::Pending | GrantState::Revoked => continue,
            };
            let mut ended = grant.next();
            let at = match (&grant.approval, how) {
                (Some(approval), EndedHow::Expired) => approval.expires_at,
                _ => grant.approve_by,
            };
            ended.ended = Some(Ended {
                at,
                how,
                by: BREAKGLASS_ACTOR.to_owned(),
                reason: None,
            });
            match self.parts.store.update_grant(&ended, grant.revision).await {
                Ok(()) => {}
                // Another replica recorded it, or it was revoked or used meanwhile.
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
            if ended.was_in_force() {
                self.take_off_entry(&ended, now).await?;
            }
            self.record(action, BREAKGLASS_ACTOR, &ended, "the end")
                .await?;
            self.alert(kind, &ended);
            recorded += 1;
        }
        Ok(recorded)
    }

    /// Sweeps every [`SWEEP_EVERY`] until `cancel`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(SWEEP_EVERY) => {}
            }
            if let Err(error) = self.sweep().await {
                tracing::warn!(%error, "break-glass sweep failed; trying again");
            }
        }
    }

    /// Whether `grant` is the one on its entry (in this replica's index).
    fn on_entry(&self, grant: &GrantRecord, _now: i64) -> bool {
        self.parts
            .entries
            .by_id(&grant.entry_id)
            .is_some_and(|entry| {
                entry
                    .breakglass
                    .as_ref()
                    .and_then(|b| b.active.as_ref())
                    .is_some_and(|active| active.grant_id == grant.id)
            })
    }

    async fn put_in_force(&self, grant: &GrantRecord, now: i64) -> Result<(), BreakglassError> {
        let Some(approval) = &grant.approval else {
            return Ok(());
        };
        let active = ActiveGrant {
            grant_id: grant.id.clone(),
            audience: grant.audience.clone(),
            expires_at: approval.expires_at,
        };
        self.change_entry(&grant.entry_id, |entry| {
            let current = entry.breakglass.as_ref().and_then(|b| b.active.as_ref());
            (current != Some(&active)).then(|| entry.with_grant(active.clone(), now))
        })
        .await
    }

    async fn take_off_entry(&self, grant: &GrantRecord, now: i64) -> Result<(), BreakglassError> {
        let needs_review = grant.was_in_force() && grant.review.is_none();
        self.change_entry(&grant.entry_id, |entry| {
            entry.grant_ended(&grant.id, needs_review, now)
        })
        .await
    }

    /// Applies `change` to the stored entry with optimistic concurrency, trying again
    /// when someone else changed it meanwhile; a deleted entry is left alone.
    async fn change_entry(
        &self,
        id: &EntryId,
        change: impl Fn(&Entry) -> Option<Entry>,
    ) -> Result<(), BreakglassError> {
        for _ in 0..TRIES {
            let Some(current) = self.parts.store.entry(id).await? else {
                return Ok(());
            };
            let Some(next) = change(&current) else {
                return Ok(());
            };
            match self.parts.store.update_entry(&next, current.revision).await {
                Ok(()) => {
                    self.parts.entries.upsert(next);
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(BreakglassError::Conflict(format!("entry {id}")))
    }

    async fn revoke_issued(
        &self,
        by: &Operator,
        grant: &GrantRecord,
        reason: &str,
    ) -> Result<usize, BreakglassError> {
        let now = self.parts.clock.unix_now();
        let why = format!("break-glass grant {} revoked: {reason}", grant.id);
        let mut revoked = 0;
        let mut failed = 0;
        let mut first = None;
        for credential in grant.issued.iter().filter(|c| c.expires_at > now) {
            let kind = match credential.kind {
                IssuedKind::Jwt => "jti",
                IssuedKind::X509 => "serial",
            };
            match self
                .parts
                .revoker
                .revoke(kind, &credential.id, &why, &by.actor())
                .await
            {
                Ok(_) => revoked += 1,
                Err(error) => {
                    failed += 1;
                    first.get_or_insert(error);
                }
            }
        }
        match first {
            None => Ok(revoked),
            Some(source) => Err(BreakglassError::Revoke {
                grant: grant.id.clone(),
                failed,
                source: Box::new(source),
            }),
        }
    }

    async fn record(
        &self,
        action: &str,
        actor: &str,
        grant: &GrantRecord,
        what: &str,
    ) -> Result<(), BreakglassError> {
        let now = self.parts.clock.unix_now();
        let event = AuditEvent {
            action: action.into(),
            actor: actor.into(),
            entry_id: Some(grant.entry_id.to_string()),
            spiffe_id: Some(grant.spiffe_id.to_string()),
            audience: grant.audience.as_ref().map(|a| a.as_str().to_owned()),
            detail: Some(summary(grant, now)),
            ..AuditEvent::default()
        };
        self.parts
            .audit
            .append(event)
            .await
            .map(drop)
            .map_err(|source| BreakglassError::Audit {
                what: format!("{what} of grant {}", grant.id),
                source,
            })
    }

    fn alert(&self, kind: &'static str, grant: &GrantRecord) {
        let Some(sink) = &self.parts.alerts else {
            return;
        };
        let now = self.parts.clock.unix_now();
        let alert = Alert::new(
            kind,
            &self.parts.trust_domain,
            now,
            &grant.owner,
            summary(grant, now),
        );
        if let Err(error) = sink.send(alert) {
            tracing::warn!(%error, grant = %grant.id, kind, "cannot raise a break-glass alert");
        }
    }
}

/// What the audit records and alerts say of a grant: everything but the list of what it
/// issued (its count instead). Nothing in it is a secret.
pub(crate) fn summary(grant: &GrantRecord, now: i64) -> serde_json::Value {
    serde_json::json!({
        "grant": grant.id,
        "state": grant.state(now).as_str(),
        "entry_id": grant.entry_id.as_str(),
        "spiffe_id": grant.spiffe_id.as_str(),
        "owner": grant.owner,
        "scope": grant.scope(),
        "audience": grant.audience.as_ref().map(Audience::as_str),
        "ttl_seconds": grant.ttl_seconds,
        "reason": grant.reason,
        "ticket": grant.ticket,
        "requested_by": grant.requested_by.to_string(),
        "requested_at": rfc3339(grant.requested_at),
        "approved_by": grant.approval.as_ref().map(|a| a.by.to_string()),
        "expires_at": grant.approval.as_ref().map(|a| rfc3339(a.expires_at)),
        "ended": grant.ended.as_ref().map(|e| serde_json::json!({
            "how": e.how, "by": e.by, "at": rfc3339(e.at), "reason": e.reason,
        })),
        "reviewed_by": grant.review.as_ref().map(|r| r.by.to_string()),
        "issued": grant.issued.len(),
        "revision": grant.revision,
    })
}

/// Refuses a grant that would widen nothing.
fn check_useful(entry: &Entry, audience: Option<&Audience>) -> Result<(), BreakglassError> {
    match audience {
        Some(audience) if entry.allows_audience(audience) => {
            Err(BreakglassError::Pointless(format!(
                "entry {} already allows audience {:?}; a grant would widen nothing",
                entry.id,
                audience.as_str()
            )))
        }
        Some(_) if !entry.allows_kind(crate::policy::CredentialKind::Jwt) => {
            Err(BreakglassError::Pointless(format!(
                "entry {} issues no JWT-SVIDs, so an audience would change nothing",
                entry.id
            )))
        }
        None if entry.disabled.is_none() => Err(BreakglassError::Pointless(format!(
            "entry {} is not disabled; a grant that re-enables it would change nothing \
             (give --audience to add one audience)",
            entry.id
        ))),
        _ => Ok(()),
    }
}

/// Checks a ticket reference: required, at most [`MAX_TICKET_LEN`] bytes, printable.
fn ticket(value: &str) -> Result<String, BreakglassError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(BreakglassError::Invalid(
            "a ticket is required (--ticket INC-123): the incident or change this is for".into(),
        ));
    }
    if value.len() > MAX_TICKET_LEN || value.chars().any(char::is_control) {
        return Err(BreakglassError::Invalid(format!(
            "the ticket must be at most {MAX_TICKET_LEN} bytes without control characters"
        )));
    }
    Ok(value.to_owned())
}

fn new_grant_id() -> String {
    let mut id = [0u8; 8];
    // The system RNG failing is not something the broker can run without.
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(&mut id).expect("system random number generator failed");
    hex::encode(id)
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}
