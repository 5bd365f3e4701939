//! What only the embedded store has: a file that outlives the process, is
//! private, admits one opener, and is checked when opened; and pruning of
//! its replay and challenge tables, which Redis does by itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mayfly_sdk::TrustDomain;
use mayfly_sdk::revocation::RevocationKind;

use super::*;
use crate::attest::join_token::JoinTokenSecret;
use crate::policy::{EntrySpec, TtlPolicy};

const NOW: i64 = 1_700_000_000;

fn new_store() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join(EmbeddedStore::FILE_NAME)).unwrap();
    (dir, store)
}

fn node_entry() -> Entry {
    let spec = EntrySpec {
        spiffe_id: Some("spiffe://example.org/node/1".into()),
        audiences: Some(vec!["payments".into()]),
        owner: Some("team@example.org".into()),
        purpose: Some("tests".into()),
        ..EntrySpec::default()
    };
    let trust_domain = TrustDomain::new("example.org").unwrap();
    spec.create(&trust_domain, &TtlPolicy::default(), NOW)
        .unwrap()
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(EmbeddedStore::FILE_NAME);
    let node = node_entry();
    let secret = JoinTokenSecret::generate();
    let record = JoinTokenRecord {
        hash: secret.hash(),
        entry_id: node.id.clone(),
        created_at: NOW,
        expires_at: NOW + 600,
        created_by: "operator".into(),
        used_at: None,
    };
    let usage = UsageRecord {
        entry_id: node.id.clone(),
        last_minted_at: NOW,
        mint_count: 7,
        x509: UsageCount::default(),
        audiences: BTreeMap::new(),
    };
    let revocation = Revocation::new(RevocationKind::Jti, "t1", NOW, Some(NOW + 60)).unwrap();
    {
        let store = EmbeddedStore::open(&path).unwrap();
        store.create_entry(&node).await.unwrap();
        store.insert_join_token(&record).await.unwrap();
        store
            .redeem_join_token(&secret.hash(), NOW + 1)
            .await
            .unwrap();
        store
            .record_usage(std::slice::from_ref(&usage))
            .await
            .unwrap();
        store.put_revocation(&revocation).await.unwrap();
    }
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.list_entries().await.unwrap(), vec![node]);
    assert_eq!(
        store.redeem_join_token(&secret.hash(), NOW + 2).await,
        Err(RedeemError::AlreadyUsed { used_at: NOW + 1 })
    );
    assert_eq!(store.usage().await.unwrap(), vec![usage]);
    assert_eq!(store.list_revocations().await.unwrap(), vec![revocation]);
}

#[tokio::test]
async fn second_open_is_refused_naming_the_path() {
    let (dir, store) = new_store();
    let path = dir.path().join(EmbeddedStore::FILE_NAME);
    match EmbeddedStore::open(&path) {
        Err(StoreError::Unavailable { reason }) => {
            assert!(reason.contains(&path.display().to_string()), "{reason}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // Positive control: once the first is closed, it opens.
    drop(store);
    EmbeddedStore::open(&path).unwrap();
}

#[cfg(unix)]
#[test]
fn store_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(EmbeddedStore::FILE_NAME);
    drop(EmbeddedStore::open(&path).unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(EmbeddedStore::open(&path).unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn unknown_schema_version_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(EmbeddedStore::FILE_NAME);
    let store = EmbeddedStore::open(&path).unwrap();
    write(&store.db, |txn| {
        let mut meta = txn.open_table(META).map_err(backend)?;
        meta.insert(SCHEMA_VERSION_KEY, "2").map_err(backend)?;
        Ok::<_, StoreError>(())
    })
    .unwrap();
    drop(store);
    assert!(matches!(
        EmbeddedStore::open(&path),
        Err(StoreError::Corrupt { .. })
    ));

    let db = Database::create(&path).unwrap();
    write(&db, |txn| {
        let mut meta = txn.open_table(META).map_err(backend)?;
        meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)
            .map_err(backend)?;
        Ok::<_, StoreError>(())
    })
    .unwrap();
    drop(db);
    // Positive control: with our version back, the same file opens.
    EmbeddedStore::open(&path).unwrap();
}

#[test]
fn a_file_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(EmbeddedStore::FILE_NAME);
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let error = EmbeddedStore::open(&path).unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Corrupt { .. } | StoreError::Unavailable { .. }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

#[tokio::test]
async fn pruning_forgets_expired_one_time_records_and_counts_them() {
    let (_dir, store) = new_store();
    assert!(store.use_once("oidc:gh:jti:1", 100, 10).await.unwrap());
    assert!(store.use_once("oidc:gh:jti:2", 100, 50).await.unwrap());
    assert!(store.use_once("oidc:gh:jti:3", 300, 50).await.unwrap());
    store.insert_challenge("c2", b"n", 5).await.unwrap();
    store.insert_challenge("c3", b"n", 500).await.unwrap();

    // At 200: two keys and one challenge expired before it.
    assert_eq!(store.prune_one_time(200).await.unwrap(), 3);
    assert_eq!(store.take_challenge("c2").await.unwrap(), None, "forgotten");
    // Positive control: the live ones stay.
    assert!(!store.use_once("oidc:gh:jti:3", 300, 200).await.unwrap());
    assert!(store.take_challenge("c3").await.unwrap().is_some());
    assert_eq!(store.prune_one_time(200).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_a_few_operations_hold_blocking_threads_at_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (_dir, store) = new_store();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (store, running, peak) = (store.clone(), running.clone(), peak.clone());
        calls.spawn(async move {
            store
                .run(move |db| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    running.fetch_sub(1, Ordering::SeqCst);
                    // A real read, so the operation is one the store would run.
                    db.begin_read().map(drop).map_err(|e| StoreError::Internal {
                        reason: e.to_string(),
                    })
                })
                .await
        });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap().unwrap();
    }
    // Bounded, and still concurrent: exactly the bound was reached.
    assert_eq!(peak.load(Ordering::SeqCst), MAX_CONCURRENT_OPERATIONS);
    // A caller that stops waiting keeps its slot until its operation ends.
    let slow = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .run(|_| {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    Ok::<_, StoreError>(())
                })
                .await
        })
    };
    let permits = |wanted: usize| {
        let store = store.clone();
        async move {
            for _ in 0..500 {
                if store.operations.available_permits() == wanted {
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            false
        }
    };
    assert!(permits(MAX_CONCURRENT_OPERATIONS - 1).await);
    slow.abort();
    assert_eq!(
        store.operations.available_permits(),
        MAX_CONCURRENT_OPERATIONS - 1
    );
    assert!(permits(MAX_CONCURRENT_OPERATIONS).await);
}
