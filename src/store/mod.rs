//! Durable state: registration entries, join tokens and usage.
//!
//! [`Store`] is the backend-neutral interface the broker talks to.
//! [`EmbeddedStore`] keeps everything in one ACID file in the data directory
//! (the single-replica default); [`RedisStore`] keeps it on a Redis server
//! that several replicas share, and tells each of them what the others
//! change ([`Store::subscribe`]).
//!
//! The hot path never waits on the store: the broker loads entries into an
//! in-process index and batches usage writes. What must be atomic is atomic
//! in the store itself: entry create/update/delete (with SPIFFE ID
//! uniqueness and optimistic concurrency) and join token redemption.
//!
//! ```no_run
//! # async fn example(data_dir: &std::path::Path) -> Result<(), mayfly::store::StoreError> {
//! use mayfly::store::{EmbeddedStore, Store};
//!
//! let store = EmbeddedStore::open(&data_dir.join(EmbeddedStore::FILE_NAME))?;
//! for entry in store.list_entries().await? {
//!     println!("{} {}", entry.id, entry.spiffe_id);
//! }
//! # Ok(())
//! # }
//! ```

mod embedded;
mod redis;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::attest::join_token::{JoinTokenRecord, TokenHash};
use crate::audience::AudienceRecord;
use crate::audit::{Handover, SignedCheckpoint};
use crate::policy::grant::GrantRecord;
use crate::policy::{Entry, EntryId};
use mayfly_sdk::revocation::Revocation;

pub use self::redis::RedisStore;
pub use embedded::EmbeddedStore;

/// Where the broker keeps entries, join tokens and usage.
///
/// Every method is atomic: it either happens completely or not at all.
/// Times are Unix seconds, passed in by the caller so that tests and every
/// replica agree on one clock.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Every registered entry, in id order.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], or [`StoreError::Corrupt`] if a stored
    /// entry cannot be decoded.
    async fn list_entries(&self) -> Result<Vec<Entry>, StoreError>;

    /// Up to `limit` entries whose id sorts after `after` (from the first
    /// when `None`), in id order: one step of loading the entries a page at
    /// a time, so that a broker starting with many never holds them all
    /// twice. Fewer than `limit` only when no more follow.
    ///
    /// The default reads every entry ([`list_entries`](Self::list_entries))
    /// and keeps the page; a store that can read a range overrides it.
    ///
    /// # Errors
    ///
    /// As [`list_entries`](Self::list_entries).
    async fn entries_after(
        &self,
        after: Option<&EntryId>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut all = self.list_entries().await?;
        let start = after.map_or(0, |after| all.partition_point(|entry| entry.id <= *after));
        all.drain(..start);
        all.truncate(limit);
        Ok(all)
    }

    /// The entry with this id, if registered.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    async fn entry(&self, id: &EntryId) -> Result<Option<Entry>, StoreError>;

    /// Registers a new entry.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] if the id or the SPIFFE ID is already
    /// registered; [`StoreError::Unavailable`].
    async fn create_entry(&self, entry: &Entry) -> Result<(), StoreError>;

    /// Replaces the entry with `entry.id` if its stored revision is
    /// `expected_revision` (optimistic concurrency). `entry.revision` must be
    /// greater than `expected_revision`, so that a second writer holding the
    /// same old revision is refused.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] if the entry is absent;
    /// [`StoreError::Conflict`] if the stored revision differs or the new
    /// SPIFFE ID belongs to another entry; [`StoreError::Internal`] if
    /// `entry.revision` is not greater than `expected_revision`;
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn update_entry(&self, entry: &Entry, expected_revision: u64) -> Result<(), StoreError>;

    /// Removes and returns the entry, together with its usage record. Join
    /// tokens minted for it stay until pruned; redeeming one yields an entry
    /// id that no longer resolves.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] if absent; [`StoreError::Unavailable`];
    /// [`StoreError::Corrupt`].
    async fn delete_entry(&self, id: &EntryId) -> Result<Entry, StoreError>;

    /// Records a freshly minted join token.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] if `record.entry_id` is not registered;
    /// [`StoreError::Conflict`] if a token with this hash exists;
    /// [`StoreError::Unavailable`].
    async fn insert_join_token(&self, record: &JoinTokenRecord) -> Result<(), StoreError>;

    /// The join token with this hash as stored, without redeeming it: the
    /// entry it is bound to, its expiry, and `used_at` once redeemed. Lets
    /// the broker refuse a request that cannot succeed (the caller asked
    /// for another identity) before spending the token. Only
    /// [`Store::redeem_join_token`] decides whether a token may be used.
    ///
    /// The default answers `None` (not known here): a backend that cannot
    /// look a token up leaves every decision to redemption.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    async fn join_token(&self, _hash: &TokenHash) -> Result<Option<JoinTokenRecord>, StoreError> {
        Ok(None)
    }

    /// Checks that the token is known, unused and unexpired at `now`, and
    /// marks it used, in one write transaction: of any number of concurrent
    /// redemptions of one token, exactly one succeeds. Returns the record as
    /// updated (`used_at == Some(now)`).
    ///
    /// A used or expired token stays recorded until
    /// [`Store::prune_join_tokens`] removes it, so reuse is reported as reuse.
    ///
    /// # Errors
    ///
    /// [`RedeemError::Unknown`], [`RedeemError::AlreadyUsed`] (checked
    /// before expiry: a replayed token is the louder event),
    /// [`RedeemError::Expired`], or [`RedeemError::Store`]. Any error leaves
    /// the record unchanged.
    async fn redeem_join_token(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> Result<JoinTokenRecord, RedeemError>;

    /// Deletes the token records whose `expires_at` is before `before`,
    /// whether used or not; returns how many.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    async fn prune_join_tokens(&self, before: i64) -> Result<usize, StoreError>;

    /// Saves usage for many entries in one transaction. The broker keeps
    /// running totals in memory and writes them in batches every few
    /// seconds, never per request.
    ///
    /// `mint_count` is the number minted since the last save: it is added to
    /// the stored count, so several replicas' counts add up.
    /// `last_minted_at` becomes the later of the stored and the given time.
    /// Records for entries that are no longer registered are skipped, so a
    /// late batch cannot bring back a deleted entry's usage.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    async fn record_usage(&self, usage: &[UsageRecord]) -> Result<(), StoreError>;

    /// Every saved usage record, in entry id order.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    async fn usage(&self) -> Result<Vec<UsageRecord>, StoreError>;

    /// Records a one-time key (an attestation token's `jti` or hash) until
    /// `expires_at`, atomically: `Ok(true)` when it was not recorded yet (or
    /// its earlier record has expired), `Ok(false)` when this is a replay.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the store cannot answer: the caller
    /// must fail closed.
    async fn use_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError>;

    /// Saves a challenge nonce (x509pop) for a single use.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] if the id exists, or [`StoreError::Unavailable`].
    async fn insert_challenge(
        &self,
        id: &str,
        nonce: &[u8],
        expires_at: i64,
    ) -> Result<(), StoreError>;

    /// Removes and returns a challenge `(nonce, expires_at)`, atomically, so
    /// a nonce is answered at most once; `None` when unknown or already taken.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    async fn take_challenge(&self, id: &str) -> Result<Option<(Vec<u8>, i64)>, StoreError>;

    /// Forgets one-time keys and challenges that expired before `now`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn prune_one_time(&self, now: i64) -> Result<usize, StoreError>;

    /// Saves a revocation, replacing the one with the same key
    /// (`kind:value`). Durable when it returns.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn put_revocation(&self, revocation: &Revocation) -> Result<(), StoreError>;

    /// Saves many revocations, as [`put_revocation`](Self::put_revocation) does each: in
    /// one transaction where the store has them (embedded), or pipelined on one
    /// connection (Redis), so that a bulk revoke is not one round trip or fsync apiece.
    /// The default saves them one by one.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; with the embedded store none is saved then, with
    /// Redis some may be (saving them again is harmless).
    async fn put_revocations(&self, revocations: &[Revocation]) -> Result<(), StoreError> {
        for revocation in revocations {
            self.put_revocation(revocation).await?;
        }
        Ok(())
    }

    /// Deletes the revocation with this key; `false` if there was none.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn delete_revocation(&self, key: &str) -> Result<bool, StoreError>;

    /// Every saved revocation, expired or not, in key order.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    async fn list_revocations(&self) -> Result<Vec<Revocation>, StoreError>;

    /// Up to `limit` saved revocations, expired or not, whose key
    /// (`kind:value`) sorts after `after` (from the first when `None`), in
    /// key order: one step of a listing that resumes after the last key it
    /// saw, so that revocations put or deleted in between do not shift the
    /// others. Fewer than `limit` only when no more follow. Keys compare
    /// bytewise, as [`Revocation::key`] strings do in Rust.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    async fn revocations_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Revocation>, StoreError>;

    /// Deletes the revocations that have expired at `now` (they cover no
    /// live credential); returns their keys.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    async fn prune_revocations(&self, now: i64) -> Result<Vec<String>, StoreError>;

    /// Publishes (or refreshes) this replica's public keys, so that every
    /// replica serves the union. The record is live until `keep_until`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn publish_replica(&self, replica: &ReplicaRecord) -> Result<(), StoreError>;

    /// The replicas whose records are live at `now`, in id order.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    async fn live_replicas(&self, now: i64) -> Result<Vec<ReplicaRecord>, StoreError>;

    /// Publishes this replica's latest signed audit checkpoint, with its key hand-overs,
    /// replacing the one published before: a witness outside the host that the other
    /// replicas cross-check, and that this replica's log is compared with at its next start.
    ///
    /// The default (the embedded store, which has no one to witness for) does nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Internal`] if `record.replica` is not
    /// `replica`.
    async fn publish_audit_checkpoint(
        &self,
        _replica: &str,
        _record: &AuditAnchorRecord,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// Every replica's published audit checkpoint, in replica id order. The default (the
    /// embedded store) has none.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], or [`StoreError::Corrupt`] if a record cannot be
    /// decoded (it names the replica).
    async fn audit_checkpoints(&self) -> Result<Vec<AuditAnchorRecord>, StoreError> {
        Ok(Vec::new())
    }

    /// The audit checkpoint `replica` published last, if any. The default (the embedded
    /// store) has none.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    async fn audit_checkpoint(
        &self,
        _replica: &str,
    ) -> Result<Option<AuditAnchorRecord>, StoreError> {
        Ok(None)
    }

    /// Every registered audience, in name order.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], or [`StoreError::Corrupt`] if a stored
    /// record cannot be decoded.
    async fn list_audiences(&self) -> Result<Vec<AudienceRecord>, StoreError>;

    /// Registers a new audience (and tells the other replicas).
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] if an audience with this name exists;
    /// [`StoreError::Unavailable`].
    async fn create_audience(&self, record: &AudienceRecord) -> Result<(), StoreError>;

    /// Replaces the audience named `record.name` if its stored revision is
    /// `expected_revision` (optimistic concurrency, as for entries).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] if absent; [`StoreError::Conflict`] if the
    /// stored revision differs; [`StoreError::Internal`] if
    /// `record.revision` is not greater than `expected_revision`;
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn update_audience(
        &self,
        record: &AudienceRecord,
        expected_revision: u64,
    ) -> Result<(), StoreError>;

    /// Removes and returns the audience with this name.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] if absent; [`StoreError::Unavailable`];
    /// [`StoreError::Corrupt`].
    async fn delete_audience(&self, name: &str) -> Result<AudienceRecord, StoreError>;

    /// Every break-glass grant (`crate::breakglass`), in id order.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], or [`StoreError::Corrupt`] if a stored
    /// record cannot be decoded.
    async fn list_grants(&self) -> Result<Vec<GrantRecord>, StoreError>;

    /// The break-glass grant with this id, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    async fn grant(&self, id: &str) -> Result<Option<GrantRecord>, StoreError>;

    /// Records a new break-glass grant.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] if a grant with this id exists;
    /// [`StoreError::Unavailable`].
    async fn create_grant(&self, record: &GrantRecord) -> Result<(), StoreError>;

    /// Replaces grant `record.id` if its stored revision is
    /// `expected_revision` (optimistic concurrency, as for entries): the
    /// one write that approves, uses, ends or reviews a grant.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] if absent; [`StoreError::Conflict`] if the
    /// stored revision differs; [`StoreError::Internal`] if
    /// `record.revision` is not greater than `expected_revision`;
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`].
    async fn update_grant(
        &self,
        record: &GrantRecord,
        expected_revision: u64,
    ) -> Result<(), StoreError>;

    /// What the store is, for status output, without secrets: `embedded
    /// <path>` or `redis <host:port>`.
    fn describe(&self) -> String;

    /// The changes other writers make, for a store shared by several
    /// replicas: the receiver gets a [`StoreEvent::Snapshot`] first, then
    /// every change, heartbeats and resyncs. `None` when this process is the
    /// only writer (the embedded store), so the local indexes are the truth.
    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<StoreEvent>> {
        None
    }
}

/// A replica's public keys, as published to a shared store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    /// Stable id of the replica (kept in its data directory).
    pub replica_id: String,
    /// A JWKS document (JSON) of its JWT signing keys.
    pub jwks: String,
    /// Unix seconds of this publication.
    pub published_at: i64,
    /// Unix seconds until which its keys are served: past its last
    /// heartbeat by the longest JWT lifetime, so tokens it signed keep
    /// validating after it is gone.
    pub keep_until: i64,
}

/// A replica's latest signed audit checkpoint and the key hand-overs that vouch for it, as
/// published to a shared store ([`Store::publish_audit_checkpoint`]). Everything in it is
/// public (hashes, public keys, signatures): a reader checks it with
/// [`crate::audit::check_foreign`], trusting nothing the store says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditAnchorRecord {
    /// The replica whose log it is (also signed inside the checkpoint).
    pub replica: String,
    /// Its latest signed checkpoint.
    pub checkpoint: SignedCheckpoint,
    /// Its audit key's hand-overs, from the root key on (`keys.jsonl`).
    pub keys: Vec<Handover>,
    /// Unix seconds of this publication.
    pub published_at: i64,
}

/// A change to shared state made by any replica (see [`Store::subscribe`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
// An entry (with its governance state) is the largest variant; events are
// received one at a time and applied once, so boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum StoreEvent {
    /// The whole state: at the start, after a missed message or a
    /// reconnect. Replaces what the subscriber holds.
    Snapshot {
        /// Every entry.
        entries: Vec<Entry>,
        /// Every revocation.
        revocations: Vec<Revocation>,
    },
    /// An entry was created or updated.
    EntryUpserted(Entry),
    /// An entry was deleted.
    EntryDeleted(EntryId),
    /// A revocation was saved.
    RevocationPut(Revocation),
    /// A revocation was deleted (by key).
    RevocationDeleted(String),
    /// A replica published or refreshed its keys.
    ReplicasChanged,
    /// The store answered at this time (Unix milliseconds): the subscriber's
    /// view is complete as of then.
    Heard(i64),
    /// The store cannot be reached; the subscriber keeps its view and ages.
    Lost {
        /// Why, without secrets.
        reason: String,
    },
    /// Every registered audience: sent right after each
    /// [`StoreEvent::Snapshot`] (read in the same transaction). Replaces
    /// what the subscriber holds.
    AudiencesReplaced(Vec<AudienceRecord>),
    /// An audience was registered or updated.
    AudienceUpserted(AudienceRecord),
    /// An audience was deleted (by name).
    AudienceDeleted(String),
}

/// How much an entry has been used: the inventory's answer to "is anything
/// still using this identity?".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// The entry.
    pub entry_id: EntryId,
    /// Unix seconds of the last credential minted for it.
    pub last_minted_at: i64,
    /// Credentials minted for it in total.
    pub mint_count: u64,
    /// The X509-SVIDs among them. Records saved before this was kept read
    /// as zero.
    #[serde(default, skip_serializing_if = "UsageCount::is_zero")]
    pub x509: UsageCount,
    /// The JWT-SVIDs among them, per audience: at most
    /// [`MAX_USAGE_AUDIENCES`] audiences (an entry has at most 64), so a
    /// record stays small. Records saved before this was kept read as empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub audiences: BTreeMap<String, UsageCount>,
}

/// How many audiences a [`UsageRecord`] counts at most; mints for further
/// audiences count only in its totals.
pub const MAX_USAGE_AUDIENCES: usize = 64;

/// When one kind of credential (or one audience) of an entry last minted,
/// and how often.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageCount {
    /// Unix seconds of the last one; 0: never.
    #[serde(default)]
    pub last_minted_at: i64,
    /// How many.
    #[serde(default)]
    pub mint_count: u64,
}

impl UsageCount {
    /// Whether it counts nothing (never minted).
    pub fn is_zero(&self) -> bool {
        self.last_minted_at == 0 && self.mint_count == 0
    }

    /// Adds `other` to it: counts add up, the later time wins.
    pub fn merge(&mut self, other: &UsageCount) {
        self.last_minted_at = self.last_minted_at.max(other.last_minted_at);
        self.mint_count = self.mint_count.saturating_add(other.mint_count);
    }
}

impl UsageRecord {
    /// Adds the usage `batch` reports to this record (same entry): counts
    /// add up, later times win, and audiences beyond
    /// [`MAX_USAGE_AUDIENCES`] are left out of the per-audience map.
    pub fn merge(&mut self, batch: &UsageRecord) {
        self.last_minted_at = self.last_minted_at.max(batch.last_minted_at);
        self.mint_count = self.mint_count.saturating_add(batch.mint_count);
        self.x509.merge(&batch.x509);
        for (audience, count) in &batch.audiences {
            if let Some(stored) = self.audiences.get_mut(audience) {
                stored.merge(count);
            } else if self.audiences.len() < MAX_USAGE_AUDIENCES {
                self.audiences.insert(audience.clone(), *count);
            }
        }
    }
}

/// Why a store operation failed.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend cannot be reached or failed to read or write (I/O, a
    /// locked file, a lost connection). Retrying later may help.
    #[error("store unavailable: {reason}")]
    Unavailable {
        /// What failed, naming the file or server.
        reason: String,
    },
    /// The write contradicts what is stored: a duplicate id or SPIFFE ID, or
    /// a stale revision. Re-read and decide again.
    #[error("conflict: {reason}")]
    Conflict {
        /// What collided.
        reason: String,
    },
    /// The thing to change does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. `entry 0123456789abcdef`.
        what: String,
    },
    /// Stored data cannot be decoded, or the store was written by an
    /// unknown schema version. Needs an operator.
    #[error("store corrupt: {reason}")]
    Corrupt {
        /// What could not be read, and where.
        reason: String,
    },
    /// A bug on our side: a store task panicked, or a caller broke a
    /// documented precondition.
    #[error("internal store error: {reason}")]
    Internal {
        /// What went wrong.
        reason: String,
    },
}

/// Why a join token could not be redeemed.
///
/// None of these carries the token; use [`TokenHash::token_id`] to name it
/// in logs.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedeemError {
    /// No such token was ever minted, or it was pruned.
    #[error("unknown join token")]
    Unknown,
    /// The token was already redeemed: a replay, or a second node with the
    /// same token.
    #[error("join token already used at {used_at}")]
    AlreadyUsed {
        /// Unix seconds of the first redemption.
        used_at: i64,
    },
    /// The token expired before it was redeemed.
    #[error("join token expired at {expired_at}")]
    Expired {
        /// Unix seconds of its expiry.
        expired_at: i64,
    },
    /// The store failed; the token was not redeemed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
