//! Revoking credentials: the operator's side of the [`RevocationSet`].
//!
//! [`Revoker`] turns an operator's `revoke <kind> <value>` into a
//! [`Revocation`]: it resolves what the revocation covers (an entry's or an
//! agent's SPIFFE IDs), writes it to the store (durable before the call
//! returns), puts it in the in-process index at once (so this replica stops
//! minting and validating before the call returns; the others hear it from
//! the store's change feed), and appends an audit record.
//!
//! A revocation is kept until nothing it covers can still be valid: a `jti`
//! or serial revocation for the longest credential lifetime the broker
//! issues; an identity revocation (entry, SPIFFE ID, agent) until an
//! operator lifts it, and then for the longest lifetime after the moment it
//! was made, so credentials issued before it stay revoked until they expire.
//! [`Revoker::prune`] then drops it.

use std::sync::Arc;
use std::time::Duration;

use mayfly_sdk::SpiffeId;
use mayfly_sdk::revocation::{self, Revocation, RevocationKind, RevocationSet};

use crate::audit::{AuditEvent, AuditLog, Outcome};
use crate::clock::{Clock, rfc3339};
use crate::policy::{EntryId, EntryIndex, HARD_TTL_CAP};
use crate::store::{Store, StoreError};

/// Why a revoke or unrevoke was refused. Safe to show the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevokeError {
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// What it names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The store or audit log cannot answer.
    #[error("{0}")]
    Unavailable(String),
}

impl From<StoreError> for RevokeError {
    fn from(error: StoreError) -> Self {
        RevokeError::Unavailable(format!("revocation store: {error}"))
    }
}

/// Revokes and lifts revocations, and drops expired ones.
#[derive(Debug)]
pub struct Revoker {
    store: Arc<dyn Store>,
    set: Arc<RevocationSet>,
    entries: Arc<EntryIndex>,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
    cover: i64,
}

impl Revoker {
    /// A revoker. `leeway` is the JWT validation leeway: a token stays
    /// acceptable that long past its `exp`, so revocations are kept that
    /// much longer too.
    pub fn new(
        store: Arc<dyn Store>,
        set: Arc<RevocationSet>,
        entries: Arc<EntryIndex>,
        audit: AuditLog,
        clock: Arc<dyn Clock>,
        leeway: Duration,
    ) -> Self {
        let cover = i64::try_from((HARD_TTL_CAP + leeway).as_secs()).unwrap_or(i64::MAX);
        Revoker {
            store,
            set,
            entries,
            audit,
            clock,
            cover,
        }
    }

    /// The in-process index.
    pub fn set(&self) -> &Arc<RevocationSet> {
        &self.set
    }

    /// How long after it is made a revocation can still cover a live
    /// credential: the longest credential lifetime plus the leeway.
    pub fn cover(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.cover).unwrap_or(0))
    }

    /// Revokes `value` as `kind`. Revoking what is already revoked returns
    /// the revocation in force and changes nothing.
    ///
    /// # Errors
    ///
    /// [`RevokeError::InvalidArgument`] for a bad kind, value or missing
    /// reason; [`RevokeError::NotFound`] for an unknown entry;
    /// [`RevokeError::Unavailable`] when the store or audit log fails (then
    /// nothing was revoked, or, if only the audit failed, the revocation is
    /// in force and the error says so).
    pub async fn revoke(
        &self,
        kind: &str,
        value: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Revocation, RevokeError> {
        let (kind, value, reason) = checked_request(kind, value, reason)?;
        if let Some(existing) = self.set.get(kind, &value)
            && (existing.blocks_minting() || !kind.is_identity())
        {
            return Ok(existing.as_ref().clone());
        }
        let now = self.clock.unix_now();
        let subjects = self.subjects(kind, &value)?;
        let revocation = Revocation {
            kind,
            value,
            subjects,
            revoked_at: now,
            expires_at: (!kind.is_identity()).then(|| now.saturating_add(self.cover)),
            reason: reason.to_owned(),
            actor: actor.to_owned(),
        };
        self.store.put_revocation(&revocation).await?;
        self.set.upsert(revocation.clone());
        self.audit_change("revoke", &revocation, actor, reason)
            .await?;
        Ok(revocation)
    }

    /// Lifts an entry, SPIFFE ID or agent revocation: minting resumes, and
    /// what was issued before the revocation stays revoked until it expires.
    ///
    /// # Errors
    ///
    /// [`RevokeError::InvalidArgument`] for `jti` and `serial` (a leaked
    /// credential stays revoked until it expires) or a missing reason;
    /// [`RevokeError::NotFound`] if nothing is revoked under that value;
    /// [`RevokeError::Unavailable`].
    pub async fn unrevoke(
        &self,
        kind: &str,
        value: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Revocation, RevokeError> {
        let (kind, value, reason) = checked_request(kind, value, reason)?;
        if !kind.is_identity() {
            return Err(RevokeError::InvalidArgument(format!(
                "a {kind} revocation cannot be lifted: the credential stays revoked until it expires"
            )));
        }
        let existing = self
            .set
            .get(kind, &value)
            .filter(|r| r.blocks_minting())
            .ok_or_else(|| RevokeError::NotFound(format!("{kind} {value} is not revoked")))?;
        let mut lifted = existing.as_ref().clone();
        let now = self.clock.unix_now();
        let until = lifted.revoked_at.saturating_add(self.cover);
        lifted.expires_at = Some(until);
        if until <= now {
            self.store.delete_revocation(&lifted.key()).await?;
            self.set.remove(kind, &value);
        } else {
            self.store.put_revocation(&lifted).await?;
            self.set.upsert(lifted.clone());
        }
        self.audit_change("unrevoke", &lifted, actor, reason)
            .await?;
        Ok(lifted)
    }

    /// Every revocation still covering something at the current time, in
    /// key order, with its reason and actor: read from the store, since the
    /// index keeps `jti` and `serial` revocations without them.
    ///
    /// # Errors
    ///
    /// [`RevokeError::Unavailable`] if the store cannot answer.
    pub async fn list(&self) -> Result<Vec<Revocation>, RevokeError> {
        let now = self.clock.unix_now();
        let mut all = self.store.list_revocations().await?;
        all.retain(|r| !r.is_expired(now));
        all.sort_by_key(Revocation::key);
        Ok(all)
    }

    /// Drops the revocations that cover nothing any more, from the store
    /// and the index, each with an audit record; returns their keys.
    ///
    /// # Errors
    ///
    /// [`RevokeError::Unavailable`] if the store cannot answer; the index
    /// is pruned regardless (an expired revocation covers nothing).
    pub async fn prune(&self) -> Result<Vec<String>, RevokeError> {
        let now = self.clock.unix_now();
        let from_index = self.set.prune(now);
        let from_store = self.store.prune_revocations(now).await?;
        let mut keys: Vec<String> = from_store;
        for key in from_index {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys.sort();
        for key in &keys {
            let event = AuditEvent {
                action: "revocation.expire".into(),
                actor: "server".into(),
                outcome: Outcome::Ok,
                reason: Some("every credential it covered has expired".into()),
                detail: Some(serde_json::json!({ "revocation": key })),
                ..AuditEvent::default()
            };
            if let Err(error) = self.audit.append(event).await {
                tracing::error!(%error, "audit log append failed for an expired revocation");
            }
        }
        Ok(keys)
    }

    fn subjects(&self, kind: RevocationKind, value: &str) -> Result<Vec<SpiffeId>, RevokeError> {
        let parse_id = |text: &str| {
            text.parse::<SpiffeId>()
                .map_err(|e| RevokeError::InvalidArgument(e.to_string()))
        };
        Ok(match kind {
            RevocationKind::Jti | RevocationKind::Serial => Vec::new(),
            RevocationKind::SpiffeId => vec![parse_id(value)?],
            RevocationKind::Entry => {
                let id = EntryId::parse(value)
                    .map_err(|e| RevokeError::InvalidArgument(e.to_string()))?;
                let entry = self.entries.by_id(&id).ok_or_else(|| {
                    RevokeError::NotFound(format!(
                        "no entry {value}; to revoke the credentials of a deleted entry, revoke its SPIFFE ID"
                    ))
                })?;
                vec![entry.spiffe_id.clone()]
            }
            RevocationKind::Agent => {
                let agent = parse_id(value)?;
                let mut subjects: Vec<SpiffeId> = self
                    .entries
                    .children_of(&agent)
                    .iter()
                    .map(|e| e.spiffe_id.clone())
                    .collect();
                subjects.sort();
                subjects.dedup();
                subjects.insert(0, agent);
                subjects
            }
        })
    }

    async fn audit_change(
        &self,
        action: &str,
        revocation: &Revocation,
        actor: &str,
        reason: &str,
    ) -> Result<(), RevokeError> {
        let event = AuditEvent {
            action: format!("revocation.{action}"),
            actor: actor.to_owned(),
            outcome: Outcome::Ok,
            entry_id: (revocation.kind == RevocationKind::Entry).then(|| revocation.value.clone()),
            spiffe_id: revocation.subjects.first().map(ToString::to_string),
            jti: (revocation.kind == RevocationKind::Jti).then(|| revocation.value.clone()),
            serial: (revocation.kind == RevocationKind::Serial).then(|| revocation.value.clone()),
            reason: Some(reason.to_owned()),
            detail: Some(serde_json::json!({
                "kind": revocation.kind.as_str(),
                "value": revocation.value,
                "subjects": revocation.subjects.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "revoked_at": rfc3339(revocation.revoked_at),
                "expires_at": revocation.expires_at.map(rfc3339),
            })),
            ..AuditEvent::default()
        };
        self.audit.append(event).await.map(|_| ()).map_err(|e| {
            RevokeError::Unavailable(format!(
                "the {action} of {} is in force, but its audit record could not be written: {e}",
                revocation.key()
            ))
        })
    }
}

/// The request's kind, canonical value and trimmed reason, or why not.
fn checked_request<'a>(
    kind: &str,
    value: &str,
    reason: &'a str,
) -> Result<(RevocationKind, String, &'a str), RevokeError> {
    let invalid = |e: revocation::RevocationParseError| RevokeError::InvalidArgument(e.to_string());
    let kind: RevocationKind = kind.parse().map_err(invalid)?;
    let value = revocation::normalize_value(kind, value).map_err(invalid)?;
    Ok((kind, value, checked_reason(reason)?))
}

fn checked_reason(reason: &str) -> Result<&str, RevokeError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(RevokeError::InvalidArgument(
            "a reason is required (--reason \"...\"): it goes into the audit log".into(),
        ));
    }
    if reason.len() > revocation::MAX_REASON_LEN {
        return Err(RevokeError::InvalidArgument(format!(
            "the reason is longer than {} bytes",
            revocation::MAX_REASON_LEN
        )));
    }
    Ok(reason)
}
