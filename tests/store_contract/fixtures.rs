//! What the store tests are made of: entries, join tokens, revocations and
//! replica records at a fixed time, and waiting on a change feed. Shared by
//! the contract suite and the Redis-only tests (`tests/redis_store.rs`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mayfly::attest::join_token::{JoinTokenRecord, JoinTokenSecret};
use mayfly::policy::{Entry, EntrySpec, TtlPolicy};
use mayfly::store::{ReplicaRecord, StoreEvent};
use mayfly_sdk::TrustDomain;
use mayfly_sdk::revocation::{Revocation, RevocationKind};
use tokio::sync::mpsc::Receiver;

/// The time entries, tokens and revocations are made at. Stores take the
/// caller's time, so a fixed one keeps every expiry exact.
pub const NOW: i64 = 1_700_000_000;

/// The longest wait for an expected feed event: an upper bound, not a speed
/// check.
pub const WAIT: Duration = Duration::from_secs(5);

/// The current Unix time. One-time keys and challenges use it instead of
/// [`NOW`]: Redis forgets them by its own clock, a grace period after their
/// expiry, and would forget records from 2023 at once.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

/// What an operator registers for `spiffe://example.org/{path}`.
fn spec(path: &str) -> EntrySpec {
    EntrySpec {
        spiffe_id: Some(format!("spiffe://example.org/{path}")),
        audiences: Some(vec!["payments".into()]),
        owner: Some("team@example.org".into()),
        purpose: Some("tests".into()),
        ..EntrySpec::default()
    }
}

/// A new entry (fresh id, revision 1) for `spiffe://example.org/{path}`.
pub fn entry(path: &str) -> Entry {
    let trust_domain = TrustDomain::new("example.org").unwrap();
    spec(path)
        .create(&trust_domain, &TtlPolicy::default(), NOW)
        .unwrap()
}

/// `entry` moved to `spiffe://example.org/{path}`, one revision up.
pub fn changed(entry: &Entry, path: &str) -> Entry {
    let mut next = entry.clone();
    next.spiffe_id = format!("spiffe://example.org/{path}").parse().unwrap();
    next.revision = entry.revision + 1;
    next
}

pub fn sorted_by_id(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    entries
}

/// A fresh join token for `entry` and its record as minted.
pub fn token_for(entry: &Entry, expires_at: i64) -> (JoinTokenSecret, JoinTokenRecord) {
    let secret = JoinTokenSecret::generate();
    let record = JoinTokenRecord {
        hash: secret.hash(),
        entry_id: entry.id.clone(),
        created_at: NOW,
        expires_at,
        created_by: "operator".into(),
        used_at: None,
    };
    (secret, record)
}

pub fn jti(value: &str, expires_at: Option<i64>) -> Revocation {
    Revocation::new(RevocationKind::Jti, value, NOW, expires_at).unwrap()
}

pub fn replica(id: &str, keep_until: i64) -> ReplicaRecord {
    ReplicaRecord {
        replica_id: id.to_owned(),
        jwks: r#"{"keys":[]}"#.to_owned(),
        published_at: NOW,
        keep_until,
    }
}

/// The next event that `wanted` accepts, skipping others; panics after
/// [`WAIT`].
pub async fn wait_for(
    feed: &mut Receiver<StoreEvent>,
    what: &str,
    wanted: impl Fn(&StoreEvent) -> bool,
) -> StoreEvent {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, feed.recv()).await {
            Ok(Some(event)) if wanted(&event) => return event,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the feed ended while waiting for {what}"),
            Err(_) => panic!("no {what} within {WAIT:?}"),
        }
    }
}

pub async fn wait_for_snapshot(feed: &mut Receiver<StoreEvent>) -> (Vec<Entry>, Vec<Revocation>) {
    match wait_for(feed, "a snapshot", |e| {
        matches!(e, StoreEvent::Snapshot { .. })
    })
    .await
    {
        StoreEvent::Snapshot {
            entries,
            revocations,
        } => (entries, revocations),
        _ => unreachable!(),
    }
}

pub async fn wait_for_heard(feed: &mut Receiver<StoreEvent>) -> i64 {
    match wait_for(feed, "a heartbeat", |e| matches!(e, StoreEvent::Heard(_))).await {
        StoreEvent::Heard(at) => at,
        _ => unreachable!(),
    }
}

/// Skips heartbeats, and the audience list that follows every snapshot,
/// only: the next real event.
pub async fn next_change(feed: &mut Receiver<StoreEvent>) -> StoreEvent {
    wait_for(feed, "a change", |e| {
        !matches!(e, StoreEvent::Heard(_) | StoreEvent::AudiencesReplaced(_))
    })
    .await
}

/// A registered audience `name` (revision 1) in `prod`, data class `internal`.
pub fn audience(name: &str) -> mayfly::audience::AudienceRecord {
    mayfly::audience::AudienceSpec {
        owner: Some("team@example.org".into()),
        environment: Some("prod".into()),
        data_class: Some("internal".into()),
        description: None,
    }
    .create(name, &mayfly::audience::DataClasses::default(), NOW)
    .unwrap()
}
