//! Revocation on one broker (the embedded store): by jti, serial, entry,
//! SPIFFE ID and agent, each refusal next to a positive control; lifting;
//! expiry; audit records; the `WatchRevocations` stream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TRUST_DOMAIN, TestBroker};
use mayfly_sdk::proto::v1 as pb;
use mayfly_sdk::revocation::RevocationKind;
use tonic::Code;

async fn revoke(
    broker: &TestBroker,
    kind: &str,
    value: &str,
    reason: &str,
) -> Result<pb::Revocation, tonic::Status> {
    common::revoke_via(broker.admin().await, kind, value, reason).await
}

async fn unrevoke(
    broker: &TestBroker,
    kind: &str,
    value: &str,
) -> Result<pb::Revocation, tonic::Status> {
    broker
        .admin()
        .await
        .unrevoke(pb::UnrevokeRequest {
            kind: kind.into(),
            value: value.into(),
            reason: "fixed".into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn listed(broker: &TestBroker) -> Vec<String> {
    broker
        .admin()
        .await
        .list_revocations(pb::ListRevocationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .revocations
        .iter()
        .map(|r| format!("{}:{}", r.kind, r.value))
        .collect()
}

fn assert_code<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needle: &str) {
    let status = result.expect_err("expected a refusal");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(needle),
        "{:?} should mention {needle:?}",
        status.message()
    );
}

#[tokio::test]
async fn a_revoked_jti_is_rejected_until_it_expires_and_then_dropped() {
    let broker = TestBroker::start().await;
    let (_, svid) = broker.enrolled("/api", &["db"]).await;
    let revoked = broker.mint(&svid, "db", 0).await.unwrap();
    // The same request again would get the same (cached) token; another TTL
    // is another token.
    let other = broker.mint(&svid, "db", 60).await.unwrap();
    assert_ne!(other.jti, revoked.jti);
    broker.validate(&revoked.token, "db").await.unwrap();

    let revocation = revoke(&broker, "jti", &revoked.jti, "pasted in a ticket")
        .await
        .unwrap();
    assert_eq!(revocation.kind, "jti");
    assert!(
        revocation.expires_at > revoked.expires_at,
        "kept past the token's expiry"
    );
    assert_code(
        broker.validate(&revoked.token, "db").await,
        Code::Unauthenticated,
        "revoked",
    );
    // Positive control: the other token of the same workload still validates,
    // and minting goes on.
    broker.validate(&other.token, "db").await.unwrap();
    let next = broker.mint(&svid, "db", 0).await.unwrap();
    assert_ne!(
        next.jti, revoked.jti,
        "the revoked token is not handed out again"
    );
    broker.validate(&next.token, "db").await.unwrap();
    assert_eq!(listed(&broker).await, vec![format!("jti:{}", revoked.jti)]);
    // The index keeps a jti revocation without its reason; the list reads
    // the store, which has it.
    let full = broker
        .admin()
        .await
        .list_revocations(pb::ListRevocationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .revocations;
    assert_eq!(full[0].reason, "pasted in a ticket");
    assert!(!full[0].actor.is_empty(), "{:?}", full[0]);

    // A leaked token cannot be un-revoked.
    assert_code(
        unrevoke(&broker, "jti", &revoked.jti).await,
        Code::InvalidArgument,
        "cannot be lifted",
    );

    let audit = common::read_audit(&broker.data_dir());
    assert!(
        audit.contains("\"action\":\"revocation.revoke\""),
        "{audit}"
    );
    assert!(audit.contains("pasted in a ticket"), "{audit}");

    // Once every credential it covers has expired, it is dropped on its own.
    broker.clock.advance(Duration::from_secs(3_600 + 29));
    let pruned = broker.server().prune_revocations().await.unwrap();
    assert!(pruned.is_empty(), "nothing expired yet: {pruned:?}");
    broker.clock.advance(Duration::from_secs(60));
    let pruned = broker.server().prune_revocations().await.unwrap();
    assert_eq!(pruned, vec![format!("jti:{}", revoked.jti)]);
    assert!(listed(&broker).await.is_empty());
    assert!(common::read_audit(&broker.data_dir()).contains("revocation.expire"));
}

#[tokio::test]
async fn revoking_an_entry_stops_minting_and_cuts_off_what_it_issued_until_lifted() {
    let broker = TestBroker::start().await;
    let (entry, svid) = broker.enrolled("/api", &["db"]).await;
    let (_, bystander) = broker.enrolled("/worker", &["db"]).await;
    let token = broker.mint(&svid, "db", 0).await.unwrap();

    let revocation = revoke(&broker, "entry", &entry.id, "host compromised")
        .await
        .unwrap();
    assert_eq!(
        revocation.subjects,
        vec![format!("spiffe://{TRUST_DOMAIN}/api")]
    );
    assert_eq!(revocation.expires_at, 0, "in force until lifted");
    // Again: the same revocation, nothing new.
    let again = revoke(&broker, "entry", &entry.id, "again").await.unwrap();
    assert_eq!(again.revoked_at, revocation.revoked_at);

    assert_code(
        broker.validate(&token.token, "db").await,
        Code::Unauthenticated,
        "revoked",
    );
    assert_code(
        broker.mint(&svid, "db", 0).await,
        Code::Unauthenticated,
        "revoked",
    );
    assert_code(broker.renew(&svid).await, Code::Unauthenticated, "revoked");
    // A fresh join token for the entry gets nothing either.
    let join = broker.join_token(&entry.id, 0).await;
    assert_code(
        broker.attest(&join).await,
        Code::PermissionDenied,
        "revoked",
    );
    // Positive control: another workload is untouched.
    let theirs = broker.mint(&bystander, "db", 0).await.unwrap();
    broker.validate(&theirs.token, "db").await.unwrap();
    broker.renew(&bystander).await.unwrap();

    // Lifted: new credentials again; what was issued before stays revoked.
    // (That a certificate issued after the lifting passes the check is
    // shown in the index's unit tests: here the server's TLS checks real
    // time, and a certificate's notBefore is backdated 30 s, so it would
    // take a real half minute.)
    broker.clock.advance(Duration::from_secs(2));
    let lifted = unrevoke(&broker, "entry", &entry.id).await.unwrap();
    assert!(lifted.expires_at > 0);
    assert_code(
        unrevoke(&broker, "entry", &entry.id).await,
        Code::NotFound,
        "not revoked",
    );
    let join = broker.join_token(&entry.id, 0).await;
    let fresh = broker.attest(&join).await.unwrap();
    assert_eq!(fresh.spiffe_id, format!("spiffe://{TRUST_DOMAIN}/api"));
    assert_code(
        broker.validate(&token.token, "db").await,
        Code::Unauthenticated,
        "revoked",
    );
    assert_code(
        broker.mint(&svid, "db", 0).await,
        Code::Unauthenticated,
        "revoked",
    );

    let audit = common::read_audit(&broker.data_dir());
    assert!(
        audit.contains("\"action\":\"revocation.unrevoke\""),
        "{audit}"
    );
}

#[tokio::test]
async fn a_revoked_serial_cuts_off_one_certificate() {
    let broker = TestBroker::start().await;
    let (_, svid) = broker.enrolled("/api", &["db"]).await;
    let renewed = broker.renew(&svid).await.unwrap();
    // As openssl prints it: upper case with colons.
    let colons = svid
        .serial
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(":");
    revoke(&broker, "serial", &colons, "laptop stolen")
        .await
        .unwrap();
    assert_code(
        broker.mint(&svid, "db", 0).await,
        Code::Unauthenticated,
        "revoked",
    );
    assert_code(broker.renew(&svid).await, Code::Unauthenticated, "revoked");
    // The other certificate of the same identity still works.
    broker.mint(&renewed, "db", 0).await.unwrap();
    broker.renew(&renewed).await.unwrap();
}

#[tokio::test]
async fn revoking_a_spiffe_id_and_bad_requests() {
    let broker = TestBroker::start().await;
    let (_, svid) = broker.enrolled("/api", &["db"]).await;
    let token = broker.mint(&svid, "db", 0).await.unwrap();
    let id = format!("spiffe://{TRUST_DOMAIN}/api");
    revoke(&broker, "spiffe-id", &id, "key leaked")
        .await
        .unwrap();
    assert_code(
        broker.validate(&token.token, "db").await,
        Code::Unauthenticated,
        "revoked",
    );
    assert_code(
        broker.mint(&svid, "db", 0).await,
        Code::Unauthenticated,
        "revoked",
    );

    // Bad requests change nothing.
    let before = listed(&broker).await;
    assert_code(
        revoke(&broker, "token", "x", "r").await,
        Code::InvalidArgument,
        "unknown revocation kind",
    );
    assert_code(
        revoke(&broker, "jti", "x", " ").await,
        Code::InvalidArgument,
        "reason is required",
    );
    assert_code(
        revoke(&broker, "serial", "zz", "r").await,
        Code::InvalidArgument,
        "hex",
    );
    assert_code(
        revoke(&broker, "spiffe-id", "spiffe://Bad/x", "r").await,
        Code::InvalidArgument,
        "spiffe-id",
    );
    assert_code(
        revoke(&broker, "entry", "00000000000000ff", "r").await,
        Code::NotFound,
        "no entry",
    );
    assert_eq!(listed(&broker).await, before);
}

#[tokio::test]
async fn revoking_an_agent_cuts_off_the_agent_and_what_it_obtained() {
    let broker = TestBroker::start().await;
    let (_, agent) = broker.enrolled("/agent/node-1", &["x"]).await;
    let agent_id = format!("spiffe://{TRUST_DOMAIN}/agent/node-1");
    let mut spec = TestBroker::entry_spec("/web", &["db"], &["unix:uid:1000"]);
    spec.parent_id = Some(agent_id.clone());
    let child = broker.create_entry_from(spec).await.unwrap();
    let mut agent_rpc = broker.broker_as(&agent).await;
    let minted = agent_rpc
        .batch_mint_jwt_svids(pb::BatchMintJwtSvidsRequest {
            params: vec![pb::JwtSvidParams {
                entry_id: child.id.clone(),
                audience: "db".into(),
                ttl_seconds: 0,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let token = minted.results[0]
        .svid
        .clone()
        .unwrap_or_else(|| panic!("{:?}", minted.results[0].error))
        .token;
    broker.validate(&token, "db").await.unwrap();

    let revocation = revoke(&broker, "agent", &agent_id, "node lost")
        .await
        .unwrap();
    assert_eq!(
        revocation.subjects,
        vec![agent_id.clone(), format!("spiffe://{TRUST_DOMAIN}/web")]
    );
    assert_code(
        broker.validate(&token, "db").await,
        Code::Unauthenticated,
        "revoked",
    );
    assert_code(
        agent_rpc
            .list_agent_entries(pb::ListAgentEntriesRequest {})
            .await,
        Code::Unauthenticated,
        "revoked",
    );
}

#[tokio::test]
async fn watch_revocations_sends_the_set_then_each_change() {
    let broker = TestBroker::start().await;
    let (_, svid) = broker.enrolled("/api", &["db"]).await;
    let first = broker.mint(&svid, "db", 0).await.unwrap();
    revoke(&broker, "jti", &first.jti, "before the watch")
        .await
        .unwrap();

    let mut stream = watch(&broker).await;
    let full = next_update(&mut stream).await;
    assert!(full.full);
    assert!(!full.more, "a set within a page is one message");
    assert_eq!(full.upserted.len(), 1);
    assert_eq!(full.upserted[0].value, first.jti);
    assert!(full.fresh_as_of_ms > 0);

    let second = broker.mint(&svid, "db", 0).await.unwrap();
    revoke(&broker, "jti", &second.jti, "during the watch")
        .await
        .unwrap();
    let mut update = next_update(&mut stream).await;
    while update.upserted.is_empty() {
        update = next_update(&mut stream).await; // heartbeats or a CRL
    }
    assert!(!update.full);
    assert_eq!(update.upserted[0].value, second.jti);
    assert_eq!(update.upserted[0].reason, "during the watch");

    // Expiry reaches the stream as a removal.
    broker.clock.advance(Duration::from_secs(2 * 3_600));
    broker.server().prune_revocations().await.unwrap();
    let mut removed = Vec::new();
    while removed.len() < 2 {
        removed.extend(next_update(&mut stream).await.removed);
    }
    removed.sort();
    let mut expected = vec![format!("jti:{}", first.jti), format!("jti:{}", second.jti)];
    expected.sort();
    assert_eq!(removed, expected);
}

/// A set larger than a page (`PAGE`) comes in pages read one at a time: the first `full`,
/// each but the last `more`, every revocation once. The SDK's watch, a client the test
/// does not drive, holds the whole set once synced, then follows a change made after it.
/// Packed `jti` values and ones that do not pack (`other-N`) both come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_larger_than_a_page_comes_in_pages_and_the_sdk_holds_it_whole() {
    use base64::Engine as _;
    use mayfly::api::revocations::PAGE;
    let broker = TestBroker::start().await;
    let (_, svid) = broker.enrolled("/paged", &["db"]).await;
    let minted = broker.mint(&svid, "db", 0).await.unwrap();
    let count = 2 * PAGE + 10;
    let values: Vec<String> = (0..count)
        .map(|n| {
            if n % 100 == 0 {
                format!("other-{n}")
            } else {
                let bytes = (u128::try_from(n).unwrap() * 0x9e37_79b9_7f4a_7c15).to_be_bytes();
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
            }
        })
        .collect();
    let mut admin = broker.admin().await;
    for chunk in values.chunks(5_000) {
        let items = chunk
            .iter()
            .map(|value| pb::RevokeRequest {
                kind: "jti".into(),
                value: value.clone(),
                reason: "paged".into(),
            })
            .collect();
        let answer = admin
            .revoke_many(pb::RevokeManyRequest { items })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.refused, 0, "{:?}", answer.results.first());
    }

    let mut stream = watch(&broker).await;
    let mut pages = vec![next_update(&mut stream).await];
    while pages.last().unwrap().more {
        pages.push(next_update(&mut stream).await);
    }
    assert!(pages.len() >= 3, "{} pages", pages.len());
    assert!(pages[0].full);
    for page in &pages[1..] {
        assert!(!page.full, "only the first page is full");
    }
    let mut sent: Vec<String> = Vec::new();
    for page in &pages {
        assert!(page.upserted.len() <= PAGE, "{}", page.upserted.len());
        assert!(page.fresh_as_of_ms > 0);
        sent.extend(page.upserted.iter().map(|r| r.value.clone()));
    }
    let mut expected = values.clone();
    expected.sort();
    sent.sort();
    assert_eq!(sent, expected, "every revocation, once");

    // The SDK's watch: the whole set once synced; the minted token is not in it (the
    // control), until it is revoked after the sync.
    let watch = mayfly_sdk::revocation::RevocationWatch::from_client(broker.broker().await)
        .await
        .unwrap();
    let set = watch.set();
    assert_eq!(set.len(), count);
    for value in [&values[1], &values[count - 1], &values[100]] {
        assert!(set.get(RevocationKind::Jti, value).is_some(), "{value}");
    }
    assert!(set.get(RevocationKind::Jti, &minted.jti).is_none());
    revoke(&broker, "jti", &minted.jti, "after the sync")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    while set.get(RevocationKind::Jti, &minted.jti).is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the change never came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(set.len(), count + 1);
}

/// A `WatchRevocations` stream from the broker.
async fn watch(broker: &TestBroker) -> tonic::Streaming<pb::RevocationUpdate> {
    broker
        .broker()
        .await
        .watch_revocations(pb::WatchRevocationsRequest {})
        .await
        .unwrap()
        .into_inner()
}

async fn next_update(stream: &mut tonic::Streaming<pb::RevocationUpdate>) -> pb::RevocationUpdate {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("an update within 5 s")
        .unwrap()
        .unwrap()
}

/// GET over plain HTTP, returning the status and the body's bytes.
async fn http_get_bytes(addr: std::net::SocketAddr, path: &str) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, response[split + 4..].to_vec())
}

#[tokio::test]
async fn the_crl_lists_revoked_serials_and_openssl_honours_it() {
    let broker = TestBroker::start().await;
    let (_, revoked) = broker.enrolled("/api", &["db"]).await;
    let (_, kept) = broker.enrolled("/worker", &["db"]).await;
    let root = broker.root_der();
    let http = broker.server().http_addr();

    let (status, before) = http_get_bytes(http, "/crl").await;
    assert_eq!(status, 200);
    let (ok, text) = common::openssl_verify_with_crl(&root, &revoked.chain_der, &before);
    assert!(ok, "not revoked yet: {text}");

    revoke(&broker, "serial", &revoked.serial, "laptop stolen")
        .await
        .unwrap();
    // The CRL is re-signed on the change; wait for it (bounded).
    let mut after = before.clone();
    for _ in 0..50 {
        after = http_get_bytes(http, "/crl").await.1;
        if after != before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, text) = common::openssl_verify_with_crl(&root, &revoked.chain_der, &after);
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    let (ok, text) = common::openssl_verify_with_crl(&root, &kept.chain_der, &after);
    assert!(ok, "the other certificate passes: {text}");

    // The same CRL reaches WatchRevocations subscribers.
    let mut stream = watch(&broker).await;
    let first = next_update(&mut stream).await;
    assert_eq!(first.crl, after);
}

/// `mayfly revoke bulk`: every line revoked (a real token among them, rejected after),
/// each with its own audit record; a line already in force, a repeated one and refused
/// ones are answered per line, and the rest go ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_revoke_takes_each_line_and_answers_each() {
    let broker = TestBroker::start().await;
    let (_, svid) = broker.enrolled("/bulk", &["db"]).await;
    let minted = broker.mint(&svid, "db", 0).await.unwrap();
    let jti =
        common::jwt_simple_claims(&broker.http_get("/keys").await.1, &minted.token, "db", None)
            .unwrap()["jti"]
            .as_str()
            .unwrap()
            .to_owned();
    broker.validate(&minted.token, "db").await.unwrap();
    revoke(&broker, "jti", "already-1", "earlier")
        .await
        .unwrap();

    let mut lines = vec![
        "# leaked in INC-77".to_owned(),
        format!("jti {jti}"),
        "jti already-1".to_owned(),
        String::new(),
        "bogus x".to_owned(),
        "entry ffffffffffffffff".to_owned(),
    ];
    lines.extend((0..2500).map(|n| format!("jti bulk-{n}")));
    lines.push("jti bulk-7".to_owned());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("revoke.txt");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mayfly"))
        .arg("--data-dir")
        .arg(broker.data_dir())
        .args(["revoke", "bulk"])
        .arg(&file)
        .args(["--reason", "INC-77", "--batch", "1000"])
        .env_remove("MAYFLY_ADMIN_SOCKET")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "two lines refused: {stderr}");
    assert!(
        stdout.contains("revoked 2501, already in force 2, refused 2"),
        "{stdout}"
    );
    assert!(stderr.contains("line 5: bogus"), "{stderr}");
    assert!(
        stderr.contains("line 6: entry ffffffffffffffff"),
        "{stderr}"
    );

    let rejected = broker.validate(&minted.token, "db").await;
    assert_code(rejected, Code::Unauthenticated, "revoked");
    assert_eq!(in_force(&broker).await, 2502, "each once");
    let records = common::read_audit(&broker.data_dir())
        .lines()
        .filter(|line| line.contains("\"revocation.revoke\"") && line.contains("INC-77"))
        .count();
    assert_eq!(records, 2501, "one audit record per new revocation");

    // A malformed file changes nothing.
    std::fs::write(&file, "jti one\njti two three\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mayfly"))
        .arg("--data-dir")
        .arg(broker.data_dir())
        .args(["revoke", "bulk"])
        .arg(&file)
        .args(["--reason", "x"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("line 2"),
        "{output:?}"
    );
    assert_eq!(in_force(&broker).await, 2502);
}

async fn in_force(broker: &TestBroker) -> usize {
    broker
        .admin()
        .await
        .list_revocations(pb::ListRevocationsRequest {
            page_size: Some(5000),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .revocations
        .len()
}
