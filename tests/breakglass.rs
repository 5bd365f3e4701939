//! Break-glass (issue 17) against a real broker on a clock the test controls, a real
//! webhook receiver (axum), and the `mayfly` binary run as other users:
//!
//! - Operators are told apart by the admin socket peer's uid. A grant requested and
//!   approved by the same operator is refused; approved by a second operator (another uid,
//!   member of `[admin] socket_group`) it widens the entry by one audience, every mint under
//!   it names it in the audit log and raises a signed alert, no token outlives it, and it
//!   lapses on the test's clock. A uid outside the group is refused even when the socket's
//!   mode is loosened.
//! - The ended grant shows as `breakglass-review-overdue` until its review is recorded.
//! - A grant that re-enables a disabled entry, revoked early, revokes the token it issued:
//!   the broker rejects it at once.
//! - Without an alert output no grant can be asked for.
//!
//! Switching to another uid needs root, which these machines run tests as; elsewhere the
//! test that needs it says so and stops, except under CI=true, where that fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::TestBroker;
use common::webhook::{Receiver, SECRET, secret_file};
use mayfly::alert::WebhookConfig;
use mayfly::alert::webhook::verify_signature;
use mayfly::outbound::HttpUrl;
use mayfly_sdk::proto::v1 as pb;
use tonic::Code;

const MAYFLY: &str = env!("CARGO_BIN_EXE_mayfly");
/// The operators' group and its member; a uid outside it.
const OPS_GID: u32 = 2000;
const SECOND_OPERATOR: u32 = 2001;
const OUTSIDER: u32 = 2002;
const PATIENCE: Duration = Duration::from_secs(30);

/// Whether this process may run commands as other users.
fn can_switch_users() -> bool {
    let probe = tempfile::tempdir().unwrap();
    if common::my_uid(probe.path()) == 0 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "break-glass tests run commands as other uids, which needs root"
    );
    eprintln!("skipped: running commands as other uids needs root");
    false
}

/// A broker on the test's clock, alerting to `url`, whose admin socket sits in `ops` (a
/// directory the operators' group can enter) and is open to gid [`OPS_GID`].
async fn broker(url: &str, secret: PathBuf, ops: &Path) -> TestBroker {
    let url = HttpUrl::parse(url).unwrap();
    let socket = ops.join("admin.sock");
    TestBroker::start_on_manual_clock(move |config| {
        config.alerts.webhook = Some(WebhookConfig {
            url: url.clone(),
            secret_file: secret.clone(),
            ca_file: None,
        });
        config.admin.socket_path = Some(socket.clone());
        config.admin.socket_group = Some(OPS_GID.to_string());
    })
    .await
}

/// A directory anyone may enter but not list, for the admin socket.
fn ops_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

/// `mayfly <args>` run as `uid` (primary group `gid`) against `socket`.
fn mayfly_as(uid: u32, gid: u32, socket: &Path, args: &[&str]) -> Output {
    Command::new(MAYFLY)
        .uid(uid)
        .gid(gid)
        .arg("--admin-socket")
        .arg(socket)
        .args(args)
        .env_remove("MAYFLY_DATA_DIR")
        .env_remove("MAYFLY_CONFIG")
        .env_remove("MAYFLY_ADMIN_SOCKET")
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The alerts of `kind` the receiver got, each checked against its signature.
fn alerts(receiver: &Receiver, kind: &str, now: i64) -> Vec<serde_json::Value> {
    receiver
        .got()
        .iter()
        .filter(|d| d.headers["mayfly-event"] == kind)
        .map(|d| {
            let signature = d.headers["mayfly-signature"].to_str().unwrap();
            verify_signature(
                SECRET.as_bytes(),
                signature,
                &d.body,
                now,
                Duration::from_secs(3600),
            )
            .expect("every alert is signed with the shared secret");
            serde_json::from_slice(&d.body).unwrap()
        })
        .collect()
}

async fn grants(broker: &TestBroker, entry: &str) -> Vec<pb::Grant> {
    broker
        .admin()
        .await
        .list_grants(pb::ListGrantsRequest {
            entry_id: entry.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .grants
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operators_open_one_audience_for_a_while_and_the_clock_closes_it() {
    if !can_switch_users() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ops = ops_dir();
    let socket = ops.path().join("admin.sock");
    let (receiver, url) = Receiver::start(&[]).await;
    let mut broker = broker(&url, secret_file(dir.path()), ops.path()).await;
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(
        (meta.gid(), meta.mode() & 0o777),
        (OPS_GID, 0o660),
        "the socket is the operators' group's"
    );
    let (entry, svid) = broker.enrolled("/ledger-sync", &["reports"]).await;

    // Control: the entry may not have a token for the ledger.
    let refused = broker.mint(&svid, "ledger", 0).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // Root (this process) asks for a grant.
    let grant = broker
        .admin()
        .await
        .request_grant(pb::RequestGrantRequest {
            entry_id: entry.id.clone(),
            audience: "ledger".into(),
            enable: false,
            ttl_seconds: 120,
            reason: "ledger outage, manual reconciliation".into(),
            ticket: "INC-123".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grant.state, "pending");
    assert_eq!(grant.requested_by.as_ref().unwrap().uid, 0);

    // The requester cannot approve their own grant.
    let own = broker
        .admin()
        .await
        .approve_grant(pb::ApproveGrantRequest {
            id: grant.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(own.code(), Code::PermissionDenied, "{own:?}");
    assert!(own.message().contains("another operator"), "{own:?}");
    assert_eq!(grants(&broker, &entry.id).await[0].state, "pending");
    let still = broker.mint(&svid, "ledger", 0).await.unwrap_err();
    assert_eq!(still.code(), Code::PermissionDenied, "not in force yet");

    // A uid outside the group cannot even reach the socket; loosen its mode, and the
    // broker's own check still refuses it.
    let outsider = mayfly_as(OUTSIDER, OUTSIDER, &socket, &["breakglass", "list"]);
    assert!(!outsider.status.success(), "{}", text(&outsider));
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let outsider = mayfly_as(
        OUTSIDER,
        OUTSIDER,
        &socket,
        &["breakglass", "approve", &grant.id],
    );
    assert!(!outsider.status.success());
    assert!(
        text(&outsider).contains("may not administer"),
        "{}",
        text(&outsider)
    );
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o660)).unwrap();

    // A second operator, in the group, approves it with the CLI.
    let approved = mayfly_as(
        SECOND_OPERATOR,
        OPS_GID,
        &socket,
        &["breakglass", "approve", &grant.id, "--json"],
    );
    assert!(approved.status.success(), "{}", text(&approved));
    let approved: serde_json::Value = serde_json::from_slice(&approved.stdout).unwrap();
    assert_eq!(approved["state"], "active");
    assert_eq!(
        approved["approved_by"],
        format!("uid {SECOND_OPERATOR}"),
        "{approved}"
    );

    // In force: the ledger token is minted, names no later expiry than the grant's, and an
    // independent JOSE library accepts it.
    let approved_at = broker.clock_dyn().unix_now();
    let minted = broker.mint(&svid, "ledger", 0).await.unwrap();
    assert!(minted.expires_at <= approved_at + 120, "{minted:?}");
    let (_, jwks) = broker.http_get("/keys").await;
    common::jwt_simple_verify(&jwks, &minted.token, "ledger").unwrap();
    broker.validate(&minted.token, "ledger").await.unwrap();
    let second = broker.mint(&svid, "ledger", 0).await.unwrap();
    assert_ne!(
        second.token, minted.token,
        "nothing under a grant is reused"
    );
    // Its other audiences are untouched (control).
    broker.mint(&svid, "reports", 0).await.unwrap();

    // Every use is on record and was announced, signed.
    let uses: Vec<_> = broker
        .audit_records("jwt.mint")
        .into_iter()
        .filter(|r| r["detail"]["breakglass"] == grant.id.as_str())
        .collect();
    assert_eq!(uses.len(), 2, "{uses:#?}");
    assert_eq!(uses[0]["audience"], "ledger");
    let now = broker.clock_dyn().unix_now();
    common::wait_for("the alerts", || {
        alerts(&receiver, "breakglass.used", now).len() == 2
    })
    .await;
    for kind in ["breakglass.requested", "breakglass.approved"] {
        let got = alerts(&receiver, kind, now);
        assert_eq!(got.len(), 1, "{kind}");
        assert_eq!(got[0]["body"]["grant"], grant.id.as_str());
        assert_eq!(got[0]["body"]["ticket"], "INC-123");
    }
    let listed = grants(&broker, &entry.id).await;
    assert_eq!((listed[0].state.as_str(), listed[0].issued), ("active", 2));
    let current = broker.entry(&entry.id).await;
    assert!(
        current.states.contains(&"breakglass".to_owned()),
        "{current:?}"
    );
    assert_eq!(current.active_grant, grant.id);

    // The clock runs out: the next mint is refused at once, the end is recorded and
    // announced, and the entry waits for its review.
    broker.clock.advance(Duration::from_secs(121));
    let lapsed = broker.mint(&svid, "ledger", 0).await.unwrap_err();
    assert_eq!(lapsed.code(), Code::PermissionDenied, "{lapsed:?}");
    broker.mint(&svid, "reports", 0).await.unwrap();
    let now = broker.clock_dyn().unix_now();
    common::wait_for("the expiry alert", || {
        !alerts(&receiver, "breakglass.expired", now).is_empty()
    })
    .await;
    assert_eq!(broker.audit_records("breakglass.expire").len(), 1);
    let listed = grants(&broker, &entry.id).await;
    assert_eq!(listed[0].state, "expired");
    assert_eq!(listed[0].ended_by, "mayfly-breakglass");
    let current = broker.entry(&entry.id).await;
    assert!(
        current
            .states
            .contains(&"breakglass-review-overdue".to_owned()),
        "{current:?}"
    );
    assert_eq!(current.unreviewed_grants, std::slice::from_ref(&grant.id));
    assert!(current.active_grant.is_empty());

    // The review clears it; a second one is refused.
    let reviewed = mayfly_as(
        SECOND_OPERATOR,
        OPS_GID,
        &socket,
        &[
            "breakglass",
            "review",
            &grant.id,
            "--note",
            "INC-123 postmortem: used as intended",
        ],
    );
    assert!(reviewed.status.success(), "{}", text(&reviewed));
    let current = broker.entry(&entry.id).await;
    assert!(
        !current
            .states
            .contains(&"breakglass-review-overdue".to_owned()),
        "{current:?}"
    );
    let again = broker
        .admin()
        .await
        .review_grant(pb::ReviewGrantRequest {
            id: grant.id.clone(),
            note: "again".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    for action in [
        "breakglass.request",
        "breakglass.approve",
        "breakglass.review",
    ] {
        assert_eq!(broker.audit_records(action).len(), 1, "{action}");
    }
    assert_eq!(
        broker.audit_records("breakglass.approve")[0]["actor"],
        format!("admin:uid={SECOND_OPERATOR}")
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_takes_back_what_it_issued() {
    if !can_switch_users() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ops = ops_dir();
    let socket = ops.path().join("admin.sock");
    let (receiver, url) = Receiver::start(&[]).await;
    let mut broker = broker(&url, secret_file(dir.path()), ops.path()).await;
    let (entry, svid) = broker.enrolled("/recovery", &["vault"]).await;
    let mut admin = broker.admin().await;
    let request = |audience: &str, enable: bool, ttl_seconds: u64| pb::RequestGrantRequest {
        entry_id: entry.id.clone(),
        audience: audience.into(),
        enable,
        ttl_seconds,
        reason: "recovery".into(),
        ticket: "INC-124".into(),
    };

    // Requests that would widen nothing, or too much, are refused.
    let enabled = admin
        .request_grant(request("", true, 600))
        .await
        .unwrap_err();
    assert_eq!(enabled.code(), Code::FailedPrecondition, "{enabled:?}");
    let allowed = admin
        .request_grant(request("vault", false, 600))
        .await
        .unwrap_err();
    assert_eq!(allowed.code(), Code::FailedPrecondition, "{allowed:?}");
    let long = admin
        .request_grant(request("other", false, 5 * 3600))
        .await
        .unwrap_err();
    assert_eq!(long.code(), Code::InvalidArgument, "{long:?}");

    // Disabled, the entry mints nothing...
    admin
        .disable_entry(pb::DisableEntryRequest {
            id: entry.id.clone(),
            reason: "suspected leak".into(),
        })
        .await
        .unwrap();
    let disabled = broker.mint(&svid, "vault", 0).await.unwrap_err();
    assert_eq!(disabled.code(), Code::PermissionDenied);
    // ...until a grant two operators agree on lets it.
    let grant = admin
        .request_grant(request("", true, 600))
        .await
        .unwrap()
        .into_inner();
    let approved = mayfly_as(
        SECOND_OPERATOR,
        OPS_GID,
        &socket,
        &["breakglass", "approve", &grant.id],
    );
    assert!(approved.status.success(), "{}", text(&approved));
    let minted = broker.mint(&svid, "vault", 0).await.unwrap();
    broker.validate(&minted.token, "vault").await.unwrap();

    // Revoked early: the token it issued is rejected at once, minting stops.
    let revoked = admin
        .revoke_grant(pb::RevokeGrantRequest {
            id: grant.id.clone(),
            reason: "recovery done".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.credentials_revoked, 1);
    assert_eq!(revoked.grant.unwrap().state, "revoked");
    let rejected = broker.validate(&minted.token, "vault").await.unwrap_err();
    assert_eq!(rejected.code(), Code::Unauthenticated, "{rejected:?}");
    let stopped = broker.mint(&svid, "vault", 0).await.unwrap_err();
    assert_eq!(stopped.code(), Code::PermissionDenied, "{stopped:?}");
    let now = broker.clock_dyn().unix_now();
    common::wait_for("the revocation alert", || {
        !alerts(&receiver, "breakglass.revoked", now).is_empty()
    })
    .await;
    // A pending grant can no longer be approved once it lapsed (control on the clock).
    let pending = admin
        .request_grant(request("", true, 600))
        .await
        .unwrap()
        .into_inner();
    broker.clock.advance(Duration::from_secs(3601));
    let late = mayfly_as(
        SECOND_OPERATOR,
        OPS_GID,
        &socket,
        &["breakglass", "approve", &pending.id],
    );
    assert!(!late.status.success());
    assert!(text(&late).contains("lapsed"), "{}", text(&late));
    broker.stop().await;
}

#[tokio::test]
async fn no_grant_without_an_alert_output() {
    let broker = TestBroker::start().await;
    let entry = broker.create_entry("/quiet", &["a"]).await;
    let refused = broker
        .admin()
        .await
        .request_grant(pb::RequestGrantRequest {
            entry_id: entry.id.clone(),
            audience: "b".into(),
            enable: false,
            ttl_seconds: 600,
            reason: "r".into(),
            ticket: "INC-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("alert"), "{refused:?}");
    assert!(grants(&broker, &entry.id).await.is_empty());
}

/// Two replicas on the real Redis: a grant asked for on one and approved on the other
/// applies on both, every use on either is recorded on the one grant, and a revocation on
/// one stops the other at once and rejects what it issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_holds_on_every_replica_and_a_revocation_everywhere() {
    let Some(redis) = common::redis::redis_url_or_skip() else {
        return;
    };
    if !can_switch_users() {
        return;
    }
    let guard = common::redis::PrefixGuard::new(&redis, "breakglass");
    let dir = tempfile::tempdir().unwrap();
    let ops = ops_dir();
    let socket_b = ops.path().join("b.sock");
    let (receiver, url) = Receiver::start(&[]).await;
    let secret = secret_file(dir.path());
    let clock = std::sync::Arc::new(mayfly::clock::ManualClock::new(std::time::SystemTime::now()));
    let alerting = |config: &mut mayfly::config::Config| {
        config.alerts.webhook = Some(WebhookConfig {
            url: HttpUrl::parse(&url).unwrap(),
            secret_file: secret.clone(),
            ca_file: None,
        });
    };
    let a = common::replica_on_clock(
        dir.path(),
        "a",
        &redis,
        &guard.prefix,
        clock.clone(),
        None,
        alerting,
    )
    .await;
    let b = common::replica_on_clock(
        dir.path(),
        "b",
        &redis,
        &guard.prefix,
        clock.clone(),
        Some(&dir.path().join("a")),
        |config| {
            alerting(config);
            config.admin.socket_path = Some(socket_b.clone());
            config.admin.socket_group = Some(OPS_GID.to_string());
        },
    )
    .await;
    let bundle = std::fs::read(a.config().data_dir.join("bundle.pem")).unwrap();
    let url_of = |server: &mayfly::server::RunningServer| {
        format!("https://127.0.0.1:{}", server.grpc_addr().port())
    };
    let broker = |server: &mayfly::server::RunningServer, svid: Option<&common::Svid>| {
        let (url, bundle) = (url_of(server), bundle.clone());
        let identity = svid.map(|s| (s.chain_pem.clone(), s.key_pem.clone()));
        async move {
            let identity = identity
                .as_ref()
                .map(|(chain, key)| (chain.as_bytes(), key.as_bytes()));
            mayfly_sdk::client::connect_broker(&url, &bundle, identity)
                .await
                .unwrap()
        }
    };
    let mut admin_a = mayfly_sdk::client::connect_admin(a.admin_socket())
        .await
        .unwrap();
    let entry = admin_a
        .create_entry(pb::CreateEntryRequest {
            spec: Some(TestBroker::entry_spec("/shared", &["reports"], &[])),
        })
        .await
        .unwrap()
        .into_inner();
    let token = admin_a
        .create_join_token(pb::CreateJoinTokenRequest {
            entry_id: entry.id.clone(),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let svid = common::attest_via(broker(&a, None).await, &token)
        .await
        .unwrap();

    // Asked for on a by root, approved on b by the second operator.
    let grant = admin_a
        .request_grant(pb::RequestGrantRequest {
            entry_id: entry.id.clone(),
            audience: "ledger".into(),
            enable: false,
            ttl_seconds: 600,
            reason: "shared outage".into(),
            ticket: "INC-200".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let approved = mayfly_as(
        SECOND_OPERATOR,
        OPS_GID,
        &socket_b,
        &["breakglass", "approve", &grant.id],
    );
    assert!(approved.status.success(), "{}", text(&approved));

    // b applies it at once; a as soon as the entry reaches it.
    let on_b = common::mint_via(broker(&b, Some(&svid)).await, "ledger", 0)
        .await
        .unwrap();
    let started = Instant::now();
    let on_a = loop {
        match common::mint_via(broker(&a, Some(&svid)).await, "ledger", 0).await {
            Ok(minted) => break minted,
            Err(refused) => {
                assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
                assert!(started.elapsed() < PATIENCE, "replica a never applied it");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let listed = admin_a
        .list_grants(pb::ListGrantsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .grants;
    assert_eq!((listed[0].state.as_str(), listed[0].issued), ("active", 2));

    // Revoked on a: b refuses the next mint at once (the grant's record says so), and
    // rejects the token it issued once the revocation reaches it.
    let revoked = admin_a
        .revoke_grant(pb::RevokeGrantRequest {
            id: grant.id.clone(),
            reason: "resolved".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.credentials_revoked, 2);
    let refused = common::mint_via(broker(&b, Some(&svid)).await, "ledger", 0)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let started = Instant::now();
    loop {
        match common::validate_via(broker(&b, None).await, &on_b.token, "ledger").await {
            Err(rejected) if rejected.code() == Code::Unauthenticated => break,
            other => {
                assert!(
                    started.elapsed() < PATIENCE,
                    "replica b still accepts it: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let rejected = common::validate_via(broker(&a, None).await, &on_a.token, "ledger")
        .await
        .unwrap_err();
    assert_eq!(rejected.code(), Code::Unauthenticated, "{rejected:?}");
    let now = mayfly::clock::Clock::unix_now(clock.as_ref());
    common::wait_for("one approval alert", || {
        alerts(&receiver, "breakglass.approved", now).len() == 1
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
}
