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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mayfly_sdk::SpiffeId;
use mayfly_sdk::revocation::{self, Revocation, RevocationKind, RevocationSet};

use crate::audit::{AuditError, AuditEvent, AuditLog, Outcome};
use crate::clock::{Clock, rfc3339};
use crate::listing::{Page, PageFill};
use crate::policy::{EntryError, EntryId, EntryIndex, HARD_TTL_CAP};
use crate::store::{Store, StoreError};

/// Why a revoke or unrevoke was refused. Safe to show the operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevokeError {
    /// The kind or value is not one (`kind` unknown, a `jti` too long, a
    /// SPIFFE ID that does not parse...).
    #[error("{0}")]
    Malformed(#[from] revocation::RevocationParseError),
    /// The SPIFFE ID of a `spiffe_id` or `agent` revocation does not parse.
    #[error("{0}")]
    SpiffeId(#[from] mayfly_sdk::SpiffeIdError),
    /// The entry id of an `entry` revocation is not one.
    #[error("{0}")]
    EntryId(#[from] EntryError),
    /// No reason was given.
    #[error("a reason is required (--reason \"...\"): it goes into the audit log")]
    ReasonMissing,
    /// The reason is too long.
    #[error("the reason is longer than {max} bytes")]
    ReasonTooLong {
        /// The limit.
        max: usize,
    },
    /// A `jti` or `serial` revocation cannot be lifted.
    #[error("a {kind} revocation cannot be lifted: the credential stays revoked until it expires")]
    NotLiftable {
        /// Its kind.
        kind: RevocationKind,
    },
    /// An `entry` revocation names no entry.
    #[error(
        "no entry {entry_id}; to revoke the credentials of a deleted entry, revoke its SPIFFE ID"
    )]
    NoSuchEntry {
        /// The id asked for.
        entry_id: EntryId,
    },
    /// Nothing is revoked under that kind and value.
    #[error("{kind} {value} is not revoked")]
    NotRevoked {
        /// The kind.
        kind: RevocationKind,
        /// The value.
        value: String,
    },
    /// More items than one bulk revoke takes.
    #[error("at most {max} revocations per request; send the rest in another")]
    TooMany {
        /// The limit.
        max: usize,
    },
    /// The store cannot answer.
    #[error("revocation store: {0}")]
    Store(#[from] StoreError),
    /// The change is in force, but its audit record could not be written.
    #[error(
        "the {action} of {key} is in force, but its audit record could not be written: {source}"
    )]
    Audit {
        /// `revoke` or `unrevoke`.
        action: String,
        /// The revocation's key.
        key: String,
        /// Why.
        source: AuditError,
    },
}

/// The most items one bulk revoke takes ([`Revoker::revoke_many`]).
pub const MAX_BULK: usize = 10_000;

/// Bulk revokes in progress at once; the others wait before building anything.
/// The store has one writer, so more only hold more copies of their items in
/// memory. 32 callers of 1,000 items each left the broker with 100k entries
/// and 1M revocations at 261 MiB unbounded and 234 MiB with 2 at once; on a
/// later build, 214-220 MiB with 2 and 201 MiB with 1, at 27-30k
/// revocations/s in every case (BENCHMARKS.md, 2026-12-04 (fifth)).
const BULK_AT_ONCE: usize = 1;

/// One item of a bulk revoke, as given.
#[derive(Debug, Clone, Copy)]
pub struct RevokeItem<'a> {
    /// `entry`, `spiffe-id`, `jti`, `serial` or `agent`.
    pub kind: &'a str,
    /// What it names.
    pub value: &'a str,
    /// Why.
    pub reason: &'a str,
}

/// What became of one item of a bulk revoke.
#[derive(Debug)]
pub enum Bulk {
    /// Revoked now.
    Revoked(Revocation),
    /// Already revoked (before, or earlier in the same batch): unchanged.
    InForce(Revocation),
    /// Refused; nothing changed for it.
    Refused(RevokeError),
}

/// What `ListRevocations` narrows the list to. Every field that is set
/// must match; one left `None` matches every revocation, so the default
/// matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationFilter {
    /// The kind.
    pub kind: Option<RevocationKind>,
    /// A SPIFFE ID the revocation covers (one of its subjects).
    pub subject: Option<SpiffeId>,
    /// Who revoked it, exactly.
    pub actor: Option<String>,
    /// Revoked at or after this time, Unix seconds.
    pub revoked_since: Option<i64>,
}

impl RevocationFilter {
    /// Whether `revocation` passes every filter that is set.
    pub fn matches(&self, revocation: &Revocation) -> bool {
        self.kind.is_none_or(|kind| kind == revocation.kind)
            && self
                .subject
                .as_ref()
                .is_none_or(|subject| revocation.subjects.contains(subject))
            && self
                .actor
                .as_deref()
                .is_none_or(|actor| actor == revocation.actor)
            && self
                .revoked_since
                .is_none_or(|since| revocation.revoked_at >= since)
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
    /// [`BULK_AT_ONCE`] permits, one held by each bulk revoke in progress.
    bulk: tokio::sync::Semaphore,
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
            bulk: tokio::sync::Semaphore::new(BULK_AT_ONCE),
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
    /// [`RevokeError::Malformed`], [`RevokeError::SpiffeId`] or
    /// [`RevokeError::EntryId`] for a bad kind or value,
    /// [`RevokeError::ReasonMissing`] or [`RevokeError::ReasonTooLong`];
    /// [`RevokeError::NoSuchEntry`] for an unknown entry;
    /// [`RevokeError::Store`] when the store fails (nothing was revoked) and
    /// [`RevokeError::Audit`] when only the audit record failed (the
    /// revocation is in force, and the error says so).
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

    /// Revokes many at once: each item is checked as by [`revoke`](Self::revoke), the new
    /// revocations are written in one store batch, applied, and audited together (one
    /// group commit), so that loading a large list runs at the store's and the audit log's
    /// batch rate rather than one fsync per revocation. Items already in force, or named
    /// twice, are answered with the revocation in force and change nothing. At most
    /// [`MAX_BULK`] items.
    ///
    /// # Errors
    ///
    /// Per item: a bad kind, value or reason, or an unknown entry ([`Bulk::Refused`]; the
    /// others go ahead). For the batch: [`RevokeError::Store`] when the store fails
    /// (nothing was revoked), [`RevokeError::Audit`] when the revocations are in force but
    /// their audit records could not be written.
    pub async fn revoke_many(
        &self,
        items: &[RevokeItem<'_>],
        actor: &str,
    ) -> Result<Vec<Bulk>, RevokeError> {
        // Never closed, so `acquire` cannot fail; were it to, going ahead unbounded is
        // what the broker did before the bound.
        let _permit = self.bulk.acquire().await.ok();
        let now = self.clock.unix_now();
        let mut answers = Vec::with_capacity(items.len());
        let mut fresh: Vec<Revocation> = Vec::new();
        let mut batch_index: HashMap<String, usize> = HashMap::new();
        for item in items.iter().take(MAX_BULK) {
            let checked = checked_request(item.kind, item.value, item.reason).and_then(
                |(kind, value, reason)| {
                    let subjects = self.subjects(kind, &value)?;
                    Ok((kind, value, reason, subjects))
                },
            );
            let (kind, value, reason, subjects) = match checked {
                Ok(checked) => checked,
                Err(error) => {
                    answers.push(Bulk::Refused(error));
                    continue;
                }
            };
            if let Some(existing) = self.set.get(kind, &value)
                && (existing.blocks_minting() || !kind.is_identity())
            {
                answers.push(Bulk::InForce(existing.as_ref().clone()));
                continue;
            }
            let key = revocation::key(kind, &value);
            if let Some(&at) = batch_index.get(&key) {
                answers.push(Bulk::InForce(fresh[at].clone()));
                continue;
            }
            let revocation = Revocation {
                kind,
                value,
                subjects,
                revoked_at: now,
                expires_at: (!kind.is_identity()).then(|| now.saturating_add(self.cover)),
                reason: reason.to_owned(),
                actor: actor.to_owned(),
            };
            batch_index.insert(key, fresh.len());
            answers.push(Bulk::Revoked(revocation.clone()));
            fresh.push(revocation);
        }
        if items.len() > MAX_BULK {
            answers.extend(
                (MAX_BULK..items.len())
                    .map(|_| Bulk::Refused(RevokeError::TooMany { max: MAX_BULK })),
            );
        }
        if fresh.is_empty() {
            return Ok(answers);
        }
        self.store.put_revocations(&fresh).await?;
        for revocation in &fresh {
            self.set.upsert(revocation.clone());
        }
        let events = fresh
            .iter()
            .map(|revocation| change_event("revoke", revocation, actor, &revocation.reason))
            .collect();
        let receipts = self.audit.append_all(events).await;
        if let Some((revocation, Err(source))) = fresh
            .iter()
            .zip(receipts)
            .find(|(_, receipt)| receipt.is_err())
        {
            return Err(RevokeError::Audit {
                action: "bulk revoke".to_owned(),
                key: revocation.key(),
                source,
            });
        }
        Ok(answers)
    }

    /// Revokes every credential of an entry, SPIFFE ID or agent issued up to now, without
    /// blocking later mints: the revocation is made already lifted (kept for the longest
    /// credential lifetime), as [`unrevoke`](Self::unrevoke) would leave it. The anomaly
    /// detectors' quarantine uses it beside disabling the entry, so that enabling the
    /// entry again is all an operator does to let it mint. A revocation in force that
    /// blocks minting is kept as it is and returned.
    ///
    /// # Errors
    ///
    /// As [`revoke`](Self::revoke); a `jti` or `serial` kind is
    /// [`RevokeError::NotLiftable`].
    pub async fn revoke_issued(
        &self,
        kind: &str,
        value: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Revocation, RevokeError> {
        let (kind, value, reason) = checked_request(kind, value, reason)?;
        if !kind.is_identity() {
            return Err(RevokeError::NotLiftable { kind });
        }
        if let Some(existing) = self.set.get(kind, &value)
            && existing.blocks_minting()
        {
            return Ok(existing.as_ref().clone());
        }
        let now = self.clock.unix_now();
        let revocation = Revocation {
            kind,
            subjects: self.subjects(kind, &value)?,
            value,
            revoked_at: now,
            expires_at: Some(now.saturating_add(self.cover)),
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
    /// [`RevokeError::NotLiftable`] for `jti` and `serial` (a leaked
    /// credential stays revoked until it expires); a bad kind, value or
    /// reason as for [`revoke`](Self::revoke); [`RevokeError::NotRevoked`]
    /// if nothing is revoked under that value; [`RevokeError::Store`] or
    /// [`RevokeError::Audit`].
    pub async fn unrevoke(
        &self,
        kind: &str,
        value: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Revocation, RevokeError> {
        let (kind, value, reason) = checked_request(kind, value, reason)?;
        if !kind.is_identity() {
            return Err(RevokeError::NotLiftable { kind });
        }
        let existing = self
            .set
            .get(kind, &value)
            .filter(|r| r.blocks_minting())
            .ok_or_else(|| RevokeError::NotRevoked {
                kind,
                value: value.clone(),
            })?;
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

    /// One page of the revocations still covering something at the current
    /// time that pass `filter`, in key order, with their reason and actor:
    /// read from the store, since the index keeps `jti` and `serial`
    /// revocations without them.
    ///
    /// Starts after the key `after` (from the first when `None`), and stops
    /// once the page holds `limit` revocations or `budget` keys were looked
    /// at, matching or not, so that a narrow filter over a million
    /// revocations does not hold one call for the whole scan. A filter on
    /// the kind reads that kind's keys only.
    ///
    /// # Errors
    ///
    /// [`RevokeError::Store`] if the store cannot answer.
    pub async fn page(
        &self,
        after: Option<&str>,
        filter: &RevocationFilter,
        limit: usize,
        budget: usize,
    ) -> Result<Page<Revocation>, RevokeError> {
        let now = self.clock.unix_now();
        // Every key of a kind starts with `kind:`, which sorts just before them.
        let kind_start = filter.kind.map(|kind| format!("{}:", kind.as_str()));
        let mut cursor = match (after, kind_start.as_deref()) {
            (Some(after), Some(start)) => Some(after.max(start).to_owned()),
            (after, start) => after.or(start).map(str::to_owned),
        };
        let mut fill = PageFill::new(limit, budget);
        loop {
            let wanted = fill.wanted().clamp(16, 1000);
            let batch = self
                .store
                .revocations_after(cursor.as_deref(), wanted)
                .await?;
            let complete = batch.len() < wanted;
            if let Some(last) = batch.last() {
                cursor = Some(last.key());
            }
            for revocation in batch {
                if kind_start.is_some() && filter.kind != Some(revocation.kind) {
                    // Past the last key of the kind asked for: nothing follows.
                    return Ok(fill.finish());
                }
                let key = revocation.key();
                let keep = !revocation.is_expired(now) && filter.matches(&revocation);
                if fill.offer(&key, keep.then_some(revocation)).is_break() {
                    return Ok(fill.finish());
                }
            }
            if complete {
                return Ok(fill.finish());
            }
        }
    }

    /// Drops the revocations that cover nothing any more, from the store
    /// and the index, each with an audit record; returns their keys.
    ///
    /// # Errors
    ///
    /// [`RevokeError::Store`] if the store cannot answer; the index
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
        let parse_id = |text: &str| text.parse::<SpiffeId>().map_err(RevokeError::from);
        Ok(match kind {
            RevocationKind::Jti | RevocationKind::Serial => Vec::new(),
            RevocationKind::SpiffeId => vec![parse_id(value)?],
            RevocationKind::Entry => {
                let id = EntryId::parse(value)?;
                let Some(entry) = self.entries.by_id(&id) else {
                    return Err(RevokeError::NoSuchEntry { entry_id: id });
                };
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
        self.audit
            .append(change_event(action, revocation, actor, reason))
            .await
            .map(|_| ())
            .map_err(|source| RevokeError::Audit {
                action: action.to_owned(),
                key: revocation.key(),
                source,
            })
    }
}

/// The audit record of a revoke or unrevoke.
fn change_event(action: &str, revocation: &Revocation, actor: &str, reason: &str) -> AuditEvent {
    AuditEvent {
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
    }
}

/// The request's kind, canonical value and trimmed reason, or why not.
fn checked_request<'a>(
    kind: &str,
    value: &str,
    reason: &'a str,
) -> Result<(RevocationKind, String, &'a str), RevokeError> {
    let kind: RevocationKind = kind.parse()?;
    let value = revocation::normalize_value(kind, value)?;
    Ok((kind, value, checked_reason(reason)?))
}

fn checked_reason(reason: &str) -> Result<&str, RevokeError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(RevokeError::ReasonMissing);
    }
    if reason.len() > revocation::MAX_REASON_LEN {
        return Err(RevokeError::ReasonTooLong {
            max: revocation::MAX_REASON_LEN,
        });
    }
    Ok(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::store::EmbeddedStore;

    /// More bulk revokes at once than [`BULK_AT_ONCE`]: the others wait their turn, and
    /// every item of every call is stored, applied and audited once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_revokes_past_the_bound_wait_their_turn_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
        let audit = AuditLog::open(&dir.path().join("audit")).unwrap();
        let revoker = Arc::new(Revoker::new(
            store.clone(),
            Arc::new(RevocationSet::authoritative()),
            Arc::new(EntryIndex::default()),
            audit.clone(),
            Arc::new(SystemClock),
            Duration::from_secs(5),
        ));
        let calls: Vec<_> = (0..BULK_AT_ONCE * 3)
            .map(|call| {
                let revoker = revoker.clone();
                tokio::spawn(async move {
                    let values: Vec<String> =
                        (0..200).map(|n| format!("call-{call}-jti-{n}")).collect();
                    let items: Vec<RevokeItem<'_>> = values
                        .iter()
                        .map(|value| RevokeItem {
                            kind: "jti",
                            value,
                            reason: "INC-1",
                        })
                        .collect();
                    revoker.revoke_many(&items, "admin:uid=0").await.unwrap()
                })
            })
            .collect();
        for call in calls {
            let answers = tokio::time::timeout(Duration::from_secs(60), call)
                .await
                .expect("every call gets its turn")
                .unwrap();
            assert_eq!(answers.len(), 200);
            assert!(answers.iter().all(|a| matches!(a, Bulk::Revoked(_))));
        }
        let total = BULK_AT_ONCE * 3 * 200;
        assert_eq!(revoker.set().len(), total);
        assert_eq!(store.list_revocations().await.unwrap().len(), total);
        assert_eq!(
            revoker.bulk.available_permits(),
            BULK_AT_ONCE,
            "every permit back"
        );
        audit.close().await.unwrap();
        let audited = std::fs::read_to_string(dir.path().join("audit/audit.log"))
            .unwrap()
            .lines()
            .filter(|line| line.contains("INC-1"))
            .count();
        assert_eq!(audited, total);
    }

    fn revocation(kind: RevocationKind, value: &str, revoked_at: i64, actor: &str) -> Revocation {
        let mut revocation = Revocation::new(kind, value, revoked_at, None).unwrap();
        if kind.is_identity() {
            revocation.subjects = vec![value.parse().unwrap()];
        }
        revocation.actor = actor.to_owned();
        revocation
    }

    #[test]
    fn every_revocation_filter_that_is_set_must_match() {
        let agent = "spiffe://example.org/agent/1";
        let all = [
            revocation(RevocationKind::Jti, "t1", 100, "admin:uid=0"),
            revocation(RevocationKind::Agent, agent, 200, "admin:uid=1000"),
            revocation(RevocationKind::SpiffeId, agent, 300, "admin:uid=0"),
        ];
        let passing = |filter: RevocationFilter| -> Vec<String> {
            all.iter()
                .filter(|r| filter.matches(r))
                .map(Revocation::key)
                .collect()
        };
        assert_eq!(passing(RevocationFilter::default()).len(), 3);
        let covering = RevocationFilter {
            subject: Some(agent.parse().unwrap()),
            ..RevocationFilter::default()
        };
        assert_eq!(
            passing(covering.clone()),
            [format!("agent:{agent}"), format!("spiffe-id:{agent}")]
        );
        assert_eq!(
            passing(RevocationFilter {
                kind: Some(RevocationKind::Agent),
                ..covering.clone()
            }),
            [format!("agent:{agent}")]
        );
        assert_eq!(
            passing(RevocationFilter {
                actor: Some("admin:uid=0".into()),
                revoked_since: Some(200),
                ..RevocationFilter::default()
            }),
            [format!("spiffe-id:{agent}")]
        );
        assert!(
            passing(RevocationFilter {
                revoked_since: Some(301),
                ..covering
            })
            .is_empty()
        );
    }
}
