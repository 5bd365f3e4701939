//! [`EmbeddedStore`]: the single-replica store, one redb file in the data
//! directory.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{RedeemError, ReplicaRecord, Store, StoreError, UsageCount, UsageRecord};
use crate::attest::join_token::{JoinTokenRecord, TokenHash};
use crate::audience::AudienceRecord;
use crate::policy::grant::GrantRecord;
use crate::policy::{Entry, EntryId};
use mayfly_sdk::revocation::Revocation;

/// A table of JSON documents keyed by text.
type JsonTable = TableDefinition<'static, &'static str, &'static [u8]>;

/// `schema_version` → version text.
const META: TableDefinition<'static, &'static str, &'static str> = TableDefinition::new("meta");
/// Entry id → [`Entry`] JSON.
const ENTRIES: JsonTable = TableDefinition::new("entries");
/// SPIFFE ID → entry id; keeps SPIFFE IDs unique.
const SPIFFE_IDS: TableDefinition<'static, &'static str, &'static str> =
    TableDefinition::new("spiffe_ids");
/// Token hash (hex) → [`JoinTokenRecord`] JSON.
const JOIN_TOKENS: JsonTable = TableDefinition::new("join_tokens");
/// Entry id → [`UsageRecord`] JSON.
const USAGE: JsonTable = TableDefinition::new("usage");
/// One-time keys (attestation replay guards) → expiry, unix seconds.
const ONE_TIME: TableDefinition<'static, &'static str, i64> = TableDefinition::new("one_time");
/// Challenge id → expiry (8 bytes, big-endian) followed by the nonce.
const CHALLENGES: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("challenges");
/// Revocation key (`kind:value`) → [`Revocation`] JSON.
const REVOCATIONS: JsonTable = TableDefinition::new("revocations");
/// Audience name → [`AudienceRecord`] JSON. Added without a schema change:
/// a file without it gets it on open.
const AUDIENCES: JsonTable = TableDefinition::new("audiences");
/// Grant id → [`GrantRecord`] JSON.
const GRANTS: JsonTable = TableDefinition::new("grants");

const SCHEMA_VERSION_KEY: &str = "schema_version";
const SCHEMA_VERSION: &str = "1";

/// The store holds kilobytes per entry; redb's default cache (1 GiB) is
/// sized for far larger databases. Nothing on the hot paths reads the store
/// (policy and revocations are in memory), and the broker reads it whole only
/// at start. 4 MiB still keeps the B-trees' upper pages of a million rows:
/// bulk revocations ran at 29-30k/s with it as with 8 MiB, and the broker
/// with 100k entries and 1M revocations held 191 MiB instead of 201 MiB
/// (BENCHMARKS.md, 2026-12-04 (fifth)).
const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Store operations on Tokio's blocking pool at once. redb has one writer
/// at a time, so more buy nothing, and each blocking thread keeps the memory
/// its operations freed until it exits: 32 concurrent bulk revocations grew
/// the broker to 510 MiB on 38 threads, against 153 MiB one at a time.
const MAX_CONCURRENT_OPERATIONS: usize = 4;

/// The embedded, single-replica [`Store`]: one ACID redb file, written by one
/// process at a time.
///
/// Every commit is durable (fsynced) before the call returns. redb is
/// synchronous, so each operation runs on Tokio's blocking pool; cloning
/// the store is cheap and shares the open database.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: Arc<PathBuf>,
    /// [`MAX_CONCURRENT_OPERATIONS`] permits, one held by each operation
    /// until it ends on its blocking thread.
    operations: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// The file name the broker uses inside its data directory.
    pub const FILE_NAME: &'static str = "store.redb";

    /// Opens the store file at `path` (normally `<data dir>/store.redb`,
    /// see [`EmbeddedStore::FILE_NAME`]), creating it with mode 0600 if
    /// missing and tightening a looser mode to 0600.
    ///
    /// Blocks while the file is opened and its integrity checked; call it at
    /// startup or from a blocking task.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] naming the path if the file cannot be
    /// created or opened, or if another process (or another store in this
    /// one) has it open; [`StoreError::Corrupt`] if it is not a valid store
    /// or was written by an unknown schema version.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        create_private_file(path)?;
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            // Verify checksums on open, so a damaged file is reported as
            // Corrupt instead of being trusted.
            .set_check_integrity_on_open(true)
            .create(path)
            .map_err(|error| open_error(path, error))?;
        initialize(&db, path)?;
        tracing::debug!(path = %path.display(), "embedded store open");
        Ok(EmbeddedStore {
            db: Arc::new(db),
            path: Arc::new(path.to_owned()),
            operations: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_OPERATIONS)),
        })
    }

    /// The store file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a synchronous redb operation on the blocking pool.
    async fn run<T, E>(
        &self,
        operation: impl FnOnce(&Database) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        // Held on the blocking thread: a caller that stops waiting does not
        // free the slot before the operation has ended.
        let permit = Arc::clone(&self.operations)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable {
                reason: "the store is closed".into(),
            })?;
        let operation = move || {
            let result = operation(&db);
            drop(permit);
            result
        };
        match tokio::task::spawn_blocking(operation).await {
            Ok(result) => result,
            Err(error) if error.is_panic() => Err(StoreError::Internal {
                reason: format!("store task panicked: {error}"),
            }
            .into()),
            Err(error) => Err(StoreError::Unavailable {
                reason: format!("store task cancelled: {error}"),
            }
            .into()),
        }
    }
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn list_entries(&self) -> Result<Vec<Entry>, StoreError> {
        self.run(|db| read_all(db, ENTRIES, "entry")).await
    }

    async fn entries_after(
        &self,
        after: Option<&EntryId>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let after = after.cloned();
        self.run(move |db| {
            read_after(
                db,
                ENTRIES,
                "entry",
                after.as_ref().map(EntryId::as_str),
                limit,
            )
        })
        .await
    }

    async fn entry(&self, id: &EntryId) -> Result<Option<Entry>, StoreError> {
        let id = id.clone();
        self.run(move |db| read_one(db, ENTRIES, "entry", id.as_str()))
            .await
    }

    async fn create_entry(&self, entry: &Entry) -> Result<(), StoreError> {
        let entry = entry.clone();
        self.run(move |db| write(db, |txn| create_entry(txn, &entry)))
            .await
    }

    async fn update_entry(&self, entry: &Entry, expected_revision: u64) -> Result<(), StoreError> {
        if entry.revision <= expected_revision {
            return Err(StoreError::Internal {
                reason: format!(
                    "update of entry {} to revision {} does not raise expected revision {expected_revision}",
                    entry.id, entry.revision
                ),
            });
        }
        let entry = entry.clone();
        self.run(move |db| write(db, |txn| update_entry(txn, &entry, expected_revision)))
            .await
    }

    async fn delete_entry(&self, id: &EntryId) -> Result<Entry, StoreError> {
        let id = id.clone();
        self.run(move |db| write(db, |txn| delete_entry(txn, &id)))
            .await
    }

    async fn insert_join_token(&self, record: &JoinTokenRecord) -> Result<(), StoreError> {
        let record = record.clone();
        self.run(move |db| write(db, |txn| insert_join_token(txn, &record)))
            .await
    }

    async fn join_token(&self, hash: &TokenHash) -> Result<Option<JoinTokenRecord>, StoreError> {
        let hash = hash.clone();
        self.run(move |db| read_one(db, JOIN_TOKENS, "join token", hash.as_str()))
            .await
    }

    async fn redeem_join_token(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> Result<JoinTokenRecord, RedeemError> {
        let hash = hash.clone();
        self.run(move |db| write(db, |txn| redeem_join_token(txn, &hash, now)))
            .await
    }

    async fn prune_join_tokens(&self, before: i64) -> Result<usize, StoreError> {
        self.run(move |db| write(db, |txn| prune_join_tokens(txn, before)))
            .await
    }

    async fn record_usage(&self, usage: &[UsageRecord]) -> Result<(), StoreError> {
        if usage.is_empty() {
            return Ok(());
        }
        let usage = usage.to_vec();
        self.run(move |db| write(db, |txn| record_usage(txn, &usage)))
            .await
    }

    async fn usage(&self) -> Result<Vec<UsageRecord>, StoreError> {
        self.run(|db| read_all(db, USAGE, "usage record")).await
    }

    async fn use_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.run(move |db| {
            write(db, |txn| {
                let mut table = txn.open_table(ONE_TIME).map_err(backend)?;
                let live = table
                    .get(key.as_str())
                    .map_err(backend)?
                    .is_some_and(|until| until.value() >= now);
                if live {
                    return Ok(false);
                }
                table.insert(key.as_str(), expires_at).map_err(backend)?;
                Ok(true)
            })
        })
        .await
    }

    async fn insert_challenge(
        &self,
        id: &str,
        nonce: &[u8],
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let id = id.to_owned();
        let mut value = expires_at.to_be_bytes().to_vec();
        value.extend_from_slice(nonce);
        self.run(move |db| {
            write(db, |txn| {
                let mut table = txn.open_table(CHALLENGES).map_err(backend)?;
                if table.get(id.as_str()).map_err(backend)?.is_some() {
                    return Err(StoreError::Conflict {
                        reason: format!("challenge {id} already exists"),
                    });
                }
                table
                    .insert(id.as_str(), value.as_slice())
                    .map_err(backend)?;
                Ok(())
            })
        })
        .await
    }

    async fn take_challenge(&self, id: &str) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
        let id = id.to_owned();
        self.run(move |db| {
            write(db, |txn| {
                let mut table = txn.open_table(CHALLENGES).map_err(backend)?;
                let Some(value) = table.remove(id.as_str()).map_err(backend)? else {
                    return Ok(None);
                };
                let bytes = value.value();
                let Some((expiry, nonce)) = bytes.split_first_chunk::<8>() else {
                    return Err(StoreError::Corrupt {
                        reason: format!("challenge {id} is too short"),
                    });
                };
                Ok(Some((nonce.to_vec(), i64::from_be_bytes(*expiry))))
            })
        })
        .await
    }

    async fn prune_one_time(&self, now: i64) -> Result<usize, StoreError> {
        self.run(move |db| {
            write(db, |txn| {
                let mut keys = txn.open_table(ONE_TIME).map_err(backend)?;
                let before = keys.len().map_err(backend)?;
                keys.retain(|_, until| until >= now).map_err(backend)?;
                let after = keys.len().map_err(backend)?;
                let mut challenges = txn.open_table(CHALLENGES).map_err(backend)?;
                let before_challenges = challenges.len().map_err(backend)?;
                challenges
                    .retain(|_, value| {
                        value
                            .first_chunk::<8>()
                            .is_some_and(|expiry| i64::from_be_bytes(*expiry) >= now)
                    })
                    .map_err(backend)?;
                let after_challenges = challenges.len().map_err(backend)?;
                let removed = (before - after) + (before_challenges - after_challenges);
                Ok(usize::try_from(removed).unwrap_or(usize::MAX))
            })
        })
        .await
    }

    async fn put_revocation(&self, revocation: &Revocation) -> Result<(), StoreError> {
        let key = revocation.key();
        let json = encode("revocation", &key, revocation)?;
        self.run(move |db| {
            write(db, |txn| {
                let mut table = txn.open_table(REVOCATIONS).map_err(backend)?;
                table
                    .insert(key.as_str(), json.as_slice())
                    .map_err(backend)?;
                Ok(())
            })
        })
        .await
    }

    async fn put_revocations(&self, revocations: &[Revocation]) -> Result<(), StoreError> {
        let rows = revocations
            .iter()
            .map(|revocation| {
                let key = revocation.key();
                let json = encode("revocation", &key, revocation)?;
                Ok((key, json))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.run(move |db| {
            write(db, |txn| {
                let mut table = txn.open_table(REVOCATIONS).map_err(backend)?;
                for (key, json) in &rows {
                    table
                        .insert(key.as_str(), json.as_slice())
                        .map_err(backend)?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn delete_revocation(&self, key: &str) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.run(move |db| {
            write(db, |txn| {
                let mut table = txn.open_table(REVOCATIONS).map_err(backend)?;
                let removed = table.remove(key.as_str()).map_err(backend)?.is_some();
                Ok(removed)
            })
        })
        .await
    }

    async fn list_revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        self.run(|db| read_all(db, REVOCATIONS, "revocation")).await
    }

    async fn revocations_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Revocation>, StoreError> {
        let after = after.map(str::to_owned);
        self.run(move |db| read_after(db, REVOCATIONS, "revocation", after.as_deref(), limit))
            .await
    }

    async fn prune_revocations(&self, now: i64) -> Result<Vec<String>, StoreError> {
        self.run(move |db| {
            write(db, |txn| {
                let mut table = txn.open_table(REVOCATIONS).map_err(backend)?;
                let mut expired = Vec::new();
                for row in table.iter().map_err(backend)? {
                    let (key, value) = row.map_err(backend)?;
                    let revocation: Revocation = decode("revocation", key.value(), value.value())?;
                    if revocation.is_expired(now) {
                        expired.push(key.value().to_owned());
                    }
                }
                for key in &expired {
                    table.remove(key.as_str()).map_err(backend)?;
                }
                Ok(expired)
            })
        })
        .await
    }

    /// One replica: there is nobody to publish to.
    async fn publish_replica(&self, _replica: &ReplicaRecord) -> Result<(), StoreError> {
        Ok(())
    }

    /// One replica: its own keys are served from memory.
    async fn live_replicas(&self, _now: i64) -> Result<Vec<ReplicaRecord>, StoreError> {
        Ok(Vec::new())
    }

    async fn list_audiences(&self) -> Result<Vec<AudienceRecord>, StoreError> {
        self.run(|db| read_all(db, AUDIENCES, "audience")).await
    }

    async fn create_audience(&self, record: &AudienceRecord) -> Result<(), StoreError> {
        let name = record.name.as_str().to_owned();
        let json = encode("audience", &name, record)?;
        self.run(move |db| {
            write(db, |txn| {
                let mut table = txn.open_table(AUDIENCES).map_err(backend)?;
                if table.get(name.as_str()).map_err(backend)?.is_some() {
                    return Err(StoreError::Conflict {
                        reason: format!("audience {name:?} already exists"),
                    });
                }
                table
                    .insert(name.as_str(), json.as_slice())
                    .map_err(backend)?;
                Ok(())
            })
        })
        .await
    }

    async fn update_audience(
        &self,
        record: &AudienceRecord,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        let name = record.name.as_str().to_owned();
        if record.revision <= expected_revision {
            return Err(StoreError::Internal {
                reason: format!(
                    "update of audience {name:?} to revision {} does not raise expected revision {expected_revision}",
                    record.revision
                ),
            });
        }
        let json = encode("audience", &name, record)?;
        self.run(move |db| {
            write(db, |txn| {
                let mut table = txn.open_table(AUDIENCES).map_err(backend)?;
                let stored: AudienceRecord = get_json(&table, "audience", &name)?.ok_or_else(
                    || StoreError::NotFound {
                        what: format!("audience {name:?}"),
                    },
                )?;
                if stored.revision != expected_revision {
                    return Err(StoreError::Conflict {
                        reason: format!(
                            "audience {name:?} is at revision {}, not {expected_revision}; it changed since it was read",
                            stored.revision
                        ),
                    });
                }
                table
                    .insert(name.as_str(), json.as_slice())
                    .map_err(backend)?;
                Ok(())
            })
        })
        .await
    }

    async fn delete_audience(&self, name: &str) -> Result<AudienceRecord, StoreError> {
        let name = name.to_owned();
        self.run(move |db| {
            write(db, |txn| {
                let mut table = txn.open_table(AUDIENCES).map_err(backend)?;
                let Some(value) = table.remove(name.as_str()).map_err(backend)? else {
                    return Err(StoreError::NotFound {
                        what: format!("audience {name:?}"),
                    });
                };
                decode("audience", &name, value.value())
            })
        })
        .await
    }

    async fn list_grants(&self) -> Result<Vec<GrantRecord>, StoreError> {
        self.run(|db| read_all(db, GRANTS, "grant")).await
    }

    async fn grant(&self, id: &str) -> Result<Option<GrantRecord>, StoreError> {
        let id = id.to_owned();
        self.run(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(GRANTS).map_err(backend)?;
            get_json(&table, "grant", &id)
        })
        .await
    }

    async fn create_grant(&self, record: &GrantRecord) -> Result<(), StoreError> {
        let id = record.id.clone();
        let json = encode("grant", &id, record)?;
        self.run(move |db| {
            write(db, |txn| {
                let mut table = txn.open_table(GRANTS).map_err(backend)?;
                if table.get(id.as_str()).map_err(backend)?.is_some() {
                    return Err(StoreError::Conflict {
                        reason: format!("grant {id} already exists"),
                    });
                }
                table
                    .insert(id.as_str(), json.as_slice())
                    .map_err(backend)?;
                Ok(())
            })
        })
        .await
    }

    async fn update_grant(
        &self,
        record: &GrantRecord,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        let id = record.id.clone();
        if record.revision <= expected_revision {
            return Err(StoreError::Internal {
                reason: format!(
                    "update of grant {id} to revision {} does not raise expected revision {expected_revision}",
                    record.revision
                ),
            });
        }
        let json = encode("grant", &id, record)?;
        self.run(move |db| {
            write(db, |txn| {
                let mut table = txn.open_table(GRANTS).map_err(backend)?;
                let stored: GrantRecord =
                    get_json(&table, "grant", &id)?.ok_or_else(|| StoreError::NotFound {
                        what: format!("grant {id}"),
                    })?;
                if stored.revision != expected_revision {
                    return Err(StoreError::Conflict {
                        reason: format!(
                            "grant {id} is at revision {}, not {expected_revision}; it changed since it was read",
                            stored.revision
                        ),
                    });
                }
                table.insert(id.as_str(), json.as_slice()).map_err(backend)?;
                Ok(())
            })
        })
        .await
    }

    fn describe(&self) -> String {
        format!("embedded {}", self.path.display())
    }
}

// ---------------------------------------------------------------------------
// Opening

/// Creates the file with mode 0600 before redb opens it, so it is never
/// readable by others, even for a moment.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let unavailable = |action: &str, error: std::io::Error| StoreError::Unavailable {
        reason: format!("cannot {action} {}: {error}", path.display()),
    };
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path).map_err(|e| unavailable("create", e))?;
        let metadata = file.metadata().map_err(|e| unavailable("inspect", e))?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "store file was readable by others; setting mode 0600");
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| unavailable("restrict permissions of", e))?;
        }
    }
    #[cfg(not(unix))]
    {
        options.open(path).map_err(|e| unavailable("create", e))?;
    }
    Ok(())
}

fn open_error(path: &Path, error: DatabaseError) -> StoreError {
    let path = path.display();
    match error {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            StoreError::Unavailable {
                reason: format!(
                    "{path} is in use by another process; is another mayfly server running on this data directory?"
                ),
            }
        }
        DatabaseError::UpgradeRequired(version) => StoreError::Corrupt {
            reason: format!("{path} uses redb file format {version}, which this build cannot read"),
        },
        DatabaseError::Storage(redb::StorageError::Corrupted(reason)) => StoreError::Corrupt {
            reason: format!("{path}: {reason}"),
        },
        other => StoreError::Unavailable {
            reason: format!("cannot open {path}: {other}"),
        },
    }
}

/// Creates every table and checks (or, in a new file, writes) the schema
/// version, in one transaction.
fn initialize(db: &Database, path: &Path) -> Result<(), StoreError> {
    write(db, |txn| {
        {
            let mut meta = txn.open_table(META).map_err(backend)?;
            let version = meta
                .get(SCHEMA_VERSION_KEY)
                .map_err(backend)?
                .map(|guard| guard.value().to_owned());
            match version.as_deref() {
                None => {
                    meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)
                        .map_err(backend)?;
                    tracing::info!(path = %path.display(), "created embedded store");
                }
                Some(SCHEMA_VERSION) => {}
                Some(other) => {
                    return Err(StoreError::Corrupt {
                        reason: format!(
                            "{} has store schema version {other:?}; this build knows {SCHEMA_VERSION:?}",
                            path.display()
                        ),
                    });
                }
            }
        }
        for table in [ENTRIES, JOIN_TOKENS, USAGE, REVOCATIONS, AUDIENCES, GRANTS] {
            txn.open_table(table).map_err(backend)?;
        }
        txn.open_table(SPIFFE_IDS).map_err(backend)?;
        txn.open_table(ONE_TIME).map_err(backend)?;
        txn.open_table(CHALLENGES).map_err(backend)?;
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Transactions and encoding

/// Runs `body` in one write transaction, committing only if it succeeds;
/// on error the transaction is dropped, which rolls it back.
fn write<T, E: From<StoreError>>(
    db: &Database,
    body: impl FnOnce(&WriteTransaction) -> Result<T, E>,
) -> Result<T, E> {
    let txn = db.begin_write().map_err(backend)?;
    let value = body(&txn)?;
    txn.commit().map_err(backend)?;
    Ok(value)
}

fn read_all<T: DeserializeOwned>(
    db: &Database,
    table: JsonTable,
    what: &str,
) -> Result<Vec<T>, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    let table = txn.open_table(table).map_err(backend)?;
    let mut values =
        Vec::with_capacity(usize::try_from(table.len().map_err(backend)?).unwrap_or(0));
    for row in table.iter().map_err(backend)? {
        let (key, value) = row.map_err(backend)?;
        values.push(decode(what, key.value(), value.value())?);
    }
    Ok(values)
}

/// Up to `limit` rows of `table` whose key sorts after `after` (from the
/// first when `None`), decoded, in key order: a range read, so a page costs
/// what it returns, not the table's size.
fn read_after<T: DeserializeOwned>(
    db: &Database,
    table: JsonTable,
    what: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<T>, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    let table = txn.open_table(table).map_err(backend)?;
    let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
    let rows = table
        .range::<&str>((lower, Bound::Unbounded))
        .map_err(backend)?;
    let mut values = Vec::with_capacity(limit.min(1024));
    for row in rows.take(limit) {
        let (key, value) = row.map_err(backend)?;
        values.push(decode(what, key.value(), value.value())?);
    }
    Ok(values)
}

fn read_one<T: DeserializeOwned>(
    db: &Database,
    table: JsonTable,
    what: &str,
    key: &str,
) -> Result<Option<T>, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    let table = txn.open_table(table).map_err(backend)?;
    let value = table.get(key).map_err(backend)?;
    value
        .map(|guard| decode(what, key, guard.value()))
        .transpose()
}

/// Reads and decodes one JSON row inside a write transaction.
fn get_json<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    what: &str,
    key: &str,
) -> Result<Option<T>, StoreError> {
    let value = table.get(key).map_err(backend)?;
    value
        .map(|guard| decode(what, key, guard.value()))
        .transpose()
}

fn decode<T: DeserializeOwned>(what: &str, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|error| StoreError::Corrupt {
        reason: format!("{what} {key}: {error}"),
    })
}

fn encode(what: &str, key: &str, value: &impl Serialize) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|error| StoreError::Internal {
        reason: format!("cannot encode {what} {key}: {error}"),
    })
}

/// Maps a redb error; its type does not leave this module.
fn backend(error: impl Into<redb::Error>) -> StoreError {
    match error.into() {
        redb::Error::Corrupted(reason) => StoreError::Corrupt { reason },
        other => StoreError::Unavailable {
            reason: other.to_string(),
        },
    }
}

fn entry_not_found(id: &EntryId) -> StoreError {
    StoreError::NotFound {
        what: format!("entry {id}"),
    }
}

// ---------------------------------------------------------------------------
// Operations, each inside one write transaction

fn create_entry(txn: &WriteTransaction, entry: &Entry) -> Result<(), StoreError> {
    let id = entry.id.as_str();
    let spiffe_id = entry.spiffe_id.as_str();
    let mut entries = txn.open_table(ENTRIES).map_err(backend)?;
    let mut spiffe_ids = txn.open_table(SPIFFE_IDS).map_err(backend)?;
    if entries.get(id).map_err(backend)?.is_some() {
        return Err(StoreError::Conflict {
            reason: format!("entry {id} already exists"),
        });
    }
    if let Some(owner) = spiffe_ids.get(spiffe_id).map_err(backend)? {
        return Err(StoreError::Conflict {
            reason: format!(
                "{spiffe_id} is already registered as entry {}",
                owner.value()
            ),
        });
    }
    entries
        .insert(id, encode("entry", id, entry)?.as_slice())
        .map_err(backend)?;
    spiffe_ids.insert(spiffe_id, id).map_err(backend)?;
    Ok(())
}

fn update_entry(
    txn: &WriteTransaction,
    entry: &Entry,
    expected_revision: u64,
) -> Result<(), StoreError> {
    let id = entry.id.as_str();
    let mut entries = txn.open_table(ENTRIES).map_err(backend)?;
    let mut spiffe_ids = txn.open_table(SPIFFE_IDS).map_err(backend)?;
    let stored: Entry =
        get_json(&entries, "entry", id)?.ok_or_else(|| entry_not_found(&entry.id))?;
    if stored.revision != expected_revision {
        return Err(StoreError::Conflict {
            reason: format!(
                "entry {id} is at revision {}, not {expected_revision}; it changed since it was read",
                stored.revision
            ),
        });
    }
    let old_spiffe_id = stored.spiffe_id.as_str();
    let new_spiffe_id = entry.spiffe_id.as_str();
    if old_spiffe_id != new_spiffe_id {
        let owner = spiffe_ids
            .get(new_spiffe_id)
            .map_err(backend)?
            .map(|guard| guard.value().to_owned());
        if let Some(owner) = owner.filter(|owner| owner != id) {
            return Err(StoreError::Conflict {
                reason: format!("{new_spiffe_id} is already registered as entry {owner}"),
            });
        }
        remove_spiffe_id_of(&mut spiffe_ids, old_spiffe_id, id)?;
    }
    spiffe_ids.insert(new_spiffe_id, id).map_err(backend)?;
    entries
        .insert(id, encode("entry", id, entry)?.as_slice())
        .map_err(backend)?;
    Ok(())
}

fn delete_entry(txn: &WriteTransaction, id: &EntryId) -> Result<Entry, StoreError> {
    let mut entries = txn.open_table(ENTRIES).map_err(backend)?;
    let mut spiffe_ids = txn.open_table(SPIFFE_IDS).map_err(backend)?;
    let mut usage = txn.open_table(USAGE).map_err(backend)?;
    let removed: Entry = entries
        .remove(id.as_str())
        .map_err(backend)?
        .map(|guard| decode("entry", id.as_str(), guard.value()))
        .transpose()?
        .ok_or_else(|| entry_not_found(id))?;
    remove_spiffe_id_of(&mut spiffe_ids, removed.spiffe_id.as_str(), id.as_str())?;
    usage.remove(id.as_str()).map_err(backend)?;
    Ok(removed)
}

/// Removes `spiffe_id → id`, leaving a mapping to another entry alone.
fn remove_spiffe_id_of(
    spiffe_ids: &mut redb::Table<'_, &'static str, &'static str>,
    spiffe_id: &str,
    id: &str,
) -> Result<(), StoreError> {
    let owned_by_id = spiffe_ids
        .get(spiffe_id)
        .map_err(backend)?
        .is_some_and(|owner| owner.value() == id);
    if owned_by_id {
        spiffe_ids.remove(spiffe_id).map_err(backend)?;
    }
    Ok(())
}

fn insert_join_token(txn: &WriteTransaction, record: &JoinTokenRecord) -> Result<(), StoreError> {
    let key = record.hash.as_str();
    let entries = txn.open_table(ENTRIES).map_err(backend)?;
    let mut tokens = txn.open_table(JOIN_TOKENS).map_err(backend)?;
    if entries
        .get(record.entry_id.as_str())
        .map_err(backend)?
        .is_none()
    {
        return Err(entry_not_found(&record.entry_id));
    }
    if tokens.get(key).map_err(backend)?.is_some() {
        return Err(StoreError::Conflict {
            reason: format!("join token {} already exists", record.hash.token_id()),
        });
    }
    tokens
        .insert(
            key,
            encode("join token", &record.hash.token_id(), record)?.as_slice(),
        )
        .map_err(backend)?;
    Ok(())
}

fn redeem_join_token(
    txn: &WriteTransaction,
    hash: &TokenHash,
    now: i64,
) -> Result<JoinTokenRecord, RedeemError> {
    let mut tokens = txn.open_table(JOIN_TOKENS).map_err(backend)?;
    let mut record: JoinTokenRecord =
        get_json(&tokens, "join token", hash.as_str())?.ok_or(RedeemError::Unknown)?;
    if let Some(used_at) = record.used_at {
        return Err(RedeemError::AlreadyUsed { used_at });
    }
    if record.is_expired(now) {
        return Err(RedeemError::Expired {
            expired_at: record.expires_at,
        });
    }
    record.used_at = Some(now);
    tokens
        .insert(
            hash.as_str(),
            encode("join token", &hash.token_id(), &record)?.as_slice(),
        )
        .map_err(backend)?;
    Ok(record)
}

fn prune_join_tokens(txn: &WriteTransaction, before: i64) -> Result<usize, StoreError> {
    let mut tokens = txn.open_table(JOIN_TOKENS).map_err(backend)?;
    let mut expired = Vec::new();
    for row in tokens.iter().map_err(backend)? {
        let (key, value) = row.map_err(backend)?;
        let record: JoinTokenRecord = decode("join token", key.value(), value.value())?;
        if record.expires_at < before {
            expired.push(key.value().to_owned());
        }
    }
    for key in &expired {
        tokens.remove(key.as_str()).map_err(backend)?;
    }
    Ok(expired.len())
}

fn record_usage(txn: &WriteTransaction, batch: &[UsageRecord]) -> Result<(), StoreError> {
    let entries = txn.open_table(ENTRIES).map_err(backend)?;
    let mut usage = txn.open_table(USAGE).map_err(backend)?;
    for record in batch {
        let id = record.entry_id.as_str();
        if entries.get(id).map_err(backend)?.is_none() {
            continue;
        }
        let stored: Option<UsageRecord> = get_json(&usage, "usage record", id)?;
        // A first record starts from nothing, so that the audience bound
        // applies to it too.
        let mut merged = stored.unwrap_or_else(|| UsageRecord {
            entry_id: record.entry_id.clone(),
            last_minted_at: 0,
            mint_count: 0,
            x509: UsageCount::default(),
            audiences: BTreeMap::new(),
        });
        merged.merge(record);
        usage
            .insert(id, encode("usage record", id, &merged)?.as_slice())
            .map_err(backend)?;
    }
    Ok(())
}

// The contract every store keeps is tested once for both, in
// `tests/store_contract/`; these tests are about the file.
#[cfg(test)]
mod tests;
