//! Several replicas on one Redis: a token minted on one validates on the
//! other; a revocation on one is enforced by the other (the delay printed) and
//! expires with what it covers; join tokens redeem once across replicas;
//! losing Redis fails closed after the staleness bound and recovers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::redis::{PrefixGuard, TestRedis, redis_url_or_skip};
use common::{Svid, TRUST_DOMAIN};
use mayfly::clock::{Clock, ManualClock, SystemClock};
use mayfly::config::{Config, StoreLocation};
use mayfly::server::RunningServer;
use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::proto::v1::admin_client::AdminClient;
use mayfly_sdk::proto::v1::broker_client::BrokerClient;
use tempfile::TempDir;
use tonic::Code;
use tonic::transport::Channel;

struct Replica {
    server: RunningServer,
    data: std::path::PathBuf,
}

impl Replica {
    async fn start(
        dir: &Path,
        name: &str,
        url: &str,
        prefix: &str,
        clock: Arc<dyn Clock>,
        staleness: Duration,
        root_from: Option<&Replica>,
    ) -> Replica {
        let data = dir.join(name);
        if let Some(first) = root_from {
            // Several replicas share one root: the operator copies it.
            mayfly_sdk::files::ensure_private_dir(&data).unwrap();
            let written =
                mayfly_ca::export_active_root(&first.data.join("ca"), &data.join("ca")).unwrap();
            assert_eq!(written.len(), 2, "certificate and key");
        }
        let config = Config {
            store: StoreLocation::Redis {
                url: url.to_owned(),
                prefix: prefix.to_owned(),
            },
            revocation_staleness: staleness,
            ..common::test_config(data.clone())
        };
        let server = mayfly::server::start_with_clock(config, clock)
            .await
            .unwrap();
        Replica { server, data }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.server.grpc_addr().port())
    }

    fn bundle_pem(&self) -> Vec<u8> {
        std::fs::read(self.data.join("bundle.pem")).unwrap()
    }

    async fn admin(&self) -> AdminClient<Channel> {
        mayfly_sdk::client::connect_admin(self.server.admin_socket())
            .await
            .unwrap()
    }

    async fn broker(&self) -> BrokerClient<Channel> {
        mayfly_sdk::client::connect_broker(&self.url(), &self.bundle_pem(), None)
            .await
            .unwrap()
    }

    async fn broker_as(&self, svid: &Svid) -> BrokerClient<Channel> {
        mayfly_sdk::client::connect_broker(
            &self.url(),
            &self.bundle_pem(),
            Some((svid.chain_pem.as_bytes(), svid.key_pem.as_bytes())),
        )
        .await
        .unwrap()
    }

    async fn create_entry(&self, path: &str) -> pb::Entry {
        self.admin()
            .await
            .create_entry(pb::CreateEntryRequest {
                spec: Some(common::TestBroker::entry_spec(path, &["db"], &[])),
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn join_token(&self, entry_id: &str) -> String {
        self.admin()
            .await
            .create_join_token(pb::CreateJoinTokenRequest {
                entry_id: entry_id.into(),
                ttl_seconds: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .token
    }

    async fn attest(&self, token: &str) -> Result<Svid, tonic::Status> {
        common::attest_via(self.broker().await, token).await
    }

    async fn mint(&self, svid: &Svid) -> Result<pb::MintJwtSvidResponse, tonic::Status> {
        common::mint_via(self.broker_as(svid).await, "db", 0).await
    }

    async fn validate(&self, token: &str) -> Result<pb::ValidateJwtSvidResponse, tonic::Status> {
        common::validate_via(self.broker().await, token, "db").await
    }

    async fn knows_entry(&self, id: &str) -> bool {
        self.admin()
            .await
            .get_entry(pb::GetEntryRequest { id: id.into() })
            .await
            .is_ok()
    }

    async fn revocations(&self) -> Vec<pb::Revocation> {
        self.admin()
            .await
            .list_revocations(pb::ListRevocationsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .revocations
    }
}

/// Polls `condition` every 10 ms for at most `limit`; returns how long it took.
async fn within<F, Fut>(limit: Duration, mut condition: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

async fn revoke(replica: &Replica, kind: &str, value: &str) -> pb::Revocation {
    common::revoke_via(replica.admin().await, kind, value, "replica test")
        .await
        .unwrap()
}

async fn two_replicas(
    url: &str,
    prefix: &str,
    staleness: Duration,
) -> (TempDir, Arc<ManualClock>, Replica, Replica) {
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let (dir, a, b) = two_replicas_on(url, prefix, staleness, clock.clone()).await;
    (dir, clock, a, b)
}

async fn two_replicas_on(
    url: &str,
    prefix: &str,
    staleness: Duration,
    clock: Arc<dyn Clock>,
) -> (TempDir, Replica, Replica) {
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::start(dir.path(), "a", url, prefix, clock.clone(), staleness, None).await;
    let b = Replica::start(dir.path(), "b", url, prefix, clock, staleness, Some(&a)).await;
    (dir, a, b)
}

#[tokio::test]
async fn a_token_from_one_replica_validates_on_the_other_and_revocation_reaches_it() {
    let Some(url) = redis_url_or_skip() else {
        return;
    };
    let guard = PrefixGuard::new(&url, "replicas");
    let (_dir, clock, a, b) = two_replicas(&url, &guard.prefix, Duration::from_secs(15)).await;
    assert_ne!(a.server.report().replica_id, b.server.report().replica_id);
    assert_eq!(
        a.server.report().root_fingerprint,
        b.server.report().root_fingerprint
    );

    // An entry made on A is known to B; B attests the workload.
    let entry = a.create_entry("/api").await;
    assert!(
        within(Duration::from_secs(2), || b.knows_entry(&entry.id))
            .await
            .is_some()
    );
    let svid = b.attest(&a.join_token(&entry.id).await).await.unwrap();

    // Both serve both JWT keys; a token minted on A validates on B.
    let both = || async {
        let bundle = b
            .broker()
            .await
            .get_bundle(pb::GetBundleRequest {})
            .await
            .unwrap()
            .into_inner();
        let doc: serde_json::Value = serde_json::from_slice(&bundle.spiffe_bundle_json).unwrap();
        doc["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["use"] == "jwt-svid")
            .count()
            == 2
    };
    assert!(
        within(Duration::from_secs(5), both).await.is_some(),
        "B serves A's key"
    );
    let token = a.mint(&svid).await.unwrap();
    let seen = b.validate(&token.token).await.unwrap();
    assert_eq!(seen.spiffe_id, format!("spiffe://{TRUST_DOMAIN}/api"));
    // The same request again would get A's cached token; another TTL is
    // another token.
    let other = common::mint_via(a.broker_as(&svid).await, "db", 60)
        .await
        .unwrap();
    assert_ne!(other.jti, token.jti);

    // Revoke on A; B rejects it. How fast is printed, not asserted (the
    // deadline only bounds a broken feed on a busy machine).
    let started = Instant::now();
    revoke(&a, "jti", &token.jti).await;
    let acknowledged = started.elapsed();
    let took = within(Duration::from_secs(10), || async {
        b.validate(&token.token).await.is_err()
    })
    .await
    .expect("B rejects the revoked token");
    println!(
        "revocation propagation A -> B: {:.1} ms after the revoke returned ({:.1} ms to acknowledge)",
        took.as_secs_f64() * 1e3,
        acknowledged.as_secs_f64() * 1e3
    );
    let status = b.validate(&token.token).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("revoked"), "{status:?}");
    // Positive control: the other token still validates on both.
    b.validate(&other.token).await.unwrap();
    a.validate(&other.token).await.unwrap();

    // An entry revocation on B stops minting on A.
    revoke(&b, "entry", &entry.id).await;
    let blocked = within(Duration::from_secs(10), || async {
        a.mint(&svid).await.is_err()
    })
    .await;
    assert!(blocked.is_some(), "A stops minting");

    // The jti revocation expires when the token has: dropped everywhere.
    assert_eq!(b.revocations().await.len(), 2);
    clock.advance(Duration::from_secs(3_600 + 31));
    let pruned = a.server.prune_revocations().await.unwrap();
    assert_eq!(pruned, vec![format!("jti:{}", token.jti)]);
    let gone = within(Duration::from_secs(2), || async {
        b.revocations().await.iter().all(|r| r.kind != "jti")
    })
    .await;
    assert!(gone.is_some(), "B drops the expired revocation");
    // The entry revocation is in force until lifted: it stays.
    assert_eq!(b.revocations().await.len(), 1);
    drop(guard);
}

#[tokio::test]
async fn a_join_token_redeemed_on_two_replicas_at_once_has_one_winner() {
    let Some(url) = redis_url_or_skip() else {
        return;
    };
    let guard = PrefixGuard::new(&url, "replicas-redeem");
    let (_dir, _clock, a, b) = two_replicas(&url, &guard.prefix, Duration::from_secs(15)).await;
    let entry = a.create_entry("/api").await;
    assert!(
        within(Duration::from_secs(2), || b.knows_entry(&entry.id))
            .await
            .is_some()
    );
    let token = a.join_token(&entry.id).await;
    // Sixteen redemptions at once, alternating between the replicas.
    let mut attempts = tokio::task::JoinSet::new();
    for i in 0..16 {
        let broker = if i % 2 == 0 { &a } else { &b }.broker().await;
        let token = token.clone();
        attempts.spawn(async move { common::attest_via(broker, &token).await });
    }
    let results: Vec<_> = attempts.join_all().await;
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "{results:?}");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        assert!(refused.message().contains("already used"), "{refused:?}");
    }
    drop(guard);
}

#[tokio::test]
async fn losing_redis_fails_closed_after_the_bound_and_recovers_without_a_restart() {
    let redis_dir = tempfile::tempdir().unwrap();
    let dir_arg = redis_dir.path().display().to_string();
    // Persistent, so that a restart keeps the data (as a real deployment's would).
    let Some(mut redis) = TestRedis::start_with(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
        &dir_arg,
    ]) else {
        return;
    };
    let bound = Duration::from_secs(2);
    // The real clock: staleness is measured in time that passes.
    let (_dir, a, b) =
        two_replicas_on(&redis.url(), "mayfly-down", bound, Arc::new(SystemClock)).await;
    let entry = a.create_entry("/api").await;
    let svid = a.attest(&a.join_token(&entry.id).await).await.unwrap();
    let spare_token = a.join_token(&entry.id).await;
    let token = a.mint(&svid).await.unwrap();
    assert!(
        within(Duration::from_secs(5), || async {
            b.validate(&token.token).await.is_ok()
        })
        .await
        .is_some()
    );

    // /metrics says the store is connected, the replica ready, and the bound.
    assert_eq!(gauge(&a, "mayfly_store_connected").await, Some(1.0));
    assert_eq!(gauge(&a, "mayfly_ready").await, Some(1.0));
    assert_eq!(
        gauge(&a, "mayfly_revocation_staleness_bound_seconds").await,
        Some(2.0)
    );
    let fresh = gauge(&a, "mayfly_revocation_staleness_seconds")
        .await
        .unwrap();
    assert!(fresh < 2.0, "{fresh}");

    redis.stop();
    let stopped = Instant::now();
    // Replay-protected attestation fails closed at once.
    let refused = a.attest(&spare_token).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    // Within the bound, minting and validation go on from local state.
    a.validate(&token.token).await.unwrap();
    // Past it, they fail closed and say why.
    let failed = within(Duration::from_secs(10), || async {
        matches!(a.validate(&token.token).await, Err(s) if s.code() == Code::Unavailable)
    })
    .await
    .expect("validation fails closed after the bound");
    println!(
        "validation failed closed {:.1} s after Redis stopped (bound {} s)",
        (stopped.elapsed()).as_secs_f64(),
        bound.as_secs()
    );
    let _ = failed;
    // Each replica counts its own bound from the last heartbeat it heard, so the other
    // one may get there a heartbeat later.
    within(Duration::from_secs(10), || async {
        matches!(b.validate(&token.token).await, Err(s) if s.code() == Code::Unavailable)
    })
    .await
    .expect("the other replica fails closed after the bound too");
    let status = b.validate(&token.token).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("stale"), "{status:?}");
    let status = a.mint(&svid).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let (code, body) = common::http_get(a.server.http_addr(), "/readyz").await;
    assert_eq!(code, 503, "{body}");
    // /metrics says so too: not ready, the feed lost, the data past its bound.
    assert_eq!(gauge(&a, "mayfly_ready").await, Some(0.0));
    assert!(
        within(Duration::from_secs(10), || async {
            gauge(&a, "mayfly_store_connected").await == Some(0.0)
        })
        .await
        .is_some(),
        "the lost feed shows in mayfly_store_connected"
    );
    let stale = gauge(&a, "mayfly_revocation_staleness_seconds")
        .await
        .unwrap();
    assert!(stale >= 2.0, "{stale}");

    redis.restart();
    let recovered = within(Duration::from_secs(20), || async {
        a.validate(&token.token).await.is_ok() && b.validate(&token.token).await.is_ok()
    })
    .await;
    assert!(
        recovered.is_some(),
        "both replicas recover without a restart"
    );
    a.mint(&svid).await.unwrap();
    let (code, _) = common::http_get(a.server.http_addr(), "/readyz").await;
    assert_eq!(code, 200);
    assert_eq!(gauge(&a, "mayfly_ready").await, Some(1.0));
    assert_eq!(gauge(&a, "mayfly_store_connected").await, Some(1.0));
}

/// The value of an unlabelled gauge in `replica`'s `/metrics`.
async fn gauge(replica: &Replica, name: &str) -> Option<f64> {
    let (code, body) = common::http_get(replica.server.http_addr(), "/metrics").await;
    assert_eq!(code, 200, "{body}");
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}
