//! The store factory: what each case of the suite runs against.
//!
//! A case gets two handles on one store, `a` and `b`, and writes through one
//! and reads through the other where that matters, the way two replicas
//! share a store. For Redis they are two connections under a fresh key
//! prefix, so every atomic write is checked across connections; for the
//! embedded store they are two clones of one open file (redb admits a
//! single opener), which is how one broker shares it between its tasks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use mayfly::policy::{Entry, EntryId};
use mayfly::store::{EmbeddedStore, Store};
use redb::TableDefinition;
use tempfile::TempDir;

use crate::fixtures::entry;
use crate::redis_support::{PrefixGuard, Replicas};

/// Two handles on one store, and what keeps it alive (and cleans it up).
pub struct Stores {
    pub a: Arc<dyn Store>,
    pub b: Arc<dyn Store>,
    backing: Backing,
}

enum Backing {
    /// The file lives in `dir`, deleted on drop.
    Embedded { dir: TempDir },
    /// Every key is under `keys.prefix`, deleted on drop.
    Redis { keys: PrefixGuard },
}

impl Stores {
    /// A new embedded store in a temporary directory.
    pub fn embedded() -> Stores {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&embedded_path(&dir)).unwrap();
        Stores {
            a: Arc::new(store.clone()),
            b: Arc::new(store),
            backing: Backing::Embedded { dir },
        }
    }

    /// Two connections to the test Redis under a prefix of their own, or
    /// `None` when the case is skipped (no Redis, not in CI).
    pub async fn redis(case: &str) -> Option<Stores> {
        let Replicas { a, b, keys } = Replicas::connect(case).await?;
        Some(Stores {
            a: Arc::new(a),
            b: Arc::new(b),
            backing: Backing::Redis { keys },
        })
    }

    /// Registers a new entry for each path (see [`entry`]) through `a`.
    pub async fn register<const N: usize>(&self, paths: [&str; N]) -> [Entry; N] {
        let entries = paths.map(entry);
        for entry in &entries {
            self.a.create_entry(entry).await.unwrap();
        }
        entries
    }

    /// Whether several replicas share this store: then it publishes replica
    /// records and has a change feed ([`Store::subscribe`]).
    pub fn is_shared(&self) -> bool {
        matches!(self.backing, Backing::Redis { .. })
    }

    /// What [`Store::describe`] must name: the kind of store and where it is.
    pub fn description_marks(&self) -> Vec<String> {
        match &self.backing {
            Backing::Embedded { dir } => {
                vec!["embedded".into(), embedded_path(dir).display().to_string()]
            }
            Backing::Redis { keys } => vec!["redis".into(), keys.prefix.clone()],
        }
    }

    /// The same store with an undecodable entry stored under `id`, written
    /// behind the store's back as a damaged file or a foreign writer would.
    pub async fn with_undecodable_entry(self, id: &EntryId) -> Stores {
        self.with_raw("entries", id.as_str(), "{not json").await
    }

    /// The same store with `value` stored under `key` in its table (Redis:
    /// hash) `table`, behind the store's back: a record an older version
    /// wrote, or a damaged one.
    pub async fn with_raw(self, table: &str, key: &str, value: &str) -> Stores {
        let Stores { a, b, backing } = self;
        match backing {
            Backing::Redis { keys } => {
                redis::cmd("HSET")
                    .arg(keys.key(table))
                    .arg(key)
                    .arg(value)
                    .exec_async(&mut keys.connection().await)
                    .await
                    .unwrap();
                Stores {
                    a,
                    b,
                    backing: Backing::Redis { keys },
                }
            }
            Backing::Embedded { dir } => {
                // redb admits one opener per file: close ours, write, reopen.
                drop((a, b));
                let path = embedded_path(&dir);
                let db = redb::Database::create(&path).unwrap();
                let txn = db.begin_write().unwrap();
                let definition: TableDefinition<'_, &str, &[u8]> = TableDefinition::new(table);
                txn.open_table(definition)
                    .unwrap()
                    .insert(key, value.as_bytes())
                    .unwrap();
                txn.commit().unwrap();
                drop(db);
                let store = EmbeddedStore::open(&path).unwrap();
                Stores {
                    a: Arc::new(store.clone()),
                    b: Arc::new(store),
                    backing: Backing::Embedded { dir },
                }
            }
        }
    }
}

fn embedded_path(dir: &TempDir) -> PathBuf {
    dir.path().join(EmbeddedStore::FILE_NAME)
}
